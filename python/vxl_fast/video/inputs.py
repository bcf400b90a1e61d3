"""The caller's visual input — frames, a video, one image — as pieces of CLIP patch rows to encode.

``visual_input`` plans reading a checked :class:`~vxl_fast.video.request.VisualRequest`; the result
is a :class:`VisualInput` whose ``sources(per_piece)`` produces :class:`PixelSource` pieces (a
window's worth of frames at a time, decoded in the background, or all tiles of an image).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..config import VideoXLConfig
from ..limits import Limits
from . import dali
from .anyres import anyres_tiles
from .images import image_size, read_image
from .preprocess import check_frames, clip_preprocess, clip_preprocess_image, patch_rows
from .request import VisualRequest, is_video_file
from .source import plan_read


@dataclass(frozen=True)
class Target:
    """Where pixels are made: the vision tower's device and dtype, and (for a GPU) the copy stream
    that uploads frames to it (the runner's own)."""

    device: torch.device
    dtype: torch.dtype
    copy_stream: torch.cuda.Stream | None = None


@dataclass(frozen=True)
class PixelSource:
    """``count`` items (frames or image tiles); ``pixels(i, j, target)`` gives items i..j-1 as the
    vision tower's input, CLIP pixel values as patch rows [j-i, P, 3p²] (``patch_rows``) in the
    target's dtype on its device. Frames travel to the device as uint8 and are preprocessed there,
    straight into patch rows (never converted to float on the host for a GPU)."""

    count: int
    pixels: Callable[[int, int, Target], torch.Tensor]
    timestamps: list[float] | None = None


def to_device(frames: torch.Tensor, target: Target) -> torch.Tensor:
    """uint8 frames onto the target's device. For a GPU: from pinned memory (video chunks are pinned
    by their decoding thread) on the target's copy stream, so that the upload overlaps the work
    already queued on the compute stream, which waits for it on the device — the host never waits."""
    device, copy = target.device, target.copy_stream
    if frames.device == device:
        return frames
    if device.type != "cuda" or frames.device.type != "cpu" or copy is None:
        return frames.to(device)
    host = frames if frames.is_pinned() else frames.pin_memory()
    compute = torch.cuda.current_stream(device)
    with torch.cuda.stream(copy):
        out = host.to(device, non_blocking=True)
    compute.wait_stream(copy)
    out.record_stream(compute)  # allocated on the copy stream, used and freed on the compute stream
    return out


def frames_source(frames: torch.Tensor | list[torch.Tensor], cfg: VideoXLConfig,
                  timestamps: list[float] | None = None) -> PixelSource:
    """Frames as a source of CLIP patch rows: uint8 [T, H, W, 3], or a list of uint8 [H, W, 3] images
    of any sizes, each preprocessed on its own like a video frame (batched by size, same pixels)."""
    if isinstance(frames, torch.Tensor):
        return PixelSource(frames.shape[0], lambda i, j, target: clip_preprocess(
            to_device(frames[i:j], target), cfg.vision, target.dtype, cfg.vision.patch_size), timestamps)
    return PixelSource(len(frames), lambda i, j, target: _preprocess_mixed(frames[i:j], cfg, target), timestamps)


def _preprocess_mixed(images: list[torch.Tensor], cfg: VideoXLConfig, target: Target) -> torch.Tensor:
    by_size: dict[tuple[int, ...], list[int]] = {}
    for k, image in enumerate(images):
        by_size.setdefault(tuple(image.shape), []).append(k)
    out = None
    for rows in by_size.values():
        pixels = clip_preprocess(to_device(torch.stack([images[k] for k in rows]), target), cfg.vision,
                                 target.dtype, cfg.vision.patch_size)
        if out is None:
            out = pixels.new_empty((len(images), *pixels.shape[1:]))
        out[rows] = pixels
    return out


class VisualInput:
    """What a request encodes: ``modality`` ("video", "image" or "images"), ``count`` items (None for a live
    iterator), the pieces they come in, and whether the caller gave their ``timestamped``."""

    def __init__(self, modality: str, count: int | None, pieces: Callable[[int], Iterator[PixelSource]],
                 timestamped: bool = False):
        self.modality, self.count, self._pieces, self.timestamped = modality, count, pieces, timestamped

    def sources(self, per_piece: int) -> Iterator[PixelSource]:
        return self._pieces(per_piece)


def visual_input(cfg: VideoXLConfig, request: VisualRequest) -> VisualInput:
    """Plan reading a checked request's input. Nothing is decoded here."""
    if request.images is not None:
        return _image_input(request.images, cfg, request.limits, request.decoder)
    if request.frames is not None:
        frames = request.frames
        return VisualInput("video", frames.shape[0], lambda n: (
            frames_source(frames[i:i + n], cfg) for i in range(0, frames.shape[0], n)))
    if request.num_frames is None and request.fps is None and is_video_file(request.video):
        raise ValueError("video= needs num_frames= (how many frames to sample) or fps=")
    feed = plan_read(request, mixed_sizes=True)
    return VisualInput("video", feed.count, lambda n: (
        frames_source(chunk, cfg, timestamps) for chunk, timestamps in feed.chunks(n)))


def _image_input(images, cfg: VideoXLConfig, limits: Limits, decoder: str = "auto") -> VisualInput:
    """One image: upstream's anyres path, its grid tiles (the base tile is dropped by unires), read
    by Pillow. Several images: each preprocessed on its own like a video frame (144 tokens each),
    in the given order, one visual span compressed like a video (``decoder="dali"``: image files
    decoded by DALI)."""
    if isinstance(images, (list, tuple)):
        if len(images) > 1:
            return _multi_image_input(images, cfg, limits, decoder)
        images = images[0]
    tiles = anyres_tiles(Image.fromarray(_read(images, "the image", limits.max_pixels)), cfg.image_grid_pinpoints,
                         cfg.vision.image_size)
    pixels = lambda i, j, target: patch_rows(torch.stack(  # noqa: E731
        [clip_preprocess_image(t, cfg.vision) for t in tiles[i:j]]), cfg.vision.patch_size).to(target.device,
                                                                                             target.dtype)
    return VisualInput("image", len(tiles), lambda n: iter([PixelSource(len(tiles), pixels)]))


def _multi_image_input(images, cfg: VideoXLConfig, limits: Limits, decoder: str) -> VisualInput:
    """Every image's size from its header first (nothing decoded); then they are decoded a piece at
    a time, each piece within half of ``max_decoded_bytes`` (its arrays and their copy)."""
    sizes = [_size(image, f"images[{i}]", limits.max_pixels) for i, image in enumerate(images)]
    nbytes = [w * h * 3 for w, h in sizes]

    def pieces(n: int) -> Iterator[PixelSource]:
        start = 0
        while start < len(images):
            limits.decoded_batch(nbytes[start], 1, 2, f"images[{start}]")
            end, total = start + 1, nbytes[start]
            while end < len(images) and end - start < n and 2 * (total + nbytes[end]) <= limits.max_decoded_bytes:
                total, end = total + nbytes[end], end + 1
            yield frames_source(read_frames(images[start:end], limits.max_pixels, start, decoder), cfg)
            start = end
    return VisualInput("images", len(images), pieces)


def _size(image, where: str, max_pixels: int) -> tuple[int, int]:
    try:
        return image_size(image, max_pixels)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def frames_input(cfg: VideoXLConfig, frames, timestamps: list[float] | None = None) -> VisualInput:
    """Frames fed to a live memory, as one piece: uint8 [T, H, W, 3], or a list of images (any
    sizes), with their ``timestamps`` in seconds (or None)."""
    frames = read_frames(frames)
    if timestamps is not None and len(timestamps) != len(frames):
        raise ValueError(f"{len(timestamps)} timestamps for {len(frames)} frames")
    source = frames_source(frames, cfg, None if timestamps is None else list(timestamps))
    return VisualInput("video", len(frames), lambda n: iter([source]), timestamps is not None)


def read_frames(frames, max_pixels: int | None = None, first: int = 0,
                decoder: str = "auto") -> torch.Tensor | list[torch.Tensor]:
    """uint8 [T, H, W, 3], or a list of images (any sizes; files over ``max_pixels`` refused, the
    first one named ``images[first]``) as uint8 [H, W, 3] tensors (decoded by DALI for
    ``decoder="dali"``: CUDA tensors on a GPU)."""
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise ValueError("the list of images is empty: zero images given")
        by_dali = dali.image_reader(list(frames), decoder)
        if by_dali is not None:
            return [torch.as_tensor(f) for f in by_dali.frames(
                range(len(frames)), lambda f: _read(f, "an image", max_pixels))]
        return [torch.from_numpy(np.ascontiguousarray(_read(f, f"images[{first + i}]", max_pixels)))
                for i, f in enumerate(frames)]
    return check_frames(frames)


def _read(image, where: str, max_pixels: int | None = None) -> np.ndarray:
    """One image as RGB uint8 [H, W, 3]; an empty one is named."""
    try:
        rgb = read_image(image, max_pixels)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"{where} is empty ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return rgb if rgb.flags.writeable else rgb.copy()
