"""One forward step of the language model over a window, and what it does to the KV memory.

A step is either *text* (sink, question, generated tokens: K/V kept at their slots) or *visual*
(raw visual rows with VSTs interleaved: only the VSTs' K/V are kept). Either way the window's
rows take positions ``start .. start + rows - 1`` and write their K (after RoPE) and V into the
cache slots of those positions, straight after the kept slots; every query then attends to the
contiguous prefix ``[0, start + rows)`` with bottom-right causality. After a visual step the VSTs'
K/V (keys re-RoPE'd at their final positions) are compacted to ``[start, start + nb)`` and the
rest of the window's slots is left to be overwritten by the next window.

The models see a step only through the :class:`Step` protocol (:class:`VisualStep` for what only a
visual window does); steps hold tensor views (cache buffers, RoPE tables), never memory objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .. import ops
from ..runtime import VST_PROJECTIONS
from .attention import AttentionBackend
from .measure import cuda_seconds


class Step(Protocol):
    """What a decoder layer asks of the step it runs in."""

    rows: int
    is_visual: bool

    def project(self, base: nn.Linear, beacon: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        """The fused q/k/v [rows, width] of the step's hidden rows h [rows, D]."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q: [rows, H, d]; k, v: [rows, Hkv, d] (before RoPE) → [rows, H·d]; K/V kept as the step says."""


class VisualStep(Step, Protocol):
    """A visual window: its VST rows, and their K/V kept without attending (the last layer)."""

    vst_index: torch.Tensor

    def keep(self, layer: int, k_vst: torch.Tensor, v_vst: torch.Tensor) -> None:
        """Keep the VSTs' K/V [nb, Hkv, d] (before RoPE) at their final slots."""


def project_window(base: nn.Linear, beacon: nn.Linear, h: torch.Tensor, vst_index: torch.Tensor,
                   raw_index: torch.Tensor, how: str) -> torch.Tensor:
    """A visual window's fused q/k/v [n, width]: raw rows through ``base``, VST rows through ``beacon``.
    ``how`` (``runtime.VST_PROJECTIONS``): "gather" runs each projection on its own rows (two GEMMs over
    gathered rows), "overwrite" runs ``base`` over every row and writes the VST rows' own results over
    it (one more GEMM row per VST, no gather of the raw rows), "grouped" runs both as one grouped GEMM
    (``torch._grouped_mm``) over the rows gathered raw first, VSTs after, and scatters them back."""
    if how == "grouped":
        return _project_grouped(base, beacon, h, vst_index, raw_index)
    if how == "overwrite":
        qkv = base(h)
    else:
        qkv = h.new_empty(h.shape[0], base.out_features)
        qkv[raw_index] = base(h[raw_index])
    qkv[vst_index] = beacon(h[vst_index])
    return qkv


def _project_grouped(base: nn.Linear, beacon: nn.Linear, h: torch.Tensor, vst_index: torch.Tensor,
                     raw_index: torch.Tensor) -> torch.Tensor:
    order, n_raw = torch.cat((raw_index, vst_index)), raw_index.shape[0]
    ends = torch.tensor([n_raw, order.shape[0]], dtype=torch.int32, device=h.device)
    out = torch._grouped_mm(h[order], stacked_weight(base, beacon).transpose(1, 2), offs=ends)
    if base.bias is not None:
        out[:n_raw] += base.bias
        out[n_raw:] += beacon.bias
    qkv = torch.empty_like(out)
    qkv[order] = out
    return qkv


def stacked_weight(base: nn.Linear, beacon: nn.Linear) -> torch.Tensor:
    """The two projections' weights as one [2, out, in] tensor: a view where ``share_weights`` laid
    them out side by side, else a copy."""
    w0, w1 = base.weight, beacon.weight
    if (w0.is_contiguous() and w1.is_contiguous() and w0.shape == w1.shape
            and w1.data_ptr() == w0.data_ptr() + w0.numel() * w0.element_size()):
        return w0.as_strided((2, *w0.shape), (w0.numel(), *w0.stride()))
    return torch.stack((w0, w1))


def share_weights(base: nn.Linear, beacon: nn.Linear) -> None:
    """Lays the two weights out side by side in one storage (no extra memory once the old ones are
    freed), so that ``stacked_weight`` is a view: what "grouped" needs to run without a copy."""
    both = torch.stack((base.weight.detach(), beacon.weight.detach()))
    base.weight.data, beacon.weight.data = both[0], both[1]


