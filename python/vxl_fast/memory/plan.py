"""Plan a request's windows before any work starts: VST counts, carries, KV slots.

Pure functions of the request's sizes and the ratio, so memory can be allocated once up front.
Layout of the kept KV after a request:
``[sink S | VSTs of window 0, 1, … | text after the video | generated tokens]``, where the sink is
the prompt text before the visual span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..config import EXTENDED_RATIOS, SUPPORTED_RATIOS


@dataclass(frozen=True)
class VisualWindow:
    """One compressed window of visual tokens."""

    index: int
    token_start: int  # offset of its first raw token in the visual sequence
    n_raw: int
    ratio: int
    carry: int  # remainder carried in from earlier windows (0 for ratios dividing 144)
    n_vst: int
    kv_before: int  # kept KV slots when the window runs (= its first VST's final slot)

    @property
    def rows(self) -> int:
        return self.n_raw + self.n_vst

    @property
    def next_carry(self) -> int:
        return (self.n_raw + self.carry) % self.ratio


@dataclass(frozen=True)
class RequestPlan:
    sink: int  # prompt tokens before the visual span (kept uncompressed)
    visual_tokens: int
    windows: tuple[VisualWindow, ...]
    text_after: int  # prompt tokens after the visual span
    max_new_tokens: int

    @property
    def num_vsts(self) -> int:
        return sum(w.n_vst for w in self.windows)

    @property
    def kv_after_prefill(self) -> int:
        return self.sink + self.num_vsts + self.text_after

    @property
    def capacity(self) -> int:
        """KV slots to allocate: everything kept plus one slot per new token."""
        return self.kv_after_prefill + self.max_new_tokens

    @property
    def max_window_rows(self) -> int:
        return max((w.rows for w in self.windows), default=0)

    @property
    def vst_per_window(self) -> list[int]:
        return [w.n_vst for w in self.windows]


def next_window(index: int, token_start: int, n_raw: int, carry: int, kv_before: int,
                ratios: Sequence[int], rng: np.random.Generator | None) -> VisualWindow:
    """The window of ``n_raw`` raw tokens after ``index`` earlier ones.

    One ratio is used as is. Several follow upstream's ``step-random`` mix: ``rng.choice`` over
    the ratios ``c`` with ``n_raw >= c`` and ``n_raw % c == 0``.
    ``nb = (n_raw + carry) // c``; the next window's carry is ``(n_raw + carry) % c``.
    """
    if len(ratios) == 1:
        ratio = int(ratios[0])
    else:
        if rng is None:
            raise ValueError("several compression ratios need a random generator")
        valid = [c for c in ratios if n_raw >= c and n_raw % c == 0]
        if not valid:
            raise ValueError(f"no compression ratio in {list(ratios)} fits a window of {n_raw} visual tokens")
        ratio = int(rng.choice(valid))
    n_vst = (n_raw + carry) // ratio
    if n_vst == 0:
        raise ValueError(
            f"compression ratio {ratio} is too large for a window of {n_raw} visual tokens: "
            "the window would keep no visual summary token")
    return VisualWindow(index, token_start, n_raw, ratio, carry, n_vst, kv_before)


def plan_windows(sink: int, visual_tokens: int, window: int, ratios: Sequence[int],
                 rng: np.random.Generator | None = None) -> tuple[VisualWindow, ...]:
    """Cut the visual span into windows of ``window`` tokens (the last one shorter)."""
    out, start, carry, kept = [], 0, 0, sink
    while start < visual_tokens:
        w = next_window(len(out), start, min(window, visual_tokens - start), carry, kept, ratios, rng)
        out.append(w)
        carry = w.next_carry
        kept += w.n_vst
        start += w.n_raw
    return tuple(out)


def plan_request(sink: int, visual_tokens: int, text_after: int, max_new_tokens: int,
                 window: int, ratios: Sequence[int],
                 rng: np.random.Generator | None = None) -> RequestPlan:
    windows = plan_windows(sink, visual_tokens, window, ratios, rng)
    return RequestPlan(sink, visual_tokens, windows, text_after, max_new_tokens)


def parse_ratios(ratio, config_ratios: Sequence[int]) -> tuple[int, ...]:
    """The compression ratios a request asks for: an integer, a list of integers (one drawn per
    window, as upstream's ``step-random``) or ``"config"`` (the checkpoint's ``beacon_ratio``)."""
    if isinstance(ratio, str):
        if ratio != "config":
            raise ValueError(f"compression_ratio {ratio!r} is not supported; pass an integer, "
                             "a list of integers or 'config'")
        ratios = tuple(config_ratios)
    elif isinstance(ratio, (list, tuple)):
        ratios = tuple(ratio)
    else:
        ratios = (ratio,)
    if not ratios:
        raise ValueError("compression_ratio is an empty list")
    allowed = SUPPORTED_RATIOS + EXTENDED_RATIOS
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or int(r) not in allowed:
            raise ValueError(f"unsupported compression ratio {r!r}; supported: "
                             f"{', '.join(map(str, SUPPORTED_RATIOS))} "
                             f"(also {', '.join(map(str, EXTENDED_RATIOS))})")
    return tuple(int(r) for r in ratios)


def max_window_vsts(window: int, ratios: Sequence[int]) -> int:
    """VSTs of the largest window any of ``ratios`` can make (carry included)."""
    return max((window + r - 1) // r for r in ratios)


def max_window_rows(window: int, ratios: Sequence[int]) -> int:
    """Rows of the largest window any of ``ratios`` can make (carry included)."""
    return window + max_window_vsts(window, ratios)
