#!/usr/bin/env bash
# ctest labels: multiprocess
# --max-memory SIZE and WEFT_MAX_MEMORY (issue 18, "limits that fail early
# and clearly"): a model that needs more than SIZE is refused before anything
# is allocated, with one line naming --max-memory, the sizes and the largest
# tensors; a generous SIZE trains; a malformed SIZE is refused naming the
# option (or variable) and the text. `weft check`, `weft train`, and `weft
# run`, whose workers get the limit through WEFT_MAX_MEMORY.
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.bash"

cat >"$tmp/mlp.job" <<EOF
model = $SRC/examples/mlp.wf
data = $DATA
epochs = 1
batch = 32
max_steps = 5
out = $tmp/out
EOF

# run EXPECTED_EXIT COMMAND...: stdout and stderr in $tmp/out.txt and $tmp/err.txt, true if the exit is EXPECTED_EXIT
run() {
  local want=$1
  shift
  "$@" >"$tmp/out.txt" 2>"$tmp/err.txt"
  local rc=$?
  [ "$rc" -eq "$want" ] || { echo "  exit $rc, want $want; stderr:"; sed 's/^/    /' "$tmp/err.txt"; return 1; }
}
err_has() { grep -qE -- "$1" "$tmp/err.txt" || { echo "  stderr lacks /$1/:"; sed 's/^/    /' "$tmp/err.txt"; return 1; }; }
one_line() { [ "$(grep -c . "$tmp/err.txt")" -eq 1 ] || { echo "  stderr is not one line:"; sed 's/^/    /' "$tmp/err.txt"; return 1; }; }
fast() { [ $(($(date +%s) - t0)) -le 5 ] || { echo "  took over 5 s"; return 1; }; }

# train: the activations of a batch of 32 (227 KiB) do not fit 1 KiB
t0=$(date +%s)
check "train --max-memory 1K is refused, naming --max-memory and the largest values" \
  eval 'run 1 "$WEFT" train "$tmp/mlp.job" --max-memory 1K && one_line && fast &&
        err_has "^weft train: error: .*mlp.wf: activations need [0-9.]+ KiB, more than the --max-memory of 1 KiB; largest values: x f32\[32, 784\] 98 KiB, fc1 f32\[32, 256\] 32 KiB, h1 f32\[32, 256\] 32 KiB$"'
check "nothing was written" test ! -e "$tmp/out/checkpoint.safetensors"
# 2M holds the activations, not the parameters with their gradients (269322 floats x 2 = 2.05 MiB)
check "train --max-memory 2M is refused, naming the largest parameters" \
  eval 'run 1 "$WEFT" train "$tmp/mlp.job" --max-memory 2M && one_line &&
        err_has "the parameters, their gradients and optimizer state need 2.05 MiB, more than the --max-memory of 2 MiB; largest parameters: fc1.weight f32\[256, 784\] 784 KiB, fc2.weight f32\[256, 256\] 256 KiB, fc3.weight f32\[10, 256\] 10 KiB$"'
check "train --max-memory 1G trains" \
  eval 'run 0 "$WEFT" train "$tmp/mlp.job" --max-memory 1G --quiet && grep -q "^step 5: " "$tmp/out.txt"'
check "WEFT_MAX_MEMORY=1K is the default, named as such" \
  eval 'run 1 env WEFT_MAX_MEMORY=1K "$WEFT" train "$tmp/mlp.job" && one_line &&
        err_has "more than the --max-memory \(WEFT_MAX_MEMORY\) of 1 KiB; largest values: x "'
check "--max-memory overrides WEFT_MAX_MEMORY" \
  eval 'run 0 env WEFT_MAX_MEMORY=1K "$WEFT" train "$tmp/mlp.job" --max-memory 512M --quiet'
check "--max-memory 0 means none" eval 'run 0 env WEFT_MAX_MEMORY=1K "$WEFT" train "$tmp/mlp.job" --max-memory 0 --quiet'

