"""The fused elementwise ops of the vision tower (clip_embed_layer_norm, add_layer_norm,
bias_quick_gelu): the C++/CUDA
kernels against their pure-PyTorch twins (the model's PyTorch code) and a float64 oracle, with
bounds derived from the rounding steps (ops docstrings). CUDA cases skip without a GPU."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from conftest import needs_cuda
from op_cases import DEVICES, DTYPES, IMPLS, U, needs_ext, op, opcheck, rejects, rows
from vxl_fast import ops
from vxl_fast.ops import bounds
from vxl_fast.ops import add_layer_norm_ref, bias_quick_gelu_ref, clip_embed_layer_norm_ref

EPS = 1e-5  # CLIP's layer_norm_eps
# (leading shape, D, layout): one row of one element, primes, CLIP ViT-L's width, 3-D, strided rows
# (row stride D + 3, storage offset 1), leading dims that cannot be viewed as rows (transposed)
NORM_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((3,), 131, "contiguous"),
              ((5,), 1024, "contiguous"), ((2, 3), 64, "contiguous"), ((13,), 257, "strided"),
              ((4,), 136, "strided"), ((3, 5), 24, "transposed"), ((0,), 16, "contiguous")]
# (leading shape, F, layout)
GELU_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((3,), 37, "contiguous"),
              ((4,), 4096, "contiguous"), ((2, 3), 64, "contiguous"), ((11,), 131, "strided"),
              ((5,), 136, "strided"), ((3, 4), 16, "transposed"), ((0,), 8, "contiguous")]


def _norm_inputs(lead, d, dtype, device, layout, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed + d)
    x = rows(lead, d, dtype, device, layout, g)
    residual = rows(lead, d, dtype, device, "contiguous", g, scale=3.0, shift=shift)
    weight = (1 + torch.randn(d, generator=g) / 4).to(device, dtype)
    bias = (torch.randn(d, generator=g) / 2).to(device, dtype)
    return x, residual, weight, bias


def _norm_oracle(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """(weight · z + bias) in float64 from the rounded h, z = (h - mean) / sqrt(var + eps)."""
    return bounds.layer_norm_bound(h, weight, bias, EPS, h.dtype)[0]


def _norm_bound(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dtype) -> tuple:
    """(oracle, |op - oracle| allowed): ``ops.bounds.layer_norm_bound``, shared with the self-check."""
    return bounds.layer_norm_bound(h, weight, bias, EPS, dtype)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,d,layout", NORM_CASES)
def test_add_layer_norm_matches_the_model_and_the_oracle(device, dtype, lead, d, layout):
    x, residual, weight, bias = _norm_inputs(lead, d, dtype, device, layout)
    normed, h = torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, EPS)
    want_normed, want_h = add_layer_norm_ref(x, residual, weight, bias, EPS)
    for out in (normed, h):
        assert out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    # the residual add is the model's (`x = x + attn(...)`), to the bit
    assert torch.equal(h, residual + x) and torch.equal(h, want_h)
    assert torch.equal(want_normed, F.layer_norm(residual + x, (d,), weight, bias, EPS))
    if h.numel() == 0:
        return
    oracle, bound = _norm_bound(h, weight, bias, dtype)
    err = (normed.double() - oracle).abs()
    assert bool((err <= bound).all()), f"max err {float(err.max()):.3g}, over by {float((err / bound).max()):.3g}x"
    # against PyTorch's LayerNorm: both within their fp32 error, or one 16-bit ulp flip apart
    diff = (normed.double() - want_normed.double()).abs()
    assert bool((diff <= 2 * bound + 2 * U[dtype] * oracle.abs()).all())
    if dtype != torch.float32 and h.numel() >= 1000:
        assert float((normed != want_normed).float().mean()) <= 1e-3


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_add_layer_norm_rows_with_a_large_mean(device, dtype):
    """Rows whose mean is 30x their spread: the two-pass variance does not cancel; the mean's
    rounding error, relative to sigma, is the bound's middle term."""
    x, residual, weight, bias = _norm_inputs((6,), 1024, dtype, device, "contiguous", seed=7, shift=100.0)
    normed, h = torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, EPS)
    oracle, bound = _norm_bound(h, weight, bias, dtype)
    err = (normed.double() - oracle).abs()
    assert bool((err <= bound).all()), f"max err {float(err.max()):.3g}"
    assert float(err.max()) < 1e-3 if dtype == torch.float32 else float(err.max()) < 0.1


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_add_layer_norm_error_is_that_of_the_reference(device, dtype):
    """The 16-bit op's error against the float64 formula is at most 2x that of PyTorch's 16-bit
    LayerNorm (CLIP ViT-L's width, a vision batch's worth of rows)."""
    x, residual, weight, bias = _norm_inputs((577,), 1024, dtype, device, "contiguous", seed=5)
    normed, h = torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, EPS)
    want, _ = add_layer_norm_ref(x, residual, weight, bias, EPS)
    oracle = _norm_oracle(h, weight, bias)
    err, err_ref = (normed.double() - oracle).abs(), (want.double() - oracle).abs()
    assert float(err.max()) <= 2 * float(err_ref.max())
    assert float(err.mean()) <= 2 * float(err_ref.mean())


