"""First-contact self-check of the compiled ops: before a custom op first runs on a CUDA device for
a dtype, it runs once on a small input and is compared with its reference twin (a few ms, once
per process, op, device and dtype). An op that disagrees, or raises, is disabled there with one
warning naming it, and the wrappers in ``ops/__init__.py`` take the reference path instead.

``VXL_KERNELS`` (read at import) sets the policy:

- ``check`` (default): the self-check above;
- ``trust``: run the compiled ops without checking them;
- ``off``: never run the compiled ops; the pure-PyTorch reference everywhere.

The CPU impls are not checked here (CI tests them); ``CHECKED_DEVICE_TYPES`` lists the device
types that are. NOTE: the check allocates and synchronises, so the first call for an (op, device,
dtype) must not happen inside CUDA graph capture; a warm-up run before capture makes that call.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch

from .reference import (YUV_MATRICES, add_layer_norm_ref, bias_quick_gelu_ref, clip_embed_layer_norm_ref,
                        clip_preprocess_ref, clip_preprocess_shape, fused_add_rms_norm_ref, interleave_vst_ref, kv_compact_ref, rope_kv_write_ref, silu_and_mul_ref,
                        yuv420_to_rgb_ref)

MODES = ("off", "check", "trust")


def _mode_from_env() -> str:
    value = os.environ.get("VXL_KERNELS", "check").strip().lower() or "check"
    if value not in MODES:
        raise ValueError(f"VXL_KERNELS must be one of off, check or trust, got {value!r}.")
    return value


MODE = _mode_from_env()
CHECKED_DEVICE_TYPES = frozenset({"cuda"})
# (op, device, dtype) -> whether the compiled op agreed with its reference twin there
_verdicts: dict[tuple[str, torch.device, torch.dtype], bool] = {}


def kernel_enabled(name: str, device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the compiled op ``name`` may run on ``device`` for ``dtype`` under ``MODE``; in
    check mode the first call for a checked device type runs ``check_op`` (warning if it fails)."""
    if MODE == "off":
        return False
    if MODE == "trust" or device.type not in CHECKED_DEVICE_TYPES:
        return True
    key = (name, device, dtype)
    if key not in _verdicts:
        problem = check_op(name, device, dtype)
        _verdicts[key] = problem is None
        if problem is not None:
            warnings.warn(f"vxl_fast: the {name} kernel failed its self-check on {device} for {dtype} "
                          f"({problem}); {name} uses the pure-PyTorch reference there "
                          f"(VXL_KERNELS=trust skips the check).", RuntimeWarning, stacklevel=4)
    return _verdicts[key]


def check_op(name: str, device: torch.device, dtype: torch.dtype) -> str | None:
    """Runs ``torch.ops.vxl_fast.<name>`` (and its ``_out`` variant) once on a small input on
    ``device`` in ``dtype`` and compares it with the reference twin: None if they agree, else
    what differed (or what the op raised)."""
    try:
        return _CHECKS[name](device, dtype)
    except Exception as exc:  # noqa: BLE001 - a kernel that raises is as broken as a wrong one
        return f"it raised {type(exc).__name__}: {exc}"


def _inputs_generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261201)


def _differ_exactly(what: str, got: torch.Tensor, want: torch.Tensor) -> str | None:
    if got.shape != want.shape:
        return f"{what} has shape {list(got.shape)}, expected {list(want.shape)}"
    diff = (got != want) & ~(got.isnan() & want.isnan())
    if bool(diff.any()):
        first = diff.nonzero()[0].tolist()
        return f"{int(diff.sum())} of {diff.numel()} {what} elements differ, the first at {first}"
    return None


def _check_interleave_vst(device: torch.device, dtype: torch.dtype) -> str | None:
    # 41 raw rows of 136 elements, ratio 4, carry 1: full and partial groups, several copy units
    g = _inputs_generator()
    raw = torch.randn(41, 136, generator=g).to(device, dtype)
    vst = torch.randn(136, generator=g).to(device, dtype)
    got = torch.ops.vxl_fast.interleave_vst(raw, vst, 4, 1)
    return _differ_exactly("output", got, interleave_vst_ref(raw, vst, 4, 1))


