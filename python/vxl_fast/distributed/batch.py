"""``run_batch``: many videos, many questions, over Ray actors that each hold one loaded model.

Ray does the distributed work: it places the actors on GPUs (``num_gpus`` each), restarts an
actor whose process dies (``max_restarts``) and runs its in-flight call again on the restarted
actor (``max_task_retries``). What is left here is what Ray's ``ActorPool`` cannot do: know
which group a failed call was running (its ``get_next_unordered`` raises without saying), so
that group gets error records and the run goes on — a few lines of ``ray.wait`` over one call
in flight per actor.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .cluster import connected
from .records import AnswerFile, error_record
from .requests import group_requests, parse_requests, read_requests
from .worker import BatchWorker

DEFAULT_FRAMES = 128


class WorkerError(RuntimeError):
    """The workers could not start (the model did not load, or no resources fit them)."""


@dataclass
class BatchSummary:
    requests: int  # lines in the request file
    skipped: int  # already recorded in the output before this run
    answered: int
    failed: int
    workers: int
    elapsed_s: float
    output: str

    @property
    def requests_per_s(self) -> float:
        done = self.answered + self.failed
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.requests} requests: {self.answered} answered, {self.failed} failed, {self.skipped} "
                f"already in {self.output}; {self.elapsed_s:.1f} s on {self.workers} worker"
                f"{'s' * (self.workers != 1)} ({self.requests_per_s:.2f} requests/s)")


def run_batch(requests, output: str | os.PathLike, model: str | os.PathLike, *, workers: int | None = None,
              gpus_per_worker: float | None = None, cpus_per_worker: float = 1, address: str | None = None,
              device: str | None = None, dtype: str | None = None, default_frames: int = DEFAULT_FRAMES,
              max_retries: int = 2, retry_failed: bool = False, progress: bool | None = None,
              on_record=None) -> BatchSummary:
    """Answer every request of ``requests`` (a JSONL file, or a list of request dicts; see
    :mod:`vxl_fast.distributed.requests`) into the JSONL file ``output``, one record a request.

    ``model``: a checkpoint path (or hub id) every worker can read. ``workers`` actors (default:
    one per ``gpus_per_worker`` GPUs of the cluster, else 1) each load it once with
    ``gpus_per_worker`` GPUs (default 1 when the cluster has GPUs, else 0: CPU) and
    ``cpus_per_worker`` CPUs. Requests for the same input share one encoding. Records are
    written as their group finishes; ids already in ``output`` are skipped (``retry_failed``:
    error records run again). A worker process that dies is restarted by Ray and its group run
    again, up to ``max_retries`` times, then the group's requests get error records.
    ``address``: an existing cluster (``auto``, ``ray://host:10001``); default a local one bound
    to 127.0.0.1. ``on_record(record)`` is called for each record written.
    """
    for name, value, low in (("workers", workers, 1), ("max_retries", max_retries, 0),
                             ("default_frames", default_frames, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("gpus_per_worker", gpus_per_worker), ("cpus_per_worker", cpus_per_worker)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if isinstance(requests, (str, os.PathLike)):
        todo = read_requests(requests, default_frames)
    else:
        todo = parse_requests(enumerate(requests, 1), base=Path.cwd(), default_frames=default_frames)
    start = time.perf_counter()
    with AnswerFile(output, retry_failed=retry_failed) as answers:
        total = len(todo)
        todo = [r for r in todo if r.id not in answers.done]
        summary = BatchSummary(total, total - len(todo), 0, 0, 0, 0.0, str(output))
        if not todo:
            return summary
        groups = group_requests(todo)
        with connected(address) as ray:
            gpus = ray.cluster_resources().get("GPU", 0)
            if gpus_per_worker is None:
                gpus_per_worker = 1 if gpus else 0
            if workers is None:
                workers = max(1, int(gpus // gpus_per_worker)) if gpus_per_worker else 1
            workers = min(workers, len(groups))
            device = device or ("cuda" if gpus_per_worker else "cpu")
            actor = ray.remote(BatchWorker).options(num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                                                    max_restarts=-1, max_task_retries=max_retries)
            summary.workers = workers
            pool = _Pool(ray, lambda i: actor.remote(str(model), device, dtype, f"worker-{i}"), workers)
            bar = _progress_bar(len(todo), progress)
            try:
                for records in pool.run(groups, max_retries):
                    for record in records:
                        if answers.write(record):
                            summary.answered += record["status"] == "ok"
                            summary.failed += record["status"] != "ok"
                            if on_record is not None:
                                on_record(record)
                    if bar is not None:
                        bar.update(len(records))
                        bar.set_postfix(failed=summary.failed, refresh=False)
            finally:
                pool.close()
                if bar is not None:
                    bar.close()
    summary.elapsed_s = time.perf_counter() - start
    return summary


class _Pool:
    """``size`` actors, one group in flight on each; yields each group's records as it finishes."""

    def __init__(self, ray, make, size: int):
        self.ray, self.make, self.actors = ray, make, []
        self.idle = [self._new() for _ in range(size)]
        try:
            ray.get([a.info.remote() for a in self.idle])
        except ray.exceptions.RayActorError as e:
            self.close()
            raise WorkerError(f"the workers could not load the model: {_cause(e)}") from None

    def _new(self):
        self.actors.append(self.make(len(self.actors)))
        return self.actors[-1]

    def close(self) -> None:
        """End every worker now (their resources are free for the next run, even on a cluster
        this run did not start, and even when a caller still holds the pool)."""
        for a in self.actors:
            self.ray.kill(a, no_restart=True)

    def run(self, groups, max_retries: int):
        ray = self.ray
        queue, running = deque(groups), {}
        while queue or running:
            while queue and self.idle:
                a, g = self.idle.pop(), queue.popleft()
                running[a.run.remote(g)] = (a, g)
            ready, _ = ray.wait(list(running), num_returns=1)
            a, group = running.pop(ready[0])
            try:
                records = ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                why = f"the worker died running this request ({max_retries + 1} attempts): {_cause(e)}"
                records = [error_record(r, ("WorkerDied", why), None) for r in group.requests]
                if isinstance(e, ray.exceptions.ActorDiedError):  # gone for good, not restarting
                    a = self._replace()
            except ray.exceptions.RayError as e:
                records = [error_record(r, (type(e).__name__, _cause(e)), None) for r in group.requests]
            self.idle.append(a)
            yield records

    def _replace(self):
        """A new actor for one that died for good (at most one per failed group)."""
        a = self._new()
        try:
            self.ray.get(a.info.remote())
        except self.ray.exceptions.RayActorError as e:
            raise WorkerError(f"a replacement worker could not load the model: {_cause(e)}") from None
        return a


def _cause(e: BaseException) -> str:
    """The last line of a Ray error (the original exception), without terminal colours."""
    lines = [ln.strip() for ln in re.sub(r"\x1b\[[0-9;]*m", "", str(e)).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def _progress_bar(total: int, progress: bool | None):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="req", desc="vxl-fast batch", dynamic_ncols=True)
