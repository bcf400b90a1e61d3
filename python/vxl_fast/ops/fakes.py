"""Fake (meta) kernels of the ``torch.ops.vxl_fast`` schemas: output shapes and dtypes only, for
``torch.compile``, meta tensors and the fake-device rehearsal. Registered by ``ops/__init__.py``."""

from __future__ import annotations

import torch

from .checks import clip_preprocess_shape


def rope_kv_write(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  cache_k: torch.Tensor, cache_v: torch.Tensor, start: int) -> torch.Tensor:
    return q.new_empty((q.shape[1], q.shape[0], q.shape[2]))


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return x.new_empty(x.shape), x.new_empty(x.shape)


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return x.new_empty(x.shape), x.new_empty(x.shape)


def clip_embed_layer_norm(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor,
                          bias: torch.Tensor, eps: float) -> torch.Tensor:
    f, p, c = patches.shape
    return patches.new_empty((f, p + 1, c))


def bias_quick_gelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((*x.shape[:-1], x.shape[-1] // 2))


def clip_preprocess(frames: torch.Tensor, size: int, crop: int, mean: list[float], std: list[float],
                    dtype: torch.dtype, patch: int = 0) -> torch.Tensor:
    return frames.new_empty(clip_preprocess_shape(frames.shape[0], crop, patch), dtype=dtype)


def clip_preprocess_out(frames: torch.Tensor, size: int, crop: int, mean: list[float], std: list[float],
                        out: torch.Tensor, patch: int = 0) -> None:
    return None


def interleave_vst(raw: torch.Tensor, vst: torch.Tensor, ratio: int, carry: int) -> torch.Tensor:
    n_raw, d = raw.shape
    return raw.new_empty((n_raw + (n_raw + carry) // ratio, d))


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, matrix: int,
                  full_range: bool) -> torch.Tensor:
    return y.new_empty((*y.shape, 3))


def kv_compact(cache_k: torch.Tensor, cache_v: torch.Tensor, vst_k: torch.Tensor, vst_v: torch.Tensor,
               cos: torch.Tensor, sin: torch.Tensor, dst: int) -> None:
    return None
