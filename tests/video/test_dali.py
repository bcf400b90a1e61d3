"""``decoder="dali"``: NVIDIA DALI for image files and video files (video/dali.py).

Two kinds of tests. Through the fake at DALI's boundary (tests/dali_fake.py: Pillow and PyAV behind
DALI's pipeline surface), which run everywhere: the GPU path (``device="mixed"``, frames through
DLPack), the batches and frame numbers asked for, the fallbacks with one warning for a missing or
broken install, and ``auto`` never picking DALI. With the real DALI (``pip install
".[dali]"``; skipped without it, run by .ci/run): its CPU decoders' pixels against Pillow's
and PyAV's, batch boundaries, broken files and the golden answers. Awaiting a GPU: the real
``mixed`` image and video decoders (nvJPEG, NVDEC), which only the fake exercises here.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

av = pytest.importorskip("av", reason="needs PyAV")

import dali_fake  # noqa: E402
from conftest import GOLDEN, warnings_of  # noqa: E402
from vxl_fast.video import dali, load_video  # noqa: E402
from vxl_fast.video.inputs import read_frames  # noqa: E402
from vxl_fast.video.reader import probe  # noqa: E402
from vxl_fast.video.request import VisualRequest  # noqa: E402
from yuv_videos import content, write_video  # noqa: E402

VIDEO = GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4"


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """``dali.unavailable`` caches its probe per process; each test probes again, and sees no CUDA
    (the device rule: DALI's CPU decoders, also on a GPU machine) unless it asks for ``fake_gpu``."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dali.unavailable.cache_clear()
    yield
    dali.unavailable.cache_clear()


@pytest.fixture
def fake(monkeypatch):
    return dali_fake.install(monkeypatch)


@pytest.fixture
def fake_gpu(fake, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return fake


def _folder(tmp_path, count: int, size=(48, 64), fmt="jpg", seed=0):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        image.save(folder / f"frame_{i}.{fmt}", **({"quality": 85} if fmt == "jpg" else {}))
    return folder


def _load(source, **kw):
    """load_video, returning (video, the messages of the warnings it raised)."""
    return warnings_of(load_video, source, **kw)


# ---- through the fake ------------------------------------------------------------------------------

def test_gpu_images_are_decoded_mixed_in_batches(fake_gpu, tmp_path):
    folder = _folder(tmp_path, dali.BATCH + 5)
    video, caught = _load(folder, num_frames=dali.BATCH + 3, decoder="dali")
    assert caught == []
    assert torch.equal(video.frames, load_video(folder, num_frames=dali.BATCH + 3, decoder="cpu").frames)
    (probe, pipeline) = fake_gpu.built
    assert probe == pipeline
    assert pipeline == {"batch_size": dali.BATCH, "num_threads": pipeline["num_threads"], "device_id": 0,
                        "op": "image", "device": "mixed", "output_type": "rgb", "adjust_orientation": False,
                        "jpeg_fancy_upsampling": True}
    assert [r["batch"] for r in fake_gpu.runs] == [1, dali.BATCH, 3]  # the probe, then the frames


def test_gpu_video_asks_for_the_sampled_frames(fake_gpu, monkeypatch):
    monkeypatch.setattr(dali, "VIDEO_BATCH", 5)
    video, caught = _load(VIDEO, num_frames=24, sampling="keyframe", decoder="dali")
    cpu = load_video(VIDEO, num_frames=24, sampling="keyframe", decoder="cpu")
    assert caught == [] and torch.equal(video.frames, cpu.frames)
    assert list(video.indices) == list(cpu.indices)
    asked = [i for r in fake_gpu.runs if r["op"] == "video" for i in r["frames"]]
    assert asked == sorted(set(cpu.indices.tolist()))  # distinct, ascending, repeats served from the batch
    assert all(len(r["frames"]) <= 5 for r in fake_gpu.runs if r["op"] == "video")
    assert fake_gpu.built[-1]["device"] == "mixed" and fake_gpu.built[-1]["batch_size"] == 1


def test_several_images_on_the_gpu(fake_gpu, tmp_path):
    folder = _folder(tmp_path, 3)
    paths = sorted(folder.iterdir()) + [folder / "frame_0.jpg"]
    frames = read_frames(paths, decoder="dali")
    assert [tuple(f.shape) for f in frames] == [(48, 64, 3)] * 4
    assert all(torch.equal(a, b) for a, b in zip(frames, read_frames(paths)))
    assert VisualRequest(images=paths, decoder="dali").decoder == "dali"


def test_auto_and_cpu_never_use_dali(fake_gpu, tmp_path):
    folder = _folder(tmp_path, 4)
    for decoder in ("auto", "cpu"):
        _, caught = _load(folder, decoder=decoder)
        assert caught == []
    read_frames(sorted(folder.iterdir()))
    assert fake_gpu.built == [] and fake_gpu.runs == []


def test_items_dali_does_not_read_go_through_pillow(fake, tmp_path):
    folder = _folder(tmp_path, 3)
    Image.fromarray(np.full((48, 64), 40000, np.uint16)).save(folder / "frame_3.png")  # 16-bit
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(folder / "frame_4.gif")
    video, caught = _load(folder, decoder="dali")
    assert caught == [] and torch.equal(video.frames, load_video(folder, decoder="cpu").frames)
    assert [r["batch"] for r in fake.runs] == [1, 3]


def test_a_broken_file_is_named(fake, tmp_path):
    folder = _folder(tmp_path, 4)
    (folder / "frame_2.jpg").write_bytes(b"not a jpeg")  # refused from its header, before DALI runs
    with pytest.raises(ValueError, match=r"cannot read image .*frame_2\.jpg: not a readable image"):
        load_video(folder, decoder="dali")
    assert fake.runs == []
    data = (folder / "frame_1.jpg").read_bytes()
    (folder / "frame_2.jpg").write_bytes(data[:len(data) // 3])  # a sound header, truncated data
    with pytest.raises(ValueError, match=r"cannot read image .*frame_2\.jpg: DALI: nvImageCodec failure"):
        load_video(folder, decoder="dali")


@pytest.mark.parametrize("broken", ["missing", "import-error", "build-fails"])
def test_no_working_dali_is_one_warning_and_the_cpu_path(fake_gpu, monkeypatch, tmp_path, broken):
    if broken == "missing":
        monkeypatch.setitem(sys.modules, "nvidia", None)
    elif broken == "import-error":
        monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    else:
        monkeypatch.setattr(fake_gpu, "fail_build", OSError("libnvimgcodec.so.0: cannot open shared object file"))
    folder = _folder(tmp_path, 3)
    for source, kw in ((folder, {}), (VIDEO, {"num_frames": 4})):
        video, caught = _load(source, decoder="dali", **kw)
        assert len(caught) == 1, caught
        assert "not DALI: NVIDIA DALI does not work here (" in caught[0]
        assert caught[0].endswith('pip install --no-build-isolation ".[dali]" in the vxl_fast checkout')
        assert torch.equal(video.frames, load_video(source, decoder="cpu", **kw).frames)
    if broken == "build-fails":
        assert "libnvimgcodec.so.0: cannot open shared object file" in caught[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_frames(sorted(folder.iterdir()), decoder="dali")
    assert len(caught) == 1 and fake_gpu.runs == []


def test_cpu_video_takes_only_vp8_vp9_mjpeg(fake):
    video, caught = _load(VIDEO, num_frames=4, decoder="dali")
    assert caught == [f"{VIDEO}: decoding with PyAV, not DALI: DALI does not decode h264 on the CPU (H.264, HEVC, "
                      "AV1 and MPEG-4 need a GPU); it decodes mjpeg, vp8, vp9"]
    assert torch.equal(video.frames, load_video(VIDEO, num_frames=4, decoder="cpu").frames)
    assert [r for r in fake.runs if r["op"] == "video"] == []


def test_decoder_options_for_images(tmp_path):
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    with pytest.raises(ValueError, match=r"decoder='nvdec' only applies to video= \(images= takes 'cpu' or 'dali'\)"):
        VisualRequest(images=paths, decoder="nvdec")
    with pytest.raises(ValueError, match=r"decoder='dali' only applies to video=$"):
        VisualRequest(frames=np.zeros((2, 8, 8, 3), np.uint8), decoder="dali")
    with pytest.raises(ValueError, match=r"decoder='dali' needs a video file, a folder or a list of image files"):
        load_video(np.zeros((2, 8, 8, 3), np.uint8), decoder="dali")


# ---- with the real DALI (CPU pipelines) ------------------------------------------------------------

def _real_dali():
    reason = dali.unavailable("cpu")
    dali.unavailable.cache_clear()
    return reason


REASON = _real_dali()
real = pytest.mark.skipif(REASON is not None, reason=f"needs NVIDIA DALI: {REASON}")


def _odd_images(folder):
    """JPEGs of several qualities, subsamplings and modes, PNGs of every mode, BMP, WebP."""
    rng = np.random.default_rng(3)
    h, w = 181, 243
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = (np.stack([(xx * 2) % 256, (yy * 3) % 256, (xx + yy) % 256], -1) + rng.integers(0, 40, (h, w, 3)))
    im = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotated: DALI must not apply it (Pillow does not)
    saves = {"q90.jpg": (im, dict(quality=90)), "q75_444.jpg": (im, dict(quality=75, subsampling=0)),
             "q95_422.jpg": (im, dict(quality=95, subsampling=1)), "prog.jpg": (im, dict(progressive=True)),
             "gray.jpg": (im.convert("L"), {}), "cmyk.jpg": (im.convert("CMYK"), {}),
             "exif.jpg": (im, dict(exif=exif)), "rgb.png": (im, {}), "gray.png": (im.convert("L"), {}),
             "pal.png": (im.convert("P"), {}), "la.png": (im.convert("LA"), {}),
             "rgba.png": (Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA"), {}),
             "g16.png": (Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)), {}),
             "rgb.bmp": (im, {}), "lossless.webp": (im, dict(lossless=True)), "lossy.webp": (im, dict(quality=80))}
    for name, (image, kw) in saves.items():
        image.save(folder / name, **kw)
    return [folder / name for name in saves]


@real
def test_real_cpu_images_equal_pillow(tmp_path):
    paths = _odd_images(tmp_path)
    got, want = read_frames(paths, decoder="dali"), read_frames(paths, decoder="cpu")
    assert [p.name for p, a, b in zip(paths, got, want) if not torch.equal(a, b)] == []


@real
@pytest.mark.parametrize("count, num_frames", [(dali.BATCH, None), (dali.BATCH + 1, None), (2 * dali.BATCH + 7, 40),
                                               (5, 1)])
def test_real_folder_batches(tmp_path, count, num_frames):
    folder = _folder(tmp_path, count, fmt="png")
    video, caught = _load(folder, num_frames=num_frames, decoder="dali")
    cpu = load_video(folder, num_frames=num_frames, decoder="cpu")
    assert caught == [] and list(video.indices) == list(cpu.indices)
    assert torch.equal(video.frames, cpu.frames)


@real
def test_real_broken_and_truncated_files_are_named(tmp_path):
    folder = _folder(tmp_path, dali.BATCH + 2)
    data = (folder / "frame_33.jpg").read_bytes()
    (folder / "frame_33.jpg").write_bytes(data[:len(data) // 3])
    with pytest.raises(ValueError, match=r"cannot read image .*frame_33\.jpg: DALI: "):
        load_video(folder, decoder="dali")
    (folder / "frame_33.jpg").write_bytes(b"")  # refused from its header, before DALI runs
    with pytest.raises(ValueError, match=r"cannot read image .*frame_33\.jpg: not a readable image"):
        load_video(folder, decoder="dali")
    (folder / "frame_33.jpg").write_bytes(data)
    video, _ = _load(folder, decoder="dali")  # the decoder recovers from a failed run
    assert torch.equal(video.frames, load_video(folder, decoder="cpu").frames)


@real
def test_real_mixed_sizes(tmp_path):
    folder = _folder(tmp_path, 3)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "frame_3.jpg")
    with pytest.raises(ValueError, match=r"mixes image sizes: frame_3\.jpg is 30x20, frame_0\.jpg is 64x48"):
        load_video(folder, decoder="dali")


@real
@pytest.mark.parametrize("codec, pix_fmt", [("libvpx-vp9", "yuv420p"), ("mjpeg", "yuvj420p")])
def test_real_cpu_video_frame_numbers(tmp_path, codec, pix_fmt):
    """Each frame DALI gives is nearest to PyAV's frame of the same number (DALI's RGB is its own:
    close, not equal); past the last frame is refused before DALI (which would pad with zeros)."""
    path = write_video(tmp_path / f"v.{'webm' if 'vp9' in codec else 'avi'}", content(30, 64, 96, "smooth"),
                       codec, pix_fmt)
    video, caught = _load(path, num_frames=7, decoder="dali")
    cpu = load_video(path, decoder="cpu").frames.int()
    assert caught == [] and list(video.indices) == [0, 4, 9, 14, 19, 24, 29]
    for i, frame in zip(video.indices, video.frames.int()):
        distances = (cpu - frame).abs().float().mean(dim=(1, 2, 3))
        assert int(distances.argmin()) == i and distances[i] < 8
    reader = dali.DaliVideo(probe(path), "cpu")
    with pytest.raises(ValueError, match=r"frame numbers must lie in \[0, 30\), got 29\.\.30"):
        next(reader.batches([29, 30]))


@real
@pytest.mark.parametrize("case", ["t002_r4_320x180", "mimg2_r8_480x360_240x320"])
def test_real_golden_answers_from_image_files(tmp_path, case):
    """A golden case's frames as PNG files (lossless: the golden answer) and as quality-90 JPEGs,
    read as a folder (a frames case) or a list of images (a multi-image case): DALI's CPU decoder
    gives the same visual tokens and greedy ids as Pillow."""
    from conftest import Case, load_model
    from vxl_fast.engine import compress
    from vxl_fast.video.inputs import visual_input

    path = next(p for sub in ("cases", "multi-image-cases") for p in (GOLDEN / sub).glob(f"{case}.json"))
    golden = Case(path)
    model = load_model(golden.checkpoint)
    several = golden.meta["source"] == "images"
    frames = golden.images() if several else list(golden.frames().numpy())
    for fmt in ("png", "jpg"):
        folder = tmp_path / fmt
        folder.mkdir()
        paths = [folder / f"{k}.{fmt}" for k in range(len(frames))]
        for p, f in zip(paths, frames):
            Image.fromarray(f).save(p, **({"quality": 90} if fmt == "jpg" else {}))
        visual = {"images": paths} if several else {"video": folder}
        outs = [model.generate(**visual, decoder=decoder, **golden.text_kwargs(),
                               compression_ratio=golden.meta["compression_ratio"],
                               max_new_tokens=golden.meta["max_new_tokens"]) for decoder in ("cpu", "dali")]
        assert outs[0].token_ids == outs[1].token_ids
        tokens = [compress.visual_tokens(model.runner, visual_input(model.config, VisualRequest(**visual, decoder=d)))
                  for d in ("cpu", "dali")]
        assert torch.equal(tokens[0], tokens[1])
        if fmt == "png":
            assert outs[1].token_ids == golden.meta["output_ids"]
