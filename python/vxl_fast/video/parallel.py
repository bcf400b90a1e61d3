"""GOP-parallel exact decoding: the wanted frames are split at keyframes into runs of whole GOPs,
each run is decoded by ``iter_frames(..., "hybrid")`` in a thread of its own (its own container
and decoder, so no state is shared), and the runs are handed back in order.

A run starts at a keyframe, where decoding needs nothing from before, so each frame comes out as
the single decoder produces it. At most ``workers + 1`` runs are in flight (decoded ahead, held
in memory); a run holds about ``RUN_FRAMES`` wanted frames or one GOP, whichever is more.
"""

from __future__ import annotations

import bisect
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from .reader import VideoInfo, iter_frames, wanted_frames

RUN_FRAMES = 16  # wanted frames per run (fewer runs: less seeking; more: better balance)
MAX_WORKERS = 8


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def gop_runs(info: VideoInfo, wanted: list[int], per_run: int = RUN_FRAMES) -> list[list[int]]:
    """``wanted`` (distinct, ascending) cut into runs: each run is the wanted frames of one or more
    consecutive GOPs, closed once it holds at least ``per_run`` frames."""
    keyframes = info.keyframes.tolist()
    runs: list[list[int]] = []
    current: list[int] = []
    gop = None
    for i in wanted:
        key = keyframes[bisect.bisect_right(keyframes, i) - 1]
        if key != gop and len(current) >= per_run:
            runs.append(current)
            current = []
        gop = key
        current.append(i)
    if current:
        runs.append(current)
    return runs


def iter_frames_parallel(info: VideoInfo, indices, progress=None,
                         workers: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``iter_frames`` (same frames, same order, same errors) with runs of GOPs decoded by
    ``workers`` threads (default: the CPU count, at most ``MAX_WORKERS``)."""
    wanted = wanted_frames(info, indices)
    workers = default_workers() if workers is None else workers
    if info.pts is None or workers < 2 or len(wanted) < 2:  # nothing to seek to, or nothing to share
        yield from iter_frames(info, wanted, "hybrid" if info.pts is not None else "sequential", progress)
        return
    runs = gop_runs(info, wanted)

    def decode(run: list[int]) -> tuple[list[tuple[int, np.ndarray]], int]:
        counted: list[int] = []
        frames = list(iter_frames(info, run, "hybrid", counted.append))
        return frames, sum(counted)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vxl_fast-gop") as pool:
        pending: list[Future] = []
        try:
            for run in runs:
                pending.append(pool.submit(decode, run))
                if len(pending) > workers:
                    yield from _handed_back(pending.pop(0), progress)
            while pending:
                yield from _handed_back(pending.pop(0), progress)
        finally:
            for future in pending:  # a consumer that stops early: runs not started are dropped
                future.cancel()


def _handed_back(future: Future, progress) -> Iterator[tuple[int, np.ndarray]]:
    frames, decoded = future.result()
    if progress is not None:
        progress(decoded)
    yield from frames