def grouped_available(device: torch.device) -> bool:
    """Whether "grouped" joins the timed choice: torch has ``_grouped_mm`` and the device is a CUDA
    GPU of compute capability 9.0 (CUTLASS's grouped GEMM; the CPU runs it only in tests)."""
    return (device.type == "cuda" and hasattr(torch, "_grouped_mm")
            and torch.cuda.get_device_capability(device) == (9, 0))


@dataclass(frozen=True)
class Slots:
    """A visual window's VST rows [nb] and raw rows [n_raw] (device int64), and how to project them."""

    vst_index: torch.Tensor
    raw_index: torch.Tensor
    projection: str = "gather"


@dataclass
class WindowStep:
    """A text or visual window over the cache buffers ``cache_k``, ``cache_v`` ([layers, Hkv, C, d]);
    a visual one (``slots`` set) stages its VSTs' K/V in ``stage_k``, ``stage_v`` ([Hkv, max nb, d])."""

    cache_k: torch.Tensor
    cache_v: torch.Tensor
    cos: torch.Tensor  # the RoPE table [P, d], fp32
    sin: torch.Tensor
    attention: AttentionBackend
    rows: int
    start: int  # kv slots kept before this window (= its first row's position)
    slots: Slots | None = None  # set for visual windows
    stage_k: torch.Tensor | None = None
    stage_v: torch.Tensor | None = None

    @property
    def is_visual(self) -> bool:
        return self.slots is not None

    @property
    def vst_index(self) -> torch.Tensor:
        return self.slots.vst_index

    def project(self, base: nn.Linear, beacon: nn.Linear, h: torch.Tensor) -> torch.Tensor:
        if not self.is_visual:
            return base(h)
        return project_window(base, beacon, h, self.slots.vst_index, self.slots.raw_index, self.slots.projection)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        n, m = self.rows, self.start
        ck, cv = self.cache_k[layer], self.cache_v[layer]
        if self.is_visual:  # the VSTs' keys before RoPE, for their final slots
            self._stage(k.index_select(0, self.vst_index).transpose(0, 1),
                        v.index_select(0, self.vst_index).transpose(0, 1))
        qh = ops.rope_kv_write(q, k, v, self.cos, self.sin, ck, cv, m)
        out = self.attention(qh, ck[:, :m + n], cv[:, :m + n])
        if self.is_visual:
            self._compact(layer)
        return out.reshape(n, -1)

    def keep(self, layer: int, k_vst: torch.Tensor, v_vst: torch.Tensor) -> None:
        """Through the same ``kv_compact`` as ``attend``."""
        self._stage(k_vst.transpose(0, 1), v_vst.transpose(0, 1))
        self._compact(layer)

    def _stage(self, k_vst: torch.Tensor, v_vst: torch.Tensor) -> None:
        nb = k_vst.shape[1]
        self.stage_k[:, :nb] = k_vst
        self.stage_v[:, :nb] = v_vst

    def _compact(self, layer: int) -> None:
        nb = self.vst_index.shape[0]
        ops.kv_compact(self.cache_k[layer], self.cache_v[layer], self.stage_k[:, :nb], self.stage_v[:, :nb],
                       self.cos, self.sin, self.start)


def select_projection(base: nn.Linear, beacon: nn.Linear, window: int, device: torch.device,
                      dtype: torch.dtype, forced: str = "auto") -> str:
    """How visual windows project q/k/v (``project_window``): ``forced`` if not "auto"; on CUDA the
    fastest on a full window at ratio 16 (the released checkpoint's densest VSTs) of these
    projections (the first layer's), "grouped" a candidate where ``grouped_available`` (timed on
    the weights side by side; the caller lays out the others if it wins); else "gather"."""
    if forced != "auto":
        return forced
    if device.type != "cuda":
        return "gather"
    nb, vst_index = ops.vst_slots(window, 16, 0)
    raw_index = ops.raw_slots(window, 16, 0).to(device)
    h = torch.randn(window + nb, base.in_features, device=device, dtype=dtype)
    candidates = VST_PROJECTIONS if grouped_available(device) else tuple(c for c in VST_PROJECTIONS if c != "grouped")
    if "grouped" in candidates:
        share_weights(base, beacon)
    seconds = {}
    with torch.inference_mode():
        for how in candidates:
            seconds[how] = cuda_seconds(project_window, (base, beacon, h, vst_index.to(device), raw_index, how))
    return min(seconds, key=seconds.get)
