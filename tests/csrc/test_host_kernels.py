"""The CUDA kernel bodies, run on the CPU: csrc/include/vxl_fast/*.cuh compiled by g++ through the
host shim (tests/csrc/shim) and compared with the CPU impl (torch.ops.vxl_fast) and the reference
twins on awkward sizes, in index order and in shuffled block/thread orders, with and without
__CUDA_ARCH__ (the device-only branches). Copies must be bit-exact; kv_compact's RoPE arithmetic
must lie within a bound derived from fp32 and the storage type's rounding; fused_add_rms_norm and
add_layer_norm and clip_embed_layer_norm (a warp per row, shuffles), silu_and_mul and bias_quick_gelu must equal their CPU
impls bit for bit.
"""

from __future__ import annotations

import pytest
import torch

from conftest import needs_ext
from vxl_fast.ops import (YUV_MATRICES, add_layer_norm_ref, bias_quick_gelu_ref, clip_embed_layer_norm_ref,
                          clip_preprocess_ref, fused_add_rms_norm_ref, interleave_vst_ref, kv_compact_ref, rope_kv_write_ref,
                          silu_and_mul_ref, vst_slots, yuv420_to_rgb_ref)
from host_kernels import CUDA_ERROR_INVALID_CONFIGURATION, CUDA_ERROR_LAUNCH_FAILURE, host_kernels

pytestmark = needs_ext

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
RATIOS = (2, 4, 8, 12, 16, 32, 64)
# (build: __CUDA_ARCH__ or None, launch-order seed: 0 = index order)
VARIANTS = [(None, 0), (None, 12345), (900, 0), (900, 987)]
VARIANT_IDS = ["host-ordered", "host-shuffled", "arch900-ordered", "arch900-shuffled"]
UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


@pytest.fixture(params=VARIANTS, ids=VARIANT_IDS)
def kernels(request):
    arch, seed = request.param
    k = host_kernels(cuda_arch=arch)
    assert k.cuda_arch == (arch or 0)
    k.set_order(seed)
    yield k
    k.set_order(0)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int32 if t.element_size() == 4 else torch.int16)


def _assert_same_bits(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {list(got.shape)} != {list(want.shape)}"
    diff = (_bits(got.contiguous()) != _bits(want.contiguous())).nonzero()
    assert diff.numel() == 0, f"{what}: {diff.shape[0]} elements differ, first at {diff[0].tolist()}"


# ---- the shim's 16-bit conversions ----

def test_half_to_float_matches_torch_for_every_bit_pattern():
    k = host_kernels()
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    want = bits.view(torch.float16).float()
    got = k.convert("half2float", bits, torch.float32)
    same = (got == want) | (got.isnan() & want.isnan())
    assert bool(same.all()), f"first difference at pattern {int(bits[(~same).nonzero()[0]])}"


@pytest.mark.parametrize("dtype,name", [(torch.float16, "float2half"), (torch.bfloat16, "float2bfloat16")])
def test_float_to_16bit_rounds_to_nearest_even_like_torch(dtype, name):
    k = host_kernels()
    g = torch.Generator().manual_seed(0)
    # random bit patterns (every exponent, NaNs and infinities included), exact ties between two
    # representable values, the subnormal range and overflow of the 16-bit type
    random_bits = torch.randint(-(2**31), 2**31, (1 << 16,), generator=g, dtype=torch.int64).to(torch.int32)
    lows = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype).float()
    ties = (lows[:-1].double() + lows[1:].double()).div(2).float()
    edge = torch.tensor([0.0, -0.0, 65504.0, 65520.0, 65519.99, 6e-8, 3e-8, 2.9e-8, 1e-40, -1e-45,
                         3.4e38, float("inf"), float("-inf"), float("nan")])
    x = torch.cat([random_bits.view(torch.float32), ties[ties.isfinite()], edge])
    got = k.convert(name, x, torch.int16)
    want = x.to(dtype)
    nan = want.isnan()
    assert bool((got.view(dtype).isnan() == nan).all())
    diff = (got != want.view(torch.int16)) & ~nan
    assert not bool(diff.any()), f"{int(diff.sum())} values differ, e.g. {x[diff][:4].tolist()}"


