"""Qwen2 with VST projections: every way of projecting a visual window's rows gives its q/k/v
("grouped" through ``torch._grouped_mm``'s CPU kernel, which torch has since 2.9)."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import GOLDEN, load_model
from vxl_fast import RuntimeOptions, ops
from vxl_fast.layers.step import project_window, share_weights, stacked_weight
from vxl_fast.runtime import VST_PROJECTIONS


@pytest.mark.parametrize("ratio, carry", [(16, 0), (8, 3), (2, 1)])
def test_gather_and_overwrite_project_the_same(ratio, carry):
    model = load_model(GOLDEN / "medium-videoxl")
    attn = model.model.llm.layers[0].self_attn
    n_raw = 301
    nb, vst_index = ops.vst_slots(n_raw, ratio, carry)
    torch.manual_seed(ratio)
    h = torch.randn(n_raw + nb, model.config.llm.hidden_size)
    out = {}
    for name in VST_PROJECTIONS:
        with torch.inference_mode():
            out[name] = project_window(attn.qkv_proj, attn.beacon_qkv_proj, h, vst_index,
                                       ops.raw_slots(n_raw, ratio, carry), name)
    torch.testing.assert_close(out["overwrite"], out["gather"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["grouped"], out["gather"], atol=1e-5, rtol=1e-5)
    # VST rows went through the beacon projection, raw rows through the base one
    with torch.inference_mode():
        torch.testing.assert_close(out["gather"][vst_index], attn.beacon_qkv_proj(h[vst_index]))
        raw = ops.raw_slots(n_raw, ratio, carry)
        torch.testing.assert_close(out["gather"][raw], attn.qkv_proj(h[raw]))


def test_overwrite_keeps_the_goldens_answer():
    from vxl_fast import VideoXL

    frames = torch.randint(0, 256, (25, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    answers = {}
    for name in VST_PROJECTIONS:
        model = VideoXL.from_pretrained(GOLDEN / "tiny-videoxl", device="cpu", dtype=torch.float32,
                                        runtime=RuntimeOptions(vst_projection=name))
        assert model.runner.vst_projection == name
        answers[name] = model.generate(frames=frames, prompt="What happens?", max_new_tokens=6, ignore_eos=True)
    for name in ("overwrite", "grouped"):
        assert answers[name].token_ids == answers["gather"].token_ids
        torch.testing.assert_close(answers[name].logits, answers["gather"].logits, atol=1e-4, rtol=1e-4)

def test_the_vst_projection_is_read_from_the_environment_at_load(monkeypatch):
    from vxl_fast import VideoXL

    monkeypatch.setenv("VXL_VST_PROJECTION", "overwrite")
    assert VideoXL.from_pretrained(GOLDEN / "tiny-videoxl").runner.vst_projection == "overwrite"
    monkeypatch.setenv("VXL_VST_PROJECTION", "fused")
    with pytest.raises(ValueError, match=re.escape(
            "VXL_VST_PROJECTION: vst_projection='fused' is not one of auto, gather, overwrite, grouped")):
        VideoXL.from_pretrained(GOLDEN / "tiny-videoxl")


def test_share_weights_makes_the_stacked_weight_a_view_with_the_same_values():
    from torch import nn

    base, beacon = nn.Linear(16, 24), nn.Linear(16, 24)
    before = torch.stack((base.weight.detach(), beacon.weight.detach()))
    assert stacked_weight(base, beacon).data_ptr() not in (base.weight.data_ptr(), beacon.weight.data_ptr())
    share_weights(base, beacon)
    view = stacked_weight(base, beacon)
    assert view.data_ptr() == base.weight.data_ptr() and torch.equal(view, before)
    assert beacon.weight.data_ptr() == base.weight.data_ptr() + 16 * 24 * 4


def test_grouped_is_not_a_candidate_off_cuda():
    from vxl_fast.layers.step import grouped_available

    assert not grouped_available(torch.device("cpu"))
