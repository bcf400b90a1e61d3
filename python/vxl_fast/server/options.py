"""The limits and defaults of one server; importable without FastAPI (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..limits import DEFAULT_FRAMES, Limits
from ..options import DEFAULT_MAX_NEW_TOKENS

MiB, GiB = 2 ** 20, 2 ** 30


@dataclass(frozen=True)
class ServeOptions:
    """Limits and defaults of one server (the ``vxl-fast serve`` options)."""

    served_model_name: str | None = None  # default: the checkpoint folder's name
    allowed_local_media_path: str | None = None  # local files only under this folder
    allowed_media_domains: tuple[str, ...] = ()  # http(s) media fetched from these domains (and subdomains)
    media_fetch_timeout_s: float = 30.0  # one remote media file must arrive within this time
    max_queue: int = 16  # requests waiting beyond the one being served
    max_tokens: int = DEFAULT_MAX_NEW_TOKENS  # the most one answer may generate; also the default
    default_frames: int = DEFAULT_FRAMES  # frames sampled from a video when a request gives neither num_frames nor fps
    max_frames: int = Limits.max_frames  # the most frames one request may sample
    max_body_bytes: int = 256 * MiB
    max_media_bytes: int = 256 * MiB  # per video or image
    max_pixels: int = Limits.max_pixels  # per frame or image, from its header
    max_images: int = Limits.max_images  # per request (at most max_frames)
    max_decoded_bytes: int = Limits.max_decoded_bytes  # decoded frames held at once by one request
    memory_cache_bytes: int = 4 * GiB  # memories kept on the device
    memory_cache_dir: str | None = None  # evicted memories spill here
    memory_cache_disk_bytes: int = 20 * GiB  # at most this much in the folder
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")  # Host names answered; "*": any
    cors_origins: tuple[str, ...] = ()  # origins allowed by CORS ("*": any); none: CORS off
    api_key: str | None = None  # when set, /v1 requests need "Authorization: Bearer <key>"
    body_timeout_s: float = 60.0  # a request body must arrive within this time (408 otherwise)
    max_prompt_bytes: int | None = None  # a request's prompt text (None: 8 bytes per context token)
    max_stop_strings: int = Limits.max_stop_strings
    max_stop_chars: int = Limits.max_stop_chars

    def __post_init__(self):
        for name in ("max_tokens", "default_frames", "max_frames", "max_body_bytes", "max_media_bytes", "max_pixels",
                     "max_images", "max_decoded_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.memory_cache_disk_bytes < 0:
            raise ValueError(f"memory_cache_disk_bytes must be >= 0, got {self.memory_cache_disk_bytes}")
        if self.default_frames > self.max_frames:
            raise ValueError(f"default_frames {self.default_frames} exceeds max_frames {self.max_frames}")
        for name in ("allowed_hosts", "cors_origins", "allowed_media_domains"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
                raise TypeError(f"{name} must be a list of non-empty strings, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if any("/" in d or ":" in d for d in self.allowed_media_domains):
            raise ValueError(f"allowed_media_domains are domain names (media.example.com), got "
                             f"{list(self.allowed_media_domains)}")
        if not self.media_fetch_timeout_s > 0:
            raise ValueError(f"media_fetch_timeout_s must be positive, got {self.media_fetch_timeout_s}")
        if not self.allowed_hosts:
            raise ValueError("allowed_hosts is empty: no request could be answered (use '*' for any)")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()):
            raise ValueError("api_key must be a non-empty string")
        if not self.body_timeout_s > 0:
            raise ValueError(f"body_timeout_s must be positive, got {self.body_timeout_s}")

    @property
    def limits(self) -> Limits:
        """The per-request budgets these options set."""
        return Limits(max_pixels=self.max_pixels, max_frames=self.max_frames, max_images=self.max_images,
                      max_media_bytes=self.max_media_bytes, max_decoded_bytes=self.max_decoded_bytes,
                      max_prompt_bytes=self.max_prompt_bytes, max_stop_strings=self.max_stop_strings,
                      max_stop_chars=self.max_stop_chars)
