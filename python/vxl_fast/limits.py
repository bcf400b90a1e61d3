"""The budgets one request may spend, stated once and checked before the work they bound.

Clients and media are untrusted: every resource a request can make the process spend has a limit
here. The Python API, the command line and the server build one :class:`Limits` (the server from
its ``serve`` options); a user or operator raises a limit by passing a larger value.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

MiB, GiB = 2 ** 20, 2 ** 30

DEFAULT_FRAMES = 128  # frames sampled from a video when a request gives neither num_frames nor fps


@dataclass(frozen=True)
class Limits:
    """Per-request budgets.

    ``max_pixels``: width × height of one frame or image, read from the stream or image header
    before decoding (default: 4096 × 2160, DCI 4K). ``max_frames``: frames one request may sample.
    ``max_images``: images in one request (at most ``max_frames``). ``max_media_bytes``: size of
    one media file. ``max_decoded_bytes``: decoded RGB bytes held at once by one request.
    ``max_prompt_bytes``: UTF-8 bytes of the text of one request, refused before tokenizing
    (None: derived from the model's context as ``max_position_embeddings × 8``).
    ``max_stop_strings`` / ``max_stop_chars``: count and length of stop strings.
    ``max_video_frames``: entries of one video file's frame table, read before sampling (a file
    of many tiny packets would otherwise cost memory in proportion; default: 1,000,000, 4.6 hours
    at 60 fps).
    """

    max_pixels: int = 4096 * 2160
    max_frames: int = 2048
    max_images: int = 64
    max_media_bytes: int = 256 * MiB
    max_decoded_bytes: int = 1 * GiB
    max_prompt_bytes: int | None = None
    max_stop_strings: int = 16
    max_stop_chars: int = 256
    max_video_frames: int = 1_000_000

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name == "max_prompt_bytes":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{f.name} must be a positive integer, got {value!r}")
            if value < 1:
                raise ValueError(f"{f.name} must be a positive integer, got {value}")
        if self.max_images > self.max_frames:
            object.__setattr__(self, "max_images", self.max_frames)

    def prompt_bytes(self, context_tokens: int) -> int:
        """The prompt byte limit for a model with ``context_tokens`` positions."""
        return self.max_prompt_bytes if self.max_prompt_bytes is not None else 8 * context_tokens

    def check_count(self, count: int, what: str, limit: str = "max_frames") -> None:
        """Refuse ``count`` frames (``limit="max_frames"``) or images (``"max_images"``) over the limit."""
        if count > getattr(self, limit):
            raise ValueError(f"{what}: {count} {'images' if limit == 'max_images' else 'frames'} in one request, "
                             f"over the limit of {getattr(self, limit)} ({limit})")

    def decoded_batch(self, frame_bytes: int, wanted: int, held: int, what: str) -> int:
        """How many decoded frames of ``frame_bytes`` may go in one batch (at most ``wanted``) when
        ``held`` batches are alive at once, within ``max_decoded_bytes``; refuses when not even one."""
        batch = min(wanted, self.max_decoded_bytes // max(1, frame_bytes * held))
        if batch < 1:
            raise ValueError(f"{what}: {held} decoded frames of {frame_bytes} bytes exceed the limit of "
                             f"{self.max_decoded_bytes} decoded bytes (max_decoded_bytes)")
        return batch

    def check_prompt(self, text: str, context_tokens: int) -> None:
        """Refuse ``text`` (a request's whole prompt text) longer than :meth:`prompt_bytes`, before
        it is tokenized."""
        limit = self.prompt_bytes(context_tokens)
        if len(text) <= limit // 4:  # at most 4 UTF-8 bytes a character
            return
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueError(f"prompt too long: its text is {size} bytes, more than the limit of {limit} bytes "
                             f"(max_prompt_bytes; by default 8 bytes per token of the model's "
                             f"{context_tokens}-token context)")


def check_pixels(width: int, height: int, max_pixels: int, what: str) -> None:
    """Refuse a frame or image of ``width`` × ``height`` over ``max_pixels``."""
    if width * height > max_pixels:
        raise ValueError(f"{what} is {width}x{height} = {width * height} pixels, over the limit of "
                         f"{max_pixels} pixels per frame or image (max_pixels)")
