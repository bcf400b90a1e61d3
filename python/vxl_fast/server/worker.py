"""One thread per model for all of its device work, fed in arrival order, behind a bounded
admission count: a model's K/V buffers and generators are not thread-safe."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

from .protocol import APIError


class Slot:
    """A request's place in the server; released once, from any thread."""

    def __init__(self, worker: "DeviceWorker"):
        self._worker, self._released = worker, False

    def release(self, *_) -> None:
        with self._worker._lock:
            if not self._released:
                self._released = True
                self._worker.admitted -= 1

    def release_after(self, job: Future | None) -> None:
        """Release when ``job`` (the request's last device job) has ended, or now."""
        if job is None:
            self.release()
        else:
            job.add_done_callback(self.release)


class DeviceWorker:
    """Runs device jobs on one thread. At most ``max_queue`` requests wait beyond the one
    being served; another one is refused with 429."""

    def __init__(self, max_queue: int):
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.max_queue = max_queue
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vxl_fast-device")
        self._lock = threading.Lock()
        self.admitted = 0  # requests in the server (waiting or being served)
        self.running = 0  # device jobs running now (0 or 1)
        self.busy_s = 0.0
        self.closed = False

    @property
    def waiting(self) -> int:
        return max(0, self.admitted - self.running)

    def admit(self) -> Slot:
        with self._lock:
            if self.closed:
                raise APIError(503, "the server is shutting down", type_="server_error", code="shutting_down")
            if self.admitted >= self.max_queue + 1:
                raise APIError(429, f"the server is busy: {self.admitted} requests are waiting or running "
                                    f"(--max-queue {self.max_queue}); retry later",
                               type_="rate_limit_error", code="queue_full")
            self.admitted += 1
            return Slot(self)

    def submit(self, fn: Callable, *args) -> Future:
        """Queue ``fn(*args)`` on the device thread; a job still queued can be cancelled."""
        return self._pool.submit(self._run, fn, args)

    async def run(self, fn: Callable, *args):
        """``fn(*args)`` on the device thread; cancelling the caller cancels a job not yet started."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _run(self, fn, args):
        with self._lock:
            self.running += 1
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            with self._lock:
                self.running -= 1
                self.busy_s += time.perf_counter() - t0

    def close(self) -> None:
        """Refuse new requests, drop queued jobs, wait for the running one."""
        with self._lock:
            self.closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
