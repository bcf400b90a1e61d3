"""The pieces without a server: media URL rules, request checks, the CLI options, metrics text."""

from __future__ import annotations

import argparse
import base64
import hashlib
import os

import pytest

pytest.importorskip("pydantic")

from vxl_fast.limits import Limits  # noqa: E402
from vxl_fast.server.cli import add_parser, size  # noqa: E402
from vxl_fast.server.media import MediaResolver  # noqa: E402
from vxl_fast.server.metrics import Metrics  # noqa: E402
from vxl_fast.server.options import ServeOptions  # noqa: E402
from vxl_fast.server.protocol import APIError, parse_messages  # noqa: E402


def refused(fn, *args, status=400, message=""):
    with pytest.raises(APIError) as e:
        fn(*args)
    assert e.value.status == status and message in e.value.message, e.value.message
    return e.value


def test_data_url_bytes_and_digest():
    r = MediaResolver(None, Limits(max_media_bytes=1000))
    m = r.resolve("data:video/mp4;base64," + base64.b64encode(b"abc").decode(), "video", "p")
    assert m.file.reader().read() == b"abc" and m.digest == hashlib.sha256(b"abc").hexdigest() and m.mime == "video/mp4"
    refused(r.resolve, "data:video/mp4;base64,", "video", "p", message="holds no bytes")
    refused(r.resolve, "data:video/mp4;base64" + "A" * 8, "video", "p", message="malformed data: URL")
    refused(r.resolve, "data:;base64," + base64.b64encode(b"x" * 1001).decode(), "video", "p",
            message="larger than the server's limit of 1000 bytes")


def test_local_files_need_the_allowed_folder(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"123")
    e = refused(MediaResolver(None, Limits(max_media_bytes=100)).resolve, str(tmp_path / "a.mp4"), "video", "messages[0]",
                message="--allowed-local-media-path")
    assert e.param == "messages[0]"
    r = MediaResolver(tmp_path, Limits(max_media_bytes=100))
    for url in (str(tmp_path / "a.mp4"), f"file://{tmp_path}/a.mp4", "a.mp4", f"file://localhost{tmp_path}/a.mp4"):
        m = r.resolve(url, "video", "p")
        assert m.file.where() == str((tmp_path / "a.mp4").resolve()) and m.digest == hashlib.sha256(b"123").hexdigest()
    refused(r.resolve, "missing.mp4", "video", "p", message="is not a file")
    refused(r.resolve, str(tmp_path), "video", "p", message="is not a file")
    refused(r.resolve, "s3://bucket/a.mp4", "video", "p", message="not supported")
    refused(r.resolve, "ftp://host/a.mp4", "video", "p", message="not supported")
    refused(r.resolve, "gopher:a.mp4", "video", "p", message="unsupported URL scheme")
    refused(r.resolve, "a.mp4\0.txt", "video", "p", message="holds a NUL character")
    refused(r.resolve, "file://%s/a.mp4%%00" % tmp_path, "video", "p", message="holds a NUL character")
    (tmp_path / "big.mp4").write_bytes(b"x" * 101)
    refused(r.resolve, "big.mp4", "video", "p", message="larger than the server's limit")
    with pytest.raises(ValueError, match="is not a folder"):
        MediaResolver(tmp_path / "a.mp4", Limits(max_media_bytes=100))


def test_symlinks_are_resolved_before_the_check(tmp_path):
    inside, outside = tmp_path / "media", tmp_path / "other"
    inside.mkdir(), outside.mkdir()
    (outside / "v.mp4").write_bytes(b"v")
    (inside / "ok.mp4").write_bytes(b"ok")
    os.symlink(outside / "v.mp4", inside / "link.mp4")
    os.symlink(outside, inside / "dir")
    os.symlink(inside / "ok.mp4", outside / "back.mp4")
    r = MediaResolver(inside, Limits(max_media_bytes=100))
    for url in ("link.mp4", "dir/v.mp4", "../other/v.mp4", str(outside / "v.mp4")):
        refused(r.resolve, url, "video", "p", message="outside the allowed media folder")
    # what counts is where the file really is: a link from outside to a file inside is that file
    assert r.resolve(str(outside / "back.mp4"), "video", "p").file.where() == str((inside / "ok.mp4").resolve())
    # the allowed folder given through a symlink is resolved too
    os.symlink(inside, tmp_path / "alias")
    assert MediaResolver(tmp_path / "alias", Limits(max_media_bytes=100)).resolve("ok.mp4", "video", "p").file.where() == str((inside / "ok.mp4").resolve())


