"""vxl_fast::clip_preprocess (C++/CUDA) and clip_preprocess_ref against the Pillow path of
``vxl_fast.video.preprocess`` and transformers' CLIPImageProcessor: equal to the bit.
CUDA cases skip without a GPU."""

from __future__ import annotations

import functools
import re
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN, Case, needs_cuda, needs_ext
from op_cases import DEVICES, IMPLS, opcheck, rejects
from vxl_fast import VideoXLConfig, _ext, ops
from vxl_fast.ops.pil_resize import bicubic_taps, pil_resize_ref, resized_shortest_edge, vertical_first
from vxl_fast.video.preprocess import clip_preprocess_image, patch_rows



@functools.cache
def _cfg():
    """The golden checkpoint's preprocessing values (read on first use, not at import)."""
    return VideoXLConfig.from_dir(GOLDEN / "tiny-videoxl").vision

LOW = [torch.bfloat16, torch.float16]
# (H, W): no resize, downscales, upscales, 1 pixel, extreme aspect ratios (7 x 4000 becomes
# 336 x 192000), one pixel off the target, primes, and tall frames that Pillow 13 resizes
# vertically first (889 x 354, 1500 x 500, 1921 x 700).
SIZES = [(336, 336), (180, 320), (360, 480), (240, 320), (1080, 1920), (1, 1), (7, 4000), (4000, 7),
         (337, 336), (335, 500), (2, 2), (97, 211), (336, 500), (600, 336), (720, 1280), (3, 5),
         (1280, 720), (889, 354), (1500, 500), (1921, 700)]
CONTENTS = ("random", "gradient", "checker", "zeros", "full")


