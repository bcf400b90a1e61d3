"""On a GPU: each window-attention backend against the masked reference at the released (28 query
heads, 4 K/V heads) and medium (7/1) head shapes, d 128, in bf16 and fp16, on the first-use
check's own probe; and the backend the runner would choose."""

from __future__ import annotations

import pytest
import torch

from conftest import needs_cuda
from vxl_fast.layers.attention import _implementations, _probe_inputs, masked_attention, select_attention

pytestmark = needs_cuda

CUDA = torch.device("cuda")
SHAPES = {"released": (28, 4), "medium": (7, 1)}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _errors(heads, kv_heads, dtype, backends):
    inputs = _probe_inputs(CUDA, dtype, heads, kv_heads, 128)
    exact = masked_attention(*(t.float() for t in inputs))
    ref_err = (masked_attention(*inputs).float() - exact).abs().max().item()
    available = _implementations(CUDA, dtype)
    return ref_err, {b: (available[b](*inputs).float() - exact).abs().max().item() for b in backends}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", ["prefix", "split", "cudnn"])
def test_each_backend_computes_the_references_attention(backend, shape, dtype):
    """Causality, GQA and the merge right: within 3× the reference's own rounding error (a wrong
    mask or head mapping is off by far more); ``prefix`` also within the check's 2×."""
    ref_err, errors = _errors(*SHAPES[shape], DTYPES[dtype], [backend])
    assert errors[backend] <= 3 * ref_err + 1e-6, (errors, ref_err)
    if backend == "prefix":
        assert errors[backend] <= 2 * ref_err + 1e-6, (errors, ref_err)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES)
def test_the_chosen_backend_is_fused_and_passes_the_check(shape, dtype):
    heads, kv_heads = SHAPES[shape]
    name, _ = select_attention(CUDA, DTYPES[dtype], heads, kv_heads, 128)
    ref_err, errors = _errors(heads, kv_heads, DTYPES[dtype], [name])
    assert name != "masked" and errors[name] <= 2 * ref_err + 1e-6, (name, errors, ref_err)


@pytest.mark.parametrize("m", [90, 1536, 5000])
def test_cudnn_with_bucketed_keys_read_from_the_cache(m):
    """The kept slots padded to ``key_bucket(m)`` and read in place from a larger cache (the
    engine's view) give the masked reference's answer."""
    from vxl_fast.layers.attention import split_attention_cudnn

    g = torch.Generator(device="cpu").manual_seed(m)
    n, slots = 306, 9000
    q = torch.randn(28, n, 128, generator=g).to(CUDA, torch.bfloat16)
    k, v = (torch.randn(4, slots, 128, generator=g).to(CUDA, torch.bfloat16) for _ in range(2))
    k, v = k[:, :m + n], v[:, :m + n]
    exact = masked_attention(q.float(), k.float(), v.float())
    ref_err = (masked_attention(q, k, v).float() - exact).abs().max().item()
    assert (split_attention_cudnn(q, k, v).float() - exact).abs().max().item() <= 3 * ref_err + 1e-6