def test_conversation_parsing():
    conv = parse_messages([
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "image_url", "image_url": "data:x"},
                                     {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "answer"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:y"}},
                                     {"type": "text", "text": "q"}]},
    ])
    assert conv.system == "Be brief."
    assert conv.messages == [{"role": "user", "content": "one\ntwo"}, {"role": "assistant", "content": "answer"},
                             {"role": "user", "content": "q"}]
    assert [u for u, _ in conv.images] == ["data:x", "data:y"]
    assert conv.images[1][1] == "messages[3].content[0].image_url.url"
    refused(parse_messages, [], message="non-empty")
    refused(parse_messages, [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}],
            message="must come first")
    refused(parse_messages, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            message="last message must be the user's question")
    refused(parse_messages, [{"role": "assistant", "content": [{"type": "video_url", "video_url": {"url": "x"}}]},
                             {"role": "user", "content": "q"}], message="only accepted in user messages")
    refused(parse_messages, [{"role": "user", "content": None}], message="a string or a list of content parts")


def test_serve_cli_options():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "ckpt", "--memory-cache-bytes", "8G", "--max-queue", "3"])
    d = ServeOptions()
    assert args.run.__name__ == "run" and args.model == "ckpt" and args.host == "127.0.0.1" and args.port == 8000
    assert args.memory_cache_bytes == 8 * 2 ** 30 and args.max_queue == 3 and args.max_tokens == d.max_tokens
    assert args.allowed_local_media_path is None and args.memory_cache_dir is None
    assert [size(s) for s in ("4096", "512M", "1.5k", "2GiB", "3 gb")] == [4096, 512 * 2 ** 20, 1536, 2 * 2 ** 30,
                                                                           3 * 2 ** 30]
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        size("lots")
    with pytest.raises(ValueError, match="max_tokens must be positive"):
        ServeOptions(max_tokens=0)
    with pytest.raises(ValueError, match="default_frames 300 exceeds max_frames 200"):
        ServeOptions(default_frames=300, max_frames=200)
    args = parser.parse_args(["serve", "--max-pixels", "1000", "--max-images", "3", "--max-decoded-bytes", "64M",
                              "--max-frames", "200"])
    limits = ServeOptions(max_pixels=args.max_pixels, max_images=args.max_images, max_frames=args.max_frames,
                          max_decoded_bytes=args.max_decoded_bytes).limits
    assert limits == Limits(max_pixels=1000, max_images=3, max_frames=200, max_decoded_bytes=64 * 2 ** 20)
    assert ServeOptions().limits == Limits() and ServeOptions(max_frames=32, default_frames=8).limits.max_images == 32
    with pytest.raises(ValueError, match="max_pixels must be positive"):
        ServeOptions(max_pixels=0)


def test_host_names_and_their_defaults():
    from vxl_fast.server.guard import default_hosts, host_name

    assert [host_name(h) for h in ("LocalHost:8000", "127.0.0.1", "[::1]:80", "::1", "[::1]", "a.example:1")] == \
        ["localhost", "127.0.0.1", "[::1]", "[::1]", "[::1]", "a.example"]
    assert default_hosts("127.0.0.1") == ("127.0.0.1", "localhost", "[::1]")
    assert default_hosts("::1") == ("[::1]", "localhost", "127.0.0.1")
    assert default_hosts("10.0.0.5") == ("10.0.0.5", "localhost", "127.0.0.1", "[::1]")
    assert default_hosts("0.0.0.0") == ("*",) and default_hosts("::") == ("*",)
    assert default_hosts("myhost") == ("myhost", "localhost", "127.0.0.1", "[::1]")
    assert default_hosts("localhost") == ("localhost", "127.0.0.1", "[::1]")


