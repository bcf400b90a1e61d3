"""The ``mlp2x_gelu`` projector fused with the 2×2 average pooling of the patch grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Projector(nn.Module):
    """Patch features [B, g·g, C] → visual tokens [B, (g/s)², D], row-major per frame.

    Upstream computes ``pool(linear_2(gelu(linear_1(x))))``. Pooling is an average and
    ``linear_2`` is affine, so ``linear_2(pool(gelu(linear_1(x))))`` is the same function; it
    runs the larger second matmul on s² times fewer rows.
    """

    def __init__(self, in_features: int, hidden: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_features, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, feats: torch.Tensor, stride: int) -> torch.Tensor:
        b, p, _ = feats.shape
        g = int(round(p ** 0.5))
        h = F.gelu(self.linear_1(feats))  # exact (erf) GELU
        h = h.view(b, g, g, -1).permute(0, 3, 1, 2)
        h = F.avg_pool2d(h, stride, stride).flatten(2).transpose(1, 2)
        return self.linear_2(h)
