#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# The character language model (examples/charlm.wf) on token data, end to end:
#   - `weft tokenize` of the files in tests/ref/charlm_run/tokenize.txt gives
#     the very files the PyTorch reference read (tokens.sha256);
#   - `weft train` of charlm_run.job (100 steps, Adam, crossing an epoch
#     boundary) agrees with PyTorch (tools/ref/gen_charlm_run.py): every
#     step's loss within 1e-4 relative of losses.txt; its output carries the
#     epoch-end line (per-character test loss, a sample) at its one epoch end;
#   - `weft run --workers 2 --pp 2` of the same job, and `--workers 2 --dp 2`
#     of it with micro_batches 2, end byte-identical to `weft train` of the
#     same job (micro_batches 2's losses agree with PyTorch too);
#   - `weft sample` of the checkpoint prints the prompt and the same text for
#     the same seed, and refuses a prompt character the vocabulary lacks.
#
#   charlm.sh WEFT SRC
set -uo pipefail
WEFT=$1
SRC=$2
REF=$SRC/tests/ref/charlm_run
. "$(dirname "$0")/ref_job.bash"
TOL=1e-4
. "$(dirname "$0")/slow.bash"
LIMIT=$(scaled 120) # seconds for any one weft command (120 on a quiet machine)

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
finish() {
  echo "charlm: $pass passed, $fail failed"
  exit $((fail > 0))
}

for f in charlm_run.job init.safetensors losses.txt tokenize.txt tokens.sha256; do
  [ -f "$REF/$f" ] || { bad "$REF/$f is missing (run tools/ref/gen_charlm_run.py)"; finish; }
done
files=()
while IFS= read -r f; do
  [ -n "$f" ] || continue
  [ -f "$f" ] || { bad "$f is missing (install the fortunes package: scripts/install-deps.sh)"; finish; }
  files+=("$f")
done <"$REF/tokenize.txt"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT # every weft below runs in the foreground under timeout: nothing outlives the test

# ---- the data: the reference's very token files ----
REF_JOB=charlm_run.job
REF_GEN=tools/ref/gen_charlm_run.py
ref_tokenize "token files" "${files[@]}"

# ---- weft train against PyTorch ----
ref_write_job single
if ref_train single; then
  ref_compare_losses single
  # max_steps = 100 ends the run inside epoch 2: one epoch end
  n_lines=$(grep -c '^  test loss per character [0-9.]* nats = [0-9.]* bits; sample: "' "$tmp/single.log")
  [ "$n_lines" -eq 1 ] && ok "weft train prints the per-character loss and a sample at the epoch end" ||
    { bad "epoch-end sample lines: $n_lines, expected 1"; sed 's/^/    /' "$tmp/single.log"; }
  grep 'bits; sample' "$tmp/single.log" | sed 's/^/    /'
fi

# ---- weft run: byte-identical to weft train ----
# layout NAME REF WORKERS PP DP: weft run of $tmp/NAME.job ends with REF's checkpoint
layout() {
  local name=$1 ref=$2
  if ! timeout "$LIMIT" "$WEFT" run "$tmp/$name.job" --workers "$3" --pp "$4" --dp "$5" --quiet >"$tmp/$name.log" 2>&1; then
    bad "weft run --workers $3 --pp $4 --dp $5 exited non-zero:"
    tail -n 20 "$tmp/$name.log" | sed 's/^/    /'
  elif cmp -s "$tmp/$ref/checkpoint.safetensors" "$tmp/$name/checkpoint.safetensors"; then
    ok "weft run --workers $3 --pp $4 --dp $5: checkpoint byte-identical to weft train's"
  else
    bad "weft run --workers $3 --pp $4 --dp $5: checkpoint differs from weft train's"
  fi
}
if [ -f "$tmp/single/checkpoint.safetensors" ]; then
  ref_write_job pp2
  layout pp2 single 2 2 1
fi
ref_write_job mb2 micro_batches 2
if ref_train mb2; then
  ref_compare_losses mb2
  ref_write_job dp2 micro_batches 2
  layout dp2 mb2 2 1 2
fi

# ---- weft sample ----
ckpt=$tmp/single/checkpoint.safetensors
if [ -f "$ckpt" ]; then
  sample() { timeout "$LIMIT" "$WEFT" sample "$ckpt" "$@"; }
  if sample --prompt "The " --n 80 --seed 7 >"$tmp/s1" 2>"$tmp/s1.err" && sample --prompt "The " --n 80 --seed 7 >"$tmp/s2" 2>&1 &&
    cmp -s "$tmp/s1" "$tmp/s2" && [ "$(head -c 4 "$tmp/s1")" = "The " ] && [ "$(wc -c <"$tmp/s1")" -ge 84 ]; then
    ok "weft sample: the prompt and 80 characters, the same for the same seed"
    sed 's/^/    /' "$tmp/s1"
  else
    bad "weft sample:"
    sed 's/^/    /' "$tmp/s1" "$tmp/s1.err"
  fi
  sample --prompt "The " --n 80 --seed 8 >"$tmp/s3" 2>&1
  sample --n 80 --temperature 0 >"$tmp/g1" 2>&1 && sample --n 80 --temperature 0 --seed 9 >"$tmp/g2" 2>&1
  if ! cmp -s "$tmp/s1" "$tmp/s3" && cmp -s "$tmp/g1" "$tmp/g2"; then
    ok "weft sample: another seed draws another text; temperature 0 does not depend on the seed"
  else
    bad "weft sample: seeds 7 and 8 gave the same text, or temperature 0 depends on the seed"
  fi
  rc=0
  sample --prompt "naïve Ω" >"$tmp/u" 2>&1 || rc=$?
  if [ $rc -eq 1 ] && grep -q "error: the prompt has characters that .*vocab.txt.* does not hold: 'ï' (U+00EF), 'Ω' (U+03A9)" "$tmp/u"; then
    ok "weft sample: a prompt character the vocabulary lacks is refused, named"
  else
    bad "weft sample: unknown prompt characters (rc $rc):"
    sed 's/^/    /' "$tmp/u"
  fi
fi

finish
