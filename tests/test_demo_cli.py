"""The offline demo: a random checkpoint in the upstream layout, a sample video, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("av", reason="needs PyAV")

from vxl_fast import VideoXL  # noqa: E402
from vxl_fast.demo import ensure_demo  # noqa: E402


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("demo")


def test_demo_checkpoint_loads_and_answers(demo_dir):
    ckpt, video = ensure_demo(demo_dir)
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    assert len({f for f in index["weight_map"].values()}) == 2
    assert "model.layers.0.self_attn.beacon_q_proj.weight" in index["weight_map"]
    model = VideoXL.from_pretrained(ckpt)
    tok = model.tokenizer
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.config.eos_token_ids
    out = model.generate(video=video, num_frames=12, prompt="What happens?", max_new_tokens=5)
    assert out.stats["frames"] == 12 and out.stats["windows"] == 2
    assert out.stats["vst_per_window"] == [180, 36]
    assert 1 <= len(out.token_ids) <= 5


def test_demo_is_deterministic(demo_dir, tmp_path):
    from vxl_fast.demo import write_tiny_checkpoint

    a = write_tiny_checkpoint(tmp_path / "a")
    ours = (demo_dir / "tiny-videoxl" / "model-00001-of-00002.safetensors").read_bytes()
    assert (a / "model-00001-of-00002.safetensors").read_bytes() == ours


def _cli(*args, **env):
    return subprocess.run([sys.executable, "-m", "vxl_fast", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_cli_demo_json(demo_dir):
    r = _cli("demo", "--dir", str(demo_dir), "--frames", "8", "--max-new-tokens", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert isinstance(out["text"], str) and 1 <= len(out["token_ids"]) <= 4
    assert out["stats"]["frames"] == 8 and out["stats"]["vsts"] == 8 * 144 // 8


def test_cli_demo_text(demo_dir):
    r = _cli("demo", "--dir", str(demo_dir), "--frames", "4", "--max-new-tokens", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "RANDOM weights" not in r.stdout and "4 frames -> 576 visual tokens" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--ratio", "5"], "unsupported compression ratio 5"),
    (["--frames", "0"], "num_frames must be a positive integer"),
])
def test_cli_bad_input(demo_dir, args, message):
    r = _cli("demo", "--dir", str(demo_dir), "--quiet", *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_cli_missing_model(tmp_path):
    r = _cli("ask", str(tmp_path / "v.mp4"), "q", "--model", str(tmp_path / "nope"))
    assert r.returncode == 2 and "checkpoint folder not found" in r.stderr
