"""Compression: a visual input becomes a :class:`MemoryState` — the sink's K/V and each window's VSTs.

Functions over a :class:`Runner` and a state; the state is pure data, so a memory can be made,
extended (live input), saved and restored without a model inside it. The entry points
(``encode``, ``append``, ``flush``, ``restore``, ``save``, ``visual_tokens``) hold the runner's
lock and run in inference mode.
"""

from __future__ import annotations

import copy
import functools
import os
import threading
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import EncodeCancelled
from ..memory.files import save_state
from ..memory.kv import KVCache
from ..memory.plan import VisualWindow, next_window, parse_ratios, plan_windows
from ..memory.state import MemoryState
from ..options import DEFAULT_RESERVE, EncodeOptions
from ..video.inputs import PixelSource, VisualInput
from .runner import Runner
from .timing import StageTimer
from .visual_tokens import VisualTokens


def entry_point(fn):
    """``fn(runner, ...)`` inside ``runner.session()``: its lock held, in inference mode, its kernel
    policy active."""
    @functools.wraps(fn)
    def in_session(runner: Runner, *args, **kwargs):
        with runner.session():
            return fn(runner, *args, **kwargs)
    return in_session


def new_state(runner: Runner, prefix_text: str, prefix_ids: list[int], ratios: tuple[int, ...],
              modality: str, capacity: int, trace: bool) -> MemoryState:
    """An empty memory whose KV buffers are allocated once for ``capacity`` slots."""
    cache, stage = runner.allocate(capacity, ratios)
    return MemoryState(cache, stage, prefix_text, prefix_ids, ratios, modality, trace=[] if trace else None)


@entry_point
def encode(runner: Runner, prefix_text: str, prefix_ids: list[int], visual: VisualInput | None,
           options: EncodeOptions, cancel: threading.Event | None = None) -> MemoryState:
    """Compress ``visual`` (None: an empty memory to append to) after the sink ``prefix_ids``.
    ``cancel``, once set, stops the encode before its next piece (``EncodeCancelled``)."""
    cfg = runner.config
    ratios = parse_ratios(options.compression_ratio, cfg.beacon.ratios)
    timer = StageTimer(runner.device)
    capacity = len(prefix_ids) + options.reserve_tokens
    if visual is not None and visual.count is not None:
        # NOTE: a copy of the generator, so that planning draws the same ratios the windows will.
        planned = plan_windows(len(prefix_ids), visual.count * cfg.tokens_per_frame, cfg.beacon.window,
                               ratios, copy.deepcopy(runner.ratio_rng))
        capacity += sum(w.n_vst for w in planned)
    state = new_state(runner, prefix_text, prefix_ids, ratios,
                      visual.modality if visual is not None else "video", capacity, options.trace)
    with timer.measure("compress"):
        runner.run_text(state.cache, prefix_ids, "prefix_text", state.trace)
    if visual is not None:
        _ingest_all(runner, state, visual, timer, options.progress, cancel)
        _flush(runner, state, timer)
    _add_times(state, timer)
    return state


@entry_point
def append(runner: Runner, state: MemoryState, visual: VisualInput, progress: bool) -> None:
    """Add the frames of ``visual`` (``video.inputs.frames_input``); every window they complete is
    compressed now."""
    if len(state.ratios) > 1:
        raise ValueError("live input (append) needs a single compression ratio")
    if visual.timestamped != (state.timestamps is not None) and state.frames:
        raise ValueError("give timestamps for every appended piece or for none")
    timer = StageTimer(runner.device)
    _ingest_all(runner, state, visual, timer, progress)
    _add_times(state, timer)


def _ingest_all(runner: Runner, state: MemoryState, visual: VisualInput, timer: StageTimer, progress: bool,
                cancel: threading.Event | None = None) -> None:
    """Ingest every piece of ``visual`` (stopping before a piece once ``cancel`` is set)."""
    with tqdm(total=visual.count, desc="encoding", unit="frame", disable=not progress, leave=False) as bar:
        for source in visual.sources(runner.vision_batch):
            if cancel is not None and cancel.is_set():
                raise EncodeCancelled(f"the encode was cancelled after {state.frames} of {visual.count} frames")
            ingest(runner, state, source, timer)
            bar.update(source.count)


@entry_point
def visual_tokens(runner: Runner, visual: VisualInput) -> torch.Tensor:
    """All visual tokens [N, D] of ``visual`` the language model would see."""
    return torch.cat([_tokens(runner, source).rest() for source in visual.sources(runner.vision_batch)])


