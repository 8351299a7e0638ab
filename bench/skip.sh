#!/usr/bin/env bash
# Skip-region benchmark (issue 14, "Speed"): a one-layer LSTM character model (a unit whose
# region holds the lstm cell) at padding fractions 0..90 % and sequence lengths 10..4000,
# weft with skip regions on against off (WEFT_SKIP=0), and PyTorch padded and packed on the
# same batches, in one invocation, with the same thread count on both sides.
#
#   bash bench/skip.sh [--quick] [--runs N] [--threads N] [--fractions 0,25,50,75,90]
#                      [--lengths 10,100,1000,4000] [--warmup W] [--steps S] [--profile]
#                      [--json FILE]                    (all: --help of skip.py)
#
# Prints per padding fraction: weft on / off ms per step, the speed-up beside the ideal
# 1/(1-p), PyTorch padded and packed, and a `goal: ...: OK|FAIL` line per goal; exits 0 when
# goals fail (non-zero only when something crashes). See bench/README.md.
#
# Uses build/weft; BUILD=DIR (a build folder holding weft) or BUILD=FILE (the binary) overrides.
# Nothing is built here. PyTorch: Debian's python3-torch, through /usr/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
case "${1:-}" in
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
# shellcheck disable=SC2034 # read by bench/weft_env.bash
NAME="skip bench"
# shellcheck disable=SC1091 # sets WEFT and PY
. bench/weft_env.bash
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "$NAME: $PY cannot import torch (Debian: python3-torch)" >&2
  exit 1
fi
export OMP_NUM_THREADS=1
exec "$PY" "$ROOT/bench/skip.py" --weft "$WEFT" --python "$PY" "$@"
