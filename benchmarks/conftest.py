"""Benchmark fixtures: the model under test, its device, and what every record carries.

``VXL_BENCH_CONFIG`` picks the model: ``full`` (the released Video-XL configuration with random
bf16 weights; the default on a GPU), ``medium`` (head dims of the real model, tiny widths) or
``tiny`` (the default on a CPU). ``VXL_BENCH_FRAMES`` / ``VXL_BENCH_RATIOS`` / ``VXL_BENCH_LONG``
override the frame counts, ratios and long frame counts (comma-separated; set but empty: none).
``VXL_BENCH_RECORDS`` names a JSONL file that gets one line per case as soon as it finishes (its
benchmark statistics and ``extra_info``, or why it failed or skipped), so a run cut short keeps
what finished. Every line carries ``environment()``; a case of the model (``bench_model``) also
carries ``runner_facts`` and, when it failed, the ``stage`` that failed ("construction" or
"warm-up" of the model, else pytest's "setup" or "call"). Each such case borrows the model from
``LENDER``: a failed build fails that case only, and the next case builds the model again.
"""

from __future__ import annotations

import datetime
import functools
import gc
import json
import os
import subprocess
import sys
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


@functools.cache
def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except OSError:
        return None


def environment() -> dict:
    """Where a record was measured: ``device`` (the GPU's name on CUDA), its compute capability,
    the torch, CUDA and cuDNN versions (None where absent), the commit, the date and the model configuration."""
    capability = ".".join(map(str, torch.cuda.get_device_capability(DEVICE))) if CUDA else None
    return {"device": device_name(), "capability": capability, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "git_commit": git_commit(),
            "date": datetime.date.today().isoformat(), "config": CONFIG}


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def build_model(tmp_path_factory) -> VideoXL:
    """The model of ``CONFIG`` on ``DEVICE`` (random full-size weights, or a written checkpoint)."""
    if CONFIG == "full":
        if not CUDA:
            pytest.skip("the full-size configuration needs a CUDA GPU")
        return VideoXL.random(VideoXLConfig.released(), device=DEVICE, dtype=torch.bfloat16)
    dtype = torch.bfloat16 if CUDA else torch.float32
    if CONFIG == "medium":
        folder = write_tiny_checkpoint(tmp_path_factory.mktemp("medium") / "ckpt", **MEDIUM)
        return VideoXL.from_pretrained(folder, device=DEVICE, dtype=dtype)
    return VideoXL.from_pretrained(ensure_demo_checkpoint(), device=DEVICE, dtype=dtype)


def warm_up(model: VideoXL) -> None:
    """Kernels, their self-checks, the allocator, the decode check and the first graph capture."""
    frames = torch.randint(0, 256, (4, 336, 336, 3), dtype=torch.uint8, device=DEVICE)
    model.generate(frames=frames, prompt="warm up", max_new_tokens=4, ignore_eos=True)


class ModelUnavailable(Exception):
    """The benchmark model could not be built (``stage``: "construction" or "warm-up")."""

    def __init__(self, stage: str, message: str, facts: dict):
        super().__init__(f"the benchmark model failed at {stage}: {message}")
        self.stage, self.facts = stage, facts


class ModelLender:
    """Builds the benchmark model at the first case that needs it and lends it to the next ones.

    A construction or warm-up that raises fails that case only: the model is dropped and the next
    case builds it again; after two failures in a row at the same stage with the same exception
    type, later cases fail at once with the last one (a build costs tens of seconds on a GPU)."""

    def __init__(self):
        self.model: VideoXL | None = None
        self.failures: list[tuple[str, str, str]] = []  # (stage, exception type, error) since the last success

    def borrow(self, tmp_path_factory) -> VideoXL:
        if self.model is not None:
            return self.model
        if len(self.failures) >= 2 and self.failures[-1][:2] == self.failures[-2][:2]:
            stage, _, error = self.failures[-1]
            raise ModelUnavailable(stage, f"{error} (twice in a row; not retried)", runner_facts(None))
        release_memory()  # what an earlier failed build or case still holds
        stage, model = "construction", None
        try:
            model = build_model(tmp_path_factory)
            stage = "warm-up"
            warm_up(model)
        except Exception as exc:  # noqa: BLE001 - whatever failed, this case records it and the next one runs
            error = f"{type(exc).__name__}: {exc}"[:500]
            self.failures.append((stage, type(exc).__name__, error))
            raise ModelUnavailable(stage, error, runner_facts(model)) from exc
        self.failures.clear()
        self.model = model
        return model


LENDER = ModelLender()


def release_memory() -> None:
    """Frees what a failed case or build still holds (pytest keeps the last failure's frames)."""
    sys.last_type = sys.last_value = sys.last_traceback = None
    if hasattr(sys, "last_exc"):
        sys.last_exc = None
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


@pytest.fixture
def bench_model(tmp_path_factory) -> VideoXL:
    """The benchmark model, lent by ``LENDER`` (built by the first case that needs it)."""
    if getattr(sys, "last_value", None) is not None:
        release_memory()
    return LENDER.borrow(tmp_path_factory)


def runner_facts(model: VideoXL | None) -> dict:
    """What the runner chose: attention backend, VST projection, kernel policy and the kernels its
    self-check disabled ("op device dtype"), decode mode (set at the first decode); None before a runner exists."""
    runner = getattr(model, "runner", None)
    if runner is None:
        return dict.fromkeys(("attention", "vst_projection", "kernel_mode", "kernels_disabled", "decode_mode"))
    disabled = sorted(f"{name} {device} {str(dtype).removeprefix('torch.')}"
                      for (name, device, dtype), ok in runner.kernels.verdicts.items() if not ok)
    return {"attention": runner.attention_name, "vst_projection": runner.vst_projection,
            "kernel_mode": runner.kernels.mode, "kernels_disabled": disabled, "decode_mode": runner.decode_mode}


def _record(item: pytest.Item, call: pytest.CallInfo, report: pytest.TestReport) -> dict:
    record = {"test": item.nodeid, "outcome": report.outcome, "seconds": round(report.duration, 3),
              **environment()}
    if "bench_model" in item.fixturenames:
        error = call.excinfo.value if call.excinfo is not None else None
        if isinstance(error, ModelUnavailable):
            record.update(error.facts, stage=error.stage)
        else:
            record.update(runner_facts(getattr(item, "funcargs", {}).get("bench_model")))
    bench = item.funcargs.get("benchmark") if hasattr(item, "funcargs") else None
    stats = getattr(getattr(bench, "stats", None), "stats", None)
    if stats is not None:
        record["stats"] = {k: getattr(stats, k) for k in ("min", "max", "mean", "median", "stddev", "rounds")}
        record["extra_info"] = dict(bench.extra_info)
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        record["reason"] = report.longrepr[2]
    elif report.outcome == "failed":
        record.setdefault("stage", report.when)
        if call.excinfo is not None:
            record["reason"] = call.excinfo.exconly()[:500]
        else:
            record["reason"] = report.longreprtext.strip().splitlines()[-1][:500] if report.longreprtext else ""
    return record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    path = os.environ.get("VXL_BENCH_RECORDS")
    # one line per case: its call's report, or its setup's when the setup did not pass
    if path and (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        with open(path, "a") as f:
            f.write(json.dumps(_record(item, call, report), default=str) + "\n")
