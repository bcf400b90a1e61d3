"""The checks every request passes before a route sees it: its ``Host``, its API key, the type
of its body. Pure ASGI middleware, so that nothing of a refused request's body is read."""

from __future__ import annotations

import hmac
import ipaddress
import json

from .metrics import Metrics

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


def default_hosts(bound: str) -> tuple[str, ...]:
    """The ``Host`` names a server bound to ``bound`` answers by default: the loopback names (and
    the address itself) when bound to loopback, the address and the loopback names when bound to
    one address, any name (``*``) when bound to every address (0.0.0.0, ::)."""
    name = bound.strip("[]").lower()
    if name in ("", "0.0.0.0", "::"):
        return ("*",)
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return tuple(dict.fromkeys((name, *LOOPBACK_NAMES)))
    shown = f"[{ip}]" if ip.version == 6 else str(ip)
    return tuple(dict.fromkeys((shown, *LOOPBACK_NAMES)))


def host_name(header: str) -> str:
    """``Host`` header → the name without its port, lower case (IPv6 in brackets)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[:header.find("]") + 1] if "]" in header else header
    if header.count(":") > 1:  # a bare IPv6 address
        return f"[{header}]"
    return header.rsplit(":", 1)[0]


class HostGuard:
    """Answer only requests whose ``Host`` is allowed (against DNS rebinding); 400 otherwise."""

    def __init__(self, app, allowed: tuple[str, ...], metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.allowed = None if "*" in allowed else {host_name(h) for h in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.allowed is not None:
            host = _header(scope, b"host")
            if host is None or host_name(host) not in self.allowed:
                self.metrics.inc("vxl_requests_refused_total", reason="host")
                return await _refuse(send, 400, f"the Host header {host!r} is not one this server answers to; "
                                                "the operator can allow it with --allowed-hosts", "host_not_allowed")
        await self.app(scope, receive, send)


class RequestGuard:
    """Under ``/v1``: the API key (when set; ``Authorization: Bearer``, compared in constant time)
    and, for a POST, an ``application/json`` body (a cross-site form or ``text/plain`` POST is refused)."""

    def __init__(self, app, api_key: str | None, metrics: Metrics):
        self.app, self.metrics = app, metrics
        self.key = None if api_key is None else f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1") or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        if self.key is not None:
            given = (_header(scope, b"authorization") or "").encode("latin-1")
            if not hmac.compare_digest(given, self.key):
                self.metrics.inc("vxl_requests_refused_total", reason="api_key")
                return await _refuse(send, 401, "a valid API key is needed: send 'Authorization: Bearer <key>'",
                                     "invalid_api_key", {b"www-authenticate": b"Bearer"})
        if scope["method"] == "POST":
            kind = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                self.metrics.inc("vxl_requests_refused_total", reason="content_type")
                return await _refuse(send, 415, f"the request body must be application/json, got {kind or 'none'!r}",
                                     "unsupported_media_type")
        await self.app(scope, receive, send)


def _header(scope, name: bytes) -> str | None:
    values = [v for k, v in scope["headers"] if k.lower() == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


async def _refuse(send, status: int, message: str, code: str, headers: dict | None = None) -> None:
    """An OpenAI error object; the request's body is never read."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                 "code": code}}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *(headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
