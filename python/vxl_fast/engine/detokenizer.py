"""Incremental detokenisation for streamed answers, and stop strings."""

from __future__ import annotations


class Detokenizer:
    """Turns generated ids into text pieces whose concatenation is the final answer.

    The final answer is upstream's: the new ids decoded without special tokens, cut before the
    first stop string, stripped. A piece is released only when later tokens cannot change it:
    an incomplete UTF-8 character, trailing whitespace and a possible start of a stop string
    are held back until the text after them arrives.
    """

    def __init__(self, tokenizer, stops: tuple[str, ...] = ()):
        self.tokenizer, self.stops = tokenizer, stops
        self.ids: list[int] = []
        self.emitted = ""
        self.stopped = False
        # NOTE: decoding is incremental — the ids up to ``_done`` decode to ``_decoded``, ending on a
        # whole character, and only the ids after them are decoded again — unless the tokenizer
        # rewrites spaces across tokens, where only a whole decode is right.
        self._decoded, self._done = "", 0
        self._incremental = not getattr(tokenizer, "clean_up_tokenization_spaces", False)

    def _decode(self, final: bool) -> str:
        if final or not self._incremental:
            return self.tokenizer.decode(self.ids, skip_special_tokens=True)
        text = self._decoded + self.tokenizer.decode(self.ids[self._done:], skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # a whole character at the end: the next decode starts here
            self._decoded, self._done = text, len(self.ids)
        return text

    def text(self, final: bool = False) -> str:
        text = self._decode(final)
        cut = find_stop(text, self.stops)
        if cut >= 0:
            self.stopped, final, text = True, True, text[:cut]
        text = text.lstrip()
        if final:
            return text.rstrip()
        text = text.rstrip("\ufffd")
        hold = max((n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        return text[:len(text) - hold].rstrip()

    def push(self, token: int) -> str:
        self.ids.append(token)
        return self._release(self.text())

    def finish(self) -> str:
        return self._release(self.text(final=True))

    def _release(self, text: str) -> str:
        piece = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted += piece
        return piece



def find_stop(text: str, stops: tuple[str, ...]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1
