"""Causal attention of a window's queries over the contiguous prefix of the KV cache, and the seam
where a backend is chosen once per device, dtype and head shape.

Every backend computes, for q: [H, n, d] (after RoPE) and k, v: [Hkv, m + n, d] (the cache's
first m + n slots: m kept ones, then the window's n rows; H a multiple of Hkv; last dimension
contiguous, other strides arbitrary), ``softmax(q·kᵀ/√d + mask) · v`` with bottom-right aligned
causality — query i sees the m kept slots and window rows 0..i — returned as [n, H, d].
K/V heads are never repeated; of the fused backends only ``cudnn`` makes a mask, one row over its
padded keys.

Backends: ``split`` (memory and window as two flash calls merged by their log-sum-exp; CPU and
CUDA), ``prefix`` (one flash call over the prefix; the CUDA flash kernel aligns causality to the
bottom right when there are more keys than queries, the CPU one to the top left, so CUDA only),
``cudnn`` (``split`` through cuDNN's fused attention, the kept slots padded to ``key_bucket``
lengths so that cuDNN builds a few plans per request, not one per window; CUDA), ``masked`` (one SDPA call with a
boolean mask: the reference, and the path for fp32 on CUDA).
``RuntimeOptions.attention`` forces one; otherwise (``"auto"``) on CUDA in bf16/fp16 the runner's
``select_attention`` checks each candidate against the reference and times those that agree.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.nn.functional as F

from .measure import cuda_seconds

AttentionBackend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _check_fused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """The preconditions of the fused CUDA kernels; anything else would fall to math attention."""
    assert q.dim() == k.dim() == v.dim() == 4, "fused attention needs 4-D inputs"
    assert q.dtype in (torch.float16, torch.bfloat16) and k.dtype == v.dtype == q.dtype, \
        "fused attention needs bf16/fp16 inputs"
    assert q.stride(-1) == k.stride(-1) == v.stride(-1) == 1, "fused attention needs a contiguous last dim"


def _bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """The additive form of a boolean mask (True where visible)."""
    return None if mask is None else torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
        ~mask, float("-inf"))


def _flash_cpu(q, k, v, causal, mask=None):
    # NOTE: the public SDPA does not return the log-sum-exp needed to merge segments; this aten op
    # is its CPU flash kernel (q, k, v: [B, heads, len, d], GQA allowed) → (out, lse [B, heads, len]).
    # It runs in fp32 whatever the inputs' dtype, so that split_attention rounds its output once.
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q.float(), k.float(), v.float(), 0.0,
                                                                            causal, attn_mask=_bias(mask, torch.float32))
    return out, lse


def _flash_cuda(q, k, v, causal):
    # The fused FlashAttention-2 kernel behind SDPA, called directly for its log-sum-exp; it reads
    # fewer K/V heads than query heads (GQA) as they are.
    _check_fused(q, k, v)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal)[:2]
    return out, lse


def _cudnn_cuda(q, k, v, causal, mask=None):
    # cuDNN's fused attention (log-sum-exp returned); a square window needs no causal alignment.
    _check_fused(q, k, v)
    bias = None if mask is None else _bias(mask, q.dtype).expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
    out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, bias, True, 0.0, causal, False)[:2]
    return out, lse.view(lse.shape[:3])


def key_bucket(m: int) -> int:
    """The key length cuDNN sees for ``m`` kept slots: 512, or the next power of two up to 4096,
    then the next multiple of 4096, so a request's memory segments take a few shapes (one cuDNN
    plan each; 8 at 2048 frames)."""
    if m <= 4096:
        return max(512, 1 << (m - 1).bit_length())
    return -(-m // 4096) * 4096


def _padded_keys(t: torch.Tensor, length: int) -> torch.Tensor:
    """The first ``length`` slots of the cache view t [Hkv, ≥ m, d]: the slots after it read in
    place where the cache holds them (their keys are masked out; the cache is zero-initialised,
    so they are finite), else zero-padded."""
    slots = t.stride(0) // t.stride(1) if t.stride(1) else 0
    if t.stride(-1) == 1 and t.stride(1) == t.shape[2] and length <= slots \
            and t.storage_offset() + t.stride(0) * t.shape[0] <= t.untyped_storage().nbytes() // t.element_size():
        return t.as_strided((t.shape[0], length, t.shape[2]), t.stride())
    return F.pad(t, (0, 0, 0, length - t.shape[1]))


def split_attention(flash, q, k, v, bucket=None) -> torch.Tensor:
    """The kept slots (every query sees them) and the window (square-causal) run as two flash
    calls and are merged by their log-sum-exp. ``flash(q, k, v, causal)`` takes 4-D
    [B, heads, len, d] tensors and returns (out, lse fp32): out in fp32 (the CPU's) or in the
    inputs' dtype (the fused CUDA kernels return nothing else). The merge runs in fp32 and rounds
    to q's dtype once: one rounding in all from fp32 segments; from bf16 ones the kernels' own
    rounding comes first (``tests/layers/test_attention_numerics.py`` measures what that costs).
    With ``bucket`` (m → length ≥ m), the kept slots are read as ``bucket(m)`` keys, those past m
    masked out (``flash(q, k, v, False, mask)``, mask [1, 1, 1, length] True where visible)."""
    h, n, d = q.shape
    hkv, m = k.shape[0], k.shape[1] - n
    g = h // hkv
    q = q.contiguous()
    out, lse = flash(q.unsqueeze(0), k[None, :, m:], v[None, :, m:], True)
    out, lse = out[0], lse[0]  # [H, n, d], [H, n]
    if m:
        # A KV head's g query heads folded into one sequence: the kept K/V are read once per KV head.
        qm = q.view(1, hkv, g * n, d)
        if bucket is None:
            out_m, lse_m = flash(qm, k[None, :, :m], v[None, :, :m], False)
        else:
            length = bucket(m)
            mask = (torch.arange(length, device=q.device) < m).view(1, 1, 1, length)
            out_m, lse_m = flash(qm, _padded_keys(k[:, :m], length)[None], _padded_keys(v[:, :m], length)[None],
                                 False, mask)
        out_m, lse_m = out_m.view(hkv, g, n, d), lse_m.view(hkv, g, n)
        out, lse = out.view(hkv, g, n, d), lse.view(hkv, g, n)
        total = torch.logaddexp(lse, lse_m)
        out = (out.float() * torch.exp(lse - total).unsqueeze(-1)
               + out_m.float() * torch.exp(lse_m - total).unsqueeze(-1)).view(h, n, d)
    return out.to(q.dtype).transpose(0, 1)


def split_attention_cpu(q, k, v) -> torch.Tensor:
    return split_attention(_flash_cpu, q, k, v)


def split_attention_cuda(q, k, v) -> torch.Tensor:
    return split_attention(_flash_cuda, q, k, v)


def split_attention_cudnn(q, k, v) -> torch.Tensor:
    return split_attention(_cudnn_cuda, q, k, v, key_bucket)


def prefix_attention_cuda(q, k, v) -> torch.Tensor:
    """One flash call over the whole prefix, causality aligned to the bottom right (CUDA's kernel)."""
    out, _ = _flash_cuda(q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0), True)
    return out[0].transpose(0, 1)


def masked_attention(q, k, v) -> torch.Tensor:
    """One SDPA call with a boolean mask (the reference)."""
    n, total = q.shape[1], k.shape[1]
    mask = torch.ones(n, total, dtype=torch.bool, device=q.device).tril(total - n)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).transpose(0, 1)


