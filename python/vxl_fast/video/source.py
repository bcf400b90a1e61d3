"""One input layer for every kind of visual source, sampled as upstream does.

``load_video(source, num_frames=… | fps=…)`` accepts a video file, a folder of frames, a list of
image paths or PIL images, one image, a uint8 array/tensor of frames, or an iterator of frames,
and returns the sampled frames (uint8 [T, H, W, 3]) with their frame numbers and timestamps.
``open_video`` plans the same read without decoding; ``.chunks(n)`` then produces the frames
n at a time from a background thread, so decoding overlaps with the model.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from ..limits import Limits
from . import dali, nvdec, reader
from .files import MediaFile
from .images import frames_of, image_size, read_image, to_rgb
from .parallel import iter_frames_parallel
from .reader import VideoInfo, check_strategy, keyframe_indices, probe
from .request import IMAGE_SUFFIXES, VisualRequest
from .sampling import fps_indices, uniform_indices


STRATEGIES = (*reader.STRATEGIES, "parallel")


def decode(info: VideoInfo, indices, strategy: str = "hybrid", progress=None):
    """``(frame number, RGB uint8 [H, W, 3])`` for the distinct ``indices``, ascending:
    ``reader.iter_frames`` with one decoder, or ``parallel`` (``hybrid`` over runs of GOPs in
    several decoder threads, each with its own container: see ``parallel.py``)."""
    check_strategy(strategy, STRATEGIES)
    if strategy == "parallel":
        return iter_frames_parallel(info, indices, progress)
    return reader.iter_frames(info, indices, strategy, progress)


def decode_frames(info: VideoInfo, indices, strategy: str = "hybrid") -> dict[int, np.ndarray]:
    """``{frame number: RGB uint8 [H, W, 3]}`` for the distinct ``indices`` (see ``decode``)."""
    return dict(decode(info, indices, strategy))


@dataclass
class LoadedVideo:
    frames: torch.Tensor  # uint8 [T, H, W, 3]
    indices: np.ndarray  # int64 [T]: frame numbers in the source
    timestamps: list[float] | None  # seconds, when the source has a clock
    total_frames: int | None  # frames in the source (None for an iterator)
    fps: float | None


class FrameReader:
    """A planned read: which frames of which source. Nothing is decoded until ``chunks``/``load``."""

    def __init__(self, count: int | None, indices: np.ndarray | None, timestamps: list[float] | None,
                 total: int | None, fps: float | None, produce: Callable[[], Iterator[np.ndarray]],
                 frame_bytes: int | None = None, limits: Limits | None = None):
        self.count, self.indices, self.timestamps = count, indices, timestamps
        self.total_frames, self.fps = total, fps
        self._produce = produce  # yields RGB uint8 [H, W, 3] frames (arrays, or tensors) in sample order
        self._budget = None if frame_bytes is None or limits is None else (frame_bytes, limits)

    def chunks(self, size: int, prefetch: int = 2, pin: bool | None = None
               ) -> Iterator[tuple[torch.Tensor, list[float] | None]]:
        """``(frames uint8 [≤size, H, W, 3], their timestamps)``, decoded ahead by a background
        thread (at most ``prefetch`` chunks waiting); pinned host memory when CUDA is available.
        Decoded files keep the chunks alive at once (waiting, being filled, being pinned, being
        used) within ``max_decoded_bytes``: chunks of large frames are smaller."""
        if size < 1:
            raise ValueError(f"chunk size must be positive, got {size}")
        if self._budget is not None:
            frame_bytes, limits = self._budget
            size = limits.decoded_batch(frame_bytes, size, max(1, prefetch) + 3, "the video")
        pin = torch.cuda.is_available() if pin is None else pin
        done = object()
        ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                batch, start = [], 0
                for frame in self._produce():
                    batch.append(frame)
                    if len(batch) == size:
                        if not put(self._chunk(batch, start, pin)):
                            return
                        start += len(batch)
                        batch = []
                if batch and not put(self._chunk(batch, start, pin)):
                    return
                put(done)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer
                put(e)

        thread = threading.Thread(target=work, name="vxl_fast-decode", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=10)

    def _chunk(self, batch: list, start: int, pin: bool):
        if len({tuple(f.shape) for f in batch}) > 1:  # images of several sizes: one tensor each
            # NOTE: decoded images can be read-only arrays; torch wants writable memory
            frames = [f if isinstance(f, torch.Tensor) else torch.from_numpy(np.require(f, requirements=("C", "W")))
                      for f in batch]
        elif isinstance(batch[0], torch.Tensor):  # decoded by NVDEC or DALI: already on their device
            frames = torch.stack(batch)
        else:
            frames = torch.from_numpy(np.stack(batch))
            if pin:
                frames = frames.pin_memory()
        ts = None if self.timestamps is None else self.timestamps[start:start + len(batch)]
        return frames, ts

    def load(self) -> LoadedVideo:
        """Everything at once."""
        parts, ts = [], []
        for frames, t in self.chunks(64, pin=False):
            parts.append(frames)
            ts.extend(t or [])
        frames = torch.cat(parts)
        indices = self.indices if self.indices is not None else np.arange(frames.shape[0])
        return LoadedVideo(frames, indices, ts if self.timestamps is not None else None,
                           self.total_frames, self.fps)


def load_video(source, num_frames: int | None = None, fps: float | None = None,
               max_frames: int | None = None, sampling: str = "exact", strategy: str = "hybrid",
               decoder: str = "cpu", limits: Limits | None = None) -> LoadedVideo:
    """Sampled RGB frames of ``source`` (see ``open_video``), in host memory unless ``decoder``
    asks for NVDEC ("nvdec", or "auto" where it is usable: the frames are then on the GPU)."""
    return open_video(source, num_frames, fps, max_frames, sampling, strategy, decoder=decoder, limits=limits).load()


def open_video(source, num_frames: int | None = None, fps: float | None = None,
               max_frames: int | None = None, sampling: str = "exact", strategy: str = "hybrid",
               progress: Callable[[int], None] | None = None, mixed_sizes: bool = False,
               decoder: str = "auto", limits: Limits | None = None) -> FrameReader:
    """Plan reading ``source``.

    ``num_frames``: upstream's uniform rule ``linspace(0, T-1, N, dtype=int)``; when the source
    has fewer than N frames all of them are used (with a warning). ``fps``: that many frames per
    second of video (files only), at most ``max_frames``. Neither: every frame.
    ``sampling="keyframe"`` (files only) moves each sampled frame to its nearest keyframe,
    which decodes much faster but deviates from upstream; the timestamps say which frames were
    taken. ``strategy`` picks how a file is decoded on the CPU (``hybrid``, ``seek``,
    ``sequential``, ``parallel``: hybrid over runs of GOPs in several decoder threads).
    ``decoder``: ``cpu`` (PyAV, Pillow), ``nvdec`` (the GPU's NVDEC, frames on the GPU, the
    same pixels; falls back to the CPU with a warning where it cannot), ``dali`` (NVIDIA DALI,
    for image files too: see dali.py; its video pixels are not PyAV's), ``auto`` (NVDEC when
    CUDA and PyNvVideoCodec are there, the CPU otherwise; a warning when they are there but the
    stream is not one NVDEC decodes exactly).
    ``mixed_sizes`` lets a folder or list of images hold images of several sizes (chunks of mixed
    sizes are then lists of [H, W, 3] tensors); otherwise they must share one size.
    ``limits`` (default ``Limits()``): the pixels per frame, frames and decoded bytes it may take.
    """
    check_strategy(strategy, STRATEGIES)
    return plan_read(VisualRequest(video=source, num_frames=num_frames, fps=fps, max_frames=max_frames,
                                   sampling=sampling, decoder=decoder, limits=limits), strategy, progress, mixed_sizes)


def plan_read(request: VisualRequest, strategy: str = "hybrid", progress: Callable[[int], None] | None = None,
              mixed_sizes: bool = False) -> FrameReader:
    """``open_video`` of a checked request's ``video``."""
    source, num_frames, fps, sampling = request.video, request.num_frames, request.fps, request.sampling
    images = lambda items, where: _images_source(  # noqa: E731
        items, num_frames, fps, sampling, where, mixed_sizes, request.limits, request.decoder)
    if isinstance(source, MediaFile):
        return _file_source(source, request, strategy, progress)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            return images(_folder_images(path), str(path))
        if path.suffix.lower() in IMAGE_SUFFIXES and path.exists():
            return images([path], str(path))
        return _file_source(path, request, strategy, progress)
    if sampling != "exact":
        raise ValueError("sampling='keyframe' needs a video file")
    if isinstance(source, Image.Image):
        return images([source], "the image")
    if isinstance(source, (torch.Tensor, np.ndarray)):
        return _array_source(source, num_frames, fps)
    if isinstance(source, (list, tuple)):
        if not source:
            raise ValueError("the list of frames is empty: zero frames given")
        return images(list(source), "the list")
    if hasattr(source, "__iter__") or hasattr(source, "__next__"):
        if num_frames is not None or fps is not None:
            raise ValueError("an iterator of frames is taken as it comes; num_frames= and fps= do not apply")
        it = iter(source)
        return FrameReader(None, None, None, None, None,
                           lambda: (f for item in it for f in frames_of(item, "the iterator")))
    raise TypeError(f"unsupported video source {type(source).__name__}: pass a file or folder path, images, "
                    "a uint8 array [T, H, W, 3] or an iterator of frames")


