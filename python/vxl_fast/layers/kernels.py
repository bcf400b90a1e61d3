"""The decoder's elementwise steps (residual add + RMSNorm, the SiLU-gated product, a window's
RoPE and K/V cache write), the vision tower's (the embeddings + pre-LayerNorm, residual add +
LayerNorm, fc1's bias + quick GELU),
and the seams where their implementation is chosen once per device, by the runner, as attention's
is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import ops
from .mlp import linear_bias_quick_gelu, linear_quick_gelu, silu_and_mul
from .norm import add_layer_norm, add_rms_norm, embed_layer_norm
from .rotary import rope_kv_write


@dataclass(frozen=True)
class LayerKernels:
    """add_rms_norm(x, residual, weight, eps) -> (RMSNorm(residual + x), residual + x);
    silu_and_mul(gate_up [..., 2F]) -> silu(gate) * up [..., F];
    rope_kv_write(q, k, v, cos, sin, cache_k, cache_v, start) -> RoPE'd q [H, n, d], with RoPE'd
    k and v written into the cache at start .. start + n - 1 (``layers.rotary.rope_kv_write``)."""

    name: str
    add_rms_norm: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
    silu_and_mul: Callable[[torch.Tensor], torch.Tensor]
    rope_kv_write: Callable[..., torch.Tensor]


# The PyTorch composition: the CPU path, whose bits the goldens record.
TORCH = LayerKernels("torch", add_rms_norm, silu_and_mul, rope_kv_write)
# One fused kernel each (vxl_fast.ops: the compiled op where it is built and allowed by
# VXL_KERNELS and its self-check, else its reference twin, which is the PyTorch composition).
FUSED = LayerKernels("fused", ops.fused_add_rms_norm, ops.silu_and_mul, ops.rope_kv_write)


def select_kernels(device: torch.device) -> LayerKernels:
    """FUSED on CUDA; TORCH elsewhere (the CPU keeps the PyTorch code, so the goldens hold)."""
    return FUSED if device.type == "cuda" else TORCH


@dataclass(frozen=True)
class VisionKernels:
    """embed_layer_norm(patches, cls, pos, weight, bias, eps) -> LayerNorm(cat(cls, patches) + pos),
    the embeddings and pre_layrnorm (``layers.norm.embed_layer_norm``);
    add_layer_norm(x, residual, weight, bias, eps) -> (LayerNorm(residual + x), residual + x);
    linear_quick_gelu(x, weight, bias) -> quick_gelu(x @ weight.T + bias), fc1 and its activation."""

    name: str
    embed_layer_norm: Callable[..., torch.Tensor]
    add_layer_norm: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    linear_quick_gelu: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


# The PyTorch composition: the CPU path, whose bits the goldens record.
TORCH_VISION = VisionKernels("torch", embed_layer_norm, add_layer_norm, linear_quick_gelu)
# One fused op each after the GEMMs (vxl_fast.ops, or its reference twin where the op does not run).
FUSED_VISION = VisionKernels("fused", ops.clip_embed_layer_norm, ops.add_layer_norm, linear_bias_quick_gelu)


def select_vision_kernels(device: torch.device) -> VisionKernels:
    """FUSED_VISION on CUDA; TORCH_VISION elsewhere (the CPU keeps the PyTorch code, so the goldens
    hold)."""
    return FUSED_VISION if device.type == "cuda" else TORCH_VISION
