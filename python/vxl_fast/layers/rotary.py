"""Rotary position embedding (Qwen2's half-split form)."""

from __future__ import annotations

import torch


class RotaryTable:
    """fp32 ``cos``/``sin`` tables ``[P, d]`` for positions ``0..P-1``, grown on demand.

    ``cos[p] = cat(cos(p·f), cos(p·f))`` with ``f_i = theta^(-2i/d)``, computed on the CPU in fp32
    exactly as upstream builds its table at load time, then moved to ``device``.
    """

    def __init__(self, head_dim: int, theta: float, length: int, device: torch.device):
        self.head_dim, self.theta, self.device = head_dim, theta, device
        self.cos = self.sin = torch.empty(0, head_dim)
        self.ensure(length)

    def ensure(self, length: int) -> None:
        if length <= self.cos.shape[0]:
            return
        d = self.head_dim
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        t = torch.arange(length, dtype=torch.int64).float()
        emb = torch.cat([torch.outer(t, inv_freq)] * 2, dim=-1)
        self.cos = emb.cos().to(self.device)
        self.sin = emb.sin().to(self.device)
