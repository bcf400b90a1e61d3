"""Exact frame access in video files with PyAV (FFmpeg), decoding only what the sample needs.

A demux-only pass (no decoding) builds the table of frames in presentation order and their
keyframes. Frames are then decoded in order; the decoder seeks only when the next wanted frame
lies in a later GOP than the current position, so dense samples decode straight through and
sparse ones skip whole GOPs. Frame numbers are positions in presentation order (what decord
and upstream's ``linspace`` rule index), timestamps come from the frames' own pts (so variable
frame rates stay right).

A file is opened once (:class:`~vxl_fast.video.files.MediaFile`) and FFmpeg reads it through a
Python file object: it opens nothing by name. Only self-contained containers (``FORMATS``) are
demuxed, and any other file or URL a demuxer asks for is refused, so a playlist (HLS, DASH), a
concat list or an image pattern cannot make it read elsewhere. Frames over the pixel budget are
refused from the stream header, and by the decoder itself for every frame (its ``max_pixels``).
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from fractions import Fraction
import warnings
from dataclasses import dataclass

import numpy as np

from ..limits import check_pixels
from .files import MediaFile

STRATEGIES = ("hybrid", "seek", "sequential")  # with one decoder; ``source.STRATEGIES`` adds "parallel"
# demuxers of containers that hold their media themselves (no playlists, lists or patterns of other files)
FORMATS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "ogg",
           "asf", "ivf", "h264", "hevc", "m4v", "mjpeg", "gif", "nut", "mxf", "yuv4mpegpipe", "dv", "obu", "av1")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int  # frames in presentation order
    fps: float  # average frame rate (0 when unknown)
    width: int
    height: int
    codec: str
    pts: np.ndarray | None  # int64 [frames], sorted; None when the stream has no pts
    keyframes: np.ndarray  # int64, frame numbers of keyframes, ascending
    time_base: Fraction
    start_pts: int
    pix_fmt: str | None = None  # the decoder's, from the stream parameters (no frame decoded)
    colorspace: int = 2  # AVColorSpace tag (2: unspecified)
    color_range: int = 0  # AVColorRange tag (0: unspecified, 2: jpeg/full)
    file: MediaFile | None = None  # the open file every decoder reads (``path`` is then its name)
    max_pixels: int | None = None  # the decoder refuses larger frames

    @property
    def decoder_path(self) -> str | None:
        """A path that opens this very file, for decoders that only take paths (NVDEC)."""
        return self.path if self.file is None else self.file.fd_path()

    def timestamp(self, index: int) -> float:
        """Seconds from the first frame."""
        if self.pts is not None:
            return float(int(self.pts[index] - self.start_pts) * self.time_base)
        return index / self.fps if self.fps > 0 else float(index)


def _av():
    try:
        import av
    except ImportError:
        raise ImportError("reading video files needs PyAV: pip install av") from None
    return av


def in_words(e: Exception) -> str:
    """An FFmpeg error as words, without its code and path: ``[Errno 1094995529] Invalid data found
    when processing input: 'x.mp4'`` → ``invalid data found when processing input``."""
    text = getattr(e, "strerror", None) or re.sub(r"^\[Errno -?\d+\]\s*", "", str(e))
    return text[:1].lower() + text[1:]


def open_file(path: str | os.PathLike) -> MediaFile:
    """``path`` opened once, as a video file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"expected a video file, got a folder: {path}")
    try:
        return MediaFile.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"video file not found: {path}") from None
    except ValueError as e:
        raise ValueError(f"cannot read video {path}: {e}") from None


def _refuse(url: str, flags: int, options: dict):
    raise PermissionError("the container refers to another file or URL, which is not opened")


