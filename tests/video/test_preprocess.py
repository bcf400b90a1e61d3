"""CLIP preprocessing against transformers' CLIPImageProcessor (the upstream processor): through the
compiled op and through its reference twin (the path without the extension), and the image path
(Pillow, ``clip_preprocess_image``) against the frames' path."""

from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np
import pytest
import torch

from conftest import GOLDEN
from vxl_fast import VideoXLConfig
from vxl_fast.video.preprocess import clip_preprocess, patch_rows



@functools.cache
def _cfg():
    """The golden checkpoint's preprocessing values (read on first use, not at import)."""
    return VideoXLConfig.from_dir(GOLDEN / "tiny-videoxl").vision
SIZES = [(336, 336), (180, 320), (360, 480), (336, 500), (600, 336), (7, 401), (1000, 30), (337, 336)]


def _frames(h, w, n=2, seed=0):
    g = torch.Generator().manual_seed(seed + h * 7 + w)
    return torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=g)



@pytest.mark.parametrize("path", ["op", "no extension"])
@pytest.mark.parametrize("h, w", SIZES)
def test_matches_hf_clip_image_processor(hf_processor, h, w, path, monkeypatch):
    from vxl_fast import _ext, ops

    frames = _frames(h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = hf_processor(images=list(frames.numpy()), return_tensors="pt")["pixel_values"]
    if path == "no extension":
        monkeypatch.setattr(_ext, "available", False)
        with pytest.warns(RuntimeWarning, match="fall back to the pure-PyTorch reference"), \
                ops.using(ops.KernelPolicy()):
            assert torch.equal(clip_preprocess(frames, _cfg()), theirs)
    else:
        assert torch.equal(clip_preprocess(frames, _cfg()), theirs)


@pytest.mark.parametrize("h, w", [(336, 336), (336, 500), (777, 336)])
def test_frames_path_equals_the_image_path(h, w):
    from PIL import Image

    from vxl_fast.video.preprocess import clip_preprocess_image

    frames = _frames(h, w, n=3)
    pil = torch.stack([clip_preprocess_image(Image.fromarray(f.numpy()), _cfg()) for f in frames])
    assert torch.equal(clip_preprocess(frames, _cfg()), pil)


def test_values_are_normalised():
    white = torch.full((1, 336, 336, 3), 255, dtype=torch.uint8)
    px = clip_preprocess(white, _cfg())
    expected = (1.0 - np.array(_cfg().image_mean, dtype=np.float32)) / np.array(_cfg().image_std, dtype=np.float32)
    assert torch.allclose(px[0, :, 0, 0], torch.from_numpy(expected))


def test_patch_rows_are_the_patch_embeddings_im2col():
    """patch_rows puts the stride-p convolution's input patches in rows: one matmul with the conv
    weight is the conv."""
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, 28, 28, generator=g, dtype=torch.float64)
    weight = torch.randn(5, 3, 7, 7, generator=g, dtype=torch.float64)
    conv = torch.nn.functional.conv2d(pixels, weight, stride=7).flatten(2).transpose(1, 2)
    rows = patch_rows(pixels, 7)
    assert rows.shape == (2, 16, 3 * 49)
    torch.testing.assert_close(rows @ weight.view(5, -1).t(), conv)


@pytest.mark.parametrize("path", ["op", "no extension"])
@pytest.mark.parametrize("h, w", [(336, 336), (180, 320)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_patch_rows_are_the_pixels_permuted(h, w, path, dtype, monkeypatch):
    """With patch=p both paths give patch_rows of their pixel values, bit for bit."""
    from vxl_fast import ops

    frames = _frames(h, w)
    p = _cfg().patch_size
    with ops.reference_only() if path == "no extension" else contextlib.nullcontext():
        got = clip_preprocess(frames, _cfg(), dtype, patch=p)
        assert got.is_contiguous() and got.dtype == dtype
        assert torch.equal(got, patch_rows(clip_preprocess(frames, _cfg(), dtype), p))
