"""Frames go to a GPU on a copy stream of their own; the compute stream waits on the device, the
host never (CUDA's stream layer replaced by a recording fake: this machine needs no GPU)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from vxl_fast.video import inputs


class _Stream:
    def __init__(self, name: str, log: list):
        self.name, self.log = name, log

    def wait_stream(self, other: "_Stream") -> None:
        self.log.append(("wait", self.name, other.name))

    def synchronize(self) -> None:
        self.log.append(("synchronize", self.name))


class _Frames:
    """Host uint8 frames as far as ``to_device`` sees them."""

    def __init__(self, log: list, active: list, pinned: bool):
        self.device, self.log, self.active, self.pinned = torch.device("cpu"), log, active, pinned

    def is_pinned(self) -> bool:
        return self.pinned

    def pin_memory(self) -> "_Frames":
        self.log.append(("pin",))
        return _Frames(self.log, self.active, True)

    def to(self, device, non_blocking=False):
        self.log.append(("copy", self.active[-1], self.pinned, non_blocking))
        return self

    def record_stream(self, stream: _Stream) -> None:
        self.log.append(("record_stream", stream.name))


@pytest.fixture
def fake_cuda(monkeypatch):
    log, active = [], ["compute"]
    compute = _Stream("compute", log)

    @contextlib.contextmanager
    def use(stream):
        active.append(stream.name)
        yield
        active.pop()

    monkeypatch.setattr(torch.cuda, "Stream", lambda device: _Stream("copy", log))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device: compute)
    monkeypatch.setattr(torch.cuda, "stream", use)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: log.append(("synchronize", "device")))
    return log, active


@pytest.mark.parametrize("pinned", [True, False])
def test_upload_runs_on_the_copy_stream_and_the_compute_stream_waits_on_the_device(fake_cuda, pinned):
    log, active = fake_cuda
    target = inputs.Target(torch.device("cuda", 0), torch.bfloat16, torch.cuda.Stream(0))
    for _ in range(2):
        inputs.to_device(_Frames(log, active, pinned), target)
    one = ([] if pinned else [("pin",)]) + [("copy", "copy", True, True), ("wait", "compute", "copy"),
                                            ("record_stream", "compute")]
    assert log == one + one  # the target's copy stream, reused; nothing synchronises


def test_frames_already_there_or_not_for_a_gpu_are_moved_plainly():
    frames = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    assert inputs.to_device(frames, inputs.Target(torch.device("cpu"), torch.float32)) is frames
    meta = inputs.to_device(frames, inputs.Target(torch.device("meta"), torch.float32))
    assert meta.device.type == "meta" and meta.shape == frames.shape
