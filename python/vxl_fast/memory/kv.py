"""Static KV buffers, allocated once per request: the cache (kept slots plus room for the window
being compressed) and the small stage of that window's VST keys and values.

A window being compressed (a video's, or the pending window a question runs) writes its rows'
K/V in the cache after the kept slots; its rows sit there until ``kv_compact`` writes the staged
VSTs over the first of those slots, their keys RoPE'd at their final positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def slot_bytes(layers: int, kv_heads: int, head_dim: int, itemsize: int) -> int:
    """Bytes of one KV slot over all layers, K and V: 2 · layers · Hkv · d · itemsize."""
    return 2 * layers * kv_heads * head_dim * itemsize


@dataclass
class KVCache:
    """Kept K/V of every layer. K is stored after RoPE, at its final slot's position.

    k, v: [layers, Hkv, capacity, d]; ``length`` slots are kept; ``capacity`` includes room for
    the largest window's rows after them.
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
        layers, heads, _, d = self.k.shape
        return slot_bytes(layers, heads, d, self.k.element_size())

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
class VstStage:
    """The keys (before RoPE) and values of one window's VSTs, one layer at a time.

    k, v: [Hkv, max_vsts, d] (see the module docstring for where the window's rows sit).
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
