"""Frame sampling and the minimal video reader against the golden video case (decord output)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

pytest.importorskip("av", reason="needs PyAV")
import torch

from conftest import GOLDEN, Case, needs_golden  # noqa: E402
from vxl_fast.video.reader import read_video  # noqa: E402
from vxl_fast.video.sampling import uniform_indices  # noqa: E402

pytestmark = needs_golden


@pytest.fixture(scope="module")
def case():
    return Case(GOLDEN / "cases" / "video_testsrc2_k24_r8.json")


def test_uniform_indices_rule():
    assert uniform_indices(500, 24).tolist()[:4] == [0, 21, 43, 65]
    assert uniform_indices(5, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 4]
    assert uniform_indices(7, 1).tolist() == [0]
    with pytest.raises(ValueError, match="zero frames"):
        uniform_indices(0, 4)


def test_sampled_indices_match_upstream(case):
    video = read_video(GOLDEN / "cases" / case.meta["video_file"], case.meta["max_frames_num"])
    assert video.total_frames == case.meta["total_frames"]
    assert video.indices.tolist() == case.meta["frame_indices"]
    assert video.indices.tolist() == case.tensors["frame_indices"].tolist()
    assert video.fps == pytest.approx(case.meta["avg_fps"])


def test_decoded_pixels_match_decord(case):
    video = read_video(GOLDEN / "cases" / case.meta["video_file"], case.meta["max_frames_num"])
    assert video.frames.dtype == torch.uint8
    assert list(video.frames.shape) == [24, case.meta["frame_height"], case.meta["frame_width"], 3]
    digests = [hashlib.sha256(f.numpy().tobytes()).hexdigest() for f in video.frames]
    assert digests == case.meta["decoded_frames_sha256"]
    assert torch.equal(video.frames[[0, -1]], case.tensors["frames_first_last"])


def test_more_frames_than_video_repeats(case):
    video = read_video(GOLDEN / "cases" / case.meta["video_file"], 600)
    assert len(video.indices) == 600 and video.indices[-1] == 499
    assert np.all(np.diff(video.indices) >= 0)
    assert torch.equal(video.frames[0], video.frames[1]) == (video.indices[0] == video.indices[1])
