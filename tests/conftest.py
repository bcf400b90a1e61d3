"""Shared fixtures: the golden checkpoints and cases in ../shared/golden (read-only)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("VXL_GOLDEN", REPO.parent / "shared" / "golden"))
needs_golden = pytest.mark.skipif(not GOLDEN.is_dir(), reason=f"golden data not found at {GOLDEN}")


def golden_cases() -> list[Path]:
    return sorted((GOLDEN / "cases").glob("*.json")) + sorted((GOLDEN / "medium-cases").glob("*.json"))


class Case:
    def __init__(self, path: Path):
        self.path, self.meta = path, json.loads(path.read_text())
        self.tensors = load_file(str(path.with_suffix(".safetensors")))
        self.checkpoint = GOLDEN / ("medium-videoxl" if path.parent.name == "medium-cases" else "tiny-videoxl")

    @property
    def name(self) -> str:
        return self.meta["name"]

    def frames(self) -> torch.Tensor:
        t = self.tensors
        return t["frames"] if "frames" in t else t["frames_x4"].repeat_interleave(4, 1).repeat_interleave(4, 2)

    def image(self):
        return self.tensors["image_x4"].repeat_interleave(4, 0).repeat_interleave(4, 1).numpy()

    def visual_kwargs(self) -> dict:
        src = self.meta["source"]
        if src == "video":
            pytest.importorskip("av", reason="the video case needs PyAV")
        if src == "frames":
            return {"frames": self.frames()}
        if src == "image":
            return {"images": [self.image()]}
        return {"video": str(GOLDEN / "cases" / self.meta["video_file"]), "num_frames": self.meta["max_frames_num"]}

    def text_kwargs(self) -> dict:
        if self.meta["messages"] is not None:
            return {"messages": self.meta["messages"]}
        return {"prompt": self.meta["question"]}


_MODELS: dict[tuple[Path, str], object] = {}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def load_model(path: Path, device: str = "cpu"):
    from vxl_fast import VideoXL

    if (path, device) not in _MODELS:
        _MODELS[path, device] = VideoXL.from_pretrained(path, device=device, dtype=torch.float32)
    return _MODELS[path, device]


@pytest.fixture
def ckpt_copy(tmp_path) -> Path:
    """A writable copy of the tiny golden checkpoint, to break on purpose."""
    dst = tmp_path / "ckpt"
    shutil.copytree(GOLDEN / "tiny-videoxl", dst)
    for f in dst.rglob("*"):
        f.chmod(0o644 if f.is_file() else 0o755)
    return dst


@pytest.fixture(scope="session")
def tiny_model():
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    return load_model(GOLDEN / "tiny-videoxl")
