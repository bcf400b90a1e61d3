"""Parity with upstream Video-XL on every public golden case (tolerances: golden README §4)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import GOLDEN, Case, golden_cases, load_model, needs_cuda

CASES = golden_cases()
LOGIT_TOL = 1e-4  # golden README §4: fp64-vs-fp32 noise ≤ 1.7e-5
VISUAL_TOL = 5e-5


@pytest.fixture(scope="module", params=CASES, ids=lambda p: p.stem)
def run(request):
    case = Case(request.param)
    model = load_model(case.checkpoint)
    out = model.generate(**case.visual_kwargs(), **case.text_kwargs(),
                         compression_ratio=case.meta["compression_ratio"],
                         max_new_tokens=case.meta["max_new_tokens"], trace=True)
    return case, model, out


def test_case_list_is_complete():
    assert len(CASES) == 19, [p.name for p in CASES]  # 12 tiny, 4 medium, 3 multi-image
    assert len(_with("visual_tokens")) == 7 and len(_with("pixel_values")) == 4


def test_greedy_ids_identical(run):
    case, _, out = run
    assert out.token_ids == case.meta["output_ids"]
    assert out.text == case.meta["output_text"]
    assert out.finish_reason == ("eos" if case.meta["stopped_on_eos"] else "length")


def test_first_step_logits(run):
    case, model, out = run
    n = case.meta["compare_logits_first_n"]
    assert out.logits.dtype == torch.float32
    assert out.logits.shape == (model.config.llm.vocab_size,)
    err = (out.logits[:n] - case.tensors["logits_first"][:n]).abs().max().item()
    assert err <= LOGIT_TOL, err


def test_window_trace_matches_upstream(run):
    case, _, out = run
    keys = ("kind", "n_raw", "n_vst", "n_in", "kv_before", "pos_first", "pos_last", "ratio", "vst_slots")
    ours = [{k: w[k] for k in keys} for w in out.stats["trace"]]
    theirs = [{k: w[k] for k in keys} for w in case.meta["windows"]]
    assert ours == theirs
    assert out.stats["vst_per_window"] == case.meta["vst_per_window"]
    assert out.stats["vsts"] == case.meta["num_vst_total"]
    assert out.stats["visual_tokens"] == case.meta["num_visual_tokens"]
    # the last generated token is never fed back, as upstream
    assert out.stats["kv_slots"] == case.meta["kv_after_generate"]["total"]


def test_prompt_ids(run):
    from vxl_fast.prompt import build_prompt, tokenize_prompt

    case, model, _ = run
    text = build_prompt(case.meta["question"], case.meta["messages"])
    assert text == case.meta["full_prompt"]
    tok = tokenize_prompt(model.tokenizer, text)
    assert tok.before + [-200] + tok.after == case.tensors["input_ids"].tolist()


def _with(tensor: str) -> list:
    return [p for p in CASES if tensor in json.loads(p.read_text())["tensors"]]


@pytest.mark.parametrize("path", _with("visual_tokens"), ids=lambda p: p.stem)
def test_visual_tokens(path):
    case = Case(path)
    got = load_model(case.checkpoint).visual_tokens(**case.visual_kwargs())
    err = (got - case.tensors["visual_tokens"]).abs().max().item()
    assert err <= VISUAL_TOL, err


@pytest.mark.parametrize("path", _with("pixel_values"), ids=lambda p: p.stem)
def test_pixel_values_exact(path):
    case = Case(path)
    model = load_model(case.checkpoint)
    if case.meta["source"] == "images":  # each image on its own like a frame, batched by size
        from vxl_fast.video.inputs import Target, visual_input
        from vxl_fast.video.request import VisualRequest

        (source,) = visual_input(model.config, VisualRequest(images=case.images())).sources(64)
        from vxl_fast.video.preprocess import patch_rows

        got = source.pixels(0, source.count, Target(torch.device("cpu"), torch.float32))  # the tower's patch rows
        assert torch.equal(got, patch_rows(case.tensors["pixel_values"], model.config.vision.patch_size))
    else:
        assert torch.equal(model.preprocess(case.frames()), case.tensors["pixel_values"])


@pytest.mark.parametrize("dtype, tol", [
    # upstream's own fp16 run moves first-step logits by up to 4e-2 from the fp32 golden;
    # bf16 keeps 3 fewer mantissa bits (8× coarser rounding).
    ("float16", 4e-2), ("bfloat16", 8 * 4e-2)])
def test_half_precision_runs_close_to_fp32(dtype, tol):
    from vxl_fast import VideoXL

    case = Case(GOLDEN / "medium-cases" / "m_t012_r16_twowin.json")
    model = VideoXL.from_pretrained(case.checkpoint, device="cpu", dtype=dtype)
    assert model.model.lm_head.weight.dtype == getattr(torch, dtype)
    out = model.generate(**case.visual_kwargs(), **case.text_kwargs(), compression_ratio=16, max_new_tokens=4)
    n = case.meta["compare_logits_first_n"]
    assert out.logits.dtype == torch.float32
    assert (out.logits[:n] - case.tensors["logits_first"][:n]).abs().max().item() <= tol
    assert out.token_ids[0] == case.meta["output_ids"][0]


@needs_cuda
@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_golden_on_cuda_float32(path):
    case = Case(path)
    model = load_model(case.checkpoint, "cuda")
    out = model.generate(**case.visual_kwargs(), **case.text_kwargs(), compression_ratio=case.meta["compression_ratio"],
                         max_new_tokens=case.meta["max_new_tokens"])
    n = case.meta["compare_logits_first_n"]
    assert out.token_ids == case.meta["output_ids"]
    assert (out.logits[:n].cpu() - case.tensors["logits_first"][:n]).abs().max().item() <= LOGIT_TOL
