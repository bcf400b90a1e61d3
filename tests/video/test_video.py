"""The video input layer: sources, upstream's sampling, exact decoding, and bad input."""

from __future__ import annotations

import hashlib
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av", reason="needs PyAV")

from conftest import GOLDEN, Case  # noqa: E402
from vxl_fast.video import load_video, open_video  # noqa: E402
from vxl_fast.video.reader import iter_frames, probe  # noqa: E402
from vxl_fast.video.source import decode_frames  # noqa: E402
from vxl_fast.video.sampling import uniform_indices  # noqa: E402
from yuv_videos import damaged_copy  # noqa: E402

VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"


@pytest.fixture(scope="module")
def case():
    return Case(GOLDEN / "cases" / "video_testsrc2_k24_r8.json")


def _write_video(path, frames, fps=25, codec="libx264", pts=None, time_base=None, gop=None):
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if gop:
            stream.codec_context.gop_size = gop
        if time_base:
            stream.codec_context.time_base = stream.time_base = time_base
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _moving(t, h=64, w=96):
    frames = np.zeros((t, h, w, 3), np.uint8)
    for i in range(t):
        frames[i, :, (i * 3) % w: (i * 3) % w + 8] = (255, 128, 0)
        frames[i, ..., 2] = i * 255 // max(1, t - 1)
    return frames


def test_uniform_indices_rule():
    assert uniform_indices(500, 24).tolist()[:4] == [0, 21, 43, 65]
    assert uniform_indices(5, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 4]
    assert uniform_indices(7, 1).tolist() == [0]
    with pytest.raises(ValueError, match="zero frames"):
        uniform_indices(0, 4)


def test_sampled_indices_and_pixels_match_upstream(case):
    video = load_video(VIDEO, num_frames=case.meta["max_frames_num"])
    assert video.total_frames == case.meta["total_frames"] and video.fps == pytest.approx(case.meta["avg_fps"])
    assert video.indices.tolist() == case.meta["frame_indices"] == case.tensors["frame_indices"].tolist()
    assert list(video.frames.shape) == [24, case.meta["frame_height"], case.meta["frame_width"], 3]
    digests = [hashlib.sha256(f.numpy().tobytes()).hexdigest() for f in video.frames]
    assert digests == case.meta["decoded_frames_sha256"]
    assert torch.equal(video.frames[[0, -1]], case.tensors["frames_first_last"])
    assert video.timestamps == [i / 25 for i in case.meta["frame_indices"]]


@pytest.mark.parametrize("strategy", ["hybrid", "seek", "sequential"])
def test_every_strategy_decodes_the_same_pixels(strategy):
    info = probe(VIDEO)
    assert info.frames == 500 and list(info.keyframes) == list(range(0, 500, 50))
    wanted = [0, 1, 49, 50, 51, 120, 121, 250, 251, 252, 333, 499]
    sequential = decode_frames(info, wanted, "sequential")
    assert all(np.array_equal(decode_frames(info, wanted, strategy)[i], sequential[i]) for i in wanted)


def test_hybrid_skips_gops_it_does_not_need():
    info = probe(VIDEO)
    counted = []
    list(iter_frames(info, [5, 420, 430], "hybrid", progress=counted.append))
    assert sum(counted) < 100  # 6 + (from the keyframe at 400) 21 + 10 frames, not 431


def test_fps_sampling_and_cap():
    one = load_video(VIDEO, fps=1)
    assert one.indices.tolist() == list(range(0, 500, 25)) and one.timestamps == [float(i) for i in range(20)]
    capped = load_video(VIDEO, fps=5, max_frames=10)
    assert capped.indices.tolist() == uniform_indices(500, 10).tolist()


def test_keyframe_sampling(case):
    video = load_video(VIDEO, num_frames=24, sampling="keyframe")
    assert set(video.indices.tolist()) <= set(range(0, 500, 50))
    assert video.indices.tolist()[:4] == [0, 0, 50, 50]  # 21 → 0, 43 → 50, 65 → 50
    assert video.timestamps[2] == 2.0
    exact = load_video(VIDEO, num_frames=500)
    assert torch.equal(video.frames[2], exact.frames[50])


def test_chunks_come_from_a_background_decoder(case):
    source = open_video(VIDEO, num_frames=24)
    assert source.count == 24 and source.indices.tolist() == case.meta["frame_indices"]
    chunks = list(source.chunks(10))
    assert [c.shape[0] for c, _ in chunks] == [10, 10, 4]
    assert [t for _, ts in chunks for t in ts] == source.timestamps
    whole = load_video(VIDEO, num_frames=24).frames
    assert torch.equal(torch.cat([c for c, _ in chunks]), whole)


def test_frame_folder_natural_order_and_formats(tmp_path):
    frames = _moving(12)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"frame{i}.png")
    video = load_video(tmp_path)
    assert torch.equal(video.frames, torch.from_numpy(frames))  # frame2 before frame10
    assert load_video(tmp_path, num_frames=4).indices.tolist() == [0, 3, 7, 11]
    assert video.timestamps is None
    with pytest.raises(ValueError, match="fps= needs a video file"):
        load_video(tmp_path, fps=2)


