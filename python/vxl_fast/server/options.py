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
    max_queue: int = 16  # requests waiting beyond the one being served
    max_tokens: int = DEFAULT_MAX_NEW_TOKENS  # the most one answer may generate; also the default
    default_frames: int = DEFAULT_FRAMES  # frames sampled from a video when a request gives neither num_frames nor fps
    max_frames: int = Limits.max_frames  # the most frames one request may sample
    max_body_bytes: int = 256 * MiB
    max_media_bytes: int = 256 * MiB  # per video or image
    memory_cache_bytes: int = 4 * GiB  # memories kept on the device
    memory_cache_dir: str | None = None  # evicted memories spill here
    memory_cache_disk_bytes: int | None = None  # at most this much in the folder (None: no limit)

    def __post_init__(self):
        for name in ("max_tokens", "default_frames", "max_frames", "max_body_bytes", "max_media_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.default_frames > self.max_frames:
            raise ValueError(f"default_frames {self.default_frames} exceeds max_frames {self.max_frames}")
