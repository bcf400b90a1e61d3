"""Pure-PyTorch twins of the ``torch.ops.vxl_fast`` ops: the PyTorch composition the model runs and the
goldens record.

They define the semantics the C++/CUDA kernels are tested against, run wherever a compiled kernel does
not (``ops.dispatch``), and raise the same sentences as the C++ checks (``checks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .checks import (FLOATS, check_add_layer_norm, check_bias_quick_gelu, check_clip_embed_layer_norm,
                     check_clip_preprocess, check_clip_preprocess_out, check_fused_add_rms_norm, check_interleave_vst,
                     check_kv_compact, check_rope_kv_write, check_silu_and_mul, check_yuv420_to_rgb)
from .pil_resize import pil_resize_window, resized_shortest_edge


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2 RMSNorm: ``weight * (x32 * rsqrt(mean(x32², -1) + eps)).to(dtype)``, x32 = x.float();
    x: [..., D], weight: [D] (the normalised value is rounded to x's dtype before the weight
    product, as upstream does)."""
    xf = x.float()
    return weight * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x·cos + rotate_half(x)·sin`` in fp32, cast once to x's dtype; x: [..., n, d], cos, sin: fp32
    [n, d] (rows of a RoPE table), rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2])."""
    xf = x.float()
    half = xf.shape[-1] // 2
    return (xf * cos + torch.cat([-xf[..., half:], xf[..., :half]], dim=-1) * sin).to(x.dtype)


def quick_gelu(h: torch.Tensor) -> torch.Tensor:
    """CLIP's ``h * sigmoid(1.702 h)``, each step rounded to h's dtype (sigmoid in fp32)."""
    return h * torch.sigmoid(1.702 * h)


def linear_quick_gelu_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """fc1 and its activation as the PyTorch model runs them: ``quick_gelu(F.linear(x, weight, bias))``
    (the bias added inside the GEMM)."""
    return quick_gelu(F.linear(x, weight, bias))

def rope_kv_write_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
                      sin: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor,
                      start: int) -> torch.Tensor:
    """A step's RoPE and cache write, as the model's PyTorch code does it.

    q: [n, H, d], k, v: [n, Hkv, d] (float32/float16/bfloat16, e.g. views of the fused qkv
    projection); cos, sin: float32 [P, d] full-width tables; cache_k, cache_v: [Hkv, C, d], q's
    dtype; one device, last dims contiguous, d even, 0 <= start, start + n <= C and P. With
    rope(x) = x * cos[p] + rotate_half(x) * sin[p] in float32 cast once, p = start + i:

        cache_k[:, p] = rope(k[i]),  cache_v[:, p] = v[i],  returns q_out [H, n, d], q_out[:, i] = rope(q[i])
    """
    check_rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start)
    n = q.shape[0]
    c, s = cos[start:start + n], sin[start:start + n]
    cache_k[:, start:start + n] = apply_rope(k.transpose(0, 1), c, s)
    cache_v[:, start:start + n] = v.transpose(0, 1)
    return apply_rope(q.transpose(0, 1), c, s).contiguous()


def fused_add_rms_norm_ref(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's residual add followed by Qwen2 RMSNorm, as the model's PyTorch code does it.

    x, residual: [..., D] float32/float16/bfloat16, same dtype and device, last dims contiguous;
    weight: [D], same dtype; eps >= 0. Returns (normed, h), both new contiguous [..., D] tensors:

        h = residual + x                                             (in x's dtype)
        normed = weight * (h32 * rsqrt(mean(h32², -1) + eps)).to(dtype),   h32 = h.float()
    """
    check_fused_add_rms_norm(x, residual, weight, eps)
    h = residual + x
    return rms_norm(h, weight, eps), h


