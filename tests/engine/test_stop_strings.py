"""Stop strings: bounded by the request budgets, matched in time linear in the text generated
(work counted in characters examined, not seconds); min_tokens; the prompt budget before tokenizing."""

from __future__ import annotations

import dataclasses
import random

import pytest

from conftest import CountingTokenizer
from vxl_fast import GenerationOptions
from vxl_fast.engine.detokenizer import Detokenizer, StopMatcher
from vxl_fast.limits import Limits


def _reference(text: str, stops: tuple[str, ...]) -> tuple[int, int]:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    if hits:
        return min(hits), 0
    return -1, max((n for s in stops for n in range(1, len(s)) if text.endswith(s[:n])), default=0)


def test_matcher_agrees_with_a_plain_search_as_the_text_grows_and_its_end_changes():
    rng = random.Random(0)
    for _ in range(400):
        stops = tuple("".join(rng.choice("ab") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3)))
        matcher, text = StopMatcher(stops), ""
        for _ in range(30):
            stable = len(text)
            if text and rng.random() < 0.3:  # a decode that rewrote the last characters
                stable = rng.randint(max(0, len(text) - 3), len(text))
                text = text[:stable]
            text += "".join(rng.choice("abc") for _ in range(rng.randint(0, 3)))
            found = matcher.scan(text, stable)
            assert found == _reference(text, stops), (stops, text, stable)
            if found[0] >= 0:
                break


class _Chars:
    """A tokenizer whose ids are characters."""

    clean_up_tokenization_spaces = False

    def decode(self, ids, skip_special_tokens=True):
        return "".join(map(chr, ids))


def test_work_per_token_is_bounded_by_the_new_text_and_the_longest_stop():
    """Sixteen stop strings of the largest length, each one character short of matching again and
    again: every token examines at most twice its new characters per stop string, so a
    long answer costs work linear in its length (the old search was quadratic in the stop length)."""
    limits = Limits()
    n, size = limits.max_stop_strings, limits.max_stop_chars
    stops = GenerationOptions(stop=["a" * (size - 1) + chr(ord("b") + i) for i in range(n)]).stop
    det = Detokenizer(_Chars(), stops)
    text = ("a" * (size - 1) + "z") * 40
    per_token = []
    for c in text:
        before = det.matcher.examined
        det.push(ord(c))
        per_token.append(det.matcher.examined - before)
    assert not det.stopped and det.emitted == text  # nothing matched, nothing held at the end
    # one new character per token, examined per stop string when it arrives and once more when
    # the next token confirms it (the old search looked at size² characters per stop string)
    assert max(per_token) <= 2 * n
    assert sum(per_token) <= 2 * n * len(text)
    det2 = Detokenizer(_Chars(), stops)
    for c in "x" * 100 + stops[3] + "tail":
        det2.push(ord(c))
        if det2.stopped:
            break
    assert det2.stopped and det2.emitted == "x" * 100


def test_a_multi_token_character_is_rescanned_only_at_the_end():
    """A decode that changes its last characters (an incomplete UTF-8 character) is rescanned from
    the last whole character, not from the start."""
    class Bytes(_Chars):
        def decode(self, ids, skip_special_tokens=True):
            return bytes(ids).decode("utf-8", "replace")

    det = Detokenizer(Bytes(), ("ü!",))
    data = ("é" * 500).encode() + "ü!".encode()
    per_token = []
    for b in data:
        before = det.matcher.examined
        det.push(b)
        per_token.append(det.matcher.examined - before)
        if det.stopped:
            break
    assert det.stopped and det.emitted == "é" * 500
    assert max(per_token) <= 2 and sum(per_token) <= 2 * len(data)


def test_stop_budgets_are_checked_in_the_options():
    with pytest.raises(ValueError, match=r"stop holds a string of 153600 characters, longer than the limit of 256 "
                                         r"\(max_stop_chars\)"):
        GenerationOptions(stop="x" * 150 * 1024)
    with pytest.raises(ValueError, match=r"stop holds 17 strings, more than the limit of 16 \(max_stop_strings\)"):
        GenerationOptions(stop=[f"s{i}" for i in range(17)])
    raised = Limits(max_stop_chars=1000, max_stop_strings=20)
    assert len(GenerationOptions(stop=["x" * 1000] * 20, limits=raised).stop) == 20
    with pytest.raises(TypeError, match="limits must be"):
        GenerationOptions(limits={"max_stop_chars": 5})


def test_min_tokens_keeps_eos_away(tiny_model, monkeypatch):
    memory = tiny_model.encode_request(None)
    first = tiny_model.ask(memory, "hi", max_new_tokens=4).token_ids[0]
    runner = tiny_model.runner
    monkeypatch.setattr(runner, "config", dataclasses.replace(runner.config, eos_token_ids=(first,)))
    assert tiny_model.ask(memory, "hi", max_new_tokens=4).finish_reason == "eos"
    out = tiny_model.ask(memory, "hi", max_new_tokens=4, min_tokens=3)
    assert first not in out.token_ids[:3] and len(out.token_ids) >= 3
    with pytest.raises(ValueError, match="min_tokens 5 exceeds max_new_tokens 4"):
        tiny_model.ask(memory, "hi", max_new_tokens=4, min_tokens=5)


def test_a_long_prompt_is_refused_before_tokenizing(tiny_model, monkeypatch):
    counting = CountingTokenizer(tiny_model.tokenizer)
    calls = counting.calls
    memory = tiny_model.encode_request(None)
    monkeypatch.setattr(tiny_model, "tokenizer", counting)
    context = tiny_model.config.llm.max_position_embeddings
    with pytest.raises(ValueError, match=rf"prompt too long: its text is \d+ bytes, more than the limit of "
                                         rf"{8 * context} bytes \(max_prompt_bytes"):
        tiny_model.ask(memory, "é" * (4 * context + 1), max_new_tokens=1)
    with pytest.raises(ValueError, match="more than the limit of 100 bytes"):
        tiny_model.ask(memory, "x" * 200, max_new_tokens=1, limits=Limits(max_prompt_bytes=100))
    assert calls == []
    tiny_model.ask(memory, "x" * 50, max_new_tokens=1, limits=Limits(max_prompt_bytes=1000))
    assert calls
