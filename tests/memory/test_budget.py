"""Memory planning and the random-weight model used by the benchmarks."""

from __future__ import annotations

import pytest
import torch

from conftest import GOLDEN, Case
from vxl_fast import VideoXL, VideoXLConfig
from vxl_fast.memory.budget import budget, kv_slot_bytes
from vxl_fast.memory.plan import plan_request


def test_released_config():
    cfg = VideoXLConfig.released()
    llm, vis = cfg.llm, cfg.vision
    assert (llm.hidden_size, llm.num_layers, llm.num_heads, llm.num_kv_heads, llm.head_dim) == (3584, 28, 28, 4, 128)
    assert (llm.intermediate_size, llm.vocab_size, llm.rope_theta) == (18944, 152064, 1e6)
    assert (vis.hidden_size, vis.num_layers, vis.num_heads, vis.layers_to_run) == (1024, 24, 16, 23)
    assert vis.source == "built-in CLIP ViT-L/14-336" and cfg.tokens_per_frame == 144
    assert cfg.eos_token_ids == (151645, 151643)


def test_kv_of_2048_frames_at_ratio_16_is_under_a_gib():
    cfg = VideoXLConfig.released()
    assert kv_slot_bytes(cfg, 2) == 57344  # 56 KiB per slot in 16-bit
    plan = plan_request(14, 2048 * 144, 0, 0, 1440, [16])
    b = budget(cfg, plan.capacity, [16], weight_bytes=0, itemsize=2)
    # 18,446 kept slots plus room for one window's 1440 + 90 rows while it is compressed
    assert b.kv_slots == 18446 + 1530 and b.kv_cache == (18446 + 1530) * 57344
    assert b.stage == 2 * 4 * 90 * 128 * 2
    assert b.workspace < 1 << 30


def test_memory_plan_matches_what_generate_allocates(tiny_model):
    case = Case(GOLDEN / "cases" / "t025_r16_tail.json")
    out = tiny_model.generate(frames=case.frames(), prompt=case.meta["question"], compression_ratio=16,
                              max_new_tokens=8)
    question = out.stats["prompt_tokens"] - 23
    plan = tiny_model.memory_plan(25, 16, question_tokens=question, max_new_tokens=8)
    assert plan.kv_slots == out.stats["kv_capacity"]
    assert plan.kv_cache == out.stats["kv_bytes"] and plan.stage == out.stats["stage_bytes"]
    assert plan.weights == sum(p.nbytes for p in tiny_model.model.parameters())
    assert plan.total == plan.weights + plan.kv_cache + plan.stage + plan.workspace


def test_random_model_has_the_checkpoint_layout(tiny_model):
    rnd = VideoXL.random(tiny_model.config, device="cpu", dtype="bfloat16", seed=3,
                         tokenizer=tiny_model.tokenizer)
    loaded = dict(tiny_model.model.named_parameters())
    for name, p in rnd.model.named_parameters():
        assert p.shape == loaded[name].shape and p.dtype == torch.bfloat16 and p.device.type == "cpu", name
        assert torch.isfinite(p).all(), name
    frames = torch.randint(0, 256, (3, 336, 336, 3), dtype=torch.uint8)
    out = rnd.generate(frames=frames, prompt="q", compression_ratio=8, max_new_tokens=4, ignore_eos=True)
    assert len(out.token_ids) == 4 and torch.isfinite(out.logits).all()
    again = VideoXL.random(tiny_model.config, device="cpu", dtype="bfloat16", seed=3, tokenizer=tiny_model.tokenizer)
    assert torch.equal(again.model.lm_head.weight, rnd.model.lm_head.weight)


def test_memory_plan_rejects_unknown_ratio(tiny_model):
    with pytest.raises(ValueError, match="unsupported compression ratio 5"):
        tiny_model.memory_plan(10, 5)
