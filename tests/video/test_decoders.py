"""Which decoder reads a file (``decoder="auto" | "cpu" | "nvdec"``) and the NVDEC path's frame
access, with PyNvVideoCodec faked at its import boundary: a module in ``sys.modules`` whose
``SimpleDecoder`` hands out NV12 frames made from PyAV's own decoding, so the NVDEC path's pixels
(NV12 -> RGB by the yuv420_to_rgb op) must equal the CPU path's (PyAV's rgb24) byte for byte.
Also the GOP-parallel CPU strategy against the single decoder."""

from __future__ import annotations

import os
import sys
import types
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="needs PyAV")

from conftest import GOLDEN, warnings_of  # noqa: E402
from vxl_fast.video import load_video, open_video  # noqa: E402
from vxl_fast.video.request import VisualRequest  # noqa: E402
from vxl_fast.video.parallel import gop_runs, iter_frames_parallel  # noqa: E402
from vxl_fast.video.reader import probe  # noqa: E402
from vxl_fast.video.source import decode_frames  # noqa: E402
from vxl_fast.video.yuv import frame_planes  # noqa: E402
from yuv_videos import content, damaged_copy, write_video  # noqa: E402

VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"


class FakeSimpleDecoder:
    """PyNvVideoCodec.SimpleDecoder's surface that vxl_fast uses: the frames of the file as NV12
    uint8 [H + H / 2, W] tensors (DLPack-capable), indexed in presentation order."""

    opened: list[str] = []
    calls: list[list[int]] = []
    _decoded: dict[str, list[torch.Tensor]] = {}  # path -> NV12 frames (decoded once per test run)
    drop_last = False  # answer a batch with one frame too few
    extra_frames = 0  # claim more frames than the file has

    def __init__(self, path, gpu_id=0, use_device_memory=True, output_color_type=None):
        assert use_device_memory and output_color_type == "native"
        path = os.path.realpath(path)  # the decoder is given /proc/self/fd/N: the file opened once
        FakeSimpleDecoder.opened.append(path)
        if path not in self._decoded:
            with av.open(path) as container:
                self._decoded[path] = [self._nv12(f) for f in container.decode(video=0)]
        self._frames = self._decoded[path]

    @staticmethod
    def _nv12(frame) -> torch.Tensor:
        y, u, v = (torch.from_numpy(p.copy()) for p in frame_planes(frame))
        return torch.cat([y, torch.stack((u, v), dim=-1).flatten(-2)])

    def __len__(self):
        return len(self._frames) + self.extra_frames

    def get_batch_frames_by_index(self, indices):
        FakeSimpleDecoder.calls.append(list(indices))
        out = [self._frames[i] for i in indices]
        return out[:-1] if self.drop_last else out


@pytest.fixture
def fake_nvdec(monkeypatch):
    """A fake PyNvVideoCodec and a CUDA that says it is there; yields the fake decoder class."""
    fake = types.ModuleType("PyNvVideoCodec")
    fake.SimpleDecoder = FakeSimpleDecoder
    fake.OutputColorType = types.SimpleNamespace(NATIVE="native")
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(FakeSimpleDecoder, "opened", [])
    monkeypatch.setattr(FakeSimpleDecoder, "calls", [])
    yield FakeSimpleDecoder


def _load(source, **kw):
    """load_video, returning (video, the messages of the warnings it raised)."""
    return warnings_of(load_video, source, **kw)


# ---- the NVDEC path: exact frames by index, reassembled in sample order ----------------------------

@pytest.mark.parametrize("sample", [{"num_frames": 24}, {"fps": 1}, {"num_frames": 24, "sampling": "keyframe"},
                                    {"num_frames": 500}])
def test_nvdec_frames_equal_the_cpu_path(fake_nvdec, sample):
    cpu, _ = _load(VIDEO, decoder="cpu", **sample)
    assert fake_nvdec.opened == []
    gpu, caught = _load(VIDEO, decoder="nvdec", **sample)
    assert caught == [] and fake_nvdec.opened == [str(VIDEO)]
    assert gpu.indices.tolist() == cpu.indices.tolist() and gpu.timestamps == cpu.timestamps
    assert torch.equal(gpu.frames, cpu.frames)
    asked = [i for call in fake_nvdec.calls for i in call]
    assert asked == sorted(set(cpu.indices.tolist()))  # each frame asked once, ascending
    assert max(len(call) for call in fake_nvdec.calls) <= 32


