"""What the op tests share: the devices and dtypes they run on, unit roundoffs, input rows in every
memory layout the ops accept, the op under test by implementation, the bad-input test and opcheck."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import needs_cuda, needs_ext
from vxl_fast import ops

DEVICES = ["cpu", pytest.param("cuda", marks=needs_cuda)]
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


def rejects(name, args, cases: list) -> object:
    """A test that the op ``name`` (compiled and reference) rejects each of ``cases``, ``(override,
    error, message)``: called with ``args(**override)`` it raises ``error`` with exactly ``message``.
    ``name`` may instead be a function ``(impl, args)`` that makes the call."""
    call = (lambda impl, a: op(name, impl)(**a)) if isinstance(name, str) else name

    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("override,error,message", cases)
    def test(impl, override, error, message):
        with pytest.raises(error, match=re.escape(message)):
            call(impl, args(**override))
    return test


def opcheck(name: str, *args) -> None:
    """``torch.library.opcheck`` of ``vxl_fast::name`` (schema, fake kernel, autograd registration) on ``args``."""
    torch.library.opcheck(getattr(torch.ops.vxl_fast, name).default, args)
