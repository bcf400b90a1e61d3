"""The CUDA code path at full model size, rehearsed on fake tensors (no GPU needed, but a CUDA
build of torch: host→device copies of fake tensors need its CUDA dispatch keys). CI runs this in
its CUDA step; a CPU build of torch skips it."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.skipif(torch.version.cuda is None,
                                reason="needs a CUDA build of torch (CI's CUDA step runs it)")

FLASH = "_scaled_dot_product_flash_attention"


@pytest.fixture(scope="module", params=["prefix", "split"])
def rehearsal_128(request):
    from vxl_fast.testing.rehearsal import rehearse

    return rehearse(128, 16, decode_steps=32, attention=request.param)


def test_the_whole_cuda_path_runs(rehearsal_128):
    r = rehearsal_128
    assert r.device == "cuda" and r.dtype == "bfloat16" and r.attention in ("prefix", "split")
    assert r.windows == 13 and r.vsts == 128 * 144 // 16


def test_attention_is_fused_everywhere(rehearsal_128):
    """Per layer one flash call over the cache's prefix (prefix) or two, window and memory
    segments (split); a visual window's last layer needs no attention; no math attention."""
    r = rehearsal_128
    calls = 1 if r.attention == "prefix" else 2
    assert r.ops_per_window_layer[FLASH] * 28 == pytest.approx(calls * 27, abs=0.2)
    # decode: the static step's flash-decoding call per layer, the length read from device memory
    assert r.ops_per_decode_step["_flash_attention_forward"] == 28 and r.ops_per_decode_step[FLASH] == 0
    for name in ("_scaled_dot_product_attention_math", "_safe_softmax", "softmax", "_softmax"):
        assert r.ops_total[name] == 0, name


def test_custom_ops_run_as_on_the_device(rehearsal_128):
    r = rehearsal_128
    assert r.ops_per_window_layer["kv_compact"] == 1  # every layer, the last one included
    assert r.ops_total["interleave_vst"] == r.windows
    assert r.ops_total["clip_preprocess"] == -(-128 // r.vision_batch)  # one call per vision batch


def test_encoding_never_waits_for_the_device_but_once_at_the_end(rehearsal_128):
    """No synchronize in the window loop: the times are CUDA events read once, after the last window."""
    assert rehearsal_128.encode_waits == 1


def test_frames_from_the_host_are_uploaded_on_the_copy_stream_without_a_wait():
    """A video's decoded frames start on the host: each vision batch is uploaded on the copy
    stream, which the compute stream waits for on the device; the host still waits only once."""
    from vxl_fast.testing.rehearsal import rehearse

    r = rehearse(32, 16, decode_steps=2, frames_on="host")
    assert r.uploads == -(-32 // r.vision_batch) and r.encode_waits == 1
    assert r.windows == -(-32 * 144 // 1440)
    assert abs(r.peak_bytes - r.planned_bytes) <= 0.05 * r.peak_bytes, r.as_dict()


def test_fused_elementwise_ops_run_as_on_the_device(rehearsal_128):
    """Residual add + RMSNorm, SiLU * up and a window's RoPE + K/V write are one custom op each
    on CUDA (the rule of ops.dispatch):
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
    # a window's RoPE and cache write, one op per layer but the last (which keeps only its VSTs'
    # K/V); the static decode step writes at a device position instead (a host start would be
    # baked into a captured graph)
    assert r.ops_per_window_layer["rope_kv_write"] * 28 == pytest.approx(27, abs=0.2)
    assert r.ops_per_decode_step["rope_kv_write"] == 0 and r.ops_per_decode_step["index_copy_"] == 2 * 28
    # the token's RoPE rows, gathered once per token for all 28 layers (DecodeStep.begin)
    assert r.ops_per_decode_step["index_select"] == 2


def test_vision_fused_ops_run_as_on_the_device(rehearsal_128):
    """The vision tower on CUDA (the rule of ops.dispatch), per vision-tower call: the class
    token, position embedding and pre_layrnorm are one clip_embed_layer_norm, each layer's
    post-attention residual add + LayerNorm and the next layer's input one are one add_layer_norm
    (layer 0's input norm has no residual yet), fc1's bias + quick GELU one bias_quick_gelu; only
    layer 0's layer_norm1 stays PyTorch's LayerNorm."""
    from vxl_fast.config import VideoXLConfig

    r = rehearsal_128
    layers = VideoXLConfig.released().vision.layers_to_run
    calls = -(-128 // r.vision_batch)
    assert layers == 23
    assert r.ops_total["clip_embed_layer_norm"] == calls
    assert r.ops_total["add_layer_norm"] == calls * (2 * layers - 1)
    assert r.ops_total["bias_quick_gelu"] == calls * layers
    assert r.ops_total["layer_norm"] + r.ops_total["native_layer_norm"] == calls
    assert r.ops_total["sigmoid"] == 0


def test_simulated_peak_is_what_the_planner_says(rehearsal_128):
    r = rehearsal_128
    assert abs(r.peak_bytes - r.planned_bytes) <= 0.05 * r.peak_bytes, r.as_dict()


def test_2048_frames_streamed_from_the_host_fit_the_target_and_the_plan():
    """Issue 24's memory target, rehearsed: 2048 frames at ratio 16 in bf16 from host memory (the
    default path of a video) peak at ≤ 17.2 GiB of live tensors, within 3% of the planner's total."""
    from vxl_fast.testing.rehearsal import GIB, rehearse

    r = rehearse(2048, 16, decode_steps=2, frames_on="host")
    assert r.windows == 205 and r.uploads == -(-2048 // r.vision_batch)
    assert r.peak_bytes <= 17.2 * GIB, r.as_dict()
    assert abs(r.peak_bytes - r.planned_bytes) <= 0.03 * r.peak_bytes, r.as_dict()
