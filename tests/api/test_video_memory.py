"""Encode once, ask many: VideoMemory, live ingest, chat, streaming."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import GOLDEN, Case, golden_cases, load_model
from vxl_fast import VideoMemory, VideoXL
from vxl_fast.engine.detokenizer import Detokenizer



def _encode_kwargs(case: Case) -> dict:
    kw = case.visual_kwargs()
    if "video" in kw:
        return {"video": kw["video"], "num_frames": kw["num_frames"]}
    return kw


@pytest.mark.parametrize("path", golden_cases(), ids=lambda p: p.stem)
def test_ask_equals_generate(path):
    case = Case(path)
    model = load_model(case.checkpoint)
    memory = model.encode(**_encode_kwargs(case), compression_ratio=case.meta["compression_ratio"])
    assert [w.n_vst for w in memory.windows] == case.meta["vst_per_window"]
    assert memory.kv_slots == case.meta["kv_after_prefill"]["sink"] + case.meta["num_vst_total"]
    out = model.ask(memory, **case.text_kwargs(), max_new_tokens=case.meta["max_new_tokens"])
    assert out.token_ids == case.meta["output_ids"]
    n = case.meta["compare_logits_first_n"]
    assert (out.logits[:n] - case.tensors["logits_first"][:n]).abs().max().item() <= 1e-4
    again = model.ask(memory, **case.text_kwargs(), max_new_tokens=case.meta["max_new_tokens"])
    assert again.token_ids == out.token_ids and torch.equal(again.logits, out.logits)


@pytest.fixture(scope="module")
def case():
    return Case(GOLDEN / "cases" / "t025_r16_tail.json")


@pytest.fixture(scope="module")
def memory(tiny_model, case):
    return tiny_model.encode(frames=case.frames(), compression_ratio=16)


def test_memory_is_left_as_it_was(tiny_model, memory, case):
    k = memory.cache.k[:, :, :memory.kv_slots].clone()
    tiny_model.ask(memory, "What is on the table?", max_new_tokens=5)
    assert torch.equal(memory.cache.k[:, :, :memory.kv_slots], k)
    out = tiny_model.ask(memory, case.meta["question"], max_new_tokens=16)
    assert out.token_ids == case.meta["output_ids"]


def test_save_load_roundtrip(tiny_model, memory, case, tmp_path):
    path = memory.save(tmp_path / "clip.vxl")
    assert not [p for p in tmp_path.iterdir() if p.name != "clip.vxl"]  # no temp file left
    loaded = VideoMemory.load(path, tiny_model)
    assert loaded.kv_slots == memory.kv_slots and loaded.windows == memory.windows
    assert torch.equal(loaded.cache.k[:, :, :loaded.kv_slots], memory.cache.k[:, :, :memory.kv_slots])
    out = tiny_model.ask(loaded, case.meta["question"], max_new_tokens=16)
    assert out.token_ids == case.meta["output_ids"]
    assert loaded.frames == 25 and loaded.ratios == (16,)


def test_load_errors(tiny_model, memory, tmp_path):
    path = memory.save(tmp_path / "clip.vxl")
    medium = load_model(GOLDEN / "medium-videoxl")
    with pytest.raises(ValueError, match="made with another checkpoint"):
        VideoMemory.load(path, medium)
    with pytest.raises(ValueError, match="encoded at compression ratio 16, not 8"):
        VideoMemory.load(path, tiny_model, compression_ratio=8)
    bf16 = VideoXL.from_pretrained(GOLDEN / "tiny-videoxl", device="cpu", dtype="bfloat16")
    with pytest.raises(ValueError, match="holds torch.float32 K/V but the model runs in torch.bfloat16"):
        VideoMemory.load(path, bf16)
    data = path.read_bytes()
    cut = tmp_path / "cut.vxl"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        VideoMemory.load(cut, tiny_model)
    junk = tmp_path / "junk.vxl"
    junk.write_bytes(b"not a memory file at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        VideoMemory.load(junk, tiny_model)
    with pytest.raises(FileNotFoundError, match="memory file not found"):
        VideoMemory.load(tmp_path / "none.vxl", tiny_model)
    with pytest.raises(ValueError, match="not made by this model"):
        medium.ask(memory, "q")


def test_interrupted_save_leaves_no_file(memory, tmp_path, monkeypatch):
    import vxl_fast.memory.files as vm

    def boom(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(vm, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        memory.save(tmp_path / "clip.vxl")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("pieces", [[25], [1, 24], [7, 3, 9, 6], [10, 10, 5], [3] * 8 + [1]])
def test_live_ingest_in_pieces_equals_whole(tiny_model, memory, case, pieces):
    frames = case.frames()
    live = tiny_model.encode(compression_ratio=16)
    start = 0
    for n in pieces:
        live.append(frames[start:start + n])
        start += n
        assert len(live.windows) == start * 144 // 1440  # complete windows compressed at once
    live.flush()
    assert live.windows == memory.windows and live.kv_slots == memory.kv_slots
    assert torch.equal(live.cache.k[:, :, :live.kv_slots], memory.cache.k[:, :, :memory.kv_slots])
    assert torch.equal(live.cache.v[:, :, :live.kv_slots], memory.cache.v[:, :, :memory.kv_slots])


def test_ask_during_live_ingest_sees_frames_so_far(tiny_model, case):
    frames = case.frames()
    live = tiny_model.encode(compression_ratio=16)
    live.append(frames[:13])  # one window compressed, 3 frames pending
    assert len(live.windows) == 1 and live.pending_tokens == 3 * 144
    early = tiny_model.ask(live, "What happens?", max_new_tokens=8)
    expected = tiny_model.generate(frames=frames[:13], prompt="What happens?", compression_ratio=16,
                                   max_new_tokens=8)
    assert early.token_ids == expected.token_ids and early.stats["vst_per_window"] == [90, 27]
    assert live.pending_tokens == 3 * 144 and len(live.windows) == 1  # asking did not flush
    live.append(frames[13:]).flush()
    out = tiny_model.ask(live, case.meta["question"], max_new_tokens=16)
    assert out.token_ids == case.meta["output_ids"]


def test_live_ingest_grows_beyond_its_reserve(tiny_model, case):
    live = tiny_model.encode(compression_ratio=2, reserve_tokens=8)
    live.append(case.frames()[:20]).flush()
    assert live.kv_slots == 23 + 20 * 72 and live.cache.capacity >= live.kv_slots
    whole = tiny_model.generate(frames=case.frames()[:20], prompt="q", compression_ratio=2, max_new_tokens=4)
    assert tiny_model.ask(live, "q", max_new_tokens=4).token_ids == whole.token_ids


def test_append_errors(tiny_model):
    live = tiny_model.encode(compression_ratio=[2, 4])
    with pytest.raises(ValueError, match="live input .* single compression ratio"):
        live.append(torch.zeros(2, 336, 336, 3, dtype=torch.uint8))
    live = tiny_model.encode(compression_ratio=8)
    with pytest.raises(TypeError, match="dtype uint8"):
        live.append(torch.zeros(2, 336, 336, 3))
    with pytest.raises(ValueError, match="1 timestamps for 2 frames"):
        live.append(torch.zeros(2, 336, 336, 3, dtype=torch.uint8), timestamps=[0.0])


def test_chat_turn_two_sees_turn_one(tiny_model, memory):
    chat = tiny_model.chat(memory)
    first = chat.ask("What is happening at the start?", max_new_tokens=6)
    second = chat.ask("And next?", max_new_tokens=6)
    expected = tiny_model.ask(memory, messages=[
        {"role": "user", "content": "What is happening at the start?"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "And next?"}], max_new_tokens=6)
    assert second.token_ids == expected.token_ids
    alone = tiny_model.ask(memory, "And next?", max_new_tokens=6)
    assert second.stats["prompt_tokens"] > alone.stats["prompt_tokens"]
    assert [m["role"] for m in chat.history] == ["user", "assistant", "user", "assistant"]
    with pytest.raises(ValueError, match="question is empty"):
        chat.ask("  ")


def test_chat_matches_golden_multiturn():
    case = Case(GOLDEN / "cases" / "t005_r8_multiturn.json")
    model = load_model(case.checkpoint)
    memory = model.encode(frames=case.frames(), compression_ratio=8)
    chat = model.chat(memory)
    q1, a1, q2 = (m["content"] for m in case.meta["messages"])
    chat.history = [{"role": "user", "content": q1.removeprefix("<image>\n")}, {"role": "assistant", "content": a1}]
    out = chat.ask(q2, max_new_tokens=16)
    assert out.token_ids == case.meta["output_ids"]


def test_stream_pieces_add_up_to_the_answer(tiny_model, memory, case):
    stream = tiny_model.stream(memory, case.meta["question"], max_new_tokens=16)
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == stream.output.text == case.meta["output_text"]
    assert stream.output.token_ids == case.meta["output_ids"]
    direct = tiny_model.stream(frames=case.frames(), prompt=case.meta["question"], compression_ratio=16,
                               max_new_tokens=16)
    assert direct.text() == case.meta["output_text"]


def test_stream_with_stop_string(tiny_model, memory, case):
    stream = tiny_model.stream(memory, case.meta["question"], max_new_tokens=16, stop="converts")
    assert stream.text() == "@#$" and stream.output.finish_reason == "stop"


def test_detokenizer_holds_back_partial_utf8(tiny_model):
    tok = tiny_model.tokenizer
    ids = tok("a 🎬 b", add_special_tokens=False)["input_ids"]
    assert "\ufffd" in tok.decode(ids[:3])  # the emoji's 4 bytes come in several tokens
    det = Detokenizer(tok)
    pieces = [det.push(i) for i in ids] + [det.finish()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == "a 🎬 b" and pieces[2:5] == ["", "", ""]


def test_detokenizer_decodes_each_token_about_once(tiny_model):
    """Streaming costs constant work per token: each decode call sees only the ids after the last
    whole character, and the pieces still join to the whole decode."""
    tok = tiny_model.tokenizer
    text = "The cup 🎬 is on the table; then the man walks to the door — ü ß 漢字. " * 6
    ids = tok(text, add_special_tokens=False)["input_ids"]
    lengths = []

    class Counting:
        def decode(self, chunk, **kwargs):
            lengths.append(len(chunk))
            return tok.decode(chunk, **kwargs)
    det = Detokenizer(Counting())
    pieces = [det.push(i) for i in ids]
    streamed = lengths[:]
    pieces.append(det.finish())
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True).strip()
    assert max(streamed) <= 4 and sum(streamed) <= 2 * len(ids)


def test_encode_sampling_by_fps(tiny_model):
    pytest.importorskip("av")
    video = str(GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4")
    memory = tiny_model.encode(video, fps=1, compression_ratio=16)
    assert memory.frames == 20 and memory.timestamps == [float(i) for i in range(20)]
    capped = tiny_model.encode(video, fps=2, max_frames=12, compression_ratio=16)
    assert capped.frames == 12 and capped.timestamps[-1] == pytest.approx(499 / 25)


def test_memory_stats_are_reported(tiny_model, memory):
    out = tiny_model.ask(memory, "q", max_new_tokens=2)
    assert out.stats["vsts"] == 225 and out.stats["windows"] == 3 and out.stats["frames"] == 25
    assert memory.stats["vision_s"] > 0 and memory.stats["compress_s"] > 0
    assert dataclasses.is_dataclass(memory.state)  # the handle wraps pure data
