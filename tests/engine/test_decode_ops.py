"""One decode step, counted op by op on the CPU: no data-dependent shapes, one host sync."""

from __future__ import annotations

import torch

from vxl_fast.engine.sampler import Sampler
from vxl_fast.testing.rehearsal import _LiveBytes


def test_one_decode_step_has_no_sync_but_the_token(tiny_model):
    frames = torch.randint(0, 256, (3, 40, 40, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    memory = tiny_model.encode(frames=frames, compression_ratio=8, reserve_tokens=8)
    runner = tiny_model.runner
    cache = memory.cache.view()
    sampler = Sampler(tiny_model.config.llm.vocab_size, False, 1.0, 0, 1.0, 1.05, None, runner.device)
    with torch.inference_mode():
        logits = runner.decode(cache, 5)
        counter = _LiveBytes()
        with counter:
            token = sampler(logits)
            logits = runner.decode(cache, token)
    ops = counter.ops
    assert ops["nonzero"] == 0 and ops["masked_select"] == 0
    assert ops["_local_scalar_dense"] <= 1, ops  # the token id, once
    layers = tiny_model.config.llm.num_layers
    assert sum(ops.values()) <= 100 * layers + 30, ops  # 316 today (views included); a guard, not a goal
    assert logits.shape == (tiny_model.config.llm.vocab_size,)
