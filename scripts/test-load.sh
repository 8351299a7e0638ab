#!/usr/bin/env bash
# The multi-process tests on a busy machine (issue 18): the tests labelled
# `load` (tests/CMakeLists.txt: every multi-process test but distributed.sh;
# LOAD_LABEL=multiprocess runs them all) with two CPU-bound processes beside
# them (stress-ng --cpu 2), one test at a time; each must pass. The tests
# scale their own waits by the slowdown they measure (tests/cli/slow.bash).
# Usage: scripts/test-load.sh [BUILD]   (BUILD: the build folder, build by default)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
label=${LOAD_LABEL:-load}
cpus=${LOAD_CPUS:-2}
echo "=== test-load: ctest -L $label with stress-ng --cpu $cpus beside it ==="
command -v stress-ng >/dev/null || {
  echo "test-load: stress-ng is not installed (scripts/install-deps.sh installs it)"
  exit 1
}
# bounded: it ends by itself after 40 minutes if this script is killed before its trap runs
stress-ng --cpu "$cpus" --timeout 2400 --quiet &
sp=$!
trap 'kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null || true' EXIT
sleep 1 # its workers run before the first test measures the machine
t0=$SECONDS
rc=0
(cd "$build" && ctest -L "$label" --output-on-failure -j1) || rc=$?
if [ "$rc" -eq 0 ]; then
  echo "=== test-load: passed in $((SECONDS - t0)) s (stress-ng --cpu $cpus beside the tests) ==="
else
  echo "=== test-load: FAILED after $((SECONDS - t0)) s (stress-ng --cpu $cpus beside the tests) ==="
fi
exit "$rc"
