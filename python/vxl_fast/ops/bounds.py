"""How far a correct kernel may be from the exact result: float64 oracles and elementwise error bounds
derived from the rounding steps, shared by the self-check (``selfcheck.py``) and the op tests.

Each ``*_bound`` returns (oracle, allowed |kernel - oracle|). ``vs_reference`` widens a bound to
what a correct kernel may differ from the PyTorch twin, which has an error of the same order and may
round a value that close to a boundary the other way (one more unit of the dtype).
u_T is the unit roundoff of dtype T (half its machine epsilon); u32 that of float32.
"""

from __future__ import annotations

import math

import torch

U = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}
SIGMOID_SCALE = float(torch.tensor(1.702, dtype=torch.float32))  # quick GELU's 1.702 as fp32 opmath sees it


def _tiny(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).tiny


def vs_reference(oracle: torch.Tensor, bound: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Allowed |kernel - PyTorch twin|: both within ``bound`` of the oracle, and one unit of the
    dtype more where a value lies that close to a rounding boundary."""
    return 2 * bound + 2 * U[dtype] * oracle.abs()


def rms_norm_bound(h: torch.Tensor, weight: torch.Tensor, eps: float, dtype: torch.dtype) -> tuple:
    """``fused_add_rms_norm``'s normed output from the rounded h [..., D].

    The kernel sums squares in another order than PyTorch (32 lane-strided partial sums of
    m = 8·ceil(D / 256) terms each, then 5 butterfly levels) and takes 1 / sqrt as a rounded division
    of a rounded square root. Before its roundings to the dtype, h32 · r is then within
    (4·ceil(D / 256) + 7) u32 of its exact value (the sum's error halved by the square root, plus the
    division, sqrt, reciprocal and product); h32 · r and the weight product are each rounded to the
    dtype (u_T each); plus the spacing of the dtype at zero.
    """
    h64 = h.double()
    oracle = weight.double() * h64 / torch.sqrt(h64.pow(2).mean(-1, keepdim=True) + eps)
    pre = (4 * math.ceil(h.shape[-1] / 256) + 7) * U[torch.float32]
    return oracle, oracle.abs() * (pre + 2 * U[dtype]) * (1 + 1e-6) + _tiny(dtype)


def layer_norm_bound(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                     dtype: torch.dtype) -> tuple:
    """``add_layer_norm``'s (and ``clip_embed_layer_norm``'s) normed output from the rounded h [..., D].

    The kernel's two sums run in another order than PyTorch's (m = 8·ceil(D / 256) + 5 additions
    along a sum's longest path), its variance is the two-pass one where PyTorch uses Welford's
    update, and 1 / sqrt is a rounded division of a rounded square root. With z = (h - mean) / sigma
    and sigma = sqrt(var + eps) exact, each value before the rounding to the dtype is within

        u32 · ((m / 2 + 8)·|weight·z| + (m + 2)·|weight|·mean(|h|) / sigma + 2·|normed|)

    of its exact value, to first order (the mean's error relative to sigma is the middle term; the
    variance's terms are all non-negative, so its error is relative); then the rounding to the dtype
    (u_T of the value) and the spacing of the dtype at zero.
    """
    h64 = h.double()
    mean = h64.mean(-1, keepdim=True)
    sigma = torch.sqrt((h64 - mean).pow(2).mean(-1, keepdim=True) + eps)
    z = (h64 - mean) / sigma
    oracle = weight.double() * z + bias.double()
    spread = h64.abs().mean(-1, keepdim=True) / sigma
    m = 8 * math.ceil(h.shape[-1] / 256) + 5
    w = weight.double().abs()
    pre = U[torch.float32] * ((m / 2 + 8) * (w * z).abs() + (m + 2) * w * spread + 2 * oracle.abs())
    return oracle, (pre + U[dtype] * (oracle.abs() + pre)) * (1 + 1e-6) + _tiny(dtype)


def silu_and_mul_bound(x: torch.Tensor, dtype: torch.dtype) -> tuple:
    """``silu_and_mul`` of x [..., 2F] = cat(gate, up): silu in fp32 within 4 u32 (exp within an ulp,
    the add and the division), its rounding to the dtype and the product's (u_T each; the product of
    two 16-bit values is exact in fp32), plus the spacing of the dtype at zero."""
    gate, up = x.double().chunk(2, dim=-1)
    silu = gate / (1 + torch.exp(-gate))
    oracle = silu * up
    bound = ((silu.abs() * (4 * U[torch.float32] + U[dtype]) * up.abs()) * (1 + U[dtype])
             + oracle.abs() * U[dtype] + _tiny(dtype))
    return oracle, bound


def quick_gelu_bound(x: torch.Tensor, bias: torch.Tensor, dtype: torch.dtype) -> tuple:
    """``bias_quick_gelu``: h · sigmoid(t) from the rounded h = T(x + bias), t = 1.702·h. t rounded to
    the dtype moves sigmoid(t) by u_T·|t|·(1 - sigmoid(t)) relative, the fp32 sigmoid is within 4 u32
    (exp within an ulp, the add and the division), then the roundings of the sigmoid and of the
    product (u_T each), plus the spacing of the dtype at zero."""
    h = (x + bias).double()
    t = SIGMOID_SCALE * h
    oracle = h * torch.sigmoid(t)
    rel = U[dtype] * (2 + t.abs() * torch.sigmoid(-t)) + 4 * U[torch.float32]
    if dtype == torch.float32:
        rel = rel + U[dtype]  # t's rounding is real in fp32 too (a separate product)
    return oracle, oracle.abs() * rel * (1 + 4 * U[dtype]) + _tiny(dtype)


def rope_bound(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor,
               dtype: torch.dtype) -> torch.Tensor:
    """Largest |kernel - reference| of a RoPE'd key or query, elementwise (``kv_compact``,
    ``rope_kv_write``).

    x: [..., d] in fp32, cos/sin: [..., d], out: the fp32 result. out[c] = fl(fl(a) ± fl(b)) with
    a = lo·cos, b = hi·sin; a kernel that contracts this into one FMA differs from the reference by
    at most 2·eps32·(|a| + |b|) before the final cast. Two fp32 values that close may then round to
    neighbouring values of a 16-bit dtype: one more ulp, at most eps_T·|out| (plus the subnormal
    spacing).
    """
    half = x.shape[-1] // 2
    x = x.double()
    partner = torch.cat((x[..., half:], x[..., :half]), dim=-1)
    bound = 2 * torch.finfo(torch.float32).eps * (x.abs() * cos.double().abs() + partner.abs() * sin.double().abs())
    if dtype != torch.float32:
        info = torch.finfo(dtype)
        bound = bound + info.eps * out.double().abs() + info.smallest_normal * info.eps
    return bound
