"""Static KV buffers, allocated once per request: the cache (kept slots plus room for the window
being compressed) and the small stage of that window's VST keys and values."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class KVCache:
    """Kept K/V of every layer. K is stored after RoPE, at its final slot's position.

    k, v: [layers, Hkv, capacity, d]; ``length`` slots are kept. A window being compressed writes
    its rows' K/V in place after them, so ``capacity`` includes room for the largest window.
    """

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0
    # what the engine keeps for these buffers (its decode step), shared by every view of them and
    # freed with them
    attached: dict = field(default_factory=dict, repr=False, compare=False)

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
        return KVCache(self.k, self.v, self.length, self.attached)

    def reserve(self, n: int) -> int:
        """Check that ``n`` more slots fit; return the first of them."""
        if self.length + n > self.capacity:
            raise RuntimeError(
                f"KV cache overflow: {self.length} + {n} slots exceed the planned {self.capacity}")
        return self.length


@dataclass
class VstStage:
    """The keys (before RoPE) and values of one window's VSTs, one layer at a time.

    k, v: [Hkv, max_vsts, d]. The window's rows sit in the cache after the kept slots while it is
    compressed; ``kv_compact`` then writes the staged VSTs over the first of those slots, their
    keys RoPE'd at their final positions.
    """

    k: torch.Tensor
    v: torch.Tensor

    @classmethod
    def allocate(cls, kv_heads: int, vsts: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device) -> "VstStage":
        shape = (kv_heads, vsts, head_dim)
        return cls(torch.zeros(shape, dtype=dtype, device=device),
                   torch.zeros(shape, dtype=dtype, device=device))

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes
