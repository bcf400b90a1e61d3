"""``vxl-fast serve``: the options and the command. ``add_parser(subparsers)`` defines the
subcommand (with ``run=``); FastAPI and uvicorn are imported only when it runs."""

from __future__ import annotations

import argparse
import re
import sys

from ..errors import install_hint
from ..preflight import check_port
from ..runtime import api_key, default_model
from .guard import default_hosts
from .options import ServeOptions

_UNITS = {"": 1, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``serve`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    d = ServeOptions()
    p = subparsers.add_parser(
        "serve", help="an OpenAI-compatible server (POST /v1/chat/completions); needs the serve extra",
        description="Serve a checkpoint over HTTP with the OpenAI chat-completions API. Each video is "
                    "encoded once and kept in a memory cache for the next questions.")
    p.add_argument("--model", default=default_model(),
                   help="checkpoint folder or hub id (default: $VXL_FAST_MODEL)")
    p.add_argument("--demo", action="store_true",
                   help="serve the tiny random demo checkpoint; its folder (with sample.mp4) becomes the "
                        "allowed media folder unless --allowed-local-media-path is given")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16 or float16")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument("--served-model-name", default=None,
                   help="the name clients pass as `model` (default: the checkpoint folder's name)")
    p.add_argument("--allowed-local-media-path", default=None, metavar="DIR",
                   help="allow file:// URLs and paths of files inside DIR (symlinks resolved); refused otherwise")
    p.add_argument("--allowed-media-domains", nargs="+", default=(), metavar="DOMAIN",
                   help="fetch http(s):// media from these domains and their subdomains, from public addresses "
                        "only (default: none; remote URLs are refused)")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="requests that may wait beyond the one being served; more get 429")
    _add_budgets(p.add_argument_group("budgets of one request"), d)
    p.add_argument("--memory-cache-bytes", type=size, default=d.memory_cache_bytes, metavar="SIZE",
                   help="encoded memories kept on the device (LRU, e.g. 8G)")
    p.add_argument("--memory-cache-dir", default=None, metavar="DIR",
                   help="spill evicted memories to files here (reused across restarts)")
    p.add_argument("--memory-cache-disk-bytes", type=size, default=d.memory_cache_disk_bytes, metavar="SIZE",
                   help="at most this much in --memory-cache-dir (default: 20G); the cache deletes only "
                        "the files it made there")
    _add_access(p.add_argument_group("who may ask"))
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds in-flight requests get to finish on shutdown before they are cancelled")
    p.add_argument("--log-level", default="info", help="uvicorn's log level")
    p.set_defaults(run=run)
    return p


def _add_budgets(p, d: ServeOptions) -> None:
    """The per-request budgets (see vxl_fast.limits)."""
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help="the most tokens one answer may generate (also the default)")
    p.add_argument("--default-frames", type=int, default=d.default_frames,
                   help="frames sampled when a request gives neither num_frames nor fps")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help="the most frames one request may sample")
    p.add_argument("--max-body-bytes", type=size, default=d.max_body_bytes, metavar="SIZE",
                   help="largest request body (e.g. 256M)")
    p.add_argument("--max-media-bytes", type=size, default=d.max_media_bytes, metavar="SIZE",
                   help="largest video or image (e.g. 256M)")
    p.add_argument("--max-pixels", type=int, default=d.max_pixels,
                   help="the most pixels of one frame or image, read from its header before decoding "
                        "(default: 4096x2160)")
    p.add_argument("--max-images", type=int, default=d.max_images,
                   help="the most images in one request (at most --max-frames)")
    p.add_argument("--max-decoded-bytes", type=size, default=d.max_decoded_bytes, metavar="SIZE",
                   help="decoded frames one request may hold at once (e.g. 1G)")
    p.add_argument("--max-prompt-bytes", type=size, default=None, metavar="SIZE",
                   help="largest prompt text of a request, refused before tokenizing (default: 8 bytes per "
                        "token of the model's context)")
    p.add_argument("--max-stop-strings", type=int, default=d.max_stop_strings,
                   help=f"most stop strings in a request (default {d.max_stop_strings})")
    p.add_argument("--max-stop-chars", type=int, default=d.max_stop_chars,
                   help=f"longest stop string, in characters (default {d.max_stop_chars})")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout_s, metavar="SECONDS",
                   help=f"a request body must arrive within this time, else 408 (default {d.body_timeout_s:g})")


def _add_access(p) -> None:
    """Host names, CORS origins and the API key."""
    p.add_argument("--allowed-hosts", nargs="+", default=None, metavar="HOST",
                   help="Host header names answered, against DNS rebinding ('*': any; default: the --host "
                        "address, plus localhost, 127.0.0.1 and [::1]; any when bound to 0.0.0.0 or ::)")
    p.add_argument("--cors-origins", nargs="+", default=(), metavar="ORIGIN",
                   help="browser origins allowed by CORS, e.g. https://app.example ('*': any; default: CORS off)")
    p.add_argument("--api-key", default=api_key(),
                   help="require 'Authorization: Bearer KEY' on /v1 requests (default: $VXL_FAST_API_KEY, "
                        "else no key; the variable keeps the key out of the process list)")


def run(args) -> int:
    """Load the model and serve until interrupted."""
    model_path, options = serve_options(args)
    import uvicorn

    from ..api import VideoXL
    from .app import create_app

    print(f"vxl-fast serve: loading {model_path}", flush=True)
    model = VideoXL.from_pretrained(model_path, device=args.device, dtype=args.dtype, progress=sys.stderr.isatty())
    uvicorn.run(create_app(model, options), host=args.host, port=args.port, log_level=args.log_level,
                timeout_graceful_shutdown=args.graceful_timeout)
    return 0


def serve_options(args) -> tuple[str, ServeOptions]:
    """The checkpoint and the :class:`ServeOptions` of a parsed ``serve`` command (``--demo``: the
    tiny demo checkpoint, created on first use). Raises ImportError without FastAPI and uvicorn."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError(f"the server needs FastAPI and uvicorn: {install_hint('serve')}") from None
    media_dir = args.allowed_local_media_path
    if args.demo:
        from ..testing.tiny import ensure_demo

        if args.model:
            raise ValueError("give --model or --demo, not both")
        checkpoint, video = ensure_demo()
        args.model, media_dir = str(checkpoint), media_dir or str(video.parent)
        print(f"vxl-fast serve: demo checkpoint {checkpoint}; sample video {video}", flush=True)
    if not args.model:
        raise ValueError("no checkpoint: pass --model PATH (or set VXL_FAST_MODEL), or --demo")
    hosts = tuple(args.allowed_hosts or default_hosts(args.host))
    if hosts == ("*",) and not args.allowed_hosts:
        print(f"vxl-fast serve: bound to every address ({args.host}): any Host header is answered; "
              "--allowed-hosts NAME ... restricts them", flush=True)
    check_port(args.host, args.port)  # before the model loads
    return args.model, ServeOptions(
        served_model_name=args.served_model_name, allowed_local_media_path=media_dir, max_queue=args.max_queue,
        max_tokens=args.max_tokens, default_frames=args.default_frames, max_frames=args.max_frames,
        max_body_bytes=args.max_body_bytes, max_media_bytes=args.max_media_bytes, max_pixels=args.max_pixels,
        max_images=args.max_images, max_decoded_bytes=args.max_decoded_bytes,
        memory_cache_bytes=args.memory_cache_bytes, memory_cache_dir=args.memory_cache_dir,
        memory_cache_disk_bytes=args.memory_cache_disk_bytes, max_prompt_bytes=args.max_prompt_bytes,
        max_stop_strings=args.max_stop_strings, max_stop_chars=args.max_stop_chars, body_timeout_s=args.body_timeout,
        allowed_hosts=hosts, cors_origins=tuple(args.cors_origins),
        api_key=args.api_key, allowed_media_domains=tuple(args.allowed_media_domains))


def size(text: str) -> int:
    """``"512M"`` → bytes (K, M, G, T are powers of 1024; a trailing B or iB is allowed)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4096, 512M, 8G)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])
