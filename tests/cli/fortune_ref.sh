#!/usr/bin/env bash
# A recurrent classifier on class-labelled token data against PyTorch
# (issue 14): two stacked LSTM layers in units with skip regions
# (tests/ref/fortune_class_run/fortune_class_run.wf, a small
# examples/fortune_class.wf), end to end:
#   - `weft tokenize --classes file` of the files in tokenize.txt gives the
#     very token and class files the PyTorch reference read (tokens.sha256);
#   - `weft train` of fortune_class_run.job (100 Adam steps, five epoch
#     boundaries) agrees with PyTorch's nn.LSTM(num_layers=2) on packed
#     sequences (tools/ref/gen_fortune_class_run.py): every step's loss within
#     1e-4 relative of losses.txt, and its skip regions skipped the padding;
#   - with WEFT_SKIP=0 (regions compute every row, then mask) the run ends
#     with the same checkpoint bytes (docs/recurrent.md, "Exactness"; when it
#     does not, its losses are compared with PyTorch's too and the first step
#     whose loss differs from the skipping run's is named).
# Needs no PyTorch: it reads the committed files.
#
#   fortune_ref.sh WEFT SRC
set -uo pipefail
WEFT=$1
SRC=$2
REF=$SRC/tests/ref/fortune_class_run
. "$(dirname "$0")/ref_job.bash"
TOL=1e-4
LIMIT=120 # seconds for any one weft command

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
finish() {
  echo "fortune_ref: $pass passed, $fail failed"
  exit $((fail > 0))
}

for f in fortune_class_run.job fortune_class_run.wf init.safetensors losses.txt tokenize.txt tokens.sha256; do
  [ -f "$REF/$f" ] || { bad "$REF/$f is missing (run tools/ref/gen_fortune_class_run.py)"; finish; }
done
files=()
while IFS= read -r f; do
  [ -n "$f" ] || continue
  [ -f "$f" ] || { bad "$f is missing (install the fortunes package: scripts/install-deps.sh)"; finish; }
  files+=("$f")
done <"$REF/tokenize.txt"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT # every weft below runs in the foreground under timeout: nothing outlives the test

# ---- the data: the reference's very token and class files ----
REF_JOB=fortune_class_run.job
REF_GEN=tools/ref/gen_fortune_class_run.py
ref_tokenize "token and class files" "${files[@]}" -- --classes file

# ---- weft train against PyTorch ----
ref_write_job skip
if ref_train skip; then
  ref_compare_losses skip
  # the counters of the skip regions: computed < all (t, sample) pairs
  units=$(grep '"event":"units"' "$tmp/skip/metrics.jsonl" | tail -n 1)
  if [[ $units =~ \"computed\":([0-9]+),\"skipped\":([0-9]+),\"pairs\":([0-9]+) ]] &&
    [ "${BASH_REMATCH[2]}" -gt 0 ] && [ $((BASH_REMATCH[1] + BASH_REMATCH[2])) -eq "${BASH_REMATCH[3]}" ]; then
    ok "the skip regions skipped ${BASH_REMATCH[2]} of ${BASH_REMATCH[3]} (t, sample) pairs"
  else
    bad "the skip regions' counters: ${units:-no units event in metrics.jsonl}"
  fi
fi

# ---- WEFT_SKIP=0: the same bits ----
ref_write_job noskip
if [ -f "$tmp/skip/checkpoint.safetensors" ] && ref_train noskip WEFT_SKIP=0; then
  if cmp -s "$tmp/skip/checkpoint.safetensors" "$tmp/noskip/checkpoint.safetensors"; then
    ok "WEFT_SKIP=0: checkpoint byte-identical to the skipping run's"
  else
    ref_compare_losses noskip
    sed -n 's/^{"step":\([0-9]*\),.*"loss":\([^,}]*\).*/\1 \2/p' "$tmp/noskip/metrics.jsonl" >"$tmp/noskip.loss"
    first=$(paste -d ' ' "$tmp/skip.loss" "$tmp/noskip.loss" | awk '$2 != $4 { print "step " $1 ": " $2 " skipping, " $4 " not"; exit }')
    bad "WEFT_SKIP=0: checkpoint differs from the skipping run's (first loss that differs: ${first:-none of the 100})"
  fi
fi

finish
