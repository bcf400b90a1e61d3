"""The op table: every ``torch.ops.vxl_fast`` op once, with its reference twin, its fake kernels, its
self-check and whether its C++ CPU kernel is bit-exact with the twin. Everything that lists the ops
(the wrappers' rule, fake registration, the self-check, the CUDA build check) reads it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import fakes, reference, selfcheck


@dataclass(frozen=True)
class OpSpec:
    """``ref``: the pure-PyTorch twin; ``fakes``: schema name → fake kernel (an op with an ``_out``
    variant has two); ``check(device, dtype)``: the self-check, None when the kernel agrees, else what
    differed; ``cpu_exact``: the C++ CPU kernel gives the twin's bits (so the CPU may run it and the
    goldens, recorded by the PyTorch code, still hold)."""

    ref: Callable
    fakes: dict[str, Callable]
    check: Callable[[torch.device, torch.dtype], str | None]
    cpu_exact: bool


def _spec(name: str, cpu_exact: bool, *schemas: str) -> OpSpec:
    return OpSpec(getattr(reference, f"{name}_ref"), {s: getattr(fakes, s) for s in (name, *schemas)},
                  getattr(selfcheck, name), cpu_exact)


OPS: dict[str, OpSpec] = {
    # exact: a copy, integer arithmetic, or fp32 products and sums in the twin's order
    "clip_preprocess": _spec("clip_preprocess", True, "clip_preprocess_out"),
    "interleave_vst": _spec("interleave_vst", True),
    "kv_compact": _spec("kv_compact", True),
    "rope_kv_write": _spec("rope_kv_write", True),
    "yuv420_to_rgb": _spec("yuv420_to_rgb", True),
    # not exact on the CPU: another summation order (norms) or libm's exp (activations)
    "add_layer_norm": _spec("add_layer_norm", False),
    "bias_quick_gelu": _spec("bias_quick_gelu", False),
    "clip_embed_layer_norm": _spec("clip_embed_layer_norm", False),
    "fused_add_rms_norm": _spec("fused_add_rms_norm", False),
    "silu_and_mul": _spec("silu_and_mul", False),
}
