"""Decoding with NVIDIA DALI (the ``dali`` extra, imported lazily), asked for by ``decoder="dali"``.

Image files (a folder of frames, a list of paths, several images): ``fn.decoders.image`` in batches
of ``BATCH``, ``device="mixed"`` with CUDA (nvJPEG, the GPU's hardware JPEG decoder where it has
one; frames stay on the GPU, taken through DLPack) and the CPU decoder (libjpeg-turbo, libpng, …)
otherwise. EXIF orientation is not applied and chroma is upsampled the way libjpeg-turbo does, as
Pillow reads them. GIF and TIFF files and 16-bit PNGs go through Pillow (DALI scales 16 bits to
8, Pillow keeps the top byte).

Video files: ``fn.decoders.video`` with the sampled frame numbers (``frames=``): on the GPU
(NVDEC) for the codecs of ``GPU_CODECS``, on the CPU for VP8, VP9 and MJPEG only. DALI converts to
RGB with its own kernel, not swscale's pixels (measured in the README), so only
``decoder="dali"`` picks it.

Anything DALI cannot do here (not installed, a broken install, a codec it lacks) is one warning and
the CPU path (Pillow, PyAV).
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from typing import Iterator

import numpy as np
import torch

from ..errors import install_hint
from .reader import VideoInfo

BATCH = 32  # images per DALI run
VIDEO_BATCH = 64  # video frames per DALI run (each run opens the stream again)
CPU_CODECS = frozenset({"vp8", "vp9", "mjpeg"})
GPU_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mjpeg"})
# NOTE: no TIFF (a 16-bit TIFF would be scaled to 8 bits, not cut to its top byte as Pillow does)
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def _import():
    from nvidia import dali
    from nvidia.dali import fn, types

    return dali, fn, types


def device() -> str:
    """DALI's decoding device here: ``mixed`` (GPU) with CUDA, ``cpu`` otherwise."""
    return "mixed" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=None)
def unavailable(on: str) -> str | None:
    """Why DALI cannot decode on ``on`` ("cpu" or "mixed") in this process (None when it can):
    it must import and decode a small JPEG (a broken install fails here, once)."""
    try:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (16, 16), (200, 30, 60)).save(buffer, format="JPEG")
        (frame,) = ImageDecoder(on).decode([np.frombuffer(buffer.getvalue(), np.uint8)], ["probe"])
        if tuple(frame.shape) != (16, 16, 3):
            return f"DALI decoded a 16x16 probe JPEG to shape {list(frame.shape)}"
    except Exception as e:  # noqa: BLE001 - a missing library raises ImportError, OSError or RuntimeError
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"NVIDIA DALI does not work here ({type(e).__name__}: {first}); {install_hint('dali')}"
    return None


def _reason(error: Exception) -> str:
    """The operator's own message out of DALI's pipeline error."""
    text = str(error)
    text = text.split("encountered:")[-1].split("Current pipeline object")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _pipeline(on: str, batch: int, video_frames: bool = False):
    """A built DALI pipeline fed by ``external_source`` "encoded" (file bytes) and, for a video,
    "frames" (the frame numbers to decode)."""
    dali, fn, types = _import()
    pipe = dali.Pipeline(batch_size=batch, num_threads=max(1, min(4, os.cpu_count() or 1)),
                         device_id=torch.cuda.current_device() if on == "mixed" else None, prefetch_queue_depth=1)
    with pipe:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        if video_frames:
            frames = fn.external_source(name="frames", dtype=types.INT32, ndim=1)
            pipe.set_outputs(fn.decoders.video(encoded, device=on, frames=frames))
        else:
            pipe.set_outputs(fn.decoders.image(encoded, device=on, output_type=types.RGB,
                                               adjust_orientation=False, jpeg_fancy_upsampling=True))
    pipe.build()
    return pipe


def _outputs(out, on: str) -> list:
    """A DALI TensorList as uint8 [H, W, 3] arrays (CPU) or CUDA tensors (GPU, through DLPack),
    copied out of DALI's buffers (the next run reuses them)."""
    if on == "mixed":
        return [torch.from_dlpack(out[i]).clone() for i in range(len(out))]
    return [np.array(out[i]) for i in range(len(out))]


class ImageDecoder:
    """DALI's image decoder on ``on`` ("cpu" or "mixed"): ``decode`` turns up to ``BATCH`` encoded
    files into RGB uint8 [H, W, 3] frames (arrays on the CPU, CUDA tensors on the GPU)."""

    def __init__(self, on: str):
        self.on = on
        self._pipe = _pipeline(on, BATCH)

    def decode(self, encoded: list[np.ndarray], names: list[str]) -> list:
        try:
            self._pipe.feed_input("encoded", encoded)
            (out,) = self._pipe.run()
            return _outputs(out, self.on)
        except RuntimeError as e:
            self._pipe = _pipeline(self.on, BATCH)  # a failed run leaves the pipeline unusable
            if len(encoded) == 1:
                raise ValueError(f"cannot read image {names[0]}: DALI: {_reason(e)}") from None
        # one at a time, so that the error names the file
        return [frame for one, name in zip(encoded, names) for frame in self.decode([one], [name])]


