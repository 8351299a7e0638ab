#!/usr/bin/env bash
# ctest labels: multiprocess load
# Recurrent units with skip regions (issue 14) end to end, on whole fortunes
# (sample = sequence, padded to 64 characters): a two-layer LSTM language
# model trains with `weft train`; metrics.jsonl counts the (t, sample) pairs
# each unit's region ran on, which equal the live pairs (t < length), with
# the padded ones skipped; `weft run` with the pipeline boundary between the
# two units (pp=2, both schedules), data-parallel (dp=2) and both (pp=2 x
# dp=2) ends byte-identical to `weft train`. (Exactness against skipping off
# and gradients: tests/exec/test_unit.c.)
#
#   units.sh WEFT SRC
set -euo pipefail
WEFT=$1
SRC=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.bash"
LIMIT=300

for f in art science; do
  [ -f "/usr/share/games/fortunes/$f" ] || { echo "FAIL /usr/share/games/fortunes/$f is missing (scripts/install-deps.sh)"; exit 1; }
done
timeout $LIMIT "$WEFT" tokenize /usr/share/games/fortunes/art /usr/share/games/fortunes/science --out "$tmp/data" >/dev/null
V=$(head -1 "$tmp/data/vocab.txt" | awk '{print $4}')
sed -e "s/vocab=114/vocab=$V/; s/out=114/out=$V/; s/128\]/64]/g; s/hidden=128/hidden=16/; s/len=128/len=16/; s/256\]/32]/" \
  "$SRC/examples/lstm_lm.wf" >"$tmp/lm.wf"
job() { # FILE OUT [LINE...]
  local f=$1 o=$2
  shift 2
  {
    printf 'model = %s\ndata = %s\nseq_len = 64\nsample = sequence\nepochs = 1\nmax_steps = 6\n' "$tmp/lm.wf" "$tmp/data"
    printf 'batch = 16\nmicro_batches = 4\noptimizer = adam\nlr = 0.003\nthreads = 1\nseed = 4\nout = %s\n' "$o"
    local l
    for l in "$@"; do echo "$l"; done
  } >"$f"
}
job "$tmp/train.job" "$tmp/train"
check "weft train of the two-layer LSTM" timeout $LIMIT "$WEFT" train "$tmp/train.job" --quiet
ref=$tmp/train/checkpoint.safetensors

counters() { # the units' counters at the epoch end: live == computed, some skipped, pairs = steps x batch x T
  python3 - "$tmp/train/metrics.jsonl" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"event":"units"' in l]
units = ev[-1].get("units", [])
ok = len(units) == 2
for u in units:
    ok &= u["live"] == u["computed"] and u["skipped"] > 0 and u["pairs"] == 6 * 16 * 64
    ok &= u["live"] + u["skipped"] == u["pairs"]
    print("  unit %s: %d of %d (t, sample) pairs computed, %d skipped" % (u["unit"], u["computed"], u["pairs"], u["skipped"]))
sys.exit(0 if ok else 1)
PY
}
check "metrics: each unit's region ran on exactly the live pairs" counters

layout() { # NAME PP: weft run RUN_ARGS, byte-identical to weft train
  local name=$1
  if [ "$2" = 2 ]; then job "$tmp/$name.job" "$tmp/$name" "split = [l1.h]"; else job "$tmp/$name.job" "$tmp/$name"; fi
  timeout $LIMIT "$WEFT" run "$tmp/$name.job" "${RUN_ARGS[@]}" --quiet >"$tmp/$name.log" 2>&1 || {
    tail -5 "$tmp/$name.log"
    return 1
  }
  cmp -s "$ref" "$tmp/$name/checkpoint.safetensors"
}
RUN_ARGS=(--workers 2 --pp 2)
check "pp=2 (1f1b), the boundary between the units: byte-identical" layout pp2 2
RUN_ARGS=(--workers 2 --pp 2 --schedule gpipe)
check "pp=2 (gpipe): byte-identical" layout pp2g 2
RUN_ARGS=(--workers 2 --dp 2)
check "dp=2: byte-identical" layout dp2 1
RUN_ARGS=(--workers 4 --pp 2 --dp 2)
check "pp=2 x dp=2: byte-identical" layout pp2dp2 2
check_done units
