"""The operation counts in the stats: what the engine runs, checked against PyTorch's own FLOP
counter, and what it skips."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from vxl_fast.engine.flops import attention_flops, linear_flops, window_flops
from vxl_fast.memory.plan import next_window


def test_a_window_runs_what_the_count_says(tiny_model):
    """On the CPU, PyTorch's counter sees the GEMMs (not the CPU flash kernel): they must be the
    count minus its attention part, to the FLOP."""
    cfg, runner = tiny_model.config, tiny_model.runner
    layers = cfg.llm.num_layers
    memory = tiny_model.encode(frames=torch.randint(0, 256, (10, 32, 32, 3), dtype=torch.uint8),
                               compression_ratio=16)  # one full window: 1440 raw rows
    w = next_window(1, 1440, 1440, 0, memory.cache.length, (16,), None)
    raw = torch.randn(1440, cfg.llm.hidden_size)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        runner.run_visual(memory.cache.view(), memory.stage, raw, w, None)
    count = window_flops(cfg, w)
    assert counter.get_total_flops() == count.run - (layers - 1) * attention_flops(cfg, w.rows, w.kv_before)
    # skipped: the last layer but its VSTs' K/V, and the logits of every row
    plain = layers * (linear_flops(cfg, w.rows) + attention_flops(cfg, w.rows, w.kv_before))
    plain += 2 * w.rows * cfg.llm.hidden_size * cfg.llm.vocab_size
    assert count.run + count.skipped == plain and count.skipped > plain / layers


def test_stats_report_flops_run_and_skipped(tiny_model):
    frames = torch.randint(0, 256, (25, 32, 32, 3), dtype=torch.uint8)
    one_shot = tiny_model.generate(frames=frames, prompt="What happens?", max_new_tokens=4, ignore_eos=True,
                                   compression_ratio=16).stats
    memory = tiny_model.encode(frames=frames, compression_ratio=16)
    asked = tiny_model.ask(memory, "What happens?", max_new_tokens=4, ignore_eos=True).stats
    assert 0 < asked["flops_run"] < one_shot["flops_run"]  # the one-shot count includes the encoding
    assert 0 < asked["flops_skipped"] < one_shot["flops_skipped"]
    # the answer alone: the pending window (5 frames), the question and 3 fed-back tokens
    assert asked["vst_per_window"][-1] == 45
