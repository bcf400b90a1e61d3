"""Through a server: a memory file under another video's key is not an answer, an encode
abandoned by its client is not inherited by the next one, and a cache folder that cannot be
written (or holds a dangling link) leaves the server answering, with ``/health`` saying why."""

from __future__ import annotations

import contextlib
import shutil
import threading

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from server_harness import NAME, LiveServer, data_url, image, png, server_model, wait_until  # noqa: E402
from test_server_cache import faulty_cache  # noqa: E402

from vxl_fast.errors import EncodeCancelled  # noqa: E402
from vxl_fast.server import create_app  # noqa: E402

QUESTION = "Describe the image."


@pytest.fixture(scope="module")
def expected(tiny_model):
    """The answers for images 0 and 1 (they differ, or a swapped memory would go unnoticed)."""
    answers = [tiny_model.ask(tiny_model.encode(images=[image(seed)]), QUESTION, max_new_tokens=8).text
               for seed in range(2)]
    assert answers[0] != answers[1]
    return answers


def ask(live: LiveServer, seed: int, timeout: float = 120.0) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/chat/completions", timeout=timeout, json={
        "model": NAME, "max_tokens": 8, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_url(png(image(seed)), "image/png")}},
            {"type": "text", "text": QUESTION}]}]})


def answered(r: httpx.Response) -> tuple[str, str]:
    assert r.status_code == 200, r.text
    body = r.json()
    return body["choices"][0]["message"]["content"], body["usage"]["vxl_fast"]["cache"]


def test_a_memory_file_under_another_key_is_a_miss(expected, tmp_path):
    # no room on the device: every memory goes straight to the folder
    live = LiveServer(create_app(server_model(), max_tokens=16, memory_cache_bytes=1, memory_cache_dir=str(tmp_path)))
    try:
        assert [answered(ask(live, seed)) for seed in (0, 1)] == [(expected[0], "miss"), (expected[1], "miss")]
        files = sorted(tmp_path.glob("vxl_fast-*.vxl"), key=lambda p: p.stat().st_mtime_ns)
        assert len(files) == 2
        shutil.copyfile(files[0], files[1])  # image 0's valid memory where image 1's belongs
        with pytest.warns(RuntimeWarning, match="made for another video or other options"):
            assert answered(ask(live, 1)) == (expected[1], "miss")  # encoded again, not answered from image 0
        assert live.service.cache.rejected == 1
        assert answered(ask(live, 1)) == (expected[1], "disk")  # the fresh memory replaced the file
        assert answered(ask(live, 0)) == (expected[0], "disk")
    finally:
        live.close()


class _Gated:
    """The tiny model, whose first encode holds until it is cancelled and then until ``release``."""

    def __init__(self, model):
        self._model = model
        self.started, self.cancelled, self.release = threading.Event(), threading.Event(), threading.Event()
        self.encodes = 0

    def __getattr__(self, name):
        return getattr(self._model, name)

    def encode_request(self, request, options, cancel=None):
        self.encodes += 1
        if self.encodes > 1:
            return self._model.encode_request(request, options, cancel)
        self.started.set()
        assert cancel.wait(120) and self.release.wait(120)
        self.cancelled.set()
        raise EncodeCancelled("the encode was cancelled")


def test_a_client_after_a_cancelled_encode_gets_a_fresh_one(expected):
    """The first client leaves mid-encode; a second one asks for the same image while the
    cancelled encode is still on the device: it gets its answer from a new encode, not a 500."""
    model = _Gated(server_model())
    live = LiveServer(create_app(model, max_tokens=16))
    service = live.service
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{live.url}/v1/chat/completions", timeout=httpx.Timeout(120, read=1.0), json={
                "model": NAME, "max_tokens": 8, "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": data_url(png(image(0)), "image/png")}},
                    {"type": "text", "text": QUESTION}]}]})
        assert model.started.wait(60)
        # forgotten at once, though it still holds the device until it is released
        wait_until(lambda: not service._inflight, 60, "the abandoned encode to be forgotten")
        result = {}
        second = threading.Thread(target=lambda: result.update(r=ask(live, 0)))
        second.start()
        try:
            wait_until(lambda: len(service._inflight) == 1, 60, "the second client's encode to be queued")
        finally:
            model.release.set()
            second.join(timeout=300)
        assert model.cancelled.is_set() and answered(result["r"]) == (expected[0], "miss")
        assert model.encodes == 2 and live.metric("vxl_encodes_cancelled_total") == 1
        assert live.metric("vxl_requests_total", status="500") == 0
    finally:
        model.release.set()
        live.close()


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_an_unwritable_cache_folder_degrades_health_and_serves(expected, tmp_path, monkeypatch, fault):
    folder = tmp_path / "cache"
    faulty_cache(folder, monkeypatch, fault)
    with pytest.warns(RuntimeWarning, match="cannot be written") if fault == "read-only" else contextlib.nullcontext():
        app = create_app(server_model(), max_tokens=16, memory_cache_bytes=1, memory_cache_dir=str(folder))
    live = LiveServer(app)
    try:
        with pytest.warns(RuntimeWarning, match="cannot be written") if fault == "full" else contextlib.nullcontext():
            assert answered(ask(live, 0)) == (expected[0], "miss")
        assert answered(ask(live, 0)) == (expected[0], "miss")
        health = httpx.get(f"{live.url}/health", timeout=30)
        want = "it is full" if fault == "full" else "it is read-only or not writable"
        assert health.status_code == 200 and health.json() == {"status": "degraded", "reason": (
            f"the memory cache folder cannot be written ({want}); memories are kept on the device only")}
        assert str(tmp_path) not in health.text
        assert not list(folder.glob("*.vxl"))
    finally:
        live.close()


def test_a_dangling_link_in_the_folder_is_reported_not_fatal(expected, tmp_path):
    (tmp_path / "old.vxl").symlink_to(tmp_path / "gone.vxl")
    with pytest.warns(RuntimeWarning, match="left alone: old.vxl \\(dangling link\\)"):
        app = create_app(server_model(), max_tokens=16, memory_cache_bytes=1, memory_cache_dir=str(tmp_path))
    live = LiveServer(app)
    try:
        assert answered(ask(live, 1)) == (expected[1], "miss")
        assert httpx.get(f"{live.url}/health", timeout=30).json() == {"status": "ok"}
        assert (tmp_path / "old.vxl").is_symlink() and len(list(tmp_path.glob("vxl_fast-*.vxl"))) == 1
    finally:
        live.close()
