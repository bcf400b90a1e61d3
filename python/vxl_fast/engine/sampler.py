"""Token selection: greedy or sampled, as HF ``generate`` does it."""

from __future__ import annotations

import torch


class Sampler:
    """Pick the next token from fp32 logits.

    HF order: repetition penalty over every id already seen (prompt text and generated), then,
    only when sampling, temperature → top-k → top-p, then a multinomial draw. Greedy is a plain
    argmax (ties → lowest id). The settings are validated by ``GenerationOptions``.
    """

    def __init__(self, vocab: int, do_sample: bool, temperature: float, top_k: int, top_p: float,
                 repetition_penalty: float, seed: int | None, device: torch.device):
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

    def observe(self, ids: list[int]) -> None:
        """Mark token ids as seen (ids beyond the vocabulary are ignored); filtered on the host,
        so no device synchronisation."""
        vocab = self.seen.numel()
        known = [i for i in ids if i < vocab]
        if known:
            self.seen[torch.tensor(known).to(self.seen.device, non_blocking=True)] = True

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

