"""The argument checks of the ``torch.ops.vxl_fast`` ops, in the order of the C++ impls and with
their sentences (``csrc/checks.cpp``), for the pure-PyTorch reference twins."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def _check_dim(op: str, name: str, t: torch.Tensor, n: int, shape: str) -> None:
    if t.dim() != n:
        raise ValueError(f"{op}: {name} must be a {n}-D tensor {shape}, got {t.dim()} dimensions.")


def _check_floating(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOATS:
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


def _check_same_shape(op: str, name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.shape != ref.shape:
        raise ValueError(f"{op}: {name} must have the shape of {ref_name} ({_shape(ref)}), got {_shape(t)}.")


def _check_rope_tables(op: str, d: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """The head dim ``d`` is even and the RoPE tables cos/sin are [P, d]."""
    if d <= 0 or d % 2:
        raise ValueError(f"{op}: the head dim d must be a positive even number, got {d}.")
    if cos.shape[1] != d:
        raise ValueError(f"{op}: cos must have d = {d} columns, got {cos.shape[1]}.")
    if sin.shape != cos.shape:
        raise ValueError(f"{op}: sin must have the shape of cos ({_shape(cos)}), got {_shape(sin)}.")


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
    _check_same_shape(op, "cache_v", cache_v, "cache_k", cache_k)
    _check_same_shape(op, "vst_v", vst_v, "vst_k", vst_k)
    if vst_k.shape[0] != cache_k.shape[0] or vst_k.shape[2] != cache_k.shape[2]:
        raise ValueError(f"{op}: vst_k [Hkv, nb, d] = {_shape(vst_k)} and cache_k [Hkv, C, d] = "
                         f"{_shape(cache_k)} must have the same Hkv and d.")
    d = cache_k.shape[2]
    _check_rope_tables(op, d, cos, sin)
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
    _check_same_shape(op, "residual", residual, "x", x)
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
    _check_same_shape(op, "residual", residual, "x", x)
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
    _check_same_shape(op, "v", v, "k", k)
    if k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(f"{op}: k [n, Hkv, d] = {_shape(k)} and q [n, H, d] = {_shape(q)} must have "
                         f"the same n and d.")
    _check_same_shape(op, "cache_v", cache_v, "cache_k", cache_k)
    if cache_k.shape[0] != k.shape[1] or cache_k.shape[2] != k.shape[2]:
        raise ValueError(f"{op}: cache_k [Hkv, C, d] = {_shape(cache_k)} and k [n, Hkv, d] = {_shape(k)} "
                         f"must have the same Hkv and d.")
    d = q.shape[2]
    _check_rope_tables(op, d, cos, sin)
    for name in ("q", "k", "v", "cos", "sin", "cache_k", "cache_v"):
        _check_last_dim_contiguous(op, name, named[name])
    n = q.shape[0]
    if start < 0:
        raise ValueError(f"{op}: start must be non-negative, got {start}.")
    if start + n > cache_k.shape[1]:
        raise ValueError(f"{op}: start + n = {start + n} exceeds the cache length C = {cache_k.shape[1]}.")
    if start + n > cos.shape[0]:
        raise ValueError(f"{op}: start + n = {start + n} exceeds the RoPE table length P = {cos.shape[0]}.")


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