@contextlib.contextmanager
def _open(file: MediaFile, max_pixels: int | None = None):
    """An input container over ``file`` (self-contained ``FORMATS`` only; nothing else is opened),
    its first video stream checked against ``max_pixels`` from the header; closed on exit."""
    av = _av()
    name = file.name
    with file.reader() as fp:
        try:
            if file.size == 0:
                raise av.error.EOFError(0, "empty")
            container = av.open(fp, io_open=_refuse, container_options={"format_whitelist": ",".join(FORMATS)})
        except av.error.EOFError:
            raise ValueError(f"cannot read video {name}: it ends before its first frame (an empty or "
                             "truncated file)") from None
        except av.error.ArgumentError:
            raise ValueError(f"cannot read video {name}: not a video container that holds its own media "
                             f"({', '.join(FORMATS[:12])}, ...); playlists and lists of files are refused") from None
        except PermissionError as e:
            raise ValueError(f"cannot read video {name}: {e}") from None
        except av.error.InvalidDataError:
            raise ValueError(f"cannot read video {name}: no container it could be read as (its data is not a "
                             "video file)") from None
        except (av.error.FFmpegError, UnicodeDecodeError, ValueError, OSError) as e:
            raise ValueError(f"cannot read video {name}: {in_words(e)}") from None
        with container:
            if not set(container.format.name.split(",")) <= set(FORMATS):
                raise ValueError(f"cannot read video {name}: {container.format.name} containers are not read")
            if not container.streams.video:
                raise ValueError(f"cannot read video {name}: it has no video stream")
            cc = container.streams.video[0].codec_context
            if max_pixels is not None:
                check_pixels(cc.width, cc.height, max_pixels, f"video {name}: a frame")
                cc.options = {**cc.options, "max_pixels": str(max_pixels)}
            yield container


def check_header(file: MediaFile, max_pixels: int) -> None:
    """Refuse ``file`` unless it is a self-contained video whose frames fit ``max_pixels`` (its
    header only; nothing is decoded)."""
    with _open(file, max_pixels):
        pass


def probe(source: str | os.PathLike | MediaFile, max_pixels: int | None = None,
          max_frames: int | None = None) -> VideoInfo:
    """Read the frame table of the first video stream without decoding (a path is opened once;
    its frames are refused from the header when over ``max_pixels``, the file when its table
    holds more than ``max_frames`` entries)."""
    file = source if isinstance(source, MediaFile) else open_file(source)
    path = file.name
    av = _av()
    with _open(file, max_pixels) as container:
        stream = container.streams.video[0]
        pts, keys, missing_pts = [], [], False
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if max_frames is not None and len(pts) >= max_frames:
                    raise ValueError(f"cannot read video {path}: it holds more than {max_frames} frames "
                                     "(max_video_frames)")
                if packet.pts is None:
                    missing_pts = True
                    pts.append(len(pts))
                else:
                    pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(pts[-1])
        except av.error.EOFError:
            pass  # some demuxers end a stream with an error instead of an empty packet
        except av.error.FFmpegError as e:
            if not pts:
                raise ValueError(f"cannot read video {path}: {in_words(e)}") from None
            warnings.warn(f"video {path} is damaged after {len(pts)} frames ({in_words(e)}); using those")
        if not pts:
            raise ValueError(f"cannot read video {path}: it has zero frames")
        order = np.sort(np.asarray(pts, dtype=np.int64))
        keyframes = np.searchsorted(order, np.asarray(sorted(keys), dtype=np.int64)) if keys else np.zeros(1, np.int64)
        if keyframes[0] != 0:
            keyframes = np.concatenate([[0], keyframes])
        cc = stream.codec_context
        return VideoInfo(
            path=path, frames=len(order), fps=float(stream.average_rate or 0.0), width=cc.width,
            height=cc.height, codec=cc.name, pts=None if missing_pts else order,
            keyframes=keyframes.astype(np.int64), time_base=Fraction(stream.time_base or 0),
            start_pts=int(order[0]) if not missing_pts else 0, pix_fmt=cc.pix_fmt,
            colorspace=int(cc.colorspace), color_range=int(cc.color_range), file=file, max_pixels=max_pixels)


def check_strategy(strategy: str, strategies: tuple[str, ...] = STRATEGIES) -> None:
    if strategy not in strategies:
        raise ValueError(f"unknown decode strategy {strategy!r}; use one of {', '.join(strategies)}")


