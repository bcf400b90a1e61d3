"""Bad input gets a clear error naming the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import GOLDEN, needs_av
from vxl_fast import CheckpointError, VideoXL

FRAMES = torch.zeros(2, 64, 48, 3, dtype=torch.uint8)


@pytest.mark.parametrize("ratio", [5, 0, -8, 3, 145, "8", 8.0, True, [8, 5], []])
def test_unknown_ratio(tiny_model, ratio):
    with pytest.raises((ValueError, TypeError), match="compression ratio|compression_ratio"):
        tiny_model.generate(frames=FRAMES, prompt="q", compression_ratio=ratio, max_new_tokens=1)


def test_zero_frames(tiny_model):
    with pytest.raises(ValueError, match="zero frames"):
        tiny_model.generate(frames=torch.zeros(0, 8, 8, 3, dtype=torch.uint8), prompt="q")


@pytest.mark.parametrize("frames, match", [
    (torch.zeros(2, 8, 8, 3, dtype=torch.float32), "dtype uint8, got torch.float32"),
    (np.zeros((2, 8, 8, 3), dtype=np.int16), "dtype uint8, got torch.int16"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), r"shape \[T, H, W, 3\], got \[8, 8, 3\]"),
    (torch.zeros(2, 8, 8, 4, dtype=torch.uint8), "3 channels .* got 4"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "3 channels .* got 8"),
    (torch.zeros(2, 0, 8, 3, dtype=torch.uint8), "empty spatial size"),
    ([[1, 2, 3]], "uint8 tensor or array"),
])
def test_bad_frames(tiny_model, frames, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tiny_model.generate(frames=frames, prompt="q", max_new_tokens=1)


def test_visual_input_required_and_unique(tiny_model):
    with pytest.raises(ValueError, match="exactly one visual input"):
        tiny_model.generate(prompt="q")
    with pytest.raises(ValueError, match="got frames, images"):
        tiny_model.generate(frames=FRAMES, images=[np.zeros((8, 8, 3), np.uint8)], prompt="q")
    with pytest.raises(ValueError, match="num_frames= and fps= only apply to video="):
        tiny_model.generate(frames=FRAMES, num_frames=4, prompt="q")


def test_images_bad(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="images= is an empty list"):
        tiny_model.generate(images=[], prompt="q")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        tiny_model.generate(images=str(tmp_path / "nope.png"), prompt="q")
    with pytest.raises(TypeError, match="uint8"):
        tiny_model.generate(images=np.zeros((8, 8, 3), np.float32), prompt="q")


@needs_av
def test_video_file_errors(tiny_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found"):
        tiny_model.generate(video=str(tmp_path / "missing.mp4"), num_frames=4, prompt="q")
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    with pytest.raises(ValueError, match="cannot read video"):
        tiny_model.generate(video=str(fake), num_frames=4, prompt="q")
    with pytest.raises(ValueError, match="cannot read video"):  # no num_frames: the default 128, as everywhere
        tiny_model.generate(video=str(fake), prompt="q")
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        tiny_model.generate(video=str(fake), num_frames=0, prompt="q")


def test_prompt_errors(tiny_model):
    with pytest.raises(ValueError, match="question is empty"):
        tiny_model.generate(frames=FRAMES, prompt="   ")
    with pytest.raises(ValueError, match="exactly one of prompt= .* or messages="):
        tiny_model.generate(frames=FRAMES)
    with pytest.raises(ValueError, match="2 '<image>' markers"):
        tiny_model.generate(frames=FRAMES, prompt="<image> and <image>")
    with pytest.raises(ValueError, match="role 'robot'"):
        tiny_model.generate(frames=FRAMES, messages=[{"role": "robot", "content": "hi"}])


def test_prompt_over_context_limit(tiny_model):
    with pytest.raises(ValueError, match="prompt too long: .* exceed the model's context of 32768"):
        tiny_model.generate(frames=FRAMES, prompt="cup " * 33000, max_new_tokens=1)
    with pytest.raises(ValueError, match="prompt too long"):
        tiny_model.generate(frames=FRAMES, prompt="q", max_new_tokens=40000)


def test_generation_settings(tiny_model):
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        tiny_model.generate(frames=FRAMES, prompt="q", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        tiny_model.generate(frames=FRAMES, prompt="q", do_sample=True, temperature=0)
    with pytest.raises(ValueError, match="stop must be"):
        tiny_model.generate(frames=FRAMES, prompt="q", stop=[""])


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        VideoXL.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="missing checkpoint file: .*config.json"):
        VideoXL.from_pretrained(tmp_path / "empty")


def test_missing_shard(ckpt_copy):
    (ckpt_copy / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing checkpoint file: .*model-00002-of-00002"):
        VideoXL.from_pretrained(ckpt_copy)


def _edit_shard(folder, key, fn):
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shard = folder / index["weight_map"][key]
    tensors = load_file(str(shard))
    fn(tensors, index)
    save_file(tensors, str(shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))


def test_missing_weight_key(ckpt_copy):
    key = "model.layers.1.self_attn.beacon_k_proj.weight"

    def drop(tensors, index):
        del tensors[key], index["weight_map"][key]
    _edit_shard(ckpt_copy, key, drop)
    with pytest.raises(CheckpointError, match=f"missing the weight '{key}'"):
        VideoXL.from_pretrained(ckpt_copy)


def test_misshapen_weight(ckpt_copy):
    key = "model.mm_projector.0.weight"

    def shrink(tensors, index):
        tensors[key] = tensors[key][:, :10].contiguous()
    _edit_shard(ckpt_copy, key, shrink)
    with pytest.raises(CheckpointError, match=r"'model.mm_projector.0.weight' has shape \[128, 10\], expected \[128, 64\]"):
        VideoXL.from_pretrained(ckpt_copy)


@pytest.mark.parametrize("edit, match", [
    ({"architectures": ["LlamaForCausalLM"]}, "not a Video-XL checkpoint"),
    ({"model_type": "llama"}, "model_type 'llama' is not supported"),
    ({"beacon_param": ["q", "k", "v", "o"]}, "beacon_param .* not supported"),
    ({"mm_projector_type": "linear"}, "mm_projector_type = 'linear' is not supported"),
    ({"hidden_size": None}, "missing the required key 'hidden_size'"),
    ({"mm_vision_select_feature": "cls_patch"}, "mm_vision_select_feature 'cls_patch'"),
])
def test_unsupported_config(ckpt_copy, edit, match):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg.update(edit)
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=match):
        VideoXL.from_pretrained(ckpt_copy)


def test_bad_dtype():
    with pytest.raises(ValueError, match="unsupported dtype 'int8'"):
        VideoXL.from_pretrained(GOLDEN / "tiny-videoxl", dtype="int8")


def test_hub_id_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="cannot be reached|offline"):
        VideoXL.from_pretrained("someone/not-a-local-folder")


def test_refuses_before_starting_when_memory_does_not_fit(tiny_model, monkeypatch):
    import vxl_fast.memory.budget as kv
    from vxl_fast import MemoryPlanError

    monkeypatch.setattr(kv, "available_bytes", lambda device: 10_000)
    with pytest.raises(MemoryPlanError, match=r"needs \d+\.\d+ GiB but only 0\.00 GiB is free on cpu"):
        tiny_model.generate(frames=FRAMES, prompt="q", max_new_tokens=4)
