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
from dataclasses import dataclass, field
from pathlib import Path

from ..limits import DEFAULT_FRAMES
from .cluster import connected
from .records import AnswerFile, error_record
from .requests import group_requests, parse_requests, read_requests
from .worker import BatchWorker

MAX_FAILED_SHOWN = 20  # failed ids the summary line names


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
    failed_ids: list = field(default_factory=list)  # of this run's failed requests, in the order they failed

    @property
    def requests_per_s(self) -> float:
        done = self.answered + self.failed
        return done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.requests} requests: {self.answered} answered, {self.failed} failed, {self.skipped} "
                f"already in {self.output}; {self.elapsed_s:.1f} s on {self.workers} worker"
                f"{'s' * (self.workers != 1)} ({self.requests_per_s:.2f} requests/s)" + self._failures())

    def _failures(self) -> str:
        if not self.failed_ids:
            return ""
        shown = ", ".join(map(str, self.failed_ids[:MAX_FAILED_SHOWN]))
        rest = len(self.failed_ids) - MAX_FAILED_SHOWN
        more = f" and {rest} more" if rest > 0 else ""
        return f"; failed: {shown}{more} (their errors are in {self.output})"


@dataclass(frozen=True)
class BatchOptions:
    """How a batch runs. ``workers`` actors (default: one per ``gpus_per_worker`` GPUs of the
    cluster, else 1) each load the model once with ``gpus_per_worker`` GPUs (default 1 when the
    cluster has GPUs, else 0: CPU) and ``cpus_per_worker`` CPUs, on ``device`` in ``dtype``.
    ``address``: an existing cluster (``auto``, ``ray://host:10001``); default a local one bound
    to 127.0.0.1. ``default_frames``: ``num_frames`` of video requests that give neither it nor
    ``fps``. A group whose worker dies runs again up to ``max_retries`` times. ``retry_failed``:
    error records already in the output run again. ``progress``: a bar (default: on a terminal)."""

    workers: int | None = None
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1
    address: str | None = None
    device: str | None = None
    dtype: str | None = None
    default_frames: int = DEFAULT_FRAMES
    max_retries: int = 2
    retry_failed: bool = False
    progress: bool | None = None

    def __post_init__(self):
        for name, low in (("workers", 1), ("max_retries", 0), ("default_frames", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name in ("gpus_per_worker", "cpus_per_worker"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def run_batch(requests, output: str | os.PathLike, model: str | os.PathLike, *, on_record=None,
              **options) -> BatchSummary:
    """Answer every request of ``requests`` (a JSONL file, or a list of request dicts; see
    :mod:`vxl_fast.distributed.requests`) into the JSONL file ``output``, one record a request.

    ``model``: a checkpoint path (or hub id) every worker can read; ``options``: see
    :class:`BatchOptions`. Requests for the same input share one encoding. Records are written
    as their group finishes; ids already in ``output`` are skipped. A worker process that dies is
    restarted by Ray and its group run again, then the group's requests get error records.
    ``on_record(record)`` is called for each record written.
    """
    opts = BatchOptions(**options)
    if isinstance(requests, (str, os.PathLike)):
        todo = read_requests(requests, opts.default_frames)
    else:
        todo = parse_requests(enumerate(requests, 1), base=Path.cwd(), default_frames=opts.default_frames)
    start = time.perf_counter()
    with AnswerFile(output, retry_failed=opts.retry_failed) as answers:
        total = len(todo)
        todo = [r for r in todo if r.id not in answers.done]
        summary = BatchSummary(total, total - len(todo), 0, 0, 0, 0.0, str(output))
        if todo:
            with connected(opts.address) as ray:
                _run_groups(ray, str(model), group_requests(todo), opts, summary, answers, on_record)
    summary.elapsed_s = time.perf_counter() - start
    return summary


def _run_groups(ray, model: str, groups: list, opts: BatchOptions, summary: BatchSummary, answers: AnswerFile,
                on_record) -> None:
    """Start the workers, answer ``groups`` on them, write and count the records."""
    gpus = ray.cluster_resources().get("GPU", 0)
    per_worker = (1 if gpus else 0) if opts.gpus_per_worker is None else opts.gpus_per_worker
    workers = opts.workers or (max(1, int(gpus // per_worker)) if per_worker else 1)
    summary.workers = workers = min(workers, len(groups))
    device = opts.device or ("cuda" if per_worker else "cpu")
    actor = ray.remote(BatchWorker).options(num_cpus=opts.cpus_per_worker, num_gpus=per_worker,
                                            max_restarts=-1, max_task_retries=opts.max_retries)
    pool = _Pool(ray, lambda i: actor.remote(model, device, opts.dtype, f"worker-{i}"), workers)
    bar = _progress_bar(sum(len(g.requests) for g in groups), opts.progress)
    try:
        for records in pool.run(groups, opts.max_retries):
            for record in records:
                if answers.write(record):
                    summary.answered += record["status"] == "ok"
                    summary.failed += record["status"] != "ok"
                    if record["status"] != "ok":
                        summary.failed_ids.append(record["id"])
                    if on_record is not None:
                        on_record(record)
            if bar is not None:
                bar.update(len(records))
                bar.set_postfix(failed=summary.failed, refresh=False)
    finally:
        pool.close()
        if bar is not None:
            bar.close()


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
