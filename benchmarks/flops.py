"""Operation counts for roofline fractions (multiply-add = 2 FLOPs); the language model's come
from the engine's own count (``vxl_fast.engine.flops``)."""

from __future__ import annotations

from vxl_fast import VideoXLConfig
from vxl_fast.engine.flops import encode_flops, text_flops
from vxl_fast.memory.plan import RequestPlan


def prefill_flops(cfg: VideoXLConfig, plan: RequestPlan) -> float:
    """What the engine runs up to the first token's logits."""
    kept = plan.sink + plan.num_vsts
    return encode_flops(cfg, plan.sink, list(plan.windows)).run + text_flops(cfg, plan.text_after, kept, 1).run


def vision_flops(cfg: VideoXLConfig, frames: int) -> float:
    v, llm = cfg.vision, cfg.llm
    n = v.num_patches + 1
    per_layer = 2 * n * v.hidden_size * (4 * v.hidden_size + 2 * v.intermediate_size) + 4 * n * n * v.hidden_size
    patch = 2 * v.num_patches * v.hidden_size * 3 * v.patch_size ** 2
    projector = 2 * v.num_patches * v.hidden_size * llm.hidden_size + 2 * cfg.tokens_per_frame * llm.hidden_size ** 2
    return frames * (v.layers_to_run * per_layer + patch + projector)
