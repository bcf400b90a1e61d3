"""Window planning: VST counts, carries, KV slots."""

from __future__ import annotations

import numpy as np
import pytest

from vxl_fast.memory.plan import plan_request, plan_windows


def test_worked_example_2048_frames_ratio_16():
    plan = plan_request(sink=14, visual_tokens=2048 * 144, text_after=20, max_new_tokens=64,
                        window=1440, ratios=[16])
    assert len(plan.windows) == 205
    assert plan.vst_per_window == [90] * 204 + [72]
    assert plan.num_vsts == 18432
    assert plan.sink + plan.num_vsts == 18446
    assert plan.windows[-1].n_raw == 1152 and plan.windows[-1].kv_before == 14 + 90 * 204
    assert plan.max_window_rows == 1530
    assert plan.capacity == 18446 + 20 + 64


def test_ratio_8_2048_frames_and_demo():
    assert 14 + sum(w.n_vst for w in plan_windows(14, 2048 * 144, 1440, [8])) == 36878
    demo = plan_windows(14, 900 * 144, 1440, [8])
    assert len(demo) == 90 and {w.n_vst for w in demo} == {180}


def test_carry_example_ratio_64():
    windows = plan_windows(23, 21 * 144, 1440, [64])
    assert [w.n_raw for w in windows] == [1440, 1440, 144]
    assert [w.n_vst for w in windows] == [22, 23, 2]
    assert [w.carry for w in windows] == [0, 32, 0]


def test_dropped_tail_ratio_32():
    (w,) = plan_windows(23, 3 * 144, 1440, [32])
    assert (w.n_raw, w.n_vst, w.carry) == (432, 13, 0)


@pytest.mark.parametrize("ratio", [2, 4, 8, 12, 16])
@pytest.mark.parametrize("frames", [1, 7, 10, 11, 25])
def test_supported_ratios_never_carry(ratio, frames):
    windows = plan_windows(23, frames * 144, 1440, [ratio])
    assert all(w.carry == 0 for w in windows)
    assert sum(w.n_vst for w in windows) == frames * 144 // ratio
    assert sum(w.n_raw for w in windows) == frames * 144


def test_step_random_matches_numpy_choice_sequence():
    rng, ref = np.random.default_rng(42), np.random.default_rng(42)
    windows = plan_windows(23, 25 * 144, 1440, [2, 4, 8], rng)
    expected = [int(ref.choice([2, 4, 8])) for _ in windows]
    assert [w.ratio for w in windows] == expected


def test_step_random_filters_ratios_per_window():
    # a 144-token window admits 2, 4, 8, 12, 16 but not 32 (144 % 32 != 0)
    windows = plan_windows(0, 144, 1440, [32, 16], np.random.default_rng(0))
    assert windows[0].ratio == 16


def test_ratio_too_large_for_window():
    with pytest.raises(ValueError, match="keep no visual summary token"):
        plan_windows(23, 144, 1440, [145])
