"""Static KV buffers: the persistent cache and the per-window scratch, allocated once per request."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    """Kept K/V of every layer. K is stored after RoPE, at its final slot's position.

    k, v: [layers, Hkv, capacity, d]; ``length`` slots are filled.
    """

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @classmethod
    def allocate(cls, layers: int, kv_heads: int, capacity: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device) -> "KVCache":
        shape = (layers, kv_heads, capacity, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device))

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes

    @property
    def slot_bytes(self) -> int:
        """Bytes one slot takes over all layers, K and V."""
        return self.nbytes // self.capacity

    def grown(self, capacity: int) -> "KVCache":
        """A new cache of ``capacity`` slots holding this one's filled slots."""
        layers, heads, _, d = self.k.shape
        bigger = KVCache.allocate(layers, heads, capacity, d, self.k.dtype, self.k.device)
        bigger.k[:, :, :self.length] = self.k[:, :, :self.length]
        bigger.v[:, :, :self.length] = self.v[:, :, :self.length]
        bigger.length = self.length
        return bigger

    def view(self) -> "KVCache":
        """The same buffers with a length of their own (questions write after the kept slots)."""
        return KVCache(self.k, self.v, self.length)

    def reserve(self, n: int) -> int:
        """Check that ``n`` more slots fit; return the first of them."""
        if self.length + n > self.capacity:
            raise RuntimeError(
                f"KV cache overflow: {self.length} + {n} slots exceed the planned {self.capacity}")
        return self.length


@dataclass
class WindowScratch:
    """Pre-RoPE keys and values of the window being compressed, reused by every layer and window.

    k, v: [Hkv, rows, d]. After each layer, ``kv_discard`` moves the VST rows into the cache and
    wipes the buffer.
    """

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def allocate(cls, kv_heads: int, rows: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> "WindowScratch":
        shape = (kv_heads, rows, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device))

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
