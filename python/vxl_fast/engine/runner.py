"""The runner: the one object that owns the device, the RoPE table and the KV buffers, and runs
a text step, a visual window step and a decode step of the language model."""

from __future__ import annotations

import hashlib
import threading
import warnings

import numpy as np
import torch

from .. import ops
from ..config import VideoXLConfig
from ..device import itemsize
from ..layers.attention import select_backend
from ..layers.kernels import select_kernels
from ..layers.rotary import RotaryTable
from ..layers.step import WindowStep
from ..memory.budget import MemoryBudget, budget, check_fits
from ..memory.kv import KVCache, WindowScratch
from ..memory.plan import VisualWindow, max_window_rows
from ..models.videoxl import VideoXLModel
from .stats import record_step

VISION_BATCH = 16  # frames (or image tiles) encoded together at most


class Runner:
    """Runs a :class:`VideoXLModel` on one device in one dtype.

    Device work is serialised by ``lock`` (re-entrant): calls from several threads run one at a
    time and give the results sequential calls give.
    """

    def __init__(self, config: VideoXLConfig, model: VideoXLModel, device: torch.device, dtype: torch.dtype):
        self.config, self.model, self.device, self.dtype = config, model, device, dtype
        llm = config.llm
        self.rope = RotaryTable(llm.head_dim, llm.rope_theta, llm.max_position_embeddings, device)
        self.attention = select_backend(device, dtype)
        # NOTE: chosen once, here: the fused ops (norms, MLP gate, text-step RoPE + K/V write) on
        # CUDA, PyTorch's code on the CPU.
        model.llm.kernels = select_kernels(device)
        # NOTE: upstream draws per-window ratios (several configured ratios) from one
        # default_rng(42) created at load and never reset; keeping it per model reproduces that.
        self.ratio_rng = np.random.default_rng(42)
        self.lock = threading.RLock()
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies the weights (names, shapes, exact sums) and configuration."""
        if self._fingerprint is None:
            h = hashlib.sha256(repr(self.config).encode())
            with torch.no_grad():
                for name, p in self.model.named_parameters():
                    h.update(f"{name}{tuple(p.shape)}".encode())
                    h.update(np.float64(torch.sum(p, dtype=torch.float64).item()).tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    @property
    def weight_bytes(self) -> int:
        return sum(p.nbytes for p in self.model.parameters())

    # ------------------------------------------------------------------ memory
    def budget(self, capacity: int, rows: int) -> MemoryBudget:
        return budget(self.config, capacity, rows, self.weight_bytes, itemsize(self.dtype), VISION_BATCH)

    def allocate(self, capacity: int, ratios: tuple[int, ...]) -> tuple[KVCache, WindowScratch]:
        """The KV cache for ``capacity`` slots and the scratch of the largest window, allocated once,
        after checking that they fit."""
        llm = self.config.llm
        rows = max_window_rows(self.config.beacon.window, ratios)
        need = self.budget(capacity, rows)
        check_fits(need.total - need.weights, self.device, f"the KV cache for {capacity} slots plus work buffers")
        self._ensure_positions(capacity)
        cache = KVCache.allocate(llm.num_layers, llm.num_kv_heads, capacity, llm.head_dim, self.dtype, self.device)
        scratch = WindowScratch.allocate(llm.num_kv_heads, rows, llm.head_dim, self.dtype, self.device)
        return cache, scratch

    def grow(self, cache: KVCache, capacity: int) -> KVCache:
        """A larger cache holding ``cache``'s slots (live input or a question outgrowing the plan)."""
        check_fits(2 * capacity * cache.slot_bytes, self.device, f"growing the KV cache to {capacity} slots")
        self._ensure_positions(capacity)
        return cache.grown(capacity)

    def _ensure_positions(self, capacity: int) -> None:
        if capacity > self.rope.cos.shape[0]:
            warnings.warn(f"this request uses positions up to {capacity}, beyond the model's "
                          f"{self.config.llm.max_position_embeddings}; RoPE is extrapolated unscaled, "
                          "as upstream does")
            self.rope.ensure(capacity)

    # ------------------------------------------------------------------ steps
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Preprocessed frames [B, 3, S, S] → visual tokens [B·tokens_per_frame, D]."""
        return self.model.encode_frames(pixels.to(self.device, self.dtype))

    def run_text(self, cache: KVCache, ids: list[int], kind: str, trace: list | None) -> torch.Tensor | None:
        """Text rows (sink, question, a decoded token) whose K/V are kept; their last hidden states."""
        if not ids:
            return None
        n = len(ids)
        start = cache.reserve(n)
        x = self.model.llm.embed_tokens(torch.tensor(ids).to(self.device, non_blocking=True))
        hidden = self.model.llm(x, WindowStep(cache, self.rope, self.attention, n, start))
        cache.length += n
        record_step(trace, cache, kind, n, 0, start, None, None)
        return hidden

    def run_visual(self, cache: KVCache, scratch: WindowScratch, raw: torch.Tensor, w: VisualWindow,
                   trace: list | None) -> None:
        """One visual window: raw tokens [n_raw, D] with VSTs interleaved; only the VSTs' K/V stay."""
        vst = self.model.llm.beacon_embed_tokens.weight[0]
        x = ops.interleave_vst(raw, vst, w.ratio, w.carry)
        nb, vst_index = ops.vst_slots(w.n_raw, w.ratio, w.carry)
        assert nb == w.n_vst and x.shape[0] == w.rows, "window plan and interleave disagree"
        vst_index = vst_index.to(self.device, non_blocking=True)
        raw_index = ops.raw_slots(w.n_raw, w.ratio, w.carry).to(self.device, non_blocking=True)
        start = cache.reserve(nb)
        self.model.llm(x, WindowStep(cache, self.rope, self.attention, w.rows, start, scratch, vst_index, raw_index))
        cache.length += nb
        record_step(trace, cache, "visual", w.n_raw, nb, start, w.ratio, w.carry)

    def decode(self, cache: KVCache, token: int) -> torch.Tensor:
        """One generated token fed back: the next token's fp32 logits [vocab]."""
        return self.logits(self.run_text(cache, [token], "decode", None))[0]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.logits(hidden)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
