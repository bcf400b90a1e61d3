"""Images as RGB uint8 arrays: files (paths or opened :class:`~vxl_fast.video.files.MediaFile`),
PIL images and arrays. A file is opened with Pillow's header only (``IMAGE_FORMATS``), its size
checked against the pixel budget, and only then decoded."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..limits import check_pixels
from .files import MediaFile

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow's names of what is read (JPEG: MPO too)


@contextlib.contextmanager
def open_image(image: str | os.PathLike | MediaFile, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """The image file opened by Pillow, nothing decoded yet; refused when it is not an
    ``IMAGE_FORMATS`` image or is over ``max_pixels``."""
    if isinstance(image, MediaFile):
        name, fp = image.name, image.reader()
    else:
        name = os.fspath(image)
        if not os.path.isfile(name):
            raise FileNotFoundError(f"image file not found: {name}")
        fp = open(name, "rb")
    Image.init()  # registers every format (Image.open looks each of IMAGE_FORMATS up)
    with fp:
        try:
            im = Image.open(fp, formats=IMAGE_FORMATS)
        except Image.DecompressionBombError as e:  # Pillow's own guard, far above the default max_pixels
            raise ValueError(f"image {name} is over the limit of {max_pixels or Image.MAX_IMAGE_PIXELS} pixels "
                             f"per frame or image (max_pixels; {e})") from None
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ValueError(f"cannot read image {name}: {_reason(e, fp)}") from None
        with im:
            if max_pixels is not None:
                check_pixels(im.size[0], im.size[1], max_pixels, f"image {name}")
            yield im


def _reason(e: Exception, fp) -> str:
    if isinstance(e, UnidentifiedImageError):
        return f"not a readable image ({', '.join(IMAGE_FORMATS)})"
    return str(e).replace(repr(fp), "it")


def image_size(image, max_pixels: int | None = None) -> tuple[int, int]:
    """(width, height) of an image file from its header, of a PIL image, or of an array."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim >= 2:
        return int(image.shape[1]), int(image.shape[0])
    if isinstance(image, (str, os.PathLike, MediaFile)):
        with open_image(image, max_pixels) as im:
            return im.size
    return read_image(image).shape[1::-1]


def read_image(image, max_pixels: int | None = None) -> np.ndarray:
    """RGB uint8 [H, W, 3] from a path, an opened file or a PIL image (grayscale, palette, RGBA and
    16-bit too); a file over ``max_pixels`` is refused before it is decoded."""
    if isinstance(image, (str, os.PathLike, MediaFile)):
        with open_image(image, max_pixels) as im:
            try:
                im.load()
            except (OSError, ValueError) as e:
                raise ValueError(f"cannot read image {_name(image)}: {e}") from None
            return pil_to_rgb(im)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        (frame,) = frames_of(image[None], "the list")
        return frame
    raise TypeError(f"unsupported image {type(image).__name__}: pass paths, PIL images or uint8 arrays")


def _name(image) -> str:
    return image.name if isinstance(image, MediaFile) else os.fspath(image)


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit (or 32-bit) grey: keep the top 8 bits
        return to_rgb(np.asarray(im), "a 16-bit image")
    return np.asarray(im.convert("RGB"))


def frames_of(item, where: str) -> list[np.ndarray]:
    """Frames in one item of an iterator: an image, [H, W, C] or [T, H, W, C]."""
    if isinstance(item, Image.Image):
        return [pil_to_rgb(item)]
    if isinstance(item, torch.Tensor):
        item = item.cpu().numpy()
    if not isinstance(item, np.ndarray):
        raise TypeError(f"{where} yielded {type(item).__name__}; expected frames (uint8 arrays) or PIL images")
    if item.ndim == 4:
        return [to_rgb(f, where) for f in item]
    return [to_rgb(item, where)]


def to_rgb(frame: np.ndarray, where: str) -> np.ndarray:
    """uint8 [H, W, 3] from [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] (alpha dropped), 8 or 16 bit."""
    if frame.dtype == np.uint16 or frame.dtype == np.int32:
        frame = (frame.astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise TypeError(f"frames in {where} must be uint8 (or 16-bit), got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3, 4):
        raise ValueError(f"a frame in {where} has shape {list(frame.shape)}; expected [H, W] or [H, W, 1|3|4]")
    if 0 in frame.shape[:2]:
        raise ValueError(f"a frame in {where} has an empty size {list(frame.shape[:2])}")
    if frame.shape[-1] == 1:
        return np.ascontiguousarray(np.repeat(frame, 3, axis=-1))
    return np.ascontiguousarray(frame[..., :3])
