"""The limits and defaults of one server; importable without FastAPI (the CLI reads its defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from ..limits import Limits
from ..options import DEFAULT_MAX_NEW_TOKENS

MiB, GiB = 2 ** 20, 2 ** 30


@dataclass(frozen=True)
class ServeOptions:
    """Limits and defaults of one server (the ``vxl-fast serve`` options)."""

    served_model_name: str | None = None  # default: the checkpoint folder's name
    allowed_local_media_path: str | None = None  # local files only under this folder
    max_queue: int = 16  # requests waiting beyond the one being served
    max_tokens: int = DEFAULT_MAX_NEW_TOKENS  # the most one answer may generate; also the default
    default_frames: int = 128  # frames sampled from a video when a request gives neither num_frames nor fps
    max_frames: int = 2048  # the most frames one request may sample
    max_body_bytes: int = 256 * MiB
    max_media_bytes: int = 256 * MiB  # per video or image
    max_pixels: int = Limits.max_pixels  # per frame or image, from its header
    max_images: int = Limits.max_images  # per request (at most max_frames)
    max_decoded_bytes: int = Limits.max_decoded_bytes  # decoded frames held at once by one request
    memory_cache_bytes: int = 4 * GiB  # memories kept on the device
    memory_cache_dir: str | None = None  # evicted memories spill here
    memory_cache_disk_bytes: int = 20 * GiB  # at most this much in the folder

    def __post_init__(self):
        for name in ("max_tokens", "default_frames", "max_frames", "max_body_bytes", "max_media_bytes", "max_pixels",
                     "max_images", "max_decoded_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.memory_cache_disk_bytes < 0:
            raise ValueError(f"memory_cache_disk_bytes must be >= 0, got {self.memory_cache_disk_bytes}")
        if self.default_frames > self.max_frames:
            raise ValueError(f"default_frames {self.default_frames} exceeds max_frames {self.max_frames}")

    @property
    def limits(self) -> Limits:
        """The media budgets of one request."""
        return Limits(max_pixels=self.max_pixels, max_frames=self.max_frames, max_images=self.max_images,
                      max_media_bytes=self.max_media_bytes, max_decoded_bytes=self.max_decoded_bytes)