# ---- interleave_vst: a copy, bit-exact ----

def _interleave_cases(ratio: int):
    """(n_raw, D, carry, row step): 1 row, primes, a partial group, strided rows."""
    for n_raw in (1, 2, ratio - 1, ratio, ratio + 1, 3 * ratio + 5, 97):
        for d, step in ((1, 1), (3, 1), (8, 1), (17, 2), (64, 3)):
            for carry in sorted({0, 1, ratio // 2, ratio - 1}):
                if n_raw >= 1:
                    yield n_raw, d, carry, step


@pytest.mark.parametrize("ratio", RATIOS)
def test_interleave_vst_matches_cpu_impl_and_reference(kernels, ratio):
    g = torch.Generator().manual_seed(ratio)
    for n_raw, d, carry, step in _interleave_cases(ratio):
        for dtype in DTYPES:
            base = torch.randn(n_raw * step, d + step - 1, generator=g).to(dtype)
            raw = base[::step, :d]  # strided rows (row stride > D when step > 1)
            vst = torch.randn(d, generator=g).to(dtype)
            what = f"n_raw={n_raw} D={d} carry={carry} step={step} {dtype}"
            got = kernels.interleave_vst(raw, vst, ratio, carry)
            _assert_same_bits(got, torch.ops.vxl_fast.interleave_vst(raw, vst, ratio, carry), what)
            _assert_same_bits(got, interleave_vst_ref(raw, vst, ratio, carry), what)


@pytest.mark.parametrize("offset,row_bytes", [(1, 5), (2, 6), (4, 12), (8, 24), (0, 48), (16, 32)])
def test_interleave_vst_every_copy_width(kernels, offset, row_bytes):
    """Byte rows at addresses and sizes that select each copy unit (1, 2, 4, 8, 16 bytes)."""
    n_raw, ratio, carry = 23, 4, 3
    g = torch.Generator().manual_seed(offset)
    stride = row_bytes + offset
    buf = torch.randint(0, 256, (offset + n_raw * stride,), generator=g, dtype=torch.uint8)
    raw = buf[offset:].as_strided((n_raw, row_bytes), (stride, 1))
    vst_buf = torch.randint(0, 256, (offset + row_bytes,), generator=g, dtype=torch.uint8)
    vst = vst_buf[offset:]
    nb, slots = vst_slots(n_raw, ratio, carry)
    want = torch.empty(n_raw + nb, row_bytes, dtype=torch.uint8)
    is_vst = torch.zeros(n_raw + nb, dtype=torch.bool)
    is_vst[slots] = True
    want[is_vst] = vst
    want[~is_vst] = raw
    out = torch.zeros_like(want)
    assert kernels.interleave_vst_bytes(raw, vst, out, ratio, carry) == 0
    assert torch.equal(out, want)


def test_harness_catches_a_planted_wrong_index():
    """The same comparison fails for a build whose kernel ignores the carry in its row index."""
    good, bad = host_kernels(), host_kernels(plant_bug=True)
    g = torch.Generator().manual_seed(1)
    n_raw, d, ratio = 37, 16, 8
    base = torch.randn(n_raw + 2, d, generator=g)  # NOTE: spare rows: the wrong index reads past n_raw
    raw, vst = base[:n_raw], torch.randn(d, generator=g)
    want = interleave_vst_ref(raw, vst, ratio, 0)
    assert torch.equal(bad.interleave_vst(raw, vst, ratio, 0), want)  # carry 0 hides the bug
    for carry in (1, 5, 7):
        want = interleave_vst_ref(raw, vst, ratio, carry)
        assert torch.equal(good.interleave_vst(raw, vst, ratio, carry), want)
        with pytest.raises(AssertionError, match="elements differ"):
            _assert_same_bits(bad.interleave_vst(raw, vst, ratio, carry), want, f"carry={carry}")


# ---- kv_compact: a copy (values) and RoPE arithmetic (keys) ----

def _kv_inputs(g, dtype, heads, d, nb, dst, strided):
    cap = dst + nb + 3
    pad = 5 if strided else 0  # rows and heads of a bigger buffer
    def buf(n):
        return torch.randn(heads, n + pad, d + 2 * pad, generator=g).to(dtype)[:, :n, :d]
    positions = torch.arange(cap + 2, dtype=torch.float32)[:, None]
    freqs = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.cat([positions * freqs, positions * freqs], 1)
    wide = torch.zeros(cap + 2, d + pad)
    cos, sin = wide.clone(), wide.clone()
    cos[:, :d], sin[:, :d] = angles.cos(), angles.sin()
    return [buf(cap), buf(cap), buf(nb), buf(nb), cos[:, :d], sin[:, :d]]


def _rope_bound(vst_k, cos, sin, dst, out_dtype):
    """|kernel - reference| allowed per key element: the two fp32 products and their sum each round
    once (<= 3 u32 of |lo cos| + |hi sin|, times 2 for the two results compared), then the cast to
    the cache dtype rounds each side once (<= 1 ulp of it: 2 u_T |y|)."""
    x = vst_k.float()
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
    c, s = cos[dst:dst + x.shape[1]], sin[dst:dst + x.shape[1]]
    magnitude = (x * c).abs() + (rotated * s).abs()
    y = x * c + rotated * s
    return 6 * UNIT_ROUNDOFF[torch.float32] * magnitude + 2 * UNIT_ROUNDOFF[out_dtype] * y.abs()


@pytest.mark.parametrize("dtype", DTYPES)
def test_kv_compact_matches_cpu_impl_and_reference(kernels, dtype):
    g = torch.Generator().manual_seed(7)
    for heads, d, nb, dst, strided in ((1, 2, 1, 0, False), (2, 6, 3, 5, True), (3, 64, 13, 0, True),
                                       (1, 128, 41, 11, False), (2, 130, 17, 2, True)):
        inputs = _kv_inputs(g, dtype, heads, d, nb, dst, strided)
        bound = _rope_bound(inputs[2], inputs[4], inputs[5], dst, dtype)
        what = f"heads={heads} d={d} nb={nb} dst={dst} strided={strided} {dtype}"
        runs = {}
        for name, fn in (("host", kernels.kv_compact), ("cpu", torch.ops.vxl_fast.kv_compact),
                         ("ref", kv_compact_ref)):
            args = [t.clone() for t in inputs]
            fn(*args, dst)
            runs[name] = args
        host = runs["host"]
        for i in (2, 3):
            _assert_same_bits(host[i], inputs[i], f"source changed: {what}")
        for name in ("cpu", "ref"):
            other = runs[name]
            _assert_same_bits(host[1], other[1], f"cache_v vs {name}: {what}")  # values: copies
            err = (host[0][:, dst:dst + nb].float() - other[0][:, dst:dst + nb].float()).abs()
            assert bool((err <= bound).all()), f"cache_k vs {name}: max err {err.max()}: {what}"
            untouched = torch.ones(host[0].shape[1], dtype=torch.bool)
            untouched[dst:dst + nb] = False
            _assert_same_bits(host[0][:, untouched], other[0][:, untouched], f"cache_k rest: {what}")


def test_kv_compact_launch_rejects_a_grid_a_gpu_would_reject():
    """65536 heads exceed gridDim.y: the launch fails (the CUDA impl checks this before it)."""
    k = host_kernels()
    t = torch.zeros(1, 1, 2)
    table = torch.zeros(1, 2)
    cache = t.expand(65536, 1, 2)
    rc = k.kv_compact_launch(cache, cache, t.expand(65536, 1, 2), t.expand(65536, 1, 2), table, table, 0)
    assert rc == CUDA_ERROR_INVALID_CONFIGURATION


# ---- clip_preprocess: integer resampling and separately rounded normalisation, bit-exact ----

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
# (T, H, W, size, crop, pixel stride): one frame, 1-pixel frames, upscales, no horizontal pass,
# horizontal first, vertical first (Pillow 13), prime sizes, RGBA-strided pixels
CLIP_CASES = [(1, 1, 1, 3, 2, 3), (2, 7, 5, 4, 3, 3), (1, 13, 5, 5, 3, 3), (3, 17, 40, 9, 7, 4),
              (1, 40, 17, 9, 7, 3), (2, 3, 3, 11, 11, 4), (1, 101, 53, 31, 29, 3),
              (1, 60, 97, 60, 37, 4), (1, 336, 597, 336, 336, 3)]


@pytest.mark.parametrize("case", CLIP_CASES, ids=lambda c: "x".join(map(str, c)))
def test_clip_preprocess_matches_cpu_impl_and_reference(kernels, case):
    t, h, w, size, crop, px = case
    g = torch.Generator().manual_seed(h * w)
    frames = torch.randint(0, 256, (t, h + 1, w, px), generator=g, dtype=torch.uint8)[:, 1:, :, :3]
    for dtype in DTYPES:
        padded = torch.full((t, 3, crop, crop + 3), float("nan"), dtype=dtype)
        out = padded[..., :crop]  # strided output rows, as a slice of a bigger buffer
        kernels.clip_preprocess_out(frames, size, crop, MEAN, STD, out)
        what = f"{case} {dtype}"
        cpu = torch.ops.vxl_fast.clip_preprocess(frames, size, crop, list(MEAN), list(STD), dtype)
        _assert_same_bits(out, cpu, f"vs CPU impl: {what}")
        _assert_same_bits(out, clip_preprocess_ref(frames, size, crop, MEAN, STD, dtype), f"vs ref: {what}")
        assert bool(padded[..., crop:].isnan().all()), f"wrote outside the output: {what}"


# (T, H, W, size, crop, pixel stride, patch): horizontal pass first, vertical first, no horizontal
# pass, CLIP ViT-L/14's 336 crop, 1-pixel patches, one patch per frame
CLIP_PATCH_CASES = [(2, 37, 53, 24, 20, 3, 5), (1, 100, 60, 42, 28, 4, 7), (1, 30, 45, 30, 28, 3, 7),
                    (1, 336, 597, 336, 336, 3, 14), (2, 7, 5, 4, 3, 3, 1), (1, 13, 5, 5, 3, 4, 3)]


@pytest.mark.parametrize("case", CLIP_PATCH_CASES, ids=lambda c: "x".join(map(str, c)))
def test_clip_preprocess_patch_rows_match_cpu_impl_and_reference(kernels, case):
    t, h, w, size, crop, px, patch = case
    g = torch.Generator().manual_seed(h * w + patch)
    frames = torch.randint(0, 256, (t, h + 1, w, px), generator=g, dtype=torch.uint8)[:, 1:, :, :3]
    rows, width = (crop // patch) ** 2, 3 * patch * patch
    for dtype in DTYPES:
        padded = torch.full((t, rows, width + 5), float("nan"), dtype=dtype)
        out = padded[..., :width]  # strided patch rows
        kernels.clip_preprocess_out(frames, size, crop, MEAN, STD, out, patch)
        what = f"{case} {dtype}"
        cpu = torch.ops.vxl_fast.clip_preprocess(frames, size, crop, list(MEAN), list(STD), dtype, patch)
        _assert_same_bits(out, cpu, f"vs CPU impl: {what}")
        _assert_same_bits(out, clip_preprocess_ref(frames, size, crop, MEAN, STD, dtype, patch=patch),
                          f"vs ref: {what}")
        assert bool(padded[..., width:].isnan().all()), f"wrote outside the output: {what}"


# ---- yuv420_to_rgb: integer arithmetic, bit-exact ----

# (T, H, W, NV12-interleaved chroma): 1 pixel, odd sizes (a partial chroma sample), wider than a
# block (256 threads), CIF
YUV_CASES = [(1, 1, 1, False), (2, 7, 7, True), (1, 17, 33, False), (3, 4, 300, True), (1, 288, 352, True)]


@pytest.mark.parametrize("case", YUV_CASES, ids=lambda c: "x".join(map(str, c)))
def test_yuv420_to_rgb_matches_cpu_impl_and_reference(kernels, case):
    t, h, w, nv12 = case
    g = torch.Generator().manual_seed(h * w)
    ch, cw = (h + 1) // 2, (w + 1) // 2
    y = torch.randint(0, 256, (t, h, w + 5), generator=g, dtype=torch.uint8)[..., 2:w + 2]  # strided rows
    if nv12:
        uv = torch.randint(0, 256, (t, ch, 2 * cw), generator=g, dtype=torch.uint8)
        u, v = uv[..., 0::2], uv[..., 1::2]
    else:
        u, v = (torch.randint(0, 256, (t, ch, cw), generator=g, dtype=torch.uint8) for _ in range(2))
    for index, matrix in enumerate(YUV_MATRICES):
        for full_range in (False, True):
            what = f"{case} {matrix} full_range={full_range}"
            got = kernels.yuv420_to_rgb(y, u, v, index, full_range)
            _assert_same_bytes(got, torch.ops.vxl_fast.yuv420_to_rgb(y, u, v, index, full_range), f"vs CPU impl: {what}")
            _assert_same_bytes(got, yuv420_to_rgb_ref(y, u, v, matrix, full_range), f"vs ref: {what}")


def _assert_same_bytes(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {list(got.shape)} != {list(want.shape)}"
    diff = (got != want).nonzero()
    assert diff.numel() == 0, f"{what}: {diff.shape[0]} bytes differ, first at {diff[0].tolist()}"


def test_yuv420_to_rgb_on_decoded_video_equals_pyav(kernels, tmp_path):
    """The kernel body on frames PyAV decodes (BT.709, full range, the golden BT.601 video)
    gives PyAV's own rgb24 bytes."""
    pytest.importorskip("av", reason="needs PyAV")
    from conftest import GOLDEN
    from vxl_fast.video.yuv import frame_conversion, frame_planes
    from yuv_videos import content, decoded, write_video

    tagged = write_video(tmp_path / "jpeg709.mp4", content(2, 288, 352, "smooth"), "libx264", "yuvj420p", 1)
    frames = decoded(tagged) + decoded(GOLDEN / "cases" / "testsrc2_320x240_25fps_20s.mp4")[::100]
    for i, frame in enumerate(frames):
        conv = frame_conversion(frame)
        y, u, v = (torch.from_numpy(p.copy())[None] for p in frame_planes(frame))
        got = kernels.yuv420_to_rgb(y, u, v, list(YUV_MATRICES).index(conv.matrix), conv.full_range)[0]
        _assert_same_bytes(got, torch.from_numpy(frame.to_ndarray(format="rgb24")), f"frame {i} {conv}")


# ---- the shim's warp shuffles ----

def test_shuffles_read_the_partner_lane():
    k = host_kernels()
    rc, out = k.shuffle_probe(96)
    assert rc == 0
    lanes = torch.arange(32)
    for w in range(3):
        for i, o in enumerate((16, 8, 4, 2, 1)):
            assert torch.equal(out[w, i], (w * 32 + (lanes ^ o)).float())


@pytest.mark.parametrize("threads,active", [(32, 16), (32, 1), (48, 32)])
def test_unbalanced_shuffles_fail_the_launch(threads, active):
    """Lanes that return before a full-mask shuffle, or a partial warp, fail as on a GPU (undefined
    there), rather than reading stale values."""
    rc, _ = host_kernels().shuffle_probe(threads, active)
    assert rc == CUDA_ERROR_LAUNCH_FAILURE


# ---- fused_add_rms_norm: a warp per row; the CPU impl's order of the sum, bit-exact ----

# (leading shape, D, layout): 1 row of 1, primes, partial last chunks, rows past a block's
# 4 warps, the model's width, strided rows (element-wise path), 3-D
NORM_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((5,), 131, "contiguous"),
              ((9,), 256, "contiguous"), ((2,), 3584, "contiguous"), ((7,), 264, "strided"),
              ((2, 3), 40, "contiguous"), ((3,), 1000, "strided"), ((0,), 8, "contiguous")]


def _strided(lead, d, dtype, g, layout, scale=1.0):
    if layout == "contiguous":
        return (scale * torch.randn(*lead, d, generator=g)).to(dtype)
    return (scale * torch.randn(*lead, d + 5, generator=g)).to(dtype)[..., 2:2 + d]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", NORM_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}")
def test_fused_add_rms_norm_matches_cpu_impl(kernels, dtype, case):
    lead, d, layout = case
    g = torch.Generator().manual_seed(d)
    x = _strided(lead, d, dtype, g, layout)
    residual = _strided(lead, d, dtype, g, "contiguous", scale=3.0)
    weight = (1 + torch.randn(d, generator=g) / 4).to(dtype)
    normed, h = kernels.fused_add_rms_norm(x, residual, weight, 1e-6)
    cpu_normed, cpu_h = torch.ops.vxl_fast.fused_add_rms_norm(x, residual, weight, 1e-6)
    what = f"{case} {dtype}"
    _assert_same_bits(h, cpu_h, f"h vs CPU impl: {what}")
    _assert_same_bits(normed, cpu_normed, f"normed vs CPU impl: {what}")
    _assert_same_bits(h, fused_add_rms_norm_ref(x, residual, weight, 1e-6)[1], f"h vs ref: {what}")


# ---- add_layer_norm: a warp per row, two butterflies; the CPU impl's order of the sums, bit-exact ----

# (leading shape, D, layout): as NORM_CASES, with CLIP ViT-L's width and rows with a large mean
LAYER_NORM_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((5,), 131, "contiguous"),
                    ((9,), 256, "contiguous"), ((3,), 1024, "contiguous"), ((7,), 264, "strided"),
                    ((2, 3), 40, "contiguous"), ((3,), 1000, "strided"), ((0,), 8, "contiguous")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", LAYER_NORM_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}")
def test_add_layer_norm_matches_cpu_impl(kernels, dtype, case):
    lead, d, layout = case
    g = torch.Generator().manual_seed(d + 1)
    x = _strided(lead, d, dtype, g, layout)
    residual = (_strided(lead, d, torch.float32, g, "contiguous", scale=3.0) + 20.0).to(dtype)
    weight = (1 + torch.randn(d, generator=g) / 4).to(dtype)
    bias = (torch.randn(d, generator=g) / 2).to(dtype)
    normed, h = kernels.add_layer_norm(x, residual, weight, bias, 1e-5)
    cpu_normed, cpu_h = torch.ops.vxl_fast.add_layer_norm(x, residual, weight, bias, 1e-5)
    what = f"{case} {dtype}"
    _assert_same_bits(h, cpu_h, f"h vs CPU impl: {what}")
    _assert_same_bits(normed, cpu_normed, f"normed vs CPU impl: {what}")
    _assert_same_bits(h, add_layer_norm_ref(x, residual, weight, bias, 1e-5)[1], f"h vs ref: {what}")


# ---- clip_embed_layer_norm: add_layer_norm's warp row over [cls, patches] + pos, bit-exact ----

# (F, P, C, layout): one token, CLIP ViT-L's width, a prime width, strided patch rows (the vector
# path off), no patches
EMBED_CASES = [(1, 1, 1, "contiguous"), (2, 5, 136, "contiguous"), (3, 4, 131, "contiguous"),
               (2, 9, 1024, "contiguous"), (3, 6, 264, "strided"), (2, 0, 16, "contiguous"),
               (0, 3, 8, "contiguous")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", EMBED_CASES, ids=lambda c: "x".join(map(str, c)))
def test_clip_embed_layer_norm_matches_cpu_impl(kernels, dtype, case):
    f, p, c, layout = case
    g = torch.Generator().manual_seed(c + 3)
    patches = (3 * torch.randn(f, p, c + 8, generator=g) + 20).to(dtype)
    patches = patches[..., 1:1 + c] if layout == "strided" else patches[..., :c].contiguous()
    cls = torch.randn(c, generator=g).to(dtype)
    pos = torch.randn(p + 1, c, generator=g).to(dtype)
    weight = (1 + torch.randn(c, generator=g) / 4).to(dtype)
    bias = (torch.randn(c, generator=g) / 2).to(dtype)
    got = kernels.clip_embed_layer_norm(patches, cls, pos, weight, bias, 1e-5)
    cpu = torch.ops.vxl_fast.clip_embed_layer_norm(patches, cls, pos, weight, bias, 1e-5)
    _assert_same_bits(got, cpu, f"vs CPU impl: {case} {dtype}")
    assert got.shape == clip_embed_layer_norm_ref(patches, cls, pos, weight, bias, 1e-5).shape


# ---- bias_quick_gelu: elementwise, bit-exact with the CPU impl ----

GELU_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((3,), 37, "contiguous"),
              ((4,), 136, "contiguous"), ((2,), 520, "strided"), ((2, 3), 16, "contiguous"),
              ((300,), 8, "contiguous"), ((0,), 8, "contiguous")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", GELU_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}")
def test_bias_quick_gelu_matches_cpu_impl(kernels, dtype, case):
    lead, f, layout = case
    g = torch.Generator().manual_seed(f + 2)
    x = _strided(lead, f, dtype, g, layout, scale=4.0)
    bias = torch.randn(f, generator=g).to(dtype)
    got = kernels.bias_quick_gelu(x, bias)
    what = f"{case} {dtype}"
    _assert_same_bits(got, torch.ops.vxl_fast.bias_quick_gelu(x, bias), f"vs CPU impl: {what}")
    if dtype != torch.float32:  # PyTorch's fp32 sigmoid uses another exp; the rounding hides it here
        _assert_same_bits(got, bias_quick_gelu_ref(x, bias), f"vs ref: {what}")


# ---- silu_and_mul: elementwise, bit-exact with the CPU impl ----

SILU_CASES = [((1,), 1, "contiguous"), ((1,), 7, "contiguous"), ((3,), 37, "contiguous"),
              ((4,), 136, "contiguous"), ((2,), 520, "strided"), ((2, 3), 16, "contiguous"),
              ((300,), 8, "contiguous"), ((0,), 8, "contiguous")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SILU_CASES, ids=lambda c: f"{c[0]}x{c[1]}-{c[2]}")
def test_silu_and_mul_matches_cpu_impl(kernels, dtype, case):
    lead, f, layout = case
    x = _strided(lead, 2 * f, dtype, torch.Generator().manual_seed(f), layout, scale=4.0)
    got = kernels.silu_and_mul(x)
    what = f"{case} {dtype}"
    _assert_same_bits(got, torch.ops.vxl_fast.silu_and_mul(x), f"vs CPU impl: {what}")
    if dtype != torch.float32:  # PyTorch's fp32 silu uses another exp; the rounding hides it here
        _assert_same_bits(got, silu_and_mul_ref(x), f"vs ref: {what}")


# ---- rope_kv_write: fp32 RoPE (rope.h) and a copy, bit-exact with the CPU impl ----

# (n, H, Hkv, d, start): one row, d = 2, GQA, the model's head dim, more heads than threads
ROPE_CASES = [(1, 1, 1, 2, 0), (3, 4, 2, 6, 5), (7, 28, 4, 128, 2), (2, 3, 3, 130, 0), (2, 2, 1, 600, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_kv_write_matches_cpu_impl(kernels, dtype):
    g = torch.Generator().manual_seed(11)
    for n, heads, kv_heads, d, start in ROPE_CASES:
        qkv = torch.randn(n, (heads + 2 * kv_heads) * d, generator=g).to(dtype)
        q, k, v = qkv.split([heads * d, kv_heads * d, kv_heads * d], dim=-1)
        q, k, v = q.view(n, heads, d), k.view(n, kv_heads, d), v.view(n, kv_heads, d)
        cap = start + n + 2
        angles = torch.outer(torch.arange(cap, dtype=torch.float32), torch.linspace(1.0, 1e-4, d // 2))
        cos, sin = torch.cat([angles.cos()] * 2, 1), torch.cat([angles.sin()] * 2, 1)
        caches = torch.randn(2, kv_heads, cap, d + 3, generator=g).to(dtype)[..., :d]
        host, cpu = caches.clone(), caches.clone()
        what = f"n={n} H={heads} Hkv={kv_heads} d={d} start={start} {dtype}"
        q_host = kernels.rope_kv_write(q, k, v, cos, sin, host[0], host[1], start)
        q_cpu = torch.ops.vxl_fast.rope_kv_write(q, k, v, cos, sin, cpu[0], cpu[1], start)
        _assert_same_bits(q_host, q_cpu, f"q vs CPU impl: {what}")
        _assert_same_bits(host, cpu, f"caches vs CPU impl: {what}")
        cache_ref = caches.clone()
        q_ref = rope_kv_write_ref(q, k, v, cos, sin, cache_ref[0], cache_ref[1], start)
        _assert_same_bits(q_host, q_ref, f"q vs ref: {what}")
        _assert_same_bits(host, cache_ref, f"caches vs ref: {what}")