def _check_kv_compact(device: torch.device, dtype: torch.dtype) -> str | None:
    # 2 KV heads, head dim 128 (64 threads a block), 3 VSTs written at slots 2..4 of 8
    heads, nb, d, cap, dst = 2, 3, 128, 8, 2

    def case() -> list[torch.Tensor]:  # cache_k, cache_v, vst_k, vst_v
        g = _inputs_generator()
        return [torch.randn(heads, n, d, generator=g).to(device, dtype) for n in (cap, cap, nb, nb)]

    angles = torch.arange(cap, dtype=torch.float32)[:, None] * torch.linspace(1.0, 1e-4, d)[None]
    cos, sin = angles.cos().to(device), angles.sin().to(device)
    got, want = case(), case()
    torch.ops.vxl_fast.kv_compact(*got, cos, sin, dst)
    kv_compact_ref(*want, cos, sin, dst)
    problem = _differ_exactly("cache_v", got[1], want[1])
    if problem:
        return problem
    # keys: fp32 RoPE, each side rounded once to dtype (<= eps(dtype) |y|) after fp32 products
    # and a sum (<= 3 eps(fp32) of |x| (|cos| + |sin|) <= 6 eps(fp32) max |x|)
    err = (got[0].float() - want[0].float()).abs()
    bound = (torch.finfo(dtype).eps * want[0].float().abs()
             + 6 * torch.finfo(torch.float32).eps * want[2].float().abs().max())
    if not bool((err <= bound).all()):
        return f"cache_k differs by up to {float(err.max()):.3g} (bound {float(bound.max()):.3g})"
    return None


def _check_clip_preprocess(device: torch.device, dtype: torch.dtype) -> str | None:
    # 2 frames of 37 x 53 to a 20 x 20 crop of the 24-pixel short side: both resampling passes;
    # as pixels and as patch rows of 5 x 5 patches
    g = _inputs_generator()
    frames = torch.randint(0, 256, (2, 37, 53, 3), generator=g, dtype=torch.uint8).to(device)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    for patch in (0, 5):
        want = clip_preprocess_ref(frames, 24, 20, mean, std, dtype, patch=patch)
        got = torch.ops.vxl_fast.clip_preprocess(frames, 24, 20, mean, std, dtype, patch)
        problem = _differ_exactly(f"patch={patch} output", got, want)
        if problem:
            return problem
        out = torch.full(clip_preprocess_shape(2, 20, patch), float("nan"), device=device, dtype=dtype)
        torch.ops.vxl_fast.clip_preprocess_out(frames, 24, 20, mean, std, out, patch)
        problem = _differ_exactly(f"patch={patch} clip_preprocess_out output", out, want)
        if problem:
            return problem
    return None


def _check_yuv420_to_rgb(device: torch.device, dtype: torch.dtype) -> str | None:
    # 2 frames of 7 x 13 (odd sizes: a partial chroma sample in both directions), NV12-style
    # strided chroma, every matrix in both ranges
    g = _inputs_generator()
    y = torch.randint(0, 256, (2, 7, 13), generator=g, dtype=torch.uint8).to(device)
    uv = torch.randint(0, 256, (2, 4, 14), generator=g, dtype=torch.uint8).to(device)
    for index, matrix in enumerate(YUV_MATRICES):
        for full_range in (False, True):
            got = torch.ops.vxl_fast.yuv420_to_rgb(y, uv[..., 0::2], uv[..., 1::2], index, full_range)
            want = yuv420_to_rgb_ref(y, uv[..., 0::2], uv[..., 1::2], matrix, full_range)
            problem = _differ_exactly(f"{matrix} full_range={full_range} output", got, want)
            if problem:
                return problem


def _differ_by_more(what: str, got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor) -> str | None:
    if got.shape != want.shape:
        return f"{what} has shape {list(got.shape)}, expected {list(want.shape)}"
    err = (got.double() - want.double()).abs()
    if not bool((err <= bound).all()):
        return f"{what} differs by up to {float(err.max()):.3g} (bound {float(bound.max()):.3g})"
    return None


