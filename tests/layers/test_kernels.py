"""The decoder's and the vision tower's elementwise steps: which implementation each device gets,
and that the fused ops, wired in as the CUDA runner wires them, run where the PyTorch code ran and
give its results — bit for bit through their reference twins, within the ops' rounding bounds
through the kernels."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import CountOps, needs_ext
from vxl_fast import ops
from vxl_fast.layers.attention import select_backend
from vxl_fast.layers.kernels import (FUSED, FUSED_VISION, TORCH, TORCH_VISION, VisionKernels, select_kernels,
                                     select_vision_kernels)
from vxl_fast.layers.mlp import linear_quick_gelu, quick_gelu
from vxl_fast.layers.step import WindowStep
from vxl_fast.memory.kv import KVCache, VstStage
from vxl_fast.video.preprocess import patch_rows

CPU = torch.device("cpu")


def test_each_device_gets_its_kernels(tiny_model):
    assert select_kernels(torch.device("cuda")) is FUSED and select_kernels(CPU) is TORCH
    assert FUSED.add_rms_norm is ops.fused_add_rms_norm and FUSED.silu_and_mul is ops.silu_and_mul
    assert FUSED.rope_kv_write is ops.rope_kv_write
    assert tiny_model.model.llm.kernels is TORCH  # the CPU runner chose the PyTorch code


def _window_then_text(tiny_model, llm, dtype):
    """A visual window of 61 raw rows (ratio 4, carry 1; its last layer keeps only the VSTs' K/V)
    then 5 text rows: (the text rows' last hidden states, the K/V cache)."""
    cfg = tiny_model.config.llm
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(61, cfg.hidden_size, generator=g).to(dtype)
    x = ops.interleave_vst(raw, llm.beacon_embed_tokens.weight[0], 4, 1)
    nb, vst_index = ops.vst_slots(61, 4, 1)
    raw_index = ops.raw_slots(61, 4, 1)
    # room for the window's rows after the (no) kept slots; the text rows follow its VSTs
    cache = KVCache.allocate(cfg.num_layers, cfg.num_kv_heads, x.shape[0] + 5, cfg.head_dim, dtype, CPU)
    stage = VstStage.allocate(cfg.num_kv_heads, nb, cfg.head_dim, dtype, CPU)
    rope, attention = tiny_model.runner.rope, select_backend(CPU, dtype)
    with torch.inference_mode():
        llm(x, WindowStep(cache, rope, attention, x.shape[0], 0, stage, vst_index, raw_index))
        cache.length += nb
        ids = torch.randint(0, cfg.vocab_size, (5,), generator=g)
        hidden = llm(llm.embed_tokens(ids), WindowStep(cache, rope, attention, 5, nb))
    return hidden, torch.cat([cache.k, cache.v])


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def llm(request, tiny_model):
    """A copy of the tiny model's language model in the dtype, and the dtype."""
    return copy.deepcopy(tiny_model.model.llm).to(request.param), request.param


@needs_ext
def test_the_fused_ops_run_in_place_of_the_pytorch_code(tiny_model, llm):
    model, dtype = llm
    layers = tiny_model.config.llm.num_layers
    model.kernels = TORCH
    want_hidden, want_cache = _window_then_text(tiny_model, model, dtype)
    model.kernels = FUSED
    with CountOps() as counted:
        hidden, cache = _window_then_text(tiny_model, model, dtype)
    # window: the input norms of layers 1.. (the last on its VSTs only) and the post-attention
    # norms of all but the last layer, the MLPs of all but the last; text: every layer's, bar the
    # first layer's input norm (no residual yet)
    assert counted.ops["fused_add_rms_norm"] == 2 * (layers - 1) + 2 * layers - 1
    assert counted.ops["silu_and_mul"] == (layers - 1) + layers
    assert counted.ops["silu"] == 0
    # every layer of the text step; the window's but its last (which keeps only its VSTs' K/V)
    assert counted.ops["rope_kv_write"] == layers + layers - 1
    # the ops' rounding differs from PyTorch's by a few fp32 ulp in a norm (or one 16-bit ulp
    # where a value sits on a rounding boundary); through the layers it stays that small
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(hidden.float(), want_hidden.float(), rtol=tol, atol=tol)
    torch.testing.assert_close(cache.float(), want_cache.float(), rtol=tol, atol=tol)


@needs_ext
def test_the_fused_wiring_through_the_reference_twins_is_bit_exact(tiny_model, llm):
    """With VXL_KERNELS=off (or a failed self-check) the fused wiring runs the twins: the model's
    PyTorch code, residual threading included, to the bit."""
    model, dtype = llm
    model.kernels = TORCH
    want_hidden, want_cache = _window_then_text(tiny_model, model, dtype)
    model.kernels = FUSED
    with ops.reference_only(), CountOps() as counted:
        hidden, cache = _window_then_text(tiny_model, model, dtype)
    assert counted.ops["fused_add_rms_norm"] == counted.ops["silu_and_mul"] == counted.ops["rope_kv_write"] == 0
    assert counted.ops["rsqrt"] > 0
    assert torch.equal(hidden, want_hidden) and torch.equal(cache, want_cache)


# ---- the vision tower ------------------------------------------------------------------------------

def test_each_device_gets_its_vision_kernels(tiny_model):
    assert select_vision_kernels(torch.device("cuda")) is FUSED_VISION and select_vision_kernels(CPU) is TORCH_VISION
    assert FUSED_VISION.add_layer_norm is ops.add_layer_norm
    assert FUSED_VISION.embed_layer_norm is ops.clip_embed_layer_norm
    assert TORCH_VISION.linear_quick_gelu is linear_quick_gelu
    assert tiny_model.model.vision.kernels is TORCH_VISION  # the CPU runner chose the PyTorch code


# The PyTorch code with fc1's bias added after its product (the order the fused wiring adds it in)
BIAS_AFTER_GEMM = VisionKernels("torch, bias after the GEMM", TORCH_VISION.embed_layer_norm,
                                TORCH_VISION.add_layer_norm,
                                lambda x, weight, bias: quick_gelu(F.linear(x, weight) + bias))


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def tower(request, tiny_model):
    """A copy of the tiny model's vision tower in the dtype, two frames of patch rows for it, the dtype."""
    cfg = tiny_model.config.vision
    pixels = patch_rows(torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)),
                        cfg.patch_size)
    tower = copy.deepcopy(tiny_model.model.vision).to(request.param)
    return tower, pixels.to(request.param), request.param


