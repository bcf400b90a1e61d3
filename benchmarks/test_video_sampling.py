"""Exact uniform sampling from a long H.264 file the benchmark writes itself: the seek-aware
(hybrid) decoder against naive decoding of everything and against GOP-parallel decoding (hybrid
over runs of GOPs in one decoder thread per CPU), in the same process.

``VXL_BENCH_VIDEO_S`` sets the video's length in seconds (default 60; 1200 for the 20-minute
runs) and ``VXL_BENCH_VIDEO_SIZES`` its sizes (default ``360``; ``360,720`` for 640x360 and
1280x720), at 30 fps with x264's default GOP of 250 frames. Exact sampling skips work only
where the sample is sparser than the GOPs (64 frames of a 20-minute video) or frames are
non-reference B-frames.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

av = pytest.importorskip("av", reason="needs PyAV")

from conftest import environment  # noqa: E402
from vxl_fast.video import load_video  # noqa: E402

SECONDS = int(os.environ.get("VXL_BENCH_VIDEO_S", "60"))
SIZES = {360: (640, 360), 720: (1280, 720)}
HEIGHTS = [int(h) for h in os.environ.get("VXL_BENCH_VIDEO_SIZES", "360").split(",")]
FPS = 30


def _write(path, width, height):
    """Moving gradients with a fixed texture, H.264 veryfast, default GOP and B-frames."""
    texture = np.random.default_rng(0).integers(0, 24, (height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(SECONDS * FPS):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (xx + 3 * t) % 256
            img[..., 1] = (yy + t) % 256
            img[..., 2] = (xx + yy + 5 * t) % 256
            img += texture
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module", params=HEIGHTS, ids=[f"{h}p" for h in HEIGHTS])
def video(request, tmp_path_factory):
    w, h = SIZES[request.param]
    return _write(tmp_path_factory.mktemp("video") / f"long_{h}p.mp4", w, h), h


@pytest.mark.parametrize("strategy", ["hybrid", "parallel", "sequential"])
@pytest.mark.parametrize("num_frames", [64, 256, 2048])
def test_exact_sampling(benchmark, video, num_frames, strategy):
    path, height = video
    total = SECONDS * FPS
    if num_frames > total:
        pytest.skip(f"a {SECONDS} s video has fewer than {num_frames} frames")
    out = benchmark.pedantic(lambda: load_video(path, num_frames=num_frames, strategy=strategy, decoder="cpu"),
                             rounds=1, iterations=1)
    assert out.frames.shape[0] == num_frames and out.total_frames == total
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update({**environment(), "strategy": strategy, "num_frames": num_frames,
                                 "total_frames": total, "height": height,
                                 "sampled_frames_s": num_frames / seconds,
                                 "video_frames_s": total / seconds})
