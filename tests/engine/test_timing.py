"""Stage times: wall clock on the CPU; on CUDA, events read once at the end (no wait in between)."""

from __future__ import annotations

import torch

from vxl_fast.engine import timing
from vxl_fast.engine.timing import StageTimer


def test_cpu_spans_add_up_per_stage():
    timer = StageTimer(torch.device("cpu"))
    for _ in range(3):
        with timer.measure("vision"):
            sum(range(10000))
    with timer.measure("compress"):
        pass
    seconds = timer.collect()
    assert set(seconds) == {"vision", "compress"} and seconds["vision"] > 0
    assert timer.collect() == {}  # collected times are not counted twice


class _Event:
    waits = 0
    clock = 0.0

    def __init__(self, enable_timing: bool):
        assert enable_timing

    def record(self):
        _Event.clock += 2.0
        self.at = _Event.clock

    def synchronize(self):
        _Event.waits += 1

    def elapsed_time(self, end):
        return end.at - self.at  # milliseconds


def test_cuda_spans_wait_once_when_read(monkeypatch):
    monkeypatch.setattr(timing.torch.cuda, "Event", _Event)
    timer = StageTimer(torch.device("cuda"))
    for stage in ("vision", "compress", "vision"):
        with timer.measure(stage):
            pass
    assert _Event.waits == 0
    assert timer.collect() == {"vision": 0.004, "compress": 0.002}
    assert _Event.waits == 1