# malformed sizes: exit 2, the option or variable and the text named
check "train --max-memory 2X is refused" \
  eval 'run 2 "$WEFT" train "$tmp/mlp.job" --max-memory 2X && one_line &&
        err_has "^weft train: error: --max-memory: '\''2X'\'' is not a size: want a number of bytes, optionally followed by K, M, G or T \(powers of 1024\), e.g. 512M or 2G$"'
check "train --max-memory 1.5G is refused" \
  eval 'run 2 "$WEFT" train "$tmp/mlp.job" --max-memory 1.5G && err_has "--max-memory: '\''1.5G'\'' is not a size"'
check "train --max-memory without a value is refused" \
  eval 'run 2 "$WEFT" train "$tmp/mlp.job" --max-memory && err_has "--max-memory needs a size"'
check "a size past 2^64 is refused" \
  eval 'run 2 "$WEFT" check "$SRC/examples/mlp.wf" --max-memory 99999999999T &&
        err_has "--max-memory: '\''99999999999T'\'' is too large: at most 2\^64 - 1 bytes"'
check "WEFT_MAX_MEMORY=lots is refused" \
  eval 'run 2 env WEFT_MAX_MEMORY=lots "$WEFT" train "$tmp/mlp.job" && one_line &&
        err_has "^weft train: error: WEFT_MAX_MEMORY: '\''lots'\'' is not a size"'

# check: the same refusals from the plan (batch 1), without a dataset
check "check --max-memory 1K is refused" \
  eval 'run 1 "$WEFT" check "$SRC/examples/mlp.wf" --max-memory 1K && one_line &&
        err_has "^weft check: error: .*mlp.wf: activations need 7.25 KiB, more than the --max-memory of 1 KiB; largest values: x f32\[1, 784\] 3.06 KiB"'
check "check --max-memory 2M is refused for the parameters and their gradients" \
  eval 'run 1 "$WEFT" check "$SRC/examples/mlp.wf" --max-memory 2M &&
        err_has "the parameters and their gradients need 2.05 MiB, more than the --max-memory of 2 MiB; largest parameters: fc1.weight f32\[256, 784\] 784 KiB"'
check "check --max-memory 16M passes and says so" \
  eval 'run 0 "$WEFT" check "$SRC/examples/mlp.wf" --max-memory 16M &&
        grep -q "^memory: within the --max-memory of 16 MiB" "$tmp/out.txt"'
check "check without a limit does not mention one" \
  eval 'run 0 "$WEFT" check "$SRC/examples/mlp.wf" && ! grep -q "^memory:" "$tmp/out.txt"'

# run: the workers inherit the limit (WEFT_MAX_MEMORY); the stage's refusal fails the job
t0=$(date +%s)
check "run --max-memory 1K fails the job, naming --max-memory" \
  eval 'run 1 "$WEFT" run "$tmp/mlp.job" --workers 1 --quiet --max-memory 1K &&
        err_has "^weft run: error: .*failed to compile its sub-graph: .*activations need [0-9.]+ KiB, more than the --max-memory \(WEFT_MAX_MEMORY\) of 1 KiB; largest values: x f32\[32, 784\]"'
check "run --max-memory 1G trains" \
  eval 'run 0 "$WEFT" run "$tmp/mlp.job" --workers 1 --quiet --max-memory 1G && test -s "$tmp/out/checkpoint.safetensors"'
check "run --max-memory 2X is refused before starting anything" \
  eval 'run 2 "$WEFT" run "$tmp/mlp.job" --workers 1 --max-memory 2X && one_line && err_has "^weft run: error: --max-memory: '\''2X'\''"'
check "worker --max-memory 2X is refused" \
  eval 'run 2 "$WEFT" worker --coordinator 127.0.0.1:1 --max-memory 2X && one_line && err_has "^weft worker: error: --max-memory: '\''2X'\''"'
check "the usage texts name --max-memory" \
  eval '"$WEFT" train --help | grep -q -- --max-memory && "$WEFT" check --help | grep -q -- --max-memory &&
        "$WEFT" run --help | grep -q -- --max-memory && "$WEFT" worker --help | grep -q -- --max-memory &&
        "$WEFT" --help | grep -q WEFT_MAX_MEMORY'
check_done max_memory
