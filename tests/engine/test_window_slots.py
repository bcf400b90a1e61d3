"""A window's VST and raw row indices are made once per layout and kept on the device."""

from __future__ import annotations

import torch

from vxl_fast import ops
from vxl_fast.memory.plan import VisualWindow


def _window(n_raw: int, ratio: int, carry: int) -> VisualWindow:
    nb = (n_raw + carry) // ratio
    return VisualWindow(index=0, token_start=0, n_raw=n_raw, ratio=ratio, carry=carry, n_vst=nb, kv_before=0)


def test_slots_are_those_of_the_layout_and_reused(tiny_model):
    runner = tiny_model.runner
    runner._slots.clear()
    w = _window(40, 8, 3)
    vst, raw = runner._window_slots(w)
    assert torch.equal(vst, ops.vst_slots(40, 8, 3)[1]) and torch.equal(raw, ops.raw_slots(40, 8, 3))
    again = runner._window_slots(_window(40, 8, 3))
    assert again[0] is vst and again[1] is raw  # the same tensors: nothing is made or copied again
    assert runner._window_slots(_window(40, 8, 0))[0] is not vst


def test_at_most_64_layouts_are_kept_the_least_recent_dropped_first(tiny_model):
    runner = tiny_model.runner
    runner._slots.clear()
    first = runner._window_slots(_window(1, 2, 0))
    for n in range(2, 66):
        runner._window_slots(_window(n, 2, 0))
        if n == 40:
            assert runner._window_slots(_window(1, 2, 0)) is first  # used again: now the most recent
    assert len(runner._slots) == 64 and (1, 2, 0) in runner._slots and (2, 2, 0) not in runner._slots
