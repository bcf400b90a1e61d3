"""Upstream's ``anyres`` single-image path: pick a grid, resize and pad, cut into tiles."""

from __future__ import annotations

import math

from PIL import Image


def select_best_resolution(size: tuple[int, int], pinpoints) -> tuple[int, int]:
    """The (w, h) pinpoint with the largest effective resolution, then the least waste.

    Exact ties keep the first pinpoint in config order.
    """
    w0, h0 = size
    best, best_eff, best_waste = None, -1, math.inf
    for w, h in pinpoints:
        s = min(w / w0, h / h0)
        eff = min(int(w0 * s) * int(h0 * s), w0 * h0)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (w, h), eff, waste
    return best


def resize_and_pad(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Fit ``image`` into ``target`` (w, h) keeping its aspect, centred on black."""
    tw, th = target
    w0, h0 = image.size
    scale_w, scale_h = tw / w0, th / h0  # NOTE: this evaluation order decides the ceil, as upstream
    if scale_w < scale_h:
        nw, nh = tw, min(math.ceil(h0 * scale_w), th)
    else:
        nw, nh = min(math.ceil(w0 * scale_h), tw), th
    canvas = Image.new("RGB", (tw, th), (0, 0, 0))
    canvas.paste(image.resize((nw, nh)), ((tw - nw) // 2, (th - nh) // 2))
    return canvas


def anyres_tiles(image: Image.Image, pinpoints, tile: int) -> list[Image.Image]:
    """The grid tiles, row-major. Upstream also encodes a resized "base" tile, then discards it
    (``unires``), so it is not produced here."""
    if not pinpoints:
        raise ValueError("the checkpoint has no image_grid_pinpoints; the image path needs them")
    canvas = resize_and_pad(image, select_best_resolution(image.size, pinpoints))
    w, h = canvas.size
    return [canvas.crop((x, y, x + tile, y + tile)) for y in range(0, h, tile) for x in range(0, w, tile)]
