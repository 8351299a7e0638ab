#!/usr/bin/env bash
# Data-service benchmark: preprocessing placed on the cpu pool, on the compute threads
# ("device" on a machine without a GPU) and adaptively, for an input-bound and a
# compute-bound job, side by side in one run. See bench/README.md ("Data service").
#
#   bash bench/data.sh [--runs N] [--input-threads N] [--compute-threads N] [--loader-workers N] [--regimes input,compute]
#                      [--input-repeat K] [--compute-repeat K] [--json FILE]   (all: --help of data.py)
#
# Uses build/weft; BUILD=DIR (a build folder holding weft) or BUILD=FILE (the binary) overrides.
# Nothing is built here: `cmake --build build -j2 --target weft` first.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
case "${1:-}" in
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
NAME="data bench"
. bench/weft_env.bash
exec "$PY" "$ROOT/bench/data.py" --weft "$WEFT" "$@"
