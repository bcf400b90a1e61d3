"""The static decode step: token id and position in device memory, K/V written in place, one row
of logits — captured once in a CUDA graph on CUDA and replayed for every token, run eagerly (the
same code) elsewhere — and the first-use check that picks how it runs (``check_decode``)."""

from __future__ import annotations

from typing import Callable

import torch

from ..layers.decode_step import DecodeAttention, DecodeStep
from ..memory.kv import KVCache

Forward = Callable[[], torch.Tensor]
# capture(forward, device) → replay: runs ``forward`` under a CUDA graph and returns a function
# that replays it and returns the captured logits buffer
Capture = Callable[[Forward, torch.device], Forward]
# max |logits - reference| allowed, relative to max |reference logits|, per compute dtype
DECODE_TOLERANCE = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 4e-2}


class CaptureFailed(RuntimeError):
    """The CUDA-graph capture of a decode step raised (the step itself is intact: run it eagerly)."""


def capture_cuda_graph(forward: Forward, device: torch.device) -> Forward:
    """``forward`` captured in a CUDA graph after a warm-up on a side stream (lazy initialisations
    stay out of the graph); the warm-up writes the token's K/V at its slot, as the replay does again."""
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        forward()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        logits = forward()

    def replay() -> torch.Tensor:
        graph.replay()
        return logits

    return replay


class StaticDecoder:
    """Decodes into one cache's buffers (any view of them; the runner keeps one per buffer):
    ``decoder(token, position)`` feeds ``token`` at slot ``position`` and returns the next token's
    fp32 logits [vocab] (a buffer that the next call overwrites). With ``graph`` the step is
    captured by ``capture`` at the first call (a failure raises ``CaptureFailed``; ``eager()``
    then turns the graph off) and replayed after."""

    def __init__(self, model, rope, cache: KVCache, attention: DecodeAttention, graph: bool,
                 capture: Capture = capture_cuda_graph):
        device = self.device = cache.k.device
        self.model = model
        self.inputs = torch.zeros(2, dtype=torch.int64, device=device)  # token id, position
        self._host = torch.zeros(2, dtype=torch.int64, pin_memory=device.type == "cuda")
        bounds = torch.tensor([[0, 1], [0, cache.capacity]], dtype=torch.int32).to(device)
        self.step = DecodeStep(cache.k, cache.v, rope.cos, rope.sin, attention, self.inputs[1:], bounds)
        self.use_graph, self.capture = graph, capture
        self.replay: Forward | None = None

    def _forward(self) -> torch.Tensor:
        x = self.model.llm.embed_tokens(self.inputs[:1])
        self.step.begin()
        return self.model.logits(self.model.llm(x, self.step))[0]

    def __call__(self, token: int, position: int) -> torch.Tensor:
        self._host[0], self._host[1] = token, position
        self.inputs.copy_(self._host, non_blocking=True)
        if not self.use_graph:
            return self._forward()
        if self.replay is None:
            try:
                self.replay = self.capture(self._forward, self.device)
            except Exception as exc:  # noqa: BLE001 - any capture failure leaves the eager step usable
                raise CaptureFailed(f"{type(exc).__name__}: {exc}") from exc
        return self.replay()

    def eager(self) -> None:
        self.use_graph, self.replay = False, None


def check_decode(candidates: dict[str, Callable[[], list[torch.Tensor]]], reference: str,
                 dtype: torch.dtype) -> tuple[str, list[str]]:
    """The first of ``candidates`` (mode → a run giving a few tokens' logits) whose logits agree
    with ``reference``'s run: max |got - want| ≤ bound = ``DECODE_TOLERANCE[dtype]``·max |want| (so
    its greedy token is the reference's or within 2·bound of it: a near tie may flip); returns it
    (``reference`` if none does) and what failed."""
    want = candidates[reference]()
    bound = DECODE_TOLERANCE[dtype] * max(w.abs().max().item() for w in want)
    problems = []
    for mode, run in candidates.items():
        if mode == reference:
            break
        try:
            got = run()
        except Exception as exc:  # noqa: BLE001 - a mode that raises is as unusable as a wrong one
            problems.append(f"{mode} raised {type(exc).__name__}: {exc}")
            continue
        err = max((g - w).abs().max().item() for g, w in zip(got, want))
        if err <= bound:
            return mode, problems
        problems.append(f"{mode} differs from {reference} (max error {err:.3g}, allowed {bound:.3g})")
    return reference, problems
