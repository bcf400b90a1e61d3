"""Bad requests get a 400 (413, 404) with an OpenAI error object naming the problem; local paths
are confined to the allowed folder."""

from __future__ import annotations

import os
import types

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")

from server_harness import NAME, VIDEO, LiveServer, data_url, server_model, video_message  # noqa: E402

LIMIT_BODY, LIMIT_MEDIA = 2 * 2 ** 20, 1 * 2 ** 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vxl_fast.server import create_app

    root = tmp_path_factory.mktemp("serve")
    media = root / "media"
    media.mkdir()
    (media / "clip.mp4").write_bytes(VIDEO.read_bytes())
    (root / "secret.mp4").write_bytes(VIDEO.read_bytes())
    os.symlink(root / "secret.mp4", media / "escape.mp4")
    (media / "notes.txt").write_text("not a video\n")
    live = LiveServer(create_app(server_model(), max_tokens=64, default_frames=8, max_frames=64,
                                 max_body_bytes=LIMIT_BODY, max_media_bytes=LIMIT_MEDIA,
                                 allowed_local_media_path=str(media)))
    live.root, live.media = root, media
    yield live
    live.close()


def post(server, payload=None, content: bytes | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=payload, content=content, timeout=120,
                      headers={"content-type": "application/json"})


def request(message=None, **fields) -> dict:
    return {"model": NAME, "messages": [message or video_message("What happens?")], "max_tokens": 4,
            "num_frames": 4, **fields}


def part(kind: str, url: str, text: str = "What is it?") -> dict:
    return {"role": "user", "content": [{"type": kind, kind: {"url": url}}, {"type": "text", "text": text}]}


