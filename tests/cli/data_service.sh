#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# The data service end to end (issue 5), on Fashion-MNIST, MLP, 2 epochs:
# - with a cache big enough, epoch 2 reads 0 bytes from the dataset files;
# - the same job with no cache, a cache too small (evictions), preprocessing on
#   the cpu pool, on the compute threads, or placed adaptively, and under
#   `weft run` with two data-parallel workers, writes a byte-identical final
#   checkpoint: every sample of every epoch reached training exactly once, with
#   the same bytes, whatever produced it;
# - a real redis-server (started here on a free loopback port) as the cache:
#   killed with SIGKILL in the middle of epoch 1, the job falls back to the
#   dataset, says so, and still ends byte-identical; two jobs with the same
#   preprocessing prefix share the server's entries, a different prefix gets
#   none; a server that is down from the start costs a warning, not the job;
# - a truncated dataset file is refused naming the file.
set -euo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
redis_pid=
stop_redis() { # SIGKILL, and reap it so that bash does not report it
  if [ -n "$redis_pid" ]; then
    kill -9 "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
    redis_pid=
  fi
}
cleanup() {
  stop_redis
  rm -rf "$tmp"
}
trap cleanup EXIT
. "$(dirname "$0")/check.bash"
. "$(dirname "$0")/slow.bash" # scaled, wait_for: the limits below, on a busy machine

XF='normalize(mean=0.286, std=0.353), crop(pad=2), flip(p=0.5)'
write_job() { # name, extra lines (EPOCHS=n to change the epochs)
  cat >"$tmp/$1.job" <<EOF2
model = $SRC/examples/mlp.wf
data = $DATA
data_stage = $tmp/stage
epochs = ${EPOCHS:-2}
batch = 500
seed = 11
optimizer = sgd
lr = 0.05
momentum = 0.9
threads = 1
out = $tmp/$1
transforms = "$XF"
$2
EOF2
}

train() { # name -> runs weft train on $tmp/name.job
  if ! timeout "$(scaled 120)" "$WEFT" train "$tmp/$1.job" --quiet >"$tmp/$1.log" 2>&1; then
    echo "weft train $1 failed:"
    tail -5 "$tmp/$1.log"
    return 1
  fi
}

# A field of the metrics line of epoch e: epoch_field name e field
epoch_field() {
  grep '"event":"epoch"' "$tmp/$1/metrics.jsonl" | sed -n "$2p" | grep -o "\"$3\":[^,}]*" | cut -d: -f2- | tr -d '"'
}

same_ckpt() { # name
  cmp -s "$tmp/ref/checkpoint.safetensors" "$tmp/$1/checkpoint.safetensors" || {
    echo "$1: checkpoint differs from the no-cache run"
    return 1
  }
}

# the reference: no cache, preprocessing on the cpu pool
write_job ref "cache = none
placement = cpu"
train ref
echo "reference: $(tail -1 "$tmp/ref.log")"

epoch2_reads_nothing() {
  write_job mem "cache = memory
placement = cpu"
  train mem || return 1
  local b1 b2 h2
  b1=$(epoch_field mem 1 data_bytes_read)
  b2=$(epoch_field mem 2 data_bytes_read)
  h2=$(epoch_field mem 2 cache_hit_rate)
  echo "  bytes read from the dataset by the end of epoch 1: $b1, of epoch 2: $b2; hit rate $h2"
  [ "$b1" -gt 0 ] && [ "$b1" = "$b2" ] && same_ckpt mem
}
check "memory cache: epoch 2 reads 0 bytes, checkpoint byte-identical" epoch2_reads_nothing

small_cache() {
  write_job small "cache = memory
cache_mb = 40"
  train small || return 1
  local ev
  ev=$(epoch_field small 2 cache_evictions)
  echo "  evictions: $ev"
  [ "$ev" -gt 0 ] && same_ckpt small
}
check "cache too small (evictions): byte-identical" small_cache

placement() { # placement
  write_job "p-$1" "placement = $1
loader_workers = 2"
  train "p-$1" || return 1
  echo "  $(epoch_field "p-$1" 2 placement_decision); batches cpu $(epoch_field "p-$1" 2 batches_cpu), device $(epoch_field "p-$1" 2 batches_device)"
  same_ckpt "p-$1"
}
check "placement device: byte-identical" placement device
check "placement auto: byte-identical" placement auto

