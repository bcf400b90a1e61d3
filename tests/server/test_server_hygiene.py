"""A hostile client: refused before its body is read (admission, body size, Host, body type, API
key), before its text is tokenized (prompt budget) and before any media is opened (stop strings,
max_tokens against the context)."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from conftest import CountingTokenizer  # noqa: E402
from server_harness import NAME, LiveServer, server_model, wait_until  # noqa: E402

CHAT = "/v1/chat/completions"


def question(**fields) -> dict:
    return {"model": NAME, "messages": [{"role": "user", "content": "What is it?"}], "max_tokens": 2, **fields}


@pytest.fixture(scope="module")
def server():
    from vxl_fast.server import create_app

    live = LiveServer(create_app(server_model(), max_tokens=64, max_queue=0, max_body_bytes=256 * 1024,
                                 body_timeout_s=3.0))
    yield live
    live.close()


def post(server, payload=None, **kw) -> httpx.Response:
    kw.setdefault("headers", {"content-type": "application/json"})
    return httpx.post(server.url + CHAT, json=payload, timeout=60, **kw)


def error(r: httpx.Response, status: int, message: str, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"], err
    if param is not None:
        assert err["param"] == param, err
    return err


def raw(server, head: str, body: bytes = b"") -> socket.socket:
    """A client that sends ``head`` (and ``body``), then waits."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
    return s


def reply(s: socket.socket) -> bytes:
    data = b""
    for _ in range(1000):  # until the server closes or has sent a whole small answer
        part = s.recv(65536)
        data += part
        if not part or (b"\r\n\r\n" in data and data.rstrip().endswith(b"}")):
            break
    return data


def head(server, length: int, ctype: str = "application/json") -> str:
    return (f"POST {CHAT} HTTP/1.1\nHost: 127.0.0.1:{server.port}\nContent-Type: {ctype}\n"
            f"Content-Length: {length}\n")


def test_a_stalled_upload_holds_its_queue_slot_and_the_next_is_refused_before_its_body(server):
    """Admission comes first: a client that sends headers and stalls takes the one slot (queue 0);
    the next gets 429 though it never sent a byte of its body; the stalled one gets 408."""
    stalled = raw(server, head(server, 50_000), b'{"model": ')
    try:
        wait_until(lambda: server.service.worker.admitted == 1, 30, "the stalled upload to be admitted")
        second = raw(server, head(server, 50_000))
        try:
            answer = reply(second)
            assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
            assert b"queue_full" in answer
        finally:
            second.close()
        assert reply(stalled).startswith(b"HTTP/1.1 408")
    finally:
        stalled.close()
    server.wait_idle()


def test_body_over_the_limit(server):
    s = raw(server, head(server, 10 * 2 ** 20))  # declared: refused before admission, body never read
    try:
        answer = reply(s)
        assert answer.startswith(b"HTTP/1.1 413") and b"10485760 bytes" in answer
    finally:
        s.close()

    def chunks():  # no Content-Length: counted while it arrives
        yield b'{"model": "' + b"x" * 200_000
        yield b"x" * 200_000 + b'"}'
    r = httpx.post(server.url + CHAT, content=chunks(), headers={"content-type": "application/json"}, timeout=60)
    error(r, 413, "exceeds the server's limit of 262144 bytes")
    server.wait_idle()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.nip.io", "localhost.evil"])
def test_a_foreign_host_is_refused_on_every_route(server, host):
    refused = server.metric("vxl_requests_refused_total", reason="host")
    for r in (httpx.get(server.url + "/health", headers={"host": host}, timeout=30),
              post(server, question(), headers={"host": host, "content-type": "application/json"})):
        error(r, 400, "Host header")
    assert server.metric("vxl_requests_refused_total", reason="host") == refused + 2
    assert server.service.worker.admitted == 0


