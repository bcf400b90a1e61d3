"""Pillow's bicubic resampling weights, as ``libImaging/Resample.c`` computes them.

Pillow resizes an 8-bit image in two separable passes (horizontal, then vertical, each with a
uint8 image in between). For one pass from ``in_size`` to ``out_size`` samples it computes, in
float64, for every output sample ``i``:

    scale = in_size / out_size,  filterscale = max(scale, 1),  support = 2 * filterscale
    center = (i + 0.5) * scale
    start = max(int(center - support + 0.5), 0),  stop = min(int(center + support + 0.5), in_size)
    w[j] = bicubic((start + j - center + 0.5) / filterscale) / sum(...)    for start + j < stop

(bicubic with a = -0.5; ``int`` truncates toward zero), then turns each weight into 22-bit fixed
point, ``int(w * 2**22 ± 0.5)`` (the sign of w), and sums ``pixel * weight`` in int32 starting at
``2**21``; the sample is ``clamp(sum >> 22, 0, 255)``. A pass whose size does not change is skipped.
The two passes run horizontal first, except when ``vertical_first`` says otherwise (Pillow >= 13);
the order changes the result, since the image in between is rounded to uint8.

This module mirrors that float64 arithmetic operation for operation, so its integer weights equal
Pillow's (and those of the C++ header ``csrc/include/vxl_fast/pil_resample.h``), and runs the
passes in torch (``pil_resize_ref``, ``pil_resize_window``) with the same integer sums.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

PRECISION_BITS = 22  # 32 - 8 - 2: 8 bits of result, 2 for overflow, 1 for the sign
BICUBIC_SUPPORT = 2.0


def resized_shortest_edge(height: int, width: int, size: int) -> tuple[int, int]:
    """(out_height, out_width) after resizing the short side to ``size``; the long side becomes
    ``int(size * long / short)`` (true division, truncated), as ``CLIPImageProcessor`` does."""
    if width <= height:
        return int(size * height / width), size
    return size, int(size * width / height)


def vertical_first(in_height: int, in_width: int, out_height: int, out_width: int) -> bool:
    """Whether Pillow 13 runs the vertical pass first: when the height shrinks by more than twice
    as many pixels as the width does (python-pillow/Pillow#9549; this exact rule was read off
    Pillow 13.0.0's output, ``tests/test_clip_preprocess.py`` checks it). Pillow <= 12 always
    runs the horizontal pass first."""
    return out_height < in_height and in_height - out_height > 2 * (in_width - out_width)


def _bicubic(x: float) -> float:
    a = -0.5
    if x < 0.0:
        x = -x
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=64)
def bicubic_taps(in_size: int, out_size: int, first: int, count: int) -> tuple[int, tuple[int, ...],
                                                                              tuple[int, ...]]:
    """Pillow's fixed-point weights for output samples ``first .. first + count - 1`` of a pass
    from ``in_size`` to ``out_size`` samples.

    Returns (taps, start, weights): start[i] is the first input sample of output ``first + i``
    and weights[i * taps + j] (int, zero-padded to ``taps`` per output) the weight of input
    ``start[i] + j``; every start[i] + j with a non-zero weight is < in_size. When
    ``in_size == out_size`` Pillow skips the pass: taps = 1, start[i] = first + i, weight 2**22.
    """
    if in_size == out_size:
        return 1, tuple(range(first, first + count)), (1 << PRECISION_BITS,) * count
    # NOTE: Pillow passes the source box as C floats; (in1 - in0) is a float, then a double.
    scale = float(np.float32(in_size)) / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    ksize = math.ceil(support) * 2 + 1
    inv_filterscale = 1.0 / filterscale
    one = float(1 << PRECISION_BITS)
    starts, weights = [], []
    for xx in range(first, first + count):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - xmin
        k = [_bicubic((x + xmin - center + 0.5) * inv_filterscale) for x in range(n)]
        ww = 0.0
        for w in k:
            ww += w
        if ww != 0.0:
            k = [w / ww for w in k]
        fixed = [int(-0.5 + w * one) if w < 0 else int(0.5 + w * one) for w in k]
        starts.append(xmin)
        weights.extend(fixed + [0] * (ksize - n))
    return ksize, tuple(starts), tuple(weights)


def _resample_pass(x: torch.Tensor, dim: int, origin: int, in_size: int, out_size: int, first: int,
                   count: int) -> torch.Tensor:
    """One of Pillow's 8-bit passes along ``dim`` of int32 pixels ``x`` (input sample i at index
    i - origin), for output samples first .. first + count - 1. Returns int32 values in [0, 255],
    ``count`` of them along ``dim``. A pass of unchanged size copies its samples."""
    taps, start, weights = bicubic_taps(in_size, out_size, first, count)
    index = torch.tensor(start, device=x.device)[:, None] - origin + torch.arange(taps, device=x.device)
    # NOTE: a zero-padded tap can point past the last sample; any in-range index does.
    index = index.clamp(max=x.shape[dim] - 1)
    weight = torch.tensor(weights, dtype=torch.int32, device=x.device).view(count, taps)
    shape = [1] * x.dim()
    shape[dim] = count
    acc = torch.full([count if d == dim else n for d, n in enumerate(x.shape)], 1 << (PRECISION_BITS - 1),
                     dtype=torch.int32, device=x.device)
    for j in range(taps):
        acc += x.index_select(dim, index[:, j]) * weight[:, j].view(shape)
    return (acc >> PRECISION_BITS).clamp_(0, 255)


def pil_resize_window(frames: torch.Tensor, out_height: int, out_width: int, top: int, left: int,
                      rows: int, cols: int) -> torch.Tensor:
    """Rows top .. top + rows - 1 and columns left .. left + cols - 1 of Pillow's bicubic resize
    of uint8 frames [T, H, W, 3] to out_height x out_width, as int32 [T, rows, cols, 3]. Only the
    source rows and columns that the window reads are resampled."""
    _, h, w, _ = frames.shape
    v_taps, v_start, _ = bicubic_taps(h, out_height, top, rows)
    h_taps, h_start, _ = bicubic_taps(w, out_width, left, cols)
    y0, x0 = v_start[0], h_start[0]
    x = frames[:, y0:min(h, v_start[-1] + v_taps), x0:min(w, h_start[-1] + h_taps)].to(torch.int32)
    if vertical_first(h, w, out_height, out_width):
        x = _resample_pass(x, 1, y0, h, out_height, top, rows)
        return _resample_pass(x, 2, x0, w, out_width, left, cols)
    x = _resample_pass(x, 2, x0, w, out_width, left, cols)
    return _resample_pass(x, 1, y0, h, out_height, top, rows)


def pil_resize_ref(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``Image.resize((width, height), BICUBIC)`` of each RGB frame of uint8 [T, H, W, 3], in
    torch on the frames' device: uint8 [T, height, width, 3], equal to Pillow 13's to the bit."""
    return pil_resize_window(frames, height, width, 0, 0, height, width).to(torch.uint8)