def test_serve_security_options(capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import vxl_fast.server.cli as server_cli

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    _, plain = server_cli.serve_options(parser.parse_args(["serve", "--model", "m", "--host", "127.0.0.2"]))
    assert plain.allowed_hosts == ("127.0.0.2", "localhost", "127.0.0.1", "[::1]")
    assert plain.cors_origins == () and plain.api_key is None and plain.limits.max_prompt_bytes is None
    _, anywhere = server_cli.serve_options(parser.parse_args(["serve", "--model", "m", "--host", "0.0.0.0"]))
    assert anywhere.allowed_hosts == ("*",) and "any Host header is answered" in capsys.readouterr().out
    _, opts = server_cli.serve_options(parser.parse_args([
        "serve", "--model", "m", "--allowed-hosts", "a.example", "b.example", "--cors-origins", "https://x.example",
        "--api-key", "k", "--max-prompt-bytes", "1M", "--max-stop-strings", "4", "--max-stop-chars", "64",
        "--body-timeout", "5"]))
    assert opts.allowed_hosts == ("a.example", "b.example") and opts.cors_origins == ("https://x.example",)
    assert opts.api_key == "k" and opts.body_timeout_s == 5.0
    assert (opts.limits.max_prompt_bytes, opts.limits.max_stop_strings, opts.limits.max_stop_chars) == (2 ** 20, 4, 64)
    with pytest.raises(ValueError, match="allowed_hosts is empty"):
        ServeOptions(allowed_hosts=())
    with pytest.raises(TypeError, match="cors_origins must be a list"):
        ServeOptions(cors_origins="https://x.example")
    with pytest.raises(ValueError, match="api_key must be a non-empty string"):
        ServeOptions(api_key=" ")


def test_serve_on_ray_is_added_by_distributed(monkeypatch):
    """``serve --ray`` comes from distributed/cli.py; server/ alone knows nothing of Ray."""
    from vxl_fast import cli
    from vxl_fast.distributed import cli as distributed_cli

    monkeypatch.setenv("VXL_FAST_MODEL", "from-env")
    args = cli._parser().parse_args(["serve", "--ray", "--replicas", "2"])
    assert args.run is distributed_cli.serve and args.ray and args.replicas == 2 and args.model == "from-env"
    for argv in (["batch", "r.jsonl", "-o", "a.jsonl"], ["ask", "v.mp4", "q"]):
        assert cli._parser().parse_args(argv).model == "from-env", argv
    plain = argparse.ArgumentParser()
    add_parser(plain.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        plain.parse_args(["serve", "--ray"])
    with pytest.raises(ValueError, match="--replicas needs --ray"):
        distributed_cli.serve(cli._parser().parse_args(["serve", "--replicas", "2"]))
    monkeypatch.delenv("VXL_FAST_MODEL")
    with pytest.raises(ValueError, match="no checkpoint: pass --model PATH"):
        distributed_cli.serve(cli._parser().parse_args(["serve", "--ray"]))


def test_module_entry_point_help(capsys):
    from vxl_fast.server.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--allowed-local-media-path" in capsys.readouterr().out


def test_metrics_text():
    m = Metrics()
    m.inc("vxl_requests_total", status="200")
    m.inc("vxl_requests_total", 2, status="429")
    m.inc("vxl_decode_seconds_total", 0.25)
    text = m.render({"vxl_queue_length": {(): 3}})
    assert '# TYPE vxl_requests_total counter' in text
    assert 'vxl_requests_total{status="200"} 1\n' in text and 'vxl_requests_total{status="429"} 2\n' in text
    assert "vxl_decode_seconds_total 0.25\n" in text and "vxl_encodes_total 0\n" in text
    assert "# TYPE vxl_queue_length gauge\nvxl_queue_length 3\n" in text


def test_the_api_key_can_come_from_the_environment(monkeypatch):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import vxl_fast.server.cli as server_cli

    monkeypatch.setenv("VXL_FAST_API_KEY", "s3cret")
    parser = argparse.ArgumentParser()
    serve = add_parser(parser.add_subparsers(dest="command"))
    _, opts = server_cli.serve_options(parser.parse_args(["serve", "--model", "m"]))
    assert opts.api_key == "s3cret" and "s3cret" not in serve.format_help()
    _, given = server_cli.serve_options(parser.parse_args(["serve", "--model", "m", "--api-key", "other"]))
    assert given.api_key == "other"


def test_serve_shows_loading_progress_on_a_terminal(monkeypatch, capsys):
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    import sys

    import vxl_fast.server.cli as server_cli
    from vxl_fast import VideoXL

    seen = []

    def load(path, **kwargs):
        seen.append(kwargs["progress"])
        raise KeyboardInterrupt  # stop before serving

    monkeypatch.setattr(VideoXL, "from_pretrained", staticmethod(load))
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--model", "m", "--port", "0"])
    for terminal in (True, False):
        monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
        with pytest.raises(KeyboardInterrupt):
            server_cli.run(args)
    assert seen == [True, False] and "vxl-fast serve: loading m" in capsys.readouterr().out
