"""The decode step's first-use check and its fallbacks (graph → eager → masked), on the CPU: a
mocked CUDA-graph capture and a stand-in "fused" decode attention take the places of the CUDA ones;
on a GPU, the real ones pass it (graph replay vs eager vs the masked reference)."""

from __future__ import annotations

import warnings

import pytest
import torch

from conftest import GOLDEN, needs_cuda
from vxl_fast import RuntimeOptions
from vxl_fast.engine.decode import CaptureFailed, StaticDecoder, check_decode
from vxl_fast.engine.runner import Runner
from vxl_fast.layers.decode_step import decode_attention_masked


def fused(q, k, v, used, bounds):
    return decode_attention_masked(q, k, v, used, bounds)


def fused_wrong(q, k, v, used, bounds):  # misses the token's own slot
    return decode_attention_masked(q, k, v, used - 1, bounds)


def capture(forward, device):  # warm-up, then a "replay" that runs the step again
    forward()
    return forward


def capture_stale(forward, device):  # a replay that recomputes nothing
    logits = forward().clone()
    return lambda: logits


def capture_raising(forward, device):
    raise RuntimeError("operation not permitted when stream is capturing")


def _runner(model, attention=fused, graphs=True, capture_with=capture, kernels="check") -> Runner:
    runner = Runner(model.config, model.model, model.device, model.dtype, RuntimeOptions(kernels=kernels))
    runner.decode_attention, runner.cuda_graphs, runner.capture = attention, graphs, capture_with
    return runner


def _check(runner) -> tuple[str, list[str]]:
    with warnings.catch_warnings(record=True) as caught, torch.inference_mode():
        warnings.simplefilter("always")
        mode = runner.check_decode()
    return mode, [str(w.message) for w in caught]


def test_the_cpu_decodes_eagerly_through_the_masked_attention(tiny_model):
    assert tiny_model.runner.decode_mode == "masked-eager"
    assert _check(_runner(tiny_model, attention=decode_attention_masked, graphs=False)) == ("masked-eager", [])


@pytest.mark.parametrize("attention, graphs, capture_with, mode, failed", [
    (fused, True, capture, "graph", None),
    (fused, False, capture, "eager", None),
    (fused, True, capture_raising, "eager", "graph raised CaptureFailed: RuntimeError: operation not permitted"),
    (fused, True, capture_stale, "eager", "graph differs from masked-eager"),
    (fused_wrong, False, capture, "masked-eager", "eager differs from masked-eager"),
    (fused_wrong, True, capture, "masked-graph", "eager differs from masked-eager"),
])
def test_the_first_mode_that_agrees_with_the_reference_is_used(tiny_model, attention, graphs, capture_with, mode,
                                                               failed):
    got, messages = _check(_runner(tiny_model, attention, graphs, capture_with))
    assert got == mode
    if failed is None:
        assert messages == []
    else:
        assert len(messages) == 1 and failed in messages[0]
        assert messages[0].startswith("vxl_fast: the decode step's first-use check on cpu for torch.float32 failed")
        assert messages[0].endswith(f"decoding in mode {mode!r}")


def test_trust_skips_the_check(tiny_model):
    assert _check(_runner(tiny_model, fused_wrong, kernels="trust")) == ("graph", [])


def test_a_failed_capture_after_the_check_decodes_eagerly_with_one_warning(tiny_model):
    frames = torch.randint(0, 256, (12, 40, 40, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    memory = tiny_model.encode(frames=frames, compression_ratio=8, reserve_tokens=16)
    runner = _runner(tiny_model)
    assert _check(runner) == ("graph", [])
    runner.capture = capture_raising
    reference, got = memory.cache.view(), memory.cache.view()
    k_before = memory.cache.k.clone()
    with torch.inference_mode():
        want = [tiny_model.runner.decode(reference, t).clone() for t in (5, 9, 17)]
        memory.cache.k.copy_(k_before)
        with pytest.warns(RuntimeWarning, match="capturing the decode step in a CUDA graph failed") as caught:
            logits = [runner.decode(got, t).clone() for t in (5, 9, 17)]
    assert len(caught) == 1 and runner.decode_mode == "eager" and got.length == reference.length
    for x, y in zip(logits, want):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_a_decoder_raises_capture_failed_and_then_runs_eagerly(tiny_model):
    memory = tiny_model.encode(frames=torch.zeros(3, 32, 32, 3, dtype=torch.uint8), reserve_tokens=8)
    runner, cache = tiny_model.runner, memory.cache.view()
    decoder = StaticDecoder(tiny_model.model, runner.rope, cache, fused, True, capture_raising)
    with torch.inference_mode():
        with pytest.raises(CaptureFailed, match="RuntimeError: operation not permitted"):
            decoder(5, cache.length)
        decoder.eager()
        eager = decoder(5, cache.length).clone()
        assert torch.equal(eager, StaticDecoder(tiny_model.model, runner.rope, cache, fused, False)(5, cache.length))


def test_check_decode_bounds_the_logits_error_relative_to_the_largest_logit():
    want = [torch.tensor([0.0, 1.0, 0.99]), torch.tensor([2.0, 0.0, 0.0])]
    runs = {"close": lambda: [w + 1e-5 for w in want], "masked-eager": lambda: want}
    assert check_decode(runs, "masked-eager", torch.float32) == ("close", [])
    near_tie = [torch.tensor([0.0, 0.99, 1.0]), want[1]]  # another greedy token, 0.01 below the best
    assert check_decode({"x": near_tie.copy, "masked-eager": lambda: want}, "masked-eager",
                        torch.bfloat16) == ("x", [])
    far = [torch.tensor([0.0, 0.5, 1.0]), want[1]]
    assert check_decode({"x": far.copy, "y": lambda: [w + 0.01 for w in want], "masked-eager": lambda: want},
                        "masked-eager", torch.bfloat16) == ("y", ["x differs from masked-eager (max error 0.5, "
                                                                  "allowed 0.08)"])
    assert check_decode({"x": far.copy, "masked-eager": lambda: want}, "masked-eager", torch.float16) == (
        "masked-eager", ["x differs from masked-eager (max error 0.5, allowed 0.02)"])


@needs_cuda
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_the_cuda_decode_step_passes_its_check_as_a_graph(dtype):
    from vxl_fast import VideoXL, VideoXLConfig

    model = VideoXL.random(VideoXLConfig.from_dir(GOLDEN / "medium-videoxl"), device="cuda", dtype=dtype)
    assert _check(model.runner) == ("graph", [])
    assert model.runner.decode_mode == "graph"
