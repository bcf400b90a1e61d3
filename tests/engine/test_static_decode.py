"""The static decode step (the code a CUDA graph captures), run eagerly on the CPU: the same
tokens and logits as a decode through the window step, its K/V in the same slots, and nothing
read from the host but the token id."""

from __future__ import annotations

import gc

import torch

from vxl_fast.engine.decode import StaticDecoder


def test_static_step_equals_a_text_step(tiny_model):
    frames = torch.randint(0, 256, (12, 40, 40, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    memory = tiny_model.encode(frames=frames, compression_ratio=8, reserve_tokens=16)
    runner = tiny_model.runner
    a, b = memory.cache.view(), memory.cache.view()
    k_before = memory.cache.k.clone()
    with torch.inference_mode():
        via_text = [runner.logits(runner.run_text(a, [t], "decode", None))[0] for t in (5, 9, 17)]
        text_k = memory.cache.k[:, :, a.length - 3:a.length].clone()
        memory.cache.k.copy_(k_before)
        decoder = StaticDecoder(tiny_model.model, runner.rope, b, runner.decode_attention, runner.cuda_graphs)
        via_static = []
        for t in (5, 9, 17):
            via_static.append(decoder(t, b.length).clone())
            b.length += 1
    for x, y in zip(via_text, via_static):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-5)
        assert torch.equal(x.argmax(), y.argmax())
    assert torch.allclose(memory.cache.k[:, :, b.length - 3:b.length], text_k, atol=1e-4, rtol=1e-4)
    assert torch.equal(memory.cache.k[:, :, :b.length - 3], k_before[:, :, :b.length - 3])


def test_one_decoder_per_cache_buffer(tiny_model):
    memory = tiny_model.encode(frames=torch.zeros(3, 32, 32, 3, dtype=torch.uint8), reserve_tokens=8)
    first = tiny_model.ask(memory, "What is shown?", max_new_tokens=3, ignore_eos=True)
    decoders = tiny_model.runner.decoders
    decoder = decoders[memory.cache.k]
    again = tiny_model.ask(memory, "What is shown?", max_new_tokens=3, ignore_eos=True)
    assert decoders[memory.cache.k] is decoder  # the next answer replays the same step
    assert decoders[memory.cache.view().k] is decoder
    assert again.token_ids == first.token_ids


def test_a_decoder_is_freed_with_its_cache(tiny_model):
    decoders = tiny_model.runner.decoders
    before = len(decoders)
    memory = tiny_model.encode(frames=torch.zeros(3, 32, 32, 3, dtype=torch.uint8), reserve_tokens=8)
    tiny_model.ask(memory, "What is shown?", max_new_tokens=2, ignore_eos=True)
    assert len(decoders) == before + 1
    del memory
    gc.collect()
    assert len(decoders) == before


def test_the_tokens_rope_rows_are_gathered_once_for_all_layers(tiny_model):
    """DecodeStep.begin gathers cos/sin at the device position and the slots in use once per
    token; every layer reuses them (the tiny model has several layers)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            self.calls[name] = self.calls.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    memory = tiny_model.encode(frames=torch.zeros(3, 32, 32, 3, dtype=torch.uint8), reserve_tokens=8)
    runner = tiny_model.runner
    cache = memory.cache.view()
    decoder = StaticDecoder(tiny_model.model, runner.rope, cache, runner.decode_attention, runner.cuda_graphs)
    assert len(tiny_model.model.llm.layers) > 1
    with torch.inference_mode(), Count() as count:
        decoder(5, cache.length)
    assert count.calls["index_select"] == 2  # cos and sin, not two per layer
    assert count.calls["index_copy_"] == 2 * len(tiny_model.model.llm.layers)  # each layer's K and V
