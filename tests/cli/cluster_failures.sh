#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# shellcheck disable=SC2016 # conditions are single-quoted on purpose: check() evals them
# Cluster failures: what `weft run` does when a worker is killed mid-run,
# stops answering (SIGSTOP), fails to compile its stage or is slow to
# compile, and when the run gets Ctrl-C; and that the cluster token keeps
# out a client or worker without it. Each failure must end the run with a
# non-zero exit within seconds, name the worker at fault, and leave no
# process of the run behind. The standalone round (coordinator, two
# workers, submit) must succeed, write a checkpoint and its metrics once,
# and leave the workers ready for the next job.
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
unset WEFT_TOKEN WEFT_TEST_FAIL_COMPILE WEFT_TEST_COMPILE_DELAY
tmp=$(mktemp -d)
. "$(dirname "$0")/procs.bash" # mine: every pid this test started (weft run, its workers, ...)
trap cleanup EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { if eval "$2"; then ok "$1"; else bad "$1"; return 1; fi; } # name, shell condition
show() { sed 's/^/    /' "$1"; }

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
le() { LC_ALL=C awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; } # float a <= b
# every limit below is the one on a quiet machine, scaled by its slowdown (procs.bash: scaled, wait_for)
wait_gone() { # SECONDS PID...: until none is alive (SECONDS scaled); fails if some still are
  local s=$1 p left=
  shift
  wait_for "$s" none_alive "$@" && return 0
  for p in "$@"; do alive "$p" && left="$left $p"; done
  echo "    still alive:$left" >&2
  return 1
}
has_kids() { [ "$(pgrep -P "$1" | wc -l)" -ge "$2" ] || ! alive "$1"; }
kids_of() { # PID N: waits (10 s at most, scaled) until PID has N children, prints them
  wait_for 10 has_kids "$1" "$2"
  pgrep -P "$1" | tr '\n' ' '
  echo
}
started_or_gone() { grep -q '"step"' "$1" 2>/dev/null || ! alive "$2"; }
wait_steps() { # METRICS PID: until training has started (a step line), 30 s at most (scaled)
  wait_for 30 started_or_gone "$1" "$2" && grep -q '"step"' "$1" 2>/dev/null
}
hb=$(scaled 2)      # the heartbeat timeout of the runs here
quick=$(scaled 10)  # a failure ends the run within this
worker_of_stage() { # ERRFILE STAGE: "WORKER PID" of the worker that compiled STAGE
  sed -nE "s/^ *worker ([0-9]+) \(stage $2, replica 0, pid ([0-9]+)\) compiled.*/\1 \2/p" "$1" | head -1
}

job() { # file, out, max_steps, batch, micro_batches
  cat >"$1" <<EOF
model = $SRC/examples/mlp.wf
data = $DATA
epochs = 1
batch = ${4:-64}
micro_batches = ${5:-2}
threads = 1
eval_batch = 1000
max_steps = $3
out = $2
EOF
}

# --- a. a worker killed mid-run -------------------------------------------
job "$tmp/a.job" "$tmp/a-out" 3000
"$WEFT" run "$tmp/a.job" --workers 2 --pp 2 --quiet >"$tmp/a.out" 2>"$tmp/a.err" &
rp=$!
mine+=("$rp")
kids=$(kids_of "$rp" 2)
mine+=($kids)
if wait_steps "$tmp/a-out/metrics.jsonl" "$rp"; then
  sleep "$(scaled 1)" # past a heartbeat, so the coordinator knows what the worker was doing
  read -r vw vp <<<"$(worker_of_stage "$tmp/a.err" 0)"
  if [ -n "${vp:-}" ] && [[ " $kids " == *" $vp "* ]]; then
    t0=$(now)
    kill -KILL "$vp"
    if wait_gone 10 "$rp"; then
      wait "$rp"
      rc=$?
      ok "kill -9 worker $vw (stage 0): weft run exits within $quick s ($(since "$t0") s)"
      check "kill -9: exit status non-zero ($rc)" '[ "$rc" -ne 0 ]'
      check "kill -9: the error names the dead worker" \
        'grep -qE "^weft run: error: .*worker $vw \(stage 0, replica 0, pid $vp\) died" "$tmp/a.err"' ||
        show "$tmp/a.err"
      check "kill -9: no process of the run is left" 'wait_gone 1 $kids'
    else
      bad "kill -9 worker $vw: weft run still running $quick s after the kill"
      show "$tmp/a.err"
    fi
  else
    bad "kill -9: cannot tell which child is the stage-0 worker (children: $kids)"
    show "$tmp/a.err"
  fi
