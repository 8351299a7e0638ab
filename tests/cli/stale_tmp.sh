#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# Stale temporaries: a `weft train` (or `weft run`) killed while writing its
# checkpoint leaves OUT/checkpoint.safetensors.tmp.PID behind. The next run
# of the job removes those of processes that are gone, says so on stderr,
# keeps a live process's, and its checkpoint is the same as that of a run
# that was never stopped.
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.bash"
. "$(dirname "$0")/slow.bash" # scaled: the hang guard below, on a busy machine

write_job() { # file, out
  cat >"$1" <<EOF
model = $SRC/examples/mlp.wf
data = $DATA
epochs = 1
batch = 32
seed = 3
optimizer = sgd
lr = 0.05
max_steps = 20
out = $2
EOF
}
dead_pid() { # the pid of a process that has exited
  bash -c 'echo $$'
}

write_job "$tmp/a.job" "$tmp/a"
write_job "$tmp/b.job" "$tmp/b"
"$WEFT" train "$tmp/a.job" --quiet >"$tmp/a.log" 2>&1 || cat "$tmp/a.log"
"$WEFT" train "$tmp/b.job" --quiet --stop-after 10 >"$tmp/b1.log" 2>&1 || cat "$tmp/b1.log"
check "first run wrote its checkpoint" test -s "$tmp/b/checkpoint.safetensors"

dead=$(dead_pid)
# a half-written checkpoint of a killed writer, and one of a writer still running (this shell)
head -c 100000 "$tmp/b/checkpoint.safetensors" >"$tmp/b/checkpoint.safetensors.tmp.$dead"
head -c 1000 "$tmp/b/checkpoint.safetensors" >"$tmp/b/checkpoint.safetensors.tmp.$$"
echo keep >"$tmp/b/notes.tmp.12abc"
mkdir "$tmp/b/sub" && echo keep >"$tmp/b/sub/x.tmp.$dead"
"$WEFT" train "$tmp/b.job" --resume --quiet >"$tmp/b2.log" 2>&1 || cat "$tmp/b2.log"
check "dead writer's temporary removed" test ! -e "$tmp/b/checkpoint.safetensors.tmp.$dead"
check "the removal is reported" grep -q "checkpoint.safetensors.tmp.$dead: removed a stale temporary file (100000 bytes) left by process $dead" "$tmp/b2.log"
check "live writer's temporary kept" test -e "$tmp/b/checkpoint.safetensors.tmp.$$"
check "other names and subfolders kept" test -e "$tmp/b/notes.tmp.12abc" -a -e "$tmp/b/sub/x.tmp.$dead"
check "resumed checkpoint = uninterrupted run's" cmp "$tmp/a/checkpoint.safetensors" "$tmp/b/checkpoint.safetensors"
check "the checkpoint evaluates" bash -c "\"$WEFT\" eval \"$tmp/b/checkpoint.safetensors\" >/dev/null"

# The coordinator (weft run) cleans its out folder too.
write_job "$tmp/c.job" "$tmp/c"
mkdir -p "$tmp/c"
dead=$(dead_pid)
echo partial >"$tmp/c/checkpoint.safetensors.tmp.$dead"
run_coord() {
  timeout "$(scaled 120)" "$WEFT" run "$tmp/c.job" --workers 1 --quiet >"$tmp/c.log" 2>&1 || { tail -5 "$tmp/c.log"; return 1; }
}
check "weft run finishes" run_coord
check "weft run removed the dead writer's temporary" test ! -e "$tmp/c/checkpoint.safetensors.tmp.$dead"
check "weft run: same checkpoint" cmp "$tmp/a/checkpoint.safetensors" "$tmp/c/checkpoint.safetensors"

check_done stale_tmp
