"""Which frames of a video to decode."""

from __future__ import annotations

import numpy as np


def uniform_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Upstream's rule: ``linspace(0, total-1, num, dtype=int)`` (truncation; first and last kept;
    repeats when the video has fewer frames than asked)."""
    if total_frames < 1:
        raise ValueError("the video has zero frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames, dtype=int)
