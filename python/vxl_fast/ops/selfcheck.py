"""First-contact self-check of the compiled ops: before a custom op first runs on a CUDA device for a
dtype, it runs once on a small input and is compared with its reference twin, within the bounds the
op tests use (``bounds.py``). ``dispatch.KernelPolicy`` runs it (a few ms, once per policy, op,
device and dtype) and disables an op that disagrees or raises there.

NOTE: the check allocates and synchronises, so the first call for an (op, device, dtype) must not
happen inside CUDA graph capture; a warm-up run before capture makes that call.
"""

from __future__ import annotations

import torch

from . import bounds
from .checks import clip_preprocess_shape
from .reference import (YUV_MATRICES, add_layer_norm_ref, apply_rope, clip_preprocess_ref, fused_add_rms_norm_ref,
                        interleave_vst_ref, kv_compact_ref, rope_kv_write_ref, yuv420_to_rgb_ref)


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


def interleave_vst(device: torch.device, dtype: torch.dtype) -> str | None:
    # 41 raw rows of 136 elements, ratio 4, carry 1: full and partial groups, several copy units
    g = _inputs_generator()
    raw = torch.randn(41, 136, generator=g).to(device, dtype)
    vst = torch.randn(136, generator=g).to(device, dtype)
    got = torch.ops.vxl_fast.interleave_vst(raw, vst, 4, 1)
    return _differ_exactly("output", got, interleave_vst_ref(raw, vst, 4, 1))


def kv_compact(device: torch.device, dtype: torch.dtype) -> str | None:
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
    x = want[2].float()
    c, sn = cos[dst:dst + nb], sin[dst:dst + nb]
    keys = apply_rope(x, c, sn)  # the formula in fp32, before any rounding to the dtype
    def outside(cache_k: torch.Tensor) -> torch.Tensor:  # the slots kv_compact must leave as they are
        return torch.cat((cache_k[:, :dst], cache_k[:, dst + nb:]), 1)

    return (_differ_exactly("cache_k outside the VST slots", outside(got[0]), outside(want[0]))
            or _differ_by_more("cache_k", got[0][:, dst:dst + nb], keys, bounds.rope_bound(x, c, sn, keys, dtype)))


def clip_preprocess(device: torch.device, dtype: torch.dtype) -> str | None:
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


def yuv420_to_rgb(device: torch.device, dtype: torch.dtype) -> str | None:
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
    return None


def _differ_by_more(what: str, got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor) -> str | None:
    if got.shape != want.shape:
        return f"{what} has shape {list(got.shape)}, expected {list(want.shape)}"
    err = (got.double() - want.double()).abs()
    if not bool((err <= bound).all()):
        return f"{what} differs by up to {float(err.max()):.3g} (bound {float(bound.max()):.3g})"
    return None


def fused_add_rms_norm(device: torch.device, dtype: torch.dtype) -> str | None:
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
        problem = _differ_by_more("normed", normed, *bounds.rms_norm_bound(h, weight, 1e-6, dtype))
        if problem:
            return problem
    return None


def silu_and_mul(device: torch.device, dtype: torch.dtype) -> str | None:
    # 3 rows of 2 x 136 (vector chunks) and 2 strided rows of 2 x 37 (element by element)
    g = _inputs_generator()
    for rows, width, stride in ((3, 136, 272), (2, 37, 80)):
        x = (4 * torch.randn(rows, stride, generator=g)).to(device, dtype)[:, :2 * width]
        problem = _differ_by_more("output", torch.ops.vxl_fast.silu_and_mul(x), *bounds.silu_and_mul_bound(x, dtype))
        if problem:
            return problem
    return None


def add_layer_norm(device: torch.device, dtype: torch.dtype) -> str | None:
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
        problem = _differ_by_more("normed", normed, *bounds.layer_norm_bound(h, weight, bias, 1e-5, dtype))
        if problem:
            return problem
    return None


def clip_embed_layer_norm(device: torch.device, dtype: torch.dtype) -> str | None:
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
        h = torch.cat([cls.expand(2, 1, d), patches], 1) + pos  # the sum, rounded as the model adds
        problem = _differ_by_more("output", got, *bounds.layer_norm_bound(h, weight, bias, 1e-5, dtype))
        if problem:
            return problem
    return None


def bias_quick_gelu(device: torch.device, dtype: torch.dtype) -> str | None:
    # 3 rows of 136 (vector chunks) and 2 strided rows of 37 (element by element)
    g = _inputs_generator()
    for rows, width, stride in ((3, 136, 136), (2, 37, 40)):
        x = (4 * torch.randn(rows, stride, generator=g)).to(device, dtype)[:, :width]
        bias = torch.randn(width, generator=g).to(device, dtype)
        problem = _differ_by_more("output", torch.ops.vxl_fast.bias_quick_gelu(x, bias),
                                  *bounds.quick_gelu_bound(x, bias, dtype))
        if problem:
            return problem
    return None


def rope_kv_write(device: torch.device, dtype: torch.dtype) -> str | None:
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
    c, sn = cos[start:start + n], sin[start:start + n]
    for what, x, a, b in (("q", q.transpose(0, 1), q_got, q_want),
                          ("cache_k", k.transpose(0, 1), got[0][:, start:start + n], want[0][:, start:start + n])):
        problem = _differ_by_more(what, a, b, bounds.rope_bound(x.float(), c, sn, b.float(), dtype))
        if problem:
            return problem
    return _differ_exactly("cache_k", got[0][:, :start], want[0][:, :start])
