"""The HTTP routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``/health``, ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from ..errors import install_hint

try:
    from fastapi import FastAPI, Request
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.requests import ClientDisconnect
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError(f"the server needs FastAPI and uvicorn: {install_hint('serve')}") from None

from . import protocol
from .fields import check_fields, media_sampling
from .guard import HostGuard, RequestGuard
from .protocol import APIError
from .options import ServeOptions
from .service import Answer, Service


def create_app(model, options: ServeOptions | None = None, **kwargs) -> FastAPI:
    """An OpenAI-compatible app serving ``model`` (a :class:`vxl_fast.VideoXL`).

    ``options`` (or its fields as keyword arguments): see :class:`ServeOptions`. Run it with
    uvicorn; the app's shutdown drops queued work and waits for the running job.
    """
    if options is None:
        options = ServeOptions(**kwargs)
    elif kwargs:
        raise TypeError("pass options= or keyword options, not both")
    service = Service(model, options)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(service.close)

    # no /docs, /redoc or /openapi.json: the API is OpenAI's, and nothing more is shown to clients
    app = FastAPI(title="vxl_fast", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _add_error_handlers(app, service)
    _add_status_routes(app, service, str(model.path))

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _chat_completion(request, service, options)

    # the last added runs first: Host, then CORS (preflights), then the API key and body type
    app.add_middleware(RequestGuard, api_key=options.api_key, metrics=service.metrics)
    if options.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(HostGuard, allowed=options.allowed_hosts, metrics=service.metrics)
    return app


def _add_error_handlers(app: FastAPI, service: Service) -> None:
    """OpenAI-style error bodies: an :class:`APIError` with its status, anything else as a 500."""
    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError):
        service.metrics.inc("vxl_requests_total", status=str(e.status))
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, e: Exception):
        service.metrics.inc("vxl_requests_total", status="500")
        err = APIError(500, f"internal error: {type(e).__name__}: {e}", type_="server_error", code="internal_error")
        return JSONResponse(err.body(), status_code=500)


def _add_status_routes(app: FastAPI, service: Service, model_path: str) -> None:
    """``GET /health``, ``/v1/models`` and ``/metrics``."""
    @app.get("/health")
    async def health():
        if service.worker.closed:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return service.health()  # "degraded" (still serving) and why, e.g. a full memory cache folder

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [protocol.model_card(service.name, model_path, service.created)]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(service.render_metrics(), media_type="text/plain; version=0.0.4")


async def _chat_completion(request: Request, service: Service, options: ServeOptions):
    """``POST /v1/chat/completions``: one answer, whole or as server-sent events; 499 when the client goes.
    A queue slot is taken before the body is read, so waiting bodies are bounded by the queue."""
    check_declared_length(request, options.max_body_bytes)
    slot = service.worker.admit()
    answer: Answer | None = None
    handed_off = False

    async def first_piece():
        nonlocal answer
        memory, info = await service.memory(req, conv)
        answer = service.answer(memory, conv, generation, info)
        return await answer.next()

    async def whole():
        piece = await first_piece()
        while piece is not None:
            piece = await answer.next()

    try:
        req, conv, generation = _read(await read_body(request, options), service)
        await asyncio.to_thread(service.check_context, conv, generation["max_new_tokens"],
                                "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens")
        if req.stream:
            first = await _unless_disconnected(request, first_piece())
            handed_off = True
            return _EventStream(_events(service, req, answer, first), service, answer, slot)
        await _unless_disconnected(request, whole())
        service.metrics.inc("vxl_requests_total", status="200")
        return protocol.completion(protocol.new_id(), int(time.time()), service.name, service.fingerprint,
                                   answer.output, answer.info)
    except ClientGone:
        if answer is not None:
            answer.stop()
        service.metrics.inc("vxl_requests_cancelled_total")
        service.metrics.inc("vxl_requests_total", status="499")
        return Response(status_code=499)
    except asyncio.CancelledError:  # the server is shutting down past its graceful timeout
        if answer is not None and answer.stop():
            service.metrics.inc("vxl_requests_cancelled_total")
        raise
    finally:
        if not handed_off:
            slot.release_after(answer.job if answer is not None else None)


def _read(body: bytes, service: Service):
    """The request, its conversation and generation options, every field and budget checked
    before any media is opened or any text tokenized."""
    req = protocol.parse_request(body)
    if req.model != service.name:
        raise APIError(404, f"the model {req.model!r} does not exist; this server serves {service.name!r}",
                       "model", code="model_not_found")
    check_fields(req.model_extra or {})
    for name, (value, at) in media_sampling(req.mm_processor_kwargs, req.media_io_kwargs).items():
        if getattr(req, name) not in (None, value):
            raise APIError(400, f"{at}={value!r} contradicts {name}={getattr(req, name)!r}", at)
        setattr(req, name, value)
    options = service.options
    max_tokens = protocol.check_request(req, options.max_tokens, options.max_frames)
    generation = protocol.generation_options(req, max_tokens, service.limits)
    conv = protocol.parse_messages(req.messages)
    try:
        service.limits.check_prompt(conv.text(), service.context)
    except ValueError as e:
        raise APIError(400, str(e), "messages", code="prompt_too_long") from None
    return req, conv, generation


class ClientGone(Exception):
    pass


def check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the request body ({declared} bytes) exceeds the server's limit of {limit} bytes")


async def read_body(request: Request, options: ServeOptions) -> bytes:
    """The body, counted as it arrives (413 past ``max_body_bytes``; 408 after ``body_timeout_s``)."""
    limit = options.max_body_bytes

    async def read() -> bytes:
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > limit:
                raise APIError(413, f"the request body exceeds the server's limit of {limit} bytes")
        return bytes(body)

    try:
        return await asyncio.wait_for(read(), options.body_timeout_s)
    except asyncio.TimeoutError:
        raise APIError(408, f"the request body did not arrive within {options.body_timeout_s:g} s",
                       code="body_timeout") from None
    except ClientDisconnect:
        raise ClientGone() from None


async def _unless_disconnected(request: Request, work):
    """Await ``work``; raise :class:`ClientGone` (cancelling it) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    raise ClientGone()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _events(service: Service, req, answer: Answer, first: str | None):
    """The answer as server-sent ``chat.completion.chunk`` events, ending with ``[DONE]``."""
    rid, created = protocol.new_id(), int(time.time())
    chunk = lambda delta, **kw: _sse(protocol.chunk(rid, created, service.name, service.fingerprint,  # noqa: E731
                                                    delta, **kw))
    yield chunk({"role": "assistant", "content": ""})
    piece = first
    try:
        while piece is not None:
            yield chunk({"content": piece})
            piece = await answer.next()
    except APIError as e:
        service.metrics.inc("vxl_requests_total", status=str(e.status))
        yield _sse(e.body())
        yield "data: [DONE]\n\n"
        return
    out = answer.output
    yield chunk({}, finish=protocol.FINISH[out.finish_reason])
    if req.stream_options is not None and req.stream_options.include_usage:
        yield chunk(None, usage_=protocol.usage(out, answer.info))
    service.metrics.inc("vxl_requests_total", status="200")
    yield "data: [DONE]\n\n"


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


class _EventStream(StreamingResponse):
    """An SSE response that stops its generation (and frees its slot) however it ends."""

    def __init__(self, events, service: Service, answer: Answer, slot):
        super().__init__(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        self._service, self._answer, self._slot = service, answer, slot

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()
            if self._answer.stop():
                self._service.metrics.inc("vxl_requests_cancelled_total")
                self._service.metrics.inc("vxl_requests_total", status="499")
            self._slot.release_after(self._answer.job)