layout() {
  write_job run "placement = device"
  if ! timeout "$(scaled 120)" "$WEFT" run "$tmp/run.job" --workers 2 --dp 2 --micro-batches 2 --quiet >"$tmp/run.log" 2>&1; then
    tail -5 "$tmp/run.log"
    return 1
  fi
  write_job refk2 "cache = none
micro_batches = 2"
  train refk2 || return 1
  cmp -s "$tmp/refk2/checkpoint.safetensors" "$tmp/run/checkpoint.safetensors" || {
    echo "weft run --dp 2 differs from weft train"
    return 1
  }
}
check "weft run dp=2 (placement device) = weft train (no cache)" layout

# ---- Redis ----
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_redis() {
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
  redis_pid=$!
  wait_for 5 eval 'redis-cli -p "$port" ping 2>/dev/null | grep -q PONG' && return 0
  echo "redis-server did not start"
  return 1
}
if ! command -v redis-server >/dev/null; then
  echo "FAIL redis-server is not installed (scripts/install-deps.sh installs it)"
  exit 1
fi
start_redis

redis_killed() {
  write_job rk "cache = \"redis://127.0.0.1:$port\""
  timeout "$(scaled 120)" "$WEFT" train "$tmp/rk.job" >"$tmp/rk.log" 2>&1 &
  local job=$!
  # kill the server once the job is in the middle of epoch 1 (step 40 of 120)
  wait_for 10 eval '[ "$(grep -c "\"step\"" "$tmp/rk/metrics.jsonl" 2>/dev/null)" -ge 40 ] || ! kill -0 $job 2>/dev/null'
  stop_redis
  local steps
  steps=$(grep -c '"step"' "$tmp/rk/metrics.jsonl")
  wait $job || {
    tail -5 "$tmp/rk.log"
    return 1
  }
  echo "  server killed after step $steps; $(grep -o 'warn.*' "$tmp/rk.log" | head -1)"
  # fallbacks by the end of epoch 1: the server died during it
  [ "$(epoch_field rk 1 cache_fallbacks)" -gt 0 ] && grep -q "127.0.0.1:$port" "$tmp/rk.log" && same_ckpt rk
}
check "redis killed mid-epoch: falls back, byte-identical" redis_killed

start_redis
shared() {
  # two jobs at once with the same preprocessing head (normalize) but other random ops and
  # another seed: the same cache id, each epoch in another order, so each finds what the other
  # has already put
  EPOCHS=1 write_job ja "cache = \"redis://127.0.0.1:$port\""
  EPOCHS=1 write_job jb "cache = \"redis://127.0.0.1:$port\""
  sed -i 's/^seed = 11/seed = 12/' "$tmp/jb.job"
  sed -i 's/crop(pad=2), flip(p=0.5)/flip(p=0.9)/' "$tmp/jb.job"
  train ja &
  local a=$!
  sleep 0.3
  train jb || return 1
  wait $a || return 1
  # then another head: no hits from the others
  EPOCHS=1 write_job jc "cache = \"redis://127.0.0.1:$port\""
  sed -i 's/mean=0.286/mean=0.5/' "$tmp/jc.job"
  train jc || return 1
  local ha hb hc
  ha=$(epoch_field ja 1 cache_hits)
  hb=$(epoch_field jb 1 cache_hits)
  hc=$(epoch_field jc 1 cache_hits)
  echo "  epoch-1 hits: job A $ha, job B (same head, run at the same time) $hb, job C (other head) $hc"
  [ $((ha + hb)) -ge 10000 ] && [ "$hc" -eq 0 ]
}
check "redis: same prefix shares entries, another prefix gets none" shared

down_from_start() {
  stop_redis
  write_job down "cache = \"redis://127.0.0.1:$port\""
  train down || return 1
  grep -q "127.0.0.1:$port" "$tmp/down.log" && same_ckpt down
}
check "redis down from the start: warned, byte-identical" down_from_start

truncated() {
  mkdir -p "$tmp/cut"
  gzip -dc "$DATA/train-images-idx3-ubyte.gz" | head -c 1000000 >"$tmp/cut/train-images-idx3-ubyte"
  gzip -dc "$DATA/train-labels-idx1-ubyte.gz" >"$tmp/cut/train-labels-idx1-ubyte"
  cp "$DATA"/t10k-* "$tmp/cut/"
  write_job cut ""
  sed -i "s|^data = .*|data = $tmp/cut|" "$tmp/cut.job"
  if timeout "$(scaled 60)" "$WEFT" train "$tmp/cut.job" >"$tmp/cut.log" 2>&1; then
    echo "a truncated dataset was accepted"
    return 1
  fi
  cat "$tmp/cut.log"
  grep -q "train-images-idx3-ubyte" "$tmp/cut.log" && grep -qi "truncated\|expects\|short" "$tmp/cut.log"
}
check "truncated dataset file refused, naming it" truncated

check_done data_service
