"""Normalisation layers whose residual add is fused into the norm (``add``)."""

from __future__ import annotations

import torch
from torch import nn

from .. import ops


class RMSNorm(nn.Module):
    """Qwen2 RMSNorm (``ops.rms_norm``: fp32 statistics, normalised value rounded before the weight)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x, self.weight, self.eps)

    def add(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(RMSNorm(h), h) with h = residual + x (``ops.fused_add_rms_norm``); h = x when there is no
        residual yet (the first layer's input)."""
        if residual is None:
            return self(x), x
        return ops.fused_add_rms_norm(x, residual, self.weight, self.eps)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters), and ``add``: the residual add before it, fused in."""

    def add(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(LayerNorm(h), h) with h = residual + x (``ops.add_layer_norm``); h = x when there is no
        residual yet (the first layer's input)."""
        if residual is None:
            return self(x), x
        return ops.add_layer_norm(x, residual, self.weight, self.bias, self.eps)
