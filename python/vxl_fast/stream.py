"""A streamed answer, as the caller iterates it."""

from __future__ import annotations

from typing import Generator

from .engine.stats import GenerationOutput


class TextStream:
    """Iterate for the answer's text as it is generated; ``output`` is the full
    :class:`GenerationOutput` once the iteration has ended."""

    def __init__(self, pieces: Generator[str, None, GenerationOutput]):
        self._pieces = pieces
        self.output: GenerationOutput | None = None

    def __iter__(self):
        self.output = yield from self._pieces

    def text(self) -> str:
        """Consume the stream; the whole answer."""
        return "".join(self)
