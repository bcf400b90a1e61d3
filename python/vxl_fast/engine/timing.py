"""Time spent in the stages of a request, measured on the device's own clock.

On CUDA each measured span records a pair of events on the current stream and nothing waits for
them until the times are read (``collect``: one wait on the last event), so the host keeps
queueing work; on the CPU the spans are wall-clock times.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import torch


class StageTimer:
    def __init__(self, device: torch.device):
        self.on_device = device.type == "cuda"
        self._spans: list[tuple[str, object, object]] = []
        self._seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def measure(self, stage: str):
        if self.on_device:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._spans.append((stage, start, end))
        else:
            t0 = time.perf_counter()
            yield
            self._seconds[stage] += time.perf_counter() - t0

    def collect(self) -> dict[str, float]:
        """Seconds per stage since the last collect (waits once for the device's queued work)."""
        if self._spans:
            self._spans[-1][2].synchronize()
            for stage, start, end in self._spans:
                self._seconds[stage] += start.elapsed_time(end) / 1e3
            self._spans.clear()
        out, self._seconds = dict(self._seconds), defaultdict(float)
        return out
