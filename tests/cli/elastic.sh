#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# ctest timeout: 1500 (10 minutes and more when the machine is busy; under 4 when it is quiet)
# Elastic training (weft run --nodes MIN:MAX). Workers are SIGKILLed at
# random moments, one is SIGSTOPped past the heartbeat timeout and new
# workers join while a pp=2 x dp=2 CNN job runs; it must finish with a final
# checkpoint byte-identical to `weft train`, the surviving worker processes
# must be the same ones (same pids) throughout, every sample id must go into
# exactly one optimizer step, and `weft status` must show the node sets and
# recoveries while it runs (weft run prints them at the end). Also: losing
# the only holder of a pipeline stage (pp=2 -> pp=1), holding below MIN until
# a worker joins, and the cap on recoveries.
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
unset WEFT_TOKEN
tmp=$(mktemp -d)
. "$(dirname "$0")/check.bash"
. "$(dirname "$0")/cnn_job.bash"
. "$(dirname "$0")/procs.bash" # mine: every pid this test started (weft run, its workers, ...)
trap cleanup EXIT
seed=${ELASTIC_SEED:-$RANDOM}
RANDOM=$seed
echo "random seed $seed (ELASTIC_SEED=$seed reproduces the kill order)"

write_job() { cnn_job "$1" "$2" "max_steps = $3" "seed = 3" "checkpoint_every = 50"; } # file out max_steps

status() { # OUT: weft status of the run writing to OUT
  WEFT_TOKEN=$(cat "$1/weft-token" 2>/dev/null) timeout "$(scaled 10)" "$WEFT" status --coordinator "$(cat "$1/coordinator" 2>/dev/null)" 2>&1
}
members() { # OUT: "rank pid" per member of the current set
  status "$1" | sed -nE 's/^ *member rank ([0-9]+): .* pid ([0-9]+)$/\1 \2/p'
}
running() { # OUT RUNPID: the run is still training
  alive "$2" && status "$1" | grep -q "^job 1: running"
}
ended() { ! alive "$1"; }
steps() { # OUT: step lines in the metrics
  local n
  n=$(grep -c '^{"step"' "$1/metrics.jsonl" 2>/dev/null)
  echo "${n:-0}"
}
running_or_gone() { running "$1" "$2" || ended "$2"; }
wait_running() { # OUT RUNPID [SECONDS]: until the job runs (a set compiled and started), 60 s at most (scaled)
  wait_for "${3:-60}" running_or_gone "$1" "$2" && alive "$2"
}
steps_or_gone() { [ "$(steps "$1")" -ge "$3" ] || ended "$2"; }
wait_steps() { # OUT RUNPID N: until N step lines are in the metrics, 60 s at most (scaled)
  wait_for 60 steps_or_gone "$1" "$2" "$3" && [ "$(steps "$1")" -ge "$3" ]
}
add_members() { # OUT: every member's pid into mine
  local r p
  while read -r r p; do mine+=("$p"); done < <(members "$1")
}
join_worker() { # OUT: starts a new worker for the run; its pid in $joined
  WEFT_TOKEN=$(cat "$1/weft-token") "$WEFT" worker --coordinator "$(cat "$1/coordinator")" >>"$tmp/joined.log" 2>&1 &
  joined=$!
  mine+=("$joined")
}
start_run() { # NAME MAX_STEPS WEFT-RUN-OPTIONS...: a fresh job NAME under weft run, in the background;
  # its folder in $out, the pid of weft run in $rp, its stderr in $tmp/NAME.err
  local name=$1 steps=$2
  shift 2
  out=$tmp/$name
  write_job "$tmp/$name.job" "$out" "$steps"
  "$WEFT" run "$tmp/$name.job" --heartbeat-timeout "$hb" --quiet "$@" >/dev/null 2>"$tmp/$name.err" &
  rp=$!
  mine+=("$rp")
}
started() { # STEPS: the run trains and has logged STEPS steps; its workers' pids are in mine
  wait_running "$out" "$rp" && wait_steps "$out" "$rp" "$1" && add_members "$out"
}
pid_of_rank() { members "$out" | awk -v r="$1" '$1 == r {print $2}'; }
finish() { # RUNPID SECONDS: waits for weft run (SECONDS scaled); its exit status in $rc
  local p=$1 killed=
  if ! wait_for "$2" ended "$p"; then
    kill -KILL "$p"
    killed=1
  fi
  wait "$p"
  rc=$?
  [ -z "$killed" ] || rc=124
}
same() { cmp -s "$1" "$2" || { echo "    checkpoints differ: $1 $2"; return 1; }; }

