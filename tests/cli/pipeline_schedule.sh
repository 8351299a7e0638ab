#!/usr/bin/env bash
# ctest labels: multiprocess load (tests/CMakeLists.txt)
# Pipeline schedules as the workers really run them: for S = 2, 3, 4 stages
# and K = 1, S-1, S, 2S+1 micro-batches, `weft run --schedule 1f1b --trace`
# must show each stage s running, in every step, min(S-1-s, K) warm-up
# forwards, then F j / B j alternating, then the remaining backwards (F and
# B each in micro-batch order); the workers' peak of live activations
# (metrics.jsonl, max_live) must equal that schedule's peak, min(S-s, K).
# One GPipe run (S=3, K=4): every F before every B, K live. The stages are
# cut automatically from examples/mlp.wf (five cut points: enough for 4).
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
unset WEFT_TEST_FAIL_COMPILE WEFT_TEST_COMPILE_DELAY
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
crashed=
. "$(dirname "$0")/slow.bash" # scaled: the hang guard below, on a busy machine
limit=$(scaled 60)

cat >"$tmp/check.py" <<'EOF'
"""check.py TRACE METRICS S K SCHED STEPS: the trace and max_live follow the schedule."""
import json
import sys

trace, metrics, S, K, sched, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6])


def expected(s):
    if sched == "gpipe":
        return [("F", j) for j in range(K)] + [("B", j) for j in range(K)]
    warm = max(0, min(S - 1 - s, K))
    ev = [("F", j) for j in range(warm)]
    f, b = warm, 0
    while f < K:
        ev += [("F", f), ("B", b)]
        f += 1
        b += 1
    ev += [("B", j) for j in range(b, K)]
    return ev


def peak(ev):
    live = top = 0
    for kind, _ in ev:
        live += 1 if kind == "F" else -1
        top = max(top, live)
    return top


errors = []
lines = [json.loads(l) for l in open(metrics) if l.strip()]
summ = [l for l in lines if l.get("event") == "workers"]
nsteps = sum(1 for l in lines if "step" in l and "event" not in l)
if nsteps != steps:
    errors.append(f"metrics.jsonl has {nsteps} step lines, want {steps}")
if len(summ) != 1:
    errors.append(f"metrics.jsonl has {len(summ)} 'workers' lines, want 1")
    workers = summ[-1]["workers"] if summ else []
else:
    workers = summ[0]["workers"]
if sorted(w["worker"] for w in workers) != list(range(S)):
    errors.append(f"'workers' line lists workers {[w['worker'] for w in workers]}, want 0..{S - 1}")
stage_of = {w["worker"]: w["stage"] for w in workers}
if sorted(stage_of.values()) != list(range(S)):
    errors.append(f"stages of the workers are {stage_of}, want each of 0..{S - 1} once")

events = json.load(open(trace))["traceEvents"]
for w in workers:
    s, wi = w["stage"], w["worker"]
    want = expected(s)
    mine = [e for e in events if e.get("pid") == wi and e.get("cat") in ("F", "B")]
    got_steps = sorted({e["args"]["step"] for e in mine})
    if got_steps != list(range(steps)):
        errors.append(f"worker {wi}: F/B events of steps {got_steps}, want 0..{steps - 1}")
    for step in range(steps):
        got = [(e["cat"], e["args"]["mb"]) for e in mine if e["args"]["step"] == step]
        names = [e["name"] for e in mine if e["args"]["step"] == step]
        if any(n != f"{c}{m}" for n, (c, m) in zip(names, got)):
            errors.append(f"worker {wi} step {step}: event names {names} do not match cat+mb")
        if got != want:
            fmt = lambda ev: " ".join(f"{c}{m}" for c, m in ev)
            errors.append(f"worker {wi} (stage {s}) step {step}: ran  {fmt(got)}\n      schedule says {fmt(want)}")
        if sched == "gpipe":
            kinds = [c for c, _ in got]
            if "F" in kinds and "B" in kinds and kinds.index("B") < len(kinds) - 1 - kinds[::-1].index("F"):
                errors.append(f"worker {wi} step {step}: a B before the last F under gpipe")
    bound = K if sched == "gpipe" else min(S - s, K)
    if w["max_live"] > bound:
        errors.append(f"worker {wi} (stage {s}): max_live {w['max_live']} > bound {bound}")
    if w["max_live"] != peak(want):
        errors.append(f"worker {wi} (stage {s}): max_live {w['max_live']} != schedule peak {peak(want)}")
