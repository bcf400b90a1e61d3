"""Benchmark fixtures: the model under test, its device, and what every record carries.

``VXL_BENCH_CONFIG`` picks the model: ``full`` (the released Video-XL configuration with random
bf16 weights; the default on a GPU), ``medium`` (head dims of the real model, tiny widths) or
``tiny`` (the default on a CPU). ``VXL_BENCH_FRAMES`` / ``VXL_BENCH_RATIOS`` / ``VXL_BENCH_LONG``
override the frame counts, ratios and long frame counts (comma-separated; set but empty: none).
``VXL_BENCH_RECORDS`` names a JSONL file that gets one line per case as soon as it finishes (its
benchmark statistics and ``extra_info``, or why it failed or skipped), so a run cut short keeps
what finished.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from vxl_fast import VideoXL, VideoXLConfig
from vxl_fast.testing.tiny import ensure_demo_checkpoint, write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
CONFIG = os.environ.get("VXL_BENCH_CONFIG", "full" if CUDA else "tiny")
# bf16 dense peak (TFLOP/s) and memory bandwidth (TB/s) by device name, for roofline fractions.
PEAKS = {"H100": (989e12, 3.35e12), "H200": (989e12, 4.8e12), "A100": (312e12, 2.0e12)}
MEDIUM = dict(hidden=896, layers=2, heads=7, kv_heads=1, mlp=1024, vision_hidden=128, vision_layers=3,
              vision_heads=2, vision_mlp=512)


def env_list(name: str, default: list[int]) -> list[int]:
    """The comma-separated ints of ``$name``; ``default`` only when it is unset (empty: none)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return [int(v) for v in value.split(",") if v.strip()]


def device_name() -> str:
    return torch.cuda.get_device_name(DEVICE) if CUDA else f"cpu ({os.cpu_count()} cores)"


def peaks() -> tuple[float | None, float | None]:
    name = device_name()
    return next((p for key, p in PEAKS.items() if key in name), (None, None))


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return {"device": device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "git_commit": commit, "date": datetime.date.today().isoformat(), "config": CONFIG}


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


@pytest.fixture(scope="session")
def bench_model(tmp_path_factory) -> VideoXL:
    if CONFIG == "full":
        if not CUDA:
            pytest.skip("the full-size configuration needs a CUDA GPU")
        model = VideoXL.random(VideoXLConfig.released(), device=DEVICE, dtype=torch.bfloat16)
    elif CONFIG == "medium":
        folder = write_tiny_checkpoint(tmp_path_factory.mktemp("medium") / "ckpt", **MEDIUM)
        model = VideoXL.from_pretrained(folder, device=DEVICE, dtype=torch.bfloat16 if CUDA else torch.float32)
    else:
        model = VideoXL.from_pretrained(ensure_demo_checkpoint(), device=DEVICE,
                                        dtype=torch.bfloat16 if CUDA else torch.float32)
    frames = torch.randint(0, 256, (4, 336, 336, 3), dtype=torch.uint8, device=DEVICE)
    model.generate(frames=frames, prompt="warm up", max_new_tokens=4, ignore_eos=True)  # kernels, allocator
    return model


def _record(item: pytest.Item, report: pytest.TestReport) -> dict:
    record = {"test": item.nodeid, "outcome": report.outcome, "seconds": round(report.duration, 3)}
    bench = item.funcargs.get("benchmark") if hasattr(item, "funcargs") else None
    stats = getattr(getattr(bench, "stats", None), "stats", None)
    if stats is not None:
        record["stats"] = {k: getattr(stats, k) for k in ("min", "max", "mean", "median", "stddev", "rounds")}
        record["extra_info"] = dict(bench.extra_info)
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        record["reason"] = report.longrepr[2]
    elif report.outcome == "failed":
        record["reason"] = report.longreprtext.strip().splitlines()[-1][:500] if report.longreprtext else ""
    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    path = os.environ.get("VXL_BENCH_RECORDS")
    # one line per case: its call's report, or its setup's when the setup did not pass
    if path and (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        with open(path, "a") as f:
            f.write(json.dumps(_record(item, report), default=str) + "\n")