# the heartbeat timeout of every run here, and how long the hung worker stays stopped: 2 s and
# 3.5 s on a quiet machine, scaled together on a busy one
hb=$(scaled 2)
stop_s=$(scaled 3.5)

# the reference: one process, nothing fails
write_job "$tmp/ref.job" "$tmp/ref" 600
timeout "$(scaled 300)" "$WEFT" train "$tmp/ref.job" --quiet >"$tmp/ref.log" 2>&1 || { cat "$tmp/ref.log"; exit 1; }
ref=$tmp/ref/checkpoint.safetensors

# --- 1. chaos: pp=2 x dp=2, three SIGKILLs, a SIGSTOP, two joins -----------------
start_run chaos 600 --workers 4 --pp 2 --dp 2 --nodes 1:4 --settle 1 --snapshot-every 5
declare -A gone=() stopped=() # pids killed or stopped; the stopped one (it may register again as a new worker)
start_pids=
events=0
if started 20; then
  start_pids=$(members "$out" | awk '{print $2}' | sort | tr '\n' ' ')
  echo "    first set: pids $start_pids"
  kill_random() {
    local m r p
    wait_running "$out" "$rp" 30 || return 1
    m=$(members "$out")
    [ -n "$m" ] || return 1
    r=$((RANDOM % $(wc -l <<<"$m") + 1))
    read -r rank p <<<"$(sed -n "${r}p" <<<"$m")"
    sleep "0.$((RANDOM % 10))"
    echo "    SIGKILL rank $rank (pid $p) at step $(steps "$out")"
    kill -KILL "$p" && gone[$p]=1 && events=$((events + 1))
  }
  kill_random
  kill_random
  wait_running "$out" "$rp" 30 && sleep 1 # a join while the set trains: it grows at a step boundary
  join_worker "$out"
  echo "    joined: pid $joined"
  first_join=$joined
  # it joins the set at a step boundary once it has been registered for --settle (1 s)
  in_members() { members "$out" | grep -q " $1\$"; }
  wait_for 10 in_members "$first_join"
  # a hang: SIGSTOP past the heartbeat timeout ($hb s); resumed, it finds itself dropped: a worker of
  # weft run (--once) exits, one started with weft worker registers again as a new worker
  if wait_running "$out" "$rp" 30; then
    m=$(members "$out")
    read -r rank p <<<"$(sed -n "$((RANDOM % $(wc -l <<<"$m") + 1))p" <<<"$m")"
    echo "    SIGSTOP rank $rank (pid $p) for $stop_s s (heartbeat timeout $hb s)"
    kill -STOP "$p" && gone[$p]=1 && stopped[$p]=1 && events=$((events + 1))
    sleep "$stop_s"
    kill -CONT "$p"
  fi
  status "$out" >"$tmp/chaos.status"
  kill_random
  join_worker "$out"
  echo "    joined: pid $joined"