# (F, P, C, layout): one token, primes, CLIP ViT-L's width, strided patch rows (a view of a wider
# product, storage offset 1), frames apart (a slice of a bigger batch), no patches, no frames
EMBED_CASES = [(1, 0, 1, "contiguous"), (2, 3, 7, "contiguous"), (3, 5, 131, "contiguous"),
               (2, 9, 1024, "contiguous"), (4, 6, 257, "strided"), (3, 4, 136, "frames apart"),
               (0, 4, 16, "contiguous")]


def _embed_inputs(f, p, c, dtype, device, layout, seed=0):
    """patches, cls, pos, weight, bias as the tower passes them (patches of mean 4)."""
    g = torch.Generator().manual_seed(seed + c)
    if layout == "strided":
        patches = (3 * torch.randn(f, p, c + 3, generator=g) + 4).to(device, dtype)[..., 1:1 + c]
    elif layout == "frames apart":
        patches = (3 * torch.randn(2 * f, p, c, generator=g) + 4).to(device, dtype)[::2]
    else:
        patches = (3 * torch.randn(f, p, c, generator=g) + 4).to(device, dtype)
    cls = torch.randn(c, generator=g).to(device, dtype)
    pos = torch.randn(p + 1, c, generator=g).to(device, dtype)
    weight = (1 + torch.randn(c, generator=g) / 4).to(device, dtype)
    bias = (torch.randn(c, generator=g) / 2).to(device, dtype)
    return patches, cls, pos, weight, bias


