#!/usr/bin/env bash
# Pipeline-bubble and dp/pp speed benchmarks of `weft run`. See bench/README.md ("Pipeline
# and data parallelism") and bench/PIPELINE.md (measured tables).
#
#   bash bench/pipeline.sh [--quick] [--only a|b] [--models cnn,mlp] [--stages 2,4]
#                          [--micro-batches 1,4,8] [--schedules gpipe,1f1b] [--batch N] [--steps N]
#                          [--warmup N] [--bubble-runs N] [--cases mlp,cnn] [--speed-batch N]
#                          [--speed-micro-batches K] [--runs N] [--test-samples N] [--settle S]
#                          [--retries N] [--tmp DIR] [--json FILE]      (all: --help of pipeline.py)
#
# (a) per-stage idle % of `weft run --pp S --trace` on bench/models/pipe_{cnn,mlp}.wf (equal
#     stages) against the analytic bubble (S-1)/(K+S-1); OK when within 5 points.
# (b) samples/s of `weft run` at dp=2 and pp=2 (1 thread per worker) against `weft train`
#     (1 and 2 threads) on examples/mlp.wf and examples/cnn.wf, with the per-worker split.
#
# Uses build/weft; BUILD=DIR (a build folder holding weft) or BUILD=FILE (the binary) overrides.
# Nothing is built here: `cmake --build build -j2 --target weft` first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

case "${1:-}" in
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac

NAME=pipeline
. bench/weft_env.bash
export OMP_NUM_THREADS=1

exec "$PY" "$ROOT/bench/pipeline.py" --weft "$WEFT" "$@"
