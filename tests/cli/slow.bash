# Sourced by the shell tests in tests/cli that start processes and wait for
# them (procs.bash sources it): a busy machine. How much slower than a quiet
# machine this one runs now is the factor a test's own deadlines, hang
# guards and heartbeat timeouts are multiplied by, so that no test fails
# only because other processes share the cores. On a quiet machine every
# limit is the one written in the test.
# WEFT_TEST_SLOW=F sets the factor; otherwise it is measured when this file
# is sourced: the wall time a CPU-bound probe takes over the CPU time it gets
# (1 on an idle machine, 1.5 on two cores with two CPU-bound processes beside
# it), or the 1-minute load average per core if that is larger (it sees the
# load that comes and goes); at least 1, at most 10.
#   slow               the factor ("1.5")
#   scaled SECONDS     SECONDS times the factor, rounded up to 0.1 s
#   wait_for SECONDS COMMAND...   runs COMMAND every 0.1 s until it succeeds;
#                      fails once scaled SECONDS of wall-clock time have passed
slowdown_measure() {
  python3 - <<'PYEOF'
import os, time
w0, c0 = time.perf_counter(), time.process_time()
while time.process_time() - c0 < 0.25:
    pass
share = (time.perf_counter() - w0) / (time.process_time() - c0)
cores = len(os.sched_getaffinity(0))
load = os.getloadavg()[0]
print(f"{min(10.0, max(1.0, share, load / cores)):.1f} (a CPU-bound probe ran {share:.2f}x its CPU time; "
      f"load average {load:.1f} on {cores} cores)")
PYEOF
}
if [[ "${WEFT_TEST_SLOW:-}" =~ ^[0-9]*[.]?[0-9]+$ ]] && LC_ALL=C awk -v f="$WEFT_TEST_SLOW" 'BEGIN { exit !(f > 0) }'; then
  slow=$WEFT_TEST_SLOW
  echo "slowdown factor $slow (WEFT_TEST_SLOW)"
else
  [ -z "${WEFT_TEST_SLOW:-}" ] || echo "WEFT_TEST_SLOW=$WEFT_TEST_SLOW is not a positive number: measuring the slowdown"
  slow_why=$(slowdown_measure) || slow_why="1.0 (not measured)"
  slow=${slow_why%% *}
  echo "slowdown factor $slow_why: waits and timeouts x $slow"
fi
scaled() { LC_ALL=C awk -v s="$1" -v f="$slow" 'BEGIN { x = s * f; r = int(x * 10 + 0.999) / 10; printf "%g\n", r }'; }
wait_for() {
  local until=$((${EPOCHREALTIME//[.,]/} + $(LC_ALL=C awk -v s="$(scaled "$1")" 'BEGIN { printf "%d", s * 1e6 }')))
  shift
  until "$@"; do
    [ "${EPOCHREALTIME//[.,]/}" -lt "$until" ] || return 1
    sleep 0.1
  done
}
