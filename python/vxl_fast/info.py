"""``vxl-fast info``: a checkpoint's shapes and the memory plan of a request, from the one planner."""

from __future__ import annotations

import torch

from .config import VideoXLConfig
from .device import itemsize, resolve_dtype
from .loader import load_tokenizer, parameter_count, resolve_checkpoint, tiny_tokenizer
from .memory.budget import plan_memory
from .memory.plan import parse_ratios
from .prompt import prefix_ids, prefix_text

GIB = 2 ** 30
# Device memory of common GPUs (GiB), largest last, to say what a plan fits.
GPU_SIZES = {"24 GB (RTX 4090, L4)": 24, "48 GB (L40S, A6000)": 48, "80 GB (A100, H100)": 80,
             "141 GB (H200)": 141, "192 GB (B200)": 192}


def plan_summary(checkpoint: str, frames: int, ratio: int, question_tokens: int, max_new_tokens: int,
                 dtype: str) -> dict:
    """The checkpoint's shapes and the plan of one request over ``frames`` frames at ``ratio``.

    ``checkpoint="released"`` plans sy1998/Video_XL's configuration without its files; its prompt
    is then counted with the demo checkpoint's tokenizer, built in memory (the Qwen2 tokenizer is not
    bundled).
    """
    for name, value, low in (("--frames", frames, 1), ("--question-tokens", question_tokens, 0),
                             ("--max-new-tokens", max_new_tokens, 1)):
        if value < low:
            raise ValueError(f"{name} must be at least {low}, got {value}")
    dt = resolve_dtype(dtype, torch.device("cpu"))
    if checkpoint == "released":
        folder, cfg, tokenizer_of = "released Video-XL configuration", VideoXLConfig.released(), "demo"
        tokenizer = tiny_tokenizer()
    else:
        folder = resolve_checkpoint(checkpoint)
        cfg, tokenizer_of = VideoXLConfig.from_dir(folder), "checkpoint"
        tokenizer = load_tokenizer(folder)
    ratios = parse_ratios(ratio, cfg.beacon.ratios)
    sink = len(prefix_ids(tokenizer, prefix_text()))
    weights = parameter_count(cfg) * itemsize(dt)
    plan, need = plan_memory(cfg, sink, frames, ratios, question_tokens, max_new_tokens, weights, itemsize(dt))
    llm, vis = cfg.llm, cfg.vision
    fits = [name for name, size in GPU_SIZES.items() if need.expected_device_total <= size * GIB]
    return {
        "checkpoint": str(folder),
        "llm": {"hidden": llm.hidden_size, "layers": llm.num_layers, "heads": llm.num_heads,
                "kv_heads": llm.num_kv_heads, "head_dim": llm.head_dim, "mlp": llm.intermediate_size,
                "vocab": llm.vocab_size, "rope_theta": llm.rope_theta, "context": llm.max_position_embeddings},
        "vision": {"hidden": vis.hidden_size, "layers": vis.num_layers, "layers_run": vis.layers_to_run,
                   "heads": vis.num_heads, "select_layer": vis.select_layer, "image_size": vis.image_size,
                   "source": vis.source},
        "tokens_per_frame": cfg.tokens_per_frame, "window": cfg.beacon.window,
        "config_ratios": list(cfg.beacon.ratios), "eos_token_ids": list(cfg.eos_token_ids),
        "plan": {"frames": frames, "ratio": ratio, "dtype": str(dt), "windows": len(plan.windows),
                 "vsts": plan.num_vsts, "sink_tokens": sink, "prompt_tokenizer": tokenizer_of,
                 "question_tokens": question_tokens, "max_new_tokens": max_new_tokens,
                 "positions": plan.capacity, "fits_gpus": fits,
                 "exceeds_context": plan.capacity > llm.max_position_embeddings, **need.as_dict()},
    }


def render_summary(s: dict) -> str:
    llm, vis, p = s["llm"], s["vision"], s["plan"]
    lines = [
        s["checkpoint"],
        f"  LLM    Qwen2 {llm['layers']} layers, hidden {llm['hidden']}, {llm['heads']}/{llm['kv_heads']} heads "
        f"of {llm['head_dim']}, MLP {llm['mlp']}, vocab {llm['vocab']}, context {llm['context']}",
        f"  vision CLIP {vis['layers']} layers (uses {vis['layers_run']}), hidden {vis['hidden']}, "
        f"{vis['heads']} heads, {vis['image_size']}px ({vis['source']})",
        f"  VSTs   window {s['window']} tokens = {s['window'] // s['tokens_per_frame']} frames, "
        f"config ratios {s['config_ratios']}",
        f"memory plan: {p['frames']} frames at ratio {p['ratio']} in {p['dtype']} ({p['windows']} windows, "
        f"{p['vsts']} VSTs, {p['sink_tokens']}-token sink, {p['question_tokens']}-token question, "
        f"{p['max_new_tokens']} new tokens)",
    ]
    for key, label in (("weights", "weights  "), ("kv_cache", "KV cache "), ("stage", "VST stage"),
                       ("workspace", "workspace"), ("total", "total    ")):
        extra = f" ({p['kv_slots']} slots)" if key == "kv_cache" else ""
        lines.append(f"  {label} {p[key] / GIB:8.2f} GiB{extra}")
    lines.append(f"  on a CUDA device: ~{p['expected_reserved'] / GIB:.2f} GiB reserved by PyTorch, "
                 f"~{p['expected_device_total'] / GIB:.2f} GiB of device memory in use with the CUDA context")
    if p["fits_gpus"]:
        lines.append(f"  fits a GPU of {p['fits_gpus'][0]} or more")
    else:
        lines.append(f"  WARNING: {p['expected_device_total'] / GIB:.0f} GiB exceeds every GPU size known here "
                     f"(largest {list(GPU_SIZES)[-1]}); use fewer frames or a higher ratio")
    if p["exceeds_context"]:
        lines.append(f"  WARNING: the request uses {p['positions']} positions, beyond the model's trained "
                     f"context of {llm['context']} (RoPE is extrapolated, as upstream does)")
    if p["prompt_tokenizer"] == "demo":
        lines.append("  (prompt tokens counted with the demo tokenizer; the Qwen2 tokenizer is not bundled)")
    return "\n".join(lines)