else
  bad "kill -9: training never started"
  show "$tmp/a.err"
fi

# --- b. a worker that stops answering -------------------------------------
job "$tmp/b.job" "$tmp/b-out" 3000
"$WEFT" run "$tmp/b.job" --workers 2 --pp 2 --heartbeat-timeout "$hb" --quiet >"$tmp/b.out" 2>"$tmp/b.err" &
rp=$!
mine+=("$rp")
kids=$(kids_of "$rp" 2)
mine+=($kids)
if wait_steps "$tmp/b-out/metrics.jsonl" "$rp"; then
  sleep "$(scaled 1)"
  read -r vw vp <<<"$(worker_of_stage "$tmp/b.err" 1)"
  if [ -n "${vp:-}" ] && [[ " $kids " == *" $vp "* ]]; then
    t0=$(now)
    kill -STOP "$vp"
    if wait_gone 10 "$rp"; then
      wait "$rp"
      rc=$?
      ok "SIGSTOP worker $vw (stage 1), --heartbeat-timeout $hb: weft run exits within $quick s ($(since "$t0") s)"
      check "SIGSTOP: exit status non-zero ($rc)" '[ "$rc" -ne 0 ]'
      check "SIGSTOP: the error names the silent worker" \
        'grep -qE "^weft run: error: .*worker $vw \(stage 1, replica 0, pid $vp\) stopped answering" "$tmp/b.err"' ||
        show "$tmp/b.err"
      check "SIGSTOP: no process of the run is left (the stopped one included)" 'wait_gone 1 $kids'
    else
      bad "SIGSTOP worker $vw: weft run still running $quick s after the stop"
      show "$tmp/b.err"
    fi
    alive "$vp" && kill -CONT "$vp" 2>/dev/null
  else
    bad "SIGSTOP: cannot tell which child is the stage-1 worker (children: $kids)"
    show "$tmp/b.err"
  fi
else
  bad "SIGSTOP: training never started"
  show "$tmp/b.err"
fi

# --- c. a stage that fails to compile --------------------------------------
job "$tmp/c.job" "$tmp/c-out" 50
t0=$(now)
WEFT_TEST_FAIL_COMPILE=1 "$WEFT" run "$tmp/c.job" --workers 2 --pp 2 --quiet >"$tmp/c.out" 2>"$tmp/c.err" &
rp=$!
mine+=("$rp")
kids=$(kids_of "$rp" 2)
mine+=($kids)
if wait_gone 30 "$rp"; then
  wait "$rp"
  rc=$?
  check "compile failure: exit status non-zero ($rc), after $(since "$t0") s" '[ "$rc" -ne 0 ]'
  check "compile failure: the error says stage 1 failed to compile" \
    'grep -qE "^weft run: error: .*worker [0-9]+ \(stage 1, replica 0, pid [0-9]+\) failed to compile.*stage 1" "$tmp/c.err"' ||
    show "$tmp/c.err"
  check "compile failure: no training step ran" '! grep -q "\"step\"" "$tmp/c-out/metrics.jsonl" 2>/dev/null'
  check "compile failure: no checkpoint written" '[ ! -e "$tmp/c-out/checkpoint.safetensors" ]'
  check "compile failure: no process of the run is left (children: $kids)" 'wait_gone 1 $kids'
else
  bad "compile failure: weft run still running after $(scaled 30) s"
  show "$tmp/c.err"
fi

# --- d. a slow compile delays the start, and is not taken for a dead worker -
# (the compile takes 1.5 heartbeat timeouts: 3 s against 2 s on a quiet machine)
job "$tmp/d.job" "$tmp/d-out" 5
t0=$(now)
delay=$(scaled 3)
WEFT_TEST_COMPILE_DELAY=1:$delay timeout -k 5 "$(scaled 60)" "$WEFT" run "$tmp/d.job" --workers 2 --pp 2 \
  --heartbeat-timeout "$hb" --trace "$tmp/d-trace.json" --quiet >"$tmp/d.out" 2>"$tmp/d.err"
rc=$?
check "slow compile (stage 1 sleeps $delay s, heartbeat timeout $hb s): the run succeeds ($(since "$t0") s)" '[ "$rc" -eq 0 ]' ||
  show "$tmp/d.err"
