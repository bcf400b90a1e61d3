"""Token selection (greedy / sampling, as HF ``generate`` does it) and stopping."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class GenerationOutput:
    token_ids: list[int]  # new tokens (an EOS that stopped generation included)
    text: str  # decoded without special tokens, stripped, cut before a stop string
    logits: torch.Tensor  # float32 [vocab]: the distribution of the first new token
    finish_reason: str  # "eos", "stop" or "length"
    stats: dict = field(default_factory=dict)


class Sampler:
    """Pick the next token from fp32 logits.

    HF order: repetition penalty over every id already seen (prompt text and generated), then,
    only when sampling, temperature → top-k → top-p, then a multinomial draw. Greedy is a plain
    argmax (ties → lowest id).
    """

    def __init__(self, vocab: int, do_sample: bool, temperature: float, top_k: int, top_p: float,
                 repetition_penalty: float, seed: int | None, device: torch.device):
        if repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be positive, got {repetition_penalty}")
        if do_sample:
            if temperature <= 0:
                raise ValueError(f"temperature must be positive when sampling, got {temperature}")
            if not 0 < top_p <= 1:
                raise ValueError(f"top_p must be in (0, 1], got {top_p}")
            if top_k < 0:
                raise ValueError(f"top_k must be >= 0 (0 disables it), got {top_k}")
        self.do_sample, self.temperature, self.top_k, self.top_p = do_sample, temperature, top_k, top_p
        self.penalty = repetition_penalty
        self.seen = torch.zeros(vocab, dtype=torch.bool, device=device)
        self.generator = None
        if do_sample:
            self.generator = torch.Generator(device=device)
            if seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(seed)

    def observe(self, ids) -> None:
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.seen.device)
        self.seen[ids[ids < self.seen.numel()]] = True

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits after the penalty and, when sampling, the warpers (filtered entries are -inf)."""
        scores = logits.float()
        if self.penalty != 1.0:
            penalised = torch.where(scores > 0, scores / self.penalty, scores * self.penalty)
            scores = torch.where(self.seen, penalised, scores)
        if not self.do_sample:
            return scores
        scores = scores / self.temperature
        if self.top_k:
            kth = torch.topk(scores, min(self.top_k, scores.numel())).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores)
            drop = sorted_scores.softmax(-1).cumsum(-1) <= 1 - self.top_p
            drop[-1] = False
            scores = scores.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        return scores

    def __call__(self, logits: torch.Tensor) -> int:
        scores = self.scores(logits)
        if self.do_sample:
            token = int(torch.multinomial(scores.softmax(-1), 1, generator=self.generator))
        else:
            token = int(torch.argmax(scores))
        self.observe([token])
        return token


def find_stop(text: str, stops: tuple[str, ...]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1