fi
finish "$rp" 480 # 600 steps and four recoveries: minutes on a busy machine
cat "$tmp/chaos.err" >>"$tmp/chaos.log"
check "chaos: weft run completes (exit $rc)" [ "$rc" -eq 0 ] || tail -20 "$tmp/chaos.err"
check "chaos: 3 SIGKILLs and a SIGSTOP happened while it trained ($events)" [ "$events" -ge 4 ]
check "chaos: final checkpoint byte-identical to weft train" same "$ref" "$out/checkpoint.safetensors"
acc=$(grep -o 'test accuracy [0-9.]*%' "$tmp/ref.log" | tail -1)
check "chaos: same test accuracy ($acc)" grep -q "$acc" "$tmp/chaos.err"
# the survivors are the processes that started (their pids never change); the final set holds them all
final=$(grep -E '^ *set [0-9]+:' "$tmp/chaos.err" | tail -1 | sed 's/.*pids //')
survivors_kept() {
  local p
  for p in $start_pids; do
    [ "${gone[$p]:-}" ] && continue
    [[ " $final " == *" $p "* ]] || { echo "    pid $p survived but is not in the last set ($final)"; return 1; }
  done
  for p in $final; do
    [ "${gone[$p]:-}" ] && [ -z "${stopped[$p]:-}" ] && { echo "    pid $p was killed but is in the last set"; return 1; }
  done
  return 0
}
check "chaos: surviving workers keep their pids (last set: $final)" survivors_kept
check "chaos: status during the run shows set versions and a recovery" \
  grep -qE '^ *set 2: .*pids' "$tmp/chaos.status"
grep -qE '^ *change 1 \(recovery\): .*died' "$tmp/chaos.status" || sed 's/^/    /' "$tmp/chaos.status"
check "chaos: status names the dead worker in change 1" grep -qE '^ *change 1 \(recovery\): .*died' "$tmp/chaos.status"
nrec=$(grep -cE '^ *change [0-9]+ \(recovery\): .*took' "$tmp/chaos.err")
check "chaos: the final history has >= 4 recoveries with their times ($nrec)" [ "$nrec" -ge 4 ]
check "chaos: the worker that joined trains in a later set" grep -qE "^ *set [0-9]+: .*pids.* ${first_join:-x}( |\$)" "$tmp/chaos.err"
check "chaos: the set grew at a step boundary after the join, nothing done again" \
  grep -qE '^ *change [0-9]+ \(scale-up\): 1 worker joined; .*, 0 steps done again' "$tmp/chaos.err"
check "chaos: the metrics record the recoveries" [ "$(grep -c '"event":"recovery"' "$out/metrics.jsonl")" -ge 4 ]
check "chaos: the hung worker was detected by heartbeat" grep -q 'stopped answering (no heartbeat' "$tmp/chaos.err"
check "chaos: steps done again gave the same loss" \
  bash -c "! grep -q 'done again gave loss' '$tmp/chaos.err'"
# sample accounting, from the runtime's record of every optimizer step
accounting() { # OUT STEPS BATCH MIN_SETS
  python3 - "$1/samples.jsonl" "$2" "$3" "$4" <<'EOF'
import json, sys
path, steps, batch, min_sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(path)]
got = [r["step"] for r in rows]
assert got == list(range(1, steps + 1)), f"steps recorded: {len(got)}, want 1..{steps} once each"
seen = {}
for r in rows:
    assert len(r["ids"]) == batch, f"step {r['step']}: {len(r['ids'])} ids"
    for i in r["ids"]:
        key = (r["epoch"], i)
        assert key not in seen, f"sample {i} of epoch {r['epoch']} in steps {seen[key]} and {r['step']}"
        seen[key] = r["step"]
sets = sorted({r["set"] for r in rows})
print(f"    {len(rows)} steps, {len(seen)} samples each in exactly one step, committed by node sets {sets}")
assert len(sets) >= min_sets, f"expected steps committed by {min_sets} node sets or more"
EOF
}
check "chaos: every sample id went into exactly one optimizer step" accounting "$out" 600 48 3
# shellcheck disable=SC2086 # $start_pids splits on purpose
left() { # none of the processes is alive a second (scaled) after weft run ended
  local p
  wait_for 1 none_alive $start_pids "${mine[@]}" && return 0
  for p in $start_pids "${mine[@]}"; do alive "$p" && echo "    pid $p alive"; done
  return 1
}
check "chaos: no process of the run is left" left

