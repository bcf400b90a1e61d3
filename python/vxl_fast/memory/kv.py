"""Static KV buffers: the persistent cache and the per-window scratch, allocated once per request."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MemoryPlanError


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


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when unknown)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(needed: int, device: torch.device, what: str) -> None:
    free = available_bytes(device)
    if free is not None and needed > free:
        raise MemoryPlanError(
            f"{what} needs {needed / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB is free on "
            f"{device}; use fewer frames or a higher compression ratio")
