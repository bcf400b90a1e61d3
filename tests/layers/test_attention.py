"""Window attention over [memory | window]: both implementations against an explicit softmax."""

from __future__ import annotations

import pytest
import torch

from vxl_fast.layers.attention import masked_attention, split_attention_cpu, window_attention


def _explicit(q, k_mem, v_mem, k_win, v_win):
    h, n, d = q.shape
    g = h // k_mem.shape[0]
    k = torch.cat([k_mem, k_win], 1).repeat_interleave(g, 0).double()
    v = torch.cat([v_mem, v_win], 1).repeat_interleave(g, 0).double()
    m = k_mem.shape[1]
    scores = q.double() @ k.transpose(1, 2) / d ** 0.5
    visible = torch.ones(n, m + n, dtype=torch.bool).tril(m)
    scores = scores.masked_fill(~visible, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(0, 1)


@pytest.mark.parametrize("heads, kv_heads, d", [(4, 2, 32), (7, 1, 128), (28, 4, 128)])
@pytest.mark.parametrize("m, n", [(0, 1), (0, 37), (23, 1), (113, 306), (5, 1)])
def test_both_paths_match_explicit_softmax(heads, kv_heads, d, m, n):
    torch.manual_seed(m * 1000 + n)
    q = torch.randn(heads, n, d)
    k_mem, v_mem = torch.randn(kv_heads, m, d), torch.randn(kv_heads, m, d)
    k_win, v_win = torch.randn(kv_heads, n, d), torch.randn(kv_heads, n, d)
    expected = _explicit(q, k_mem, v_mem, k_win, v_win)
    for fn in (split_attention_cpu, masked_attention, window_attention):
        got = fn(q, k_mem, v_mem, k_win, v_win)
        assert got.shape == (n, heads, d) and got.dtype == torch.float32
        assert (got.double() - expected).abs().max().item() < 2e-6, fn.__name__


def test_bf16_error_is_within_twice_the_bf16_reference():
    torch.manual_seed(0)
    q, km, vm, kw, vw = (torch.randn(s) for s in [(8, 64, 64), (2, 200, 64), (2, 200, 64), (2, 64, 64), (2, 64, 64)])
    exact = _explicit(q, km, vm, kw, vw)
    ref_bf16 = _explicit(*(t.bfloat16().float() for t in (q, km, vm, kw, vw))).bfloat16().double()
    ref_err = (ref_bf16 - exact).abs().max().item()
    got = split_attention_cpu(*(t.bfloat16() for t in (q, km, vm, kw, vw))).double()
    assert (got - exact).abs().max().item() <= 2 * ref_err
