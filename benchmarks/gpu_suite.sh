#!/usr/bin/env bash
# One call on a GPU machine: build vxl_fast there, run the tests and the benchmark suite, and leave
# the results (bench.json, table.md, plot.png, tests.xml) and a log in OUT_DIR.
#
#   benchmarks/gpu_suite.sh OUT_DIR
#
# Before the call, `benchmarks/prepare_gpu_carry.sh` fills the git-ignored folder .gpu/ (golden
# data, wheels the GPU machine lacks); name `.gpu` in the device tool's `carry`. The device run:
#   run(command="bash benchmarks/gpu_suite.sh $OUT", carry=[".gpu"], timeout_s=560)
# Settings: VXL_BENCH_CONFIG / VXL_BENCH_FRAMES / VXL_BENCH_RATIOS / VXL_BENCH_LONG (see
# benchmarks/conftest.py); SUITE_TESTS=0 skips the tests; TESTS_S / BENCH_S bound each part.
# Without a GPU the same script runs the CPU suite (a dry run of its logic).
set -uo pipefail
out=${1:?usage: gpu_suite.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
exec > >(tee "$out/log.txt") 2>&1
step() { echo "== $(date +%T) $*"; }
status=0

step machine
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
python3 -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo "no nvcc on PATH"

if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
  step "install carried wheels"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/vxl-site .gpu/wheels/*.whl || status=1
  export PYTHONPATH=/tmp/vxl-site${PYTHONPATH:+:$PYTHONPATH}
fi
[ -d .gpu/golden ] && export VXL_GOLDEN=$PWD/.gpu/golden

step "build vxl_fast"
if ! time python3 -m pip install -q --no-build-isolation --no-deps .; then
  echo "build failed"; exit 1
fi
python3 - <<'PY' || status=1
import torch, vxl_fast._ext as ext
print("extension:", ext.available, ext.error or "")
for op in ("interleave_vst", "kv_discard"):
    print(op, "CUDA kernel:", torch._C._dispatch_has_kernel_for_dispatch_key(f"vxl_fast::{op}", "CUDA"))
PY

if [ "${SUITE_TESTS:-1}" = 1 ]; then
  step tests
  timeout "${TESTS_S:-200}" python3 -m pytest tests/ -q -x -p no:cacheprovider --junitxml "$out/tests.xml" || status=1
fi

step benchmarks
timeout "${BENCH_S:-300}" python3 -m pytest benchmarks/ --benchmark-only -q -s -p no:cacheprovider \
  --benchmark-json "$out/bench.json" || status=1

step report
if [ -f "$out/bench.json" ]; then
  python3 benchmarks/report.py "$out/bench.json" --plot "$out/plot.png" | tee "$out/table.md" || status=1
fi
step "done (status $status)"
exit $status
