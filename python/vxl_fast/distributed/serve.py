"""``vxl-fast serve --ray``: the OpenAI-compatible server (:func:`vxl_fast.server.create_app`)
on Ray Serve, one loaded model per replica (``num_gpus`` each).

Two plain deployments. ``VideoXL`` replicas each run our FastAPI app in-process, request by
request over ASGI, so its memory cache, queue and errors are the ones of ``vxl-fast serve``.
``Ingress`` takes the HTTP request from Ray's proxy, reads the video and image URLs of its
messages and calls a replica through a handle with that key as the Serve session id. The
replicas' router is Ray's consistent-hash router (``ray.serve.experimental``): a video's
requests go to the replica that already holds its memory; when that replica is at
``max_ongoing_requests`` the request falls back to the next replicas on the ring. Requests
without media (``/v1/models``, ``/health``) go to any replica. A Ray without that router
routes by its default policy (any replica).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time

from .cluster import connected, import_ray

REPLICA_HEADER = "x-vxl-fast-replica"  # which replica answered (debugging, tests)
_ROUTER = "ray.serve.experimental.consistent_hash_router.ConsistentHashRouter"
log = logging.getLogger("vxl_fast.serve")


def video_key(body: bytes) -> str | None:
    """A stable key of the videos and images a chat request names (their URLs, in order), or
    None when it names none or is not a chat request the server could read."""
    try:
        messages = json.loads(body).get("messages")
    except (ValueError, AttributeError):
        return None
    urls = []
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        for part in content if isinstance(content, list) else ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in ("video_url", "image_url"):
                ref = part.get(kind)
                url = ref.get("url") if isinstance(ref, dict) else ref
                if isinstance(url, str):
                    urls.append(f"{kind}:{url}")
    return hashlib.sha256("\n".join(urls).encode()).hexdigest() if urls else None


class Replica:
    """One model and the server app around it; ``call`` answers one HTTP request."""

    def __init__(self, model: str, device: str | None, dtype: str | None, options):
        from .. import VideoXL
        from ..server import create_app

        self.app = create_app(VideoXL.from_pretrained(model, device=device, dtype=dtype), options)
        self._background: set[asyncio.Task] = set()

    async def call(self, request: dict):
        """Stream the ASGI response messages of ``request`` (see :func:`_scope`)."""
        from ray import serve

        replica = serve.get_replica_context().replica_id.unique_id
        async for message in _asgi(self.app, request, self._background):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REPLICA_HEADER.encode(), replica.encode())]}
            yield message


class Ingress:
    """Ray's HTTP proxy → this → a replica chosen by the request's video key. Bodies are read as
    ``vxl-fast serve`` reads them (declared length first, then counted, within the body timeout),
    and at most ``max_queue + 1`` at once: beyond that a request gets 429 before its body is read."""

    def __init__(self, replica, options):
        self.replica, self.options = replica, options
        self._reading = asyncio.Semaphore(options.max_queue + 1)

    async def __call__(self, request):
        from starlette.responses import JSONResponse, Response, StreamingResponse

        from ..server.app import ClientGone, check_declared_length, read_body
        from ..server.protocol import APIError

        try:
            check_declared_length(request, self.options.max_body_bytes)
            if self._reading.locked():
                raise APIError(429, "the server is busy: too many request bodies are arriving; try again later",
                               code="queue_full")
            async with self._reading:
                body = await read_body(request, self.options)
        except APIError as e:
            return JSONResponse(e.body(), status_code=e.status)
        except ClientGone:
            return Response(status_code=499)
        key = video_key(body) if request.method == "POST" else None
        handle = self.replica.options(stream=True, **({"session_id": key} if key else {}))
        stream = handle.call.remote({"method": request.method, "path": request.url.path,
                                     "query": request.url.query, "headers": list(request.headers.raw),
                                     "client": list(request.client) if request.client else None, "body": body})
        try:
            start = await stream.__anext__()
        except Exception as e:  # noqa: BLE001 - no replica answered; OpenAI-style error
            stream.cancel()
            return JSONResponse({"error": {"message": f"no replica could take the request: {type(e).__name__}: {e}",
                                           "type": "server_error", "param": None, "code": "unavailable"}},
                                status_code=503)

        async def body_pieces():
            try:
                async for message in stream:
                    if message["type"] == "http.response.body" and message.get("body"):
                        yield message["body"]
            finally:
                stream.cancel()  # the client went away, or the answer ended: nothing left to run

        response = StreamingResponse(body_pieces(), status_code=start["status"])
        response.raw_headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        return response


def build(model: str, options, *, replicas: int, gpus_per_replica: float | None = None,
          cpus_per_replica: float = 1, device: str | None = None, dtype: str | None = None):
    """The Serve application: ``Ingress`` bound to ``replicas`` ``VideoXL`` replicas, each with
    ``gpus_per_replica`` GPUs (default 1 when the cluster has GPUs, else 0: CPU)."""
    ray = import_ray()
    from ray import serve

    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"replicas must be a positive integer, got {replicas!r}")
    if gpus_per_replica is None:
        gpus_per_replica = 1 if ray.cluster_resources().get("GPU", 0) else 0
    device = device or ("cuda" if gpus_per_replica else "cpu")
    extra = {}
    router = _consistent_hash_router()
    if router is not None:
        from ray.serve.config import RequestRouterConfig

        extra["request_router_config"] = RequestRouterConfig(
            request_router_class=router, request_router_kwargs={"num_fallback_replicas": replicas - 1})
    else:
        log.warning("this Ray has no consistent-hash router: requests go to any replica")
    replica = serve.deployment(Replica, name="VideoXL", num_replicas=replicas,
                               ray_actor_options={"num_gpus": gpus_per_replica, "num_cpus": cpus_per_replica},
                               max_ongoing_requests=options.max_queue + 1, max_constructor_retry_count=3,
                               **extra)
    ingress = serve.deployment(Ingress, name="Ingress", ray_actor_options={"num_cpus": 0})
    return ingress.bind(replica.bind(str(model), device, dtype, options), options)


def serve_on_ray(model: str, options, *, replicas: int, host: str = "127.0.0.1", port: int = 8000,
                 address: str | None = None, gpus_per_replica: float | None = None, device: str | None = None,
                 dtype: str | None = None) -> int:
    """Deploy :func:`build` on Ray Serve (``address``, else a local cluster on 127.0.0.1), its
    HTTP proxy on ``host:port``, and serve until interrupted."""
    with connected(address):
        from ray import serve

        serve.start(http_options={"host": host, "port": port})
        try:
            serve.run(build(model, options, replicas=replicas, gpus_per_replica=gpus_per_replica, device=device,
                            dtype=dtype), name="vxl_fast", route_prefix="/")
            print(f"vxl-fast serve: {replicas} replica{'s' * (replicas > 1)} on Ray, listening on "
                  f"http://{host}:{port}", flush=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0
        finally:
            with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C: stop waiting for it
                serve.shutdown()


def _consistent_hash_router():
    try:
        from ray.serve.experimental.consistent_hash_router import ConsistentHashRouter
    except ImportError:
        return None
    return ConsistentHashRouter


def _scope(request: dict) -> dict:
    """The ASGI HTTP scope of a request forwarded by :class:`Ingress`."""
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": request["method"], "scheme": "http", "path": request["path"],
            "raw_path": request["path"].encode(), "query_string": request["query"].encode(), "root_path": "",
            "headers": [(bytes(k), bytes(v)) for k, v in request["headers"]],
            "client": tuple(request["client"]) if request["client"] else None, "server": ("127.0.0.1", 0)}


async def _asgi(app, request: dict, background: set):
    """Run ``request`` through the ASGI ``app`` in this process, yielding the messages it sends.
    When the consumer stops early (the client went away), the app sees ``http.disconnect``."""
    sent: asyncio.Queue = asyncio.Queue()
    gone = asyncio.Event()
    body = [request["body"]]

    async def receive():
        if body:
            return {"type": "http.request", "body": body.pop(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    task = asyncio.ensure_future(app(_scope(request), receive, sent.put))
    background.add(task)
    task.add_done_callback(background.discard)
    try:
        while True:
            if sent.empty():
                getter = asyncio.ensure_future(sent.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():  # the app returned (or failed)
                    getter.cancel()
                    if sent.empty():
                        task.result()
                        return
                    continue
                message = getter.result()
            else:
                message = sent.get_nowait()
            yield message
            if message["type"] == "http.response.body" and not message.get("more_body"):
                return
    finally:
        gone.set()
