"""A visual request: which input (frames, a video or images) and how it is sampled, checked once.

The API, the command line, the server and the batch runner each build one :class:`VisualRequest`;
its ``__post_init__`` holds every check of the visual arguments, so each rule and its sentence
exist once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..limits import Limits
from .files import MediaFile
from .preprocess import check_frames

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
SAMPLING = ("exact", "keyframe")
DECODERS = ("auto", "cpu", "nvdec", "dali")
IMAGE_DECODERS = ("auto", "cpu", "dali")  # what images= takes


def check_decoder(decoder) -> None:
    """``decoder`` is one of ``DECODERS``: ``cpu`` (PyAV, Pillow), ``nvdec`` (NVDEC on the GPU, see
    nvdec.py), ``dali`` (NVIDIA DALI for image files and video files, see dali.py; not upstream's
    pixels for video), ``auto`` (NVDEC when CUDA, PyNvVideoCodec and the stream allow it; never
    DALI)."""
    if not isinstance(decoder, str) or decoder not in DECODERS:
        raise ValueError(f"unknown decoder {decoder!r}; use one of {', '.join(DECODERS)}")


def is_video_file(source) -> bool:
    """An opened file, or a path that names neither a folder nor an image: a video file (it may
    not exist)."""
    if isinstance(source, MediaFile):
        return True
    if not isinstance(source, (str, os.PathLike)):
        return False
    path = Path(source)
    return not path.is_dir() and path.suffix.lower() not in IMAGE_SUFFIXES


@dataclass(frozen=True)
class VisualRequest:
    """Exactly one of ``frames`` (uint8 [T, H, W, 3]), ``video`` (anything ``load_video`` reads)
    or ``images`` (one image, or a list of them); ``num_frames`` (uniform, as upstream) or ``fps``
    (at most ``max_frames``), ``sampling`` and ``decoder`` apply to ``video`` only. ``limits``
    (None: ``Limits()``) bounds what reading it may take: pixels per frame or image, frames,
    images, decoded bytes."""

    frames: Any = None
    video: Any = None
    images: Any = None
    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    sampling: str = "exact"
    decoder: str = "auto"
    limits: Limits | None = None

    @classmethod
    def optional(cls, **kwargs) -> "VisualRequest | None":
        """The request, or None when no input and no option is given (an empty memory)."""
        if all(kwargs.get(k) is None for k in ("frames", "video", "images")):  # limits alone: nothing to bound
            if any(kwargs.get(k) is not None for k in ("num_frames", "fps", "max_frames")) or \
                    kwargs.get("decoder", "auto") != "auto":
                raise ValueError("num_frames=, fps=, max_frames= and decoder= need a visual input")
            return None
        return cls(**kwargs)

    def __post_init__(self):
        if self.limits is None:
            object.__setattr__(self, "limits", Limits())
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a vxl_fast.limits.Limits, got {type(self.limits).__name__}")
        given = [name for name in ("frames", "video", "images") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("pass exactly one visual input: frames=, video= or images=" +
                             (f" (got {', '.join(given)})" if given else ""))
        video = self.video is not None
        if not video and (self.num_frames is not None or self.fps is not None):
            raise ValueError("num_frames= and fps= only apply to video=")
        if not video and self.sampling != "exact":
            raise ValueError(f"sampling={self.sampling!r} only applies to video=")
        check_decoder(self.decoder)
        if not video and (self.images is None or self.decoder not in IMAGE_DECODERS):
            if self.decoder != "auto":
                raise ValueError(f"decoder={self.decoder!r} only applies to video=" +
                                 (" (images= takes 'cpu' or 'dali')" if self.images is not None else ""))
        if self.sampling not in SAMPLING:
            raise ValueError(f"unknown sampling {self.sampling!r}; use 'exact' or 'keyframe'")
        if self.num_frames is not None and self.fps is not None:
            raise ValueError("sample with num_frames= or fps=, not both")
        if self.fps is not None and (isinstance(self.fps, bool) or not isinstance(self.fps, (int, float, np.number))):
            raise TypeError(f"fps must be a number, got {self.fps!r}")
        if self.fps is not None and not (0 < self.fps < float("inf")):
            raise ValueError(f"fps must be a positive number, got {self.fps!r}")
        if self.max_frames is not None and self.fps is None:
            raise ValueError("max_frames= only applies with fps= on video= (num_frames= sets the count)")
        for name in ("num_frames", "max_frames"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
                raise TypeError(f"{name} must be a positive integer, got {value!r}")
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.decoder == "nvdec" and not is_video_file(self.video):
            raise ValueError(f"decoder={self.decoder!r} needs a video file")
        if self.decoder == "dali" and video and not isinstance(self.video, (str, os.PathLike, list, tuple)):
            raise ValueError("decoder='dali' needs a video file, a folder or a list of image files")
        if self.frames is not None:
            object.__setattr__(self, "frames", check_frames(self.frames))
        if isinstance(self.images, (list, tuple)) and not self.images:
            raise ValueError("images= is an empty list: zero images given")
        if isinstance(self.images, (list, tuple)):
            self.limits.check_count(len(self.images), "images=", "max_images")
        for name in ("num_frames", "max_frames"):
            if getattr(self, name) is not None:
                self.limits.check_count(getattr(self, name), f"{name}={getattr(self, name)}")
