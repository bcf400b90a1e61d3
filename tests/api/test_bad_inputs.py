"""The bad-input suite: every case names its category, the exception type and the message.

Each call is refused before any decoding or encoding starts (the model's compression is watched:
no window runs), with an error of the caller's kind — never one from inside torch, safetensors
or json — and the user's own value or path in the message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import GOLDEN, needs_av
from vxl_fast import CheckpointError, MemoryFileError, MemoryPlanError, VideoMemory, VideoXL
from vxl_fast.engine import compress

FRAMES = torch.zeros(2, 64, 48, 3, dtype=torch.uint8)
VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"

# (category, keyword arguments of generate, exception, message)
GENERATE = [
    ("frames", dict(frames=torch.zeros(2, 8, 8, 3, dtype=torch.float32)), TypeError, "dtype uint8"),
    ("frames", dict(frames=torch.zeros(2, 8, 8, 2, dtype=torch.uint8)), ValueError, "3 channels"),
    ("frames", dict(frames=torch.zeros(0, 8, 8, 3, dtype=torch.uint8)), ValueError, "zero frames"),
    ("frames", dict(frames="not frames"), TypeError, "uint8 tensor or array"),
    ("frames", dict(frames=torch.zeros(2, 8, 0, 3, dtype=torch.uint8)), ValueError, "empty spatial size"),
    ("sampling", dict(frames=FRAMES, num_frames=4), ValueError, "only apply to video="),
    ("sampling", dict(frames=FRAMES, fps=2.0), ValueError, "only apply to video="),
    ("sampling", dict(frames=FRAMES, max_frames=4), ValueError, "max_frames= only applies"),
    ("sampling", dict(frames=FRAMES, sampling="bogus"), ValueError, "sampling='bogus' only applies to video="),
    ("sampling", dict(video=str(VIDEO), num_frames=4, fps=1.0), ValueError, "num_frames= or fps=, not both"),
    ("sampling", dict(video=str(VIDEO), num_frames=4, max_frames=2), ValueError, "max_frames= only applies with fps="),
    ("sampling", dict(video=str(VIDEO), num_frames="4"), TypeError, "num_frames must be a positive integer, got '4'"),
    ("sampling", dict(video=str(VIDEO), num_frames=-3), ValueError, "num_frames must be a positive integer, got -3"),
    ("sampling", dict(video=str(VIDEO), fps="fast"), TypeError, "fps must be a number, got 'fast'"),
    ("sampling", dict(video=str(VIDEO), fps=0.0), ValueError, "fps must be a positive number"),
    ("sampling", dict(video=str(VIDEO), fps=float("nan")), ValueError, "fps must be a positive number"),
    ("sampling", dict(video=str(VIDEO), num_frames=4, sampling="bogus"), ValueError, "unknown sampling 'bogus'"),
    ("ratios", dict(frames=FRAMES, compression_ratio=5), ValueError, "unsupported compression ratio 5"),
    ("ratios", dict(frames=FRAMES, compression_ratio="eight"), ValueError, "compression_ratio 'eight'"),
    ("ratios", dict(frames=FRAMES, compression_ratio=[]), ValueError, "compression_ratio is an empty list"),
    ("ratios", dict(frames=FRAMES, compression_ratio=[8, 3]), ValueError, "unsupported compression ratio 3"),
    ("ratios", dict(frames=FRAMES, compression_ratio=8.0), ValueError, "unsupported compression ratio 8.0"),
    ("text", dict(frames=FRAMES, prompt="  "), ValueError, "the question is empty"),
    ("text", dict(frames=FRAMES, prompt=42), TypeError, "the question must be a string, got int"),
    ("text", dict(frames=FRAMES, prompt=None, messages=[]), ValueError, "messages must be a non-empty list"),
    ("text", dict(frames=FRAMES, prompt=None, messages=[{"role": "user"}]), ValueError, "'role' and 'content'"),
    ("text", dict(frames=FRAMES, prompt=None, messages=[{"role": "user", "content": 3}]), TypeError,
     r"messages\[0\]\['content'\] must be a string"),
    ("text", dict(frames=FRAMES, prompt=None, messages=[{"role": "assistant", "content": "hi"}]), ValueError,
     "no user message"),
    ("text", dict(frames=FRAMES, prompt="q", messages=[{"role": "user", "content": "q"}]), ValueError,
     "exactly one of prompt="),
    ("text", dict(frames=FRAMES, prompt="<image> <image>"), ValueError, "2 '<image>' markers"),
    ("generation", dict(frames=FRAMES, max_new_tokens=0), ValueError, "max_new_tokens must be a positive integer"),
    ("generation", dict(frames=FRAMES, max_new_tokens="5"), TypeError, "max_new_tokens must be a positive integer"),
    ("generation", dict(frames=FRAMES, max_new_tokens=True), TypeError, "max_new_tokens must be a positive integer"),
    ("generation", dict(frames=FRAMES, temperature="hot"), TypeError, "temperature must be a number, got 'hot'"),
    ("generation", dict(frames=FRAMES, do_sample=True, temperature=0), ValueError, "temperature must be positive"),
    ("generation", dict(frames=FRAMES, do_sample=True, temperature=float("inf")), ValueError,
     "temperature must be positive"),
    ("generation", dict(frames=FRAMES, top_p=2.0), ValueError, r"top_p must be in \(0, 1\], got 2.0"),
    ("generation", dict(frames=FRAMES, top_p=0), ValueError, r"top_p must be in \(0, 1\]"),
    ("generation", dict(frames=FRAMES, top_k=-1), ValueError, "top_k must be >= 0"),
    ("generation", dict(frames=FRAMES, top_k=2.5), TypeError, "top_k must be an integer, got 2.5"),
    ("generation", dict(frames=FRAMES, seed="x"), TypeError, "seed must be an integer, got 'x'"),
    ("generation", dict(frames=FRAMES, seed=-1), ValueError, "seed must be a non-negative integer"),
    ("generation", dict(frames=FRAMES, repetition_penalty=0), ValueError, "repetition_penalty must be positive"),
    ("generation", dict(frames=FRAMES, stop=[""]), ValueError, "stop must be a non-empty string"),
    ("generation", dict(frames=FRAMES, stop=5), ValueError, "stop must be a non-empty string"),
    ("generation", dict(frames=FRAMES, do_sample="yes"), TypeError, "do_sample must be True or False"),
    ("generation", dict(frames=FRAMES, ignore_eos=1), TypeError, "ignore_eos must be True or False"),
    ("generation", dict(frames=FRAMES, temprature=0.5), TypeError, "unknown generation option temprature"),
    ("generation", dict(frames=FRAMES, max_new_tokens=40000), ValueError, "prompt too long"),
]


@pytest.fixture
def no_compression(monkeypatch):
    """Fails the test if any window or the sink is run: errors must come first."""
    def boom(*args, **kwargs):
        raise AssertionError("work started before the input was refused")
    monkeypatch.setattr(compress, "encode", boom)


@pytest.mark.parametrize("category, kwargs, exc, match", GENERATE,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GENERATE)])
def test_generate_refuses_before_any_work(tiny_model, no_compression, category, kwargs, exc, match):
    kwargs = {"prompt": "q", "max_new_tokens": 2, **kwargs}
    with pytest.raises(exc, match=match):
        tiny_model.generate(**kwargs)


@needs_av
@pytest.mark.parametrize("name, content, exc, match", [
    ("missing.mp4", None, FileNotFoundError, "video file not found: .*missing.mp4"),
    ("cut.mp4", "head", ValueError, "cannot read video .*cut.mp4"),
    ("empty.mp4", b"", ValueError, "cannot read video .*empty.mp4"),
    ("notes.mp4", b"this is not a video", ValueError, "cannot read video .*notes.mp4"),
    ("folder", "dir", ValueError, "holds no image files"),
], ids=["missing", "truncated", "empty", "text", "empty-folder"])
def test_video_file_errors_before_any_work(tiny_model, no_compression, tmp_path, name, content, exc, match):
    path = tmp_path / name
    if content == "head":
        path.write_bytes(VIDEO.read_bytes()[:5000])
    elif content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(exc, match=match):
        tiny_model.generate(video=str(path), num_frames=4, prompt="q", max_new_tokens=2)


@pytest.fixture(scope="module")
def memory(tiny_model):
    return tiny_model.encode(frames=torch.zeros(3, 40, 40, 3, dtype=torch.uint8), compression_ratio=8)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(max_new_tokens=0), ValueError, "max_new_tokens"),
    (dict(top_p=1.5), ValueError, "top_p"),
    (dict(seed=1.5), TypeError, "seed must be an integer"),
    (dict(messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "q"}], prompt=None),
     ValueError, "differs from the one this memory was encoded with"),
], ids=["max_new_tokens", "top_p", "seed", "other-system-prompt"])
def test_ask_refuses(tiny_model, memory, kwargs, exc, match):
    kwargs = {"prompt": "q", **kwargs}
    with pytest.raises(exc, match=match):
        tiny_model.ask(memory, **kwargs)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(reserve_tokens=-1), ValueError, "reserve_tokens must be at least 0, got -1"),
    (dict(reserve_tokens="many"), TypeError, "reserve_tokens must be an integer"),
    (dict(system=3), TypeError, "system must be a string, got int"),
    (dict(num_frames=4), ValueError, "need a visual input"),
    (dict(decoder="nvdec"), ValueError, "decoder= need a visual input"),
    (dict(video=VIDEO, num_frames=4, decoder="gpu"), ValueError,
     "unknown decoder 'gpu'; use one of auto, cpu, nvdec, dali"),
], ids=["reserve-negative", "reserve-type", "system-type", "options-without-input", "decoder-without-input",
        "decoder-unknown"])
def test_encode_refuses(tiny_model, no_compression, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tiny_model.encode(**kwargs)


@pytest.mark.parametrize("device, match", [
    ("tpu", "device 'tpu' is not supported|unknown device 'tpu'"),
    ("cuda:banana", "unknown device 'cuda:banana'"),
    (3.5, "device must be a string"),
] + ([] if torch.cuda.is_available() else [("cuda", "has no usable CUDA GPU")]))
def test_device_errors(device, match):
    with pytest.raises((ValueError, TypeError), match=match):
        VideoXL.from_pretrained(GOLDEN / "tiny-videoxl", device=device)


# ---------------------------------------------------------------- checkpoints
def _edit_config(ckpt, **changes):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg.update(changes)
    (ckpt / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("breakage, match", [
    ("hidden_size_text", "config.json: hidden_size = 'abc' is not an integer"),
    ("zero_heads", "num_heads must be positive, got 0"),
    ("bad_index_json", "is not a valid weight index"),
    ("truncated_shard", "model-00002-of-00002.safetensors is truncated or corrupt"),
    ("no_tokenizer", "cannot load the tokenizer from"),
    ("bad_ratio_mix", "beacon_ratio_mix 'adaptive' is not supported"),
    ("config_not_json", "config.json is not valid JSON"),
])
def test_checkpoint_errors(ckpt_copy, breakage, match):
    if breakage == "hidden_size_text":
        _edit_config(ckpt_copy, hidden_size="abc")
    elif breakage == "zero_heads":
        _edit_config(ckpt_copy, num_attention_heads=0)
    elif breakage == "bad_index_json":
        (ckpt_copy / "model.safetensors.index.json").write_text("{not json")
    elif breakage == "truncated_shard":
        shard = ckpt_copy / "model-00002-of-00002.safetensors"
        shard.write_bytes(shard.read_bytes()[:1000])
    elif breakage == "no_tokenizer":
        for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
            (ckpt_copy / name).unlink(missing_ok=True)
    elif breakage == "bad_ratio_mix":
        _edit_config(ckpt_copy, beacon_ratio_mix="adaptive")
    else:
        (ckpt_copy / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=match):
        VideoXL.from_pretrained(ckpt_copy)


# ---------------------------------------------------------------- memory files
def _rewrite(path, meta_edit=None, tensor_edit=None, keep_checksums=False):
    """A copy of a memory file with its metadata or a tensor changed (checksums recomputed or not)."""
    from safetensors import safe_open

    from vxl_fast.memory import files

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
    meta = json.loads(header["vxl_fast"])
    tensors = load_file(str(path))
    if tensor_edit:
        tensor_edit(tensors)
        if keep_checksums:
            meta["tensors"] = {k: files._describe(t) for k, t in tensors.items()}
    if meta_edit:
        meta_edit(meta)
    text = json.dumps(meta)
    out = path.with_name("edited.vxl")
    save_file(tensors, str(out), metadata={"vxl_fast": text, "vxl_fast_sha256": files._sha(text.encode())})
    return out


@pytest.mark.parametrize("breakage, match", [
    ("flipped_byte", "fails its checksum"),
    ("flipped_metadata", "metadata checksum does not match"),
    ("missing_key", "its metadata has no 'windows'"),
    ("fp16_under_fp32", "tensor 'k' is torch.float16 .* its metadata says torch.float32"),
    ("shape_mismatch", "K/V shapes"),
    ("old_format", "has format 'vxl_fast.VideoMemory/1'"),
    ("not_json", "not JSON"),
])
def test_memory_file_errors(tiny_model, memory, tmp_path, breakage, match):
    path = memory.save(tmp_path / "clip.vxl")
    if breakage == "flipped_byte":
        data = bytearray(path.read_bytes())
        data[-5] ^= 0x01  # inside the last tensor's bytes
        path.write_bytes(bytes(data))
    elif breakage == "flipped_metadata":
        data = path.read_bytes()
        path.write_bytes(data.replace(b'\\"frames\\": 3', b'\\"frames\\": 4', 1))
    elif breakage == "missing_key":
        path = _rewrite(path, meta_edit=lambda m: m.pop("windows"))
    elif breakage == "fp16_under_fp32":
        path = _rewrite(path, tensor_edit=lambda t: t.update(k=t["k"].half()))
    elif breakage == "shape_mismatch":
        path = _rewrite(path, tensor_edit=lambda t: t.update(k=t["k"][:, :, :-1].contiguous(),
                                                               v=t["v"][:, :, :-1].contiguous()),
                        keep_checksums=True)
    elif breakage == "old_format":
        path = _rewrite(path, meta_edit=lambda m: m.update(format="vxl_fast.VideoMemory/1"))
    else:
        from vxl_fast.memory import files
        tensors = load_file(str(path))
        save_file(tensors, str(path), metadata={"vxl_fast": "{oops", "vxl_fast_sha256": files._sha(b"{oops")})
    with pytest.raises(MemoryFileError, match=match):
        VideoMemory.load(path, tiny_model)


def test_memory_file_follows_the_umask(memory, tmp_path):
    old = os.umask(0o027)
    try:
        path = memory.save(tmp_path / "clip.vxl")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("target, match", [("dir", "is a directory"), ("missing", "does not exist")])
def test_save_refuses_bad_paths(memory, tmp_path, target, match):
    path = tmp_path if target == "dir" else tmp_path / "nowhere" / "clip.vxl"
    with pytest.raises(ValueError, match=match):
        memory.save(path)


# ---------------------------------------------------------------- planning, determinism, threads
def test_a_million_frames_are_refused_by_the_planner(tiny_model, monkeypatch):
    from vxl_fast.memory.kv import KVCache

    monkeypatch.setattr(KVCache, "allocate", lambda *a, **k: pytest.fail("allocated before refusing"))
    frames = torch.zeros(1, 1, 1, 3, dtype=torch.uint8).expand(1_000_000, 8, 8, 3)  # no memory behind it
    with pytest.raises(MemoryPlanError, match="needs .* GiB but only .* GiB is free"):
        tiny_model.generate(frames=frames, prompt="q", compression_ratio=2, max_new_tokens=2)


def test_greedy_output_is_deterministic(tiny_model):
    frames = torch.randint(0, 256, (11, 60, 80, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    a = tiny_model.generate(frames=frames, prompt="What is it?", compression_ratio=4, max_new_tokens=6)
    b = tiny_model.generate(frames=frames, prompt="What is it?", compression_ratio=4, max_new_tokens=6)
    assert a.token_ids == b.token_ids and torch.equal(a.logits, b.logits)


def test_concurrent_asks_equal_sequential(tiny_model):
    frames = torch.randint(0, 256, (13, 48, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    memory = tiny_model.encode(frames=frames, compression_ratio=8)
    questions = [f"question number {i}?" for i in range(12)]
    sequential = {q: tiny_model.ask(memory, q, max_new_tokens=5) for q in questions}
    results, errors = {}, []

    def worker(mine):
        try:
            for q in mine:
                results[q] = tiny_model.ask(memory, q, max_new_tokens=5)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(questions[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    for q in questions:
        assert results[q].token_ids == sequential[q].token_ids
        assert torch.equal(results[q].logits, sequential[q].logits)


def test_interleaved_streams_on_one_memory_are_refused(tiny_model, memory):
    """Two answers at once would write the same slots: the second is refused, the first unharmed."""
    first = tiny_model.stream(memory, "first question?", max_new_tokens=4, ignore_eos=True)
    pieces = iter(first)
    next(pieces, None)
    with pytest.raises(RuntimeError, match="answering another question"):
        tiny_model.ask(memory, "second?", max_new_tokens=2)
    rest = "".join(pieces)
    alone = tiny_model.ask(memory, "first question?", max_new_tokens=4, ignore_eos=True)
    assert first.output.token_ids == alone.token_ids and rest is not None
    assert tiny_model.ask(memory, "second?", max_new_tokens=2).token_ids  # free again


@needs_av
def test_fps_above_the_video_rate_takes_each_frame_once():
    from vxl_fast.video import open_video

    with pytest.warns(UserWarning, match="above the video's 25 frames per second"):
        source = open_video(VIDEO, fps=300)
    assert source.count == 500 and len(set(source.indices.tolist())) == 500


# ---------------------------------------------------------------- the command line
def _cli(*args):
    return subprocess.run([sys.executable, "-m", "vxl_fast", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, message", [
    (["ask", "V", "q", "--model", "M", "--max-new-tokens", "0"], "max_new_tokens must be a positive integer"),
    (["ask", "V", "q", "--model", "M", "--top-p", "2"], r"top_p must be in (0, 1]"),
    (["ask", "V", "q", "--model", "M", "--frames", "8", "--fps", "2"], "num_frames= or fps=, not both"),
    (["ask", "V", "q", "--model", "M", "--max-frames", "8"], "max_frames= only applies with fps="),
    (["ask", "--memory", "X.vxl", "q", "--model", "M", "--frames", "8"], "--frames cannot apply with --memory"),
    (["ask", "--memory", "X.vxl", "V", "q", "--model", "M"], "either VIDEO or --memory"),
    (["ask", "V", "q", "--model", "M", "--device", "tpu"], "tpu"),
    (["ask", "V", "q"], "no checkpoint"),
    (["ask", "a.png", "b.png", "q", "--model", "M", "--frames", "8"], "num_frames= and fps= only apply to video="),
    (["encode", "V", "-o", "/nonexistent-folder/x.vxl", "--model", "M"], "the folder /nonexistent-folder does not exist"),
    (["encode", "V", "-o", "/tmp", "--model", "M"], "/tmp: it is a directory"),
    (["info", "released", "--frames", "0"], "--frames must be at least 1"),
])
def test_cli_refuses_before_loading(args, message):
    """None of these reach the model: M is no checkpoint and V no video, so a late check would fail
    with another message."""
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and "loading" not in r.stderr
