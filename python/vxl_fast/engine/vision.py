"""Visual tokens of a source, computed on demand, a few frames at a time."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

import torch

from ..video.inputs import VisualSource


class VisualStream:
    """Visual tokens of a :class:`VisualSource`'s items, encoded as the windows ask for them.

    ``encode`` maps pixels [b, 3, S, S] to tokens [b·tokens_per_item, D]. Only the items a window
    needs are encoded, so a long video never holds more than about one window of visual tokens.
    """

    def __init__(self, source: VisualSource, tokens_per_item: int,
                 encode: Callable[[torch.Tensor], torch.Tensor], batch: int):
        self.count, self.tokens_per_item = source.count, tokens_per_item
        self._pixels, self._encode, self._batch = source.pixels, encode, batch
        self._next = 0
        self._buffer: deque[torch.Tensor] = deque()
        self._buffered = 0
        self.taken = 0  # tokens handed out so far
        self.seconds = 0.0  # time spent preprocessing and encoding

    @property
    def num_tokens(self) -> int:
        return self.count * self.tokens_per_item

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` visual tokens [n, D]."""
        while self._buffered < n:
            if self._next >= self.count:
                raise RuntimeError("visual stream exhausted")
            need = -(-(n - self._buffered) // self.tokens_per_item)
            j = min(self.count, self._next + max(1, min(need, self._batch)))
            t0 = time.perf_counter()
            tokens = self._encode(self._pixels(self._next, j))
            if tokens.is_cuda:
                torch.cuda.synchronize(tokens.device)
            self.seconds += time.perf_counter() - t0
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
