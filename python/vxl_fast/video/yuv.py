"""Decoded YUV 4:2:0 planes to RGB with the ``yuv420_to_rgb`` op, as PyAV's ``to_ndarray("rgb24")``.

swscale picks the conversion from the frame: the matrix from its colorspace tag (BT.709 when
tagged so, BT.601 when untagged), full range for the yuvj formats and for color_range=jpeg.
``conversion`` reproduces that choice; ``exact_planes`` says whether the op reproduces the
pixels too (4:2:0 8-bit frames of even height: swscale's unscaled fast path; frames of odd
height go through its general scaler, which interpolates chroma).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import ops

# AVColorSpace -> the matrix swscale converts with (PyAV rejects the other tags: ENOTSUP)
MATRIX_OF_COLORSPACE = {0: "bt601", 1: "bt709", 2: "bt601", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m",
                        9: "bt2020"}
PLANAR_420 = ("yuv420p", "yuvj420p")
FULL_RANGE_FORMATS = ("yuvj420p",)
JPEG_RANGE = 2  # AVCOL_RANGE_JPEG


@dataclass(frozen=True)
class Conversion:
    matrix: str
    full_range: bool


def conversion(pix_fmt: str, colorspace: int, color_range: int) -> Conversion | None:
    """How swscale converts a frame with these properties to rgb24, or None when the op cannot
    reproduce it (not 8-bit 4:2:0, or a colorspace PyAV refuses)."""
    if pix_fmt not in PLANAR_420 or int(colorspace) not in MATRIX_OF_COLORSPACE:
        return None
    return Conversion(MATRIX_OF_COLORSPACE[int(colorspace)],
                      pix_fmt in FULL_RANGE_FORMATS or int(color_range) == JPEG_RANGE)


def frame_conversion(frame) -> Conversion | None:
    """``conversion`` of a PyAV frame, None also for frames of odd height (see the module doc)."""
    if frame.height % 2:
        return None
    return conversion(frame.format.name, frame.colorspace, frame.color_range)


def frame_planes(frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Y [H, W], U and V [(H + 1) // 2, (W + 1) // 2] planes of a yuv420p/yuvj420p PyAV frame,
    as views of its buffers (rows padded to the line size are cut off, nothing is copied)."""
    h, w = frame.height, frame.width
    shapes = ((h, w), ((h + 1) // 2, (w + 1) // 2), ((h + 1) // 2, (w + 1) // 2))
    return tuple(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:rows, :cols]
                 for p, (rows, cols) in zip(frame.planes, shapes))


def frame_to_rgb(frame) -> np.ndarray:
    """RGB uint8 [H, W, 3] of a PyAV frame: the op where it is exact, else PyAV's own rgb24."""
    conv = frame_conversion(frame)
    if conv is None:
        return frame.to_ndarray(format="rgb24")
    y, u, v = (torch.from_numpy(p)[None] for p in frame_planes(frame))
    return ops.yuv420_to_rgb(y, u, v, conv.matrix, conv.full_range)[0].numpy()
