"""Checkpoint layouts: sharded or single-file safetensors, the vision-tower folder and its fallback."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import GOLDEN, Case, load_model
from vxl_fast import CheckpointError, VideoXL, VideoXLConfig


def test_single_file_checkpoint_matches_sharded(ckpt_copy):
    folder = ckpt_copy
    merged = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        merged.update(load_file(str(shard)))
        shard.unlink()
    (folder / "model.safetensors.index.json").unlink()
    save_file(merged, str(folder / "model.safetensors"))
    single = VideoXL.from_pretrained(folder, device="cpu", dtype=torch.float32)
    sharded = load_model(GOLDEN / "tiny-videoxl")
    for (name, a), (_, b) in zip(single.model.named_parameters(), sharded.model.named_parameters()):
        assert torch.equal(a, b), name
    case = Case(GOLDEN / "cases" / "t001_r8_noise336.json")
    out = single.generate(frames=case.frames(), prompt=case.meta["question"], compression_ratio=8,
                          max_new_tokens=4)
    assert out.token_ids == case.meta["output_ids"][:4]


def test_weights_are_upcast_exactly_from_bf16():
    model = load_model(GOLDEN / "tiny-videoxl")
    raw = load_file(str(GOLDEN / "tiny-videoxl" / "model-00002-of-00002.safetensors"))
    assert raw["lm_head.weight"].dtype == torch.bfloat16
    assert torch.equal(model.model.lm_head.weight, raw["lm_head.weight"].float())


def test_vision_config_comes_from_the_tower_folder():
    cfg = VideoXLConfig.from_dir(GOLDEN / "tiny-videoxl")
    assert cfg.vision.num_heads == 4 and cfg.vision.hidden_size == 64
    assert cfg.vision.source.endswith("clip-vit-tiny-patch14-336")
    assert cfg.vision.layers_to_run == 2  # hidden_states[-2] of a 3-layer tower
    assert cfg.tokens_per_frame == 144
    assert cfg.eos_token_ids == (1002, 1000)
    medium = VideoXLConfig.from_dir(GOLDEN / "medium-videoxl")
    assert (medium.llm.head_dim, medium.llm.num_heads, medium.llm.num_kv_heads) == (128, 7, 1)
    assert medium.vision.hidden_size // medium.vision.num_heads == 64


def test_missing_tower_folder_falls_back_to_clip_l(ckpt_copy):
    folder = ckpt_copy
    shutil.rmtree(folder / "clip-vit-tiny-patch14-336")
    # the built-in CLIP ViT-L/14-336 tower (width 1024) cannot feed this checkpoint's projector
    with pytest.raises(CheckpointError, match="mm_hidden_size 64 differs from the vision tower's hidden_size 1024"):
        VideoXLConfig.from_dir(folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["mm_hidden_size"] = 1024
    (folder / "config.json").write_text(json.dumps(cfg))
    vision = VideoXLConfig.from_dir(folder).vision
    assert vision.source == "built-in CLIP ViT-L/14-336"
    assert (vision.num_layers, vision.num_heads, vision.hidden_size) == (24, 16, 1024)


def test_random_writes_no_file_and_its_tokenizer_is_the_demo_one(tmp_path, monkeypatch):
    """``VideoXL.random()`` builds its tokenizer in memory: the one the demo checkpoint writes."""
    from vxl_fast.loader import load_tokenizer
    from vxl_fast.testing.tiny import _write_tokenizer

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("VXL_FAST_CACHE", str(home / "cache"))
    cfg = VideoXLConfig.from_dir(GOLDEN / "tiny-videoxl")
    model = VideoXL.random(cfg, device="cpu", dtype="float32", seed=1)
    assert list(home.iterdir()) == []
    assert model.path == "<random>" and model.dtype == torch.float32
    (tmp_path / "tok").mkdir()
    assert _write_tokenizer(tmp_path / "tok", 1000) == 643
    written = load_tokenizer(tmp_path / "tok")
    text = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat moves? 12 Ünï 🙂"
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == written(text, add_special_tokens=False)["input_ids"] and ids[0] == 644
    assert model.tokenizer.decode(ids, skip_special_tokens=True) == written.decode(ids, skip_special_tokens=True)
    assert model.tokenizer.convert_tokens_to_ids("<|im_end|>") == 645 and len(model.tokenizer) == 646
    assert model.tokenizer.clean_up_tokenization_spaces is False
