#!/usr/bin/env bash
# Fill the git-ignored .gpu/ folder that benchmarks/gpu_suite.sh reads on the GPU machine: the
# golden data (../shared does not travel) and wheels that machine lacks. The device tool carries
# at most 64 MiB in all, the repository included; this stays under ~50 MiB.
#   benchmarks/prepare_gpu_carry.sh [--with-av]   (PyAV adds 35 MB: then the medium golden set stays home)
set -euo pipefail
cd "$(dirname "$0")/.."
golden=${VXL_GOLDEN:-../shared/golden}
rm -rf .gpu && mkdir -p .gpu/golden .gpu/wheels
cp -r "$golden/tiny-videoxl" "$golden/cases" .gpu/golden/
if [ "${1:-}" = "--with-av" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/wheels "av==19.0.2"
else
  cp -r "$golden/medium-videoxl" "$golden/medium-cases" .gpu/golden/
fi
chmod -R u+w .gpu
du -sh .gpu .
