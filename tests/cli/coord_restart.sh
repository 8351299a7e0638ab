#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# Coordinator restart (weft coordinator --journal FILE). An elastic pp=2 x
# dp=2 CNN job runs on four standalone workers; the coordinator is SIGKILLed
# twice mid-run and started again with the same journal, address and token.
# Each time the running workers (same pids) register again, the new
# coordinator takes the job over from their in-memory stage copies, and the
# job completes with a final checkpoint byte-identical to `weft train`. The
# submitter follows the job across the restarts; the metrics have every step
# line exactly once, samples.jsonl every step once; a torn journal tail is
# cut off; weft status shows the takeovers.
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
unset WEFT_TOKEN
tmp=$(mktemp -d)
. "$(dirname "$0")/check.bash"
. "$(dirname "$0")/cnn_job.bash"
. "$(dirname "$0")/procs.bash"
trap cleanup EXIT
STEPS=300

cnn_job "$tmp/job" "$tmp/out" "max_steps = $STEPS" "seed = 5" "checkpoint_every = 50"
sed "s|^out = .*|out = $tmp/ref|" "$tmp/job" >"$tmp/ref.job"
timeout "$(scaled 300)" "$WEFT" train "$tmp/ref.job" --quiet >"$tmp/ref.log" 2>&1 || { cat "$tmp/ref.log"; exit 1; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
journal=$tmp/coord.journal
n_coord=0
start_coordinator() { # the next coordinator on $addr with the journal; its pid in $cp
  n_coord=$((n_coord + 1))
  "$WEFT" coordinator --listen "$addr" --token-file "$tmp/tok" --journal "$journal" \
    >"$tmp/coord$n_coord.out" 2>"$tmp/coord$n_coord.err" &
  cp=$!
  mine+=("$cp")
  wait_for 10 listening_or_gone "$tmp/coord$n_coord.out" "$cp"
  grep -q "listening" "$tmp/coord$n_coord.out" 2>/dev/null && return 0
  cat "$tmp/coord$n_coord.err"
  return 1
}
listening_or_gone() { grep -q "listening" "$1" 2>/dev/null || ! alive "$2"; }
status() { timeout "$(scaled 10)" "$WEFT" status --coordinator "$addr" --token-file "$tmp/tok" 2>&1; }
steps_logged() {
  local n
  n=$(grep -c '^{"step"' "$tmp/out/metrics.jsonl" 2>/dev/null)
  echo "${n:-0}"
}
# wait_for SECONDS COMMAND... (procs.bash): until COMMAND succeeds, SECONDS scaled by the machine's slowdown
at_least() { [ "$(steps_logged)" -ge "$1" ]; }
in_set() { status | grep -q "^job 1: running, .*node set version $1,"; }

start_coordinator || { echo "coordinator did not start"; exit 1; }
check "coordinator 1: names its journal" grep -q "journal: $journal" "$tmp/coord1.out"
workers=()
for i in 1 2 3 4; do
  "$WEFT" worker --coordinator "$addr" --token-file "$tmp/tok" --reconnect "$(scaled 30)" >"$tmp/w$i.out" 2>"$tmp/w$i.err" &
  workers+=($!)
  mine+=($!)
done
wait_for 20 eval 'status | grep -q "4 workers registered"'
"$WEFT" submit "$tmp/job" --coordinator "$addr" --token-file "$tmp/tok" --workers 4 --pp 2 --dp 2 --nodes 2:4 \
  --heartbeat-timeout "$(scaled 2)" --snapshot-every 5 >"$tmp/sub.out" 2>"$tmp/sub.err" &
sp=$!
mine+=("$sp")

members() { status | sed -nE 's/^ *member rank ([0-9]+): .* pid ([0-9]+)$/\2/p' | sort -n | tr '\n' ' '; }
first=
if wait_for 120 at_least 40; then
  first=$(members)
  echo "    first set: pids $first"
  # --- 1. SIGKILL the coordinator mid-run; start it again -----------------------
  before=$(steps_logged)
  kill -KILL "$cp"
  wait "$cp" 2>/dev/null
  sleep 1
  n_alive=0
  for p in "${workers[@]}"; do alive "$p" && n_alive=$((n_alive + 1)); done
  check "coordinator killed at step ~$before: the 4 workers stay ($n_alive alive)" [ "$n_alive" -eq 4 ]
  check "the workers say they lost the coordinator and try again" \
    wait_for 5 grep -q "lost the coordinator" "$tmp/w1.err"
  check "coordinator 2: starts on the same address" start_coordinator
  check "coordinator 2: takes the job over from the journal" \
    wait_for 10 grep -q "taking over job 1" "$tmp/coord2.err"
  check "coordinator 2: the job runs again (node set 2)" wait_for 60 in_set 2
  second=$(members)
  check "the same worker processes run the job (pids $second)" [ "$second" = "$first" ]
  st=$(status)
  check "status: change 1 (takeover) with the restored step" \
    grep -qE "change 1 \(takeover\): the coordinator restarted .*set 1 -> 2, restored step [0-9]+ from peer copies" \
    <<<"$st" || echo "$st"
  # --- 2. a second time, with a torn last line in the journal ----------------------
  if wait_for 120 at_least $((before + 60)); then
    kill -KILL "$cp"
    wait "$cp" 2>/dev/null
    printf '0123456789abcdef step 99' >>"$journal" # a record cut off mid-line
    check "coordinator 3: starts on the same address" start_coordinator
    check "coordinator 3: cuts off the torn journal tail" \
      wait_for 10 grep -q "torn or corrupt; cut off" "$tmp/coord3.err"
    check "coordinator 3: takes the job over again" wait_for 10 grep -q "taking over job 1" "$tmp/coord3.err"
  else
    check "the job goes on after the first takeover" false
  fi
else
  check "the job starts on the four workers" false
  cat "$tmp/sub.err" "$tmp/coord1.err"
fi

# --- 3. the job completes: byte-identical, every step once ----------------------
wait_for 240 eval '! alive "$sp"'
alive "$sp" && kill -KILL "$sp"
wait "$sp"
rc=$?
check "submit follows the job across the restarts and exits 0 (exit $rc)" [ "$rc" -eq 0 ] ||
  { tail -5 "$tmp/sub.out"; cat "$tmp/sub.err"; }
check "submit said it watched again" grep -q "watching again" "$tmp/sub.err"
check "final checkpoint byte-identical to weft train" cmp "$tmp/out/checkpoint.safetensors" "$tmp/ref/checkpoint.safetensors"
st=$(status)
echo "$st" | sed 's/^/    /'
n_take=$(grep -c "(takeover)" <<<"$st")
check "status after the job: 2 takeovers in the history ($n_take)" [ "$n_take" -eq 2 ]
check "status: the last set runs on the first set's pids" \
  eval '[ "$(sed -nE "s/^ *set [0-9]+: .*pids (.*)$/\1/p" <<<"$st" | tail -1 | tr " " "\n" | sort -n | tr "\n" " " |
    sed "s/^ //")" = "$first" ]'