def test_images_arrays_and_iterators_agree():
    frames = _moving(5)
    listed = load_video([Image.fromarray(f) for f in frames]).frames
    array = load_video(frames).frames
    tensor = load_video(torch.from_numpy(frames)).frames
    iterated = load_video(iter([frames[:2], frames[2], Image.fromarray(frames[3]), torch.from_numpy(frames[4:])])).frames
    for got in (listed, array, tensor, iterated):
        assert torch.equal(got, torch.from_numpy(frames))
    one = load_video(Image.fromarray(frames[0]))
    assert one.frames.shape == (1, 64, 96, 3)


def test_grey_rgba_and_16_bit(tmp_path):
    grey = (np.arange(64 * 96) % 256).astype(np.uint8).reshape(64, 96)
    Image.fromarray(grey).save(tmp_path / "a_grey.png")
    rgba = np.dstack([_moving(1)[0], np.full((64, 96), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b_rgba.png")
    deep = (np.arange(64 * 96, dtype=np.uint16) * 11).reshape(64, 96)
    Image.fromarray(deep).save(tmp_path / "c_deep.png")
    assert Image.open(tmp_path / "c_deep.png").mode.startswith("I")
    video = load_video(sorted(tmp_path.iterdir()))
    assert torch.equal(video.frames[0], torch.from_numpy(np.repeat(grey[..., None], 3, -1)))
    assert torch.equal(video.frames[1], torch.from_numpy(rgba[..., :3]))
    assert torch.equal(video.frames[2], torch.from_numpy(np.repeat((deep >> 8).astype(np.uint8)[..., None], 3, -1)))
    arrays = load_video(np.stack([grey, grey]))  # [T, H, W] grey
    assert arrays.frames.shape == (2, 64, 96, 3)
    assert load_video(np.stack([rgba, rgba])).frames.shape == (2, 64, 96, 3)


@pytest.mark.parametrize("size", [(1, 1), (7, 4000), (4000, 7), (3, 5)])
def test_odd_frame_sizes_reach_the_model(tiny_model, size):
    frames = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    out = tiny_model.generate(video=frames, prompt="q", compression_ratio=16, max_new_tokens=2)
    assert out.stats["frames"] == 2 and len(out.token_ids) == 2


def test_variable_frame_rate_timestamps(tmp_path):
    pts = [0, 40, 80, 200, 210, 500, 900]  # ms
    path = _write_video(tmp_path / "vfr.mkv", _moving(len(pts)), fps=25, pts=pts, time_base=Fraction(1, 1000))
    video = load_video(path)
    assert video.frames.shape[0] == len(pts)
    assert video.timestamps == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def test_fewer_frames_than_requested_uses_all_with_a_warning(tmp_path):
    path = _write_video(tmp_path / "short.mp4", _moving(6))
    with pytest.warns(UserWarning, match="has only 6 frames; using all of them instead of 10"):
        video = load_video(path, num_frames=10)
    assert video.indices.tolist() == list(range(6))


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="video file not found"):
        load_video(tmp_path / "missing.mp4", num_frames=4)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    with pytest.raises(ValueError, match="cannot read video .*notes.mp4"):
        load_video(text, num_frames=4)
    mkv = _write_video(tmp_path / "five.mkv", _moving(5)).read_bytes()
    empty = tmp_path / "empty.mkv"  # the Matroska header and track, cut before the first cluster
    empty.write_bytes(mkv[: mkv.index(bytes.fromhex("1F43B675"))])
    with pytest.raises(ValueError, match="empty.mkv: it ends before its first frame|empty.mkv: it has zero frames"):
        load_video(empty, num_frames=4)
    good = _write_video(tmp_path / "good.mp4", _moving(40))
    data = good.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ValueError, match="cannot read video .*truncated.mp4"):
        load_video(truncated, num_frames=8)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(_moving(1)[0]).save(mixed / "1.png")
    Image.fromarray(_moving(1, 32, 32)[0]).save(mixed / "2.png")
    with pytest.raises(ValueError, match="mixes image sizes: 2.png is 32x32, 1.png is 96x64"):
        load_video(mixed)
    with pytest.raises(ValueError, match="holds no image files"):
        load_video(tmp_path / "emptydir" if (tmp_path / "emptydir").mkdir() is None else None)
    with pytest.raises(ValueError, match="num_frames must be a positive integer"):
        load_video(good, num_frames=0)
    with pytest.raises(ValueError, match="unknown sampling 'fast'"):
        load_video(good, num_frames=2, sampling="fast")
    with pytest.raises(TypeError, match="must be uint8"):
        load_video(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="zero frames"):
        load_video(np.zeros((0, 8, 8, 3), np.uint8))


def test_damaged_middle_never_hangs(tmp_path):
    damaged = damaged_copy(_write_video(tmp_path / "good.mp4", _moving(60), gop=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            video = load_video(damaged, num_frames=12)
        except ValueError as e:
            assert "damaged.mp4" in str(e)
        else:
            assert video.frames.shape[0] == 12
