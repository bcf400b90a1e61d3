"""Generation and encoding options, validated once, before any decoding or encoding starts.

Wrong types raise ``TypeError``, wrong values ``ValueError``, each naming the option.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, fields

from .limits import DEFAULT_FRAMES, Limits
from .memory.plan import parse_ratios
from .prompt import check_system
from .video.request import is_video_file

DEFAULT_RATIO = 8  # compression ratio of an encode that names none
DEFAULT_RESERVE = 2048  # KV slots a memory keeps free after the video for questions and answers
DEFAULT_MAX_NEW_TOKENS = 1024  # every entry point: the API, the CLI, the server (its cap too), the batch runner
DEMO_MAX_NEW_TOKENS = 64  # ``vxl-fast demo`` only: its random checkpoint answers in random words
SAMPLING_ONLY = ("temperature", "top_p", "top_k")


def default_num_frames(video, num_frames: int | None, fps: float | None) -> int | None:
    """``num_frames`` of a request: a video file that gives neither ``num_frames`` nor ``fps``
    samples ``DEFAULT_FRAMES`` (every entry point); other inputs keep what they give."""
    if num_frames is None and fps is None and is_video_file(video):
        return DEFAULT_FRAMES
    return num_frames


def check_context(text_tokens: int, max_new_tokens: int, context: int) -> None:
    """The prompt's text and the answer fit the model's context (the one message of every entry point)."""
    if text_tokens + max_new_tokens > context:
        raise ValueError(f"prompt too long: {text_tokens} text tokens + max_new_tokens {max_new_tokens} "
                         f"exceed the model's context of {context} tokens")


@dataclass(frozen=True)
class EncodeOptions:
    """How a memory is made. ``compression_ratio``: an integer, a list (one drawn per window) or
    ``"config"``; ``reserve_tokens`` KV slots are kept free for questions and answers; ``system``
    replaces the default system prompt; ``progress`` shows a bar; ``trace`` records the windows."""

    compression_ratio: int | tuple[int, ...] | str = DEFAULT_RATIO
    reserve_tokens: int = DEFAULT_RESERVE
    system: str | None = None
    progress: bool = False
    trace: bool = False

    def __post_init__(self):
        check_count("reserve_tokens", self.reserve_tokens, low=0)
        if isinstance(self.compression_ratio, list):
            object.__setattr__(self, "compression_ratio", tuple(self.compression_ratio))
        if self.compression_ratio != "config":
            parse_ratios(self.compression_ratio, ())
        check_system(self.system)


def check_count(name: str, value, low: int) -> None:
    """``value`` is an integer of at least ``low``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


@dataclass(frozen=True)
class GenerationOptions:
    """How an answer is decoded.

    Greedy unless ``do_sample``. ``temperature``, ``top_k``, ``top_p`` and ``repetition_penalty``
    left as None take the checkpoint's ``generation_config.json`` values (HF semantics:
    ``top_k=0`` / ``top_p=1`` disable those filters). ``seed`` makes sampling repeatable;
    ``stop`` strings end the answer before them (at most ``limits.max_stop_strings`` of at most
    ``limits.max_stop_chars`` characters); ``ignore_eos`` generates exactly ``max_new_tokens``;
    ``min_tokens`` keeps the end-of-sequence tokens from being drawn before that many tokens
    (stop strings still apply). ``limits`` also bounds the prompt (see :class:`Limits`).
    """

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    min_tokens: int = 0
    limits: Limits = Limits()

    @classmethod
    def from_kwargs(cls, **kwargs) -> "GenerationOptions":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown generation option{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                            f"the options are {', '.join(sorted(names))}")
        options = cls(**kwargs)
        ignored = tuple(k for k in SAMPLING_ONLY if kwargs.get(k) is not None)
        if ignored and not options.do_sample:
            _warn_greedy(ignored)
        return options

    def __post_init__(self):
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"max_new_tokens must be a positive integer, got {n!r}")
        if n < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {n!r}")
        for name in ("do_sample", "ignore_eos"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        _number("temperature", self.temperature, low=0.0, low_ok=not self.do_sample,
                why="temperature must be positive when sampling")
        _number("top_p", self.top_p, low=0.0, high=1.0, why="top_p must be in (0, 1]")
        _number("repetition_penalty", self.repetition_penalty, low=0.0, why="repetition_penalty must be positive")
        _integer("top_k", self.top_k, "top_k must be >= 0 (0 disables it)")
        _integer("seed", self.seed, "seed must be a non-negative integer")
        check_count("min_tokens", self.min_tokens, low=0)
        if self.min_tokens > n:
            raise ValueError(f"min_tokens {self.min_tokens} exceeds max_new_tokens {n}")
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a vxl_fast.limits.Limits, got {type(self.limits).__name__}")
        object.__setattr__(self, "stop", _stops(self.stop, self.limits))

    def sampling(self, defaults: dict) -> dict:
        """Sampler settings: the given values, else ``defaults`` (generation_config.json), else HF's."""
        out = {
            "temperature": _pick(self.temperature, defaults, "temperature", 1.0),
            "top_k": _pick(self.top_k, defaults, "top_k", 0),
            "top_p": _pick(self.top_p, defaults, "top_p", 1.0),
            "repetition_penalty": _pick(self.repetition_penalty, defaults, "repetition_penalty", 1.0),
        }
        # The checkpoint's own defaults are checked too: a bad generation_config.json is named.
        GenerationOptions(do_sample=self.do_sample, **out)
        return out


@functools.cache
def _warn_greedy(names: tuple[str, ...]) -> None:
    """Once per process and set of names, as transformers' ``generate`` does: greedy ignores them."""
    warnings.warn(f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} set but do_sample is False: "
                  "decoding is greedy and ignores it; pass do_sample=True to sample", UserWarning, stacklevel=4)


def _pick(value, defaults: dict, key: str, fallback):
    return value if value is not None else defaults.get(key, fallback)


def _number(name: str, value, *, low: float, high: float | None = None, low_ok: bool = False, why: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{why}, got {value}")
    if value < low or (value == low and not low_ok) or (high is not None and value > high):
        raise ValueError(f"{why}, got {value}")


def _integer(name: str, value, why: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{why}, got {value}")


def _stops(stop, limits: Limits) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = (stop,) if isinstance(stop, str) else stop
    if not isinstance(stops, (list, tuple)) or not all(isinstance(s, str) and s for s in stops):
        raise ValueError("stop must be a non-empty string or a list of non-empty strings")
    if len(stops) > limits.max_stop_strings:
        raise ValueError(f"stop holds {len(stops)} strings, more than the limit of {limits.max_stop_strings} "
                         "(max_stop_strings)")
    longest = max(map(len, stops), default=0)
    if longest > limits.max_stop_chars:
        raise ValueError(f"stop holds a string of {longest} characters, longer than the limit of "
                         f"{limits.max_stop_chars} (max_stop_chars)")
    return tuple(stops)