lines=$(grep -o '^{"step":[0-9]*' "$tmp/out/metrics.jsonl" | sort | uniq -c | awk '$1 != 1' | wc -l)
count=$(grep -c '^{"step"' "$tmp/out/metrics.jsonl")
check "metrics: $count step lines, each step once ($lines repeated)" [ "$count" -eq "$STEPS" -a "$lines" -eq 0 ]
check "metrics: takeover events" grep -q '"event":"takeover"' "$tmp/out/metrics.jsonl"
python3 - "$tmp/out/samples.jsonl" "$STEPS" <<'EOF' >"$tmp/samples.check" 2>&1
import json, sys
steps, seen = [], set()
for line in open(sys.argv[1]):
    r = json.loads(line)
    steps.append(r["step"])
    for i in r["ids"]:
        assert i not in seen, f"sample {i} in two steps"
        seen.add(i)
assert steps == list(range(1, int(sys.argv[2]) + 1)), "steps not 1..N once each"
print("ok", len(steps), "steps,", len(seen), "samples")
EOF
check "samples.jsonl: steps 1..$STEPS once, no sample twice ($(tail -1 "$tmp/samples.check"))" \
  grep -q "^ok" "$tmp/samples.check"
check "journal: the job's end recorded" eval 'tail -1 "$journal" | grep -q " end done$"'

