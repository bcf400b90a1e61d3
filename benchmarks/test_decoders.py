"""Decoding throughput, frames per second, for a folder of 1080p JPEG frames and a 1080p video file:
Pillow / PyAV (``decoder="cpu"``), NVIDIA DALI's CPU decoders (``decoder="dali"`` without CUDA), and
on a GPU DALI's ``mixed`` decoders (nvJPEG, NVDEC) and PyNvVideoCodec (``decoder="nvdec"``), in
the same run. A case whose decoder is not here (no DALI, no GPU, no PyNvVideoCodec) skips.

Frames come through ``open_video(...).chunks(64)`` as the engine reads them and are dropped, so
2,000 frames of 1080p never sit in memory at once. ``VXL_BENCH_JPEG_FRAMES`` sets the folder's
frames (default 200; 2000 for the issue's folder) and ``VXL_BENCH_DECODE_VIDEO_FRAMES`` the
videos' (default 60). The folder and videos are written to a temp dir first (not timed).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import environment, sync
from vxl_fast.video import dali, nvdec, open_video

JPEG_FRAMES = int(os.environ.get("VXL_BENCH_JPEG_FRAMES", "200"))
VIDEO_FRAMES = int(os.environ.get("VXL_BENCH_DECODE_VIDEO_FRAMES", "60"))
WIDTH, HEIGHT = 1920, 1080


def _frame(t: int, texture: np.ndarray) -> np.ndarray:
    """Moving gradients over a fixed texture: JPEGs of a realistic size (~300 KB)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[..., 0] = (xx + 3 * t) % 256
    img[..., 1] = (yy + t) % 256
    img[..., 2] = (xx + yy + 5 * t) % 256
    return img + texture


@pytest.fixture(scope="module")
def texture():
    return np.random.default_rng(0).integers(0, 24, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory, texture):
    folder = tmp_path_factory.mktemp("jpegs")
    for t in range(JPEG_FRAMES):
        Image.fromarray(_frame(t, texture)).save(folder / f"{t:05d}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module", params=["h264", "mjpeg"])
def video_file(request, tmp_path_factory, texture):
    av = pytest.importorskip("av", reason="writing the video needs PyAV")
    codec, pix_fmt, suffix = {"h264": ("libx264", "yuv420p", "mp4"), "mjpeg": ("mjpeg", "yuvj420p", "avi")}[
        request.param]
    path = tmp_path_factory.mktemp("video") / f"1080p.{suffix}"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=30, options={"preset": "veryfast"} if codec == "libx264" else {})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, pix_fmt
        for t in range(VIDEO_FRAMES):
            for packet in stream.encode(av.VideoFrame.from_ndarray(_frame(t, texture), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return request.param, path


def _needs(decoder: str, on_gpu: bool) -> None:
    if on_gpu and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if not on_gpu and decoder == "dali" and torch.cuda.is_available():
        pytest.skip("DALI's CPU decoders are measured without CUDA")
    reason = {"dali": lambda: dali.unavailable(dali.device()), "nvdec": nvdec.unavailable}.get(decoder, lambda: None)()
    if reason is not None:
        pytest.skip(reason)


def _drain(source, decoder: str) -> int:
    count = 0
    for frames, _ in open_video(source, decoder=decoder).chunks(64, pin=False):
        count += len(frames)
    sync()
    return count


def _measure(benchmark, source, decoder: str, **facts) -> int:
    """One timed read; records frames per second of wall time and per second of this process's
    CPU time (all its threads: a fairer figure on a machine shared with other work)."""
    spent = {}

    def read():
        start = time.process_time()
        count = _drain(source, decoder)
        spent["cpu_s"] = time.process_time() - start
        return count

    count = benchmark.pedantic(read, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update({**environment(), **facts, "decoder": decoder, "decoded_frames": count,
                                 "decode_frames_s": count / seconds, "cpu_s": spent["cpu_s"],
                                 "decode_frames_per_cpu_s": count / spent["cpu_s"]})
    return count


@pytest.mark.parametrize("decoder, on_gpu", [("cpu", False), ("dali", False), ("dali", True)],
                         ids=["pillow", "dali-cpu", "dali-mixed"])
def test_jpeg_folder(benchmark, jpeg_folder, decoder, on_gpu):
    _needs(decoder, on_gpu)
    if on_gpu:
        _drain(jpeg_folder, decoder)  # a warm-up: nvJPEG's first batches allocate
    assert _measure(benchmark, jpeg_folder, decoder, input="jpeg-folder-1080p", on_gpu=on_gpu) == JPEG_FRAMES


@pytest.mark.parametrize("decoder, on_gpu", [("cpu", False), ("dali", False), ("dali", True), ("nvdec", True)],
                         ids=["pyav", "dali-cpu", "dali-mixed", "nvdec"])
def test_video_file(benchmark, video_file, decoder, on_gpu):
    codec, path = video_file
    _needs(decoder, on_gpu)
    if decoder == "dali" and not on_gpu and codec not in dali.CPU_CODECS:
        pytest.skip(f"DALI's CPU decoder does not take {codec}")
    if decoder == "nvdec" and codec not in nvdec.NVDEC_CODECS:
        pytest.skip(f"NVDEC is not used for {codec}")
    assert _measure(benchmark, path, decoder, input=f"{codec}-1080p", on_gpu=on_gpu) == VIDEO_FRAMES
