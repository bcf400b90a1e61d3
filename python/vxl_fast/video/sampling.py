"""Which frames of a video to decode."""

from __future__ import annotations

import warnings

import numpy as np


def uniform_indices(total_frames: int, num_frames: int) -> np.ndarray:
    """Upstream's rule: ``linspace(0, total-1, num, dtype=int)`` (truncation; first and last kept;
    repeats when the video has fewer frames than asked)."""
    if total_frames < 1:
        raise ValueError("the video has zero frames")
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames, dtype=int)


def fps_indices(total_frames: int, video_fps: float, fps: float, max_frames: int | None = None) -> np.ndarray:
    """Frames at ``fps`` per second: ``int(i · video_fps / fps)`` for every whole step that fits
    (upstream's VNBench rule, which is ``fps = 1``). More than ``max_frames`` → ``max_frames``
    uniformly sampled frames instead. Above the video's own rate, every frame is taken once."""
    if total_frames < 1:
        raise ValueError("the video has zero frames")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not video_fps > 0:
        raise ValueError("the video does not declare its frame rate; sample with num_frames instead")
    if fps > video_fps:
        warnings.warn(f"fps={fps:g} is above the video's {video_fps:g} frames per second; "
                      "each frame is sampled once")
        fps = video_fps
    step = video_fps / fps
    count = max(1, int(total_frames / step))
    if max_frames is not None and count > max_frames:
        return uniform_indices(total_frames, max_frames)
    return np.array([int(i * step) for i in range(count)], dtype=int)
