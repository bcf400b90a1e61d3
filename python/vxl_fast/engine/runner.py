"""The runner: the one object that owns the device, the RoPE table and the KV buffers, and runs
a text step, a visual window step and a decode step of the language model."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import warnings
from collections import OrderedDict

import numpy as np
import torch

from .. import ops
from ..config import VideoXLConfig
from ..device import itemsize
from ..layers.attention import select_attention
from ..layers.decode_step import decode_attention_masked, select_decode_attention
from ..layers.rotary import RotaryTable
from ..layers.step import Slots, WindowStep, select_projection, share_weights
from ..memory.budget import MemoryBudget, budget, check_fits, vision_batch
from ..memory.kv import KVCache, VstStage
from ..memory.plan import VisualWindow, max_window_rows, max_window_vsts
from ..models.videoxl import VideoXLModel
from ..runtime import RuntimeOptions
from ..video.inputs import Target
from .decode import CaptureFailed, StaticDecoder, capture_cuda_graph, check_decode
from .stats import record_step


class Runner:
    """Runs a :class:`VideoXLModel` on one device in one dtype, as its :class:`RuntimeOptions` say.

    Every implementation choice is made here, once, from those options: the window attention
    backend, the VST projection, the compiled ops' policy (``ops.KernelPolicy``, active inside
    ``session``) and the decode mode (``decode_mode``: "graph", "eager", "masked-graph" or
    "masked-eager" — the step in a CUDA graph or eager, with the fused decode attention or the masked
    reference; checked at the first decode, see ``check_decode``). Device work is serialised by
    ``lock`` (re-entrant): calls from several threads run one at a time and give the results
    sequential calls give.
    """

    def __init__(self, config: VideoXLConfig, model: VideoXLModel, device: torch.device, dtype: torch.dtype,
                 runtime: RuntimeOptions | None = None):
        self.config, self.model, self.device, self.dtype = config, model, device, dtype
        self.runtime = runtime = runtime or RuntimeOptions()
        llm = config.llm
        self.rope = RotaryTable(llm.head_dim, llm.rope_theta, llm.max_position_embeddings, device)
        self.kernels = ops.KernelPolicy(runtime.kernels)
        self.attention_name, self.attention = select_attention(device, dtype, llm.num_heads, llm.num_kv_heads,
                                                               llm.head_dim, runtime.attention)
        attn = model.llm.layers[0].self_attn
        self.vst_projection = select_projection(attn.qkv_proj, attn.beacon_qkv_proj, config.beacon.window, device,
                                                dtype, runtime.vst_projection)
        if self.vst_projection == "grouped":
            for layer in model.llm.layers:
                share_weights(layer.self_attn.qkv_proj, layer.self_attn.beacon_qkv_proj)
        self.decode_attention = select_decode_attention(device, dtype)
        self.cuda_graphs = runtime.cuda_graphs and device.type == "cuda"
        self.capture = capture_cuda_graph
        self.decode_mode = self._decode_modes()[0]
        self._decode_checked = False
        # NOTE: upstream draws per-window ratios (several configured ratios) from one
        # default_rng(42) created at load and never reset; keeping it per model reproduces that.
        self.ratio_rng = np.random.default_rng(42)
        self.vision_batch = vision_batch(config, itemsize(dtype))  # frames per vision-tower call
        # where pixels are made; a GPU's frames are uploaded on a copy stream of the runner's own
        self.target = Target(device, dtype, torch.cuda.Stream(device) if device.type == "cuda" else None)
        self.lock = threading.RLock()
        self._fingerprint: str | None = None
        self._slots: OrderedDict[tuple[int, int, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.decoders = torch.utils.weak.WeakIdKeyDictionary()  # a cache's k buffer → its StaticDecoder, freed with the buffer

    @contextlib.contextmanager
    def session(self):
        """One engine call: the lock held, inference mode, and this runner's kernel policy active."""
        with self.lock, torch.inference_mode(), ops.using(self.kernels):
            yield self

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
    def budget(self, capacity: int, ratios: tuple[int, ...]) -> MemoryBudget:
        return budget(self.config, capacity, ratios, self.weight_bytes, itemsize(self.dtype),
                      masked_attention=self.attention_name == "masked")

    def allocate(self, capacity: int, ratios: tuple[int, ...]) -> tuple[KVCache, VstStage]:
        """The KV cache for ``capacity`` kept slots plus room for the largest window's rows, and
        the stage of that window's VSTs, allocated once, after checking that they fit."""
        llm = self.config.llm
        window = self.config.beacon.window
        rows = max_window_rows(window, ratios)
        need = self.budget(capacity, ratios)
        check_fits(need.total - need.weights, self.device, f"the KV cache for {capacity} slots plus work buffers")
        self._ensure_positions(capacity + rows)
        cache = KVCache.allocate(llm.num_layers, llm.num_kv_heads, capacity + rows, llm.head_dim, self.dtype,
                                 self.device)
        stage = VstStage.allocate(llm.num_kv_heads, max_window_vsts(window, ratios), llm.head_dim, self.dtype,
                                  self.device)
        return cache, stage

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
        """Preprocessed frames as patch rows [B, P, 3p²] (on the device, in its dtype) → visual
        tokens [B·tokens_per_frame, D]."""
        return self.model.encode_frames(pixels)

    def run_text(self, cache: KVCache, ids: list[int], kind: str, trace: list | None) -> torch.Tensor | None:
        """Text rows (sink, question, a decoded token) whose K/V are kept; their last hidden states."""
        if not ids:
            return None
        n = len(ids)
        start = cache.reserve(n)
        x = self.model.llm.embed_tokens(torch.tensor(ids).to(self.device, non_blocking=True))
        hidden = self.model.llm(x, self._step(cache, n, start))
        cache.length += n
        record_step(trace, cache, kind, n, 0, start, None, None)
        return hidden

    def run_visual(self, cache: KVCache, stage: VstStage, raw: torch.Tensor, w: VisualWindow,
                   trace: list | None) -> None:
        """One visual window: raw tokens [n_raw, D] with VSTs interleaved; only the VSTs' K/V stay."""
        vst = self.model.llm.beacon_embed_tokens.weight[0]
        x = ops.interleave_vst(raw, vst, w.ratio, w.carry)
        vst_index, raw_index = self._window_slots(w)
        nb = vst_index.shape[0]
        assert nb == w.n_vst and x.shape[0] == w.rows, "window plan and interleave disagree"
        start = cache.reserve(w.rows)
        self.model.llm(x, self._step(cache, w.rows, start, Slots(vst_index, raw_index, self.vst_projection), stage))
        cache.length += nb
        record_step(trace, cache, "visual", w.n_raw, nb, start, w.ratio, w.carry)

    def _step(self, cache: KVCache, rows: int, start: int, slots: Slots | None = None,
              stage: VstStage | None = None) -> WindowStep:
        """A window step over views of ``cache`` (and of ``stage`` for a visual window)."""
        return WindowStep(cache_k=cache.k, cache_v=cache.v, cos=self.rope.cos, sin=self.rope.sin,
                          attention=self.attention, rows=rows, start=start, slots=slots,
                          stage_k=None if stage is None else stage.k, stage_v=None if stage is None else stage.v)

    def _window_slots(self, w: VisualWindow) -> tuple[torch.Tensor, torch.Tensor]:
        """The window's VST rows and raw rows (``ops.vst_slots``, ``ops.raw_slots``) on the device,
        made once per layout — a video's windows share a few — and kept for the last 64 layouts."""
        key = (w.n_raw, w.ratio, w.carry)
        slots = self._slots.pop(key, None)
        if slots is None:
            slots = (ops.vst_slots(*key)[1].to(self.device, non_blocking=True),
                     ops.raw_slots(*key).to(self.device, non_blocking=True))
        self._slots[key] = slots
        if len(self._slots) > 64:
            self._slots.popitem(last=False)
        return slots

    def decode(self, cache: KVCache, token: int) -> torch.Tensor:
        """One generated token fed back: the next token's fp32 logits [vocab], through the static
        decode step of ``cache``'s buffers in ``decode_mode`` (a CUDA graph is captured at their
        first token; a capture that raises leaves this and later steps eager, with a warning)."""
        if not self._decode_checked:
            self.check_decode()
        position = cache.reserve(1)
        decoder = self.decoders.get(cache.k)
        if decoder is None:
            # NOTE: the decoder holds aliases of the buffers, not the key itself, or the entry would never be freed
            alias = KVCache(cache.k.detach(), cache.v.detach(), cache.length)
            decoder = self.decoders[cache.k] = self._decoder(alias, self.decode_mode)
        try:
            logits = decoder(token, position)
        except CaptureFailed as exc:
            warnings.warn(f"vxl_fast: capturing the decode step in a CUDA graph failed ({exc}); decoding eagerly",
                          RuntimeWarning, stacklevel=2)
            self.decode_mode = self.decode_mode.replace("graph", "eager")
            decoder.eager()
            logits = decoder(token, position)
        cache.length += 1
        return logits

    def _decode_modes(self) -> list[str]:
        """The decode modes this runner may use, best first; "masked-eager" (the reference) last."""
        fused = self.decode_attention is not decode_attention_masked
        return [m for m in ("graph", "eager", "masked-graph", "masked-eager")
                if (fused or m.startswith("masked")) and (self.cuda_graphs or m.endswith("eager"))]

    def _decoder(self, cache: KVCache, mode: str) -> StaticDecoder:
        attention = decode_attention_masked if mode.startswith("masked") else self.decode_attention
        return StaticDecoder(self.model, self.rope, cache, attention, mode.endswith("graph"), self.capture)

    def check_decode(self, tokens: tuple[int, ...] = (1, 2, 3, 4)) -> str:
        """The decode step's first-use check (``RuntimeOptions.kernels`` "check"; "trust" skips it):
        each mode of ``_decode_modes`` decodes ``tokens`` after 8 random slots of a scratch cache, in
        this runner's dtype, against the masked reference run eagerly; the first that agrees
        becomes ``decode_mode``, with one warning naming what failed before it."""
        self._decode_checked = True
        modes = self._decode_modes()
        self.decode_mode = modes[0]
        if len(modes) == 1 or self.runtime.kernels != "check":
            return self.decode_mode
        llm = self.config.llm
        g = torch.Generator().manual_seed(0)
        kept = 8
        scratch = KVCache.allocate(llm.num_layers, llm.num_kv_heads, kept + len(tokens), llm.head_dim, self.dtype,
                                   self.device)
        scratch.k[:, :, :kept] = torch.randn(scratch.k[:, :, :kept].shape, generator=g).to(scratch.k)
        scratch.v[:, :, :kept] = torch.randn(scratch.v[:, :, :kept].shape, generator=g).to(scratch.v)

        def trial(mode: str) -> list[torch.Tensor]:
            cache = KVCache(scratch.k.clone(), scratch.v.clone(), kept)
            decoder = self._decoder(cache, mode)
            return [decoder(t, kept + i).clone() for i, t in enumerate(tokens)]

        runs = {m: functools.partial(trial, m) for m in modes}
        self.decode_mode, problems = check_decode(runs, "masked-eager", self.dtype)
        if problems:
            warnings.warn(f"vxl_fast: the decode step's first-use check on {self.device} for {self.dtype} failed: "
                          f"{'; '.join(problems)}; decoding in mode {self.decode_mode!r}", RuntimeWarning,
                          stacklevel=3)
        return self.decode_mode

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.logits(hidden)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
