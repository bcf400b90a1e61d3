"""The KV memory is planned and allocated once; windows write their VSTs into final slots."""

from __future__ import annotations

import pytest
import torch

from conftest import GOLDEN, Case


@pytest.fixture(scope="module")
def traced(tiny_model):
    case = Case(GOLDEN / "cases" / "t025_r16_tail.json")
    out = tiny_model.generate(frames=case.frames(), prompt=case.meta["question"], compression_ratio=16,
                              max_new_tokens=8, trace=True)
    return out


def test_cache_never_reallocates(traced):
    ptrs = {w["kv_ptr"] for w in traced.stats["trace"]}
    assert len(ptrs) == 1


def test_each_window_keeps_exactly_its_vsts(traced):
    trace = traced.stats["trace"]
    kinds = [w["kind"] for w in trace]
    assert kinds == ["prefix_text", "visual", "visual", "visual", "text"]
    for w in trace:
        kept = w["n_vst"] if w["kind"] == "visual" else w["n_raw"]
        assert w["kv_length_after"] - w["kv_before"] == kept
    assert [w["n_vst"] for w in trace if w["kind"] == "visual"] == [90, 90, 45]


def test_capacity_is_planned_exactly(traced):
    s = traced.stats
    # sink 23 + VSTs 225 + 21 text tokens + 8 new tokens (the last is never fed back), plus room
    # for the rows of the largest window (1440 raw + 90 VSTs) while it is compressed
    assert s["kv_capacity"] == 23 + 225 + 21 + 8 + 1530
    assert s["kv_slots"] == 23 + 225 + 21 + 8 - 1
    assert s["kv_bytes"] > 0


def test_kv_bytes_match_layout(tiny_model, traced):
    llm = tiny_model.config.llm
    per_slot = 2 * llm.num_layers * llm.num_kv_heads * llm.head_dim * 4
    assert traced.stats["kv_bytes"] == traced.stats["kv_capacity"] * per_slot
    # the stage holds one window's 90 VSTs' K and V, fp32
    assert traced.stats["stage_bytes"] == 2 * llm.num_kv_heads * 90 * llm.head_dim * 4


def test_raw_visual_kv_is_discarded(tiny_model):
    """A visual window writes its rows after the kept slots, then only its VSTs stay: slots
    [5, 5 + nb) hold the VSTs' K/V (keys RoPE'd at those slots), the slots before are untouched."""
    from vxl_fast import ops
    from vxl_fast.layers.step import Slots, WindowStep
    from vxl_fast.memory.kv import KVCache, VstStage

    llm_cfg = tiny_model.config.llm
    llm = tiny_model.model.llm
    torch.manual_seed(0)
    raw = torch.randn(144, llm_cfg.hidden_size)
    x = ops.interleave_vst(raw, llm.beacon_embed_tokens.weight[0], 8, 0)
    nb, vst_index = ops.vst_slots(144, 8, 0)
    is_vst = torch.zeros(x.shape[0], dtype=torch.bool)
    is_vst[vst_index] = True
    cache = KVCache.allocate(llm_cfg.num_layers, llm_cfg.num_kv_heads, 5 + x.shape[0], llm_cfg.head_dim,
                             torch.float32, torch.device("cpu"))
    cache.length = 5
    stage = VstStage.allocate(llm_cfg.num_kv_heads, nb, llm_cfg.head_dim, torch.float32, torch.device("cpu"))
    runner = tiny_model.runner
    step = WindowStep(cache_k=cache.k, cache_v=cache.v, cos=runner.rope.cos, sin=runner.rope.sin,
                      attention=runner.attention, rows=x.shape[0], start=5,
                      slots=Slots(vst_index, torch.nonzero(~is_vst)[:, 0]), stage_k=stage.k, stage_v=stage.v)
    with torch.inference_mode():
        llm(x, step)
    assert torch.count_nonzero(cache.k[:, :, :5]) == 0  # memory slots before are untouched
    # the last layer's VSTs: its staged keys RoPE'd at slots 5.., its values as staged
    last = llm_cfg.num_layers - 1
    want = torch.empty_like(cache.k[last])
    ops.kv_compact_ref(want, want.clone(), stage.k, stage.v, runner.rope.cos, runner.rope.sin, 5)
    assert torch.equal(cache.k[last, :, 5:5 + nb], want[:, 5:5 + nb])
    assert torch.equal(cache.v[last, :, 5:5 + nb], stage.v)
    assert torch.count_nonzero(cache.k[last, :, 5 + nb:]) == 0  # the last layer writes no raw rows


def test_window_buffers_are_allocated_once(tiny_model, monkeypatch):
    """Every window of an encode runs in the same cache and stage storage (nothing is allocated
    per window for K/V)."""
    seen = []
    run_visual = tiny_model.runner.run_visual

    def spy(cache, stage, raw, w, trace):
        seen.append((cache.k.data_ptr(), cache.v.data_ptr(), stage.k.data_ptr(), stage.v.data_ptr()))
        return run_visual(cache, stage, raw, w, trace)
    monkeypatch.setattr(tiny_model.runner, "run_visual", spy)
    frames = torch.randint(0, 256, (25, 32, 32, 3), dtype=torch.uint8)
    memory = tiny_model.encode(frames=frames, compression_ratio=16)
    assert len(seen) == 3 and len(set(seen)) == 1
    assert seen[0][:2] == (memory.cache.k.data_ptr(), memory.cache.v.data_ptr())
