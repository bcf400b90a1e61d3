"""What a chat request asks of the model: its media resolved, its memory found or encoded once,
its answer generated on the model's device thread, piece by piece, cancellable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path

from ..engine.stats import with_encode
from ..errors import EncodeCancelled, MemoryPlanError
from ..options import EncodeOptions
from ..prompt import build_prompt, tokenize_prompt
from ..video.request import VisualRequest
from .cache import MemoryCache
from .media import Media, MediaResolver
from .metrics import Metrics
from .options import ServeOptions
from .protocol import APIError, ChatCompletionRequest, Conversation
from .worker import DeviceWorker

_log = logging.getLogger("vxl_fast.server")
_ENGINE_ERRORS = (ValueError, TypeError, FileNotFoundError, MemoryPlanError)


class Cancelled(Exception):
    """The client went away."""


class Answer:
    """A generation running (or queued) on the device thread; read it with :meth:`next`."""

    _DONE = object()

    def __init__(self, service: "Service", job: Future, queue: asyncio.Queue, cancel: threading.Event, info: dict):
        self.job, self._queue, self.cancel, self.info = job, queue, cancel, info
        self._service = service
        self.output = None

    async def next(self) -> str | None:
        """The next text piece; None at the end (``output`` is then set)."""
        item = await self._queue.get()
        if item is not self._DONE:
            return item
        try:
            self.output = await asyncio.wrap_future(self.job)
        except _ENGINE_ERRORS as e:
            raise APIError(400, str(e)) from None
        except Exception as e:  # noqa: BLE001 - reported to the client as a server error
            raise _internal("the generation", e) from e
        self._service._account(self.output)
        return None

    def stop(self) -> bool:
        """Cancel: a queued job never starts, a running one stops at its next token. Whether
        there was anything to cancel."""
        if self.output is not None:
            return False
        self.cancel.set()
        return self.job.cancel() or not self.job.done()


class _Encode:
    """One encode on the device thread and the clients waiting for it. It belongs to them: when
    the last one leaves it is cancelled and forgotten, so that a client coming later starts a
    fresh encode instead of inheriting the cancellation."""

    def __init__(self, job: Future, cancel: threading.Event):
        self.job, self.cancel = job, cancel
        self.result = asyncio.wrap_future(job)  # one for all the waiters (call on the event loop)
        self.waiters = 0

    async def wait(self, on_abandon):
        """The job's result; when the last waiting client goes away, the job is cancelled (a
        queued one never starts, a running one stops at its next window) and ``on_abandon()``
        is called before the cancellation reaches the caller."""
        self.waiters += 1
        try:
            # NOTE: shielded, so that one waiter's disconnect does not cancel the others' encode.
            return await asyncio.shield(self.result)
        except asyncio.CancelledError:
            if self.waiters == 1:
                self.cancel.set()
                self.job.cancel()
                # NOTE: its outcome is read here, or asyncio would log an exception nobody retrieved
                self.result.add_done_callback(lambda f: f.cancelled() or f.exception())
                on_abandon()
            raise
        finally:
            self.waiters -= 1


class Service:
    def __init__(self, model, options: ServeOptions):
        self.model, self.options = model, options
        self.name = options.served_model_name or Path(str(model.path)).name
        self.fingerprint = "fp_" + model.fingerprint[:16]
        self.created = int(time.time())
        self.metrics = Metrics()
        self.limits = options.limits
        self.context = model.config.llm.max_position_embeddings
        if options.max_tokens >= self.context:
            raise ValueError(f"max_tokens {options.max_tokens} leaves no room for a prompt in the model's context "
                             f"of {self.context} tokens")
        self.worker = DeviceWorker(options.max_queue)
        self.cache = MemoryCache(options.memory_cache_bytes, options.memory_cache_dir, options.memory_cache_disk_bytes)
        self.media = MediaResolver(options.allowed_local_media_path, options.limits, options.allowed_media_domains,
                                   options.media_fetch_timeout_s)
        self._inflight: dict[str, _Encode] = {}

    def close(self) -> None:
        self.worker.close()

    # ------------------------------------------------------------------ the memory
    async def memory(self, req: ChatCompletionRequest, conv: Conversation):
        """The request's memory and how it was found (``cache``: hit, disk or miss; ``encode_s``)."""
        urls = [(u, p, "video") for u, p in conv.videos] + [(u, p, "image") for u, p in conv.images]
        media = await asyncio.to_thread(self.media.resolve_all, [(u, p, k) for u, p, k in urls])
        knobs = self._knobs(req, conv)
        identity = {"media": [[m.kind, m.digest] for m in media], "options": knobs, "system": conv.system,
                    "checkpoint": self.model.fingerprint, "dtype": str(self.model.dtype)}
        key = MemoryCache.key(identity)
        memory = self.cache.get(key)
        if memory is not None:
            self.metrics.inc("vxl_memory_cache_hits_total")
            return memory, {"cache": "hit", "encode_s": 0.0}
        entry = self._inflight.get(key)
        first = entry is None
        if first:
            cancel = threading.Event()
            entry = _Encode(self.worker.submit(self._encode_job, key, identity, media, knobs, conv.system, cancel),
                            cancel)
            self._inflight[key] = entry
            loop = asyncio.get_running_loop()
            entry.job.add_done_callback(lambda _: _call_soon(loop, self._forget, key, entry))
        try:
            memory, tier, seconds = await entry.wait(lambda: self._forget(key, entry))
        except _ENGINE_ERRORS as e:
            raise APIError(400, str(e)) from None
        except Exception as e:  # noqa: BLE001 - reported to the client as a server error
            raise _internal("encoding the media", e) from e
        if not first:
            tier, seconds = "hit", 0.0
        name = {"hit": "vxl_memory_cache_hits_total", "disk": "vxl_memory_cache_disk_hits_total",
                "miss": "vxl_memory_cache_misses_total"}[tier]
        self.metrics.inc(name)
        return memory, {"cache": tier, "encode_s": seconds}

    def _forget(self, key: str, entry: _Encode) -> None:
        """``entry`` no longer serves new clients of ``key`` (it ended, or its clients left)."""
        if self._inflight.get(key) is entry:
            del self._inflight[key]

    def health(self) -> dict:
        """``{"status": "ok"}``, or ``"degraded"`` and why (the memory cache folder cannot be written)."""
        return self.cache.health()

    def _knobs(self, req: ChatCompletionRequest, conv: Conversation) -> dict:
        knobs = {"compression_ratio": req.compression_ratio}
        for name in ("num_frames", "fps", "max_frames"):
            if getattr(req, name) is not None:
                knobs[name] = getattr(req, name)
        if conv.videos:
            if req.num_frames is None and req.fps is None:
                knobs["num_frames"] = self.options.default_frames
            if req.fps is not None and req.max_frames is None:
                knobs["max_frames"] = self.options.max_frames
        return knobs

    def _encode_job(self, key: str, identity: dict, media: list[Media], knobs: dict, system: str | None,
                    cancel: threading.Event):
        """Device thread: the memory from the cache folder (if the file there was made for
        ``identity``), or decoded and encoded now (until ``cancel`` is set: the last client
        waiting for it went away)."""
        memory = self.cache.load(key, self.model, identity) if self.cache.on_disk(key) else None
        if memory is not None:
            return memory, "disk", 0.0
        t0 = time.perf_counter()
        sampling = {k: v for k, v in knobs.items() if k != "compression_ratio"}
        options = EncodeOptions(knobs["compression_ratio"], system=system)
        with self._visual(media) as visual:
            try:
                request = VisualRequest.optional(**visual, **sampling)
                memory = self.model.encode_request(request, options, cancel)
            except EncodeCancelled:
                self.metrics.inc("vxl_encodes_cancelled_total")
                raise
        seconds = time.perf_counter() - t0
        memory.state.identity = identity
        evicted = self.cache.evictions
        self.cache.put(key, memory)
        self.metrics.inc("vxl_memory_cache_evictions_total", self.cache.evictions - evicted)
        self.metrics.inc("vxl_encodes_total")
        self.metrics.inc("vxl_encode_seconds_total", seconds)
        return memory, "miss", seconds

    @contextlib.contextmanager
    def _visual(self, media: list[Media]):
        """The encode arguments for the media: their open files (decoded one piece at a time under
        the server's limits), closed afterwards. A file written to meanwhile fails the encode,
        which is then not cached under the hash of what it held before."""
        videos = [m for m in media if m.kind == "video"]
        visual = {"video": videos[0].file} if videos else {"images": [m.file for m in media]} if media else {}
        try:
            yield {**visual, "limits": self.options.limits} if visual else {}
            for m in media:
                if m.file.changed():
                    raise ValueError(f"the {m.kind}_url changed while it was read; send the request again")
        finally:
            for m in media:
                m.close()

    # ------------------------------------------------------------------ the answer
    def check_context(self, conv: Conversation, max_tokens: int, param: str) -> None:
        """Refuse, before any media is opened, a request whose prompt text and ``max_tokens`` do not
        fit in the model's context (the engine's own rule; the prompt's bytes are checked already)."""
        try:
            tok = tokenize_prompt(self.model.tokenizer, build_prompt(messages=conv.messages, system=conv.system))
        except ValueError as e:
            raise APIError(400, str(e), "messages") from None
        text_tokens = len(tok.before) + len(tok.after)
        if text_tokens + max_tokens > self.context:
            raise APIError(400, f"prompt too long: {text_tokens} text tokens + {param} {max_tokens} exceed the "
                                f"model's context of {self.context} tokens", param, code="context_length_exceeded")

    def answer(self, memory, conv: Conversation, options: dict, info: dict) -> Answer:
        """Queue the generation; its pieces arrive through the returned :class:`Answer`."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        emit = lambda piece: _call_soon(loop, queue.put_nowait, piece)  # noqa: E731
        job = self.worker.submit(self._generate_job, memory, conv.messages, options, cancel, emit, info)
        job.add_done_callback(lambda _: _call_soon(loop, queue.put_nowait, Answer._DONE))
        return Answer(self, job, queue, cancel, info)

    def _generate_job(self, memory, messages: list[dict], options: dict, cancel: threading.Event, emit, info: dict):
        if cancel.is_set():
            raise Cancelled()
        stream = self.model.stream(memory, messages=messages, **options)
        pieces = iter(stream)
        try:
            for piece in pieces:
                if cancel.is_set():
                    raise Cancelled()
                emit(piece)
        finally:
            pieces.close()
        return _with_encode(stream.output, memory, info)

    def _account(self, out) -> None:
        s = out.stats
        self.metrics.inc("vxl_prompt_tokens_total", s["prompt_tokens"] + s["vsts"])
        self.metrics.inc("vxl_completion_tokens_total", len(out.token_ids))
        self.metrics.inc("vxl_prefill_seconds_total", s["prefill_s"])
        self.metrics.inc("vxl_decode_seconds_total", s["decode_s"])

    # ------------------------------------------------------------------ metrics
    def render_metrics(self) -> str:
        return self.metrics.render({
            "vxl_queue_length": {(): self.worker.waiting},
            "vxl_running_requests": {(): self.worker.running},
            "vxl_memory_cache_bytes": {(("tier", "device"),): self.cache.nbytes,
                                       (("tier", "disk"),): self.cache.disk_nbytes},
            "vxl_memory_cache_entries": {(("tier", "device"),): len(self.cache),
                                         (("tier", "disk"),): self.cache.disk_entries},
        })


def _with_encode(out, memory, info: dict):
    """``out`` with this request's encode in its timings: a request that encoded its memory
    (``info["cache"] == "miss"``) counts the encode's seconds in ``ttft_s`` and ``total_s`` and the
    memory's vision time as ``vision_s``; any other request ran no vision (``vision_s`` 0)."""
    if info.get("cache") == "miss":
        with_encode(out.stats, memory.stats["vision_s"], info.get("encode_s", 0.0))
    return out


def _internal(what: str, e: Exception) -> APIError:
    """A 500 that names the failure's kind and an id; its text (which may hold server paths) goes to
    the server's log under that id."""
    ref = uuid.uuid4().hex[:12]
    _log.error("%s failed (error id %s)", what, ref, exc_info=e)
    return APIError(500, f"{what} failed ({type(e).__name__}); the server's log has the details under error id {ref}",
                    type_="server_error", code="internal_error")


def _call_soon(loop: asyncio.AbstractEventLoop, fn, *args) -> None:
    """``fn(*args)`` on the event loop, from any thread; nothing once the loop has closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)
