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
        self.matcher = StopMatcher(stops)
        # NOTE: decoding is incremental — the ids up to ``_done`` decode to ``_decoded``, ending on a
        # whole character, and only the ids after them are decoded again — unless the tokenizer
        # rewrites spaces across tokens, where only a whole decode is right.
        self._decoded, self._done, self._last = "", 0, ""
        self._incremental = not getattr(tokenizer, "clean_up_tokenization_spaces", False)

    def _decode(self, final: bool) -> tuple[str, int]:
        """The text of the ids, and how much of its start is the same as the last call's."""
        if final or not self._incremental:
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            stable = _unchanged(self._last, text)
        else:
            stable = len(self._decoded)
            text = self._decoded + self.tokenizer.decode(self.ids[self._done:], skip_special_tokens=True)
            if not text.endswith("\ufffd"):  # a whole character at the end: the next decode starts here
                self._decoded, self._done = text, len(self.ids)
        self._last = text
        return text, stable

    def text(self, final: bool = False) -> str:
        text, stable = self._decode(final)
        cut, hold = self.matcher.scan(text, stable)
        if cut >= 0:
            self.stopped, final, text = True, True, text[:cut]
        text = text.lstrip()
        if final:
            return text.rstrip()
        text = text.rstrip("\ufffd")
        return text[:max(0, len(text) - hold)].rstrip()

    def push(self, token: int) -> str:
        self.ids.append(token)
        return self._release(self.text())

    def finish(self) -> str:
        return self._release(self.text(final=True))

    def _release(self, text: str) -> str:
        piece = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        self.emitted += piece
        return piece


class StopMatcher:
    """Finds the earliest stop string in a text that grows at its end, in time linear in the text.

    Each stop string keeps a Knuth–Morris–Pratt state (the longest end of the text scanned so far
    that begins it); a scan resumes from the states saved at the end of the unchanged text, so a
    token costs O(stops × (new characters + the few at the end that changed)). ``examined``
    counts the characters looked at (per stop string).
    """

    def __init__(self, stops: tuple[str, ...] = ()):
        self.stops = tuple(stops)
        self.longest = max(map(len, self.stops), default=0)
        self.examined = 0
        self._fail = [_failure(s) for s in self.stops]
        self._pos, self._states = 0, [0] * len(self.stops)

    def scan(self, text: str, stable: int) -> tuple[int, int]:
        """``(cut, hold)``: where the earliest stop string in ``text`` begins (-1: none) and how long
        the longest end of ``text`` that begins a stop string is. ``text[:stable]`` is the same as
        in the last call's text."""
        if not self.stops:
            return -1, 0
        if stable < self._pos:  # the text changed before the saved states: only its last characters matter
            self._pos, self._states = max(0, stable - self.longest + 1), [0] * len(self.stops)
        cut, states = self._run(self._states, text, self._pos, stable)
        if cut >= 0:
            return cut, 0
        self._pos, self._states = stable, states
        cut, states = self._run(states, text, stable, len(text))
        return cut, (0 if cut >= 0 else max(states))

    def _run(self, states: list[int], text: str, start: int, end: int) -> tuple[int, list[int]]:
        """Advance ``states`` over ``text[start:end]``; the earliest match's start (or -1) and the new states."""
        states, cut = list(states), -1
        for i, (stop, fail) in enumerate(zip(self.stops, self._fail)):
            k = states[i]
            self.examined += max(0, end - start)
            for j in range(start, end):
                c = text[j]
                while k and stop[k] != c:
                    k = fail[k - 1]
                if stop[k] == c:
                    k += 1
                if k == len(stop):
                    at = j + 1 - k
                    cut = at if cut < 0 else min(cut, at)
                    break
            states[i] = k
        return cut, states


def _failure(s: str) -> list[int]:
    """KMP failure function: ``f[i]`` is the longest proper border of ``s[:i + 1]``."""
    f, k = [0] * len(s), 0
    for i in range(1, len(s)):
        while k and s[i] != s[k]:
            k = f[k - 1]
        if s[i] == s[k]:
            k += 1
        f[i] = k
    return f


def _unchanged(old: str, new: str, tail: int = 16) -> int:
    """How much of ``old``'s start ``new`` surely shares: all but ``old``'s last ``tail``
    characters (a whole decode may rewrite spaces near the end), or nothing."""
    keep = max(0, len(old) - tail)
    return keep if new.startswith(old[:keep]) else 0
