"""The fused elementwise ops of the decoder (fused_add_rms_norm, silu_and_mul): the C++/CUDA kernels
against their pure-PyTorch twins (the model's PyTorch code) and a float64 oracle, with bounds
derived from the rounding steps. CUDA cases skip without a GPU."""

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
from vxl_fast.ops import fused_add_rms_norm_ref, rope_kv_write_ref, silu_and_mul_ref

EPS = 1e-6
# (leading shape, D, layout): one row of one element, primes, the model's width, 3-D, strided rows
# (row stride D + 3, storage offset 1) and leading dims that cannot be viewed as rows (transposed)
NORM_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((3,), 131, "contiguous"),
              ((5,), 3584, "contiguous"), ((2, 3), 64, "contiguous"), ((13,), 257, "strided"),
              ((4,), 136, "strided"), ((3, 5), 24, "transposed"), ((0,), 16, "contiguous")]
# (leading shape, F, layout)
SILU_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((3,), 37, "contiguous"),
              ((4,), 1024, "contiguous"), ((2, 3), 64, "contiguous"), ((11,), 131, "strided"),
              ((5,), 136, "strided"), ((3, 4), 16, "transposed"), ((0,), 8, "contiguous")]


def _norm_inputs(lead, d, dtype, device, layout, seed=0):
    g = torch.Generator().manual_seed(seed + d)
    x = rows(lead, d, dtype, device, layout, g)
    residual = rows(lead, d, dtype, device, "contiguous", g, scale=3.0)
    weight = (1 + torch.randn(d, generator=g) / 4).to(device, dtype)
    return x, residual, weight


def _norm_oracle(h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return bounds.rms_norm_bound(h, weight, EPS, h.dtype)[0]


def _norm_bound(h: torch.Tensor, weight: torch.Tensor, dtype) -> torch.Tensor:
    """|op - oracle| allowed (``ops.bounds.rms_norm_bound``, shared with the self-check)."""
    return bounds.rms_norm_bound(h, weight, EPS, dtype)[1]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,d,layout", NORM_CASES)
def test_fused_add_rms_norm_matches_the_model_and_the_oracle(device, dtype, lead, d, layout):
    x, residual, weight = _norm_inputs(lead, d, dtype, device, layout)
    normed, h = torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, EPS)
    want_normed, want_h = fused_add_rms_norm_ref(x, residual, weight, EPS)
    for out in (normed, h):
        assert out.shape == x.shape and out.dtype == dtype and out.is_contiguous()
    # the residual add is the model's, to the bit
    assert torch.equal(h, residual + x) and torch.equal(h, want_h)
    if h.numel() == 0:
        return
    oracle = _norm_oracle(h, weight)
    err = (normed.double() - oracle).abs()
    assert bool((err <= _norm_bound(h, weight, dtype)).all()), f"max err {float(err.max()):.3g}"
    # against PyTorch's composition: a few fp32 ulp (sum order, rsqrt), or one 16-bit ulp flip
    diff = (normed.double() - want_normed.double()).abs()
    assert bool((diff <= 2 * _norm_bound(h, weight, dtype) + 2 * U[dtype] * oracle.abs()).all())
    if dtype != torch.float32:
        assert float((normed != want_normed).float().mean()) <= 1e-3


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_fused_add_rms_norm_is_the_model_code_in_bf16(device):
    """At the model's width, bf16 outputs equal the model's PyTorch code bit for bit on these inputs
    (the fp32 differences never cross a bf16 rounding boundary here), h always."""
    x, residual, weight = _norm_inputs((64,), 3584, torch.bfloat16, device, "contiguous", seed=3)
    normed, h = ops.fused_add_rms_norm(x, residual, weight, EPS)
    want_h = residual + x
    hf = want_h.float()
    want = weight * (hf * torch.rsqrt(hf.pow(2).mean(-1, keepdim=True) + EPS)).to(torch.bfloat16)
    assert torch.equal(h, want_h)
    assert torch.equal(normed, want)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_add_rms_norm_error_is_that_of_the_reference(device, dtype):
    """The 16-bit op's error against the float64 formula is at most 2x that of PyTorch's 16-bit code."""
    x, residual, weight = _norm_inputs((32,), 3584, dtype, device, "contiguous", seed=5)
    normed, h = torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, EPS)
    want, _ = fused_add_rms_norm_ref(x, residual, weight, EPS)
    oracle = _norm_oracle(h, weight)
    err, err_ref = (normed.double() - oracle).abs(), (want.double() - oracle).abs()
    assert float(err.max()) <= 2 * float(err_ref.max())
    assert float(err.mean()) <= 2 * float(err_ref.mean())


