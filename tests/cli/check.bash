# Sourced by the shell tests in tests/cli: pass/fail counting.
#   check NAME COMMAND...   runs COMMAND; prints "ok   NAME" or "FAIL NAME"
#   check_done TEST         prints the tally; returns non-zero if anything failed
pass=0
fail=0
check() {
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
check_done() {
  echo "$1: $pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
