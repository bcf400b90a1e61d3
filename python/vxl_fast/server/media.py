"""Media URLs of a request → files opened once, their content hash (what the memory cache keys on)
and their headers checked against the budgets before any decoding.

Accepted: ``data:<type>;base64,<bytes>`` (kept in memory); a local path or ``file://`` URL only
when the server has an allowed folder (``--allowed-local-media-path``) and the path, symlinks
resolved, lies inside it. The file is then opened component by component without following a
symlink and its open descriptor checked to lie in the folder; that same open file is hashed and
decoded, so a path swapped after the check is never read. ``http(s)://`` URLs are fetched only
from the domains in ``--allowed-media-domains`` and only from public addresses (fetch.py), then
kept in memory like data: URLs; every other URL is refused. Messages name the media by their URL
field, never by a server path.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..limits import Limits
from ..video.files import MediaFile, OutsideRoot
from ..video.images import image_size
from ..video.reader import check_header
from .fetch import FetchRefused, fetch
from .protocol import APIError


@dataclass(frozen=True)
class Media:
    """One video or image of a request: its open file and the sha256 of its content."""

    kind: str  # "video" or "image"
    digest: str
    file: MediaFile
    mime: str | None = None

    def close(self) -> None:
        self.file.close()


class MediaResolver:
    """Resolves media URLs under the server's rules and budgets; remembers the hashes of local files."""

    def __init__(self, allowed_dir: str | os.PathLike | None, limits: Limits, domains: tuple[str, ...] = (),
                 fetch_timeout_s: float = 30.0):
        self.allowed = Path(os.path.realpath(allowed_dir)) if allowed_dir is not None else None
        if self.allowed is not None and not self.allowed.is_dir():
            raise ValueError(f"--allowed-local-media-path {allowed_dir} is not a folder")
        self.limits, self.domains, self.fetch_timeout_s = limits, tuple(domains), fetch_timeout_s
        self._digests: OrderedDict[tuple, str] = OrderedDict()  # MediaFile.identity() -> sha256
        self._lock = threading.Lock()

    def resolve_all(self, urls: list[tuple[str, str, str]]) -> list[Media]:
        """``(url, param, kind)`` of a request → its media, opened and checked (blocking). The
        number of images is checked first; each header (pixels, container) before anything is decoded."""
        images = sum(kind == "image" for _, _, kind in urls)
        if images > self.limits.max_images:
            raise APIError(400, f"{images} images in one request, over the server's limit of "
                                f"{self.limits.max_images} (--max-images)", "messages")
        media: list[Media] = []
        try:
            for url, param, kind in urls:
                media.append(self.resolve(url, kind, param))
                self.check(media[-1], param)
        except BaseException:
            for m in media:
                m.close()
            raise
        return media

    def check(self, media: Media, param: str) -> None:
        """Refuse media whose header is over the pixel budget, or not a self-contained video."""
        try:
            if media.kind == "video":
                check_header(media.file, self.limits.max_pixels)
            else:
                image_size(media.file, self.limits.max_pixels)
        except ValueError as e:
            raise APIError(400, f"{param}: {e}", param) from None

    def resolve(self, url: str, kind: str, param: str) -> Media:
        """The media ``url`` names, opened (blocking: decodes base64 or hashes a file)."""
        if not isinstance(url, str) or not url:
            raise APIError(400, f"{param} must be a non-empty string", param)
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            return self._data(url, kind, param)
        if scheme in ("http", "https") and self.domains:
            return self._remote(url, kind, param)
        if scheme in ("http", "https"):
            raise APIError(400, f"{param}: {scheme}:// URLs are not fetched by this server (its "
                                "--allowed-media-domains lists none); send a data: URL or a file under "
                                "--allowed-local-media-path", param)
        if scheme in ("ftp", "s3", "gs"):
            raise APIError(400, f"{param}: fetching {scheme}:// URLs is not supported; send a data: URL or a "
                                "file under --allowed-local-media-path", param)
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
        if len(payload) * 3 // 4 > self.limits.max_media_bytes + 3:
            raise self._too_large(kind, param)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as e:
            raise APIError(400, f"{param}: malformed base64 in the data: URL ({e})", param) from None
        if not data:
            raise APIError(400, f"{param}: the data: URL holds no bytes", param)
        if len(data) > self.limits.max_media_bytes:
            raise self._too_large(kind, param)
        digest = hashlib.sha256(data).hexdigest()
        return Media(kind, digest, _opened(lambda: MediaFile.from_bytes(data, f"the {kind}_url")), parts[0] or None)

    def _remote(self, url: str, kind: str, param: str) -> Media:
        try:
            data = fetch(url, self.domains, self.limits.max_media_bytes, self.fetch_timeout_s)
        except FetchRefused as e:
            raise APIError(400, f"{param}: the URL is not fetched: {e}", param) from None
        digest = hashlib.sha256(data).hexdigest()
        return Media(kind, digest, _opened(lambda: MediaFile.from_bytes(data, f"the {kind}_url")))

    def _local(self, path: str, kind: str, param: str) -> Media:
        if self.allowed is None:
            raise APIError(400, f"{param}: local files are not allowed; start the server with "
                                "--allowed-local-media-path DIR (or send a data: URL)", param)
        if "\0" in path:
            raise APIError(400, f"{param}: the path holds a NUL character", param)
        given = Path(path)
        real = Path(os.path.realpath(given if given.is_absolute() else self.allowed / given))
        outside = APIError(400, f"{param}: {path} is outside the allowed media folder "
                                "(--allowed-local-media-path)", param)
        if not real.is_relative_to(self.allowed):
            raise outside
        not_a_file = APIError(400, f"{param}: {path} is not a file in the allowed media folder (or not readable)",
                              param)
        if real == self.allowed:
            raise not_a_file
        try:
            file = _opened(lambda: MediaFile.inside(self.allowed, real.relative_to(self.allowed), f"the {kind}_url"))
        except OutsideRoot:
            raise outside from None
        except (OSError, ValueError):
            raise not_a_file from None
        if file.size > self.limits.max_media_bytes:
            file.close()
            raise self._too_large(kind, param)
        return Media(kind, self._digest(file), file)

    def _too_large(self, kind: str, param: str) -> APIError:
        return APIError(400, f"{param}: the {kind} is larger than the server's limit of "
                             f"{self.limits.max_media_bytes} bytes (--max-media-bytes)", param)

    def _digest(self, file: MediaFile) -> str:
        key = file.identity()
        with self._lock:
            if key in self._digests:
                self._digests.move_to_end(key)
                return self._digests[key]
        digest = file.digest()
        with self._lock:
            self._digests[key] = digest
            while len(self._digests) > 4096:
                self._digests.popitem(last=False)
        return digest


def _opened(open_file) -> MediaFile:
    """``open_file()``; running out of file descriptors is the server's state, not the request's fault."""
    try:
        return open_file()
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE):
            raise APIError(503, "the server has too many files open; retry later", type_="server_error",
                           code="too_many_open_files") from None
        raise
