"""The benchmark harness on the CPU: ``test_e2e.py`` run in a child pytest (tiny configuration,
4 frames, 2 decoded tokens) whose model builds are made to fail on purpose; each failed build
writes an error record for its case and the next case still runs. A benchmark only so that
``--benchmark-only`` (CI) runs it; the time is the child run's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import vxl_fast
from conftest import REPO

# A pytest plugin for the child run: build i (1-based) fails as VXL_HARNESS_FAULTS[i-1] says
# ("construction", "warm-up" or "ok"; the last entry holds for later builds).
FAULTS = '''
import os
import sys

PLAN = os.environ["VXL_HARNESS_FAULTS"].split(",")
builds = []


def pytest_collection_finish(session):
    conftest = sys.modules["conftest"]  # the one pytest loaded (it re-imports conftest modules)
    build, warm_up = conftest.build_model, conftest.warm_up

    def fault() -> str:
        return PLAN[min(len(builds), len(PLAN)) - 1]

    def failing_build(tmp_path_factory):
        builds.append(1)
        if fault() == "construction":
            raise RuntimeError("construction fails on purpose")
        return build(tmp_path_factory)

    def failing_warm_up(model):
        if fault() == "warm-up":
            raise RuntimeError("warm-up fails on purpose")
        warm_up(model)

    conftest.build_model, conftest.warm_up = failing_build, failing_warm_up
    sys.modules["test_e2e"].NEW_TOKENS = 2
'''
PACKAGE_ROOT = Path(vxl_fast.__file__).parents[1]  # the child imports the vxl_fast this process does
ENVIRONMENT = ("device", "capability", "torch", "cuda", "cudnn", "git_commit", "date", "config")
RUNNER = ("attention", "vst_projection", "kernel_mode", "kernels_disabled", "decode_mode")
DECODE_MODES = ("graph", "eager", "masked-graph", "masked-eager")


def run_e2e(tmp_path: Path, faults: str) -> list[dict]:
    """The records of ``test_e2e.py::test_end_to_end`` at 4 frames, ratios 16 and 8 (4 cases)."""
    (tmp_path / "vxl_harness_faults.py").write_text(FAULTS)
    records = tmp_path / "records.jsonl"
    env = {**os.environ, "VXL_HARNESS_FAULTS": faults, "VXL_BENCH_RECORDS": str(records),
           "VXL_BENCH_CONFIG": "tiny", "VXL_BENCH_FRAMES": "4", "VXL_BENCH_RATIOS": "16,8", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), str(REPO / "benchmarks"), str(tmp_path)])}
    child = subprocess.run([sys.executable, "-m", "pytest", "benchmarks/test_e2e.py", "-k", "test_end_to_end",
                            "--benchmark-only", "-q", "-p", "no:cacheprovider", "-p", "vxl_harness_faults"],
                           cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert records.exists(), child.stdout[-3000:] + child.stderr[-3000:]
    return [json.loads(line) for line in records.read_text().splitlines()]


def test_failed_builds_fail_their_case_only(benchmark, tmp_path):
    records = benchmark.pedantic(run_e2e, args=(tmp_path, "construction,warm-up,ok"), rounds=1, iterations=1)
    assert [r["test"].split("[")[1] for r in records] == ["4f-r16-engine]", "4f-r16-reference]", "4f-r8-engine]",
                                                          "4f-r8-reference]"]
    assert [r["outcome"] for r in records] == ["failed", "failed", "passed", "passed"]
    assert [r.get("stage") for r in records] == ["construction", "warm-up", None, None]
    assert "RuntimeError: construction fails on purpose" in records[0]["reason"]
    assert "RuntimeError: warm-up fails on purpose" in records[1]["reason"]
    for r in records:
        assert set(ENVIRONMENT + RUNNER) <= set(r), r
        assert r["config"] == "tiny" and r["torch"] == __import__("torch").__version__
    assert all(records[0][k] is None for k in RUNNER)  # no runner was made
    assert records[1]["attention"] is not None and records[1]["kernels_disabled"] == []  # made, then its warm-up failed
    for r in records[2:]:
        assert r["decode_mode"] in DECODE_MODES and r["kernel_mode"] == "check" and r["kernels_disabled"] == []
        assert {k: r["extra_info"][k] for k in RUNNER} == {k: r[k] for k in RUNNER}
        assert r["extra_info"]["frames"] == 4 and r["stats"]["rounds"] == 1


def test_a_build_failing_alike_twice_is_not_retried(benchmark, tmp_path):
    records = benchmark.pedantic(run_e2e, args=(tmp_path, "construction"), rounds=1, iterations=1)
    assert [(r["outcome"], r["stage"]) for r in records] == [("failed", "construction")] * 4
    assert ["not retried" in r["reason"] for r in records] == [False, False, True, True]
