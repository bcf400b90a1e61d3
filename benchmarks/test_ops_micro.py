"""Every ``torch.ops.vxl_fast`` op against its reference twin, at the real model's shapes."""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from PIL import Image

from conftest import DEVICE, environment, peaks, sync
from vxl_fast import _ext, ops
from vxl_fast.video.preprocess import clip_preprocess_image

pytestmark = pytest.mark.skipif(not _ext.available, reason=f"vxl_fast._C not loaded: {_ext.error}")
HIDDEN, KV_HEADS, HEAD_DIM, CAPACITY, INTERMEDIATE = 3584, 4, 128, 20480, 18944
WINDOW_ROWS = 1440 + 90  # a window of 10 frames at ratio 16
CLIP_HIDDEN, CLIP_INTERMEDIATE, CLIP_ROWS = 1024, 4096, 8 * 577  # CLIP ViT-L/14-336, 8 frames
DTYPE = torch.bfloat16


def _time(benchmark, fn, bytes_moved: int, path: str, op: str, ratio: int, rounds: int = 20,
          iterations: int = 5):
    def run():
        fn()
        sync()
    benchmark.pedantic(run, rounds=rounds, iterations=iterations, warmup_rounds=2)
    seconds = benchmark.stats.stats.median
    _, bandwidth = peaks()
    gbs = bytes_moved / seconds / 1e9
    benchmark.extra_info.update({**environment(), "op": op, "ratio": ratio, "path": path, "gb_s": gbs,
                                 "bandwidth_fraction": gbs * 1e9 / bandwidth if bandwidth else None,
                                 "us": seconds * 1e6})


@pytest.mark.parametrize("path", ["kernel", "reference"])
@pytest.mark.parametrize("ratio", [16, 8, 2])
def test_interleave_vst(benchmark, path, ratio):
    raw = torch.randn(1440, HIDDEN, device=DEVICE).to(DTYPE)
    vst = torch.randn(HIDDEN, device=DEVICE).to(DTYPE)
    fn = torch.ops.vxl_fast.interleave_vst if path == "kernel" else ops.interleave_vst_ref
    rows = 1440 + 1440 // ratio
    _time(benchmark, lambda: fn(raw, vst, ratio, 0), (1440 + rows) * HIDDEN * 2, path, "interleave_vst", ratio)


@pytest.mark.parametrize("path", ["kernel", "reference"])
@pytest.mark.parametrize("ratio", [16, 8, 2])
def test_kv_compact(benchmark, path, ratio):
    nb = 1440 // ratio
    cache_k = torch.zeros(KV_HEADS, CAPACITY, HEAD_DIM, device=DEVICE, dtype=DTYPE)
    cache_v = torch.zeros_like(cache_k)
    vst_k = torch.randn(KV_HEADS, nb, HEAD_DIM, device=DEVICE).to(DTYPE)
    vst_v = torch.randn_like(vst_k)
    angles = torch.outer(torch.arange(CAPACITY, device=DEVICE).float(),
                         1e6 ** (-torch.arange(0, HEAD_DIM, 2, device=DEVICE).float() / HEAD_DIM))
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    fn = torch.ops.vxl_fast.kv_compact if path == "kernel" else ops.kv_compact_ref
    dst = CAPACITY - nb - 1
    # read the staged VSTs' K and V and nb rows of cos/sin; write K and V to the cache
    moved = KV_HEADS * HEAD_DIM * 2 * 4 * nb + 2 * nb * HEAD_DIM * 4
    _time(benchmark, lambda: fn(cache_k, cache_v, vst_k, vst_v, cos, sin, dst), moved, path, "kv_compact", ratio)


def _median_us(fn, runs: int = 7) -> float:
    """Wall-clock median of fn() in µs (two warm-up calls), synchronised."""
    fn(), fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def _with_speedup(benchmark, reference) -> None:
    """The reference timed in the same process, and the kernel's speed-up over it."""
    ref_us = _median_us(reference)
    benchmark.extra_info.update({"reference_us": ref_us, "speedup_vs_reference": ref_us / benchmark.extra_info["us"]})


