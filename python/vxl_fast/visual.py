"""Turn the caller's visual input into a stream of visual tokens, encoded window by window."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .video.anyres import anyres_tiles
from .video.preprocess import check_frames, clip_preprocess, clip_preprocess_image
from .video.reader import read_video


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
    def consumed_items(self) -> int:
        """Items whose tokens have all been handed out."""
        return self.taken // self.tokens_per_item

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


def _frames_source(frames, cfg, timestamps=None) -> VisualSource:
    frames = check_frames(frames)
    return VisualSource("video", frames.shape[0], lambda i, j: clip_preprocess(frames[i:j], cfg), timestamps)


def _video_source(video, num_frames, fps, max_frames, cfg, progress) -> VisualSource:
    if num_frames is None and fps is None:
        raise ValueError("video= needs num_frames= (how many frames to sample) or fps=")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int)
                                   or num_frames < 1):
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    sampled = read_video(video, num_frames, fps, max_frames, progress)
    return _frames_source(sampled.frames, cfg, sampled.timestamps)


def _image_source(images, pinpoints, cfg) -> VisualSource:
    if isinstance(images, (list, tuple)):
        if len(images) != 1:
            raise ValueError(
                f"images= takes a single image (got {len(images)}); pass several frames as frames= "
                "to use the video path")
        images = images[0]
    tiles = anyres_tiles(load_image(images), pinpoints, cfg.image_size)
    return VisualSource("image", len(tiles), lambda i, j: torch.stack([clip_preprocess_image(t, cfg) for t in tiles[i:j]]))


def load_image(image) -> Image.Image:
    """A path, PIL image or uint8 array [H, W, 3] → RGB PIL image."""
    if isinstance(image, (str, os.PathLike)):
        if not os.path.isfile(image):
            raise FileNotFoundError(f"image file not found: {image}")
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except OSError as e:
            raise ValueError(f"cannot read image {image}: {e}") from None
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image arrays must have dtype uint8, got {image.dtype}")
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image arrays must have shape [H, W, 3], got {list(image.shape)}")
        if 0 in image.shape:
            raise ValueError(f"image has an empty size {list(image.shape)}")
        return Image.fromarray(image)
    raise TypeError(f"unsupported image type {type(image).__name__}; pass a path, PIL image or "
                    "uint8 array [H, W, 3]")


def pick_source(frames, video, num_frames, fps, max_frames, images, config, progress: bool = False) -> VisualSource:
    """The one visual input given: ``frames``, a ``video`` file or ``images`` (one image)."""
    given = [name for name, v in (("frames", frames), ("video", video), ("images", images)) if v is not None]
    if len(given) != 1:
        raise ValueError("pass exactly one visual input: frames=, video= or images=" +
                         (f" (got {', '.join(given)})" if given else ""))
    if (num_frames is not None or fps is not None) and video is None:
        raise ValueError("num_frames= and fps= only apply to video=")
    if frames is not None:
        return _frames_source(frames, config.vision)
    if video is not None:
        return _video_source(video, num_frames, fps, max_frames, config.vision, progress)
    return _image_source(images, config.image_grid_pinpoints, config.vision)