def _silu_oracle(x: torch.Tensor) -> torch.Tensor:
    return bounds.silu_and_mul_bound(x, x.dtype)[0]


def _silu_bound(x: torch.Tensor, dtype) -> torch.Tensor:
    """|op - oracle| allowed (``ops.bounds.silu_and_mul_bound``, shared with the self-check)."""
    return bounds.silu_and_mul_bound(x, dtype)[1]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead,f,layout", SILU_CASES)
def test_silu_and_mul_matches_the_model_and_the_oracle(device, dtype, lead, f, layout):
    g = torch.Generator().manual_seed(f)
    x = rows(lead, 2 * f, dtype, device, layout, g, scale=4.0)
    out = torch.ops.vxl_fast.silu_and_mul(x)
    assert out.shape == (*lead, f) and out.dtype == dtype and out.is_contiguous()
    gate, up = x.chunk(2, dim=-1)
    model = F.silu(gate) * up
    assert torch.equal(silu_and_mul_ref(x), model)
    if out.numel() == 0:
        return
    err = (out.double() - _silu_oracle(x)).abs()
    assert bool((err <= _silu_bound(x, dtype)).all()), f"max err {float(err.max()):.3g}"
    if dtype == torch.float32:  # exp's last bit: a few ulp
        assert bool(((out - model).abs() <= 8 * U[dtype] * model.abs() + 1e-38).all())
    else:
        assert torch.equal(out, model)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_silu_and_mul_error_is_that_of_the_reference(device, dtype):
    g = torch.Generator().manual_seed(9)
    x = (4 * torch.randn(16, 2 * 18944, generator=g)).to(device, dtype)
    oracle = _silu_oracle(x)
    err = (torch.ops.vxl_fast.silu_and_mul(x).double() - oracle).abs()
    err_ref = (silu_and_mul_ref(x).double() - oracle).abs()
    assert float(err.max()) <= 2 * float(err_ref.max())
    assert float(err.mean()) <= 2 * float(err_ref.mean())


@needs_ext
def test_silu_and_mul_edges():
    """Saturation: exp(-g) overflows for very negative g (silu -> -0), no NaN for large |g|."""
    x = torch.tensor([[-100.0, -88.0, 0.0, -0.0, 20.0, 100.0, 1e30, -1e30,
                       1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0]])
    out = torch.ops.vxl_fast.silu_and_mul(x)
    assert torch.equal(out, silu_and_mul_ref(x))
    assert not bool(out.isnan().any())


# ---- torch.library.opcheck ---------------------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_fused_add_rms_norm(device, layout):
    x, residual, weight = _norm_inputs((13,), 40, torch.bfloat16, device, layout)
    opcheck("fused_add_rms_norm", x, residual, weight, EPS)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_silu_and_mul(device, layout):
    x = rows((13,), 48, torch.bfloat16, device, layout, torch.Generator().manual_seed(1))
    opcheck("silu_and_mul", x)


# ---- bad inputs ----------------------------------------------------------------------------------

def _norm_args(**override):
    args = dict(x=torch.randn(3, 8), residual=torch.randn(3, 8), weight=torch.ones(8), eps=EPS)
    args.update(override)
    return args