@pytest.mark.parametrize("path", ["kernel", "reference"])
@pytest.mark.parametrize("rows", [1, WINDOW_ROWS])
def test_fused_add_rms_norm(benchmark, path, rows):
    """Residual add + RMSNorm of a decode row or a window's rows at the model's width, bf16.
    Not an interleave ratio: ratio 0."""
    x = torch.randn(rows, HIDDEN, device=DEVICE).to(DTYPE)
    residual = torch.randn(rows, HIDDEN, device=DEVICE).to(DTYPE)
    weight = torch.randn(HIDDEN, device=DEVICE).to(DTYPE)
    kernel = lambda: torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, 1e-6)  # noqa: E731
    reference = lambda: ops.fused_add_rms_norm_ref(x, residual, weight, 1e-6)  # noqa: E731
    # read x, residual; write normed and h (the weight row stays in cache)
    _time(benchmark, kernel if path == "kernel" else reference, 4 * rows * HIDDEN * DTYPE.itemsize, path,
          f"fused_add_rms_norm {rows}x{HIDDEN}", 0, rounds=10 if rows > 1 else 20)
    if path == "kernel":
        _with_speedup(benchmark, reference)


@pytest.mark.parametrize("path", ["kernel", "reference"])
@pytest.mark.parametrize("rows", [1, WINDOW_ROWS])
def test_silu_and_mul(benchmark, path, rows):
    """silu(gate) * up of the MLP's gate_up rows at the model's intermediate size, bf16. Not an
    interleave ratio: ratio 0."""
    x = torch.randn(rows, 2 * INTERMEDIATE, device=DEVICE).to(DTYPE)
    kernel = lambda: torch.ops.vxl_fast.silu_and_mul(x)  # noqa: E731
    reference = lambda: ops.silu_and_mul_ref(x)  # noqa: E731
    # read gate and up, write the product
    big = rows > 1 and DEVICE.type == "cpu"
    _time(benchmark, kernel if path == "kernel" else reference, 3 * rows * INTERMEDIATE * DTYPE.itemsize, path,
          f"silu_and_mul {rows}x{INTERMEDIATE}", 0, rounds=4 if big else 20, iterations=2 if big else 5)
    if path == "kernel":
        _with_speedup(benchmark, reference)


@pytest.mark.parametrize("path", ["kernel", "reference"])
def test_add_layer_norm(benchmark, path):
    """The vision tower's residual add + LayerNorm over 8 frames' tokens at CLIP ViT-L's width,
    bf16. Not an interleave ratio: ratio 0."""
    x = torch.randn(CLIP_ROWS, CLIP_HIDDEN, device=DEVICE).to(DTYPE)
    residual = torch.randn(CLIP_ROWS, CLIP_HIDDEN, device=DEVICE).to(DTYPE)
    weight = torch.randn(CLIP_HIDDEN, device=DEVICE).to(DTYPE)
    bias = torch.randn(CLIP_HIDDEN, device=DEVICE).to(DTYPE)
    kernel = lambda: torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, 1e-5)  # noqa: E731
    reference = lambda: ops.add_layer_norm_ref(x, residual, weight, bias, 1e-5)  # noqa: E731
    # read x, residual; write normed and h (weight and bias stay in cache)
    big = DEVICE.type == "cpu"
    _time(benchmark, kernel if path == "kernel" else reference, 4 * CLIP_ROWS * CLIP_HIDDEN * DTYPE.itemsize, path,
          f"add_layer_norm {CLIP_ROWS}x{CLIP_HIDDEN}", 0, rounds=4 if big else 20, iterations=2 if big else 5)
    if path == "kernel":
        _with_speedup(benchmark, reference)


@pytest.mark.parametrize("path", ["kernel", "reference"])
def test_clip_embed_layer_norm(benchmark, path):
    """The vision tower's class token + position embedding + pre-LayerNorm over 8 frames' patch
    embeddings at CLIP ViT-L's width, bf16. Not an interleave ratio: ratio 0."""
    frames, tokens = 8, CLIP_ROWS // 8
    patches = torch.randn(frames, tokens - 1, CLIP_HIDDEN, device=DEVICE).to(DTYPE)
    cls, weight, bias = (torch.randn(CLIP_HIDDEN, device=DEVICE).to(DTYPE) for _ in range(3))
    pos = torch.randn(tokens, CLIP_HIDDEN, device=DEVICE).to(DTYPE)
    kernel = lambda: torch.ops.vxl_fast.clip_embed_layer_norm(patches, cls, pos, weight, bias, 1e-5)  # noqa: E731
    reference = lambda: ops.clip_embed_layer_norm_ref(patches, cls, pos, weight, bias, 1e-5)  # noqa: E731
    # read the patch embeddings, write the normed rows (pos, cls, weight and bias stay in cache)
    big = DEVICE.type == "cpu"
    _time(benchmark, kernel if path == "kernel" else reference, 2 * CLIP_ROWS * CLIP_HIDDEN * DTYPE.itemsize, path,
          f"clip_embed_layer_norm {frames}x{tokens}x{CLIP_HIDDEN}", 0, rounds=4 if big else 20,
          iterations=2 if big else 5)
    if path == "kernel":
        _with_speedup(benchmark, reference)