def add_layer_norm_ref(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The CLIP encoder's residual add followed by LayerNorm, as the model's PyTorch code does it.

    x, residual: [..., D] float32/float16/bfloat16, same dtype and device, last dims contiguous;
    weight, bias: [D], same dtype; eps >= 0. Returns (normed, h), both new contiguous [..., D]:

        h = residual + x                                                        (in x's dtype)
        normed = F.layer_norm(h, (D,), weight, bias, eps)
               = ((h32 - mean(h32)) / sqrt(var(h32) + eps) * weight + bias).to(dtype),   h32 = h.float()

    (the biased variance; PyTorch computes the statistics in fp32 for 16-bit inputs).
    """
    check_add_layer_norm(x, residual, weight, bias, eps)
    h = residual + x
    return F.layer_norm(h, (h.shape[-1],), weight, bias, eps), h


def clip_embed_layer_norm_ref(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor,
                              bias: torch.Tensor, eps: float) -> torch.Tensor:
    """CLIP's embeddings and pre-LayerNorm, as the model's PyTorch code does it.

    patches: [F, P, C] float32/float16/bfloat16 (the patch embedding's product); cls: [C]; pos:
    [P + 1, C]; weight, bias: [C]; one dtype and device, last dims contiguous; eps >= 0. Returns a
    new contiguous [F, P + 1, C]:

        F.layer_norm(torch.cat([cls.expand(F, 1, C), patches], 1) + pos, (C,), weight, bias, eps)

    (the sum rounded to the dtype, the statistics in fp32 for 16-bit inputs).
    """
    check_clip_embed_layer_norm(patches, cls, pos, weight, bias, eps)
    f, _, c = patches.shape
    x = torch.cat([cls.expand(f, 1, c), patches], 1) + pos
    return F.layer_norm(x, (c,), weight, bias, eps)


def bias_quick_gelu_ref(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """CLIP's MLP activation of fc1's product without its bias: x [..., F] float32/float16/bfloat16
    (last dim contiguous), bias [F] of x's dtype -> a new [..., F] tensor in x's dtype,

        h = x + bias;   h * torch.sigmoid(1.702 * h)

    (each step rounded to the dtype, sigmoid computed in fp32)."""
    check_bias_quick_gelu(x, bias)
    return quick_gelu(x + bias)


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """SiLU-gated product of the gate and up halves: x [..., 2F] float32/float16/bfloat16 (last dim
    contiguous) -> a new contiguous [..., F] tensor ``F.silu(x[..., :F]) * x[..., F:]`` in x's dtype
    (silu computed in fp32 and rounded, then the product rounded)."""
    check_silu_and_mul(x)
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


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


def kv_compact_ref(cache_k: torch.Tensor, cache_v: torch.Tensor, vst_k: torch.Tensor,
                   vst_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dst: int) -> None:
    """Writes a window's VST keys and values to their final KV slots, in place.

    cache_k, cache_v: [Hkv, C, d] (float32/float16/bfloat16); vst_k, vst_v: [Hkv, nb, d], same
    dtype, the VSTs' keys before RoPE and their values (a buffer apart from the cache); cos, sin:
    float32 [P, d] full-width RoPE tables, P >= dst + nb; d even, dst >= 0, dst + nb <= C; last
    dims contiguous, other strides arbitrary. For every head h and i < nb, with
    x = vst_k[h, i] in float32, p = dst + i, half = d // 2:

        cache_k[h, p, :half] = x[:half] * cos[p, :half] - x[half:] * sin[p, :half]
        cache_k[h, p, half:] = x[half:] * cos[p, half:] + x[:half] * sin[p, half:]
        cache_v[h, p] = vst_v[h, i]

    (x * cos + rotate_half(x) * sin, computed in float32 and cast once to the cache dtype).
    """
    check_kv_compact(cache_k, cache_v, vst_k, vst_v, cos, sin, dst)
    nb = vst_k.shape[1]
    if nb:
        cache_k[:, dst:dst + nb] = apply_rope(vst_k, cos[dst:dst + nb], sin[dst:dst + nb])
        cache_v[:, dst:dst + nb] = vst_v


def clip_preprocess_ref(frames: torch.Tensor, size: int, crop: int, mean: Sequence[float],
                        std: Sequence[float], dtype: torch.dtype = torch.float32,
                        out: torch.Tensor | None = None, patch: int = 0) -> torch.Tensor:
    """CLIP image preprocessing of video frames, bit-exact with ``CLIPImageProcessor`` (Pillow).

    frames: uint8 [T, H, W, 3] RGB, T, H, W >= 1, last dim contiguous; 1 <= crop <= size; mean,
    std: 3 floats each; patch: 0 or a divisor p of crop. Per frame: resize so the short side is
    ``size`` and the long side ``int(size * long / short)`` with Pillow 13's bicubic (``pil_resize``:
    two passes, uint8 in between, in Pillow's order; a pass whose size does not change is skipped);
    take the centre crop [top:top + crop, left:left + crop], top = (out_h - crop) // 2, left
    likewise; then

        x = float32(float64(pixel) * (1 / 255)),   y = (x - float32(mean[c])) / float32(std[c])

    in float32. Returns y as [T, 3, crop, crop] in ``dtype`` (float32, float16 or bfloat16: y cast
    once) on the frames' device; with patch p, as patch rows [T, g * g, 3 p²], g = crop // p,
    ``y.view(T, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(T, g * g, 3 * p * p)``. When ``out``
    is given (float of that shape on the same device, last dim contiguous), writes y cast to out's
    dtype into it and returns it.
    """
    if out is None:
        check_clip_preprocess(frames, size, crop, mean, std, patch)
        if dtype not in FLOATS:
            raise TypeError(f"clip_preprocess: dtype must be torch.float32, torch.float16 or "
                            f"torch.bfloat16, got {dtype}.")
    else:
        check_clip_preprocess_out(frames, size, crop, mean, std, out, patch)
    t, h, w, _ = frames.shape
    out_h, out_w = resized_shortest_edge(h, w, size)
    top, left = (out_h - crop) // 2, (out_w - crop) // 2
    x = pil_resize_window(frames, out_h, out_w, top, left, crop, crop)  # [T, crop, crop, 3] int32
    scaled = (x.double() * (1 / 255)).float()
    mean_t = torch.tensor(mean, dtype=torch.float32, device=frames.device)
    std_t = torch.tensor(std, dtype=torch.float32, device=frames.device)
    y = ((scaled - mean_t) / std_t).permute(0, 3, 1, 2)
    if patch:
        g = crop // patch
        y = y.reshape(t, 3, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(t, g * g, 3 * patch * patch)
    if out is None:
        return y.to(dtype).contiguous()
    out.copy_(y)
    return out


# The matrices of ``yuv420_to_rgb`` by name, in the order of the op's integer ``matrix``, each
# swscale's (crv, cbu, cgu, cgv) in 1/65536 (see csrc/include/vxl_fast/yuv_to_rgb.h).
YUV_MATRICES = {
    "bt601": (104597, 132201, 25675, 53279),
    "bt709": (117489, 138438, 13975, 34925),
    "fcc": (104448, 132798, 24759, 53109),
    "smpte240m": (117579, 136230, 16907, 35559),
    "bt2020": (110013, 140363, 12277, 42626),
}


def yuv_matrix_index(matrix: str) -> int:
    """The op's integer code of a matrix name; ValueError naming the allowed names."""
    names = list(YUV_MATRICES)
    if matrix not in YUV_MATRICES:
        raise ValueError(f"yuv420_to_rgb: unknown matrix {matrix!r}; use one of {', '.join(names)}.")
    return names.index(matrix)


def _round_to_int16(x: int) -> int:
    return max(-0x8000, min(0x7FFF, (x + (1 << 15)) >> 16))


def yuv_to_rgb_coeffs(matrix: str, full_range: bool) -> tuple[int, int, int, int, int, int]:
    """(y_coeff, y_offset, v2r, u2g, v2g, u2b): swscale's 16-bit coefficients (yuv_to_rgb.h)."""
    crv, cbu, cgu, cgv = YUV_MATRICES[matrix]
    cgu, cgv = -cgu, -cgv
    cy, oy = 1 << 16, 0
    if full_range:
        # NOTE: C's integer division, which truncates toward zero (cgu, cgv are negative)
        crv, cbu, cgu, cgv = (_cdiv(c * 224, 255) for c in (crv, cbu, cgu, cgv))
    else:
        cy, oy = cy * 255 // 219, 16 << 16
    return (_round_to_int16(cy * 8192), _round_to_int16(oy * 8), _round_to_int16(crv * 8192),
            _round_to_int16(cgu * 8192), _round_to_int16(cgv * 8192), _round_to_int16(cbu * 8192))


def _cdiv(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def yuv420_to_rgb_ref(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: str = "bt601",
                      full_range: bool = False) -> torch.Tensor:
    """YUV 4:2:0 planes to RGB24 as swscale converts them for PyAV's ``to_ndarray("rgb24")``.

    y: uint8 [T, H, W]; u, v: uint8 [T, (H + 1) // 2, (W + 1) // 2] on y's device, any strides;
    ``matrix`` one of ``YUV_MATRICES``; ``full_range`` for yuvj / color_range=jpeg. Pixel (r, x)
    takes chroma (r // 2, x // 2) and, with the coefficients of ``yuv_to_rgb_coeffs``
    (``>>`` the floor of a division by 65536):

        Y' = ((8 y - y_offset) * y_coeff) >> 16,   U' = 8 u - 1024,   V' = 8 v - 1024
        R = clamp(Y' + ((V' v2r) >> 16)),   G = clamp(Y' + ((U' u2g) >> 16) + ((V' v2g) >> 16)),
        B = clamp(Y' + ((U' u2b) >> 16)),   clamp to [0, 255].

    Returns a new contiguous uint8 [T, H, W, 3].
    """
    index = yuv_matrix_index(matrix)
    check_yuv420_to_rgb(y, u, v)
    y_coeff, y_offset, v2r, u2g, v2g, u2b = yuv_to_rgb_coeffs(list(YUV_MATRICES)[index], full_range)
    _, h, w = y.shape

    def full(c: torch.Tensor) -> torch.Tensor:  # chroma of every pixel: int32 [T, H, W]
        return c.repeat_interleave(2, 1).repeat_interleave(2, 2)[:, :h, :w].to(torch.int32) * 8 - 1024

    luma = ((y.to(torch.int32) * 8 - y_offset) * y_coeff) >> 16
    cu, cv = full(u), full(v)
    rgb = torch.stack((luma + ((cv * v2r) >> 16), luma + ((cu * u2g) >> 16) + ((cv * v2g) >> 16),
                       luma + ((cu * u2b) >> 16)), dim=-1)
    return rgb.clamp_(0, 255).to(torch.uint8)
