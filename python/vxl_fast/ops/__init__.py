"""Custom ops: thin wrappers over ``torch.ops.vxl_fast`` with pure-PyTorch reference twins.

Each wrapper runs the compiled kernel or its twin by the one rule of ``dispatch.py``; the op table
(``table.py``) lists every op once. Shapes and formulas are in the wrappers' docstrings; how far a
kernel may be from the exact result is in ``bounds.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .. import _ext
from .dispatch import KernelPolicy, compiled, reference_only, using
from .reference import (YUV_MATRICES, add_layer_norm_ref, apply_rope, bias_quick_gelu_ref, clip_embed_layer_norm_ref,
                        clip_preprocess_ref, fused_add_rms_norm_ref, interleave_vst_ref, kv_compact_ref,
                        linear_quick_gelu_ref, rms_norm, rope_kv_write_ref, silu_and_mul_ref, yuv420_to_rgb_ref,
                        yuv_matrix_index)
from .table import OPS

__all__ = ["add_layer_norm", "bias_quick_gelu", "clip_embed_layer_norm", "clip_preprocess", "fused_add_rms_norm",
           "interleave_vst", "kv_compact", "linear_quick_gelu", "rope_kv_write", "silu_and_mul", "yuv420_to_rgb",
           "nv12_to_rgb", "vst_slots", "raw_slots", "rms_norm", "apply_rope",
           "add_layer_norm_ref", "bias_quick_gelu_ref", "clip_embed_layer_norm_ref", "clip_preprocess_ref",
           "fused_add_rms_norm_ref", "interleave_vst_ref", "kv_compact_ref", "linear_quick_gelu_ref",
           "rope_kv_write_ref", "silu_and_mul_ref", "yuv420_to_rgb_ref",
           "YUV_MATRICES", "OPS", "KernelPolicy", "using", "reference_only"]


def vst_slots(n_raw: int, ratio: int, carry: int) -> tuple[int, torch.Tensor]:
    """Where ``interleave_vst`` puts the VSTs of a window of ``n_raw`` raw rows.

    Returns (nb, slots): nb = (n_raw + carry) // ratio and slots, a CPU int64 tensor [nb] with
    slots[k] = (ratio - carry) + k * (ratio + 1), the k-th VST's row in the interleaved output.
    """
    if ratio < 1:
        raise ValueError(f"vst_slots: ratio must be at least 1, got {ratio}.")
    if not 0 <= carry < ratio:
        raise ValueError(f"vst_slots: carry must satisfy 0 <= carry < ratio ({ratio}), got {carry}.")
    if n_raw < 0:
        raise ValueError(f"vst_slots: n_raw must be non-negative, got {n_raw}.")
    nb = (n_raw + carry) // ratio
    return nb, torch.arange(nb, dtype=torch.int64) * (ratio + 1) + (ratio - carry)


def raw_slots(n_raw: int, ratio: int, carry: int) -> torch.Tensor:
    """The rows of ``interleave_vst``'s output that hold raw tokens: a CPU int64 tensor [n_raw],
    every row of the window that ``vst_slots`` does not name, in order (computed on the host, so
    no device synchronisation is needed to find them)."""
    nb, _ = vst_slots(n_raw, ratio, carry)
    first, step = ratio - carry, ratio + 1
    rows = [j for j in range(n_raw + nb) if j < first or (j - first) % step or (j - first) // step >= nb]
    return torch.tensor(rows, dtype=torch.int64)


def clip_preprocess(frames: torch.Tensor, size: int, crop: int, mean: Sequence[float],
                    std: Sequence[float], dtype: torch.dtype = torch.float32,
                    out: torch.Tensor | None = None, patch: int = 0) -> torch.Tensor:
    """CLIP image preprocessing of video frames, bit-exact with ``CLIPImageProcessor`` (Pillow).

    frames: uint8 [T, H, W, 3] RGB (T, H, W >= 1, last dim contiguous, other strides arbitrary);
    1 <= crop <= size; mean, std: 3 floats each. Per frame, as upstream Video-XL does it:

    1. resize so the short side is ``size`` and the long side ``int(size * long / short)`` with
       Pillow 13's bicubic resampler (``pil_resize``; a pass whose size does not change is skipped);
    2. centre crop [top:top + crop, left:left + crop], top = (out_h - crop) // 2, left likewise;
    3. x = float32(float64(pixel) * (1 / 255)); 4. y = (x - float32(mean[c])) / float32(std[c]).

    Returns y as a new [T, 3, crop, crop] tensor in ``dtype`` (float32, float16 or bfloat16, cast
    once) on the frames' device. With ``patch`` p > 0 (a divisor of crop): patch rows
    [T, g * g, 3 p²], g = crop // p, y[t, c, y, x] at [t, (y // p) * g + x // p, c * p² + (y % p) * p + x % p].
    With ``out`` (float of that shape on that device, last dim contiguous): writes into it and
    returns it (``dtype`` is then ignored).
    """
    if compiled("clip_preprocess", frames.device, dtype if out is None else out.dtype):
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if out is None:
            return torch.ops.vxl_fast.clip_preprocess(frames, size, crop, mean, std, dtype, patch)
        torch.ops.vxl_fast.clip_preprocess_out(frames, size, crop, mean, std, out, patch)
        return out
    return clip_preprocess_ref(frames, size, crop, mean, std, dtype, out=out, patch=patch)


def interleave_vst(raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> torch.Tensor:
    """One compression window's input rows with Visual Summary Token rows interleaved.

    raw: [Lw, D] float32/float16/bfloat16, Lw >= 1, last dim contiguous; vst: [D], same dtype and
    device; ratio >= 1; 0 <= carry < ratio raw rows of the first group seen in the previous window.
    Returns a new contiguous [Lw + nb, D], nb = (Lw + carry) // ratio: slot j is vst iff
    j % (ratio + 1) == ratio - carry (``vst_slots``), the raw rows fill the other slots in order.
    """
    if compiled("interleave_vst", raw.device, raw.dtype):
        return torch.ops.vxl_fast.interleave_vst(raw, vst, ratio, carry)
    return interleave_vst_ref(raw, vst, ratio, carry)


def kv_compact(cache_k: torch.Tensor, cache_v: torch.Tensor, vst_k: torch.Tensor, vst_v: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, dst: int) -> None:
    """Writes a window's VST keys (RoPE'd) and values to their final KV slots, in place.

    cache_k, cache_v: [Hkv, C, d] one layer's cache (float32/float16/bfloat16); vst_k, vst_v:
    [Hkv, nb, d], same dtype, the VSTs' keys before RoPE and their values, staged apart from the
    cache (nb may be 0); cos, sin: float32 [P, d], P >= dst + nb; one device, last dims contiguous,
    d even, 0 <= dst, dst + nb <= C. For i < nb, p = dst + i:

        cache_k[:, p] = apply_rope(vst_k[:, i], cos[p], sin[p]),   cache_v[:, p] = vst_v[:, i]

    Slots outside dst .. dst + nb - 1 are left as they are.
    """
    if compiled("kv_compact", cache_k.device, cache_k.dtype):
        torch.ops.vxl_fast.kv_compact(cache_k, cache_v, vst_k, vst_v, cos, sin, dst)
    else:
        kv_compact_ref(cache_k, cache_v, vst_k, vst_v, cos, sin, dst)


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str = "bt601",
                  full_range: bool = False) -> torch.Tensor:
    """Decoded YUV 4:2:0 planes to RGB24, bit-exact with PyAV's ``frame.to_ndarray(format="rgb24")``.

    y: uint8 [T, H, W]; u, v: uint8 [T, (H + 1) // 2, (W + 1) // 2], one device, any strides;
    ``matrix``: one of ``YUV_MATRICES``; ``full_range``: 0..255 planes (yuvj), else 16..235/240.
    Returns a new contiguous uint8 [T, H, W, 3]: chroma duplicated, swscale's 16-bit fixed point
    (formulas in ``yuv420_to_rgb_ref``). NOTE: swscale interpolates the chroma of frames of odd
    height (its general scaler); there the two differ.
    """
    index = yuv_matrix_index(matrix)
    if compiled("yuv420_to_rgb", y.device, torch.uint8):
        return torch.ops.vxl_fast.yuv420_to_rgb(y, u, v, index, bool(full_range))
    return yuv420_to_rgb_ref(y, u, v, matrix, full_range)


def nv12_to_rgb(y: torch.Tensor, uv: torch.Tensor, matrix: str = "bt601",
                full_range: bool = False) -> torch.Tensor:
    """``yuv420_to_rgb`` of NV12 planes (what NVDEC outputs): y uint8 [T, H, W] and interleaved
    chroma uv uint8 [T, (H + 1) // 2, 2 * ((W + 1) // 2)] (u at even, v at odd columns), read
    in place through strided views."""
    if uv.dim() != 3 or uv.shape[-1] % 2:
        raise ValueError(f"nv12_to_rgb: uv must be a 3-D tensor [T, (H + 1) / 2, 2 * ((W + 1) / 2)] "
                         f"with an even last dimension, got shape {list(uv.shape)}.")
    return yuv420_to_rgb(y, uv[..., 0::2], uv[..., 1::2], matrix, full_range)


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's residual add, then Qwen2 RMSNorm with fp32 statistics, in one pass.

    x, residual: [..., D] float32/float16/bfloat16, same dtype and device, last dims contiguous,
    D >= 1; weight: [D], same dtype; eps >= 0 finite. Returns new contiguous (normed, h) in x's dtype:

        h = residual + x,   normed = weight * (h32 / sqrt(mean(h32², -1) + eps)).to(dtype),   h32 = h.float()

    h is bit-identical to ``residual + x``; the kernel's normed is within ``bounds.rms_norm_bound``.
    """
    if compiled("fused_add_rms_norm", x.device, x.dtype):
        return torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, eps)
    return fused_add_rms_norm_ref(x, residual, weight, eps)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """The MLP's SiLU-gated product: x [..., 2F] = cat(gate, up) float32/float16/bfloat16, last dim
    contiguous -> a new contiguous [..., F] in x's dtype, ``T(T(silu(gate)) * up)`` with silu in fp32
    (within ``bounds.silu_and_mul_bound``; on CUDA PyTorch's own formula)."""
    if compiled("silu_and_mul", x.device, x.dtype):
        return torch.ops.vxl_fast.silu_and_mul(x)
    return silu_and_mul_ref(x)


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The CLIP encoder's residual add, then LayerNorm with fp32 statistics, in one pass.

    x, residual: [..., D] float32/float16/bfloat16, same dtype and device, last dims contiguous,
    D >= 1; weight, bias: [D], same dtype; eps >= 0 finite. Returns new contiguous (normed, h):

        h = residual + x,   normed = ((h32 - mean) * rstd * weight + bias).to(dtype),   h32 = h.float(),
        mean = mean(h32, -1),   rstd = 1 / sqrt(mean((h32 - mean)², -1) + eps)

    h is bit-identical to ``residual + x``; the kernel's normed is within ``bounds.layer_norm_bound``.
    """
    if compiled("add_layer_norm", x.device, x.dtype):
        return torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, eps)
    return add_layer_norm_ref(x, residual, weight, bias, eps)


def clip_embed_layer_norm(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor, eps: float) -> torch.Tensor:
    """CLIP's embeddings and pre-LayerNorm in one pass.

    patches: [F, P, C] float32/float16/bfloat16 (the patch embedding's product, any strides but the
    last); cls: [C]; pos: [P + 1, C]; weight, bias: [C]; one dtype and device, last dims contiguous;
    eps >= 0 finite. Returns a new contiguous [F, P + 1, C]:

        h[f] = cat([cls, patches[f]]) + pos (rounded to the dtype),   out = LayerNorm(h) as ``add_layer_norm``
    """
    if compiled("clip_embed_layer_norm", patches.device, patches.dtype):
        return torch.ops.vxl_fast.clip_embed_layer_norm(patches, cls, pos, weight, bias, eps)
    return clip_embed_layer_norm_ref(patches, cls, pos, weight, bias, eps)


def bias_quick_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """CLIP's MLP activation with fc1's bias add: x [..., F] float32/float16/bfloat16 (last dim
    contiguous), bias [F] of x's dtype -> a new contiguous [..., F] in x's dtype,

        h = T(x + bias),  t = T(1.702 · h),  s = T(1 / (1 + exp(-t))),  y = T(h · s)

    each step in fp32 and T the rounding to the dtype (within ``bounds.quick_gelu_bound``).
    """
    if compiled("bias_quick_gelu", x.device, x.dtype):
        return torch.ops.vxl_fast.bias_quick_gelu(x, bias)
    return bias_quick_gelu_ref(x, bias)


def linear_quick_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """CLIP's fc1 and its activation, quick_gelu(x @ weight.T + bias) [..., F]. Where the
    ``bias_quick_gelu`` kernel runs, the GEMM leaves out the bias and the kernel adds it to the
    product rounded to the dtype (in bf16 about 30% of random products' h then differ by an ulp);
    else ``linear_quick_gelu_ref``, the bias inside the GEMM as the PyTorch model does it."""
    if compiled("bias_quick_gelu", x.device, x.dtype):
        return torch.ops.vxl_fast.bias_quick_gelu(F.linear(x, weight), bias)
    return linear_quick_gelu_ref(x, weight, bias)


def rope_kv_write(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  cache_k: torch.Tensor, cache_v: torch.Tensor, start: int) -> torch.Tensor:
    """A step's RoPE and K/V cache write in one pass; returns the rotated queries.

    q: [n, H, d], k, v: [n, Hkv, d] float32/float16/bfloat16 (any strides but the last, e.g. views
    of the fused qkv projection); cos, sin: float32 [P, d]; cache_k, cache_v: [Hkv, C, d] in q's
    dtype; one device, last dims contiguous, d even, 0 <= start, start + n <= C and P. With
    p = start + i: cache_k[:, p] = apply_rope(k[i]), cache_v[:, p] = v[i], and the result, a new
    contiguous [H, n, d], holds apply_rope(q[i]) at [:, i] (``apply_rope``'s bits).
    """
    if compiled("rope_kv_write", q.device, q.dtype):
        return torch.ops.vxl_fast.rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start)
    return rope_kv_write_ref(q, k, v, cos, sin, cache_k, cache_v, start)


def _register_fakes() -> None:
    """Once per process: a schema that has a fake keeps it when this module is imported again
    (torch 2.11's ``register_fake`` refuses a second registration, later ones replace it)."""
    from torch._library.simple_registry import singleton

    for spec in OPS.values():
        for schema, fake in spec.fakes.items():
            if singleton.find(f"vxl_fast::{schema}").fake_impl.kernel is None:
                torch.library.register_fake(f"vxl_fast::{schema}")(fake)


if _ext.available:
    _register_fakes()
