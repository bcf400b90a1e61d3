"""Attention over the cache's contiguous prefix: every backend against an explicit softmax, the
preconditions of the fused CUDA kernels, and the choice of a backend."""

from __future__ import annotations

import re

import pytest
import torch

from vxl_fast.layers import attention
from vxl_fast.layers.attention import (_check_fused, _flash_cpu, choose, masked_attention, select_attention,
                                       split_attention, split_attention_cpu)


def _explicit(q, k, v):
    h, n, d = q.shape
    g = h // k.shape[0]
    m = k.shape[1] - n
    k, v = k.repeat_interleave(g, 0).double(), v.repeat_interleave(g, 0).double()
    scores = q.double() @ k.transpose(1, 2) / d ** 0.5
    visible = torch.ones(n, m + n, dtype=torch.bool).tril(m)
    scores = scores.masked_fill(~visible, float("-inf"))
    return (scores.softmax(-1) @ v).transpose(0, 1)


def _prefix(kv_heads, m, n, d, slots=None):
    """K/V of the first m + n slots of a cache of ``slots`` slots (a view, as the engine passes)."""
    slots = slots or m + n + 7
    k, v = torch.randn(kv_heads, slots, d), torch.randn(kv_heads, slots, d)
    return k[:, :m + n], v[:, :m + n]


@pytest.mark.parametrize("heads, kv_heads, d", [(4, 2, 32), (7, 1, 128), (28, 4, 128)])
@pytest.mark.parametrize("m, n", [(0, 1), (0, 37), (23, 1), (113, 306), (5, 1)])
def test_cpu_backends_match_explicit_softmax(heads, kv_heads, d, m, n):
    torch.manual_seed(m * 1000 + n)
    q = torch.randn(heads, n, d)
    k, v = _prefix(kv_heads, m, n, d)
    expected = _explicit(q, k, v)
    for fn in (split_attention_cpu, masked_attention, _selected(torch.device("cpu"), torch.float32)):
        got = fn(q, k, v)
        assert got.shape == (n, heads, d) and got.dtype == torch.float32
        assert (got.double() - expected).abs().max().item() < 2e-6, fn.__name__


def test_bf16_error_is_within_twice_the_bf16_reference():
    torch.manual_seed(0)
    q = torch.randn(8, 64, 64)
    k, v = _prefix(2, 200, 64, 64)
    exact = _explicit(q, k, v)
    ref_bf16 = _explicit(*(t.bfloat16().float() for t in (q, k, v))).bfloat16().double()
    ref_err = (ref_bf16 - exact).abs().max().item()
    got = split_attention_cpu(*(t.bfloat16() for t in (q, k, v))).double()
    assert (got - exact).abs().max().item() <= 2 * ref_err


def _checked_flash(calls):
    """The CPU flash kernel behind the fused-kernel preconditions, recording each call."""
    def flash(q, k, v, causal):
        _check_fused(q, k, v)
        calls.append((tuple(q.shape), tuple(k.shape), causal))
        return _flash_cpu(q, k, v, causal)
    return flash


@pytest.mark.parametrize("m, n", [(0, 5), (40, 17), (9, 1)])
def test_the_cuda_paths_give_the_fused_kernels_what_they_need(monkeypatch, m, n):
    """The tensors the CUDA backends hand to the flash kernel: 4-D, bf16, last dim contiguous, K/V
    heads not repeated, no mask (the kernel is the CPU one here, behind the same checks)."""
    torch.manual_seed(n)
    q = torch.randn(28, n, 128).bfloat16().transpose(0, 1).contiguous().transpose(0, 1)  # [H, n, d] view
    k, v = (t.bfloat16() for t in _prefix(4, m, n, 128, slots=m + n + 30))
    exact = _explicit(q, k, v)
    calls = []
    got = split_attention(_checked_flash(calls), q, k, v)
    assert calls[0] == ((1, 28, n, 128), (1, 4, n, 128), True)
    if m:
        assert calls[1] == ((1, 4, 7 * n, 128), (1, 4, m, 128), False)  # a KV head's queries folded
    assert len(calls) == (2 if m else 1)
    assert (got.double() - exact).abs().max().item() < 0.05
    # prefix: one call over the whole prefix (the CUDA kernel aligns causality bottom-right, which
    # the CPU kernel does not: it stands in only for the shapes here)
    calls.clear()
    monkeypatch.setattr(attention, "_flash_cuda", _checked_flash(calls))
    attention.prefix_attention_cuda(q, k, v)
    assert calls == [((1, 28, n, 128), (1, 4, m + n, 128), True)]
    with pytest.raises(AssertionError, match="bf16/fp16"):
        _check_fused(q.float()[None], k.float()[None], v.float()[None])
    with pytest.raises(AssertionError, match="4-D"):
        _check_fused(q, k, v)


