"""Pure-PyTorch twins of the ``torch.ops.vxl_fast`` ops.

They define the semantics the C++/CUDA kernels are tested against, serve as the fallback when the
extension is missing, and raise the same sentences as the C++ checks (``csrc/checks.cpp``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .pil_resize import pil_resize_window, resized_shortest_edge

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


def _check_row_length(op: str, name: str, t: torch.Tensor, width: int, rows: str, dim: str) -> None:
    """``t`` [n] holds one value per element of the rows of ``rows``, which have ``width`` (``dim``)."""
    if t.shape[0] != width:
        raise ValueError(f"{op}: {name} has {t.shape[0]} elements but the rows of {rows} have "
                         f"{dim} = {width}; they must match.")


def _check_eps(op: str, eps: float) -> None:
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"{op}: eps must be finite and non-negative, got {eps:g}.")


def check_clip_preprocess(frames: torch.Tensor, size: int, crop: int, mean: Sequence[float],
                          std: Sequence[float], patch: int = 0) -> None:
    """The argument checks of ``clip_preprocess``, in the order of the C++ impl."""
    op = "clip_preprocess"
    _check_dim(op, "frames", frames, 4, "[T, H, W, 3]")
    _check_dtype(op, "frames", frames, torch.uint8)
    if frames.shape[3] != 3:
        raise ValueError(f"{op}: frames must have 3 channels (RGB) in the last dimension, "
                         f"got {frames.shape[3]}.")
    if frames.shape[0] < 1:
        raise ValueError(f"{op}: frames must hold at least one frame, got T = 0.")
    if frames.shape[1] < 1 or frames.shape[2] < 1:
        raise ValueError(f"{op}: frames must have a non-empty spatial size, got H = {frames.shape[1]}, "
                         f"W = {frames.shape[2]}.")
    _check_last_dim_contiguous(op, "frames", frames)
    if crop < 1:
        raise ValueError(f"{op}: crop must be at least 1, got {crop}.")
    if size < crop:
        raise ValueError(f"{op}: size must be at least crop ({crop}), got {size}.")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise ValueError(f"{op}: {name} must have 3 values (one per channel), got {len(values)}.")
    if patch < 0:
        raise ValueError(f"{op}: patch must be non-negative (0: no patch rows), got {patch}.")
    if patch and crop % patch:
        raise ValueError(f"{op}: crop ({crop}) must be a multiple of patch, got patch = {patch}.")


def clip_preprocess_shape(n_frames: int, crop: int, patch: int) -> list[int]:
    """``clip_preprocess``'s output shape: [T, 3, crop, crop] (patch 0) or [T, (crop / patch)², 3 patch²]."""
    if patch == 0:
        return [n_frames, 3, crop, crop]
    return [n_frames, (crop // patch) ** 2, 3 * patch * patch]


def check_clip_preprocess_out(frames: torch.Tensor, size: int, crop: int, mean: Sequence[float],
                              std: Sequence[float], out: torch.Tensor, patch: int = 0) -> None:
    """The argument checks of ``clip_preprocess_out``, in the order of the C++ impl."""
    op = "clip_preprocess"
    check_clip_preprocess(frames, size, crop, mean, std, patch)
    shape = "[T, 3, crop, crop]" if patch == 0 else "[T, (crop / patch)^2, 3 * patch^2]"
    _check_dim(op, "out", out, 4 if patch == 0 else 3, shape)
    _check_floating(op, "out", out)
    _check_same_device(op, "out", out, "frames", frames)
    expected = clip_preprocess_shape(frames.shape[0], crop, patch)
    if list(out.shape) != expected:
        raise ValueError(f"{op}: out must have shape {shape} = {expected}, got {_shape(out)}.")
    _check_last_dim_contiguous(op, "out", out)


def check_interleave_vst(raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> None:
    """The argument checks of ``interleave_vst``, in the order of the C++ impl."""
    op = "interleave_vst"
    _check_dim(op, "raw", raw, 2, "[Lw, D]")
    _check_dim(op, "vst", vst, 1, "[D]")
    _check_floating(op, "raw", raw)
    _check_same_dtype(op, "vst", vst, "raw", raw)
    _check_same_device(op, "vst", vst, "raw", raw)
    _check_row_length(op, "vst", vst, raw.shape[1], "raw", "D")
    if raw.shape[0] < 1:
        raise ValueError(f"{op}: raw must have at least one row.")
    _check_last_dim_contiguous(op, "raw", raw)
    _check_last_dim_contiguous(op, "vst", vst)
    if ratio < 1:
        raise ValueError(f"{op}: ratio must be at least 1, got {ratio}.")
    if not 0 <= carry < ratio:
        raise ValueError(f"{op}: carry must satisfy 0 <= carry < ratio ({ratio}), got {carry}.")


def check_kv_compact(cache_k: torch.Tensor, cache_v: torch.Tensor, vst_k: torch.Tensor,
                     vst_v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dst: int) -> None:
    """The argument checks of ``kv_compact``, in the order of the C++ impl."""
    op = "kv_compact"
    named = {"cache_k": cache_k, "cache_v": cache_v, "vst_k": vst_k, "vst_v": vst_v, "cos": cos, "sin": sin}
    for name, n, shape in (("cache_k", 3, "[Hkv, C, d]"), ("cache_v", 3, "[Hkv, C, d]"),
                           ("vst_k", 3, "[Hkv, nb, d]"), ("vst_v", 3, "[Hkv, nb, d]"),
                           ("cos", 2, "[P, d]"), ("sin", 2, "[P, d]")):
        _check_dim(op, name, named[name], n, shape)
    _check_floating(op, "cache_k", cache_k)
    for name in ("cache_v", "vst_k", "vst_v"):
        _check_same_dtype(op, name, named[name], "cache_k", cache_k)
    _check_dtype(op, "cos", cos, torch.float32)
    _check_dtype(op, "sin", sin, torch.float32)
    for name in ("cache_v", "vst_k", "vst_v", "cos", "sin"):
        _check_same_device(op, name, named[name], "cache_k", cache_k)
    if cache_v.shape != cache_k.shape:
        raise ValueError(f"{op}: cache_v must have the shape of cache_k ({_shape(cache_k)}), "
                         f"got {_shape(cache_v)}.")
    if vst_v.shape != vst_k.shape:
        raise ValueError(f"{op}: vst_v must have the shape of vst_k ({_shape(vst_k)}), got {_shape(vst_v)}.")
    if vst_k.shape[0] != cache_k.shape[0] or vst_k.shape[2] != cache_k.shape[2]:
        raise ValueError(f"{op}: vst_k [Hkv, nb, d] = {_shape(vst_k)} and cache_k [Hkv, C, d] = "
                         f"{_shape(cache_k)} must have the same Hkv and d.")
    d = cache_k.shape[2]
    if d <= 0 or d % 2:
        raise ValueError(f"{op}: the head dim d must be a positive even number, got {d}.")
    if cos.shape[1] != d:
        raise ValueError(f"{op}: cos must have d = {d} columns, got {cos.shape[1]}.")
    if sin.shape != cos.shape:
        raise ValueError(f"{op}: sin must have the shape of cos ({_shape(cos)}), got {_shape(sin)}.")
    for name in ("cache_k", "cache_v", "vst_k", "vst_v", "cos", "sin"):
        _check_last_dim_contiguous(op, name, named[name])
    nb = vst_k.shape[1]
    if dst < 0:
        raise ValueError(f"{op}: dst must be non-negative, got {dst}.")
    if dst + nb > cache_k.shape[1]:
        raise ValueError(f"{op}: dst + nb = {dst + nb} exceeds the cache length "
                         f"C = {cache_k.shape[1]}.")
    if dst + nb > cos.shape[0]:
        raise ValueError(f"{op}: dst + nb = {dst + nb} exceeds the RoPE table length "
                         f"P = {cos.shape[0]}.")


def check_fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                             eps: float) -> None:
    """The argument checks of ``fused_add_rms_norm``, in the order of the C++ impl."""
    op = "fused_add_rms_norm"
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have at least one dimension [..., D], got 0.")
    _check_dim(op, "weight", weight, 1, "[D]")
    _check_floating(op, "x", x)
    _check_same_dtype(op, "residual", residual, "x", x)
    _check_same_dtype(op, "weight", weight, "x", x)
    _check_same_device(op, "residual", residual, "x", x)
    _check_same_device(op, "weight", weight, "x", x)
    if residual.shape != x.shape:
        raise ValueError(f"{op}: residual must have the shape of x ({_shape(x)}), got {_shape(residual)}.")
    if x.shape[-1] < 1:
        raise ValueError(f"{op}: x must have a non-empty last dimension, got D = 0.")
    _check_row_length(op, "weight", weight, x.shape[-1], "x", "D")
    for name, t in (("x", x), ("residual", residual), ("weight", weight)):
        _check_last_dim_contiguous(op, name, t)
    _check_eps(op, eps)


def check_add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                         eps: float) -> None:
    """The argument checks of ``add_layer_norm``, in the order of the C++ impl."""
    op = "add_layer_norm"
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have at least one dimension [..., D], got 0.")
    _check_dim(op, "weight", weight, 1, "[D]")
    _check_dim(op, "bias", bias, 1, "[D]")
    _check_floating(op, "x", x)
    for name, t in (("residual", residual), ("weight", weight), ("bias", bias)):
        _check_same_dtype(op, name, t, "x", x)
    for name, t in (("residual", residual), ("weight", weight), ("bias", bias)):
        _check_same_device(op, name, t, "x", x)
    if residual.shape != x.shape:
        raise ValueError(f"{op}: residual must have the shape of x ({_shape(x)}), got {_shape(residual)}.")
    if x.shape[-1] < 1:
        raise ValueError(f"{op}: x must have a non-empty last dimension, got D = 0.")
    for name, t in (("weight", weight), ("bias", bias)):
        _check_row_length(op, name, t, x.shape[-1], "x", "D")
    for name, t in (("x", x), ("residual", residual), ("weight", weight), ("bias", bias)):
        _check_last_dim_contiguous(op, name, t)
    _check_eps(op, eps)


def check_clip_embed_layer_norm(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor,
                                weight: torch.Tensor, bias: torch.Tensor, eps: float) -> None:
    """The argument checks of ``clip_embed_layer_norm``, in the order of the C++ impl."""
    op = "clip_embed_layer_norm"
    named = {"patches": patches, "cls": cls, "pos": pos, "weight": weight, "bias": bias}
    for name, n, shape in (("patches", 3, "[F, P, C]"), ("cls", 1, "[C]"), ("pos", 2, "[P + 1, C]"),
                           ("weight", 1, "[C]"), ("bias", 1, "[C]")):
        _check_dim(op, name, named[name], n, shape)
    _check_floating(op, "patches", patches)
    for name in ("cls", "pos", "weight", "bias"):
        _check_same_dtype(op, name, named[name], "patches", patches)
    for name in ("cls", "pos", "weight", "bias"):
        _check_same_device(op, name, named[name], "patches", patches)
    c = patches.shape[2]
    if c < 1:
        raise ValueError(f"{op}: patches must have a non-empty last dimension, got C = 0.")
    for name in ("cls", "weight", "bias"):
        _check_row_length(op, name, named[name], c, "patches", "C")
    expected = [patches.shape[1] + 1, c]
    if list(pos.shape) != expected:
        raise ValueError(f"{op}: pos must have shape [P + 1, C] = {expected}, got {_shape(pos)}.")
    for name, t in named.items():
        _check_last_dim_contiguous(op, name, t)
    _check_eps(op, eps)


def check_bias_quick_gelu(x: torch.Tensor, bias: torch.Tensor) -> None:
    """The argument checks of ``bias_quick_gelu``, in the order of the C++ impl."""
    op = "bias_quick_gelu"
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have at least one dimension [..., F], got 0.")
    _check_dim(op, "bias", bias, 1, "[F]")
    _check_floating(op, "x", x)
    _check_same_dtype(op, "bias", bias, "x", x)
    _check_same_device(op, "bias", bias, "x", x)
    if x.shape[-1] < 1:
        raise ValueError(f"{op}: x must have a non-empty last dimension, got F = 0.")
    _check_row_length(op, "bias", bias, x.shape[-1], "x", "F")
    _check_last_dim_contiguous(op, "x", x)
    _check_last_dim_contiguous(op, "bias", bias)


def check_silu_and_mul(x: torch.Tensor) -> None:
    """The argument checks of ``silu_and_mul``, in the order of the C++ impl."""
    op = "silu_and_mul"
    if x.dim() < 1:
        raise ValueError(f"{op}: x must have at least one dimension [..., 2F], got 0.")
    _check_floating(op, "x", x)
    if x.shape[-1] < 2 or x.shape[-1] % 2:
        raise ValueError(f"{op}: the last dimension of x (gate and up halves) must be a positive even "
                         f"number, got {x.shape[-1]}.")
    _check_last_dim_contiguous(op, "x", x)


def check_rope_kv_write(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor,
                        sin: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, start: int) -> None:
    """The argument checks of ``rope_kv_write``, in the order of the C++ impl."""
    op = "rope_kv_write"
    named = {"q": q, "k": k, "v": v, "cos": cos, "sin": sin, "cache_k": cache_k, "cache_v": cache_v}
    for name, n, shape in (("q", 3, "[n, H, d]"), ("k", 3, "[n, Hkv, d]"), ("v", 3, "[n, Hkv, d]"),
                           ("cos", 2, "[P, d]"), ("sin", 2, "[P, d]"), ("cache_k", 3, "[Hkv, C, d]"),
                           ("cache_v", 3, "[Hkv, C, d]")):
        _check_dim(op, name, named[name], n, shape)
    _check_floating(op, "q", q)
    for name in ("k", "v", "cache_k", "cache_v"):
        _check_same_dtype(op, name, named[name], "q", q)
    _check_dtype(op, "cos", cos, torch.float32)
    _check_dtype(op, "sin", sin, torch.float32)
    for name in ("k", "v", "cos", "sin", "cache_k", "cache_v"):
        _check_same_device(op, name, named[name], "q", q)
    if v.shape != k.shape:
        raise ValueError(f"{op}: v must have the shape of k ({_shape(k)}), got {_shape(v)}.")
    if k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(f"{op}: k [n, Hkv, d] = {_shape(k)} and q [n, H, d] = {_shape(q)} must have "
                         f"the same n and d.")
    if cache_v.shape != cache_k.shape:
        raise ValueError(f"{op}: cache_v must have the shape of cache_k ({_shape(cache_k)}), "
                         f"got {_shape(cache_v)}.")
    if cache_k.shape[0] != k.shape[1] or cache_k.shape[2] != k.shape[2]:
        raise ValueError(f"{op}: cache_k [Hkv, C, d] = {_shape(cache_k)} and k [n, Hkv, d] = {_shape(k)} "
                         f"must have the same Hkv and d.")
    d = q.shape[2]
    if d <= 0 or d % 2:
        raise ValueError(f"{op}: the head dim d must be a positive even number, got {d}.")
    if cos.shape[1] != d:
        raise ValueError(f"{op}: cos must have d = {d} columns, got {cos.shape[1]}.")
    if sin.shape != cos.shape:
        raise ValueError(f"{op}: sin must have the shape of cos ({_shape(cos)}), got {_shape(sin)}.")
    for name in ("q", "k", "v", "cos", "sin", "cache_k", "cache_v"):
        _check_last_dim_contiguous(op, name, named[name])
    n = q.shape[0]
    if start < 0:
        raise ValueError(f"{op}: start must be non-negative, got {start}.")
    if start + n > cache_k.shape[1]:
        raise ValueError(f"{op}: start + n = {start + n} exceeds the cache length C = {cache_k.shape[1]}.")
    if start + n > cos.shape[0]:
        raise ValueError(f"{op}: start + n = {start + n} exceeds the RoPE table length P = {cos.shape[0]}.")


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
    n, half = q.shape[0], q.shape[2] // 2
    c, s = cos[start:start + n], sin[start:start + n]

    def rope(x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
        return (xf * c + rotated * s).to(x.dtype)
    cache_k[:, start:start + n] = rope(k.transpose(0, 1))
    cache_v[:, start:start + n] = v.transpose(0, 1)
    return rope(q.transpose(0, 1)).contiguous()


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
    hf = h.float()
    hf = hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * hf.to(x.dtype), h


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
    return torch.nn.functional.layer_norm(h, (h.shape[-1],), weight, bias, eps), h


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
    return torch.nn.functional.layer_norm(x, (c,), weight, bias, eps)


def bias_quick_gelu_ref(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """CLIP's MLP activation of fc1's product without its bias: x [..., F] float32/float16/bfloat16
    (last dim contiguous), bias [F] of x's dtype -> a new [..., F] tensor in x's dtype,

        h = x + bias;   h * torch.sigmoid(1.702 * h)

    (each step rounded to the dtype, sigmoid computed in fp32)."""
    check_bias_quick_gelu(x, bias)
    h = x + bias
    return h * torch.sigmoid(1.702 * h)


def silu_and_mul_ref(x: torch.Tensor) -> torch.Tensor:
    """SiLU-gated product of the gate and up halves: x [..., 2F] float32/float16/bfloat16 (last dim
    contiguous) -> a new contiguous [..., F] tensor ``F.silu(x[..., :F]) * x[..., F:]`` in x's dtype
    (silu computed in fp32 and rounded, then the product rounded)."""
    check_silu_and_mul(x)
    gate, up = x.chunk(2, dim=-1)
    return torch.nn.functional.silu(gate) * up


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
        half = cache_k.shape[2] // 2
        x = vst_k.float()
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        cache_k[:, dst:dst + nb] = x * cos[dst:dst + nb] + rotated * sin[dst:dst + nb]
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
        if dtype not in _FLOATS:
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


def check_yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> None:
    """The argument checks of ``yuv420_to_rgb``, in the order of the C++ impl (the matrix name is
    checked by ``yuv_matrix_index``)."""
    op = "yuv420_to_rgb"
    _check_dim(op, "y", y, 3, "[T, H, W]")
    _check_dim(op, "u", u, 3, "[T, (H + 1) / 2, (W + 1) / 2]")
    _check_dim(op, "v", v, 3, "[T, (H + 1) / 2, (W + 1) / 2]")
    for name, t in (("y", y), ("u", u), ("v", v)):
        _check_dtype(op, name, t, torch.uint8)
    _check_same_device(op, "u", u, "y", y)
    _check_same_device(op, "v", v, "y", y)
    if min(y.shape) < 1:
        raise ValueError(f"{op}: y must hold at least one frame of at least one pixel, got shape "
                         f"{_shape(y)}.")
    chroma = [y.shape[0], (y.shape[1] + 1) // 2, (y.shape[2] + 1) // 2]
    for name, t in (("u", u), ("v", v)):
        if list(t.shape) != chroma:
            raise ValueError(f"{op}: {name} must have shape [T, (H + 1) / 2, (W + 1) / 2] = {chroma}, "
                             f"got {_shape(t)}.")


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