def _file_source(source: Path | MediaFile, request: VisualRequest, strategy: str, progress) -> FrameReader:
    limits = request.limits
    info: VideoInfo = probe(source, limits.max_pixels, limits.max_video_frames)
    if request.fps is not None:
        indices = fps_indices(info.frames, info.fps, request.fps, request.max_frames)
    else:
        indices = _uniform(info.frames, request.num_frames, info.path)
    limits.check_count(len(indices), f"video {info.path}")
    budget = {"frame_bytes": info.width * info.height * 3, "limits": limits}
    if request.sampling == "keyframe":
        indices = keyframe_indices(info, indices)
    timestamps = [info.timestamp(int(i)) for i in indices]
    gpu = dali.video_reader(info) if request.decoder == "dali" else _nvdec_frames(info, request.decoder)
    if gpu is not None:
        return FrameReader(len(indices), indices, timestamps, info.frames, info.fps,
                           lambda: _gpu_frames(gpu, indices, progress), **budget)

    def produce():
        decoded = decode(info, indices, strategy, progress)
        cached: tuple[int, np.ndarray] | None = None
        for i in indices.tolist():
            while cached is None or cached[0] < i:
                cached = next(decoded)
            yield cached[1]
    return FrameReader(len(indices), indices, timestamps, info.frames, info.fps, produce, **budget)