def wanted_frames(info: VideoInfo, indices) -> list[int]:
    """The distinct ``indices``, ascending, checked to lie in the video."""
    wanted = sorted(set(int(i) for i in indices))
    if wanted and not 0 <= wanted[0] <= wanted[-1] < info.frames:
        raise ValueError(f"frame numbers must lie in [0, {info.frames}), got {wanted[0]}..{wanted[-1]}")
    return wanted


def iter_frames(info: VideoInfo, indices, strategy: str = "hybrid", progress=None):
    """Yield ``(frame number, RGB uint8 [H, W, 3])`` for the distinct ``indices``, ascending, from
    one decoder.

    ``strategy``: ``hybrid`` (seek only to reach a later GOP), ``seek`` (seek to every wanted
    frame's keyframe) or ``sequential`` (decode everything up to the last wanted frame: the naive
    baseline); the first two skip unwanted non-reference frames. ``progress(n)`` is called with
    the number of frames decoded (wanted or not) since its last call. Raises ``ValueError`` when a
    wanted frame cannot be decoded (a damaged or truncated file).
    """
    check_strategy(strategy)
    av = _av()
    wanted = wanted_frames(info, indices)
    if info.pts is None:
        strategy = "sequential"  # without pts there is nothing to seek to
    wanted_set = set(wanted)
    keyframes = info.keyframes.tolist()
    index_of = {int(p): i for i, p in enumerate(info.pts)} if info.pts is not None else {}
    position = -1  # frame number of the last decoded frame
    with _open(info.file or open_file(info.path), info.max_pixels) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, first_valid, decoded = None, 0, 0
        skip_unwanted = strategy != "sequential"
        for target in wanted:
            key = keyframes[bisect.bisect_right(keyframes, target) - 1]
            seek = {"sequential": False, "seek": True, "hybrid": position < key - 1}[strategy]
            try:
                if frames is None or seek:
                    if strategy != "sequential" and (key > 0 or frames is not None):
                        container.seek(int(info.pts[key]), stream=stream, backward=True, any_frame=False)
                        first_valid = key  # frames before the keyframe may lack their references
                    frames = _decode(container, stream, index_of, wanted_set if skip_unwanted else None)
                found = None
                for frame in frames:
                    decoded += 1
                    position = index_of.get(frame.pts, position + 1)
                    if position == target and position >= first_valid:
                        found = frame.to_ndarray(format="rgb24")
                    if position >= target:
                        break
            except av.error.FFmpegError as e:
                raise ValueError(f"cannot read video {info.path}: decoding failed near frame {position + 1} "
                                 f"of {info.frames}: {in_words(e)}") from None
            if progress is not None:
                progress(decoded)
                decoded = 0
            if found is None:
                raise ValueError(
                    f"cannot read video {info.path}: frame {target} of {info.frames} could not be decoded "
                    f"(the file may be truncated or damaged; frames up to {max(position, -1) + 1} were "
                    "readable)")
            yield target, found


def _decode(container, stream, index_of: dict, wanted: set | None):
    """Decoded frames from the current demux position. With ``wanted``, packets of unwanted
    frames are decoded with ``skip_frame=NONREF``: a frame nothing else refers to is skipped
    outright, while reference frames are always decoded, so wanted frames come out intact."""
    context = stream.codec_context
    for packet in container.demux(stream):
        if wanted is not None:
            keep = packet.pts is None or packet.size == 0 or index_of.get(packet.pts) in wanted
            context.skip_frame = "DEFAULT" if keep else "NONREF"
        yield from packet.decode()


def keyframe_indices(info: VideoInfo, indices) -> np.ndarray:
    """Each frame number moved to its nearest keyframe (ties: the earlier one)."""
    keys = info.keyframes
    idx = np.asarray(indices, dtype=np.int64)
    right = np.clip(np.searchsorted(keys, idx), 0, len(keys) - 1)
    left = np.clip(right - 1, 0, len(keys) - 1)
    take_left = np.abs(idx - keys[left]) <= np.abs(keys[right] - idx)
    return np.where(take_left, keys[left], keys[right])
