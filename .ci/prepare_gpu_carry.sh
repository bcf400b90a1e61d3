#!/usr/bin/env bash
# Fill the git-ignored .gpu/wheels/ with wheels the GPU machine lacks (.ci/gpu_suite.sh
# pip --target's them) and check the device tool's limit: the tracked tree (tests/golden is
# ~52 MB of it) plus everything carried must stay within 64 MiB.
#   .ci/prepare_gpu_carry.sh [WHEEL...]     then run(..., carry=[".gpu"])
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu && mkdir -p .gpu/wheels
[ $# -gt 0 ] && cp "$@" .gpu/wheels/
tracked=$(git ls-files -z | xargs -0 du -cb | tail -n 1 | cut -f 1)
carried=$(du -sb .gpu | cut -f 1)
limit=$((64 * 1024 * 1024))
echo "tracked $((tracked / 1024)) KiB + carried $((carried / 1024)) KiB of $((limit / 1024)) KiB"
if [ $((tracked + carried)) -gt $limit ]; then
  echo "prepare_gpu_carry: over the 64 MiB the device tool carries" >&2
  exit 1
fi