def _tokens(runner: Runner, source: PixelSource, timer: StageTimer | None = None) -> VisualTokens:
    return VisualTokens(source, runner.config.tokens_per_frame, runner.encode_pixels, runner.vision_batch,
                        runner.target, timer)


def ingest(runner: Runner, state: MemoryState, source: PixelSource, timer: StageTimer) -> None:
    """Encode the source's items and compress every window they complete; nothing here waits for
    the device (``timer`` keeps the times until they are read)."""
    window = runner.config.beacon.window
    tokens = _tokens(runner, source, timer)
    available = state.pending_tokens + tokens.num_tokens
    while available >= window:
        raw = tokens.take(window - state.pending_tokens)
        if state.pending is not None:
            raw, state.pending = torch.cat([state.pending, raw]), None
        with timer.measure("compress"):
            compress_window(runner, state, raw)
        available -= window
    rest = tokens.rest()
    if rest is not None:
        state.pending = rest if state.pending is None else torch.cat([state.pending, rest])
    state.frames += source.count
    if source.timestamps is not None:
        state.timestamps = (state.timestamps or []) + list(source.timestamps)


@entry_point
def flush(runner: Runner, state: MemoryState) -> None:
    """Compress the incomplete last window (the end of the video)."""
    timer = StageTimer(runner.device)
    _flush(runner, state, timer)
    _add_times(state, timer)


def _flush(runner: Runner, state: MemoryState, timer: StageTimer) -> None:
    if state.pending is not None:
        raw, state.pending = state.pending, None
        with timer.measure("compress"):
            compress_window(runner, state, raw)


def _add_times(state: MemoryState, timer: StageTimer) -> None:
    seconds = timer.collect()
    state.stats.vision_s += seconds.get("vision", 0.0)
    state.stats.compress_s += seconds.get("compress", 0.0)


def pending_window(state: MemoryState) -> VisualWindow | None:
    """The window the pending tokens would make (None when nothing is pending)."""
    if state.pending is None:
        return None
    return next_window(len(state.windows), state.next_token, state.pending_tokens, state.carry,
                       state.cache.length, state.ratios, None)


def compress_window(runner: Runner, state: MemoryState, raw: torch.Tensor) -> VisualWindow:
    """Run one visual window over ``raw`` tokens; its VSTs are kept in the state's cache."""
    w = _next_window(runner, state, raw.shape[0], state.cache)
    if state.cache.length + w.rows > state.cache.capacity:
        state.cache = runner.grow(state.cache, state.cache.length + w.rows + DEFAULT_RESERVE)
    runner.run_visual(state.cache, state.stage, raw, w, state.trace)
    state.windows.append(w)
    return w


def run_pending(runner: Runner, state: MemoryState, view: KVCache) -> VisualWindow:
    """Run the pending tokens' window into ``view`` (a question's view of the cache, with room for
    its rows); the state does not record it."""
    w = _next_window(runner, state, state.pending_tokens, view)
    runner.run_visual(view, state.stage, state.pending, w, None)
    return w


def _next_window(runner: Runner, state: MemoryState, n_raw: int, cache: KVCache) -> VisualWindow:
    return next_window(len(state.windows), state.next_token, n_raw, state.carry, cache.length, state.ratios,
                       runner.ratio_rng)


@entry_point
def restore(runner: Runner, meta: dict, tensors: dict[str, torch.Tensor], fields: dict,
            reserve_tokens: int) -> MemoryState:
    """A state from a verified memory file (see ``memory.files``)."""
    n = meta["kv_slots"]
    state = new_state(runner, meta["prefix_text"], meta["prefix_ids"], tuple(meta["ratios"]), meta["modality"],
                      capacity=n + reserve_tokens, trace=False)
    state.cache.k[:, :, :n] = tensors["k"].to(runner.device)
    state.cache.v[:, :, :n] = tensors["v"].to(runner.device)
    state.cache.length = n
    state.pending = tensors["pending"].to(runner.device) if "pending" in tensors else None
    state.windows, state.frames = fields["windows"], fields["frames"]
    state.timestamps, state.stats = fields["timestamps"], fields["stats"]
    return state


@entry_point
def save(runner: Runner, state: MemoryState, path: str | os.PathLike) -> Path:
    """Write ``state`` to ``path`` (``memory.files.save_state``) for this runner's weights and dtype."""
    return save_state(state, path, runner.fingerprint, runner.dtype)
