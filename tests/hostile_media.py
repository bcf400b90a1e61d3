"""Hostile media for the confinement and budget tests: playlists and lists that point at other
files, frames far over the pixel budget in a few KiB, PNG headers that claim huge images."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def ts_copy(video: Path, out: Path) -> Path:
    """``video`` remuxed into MPEG-TS (an HLS segment)."""
    import av

    with av.open(str(video)) as src, av.open(str(out), "w", format="mpegts") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return out


def hls_playlist(path: Path, segment: Path) -> Path:
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:30\n#EXTINF:20,\n{segment}\n#EXT-X-ENDLIST\n")
    return path


def concat_list(path: Path, target: Path) -> Path:
    path.write_text(f"ffconcat version 1.0\nfile '{target}'\n")
    return path


def video(path: Path, width: int, height: int, frames: int = 2, value: int = 0) -> Path:
    """A tiny H.264 video of ``frames`` flat frames (a 4096x4096 one is a few KiB)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        frame = np.full((height, width, 3), value, np.uint8)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says ``width`` x ``height`` (8-bit grey), with a few rows of data: what a
    decoder would allocate is in the header, a few bytes on the wire."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\0" * (width + 1) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