def _check_fused_add_rms_norm(device: torch.device, dtype: torch.dtype) -> str | None:
    # 5 rows of 136 (vector chunks) and 3 strided rows of 131 (element by element)
    g = _inputs_generator()
    for rows, d, stride in ((5, 136, 136), (3, 131, 140)):
        x = torch.randn(rows, stride, generator=g).to(device, dtype)[:, :d]
        residual = (3 * torch.randn(rows, d, generator=g)).to(device, dtype)
        weight = (1 + torch.randn(d, generator=g) / 4).to(device, dtype)
        normed, h = torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, 1e-6)
        want_normed, want_h = fused_add_rms_norm_ref(x, residual, weight, 1e-6)
        problem = _differ_exactly("h", h, want_h)
        if problem:
            return problem
        # sum order and rsqrt: < 32 eps(fp32) relative before the two roundings to dtype (one ulp)
        mag = want_normed.double().abs()
        bound = (2 * torch.finfo(dtype).eps + 32 * torch.finfo(torch.float32).eps) * mag + 1e-30
        problem = _differ_by_more("normed", normed, want_normed, bound)
        if problem:
            return problem
    return None


def _check_silu_and_mul(device: torch.device, dtype: torch.dtype) -> str | None:
    # 3 rows of 2 x 136 (vector chunks) and 2 strided rows of 2 x 37 (element by element)
    g = _inputs_generator()
    for rows, width, stride in ((3, 136, 272), (2, 37, 80)):
        x = (4 * torch.randn(rows, stride, generator=g)).to(device, dtype)[:, :2 * width]
        want = silu_and_mul_ref(x)
        # exp's last bits: silu within 4 eps(fp32), then at most one ulp of dtype in each rounding
        bound = ((2 * torch.finfo(dtype).eps + 4 * torch.finfo(torch.float32).eps) * want.double().abs()
                 + torch.finfo(dtype).tiny)
        problem = _differ_by_more("output", torch.ops.vxl_fast.silu_and_mul(x), want, bound)
        if problem:
            return problem
    return None


def _check_add_layer_norm(device: torch.device, dtype: torch.dtype) -> str | None:
    # 5 rows of 136 (vector chunks) and 3 strided rows of 131 (element by element), rows of mean 4
    g = _inputs_generator()
    for rows, d, stride in ((5, 136, 136), (3, 131, 140)):
        x = torch.randn(rows, stride, generator=g).to(device, dtype)[:, :d]
        residual = (3 * torch.randn(rows, d, generator=g) + 4).to(device, dtype)
        weight = (1 + torch.randn(d, generator=g) / 4).to(device, dtype)
        bias = (torch.randn(d, generator=g) / 2).to(device, dtype)
        normed, h = torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, 1e-5)
        want_normed, want_h = add_layer_norm_ref(x, residual, weight, bias, 1e-5)
        problem = _differ_exactly("h", h, want_h)
        if problem:
            return problem
        # sum order, Welford and rsqrt: < 64 eps(fp32) of the row's scale before the rounding to
        # dtype (one ulp), the scale |weight| + |bias| + |normed|
        scale = weight.double().abs() + bias.double().abs() + want_normed.double().abs()
        bound = 64 * torch.finfo(torch.float32).eps * scale + 2 * torch.finfo(dtype).eps * want_normed.double().abs()
        problem = _differ_by_more("normed", normed, want_normed, bound + 1e-30)
        if problem:
            return problem
    return None


