"""The first-contact self-check (vxl_fast.ops.selfcheck, run by ops.dispatch.KernelPolicy), exercised
on the CPU: the CPU kernel of an op is replaced by one that is wrong on purpose (torch.library), and
the CPU is made a checked device type of the policy, as CUDA is in a real run."""

from __future__ import annotations

import contextlib
import re
import warnings

import pytest
import torch

from conftest import needs_cuda, needs_ext
from vxl_fast import ops
from vxl_fast.ops import (add_layer_norm_ref, bias_quick_gelu_ref, fused_add_rms_norm_ref, interleave_vst_ref,
                          silu_and_mul_ref)
from vxl_fast.ops.dispatch import check_op

pytestmark = needs_ext

CPU = torch.device("cpu")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _checking_cpu(mode: str = "check") -> ops.KernelPolicy:
    """A policy that runs every CPU kernel and checks it at first use, as a real run checks CUDA's."""
    policy = ops.KernelPolicy(mode, every_cpu_kernel=True)
    policy.checked_devices = frozenset({"cpu", "cuda"})
    return policy


@contextlib.contextmanager
def _cpu_kernels(**impls):
    """The CPU kernels of the named vxl_fast ops replaced by ``impls`` while the block runs."""
    lib = torch.library.Library("vxl_fast", "IMPL")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Overriding a previously registered kernel"
            for name, impl in impls.items():
                lib.impl(name, impl, "CPU")
        yield
    finally:
        lib._destroy()


@pytest.fixture
def checked_cpu():
    """The CPU as a checked device type, with no verdicts yet (the policy is active while the test runs)."""
    policy = _checking_cpu()
    with ops.using(policy):
        yield policy


@pytest.fixture
def wrong_interleave_vst():
    """Replaces the CPU kernel of vxl_fast::interleave_vst, while the test runs, by one that swaps
    the first two output rows for float16 and raises for bfloat16; yields the list of its calls."""
    calls = []
    right = torch.ops.vxl_fast.interleave_vst.default

    def wrong(raw, vst, ratio, carry):
        calls.append(raw.dtype)
        if raw.dtype == torch.bfloat16:
            raise RuntimeError("planted failure")
        with torch._C._AutoDispatchBelowAutograd():
            out = interleave_vst_ref(raw, vst, ratio, carry)
        if raw.dtype == torch.float16:
            out[[0, 1]] = out[[1, 0]]
        return out

    with _cpu_kernels(interleave_vst=wrong):
        yield calls
    raw = torch.randn(5, 4, dtype=torch.float16)
    assert torch.equal(right(raw, raw[0], 2, 0), interleave_vst_ref(raw, raw[0], 2, 0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["add_layer_norm", "bias_quick_gelu", "clip_embed_layer_norm", "clip_preprocess",
                                  "fused_add_rms_norm", "interleave_vst", "kv_compact", "rope_kv_write",
                                  "silu_and_mul", "yuv420_to_rgb"])
def test_the_cpu_impls_pass_the_check(name, dtype):
    assert check_op(name, CPU, dtype) is None
    assert set(ops.OPS) == {"add_layer_norm", "bias_quick_gelu", "clip_embed_layer_norm", "clip_preprocess",
                            "fused_add_rms_norm", "interleave_vst", "kv_compact", "rope_kv_write", "silu_and_mul",
                            "yuv420_to_rgb"}


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(ops.OPS))
def test_every_cuda_kernel_passes_the_check(name, dtype):
    """The self-check a run makes at first use, on the GPU: each op's CUDA kernel against its twin."""
    assert check_op(name, torch.device("cuda"), dtype) is None


def test_check_catches_wrong_fused_kernels():
    """A norm 1 % off and a silu_and_mul with gate and up swapped fail their checks; a residual
    add one ulp off fails exactly."""
    def wrong_norm(x, residual, weight, eps):
        with torch._C._AutoDispatchBelowAutograd():
            normed, h = fused_add_rms_norm_ref(x, residual, weight, eps)
        if x.dtype == torch.float16:
            return normed, torch.nextafter(h, torch.full_like(h, float("inf")))
        return normed * 1.01, h

    def wrong_silu(x):
        with torch._C._AutoDispatchBelowAutograd():
            return silu_and_mul_ref(torch.cat(x.chunk(2, dim=-1)[::-1], dim=-1))

    with _cpu_kernels(fused_add_rms_norm=wrong_norm, silu_and_mul=wrong_silu):
        assert check_op("fused_add_rms_norm", CPU, torch.float32).startswith(
            "normed differs by up to ")
        assert check_op("fused_add_rms_norm", CPU, torch.float16) == (
            "680 of 680 h elements differ, the first at [0, 0]")
        assert check_op("silu_and_mul", CPU, torch.bfloat16).startswith("output differs by up to ")
    assert check_op("fused_add_rms_norm", CPU, torch.float16) is None
    assert check_op("silu_and_mul", CPU, torch.bfloat16) is None


def test_check_catches_wrong_vision_kernels():
    """A LayerNorm without its bias and a quick GELU without fc1's bias fail their checks; a
    residual add one ulp off fails exactly."""
    def wrong_norm(x, residual, weight, bias, eps):
        with torch._C._AutoDispatchBelowAutograd():
            normed, h = add_layer_norm_ref(x, residual, weight, bias, eps)
        if x.dtype == torch.float16:
            return normed, torch.nextafter(h, torch.full_like(h, float("inf")))
        return normed - bias, h

    def wrong_gelu(x, bias):
        with torch._C._AutoDispatchBelowAutograd():
            return bias_quick_gelu_ref(x, torch.zeros_like(bias))

    with _cpu_kernels(add_layer_norm=wrong_norm, bias_quick_gelu=wrong_gelu):
        assert check_op("add_layer_norm", CPU, torch.bfloat16).startswith("normed differs by up to ")
        assert check_op("add_layer_norm", CPU, torch.float16) == (
            "680 of 680 h elements differ, the first at [0, 0]")
        assert check_op("bias_quick_gelu", CPU, torch.float32).startswith("output differs by up to ")
    assert check_op("add_layer_norm", CPU, torch.float16) is None
    assert check_op("bias_quick_gelu", CPU, torch.float32) is None


