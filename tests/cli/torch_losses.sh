#!/usr/bin/env bash
# Whole runs of models whose loss is built in the model file agree with
# PyTorch (tools/ref/gen_loss_runs.py wrote the references):
#   l2mlp_run    examples/l2mlp.wf: cross_entropy + 1e-4 * sum(fc1.weight^2)
#                (a parameter as an argument, a scalar constant, sum to a
#                scalar, a broadcasting add) and an `acc` metric; SGD momentum
#   autoenc_run  examples/autoenc.wf: mse(sigmoid output, x), no label input; Adam
# Each from the initial weights PyTorch wrote (init.safetensors), with weft's
# epoch-0 order for seed 1, batch 64, micro_batches 1, 100 steps. Every step's
# loss in metrics.jsonl must agree with the run's losses.txt within 1e-4
# relative. Where the reference has acc.txt and metrics.jsonl's step lines
# carry an "acc" field, each step's accuracy must agree within one sample of
# the batch (an argmax near a tie may flip); without the field it is only
# reported.
#
#   torch_losses.sh WEFT SRC [RUN...]   RUN: a folder of tests/ref (default both);
#                                       any run laid out so works, e.g. mlp_run
set -uo pipefail
. "$(dirname "$0")/ref_job.bash"
WEFT=$1
SRC=$2
shift 2
RUNS=("$@")
[ ${#RUNS[@]} -gt 0 ] || RUNS=(l2mlp_run autoenc_run)
DATA=/usr/share/datasets/fashion-mnist
TOL=1e-4
ACC_KEY=acc

pass=0
fail=0
finish() {
  echo "torch_losses: $pass passed, $fail failed"
  exit $((fail > 0))
}
# tally REPORT: prints an awk report but its last line, "PASS FAIL", which it adds up
tally() {
  local p f
  echo "$1" | sed '$d'
  read -r p f <<<"$(echo "$1" | tail -n 1)"
  pass=$((pass + p))
  fail=$((fail + f))
}

if [ ! -d "$DATA" ]; then
  echo "FAIL $DATA is missing (install the dataset-fashion-mnist package)"
  fail=1
  finish
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for run in "${RUNS[@]}"; do
  ref=$SRC/tests/ref/$run
  missing=0
  for f in "$run.job" init.safetensors losses.txt; do
    if [ ! -f "$ref/$f" ]; then
      echo "FAIL $run: $ref/$f is missing (run tools/ref/gen_loss_runs.py)"
      missing=1
    fi
  done
  if [ $missing -ne 0 ]; then
    fail=$((fail + 1))
    continue
  fi
  steps=$(wc -l <"$ref/losses.txt")
  mkdir -p "$tmp/$run"

  # The committed job, with its relative paths made absolute and `out` in $tmp.
  job=$tmp/$run/$run.job
  ref_job "$ref/$run.job" "$tmp/$run/out" >"$job"

  echo "== $run ($steps steps)"
  if ! "$WEFT" train "$job" --quiet >"$tmp/$run/stdout" 2>"$tmp/$run/stderr"; then
    echo "FAIL $run: weft train exited non-zero; job:"
    sed 's/^/    /' "$job"
    echo "stdout/stderr:"
    sed 's/^/    /' "$tmp/$run/stdout" "$tmp/$run/stderr"
    fail=$((fail + 1))
    continue
  fi
  cat "$tmp/$run/stdout"

  # "step loss" and "step acc" from metrics.jsonl's step lines
  metrics=$tmp/$run/out/metrics.jsonl
  sed -n 's/^{"step":\([0-9]*\),.*"loss":\([^,}]*\).*/\1 \2/p' "$metrics" >"$tmp/$run/loss.txt"
  sed -n 's/^{"step":\([0-9]*\),.*"'"$ACC_KEY"'":\([^,}]*\).*/\1 \2/p' "$metrics" >"$tmp/$run/acc.txt"

  # prints "PASS FAIL" last
  out=$(loss_cmp "$tmp/$run/loss.txt" "$ref/losses.txt" "$run" "$TOL" "$steps")
  tally "$out"

  if [ -f "$ref/acc.txt" ]; then
    if [ ! -s "$tmp/$run/acc.txt" ]; then
      echo "$run: no \"$ACC_KEY\" in metrics.jsonl's step lines; accuracy not compared"
    else
      batch=$(sed -n 's/^[[:space:]]*batch[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$job" | head -n 1)
      out=$(awk -v steps="$steps" -v run="$run" -v batch="${batch:-64}" '
        function abs(v) { return v < 0 ? -v : v }
        FILENAME == ARGV[1] { got[$1] = $2; next }
        { want[$1] = $2 }
        END {
          pass = 0; fail = 0; differ = 0; tol = 1.0 / batch + 1e-6
          for (s = 1; s <= steps; s++) {
            if (!(s in got) || !(s in want)) { printf "FAIL %s step %d: accuracy missing\n", run, s; fail++; continue }
            d = abs(got[s] - want[s])
            if (d > 1e-6) differ++
            if (!(d <= tol)) {
              printf "FAIL %s step %d: accuracy weft %s torch %s\n", run, s, got[s], want[s]; fail++
            } else pass++
          }
          printf "%s: accuracy differs from torch at %d of %d steps (tolerance one sample of %d)\n",
                 run, differ, steps, batch
          print pass, fail
        }' "$tmp/$run/acc.txt" "$ref/acc.txt")
      tally "$out"
    fi
  fi
done

finish
