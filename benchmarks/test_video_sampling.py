"""Reading and uniformly sampling frames from a video file the benchmark writes itself."""

from __future__ import annotations

import pytest

pytest.importorskip("av", reason="needs PyAV")

from conftest import environment  # noqa: E402
from vxl_fast.demo import write_sample_video  # noqa: E402
from vxl_fast.video.reader import read_video  # noqa: E402


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    # 60 s of 640x360 H.264 at 30 fps (1800 frames)
    return write_sample_video(tmp_path_factory.mktemp("video") / "long.mp4", frames=1800, fps=30,
                              size=(640, 360))


@pytest.mark.parametrize("num_frames", [64, 256])
def test_uniform_sampling(benchmark, video, num_frames):
    out = benchmark.pedantic(lambda: read_video(video, num_frames), rounds=2, iterations=1)
    assert out.frames.shape == (num_frames, 360, 640, 3) and out.total_frames == 1800
    seconds = benchmark.stats.stats.median
    benchmark.extra_info.update({**environment(), "num_frames": num_frames, "total_frames": 1800,
                                 "sampled_frames_s": num_frames / seconds,
                                 "decoded_frames_s": (out.indices[-1] + 1) / seconds})
