"""A minimal video reader (PyAV): upstream's uniform sampling, frames decoded in one pass."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .sampling import fps_indices, uniform_indices


@dataclass
class SampledVideo:
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    indices: np.ndarray  # int64 [T], frame numbers in the file
    total_frames: int
    fps: float

    @property
    def timestamps(self) -> list[float] | None:
        """Seconds from the start, by frame number and the average frame rate."""
        return [i / self.fps for i in self.indices.tolist()] if self.fps > 0 else None


def read_video(path: str | os.PathLike, num_frames: int | None = None, fps: float | None = None,
               max_frames: int | None = None, progress: bool = False) -> SampledVideo:
    """Decode frames as RGB: ``num_frames`` at ``linspace(0, total-1, num_frames, dtype=int)``
    (upstream's rule), or ``fps`` frames per second (at most ``max_frames``)."""
    if (num_frames is None) == (fps is None):
        raise ValueError("sample a video with exactly one of num_frames= or fps=")
    try:
        import av
    except ImportError:
        raise ImportError("reading video files needs PyAV: pip install av") from None
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"video file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"expected a video file, got a folder: {path}")
    try:
        container = av.open(path)
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"cannot read video {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise ValueError(f"cannot read video {path}: it has no video stream")
        stream = container.streams.video[0]
        total = stream.frames or _count_frames(container, stream)
        if total <= 0:
            raise ValueError(f"cannot read video {path}: it has zero frames")
        video_fps = float(stream.average_rate or 0.0)
        indices = (uniform_indices(total, num_frames) if fps is None
                   else fps_indices(total, video_fps, fps, max_frames))
        container.seek(0)
        stream.thread_type = "AUTO"
        wanted = set(indices.tolist())
        last = max(wanted)
        got: dict[int, np.ndarray] = {}
        bar = tqdm(total=last + 1, desc="decoding", unit="frame", disable=not progress, leave=False)
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = frame.to_ndarray(format="rgb24")
                bar.update(1)
                if i >= last:
                    break
        except av.error.FFmpegError as e:
            raise ValueError(f"cannot read video {path}: decoding failed after {len(got)} "
                             f"wanted frames: {e}") from None
        finally:
            bar.close()
    missing = sorted(i for i in wanted if i not in got)
    if missing:
        raise ValueError(
            f"cannot read video {path}: it declares {total} frames but frame {missing[0]} could not "
            f"be decoded ({len(missing)} of {len(wanted)} wanted frames missing)")
    frames = torch.from_numpy(np.stack([got[i] for i in indices.tolist()]))
    return SampledVideo(frames, indices.astype(np.int64), total, video_fps)


def _count_frames(container, stream) -> int:
    return sum(1 for p in container.demux(stream) if p.size)
