"""One forward step of the language model over a window, and what it does to the KV memory.

A step is either *text* (sink, question, generated tokens: K/V kept at their slots) or *visual*
(raw visual rows with VSTs interleaved: K/V staged in the scratch, only the VSTs kept).
Every query sees all kept slots plus the window's earlier rows; the window's rows take positions
``start .. start + rows - 1``. After a visual step only the VSTs' K/V remain, written after RoPE
at their final slots, and the scratch is wiped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ..memory.kv import KVCache, WindowScratch
from .attention import AttentionBackend
from .kernels import LayerKernels
from .rotary import RotaryTable, apply_rope


@dataclass
class WindowStep:
    cache: KVCache
    rope: RotaryTable
    attention: AttentionBackend
    rows: int
    start: int  # kv slots kept before this window (= its first row's position)
    scratch: WindowScratch | None = None  # set for visual windows
    vst_index: torch.Tensor | None = None  # [nb] VST row indices (visual windows)
    raw_index: torch.Tensor | None = None  # [n_raw] raw row indices (visual windows)

    @property
    def is_visual(self) -> bool:
        return self.vst_index is not None

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               kernels: LayerKernels) -> torch.Tensor:
        """q: [rows, H, d]; k, v: [rows, Hkv, d] (before RoPE). Returns [rows, H·d]."""
        n, m = self.rows, self.start
        ck, cv = self.cache.k[layer], self.cache.v[layer]
        if self.is_visual:
            cos = self.rope.cos[m:m + n]
            sin = self.rope.sin[m:m + n]
            qh = apply_rope(q.transpose(0, 1), cos, sin)
            kh, vh = k.transpose(0, 1), v.transpose(0, 1)
            sk, sv = self.scratch.k[:, :n], self.scratch.v[:, :n]
            sk.copy_(kh)
            sv.copy_(vh)
            out = self.attention(qh, ck[:, :m], cv[:, :m], apply_rope(kh, cos, sin), vh)
            ops.kv_discard(ck, cv, sk, sv, self.vst_index, self.rope.cos, self.rope.sin, m)
        else:
            qh = kernels.rope_kv_write(q, k, v, self.rope.cos, self.rope.sin, ck, cv, m)
            out = self.attention(qh, ck[:, :m], cv[:, :m], ck[:, m:m + n], cv[:, m:m + n])
        return out.reshape(n, -1)

    def keep(self, layer: int, k_vst: torch.Tensor, v_vst: torch.Tensor) -> None:
        """Keep the VSTs' K/V [nb, Hkv, d] (before RoPE) at their final slots without attending
        (a visual window's last layer), through the same ``kv_discard`` as ``attend``."""
        sk, sv = self.scratch.k[:, :self.rows], self.scratch.v[:, :self.rows]
        sk[:, self.vst_index] = k_vst.transpose(0, 1)
        sv[:, self.vst_index] = v_vst.transpose(0, 1)
        ops.kv_discard(self.cache.k[layer], self.cache.v[layer], sk, sv, self.vst_index, self.rope.cos,
                       self.rope.sin, self.start)
