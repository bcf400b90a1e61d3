"""Small videos for the YUV -> RGB and decoder tests, written with PyAV: codec, pixel format, size
and colorspace tag chosen by the caller, content smooth (moving gradients) or random noise; and a
copy of a video damaged in the middle."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def content(t: int, h: int, w: int, kind: str, seed: int = 0) -> np.ndarray:
    """uint8 [t, h, w, 3]: "smooth" moving gradients or "random" noise."""
    if kind == "random":
        return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (xx * 7 + i * 5) % 256
        out[i, ..., 1] = (yy * 9 + i * 3) % 256
        out[i, ..., 2] = ((xx + yy) * 4 + i) % 256
    return out


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264", pix_fmt: str = "yuv420p",
                colorspace: int | None = None, color_range: int | None = None) -> Path:
    """Encode RGB frames; ``colorspace``/``color_range`` (AVColorSpace / AVColorRange codes) tag
    the stream, and the encoder converts the RGB input with swscale's default (BT.601)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if colorspace is not None:
            stream.codec_context.colorspace = colorspace
        if color_range is not None:
            stream.codec_context.color_range = color_range
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decoded(path: Path) -> list:
    """Every decoded PyAV frame of the first video stream."""
    import av

    with av.open(str(path)) as container:
        return list(container.decode(video=0))


# (name, codec, container suffix, pix_fmt, (h, w), colorspace tag, color_range tag)
VIDEO_CASES = [
    ("cif-601", "libx264", "mp4", "yuv420p", (288, 352), 6, None),
    ("cif-709", "libx264", "mp4", "yuv420p", (288, 352), 1, None),
    ("cif-untagged", "libx264", "mp4", "yuv420p", (288, 352), None, None),
    ("cif-jpeg-601", "libx264", "mp4", "yuvj420p", (288, 352), 5, None),
    ("cif-jpeg-709", "libx264", "mp4", "yuvj420p", (288, 352), 1, None),
    ("cif-709-full-range-tag", "libx264", "mp4", "yuv420p", (288, 352), 1, 2),
    ("720p-709", "libx264", "mp4", "yuv420p", (720, 1280), 1, None),
    ("2x2", "libx264", "mp4", "yuv420p", (2, 2), None, None),
    ("odd-width-ffv1-18x33", "ffv1", "mkv", "yuv420p", (18, 33), 1, None),
    ("odd-ffv1-7x7", "ffv1", "mkv", "yuv420p", (7, 7), None, None),
    ("odd-ffv1-17x33", "ffv1", "mkv", "yuv420p", (17, 33), 1, None),
    ("odd-mjpeg-17x33", "mjpeg", "mkv", "yuvj420p", (17, 33), None, None),
    ("ffv1-1x1", "ffv1", "mkv", "yuv420p", (1, 1), None, None),
]


def damaged_copy(good: Path) -> Path:
    """``damaged.mp4`` beside ``good``: its bytes with 400 scrambled a third of the way in."""
    data = bytearray(good.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 400):
        data[i] = (data[i] * 7 + 13) % 256
    damaged = good.parent / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    return damaged
