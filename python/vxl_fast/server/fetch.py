"""Remote media, fetched only from the domains the operator allows (``--allowed-media-domains``,
vLLM's convention) and only from public addresses.

The host must be one of the domains or a subdomain of one; every address it resolves to must be
public (no private, loopback, link-local, reserved or multicast address, IPv4-mapped ones
included), and the connection goes to that checked address (a second lookup cannot move it).
Plain GET with ``http``/``https`` only: no credentials in the URL, no redirects followed, no
compressed transfer; the body is counted as it arrives against the media byte limit and the
whole fetch is bounded in time.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from urllib.parse import urlsplit

_CHUNK = 1 << 16


class FetchRefused(ValueError):
    """The URL may not be fetched, or its answer is not acceptable media."""


def host_allowed(host: str, domains: tuple[str, ...]) -> bool:
    """``host`` is one of ``domains`` or a subdomain of one (case-insensitive)."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in (d.lower().strip(".") for d in domains))


def is_public(address: str) -> bool:
    """An address a fetch may reach: globally routable, not multicast (IPv4-mapped IPv6 by its
    IPv4 address)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def public_address(host: str, port: int) -> str:
    """One address of ``host``, when every address it resolves to is public."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise FetchRefused(f"its host does not resolve ({e})") from None
    addresses = sorted({info[4][0] for info in infos})
    if not addresses or not all(is_public(a) for a in addresses):
        raise FetchRefused("its host resolves to a private, loopback or otherwise non-public address")
    return addresses[0]


def fetch(url: str, domains: tuple[str, ...], max_bytes: int, timeout_s: float) -> bytes:
    """The body of ``url`` (at most ``max_bytes``, within ``timeout_s``), under the rules above."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if scheme not in ("http", "https") or not host:
        raise FetchRefused("only http:// and https:// URLs with a host are fetched")
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("URLs with credentials are not fetched")
    if not host_allowed(host, domains):
        raise FetchRefused("its domain is not in the server's --allowed-media-domains")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise FetchRefused("its port is not a number from 1 to 65535") from None
    address = public_address(host, port)
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection((address, port), timeout=timeout_s)
        if scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        conn.sock = sock
        try:
            conn.request("GET", (parts.path or "/") + ("?" + parts.query if parts.query else ""),
                         headers={"Accept-Encoding": "identity", "User-Agent": "vxl_fast"})
            return _body(conn.getresponse(), max_bytes, deadline)
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as e:
        raise FetchRefused(f"fetching it failed ({type(e).__name__})") from None


def _body(response: http.client.HTTPResponse, max_bytes: int, deadline: float) -> bytes:
    if 300 <= response.status < 400:
        raise FetchRefused(f"it answered {response.status} (a redirect); redirects are not followed")
    if response.status != 200:
        raise FetchRefused(f"it answered HTTP {response.status}")
    if response.getheader("Content-Encoding", "identity").lower() != "identity":
        raise FetchRefused("it answered with a compressed body")
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"it is larger than the server's limit of {max_bytes} bytes (--max-media-bytes)")
    body = bytearray()
    while chunk := response.read(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise FetchRefused(f"it is larger than the server's limit of {max_bytes} bytes (--max-media-bytes)")
        if time.monotonic() > deadline:
            raise FetchRefused("it did not arrive in time")
    if not body:
        raise FetchRefused("it answered no bytes")
    return bytes(body)