# data dependencies across stages (one clock for every process on a machine):
# F j of stage s+1 starts after F j of stage s ended, B j of stage s after B j of stage s+1
by = {(e["pid"], e["cat"], e["args"]["step"], e["args"]["mb"]): e for e in events if e.get("cat") in ("F", "B")}
worker_of = {s: w for w, s in stage_of.items()}
for step in range(steps):
    for s in range(S - 1):
        a, b = worker_of.get(s), worker_of.get(s + 1)
        for j in range(K):
            for cat, first, then in (("F", a, b), ("B", b, a)):
                e1, e2 = by.get((first, cat, step, j)), by.get((then, cat, step, j))
                if e1 and e2 and e2["ts"] + 1 < e1["ts"] + e1["dur"]:
                    errors.append(f"step {step}: {cat}{j} on worker {then} starts before {cat}{j} on worker {first} ends")
for e in errors:
    print("    " + e)
sys.exit(1 if errors else 0)
EOF

case_run() { # SCHED S K
  local sched=$1 S=$2 K=$3 steps=2
  local name="$sched S=$S K=$K" d="$tmp/$1-$2-$3"
  mkdir -p "$d"
  cat >"$d/job" <<EOF
model = $SRC/examples/mlp.wf
data = $DATA
epochs = 1
batch = $((K * 8))
micro_batches = $K
threads = 1
eval_batch = 1000
max_steps = $steps
out = $d/out
EOF
  local t0=$SECONDS
  timeout -k 5 "$limit" "$WEFT" run "$d/job" --workers "$S" --pp "$S" --micro-batches "$K" --schedule "$sched" \
    --trace "$d/trace.json" --quiet >"$d/out.txt" 2>"$d/err.txt"
  local rc=$?
  if grep -qE "double free|corruption|AddressSanitizer|runtime error|Segmentation fault|core dumped" "$d/err.txt"; then
    crashed="$crashed [$name]"
  fi
  if [ "$rc" -ne 0 ]; then
    bad "$name: weft run exit $rc$([ "$rc" -eq 124 ] && echo " (hung: killed after $limit s)")"
    sed 's/^/    /' "$d/err.txt"
    return
  fi
  if ! grep -q "^job 1: $S stages x 1 replica, $K micro-batches, $sched" "$d/err.txt"; then
    bad "$name: the run does not say it ran $S stages, $K micro-batches, $sched"
    sed 's/^/    /' "$d/err.txt"
    return
  fi
  if "$PY" "$tmp/check.py" "$d/trace.json" "$d/out/metrics.jsonl" "$S" "$K" "$sched" "$steps" >"$d/check.txt" 2>&1; then
    ok "$name: each stage ran the schedule in both steps, in dependency order; max_live = schedule peak ($((SECONDS - t0)) s)"
  else
    bad "$name:"
    cat "$d/check.txt"
  fi
}

for S in 2 3 4; do
  for K in $(printf '%s\n' 1 $((S - 1)) "$S" $((2 * S + 1)) | sort -n -u); do
    case_run 1f1b "$S" "$K"
  done
done
case_run gpipe 3 4

if [ -z "$crashed" ]; then
  ok "no worker crashed in any run"
else
  bad "a worker crashed (glibc/sanitizer abort on its stderr) in:$crashed"
fi

echo "pipeline_schedule: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