def check(r: httpx.Response, status: int, message: str, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert message in err["message"], err
    assert err["type"] and "code" in err
    if param is not None:
        assert err["param"] == param, err


CASES = {
    "unknown content type": (request({"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "x"}}]}),
                             "unknown content part type 'audio_url'", "messages[0].content[0].type"),
    "malformed base64": (request(part("video_url", "data:video/mp4;base64,@@not base64@@")),
                         "malformed base64", "messages[0].content[0].video_url.url"),
    "not base64 data url": (request(part("video_url", "data:video/mp4,abc")), "only base64 data: URLs", None),
    "text file as video": (request(part("video_url", data_url(b"just some text\n" * 10, "video/mp4"))),
                           "cannot read video the video_url", None),
    "text file as image": (request(part("image_url", data_url(b"just some text\n", "image/png")), num_frames=None),
                           "not a readable image", None),
    "local text file as video": (request(part("video_url", "notes.txt")), "cannot read video", None),
    "path outside the folder": (request(part("video_url", "/etc/hostname")), "outside the allowed media folder",
                                "messages[0].content[0].video_url.url"),
    "http url": (request(part("video_url", "http://127.0.0.1:9/x.mp4")), "URLs are not fetched by this server (its --allowed-media-domains lists none)", None),
    "max_tokens=0": (request(max_tokens=0), "max_tokens must be at least 1, got 0", "max_tokens"),
    "max_completion_tokens over the limit": (request(max_completion_tokens=65),
                                             "max_completion_tokens=65 exceeds the server's limit of 64",
                                             "max_completion_tokens"),
    "unsupported ratio": (request(compression_ratio=5), "unsupported compression ratio 5", "compression_ratio"),
    "unsupported ratio in a list": (request(compression_ratio=[4, 3]), "unsupported compression ratio 3",
                                    "compression_ratio"),
    "too many frames": (request(num_frames=65), "num_frames must be between 1 and the server's limit of 64",
                        "num_frames"),
    "n=2": (request(n=2), "only one choice", "n"),
    "two videos": (request({"role": "user", "content": [{"type": "video_url", "video_url": {"url": "clip.mp4"}}] * 2
                            + [{"type": "text", "text": "?"}]}), "one video, got 2", None),
    "video and image": (request({"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "clip.mp4"}}, {"type": "image_url", "image_url": {"url": "x"}},
        {"type": "text", "text": "?"}]}), "one video or images, not both", None),
    "image marker in text": (request({"role": "user", "content": "<image> what?"}), "holds '<image>'", None),
    "no user message": ({"model": NAME, "messages": [{"role": "system", "content": "hi"}]}, "no user message", None),
    "bad role": (request({"role": "tool", "content": "x"}), "role 'tool' is not supported", "messages[0].role"),
    "media over the limit": (request(part("video_url", data_url(b"\0" * (LIMIT_MEDIA + 1), "video/mp4"))),
                             "larger than the server's limit", None),
    "wrong field type": (request(max_tokens="many"), "max_tokens", "max_tokens"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request_400(server, name):
    pytest.importorskip("av", reason="decoding the golden video needs PyAV")
    payload, message, param = CASES[name]
    check(post(server, payload), 400, message, param)


@pytest.mark.parametrize("url", [
    "../secret.mp4",
    "clip.mp4/../../secret.mp4",
    "{media}/../secret.mp4",
    "file://{media}/../secret.mp4",
    "file://{media}/%2E%2E/secret.mp4",
    "escape.mp4",  # a symlink inside the folder pointing outside it
    "file://{media}/escape.mp4",
])
def test_path_traversal_refused(server, url):
    r = post(server, request(part("video_url", url.format(media=server.media))))
    check(r, 400, "outside the allowed media folder", "messages[0].content[0].video_url.url")


def test_file_url_with_a_host_refused(server):
    check(post(server, request(part("video_url", f"file://example.com{server.media}/clip.mp4"))), 400, "no host")


def test_invalid_json_and_oversized_body(server):
    check(post(server, content=b"{not json"), 400, "not valid JSON")
    big = request(part("video_url", data_url(b"\0" * LIMIT_BODY, "video/mp4")))
    check(post(server, big), 413, "exceeds the server's limit")


def test_unknown_model_404(server):
    check(post(server, {**request(), "model": "gpt-4o"}), 404, "does not exist", "model")


def test_the_openai_client_sees_the_message(server):
    with pytest.raises(openai.BadRequestError) as e:
        server.client().chat.completions.create(model=NAME, messages=[video_message("?")], max_tokens=0)
    assert e.value.status_code == 400
    assert "max_tokens must be at least 1" in e.value.message


def test_engine_errors_come_back_as_400(server):
    """Accepted by the server's own checks, refused by the engine with its message."""
    pytest.importorskip("av", reason="decoding the golden video needs PyAV")
    from server_harness import image, png

    check(post(server, request(part("image_url", data_url(png(image(0)), "image/png")), num_frames=4)), 400,
          "num_frames= and fps= only apply to video=")
    check(post(server, request(temperature=1.0, top_p=1.5)), 400, "top_p must be in (0, 1]")


class _Broken:
    """Just enough of a model for the server; encoding fails unexpectedly."""

    path, fingerprint, dtype = "broken", "0" * 64, "float32"
    config = types.SimpleNamespace(llm=types.SimpleNamespace(max_position_embeddings=4096))

    @staticmethod
    def tokenizer(text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}

    def encode_request(self, request, options, cancel=None):
        raise RuntimeError("the device fell over")


def test_unexpected_failure_500():
    from server_harness import image, png

    from vxl_fast.server import create_app

    live = LiveServer(create_app(_Broken()))
    try:
        r = httpx.post(f"{live.url}/v1/chat/completions", timeout=60, json={
            "model": "broken", "max_tokens": 4,
            "messages": [part("image_url", data_url(png(image(0)), "image/png"))]})
        check(r, 500, "encoding the media failed (RuntimeError); the server's log has the details under error id")
        assert r.json()["error"]["type"] == "server_error"
        assert "the device fell over" not in r.text  # the exception's text (it may name server paths) is logged only
        assert live.metric("vxl_requests_total", status="500") == 1
    finally:
        live.close()
