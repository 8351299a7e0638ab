#!/usr/bin/env bash
# ctest labels: multiprocess (not in the load set, where it would take 4 minutes: losses_layouts, pipeline_schedule and elastic run such layouts there)
# Distributed runs end bit for bit where one process ends: a short CNN job
# trained by `weft train` and by `weft run` with several pipeline x
# data-parallel layouts and both schedules writes byte-identical final
# checkpoints and reports the same test accuracy. Also: a split point that
# does not cut the graph is refused before anything starts.
set -euo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/cnn_job.bash"
. "$(dirname "$0")/check.bash"
. "$(dirname "$0")/slow.bash" # scaled: the hang guards below, on a busy machine

write_job() { cnn_job "$1" "$2" "max_steps = 8" "seed = 3" "$3"; } # file, out, extra lines

write_job "$tmp/single.job" "$tmp/single" ""
timeout "$(scaled 120)" "$WEFT" train "$tmp/single.job" --quiet >"$tmp/single.log" 2>&1
ref="$tmp/single/checkpoint.safetensors"
acc=$(grep -o 'test accuracy [0-9.]*%' "$tmp/single.log" | tail -1)
echo "single process: $acc"

layout() { # workers pp dp schedule
  local name="w$1-pp$2-dp$3-$4"
  write_job "$tmp/$name.job" "$tmp/$name" ""
  if ! timeout "$(scaled 120)" "$WEFT" run "$tmp/$name.job" --workers "$1" --pp "$2" --dp "$3" --schedule "$4" --quiet \
    >"$tmp/$name.log" 2>&1; then
    echo "weft run failed:"
    tail -5 "$tmp/$name.log"
    return 1
  fi
  cmp -s "$ref" "$tmp/$name/checkpoint.safetensors" || { echo "checkpoint differs"; return 1; }
  grep -q "$acc" "$tmp/$name.log" || { echo "accuracy differs: $(grep -o 'test accuracy [0-9.]*%' "$tmp/$name.log")"; return 1; }
}
check "pp=2 dp=2 1f1b byte-identical" layout 4 2 2 1f1b
check "pp=2 dp=2 gpipe byte-identical" layout 4 2 2 gpipe
check "pp=2 dp=1 1f1b byte-identical" layout 2 2 1 1f1b
check "pp=1 dp=2 byte-identical" layout 2 1 2 1f1b
check "pp=4 dp=1 gpipe byte-identical" layout 4 4 1 gpipe
check "pp=1 dp=3 byte-identical" layout 3 1 3 1f1b
check "pp=3 dp=1 1f1b byte-identical" layout 3 3 1 1f1b

# stopped after 4 of the 8 steps under one layout, resumed from its checkpoint under another:
# each stage loads its parameters and optimizer state by name and the feeders start at step 4
resumed() { # workers pp dp, then workers pp dp of the resumed run
  local name="resume-$2x$3-$5x$6"
  write_job "$tmp/$name-a.job" "$tmp/$name-a" ""
  sed -i 's/^max_steps = 8/max_steps = 4/' "$tmp/$name-a.job"
  timeout "$(scaled 120)" "$WEFT" run "$tmp/$name-a.job" --workers "$1" --pp "$2" --dp "$3" --quiet >"$tmp/$name-a.log" 2>&1 || {
    tail -5 "$tmp/$name-a.log"
    return 1
  }
  write_job "$tmp/$name-b.job" "$tmp/$name-b" ""
  local args=("$tmp/$name-b.job" --resume "$tmp/$name-a/checkpoint.safetensors") # JOB --resume CKPT
  [ "${CKPT_FIRST:-}" ] && args=(--resume "$tmp/$name-a/checkpoint.safetensors" "$tmp/$name-b.job")
  timeout "$(scaled 120)" "$WEFT" run "${args[@]}" --workers "$4" --pp "$5" --dp "$6" --quiet >"$tmp/$name-b.log" 2>&1 || {
    tail -5 "$tmp/$name-b.log"
    return 1
  }
  cmp -s "$ref" "$tmp/$name-b/checkpoint.safetensors" || { echo "resumed checkpoint differs"; return 1; }
  [ "$(grep -c '^{"step"' "$tmp/$name-b/metrics.jsonl")" -eq 4 ] || { echo "the resumed run did not start at step 4"; return 1; }
}
check "stopped at step 4 under pp=2 dp=2, resumed under pp=1 dp=3: byte-identical" resumed 4 2 2 3 1 3
CKPT_FIRST=1 check "stopped at step 4 under pp=1 dp=2, resumed under pp=3 dp=1 (--resume CKPT JOB): byte-identical" \
  resumed 2 1 2 3 3 1

# clipping by the global norm across stages (the coordinator adds the stages' parts in
# parameter order), with AdamW, dropout and skip connections
cat >"$tmp/clip.job" <<EOF2
model = $SRC/examples/resmlp.wf
data = $DATA
epochs = 1
max_steps = 12
batch = 32
micro_batches = 4
seed = 5
optimizer = adamw
lr = 0.003
weight_decay = 0.01
clip_norm = 0.5
threads = 1
out = $tmp/clip
EOF2
timeout "$(scaled 120)" "$WEFT" train "$tmp/clip.job" --quiet >/dev/null 2>&1
clip_layout() { # workers pp dp schedule
  local name="clip-w$1-pp$2-dp$3-$4"
  sed "s#^out = .*#out = $tmp/$name#" "$tmp/clip.job" >"$tmp/$name.job"
  timeout "$(scaled 120)" "$WEFT" run "$tmp/$name.job" --workers "$1" --pp "$2" --dp "$3" --schedule "$4" --quiet \
    >"$tmp/$name.log" 2>&1 || { tail -5 "$tmp/$name.log"; return 1; }
  cmp -s "$tmp/clip/checkpoint.safetensors" "$tmp/$name/checkpoint.safetensors"
}
check "clip_norm, pp=2 dp=2 byte-identical" clip_layout 4 2 2 1f1b
check "clip_norm, pp=3 dp=1 gpipe byte-identical" clip_layout 3 3 1 gpipe

# explicit split points in the job; one that does not cut the graph is refused
write_job "$tmp/split.job" "$tmp/split" "split = [p1]"
check "split = [p1] byte-identical" bash -c "timeout $(scaled 120) '$WEFT' run '$tmp/split.job' --workers 2 --quiet >/dev/null 2>&1 && cmp -s '$ref' '$tmp/split/checkpoint.safetensors'"
cat >"$tmp/res.job" <<EOF2
model = $SRC/examples/resmlp.wf
data = $DATA
batch = 32
micro_batches = 2
split = [b1b]
out = $tmp/res
EOF2
refused() {
  local out rc=0
  out=$(timeout "$(scaled 60)" "$WEFT" run "$tmp/res.job" --workers 2 2>&1) || rc=$?
  [ $rc -ne 0 ] && echo "$out" | grep -q "split point 'b1b' does not cut the graph: layer 's1'" &&
    ! ls "$tmp/res/checkpoint.safetensors" 2>/dev/null
}
check "a split point that does not cut the graph is refused" refused

check_done distributed
