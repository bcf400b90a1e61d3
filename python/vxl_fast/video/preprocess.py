"""CLIP image preprocessing, bit-exact with upstream's ``CLIPImageProcessor`` (Pillow resize)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .. import ops
from ..config import VisionConfig
from ..ops.pil_resize import resized_shortest_edge


def check_frames(frames) -> torch.Tensor:
    """Validate video frames: uint8 [T, H, W, 3] (tensor or ndarray) → CPU uint8 tensor."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a uint8 tensor or array [T, H, W, 3], got {type(frames).__name__}")
    if frames.dtype != torch.uint8:
        raise TypeError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.dim() != 4:
        raise ValueError(f"frames must have shape [T, H, W, 3], got {list(frames.shape)}")
    if frames.shape[-1] != 3:
        raise ValueError(f"frames must have 3 channels (RGB) in the last dim, got {frames.shape[-1]}")
    if frames.shape[0] == 0:
        raise ValueError("frames is empty: zero frames given")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise ValueError(f"frames have an empty spatial size {list(frames.shape[1:3])}")
    return frames


def resize_shortest_edge(image: Image.Image, size: int, resample: int) -> Image.Image:
    """Resize so the short side is ``size``; the long side is ``int(size · long / short)``."""
    new_h, new_w = resized_shortest_edge(image.size[1], image.size[0], size)
    return image.resize((new_w, new_h), resample=resample)


def clip_preprocess_image(image: Image.Image, cfg: VisionConfig) -> torch.Tensor:
    """One RGB PIL image → float32 [3, crop, crop]: resize, centre crop, /255, normalise."""
    image = resize_shortest_edge(image, cfg.size, cfg.resample)
    arr = np.asarray(image)
    h, w = arr.shape[:2]
    c = cfg.crop_size
    top, left = (h - c) // 2, (w - c) // 2
    arr = arr[top:top + c, left:left + c]
    x = (arr.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.asarray(cfg.image_mean, dtype=np.float32)) / np.asarray(cfg.image_std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def patch_rows(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Pixel values [B, 3, S, S] → the patch embedding's input, patch rows [B, (S / p)², 3p²]: row
    (y // p) * (S / p) + x // p holds that patch's [3, p, p] (the im2col of the stride-p conv)."""
    b, c, s, _ = pixels.shape
    g = s // patch
    return pixels.reshape(b, c, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, c * patch * patch)


def clip_preprocess(frames: torch.Tensor, cfg: VisionConfig, dtype: torch.dtype = torch.float32,
                    patch: int = 0) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] → pixel values [T, 3, crop, crop] in ``dtype`` (computed in
    float32, cast once) on the frames' device; with ``patch`` p > 0, the same values as patch rows
    [T, (crop / p)², 3p²] (``patch_rows``), the vision tower's input. Through ``ops.clip_preprocess``
    (Pillow's resampler reproduced bit for bit, by the compiled op or its reference twin)."""
    return ops.clip_preprocess(frames, cfg.size, cfg.crop_size, cfg.image_mean, cfg.image_std, dtype, patch=patch)