x=$(sed -nE 's/.*every part compiled in ([0-9.]+) s.*/\1/p' "$tmp/d.err" | head -1)
check "slow compile: 'every part compiled in ${x:-?} s' counts the $delay s delay" '[ -n "$x" ] && le "$delay" "$x"'
check "slow compile: no F/B event before training starts (trace ts >= 0), all 5 steps ran" \
  'python3 - "$tmp/d-trace.json" <<EOF
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("cat") in ("F", "B")]
assert ev and min(e["ts"] for e in ev) >= 0, "an event before the start"
assert sorted({e["args"]["step"] for e in ev}) == list(range(5)), "steps"
EOF'
check "slow compile: checkpoint written" '[ -s "$tmp/d-out/checkpoint.safetensors" ]'

# --- e. Ctrl-C stops the run and every worker -----------------------------
job "$tmp/f.job" "$tmp/f-out" 3000
"$WEFT" run "$tmp/f.job" --workers 2 --pp 2 --quiet >"$tmp/f.out" 2>"$tmp/f.err" &
rp=$!
mine+=("$rp")
kids=$(kids_of "$rp" 2)
mine+=($kids)
if wait_steps "$tmp/f-out/metrics.jsonl" "$rp"; then
  t0=$(now)
  kill -INT "$rp"
  if wait_gone 10 "$rp"; then
    wait "$rp"
    rc=$?
    check "SIGINT to weft run: exits non-zero ($rc) within $quick s ($(since "$t0") s), says interrupted" \
      '[ "$rc" -ne 0 ] && grep -q "^weft run: error: .*interrupted" "$tmp/f.err"' || show "$tmp/f.err"
    check "SIGINT: no process of the run is left" 'wait_gone 1 $kids'
  else
    bad "SIGINT: weft run still running $quick s after it"
  fi
else
  bad "SIGINT: training never started"
  show "$tmp/f.err"
fi

# --- f. the cluster token; a standalone coordinator, workers, submit -------
port=
for _ in 1 2 3 4 5; do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$WEFT" coordinator --listen "127.0.0.1:$port" --token-file "$tmp/tok" >"$tmp/coord.out" 2>"$tmp/coord.err" &
  cp=$!
  mine+=("$cp")
  wait_for 5 eval 'grep -q "listening" "$tmp/coord.out" 2>/dev/null || ! alive "$cp"'
  grep -q "listening" "$tmp/coord.out" && break
  kill -KILL "$cp" 2>/dev/null
  wait "$cp" 2>/dev/null
  port=
done
if [ -z "$port" ]; then
  bad "coordinator: did not start listening"
  show "$tmp/coord.err"
