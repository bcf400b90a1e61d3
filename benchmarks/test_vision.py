"""The vision path alone: uint8 frames in device memory → visual tokens (CLIP preprocessing, the
tower up to the selected layer, projector + 2×2 pooling), a vision batch at a time as the engine
runs it.

Three paths in the same process, on the same weights and frames:
- ``engine``: what ``VideoXL`` runs (the fused ops on CUDA);
- ``reference``: every vxl_fast op through its pure-PyTorch twin (``ops.reference_only``);
- ``transformers``: the same preprocessing and projector around transformers' ``CLIPVisionModel``
  (SDPA attention, ``num_hidden_layers`` = the layers the checkpoint selects), a plain PyTorch
  CLIP. On its first batch, the engine's tokens and its own are compared with float32 ones (the
  same CLIP and projector in float32): the engine's error is at most twice transformers' (equal
  within 1e-4 when the model runs in float32).

Each record has frames/s, TFLOP/s by ``flops.vision_flops`` (2 FLOPs per multiply-add of the patch
GEMM, every block's four GEMMs and attention 4·n²·C, the projector with its second linear on the
pooled rows), the fraction of the matmul rate measured in the same run, and the peak memory.
"""

from __future__ import annotations

import contextlib
import copy
import time

import pytest
import torch

from conftest import CONFIG, CUDA, DEVICE, env_list, environment, runner_facts, sync
from flops import vision_flops
from vxl_fast import ops
from vxl_fast.video.inputs import frames_source
from vxl_fast.video.preprocess import clip_preprocess

FRAMES = env_list("VXL_BENCH_VISION_FRAMES", [2048] if CONFIG == "full" else [32])
GIB = 2 ** 30
_matmul: dict[str, float] = {}


def matmul_rate() -> float:
    """FLOP/s of one large square matmul in the model's dtype on this device (best of 5)."""
    if "rate" not in _matmul:
        n, dtype = (8192, torch.bfloat16) if CUDA else (1024, torch.float32)
        a = torch.randn(n, n, device=DEVICE, dtype=dtype)
        b = torch.randn(n, n, device=DEVICE, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(5):
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - t0)
        _matmul["rate"] = 2 * n ** 3 / best
    return _matmul["rate"]


def hf_tower(model, dtype: torch.dtype):
    """transformers' CLIPVisionModel (SDPA) holding the model's vision weights in ``dtype``, cut at
    the selected layer, so that its last hidden state is the tower's output (with the CLS row)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    v = model.config.vision
    cfg = CLIPVisionConfig(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                           num_hidden_layers=v.layers_to_run, num_attention_heads=v.num_heads,
                           image_size=v.image_size, patch_size=v.patch_size, layer_norm_eps=v.layer_norm_eps,
                           hidden_act="quick_gelu", attn_implementation="sdpa")
    with torch.device("meta"):
        hf = CLIPVisionModel(cfg)
    ours = {name: value.to(dtype) for name, value in model.model.vision.state_dict().items()}
    weights = {}
    for name, value in ours.items():
        if ".qkv_proj." in name:
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3)):
                weights[name.replace("qkv_proj", part)] = chunk
        else:
            weights[name] = value
    tower = getattr(hf, "vision_model", hf)  # transformers 4 wraps the tower, 5 does not
    missing, unexpected = tower.load_state_dict(weights, strict=False, assign=True)
    assert not unexpected and all("post_layernorm" in m or "position_ids" in m for m in missing), (missing, unexpected)
    tower.post_layernorm.to_empty(device=DEVICE)
    tower.embeddings.position_ids = torch.arange(v.num_patches + 1, device=DEVICE).unsqueeze(0)
    return hf.to(DEVICE, dtype).eval()


def make_run(model, path: str, frames: torch.Tensor, dtype: torch.dtype | None = None):
    """A function encoding every frame a vision batch at a time (tokens of the last batch
    returned); ``dtype`` (transformers only): run its CLIP and the projector in that dtype."""
    runner, cfg = model.runner, model.config
    batch, n = runner.vision_batch, frames.shape[0]
    if path == "transformers":
        dtype = dtype or model.dtype
        hf = hf_tower(model, dtype)
        projector = model.model.projector if dtype == model.dtype else copy.deepcopy(model.model.projector).to(dtype)

        def encode(i, j):
            pixels = clip_preprocess(frames[i:j], cfg.vision, dtype)
            feats = hf(pixel_values=pixels).last_hidden_state[:, 1:]
            return projector(feats, cfg.pool_stride).flatten(0, 1)
    else:
        source = frames_source(frames, cfg)

        def encode(i, j):
            return runner.encode_pixels(source.pixels(i, j, runner.target))
    context = ops.reference_only if path == "reference" else contextlib.nullcontext

    @torch.inference_mode()
    def run():
        with context():
            for i in range(0, n, batch):
                tokens = encode(i, min(n, i + batch))
        sync()
        return tokens
    return run


@pytest.mark.parametrize("path", ["engine", "reference", "transformers"])
@pytest.mark.parametrize("frames", FRAMES, ids=[f"{f}f" for f in FRAMES])
def test_vision(benchmark, bench_model, frames, path):
    model = bench_model
    g = torch.Generator(device=DEVICE).manual_seed(frames)
    video = torch.randint(0, 256, (frames, 336, 336, 3), dtype=torch.uint8, device=DEVICE, generator=g)
    run = make_run(model, path, video)
    first = video[:model.runner.vision_batch]
    tokens = make_run(model, path, first)()  # warm-up: kernels, allocator; the tokens checked below
    errors = {}
    if path == "transformers":
        want = make_run(model, "transformers", first, torch.float32)().float()

        def error(t: torch.Tensor) -> float:
            return float((t.float() - want).norm() / want.norm())
        errors = {"engine_error": error(make_run(model, "engine", first)()), "transformers_error": error(tokens)}
        if model.dtype == torch.float32:
            assert errors["engine_error"] < 1e-4, errors
        else:
            assert errors["engine_error"] <= 2 * errors["transformers_error"], errors
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if CUDA else 0
    benchmark.pedantic(run, rounds=3 if frames <= 256 else 1, iterations=1)
    seconds = benchmark.stats.stats.min
    flop = vision_flops(model.config, frames)
    rate = matmul_rate()
    record = {**environment(), **runner_facts(model), "frames": frames, "path": path, "dtype": str(model.dtype).removeprefix("torch."),
              "vision_batch": model.runner.vision_batch, "seconds": seconds, "frames_s": frames / seconds,
              "tflops": flop / seconds / 1e12, "flop_count": "flops.vision_flops", "matmul_tflops": rate / 1e12,
              "matmul_fraction": flop / seconds / rate,
              "peak_gib": (torch.cuda.max_memory_allocated() - base) / GIB if CUDA else None, **errors}
    benchmark.extra_info.update(record)
    print(f"\nvision {path} {frames} frames: {seconds:.3f} s, {record['frames_s']:.0f} frames/s, "
          f"{record['tflops']:.3g} TFLOP/s ({record['matmul_fraction']:.0%} of the measured matmul rate "
          f"{rate / 1e12:.3g} TFLOP/s), peak {record['peak_gib']} GiB above the weights and frames")
