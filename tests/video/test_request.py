"""VisualRequest and EncodeOptions: every check of a visual request in one place, before any work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vxl_fast.options import DEFAULT_RATIO, DEFAULT_RESERVE, EncodeOptions
from vxl_fast.video.request import VisualRequest, is_video_file

FRAMES = np.zeros((2, 8, 8, 3), np.uint8)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(), ValueError, "pass exactly one visual input: frames=, video= or images=$"),
    (dict(frames=FRAMES, video="a.mp4"), ValueError, r"\(got frames, video\)"),
    (dict(frames=FRAMES, fps=2.0), ValueError, "num_frames= and fps= only apply to video="),
    (dict(images="a.png", max_frames=3), ValueError, "max_frames= only applies with fps="),
    (dict(video="a.mp4", num_frames=4, max_frames=3), ValueError, "max_frames= only applies with fps="),
    (dict(frames=FRAMES, sampling="keyframe"), ValueError, "sampling='keyframe' only applies to video="),
    (dict(video="a.mp4", num_frames=4, sampling="fast"), ValueError, "unknown sampling 'fast'"),
    (dict(video="a.mp4", num_frames=4, fps=1.0), ValueError, "sample with num_frames= or fps=, not both"),
    (dict(video="a.mp4", fps=True), TypeError, "fps must be a number, got True"),
    (dict(video="a.mp4", fps=-1), ValueError, "fps must be a positive number, got -1"),
    (dict(video="a.mp4", num_frames=2.0), TypeError, "num_frames must be a positive integer, got 2.0"),
    (dict(video="a.mp4", fps=1.0, max_frames=0), ValueError, "max_frames must be a positive integer, got 0"),
    (dict(video="a.mp4", decoder="gpu"), ValueError, "unknown decoder 'gpu'"),
    (dict(video=FRAMES, decoder="nvdec"), ValueError, "decoder='nvdec' needs a video file"),
    (dict(images=[]), ValueError, "images= is an empty list: zero images given"),
    (dict(frames=np.zeros((2, 8, 8, 3), np.float32)), TypeError, "frames must have dtype uint8"),
])
def test_refuses(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        VisualRequest(**kwargs)


def test_frames_become_a_checked_tensor_and_the_value_is_frozen():
    request = VisualRequest(frames=FRAMES)
    assert isinstance(request.frames, torch.Tensor) and request.frames.shape == (2, 8, 8, 3)
    with pytest.raises(AttributeError):
        request.fps = 2.0  # type: ignore[misc]


def test_optional():
    assert VisualRequest.optional(frames=None, video=None, images=None) is None
    assert VisualRequest.optional(video="a.mp4", num_frames=4) == VisualRequest(video="a.mp4", num_frames=4)
    with pytest.raises(ValueError, match="num_frames=, fps=, max_frames= and decoder= need a visual input"):
        VisualRequest.optional(num_frames=4)
    with pytest.raises(ValueError, match="need a visual input"):
        VisualRequest.optional(decoder="cpu")


def test_is_video_file(tmp_path):
    assert is_video_file("clip.mp4") and is_video_file(tmp_path / "x.mkv")
    assert not is_video_file(tmp_path) and not is_video_file("a.PNG") and not is_video_file(["a.png"])


def test_encode_options():
    default = EncodeOptions()
    assert (default.compression_ratio, default.reserve_tokens, default.system) == (DEFAULT_RATIO, DEFAULT_RESERVE, None)
    assert EncodeOptions([4, 8]).compression_ratio == (4, 8)
    assert EncodeOptions("config").compression_ratio == "config"
    with pytest.raises(ValueError, match="unsupported compression ratio 5"):
        EncodeOptions(5)
    with pytest.raises(ValueError, match="reserve_tokens must be at least 0, got -1"):
        EncodeOptions(reserve_tokens=-1)
    with pytest.raises(TypeError, match="system must be a string, got int"):
        EncodeOptions(system=3)


def test_the_reader_keeps_its_old_public_name():
    import vxl_fast.video as video
    from vxl_fast.video.source import FrameReader

    assert video.FrameReader is FrameReader and video.VideoSource is FrameReader
