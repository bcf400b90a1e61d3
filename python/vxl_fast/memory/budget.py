"""How much device memory a request takes, computed before any of it is allocated."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import VideoXLConfig


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
