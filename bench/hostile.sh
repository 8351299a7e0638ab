#!/usr/bin/env bash
# Hostile-peers benchmark: a CNN `weft run` job (pp=2, loopback) attacked, without the
# cluster token, by 50 idle connections, 50 slow-loris partial frames, 10 HELLOs announcing
# 1 GiB, 5 wrong tokens and 200 connect/close cycles: first on the coordinator's port, then on
# a worker's data listener. Prints the step rate before and during, the slowest `weft status`,
# the attacked process's memory growth and CPU time, and
#   goal (TARGET): rate during >= 90% of before / weft status < 1 s / RSS growth < 50 MB /
#                  checkpoint byte-identical to weft train: OK|FAIL
#
#   bash bench/hostile.sh [--target coordinator|worker|both] [--window S] [--idle N] [--loris N]
#                         [--big N] [--cycles N] [--wrong N] [--max-steps N]   (--help of hostile.py)
#
# Uses build/weft; BUILD=DIR (a build folder holding weft) or BUILD=FILE (the binary) overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
case "${1:-}" in
  -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
# shellcheck disable=SC2034 # read by bench/weft_env.bash
NAME="hostile bench"
# shellcheck disable=SC1091 # sets WEFT and PY
. bench/weft_env.bash
export OMP_NUM_THREADS=1
exec "$PY" "$ROOT/bench/hostile.py" --weft "$WEFT" "$@"
