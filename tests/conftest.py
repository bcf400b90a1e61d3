"""Shared fixtures and skip markers: the golden checkpoints and cases in tests/golden (read-only).

The device rule: a test runs on the CPU in fp32 unless it is a GPU test (marked ``gpu``, alias
``needs_cuda``; skipped where no CUDA GPU is usable). For every other test the library's default
device is the CPU (``vxl_fast.device.default_device``) and the processes it starts see no GPU
(``CUDA_VISIBLE_DEVICES`` empty), whatever the machine has. ``tests/test_device_rule.py`` checks it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode

from vxl_fast import _ext

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("VXL_GOLDEN", REPO / "tests" / "golden"))


def golden_cases() -> list[Path]:
    """Every public case: video/frames/image cases of both checkpoints, then the multi-image ones."""
    return (sorted((GOLDEN / "cases").glob("*.json")) + sorted((GOLDEN / "medium-cases").glob("*.json"))
            + sorted((GOLDEN / "multi-image-cases").glob("*.json")))


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

    def images(self) -> list:
        """The images of a multi-image case, in order (``*_x4`` ones stored at a quarter size)."""
        out = []
        for item in self.meta["images"]:
            t = self.tensors[item["tensor"]]
            if item["encoding"] == "nearest_x4":
                t = t.repeat_interleave(4, 0).repeat_interleave(4, 1)
            out.append(t.numpy())
        return out

    def visual_kwargs(self) -> dict:
        src = self.meta["source"]
        if src == "video":
            pytest.importorskip("av", reason="the video case needs PyAV")
        if src == "frames":
            return {"frames": self.frames()}
        if src == "image":
            return {"images": [self.image()]}
        if src == "images":
            return {"images": self.images()}
        return {"video": str(GOLDEN / "cases" / self.meta["video_file"]), "num_frames": self.meta["max_frames_num"]}

    def text_kwargs(self) -> dict:
        if self.meta["messages"] is not None:
            return {"messages": self.meta["messages"]}
        return {"prompt": self.meta["question"]}


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


_MODELS: dict[tuple[Path, str], object] = {}
needs_ext = pytest.mark.skipif(not _ext.available, reason=f"vxl_fast._C not loaded: {_ext.error}")
# NOTE: CUDA is initialised here, at import, before any test empties CUDA_VISIBLE_DEVICES for the
# processes it starts: the variable is read once per process, at initialisation
CUDA_AVAILABLE = torch.cuda.is_available()
if CUDA_AVAILABLE:
    torch.cuda.init()
needs_cuda = pytest.mark.gpu
needs_av = pytest.mark.skipif(not _importable("av"), reason="needs PyAV")


class CountOps(TorchDispatchMode):
    """Counts the aten ops run under it by name (``counted.ops["add"]``)."""

    def __init__(self):
        super().__init__()
        self.ops: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def warnings_of(fn, *args, **kwargs) -> tuple:
    """``fn(*args, **kwargs)`` and the messages of every warning it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message) for w in caught]


class CountingTokenizer:
    """``tokenizer`` as it is, with its calls counted (``calls``: one entry per call)."""

    def __init__(self, tokenizer):
        self._tokenizer, self.calls = tokenizer, []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, *args, **kwargs):
        self.calls.append(1)
        return self._tokenizer(*args, **kwargs)


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: a GPU test: runs on CUDA, skipped where no CUDA GPU is usable; "
                                       "every other test runs on the CPU (the device rule in conftest.py)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not CUDA_AVAILABLE:
        pytest.skip(NEEDS_GPU)


NEEDS_GPU = "needs a CUDA GPU"


def pytest_terminal_summary(terminalreporter):
    """One line for the tests skipped for want of a GPU, one for the other skips (``-rs`` lists them)."""
    reasons = [rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
               for rep in terminalreporter.stats.get("skipped", [])]
    gpu = sum(NEEDS_GPU in r or "CUDA" in r for r in reasons)
    if gpu:
        terminalreporter.write_line(f"{gpu} skipped: they need a CUDA GPU and none is usable here (expected on a "
                                    "machine without one; .ci/gpu_suite.sh runs them on a GPU)")
    if len(reasons) > gpu:
        terminalreporter.write_line(f"{len(reasons) - gpu} skipped for other reasons (pytest -rs lists them)")


@pytest.fixture(autouse=True)
def _cpu_unless_gpu_test(request, monkeypatch):
    """The device rule (module docstring) for every test not marked ``gpu``."""
    if request.node.get_closest_marker("gpu") is None:
        from vxl_fast import device

        monkeypatch.setattr(device, "default_device", lambda: torch.device("cpu"))
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


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
    return load_model(GOLDEN / "tiny-videoxl")


@pytest.fixture(scope="session")
def tiny_vision_config():
    from vxl_fast import VideoXLConfig

    return VideoXLConfig.from_dir(GOLDEN / "tiny-videoxl").vision


@pytest.fixture(scope="session")
def hf_processor():
    """transformers' CLIP image processor on its Pillow backend (upstream's), whatever else is
    installed: with torchvision present, ``CLIPImageProcessor`` would pick a torchvision backend."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from transformers import CLIPImageProcessorPil as Processor
        except ImportError:  # transformers < 5: CLIPImageProcessor is the Pillow implementation
            from transformers import CLIPImageProcessor as Processor
        return Processor.from_pretrained(str(GOLDEN / "tiny-videoxl" / "clip-vit-tiny-patch14-336"))