def _embed_h(patches, cls, pos):
    """The model's sum before the norm: cat([cls, patches[f]]) + pos, in the dtype."""
    return torch.cat([cls.expand(patches.shape[0], 1, -1), patches], 1) + pos


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f,p,c,layout", EMBED_CASES)
def test_clip_embed_layer_norm_matches_the_model_and_the_oracle(device, dtype, f, p, c, layout):
    patches, cls, pos, weight, bias = _embed_inputs(f, p, c, dtype, device, layout)
    out = torch.ops.vxl_fast.clip_embed_layer_norm(patches, cls, pos, weight, bias, EPS)
    want = clip_embed_layer_norm_ref(patches, cls, pos, weight, bias, EPS)
    assert out.shape == (f, p + 1, c) and out.dtype == dtype and out.is_contiguous()
    h = _embed_h(patches, cls, pos)
    assert torch.equal(want, F.layer_norm(h, (c,), weight, bias, EPS))  # the model's composition
    if out.numel() == 0:
        return
    # each row is add_layer_norm's row of h: the same bits, the same bound
    normed, _ = torch.ops.vxl_fast.add_layer_norm(pos.expand_as(h).contiguous(), torch.cat(
        [cls.expand(f, 1, c), patches], 1), weight, bias, EPS)
    assert torch.equal(out, normed)
    oracle, bound = _norm_bound(h, weight, bias, dtype)
    err = (out.double() - oracle).abs()
    assert bool((err <= bound).all()), f"max err {float(err.max()):.3g}, over by {float((err / bound).max()):.3g}x"
    diff = (out.double() - want.double()).abs()
    assert bool((diff <= 2 * bound + 2 * U[dtype] * oracle.abs()).all())
    if dtype == torch.float32:  # add_layer_norm's tests' tolerance against PyTorch's LayerNorm
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_clip_embed_layer_norm_error_is_that_of_the_reference(device, dtype):
    """The 16-bit op's error against the float64 formula (of the fp32 inputs) is at most 2x that of
    the 16-bit PyTorch composition (CLIP ViT-L/14-336: 576 patches of 1024, two frames)."""
    args32 = _embed_inputs(2, 576, 1024, torch.float32, device, "contiguous", seed=5)
    args = [t.to(dtype) for t in args32]
    out = torch.ops.vxl_fast.clip_embed_layer_norm(*args, EPS)
    want = clip_embed_layer_norm_ref(*args, EPS)
    oracle = _norm_oracle(_embed_h(*args32[:3]), args32[3], args32[4])
    err, err_ref = (out.double() - oracle).abs(), (want.double() - oracle).abs()
    assert 0 < float(err.max()) <= 2 * float(err_ref.max())
    assert float(err.mean()) <= 2 * float(err_ref.mean())


def _gelu_bound(x: torch.Tensor, bias: torch.Tensor, dtype):
    """(oracle, |op - oracle| allowed): ``ops.bounds.quick_gelu_bound``, shared with the self-check."""
    return bounds.quick_gelu_bound(x, bias, dtype)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,f,layout", GELU_CASES)
def test_bias_quick_gelu_matches_the_model_and_the_oracle(device, dtype, lead, f, layout):
    g = torch.Generator().manual_seed(f)
    x = rows(lead, f, dtype, device, layout, g, scale=4.0)
    bias = torch.randn(f, generator=g).to(device, dtype)
    out = torch.ops.vxl_fast.bias_quick_gelu(x, bias)
    assert out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    h = x + bias
    model = h * torch.sigmoid(1.702 * h)  # CLIP's quick_gelu of fc1's output
    assert torch.equal(bias_quick_gelu_ref(x, bias), model)
    if out.numel() == 0:
        return
    oracle, bound = _gelu_bound(x, bias, dtype)
    err = (out.double() - oracle).abs()
    assert bool((err <= bound).all()), f"max err {float(err.max()):.3g}"
    if dtype == torch.float32 and device == "cpu":  # libm's exp vs PyTorch's vectorised exp: a few ulp
        assert bool(((out - model).abs() <= 8 * U[dtype] * model.abs() + 1e-38).all())
    else:
        assert torch.equal(out, model)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bias_quick_gelu_error_is_that_of_the_reference(device, dtype):
    g = torch.Generator().manual_seed(9)
    x = (4 * torch.randn(577, 4096, generator=g)).to(device, dtype)
    bias = torch.randn(4096, generator=g).to(device, dtype)
    oracle, _ = _gelu_bound(x, bias, dtype)
    err = (torch.ops.vxl_fast.bias_quick_gelu(x, bias).double() - oracle).abs()
    err_ref = (bias_quick_gelu_ref(x, bias).double() - oracle).abs()
    assert float(err.max()) <= 2 * float(err_ref.max())
    assert float(err.mean()) <= 2 * float(err_ref.mean())


@needs_ext
@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_quick_gelu_edges(dtype):
    """Saturation: exp(-t) overflows for very negative t (the result -> -0), fp16's 1.702 h
    overflows to inf for large h; never a NaN, and PyTorch's values."""
    x = torch.tensor([[-100.0, -60.0, 0.0, -0.0, 20.0, 100.0, 3e4, -3e4, 6e4, -6e4, 1.0, -1.0]]).to(dtype)
    bias = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 1.0]).to(dtype)
    out = torch.ops.vxl_fast.bias_quick_gelu(x, bias)
    assert torch.equal(out, bias_quick_gelu_ref(x, bias))
    assert not bool(out.isnan().any())


