"""How much device memory a request takes, computed before any of it is allocated."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..config import VideoXLConfig
from ..errors import MemoryPlanError
from .plan import RequestPlan, plan_request


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes, by purpose. ``total`` is what the request needs on top of nothing."""

    weights: int
    kv_cache: int
    scratch: int
    workspace: int  # the largest transient activations (a vision batch or an LLM window)
    kv_slots: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.scratch + self.workspace

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def kv_slot_bytes(cfg: VideoXLConfig, itemsize: int) -> int:
    """K and V of one slot over all layers."""
    llm = cfg.llm
    return 2 * llm.num_layers * llm.num_kv_heads * llm.head_dim * itemsize


def budget(cfg: VideoXLConfig, capacity: int, rows: int, weight_bytes: int, itemsize: int,
           vision_batch: int) -> MemoryBudget:
    """Memory for ``capacity`` KV slots and windows of up to ``rows`` rows."""
    llm, vis = cfg.llm, cfg.vision
    rows = max(rows, 1)
    scratch = 2 * llm.num_kv_heads * rows * llm.head_dim * itemsize
    # LLM window: residual, norm, fused qkv (+ RoPE'd copies), attention out, gate/up, act, down;
    # attention over [memory | window]: K/V of both segments and a boolean mask.
    d_qkv = (llm.num_heads + 2 * llm.num_kv_heads) * llm.head_dim
    keys = capacity + rows
    llm_ws = (rows * (4 * llm.hidden_size + 2 * d_qkv + 3 * llm.intermediate_size) * itemsize
              + 2 * keys * llm.num_kv_heads * llm.head_dim * itemsize + rows * keys)
    # Vision batch: fp32 pixels, CLIP residual/LN/qkv/MLP, projector hidden before pooling.
    tokens = vision_batch * (vis.num_patches + 1)
    vision_ws = (vision_batch * 3 * vis.image_size ** 2 * 4
                 + tokens * (6 * vis.hidden_size + vis.intermediate_size) * itemsize
                 + vision_batch * vis.num_patches * llm.hidden_size * itemsize * 2)
    logits = 2 * llm.vocab_size * 4
    return MemoryBudget(weight_bytes, capacity * kv_slot_bytes(cfg, itemsize), scratch,
                        max(llm_ws, vision_ws) + logits, capacity)


def plan_memory(cfg: VideoXLConfig, sink: int, num_frames: int, ratios: Sequence[int], question_tokens: int,
                max_new_tokens: int, weight_bytes: int, itemsize: int,
                vision_batch: int) -> tuple[RequestPlan, MemoryBudget]:
    """The windows and device memory of a request over ``num_frames`` frames (the one planner:
    the API, the CLI and the benchmarks all call it). With several ratios the first is planned."""
    plan = plan_request(sink, num_frames * cfg.tokens_per_frame, question_tokens, max_new_tokens,
                        cfg.beacon.window, tuple(ratios)[:1])
    return plan, budget(cfg, plan.capacity, plan.max_window_rows, weight_bytes, itemsize, vision_batch)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` (None when unknown). On CUDA, memory PyTorch's caching allocator
    holds but no tensor uses counts as free: the next request's tensors reuse it."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_fits(needed: int, device: torch.device, what: str) -> None:
    """Refuse, before anything is allocated, a request that cannot fit the device."""
    free = available_bytes(device)
    if free is not None and needed > free:
        raise MemoryPlanError(
            f"{what} needs {needed / 2**30:.2f} GiB but only {free / 2**30:.2f} GiB is free on "
            f"{device}; use fewer frames or a higher compression ratio")
