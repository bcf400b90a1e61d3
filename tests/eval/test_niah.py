"""vxl-fast niah: prefix reuse answers bit-identically to encoding each haystack whole, with fewer windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vxl_fast
from conftest import GOLDEN, _importable, needs_av
from vxl_fast.eval import niah

PACKAGE_ROOT = Path(vxl_fast.__file__).parents[1]  # the child imports the vxl_fast this process does


def _haystack(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 48, 48, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


NEEDLE = niah.Needle(torch.full((2, 48, 48, 3), 220, dtype=torch.uint8), "What color is the flash?",
                     ("red", "white", "blue"), "B")


def test_reuse_is_bit_identical_to_whole_encodes(tiny_model):
    batch = tiny_model.runner.vision_batch
    hay = _haystack(2 * batch + 3)
    depths = [0, 50, 100]
    reused, whole = niah.Grid(), niah.Grid()
    pairs = zip(niah.memories(tiny_model, hay, NEEDLE, depths, 4, reused),
                niah.memories(tiny_model, hay, NEEDLE, depths, 4, whole, reuse=False))
    for (d1, m1), (d2, m2) in pairs:
        assert d1 == d2
        assert [(w.n_raw, w.n_vst) for w in m1.windows] == [(w.n_raw, w.n_vst) for w in m2.windows]
        n = m2.kv_slots
        assert m1.kv_slots == n and torch.equal(m1.cache.k[:, :, :n], m2.cache.k[:, :, :n])
        assert torch.equal(m1.cache.v[:, :, :n], m2.cache.v[:, :, :n])
        a1 = tiny_model.ask(m1, NEEDLE.prompt(), max_new_tokens=3)
        a2 = tiny_model.ask(m2, NEEDLE.prompt(), max_new_tokens=3)
        assert a1.token_ids == a2.token_ids and torch.equal(a1.logits, a2.logits)
    assert whole.windows_naive == whole.windows_encoded == reused.windows_naive
    assert reused.windows_encoded < whole.windows_encoded


def test_needle_checks_and_scoring():
    assert NEEDLE.correct("B") and NEEDLE.correct("(B) white") and NEEDLE.correct("white.")
    assert not NEEDLE.correct("A") and not NEEDLE.correct("Blue")
    with pytest.raises(ValueError, match="letters"):
        niah.Needle(NEEDLE.frames, "?", ("a", "b"), "C")
    with pytest.raises(ValueError, match="percentages"):
        niah.check_grid([8], [120])
    frames, at = niah.insert(_haystack(10), NEEDLE.frames, 50)
    assert at == 5 and frames.shape[0] == 12 and torch.equal(frames[5:7], NEEDLE.frames)


@needs_av
@pytest.mark.skipif(not _importable("matplotlib"), reason="the heatmap needs matplotlib (the eval extra)")
def test_niah_command_writes_grid_and_heatmap(tmp_path):
    from PIL import Image

    from localtask import write_video

    haystack = write_video(tmp_path / "hay.mp4", seed=1, frames=24, size=48)
    Image.fromarray(np.full((32, 32, 3), 220, np.uint8)).save(tmp_path / "needle.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vxl_fast", "niah", "--model", str(GOLDEN / "tiny-videoxl"), "--device", "cpu",
           "--dtype", "float32", "--haystack", str(haystack), "--needle", str(tmp_path / "needle.png"),
           "--question", "What color is the flash?", "--option", "red", "--option", "white", "--answer", "b",
           "--frames", "12", "24", "--depths", "0", "50", "100", "--ratio", "4", "--max-new-tokens", "2", "-o", str(out)]
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT), "CUDA_VISIBLE_DEVICES": ""}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "niah.json").read_text())
    assert report["frames"] == [12, 24] and report["depths"] == [0, 50, 100]
    assert len(report["accuracy_grid"]) == 3 and all(len(row) == 2 for row in report["accuracy_grid"])
    assert len(report["cells"]) == 6 and report["settings"]["compression_ratio"] == 4
    assert report["windows_encoded"] < report["windows_naive"]
    assert "windows encoded" in r.stderr
    with Image.open(out / "niah.png") as png:
        assert png.size[0] > 300 and png.size[1] > 200


@pytest.mark.parametrize("extra,message", [
    (["--answer", "C"], "the answer must be one of the options' letters AB, got 'C'"),
    (["--answer", "A", "--ratio", "3"], "unsupported compression ratio 3"),
    (["--answer", "A", "--depths", "150"], "depths are percentages in [0, 100]"),
    (["--answer", "A", "--needle-frames", "0"], "--needle-frames must be at least 1"),
])
def test_niah_command_refuses_bad_input_before_loading(tmp_path, capsys, extra, message):
    from vxl_fast.cli import main

    args = ["niah", "--model", str(tmp_path / "no-model"), "--haystack", str(tmp_path / "no.mp4"), "--needle",
            str(tmp_path / "no.png"), "--question", "q?", "--option", "a", "--option", "b", "--frames", "8",
            "-o", str(tmp_path / "out"), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