# ---- torch.library.opcheck ---------------------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_add_layer_norm(device, layout):
    args = _norm_inputs((13,), 40, torch.bfloat16, device, layout)
    opcheck("add_layer_norm", *args, EPS)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_bias_quick_gelu(device, layout):
    g = torch.Generator().manual_seed(1)
    x = rows((13,), 48, torch.bfloat16, device, layout, g)
    bias = torch.randn(48, generator=g).to(device, torch.bfloat16)
    opcheck("bias_quick_gelu", x, bias)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_clip_embed_layer_norm(device, layout):
    args = _embed_inputs(3, 5, 40, torch.bfloat16, device, layout)
    opcheck("clip_embed_layer_norm", *args, EPS)


# ---- bad inputs ----------------------------------------------------------------------------------

def _norm_args(**override):
    args = dict(x=torch.randn(3, 8), residual=torch.randn(3, 8), weight=torch.ones(8), bias=torch.zeros(8),
                eps=EPS)
    args.update(override)
    return args


NORM_ERRORS = [
    (dict(x=torch.tensor(1.0), residual=torch.tensor(1.0)), ValueError,
     "add_layer_norm: x must have at least one dimension [..., D], got 0."),
    (dict(weight=torch.ones(1, 8)), ValueError,
     "add_layer_norm: weight must be a 1-D tensor [D], got 2 dimensions."),
    (dict(bias=torch.ones(1, 8)), ValueError,
     "add_layer_norm: bias must be a 1-D tensor [D], got 2 dimensions."),
    (dict(x=torch.ones(3, 8, dtype=torch.float64), residual=torch.ones(3, 8, dtype=torch.float64),
          weight=torch.ones(8, dtype=torch.float64), bias=torch.ones(8, dtype=torch.float64)), TypeError,
     "add_layer_norm: x must be torch.float32, torch.float16 or torch.bfloat16, got torch.float64."),
    (dict(residual=torch.randn(3, 8).bfloat16()), TypeError,
     "add_layer_norm: residual must have the same dtype as x (torch.float32), got torch.bfloat16."),
    (dict(weight=torch.ones(8, dtype=torch.float16)), TypeError,
     "add_layer_norm: weight must have the same dtype as x (torch.float32), got torch.float16."),
    (dict(bias=torch.ones(8, dtype=torch.bfloat16)), TypeError,
     "add_layer_norm: bias must have the same dtype as x (torch.float32), got torch.bfloat16."),
    (dict(residual=torch.randn(4, 8)), ValueError,
     "add_layer_norm: residual must have the shape of x ([3, 8]), got [4, 8]."),
    (dict(x=torch.randn(3, 0), residual=torch.randn(3, 0), weight=torch.ones(0), bias=torch.ones(0)), ValueError,
     "add_layer_norm: x must have a non-empty last dimension, got D = 0."),
    (dict(weight=torch.ones(7)), ValueError,
     "add_layer_norm: weight has 7 elements but the rows of x have D = 8; they must match."),
    (dict(bias=torch.ones(9)), ValueError,
     "add_layer_norm: bias has 9 elements but the rows of x have D = 8; they must match."),
    (dict(x=torch.randn(8, 3).t()), ValueError,
     "add_layer_norm: x must have a contiguous last dimension (stride 1), got stride 3."),
    (dict(residual=torch.randn(3, 16)[:, ::2]), ValueError,
     "add_layer_norm: residual must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(bias=torch.ones(16)[::2]), ValueError,
     "add_layer_norm: bias must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(eps=-1.0), ValueError, "add_layer_norm: eps must be finite and non-negative, got -1."),
    (dict(eps=math.nan), ValueError, "add_layer_norm: eps must be finite and non-negative, got nan."),
]

def _embed_args(**override):
    args = dict(patches=torch.randn(2, 3, 8), cls=torch.randn(8), pos=torch.randn(4, 8), weight=torch.ones(8),
                bias=torch.zeros(8), eps=EPS)
    args.update(override)
    return args


EMBED_ERRORS = [
    (dict(patches=torch.randn(3, 8)), ValueError,
     "clip_embed_layer_norm: patches must be a 3-D tensor [F, P, C], got 2 dimensions."),
    (dict(cls=torch.randn(1, 8)), ValueError, "clip_embed_layer_norm: cls must be a 1-D tensor [C], got 2 dimensions."),
    (dict(pos=torch.randn(1, 4, 8)), ValueError,
     "clip_embed_layer_norm: pos must be a 2-D tensor [P + 1, C], got 3 dimensions."),
    (dict(weight=torch.ones(1, 8)), ValueError,
     "clip_embed_layer_norm: weight must be a 1-D tensor [C], got 2 dimensions."),
    (dict(bias=torch.ones(1, 8)), ValueError, "clip_embed_layer_norm: bias must be a 1-D tensor [C], got 2 dimensions."),
    (dict(patches=torch.ones(2, 3, 8, dtype=torch.float64), cls=torch.ones(8, dtype=torch.float64),
          pos=torch.ones(4, 8, dtype=torch.float64), weight=torch.ones(8, dtype=torch.float64),
          bias=torch.ones(8, dtype=torch.float64)), TypeError,
     "clip_embed_layer_norm: patches must be torch.float32, torch.float16 or torch.bfloat16, got torch.float64."),
    (dict(cls=torch.randn(8).bfloat16()), TypeError,
     "clip_embed_layer_norm: cls must have the same dtype as patches (torch.float32), got torch.bfloat16."),
    (dict(pos=torch.randn(4, 8).half()), TypeError,
     "clip_embed_layer_norm: pos must have the same dtype as patches (torch.float32), got torch.float16."),
    (dict(weight=torch.ones(8, dtype=torch.float16)), TypeError,
     "clip_embed_layer_norm: weight must have the same dtype as patches (torch.float32), got torch.float16."),
    (dict(bias=torch.ones(8, dtype=torch.bfloat16)), TypeError,
     "clip_embed_layer_norm: bias must have the same dtype as patches (torch.float32), got torch.bfloat16."),
    (dict(patches=torch.randn(2, 3, 0), cls=torch.randn(0), pos=torch.randn(4, 0), weight=torch.ones(0),
          bias=torch.ones(0)), ValueError, "clip_embed_layer_norm: patches must have a non-empty last dimension, got C = 0."),
    (dict(cls=torch.randn(7)), ValueError,
     "clip_embed_layer_norm: cls has 7 elements but the rows of patches have C = 8; they must match."),
    (dict(weight=torch.ones(9)), ValueError,
     "clip_embed_layer_norm: weight has 9 elements but the rows of patches have C = 8; they must match."),
    (dict(bias=torch.ones(7)), ValueError,
     "clip_embed_layer_norm: bias has 7 elements but the rows of patches have C = 8; they must match."),
    (dict(pos=torch.randn(3, 8)), ValueError,
     "clip_embed_layer_norm: pos must have shape [P + 1, C] = [4, 8], got [3, 8]."),
    (dict(pos=torch.randn(4, 9)), ValueError,
     "clip_embed_layer_norm: pos must have shape [P + 1, C] = [4, 8], got [4, 9]."),
    (dict(patches=torch.randn(2, 8, 3).transpose(1, 2)), ValueError,
     "clip_embed_layer_norm: patches must have a contiguous last dimension (stride 1), got stride 3."),
    (dict(pos=torch.randn(8, 4).t()), ValueError,
     "clip_embed_layer_norm: pos must have a contiguous last dimension (stride 1), got stride 4."),
    (dict(cls=torch.randn(16)[::2]), ValueError,
     "clip_embed_layer_norm: cls must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(eps=-1.0), ValueError, "clip_embed_layer_norm: eps must be finite and non-negative, got -1."),
    (dict(eps=math.inf), ValueError, "clip_embed_layer_norm: eps must be finite and non-negative, got inf."),
]

GELU_ERRORS = [
    (dict(x=torch.tensor(1.0)), ValueError, "bias_quick_gelu: x must have at least one dimension [..., F], got 0."),
    (dict(bias=torch.ones(2, 4)), ValueError, "bias_quick_gelu: bias must be a 1-D tensor [F], got 2 dimensions."),
    (dict(x=torch.ones(2, 4, dtype=torch.int32)), TypeError,
     "bias_quick_gelu: x must be torch.float32, torch.float16 or torch.bfloat16, got torch.int32."),
    (dict(bias=torch.ones(4, dtype=torch.float16)), TypeError,
     "bias_quick_gelu: bias must have the same dtype as x (torch.float32), got torch.float16."),
    (dict(x=torch.randn(2, 0), bias=torch.ones(0)), ValueError,
     "bias_quick_gelu: x must have a non-empty last dimension, got F = 0."),
    (dict(bias=torch.ones(5)), ValueError,
     "bias_quick_gelu: bias has 5 elements but the rows of x have F = 4; they must match."),
    (dict(x=torch.randn(4, 2).t()), ValueError,
     "bias_quick_gelu: x must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(bias=torch.ones(8)[::2]), ValueError,
     "bias_quick_gelu: bias must have a contiguous last dimension (stride 1), got stride 2."),
]


def _gelu_args(**override):
    return dict(x=torch.randn(2, 4), bias=torch.zeros(4)) | override


test_add_layer_norm_rejects = rejects("add_layer_norm", _norm_args, NORM_ERRORS)
test_bias_quick_gelu_rejects = rejects("bias_quick_gelu", _gelu_args, GELU_ERRORS)
test_clip_embed_layer_norm_rejects = rejects("clip_embed_layer_norm", _embed_args, EMBED_ERRORS)


@needs_cuda
@pytest.mark.parametrize("impl", IMPLS)
def test_vision_ops_reject_mixed_devices(impl):
    with pytest.raises(ValueError, match=re.escape(
            "add_layer_norm: weight must be on the same device as x (cuda:0), got cpu.")):
        op("add_layer_norm", impl)(**_norm_args(x=torch.randn(3, 8, device="cuda"),
                                                 residual=torch.randn(3, 8, device="cuda")))
    with pytest.raises(ValueError, match=re.escape(
            "bias_quick_gelu: bias must be on the same device as x (cuda:0), got cpu.")):
        op("bias_quick_gelu", impl)(torch.randn(3, 8, device="cuda"), torch.zeros(8))
    with pytest.raises(ValueError, match=re.escape(
            "clip_embed_layer_norm: pos must be on the same device as patches (cuda:0), got cpu.")):
        op("clip_embed_layer_norm", impl)(**_embed_args(patches=torch.randn(2, 3, 8, device="cuda"),
                                                         cls=torch.randn(8, device="cuda")))


# ---- the wrappers ----------------------------------------------------------------------------------

@needs_ext
def test_wrappers_run_the_kernel_unless_reference_only(monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "add_layer_norm_ref", lambda *a: calls.append("norm") or add_layer_norm_ref(*a))
    monkeypatch.setattr(ops, "bias_quick_gelu_ref", lambda *a: calls.append("gelu") or bias_quick_gelu_ref(*a))
    x, residual, weight, bias = _norm_inputs((3,), 16, torch.float32, "cpu", "contiguous")
    with ops.using(ops.KernelPolicy(every_cpu_kernel=True)):
        got = ops.add_layer_norm(x, residual, weight, bias, EPS)
        out = ops.bias_quick_gelu(x, bias)
    assert calls == []
    with ops.reference_only():
        want = ops.add_layer_norm(x, residual, weight, bias, EPS)
        assert torch.equal(ops.bias_quick_gelu(x, bias), bias_quick_gelu_ref(x, bias))
    assert calls == ["norm", "gelu"]
    assert torch.equal(got[1], want[1]) and torch.equal(out, torch.ops.vxl_fast.bias_quick_gelu(x, bias))