def _content(kind: str, h: int, w: int, seed: int) -> torch.Tensor:
    """One uint8 [h, w, 3] frame."""
    y = torch.arange(h)[:, None].expand(h, w)
    x = torch.arange(w)[None, :].expand(h, w)
    if kind == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=g)
    if kind == "gradient":
        chans = (x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 255 // max(w + h - 2, 1))
    elif kind == "checker":  # periods 1, 3 and 7: the bicubic overshoot is clipped at 0 and 255
        chans = tuple((x // k + y // k) % 2 * 255 for k in (1, 3, 7))
    else:
        return torch.full((h, w, 3), 0 if kind == "zeros" else 255, dtype=torch.uint8)
    return torch.stack(chans, dim=-1).to(torch.uint8)


def _frames(h: int, w: int) -> torch.Tensor:
    """uint8 [T, h, w, 3], one frame per content (two for the huge resizes: Pillow is slow there)."""
    out_h, out_w = resized_shortest_edge(h, w, 336)
    kinds = CONTENTS if out_h * out_w < 20_000_000 else ("random", "checker")
    return torch.stack([_content(k, h, w, seed=h * 1009 + w + i) for i, k in enumerate(kinds)])


def _pillow(frames: torch.Tensor, cfg=None) -> torch.Tensor:
    """The upstream path: vxl_fast.video.preprocess.clip_preprocess_image, frame by frame."""
    cfg = cfg or _cfg()
    return torch.stack([clip_preprocess_image(Image.fromarray(f.numpy()), cfg) for f in frames.cpu()])


@functools.lru_cache(maxsize=None)
def _case(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    frames = _frames(h, w)
    return frames, _pillow(frames)


def _run(impl: str, frames: torch.Tensor, dtype: torch.dtype = torch.float32, cfg=None, patch: int = 0
         ) -> torch.Tensor:
    cfg = cfg or _cfg()
    args = (frames, cfg.size, cfg.crop_size, list(cfg.image_mean), list(cfg.image_std))
    if impl == "ext":
        return torch.ops.vxl_fast.clip_preprocess(*args, dtype, patch)
    return ops.clip_preprocess_ref(*args, dtype, patch=patch)


def _run_out(impl: str, frames, out, cfg=None, patch: int = 0):
    cfg = cfg or _cfg()
    args = (frames, cfg.size, cfg.crop_size, list(cfg.image_mean), list(cfg.image_std))
    if impl == "ext":
        torch.ops.vxl_fast.clip_preprocess_out(*args, out, patch)
    else:
        ops.clip_preprocess_ref(*args, out=out, patch=patch)


def test_extension_loaded():
    assert _ext.available, f"vxl_fast._C failed to load: {_ext.error}"


# ---- against Pillow and transformers ----------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("h, w", SIZES)
def test_matches_pillow(device, impl, h, w):
    frames, expected = _case(h, w)
    out = _run(impl, frames.to(device))
    assert out.shape == (frames.shape[0], 3, 336, 336) and out.dtype == torch.float32
    assert out.device == frames.to(device).device and out.is_contiguous()
    assert torch.equal(out.cpu(), expected)



@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("h, w", [s for s in SIZES if s not in ((7, 4000), (4000, 7))])
def test_matches_hf_clip_image_processor(hf_processor, impl, h, w):
    frames, _ = _case(h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # NOTE: channels_last, else transformers takes a 1 x 1 x 3 frame for channels-first.
        theirs = hf_processor(images=list(frames.numpy()), return_tensors="pt",
                              input_data_format="channels_last")["pixel_values"]
    assert torch.equal(_run(impl, frames), theirs)


@pytest.mark.parametrize("impl", IMPLS)
def test_random_sizes_match_pillow(impl):
    g = torch.Generator().manual_seed(7)
    for _ in range(24):
        h, w = (int(v) for v in torch.randint(1, 900, (2,), generator=g))
        frames = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, generator=g)
        assert torch.equal(_run(impl, frames), _pillow(frames)), (h, w)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size, crop", [(224, 224), (256, 224), (336, 1), (400, 335), (17, 5)])
@pytest.mark.parametrize("h, w", [(180, 320), (336, 336), (97, 211), (256, 256), (1000, 30)])
def test_other_sizes_and_crops_match_pillow(impl, size, crop, h, w):
    # NOTE: a stand-in: VisionConfig insists on crop_size == the tower's image size.
    cfg = types.SimpleNamespace(size=size, crop_size=crop, resample=_cfg().resample,
                                image_mean=(0.5, 0.25, 0.125), image_std=(0.2, 0.3, 0.7))
    frames = _frames(h, w)[:2]
    assert torch.equal(_run(impl, frames, cfg=cfg), _pillow(frames, cfg))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("h, w", [(180, 320), (336, 336), (97, 211)])
def test_strided_frames(device, impl, h, w):
    frames, expected = _case(h, w)
    t = frames.shape[0]
    # Frames inside a bigger video (rows and columns around), and RGBX pixels (pixel stride 4).
    big = torch.zeros(t, h + 3, w + 5, 3, dtype=torch.uint8)
    big[:, 1:1 + h, 2:2 + w] = frames
    rgbx = torch.zeros(t, h, w, 4, dtype=torch.uint8)
    rgbx[..., :3] = frames
    frame_major = frames.transpose(0, 1).contiguous().transpose(0, 1)
    for view in (big[:, 1:1 + h, 2:2 + w], rgbx[..., :3], frame_major):
        view = view.to(device)
        assert not view.is_contiguous()
        assert torch.equal(_run(impl, view).cpu(), expected)


# ---- dtypes and the out variant --------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_is_the_float32_cast(device, impl, dtype):
    for h, w in ((180, 320), (336, 336)):
        frames, expected = _case(h, w)
        out = _run(impl, frames.to(device), dtype=dtype)
        assert out.dtype == dtype and out.shape == expected.shape
        assert torch.equal(out.cpu(), expected.to(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, *LOW])
def test_out_writes_a_strided_slice_only(device, impl, dtype):
    frames, expected = _case(180, 320)
    t, sentinel = frames.shape[0], 7.0  # no output value comes near 7
    buffer = torch.full((t + 3, 4, 340, 345), sentinel, dtype=dtype, device=device)
    out = buffer[1:1 + t, 1:4, 2:338, 5:341]
    assert not out.is_contiguous() and out.stride(-1) == 1
    _run_out(impl, frames.to(device), out)
    assert torch.equal(out.cpu(), expected.to(dtype))
    rest = buffer.clone()
    rest[1:1 + t, 1:4, 2:338, 5:341] = sentinel
    assert torch.all(rest == sentinel)


@pytest.mark.parametrize("device", DEVICES)
def test_wrapper_kernel_reference_and_out(device):
    frames, expected = _case(97, 211)
    frames = frames.to(device)
    args = (frames, _cfg().size, _cfg().crop_size, _cfg().image_mean, _cfg().image_std)
    assert torch.equal(ops.clip_preprocess(*args).cpu(), expected)
    with ops.reference_only():
        bf16 = ops.clip_preprocess(*args, dtype=torch.bfloat16)
        assert torch.equal(bf16.cpu(), expected.to(torch.bfloat16))
    buffer = torch.zeros(frames.shape[0] + 1, 3, 336, 336, device=device)
    assert ops.clip_preprocess(*args, out=buffer[1:]) is not None
    assert torch.equal(buffer[1:].cpu(), expected) and torch.count_nonzero(buffer[0]) == 0


# ---- patch rows: the patch embedding's input, straight from the frames ----------------------------

# no resize, horizontal pass first, vertical pass first (Pillow 13), upscale, 1 pixel
PATCH_SIZES = [(336, 336), (180, 320), (889, 354), (97, 211), (1, 1)]


def _permuted(pixels: torch.Tensor, p: int) -> torch.Tensor:
    t, _, s, _ = pixels.shape
    g = s // p
    return pixels.view(t, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(t, g * g, 3 * p * p)


def test_patch_sizes_cover_both_pass_orders():
    orders = {vertical_first(h, w, *resized_shortest_edge(h, w, 336)) for h, w in PATCH_SIZES
              if resized_shortest_edge(h, w, 336) != (h, w)}
    assert orders == {False, True}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("h, w", PATCH_SIZES)
def test_patch_rows_are_the_permuted_pixels(device, impl, dtype, h, w):
    """patch=14 at CLIP ViT-L/14-336's crop: [T, 576, 588], the default output permuted, to the bit."""
    frames, expected = _case(h, w)
    out = _run(impl, frames.to(device), dtype, patch=14)
    assert out.shape == (frames.shape[0], 24 * 24, 3 * 14 * 14) and out.dtype == dtype and out.is_contiguous()
    assert torch.equal(out, _permuted(_run(impl, frames.to(device), dtype), 14))
    assert torch.equal(out.cpu(), _permuted(expected.to(dtype), 14))
    assert torch.equal(out.cpu(), patch_rows(expected, 14).to(dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("patch", [1, 2, 5, 10, 20])
def test_patch_rows_of_other_patch_sizes(device, patch):
    """A 20-pixel crop of the 24-pixel short side (both passes) in patches of every divisor tried,
    fp32 and bf16, the op against its twin and the permuted pixels; and into a strided out."""
    g = torch.Generator().manual_seed(patch)
    frames = torch.randint(0, 256, (3, 37, 53, 3), generator=g, dtype=torch.uint8).to(device)
    args = (frames, 24, 20, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    rows, width = (20 // patch) ** 2, 3 * patch * patch
    for dtype in (torch.float32, torch.bfloat16):
        want = _permuted(ops.clip_preprocess_ref(*args, dtype), patch)
        assert torch.equal(ops.clip_preprocess_ref(*args, dtype, patch=patch), want)
        if _ext.available:
            assert torch.equal(torch.ops.vxl_fast.clip_preprocess(*args, dtype, patch), want)
            buffer = torch.full((3, rows, width + 3), 7.0, dtype=dtype, device=device)
            torch.ops.vxl_fast.clip_preprocess_out(*args, buffer[..., 1:1 + width], patch)
            assert torch.equal(buffer[..., 1:1 + width], want)
            assert bool((buffer[..., 0] == 7).all() and (buffer[..., 1 + width:] == 7).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
def test_patch_rows_into_a_slice_of_a_buffer(device, impl):
    frames, expected = _case(180, 320)
    t = frames.shape[0]
    buffer = torch.zeros(t + 2, 576, 588, dtype=torch.bfloat16, device=device)
    _run_out(impl, frames.to(device), buffer[1:1 + t], patch=14)
    assert torch.equal(buffer[1:1 + t].cpu(), _permuted(expected.to(torch.bfloat16), 14))
    assert torch.count_nonzero(buffer[0]) == 0 and torch.count_nonzero(buffer[1 + t:]) == 0


@pytest.mark.parametrize("device", DEVICES)
def test_wrapper_patch_rows(device):
    frames, expected = _case(97, 211)
    args = (frames.to(device), _cfg().size, _cfg().crop_size, _cfg().image_mean, _cfg().image_std)
    assert torch.equal(ops.clip_preprocess(*args, patch=14).cpu(), _permuted(expected, 14))
    with ops.reference_only():
        assert torch.equal(ops.clip_preprocess(*args, dtype=torch.bfloat16, patch=14).cpu(),
                           _permuted(expected.to(torch.bfloat16), 14))


# ---- golden cases ------------------------------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
def test_golden_t002_pixel_values(device, impl):
    case = Case(GOLDEN / "cases" / "t002_r4_320x180.json")
    frames = case.frames()
    assert frames.shape == (2, 180, 320, 3)
    assert torch.equal(_run(impl, frames.to(device)).cpu(), case.tensors["pixel_values"])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", IMPLS)
def test_golden_m_t023_frames(device, impl):
    case = Case(GOLDEN / "medium-cases" / "m_t023_r12_480x360.json")
    frames = case.frames()
    assert frames.shape == (23, 360, 480, 3)
    assert torch.equal(_run(impl, frames.to(device)).cpu(), _pillow(frames))


# ---- the weights and the order of the passes -----------------------------------------------------

def test_sizes_cover_both_pass_orders():
    orders = {vertical_first(h, w, *resized_shortest_edge(h, w, 336)) for h, w in SIZES
              if resized_shortest_edge(h, w, 336) != (h, w)}
    assert orders == {False, True}


def _pillow_resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.array(Image.fromarray(f.numpy()).resize((width, height),
                                                                                   Image.Resampling.BICUBIC)))
                        for f in frames])


def test_pil_resize_ref_matches_pillow_in_both_orders():
    g = torch.Generator().manual_seed(3)
    # (H, W, out_h, out_w): in_h - out_h equal to, one above and one below 2 (in_w - out_w), ...
    cases = [(100, 100, 10, 55), (100, 100, 10, 56), (100, 100, 10, 54), (60, 60, 40, 50), (60, 60, 40, 51),
             (200, 100, 20, 10), (200, 100, 20, 11), (889, 354, 843, 336), (100, 100, 120, 90),
             (100, 100, 90, 120), (1, 1, 5, 3), (5, 3, 1, 1), (40, 30, 40, 17), (40, 30, 17, 30)]
    cases += [tuple(int(v) for v in torch.randint(1, 300, (4,), generator=g)) for _ in range(60)]
    orders = set()
    for h, w, out_h, out_w in cases:
        frames = torch.randint(0, 256, (1, h, w, 3), dtype=torch.uint8, generator=g)
        assert torch.equal(pil_resize_ref(frames, out_h, out_w), _pillow_resize(frames, out_h, out_w)), \
            (h, w, out_h, out_w)
        orders.add(vertical_first(h, w, out_h, out_w))
    assert orders == {False, True}


def test_identity_pass_and_weight_sums():
    assert bicubic_taps(336, 336, 5, 3) == (1, (5, 6, 7), (1 << 22,) * 3)
    for in_size, out_size in ((720, 336), (1280, 597), (180, 336), (7, 336), (1, 336), (4000, 336)):
        taps, start, weights = bicubic_taps(in_size, out_size, 0, out_size)
        for i in range(out_size):
            row = weights[i * taps:(i + 1) * taps]
            # Weights that sum to 1 in float64, each rounded: within taps / 2 of 2^22.
            assert abs(sum(row) - (1 << 22)) <= taps // 2 + 1, (in_size, out_size, i)
            assert 0 <= start[i] < in_size


# ---- torch.library.opcheck ---------------------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("h, w", [(20, 31), (16, 16)])
def test_opcheck(device, h, w):
    frames = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, device=device)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    opcheck("clip_preprocess", frames, 16, 12, mean, std, torch.bfloat16)
    out = torch.zeros(3, 3, 12, 14, device=device)[:2, :, :, 1:13]
    opcheck("clip_preprocess_out", frames, 16, 12, mean, std, out)
    opcheck("clip_preprocess", frames, 16, 12, mean, std, torch.float16, 4)
    rows = torch.zeros(2, 9, 50, device=device)[..., 1:49]
    opcheck("clip_preprocess_out", frames, 16, 12, mean, std, rows, 4)


# ---- bad inputs ----------------------------------------------------------------------------------

def _args(**override):
    args = dict(frames=torch.zeros(2, 20, 30, 3, dtype=torch.uint8), size=16, crop=12,
                mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2], dtype=torch.float32, patch=0)
    args.update(override)
    return args


ERRORS = [
    (dict(frames=torch.zeros(20, 30, 3, dtype=torch.uint8)), ValueError,
     "clip_preprocess: frames must be a 4-D tensor [T, H, W, 3], got 3 dimensions."),
    (dict(frames=torch.zeros(2, 20, 30, 3)), TypeError,
     "clip_preprocess: frames must be torch.uint8, got torch.float32."),
    (dict(frames=torch.zeros(2, 20, 30, 4, dtype=torch.uint8)), ValueError,
     "clip_preprocess: frames must have 3 channels (RGB) in the last dimension, got 4."),
    (dict(frames=torch.zeros(0, 20, 30, 3, dtype=torch.uint8)), ValueError,
     "clip_preprocess: frames must hold at least one frame, got T = 0."),
    (dict(frames=torch.zeros(2, 0, 30, 3, dtype=torch.uint8)), ValueError,
     "clip_preprocess: frames must have a non-empty spatial size, got H = 0, W = 30."),
    (dict(frames=torch.zeros(2, 20, 3, 30, dtype=torch.uint8).transpose(2, 3)), ValueError,
     "clip_preprocess: frames must have a contiguous last dimension (stride 1), got stride 30."),
    (dict(crop=0), ValueError, "clip_preprocess: crop must be at least 1, got 0."),
    (dict(size=11), ValueError, "clip_preprocess: size must be at least crop (12), got 11."),
    (dict(mean=[0.5, 0.5]), ValueError,
     "clip_preprocess: mean must have 3 values (one per channel), got 2."),
    (dict(std=[0.2] * 4), ValueError, "clip_preprocess: std must have 3 values (one per channel), got 4."),
    (dict(dtype=torch.float64), TypeError,
     "clip_preprocess: dtype must be torch.float32, torch.float16 or torch.bfloat16, got torch.float64."),
    (dict(patch=-1), ValueError, "clip_preprocess: patch must be non-negative (0: no patch rows), got -1."),
    (dict(patch=5), ValueError, "clip_preprocess: crop (12) must be a multiple of patch, got patch = 5."),
]

OUT_ERRORS = [
    (torch.zeros(2, 3, 12), ValueError, "clip_preprocess: out must be a 4-D tensor [T, 3, crop, crop], "
     "got 3 dimensions."),
    (torch.zeros(2, 3, 12, 12, dtype=torch.float64), TypeError,
     "clip_preprocess: out must be torch.float32, torch.float16 or torch.bfloat16, got torch.float64."),
    (torch.zeros(2, 3, 12, 13), ValueError,
     "clip_preprocess: out must have shape [T, 3, crop, crop] = [2, 3, 12, 12], got [2, 3, 12, 13]."),
    (torch.zeros(3, 3, 12, 12), ValueError,
     "clip_preprocess: out must have shape [T, 3, crop, crop] = [2, 3, 12, 12], got [3, 3, 12, 12]."),
    (torch.zeros(2, 3, 12, 12).transpose(2, 3), ValueError,
     "clip_preprocess: out must have a contiguous last dimension (stride 1), got stride 12."),
]

# with patch 4: out [T, 9, 48]
PATCH_OUT_ERRORS = [
    (torch.zeros(2, 3, 12, 12), ValueError,
     "clip_preprocess: out must be a 3-D tensor [T, (crop / patch)^2, 3 * patch^2], got 4 dimensions."),
    (torch.zeros(2, 9, 48, dtype=torch.float64), TypeError,
     "clip_preprocess: out must be torch.float32, torch.float16 or torch.bfloat16, got torch.float64."),
    (torch.zeros(2, 9, 12), ValueError,
     "clip_preprocess: out must have shape [T, (crop / patch)^2, 3 * patch^2] = [2, 9, 48], got [2, 9, 12]."),
    (torch.zeros(2, 48, 9).transpose(1, 2), ValueError,
     "clip_preprocess: out must have a contiguous last dimension (stride 1), got stride 9."),
]


def _call(impl: str, args: dict):
    if impl == "ext":
        return torch.ops.vxl_fast.clip_preprocess(*args.values())
    return ops.clip_preprocess_ref(**args)


test_rejects = rejects(_call, _args, ERRORS)


def _call_out(impl: str, args: dict, out: torch.Tensor, patch: int = 0) -> None:
    if impl == "ext":
        torch.ops.vxl_fast.clip_preprocess_out(*args.values(), out, patch)
    else:
        ops.clip_preprocess_ref(*args.values(), out=out, patch=patch)


def _out_args() -> dict:
    args = _args()
    del args["dtype"], args["patch"]
    return args


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("out, error, message", OUT_ERRORS)
def test_out_rejects(impl, out, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _call_out(impl, _out_args(), out)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("out, error, message", PATCH_OUT_ERRORS)
def test_patch_out_rejects(impl, out, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _call_out(impl, _out_args(), out, patch=4)


@needs_cuda
@pytest.mark.parametrize("impl", IMPLS)
def test_out_rejects_another_device(impl):
    out = torch.zeros(2, 3, 12, 12, device="cuda")
    with pytest.raises(ValueError, match=re.escape(
            "clip_preprocess: out must be on the same device as frames (cpu), got cuda:0.")):
        _call_out(impl, _out_args(), out)
