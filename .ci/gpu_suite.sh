#!/usr/bin/env bash
# One call on a fresh GPU machine: build vxl_fast there, self-check the CUDA ops, run the tests and
# the benchmarks, and leave everything that finished in OUT, also when a phase runs out of time.
#
#   .ci/gpu_suite.sh OUT
#   run(command="bash .ci/gpu_suite.sh $OUT", timeout_s=540)       # the device tool; no carry
#   VXL_GPU_SUITE_DRY_RUN=1 .ci/gpu_suite.sh OUT    # every phase on this CPU, medium config
#
# Phases, each under `timeout` (budget in s on the GPU; the estimate for an H100 machine):
#   setup      20   (5)   machine facts; carried wheels (.gpu/wheels/*.whl) pip --target'ed
#   build     130  (75)   pip --target a temp site dir, TORCH_CUDA_ARCH_LIST=9.0a, build dir kept
#                          under build/gpu-suite (a warm machine's second call rebuilds nothing)
#   selfcheck  40  (15)   every CUDA op once against its reference twin, per dtype (selfcheck.json)
#   tests      90  (90)   GPU tests first: pytest -m gpu (tests-gpu.xml; ~40 s on an H100, see
#                          benchmarks/README.md), then the rest for what is left (tests.xml); PyAV
#                          tests skip
#   micro      40  (20)   benchmarks/test_ops_micro.py (real model shapes, bf16)
#   e2e       140 (120)   benchmarks/test_vision.py (2048 frames: engine, reference, transformers'
#                          CLIPVisionModel) and test_e2e.py, full config, 128 and 2048 frames at
#                          ratio 16, engine and reference, engine from host frames (VXL_BENCH_LONG="": no 4096/10000-frame
#                          cases), then the peak-growth check over those two
#   report     10   (2)   table.md from bench.jsonl: the tables, the runner's choices and versions
#                          (attention, VST projection, disabled kernels, decode mode, torch/CUDA/cuDNN,
#                          GPU), and the cases that failed (stage and reason) or were skipped
# Budgets add up to 470 s (7 min 50 s); the estimates to ~5 min 30 s (benchmarks/README.md).
# Results: log.txt, phases.jsonl (rc and seconds per phase), selfcheck.json, tests-gpu.xml, tests.xml,
# bench.jsonl (one line per benchmark case as it finishes), table.md.
# Settings: VXL_GPU_SUITE_DRY_RUN=1; PYTHON (python3); SUITE_PHASES (all of them, space-separated);
# VXL_BENCH_FRAMES / VXL_BENCH_RATIOS / VXL_BENCH_LONG override the e2e cases.
set -uo pipefail
out=$(realpath -m "${1:?usage: gpu_suite.sh OUT}")
mkdir -p "$out"
cd "$(dirname "$0")/.."
exec > >(tee -a "$out/log.txt") 2>&1
py=${PYTHON:-python3}
dry=${VXL_GPU_SUITE_DRY_RUN:-0}
phases=${SUITE_PHASES:-setup build selfcheck tests micro e2e report}
status=0

# NOTE: the machine's Python may be externally managed (no pip install into it): everything
# installed goes to a temp site dir that PYTHONPATH puts first.
site=$(mktemp -d /tmp/vxl-site.XXXXXX)
trap 'rm -rf "$site"' EXIT
export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
export TORCH_CUDA_ARCH_LIST=9.0a VXL_WITH_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
export VXL_BENCH_RECORDS=$out/bench.jsonl
if [ "$dry" = 1 ]; then
  # The same phases on the CPU: the medium configuration at its default frame counts; larger
  # budgets (2 cores: the CUDA compile alone takes ~3 min the first time).
  export VXL_BENCH_CONFIG=medium VXL_BENCH_LONG=${VXL_BENCH_LONG-}
  declare -A budget=([setup]=60 [build]=420 [selfcheck]=60 [tests]=600 [micro]=300 [e2e]=600 [report]=30)
else
  export VXL_BENCH_CONFIG=full VXL_BENCH_FRAMES=${VXL_BENCH_FRAMES-128,2048}
  export VXL_BENCH_RATIOS=${VXL_BENCH_RATIOS-16} VXL_BENCH_LONG=${VXL_BENCH_LONG-}
  declare -A budget=([setup]=20 [build]=130 [selfcheck]=40 [tests]=90 [micro]=40 [e2e]=140 [report]=10)
fi

# phase NAME COMMAND...: runs COMMAND under NAME's budget, logs and records its rc and time.
phase() {
  local name=$1 start=$SECONDS rc
  shift
  case " $phases " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $(date +%T) $name (budget ${budget[$name]} s)"
  timeout --kill-after=5 "${budget[$name]}" bash -c '"$@"' "$name" "$@"
  rc=$?
  [ $rc = 124 ] && echo "== $name: out of time after ${budget[$name]} s"
  [ $rc = 0 ] || status=1
  local extra=""
  [ -s "$out/$name-selection.json" ] && extra=", \"selection\": $(cat "$out/$name-selection.json")"
  printf '{"phase": "%s", "rc": %d, "seconds": %d, "budget_s": %d, "dry_run": %s%s}\n' \
    "$name" $rc $((SECONDS - start)) "${budget[$name]}" "$([ "$dry" = 1 ] && echo true || echo false)" "$extra" \
    >>"$out/phases.jsonl"
  return $rc
}