def _dali_reads(image) -> bool:
    return isinstance(image, (str, os.PathLike)) and os.path.splitext(image)[1].lower() in IMAGE_SUFFIXES


def image_reader(images: list, decoder: str) -> "DaliImages | None":
    """DALI's reader of ``images`` when ``decoder`` is "dali" and DALI works here, else None (with
    one warning when "dali" was asked for)."""
    if decoder != "dali":
        return None
    on = device()
    reason = unavailable(on)
    if reason is None:
        return DaliImages(images, on)
    warnings.warn(f"decoding images with Pillow, not DALI: {reason}", RuntimeWarning, stacklevel=3)
    return None


class DaliImages:
    """``frames(indices)`` yields the images at ``indices`` (in that order) as RGB uint8 [H, W, 3]:
    image files DALI reads are decoded ``BATCH`` at a time; other items (GIF, PIL images, arrays)
    and 16-bit files are read as without DALI (``fallback``)."""

    def __init__(self, images: list, on: str):
        self.images, self.on = images, on
        self._decoder = ImageDecoder(on)

    def frames(self, indices, fallback) -> Iterator:
        indices = list(indices)
        for start in range(0, len(indices), BATCH):
            batch = indices[start:start + BATCH]
            files = {i: _encoded(self.images[i]) for i in batch if _dali_reads(self.images[i])}
            order = [i for i, data in files.items() if data is not None]
            decoded = {}
            if order:
                frames = self._decoder.decode([files[i] for i in order], [os.fspath(self.images[i]) for i in order])
                decoded = dict(zip(order, frames))
            for i in batch:
                yield decoded[i] if i in decoded else fallback(self.images[i])


def _encoded(path) -> np.ndarray | None:
    """The file's bytes, or None for a 16-bit PNG (DALI scales 16 bits to 8; Pillow keeps the top
    byte): read without DALI."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file not found: {path}")
    data = np.fromfile(path, dtype=np.uint8)
    if data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] == 16:
        return None
    return data


def video_unsupported(info: VideoInfo, on: str) -> str | None:
    """Why DALI does not decode this stream on ``on`` (None when it does)."""
    codecs = GPU_CODECS if on == "mixed" else CPU_CODECS
    if info.codec not in codecs:
        where = "on the GPU" if on == "mixed" else "on the CPU (H.264, HEVC, AV1 and MPEG-4 need a GPU)"
        return f"DALI does not decode {info.codec} {where}; it decodes {', '.join(sorted(codecs))}"
    return None


def video_reader(info: VideoInfo) -> "DaliVideo | None":
    """DALI's reader of the file, or None with one warning (then PyAV decodes it)."""
    on = device()
    reason = unavailable(on) or video_unsupported(info, on)
    if reason is None:
        return DaliVideo(info, on)
    warnings.warn(f"{info.path}: decoding with PyAV, not DALI: {reason}", RuntimeWarning, stacklevel=3)
    return None


class DaliVideo:
    """``fn.decoders.video`` on one file: ``batches(indices)`` yields ``(frame numbers, RGB uint8
    [n, H, W, 3])`` for the distinct ascending ``indices``, ``VIDEO_BATCH`` frames at a time (CUDA
    tensors on the GPU, CPU tensors otherwise). Frame numbers are positions in presentation order,
    as PyAV's probe counts them (``info.frames`` bounds them: DALI pads past its end). DALI decodes
    from memory: the file is held in host memory while it is read, and each run opens it again."""

    def __init__(self, info: VideoInfo, on: str):
        self.info, self.on = info, on
        self._pipe = _pipeline(on, 1, video_frames=True)
        self._encoded = np.fromfile(info.decoder_path or info.path, dtype=np.uint8)

    def batches(self, indices: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        info = self.info
        for start in range(0, len(indices), VIDEO_BATCH):
            wanted = indices[start:start + VIDEO_BATCH]
            if not 0 <= wanted[0] <= wanted[-1] < info.frames:
                raise ValueError(f"frame numbers must lie in [0, {info.frames}), got {wanted[0]}..{wanted[-1]}")
            try:
                self._pipe.feed_input("encoded", [self._encoded])
                self._pipe.feed_input("frames", [np.asarray(wanted, dtype=np.int32)])
                (out,) = self._pipe.run()
            except RuntimeError as e:
                raise ValueError(f"cannot read video {info.path}: DALI failed on frames {wanted[0]}..{wanted[-1]}: "
                                 f"{_reason(e)}") from None
            (frames,) = _outputs(out, self.on)
            frames = torch.as_tensor(frames)
            shape = (len(wanted), info.height, info.width, 3)
            if tuple(frames.shape) != shape or frames.dtype != torch.uint8:
                raise ValueError(f"cannot read video {info.path}: DALI gave frames of shape {list(frames.shape)} "
                                 f"{frames.dtype}, expected uint8 {list(shape)}")
            yield wanted, frames
