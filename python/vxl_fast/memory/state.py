"""The state of one compressed video: its kept KV, its windows and what waits to be compressed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .kv import KVCache, VstStage
from .plan import VisualWindow


@dataclass
class EncodeStats:
    """Seconds spent making a memory, summed over every piece fed to it."""

    vision_s: float = 0.0  # preprocessing + vision tower + projector
    compress_s: float = 0.0  # language-model windows (sink and VSTs)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class MemoryState:
    """Pure data: the kept K/V of a video and the bookkeeping to extend or question it.

    ``cache`` holds the prompt text before the visual span (the sink) and every window's VSTs in
    its first ``cache.length`` slots. ``pending`` holds the visual tokens of the incomplete last
    window. ``stage`` holds a window's VST keys and values while it is compressed.
    """

    cache: KVCache
    stage: VstStage
    prefix_text: str  # the prompt text before the visual input
    prefix_ids: list[int]
    ratios: tuple[int, ...]
    modality: str  # "video", "image" (one image's anyres tiles) or "images" (several, one frame each)
    windows: list[VisualWindow] = field(default_factory=list)
    pending: torch.Tensor | None = None  # [n, D] visual tokens of the incomplete window
    frames: int = 0  # frames (or image tiles) ingested
    timestamps: list[float] | None = None  # seconds, one per frame, when known
    stats: EncodeStats = field(default_factory=EncodeStats)
    trace: list | None = None  # window records, when asked for
    answering: bool = False  # a question is being answered (its K/V sit after the kept slots)
    identity: dict | None = None  # what it was made from, as its maker recorded it (JSON values); None: unknown

    @property
    def num_vsts(self) -> int:
        return sum(w.n_vst for w in self.windows)

    @property
    def pending_tokens(self) -> int:
        return 0 if self.pending is None else self.pending.shape[0]

    @property
    def visual_tokens(self) -> int:
        return sum(w.n_raw for w in self.windows) + self.pending_tokens

    @property
    def next_token(self) -> int:
        """Offset in the visual sequence of the next window's first raw token."""
        return sum(w.n_raw for w in self.windows)

    @property
    def carry(self) -> int:
        return self.windows[-1].next_carry if self.windows else 0

    @property
    def kv_slots(self) -> int:
        return self.cache.length
