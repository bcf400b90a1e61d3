"""Turn the caller's visual input into a stream of visual tokens, encoded window by window."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from .video.anyres import anyres_tiles
from .video.preprocess import check_frames, clip_preprocess, clip_preprocess_image
from .video.source import IMAGE_SUFFIXES, open_video, read_image


class VisualStream:
    """Visual tokens of ``count`` items (frames or image tiles), computed on demand.

    ``pixels(i, j)`` preprocesses items ``i..j-1`` to float32 [j-i, 3, S, S]; ``encode`` maps them
    to tokens [(j-i)·tokens_per_item, D]. Only the items a window needs are encoded, so a long
    video never holds more than about one window of visual tokens.
    """

    BATCH = 16  # items encoded together at most

    def __init__(self, count: int, tokens_per_item: int,
                 pixels: Callable[[int, int], torch.Tensor],
                 encode: Callable[[torch.Tensor], torch.Tensor], batch: int = BATCH):
        self.count, self.tokens_per_item = count, tokens_per_item
        self._pixels, self._encode, self._batch = pixels, encode, batch
        self._next = 0
        self._buffer: deque[torch.Tensor] = deque()
        self._buffered = 0
        self.taken = 0  # tokens handed out so far
        self.seconds = 0.0  # time spent preprocessing and encoding

    @property
    def num_tokens(self) -> int:
        return self.count * self.tokens_per_item

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` visual tokens [n, D]."""
        while self._buffered < n:
            if self._next >= self.count:
                raise RuntimeError("visual stream exhausted")
            need = -(-(n - self._buffered) // self.tokens_per_item)
            j = min(self.count, self._next + max(1, min(need, self._batch)))
            t0 = time.perf_counter()
            tokens = self._encode(self._pixels(self._next, j))
            if tokens.is_cuda:
                torch.cuda.synchronize(tokens.device)
            self.seconds += time.perf_counter() - t0
            self._buffer.append(tokens)
            self._buffered += tokens.shape[0]
            self._next = j
        parts, got = [], 0
        while got < n:
            head = self._buffer.popleft()
            use = min(n - got, head.shape[0])
            parts.append(head[:use])
            if use < head.shape[0]:
                self._buffer.appendleft(head[use:])
            got += use
        self._buffered -= n
        self.taken += n
        return parts[0] if len(parts) == 1 else torch.cat(parts)


@dataclass(frozen=True)
class VisualSource:
    """``count`` items (frames or image tiles); ``pixels(i, j)`` preprocesses items i..j-1."""

    modality: str  # "video" or "image"
    count: int
    pixels: Callable[[int, int], torch.Tensor]
    timestamps: list[float] | None = None


class TensorFrames:
    """Frames already in memory (uint8 [T, H, W, 3], any device), handed out in slices."""

    def __init__(self, frames: torch.Tensor):
        self.frames = check_frames(frames)
        self.count = self.frames.shape[0]

    def chunks(self, size: int):
        for i in range(0, self.count, size):
            yield self.frames[i:i + size], None


def frames_source(frames: torch.Tensor, cfg, timestamps: list[float] | None = None) -> VisualSource:
    """Video frames uint8 [T, H, W, 3] as a source of CLIP pixels."""
    return VisualSource("video", frames.shape[0], lambda i, j: clip_preprocess(frames[i:j], cfg), timestamps)


def image_source(images, pinpoints, cfg) -> VisualSource:
    """One image on upstream's anyres path: its grid tiles (the base tile is dropped by unires)."""
    if isinstance(images, (list, tuple)):
        if len(images) != 1:
            raise ValueError(
                f"images= takes a single image (got {len(images)}); pass several frames as frames= "
                "to use the video path")
        images = images[0]
    tiles = anyres_tiles(Image.fromarray(read_image(images)), pinpoints, cfg.image_size)
    return VisualSource("image", len(tiles),
                        lambda i, j: torch.stack([clip_preprocess_image(t, cfg) for t in tiles[i:j]]))


def check_inputs(frames, video, images, num_frames, fps) -> None:
    """Exactly one visual input; sampling options only with ``video``."""
    given = [name for name, v in (("frames", frames), ("video", video), ("images", images)) if v is not None]
    if len(given) != 1:
        raise ValueError("pass exactly one visual input: frames=, video= or images=" +
                         (f" (got {', '.join(given)})" if given else ""))
    if (num_frames is not None or fps is not None) and video is None:
        raise ValueError("num_frames= and fps= only apply to video=")


def frame_feed(frames, video, num_frames, fps, max_frames, sampling: str = "exact", progress=None):
    """Where the frames come from: ``TensorFrames`` or a planned ``VideoSource`` (``.count``,
    ``.chunks(n)``). A video file needs ``num_frames`` or ``fps``."""
    if frames is not None:
        return TensorFrames(frames)
    if isinstance(video, (str, os.PathLike)) and num_frames is None and fps is None:
        path = Path(video)
        if not path.is_dir() and path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError("video= needs num_frames= (how many frames to sample) or fps=")
    return open_video(video, num_frames, fps, max_frames, sampling, progress=progress)
