#!/usr/bin/env bash
# CI's CUDA step, compile only (no GPU needed): build vxl_fast against the CUDA build of torch
# 2.14.1 with the machine's nvcc for sm_90a in a venv of its own, fail on any compiler warning in
# our sources, then import vxl_fast._C and check that every op of csrc/torch_binding.cpp has a
# CUDA kernel registered with the dispatcher.
#
#   .ci/cuda_compile.sh    (VENV=.venv-cuda, BUILD_DIR=build/cuda, LOG=build/cuda.log, KEEP_BUILD=0)
#
# Takes ~3 min for the venv (local wheel cache), ~4 min for the build on 2 cores, ~1.5 min for the
# fake-device rehearsal.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(realpath -m "${VENV:-.venv-cuda}")
build_dir=${BUILD_DIR:-build/cuda}
log=${LOG:-build/cuda.log}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0a}
export VXL_WITH_CUDA=ON
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
: "${CUDA_HOME:=/usr/local/cuda}"
export CUDA_HOME
command -v "$CUDA_HOME/bin/nvcc" >/dev/null || { echo "cuda_compile: no nvcc at $CUDA_HOME/bin" >&2; exit 1; }

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q torch==2.14.1 scikit-build-core "cmake>=3.26" ninja
"$venv/bin/python" -c "import torch; assert torch.version.cuda, f'{torch.__version__} is not a CUDA build'"

mkdir -p "$(dirname "$log")"
# NOTE: a fresh build unless KEEP_BUILD=1: warnings are only seen when a file is compiled.
[ "${KEEP_BUILD:-0}" = 1 ] || rm -rf "$build_dir"
start=$SECONDS
# NOTE: a build dir of its own: the CPU build's (build/{wheel_tag}) has the same wheel tag.
if ! "$venv/bin/pip" install --no-build-isolation --no-deps --force-reinstall -v \
    -Cbuild-dir="$build_dir" . >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "cuda_compile: the CUDA build failed (full log: $log)" >&2
  exit 1
fi
echo "cuda_compile: built in $((SECONDS - start)) s for sm ${TORCH_CUDA_ARCH_LIST}"

# Warnings that point into our sources (g++ file:line:col, nvcc file(line)), and any from ptxas
# or nvlink (those only ever see our .cu files).
if grep -E "csrc/[^ ]*(:[0-9]+:[0-9]+: warning|\([0-9]+\): warning)|ptxas warning|nvlink warning" \
    "$log"; then
  echo "cuda_compile: compiler warnings in our sources (above; full log: $log)" >&2
  exit 1
fi

# NOTE: out of the checkout, so that only the installed package is found; _C is loaded by itself,
# as vxl_fast/__init__ imports packages this venv does not have.
schema=$PWD/csrc/torch_binding.cpp
(cd / && "$venv/bin/python" - "$schema" <<'PY'
import importlib.util, pathlib, re, sys

import torch

folder = pathlib.Path(importlib.util.find_spec("vxl_fast").submodule_search_locations[0])
so = next(folder.glob("_C*.so"))
torch.ops.load_library(str(so))
ops = re.findall(r'm\.def\(\s*"(\w+)\(', pathlib.Path(sys.argv[1]).read_text())
assert ops, "no m.def schema found in csrc/torch_binding.cpp"
missing = [op for op in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(f"vxl_fast::{op}", "CUDA")]
assert not missing, f"ops without a CUDA kernel: {missing}"
print(f"cuda_compile: {so.name} loaded with torch {torch.__version__}; CUDA kernels for {', '.join(ops)}")
PY
)

# The CUDA code path at full model size on fake CUDA tensors (no GPU): fused attention, custom ops,
# simulated peak vs the planner (tests/testing/test_rehearsal.py, ~1 min).
"$venv/bin/pip" install -q safetensors "transformers>=4.44" tokenizers numpy pillow tqdm pytest
"$venv/bin/python" -m pytest tests/testing/test_rehearsal.py -q -p no:cacheprovider
