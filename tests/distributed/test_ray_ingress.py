"""``serve --ray``'s ingress reads bodies as ``vxl-fast serve`` does, before any replica is asked:
the declared length first, a bounded number of bodies at once (429 before reading beyond it), each
counted as it arrives. No Ray cluster is needed: the ingress is a plain class."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("starlette")

from starlette.requests import Request  # noqa: E402

from vxl_fast.distributed.serve import Ingress  # noqa: E402
from vxl_fast.server.options import ServeOptions  # noqa: E402


class NoReplica:
    def options(self, **kwargs):
        raise AssertionError("a replica was asked")


def _request(chunks, declared=None, reads=None, stall: asyncio.Event | None = None):
    headers = [(b"content-type", b"application/json")]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    pending = list(chunks)

    async def receive():
        if reads is not None:
            reads.append(1)
        if stall is not None:
            await stall.wait()
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": headers,
             "query_string": b"", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000), "scheme": "http"}
    return Request(scope, receive)


def _error(response) -> tuple[int, str]:
    return response.status_code, json.loads(response.body)["error"]["message"]


def test_a_declared_body_over_the_limit_is_refused_unread():
    ingress, reads = Ingress(NoReplica(), ServeOptions(max_body_bytes=10)), []
    status, message = _error(asyncio.run(ingress(_request([b"x" * 11], declared=11, reads=reads))))
    assert (status, reads) == (413, []) and "exceeds the server's limit of 10 bytes" in message


def test_a_streamed_body_over_the_limit_is_refused_as_it_arrives():
    ingress = Ingress(NoReplica(), ServeOptions(max_body_bytes=10))
    status, message = _error(asyncio.run(ingress(_request([b"x" * 6, b"x" * 6, b"x" * 6]))))
    assert status == 413 and "exceeds the server's limit of 10 bytes" in message


def test_beyond_the_queue_a_request_gets_429_before_its_body_is_read():
    ingress = Ingress(NoReplica(), ServeOptions(max_queue=0, body_timeout_s=5))

    async def run():
        stall, reads = asyncio.Event(), []
        first = asyncio.ensure_future(ingress(_request([b"{}"], stall=stall)))
        await asyncio.sleep(0.05)  # the first body is being read (stalled)
        second = await ingress(_request([b"{}"], reads=reads))
        first.cancel()
        return second, reads
    second, reads = asyncio.run(run())
    status, message = _error(second)
    assert (status, reads) == (429, []) and "the server is busy" in message


def test_a_stalled_body_times_out():
    ingress = Ingress(NoReplica(), ServeOptions(body_timeout_s=0.1))
    status, message = _error(asyncio.run(ingress(_request([b"{}"], stall=asyncio.Event()))))
    assert status == 408 and "did not arrive within 0.1 s" in message
