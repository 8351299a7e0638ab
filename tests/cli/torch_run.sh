#!/usr/bin/env bash
# A whole run agrees with PyTorch: the MLP of examples/mlp.wf from the initial
# weights PyTorch wrote (tests/ref/mlp_run/init.safetensors), with weft's
# epoch-0 order for seed 1, batch 64, SGD(lr 0.05, momentum 0.9), 200 steps.
# Each step's loss in metrics.jsonl must agree with tests/ref/mlp_run/losses.txt
# (written by tools/ref/gen_mlp_run.py) within 1e-4 relative.
set -uo pipefail
. "$(dirname "$0")/ref_job.bash"
WEFT=$1
SRC=$2
REF=$SRC/tests/ref/mlp_run
DATA=/usr/share/datasets/fashion-mnist
TOL=1e-4
STEPS=200

if [ ! -d "$DATA" ]; then
  echo "FAIL $DATA is missing (install the dataset-fashion-mnist package)"
  echo "torch_run: 0 passed, 1 failed"
  exit 1
fi
for f in mlp_run.job init.safetensors losses.txt; do
  if [ ! -f "$REF/$f" ]; then
    echo "FAIL $REF/$f is missing (run tools/ref/gen_mlp_run.py)"
    echo "torch_run: 0 passed, 1 failed"
    exit 1
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The committed job, with its relative paths made absolute and `out` in $tmp.
job=$tmp/mlp_run.job
ref_job "$REF/mlp_run.job" "$tmp/out" >"$job"

if ! "$WEFT" train "$job" --quiet >"$tmp/stdout" 2>"$tmp/stderr"; then
  echo "FAIL weft train exited non-zero; job:"
  sed 's/^/    /' "$job"
  echo "stdout/stderr:"
  sed 's/^/    /' "$tmp/stdout" "$tmp/stderr"
  echo "torch_run: 0 passed, 1 failed"
  exit 1
fi
cat "$tmp/stdout"

# "step loss" lines from metrics.jsonl
sed -n 's/.*"step":\([0-9]*\),.*"loss":\([^,}]*\).*/\1 \2/p' "$tmp/out/metrics.jsonl" >"$tmp/weft.txt"

awk -v tol="$TOL" -v steps="$STEPS" '
  function abs(v) { return v < 0 ? -v : v }
  NR == FNR { got[$1] = $2; next }
  { want[$1] = $2 }
  END {
    pass = 0; fail = 0; maxrel = 0; maxstep = 0
    for (s = 1; s <= steps; s++) {
      if (!(s in want)) { printf "FAIL step %d: no reference loss\n", s; fail++; continue }
      if (!(s in got)) { printf "FAIL step %d: missing from metrics.jsonl (torch %s)\n", s, want[s]; fail++; continue }
      rel = abs(got[s] - want[s]) / abs(want[s])
      if (rel > maxrel) { maxrel = rel; maxstep = s }
      if (rel > tol) {
        printf "FAIL step %d: weft %s torch %s rel %.3g > %g\n", s, got[s], want[s], rel, tol; fail++
      } else pass++
    }
    printf "max relative loss difference %.3g (step %d: weft %s torch %s), tolerance %g\n",
           maxrel, maxstep, got[maxstep], want[maxstep], tol
    printf "torch_run: %d passed, %d failed\n", pass, fail
    exit fail > 0
  }' "$tmp/weft.txt" "$REF/losses.txt"