else
  addr=127.0.0.1:$port
  ok "coordinator listening on $addr"
  check "coordinator: token file written, mode 600, hex" \
    '[ "$(stat -c %a "$tmp/tok")" = 600 ] && grep -qE "^[0-9a-f]{32,128}$" "$tmp/tok"'
  wrong=00112233445566778899aabbccddeeff
  WEFT_TOKEN=$wrong timeout "$(scaled 20)" "$WEFT" status --coordinator "$addr" >"$tmp/e.out" 2>"$tmp/e.err"
  rc=$?
  check "status with a wrong WEFT_TOKEN is refused (exit $rc)" \
    '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -qi "refused" "$tmp/e.err" && grep -qi "token" "$tmp/e.err"' ||
    show "$tmp/e.err"
  timeout "$(scaled 20)" "$WEFT" status --coordinator "$addr" --token-file "$tmp/nothere" >"$tmp/e.out" 2>"$tmp/e.err"
  rc=$?
  check "status without any token fails and says where it looked (exit $rc)" \
    '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "nothere" "$tmp/e.err"' || show "$tmp/e.err"
  WEFT_TOKEN=$wrong timeout "$(scaled 20)" "$WEFT" worker --coordinator "$addr" --once >"$tmp/e.out" 2>"$tmp/e.err"
  rc=$?
  check "worker with a wrong token is refused (exit $rc)" \
    '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -qi "refused" "$tmp/e.err" && grep -qi "token" "$tmp/e.err"' ||
    show "$tmp/e.err"
  timeout "$(scaled 20)" "$WEFT" status --coordinator "$addr" --token-file "$tmp/tok" >"$tmp/st0" 2>"$tmp/e.err"
  rc=$?
  check "status with the token file succeeds, no worker registered" \
    '[ "$rc" -eq 0 ] && grep -q "0 workers registered" "$tmp/st0"' || show "$tmp/st0"

  # two workers with the right token, then a job
  "$WEFT" worker --coordinator "$addr" --token-file "$tmp/tok" >"$tmp/w1.out" 2>"$tmp/w1.err" &
  w1=$!
  "$WEFT" worker --coordinator "$addr" --token-file "$tmp/tok" >"$tmp/w2.out" 2>"$tmp/w2.err" &
  w2=$!
  mine+=("$w1" "$w2")
  wait_for 10 eval '"$WEFT" status --coordinator "$addr" --token-file "$tmp/tok" >"$tmp/st1" 2>&1 && grep -q "2 idle" "$tmp/st1"'
  check "two workers registered and idle" 'grep -q "2 workers registered, 2 idle" "$tmp/st1"' || show "$tmp/st1"
  job "$tmp/e.job" "$tmp/e-out" 20
  t0=$(now)
  timeout -k 5 "$(scaled 60)" "$WEFT" submit "$tmp/e.job" --pp 2 --coordinator "$addr" --token-file "$tmp/tok" \
    >"$tmp/sub.out" 2>"$tmp/sub.err"
  rc=$?
  check "submit --pp 2 on two workers succeeds ($(since "$t0") s)" '[ "$rc" -eq 0 ] && grep -q "job 1 done" "$tmp/sub.out"' ||
    { show "$tmp/sub.out"; show "$tmp/sub.err"; }
  check "submit: checkpoint written" '[ -s "$tmp/e-out/checkpoint.safetensors" ]'
  check "submit: 20 step lines in metrics.jsonl" '[ "$(grep -c "^{\"step\"" "$tmp/e-out/metrics.jsonl")" -eq 20 ]'
  sleep 1 # the coordinator keeps serving: the job must not be finished (and reported) again
  n=$(grep -c '"event":"workers"' "$tmp/e-out/metrics.jsonl")
  check "submit: metrics.jsonl is complete when the job is done (has $n \"workers\" lines, want 1)" '[ "$n" -eq 1 ]'
  n=$(grep -c "job 1 done" "$tmp/coord.err")
  check "coordinator: reports the job's end once (its stderr has $n 'job 1 done' lines)" '[ "$n" -le 1 ]'
  check "the workers outlive the job" 'alive "$w1" && alive "$w2"' ||
    { show "$tmp/w1.err"; show "$tmp/w2.err"; }
  "$WEFT" status --coordinator "$addr" --token-file "$tmp/tok" >"$tmp/st2" 2>&1
  check "after the job: status shows the two workers idle" 'grep -q "2 workers registered, 2 idle" "$tmp/st2"' ||
    show "$tmp/st2"

  # the same workers take a second job
  if alive "$w1" && alive "$w2"; then
    job "$tmp/e2.job" "$tmp/e2-out" 10
    timeout -k 5 "$(scaled 30)" "$WEFT" submit "$tmp/e2.job" --pp 2 --coordinator "$addr" --token-file "$tmp/tok" \
      >"$tmp/sub2.out" 2>"$tmp/sub2.err"
    rc=$?
    check "a second submit on the same workers succeeds (exit $rc)" \
      '[ "$rc" -eq 0 ] && [ -s "$tmp/e2-out/checkpoint.safetensors" ]' || { show "$tmp/sub2.out"; show "$tmp/sub2.err"; }
  else
    bad "a second submit: skipped, the workers are gone"
  fi

  # stopping the coordinator stops its workers
  kill -TERM "$cp"
  if wait_gone 10 "$cp"; then
    wait "$cp"
    rc=$?
    check "coordinator: SIGTERM, exits 0 ($rc)" '[ "$rc" -eq 0 ]' || show "$tmp/coord.err"
  else
    bad "coordinator: still running $quick s after SIGTERM"
  fi
  check "workers exit when the coordinator goes" 'wait_gone 10 "$w1" "$w2"'
  n=$(grep -c '"event":"workers"' "$tmp/e-out/metrics.jsonl")
  check "coordinator: the job's summary is written once (metrics has $n \"workers\" lines)" '[ "$n" -eq 1 ]'
  wait "$w1" 2>/dev/null
  wait "$w2" 2>/dev/null
fi

echo "cluster_failures: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
