#!/usr/bin/env bash
# Elastic-recovery benchmark: how long `weft run --nodes 1:4` takes to get a CNN job
# (examples/cnn.wf, pp=2 x dp=2 on 4 worker processes, loopback) training again after a
# worker is SIGKILLed, beside the job's step time. See bench/RECOVERY.md (measured tables).
#
#   bash bench/recovery.sh [--runs N] [--kill-after STEPS] [--max-steps N] [--batch N]
#                          [--micro-batches K] [--eval-batch N] [--heartbeat-timeout S] [--snapshot-every N]
#                          [--settle S] [--timeout S] [--keep-failed] [--json FILE]
#                                                          (all: --help of recovery.py)
#
# Run k kills the worker of rank k % 4 once k's job has --kill-after step lines (default 30);
# recovery time = the time right before the kill -> step_done_unix of the metrics' recovery
# event. Each run's final checkpoint is compared with a `weft train` of the same job.
# Prints per-run rows, medians and `goal: recovery < 2 s: OK|FAIL`.
#
# Uses build/weft; BUILD=DIR (a build folder holding weft) or BUILD=FILE (the binary) overrides.
# Nothing is built here: `cmake --build build -j2 --target weft` first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
case "${1:-}" in
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
# shellcheck disable=SC2034 # read by bench/weft_env.bash
NAME="recovery bench"
# shellcheck disable=SC1091 # sets WEFT and PY
. bench/weft_env.bash
export OMP_NUM_THREADS=1
exec "$PY" "$ROOT/bench/recovery.py" --weft "$WEFT" "$@"
