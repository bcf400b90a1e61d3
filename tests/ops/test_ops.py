"""vxl_fast ops: the C++/CUDA kernels against their pure-PyTorch twins, and the twins against
the formulas. CUDA cases skip without a GPU."""

from __future__ import annotations

import re
import warnings

import pytest
import torch

from conftest import needs_cuda
from op_cases import DEVICES, DTYPES, IMPLS, needs_ext, op, opcheck, rejects
from vxl_fast import _ext, ops
from vxl_fast.ops import bounds, interleave_vst_ref, kv_compact_ref, raw_slots, vst_slots

LENGTHS = [1, 7, 144, 432, 1440, 1441]
RATIOS = [1, 2, 4, 8, 12, 16, 32]
# (ratio, carry): carry 0, a middle and the largest carry for every ratio.
RATIO_CARRY = sorted({(r, c) for r in RATIOS for c in (0, r // 2, r - 1) if c < r})


def test_extension_loaded():
    assert _ext.available, f"vxl_fast._C failed to load: {_ext.error}"


# ---- vst_slots -------------------------------------------------------------------------------

@pytest.mark.parametrize("n_raw", LENGTHS)
def test_vst_slots_follow_the_rule(n_raw):
    for ratio, carry in RATIO_CARRY:
        nb, slots = vst_slots(n_raw, ratio, carry)
        assert nb == (n_raw + carry) // ratio == slots.numel()
        assert slots.dtype == torch.int64
        rows = torch.arange(n_raw + nb)
        assert torch.equal(slots, rows[rows % (ratio + 1) == ratio - carry]), (ratio, carry)


# ---- interleave_vst --------------------------------------------------------------------------

# Raw rows are "r<i>", VST rows "V"; derived by hand from: slot j is a VST iff
# j % (ratio + 1) == ratio - carry, and nb = (Lw + carry) // ratio.
HAND_EXAMPLES = [
    (5, 2, 0, ["r0", "r1", "V", "r2", "r3", "V", "r4"]),
    (5, 2, 1, ["r0", "V", "r1", "r2", "V", "r3", "r4", "V"]),
    (4, 3, 2, ["r0", "V", "r1", "r2", "r3", "V"]),
    (3, 1, 0, ["r0", "V", "r1", "V", "r2", "V"]),
    (1, 4, 0, ["r0"]),
    (1, 4, 3, ["r0", "V"]),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n_raw,ratio,carry,expected", HAND_EXAMPLES)
def test_interleave_vst_hand_examples(impl, n_raw, ratio, carry, expected):
    raw = torch.arange(n_raw, dtype=torch.float32)[:, None].expand(n_raw, 3).contiguous()
    vst = torch.full((3,), -1.0)
    out = op("interleave_vst", impl)(raw, vst, ratio, carry)
    labels = ["V" if row[0] == -1 else f"r{int(row[0])}" for row in out]
    assert labels == expected
    _, slots = vst_slots(n_raw, ratio, carry)
    assert slots.tolist() == [j for j, label in enumerate(expected) if label == "V"]
    assert raw_slots(n_raw, ratio, carry).tolist() == [j for j, label in enumerate(expected) if label != "V"]


@pytest.mark.parametrize("n_raw", LENGTHS)
def test_raw_slots_are_the_complement(n_raw):
    for ratio, carry in RATIO_CARRY:
        nb, slots = vst_slots(n_raw, ratio, carry)
        rows = raw_slots(n_raw, ratio, carry)
        assert rows.dtype == torch.int64 and rows.numel() == n_raw
        assert sorted(rows.tolist() + slots.tolist()) == list(range(n_raw + nb)), (ratio, carry)


def _raw_rows(n_raw: int, d: int, dtype: torch.dtype, device: str, layout: str) -> torch.Tensor:
    if layout == "contiguous":
        return torch.randn(n_raw, d, device=device).to(dtype)
    # A misaligned view: row stride d + 3, storage offset 1.
    return torch.randn(n_raw, d + 3, device=device).to(dtype)[:, 1:1 + d]


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("d", [3, 64])
def test_interleave_vst_matches_ref(device, dtype, layout, d):
    for n_raw in LENGTHS:
        for ratio, carry in RATIO_CARRY:
            _check_interleave(device, dtype, layout, d, ratio, carry, n_raw)


def _check_interleave(device, dtype, layout, d, ratio, carry, n_raw):
    raw = _raw_rows(n_raw, d, dtype, device, layout)
    vst = torch.randn(d, device=device).to(dtype)
    out = torch.ops.vxl_fast.interleave_vst(raw, vst, ratio, carry)
    assert out.is_contiguous() and out.dtype == dtype and out.device == raw.device
    assert torch.equal(out, interleave_vst_ref(raw, vst, ratio, carry))
    nb, slots = vst_slots(n_raw, ratio, carry)
    assert out.shape == (n_raw + nb, d)
    is_vst = torch.zeros(n_raw + nb, dtype=torch.bool)
    is_vst[slots] = True
    is_vst = is_vst.to(device)
    assert torch.equal(out[is_vst], vst.expand(nb, d))
    assert torch.equal(out[~is_vst], raw)


# ---- kv_compact ------------------------------------------------------------------------------

HEADS = 2


def _rope_tables(positions: int, d: int, device: str, layout: str) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(positions, dtype=torch.float32), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    if layout == "strided":  # row stride 2d
        cos = torch.cat((cos, torch.full_like(cos, 7.0)), dim=-1)[:, :d]
        sin = torch.cat((sin, torch.full_like(sin, 7.0)), dim=-1)[:, :d]
    return cos.to(device), sin.to(device)


def _kv(heads: int, rows: int, d: int, dtype: torch.dtype, device: str, layout: str) -> torch.Tensor:
    if layout == "contiguous":
        return torch.randn(heads, rows, d, device=device).to(dtype)
    if layout == "strided":  # rows of a bigger buffer, padded last dim, storage offset
        return torch.randn(heads, rows + 5, d + 6, device=device).to(dtype)[:, 3:3 + rows, 2:2 + d]
    # "transposed": [Hkv, rows, d] over [rows, Hkv, d] storage
    return torch.randn(rows, heads, d, device=device).to(dtype).transpose(0, 1)


def _kv_compact_case(n_raw, ratio, carry, d, dtype, device, layout):
    """Tensors for one window's compaction: its nb = (n_raw + carry) // ratio VSTs' keys and
    values, written at dst into a cache whose rows hold other data.

    The same arguments give the same tensors (fresh storage, same layout)."""
    torch.manual_seed(0)
    nb = (n_raw + carry) // ratio
    dst = 5
    capacity = dst + nb + 3
    cos, sin = _rope_tables(capacity + 2, d, device, layout)
    cache_layout = "transposed" if layout == "strided" else layout
    return dict(
        cache_k=_kv(HEADS, capacity, d, dtype, device, cache_layout),
        cache_v=_kv(HEADS, capacity, d, dtype, device, cache_layout),
        vst_k=_kv(HEADS, nb, d, dtype, device, layout),
        vst_v=_kv(HEADS, nb, d, dtype, device, layout),
        cos=cos, sin=sin, dst=dst)


def _outside(t: torch.Tensor) -> torch.Tensor:
    """A copy of the buffer that the view t lives in, with t's own elements zeroed."""
    if t._base is None:
        return t.new_empty(0)
    base = t._base.clone()
    base.as_strided(t.shape, t.stride(), t.storage_offset()).zero_()
    return base


def _expected_keys(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept keys [Hkv, nb, d] by the formula, in fp32 on the CPU, and their ``bounds.rope_bound``."""
    dst, nb = case["dst"], case["vst_k"].shape[1]
    half = case["cache_k"].shape[2] // 2
    x = case["vst_k"].cpu().float()
    cos, sin = case["cos"].cpu()[dst:dst + nb], case["sin"].cpu()[dst:dst + nb]
    lo, hi = x[..., :half], x[..., half:]
    keys = torch.cat((lo * cos[:, :half] - hi * sin[:, :half],
                      hi * cos[:, half:] + lo * sin[:, half:]), dim=-1)
    return keys, bounds.rope_bound(x, cos, sin, keys, case["cache_k"].dtype)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("d", [2, 128])
def test_kv_compact_matches_ref(device, dtype, layout, d):
    for n_raw in LENGTHS:
        for ratio, carry in RATIO_CARRY:
            _check_kv_compact(device, dtype, layout, d, ratio, carry, n_raw)


def _check_kv_compact(device, dtype, layout, d, ratio, carry, n_raw):
    before, ext, ref = (_kv_compact_case(n_raw, ratio, carry, d, dtype, device, layout)
                        for _ in range(3))
    torch.ops.vxl_fast.kv_compact(**ext)
    kv_compact_ref(**ref)
    dst, nb = before["dst"], before["vst_k"].shape[1]
    kept = slice(dst, dst + nb)
    keys, bound = _expected_keys(before)
    # The reference is the formula, to the bit.
    assert torch.equal(ref["cache_k"][:, kept].cpu(), keys.to(dtype))
    assert torch.equal(ref["cache_v"][:, kept], before["vst_v"])
    # The kernel: within the derived bound on the kept keys, exact everywhere else.
    assert torch.all((ext["cache_k"][:, kept].cpu().double() - keys.to(dtype).double()).abs() <= bound)
    assert torch.equal(ext["cache_k"][:, :dst], ref["cache_k"][:, :dst])
    assert torch.equal(ext["cache_k"][:, kept.stop:], ref["cache_k"][:, kept.stop:])
    assert torch.equal(ext["cache_v"], ref["cache_v"])
    for name in ("cache_k", "cache_v"):  # rows outside [dst, dst + nb) untouched
        assert torch.equal(ref[name][:, :dst], before[name][:, :dst])
        assert torch.equal(ref[name][:, kept.stop:], before[name][:, kept.stop:])
    for name in ("vst_k", "vst_v"):  # the sources are read only
        assert torch.equal(ext[name], before[name]) and torch.equal(ref[name], before[name])
    for name in ("cache_k", "cache_v", "vst_k", "vst_v"):
        assert torch.equal(_outside(ext[name]), _outside(before[name]))


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["ext", "ref"])
def test_kv_compact_without_vsts_changes_nothing(device, impl):
    before, after = (_kv_compact_case(1, 4, 0, 8, torch.bfloat16, device, "strided") for _ in range(2))
    assert before["vst_k"].shape[1] == 0
    op("kv_compact", impl)(**after)
    assert torch.equal(after["cache_k"], before["cache_k"])
    assert torch.equal(after["cache_v"], before["cache_v"])


# ---- torch.library.opcheck ---------------------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_interleave_vst(device, layout):
    raw = _raw_rows(13, 8, torch.bfloat16, device, layout)
    vst = torch.randn(8, device=device).to(torch.bfloat16)
    opcheck("interleave_vst", raw, vst, 4, 1)


@needs_ext
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_opcheck_kv_compact(device, layout):
    case = _kv_compact_case(13, 4, 1, 8, torch.bfloat16, device, layout)
    names = ("cache_k", "cache_v", "vst_k", "vst_v", "cos", "sin", "dst")
    opcheck("kv_compact", *(case[n] for n in names))


# ---- bad inputs ----------------------------------------------------------------------------------

def _interleave_args(**override):
    args = dict(raw=torch.randn(13, 8), vst=torch.randn(8), ratio=4, carry=1)
    args.update(override)
    return args


INTERLEAVE_ERRORS = [
    (dict(raw=torch.randn(2, 13, 8)), ValueError,
     "interleave_vst: raw must be a 2-D tensor [Lw, D], got 3 dimensions."),
    (dict(vst=torch.randn(1, 8)), ValueError,
     "interleave_vst: vst must be a 1-D tensor [D], got 2 dimensions."),
    (dict(raw=torch.ones(13, 8, dtype=torch.int64), vst=torch.ones(8, dtype=torch.int64)), TypeError,
     "interleave_vst: raw must be torch.float32, torch.float16 or torch.bfloat16, got torch.int64."),
    (dict(vst=torch.randn(8, dtype=torch.float16)), TypeError,
     "interleave_vst: vst must have the same dtype as raw (torch.float32), got torch.float16."),
    (dict(vst=torch.randn(5)), ValueError,
     "interleave_vst: vst has 5 elements but the rows of raw have D = 8; they must match."),
    (dict(raw=torch.randn(0, 8)), ValueError, "interleave_vst: raw must have at least one row."),
    (dict(raw=torch.randn(8, 13).t()), ValueError,
     "interleave_vst: raw must have a contiguous last dimension (stride 1), got stride 13."),
    (dict(vst=torch.randn(16)[::2]), ValueError,
     "interleave_vst: vst must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(ratio=0, carry=0), ValueError, "interleave_vst: ratio must be at least 1, got 0."),
    (dict(carry=-1), ValueError, "interleave_vst: carry must satisfy 0 <= carry < ratio (4), got -1."),
    (dict(carry=4), ValueError, "interleave_vst: carry must satisfy 0 <= carry < ratio (4), got 4."),
]


test_interleave_vst_rejects = rejects("interleave_vst", _interleave_args, INTERLEAVE_ERRORS)


def _kv_args(**override):
    heads, capacity, nb, d, positions = 2, 10, 2, 4, 12
    args = dict(cache_k=torch.zeros(heads, capacity, d), cache_v=torch.zeros(heads, capacity, d),
                vst_k=torch.randn(heads, nb, d), vst_v=torch.randn(heads, nb, d),
                cos=torch.ones(positions, d), sin=torch.zeros(positions, d), dst=3)
    args.update(override)
    return args


KV_COMPACT_ERRORS = [
    (dict(cache_k=torch.zeros(10, 4)), ValueError,
     "kv_compact: cache_k must be a 3-D tensor [Hkv, C, d], got 2 dimensions."),
    (dict(vst_v=torch.zeros(1, 2, 2, 4)), ValueError,
     "kv_compact: vst_v must be a 3-D tensor [Hkv, nb, d], got 4 dimensions."),
    (dict(sin=torch.zeros(48)), ValueError,
     "kv_compact: sin must be a 2-D tensor [P, d], got 1 dimensions."),
    (dict(cache_k=torch.zeros(2, 10, 4, dtype=torch.int32)), TypeError,
     "kv_compact: cache_k must be torch.float32, torch.float16 or torch.bfloat16, got torch.int32."),
    (dict(vst_k=torch.zeros(2, 2, 4, dtype=torch.bfloat16)), TypeError,
     "kv_compact: vst_k must have the same dtype as cache_k (torch.float32), got torch.bfloat16."),
    (dict(cos=torch.ones(12, 4, dtype=torch.float64)), TypeError,
     "kv_compact: cos must be torch.float32, got torch.float64."),
    (dict(cache_v=torch.zeros(2, 11, 4)), ValueError,
     "kv_compact: cache_v must have the shape of cache_k ([2, 10, 4]), got [2, 11, 4]."),
    (dict(vst_v=torch.zeros(2, 3, 4)), ValueError,
     "kv_compact: vst_v must have the shape of vst_k ([2, 2, 4]), got [2, 3, 4]."),
    (dict(vst_k=torch.zeros(3, 2, 4), vst_v=torch.zeros(3, 2, 4)), ValueError,
     "kv_compact: vst_k [Hkv, nb, d] = [3, 2, 4] and cache_k [Hkv, C, d] = [2, 10, 4] must have "
     "the same Hkv and d."),
    (dict(cache_k=torch.zeros(2, 10, 3), cache_v=torch.zeros(2, 10, 3), vst_k=torch.zeros(2, 2, 3),
          vst_v=torch.zeros(2, 2, 3)), ValueError,
     "kv_compact: the head dim d must be a positive even number, got 3."),
    (dict(cos=torch.ones(12, 6), sin=torch.ones(12, 6)), ValueError,
     "kv_compact: cos must have d = 4 columns, got 6."),
    (dict(sin=torch.zeros(11, 4)), ValueError,
     "kv_compact: sin must have the shape of cos ([12, 4]), got [11, 4]."),
    (dict(cache_v=torch.zeros(2, 4, 10).transpose(1, 2)), ValueError,
     "kv_compact: cache_v must have a contiguous last dimension (stride 1), got stride 10."),
    (dict(vst_k=torch.zeros(2, 4, 2).transpose(1, 2)), ValueError,
     "kv_compact: vst_k must have a contiguous last dimension (stride 1), got stride 2."),
    (dict(cos=torch.ones(4, 12).t()), ValueError,
     "kv_compact: cos must have a contiguous last dimension (stride 1), got stride 12."),
    (dict(dst=-1), ValueError, "kv_compact: dst must be non-negative, got -1."),
    (dict(dst=9), ValueError, "kv_compact: dst + nb = 11 exceeds the cache length C = 10."),
    (dict(cache_k=torch.zeros(2, 20, 4), cache_v=torch.zeros(2, 20, 4), dst=11), ValueError,
     "kv_compact: dst + nb = 13 exceeds the RoPE table length P = 12."),
]


test_kv_compact_rejects = rejects("kv_compact", _kv_args, KV_COMPACT_ERRORS)


@needs_cuda
@pytest.mark.parametrize("impl", IMPLS)
def test_ops_reject_mixed_devices(impl):
    with pytest.raises(ValueError, match=re.escape(
            "interleave_vst: vst must be on the same device as raw (cuda:0), got cpu.")):
        op("interleave_vst", impl)(**_interleave_args(raw=torch.randn(13, 8, device="cuda")))
    args = {k: v.cuda() if isinstance(v, torch.Tensor) and k != "vst_v" else v
            for k, v in _kv_args().items()}
    with pytest.raises(ValueError, match=re.escape(
            "kv_compact: vst_v must be on the same device as cache_k (cuda:0), got cpu.")):
        op("kv_compact", impl)(**args)


def test_vst_slots_rejects():
    with pytest.raises(ValueError, match=re.escape("vst_slots: ratio must be at least 1, got 0.")):
        vst_slots(5, 0, 0)
    with pytest.raises(ValueError,
                       match=re.escape("vst_slots: carry must satisfy 0 <= carry < ratio (2), got 2.")):
        vst_slots(5, 2, 2)
    with pytest.raises(ValueError, match=re.escape("vst_slots: n_raw must be non-negative, got -1.")):
        vst_slots(-1, 2, 0)


# ---- the fallback path -----------------------------------------------------------------------------

@needs_ext
def test_wrappers_fall_back_to_ref_with_one_warning(monkeypatch):
    raw, vst = torch.randn(1441, 64).to(torch.bfloat16), torch.randn(64).to(torch.bfloat16)
    with_ext = _kv_compact_case(1441, 8, 3, 128, torch.float16, "cpu", "strided")
    without_ext = _kv_compact_case(1441, 8, 3, 128, torch.float16, "cpu", "strided")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_ext = ops.interleave_vst(raw, vst, 8, 3)
        ops.kv_compact(**with_ext)

    monkeypatch.setattr(_ext, "available", False)
    monkeypatch.setattr(_ext, "error", "ImportError: simulated")
    with warnings.catch_warnings(record=True) as caught, ops.using(ops.KernelPolicy()):
        warnings.simplefilter("always")
        out_ref = ops.interleave_vst(raw, vst, 8, 3)
        ops.kv_compact(**without_ext)
    assert [str(w.message) for w in caught] == [
        "vxl_fast ops fall back to the pure-PyTorch reference: the vxl_fast._C extension failed to "
        f"load (ImportError: simulated); {_ext.REBUILD_HINT}"]

    assert torch.equal(out_ref, out_ext)
    for name in ("cache_k", "cache_v", "vst_k", "vst_v"):
        assert torch.equal(without_ext[name], with_ext[name])


@needs_ext
def test_cuda_tensors_without_cuda_kernels_fall_back(monkeypatch):
    monkeypatch.setattr(ops.dispatch, "CUDA_KERNELS", frozenset())
    policy = ops.KernelPolicy()
    with pytest.warns(RuntimeWarning, match=re.escape("vxl_fast._C was built without CUDA kernels")):
        assert not policy.compiled("kv_compact", torch.device("cuda"), torch.float32)
    assert policy.compiled("kv_compact", torch.device("cpu"), torch.float32)


@needs_ext
def test_wrappers_trace_without_graph_breaks():
    @torch.compile(backend="eager", fullgraph=True, dynamic=True)
    def window(raw, vst, case):
        ops.kv_compact(**case)
        return ops.interleave_vst(raw, vst, 8, 3)

    raw, vst = torch.randn(144, 16), torch.randn(16)
    case = _kv_compact_case(144, 8, 3, 16, torch.float32, "cpu", "contiguous")
    expected = _kv_compact_case(144, 8, 3, 16, torch.float32, "cpu", "contiguous")
    assert torch.equal(window(raw, vst, case), interleave_vst_ref(raw, vst, 8, 3))
    kv_compact_ref(**expected)
    for name in ("cache_k", "cache_v", "vst_k", "vst_v"):
        assert torch.equal(case[name], expected[name])


@needs_ext
def test_reference_only_switch(monkeypatch):
    calls = []
    monkeypatch.setattr(ops, "interleave_vst_ref", lambda *a: calls.append(a) or interleave_vst_ref(*a))
    raw, vst = torch.randn(9, 4), torch.randn(4)
    ops.interleave_vst(raw, vst, 4, 0)
    assert not calls
    with ops.reference_only():
        out = ops.interleave_vst(raw, vst, 4, 0)
    assert len(calls) == 1 and torch.equal(out, torch.ops.vxl_fast.interleave_vst(raw, vst, 4, 0))
    ops.interleave_vst(raw, vst, 4, 0)
    assert len(calls) == 1