NORM_ERRORS = [
    (dict(x=torch.tensor(1.0), residual=torch.tensor(1.0)), ValueError,
     "fused_add_rms_norm: x must have at least one dimension [..., D], got 0."),
    (dict(weight=torch.ones(1, 8)), ValueError,
     "fused_add_rms_norm: weight must be a 1-D tensor [D], got 2 dimensions."),
    (dict(x=torch.ones(3, 8, dtype=torch.float64), residual=torch.ones(3, 8, dtype=torch.float64),
          weight=torch.ones(8, dtype=torch.float64)), TypeError,
     "fused_add_rms_norm: x must be torch.float32, torch.float16 or torch.bfloat16, got torch.float64."),
    (dict(residual=torch.randn(3, 8).bfloat16()), TypeError,
     "fused_add_rms_norm: residual must have the same dtype as x (torch.float32), got torch.bfloat16."),
    (dict(weight=torch.ones(8, dtype=torch.float16)), TypeError,
     "fused_add_rms_norm: weight must have the same dtype as x (torch.float32), got torch.float16."),
    (dict(residual=torch.randn(4, 8)), ValueError,
     "fused_add_rms_norm: residual must have the shape of x ([3, 8]), got [4, 8]."),
    (dict(x=torch.randn(3, 0), residual=torch.randn(3, 0), weight=torch.ones(0)), ValueError,
     "fused_add_rms_norm: x must have a non-empty last dimension, got D = 0."),
    (dict(weight=torch.ones(7)), ValueError,
     "fused_add_rms_norm: weight has 7 elements but the rows of x have D = 8; they must match."),
    (dict(x=torch.randn(8, 3).t()), ValueError,
     "fused_add_rms_norm: x must have a contiguous last dimension (stride 1), got stride 3."),
    (dict(residual=torch.randn(3, 16)[:, ::2]), ValueError,
     "fused_add_rms_norm: residual must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(weight=torch.ones(16)[::2]), ValueError,
     "fused_add_rms_norm: weight must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(eps=-1.0), ValueError, "fused_add_rms_norm: eps must be finite and non-negative, got -1."),
    (dict(eps=math.inf), ValueError, "fused_add_rms_norm: eps must be finite and non-negative, got inf."),
]

SILU_ERRORS = [
    (dict(x=torch.tensor(1.0)), ValueError, "silu_and_mul: x must have at least one dimension [..., 2F], got 0."),
    (dict(x=torch.ones(2, 4, dtype=torch.int32)), TypeError,
     "silu_and_mul: x must be torch.float32, torch.float16 or torch.bfloat16, got torch.int32."),
    (dict(x=torch.randn(2, 7)), ValueError,
     "silu_and_mul: the last dimension of x (gate and up halves) must be a positive even number, got 7."),
    (dict(x=torch.randn(2, 0)), ValueError,
     "silu_and_mul: the last dimension of x (gate and up halves) must be a positive even number, got 0."),
    (dict(x=torch.randn(8, 2).t()), ValueError,
     "silu_and_mul: x must have a contiguous last dimension (stride 1), got stride 2."),
]


test_fused_add_rms_norm_rejects = rejects("fused_add_rms_norm", _norm_args, NORM_ERRORS)
test_silu_and_mul_rejects = rejects("silu_and_mul", dict, SILU_ERRORS)


@needs_cuda
@pytest.mark.parametrize("impl", IMPLS)
def test_fused_add_rms_norm_rejects_mixed_devices(impl):
    with pytest.raises(ValueError, match=re.escape(
            "fused_add_rms_norm: weight must be on the same device as x (cuda:0), got cpu.")):
        op("fused_add_rms_norm", impl)(**_norm_args(x=torch.randn(3, 8, device="cuda"),
                                                     residual=torch.randn(3, 8, device="cuda")))


# ---- the wrappers ----------------------------------------------------------------------------------

@needs_ext
def test_wrappers_run_the_kernel_unless_reference_only(monkeypatch):
    """On the CPU these kernels are not bit-exact, so they run only where a policy asks for every CPU
    kernel (as the rule runs CUDA's); otherwise, and under reference_only, the twins run."""
    calls = []
    monkeypatch.setattr(ops, "silu_and_mul_ref", lambda x: calls.append("silu") or silu_and_mul_ref(x))
    monkeypatch.setattr(ops, "fused_add_rms_norm_ref",
                        lambda *a: calls.append("norm") or fused_add_rms_norm_ref(*a))
    x, residual, weight = _norm_inputs((3,), 16, torch.float32, "cpu", "contiguous")
    ops.silu_and_mul(x)
    assert calls == ["silu"]
    calls.clear()
    with ops.using(ops.KernelPolicy(every_cpu_kernel=True)):
        got = ops.fused_add_rms_norm(x, residual, weight, EPS)
        out = ops.silu_and_mul(x)
    assert calls == []
    with ops.reference_only():
        want = ops.fused_add_rms_norm(x, residual, weight, EPS)
        assert torch.equal(ops.silu_and_mul(x), silu_and_mul_ref(x))
    assert calls == ["norm", "silu"]
    assert torch.equal(got[1], want[1]) and torch.equal(out, torch.ops.vxl_fast.silu_and_mul(x))


# ---- rope_kv_write -----------------------------------------------------------------------------

# (n, H, Hkv, d, start, layout): one row, d = 2, GQA, prime head counts, the model's head dim,
# q/k/v as views of one fused qkv row ("qkv") or separate tensors with padded rows ("strided")
ROPE_CASES = [(1, 1, 1, 2, 0, "qkv"), (1, 4, 2, 128, 9, "qkv"), (7, 3, 1, 6, 2, "strided"),
              (13, 28, 4, 128, 0, "qkv"), (5, 7, 7, 130, 11, "strided"), (0, 2, 1, 8, 3, "qkv")]


def _rope_case(n, heads, kv_heads, d, start, layout, dtype, device, seed=0):
    g = torch.Generator().manual_seed(seed + n * d)
    if layout == "qkv":
        qkv = torch.randn(n, (heads + 2 * kv_heads) * d, generator=g).to(device, dtype)
        q, k, v = qkv.split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
        q, k, v = q.view(n, heads, d), k.view(n, kv_heads, d), v.view(n, kv_heads, d)
    else:
        q, k, v = (torch.randn(n, h, d + 4, generator=g).to(device, dtype)[..., 2:2 + d]
                   for h in (heads, kv_heads, kv_heads))
    cap = start + n + 3
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(cap + 2, dtype=torch.float32), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos().to(device), emb.sin().to(device)
    # the cache as one layer of [layers, Hkv, C, d]
    cache = torch.randn(2, 2, kv_heads, cap, d, generator=g).to(device, dtype)
    return dict(q=q, k=k, v=v, cos=cos, sin=sin, cache_k=cache[0, 1], cache_v=cache[1, 0], start=start)


def _fresh(case: dict) -> dict:
    """The same case with caches of its own (inputs shared)."""
    return {**case, "cache_k": case["cache_k"].clone(), "cache_v": case["cache_v"].clone()}


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ROPE_CASES, ids=lambda c: "-".join(map(str, c)))
def test_rope_kv_write_is_the_model_code(device, dtype, case):
    """Bit for bit what the model's PyTorch code does (``ops.apply_rope`` + slice writes)."""
    def model_rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start):
        n = q.shape[0]
        c, s = cos[start:start + n], sin[start:start + n]
        cache_k[:, start:start + n] = ops.apply_rope(k.transpose(0, 1), c, s)
        cache_v[:, start:start + n] = v.transpose(0, 1)
        return ops.apply_rope(q.transpose(0, 1), c, s)

    before = _rope_case(*case, dtype, device)
    ext, ref, model = _fresh(before), _fresh(before), _fresh(before)
    q_ext = torch.ops.vxl_fast.rope_kv_write(**ext)
    q_ref = rope_kv_write_ref(**ref)
    q_model = model_rope_kv_write(**model)
    n, heads, _, d, start, _ = case
    assert q_ext.shape == (heads, n, d) and q_ext.is_contiguous() and q_ext.dtype == dtype
    for got in (q_ext, q_ref):
        assert torch.equal(got, q_model)
    for name in ("cache_k", "cache_v"):
        assert torch.equal(ext[name], model[name]) and torch.equal(ref[name], model[name])
        # slots outside start .. start + n untouched
        assert torch.equal(ext[name][:, :start], before[name][:, :start])
        assert torch.equal(ext[name][:, start + n:], before[name][:, start + n:])
    assert torch.equal(ext["cache_v"][:, start:start + n], before["v"].transpose(0, 1))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["qkv", "strided"])
