"""Pure-PyTorch twins of the ``torch.ops.vxl_fast`` ops.

They define the semantics the C++/CUDA kernels are tested against, serve as the fallback when the
extension is missing, and raise the same sentences as the C++ checks (``csrc/checks.cpp``).
"""

from __future__ import annotations

import torch

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _check_dim(op: str, name: str, t: torch.Tensor, n: int, shape: str) -> None:
    if t.dim() != n:
        raise ValueError(f"{op}: {name} must be a {n}-D tensor {shape}, got {t.dim()} dimensions.")


def _check_floating(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in _FLOATS:
        raise TypeError(f"{op}: {name} must be torch.float32, torch.float16 or torch.bfloat16, "
                        f"got {t.dtype}.")


def _check_dtype(op: str, name: str, t: torch.Tensor, dtype: torch.dtype) -> None:
    if t.dtype != dtype:
        raise TypeError(f"{op}: {name} must be {dtype}, got {t.dtype}.")


def _check_same_dtype(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.dtype != ref.dtype:
        raise TypeError(f"{op}: {name} must have the same dtype as {ref_name} ({ref.dtype}), "
                        f"got {t.dtype}.")


def _check_same_device(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{op}: {name} must be on the same device as {ref_name} ({ref.device}), "
                         f"got {t.device}.")


def _check_last_dim_contiguous(op: str, name: str, t: torch.Tensor) -> None:
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{op}: {name} must have a contiguous last dimension (stride 1), "
                         f"got stride {t.stride(-1)}.")


def check_interleave_vst(raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> None:
    """The argument checks of ``interleave_vst``, in the order of the C++ impl."""
    op = "interleave_vst"
    _check_dim(op, "raw", raw, 2, "[Lw, D]")
    _check_dim(op, "vst", vst, 1, "[D]")
    _check_floating(op, "raw", raw)
    _check_same_dtype(op, "vst", vst, "raw", raw)
    _check_same_device(op, "vst", vst, "raw", raw)
    if vst.shape[0] != raw.shape[1]:
        raise ValueError(f"{op}: vst has {vst.shape[0]} elements but the rows of raw have "
                         f"D = {raw.shape[1]}; they must match.")
    if raw.shape[0] < 1:
        raise ValueError(f"{op}: raw must have at least one row.")
    _check_last_dim_contiguous(op, "raw", raw)
    _check_last_dim_contiguous(op, "vst", vst)
    if ratio < 1:
        raise ValueError(f"{op}: ratio must be at least 1, got {ratio}.")
    if not 0 <= carry < ratio:
        raise ValueError(f"{op}: carry must satisfy 0 <= carry < ratio ({ratio}), got {carry}.")


def check_kv_discard(cache_k: torch.Tensor, cache_v: torch.Tensor, scratch_k: torch.Tensor,
                     scratch_v: torch.Tensor, vst_index: torch.Tensor, cos: torch.Tensor,
                     sin: torch.Tensor, dst: int) -> None:
    """The argument checks of ``kv_discard``, in the order of the C++ impl (index values included)."""
    op = "kv_discard"
    named = {"cache_k": cache_k, "cache_v": cache_v, "scratch_k": scratch_k, "scratch_v": scratch_v,
             "vst_index": vst_index, "cos": cos, "sin": sin}
    for name, n, shape in (("cache_k", 3, "[Hkv, C, d]"), ("cache_v", 3, "[Hkv, C, d]"),
                           ("scratch_k", 3, "[Hkv, R, d]"), ("scratch_v", 3, "[Hkv, R, d]"),
                           ("vst_index", 1, "[nb]"), ("cos", 2, "[P, d]"), ("sin", 2, "[P, d]")):
        _check_dim(op, name, named[name], n, shape)
    _check_floating(op, "cache_k", cache_k)
    for name in ("cache_v", "scratch_k", "scratch_v"):
        _check_same_dtype(op, name, named[name], "cache_k", cache_k)
    _check_dtype(op, "vst_index", vst_index, torch.int64)
    _check_dtype(op, "cos", cos, torch.float32)
    _check_dtype(op, "sin", sin, torch.float32)
    for name in ("cache_v", "scratch_k", "scratch_v", "vst_index", "cos", "sin"):
        _check_same_device(op, name, named[name], "cache_k", cache_k)
    if cache_v.shape != cache_k.shape:
        raise ValueError(f"{op}: cache_v must have the shape of cache_k ({_shape(cache_k)}), "
                         f"got {_shape(cache_v)}.")
    if scratch_v.shape != scratch_k.shape:
        raise ValueError(f"{op}: scratch_v must have the shape of scratch_k ({_shape(scratch_k)}), "
                         f"got {_shape(scratch_v)}.")
    if scratch_k.shape[0] != cache_k.shape[0] or scratch_k.shape[2] != cache_k.shape[2]:
        raise ValueError(f"{op}: scratch_k [Hkv, R, d] = {_shape(scratch_k)} and cache_k [Hkv, C, d] = "
                         f"{_shape(cache_k)} must have the same Hkv and d.")
    d = cache_k.shape[2]
    if d <= 0 or d % 2:
        raise ValueError(f"{op}: the head dim d must be a positive even number, got {d}.")
    if cos.shape[1] != d:
        raise ValueError(f"{op}: cos must have d = {d} columns, got {cos.shape[1]}.")
    if sin.shape != cos.shape:
        raise ValueError(f"{op}: sin must have the shape of cos ({_shape(cos)}), got {_shape(sin)}.")
    for name in ("cache_k", "cache_v", "scratch_k", "scratch_v", "cos", "sin"):
        _check_last_dim_contiguous(op, name, named[name])
    nb = vst_index.shape[0]
    if dst < 0:
        raise ValueError(f"{op}: dst must be non-negative, got {dst}.")
    if dst + nb > cache_k.shape[1]:
        raise ValueError(f"{op}: dst + nb = {dst + nb} exceeds the cache length "
                         f"C = {cache_k.shape[1]}.")
    if dst + nb > cos.shape[0]:
        raise ValueError(f"{op}: dst + nb = {dst + nb} exceeds the RoPE table length "
                         f"P = {cos.shape[0]}.")
    rows = scratch_k.shape[1]
    bad = ((vst_index < 0) | (vst_index >= rows)).nonzero()
    if bad.numel():
        i = int(bad[0, 0])
        raise ValueError(f"{op}: vst_index values must lie in [0, R = {rows}), got {int(vst_index[i])} "
                         f"at position {i}.")


def interleave_vst_ref(raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> torch.Tensor:
    """One compression window's input rows with Visual Summary Token rows interleaved.

    raw: [Lw, D] float32/float16/bfloat16, Lw >= 1, last dim contiguous; vst: [D], same dtype and
    device (the VST embedding); 1 <= ratio; 0 <= carry < ratio. Returns a new contiguous
    [Lw + nb, D] tensor, nb = (Lw + carry) // ratio, where slot j is a copy of vst iff
    j % (ratio + 1) == ratio - carry and the raw rows fill the other slots in order.
    """
    check_interleave_vst(raw, vst, ratio, carry)
    n_out = raw.shape[0] + (raw.shape[0] + carry) // ratio
    is_vst = torch.arange(n_out, device=raw.device) % (ratio + 1) == ratio - carry
    out = raw.new_empty((n_out, raw.shape[1]))
    out[is_vst] = vst
    out[~is_vst] = raw
    return out


def kv_discard_ref(cache_k: torch.Tensor, cache_v: torch.Tensor, scratch_k: torch.Tensor,
                   scratch_v: torch.Tensor, vst_index: torch.Tensor, cos: torch.Tensor,
                   sin: torch.Tensor, dst: int) -> None:
    """Keeps a window's VST keys/values in the KV cache and wipes the window's scratch, in place.

    cache_k, cache_v: [Hkv, C, d] (float32/float16/bfloat16); scratch_k, scratch_v: [Hkv, R, d],
    same dtype, keys before RoPE; vst_index: int64 [nb], 0 <= vst_index[i] < R; cos, sin: float32
    [P, d] full-width RoPE tables, P >= dst + nb; d even, dst >= 0, dst + nb <= C; last dims
    contiguous, other strides arbitrary. For every head h and i < nb, with
    x = scratch_k[h, vst_index[i]] in float32, p = dst + i, half = d // 2:

        cache_k[h, p, :half] = x[:half] * cos[p, :half] - x[half:] * sin[p, :half]
        cache_k[h, p, half:] = x[half:] * cos[p, half:] + x[:half] * sin[p, half:]
        cache_v[h, p] = scratch_v[h, vst_index[i]]

    (x * cos + rotate_half(x) * sin, computed in float32 and cast once to the cache dtype); then
    scratch_k and scratch_v are zero-filled.
    """
    check_kv_discard(cache_k, cache_v, scratch_k, scratch_v, vst_index, cos, sin, dst)
    nb = vst_index.shape[0]
    if nb:
        half = cache_k.shape[2] // 2
        x = scratch_k.index_select(1, vst_index).float()  # [Hkv, nb, d]
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        cache_k[:, dst:dst + nb] = x * cos[dst:dst + nb] + rotated * sin[dst:dst + nb]
        cache_v[:, dst:dst + nb] = scratch_v.index_select(1, vst_index)
    scratch_k.zero_()
    scratch_v.zero_()
