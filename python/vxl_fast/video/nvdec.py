"""GPU decoding with NVDEC through PyNvVideoCodec (the ``nvdec`` extra, imported lazily).

Exact frame access by index with ``SimpleDecoder.get_batch_frames_by_index``; the decoder hands
back NV12 frames on the GPU (DLPack), which the ``yuv420_to_rgb`` op converts there with the
matrix and range that swscale would use, so the pixels equal the CPU path (PyAV's rgb24).

Only streams whose decoded pixels are fixed by their standard are taken (H.264, HEVC, VP8, VP9:
every conforming decoder gives the same YUV; MPEG-2/4 Part 2 allow IDCT differences), in 8-bit
4:2:0 of even height (where the op is exact, see yuv.py). NOTE: Hopper's NVDEC has no AV1.
"""

from __future__ import annotations

from typing import Iterator

import torch

from .. import ops
from ..errors import install_hint
from .reader import VideoInfo
from .yuv import Conversion, conversion

NVDEC_CODECS = frozenset({"h264", "hevc", "vp8", "vp9"})
BATCH = 32  # frames per get_batch_frames_by_index call


def _import():
    import PyNvVideoCodec

    return PyNvVideoCodec


def unavailable() -> str | None:
    """Why NVDEC cannot be used in this process (None when it can): CUDA, PyNvVideoCodec."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        _import()
    except Exception as e:  # noqa: BLE001 - a missing driver library raises OSError/RuntimeError too
        return f"PyNvVideoCodec does not import ({type(e).__name__}: {e}); {install_hint('nvdec')}"
    return None


def unsupported(info: VideoInfo) -> str | None:
    """Why NVDEC does not decode this stream exactly (None when it does)."""
    if info.codec not in NVDEC_CODECS:
        return f"NVDEC is not used for {info.codec} (exact for {', '.join(sorted(NVDEC_CODECS))})"
    if stream_conversion(info) is None:
        return (f"its frames ({info.pix_fmt}, {info.width}x{info.height}, colorspace {info.colorspace}) are not "
                "8-bit 4:2:0 of even height with a colorspace swscale converts")
    return None


def stream_conversion(info: VideoInfo) -> Conversion | None:
    if info.height % 2 or info.pix_fmt is None:
        return None
    return conversion(info.pix_fmt, info.colorspace, info.color_range)


class NvdecFrames:
    """A ``SimpleDecoder`` on one file: ``batches(indices)`` yields RGB uint8 [n, H, W, 3] CUDA
    tensors for the distinct ``indices`` in ascending order, ``BATCH`` frames at a time."""

    def __init__(self, info: VideoInfo, device: torch.device | None = None):
        nvc = _import()
        self.info = info
        self.conversion = stream_conversion(info)
        assert self.conversion is not None, "NvdecFrames needs a stream that unsupported() accepts"
        self.device = device or torch.device("cuda", torch.cuda.current_device())
        self._decoder = nvc.SimpleDecoder(info.decoder_path, gpu_id=self.device.index or 0, use_device_memory=True,
                                          output_color_type=nvc.OutputColorType.NATIVE)
        self.frames = len(self._decoder)

    def batches(self, indices: list[int]) -> Iterator[tuple[list[int], torch.Tensor]]:
        h, w = self.info.height, self.info.width
        for start in range(0, len(indices), BATCH):
            wanted = indices[start:start + BATCH]
            decoded = self._decoder.get_batch_frames_by_index(wanted)
            if len(decoded) != len(wanted):
                raise ValueError(f"cannot read video {self.info.path}: NVDEC returned {len(decoded)} frames for "
                                 f"the {len(wanted)} asked ({wanted[0]}..{wanted[-1]})")
            nv12 = torch.stack([torch.from_dlpack(f) for f in decoded])  # [n, H + H / 2, W]
            if nv12.dim() != 3 or tuple(nv12.shape[1:]) != (h + h // 2, w) or nv12.dtype != torch.uint8:
                raise ValueError(f"cannot read video {self.info.path}: NVDEC gave frames of shape "
                                 f"{list(nv12.shape[1:])} {nv12.dtype}, expected NV12 uint8 [{h + h // 2}, {w}]")
            yield wanted, ops.nv12_to_rgb(nv12[:, :h], nv12[:, h:], self.conversion.matrix,
                                          self.conversion.full_range)