def test_nvdec_chunks_come_in_sample_order_with_repeats(fake_nvdec):
    source = open_video(VIDEO, num_frames=24, sampling="keyframe", decoder="nvdec")
    assert source.indices.tolist()[:4] == [0, 0, 50, 50]
    chunks = list(source.chunks(7))
    assert [c.shape[0] for c, _ in chunks] == [7, 7, 7, 3]
    cpu = load_video(VIDEO, num_frames=24, sampling="keyframe", decoder="cpu").frames
    assert torch.equal(torch.cat([c for c, _ in chunks]), cpu)


@pytest.mark.parametrize("tag, pix_fmt", [(1, "yuv420p"), (1, "yuvj420p"), (None, "yuv420p")])
def test_nvdec_converts_with_the_stream_tags(fake_nvdec, tmp_path, tag, pix_fmt):
    path = write_video(tmp_path / "tagged.mp4", content(6, 72, 96, "smooth"), "libx264", pix_fmt, tag)
    gpu, caught = _load(path, decoder="nvdec")
    assert caught == [] and fake_nvdec.opened
    cpu = load_video(path, decoder="cpu")
    assert torch.equal(gpu.frames, cpu.frames)


def test_nvdec_short_batch_is_an_error(fake_nvdec, monkeypatch):
    monkeypatch.setattr(FakeSimpleDecoder, "drop_last", True)
    with pytest.raises(ValueError, match=r"NVDEC returned 3 frames for the 4 asked \(0\.\.499\)"):
        load_video(VIDEO, num_frames=4, decoder="nvdec")


def _real_nvdec() -> str | None:
    from vxl_fast.video import nvdec

    return nvdec.unavailable()


@pytest.mark.skipif(_real_nvdec() is not None, reason=f"needs NVDEC: {_real_nvdec()}")
@pytest.mark.parametrize("sample", [{"num_frames": 24}, {"num_frames": 500}, {"fps": 1}])
def test_real_nvdec_equals_the_cpu_path(sample, tmp_path):
    """On a GPU machine with PyNvVideoCodec: the real decoder, BT.601 limited (golden) and BT.709
    full range, pixels equal to PyAV's."""
    for path in (VIDEO, write_video(tmp_path / "j709.mp4", content(30, 72, 96, "smooth"), "libx264", "yuvj420p", 1)):
        if "fps" in sample and path != VIDEO:
            continue
        gpu, caught = _load(path, decoder="nvdec", **({} if path != VIDEO else sample))
        assert caught == [] and gpu.frames.is_cuda
        cpu = load_video(path, decoder="cpu", **({} if path != VIDEO else sample))
        assert torch.equal(gpu.frames.cpu(), cpu.frames)


# ---- selection and fallback ------------------------------------------------------------------------

def test_auto_picks_nvdec_when_everything_is_there(fake_nvdec):
    video, caught = _load(VIDEO, num_frames=8)  # load_video's default: host memory, the CPU decoder
    assert caught == [] and fake_nvdec.opened == []
    video, caught = _load(VIDEO, num_frames=8, decoder="auto")
    assert caught == [] and fake_nvdec.opened == [str(VIDEO)]
    assert torch.equal(video.frames, load_video(VIDEO, num_frames=8, decoder="cpu").frames)


def test_auto_without_cuda_or_pynvvideocodec_is_the_cpu_silently(fake_nvdec, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _, caught = _load(VIDEO, num_frames=4, decoder="auto")
    assert caught == [] and fake_nvdec.opened == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)  # import raises ImportError
    _, caught = _load(VIDEO, num_frames=4, decoder="auto")
    assert caught == [] and fake_nvdec.opened == []


