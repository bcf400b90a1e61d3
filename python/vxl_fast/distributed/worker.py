"""The work one batch worker does: load the model once, then encode each group's input once and
answer all its requests from that memory. A plain class; :mod:`.batch` makes it a Ray actor."""

from __future__ import annotations

import os
import socket
import time

from .records import error_record, ok_record
from .requests import Group


class BatchWorker:
    """One loaded model. ``run(group)`` never raises for a bad request: each request that cannot
    be answered gets an error record, and the others of the group still run."""

    def __init__(self, model: str, device: str | None, dtype: str | None, name: str):
        from .. import VideoXL

        self.name = name
        self.model = VideoXL.from_pretrained(model, device=device, dtype=dtype)

    def info(self) -> dict:
        """Who answered: the worker's name, node address, process id and device."""
        try:
            import ray
            node = ray.util.get_node_ip_address()
        except ImportError:  # run in-process, without Ray
            node = socket.gethostname()
        return {"name": self.name, "node": node, "pid": os.getpid(), "device": str(self.model.device)}

    def run(self, group: Group) -> list[dict]:
        """One record per request of ``group``, in its order."""
        worker = self.info()
        start = time.perf_counter()
        try:
            first = group.requests[0]
            memory = self.model.encode_request(first.visual, first.options)
        except Exception as e:  # NOTE: failure isolation: whatever a bad input raises is its record
            elapsed = time.perf_counter() - start
            return [error_record(r, e, worker, elapsed) for r in group.requests]
        encode_s = time.perf_counter() - start
        summary = {"frames": memory.frames, "windows": len(memory.windows), "vsts": memory.num_vsts,
                   "kv_slots": memory.kv_slots, "ratios": list(memory.ratios), "encode_s": round(encode_s, 4),
                   **memory.stats}
        records = []
        for i, request in enumerate(group.requests):
            t0 = time.perf_counter()
            try:
                answers = [self._answer(memory, q) for q in request.questions]
            except Exception as e:  # NOTE: as above; the memory is untouched by a failed question
                records.append(error_record(request, e, worker, time.perf_counter() - t0))
                continue
            # The first request of the group pays for the encoding; the others reuse it.
            elapsed = time.perf_counter() - t0 + (encode_s if i == 0 else 0.0)
            records.append(ok_record(request, answers, {**summary, "encoded_here": i == 0}, worker, elapsed))
        return records

    def _answer(self, memory, question) -> dict:
        out = self.model.ask(memory, question.prompt, **question.options)
        return {"question": question.prompt, "text": out.text, "finish_reason": out.finish_reason,
                "token_ids": list(out.token_ids), "stats": {k: v for k, v in out.stats.items() if k != "trace"}}