setup() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  "$py" -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.is_available())" || return 1
  command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo "no nvcc on PATH"
  if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .gpu/wheels/*.whl
  fi
}

build() {
  time "$py" -m pip install -q --no-build-isolation --no-deps --no-compile --upgrade --target "$site" \
    -Cbuild-dir=build/gpu-suite . || return 1
  "$py" -c "import vxl_fast._ext as e; assert e.available, e.error; print('vxl_fast._C loaded from', e.__file__)"
}

selfcheck() {
  "$py" - "$out/selfcheck.json" <<'PY'
import json, sys

import torch

from vxl_fast import ops
from vxl_fast.ops.dispatch import CUDA_KERNELS, check_op

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
names = sorted(ops.OPS)
missing = [n for n in names if n not in CUDA_KERNELS]
results = [{"op": n, "device": str(device), "dtype": str(dt), "problem": check_op(n, device, dt)}
           for n in names for dt in (torch.float32, torch.float16, torch.bfloat16)]
json.dump({"device": str(device), "ops_without_cuda_kernel": missing, "checks": results},
          open(sys.argv[1], "w"), indent=1)
for r in results:
    print(f"{r['op']:16} {r['device']:6} {r['dtype']:15} {r['problem'] or 'agrees with its reference'}")
print("ops without a CUDA kernel:", missing or "none")
sys.exit(1 if missing or any(r["problem"] for r in results) else 0)
PY
}

# ---- tests phase (issue 24): GPU tests first. The selection is the `gpu` marker (registered once,
# tests/conftest.py): every test that runs CUDA. It runs first, then the rest (`not gpu`) for what
# is left of the budget; each under `timeout -s INT`, so that pytest still writes its junit XML.
# The selection must pass; the rest may run out of time (its failures still fail the phase).
# tests-selection.json (folded into the phase's record as "selection") says what ran first and how.
tests() {
  local budget=$1 start=$SECONDS sel rest rc_rest=0
  rm -f "$out/tests-selection.json"
  timeout -s INT -k 5 $((budget - 10)) "$py" -m pytest tests/ -m gpu -q -p no:cacheprovider -rfE \
    --junitxml "$out/tests-gpu.xml"
  sel=$?
  rest=$((budget - 10 - (SECONDS - start)))
  if [ $rest -gt 5 ]; then
    timeout -s INT -k 5 $rest "$py" -m pytest tests/ -m "not gpu" -q -p no:cacheprovider -rfE \
      --junitxml "$out/tests.xml"
    rc_rest=$?
  fi
  "$py" - "$out" "$sel" $((SECONDS - start)) <<'PY'
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, rc, seconds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
xml = out / "tests-gpu.xml"
if xml.exists():
    for suite in ET.parse(xml).getroot().iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
json.dump({"selection": "pytest tests/ -m gpu", "rc": rc, **counts,
           "outcome": ("out of time" if rc == 124 else "failed" if rc else
                       "all skipped (no CUDA GPU)" if counts["skipped"] == counts["tests"] else "passed")},
          open(out / "tests-selection.json", "w"))
PY
  [ $sel = 0 ] || return $sel
  [ $rc_rest = 124 ] && { echo "== tests: the rest (not gpu) ran out of its $rest s, as expected"; return 0; }
  return $rc_rest
}
# ---- end of the tests phase block ----

bench() {
  "$py" -m pytest "$@" --benchmark-only -q -s -p no:cacheprovider -rs
}

report() {
  "$py" benchmarks/report.py "$out/bench.jsonl" | tee "$out/table.md"
}

# NOTE: exported, so that `timeout` can run them in a child bash.
export py site out
export -f setup build selfcheck tests bench report
phase setup setup
phase build build || { echo "== build failed: the later phases need it"; exit 1; }
phase selfcheck selfcheck
phase tests tests "${budget[tests]}"
phase micro bench benchmarks/test_ops_micro.py
phase e2e bench benchmarks/test_vision.py benchmarks/test_e2e.py
# ---- decoding throughput (issue 28): benchmarks/test_decoders.py, 200 1080p JPEGs (Pillow; DALI's
# nvJPEG) and 1080p videos (NVDEC; DALI). DALI (nvidia-dali-cuda130, ~620 MB installed) cannot be
# carried (64 MiB) and the machine has no internet: its cases skip unless the machine has DALI, as
# the video cases do without PyAV. Budget 40 s (estimate 15 s); SUITE_PHASES may name it "decode".
budget[decode]=$([ "$dry" = 1 ] && echo 300 || echo 40)
[ -z "${SUITE_PHASES:-}" ] && phases="$phases decode"
phase decode bench benchmarks/test_decoders.py
[ -s "$out/bench.jsonl" ] && phase report report
echo "== $(date +%T) done (status $status); phases:"
cat "$out/phases.jsonl"
exit $status
