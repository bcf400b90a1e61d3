"""Visual tokens of a pixel source, computed on demand, a few frames at a time."""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Callable

import torch

from ..video.inputs import PixelSource, Target
from .timing import StageTimer


class VisualTokens:
    """Visual tokens of a :class:`PixelSource`'s items, encoded as the windows ask for them.

    ``encode`` maps patch rows [b, P, 3p²] (made for ``target``: its device and dtype) to tokens
    [b·tokens_per_item, D]; it runs ``batch`` items at
    a time (fewer at the end), ahead of what the windows have asked for, so it holds at most
    ``batch`` items of visual tokens beyond the window being compressed. ``timer`` (optional)
    measures the encoding as the stage "vision"; nothing here waits for the device.
    """

    def __init__(self, source: PixelSource, tokens_per_item: int, encode: Callable[[torch.Tensor], torch.Tensor],
                 batch: int, target: Target, timer: StageTimer | None = None):
        self.count, self.tokens_per_item = source.count, tokens_per_item
        self._pixels, self._encode, self._batch = source.pixels, encode, batch
        self._target = target
        self._next = 0
        self._buffer: deque[torch.Tensor] = deque()
        self._buffered = 0
        self.taken = 0  # tokens handed out so far
        self._timer = timer

    @property
    def num_tokens(self) -> int:
        return self.count * self.tokens_per_item

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` visual tokens [n, D]."""
        while self._buffered < n:
            if self._next >= self.count:
                raise RuntimeError("visual tokens exhausted")
            j = min(self.count, self._next + max(1, self._batch))
            with self._timer.measure("vision") if self._timer else contextlib.nullcontext():
                tokens = self._encode(self._pixels(self._next, j, self._target))
            self._buffer.append(tokens)
            self._buffered += tokens.shape[0]
            self._next = j
        parts, got = [], 0
        while got < n:
            head = self._buffer.popleft()
            use = min(n - got, head.shape[0])
            parts.append(head[:use])
            if use < head.shape[0]:
                self._buffer.appendleft(head[use:])
            got += use
        self._buffered -= n
        self.taken += n
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def rest(self) -> torch.Tensor | None:
        """Every token not yet taken (None when there is none)."""
        left = self.num_tokens - self.taken
        return self.take(left) if left else None
