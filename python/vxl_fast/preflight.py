"""Checks a command runs before it loads a model: files, the listening port, a memory file's header
and the token budget.

Each raises what the API, the server and the batch runner raise for the same input, with the same
message: the checks are theirs (``VisualRequest``, ``probe``, ``read_header``/``check_compatible``,
``check_context``), run early.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .config import VideoXLConfig
from .loader import load_tokenizer, resolve_checkpoint
from .memory.files import check_compatible, read_header
from .options import check_context
from .prompt import build_prompt, system_of, tokenize_prompt
from .video.reader import probe
from .video.request import VisualRequest, is_video_file


def check_media(request: VisualRequest | None) -> None:
    """Every file of ``request`` exists; a video file's frame table is read (nothing is decoded),
    so a missing or unreadable video is named now."""
    if request is None:
        return
    if isinstance(request.video, (str, os.PathLike)):
        if is_video_file(request.video):
            probe(request.video)
        elif not Path(request.video).exists():
            raise FileNotFoundError(f"video file not found: {request.video}")
    images = request.images if isinstance(request.images, (list, tuple)) else [request.images]
    for image in images:
        if isinstance(image, (str, os.PathLike)) and not os.path.isfile(image):
            raise FileNotFoundError(f"image file not found: {image}")


def check_memory_file(path: str | os.PathLike, dtype, compression_ratio: int | None) -> dict:
    """A memory file's header (no tensors read), checked against the model's ``dtype`` and the
    requested ``compression_ratio``; returns its metadata."""
    meta = read_header(path)
    check_compatible(path, meta, dtype, compression_ratio)
    return meta


def check_budget(checkpoint, question: str, max_new_tokens: int, prefix_text: str | None = None) -> Path:
    """The checkpoint folder exists and is a Video-XL one, and ``question`` with ``max_new_tokens``
    fits its context (its config and tokenizer are read, not its weights); returns the folder."""
    folder = resolve_checkpoint(checkpoint)
    config = VideoXLConfig.from_dir(folder)
    system = None if prefix_text is None else system_of(prefix_text)
    tok = tokenize_prompt(load_tokenizer(folder), build_prompt(question, system=system))
    check_context(len(tok.before) + len(tok.after), max_new_tokens, config.llm.max_position_embeddings)
    return folder


def check_port(host: str, port: int) -> None:
    """``host:port`` can be listened on now (a bind test, as the server binds: SO_REUSEADDR)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise ValueError(f"cannot listen on {host}: {e.strerror}") from None
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise ValueError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()} "
                             "(another server there? choose another --port)") from None
