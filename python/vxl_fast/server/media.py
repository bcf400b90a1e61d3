"""Media URLs of a request → bytes or a local file, and the content hash the memory cache keys on.

Accepted: ``data:<type>;base64,<bytes>``; a local path or ``file://`` URL only when the server
has an allowed folder (``--allowed-local-media-path``) and the path, symlinks resolved, lies
inside it. Network URLs are refused: the server never fetches anything.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .protocol import APIError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Media:
    """One video or image of a request: its bytes (a data: URL) or a checked local file."""

    kind: str  # "video" or "image"
    digest: str  # sha256 of the content
    data: bytes | None = None
    path: Path | None = None
    mime: str | None = None

    def image(self):
        """The image as a PIL image (decoded and checked)."""
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(self.data) if self.data is not None else self.path)
            img.load()
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise ValueError(f"the image_url is not a readable image: {e}") from None
        return img


class MediaResolver:
    """Resolves media URLs under the server's rules; remembers the hashes of local files."""

    def __init__(self, allowed_dir: str | os.PathLike | None, max_bytes: int):
        self.allowed = Path(os.path.realpath(allowed_dir)) if allowed_dir is not None else None
        if self.allowed is not None and not self.allowed.is_dir():
            raise ValueError(f"--allowed-local-media-path {allowed_dir} is not a folder")
        self.max_bytes = max_bytes
        self._digests: OrderedDict[tuple, str] = OrderedDict()  # (path, size, mtime_ns) -> sha256
        self._lock = threading.Lock()

    def resolve(self, url: str, kind: str, param: str) -> Media:
        """The media ``url`` names (blocking: decodes base64 or hashes a file)."""
        if not isinstance(url, str) or not url:
            raise APIError(400, f"{param} must be a non-empty string", param)
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            return self._data(url, kind, param)
        if scheme in ("http", "https", "ftp", "s3", "gs"):
            raise APIError(400, f"{param}: fetching {scheme}:// URLs is not supported; send a data: URL "
                                "or a file under --allowed-local-media-path", param)
        if scheme == "file":
            parsed = urlparse(url)
            if parsed.netloc not in ("", "localhost"):
                raise APIError(400, f"{param}: file:// URLs must name a local file (no host)", param)
            return self._local(unquote(parsed.path), kind, param)
        if len(scheme) > 1 and not os.path.isabs(url):
            raise APIError(400, f"{param}: unsupported URL scheme {scheme!r}; use data: or file://", param)
        return self._local(url, kind, param)

    def _data(self, url: str, kind: str, param: str) -> Media:
        header, comma, payload = url[5:].partition(",")
        if not comma:
            raise APIError(400, f"{param}: malformed data: URL (no ',' after the media type)", param)
        parts = [p.strip().lower() for p in header.split(";")]
        if "base64" not in parts[1:]:
            raise APIError(400, f"{param}: only base64 data: URLs are supported "
                                "(data:<type>;base64,<bytes>)", param)
        if len(payload) * 3 // 4 > self.max_bytes + 3:
            raise APIError(400, f"{param}: the {kind} is larger than the server's limit of "
                                f"{self.max_bytes} bytes", param)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise APIError(400, f"{param}: malformed base64 in the data: URL ({e})", param) from None
        if not data:
            raise APIError(400, f"{param}: the data: URL holds no bytes", param)
        if len(data) > self.max_bytes:
            raise APIError(400, f"{param}: the {kind} is larger than the server's limit of "
                                f"{self.max_bytes} bytes", param)
        return Media(kind, hashlib.sha256(data).hexdigest(), data=data, mime=parts[0] or None)

    def _local(self, path: str, kind: str, param: str) -> Media:
        if self.allowed is None:
            raise APIError(400, f"{param}: local files are not allowed; start the server with "
                                "--allowed-local-media-path DIR (or send a data: URL)", param)
        given = Path(path)
        real = Path(os.path.realpath(given if given.is_absolute() else self.allowed / given))
        if not real.is_relative_to(self.allowed):
            raise APIError(400, f"{param}: {path} is outside the allowed media folder "
                                "(--allowed-local-media-path)", param)
        if not real.is_file():
            raise APIError(400, f"{param}: {path} is not a file in the allowed media folder", param)
        st = real.stat()
        if st.st_size > self.max_bytes:
            raise APIError(400, f"{param}: the {kind} is larger than the server's limit of "
                                f"{self.max_bytes} bytes", param)
        return Media(kind, self._digest(real, st), path=real)

    def _digest(self, path: Path, st: os.stat_result) -> str:
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._digests:
                self._digests.move_to_end(key)
                return self._digests[key]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                h.update(block)
        with self._lock:
            self._digests[key] = h.hexdigest()
            while len(self._digests) > 4096:
                self._digests.popitem(last=False)
        return h.hexdigest()