def _layer_norms(counted: CountOps) -> int:
    """PyTorch LayerNorm calls (aten::layer_norm, or its decomposition where it has none of its own)."""
    return counted.ops["layer_norm"] + counted.ops["native_layer_norm"]


def _run_tower(tower, pixels, kernels):
    tower.kernels = kernels
    with torch.inference_mode():
        return tower(pixels)


@needs_ext
def test_the_fused_vision_ops_run_in_place_of_the_pytorch_code(tiny_model, tower):
    model, pixels, dtype = tower
    layers = tiny_model.config.vision.layers_to_run
    assert layers >= 2
    want = _run_tower(model, pixels, TORCH_VISION)
    with CountOps() as counted:
        got = _run_tower(model, pixels, FUSED_VISION)
    # the embeddings and pre_layrnorm; each layer's post-attention norm and every layer's input
    # norm but the first's (no residual yet); each layer's fc1 bias + activation; PyTorch's
    # LayerNorm only for the first layer's input norm
    assert counted.ops["clip_embed_layer_norm"] == 1
    assert counted.ops["add_layer_norm"] == 2 * layers - 1
    assert counted.ops["bias_quick_gelu"] == layers
    assert _layer_norms(counted) == 1
    assert counted.ops["sigmoid"] == 0
    assert got.shape == want.shape == (2, tiny_model.config.vision.num_patches, tiny_model.config.vision.hidden_size)
    if dtype == torch.float32:  # the norms' rounding differs from PyTorch's by a few ulp
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:  # and fc1's bias is added to the rounded product: the error of the bf16 tower, not more
        exact = _run_tower(copy.deepcopy(tiny_model.model.vision), pixels.float(), TORCH_VISION).double()
        err, err_torch = (got.double() - exact).abs(), (want.double() - exact).abs()
        assert float(err.max()) <= 2 * float(err_torch.max())
        assert float(err.mean()) <= 2 * float(err_torch.mean())


@needs_ext
def test_the_fused_vision_wiring_through_the_reference_twins_is_bit_exact(tower):
    """With VXL_KERNELS=off (or a failed self-check) the fused wiring runs the twins: the PyTorch
    code, residual threading included, to the bit, once fc1's bias is added as the wiring adds it
    (after the GEMM); in fp32 at this width that is the GEMM's own bias add, so the CPU path itself."""
    model, pixels, dtype = tower
    with ops.reference_only(), CountOps() as counted:
        got = _run_tower(model, pixels, FUSED_VISION)
    assert counted.ops["add_layer_norm"] == counted.ops["bias_quick_gelu"] == counted.ops["clip_embed_layer_norm"] == 0
    assert _layer_norms(counted) == 2 * len(model.encoder.layers) + 1 and counted.ops["sigmoid"] > 0
    assert torch.equal(got, _run_tower(model, pixels, BIAS_AFTER_GEMM))
    if dtype == torch.float32:
        assert torch.equal(got, _run_tower(model, pixels, TORCH_VISION))
