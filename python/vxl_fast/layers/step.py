"""One forward step of the language model over a window, and what it does to the KV memory.

A step is either *text* (sink, question, generated tokens: K/V kept at their slots) or *visual*
(raw visual rows with VSTs interleaved: only the VSTs' K/V are kept). Either way the window's
rows take positions ``start .. start + rows - 1`` and write their K (after RoPE) and V into the
cache slots of those positions, straight after the kept slots; every query then attends to the
contiguous prefix ``[0, start + rows)`` with bottom-right causality. After a visual step the VSTs'
K/V (keys re-RoPE'd at their final positions) are compacted to ``[start, start + nb)`` and the
rest of the window's slots is left to be overwritten by the next window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..memory.kv import KVCache, VstStage
from .attention import AttentionBackend
from .kernels import LayerKernels
from .rotary import RotaryTable


@dataclass
class WindowStep:
    cache: KVCache
    rope: RotaryTable
    attention: AttentionBackend
    rows: int
    start: int  # kv slots kept before this window (= its first row's position)
    stage: VstStage | None = None  # set for visual windows
    vst_index: torch.Tensor | None = None  # [nb] VST row indices (visual windows)
    raw_index: torch.Tensor | None = None  # [n_raw] raw row indices (visual windows)
    vst_projection: str = "gather"  # how a visual window's q/k/v are projected (models.qwen2)

    @property
    def is_visual(self) -> bool:
        return self.vst_index is not None

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               kernels: LayerKernels) -> torch.Tensor:
        """q: [rows, H, d]; k, v: [rows, Hkv, d] (before RoPE). Returns [rows, H·d]."""
        n, m = self.rows, self.start
        ck, cv = self.cache.k[layer], self.cache.v[layer]
        if self.is_visual:  # the VSTs' keys before RoPE, for their final slots
            self._stage(k.index_select(0, self.vst_index).transpose(0, 1),
                        v.index_select(0, self.vst_index).transpose(0, 1))
        qh = kernels.rope_kv_write(q, k, v, self.rope.cos, self.rope.sin, ck, cv, m)
        out = self.attention(qh, ck[:, :m + n], cv[:, :m + n])
        if self.is_visual:
            self._compact(layer)
        return out.reshape(n, -1)

    def keep(self, layer: int, k_vst: torch.Tensor, v_vst: torch.Tensor) -> None:
        """Keep the VSTs' K/V [nb, Hkv, d] (before RoPE) at their final slots without attending
        (a visual window's last layer), through the same ``kv_compact`` as ``attend``."""
        self._stage(k_vst.transpose(0, 1), v_vst.transpose(0, 1))
        self._compact(layer)

    def _stage(self, k_vst: torch.Tensor, v_vst: torch.Tensor) -> None:
        nb = k_vst.shape[1]
        self.stage.k[:, :nb] = k_vst
        self.stage.v[:, :nb] = v_vst

    def _compact(self, layer: int) -> None:
        nb = self.vst_index.shape[0]
        ops.kv_compact(self.cache.k[layer], self.cache.v[layer], self.stage.k[:, :nb], self.stage.v[:, :nb],
                       self.rope.cos, self.rope.sin, self.start)
