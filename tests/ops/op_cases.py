"""What the fused-op tests share: the devices and dtypes they run on, unit roundoffs, input rows in
every memory layout the ops accept, and the op under test by implementation."""

from __future__ import annotations

import pytest
import torch

from vxl_fast import _ext, ops

needs_ext = pytest.mark.skipif(not _ext.available, reason=f"vxl_fast._C not loaded: {_ext.error}")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU"))]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
IMPLS = [pytest.param("ext", marks=needs_ext), "ref"]  # the compiled op and its reference twin
U = {torch.float32: 2.0**-24, torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}  # unit roundoff


def rows(lead: tuple, d: int, dtype, device, layout: str, g: torch.Generator, scale: float = 1.0,
         shift: float = 0.0) -> torch.Tensor:
    """Normal rows [*lead, d] (· scale + shift) laid out "contiguous", "strided" (row stride d + 3,
    storage offset 1) or "transposed" (two leading dims that cannot be viewed as rows)."""
    def draw(*shape):
        return (scale * torch.randn(*shape, generator=g) + shift).to(device, dtype)
    if layout == "contiguous":
        return draw(*lead, d)
    if layout == "strided":
        return draw(*lead, d + 3)[..., 1:1 + d]
    a, b = lead
    return draw(b, a, d).transpose(0, 1)


def op(name: str, impl: str):
    """``vxl_fast::name`` from the extension ("ext") or its reference twin."""
    return getattr(torch.ops.vxl_fast, name) if impl == "ext" else getattr(ops, f"{name}_ref")