@pytest.mark.parametrize("path", ["kernel", "reference"])
def test_bias_quick_gelu(benchmark, path):
    """The vision MLP's fc1 bias + quick GELU over 8 frames' tokens at CLIP ViT-L's intermediate
    size, bf16. Not an interleave ratio: ratio 0."""
    x = torch.randn(CLIP_ROWS, CLIP_INTERMEDIATE, device=DEVICE).to(DTYPE)
    bias = torch.randn(CLIP_INTERMEDIATE, device=DEVICE).to(DTYPE)
    kernel = lambda: torch.ops.vxl_fast.bias_quick_gelu(x, bias)  # noqa: E731
    reference = lambda: ops.bias_quick_gelu_ref(x, bias)  # noqa: E731
    # read fc1's product, write the activation (the bias row stays in cache)
    big = DEVICE.type == "cpu"
    _time(benchmark, kernel if path == "kernel" else reference, 2 * CLIP_ROWS * CLIP_INTERMEDIATE * DTYPE.itemsize,
          path, f"bias_quick_gelu {CLIP_ROWS}x{CLIP_INTERMEDIATE}", 0, rounds=4 if big else 20,
          iterations=2 if big else 5)
    if path == "kernel":
        _with_speedup(benchmark, reference)


@pytest.mark.parametrize("path", ["kernel", "reference"])
@pytest.mark.parametrize("rows", [1, 64])
def test_rope_kv_write(benchmark, path, rows):
    """A text step's RoPE of q (28 heads) and k (4 KV heads) and the K/V cache write, one layer,
    bf16: a decode token or a question. Not an interleave ratio: ratio 0."""
    heads = 28
    qkv = torch.randn(rows, (heads + 2 * KV_HEADS) * HEAD_DIM, device=DEVICE).to(DTYPE)
    q, k, v = qkv.split([heads * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], dim=-1)
    q, k, v = (t.view(rows, -1, HEAD_DIM) for t in (q, k, v))
    cache_k = torch.zeros(KV_HEADS, CAPACITY, HEAD_DIM, device=DEVICE, dtype=DTYPE)
    cache_v = torch.zeros_like(cache_k)
    angles = torch.outer(torch.arange(CAPACITY, device=DEVICE).float(),
                         1e6 ** (-torch.arange(0, HEAD_DIM, 2, device=DEVICE).float() / HEAD_DIM))
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    start = CAPACITY - rows - 1
    args = (q, k, v, cos, sin, cache_k, cache_v, start)
    kernel = lambda: torch.ops.vxl_fast.rope_kv_write(*args)  # noqa: E731
    reference = lambda: ops.rope_kv_write_ref(*args)  # noqa: E731
    # read q, k, v and the rows' cos/sin; write q_out and the cache rows
    moved = rows * HEAD_DIM * (2 * (heads + 2 * KV_HEADS) * DTYPE.itemsize + 2 * 4)
    _time(benchmark, kernel if path == "kernel" else reference, moved, path, f"rope_kv_write {rows} rows", 0)
    if path == "kernel":
        _with_speedup(benchmark, reference)


@pytest.mark.parametrize("path", ["kernel", "reference", "pillow"])
def test_clip_preprocess(benchmark, path):
    """16 frames of 1280 x 720 -> [16, 3, 336, 336] (resize to 597 x 336, centre crop, normalise), in
    the vision tower's dtype. "pillow" is the per-frame PIL path (CPU only). Not an interleave
    ratio: ratio 0."""
    if path == "pillow" and DEVICE.type != "cpu":
        pytest.skip("the Pillow path runs on the CPU")
    frames_n, size = 16, 336
    frames = torch.randint(0, 256, (frames_n, 720, 1280, 3), dtype=torch.uint8, device=DEVICE)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    if path == "pillow":
        cfg = _ClipSettings(size, size, mean, std)
        fn = lambda: torch.stack([clip_preprocess_image(Image.fromarray(f.numpy()), cfg)  # noqa: E731
                                  for f in frames]).to(DTYPE)
    elif path == "kernel":
        fn = lambda: torch.ops.vxl_fast.clip_preprocess(frames, size, size, mean, std, DTYPE)  # noqa: E731
    else:
        fn = lambda: ops.clip_preprocess_ref(frames, size, size, mean, std, DTYPE)  # noqa: E731
    # read the frames, write the pixel values
    moved = frames.numel() + frames_n * 3 * size * size * DTYPE.itemsize
    _time(benchmark, fn, moved, path, "clip_preprocess", 0, rounds=10, iterations=1)
    benchmark.extra_info["frames_s"] = frames_n / benchmark.stats.stats.median


