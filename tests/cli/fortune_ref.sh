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
if ! timeout $LIMIT "$WEFT" tokenize "${files[@]}" --out "$tmp/data" --classes file >"$tmp/tokenize.log" 2>&1; then
  bad "weft tokenize --classes file failed:"
  sed 's/^/    /' "$tmp/tokenize.log"
  finish
fi
if (cd "$tmp/data" && sha256sum --quiet -c "$REF/tokens.sha256") >"$tmp/sha.log" 2>&1; then
  ok "weft tokenize --classes file makes the token and class files the reference read"
else
  bad "the token or class files differ from the reference's (weft tokenize changed? rerun tools/ref/gen_fortune_class_run.py):"
  sed 's/^/    /' "$tmp/sha.log"
  finish
fi

# The committed job: data the folder made above, model and init absolute, out
# in $tmp. job NAME writes $tmp/NAME.job.
refdir=$(cd "$REF" && pwd)
job() {
  local name=$1 line key val
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*(model|init)[[:space:]]*=[[:space:]]*([^[:space:]#]+)(.*)$ ]]; then
      key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
      [[ $val == /* ]] || val=$refdir/$val
      printf '%s = "%s"\n' "$key" "$val"
    elif [[ $line =~ ^[[:space:]]*(data|out)[[:space:]]*= ]]; then
      :
    else
      printf '%s\n' "$line"
    fi
  done <"$REF/fortune_class_run.job" >"$tmp/$name.job"
  printf 'data = "%s"\nout = "%s"\n' "$tmp/data" "$tmp/$name" >>"$tmp/$name.job"
}

# train NAME [ENV...]: weft train $tmp/NAME.job (with the environment ENV), its output in $tmp/NAME.log
train() {
  local name=$1
  shift
  if env "$@" timeout $LIMIT "$WEFT" train "$tmp/$name.job" >"$tmp/$name.log" 2>&1; then return 0; fi
  bad "weft train $name exited non-zero; job and output:"
  sed 's/^/    /' "$tmp/$name.job" "$tmp/$name.log"
  return 1
}

# compare_losses NAME: every step of $tmp/NAME/metrics.jsonl against losses.txt
compare_losses() {
  local name=$1 out p f
  sed -n 's/^{"step":\([0-9]*\),.*"loss":\([^,}]*\).*/\1 \2/p' "$tmp/$name/metrics.jsonl" >"$tmp/$name.loss"
  out=$(loss_cmp "$tmp/$name.loss" "$REF/losses.txt" "$name" "$TOL" "$(wc -l <"$REF/losses.txt")")
  echo "$out" | sed '$d'
  read -r p f <<<"$(echo "$out" | tail -n 1)"
  pass=$((pass + p))
  fail=$((fail + f))
}

# ---- weft train against PyTorch ----
job skip
if train skip; then
  compare_losses skip
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
job noskip
if [ -f "$tmp/skip/checkpoint.safetensors" ] && train noskip WEFT_SKIP=0; then
  if cmp -s "$tmp/skip/checkpoint.safetensors" "$tmp/noskip/checkpoint.safetensors"; then
    ok "WEFT_SKIP=0: checkpoint byte-identical to the skipping run's"
  else
    compare_losses noskip
    sed -n 's/^{"step":\([0-9]*\),.*"loss":\([^,}]*\).*/\1 \2/p' "$tmp/noskip/metrics.jsonl" >"$tmp/noskip.loss"
    first=$(paste -d ' ' "$tmp/skip.loss" "$tmp/noskip.loss" | awk '$2 != $4 { print "step " $1 ": " $2 " skipping, " $4 " not"; exit }')
    bad "WEFT_SKIP=0: checkpoint differs from the skipping run's (first loss that differs: ${first:-none of the 100})"
  fi
fi

finish
