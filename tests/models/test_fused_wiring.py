"""The decoder's and the vision tower's elementwise steps: which implementation the one rule of
``ops.dispatch`` gives each device, and that the fused ops, run where a GPU runs them (here their
C++ CPU kernels, ``KernelPolicy(every_cpu_kernel=True)``), replace the PyTorch code and give its
results — bit for bit through their reference twins, within the ops' rounding bounds through the
kernels."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import CountOps, needs_ext
from vxl_fast import ops
from vxl_fast.layers.attention import select_attention
from vxl_fast.layers.step import Slots, WindowStep
from vxl_fast.video.preprocess import patch_rows

CPU = torch.device("cpu")
FUSED_ON_CPU = ops.KernelPolicy("check", every_cpu_kernel=True)



@needs_ext
def test_the_rule_runs_only_exact_cpu_kernels():
    policy = ops.KernelPolicy()
    exact = {name for name, spec in ops.OPS.items() if spec.cpu_exact}
    assert exact == {"clip_preprocess", "interleave_vst", "kv_compact", "rope_kv_write", "yuv420_to_rgb"}
    for name in ops.OPS:
        assert policy.compiled(name, CPU, torch.float32) == (name in exact)
        assert FUSED_ON_CPU.compiled(name, CPU, torch.float32)
        assert not ops.KernelPolicy("off").compiled(name, CPU, torch.float32)
        assert not policy.compiled(name, torch.device("meta"), torch.float32)


def _window_then_text(tiny_model, llm, dtype):
    """A visual window of 61 raw rows (ratio 4, carry 1; its last layer keeps only the VSTs' K/V)
    then 5 text rows: (the text rows' last hidden states, the K/V cache)."""
    cfg = tiny_model.config.llm
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(61, cfg.hidden_size, generator=g).to(dtype)
    x = ops.interleave_vst(raw, llm.beacon_embed_tokens.weight[0], 4, 1)
    nb, vst_index = ops.vst_slots(61, 4, 1)
    slots = Slots(vst_index, ops.raw_slots(61, 4, 1))
    # room for the window's rows after the (no) kept slots; the text rows follow its VSTs
    shape = (cfg.num_layers, cfg.num_kv_heads, x.shape[0] + 5, cfg.head_dim)
    cache_k, cache_v = torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype)
    stage_k, stage_v = (torch.zeros(cfg.num_kv_heads, nb, cfg.head_dim, dtype=dtype) for _ in range(2))
    rope = tiny_model.runner.rope
    _, attention = select_attention(CPU, dtype, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim)
    views = dict(cache_k=cache_k, cache_v=cache_v, cos=rope.cos, sin=rope.sin, attention=attention)
    with torch.inference_mode():
        llm(x, WindowStep(**views, rows=x.shape[0], start=0, slots=slots, stage_k=stage_k, stage_v=stage_v))
        ids = torch.randint(0, cfg.vocab_size, (5,), generator=g)
        hidden = llm(llm.embed_tokens(ids), WindowStep(**views, rows=5, start=nb))
    return hidden, torch.cat([cache_k, cache_v])


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def llm(request, tiny_model):
    """A copy of the tiny model's language model in the dtype, and the dtype."""
    return copy.deepcopy(tiny_model.model.llm).to(request.param), request.param


@needs_ext
def test_the_fused_ops_run_in_place_of_the_pytorch_code(tiny_model, llm):
    model, dtype = llm
    layers = tiny_model.config.llm.num_layers
    want_hidden, want_cache = _window_then_text(tiny_model, model, dtype)
    with ops.using(FUSED_ON_CPU), CountOps() as counted:
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
def test_the_cpu_path_is_the_reference_twins_to_the_bit(tiny_model, llm):
    """The CPU path (the exact kernels only) equals the twins everywhere (``reference_only``, the
    path VXL_KERNELS=off or a failed self-check takes): the model's PyTorch code to the bit."""
    model, dtype = llm
    with CountOps() as counted:
        want_hidden, want_cache = _window_then_text(tiny_model, model, dtype)
    assert counted.ops["fused_add_rms_norm"] == counted.ops["silu_and_mul"] == 0
    assert counted.ops["rope_kv_write"] > 0 and counted.ops["kv_compact"] > 0
    with ops.reference_only(), CountOps() as counted:
        hidden, cache = _window_then_text(tiny_model, model, dtype)
    assert counted.ops["rope_kv_write"] == counted.ops["kv_compact"] == counted.ops["interleave_vst"] == 0
    assert counted.ops["rsqrt"] > 0
    assert torch.equal(hidden, want_hidden) and torch.equal(cache, want_cache)


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


def _run_tower(tower, pixels, policy=None):
    with torch.inference_mode(), ops.using(policy or ops.KernelPolicy()):
        return tower(pixels)


@needs_ext
def test_the_fused_vision_ops_run_in_place_of_the_pytorch_code(tiny_model, tower):
    model, pixels, dtype = tower
    layers = tiny_model.config.vision.layers_to_run
    assert layers >= 2
    want = _run_tower(model, pixels)
    with CountOps() as counted:
        got = _run_tower(model, pixels, FUSED_ON_CPU)
    # the embeddings and pre_layrnorm; each layer's post-attention norm and every layer's input
    # norm but the first's (no residual yet); each layer's fc1 bias + activation; PyTorch's
    # LayerNorm only for the first layer's input norm
    assert counted.ops["clip_embed_layer_norm"] == 1
    assert counted.ops["add_layer_norm"] == 2 * layers - 1
    assert counted.ops["bias_quick_gelu"] == layers
    assert _layer_norms(counted) == 1
    assert counted.ops["sigmoid"] == counted.ops["cat"] == 0
    assert got.shape == want.shape == (2, tiny_model.config.vision.num_patches, tiny_model.config.vision.hidden_size)
    if dtype == torch.float32:  # the norms' rounding differs from PyTorch's by a few ulp
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    else:  # and fc1's bias is added to the rounded product: the error of the bf16 tower, not more
        exact = _run_tower(copy.deepcopy(tiny_model.model.vision), pixels.float()).double()
        err, err_torch = (got.double() - exact).abs(), (want.double() - exact).abs()
        assert float(err.max()) <= 2 * float(err_torch.max())
        assert float(err.mean()) <= 2 * float(err_torch.mean())


@needs_ext
def test_the_vision_tower_on_the_cpu_is_the_pytorch_code(tower):
    """The CPU tower runs no fused op: the twins (fc1's bias inside the GEMM), to the bit of
    ``reference_only``."""
    model, pixels, _ = tower
    with CountOps() as counted:
        got = _run_tower(model, pixels)
    assert counted.ops["add_layer_norm"] == counted.ops["bias_quick_gelu"] == counted.ops["clip_embed_layer_norm"] == 0
    assert _layer_norms(counted) == 2 * len(model.encoder.layers) + 1 and counted.ops["sigmoid"] > 0
    with ops.reference_only():
        assert torch.equal(got, _run_tower(model, pixels, ops.KernelPolicy("off")))
