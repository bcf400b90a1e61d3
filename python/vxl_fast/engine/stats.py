"""What a request reports: typed statistics and the generation output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..memory.kv import KVCache
from ..memory.plan import VisualWindow
from ..memory.state import MemoryState
from .flops import Flops


@dataclass
class GenerationOutput:
    token_ids: list[int]  # new tokens (an EOS that stopped generation included)
    text: str  # decoded without special tokens, stripped, cut before a stop string
    logits: torch.Tensor  # float32 [vocab]: the distribution of the first new token
    finish_reason: str  # "eos", "stop" or "length"
    stats: dict = field(default_factory=dict)  # AnswerStats.as_dict()


@dataclass
class AnswerStats:
    """One answer: what the memory held, what was run, and how long each part took (seconds)."""

    modality: str
    frames: int
    image_tiles: int
    images: int
    visual_tokens: int
    windows: int
    vsts: int
    vst_per_window: list[int]
    compression_ratios: list[int]
    prompt_tokens: int
    generated_tokens: int
    kv_slots: int
    kv_capacity: int
    kv_bytes: int
    kv_bytes_used: int
    stage_bytes: int
    flops_run: float  # language model, this answer (plus the encoding with include_encoding)
    flops_skipped: float  # what a plain forward of the same rows would add (see engine.flops)
    vision_s: float
    prefill_s: float
    ttft_s: float
    decode_s: float
    decode_tok_s: float
    total_s: float
    trace: list | None = None

    @classmethod
    def of(cls, state: MemoryState, cache: KVCache, prompt_tokens: int, new_tokens: int,
           pending: VisualWindow | None, flops: Flops, prefill_s: float, decode_s: float) -> "AnswerStats":
        """An answer over ``state`` whose question and tokens went into ``cache``; ``pending`` is the
        incomplete last window, compressed for this answer only."""
        extra = [pending.n_vst] if pending is not None else []
        count = state.frames
        return cls(
            modality=state.modality, frames=count if state.modality == "video" else 0,
            image_tiles=count if state.modality == "image" else 0, images=count if state.modality == "images" else 0,
            visual_tokens=state.visual_tokens,
            windows=len(state.windows) + len(extra), vsts=state.num_vsts + sum(extra),
            vst_per_window=[w.n_vst for w in state.windows] + extra,
            compression_ratios=sorted({w.ratio for w in state.windows}) or list(state.ratios),
            prompt_tokens=prompt_tokens, generated_tokens=new_tokens, kv_slots=cache.length,
            kv_capacity=cache.capacity, kv_bytes=cache.nbytes, kv_bytes_used=cache.slot_bytes * cache.length,
            stage_bytes=state.stage.nbytes, flops_run=flops.run, flops_skipped=flops.skipped, vision_s=0.0,
            prefill_s=prefill_s, ttft_s=prefill_s,
            decode_s=decode_s, decode_tok_s=(new_tokens - 1) / decode_s if new_tokens > 1 else 0.0,
            total_s=prefill_s + decode_s)

    def include_encoding(self, state: MemoryState, flops: Flops) -> None:
        """Count the time and ``flops`` that made ``state`` (a one-shot request encodes, then answers)."""
        self.flops_run += flops.run
        self.flops_skipped += flops.skipped
        self.vision_s = state.stats.vision_s
        self.prefill_s += state.stats.compress_s
        encode_s = state.stats.vision_s + state.stats.compress_s
        self.ttft_s += encode_s
        self.total_s += encode_s
        if self.trace is not None and state.trace is not None:
            self.trace = state.trace + self.trace

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.trace is None:
            del out["trace"]
        return out


def with_encode(stats: dict, vision_s: float, encode_s: float) -> dict:
    """An answer's ``stats`` (``AnswerStats.as_dict``) counting the encode that ran for it: its
    ``encode_s`` seconds in ``ttft_s`` and ``total_s``, its ``vision_s`` as the answer's."""
    stats["vision_s"] = vision_s
    stats["ttft_s"] += encode_s
    stats["total_s"] += encode_s
    return stats


def record_step(trace: list | None, cache: KVCache, kind: str, n_raw: int, n_vst: int, kv_before: int,
                ratio: int | None, carry: int | None) -> None:
    """One entry of the window trace, in the golden cases' format (plus buffer facts)."""
    if trace is None:
        return
    n_in = n_raw + n_vst
    trace.append({
        "kind": kind, "n_raw": n_raw, "n_vst": n_vst, "n_in": n_in, "kv_before": kv_before,
        "pos_first": 0, "pos_last": kv_before + n_in - 1, "ratio": ratio,
        "vst_slots": None if ratio is None else {"first": ratio - carry, "step": ratio + 1, "count": n_vst},
        "kv_ptr": cache.k.data_ptr(), "kv_length_after": cache.length,
    })
