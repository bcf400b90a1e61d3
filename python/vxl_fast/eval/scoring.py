"""The log-likelihood of a continuation after a question about an encoded video."""

from __future__ import annotations

import torch

from ..engine.answer import prefill
from ..prompt import build_prompt, system_of, tokenize_prompt
from ..video_memory import VideoMemory


def continuation_ids(tokenizer, continuation: str) -> list[int]:
    """Token ids of an answer's text (no special tokens); a blank continuation is refused."""
    if not isinstance(continuation, str) or not continuation:
        raise ValueError(f"the continuation must be a non-empty string, got {continuation!r}")
    return tokenizer(continuation, add_special_tokens=False)["input_ids"]


def loglikelihood(memory: VideoMemory, context: str, continuation: str) -> tuple[float, bool]:
    """:func:`score` of ``continuation``'s tokens."""
    return score(memory, context, continuation_ids(memory.model.tokenizer, continuation))


def score(memory: VideoMemory, context: str, cont: list[int]) -> tuple[float, bool]:
    """Summed log-probability of the token ids ``cont`` as the answer to ``context`` (a question about
    ``memory``'s video) and whether greedy decoding would produce it.

    One prefill from the memory: the question as :meth:`VideoXL.ask` runs it (its last row gives
    the distribution of the answer's first token, the ``logits`` of ``ask``), then the
    continuation's tokens (``cont``) but the last. The memory is left as it was.
    """
    model = memory.model
    text = build_prompt(context, system=system_of(memory.prefix_text))
    tok = tokenize_prompt(model.tokenizer, text)
    if not cont:
        raise ValueError("the continuation has no tokens")
    model._check_context(tok, len(cont))
    runner, state = model.runner, memory.state
    with runner.lock:
        if state.answering:
            raise RuntimeError("this memory is answering another question; finish that first")
        state.answering = True
        try:
            cache, _, first = prefill(runner, state, tok.after, len(cont), None)
            rows = [first[None]]
            with runner.session():
                window = runner.config.beacon.window
                body = cont[:-1]
                for a in range(0, len(body), window):
                    rows.append(runner.logits(runner.run_text(cache, body[a:a + window], "text", None)))
                logits = torch.cat(rows).float()
        finally:
            state.answering = False
    logprobs = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(cont, device=logprobs.device)
    total = logprobs.gather(1, target[:, None]).sum().item()
    return float(total), bool(torch.equal(logits.argmax(dim=-1), target))