def test_explicit_nvdec_falls_back_with_one_warning(fake_nvdec, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    video, caught = _load(VIDEO, num_frames=4, decoder="nvdec")
    assert caught == [f"{VIDEO}: decoding on the CPU, not with NVDEC: CUDA is not available"]
    assert video.frames.shape == (4, 240, 320, 3) and fake_nvdec.opened == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", None)
    _, caught = _load(VIDEO, num_frames=4, decoder="nvdec")
    assert len(caught) == 1 and "PyNvVideoCodec does not import (ModuleNotFoundError" in caught[0]
    assert 'pip install --no-build-isolation ".[nvdec]"' in caught[0]


@pytest.mark.parametrize("decoder", ["auto", "nvdec"])
def test_unsupported_streams_fall_back_with_one_warning(fake_nvdec, tmp_path, decoder):
    frames = content(4, 17, 33, "smooth")
    for codec, suffix, why in (("mpeg4", "mkv", "NVDEC is not used for mpeg4"),
                               ("ffv1", "mkv", "NVDEC is not used for ffv1")):
        path = write_video(tmp_path / f"v.{suffix}", frames, codec)
        video, caught = _load(path, decoder=decoder)
        assert len(caught) == 1 and why in caught[0], caught
        assert fake_nvdec.opened == []
        assert torch.equal(video.frames, load_video(path, decoder="cpu").frames)


def test_frame_count_disagreement_falls_back(fake_nvdec, monkeypatch):
    monkeypatch.setattr(FakeSimpleDecoder, "extra_frames", 1)
    video, caught = _load(VIDEO, num_frames=4, decoder="nvdec")
    assert caught == [f"{VIDEO}: decoding on the CPU, not with NVDEC: NVDEC counts 501 frames where the "
                      "demuxer counts 500"]
    assert torch.equal(video.frames, load_video(VIDEO, num_frames=4, decoder="cpu").frames)


def test_bad_decoder_options_are_named_early(tmp_path):
    with pytest.raises(ValueError, match=r"unknown decoder 'gpu'; use one of auto, cpu, nvdec, dali"):
        load_video(VIDEO, num_frames=4, decoder="gpu")
    with pytest.raises(ValueError, match=r"unknown decoder None; use one of auto, cpu, nvdec, dali"):
        open_video(VIDEO, num_frames=4, decoder=None)
    with pytest.raises(ValueError, match=r"decoder='nvdec' needs a video file"):
        load_video(np.zeros((2, 8, 8, 3), np.uint8), decoder="nvdec")
    with pytest.raises(ValueError, match=r"unknown decode strategy 'fast'; use one of hybrid, seek, sequential, parallel"):
        open_video(VIDEO, num_frames=4, strategy="fast")
    with pytest.raises(ValueError, match=r"unknown decoder 'gpu'; use one of auto, cpu, nvdec, dali"):
        VisualRequest(video=VIDEO, num_frames=4, decoder="gpu")
    with pytest.raises(ValueError, match=r"decoder='cpu' only applies to video="):
        VisualRequest(frames=np.zeros((2, 8, 8, 3), np.uint8), decoder="cpu")


# ---- GOP-parallel CPU decoding --------------------------------------------------------------------

def _same(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[i], b[i]) for i in a)


def test_gop_runs_split_at_keyframes():
    info = probe(VIDEO)  # keyframes every 50 frames
    runs = gop_runs(info, list(range(0, 500, 10)), per_run=8)
    assert [r[0] for r in runs] == [0, 100, 200, 300, 400]  # whole GOPs of 5 frames, >= 8 per run
    assert sum(runs, []) == list(range(0, 500, 10))
    assert gop_runs(info, [3, 4, 499], per_run=1) == [[3, 4], [499]]


@pytest.mark.parametrize("wanted", [range(500), range(0, 500, 7), [0, 1, 49, 50, 51, 120, 250, 499], [260]])
def test_parallel_equals_the_single_decoder(wanted):
    info = probe(VIDEO)
    single = decode_frames(info, wanted, "hybrid")
    assert _same(decode_frames(info, wanted, "parallel"), single)
    counted = []
    frames = dict(iter_frames_parallel(info, wanted, counted.append, workers=3))
    assert _same(frames, single) and sum(counted) >= len(single)


def test_parallel_with_b_frames_and_variable_frame_rate(tmp_path):
    pts = [0, 40, 80, 200, 210, 500, 900, 940, 1000, 1010, 1300, 1400, 1410, 1800, 2000, 2100]  # ms
    path = tmp_path / "vfr.mkv"
    frames = content(len(pts), 64, 96, "smooth")
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"bframes": "3", "g": "5", "keyint_min": "5"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    info = probe(path)
    assert info.frames == len(pts) and len(info.keyframes) >= 3
    with av.open(str(path)) as c:
        assert any(p.pts != p.dts for p in c.demux(video=0) if p.size)  # B-frames: reordered
    for wanted in (range(len(pts)), [1, 2, 7, 8, 14], [15]):
        assert _same(dict(iter_frames_parallel(info, wanted, workers=2)), decode_frames(info, wanted, "sequential"))
    cpu = load_video(path, strategy="parallel")
    assert cpu.timestamps == pytest.approx([p / 1000 for p in pts], abs=1e-3)


def test_parallel_on_a_damaged_middle_matches_the_single_decoder(tmp_path):
    damaged = damaged_copy(write_video(tmp_path / "good.mp4", content(60, 64, 96, "smooth"), "libx264"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcomes = []
        for strategy in ("hybrid", "parallel"):
            try:
                outcomes.append(load_video(damaged, num_frames=12, strategy=strategy).frames)
            except ValueError as e:
                assert "damaged.mp4" in str(e)
                outcomes.append(str(e))
    if isinstance(outcomes[0], str):
        assert outcomes[1] == outcomes[0]
    else:
        assert torch.equal(outcomes[0], outcomes[1])