def _nvdec_frames(info: VideoInfo, decoder: str) -> nvdec.NvdecFrames | None:
    """The NVDEC reader of the file when ``decoder`` selects it, else None (with one warning when
    NVDEC was asked for, or could run but not on this stream)."""
    if decoder == "cpu":
        return None
    reason = nvdec.unavailable()
    if reason is not None and decoder == "auto":
        return None
    reason = reason or nvdec.unsupported(info)
    if reason is None and info.decoder_path is None:
        reason = "the opened file has no path NVDEC can open (no /proc/self/fd)"
    if reason is None:
        try:
            frames = nvdec.NvdecFrames(info)
        except Exception as e:  # noqa: BLE001 - any failure of the GPU decoder means the CPU decodes
            reason = f"PyNvVideoCodec cannot open it ({type(e).__name__}: {e})"
        else:
            if frames.frames == info.frames:
                return frames
            reason = f"NVDEC counts {frames.frames} frames where the demuxer counts {info.frames}"
    warnings.warn(f"{info.path}: decoding on the CPU, not with NVDEC: {reason}", RuntimeWarning, stacklevel=4)
    return None


def _gpu_frames(gpu: nvdec.NvdecFrames | dali.DaliVideo, indices: np.ndarray, progress) -> Iterator[torch.Tensor]:
    """The sampled frames in sample order (ascending, repeats kept) from NVDEC or DALI batches."""
    batches = gpu.batches(sorted(set(indices.tolist())))
    ready: dict[int, torch.Tensor] = {}
    for i in indices.tolist():
        while i not in ready:
            numbers, rgb = next(batches)
            ready = dict(zip(numbers, rgb))
            if progress is not None:
                progress(len(numbers))
        yield ready[i]


def _uniform(total: int, num_frames: int | None, where: str) -> np.ndarray:
    if num_frames is None:
        return np.arange(total)
    if num_frames > total:
        warnings.warn(f"{where} has only {total} frames; using all of them instead of {num_frames}")
        return np.arange(total)
    return uniform_indices(total, num_frames)


def _folder_images(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not files:
        raise ValueError(f"the folder {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return sorted(files, key=_natural_key)


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _images_source(images: list, num_frames, fps, sampling, where: str, mixed_sizes: bool,
                   limits: Limits, decoder: str = "auto") -> FrameReader:
    """The sampled images, each checked from its header (pixels) before any is decoded
    (``decoder="dali"``: image files decoded by DALI)."""
    if fps is not None:
        raise ValueError(f"fps= needs a video file; {where} has no frame rate (use num_frames=)")
    if sampling != "exact":
        raise ValueError("sampling='keyframe' needs a video file")
    indices = _uniform(len(images), num_frames, where)
    limits.check_count(len(indices), where)
    sizes = [image_size(images[i], limits.max_pixels) for i in sorted(set(indices.tolist()) | {0})]
    by_dali = dali.image_reader(images, decoder)
    read = lambda image: read_image(image, limits.max_pixels)  # noqa: E731

    def produce():
        frames = (read(images[i]) for i in indices.tolist()) if by_dali is None else \
            by_dali.frames(indices.tolist(), read)
        shape = None
        for i, frame in zip(indices.tolist(), frames):
            shape = shape or tuple(frame.shape)
            if tuple(frame.shape) != shape and not mixed_sizes:
                raise ValueError(f"{where} mixes image sizes: {_name(images[i])} is {frame.shape[1]}x"
                                 f"{frame.shape[0]}, {_name(images[0])} is {shape[1]}x{shape[0]}")
            yield frame
    return FrameReader(len(indices), indices, None, len(images), None, produce,
                       max(w * h for w, h in sizes) * 3, limits)


def _name(image) -> str:
    return Path(image).name if isinstance(image, (str, os.PathLike)) else type(image).__name__


def _array_source(frames, num_frames, fps) -> FrameReader:
    if fps is not None:
        raise ValueError("fps= needs a video file; an array of frames has no frame rate (use num_frames=)")
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    if frames.ndim == 3 and frames.shape[-1] in (3, 4):
        frames = frames[None]  # one image [H, W, C]
    if frames.ndim not in (3, 4):
        raise ValueError(f"frames must have shape [T, H, W, 3] (or [T, H, W] grey), got {list(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty: zero frames given")
    indices = _uniform(frames.shape[0], num_frames, "the array")
    return FrameReader(len(indices), indices, None, frames.shape[0], None,
                       lambda: (to_rgb(frames[i], "the array") for i in indices.tolist()))
