"""Timing a candidate implementation on the GPU, for the choices made once at first use."""

from __future__ import annotations

from typing import Callable

import torch


def cuda_seconds(fn: Callable, inputs: tuple, reps: int = 5) -> float:
    """Seconds per call of ``fn(*inputs)`` on the current CUDA stream (after one warm-up call)."""
    fn(*inputs)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn(*inputs)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / (reps * 1e3)