# --- 2. the only holder of a stage is lost: pp=2 -> pp=1 on the survivor ------------
write_job "$tmp/ref300.job" "$tmp/ref300" 300
timeout "$(scaled 300)" "$WEFT" train "$tmp/ref300.job" --quiet >"$tmp/ref300.log" 2>&1
start_run merge 300 --workers 2 --pp 2 --dp 1 --nodes 1:2 --snapshot-every 5
if started 40; then
  p=$(pid_of_rank 1)
  echo "    SIGKILL the only stage-1 worker (pid $p)"
  kill -KILL "$p"
fi
finish "$rp" 180
check "pp=2 -> pp=1: completes (exit $rc)" [ "$rc" -eq 0 ] || tail -5 "$tmp/merge.err"
check "pp=2 -> pp=1: the new set has one stage" grep -qE '^ *set 2: 1 stages x 1 replicas' "$tmp/merge.err"
check "pp=2 -> pp=1: stage 1 restored from the copy its peer kept" \
  grep -q '"event":"recovery".*"source":"peers"' "$out/metrics.jsonl"
check "pp=2 -> pp=1: byte-identical" same "$tmp/ref300/checkpoint.safetensors" "$out/checkpoint.safetensors"
check "pp=2 -> pp=1: samples exactly once" accounting "$out" 300 48 2

# --- 2b. no peer copy of that stage survives: the checkpoint on disk -----------------
start_run disk 300 --workers 2 --pp 2 --dp 1 --nodes 1:2 --snapshot-every 1000
started 70 && kill -KILL "$(pid_of_rank 1)"
finish "$rp" 180
check "disk: completes (exit $rc)" [ "$rc" -eq 0 ] || tail -5 "$tmp/disk.err"
check "disk: restored from the last checkpoint (step 50 or later), steps done again" \
  grep -qE '"event":"recovery".*"restored_step":([5-9][0-9]|[1-9][0-9][0-9]),"source":"checkpoint","replayed_steps":[1-9]' \
  "$out/metrics.jsonl"
check "disk: byte-identical" same "$tmp/ref300/checkpoint.safetensors" "$out/checkpoint.safetensors"

# --- 3. below MIN the job holds, and goes on when a worker joins ---------------------
start_run hold 300 --workers 2 --pp 1 --dp 2 --nodes 2:2 --settle 1
held=
if started 40; then
  kill -KILL "$(pid_of_rank 1)"
  holding() { status "$out" | grep -q '^job 1: holding'; }
  wait_for 5 holding && held=1
  status "$out" >"$tmp/hold.status"
  sleep 1
  n1=$(steps "$out")
  sleep 1
  n2=$(steps "$out")
  join_worker "$out"
fi
check "hold: status says the job holds below MIN" [ -n "$held" ]
check "hold: the status line names the minimum" grep -q 'min 2, max 2.*below the minimum' "$tmp/hold.status"
check "hold: no step while holding (${n1:-?} then ${n2:-?})" [ "${n1:-0}" -eq "${n2:-1}" ]
finish "$rp" 180
check "hold: resumes when a worker joins and completes (exit $rc)" [ "$rc" -eq 0 ] || tail -5 "$tmp/hold.err"
check "hold: the metrics record the hold" grep -q '"event":"hold"' "$out/metrics.jsonl"
check "hold: byte-identical" same "$tmp/ref300/checkpoint.safetensors" "$out/checkpoint.safetensors"

# --- 4. more failures than the cap: the job fails with its history ------------------
start_run cap 600 --workers 3 --pp 1 --dp 3 --nodes 1:3 --max-recoveries 1
if started 20; then
  kill -KILL "$(pid_of_rank 2)"
  wait_steps "$out" "$rp" 60 && wait_running "$out" "$rp" 30
  kill -KILL "$(pid_of_rank 1)"
fi
finish "$rp" 60
check "cap: the second failure within the hour fails the job (exit $rc)" [ "$rc" -ne 0 ]
check "cap: the error gives the cap and the history" grep -qE 'the cap is 1.*change 1: .*died' "$tmp/cap.err" ||
  tail -3 "$tmp/cap.err"

check_done elastic