def _implementations(device: torch.device, dtype: torch.dtype) -> dict[str, AttentionBackend]:
    """The backends that can run on ``device`` in ``dtype``, in order of preference."""
    if device.type == "cpu":
        return {"split": split_attention_cpu, "masked": masked_attention}
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return {"prefix": prefix_attention_cuda, "split": split_attention_cuda, "cudnn": split_attention_cudnn,
                "masked": masked_attention}
    return {"masked": masked_attention}


def select_attention(device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int, head_dim: int,
                     forced: str = "auto") -> tuple[str, AttentionBackend]:
    """The attention backend for ``device``, ``dtype`` and the head shape, with its name: ``forced``
    (a name of ``runtime.ATTENTION_BACKENDS``) if it can run there; with "auto" the only one, the
    CPU's first, or on CUDA the fastest that agrees with the reference (``choose``)."""
    available = _implementations(device, dtype)
    if forced != "auto":
        if forced not in available:
            raise ValueError(f"attention={forced!r} cannot run on {device.type} in {dtype} "
                             f"(available: {', '.join(available)})")
        name = forced
    elif len(available) == 1 or device.type == "cpu":
        name = next(iter(available))
    else:
        name = choose(available, _probe_inputs(device, dtype, heads, kv_heads, head_dim), cuda_seconds)
    return name, available[name]


def choose(available: dict[str, AttentionBackend], inputs: tuple[torch.Tensor, ...],
           seconds: Callable[[AttentionBackend, tuple], float]) -> str:
    """The fastest of ``available`` whose result on ``inputs`` agrees with the fp32 reference
    within twice the error of the reference run in the inputs' dtype; a backend that disagrees
    or raises (e.g. a shape its kernel does not take) is skipped with a warning. ``masked`` is
    the reference and the last resort."""
    exact = masked_attention(*(t.float() for t in inputs))
    ref_err = (masked_attention(*inputs).float() - exact).abs().max().item()
    timed = {}
    for name, fn in available.items():
        if name == "masked":
            continue
        try:
            err = (fn(*inputs).float() - exact).abs().max().item()
        except RuntimeError as e:
            warnings.warn(f"attention backend {name!r} failed on {inputs[0].device} ({e}); not used",
                          RuntimeWarning, stacklevel=2)
            continue
        if err > 2 * ref_err + 1e-6:
            warnings.warn(f"attention backend {name!r} disagrees with the reference on {inputs[0].device} "
                          f"(max error {err:.3g} vs {ref_err:.3g}); not used", RuntimeWarning, stacklevel=2)
            continue
        timed[name] = seconds(fn, inputs)
    return min(timed, key=timed.get) if timed else "masked"


def _probe_inputs(device, dtype, heads, kv_heads, head_dim) -> tuple[torch.Tensor, ...]:
    # A window of 512 rows after 1536 kept slots: both segments of the compression loop, small
    # enough for the fp32 reference.
    g = torch.Generator(device="cpu").manual_seed(0)
    n, total = 512, 2048
    q = torch.randn(heads, n, head_dim, generator=g)
    k, v = (torch.randn(kv_heads, total, head_dim, generator=g) for _ in range(2))
    return tuple(t.to(device, dtype) for t in (q, k, v))
