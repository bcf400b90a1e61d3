"""Custom ops: thin wrappers over ``torch.ops.vxl_fast``, with pure-PyTorch fallbacks.

Each wrapper runs the compiled kernel for the tensors' device when the extension provides one
(CPU always, CUDA when built with CUDA) and ``selfcheck`` allows it (``VXL_KERNELS``; a CUDA
kernel is checked against its twin at first use), else its reference twin from ``reference.py``,
warning once per process about a missing extension. Shapes and formulas are in the wrappers' docstrings.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence

import torch

from .. import _ext
from . import selfcheck
from .reference import (YUV_MATRICES, add_layer_norm_ref, bias_quick_gelu_ref, clip_embed_layer_norm_ref,
                        clip_preprocess_ref, clip_preprocess_shape, fused_add_rms_norm_ref, interleave_vst_ref, kv_compact_ref, rope_kv_write_ref, silu_and_mul_ref,
                        yuv420_to_rgb_ref, yuv_matrix_index)

__all__ = ["add_layer_norm", "bias_quick_gelu", "clip_embed_layer_norm", "clip_preprocess", "fused_add_rms_norm", "interleave_vst", "kv_compact",
           "rope_kv_write", "silu_and_mul", "yuv420_to_rgb", "nv12_to_rgb", "vst_slots", "raw_slots",
           "add_layer_norm_ref", "bias_quick_gelu_ref", "clip_embed_layer_norm_ref", "clip_preprocess_ref", "fused_add_rms_norm_ref",
           "interleave_vst_ref", "kv_compact_ref", "rope_kv_write_ref", "silu_and_mul_ref", "yuv420_to_rgb_ref",
           "YUV_MATRICES", "reference_only"]

# NOTE: looked up once, so that torch.compile sees a constant rather than a dispatcher query.
_CUDA_KERNELS = frozenset(
    name for name in ("add_layer_norm", "bias_quick_gelu", "clip_embed_layer_norm", "clip_preprocess",
                      "fused_add_rms_norm", "interleave_vst",
                      "kv_compact", "rope_kv_write", "silu_and_mul", "yuv420_to_rgb")
    if _ext.available and torch._C._dispatch_has_kernel_for_dispatch_key(f"vxl_fast::{name}", "CUDA"))
_warned = False
_use_kernels = True


@contextlib.contextmanager
def reference_only():
    """Run every op through its pure-PyTorch reference twin inside this block (the baseline of
    the benchmarks)."""
    global _use_kernels
    previous, _use_kernels = _use_kernels, False
    try:
        yield
    finally:
        _use_kernels = previous


def _has_kernel(name: str, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether ``vxl_fast::<name>`` runs on ``device`` for ``dtype``: built for the device and
    allowed by ``selfcheck`` (VXL_KERNELS; warns once per process if the extension is missing)."""
    global _warned
    if not _use_kernels:
        return False
    if not _ext.available:
        reason = f"the vxl_fast._C extension failed to load ({_ext.error}); {_ext.REBUILD_HINT}"
    elif device.type == "cuda" and name not in _CUDA_KERNELS:
        reason = f"vxl_fast._C was built without CUDA kernels; {_ext.REBUILD_HINT}"
    else:
        return selfcheck.kernel_enabled(name, device, dtype)
    if not _warned:
        _warned = True
        warnings.warn(f"vxl_fast ops fall back to the pure-PyTorch reference: {reason}",
                      RuntimeWarning, stacklevel=3)
    return False


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
       Pillow 13's bicubic resampler (two 8-bit fixed-point passes in Pillow's order, see
       ``pil_resize``; a pass whose size does not change is skipped, so a frame whose short side
       is ``size`` is not resampled);
    2. centre crop [top:top + crop, left:left + crop], top = (out_h - crop) // 2, left likewise;
    3. x = float32(float64(pixel) * (1 / 255)); 4. y = (x - float32(mean[c])) / float32(std[c]).

    Returns y as a new [T, 3, crop, crop] tensor in ``dtype`` (float32, float16 or bfloat16: the
    float32 value cast once) on the frames' device. With ``patch`` p > 0 (a divisor of crop) it
    returns the patch embedding's input instead, patch rows [T, g * g, 3 p²], g = crop // p, with
    y[t, c, y, x] at [t, (y // p) * g + x // p, c * p² + (y % p) * p + x % p] (the same values as
    the default layout permuted, bit for bit). With ``out`` (float32/float16/bfloat16 of that
    shape on that device, last dim contiguous, e.g. a slice of a bigger buffer), writes y cast to
    out's dtype into it and returns it (``dtype`` is then ignored). Only the pixels of the crop
    window are resampled.
    """
    if _has_kernel("clip_preprocess", frames.device, dtype if out is None else out.dtype):
        mean, std = [float(m) for m in mean], [float(s) for s in std]
        if out is None:
            return torch.ops.vxl_fast.clip_preprocess(frames, size, crop, mean, std, dtype, patch)
        torch.ops.vxl_fast.clip_preprocess_out(frames, size, crop, mean, std, out, patch)
        return out
    return clip_preprocess_ref(frames, size, crop, mean, std, dtype, out=out, patch=patch)


def interleave_vst(raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> torch.Tensor:
    """One compression window's input rows with Visual Summary Token rows interleaved.

    raw: [Lw, D] float32/float16/bfloat16, Lw >= 1, last dim contiguous; vst: [D], same dtype and
    device (the VST embedding row); ratio >= 1 raw rows per VST; 0 <= carry < ratio raw rows of
    the first group already seen in the previous window. Returns a new contiguous [Lw + nb, D]
    tensor, nb = (Lw + carry) // ratio: slot j is a copy of vst iff j % (ratio + 1) == ratio - carry
    (see ``vst_slots``), and the raw rows fill the other slots in order. With carry 0:
    ratio raw rows, a VST, ratio raw rows, a VST, ..., then the < ratio leftover raw rows.
    """
    if _has_kernel("interleave_vst", raw.device, raw.dtype):
        return torch.ops.vxl_fast.interleave_vst(raw, vst, ratio, carry)
    return interleave_vst_ref(raw, vst, ratio, carry)


def kv_compact(cache_k: torch.Tensor, cache_v: torch.Tensor, vst_k: torch.Tensor, vst_v: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, dst: int) -> None:
    """Writes a window's VST keys and values to their final KV slots, in place.

    cache_k, cache_v: [Hkv, C, d] one layer's cache (float32/float16/bfloat16); vst_k, vst_v:
    [Hkv, nb, d], same dtype, the VSTs' keys before RoPE and their values, staged apart from the
    cache (nb may be 0); cos, sin: float32 [P, d] full-width RoPE tables, P >= dst + nb. All on
    one device, last dims contiguous, other strides arbitrary; d even, dst >= 0, dst + nb <= C.
    For every head h and i < nb, with x = vst_k[h, i] in float32, p = dst + i, half = d // 2:

        cache_k[h, p, :half] = x[:half] * cos[p, :half] - x[half:] * sin[p, :half]
        cache_k[h, p, half:] = x[half:] * cos[p, half:] + x[:half] * sin[p, half:]
        cache_v[h, p] = vst_v[h, i]

    (x * cos + rotate_half(x) * sin in float32, cast once to the cache dtype). Slots after
    dst + nb are left as they are.
    """
    if _has_kernel("kv_compact", cache_k.device, cache_k.dtype):
        torch.ops.vxl_fast.kv_compact(cache_k, cache_v, vst_k, vst_v, cos, sin, dst)
    else:
        kv_compact_ref(cache_k, cache_v, vst_k, vst_v, cos, sin, dst)


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str = "bt601",
                  full_range: bool = False) -> torch.Tensor:
    """Decoded YUV 4:2:0 planes to RGB24, bit-exact with PyAV's ``frame.to_ndarray(format="rgb24")``.

    y: uint8 [T, H, W]; u, v: uint8 [T, (H + 1) // 2, (W + 1) // 2], all on one device, any
    strides; ``matrix``: one of ``YUV_MATRICES`` (bt601, bt709, fcc, smpte240m, bt2020);
    ``full_range``: the planes use 0..255 (yuvj formats, color_range=jpeg), else 16..235/240.
    Returns a new contiguous uint8 [T, H, W, 3]. Chroma is duplicated, not interpolated, and the
    arithmetic is swscale's 16-bit fixed point (formulas in ``yuv420_to_rgb_ref``); it equals
    PyAV/FFmpeg 8 on x86-64 for every frame of even height. NOTE: swscale sends frames of odd
    height through its general scaler, which interpolates chroma vertically; there it differs.
    """
    index = yuv_matrix_index(matrix)
    if _has_kernel("yuv420_to_rgb", y.device, torch.uint8):
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

    x, residual: [..., D] float32/float16/bfloat16, same dtype and device, last dims contiguous
    (other strides arbitrary), D >= 1; weight: [D], same dtype; eps >= 0 finite. Returns (normed, h),
    new contiguous [..., D] tensors in x's dtype:

        h = residual + x                                   (rounded to the dtype, as the model adds)
        normed = weight * (h32 / sqrt(mean(h32², -1) + eps)).to(dtype),   h32 = h.float()

    h is bit-identical to ``residual + x``. normed is not bit-identical to the PyTorch composition
    (``fused_add_rms_norm_ref``): the sum of squares runs in another order (32 lane-strided partial
    sums and a butterfly, csrc/include/vxl_fast/rms_norm.h) and 1 / sqrt is rounded division of a
    rounded square root where PyTorch's rsqrt is an approximation. Before the roundings to the dtype,
    h32 · r is within (4 · ceil(D / 256) + 7) fp32 units of roundoff of its exact value (the sum's
    m = 8 · ceil(D / 256) terms per lane and 5 butterfly levels, halved by the square root, plus
    the division, sqrt, reciprocal and product); so in fp32 the two differ by a few ulp, and in
    bf16/fp16 by one ulp where a value lies that close to a rounding boundary, else not at all.
    """
    if _has_kernel("fused_add_rms_norm", x.device, x.dtype):
        return torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, eps)
    return fused_add_rms_norm_ref(x, residual, weight, eps)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """The MLP's SiLU-gated product: x [..., 2F] = cat(gate, up) float32/float16/bfloat16, last dim
    contiguous (other strides arbitrary) -> a new contiguous [..., F] tensor in x's dtype,

        out = T(float(T(silu(float(gate)))) * float(up)),   silu(g) = g / (1 + exp(-g)) in fp32

    the rounding of ``F.silu(gate) * up``. On CUDA it is PyTorch's own formula (CUDA expf, IEEE
    division); the CPU impl uses libm's exp where PyTorch's CPU silu uses a vectorised exp, so in
    fp32 the two may differ by an ulp or two of silu before the product.
    """
    if _has_kernel("silu_and_mul", x.device, x.dtype):
        return torch.ops.vxl_fast.silu_and_mul(x)
    return silu_and_mul_ref(x)


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The CLIP encoder's residual add, then LayerNorm with fp32 statistics, in one pass.

    x, residual: [..., D] float32/float16/bfloat16, same dtype and device, last dims contiguous
    (other strides arbitrary), D >= 1; weight, bias: [D], same dtype; eps >= 0 finite. Returns
    (normed, h), new contiguous [..., D] tensors in x's dtype:

        h = residual + x                     (rounded to the dtype, as ``x = x + attn(...)`` adds)
        normed = ((h32 - mean) * rstd * weight + bias).to(dtype),   h32 = h.float(),
        mean = mean(h32, -1),  rstd = 1 / sqrt(mean((h32 - mean)², -1) + eps)

    all in fp32 and rounded once to the dtype, as ``nn.LayerNorm`` computes a bf16 row on CUDA. h is
    bit-identical to ``residual + x``. normed is not bit-identical to ``F.layer_norm``
    (``add_layer_norm_ref``): the two sums run in another order (32 lane-strided partial sums and a
    butterfly, csrc/include/vxl_fast/layer_norm.h), the variance is the two-pass one where PyTorch
    uses Welford's update, and 1 / sqrt is rounded division of a rounded square root where PyTorch's
    rsqrt is an approximation. With u = 2^-24, m = 8 · ceil(D / 256) + 5 additions along a sum's
    longest path, z = (h32 - mean) · rstd exact and sigma = 1 / rstd exact, each value before the
    rounding to the dtype is within

        u · ((m / 2 + 8) · |weight · z| + (m + 2) · |weight| · mean(|h32|) / sigma + 2 · |normed|)

    of its exact value, to first order in u (the mean's error, relative to sigma, is the middle
    term; the variance's terms are all non-negative, so its error is relative). PyTorch's fp32
    result has an error of the same order, so in fp32 the two differ by a few ulp, and in bf16/fp16
    by one ulp where a value lies that close to a rounding boundary, else not at all.
    """
    if _has_kernel("add_layer_norm", x.device, x.dtype):
        return torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, eps)
    return add_layer_norm_ref(x, residual, weight, bias, eps)


def clip_embed_layer_norm(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor, eps: float) -> torch.Tensor:
    """CLIP's embeddings and pre-LayerNorm in one pass: the class token before each frame's patch
    rows, the position embedding added, then LayerNorm with fp32 statistics.

    patches: [F, P, C] float32/float16/bfloat16 (the patch embedding's product, any strides but the
    last); cls: [C]; pos: [P + 1, C]; weight, bias: [C]; one dtype and device, last dims contiguous,
    C >= 1; eps >= 0 finite. Returns a new contiguous [F, P + 1, C] in patches' dtype:

        h[f] = cat([cls, patches[f]]) + pos             (rounded to the dtype, as the model adds)
        out = ((h32 - mean) * rstd * weight + bias).to(dtype),   h32 = h.float()

    each row as ``add_layer_norm`` normalises its h (same kernel row), so with the same bound
    against ``F.layer_norm`` (``clip_embed_layer_norm_ref``): a few fp32 ulp, and in bf16/fp16 one
    ulp where a value lies that close to a rounding boundary, else none.
    """
    if _has_kernel("clip_embed_layer_norm", patches.device, patches.dtype):
        return torch.ops.vxl_fast.clip_embed_layer_norm(patches, cls, pos, weight, bias, eps)
    return clip_embed_layer_norm_ref(patches, cls, pos, weight, bias, eps)


def bias_quick_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """CLIP's MLP activation with fc1's bias add fused in: x [..., F] float32/float16/bfloat16 (fc1's
    product without its bias; last dim contiguous, other strides arbitrary), bias [F] of x's dtype
    and device -> a new contiguous [..., F] tensor in x's dtype,

        h = T(x + bias),  t = T(1.702 · h),  s = T(1 / (1 + exp(-t))),  y = T(h · s)

    with each step in fp32 and T the rounding to the dtype: exactly PyTorch's rounding of
    ``h = x + bias; h * torch.sigmoid(1.702 * h)`` (``bias_quick_gelu_ref``), step for step. On
    CUDA it is PyTorch's own formula (CUDA expf, IEEE division), so the bits are the same; the CPU
    impl uses libm's exp where PyTorch's CPU sigmoid uses a vectorised exp, so in fp32 the two may
    differ by an ulp or two of the sigmoid before the product.
    """
    if _has_kernel("bias_quick_gelu", x.device, x.dtype):
        return torch.ops.vxl_fast.bias_quick_gelu(x, bias)
    return bias_quick_gelu_ref(x, bias)


def rope_kv_write(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  cache_k: torch.Tensor, cache_v: torch.Tensor, start: int) -> torch.Tensor:
    """A step's RoPE and K/V cache write in one pass; returns the rotated queries.

    q: [n, H, d], k, v: [n, Hkv, d] float32/float16/bfloat16 (any strides but the last, e.g. views
    of the fused qkv projection); cos, sin: float32 [P, d] full-width RoPE tables; cache_k,
    cache_v: [Hkv, C, d] one layer's cache in q's dtype; one device, last dims contiguous, d even,
    0 <= start, start + n <= C and P. For row i at p = start + i, half = d // 2, with x in float32:

        rope(x)[:half] = x[:half] * cos[p, :half] - x[half:] * sin[p, :half]
        rope(x)[half:] = x[half:] * cos[p, half:] + x[:half] * sin[p, half:]

    cast once to the dtype: cache_k[:, p] = rope(k[i]), cache_v[:, p] = v[i], and the result, a new
    contiguous [H, n, d] tensor, holds rope(q[i]) at [:, i]. Each product and sum is a separate fp32
    operation, as in ``layers.rotary.apply_rope``: the same bits.
    """
    if _has_kernel("rope_kv_write", q.device, q.dtype):
        return torch.ops.vxl_fast.rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start)
    return rope_kv_write_ref(q, k, v, cos, sin, cache_k, cache_v, start)


if _ext.available:

    @torch.library.register_fake("vxl_fast::rope_kv_write")
    def _rope_kv_write_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
                            sin: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor,
                            start: int) -> torch.Tensor:
        return q.new_empty((q.shape[1], q.shape[0], q.shape[2]))

    @torch.library.register_fake("vxl_fast::fused_add_rms_norm")
    def _fused_add_rms_norm_fake(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return x.new_empty(x.shape), x.new_empty(x.shape)

    @torch.library.register_fake("vxl_fast::add_layer_norm")
    def _add_layer_norm_fake(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                             eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        return x.new_empty(x.shape), x.new_empty(x.shape)

    @torch.library.register_fake("vxl_fast::clip_embed_layer_norm")
    def _clip_embed_layer_norm_fake(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor,
                                    bias: torch.Tensor, eps: float) -> torch.Tensor:
        f, p, c = patches.shape
        return patches.new_empty((f, p + 1, c))

    @torch.library.register_fake("vxl_fast::bias_quick_gelu")
    def _bias_quick_gelu_fake(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return x.new_empty(x.shape)

    @torch.library.register_fake("vxl_fast::silu_and_mul")
    def _silu_and_mul_fake(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty((*x.shape[:-1], x.shape[-1] // 2))

    @torch.library.register_fake("vxl_fast::clip_preprocess")
    def _clip_preprocess_fake(frames: torch.Tensor, size: int, crop: int, mean: list[float],
                              std: list[float], dtype: torch.dtype, patch: int = 0) -> torch.Tensor:
        return frames.new_empty(clip_preprocess_shape(frames.shape[0], crop, patch), dtype=dtype)

    @torch.library.register_fake("vxl_fast::clip_preprocess_out")
    def _clip_preprocess_out_fake(frames: torch.Tensor, size: int, crop: int, mean: list[float],
                                  std: list[float], out: torch.Tensor, patch: int = 0) -> None:
        return None

    @torch.library.register_fake("vxl_fast::interleave_vst")
    def _interleave_vst_fake(raw: torch.Tensor, vst: torch.Tensor, ratio: int,
                             carry: int) -> torch.Tensor:
        n_raw, d = raw.shape
        return raw.new_empty((n_raw + (n_raw + carry) // ratio, d))

    @torch.library.register_fake("vxl_fast::yuv420_to_rgb")
    def _yuv420_to_rgb_fake(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: int,
                            full_range: bool) -> torch.Tensor:
        return y.new_empty((*y.shape, 3))

    @torch.library.register_fake("vxl_fast::kv_compact")
    def _kv_compact_fake(cache_k: torch.Tensor, cache_v: torch.Tensor, vst_k: torch.Tensor,
                         vst_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dst: int) -> None:
        return None