@pytest.mark.parametrize("path", ["kernel", "reference", "pyav"])
def test_yuv420_to_rgb(benchmark, path):
    """16 NV12 frames of 1280 x 720 -> RGB24 [16, 720, 1280, 3] (BT.709, limited range), as NVDEC
    frames are converted. "pyav" is swscale through PyAV's to_ndarray("rgb24"), frame by frame (CPU
    only). Not an interleave ratio: ratio 0."""
    if path == "pyav" and DEVICE.type != "cpu":
        pytest.skip("PyAV converts on the CPU")
    frames_n, h, w = 16, 720, 1280
    y = torch.randint(0, 256, (frames_n, h, w), dtype=torch.uint8, device=DEVICE)
    uv = torch.randint(0, 256, (frames_n, h // 2, w), dtype=torch.uint8, device=DEVICE)
    if path == "pyav":
        av = pytest.importorskip("av", reason="needs PyAV")
        pyav_frames = []
        for i in range(frames_n):
            frame = av.VideoFrame(w, h, "yuv420p")
            planes = (y[i], uv[i, :, 0::2], uv[i, :, 1::2])
            for plane, values in zip(frame.planes, planes):
                view = torch.frombuffer(plane, dtype=torch.uint8).view(-1, plane.line_size)
                view[:values.shape[0], :values.shape[1]] = values
            frame.colorspace = 1
            pyav_frames.append(frame)
        fn = lambda: [f.to_ndarray(format="rgb24") for f in pyav_frames]  # noqa: E731
    elif path == "kernel":
        fn = lambda: torch.ops.vxl_fast.yuv420_to_rgb(y, uv[..., 0::2], uv[..., 1::2], 1, False)  # noqa: E731
    else:
        fn = lambda: ops.yuv420_to_rgb_ref(y, uv[..., 0::2], uv[..., 1::2], "bt709", False)  # noqa: E731
    moved = y.numel() + uv.numel() + frames_n * h * w * 3  # read the planes, write RGB
    _time(benchmark, fn, moved, path, "yuv420_to_rgb", 0, rounds=5, iterations=1)
    benchmark.extra_info["frames_s"] = frames_n / benchmark.stats.stats.median


class _ClipSettings:
    """The VisionConfig fields that clip_preprocess_image reads."""

    def __init__(self, size: int, crop: int, mean: list[float], std: list[float]):
        self.size, self.crop_size, self.image_mean, self.image_std = size, crop, mean, std
        self.resample = Image.Resampling.BICUBIC


@pytest.mark.parametrize("variant", ["gather", "overwrite", "grouped"])
def test_vst_projection(benchmark, variant):
    """A visual window's q/k/v at ratio 16 (1440 raw + 90 VST rows): two GEMMs over gathered rows,
    the base projection over every row with the VST rows' own written over it, or one grouped GEMM
    over the weights side by side (the runner picks the fastest on a GPU; "grouped" only where
    ``grouped_available``). The real model's widths on a GPU; a quarter of them on the CPU."""
    from torch import nn

    from vxl_fast.layers.step import project_window, share_weights

    hidden, width = (HIDDEN, 4608) if DEVICE.type == "cuda" else (HIDDEN // 4, 4608 // 4)
    base, beacon = (nn.Linear(hidden, width).to(DEVICE, DTYPE) for _ in range(2))
    if variant == "grouped":
        share_weights(base, beacon)
    nb, vst_index = ops.vst_slots(1440, 16, 0)
    h = torch.randn(1440 + nb, hidden, device=DEVICE).to(DTYPE)
    vst_index, raw_index = vst_index.to(DEVICE), ops.raw_slots(1440, 16, 0).to(DEVICE)
    with torch.inference_mode():
        _time(benchmark, lambda: project_window(base, beacon, h, vst_index, raw_index, variant), 2 * h.numel() + 2 * width * hidden * 2,
              variant, "vst_projection", 16, rounds=5, iterations=2)
    flops = 2 * (1440 + nb + (nb if variant == "overwrite" else 0)) * hidden * width
    benchmark.extra_info["tflop_s"] = flops / benchmark.stats.stats.median / 1e12
