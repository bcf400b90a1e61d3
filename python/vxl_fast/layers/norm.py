"""Normalisation layers."""

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2 RMSNorm: ``weight * (x / sqrt(mean(x²) + eps))`` with the statistics in fp32.

    x: [..., D]; weight: [D]. The normalised value is cast back to x's dtype before the
    weight multiply, as upstream does.
    """
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder's residual add, then RMSNorm: ``h = residual + x`` in x's dtype; returns
    ``(rms_norm(h, weight, eps), h)``."""
    h = residual + x
    return rms_norm(h, weight, eps), h


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The CLIP encoder's residual add, then LayerNorm (``nn.LayerNorm``'s, statistics in fp32 for
    16-bit inputs): ``h = residual + x`` in x's dtype; returns ``(F.layer_norm(h), h)``."""
    h = residual + x
    return F.layer_norm(h, (h.shape[-1],), weight, bias, eps), h


def embed_layer_norm(patches: torch.Tensor, cls: torch.Tensor, pos: torch.Tensor, weight: torch.Tensor,
                     bias: torch.Tensor, eps: float) -> torch.Tensor:
    """CLIP's embeddings, then its pre-LayerNorm: the class token [C] before each frame's patch
    rows [F, P, C], the position embedding [P + 1, C] added (in the dtype); returns
    ``F.layer_norm`` of that [F, P + 1, C]."""
    x = torch.cat([cls.expand(patches.shape[0], 1, -1), patches], dim=1) + pos
    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
