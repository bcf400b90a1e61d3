"""Runtime options: one frozen value, read from the environment in one place and only when asked,
owned by the runner; two models with different options share a process."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import GOLDEN
from vxl_fast import RuntimeOptions, VideoXL, ops


def test_defaults_and_validation():
    assert RuntimeOptions() == RuntimeOptions("auto", "auto", True, "check")
    with pytest.raises(ValueError, match=re.escape("attention='fast' is not one of auto, prefix, split, cudnn, masked")):
        RuntimeOptions(attention="fast")
    with pytest.raises(ValueError, match=re.escape("vst_projection='fused' is not one of auto, gather, overwrite, grouped")):
        RuntimeOptions(vst_projection="fused")
    with pytest.raises(ValueError, match=re.escape("kernels='fast' is not one of check, trust, off")):
        RuntimeOptions(kernels="fast")
    with pytest.raises(TypeError, match="cuda_graphs must be True or False"):
        RuntimeOptions(cuda_graphs="no")


@pytest.mark.parametrize("env, want", [
    ({}, RuntimeOptions()),
    ({"VXL_ATTENTION": "", "VXL_KERNELS": " Trust "}, RuntimeOptions(kernels="trust")),
    ({"VXL_ATTENTION": "masked", "VXL_VST_PROJECTION": "overwrite", "VXL_CUDA_GRAPH": "0", "VXL_KERNELS": "off"},
     RuntimeOptions("masked", "overwrite", False, "off")),
])
def test_from_env(env, want):
    assert RuntimeOptions.from_env(env) == want


@pytest.mark.parametrize("env, message", [
    ({"VXL_ATTENTION": "fast"}, "VXL_ATTENTION: attention='fast' is not one of auto, prefix, split, cudnn, masked"),
    ({"VXL_KERNELS": "fast"}, "VXL_KERNELS: kernels='fast' is not one of check, trust, off"),
    ({"VXL_CUDA_GRAPH": "yes"}, "VXL_CUDA_GRAPH='yes' is not one of 0, 1"),
])
def test_a_bad_variable_is_named(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RuntimeOptions.from_env(env)


def test_the_runner_owns_its_choices_and_two_models_differ(monkeypatch):
    """The environment is read when a model is made (not at import); each runner keeps its own
    attention backend and kernel policy, and runs its ops under that policy."""
    monkeypatch.setenv("VXL_ATTENTION", "masked")
    first = VideoXL.from_pretrained(GOLDEN / "tiny-videoxl")
    monkeypatch.delenv("VXL_ATTENTION")
    second = VideoXL.from_pretrained(GOLDEN / "tiny-videoxl", runtime=RuntimeOptions(kernels="off"))
    assert first.runner.attention_name == "masked" and second.runner.attention_name == "split"
    assert first.runner.kernels.mode == "check" and second.runner.kernels.mode == "off"
    cpu = torch.device("cpu")
    for runner, runs_kernel in ((first.runner, True), (second.runner, False)):
        with runner.session():
            assert ops.dispatch.active() is runner.kernels
            assert ops.dispatch.compiled("kv_compact", cpu, torch.float32) == runs_kernel
    with ops.reference_only(), second.runner.session():
        assert not ops.dispatch.compiled("kv_compact", cpu, torch.float32)
