"""Compression: a visual input becomes a :class:`MemoryState` — the sink's K/V and each window's VSTs.

Functions over a :class:`Runner` and a state; the state is pure data, so a memory can be made,
extended (live input), saved and restored without a model inside it.
"""

from __future__ import annotations

import copy
import threading

import torch
from tqdm.auto import tqdm

from ..errors import EncodeCancelled
from ..memory.kv import KVCache
from ..memory.plan import VisualWindow, next_window, parse_ratios, plan_windows
from ..memory.state import MemoryState
from ..options import DEFAULT_RESERVE, EncodeOptions
from ..video.inputs import VisualInput, VisualSource
from .runner import Runner
from .timing import StageTimer
from .vision import VisualStream


def new_state(runner: Runner, prefix_text: str, prefix_ids: list[int], ratios: tuple[int, ...],
              modality: str, capacity: int, trace: bool) -> MemoryState:
    """An empty memory whose KV buffers are allocated once for ``capacity`` slots."""
    cache, stage = runner.allocate(capacity, ratios)
    return MemoryState(cache, stage, prefix_text, prefix_ids, ratios, modality, trace=[] if trace else None)


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
        flush(runner, state, timer)
    _add_times(state, timer)
    return state


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


def ingest(runner: Runner, state: MemoryState, source: VisualSource, timer: StageTimer) -> None:
    """Encode the source's items and compress every window they complete; nothing here waits for
    the device (``timer`` keeps the times until they are read)."""
    window = runner.config.beacon.window
    stream = VisualStream(source, runner.config.tokens_per_frame, runner.encode_pixels, runner.vision_batch,
                          runner.device, runner.dtype, timer)
    available = state.pending_tokens + stream.num_tokens
    while available >= window:
        raw = stream.take(window - state.pending_tokens)
        if state.pending is not None:
            raw, state.pending = torch.cat([state.pending, raw]), None
        with timer.measure("compress"):
            compress_window(runner, state, raw, state.cache)
        available -= window
    rest = stream.rest()
    if rest is not None:
        state.pending = rest if state.pending is None else torch.cat([state.pending, rest])
    state.frames += source.count
    if source.timestamps is not None:
        state.timestamps = (state.timestamps or []) + list(source.timestamps)


def flush(runner: Runner, state: MemoryState, timer: StageTimer | None = None) -> None:
    """Compress the incomplete last window (the end of the video)."""
    if state.pending is None:
        return
    own = timer is None
    timer = timer or StageTimer(runner.device)
    raw, state.pending = state.pending, None
    with timer.measure("compress"):
        compress_window(runner, state, raw, state.cache)
    if own:
        _add_times(state, timer)


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


def compress_window(runner: Runner, state: MemoryState, raw: torch.Tensor, cache: KVCache,
                    commit: bool = True) -> VisualWindow:
    """Run one visual window over ``raw`` tokens; its VSTs land in ``cache``. Without ``commit``
    the window is run into ``cache`` (a question's view) and not recorded in the state."""
    w = next_window(len(state.windows), state.next_token, raw.shape[0], state.carry, cache.length,
                    state.ratios, runner.ratio_rng)
    if commit and cache.length + w.rows > cache.capacity:  # its rows sit after the kept slots until compacted
        state.cache = cache = runner.grow(cache, cache.length + w.rows + DEFAULT_RESERVE)
    runner.run_visual(cache, state.stage, raw, w, state.trace if commit else None)
    if commit:
        state.windows.append(w)
    return w


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
    for name, value in fields.items():
        setattr(state, name, value)
    return state
