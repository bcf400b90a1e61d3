"""Normalisation layers."""

import torch


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