def test_loopback_names_are_answered(server):
    for host in (f"localhost:{server.port}", f"127.0.0.1:{server.port}", "LOCALHOST"):
        assert httpx.get(server.url + "/health", headers={"host": host}, timeout=30).status_code == 200


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None])
def test_a_post_body_must_be_json(server, ctype):
    """A cross-site form or text/plain POST (no CORS preflight) is refused unread."""
    import json

    headers = {} if ctype is None else {"content-type": ctype}
    r = httpx.post(server.url + CHAT, content=json.dumps(question()).encode(), headers=headers, timeout=30)
    error(r, 415, "must be application/json")


def test_cors_is_off_by_default(server):
    r = httpx.options(server.url + CHAT, timeout=30, headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_origins_and_api_key():
    from vxl_fast.server import create_app

    live = LiveServer(create_app(server_model(), max_tokens=8, api_key="s3cret",
                                 cors_origins=["https://app.example"]))
    try:
        models = live.url + "/v1/models"
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret"},
                        {"authorization": "Bearer s3cre"}, {"authorization": "bearer s3cret"}):
            r = httpx.get(models, headers=headers, timeout=30)
            error(r, 401, "API key")
            assert r.headers["www-authenticate"] == "Bearer"
        assert httpx.get(models, headers={"authorization": "Bearer s3cret"}, timeout=30).status_code == 200
        assert httpx.get(live.url + "/health", timeout=30).status_code == 200  # health needs no key
        r = httpx.post(live.url + CHAT, json=question(), headers={"authorization": "Bearer s3cret"}, timeout=120)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
        ok = httpx.options(live.url + CHAT, timeout=30, headers={
            "origin": "https://app.example", "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type"})
        assert ok.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(live.url + CHAT, timeout=30, headers={
            "origin": "https://evil.example", "access-control-request-method": "POST"})
        assert "access-control-allow-origin" not in other.headers
        assert live.metric("vxl_requests_refused_total", reason="api_key") == 5
    finally:
        live.close()


def test_stop_budgets(server):
    encodes = server.metric("vxl_encodes_total")
    error(post(server, question(stop="x" * 150 * 1024)), 400, "longer than the limit of 256 (max_stop_chars)", "stop")
    error(post(server, question(stop=[f"s{i}" for i in range(17)])), 400, "max_stop_strings", "stop")
    assert server.metric("vxl_encodes_total") == encodes


def test_max_tokens_against_the_context(server):
    """The server's limit, then the context (the prompt's text tokens + max_tokens), before any encode."""
    from vxl_fast.server import create_app

    error(post(server, question(max_tokens=65)), 400, "exceeds the server's limit of 64", "max_tokens")
    context = server_model().config.llm.max_position_embeddings
    with pytest.raises(ValueError, match=f"leaves no room for a prompt in the model's context of {context}"):
        create_app(server_model(), max_tokens=context)
    live = LiveServer(create_app(server_model(), max_tokens=context - 1))
    try:
        r = httpx.post(live.url + CHAT, json=question(max_completion_tokens=context - 5), timeout=60)
        error(r, 400, f"text tokens + max_completion_tokens {context - 5} exceed the model's context of {context}",
              "max_completion_tokens")
        assert live.metric("vxl_encodes_total") == 0
    finally:
        live.close()


def test_a_4_mib_prompt_is_refused_before_tokenization(server, monkeypatch):
    from vxl_fast.server import create_app

    model = server_model()
    counting = CountingTokenizer(model.tokenizer)
    calls = counting.calls
    monkeypatch.setattr(model, "tokenizer", counting)
    live = LiveServer(create_app(model, max_tokens=8))
    try:
        big = question(messages=[{"role": "user", "content": "x" * 4 * 2 ** 20}])
        err = error(httpx.post(live.url + CHAT, json=big, timeout=120), 400, "prompt too long", "messages")
        assert "(max_prompt_bytes" in err["message"]
        assert calls == [] and live.metric("vxl_encodes_total") == 0
        assert httpx.post(live.url + CHAT, json=question(), timeout=120).status_code == 200
        assert calls
    finally:
        live.close()


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_no_schema_or_docs_pages_are_served(server, path):
    assert httpx.get(server.url + path, timeout=30).status_code == 404
