"""vxl_fast::yuv420_to_rgb (C++/CUDA), yuv420_to_rgb_ref and nv12_to_rgb against PyAV's
``frame.to_ndarray(format="rgb24")`` (FFmpeg 8's swscale): equal to the byte on every frame of
even height, for every matrix and both ranges; on frames of odd height swscale interpolates the
chroma (its general scaler), which the op does not, and the video path keeps PyAV's pixels there.
CUDA cases skip without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="needs PyAV")

from conftest import GOLDEN, needs_ext  # noqa: E402
from op_cases import DEVICES, IMPLS, opcheck  # noqa: E402
from vxl_fast import _ext, ops  # noqa: E402
from vxl_fast.ops import YUV_MATRICES  # noqa: E402
from vxl_fast.video.yuv import MATRIX_OF_COLORSPACE, conversion, frame_conversion, frame_planes, frame_to_rgb  # noqa: E402
from yuv_videos import VIDEO_CASES, content, decoded, write_video  # noqa: E402

# AVColorSpace codes PyAV converts (each with its own matrix) and the two pixel formats
TAGS = sorted(MATRIX_OF_COLORSPACE)


def _convert(impl: str, y, u, v, matrix: str, full_range: bool) -> torch.Tensor:
    if impl == "ref":
        return ops.yuv420_to_rgb_ref(y, u, v, matrix, full_range)
    return torch.ops.vxl_fast.yuv420_to_rgb(y, u, v, list(YUV_MATRICES).index(matrix), full_range)


def _frame(y: np.ndarray, u: np.ndarray, v: np.ndarray, pix_fmt: str, colorspace: int,
           color_range: int = 0):
    """A PyAV frame holding these planes."""
    frame = av.VideoFrame(y.shape[1], y.shape[0], pix_fmt)
    for plane, values in zip(frame.planes, (y, u, v)):
        np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:values.shape[0], :values.shape[1]] = values
    frame.colorspace, frame.color_range = colorspace, color_range
    return frame


def _planes(rng, h: int, w: int):
    ch, cw = (h + 1) // 2, (w + 1) // 2
    return (rng.integers(0, 256, (h, w), dtype=np.uint8), rng.integers(0, 256, (ch, cw), dtype=np.uint8),
            rng.integers(0, 256, (ch, cw), dtype=np.uint8))


def _assert_same_bytes(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = np.argwhere(got != want)
    assert diff.size == 0, f"{what}: {len(diff)} bytes differ, first at {diff[0].tolist()}"


def _t(a: np.ndarray, device="cpu") -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))[None].to(device)


# ---- random planes through PyAV's own swscale call ------------------------------------------------

# even heights (the fast path), odd widths included, 1-pixel-wide, a partial SIMD block, 720p
EVEN_SIZES = [(2, 1), (2, 2), (2, 3), (4, 7), (16, 33), (8, 24), (6, 250), (288, 352), (720, 1280)]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("h, w", EVEN_SIZES)
def test_random_planes_equal_pyav_for_every_tag_and_range(impl, h, w):
    rng = np.random.default_rng(h * 1000 + w)
    for pix_fmt in ("yuv420p", "yuvj420p"):
        for colorspace in TAGS:
            for color_range in (0, 1, 2):
                y, u, v = _planes(rng, h, w)
                frame = _frame(y, u, v, pix_fmt, colorspace, color_range)
                conv = frame_conversion(frame)
                assert conv is not None
                got = _convert(impl, _t(y), _t(u), _t(v), conv.matrix, conv.full_range)[0].numpy()
                _assert_same_bytes(got, frame.to_ndarray(format="rgb24"),
                                   f"{impl} {h}x{w} {pix_fmt} colorspace={colorspace} range={color_range}")


def test_conversion_follows_swscale():
    assert conversion("yuv420p", 2, 0).matrix == "bt601" and not conversion("yuv420p", 2, 0).full_range
    assert conversion("yuv420p", 1, 1).matrix == "bt709"
    assert conversion("yuvj420p", 1, 0).full_range and conversion("yuv420p", 5, 2).full_range
    assert conversion("yuv444p", 1, 0) is None and conversion("nv12", 1, 0) is None
    assert conversion("yuv420p", 3, 0) is None  # a tag PyAV refuses to convert
    with pytest.raises(av.error.OSError):
        _frame(*_planes(np.random.default_rng(0), 4, 4), "yuv420p", 3).to_ndarray(format="rgb24")


@pytest.mark.parametrize("impl", IMPLS)
def test_odd_heights_differ_from_swscale_which_interpolates_chroma(impl):
    """What is true on frames of odd height: swscale's general scaler resamples the chroma rows
    (ceil(H/2) -> H), the op duplicates them. Grey frames (flat chroma) still agree to within 2
    (the general scaler's luma tables round differently); chroma detail differs more."""
    rng = np.random.default_rng(7)
    for h, w in ((3, 32), (7, 7), (17, 33)):
        y, u, v = _planes(rng, h, w)
        frame = _frame(y, u, v, "yuv420p", 2)
        assert frame_conversion(frame) is None  # the video path keeps swscale's pixels here
        got = _convert(impl, _t(y), _t(u), _t(v), "bt601", False)[0].numpy().astype(int)
        assert np.abs(got - frame.to_ndarray(format="rgb24").astype(int)).max() > 8
        flat = np.full_like(u, 128)
        grey = _frame(y, flat, flat, "yuv420p", 2).to_ndarray(format="rgb24").astype(int)
        got = _convert(impl, _t(y), _t(flat), _t(flat), "bt601", False)[0].numpy().astype(int)
        assert np.abs(got - grey).max() <= 2


# ---- encoded videos, decoded by PyAV --------------------------------------------------------------

@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("yuv")
    out = {}
    for name, codec, suffix, pix_fmt, (h, w), colorspace, color_range in VIDEO_CASES:
        frames = content(3, h, w, "smooth" if h * w > 4 else "random", seed=h * w)
        out[name] = write_video(folder / f"{name}.{suffix}", frames, codec, pix_fmt, colorspace, color_range)
    return out


@pytest.mark.parametrize("name", [c[0] for c in VIDEO_CASES])
def test_decoded_videos_equal_pyav_rgb24(videos, name):
    frames = decoded(videos[name])
    assert frames
    for i, frame in enumerate(frames):
        want = frame.to_ndarray(format="rgb24")
        _assert_same_bytes(frame_to_rgb(frame), want, f"{name} frame {i} (video path)")
        conv = frame_conversion(frame)
        if frame.height % 2:
            assert conv is None
            continue
        planes = [_t(p) for p in frame_planes(frame)]
        for impl in ("ext", "ref") if _ext.available else ("ref",):
            _assert_same_bytes(_convert(impl, *planes, conv.matrix, conv.full_range)[0].numpy(), want,
                               f"{name} frame {i} {impl}")


def test_the_tags_reach_the_decoded_frames(videos):
    """The cases really cover both matrices and both ranges."""
    seen = {name: frame_conversion(decoded(videos[name])[0]) for name in ("cif-601", "cif-709", "cif-jpeg-709",
                                                                           "cif-709-full-range-tag")}
    assert seen["cif-601"].matrix == "bt601" and not seen["cif-601"].full_range
    assert seen["cif-709"].matrix == "bt709" and not seen["cif-709"].full_range
    assert seen["cif-jpeg-709"].matrix == "bt709" and seen["cif-jpeg-709"].full_range
    assert seen["cif-709-full-range-tag"].full_range


def test_golden_video_equals_pyav_rgb24():
    frames = decoded(GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4")
    assert len(frames) == 500
    for i in range(0, 500, 7):
        frame = frames[i]
        conv = frame_conversion(frame)
        planes = [_t(p) for p in frame_planes(frame)]
        _assert_same_bytes(ops.yuv420_to_rgb(*planes, conv.matrix, conv.full_range)[0].numpy(),
                           frame.to_ndarray(format="rgb24"), f"golden frame {i}")


@pytest.mark.parametrize("device", DEVICES)
def test_nv12_and_batches(device):
    """NV12 (interleaved chroma, as NVDEC gives it) and a batch of frames give the same bytes."""
    rng = np.random.default_rng(3)
    ys, us, vs = zip(*(_planes(rng, 18, 33) for _ in range(3)))
    y, u, v = (torch.from_numpy(np.stack(p)).to(device) for p in (ys, us, vs))
    uv = torch.stack((u, v), dim=-1).flatten(-2)  # [T, 9, 34]
    batch = ops.nv12_to_rgb(y, uv, "bt709", True)
    assert batch.is_contiguous() and batch.shape == (3, 18, 33, 3) and batch.device.type == device
    for i in range(3):
        want = _frame(ys[i], us[i], vs[i], "yuv420p", 1, 2).to_ndarray(format="rgb24")
        _assert_same_bytes(batch[i].cpu().numpy(), want, f"frame {i}")
        assert torch.equal(ops.yuv420_to_rgb_ref(y[i:i + 1].cpu(), u[i:i + 1].cpu(), v[i:i + 1].cpu(), "bt709",
                                                 True)[0], batch[i].cpu())


# ---- torch.library.opcheck ---------------------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    y = torch.randint(0, 256, (2, 7, 9), dtype=torch.uint8, device=device)
    uv = torch.randint(0, 256, (2, 4, 10), dtype=torch.uint8, device=device)
    opcheck("yuv420_to_rgb", y, uv[..., 0::2], uv[..., 1::2], 1, True)
    u = torch.randint(0, 256, (2, 4, 5), dtype=torch.uint8, device=device)
    opcheck("yuv420_to_rgb", y, u, u, 0, False)


# ---- bad inputs ----------------------------------------------------------------------------------

def _args(**override):
    args = {"y": torch.zeros(1, 4, 6, dtype=torch.uint8), "u": torch.zeros(1, 2, 3, dtype=torch.uint8),
            "v": torch.zeros(1, 2, 3, dtype=torch.uint8)}
    args.update(override)
    return args


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("override, error, message", [
    ({"y": torch.zeros(4, 6, dtype=torch.uint8)}, ValueError, r"y must be a 3-D tensor \[T, H, W\], got 2 dimensions"),
    ({"y": torch.zeros(1, 4, 6)}, TypeError, "y must be torch.uint8, got torch.float32"),
    ({"u": torch.zeros(1, 2, 3, dtype=torch.int16)}, TypeError, "u must be torch.uint8, got torch.int16"),
    ({"y": torch.zeros(0, 4, 6, dtype=torch.uint8)}, ValueError, "y must hold at least one frame of at least one pixel"),
    ({"u": torch.zeros(1, 2, 4, dtype=torch.uint8)}, ValueError,
     r"u must have shape \[T, \(H \+ 1\) / 2, \(W \+ 1\) / 2\] = \[1, 2, 3\], got \[1, 2, 4\]"),
    ({"v": torch.zeros(1, 3, 3, dtype=torch.uint8)}, ValueError, r"v must have shape .* = \[1, 2, 3\], got \[1, 3, 3\]"),
])
def test_rejects(impl, override, error, message):
    a = _args(**override)
    with pytest.raises(error, match="yuv420_to_rgb: " + message):
        _convert(impl, a["y"], a["u"], a["v"], "bt601", False)


@needs_ext
def test_unknown_matrix_is_named():
    a = _args()
    with pytest.raises(ValueError, match=r"unknown matrix 'bt470'; use one of bt601, bt709, fcc, smpte240m, bt2020"):
        ops.yuv420_to_rgb(a["y"], a["u"], a["v"], "bt470")
    with pytest.raises(ValueError, match=r"matrix must lie in \[0, 5\)"):
        torch.ops.vxl_fast.yuv420_to_rgb(a["y"], a["u"], a["v"], 5, False)
    with pytest.raises(ValueError, match="nv12_to_rgb: uv must be a 3-D tensor .* with an even last dimension"):
        ops.nv12_to_rgb(a["y"], torch.zeros(1, 2, 5, dtype=torch.uint8))
