"""Answering: the question's prefill over a memory, then the decode loop, streamed as text pieces."""

from __future__ import annotations

import contextlib
import time
from typing import Generator

import torch
from tqdm.auto import tqdm

from ..memory.kv import KVCache
from ..memory.plan import VisualWindow
from ..memory.state import MemoryState
from ..options import GenerationOptions
from ..prompt import TokenizedPrompt
from .compress import pending_window, run_pending
from .detokenizer import Detokenizer
from .flops import answer_flops, encode_flops
from .runner import Runner
from .sampler import Sampler
from .stats import AnswerStats, GenerationOutput


def answer(runner: Runner, tokenizer, state: MemoryState, tok: TokenizedPrompt, options: GenerationOptions,
           progress: bool = False, trace: bool = False,
           count_encoding: bool = False) -> Generator[str, None, GenerationOutput]:
    """Yield the answer's text pieces; return its :class:`GenerationOutput`. The state is left as
    it was (the question's K/V go into the slots after the memory's). Holds the runner's lock; each
    step runs in its session (never across a yield, which may resume in another context).
    ``count_encoding``: the stats include the time that made the state (a one-shot request)."""
    cfg = runner.config
    sampler = Sampler(cfg.llm.vocab_size, options.do_sample, **options.sampling(cfg.generation),
                      seed=options.seed, device=runner.device)
    sampler.observe(tok.before + tok.after)
    eos = set() if options.ignore_eos else set(cfg.eos_token_ids)
    held = torch.tensor(sorted(eos), dtype=torch.long, device=runner.device) if options.min_tokens and eos else None
    det = Detokenizer(tokenizer, options.stop)
    with runner.lock, _answering(state):
        t0 = time.perf_counter()
        answer_trace = [] if trace else None
        cache, pending, logits = prefill(runner, state, tok.after, options.max_new_tokens, answer_trace)
        t_first = time.perf_counter()
        first_logits, finish = logits, "length"
        with tqdm(total=options.max_new_tokens, desc="generating", unit="tok", disable=not progress,
                  leave=False) as bar:
            while True:
                if held is not None and len(det.ids) < options.min_tokens:  # no EOS before min_tokens
                    logits = logits.index_fill(-1, held, float("-inf"))
                token = sampler(logits)
                piece = det.push(token)
                bar.update(1)
                if piece:
                    yield piece
                if token in eos or det.stopped or len(det.ids) >= options.max_new_tokens:
                    finish = "eos" if token in eos else "stop" if det.stopped else "length"
                    break
                with runner.session():
                    logits = runner.decode(cache, token)
        runner.sync()
        t_end = time.perf_counter()
    piece = det.finish()
    if piece:
        yield piece
    flops = answer_flops(cfg, state.cache.length, pending, len(tok.after), len(det.ids))
    stats = AnswerStats.of(state, cache, len(tok.before) + len(tok.after), len(det.ids), pending, flops,
                           t_first - t0, t_end - t_first)
    stats.trace = answer_trace
    if count_encoding:
        stats.include_encoding(state, encode_flops(cfg, len(state.prefix_ids), state.windows))
    return GenerationOutput(list(det.ids), det.emitted, first_logits, finish, stats.as_dict())


@contextlib.contextmanager
def _answering(state: MemoryState):
    """One answer at a time per memory: answers write the same slots after the memory's."""
    if state.answering:
        raise RuntimeError("this memory is answering another question in this thread; consume or close "
                           "that stream before asking again")
    state.answering = True
    try:
        yield
    finally:
        state.answering = False


def prefill(runner: Runner, state: MemoryState, after: list[int], max_new_tokens: int,
             trace: list | None) -> tuple[KVCache, VisualWindow | None, torch.Tensor]:
    """Run the pending window (if any) and the question into a view of the memory's cache; the
    view, that window, and the first token's logits."""
    with runner.session():
        pending = pending_window(state)
        text = len(after) + max_new_tokens
        needed = state.cache.length + (max(pending.rows, pending.n_vst + text) if pending else text)
        if needed > state.cache.capacity:
            state.cache = runner.grow(state.cache, needed)
        cache = state.cache.view()
        if pending is not None:  # the incomplete last window, not kept in the memory
            run_pending(runner, state, cache)
        window = runner.config.beacon.window
        hidden = None
        for a in range(0, len(after), window):
            hidden = runner.run_text(cache, after[a:a + window], "text", trace)
        logits = runner.logits(hidden[-1:])[0]
        runner.sync()
    return cache, pending, logits
