"""How much device memory a request takes, computed before any of it is allocated."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..config import VideoXLConfig
from ..errors import MemoryPlanError
from .kv import slot_bytes
from .plan import RequestPlan, max_window_rows, max_window_vsts, plan_request


# What a CUDA device shows beyond the tensors' bytes (estimates until a GPU run measures them;
# benchmarks/test_e2e.py records all three figures): the caching allocator rounds a weight's block
# up to 2 MiB (~1 % of the weights) and keeps the vision tower's and the LLM windows' transients in
# blocks of their own (a workspace more); the CUDA context with cuBLAS's and cuDNN's handles and
# workspaces (~0.6 GiB on an H100 with CUDA 12/13) comes on top of what PyTorch reserves.
WEIGHT_BLOCK_SLACK = 0.01
CUDA_CONTEXT_BYTES = 640 * 2 ** 20


@dataclass(frozen=True)
class MemoryBudget:
    """Bytes, by purpose. ``total`` is what the request needs on top of nothing: the peak of
    ``torch.cuda.max_memory_allocated``; ``expected_reserved`` the allocator's peak
    (``max_memory_reserved``); ``expected_device_total`` the device's used memory (``nvidia-smi``,
    ``mem_get_info``) with the CUDA context."""

    weights: int
    kv_cache: int  # kept slots plus room for the largest window's rows
    stage: int  # one layer's VST keys and values of a window
    workspace: int  # the largest transient activations (a vision batch or an LLM window)
    kv_slots: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.stage + self.workspace

    @property
    def expected_reserved(self) -> int:
        return self.total + int(WEIGHT_BLOCK_SLACK * self.weights) + self.workspace

    @property
    def expected_device_total(self) -> int:
        return self.expected_reserved + CUDA_CONTEXT_BYTES

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "expected_reserved": self.expected_reserved,
                "expected_device_total": self.expected_device_total}


def kv_slot_bytes(cfg: VideoXLConfig, itemsize: int) -> int:
    """K and V of one slot over all layers."""
    return slot_bytes(cfg.llm.num_layers, cfg.llm.num_kv_heads, cfg.llm.head_dim, itemsize)


def _llm_window_bytes(cfg: VideoXLConfig, rows: int, keys: int, itemsize: int, masked_attention: bool) -> int:
    """Transients of one LLM window: residual, norm, fused qkv (+ RoPE'd copies), attention out,
    gate/up, act, down, and the attention's own."""
    llm = cfg.llm
    d_qkv = (llm.num_heads + 2 * llm.num_kv_heads) * llm.head_dim
    out = rows * (4 * llm.hidden_size + 2 * d_qkv + 3 * llm.intermediate_size) * itemsize
    if masked_attention:  # a boolean mask, K/V repeated to every query head, fp32 scores
        return out + rows * keys + 2 * llm.num_heads * keys * llm.head_dim * itemsize + llm.num_heads * rows * keys * 4
    return out + 3 * rows * llm.num_heads * llm.head_dim * 4  # segments' fp32 outputs, merged


def _vision_frame_bytes(cfg: VideoXLConfig, itemsize: int) -> int:
    """Transients of one frame in a vision batch: its pixels in the compute dtype (and the
    preprocessing's 8-bit intermediate), CLIP residual/LN/qkv/MLP, the projector's hidden states
    before pooling."""
    vis, llm = cfg.vision, cfg.llm
    return (3 * vis.image_size ** 2 * (itemsize + 1) + (vis.num_patches + 1) * (6 * vis.hidden_size + vis.intermediate_size) * itemsize
            + vis.num_patches * llm.hidden_size * itemsize * 2)


MAX_VISION_BATCH = 64


def vision_batch(cfg: VideoXLConfig, itemsize: int) -> int:
    """Frames (or image tiles) per vision-tower call: as many as fit in the transients of one
    LLM window at ratio 16 (so the vision tower does not raise the peak), at least one window's
    frames, at most 64."""
    window = cfg.beacon.window
    rows = max_window_rows(window, (16,))
    per_window = max(1, window // cfg.tokens_per_frame)
    fit = _llm_window_bytes(cfg, rows, rows, itemsize, False) // _vision_frame_bytes(cfg, itemsize)
    return int(min(MAX_VISION_BATCH, max(per_window, fit)))


def budget(cfg: VideoXLConfig, capacity: int, ratios: Sequence[int], weight_bytes: int, itemsize: int,
           masked_attention: bool = False) -> MemoryBudget:
    """Memory for ``capacity`` kept KV slots and windows compressed at ``ratios``: room in the
    cache for the largest window's rows (their K/V sit after the kept slots while it runs), a
    stage for its VSTs, and the larger of one window's and one vision batch's transients.
    ``masked_attention``: the reference backend instead of a fused one."""
    llm = cfg.llm
    rows = max_window_rows(cfg.beacon.window, ratios)
    vsts = max_window_vsts(cfg.beacon.window, ratios)
    stage = 2 * llm.num_kv_heads * vsts * llm.head_dim * itemsize
    batch = vision_batch(cfg, itemsize)
    # while a window runs it also holds its raw tokens, its rows with the VSTs interleaved and
    # the visual tokens of the vision batch it was taken from
    held = (cfg.beacon.window + rows + batch * cfg.tokens_per_frame) * llm.hidden_size * itemsize
    llm_ws = _llm_window_bytes(cfg, rows, capacity + rows, itemsize, masked_attention) + held
    vision_ws = batch * _vision_frame_bytes(cfg, itemsize)
    logits = 2 * llm.vocab_size * 4
    return MemoryBudget(weight_bytes, (capacity + rows) * kv_slot_bytes(cfg, itemsize), stage,
                        max(llm_ws, vision_ws) + logits, capacity + rows)


def plan_memory(cfg: VideoXLConfig, sink: int, num_frames: int, ratios: Sequence[int], question_tokens: int,
                max_new_tokens: int, weight_bytes: int, itemsize: int,
                masked_attention: bool = False) -> tuple[RequestPlan, MemoryBudget]:
    """The windows and device memory of a request over ``num_frames`` frames (the one planner:
    the API, the CLI and the benchmarks all call it). With several ratios the first is planned."""
    plan = plan_request(sink, num_frames * cfg.tokens_per_frame, question_tokens, max_new_tokens,
                        cfg.beacon.window, tuple(ratios)[:1])
    return plan, budget(cfg, plan.capacity, tuple(ratios)[:1], weight_bytes, itemsize, masked_attention)


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