def test_opcheck_rope_kv_write(device, layout):
    case = _rope_case(5, 4, 2, 16, 3, layout, torch.bfloat16, device)
    names = ("q", "k", "v", "cos", "sin", "cache_k", "cache_v", "start")
    opcheck("rope_kv_write", *(case[n] for n in names))


def _rope_args(**override):
    n, heads, kv_heads, d, cap, positions = 3, 4, 2, 4, 10, 12
    args = dict(q=torch.randn(n, heads, d), k=torch.randn(n, kv_heads, d), v=torch.randn(n, kv_heads, d),
                cos=torch.ones(positions, d), sin=torch.zeros(positions, d),
                cache_k=torch.zeros(kv_heads, cap, d), cache_v=torch.zeros(kv_heads, cap, d), start=2)
    args.update(override)
    return args


ROPE_ERRORS = [
    (dict(q=torch.randn(3, 16)), ValueError, "rope_kv_write: q must be a 3-D tensor [n, H, d], got 2 dimensions."),
    (dict(cache_v=torch.zeros(1, 2, 10, 4)), ValueError,
     "rope_kv_write: cache_v must be a 3-D tensor [Hkv, C, d], got 4 dimensions."),
    (dict(q=torch.ones(3, 4, 4, dtype=torch.int64)), TypeError,
     "rope_kv_write: q must be torch.float32, torch.float16 or torch.bfloat16, got torch.int64."),
    (dict(cache_k=torch.zeros(2, 10, 4, dtype=torch.bfloat16)), TypeError,
     "rope_kv_write: cache_k must have the same dtype as q (torch.float32), got torch.bfloat16."),
    (dict(sin=torch.zeros(12, 4, dtype=torch.float16)), TypeError,
     "rope_kv_write: sin must be torch.float32, got torch.float16."),
    (dict(v=torch.randn(3, 1, 4)), ValueError,
     "rope_kv_write: v must have the shape of k ([3, 2, 4]), got [3, 1, 4]."),
    (dict(k=torch.randn(2, 2, 4), v=torch.randn(2, 2, 4)), ValueError,
     "rope_kv_write: k [n, Hkv, d] = [2, 2, 4] and q [n, H, d] = [3, 4, 4] must have the same n and d."),
    (dict(cache_k=torch.zeros(3, 10, 4), cache_v=torch.zeros(3, 10, 4)), ValueError,
     "rope_kv_write: cache_k [Hkv, C, d] = [3, 10, 4] and k [n, Hkv, d] = [3, 2, 4] must have the same "
     "Hkv and d."),
    (dict(q=torch.randn(3, 4, 3), k=torch.randn(3, 2, 3), v=torch.randn(3, 2, 3),
          cache_k=torch.zeros(2, 10, 3), cache_v=torch.zeros(2, 10, 3)), ValueError,
     "rope_kv_write: the head dim d must be a positive even number, got 3."),
    (dict(cos=torch.ones(12, 6), sin=torch.ones(12, 6)), ValueError,
     "rope_kv_write: cos must have d = 4 columns, got 6."),
    (dict(k=torch.randn(3, 4, 2).transpose(1, 2)[:, :2], v=torch.randn(3, 2, 4)), ValueError,
     "rope_kv_write: k must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(start=-1), ValueError, "rope_kv_write: start must be non-negative, got -1."),
    (dict(start=8), ValueError, "rope_kv_write: start + n = 11 exceeds the cache length C = 10."),
    (dict(cache_k=torch.zeros(2, 20, 4), cache_v=torch.zeros(2, 20, 4), start=10), ValueError,
     "rope_kv_write: start + n = 13 exceeds the RoPE table length P = 12."),
]


test_rope_kv_write_rejects = rejects("rope_kv_write", _rope_args, ROPE_ERRORS)
