"""Remote media: fetched only from the operator's domains and only from public addresses, the
body bounded in bytes and time, no redirect followed. The machine reaches no network, so the
success path runs against a loopback server with the public-address rule relaxed for that one
address (``fetch.is_public`` patched); every refusal runs the real rules."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

pytest.importorskip("fastapi")

from server_harness import image, png  # noqa: E402
from vxl_fast.limits import Limits  # noqa: E402
from vxl_fast.server import fetch as fetch_module  # noqa: E402
from vxl_fast.server.fetch import FetchRefused, fetch, host_allowed, is_public  # noqa: E402
from vxl_fast.server.media import MediaResolver  # noqa: E402
from vxl_fast.server.options import ServeOptions  # noqa: E402
from vxl_fast.server.protocol import APIError  # noqa: E402

PNG = png(image(0))


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/secret")
            self.end_headers()
            return
        body = {"/a.png": PNG, "/big.bin": b"x" * 5000}.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def origin():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://localhost:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def loopback_allowed(monkeypatch):
    real = fetch_module.is_public
    monkeypatch.setattr(fetch_module, "is_public", lambda a: a == "127.0.0.1" or real(a))


def test_domains_and_addresses():
    assert host_allowed("media.example.com", ("example.com",)) and host_allowed("EXAMPLE.com.", ("example.com",))
    assert not host_allowed("badexample.com", ("example.com",)) and not host_allowed("example.org", ("example.com",))
    assert is_public("93.184.216.34") and is_public("2606:2800:220:1:248:1893:25c8:1946")
    for private in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "::1",
                    "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "224.0.0.1", "100.64.0.1"):
        assert not is_public(private), private


def test_refusals_before_any_connection(origin):
    cases = {
        "ftp://example.com/a.png": "only http:// and https://",
        "http://user:pw@example.com/a.png": "credentials",
        "http://evil.example/a.png": "not in the server's --allowed-media-domains",
        f"{origin}/a.png": "private, loopback or otherwise non-public",  # localhost: the real rule
        "http://localhost:99999/a.png": "its port is not a number",
    }
    for url, message in cases.items():
        with pytest.raises(FetchRefused, match=message):
            fetch(url, ("example.com", "localhost"), 10 ** 6, 5.0)


def test_a_fetch_from_an_allowed_public_address(origin, loopback_allowed):
    assert fetch(f"{origin}/a.png", ("localhost",), 10 ** 6, 5.0) == PNG
    with pytest.raises(FetchRefused, match="larger than the server's limit of 4000 bytes"):
        fetch(f"{origin}/big.bin", ("localhost",), 4000, 5.0)
    with pytest.raises(FetchRefused, match="it answered 302 \\(a redirect\\); redirects are not followed"):
        fetch(f"{origin}/redirect", ("localhost",), 10 ** 6, 5.0)
    with pytest.raises(FetchRefused, match="it answered HTTP 404"):
        fetch(f"{origin}/missing.png", ("localhost",), 10 ** 6, 5.0)


def test_the_resolver_fetches_only_with_domains(origin, loopback_allowed):
    refused = MediaResolver(None, Limits())
    with pytest.raises(APIError, match="URLs are not fetched by this server") as e:
        refused.resolve(f"{origin}/a.png", "image", "p")
    assert e.value.status == 400
    resolver = MediaResolver(None, Limits(), ("localhost",))
    media = resolver.resolve(f"{origin}/a.png", "image", "p")
    try:
        assert media.digest == hashlib.sha256(PNG).hexdigest() and media.file.name == "the image_url"
    finally:
        media.close()
    with pytest.raises(APIError, match="p: the URL is not fetched: its domain is not in"):
        resolver.resolve("https://elsewhere.example/a.png", "image", "p")


def test_domain_options_are_checked():
    assert ServeOptions(allowed_media_domains=["example.com"]).allowed_media_domains == ("example.com",)
    with pytest.raises(ValueError, match="are domain names"):
        ServeOptions(allowed_media_domains=("https://example.com",))
