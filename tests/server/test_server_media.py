"""Hostile media against a live server: playlists and lists pointing outside the allowed folder,
a folder swapped for a symlink between the check and the decode, frames and images far over the
pixel budget, too many images. Each is refused with a 400 before anything is decoded, and no
error body shows a server-side path."""

from __future__ import annotations

import os
import tempfile

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
av = pytest.importorskip("av")

from hostile_media import concat_list, hls_playlist, png_claiming, ts_copy, video  # noqa: E402
from server_harness import NAME, VIDEO, LiveServer, data_url, image, png, server_model  # noqa: E402
from vxl_fast.video import load_video, reader, source  # noqa: E402

URL = "messages[0].content[0].{kind}_url.url"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vxl_fast.server import create_app

    root = tmp_path_factory.mktemp("hostile")
    media, outside = root / "media", root / "outside"
    media.mkdir(), outside.mkdir()
    ts_copy(VIDEO, outside / "segment.ts")
    hls_playlist(media / "list.m3u8", outside / "segment.ts")
    concat_list(media / "list.txt", outside / "segment.ts")
    video(media / "huge.mp4", 4096, 4096)
    (media / "bomb.png").write_bytes(png_claiming(20000, 20000))
    (media / "big.png").write_bytes(png_claiming(5000, 5000))
    for folder, value in ((media, 10), (outside, 200)):
        (folder / "sub").mkdir()
        video(folder / "sub" / "clip.mp4", 64, 48, frames=4, value=value)
    live = LiveServer(create_app(server_model(), max_tokens=8, default_frames=4, max_frames=64,
                                 allowed_local_media_path=str(media)))
    live.root, live.media, live.outside = root, media, outside
    yield live
    live.close()


@pytest.fixture
def no_decoding(monkeypatch):
    """Counts every frame table read and every decode (the server runs in this process)."""
    calls = []
    probe, decode = source.probe, reader._decode
    monkeypatch.setattr(source, "probe", lambda *a, **k: calls.append("probe") or probe(*a, **k))
    monkeypatch.setattr(reader, "_decode", lambda *a, **k: calls.append("decode") or decode(*a, **k))
    from PIL import ImageFile

    load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append("load") or load(self))
    yield calls
    assert calls == []


def ask(server, kind: str, *urls: str) -> httpx.Response:
    parts = [{"type": f"{kind}_url", f"{kind}_url": {"url": u}} for u in urls]
    payload = {"model": NAME, "max_tokens": 2, "messages": [
        {"role": "user", "content": parts + [{"type": "text", "text": "What is it?"}]}]}
    if kind == "video":
        payload["num_frames"] = 2
    return httpx.post(f"{server.url}/v1/chat/completions", json=payload, timeout=120)


def refused(server, r: httpx.Response, message: str, kind: str = "video") -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert message in err["message"] and err["param"] == URL.format(kind=kind), err
    for secret in (str(server.root), "/proc/self", "/tmp"):
        assert secret not in r.text, r.text


@pytest.mark.parametrize("name", ["list.m3u8", "list.txt"])
def test_playlists_and_lists_pointing_outside(server, no_decoding, name):
    # named only "the video_url", a playlist is not even probed as one: its bytes are no video
    refused(server, ask(server, "video", name), "cannot read video the video_url: ")
    data = (server.media / name).read_bytes()
    refused(server, ask(server, "video", data_url(data, "application/vnd.apple.mpegurl")),
            "cannot read video the video_url: ")


def test_frames_over_the_pixel_budget(server, no_decoding):
    message = "a frame is 4096x4096 = 16777216 pixels, over the limit of 8847360 pixels"
    refused(server, ask(server, "video", "huge.mp4"), message)
    refused(server, ask(server, "video", data_url((server.media / "huge.mp4").read_bytes(), "video/mp4")), message)


def test_image_bombs(server, no_decoding):
    refused(server, ask(server, "image", "big.png"), "is 5000x5000 = 25000000 pixels, over the limit", "image")
    refused(server, ask(server, "image", "bomb.png"), "over the limit of 8847360 pixels", "image")
    bomb = data_url(png_claiming(20000, 20000), "image/png")
    r = ask(server, "image", data_url(png(image(0, 8, 8)), "image/png"), bomb, bomb)
    assert r.status_code == 400 and "messages[0].content[1].image_url.url" in r.text, r.text


def test_more_images_than_the_limit(server, no_decoding):
    tiny = data_url(png(image(1, 8, 8)), "image/png")
    r = ask(server, "image", *[tiny] * 100)
    assert r.status_code == 400 and "100 images in one request, over the server's limit of 64 (--max-images)" in \
        r.json()["error"]["message"], r.text


def test_a_folder_swapped_after_the_check_is_not_read(server, monkeypatch):
    """``sub`` becomes a symlink to an outside folder: between the path check and the open (the
    open refuses it), and between the open and the decode (the open file is decoded)."""
    service, media = server.service, server.media
    real = os.path.realpath

    def racing(path, *a, **k):
        resolved = real(path, *a, **k)
        if str(path).endswith("sub/clip.mp4") and not (media / "sub").is_symlink():
            os.rename(media / "sub", media / "sub-old")
            os.symlink(server.outside / "sub", media / "sub")
        return resolved
    try:
        monkeypatch.setattr(os.path, "realpath", racing)
        r = ask(server, "video", "sub/clip.mp4")
        monkeypatch.undo()
        refused(server, r, "is outside the allowed media folder")
        os.unlink(media / "sub")
        os.rename(media / "sub-old", media / "sub")
        (opened,) = service.media.resolve_all([("sub/clip.mp4", "p", "video")])
        os.rename(media / "sub", media / "sub-old")
        os.symlink(server.outside / "sub", media / "sub")
        with service._visual([opened]) as visual:
            assert int(load_video(visual["video"], num_frames=2).frames.float().mean()) < 50  # inside: 10
        assert opened.file.closed
    finally:
        if (media / "sub").is_symlink():
            os.unlink(media / "sub")
            os.rename(media / "sub-old", media / "sub")


def test_a_file_written_during_the_encode_is_not_cached(server):
    service = server.service
    (opened,) = service.media.resolve_all([("sub/clip.mp4", "p", "video")])
    with pytest.raises(ValueError, match="the video_url changed while it was read"):
        with service._visual([opened]):
            os.utime(server.media / "sub" / "clip.mp4", ns=(1, 1))
    assert opened.file.closed


def test_a_data_url_video_stays_in_memory(server):
    temporary = lambda: {n for n in os.listdir(tempfile.gettempdir()) if n.startswith(("tmp", "vxl_fast"))}  # noqa: E731
    before = temporary()
    r = ask(server, "video", data_url(VIDEO.read_bytes(), "video/mp4"))
    assert r.status_code == 200, r.text
    assert temporary() <= before  # no temporary file was written
