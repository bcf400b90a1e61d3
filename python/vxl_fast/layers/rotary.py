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


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x·cos + rotate_half(x)·sin`` in fp32, cast once to x's dtype.

    x: [..., n, d]; cos, sin: [n, d] (fp32 rows of a :class:`RotaryTable`).
    """
    xf = x.float()
    half = xf.shape[-1] // 2
    rotated = torch.cat([-xf[..., half:], xf[..., :half]], dim=-1)
    return (xf * cos + rotated * sin).to(x.dtype)


def rope_kv_write(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                  cache_k: torch.Tensor, cache_v: torch.Tensor, start: int) -> torch.Tensor:
    """A step's rows i at position ``start + i``: keys RoPE'd and values written into the
    cache (cache_k, cache_v: [Hkv, C, d]); returns the RoPE'd queries [H, n, d].

    q: [n, H, d]; k, v: [n, Hkv, d]; cos, sin: the full fp32 tables of a :class:`RotaryTable`.
    """
    n = q.shape[0]
    c, s = cos[start:start + n], sin[start:start + n]
    cache_k[:, start:start + n] = apply_rope(k.transpose(0, 1), c, s)
    cache_v[:, start:start + n] = v.transpose(0, 1)
    return apply_rope(q.transpose(0, 1), c, s)