def _check_clip_embed_layer_norm(device: torch.device, dtype: torch.dtype) -> str | None:
    # 2 frames of 5 patch rows of 136 (vector chunks), then of 131 as strided views (element by
    # element); rows of mean 4
    g = _inputs_generator()
    for d, stride in ((136, 136), (131, 140)):
        patches = (3 * torch.randn(2, 5, stride, generator=g) + 4).to(device, dtype)[..., :d]
        cls = torch.randn(d, generator=g).to(device, dtype)
        pos = torch.randn(6, d, generator=g).to(device, dtype)
        weight = (1 + torch.randn(d, generator=g) / 4).to(device, dtype)
        bias = (torch.randn(d, generator=g) / 2).to(device, dtype)
        got = torch.ops.vxl_fast.clip_embed_layer_norm(patches, cls, pos, weight, bias, 1e-5)
        want = clip_embed_layer_norm_ref(patches, cls, pos, weight, bias, 1e-5)
        # add_layer_norm's bound
        scale = weight.double().abs() + bias.double().abs() + want.double().abs()
        bound = 64 * torch.finfo(torch.float32).eps * scale + 2 * torch.finfo(dtype).eps * want.double().abs()
        problem = _differ_by_more("output", got, want, bound + 1e-30)
        if problem:
            return problem
    return None


def _check_bias_quick_gelu(device: torch.device, dtype: torch.dtype) -> str | None:
    # 3 rows of 136 (vector chunks) and 2 strided rows of 37 (element by element)
    g = _inputs_generator()
    for rows, width, stride in ((3, 136, 136), (2, 37, 40)):
        x = (4 * torch.randn(rows, stride, generator=g)).to(device, dtype)[:, :width]
        bias = torch.randn(width, generator=g).to(device, dtype)
        want = bias_quick_gelu_ref(x, bias)
        # exp's last bits: sigmoid within 4 eps(fp32), then at most one ulp of dtype in each rounding
        bound = ((2 * torch.finfo(dtype).eps + 4 * torch.finfo(torch.float32).eps) * want.double().abs()
                 + torch.finfo(dtype).tiny)
        problem = _differ_by_more("output", torch.ops.vxl_fast.bias_quick_gelu(x, bias), want, bound)
        if problem:
            return problem
    return None


def _check_rope_kv_write(device: torch.device, dtype: torch.dtype) -> str | None:
    # 3 rows of 4 query and 2 KV heads of d = 128, views of one qkv row, written at slots 2..4
    n, heads, kv_heads, d, cap, start = 3, 4, 2, 128, 8, 2
    g = _inputs_generator()
    qkv = torch.randn(n, (heads + 2 * kv_heads) * d, generator=g).to(device, dtype)
    q, k, v = qkv.split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
    q, k, v = q.view(n, heads, d), k.view(n, kv_heads, d), v.view(n, kv_heads, d)
    angles = torch.arange(cap, dtype=torch.float32)[:, None] * torch.linspace(1.0, 1e-4, d)[None]
    cos, sin = angles.cos().to(device), angles.sin().to(device)
    got = [torch.randn(kv_heads, cap, d, generator=g).to(device, dtype) for _ in range(2)]
    want = [t.clone() for t in got]
    q_got = torch.ops.vxl_fast.rope_kv_write(q, k, v, cos, sin, *got, start)
    q_want = rope_kv_write_ref(q, k, v, cos, sin, *want, start)
    problem = _differ_exactly("cache_v", got[1], want[1])
    if problem:
        return problem
    # fp32 RoPE as in kv_compact: each side rounded once to dtype after fp32 products and a sum
    # (a contracting compiler would be off by <= 6 eps(fp32) max |x|)
    for what, a, b in (("q", q_got, q_want), ("cache_k", got[0], want[0])):
        bound = (torch.finfo(dtype).eps * b.double().abs()
                 + 6 * torch.finfo(torch.float32).eps * qkv.float().abs().max().double())
        problem = _differ_by_more(what, a, b, bound)
        if problem:
            return problem
    return None


_CHECKS: dict[str, Callable[[torch.device, torch.dtype], str | None]] = {
    "add_layer_norm": _check_add_layer_norm,
    "bias_quick_gelu": _check_bias_quick_gelu,
    "clip_embed_layer_norm": _check_clip_embed_layer_norm,
    "clip_preprocess": _check_clip_preprocess,
    "fused_add_rms_norm": _check_fused_add_rms_norm,
    "silu_and_mul": _check_silu_and_mul,
    "interleave_vst": _check_interleave_vst,
    "kv_compact": _check_kv_compact,
    "rope_kv_write": _check_rope_kv_write,
    "yuv420_to_rgb": _check_yuv420_to_rgb,
}
