"""The static decode step: token id and position in device memory, K/V written in place, one row
of logits — captured once in a CUDA graph on CUDA and replayed for every token, run eagerly (the
same code) elsewhere."""

from __future__ import annotations

import torch

from ..layers.decode_step import DecodeAttention, DecodeStep
from ..memory.kv import KVCache


class StaticDecoder:
    """Decodes into one cache's buffers (any view of them; the runner keeps one per buffer):
    ``decoder(token, position)`` feeds
    ``token`` at slot ``position`` and returns the next token's fp32 logits [vocab] (a buffer
    that the next call overwrites)."""

    def __init__(self, model, rope, cache: KVCache, attention: DecodeAttention, graph: bool):
        device = self.device = cache.k.device
        self.model = model
        self.inputs = torch.zeros(2, dtype=torch.int64, device=device)  # token id, position
        self._host = torch.zeros(2, dtype=torch.int64, pin_memory=device.type == "cuda")
        bounds = torch.tensor([[0, 1], [0, cache.capacity]], dtype=torch.int32).to(device)
        self.step = DecodeStep(cache.k, cache.v, rope.cos, rope.sin, attention, self.inputs[1:], bounds)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None
        self.use_graph = graph

    def _forward(self) -> torch.Tensor:
        x = self.model.llm.embed_tokens(self.inputs[:1])
        self.step.begin()
        return self.model.logits(self.model.llm(x, self.step))[0]

    def __call__(self, token: int, position: int) -> torch.Tensor:
        self._host[0], self._host[1] = token, position
        self.inputs.copy_(self._host, non_blocking=True)
        if not self.use_graph:
            return self._forward()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self.logits

    def _capture(self) -> None:
        # NOTE: warm up on a side stream (lazy initialisations stay out of the graph), then capture.
        # The warm-up writes the token's K/V at its slot, as the replay then does again.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._forward()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._forward()