# --- 4. a coordinator stopped on purpose stops its workers --------------------
kill -TERM "$cp"
check "coordinator: SIGTERM, exits" wait_for 10 eval '! alive "$cp"'
check "workers exit with it" wait_for 10 none_alive "${workers[@]}"

# --- 5. what cannot be taken over is said so -----------------------------------
# a job without --nodes (its workers do not wait), then an elastic job whose job
# file changed while the coordinator was down
journal=$tmp/coord2.journal
rm -rf "$tmp/out"
wait_job_steps() { # N: the job's metrics have N step lines
  wait_for 120 at_least "$1"
}
if check "coordinator 4: starts" start_coordinator; then
  workers=()
  for i in 5 6; do
    "$WEFT" worker --coordinator "$addr" --token-file "$tmp/tok" --reconnect "$(scaled 30)" >"$tmp/w$i.out" 2>"$tmp/w$i.err" &
    workers+=($!)
    mine+=($!)
  done
  "$WEFT" submit "$tmp/job" --coordinator "$addr" --token-file "$tmp/tok" --workers 2 --pp 2 --reconnect "$(scaled 10)" \
    >"$tmp/sub2.out" 2>"$tmp/sub2.err" &
  sp=$!
  mine+=("$sp")
  if wait_job_steps 10; then
    kill -KILL "$cp"
    wait "$cp" 2>/dev/null
    check "coordinator 5: starts" start_coordinator
    check "coordinator 5: a job without --nodes is reported, with its checkpoint" \
      wait_for 10 grep -q "was running without --nodes.*resume it from $tmp/out/checkpoint.safetensors" \
      "$tmp/coord$n_coord.err"
    check "journal: that job ended" eval 'tail -1 "$journal" | grep -q " end failed$"'
    wait_for 30 eval '! alive "$sp"'
    wait "$sp"
    rc=$?
    check "its submit ends non-zero, saying the coordinator has no such job (exit $rc)" \
      eval '[ "$rc" -ne 0 ] && grep -q "has no job" "$tmp/sub2.err"'
    # an elastic job on the same two workers, its job file edited while the coordinator is down
    rm -rf "$tmp/out"
    check "both workers registered again" wait_for 20 eval 'status | grep -q "2 workers registered, 2 idle"'
    "$WEFT" submit "$tmp/job" --coordinator "$addr" --token-file "$tmp/tok" --workers 2 --pp 2 --nodes 2:2 \
      --reconnect "$(scaled 10)" >"$tmp/sub3.out" 2>"$tmp/sub3.err" &
    sp=$!
    mine+=("$sp")
    if wait_job_steps 10; then
      kill -KILL "$cp"
      wait "$cp" 2>/dev/null
      sed -i 's/^lr = .*/lr = 0.002/' "$tmp/job"
      check "coordinator 6: starts" start_coordinator
      check "coordinator 6: refuses to take over a job whose file changed" \
        wait_for 10 grep -q "cannot be taken over: the job file or its model changed" "$tmp/coord$n_coord.err"
      wait_for 30 eval '! alive "$sp"'
      wait "$sp"
      rc=$?
      check "its submit ends non-zero (exit $rc)" [ "$rc" -ne 0 ]
    else
      check "the elastic job runs on the workers that registered again" false
    fi
  else
    check "a job without --nodes runs" false
  fi
  kill -TERM "$cp"
  check "coordinator 6 and its workers exit" wait_for 10 none_alive "$cp" "${workers[@]}"
fi
check_done coord_restart
