"""The CUDA code path at full model size, rehearsed on fake tensors (no GPU needed, but a CUDA
build of torch: host→device copies of fake tensors need its CUDA dispatch keys). CI runs this in
its CUDA step; a CPU build of torch skips it."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.version.cuda is None,
                                reason="needs a CUDA build of torch (CI's CUDA step runs it)")

FLASH = "_scaled_dot_product_flash_attention"


@pytest.fixture(scope="module")
def rehearsal_128():
    from vxl_fast.rehearsal import rehearse

    return rehearse(128, 16, decode_steps=32)


def test_the_whole_cuda_path_runs(rehearsal_128):
    r = rehearsal_128
    assert r.device == "cuda" and r.dtype == "bfloat16"
    assert r.windows == 13 and r.vsts == 128 * 144 // 16


def test_attention_is_fused_everywhere(rehearsal_128):
    """Two flash calls per layer (window and memory segments; a visual window's last layer needs
    no attention), none through math attention."""
    r = rehearsal_128
    assert r.ops_per_window_layer[FLASH] * 28 == pytest.approx(2 * 27, abs=0.2)
    assert r.ops_per_decode_step[FLASH] == 2 * 28
    for name in ("_scaled_dot_product_attention_math", "_safe_softmax", "softmax", "_softmax"):
        assert r.ops_total[name] == 0, name


def test_custom_ops_run_as_on_the_device(rehearsal_128):
    r = rehearsal_128
    assert r.ops_per_window_layer["kv_discard"] == 1
    assert r.ops_total["interleave_vst"] == r.windows
    assert r.ops_total["clip_preprocess"] == -(-128 // 10)  # one call per window's frames


def test_fused_elementwise_ops_run_as_on_the_device(rehearsal_128):
    """Residual add + RMSNorm, SiLU * up and a text step's RoPE + K/V write are one custom op each
    on CUDA (layers.kernels.FUSED):
    a window runs 27 layers fully and the last one's input norm on its VSTs (no residual add in
    layer 0), a decode step all 28; only the first layer's input norm and the final norm stay
    PyTorch's (one rsqrt each)."""
    r = rehearsal_128
    assert r.ops_per_window_layer["fused_add_rms_norm"] * 28 == pytest.approx(2 * 27, abs=0.2)
    assert r.ops_per_window_layer["silu_and_mul"] * 28 == pytest.approx(27, abs=0.2)
    assert r.ops_per_decode_step["fused_add_rms_norm"] == 2 * 28 - 1
    assert r.ops_per_decode_step["silu_and_mul"] == 28
    assert r.ops_per_decode_step["rsqrt"] == 2
    assert r.ops_total["silu"] == 0
    # a text step's RoPE and cache write, one op per layer; visual windows stage raw K/V instead
    assert r.ops_per_decode_step["rope_kv_write"] == 28
    assert r.ops_per_window_layer["rope_kv_write"] == 0


def test_simulated_peak_is_what_the_planner_says(rehearsal_128):
    r = rehearsal_128
    assert abs(r.peak_bytes - r.planned_bytes) <= 0.05 * r.peak_bytes, r.as_dict()
