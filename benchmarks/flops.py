"""Operation counts for roofline fractions (multiply-add = 2 FLOPs)."""

from __future__ import annotations

from vxl_fast import VideoXLConfig
from vxl_fast.memory.plan import RequestPlan


def llm_flops(cfg: VideoXLConfig, rows: int, keys_before: int) -> float:
    """One window of ``rows`` rows over ``keys_before`` kept slots: projections, MLP, attention."""
    llm = cfg.llm
    d_q, d_kv = llm.num_heads * llm.head_dim, llm.num_kv_heads * llm.head_dim
    linear = 2 * rows * llm.hidden_size * (d_q + 2 * d_kv + d_q + 3 * llm.intermediate_size)
    visible = rows * keys_before + rows * (rows + 1) / 2  # causal over the window
    attention = 4 * llm.num_heads * llm.head_dim * visible
    return llm.num_layers * (linear + attention)


def prefill_flops(cfg: VideoXLConfig, plan: RequestPlan) -> float:
    total = llm_flops(cfg, plan.sink, 0)
    kept = plan.sink
    for w in plan.windows:
        total += llm_flops(cfg, w.rows, kept)
        kept += w.n_vst
    return total + llm_flops(cfg, plan.text_after, kept) + 2 * cfg.llm.hidden_size * cfg.llm.vocab_size


def vision_flops(cfg: VideoXLConfig, frames: int) -> float:
    v, llm = cfg.vision, cfg.llm
    n = v.num_patches + 1
    per_layer = 2 * n * v.hidden_size * (4 * v.hidden_size + 2 * v.intermediate_size) + 4 * n * n * v.hidden_size
    patch = 2 * v.num_patches * v.hidden_size * 3 * v.patch_size ** 2
    projector = 2 * v.num_patches * v.hidden_size * llm.hidden_size + 2 * cfg.tokens_per_frame * llm.hidden_size ** 2
    return frames * (v.layers_to_run * per_layer + patch + projector)
