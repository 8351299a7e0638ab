#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# Composed losses run distributed bit for bit: the L2-penalised MLP (a
# penalty on fc2's weights, a constant, an accuracy metric) and the
# autoencoder (mse against its own input, no labels) trained by `weft train`
# and by `weft run` as pp=2 x dp=2, pp=2 and dp=2 end with byte-identical
# checkpoints. Every command runs under a timeout in its own process group,
# and nothing of that group may outlive it.
#   losses_layouts.sh WEFT SRC
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
pgroups=()
cleanup() {
  local g
  for g in "${pgroups[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
. "$(dirname "$0")/slow.bash" # scaled, wait_for: the limits below, on a busy machine
. "$(dirname "$0")/check.bash"

# bounded SECONDS LOG COMMAND...: runs COMMAND under timeout (which leads a
# process group of its own: weft run's workers are in it); fails if COMMAND
# fails or times out, or if any process of the group is left 5 s after it
# (both limits scaled by the machine's slowdown).
bounded() {
  local secs log=$2 rc
  secs=$(scaled "$1")
  shift 2
  timeout -k 5 "$secs" "$@" >"$log" 2>&1 &
  local pg=$!
  pgroups+=("$pg")
  wait "$pg"
  rc=$?
  wait_for 5 eval "! pgrep -g $pg >/dev/null"
  if pgrep -g "$pg" >/dev/null; then
    echo "left running after '$*': $(pgrep -a -g "$pg" | tr '\n' ';')"
    return 1
  fi
  [ $rc -eq 124 ] && echo "timed out after $secs s: $*"
  [ $rc -eq 0 ] || tail -5 "$log"
  return $rc
}

write_job() { # FILE MODEL OUT
  cat >"$1" <<EOF
model = $2
data = $DATA
epochs = 1
batch = 64
micro_batches = 4
max_steps = 20
optimizer = adam
lr = 0.001
seed = 3
threads = 1
eval_batch = 2500
out = $3
EOF
}

single() { # NAME MODEL
  write_job "$tmp/$1.job" "$2" "$tmp/$1"
  bounded 120 "$tmp/$1.log" "$WEFT" train "$tmp/$1.job" --quiet || return 1
  [ -s "$tmp/$1/checkpoint.safetensors" ] || { echo "no checkpoint"; return 1; }
  local n
  n=$(grep -c '"step":' "$tmp/$1/metrics.jsonl")
  [ "$n" -eq 20 ] || { echo "metrics has $n step lines, want 20"; return 1; }
}

layout() { # NAME MODEL WORKERS PP DP
  local run="$1-w$3-pp$4-dp$5"
  write_job "$tmp/$run.job" "$2" "$tmp/$run"
  bounded 150 "$tmp/$run.log" "$WEFT" run "$tmp/$run.job" --workers "$3" --pp "$4" --dp "$5" --micro-batches 4 \
    --quiet || return 1
  cmp "$tmp/$1/checkpoint.safetensors" "$tmp/$run/checkpoint.safetensors"
}

for name in l2mlp autoenc; do
  model=$SRC/examples/$name.wf
  if check "$name: weft train, 20 steps of batch 64 in 4 micro-batches" single "$name" "$model"; then
    check "$name: weft run pp=2 dp=2 byte-identical" layout "$name" "$model" 4 2 2
    check "$name: weft run pp=2 byte-identical" layout "$name" "$model" 2 2 1
    check "$name: weft run dp=2 byte-identical" layout "$name" "$model" 2 1 2
  fi
done

left=""
for g in "${pgroups[@]}"; do pgrep -g "$g" >/dev/null && left="$left $g"; done
check "every process started has ended" test -z "$left"

check_done losses_layouts
