"""Evaluation requests answered video by video: each video is encoded once and every question
about it (generation or log-likelihood) reuses its memory."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..api import VideoXL
from ..limits import DEFAULT_FRAMES
from ..memory.plan import parse_ratios
from ..options import DEFAULT_RATIO, GenerationOptions
from ..video.request import VisualRequest, is_video_file
from ..video_memory import VideoMemory
from .scoring import loglikelihood

log = logging.getLogger(__name__)
# lmms-eval's generation keys that change nothing here (beam search of one beam, HF switches)
IGNORED_KEYS = {"num_beams", "use_cache", "image_aspect_ratio", "modalities", "image_sizes"}


@dataclass(frozen=True)
class Sampling:
    """How a request's visual input is read and compressed (one setting for a whole evaluation):
    ``num_frames`` uniform frames (upstream's wrapper: 128), or ``fps`` with at most
    ``max_frames``; ``compression_ratio`` an integer, a list (one drawn per window, as asked) or
    ``"config"`` (the checkpoint's ``beacon_ratio`` draw, only when asked for); ``system``
    replaces the default system prompt."""

    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    compression_ratio: int | tuple[int, ...] | str = DEFAULT_RATIO
    system: str | None = None

    def __post_init__(self):
        if self.num_frames is None and self.fps is None:
            object.__setattr__(self, "num_frames", DEFAULT_FRAMES)
        if self.num_frames is not None and self.fps is not None:
            raise ValueError("give num_frames or fps, not both")
        if isinstance(self.compression_ratio, list):
            object.__setattr__(self, "compression_ratio", tuple(self.compression_ratio))
        if self.compression_ratio != "config":
            parse_ratios(self.compression_ratio, ())

    def request(self, visuals: Sequence[Any] | None) -> VisualRequest | None:
        """The visual request of a document's visuals: one video file (or folder of frames), or images (paths or PIL
        images, each one frame); None or [] for none."""
        if visuals is None or (isinstance(visuals, (list, tuple)) and not visuals):
            return None
        items = list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]
        if len(items) == 1 and (is_video_file(items[0]) or _is_folder(items[0])):
            if not os.path.exists(items[0]):
                raise FileNotFoundError(f"video not found: {items[0]}")
            return VisualRequest(video=str(items[0]), num_frames=self.num_frames, fps=self.fps,
                                 max_frames=self.max_frames)
        return VisualRequest(images=items if len(items) > 1 else items[0])


def _is_folder(item) -> bool:
    return isinstance(item, (str, os.PathLike)) and os.path.isdir(item)


def visual_key(visuals) -> tuple:
    """Requests with equal keys share one memory: the same paths (or the same image objects)."""
    items = visuals if isinstance(visuals, (list, tuple)) else [visuals]
    return tuple(os.fspath(v) if isinstance(v, (str, os.PathLike)) else id(v) for v in (items or ()))


def generation_options(gen_kwargs: dict | None, max_new_tokens: int, seed: int | None) -> dict:
    """lmms-eval's ``generation_kwargs`` as :meth:`VideoXL.ask` options: ``until`` → stop strings;
    temperature 0 (or none) decodes greedily, a positive one (or ``do_sample``) samples with
    ``seed``; beam search is refused."""
    kw = dict(gen_kwargs or {})
    beams = kw.pop("num_beams", 1) or 1
    if beams != 1:
        raise ValueError(f"num_beams={beams}: beam search is not supported; use num_beams=1")
    until = kw.pop("until", None)
    until = [until] if isinstance(until, str) else list(until or [])
    temperature = kw.pop("temperature", None)
    sample = bool(kw.pop("do_sample", False)) or (temperature is not None and temperature > 0)
    out = {"max_new_tokens": int(kw.pop("max_new_tokens", None) or max_new_tokens),
           "stop": [s for s in until if s] or None, "do_sample": sample}
    for key in ("top_p", "top_k", "repetition_penalty"):
        value = kw.pop(key, None)
        if sample and value is not None:
            out[key] = value
    if sample:
        out.update(temperature=temperature or None, seed=seed)
    unknown = sorted(set(kw) - IGNORED_KEYS)
    if unknown:
        log.warning("vxl_fast: ignoring generation options %s", ", ".join(unknown))
    GenerationOptions.from_kwargs(**out)  # every option checked before any encoding
    return out


@dataclass
class Item:
    """One request: a document's visuals, the question, and its generation options or the
    continuation to score."""

    visuals: Any
    context: str
    options: dict | None = None
    continuation: str | None = None


class Evaluator:
    """Answers :class:`Item` lists for one model and one :class:`Sampling`. ``group`` (default):
    requests about the same visual input share one encode; off, each request is a
    :meth:`VideoXL.generate` of its own (the reference's behaviour, for comparison)."""

    def __init__(self, model: VideoXL, sampling: Sampling, group: bool = True):
        self.model, self.sampling, self.group = model, sampling, group
        self.encodes = 0  # memories made so far

    def encode(self, visuals) -> VideoMemory:
        self.encodes += 1
        return self.model.encode(**self._visual_kwargs(visuals), compression_ratio=self.sampling.compression_ratio,
                                 system=self.sampling.system)

    def direct(self, item: Item) -> str:
        """One request answered by :meth:`VideoXL.generate` (its own encode)."""
        self.encodes += 1
        messages = [{"role": "user", "content": item.context}]
        if self.sampling.system is not None:
            messages.insert(0, {"role": "system", "content": self.sampling.system})
        return self.model.generate(**self._visual_kwargs(item.visuals), messages=messages,
                                   compression_ratio=self.sampling.compression_ratio, **item.options).text

    def generate(self, items: list[Item], done: Callable[[], None] = lambda: None) -> list[str]:
        """Each item's answer (``item.options``: :func:`generation_options`)."""
        if not self.group:
            return [_tick(self.direct(item), done) for item in items]
        return self._grouped(items, lambda memory, item: self.model.ask(memory, item.context, **item.options).text,
                             done)

    def loglikelihood(self, items: list[Item], done: Callable[[], None] = lambda: None) -> list[tuple[float, bool]]:
        """Each item's (summed log-probability of its continuation, is it the greedy one)."""
        return self._grouped(items, lambda memory, item: loglikelihood(memory, item.context, item.continuation),
                             done)

    def _grouped(self, items: list[Item], answer: Callable, done: Callable[[], None]) -> list:
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(visual_key(item.visuals), []).append(i)
        out: list = [None] * len(items)
        for indices in groups.values():
            memory = self.encode(items[indices[0]].visuals)
            for i in indices:
                out[i] = _tick(answer(memory, items[i]), done)
            del memory
        return out

    def _visual_kwargs(self, visuals) -> dict:
        request = self.sampling.request(visuals)
        if request is None:
            return {}
        return {k: v for k, v in vars(request).items() if v is not None and k not in ("sampling", "decoder")}


def _tick(value, done: Callable[[], None]):
    done()
    return value