def test_choose_takes_the_fastest_that_agrees():
    torch.manual_seed(0)
    q = torch.randn(8, 32, 64)
    k, v = _prefix(2, 48, 32, 64)
    top_left = lambda q, k, v: _flash_cpu(q[None], k[None], v[None], True)[0][0].transpose(0, 1)  # noqa: E731
    available = {"prefix": top_left, "split": split_attention_cpu, "masked": masked_attention}
    timings = {"prefix": 0.1, "split": 0.5}
    with pytest.warns(RuntimeWarning, match=re.escape("attention backend 'prefix' disagrees with the reference")):
        assert choose(available, (q, k, v), lambda fn, _: timings["prefix" if fn is top_left else "split"]) == "split"
    # when two agree, the faster one wins; when none does, the reference
    fast_copy = lambda q, k, v: split_attention_cpu(q, k, v)  # noqa: E731
    assert choose({"prefix": fast_copy, "split": split_attention_cpu}, (q, k, v),
                  lambda fn, _: 0.1 if fn is fast_copy else 0.5) == "prefix"
    with pytest.warns(RuntimeWarning):
        assert choose({"prefix": top_left, "masked": masked_attention}, (q, k, v), lambda fn, _: 0.0) == "masked"

    def unsupported(q, k, v):
        raise RuntimeError("no kernel for this shape")
    with pytest.warns(RuntimeWarning, match=re.escape("attention backend 'cudnn' failed on cpu (no kernel for")):
        assert choose({"cudnn": unsupported, "split": split_attention_cpu}, (q, k, v), lambda fn, _: 0.0) == "split"


def _selected(device, dtype, forced="auto"):
    return select_attention(device, dtype, 8, 2, 64, forced)[1]


def test_the_runtime_option_forces_a_backend():
    cpu = torch.device("cpu")
    assert select_attention(cpu, torch.float32, 8, 2, 64, "masked") == ("masked", masked_attention)
    with pytest.raises(ValueError, match=re.escape("attention='prefix' cannot run on cpu in torch.float32 "
                                                   "(available: split, masked)")):
        _selected(cpu, torch.float32, "prefix")
    assert select_attention(cpu, torch.bfloat16, 8, 2, 64) == ("split", split_attention_cpu)
    assert _selected(torch.device("cuda"), torch.float32) is masked_attention  # flash has no fp32


def _attention_shapes(plan) -> set[tuple[int, int, bool]]:
    """(queries, keys, causal) of every flash call the ``cudnn`` backend makes for ``plan`` (per
    layer): the sink, each visual window, the text after the video (decode has its own kernel)."""
    steps = [(plan.sink, 0), *((w.rows, w.kv_before) for w in plan.windows),
             (plan.text_after, plan.sink + plan.num_vsts)]
    shapes = set()
    for n, m in steps:
        shapes.add((n, n, True))
        if m:
            shapes.add((n, attention.key_bucket(m), False))
    return shapes


def test_cudnn_sees_at_most_16_attention_shapes_at_2048_frames():
    from vxl_fast import VideoXLConfig
    from vxl_fast.memory.plan import plan_request

    cfg = VideoXLConfig.released()
    plan = plan_request(14, 2048 * 144, 20, 1024, cfg.beacon.window, (16,))
    assert len(plan.windows) == 205 and len({w.kv_before for w in plan.windows}) == 205
    shapes = _attention_shapes(plan)
    assert len(shapes) == 14, sorted(shapes)
    assert {k for _, k, causal in shapes if not causal} == {512, 1024, 2048, 4096, 8192, 12288, 16384, 20480}


@pytest.mark.parametrize("m, expected", [(1, 512), (512, 512), (513, 1024), (4096, 4096), (4097, 8192),
                                         (18374, 20480)])
def test_key_bucket(m, expected):
    assert attention.key_bucket(m) == expected


@pytest.mark.parametrize("slots", [None, 6000], ids=["zero-padded", "read-in-place"])
@pytest.mark.parametrize("m, n", [(1, 5), (300, 100), (4100, 37)])
def test_padded_keys_give_the_unpadded_result_on_the_cpu(m, n, slots):
    """The cudnn path's bucketed kept slots (masked past m) through the CPU flash kernel: the
    result of the unpadded split, whether the slots past m are read from the cache or zero-padded."""
    torch.manual_seed(m + n)
    q = torch.randn(28, n, 128)
    k, v = _prefix(4, m, n, 128, slots)
    got = split_attention(_flash_cpu, q, k, v, attention.key_bucket)
    assert (got - split_attention_cpu(q, k, v)).abs().max().item() < 1e-6
    assert (got.double() - _explicit(q, k, v)).abs().max().item() < 2e-6