def test_check_reports_a_wrong_and_a_raising_kernel(wrong_interleave_vst):
    assert check_op("interleave_vst", CPU, torch.float32) is None
    problem = check_op("interleave_vst", CPU, torch.float16)
    assert problem == "272 of 6936 output elements differ, the first at [0, 0]"
    assert check_op("interleave_vst", CPU, torch.bfloat16) == (
        "it raised RuntimeError: planted failure")


def test_a_failing_kernel_is_disabled_with_one_warning(checked_cpu, wrong_interleave_vst):
    raw, vst = torch.randn(11, 8, dtype=torch.float16), torch.randn(8, dtype=torch.float16)
    want = interleave_vst_ref(raw, vst, 4, 2)
    with pytest.warns(RuntimeWarning) as caught:
        out = ops.interleave_vst(raw, vst, 4, 2)
    assert [str(w.message) for w in caught] == [
        "vxl_fast: the interleave_vst kernel failed its self-check on cpu for torch.float16 "
        "(272 of 6936 output elements differ, the first at [0, 0]); interleave_vst uses the "
        "pure-PyTorch reference there (VXL_KERNELS=trust skips the check)."]
    assert torch.equal(out, want)
    assert wrong_interleave_vst == [torch.float16]  # the check ran the kernel once, nothing else did
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(ops.interleave_vst(raw, vst, 4, 2), want)
        # other dtypes and ops keep their own verdicts: float32 passes and runs the kernel
        raw32 = raw.float()
        assert torch.equal(ops.interleave_vst(raw32, vst.float(), 4, 2), interleave_vst_ref(raw32, vst.float(), 4, 2))
    assert wrong_interleave_vst == [torch.float16, torch.float32, torch.float32]
    assert checked_cpu.verdicts == {("interleave_vst", CPU, torch.float16): False,
                                   ("interleave_vst", CPU, torch.float32): True}


def test_a_raising_kernel_is_disabled(checked_cpu, wrong_interleave_vst):
    raw, vst = torch.randn(6, 8, dtype=torch.bfloat16), torch.randn(8, dtype=torch.bfloat16)
    with pytest.warns(RuntimeWarning, match=re.escape("(it raised RuntimeError: planted failure)")):
        out = ops.interleave_vst(raw, vst, 2, 1)
    assert torch.equal(out, interleave_vst_ref(raw, vst, 2, 1))


def test_trust_runs_the_kernel_unchecked(wrong_interleave_vst):
    policy = _checking_cpu("trust")
    raw, vst = torch.randn(11, 8, dtype=torch.float16), torch.randn(8, dtype=torch.float16)
    with ops.using(policy):
        out = ops.interleave_vst(raw, vst, 4, 2)
    assert not torch.equal(out, interleave_vst_ref(raw, vst, 4, 2))  # the wrong kernel's result
    assert wrong_interleave_vst == [torch.float16] and policy.verdicts == {}


def test_off_never_runs_a_kernel(wrong_interleave_vst):
    policy = _checking_cpu("off")
    raw, vst = torch.randn(11, 8, dtype=torch.float16), torch.randn(8, dtype=torch.float16)
    with ops.using(policy):
        assert torch.equal(ops.interleave_vst(raw, vst, 4, 2), interleave_vst_ref(raw, vst, 4, 2))
    assert not policy.compiled("kv_compact", CPU, torch.float32)
    assert wrong_interleave_vst == []
    with ops.reference_only():
        assert not ops.dispatch.active().compiled("kv_compact", CPU, torch.float32)


def test_unchecked_device_types_are_not_checked(wrong_interleave_vst):
    policy = ops.KernelPolicy("check", every_cpu_kernel=True)
    assert policy.compiled("interleave_vst", CPU, torch.float16)
    assert wrong_interleave_vst == [] and policy.verdicts == {}


def test_a_bad_mode_is_named():
    with pytest.raises(ValueError, match=re.escape("kernels must be one of check, trust, off, got 'fast'")):
        ops.KernelPolicy("fast")


def test_yuv420_to_rgb_passes_and_a_wrong_one_is_caught(checked_cpu):
    """The uint8 op: the CPU impl passes; a kernel that swaps R and B is disabled with one warning
    and the wrapper gives the reference's pixels."""
    from vxl_fast.ops import yuv420_to_rgb_ref

    assert check_op("yuv420_to_rgb", CPU, torch.uint8) is None
    with _cpu_kernels(yuv420_to_rgb=lambda y, u, v, m, f: yuv420_to_rgb_ref(
            y, u, v, list(ops.YUV_MATRICES)[m], f).flip(-1).contiguous()):
        y = torch.randint(0, 256, (1, 6, 10), dtype=torch.uint8)
        u = torch.randint(0, 256, (1, 3, 5), dtype=torch.uint8)
        with pytest.warns(RuntimeWarning, match="the yuv420_to_rgb kernel failed its self-check on cpu for torch.uint8"):
            out = ops.yuv420_to_rgb(y, u, u, "bt709")
        assert torch.equal(out, yuv420_to_rgb_ref(y, u, u, "bt709"))
