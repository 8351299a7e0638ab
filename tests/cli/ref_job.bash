# Sourced by the shell tests in tests/cli that rerun a committed reference job
# (torch_run.sh, torch_losses.sh, charlm.sh): the job as it runs from anywhere,
# and the step-by-step comparison of its losses with PyTorch's.
#   ref_job JOB OUT   prints JOB with its model, data and init paths made absolute
#                     (a relative one is relative to JOB's folder), its `out` line
#                     dropped and out = OUT added
ref_job() {
  local refdir line key val
  refdir=$(cd "$(dirname "$1")" && pwd)
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*(model|data|init)[[:space:]]*=[[:space:]]*([^[:space:]#]+)(.*)$ ]]; then
      key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
      [[ $val == /* ]] || val=$refdir/$val
      printf '%s = "%s"\n' "$key" "$val"
    elif [[ $line =~ ^[[:space:]]*out[[:space:]]*= ]]; then
      :
    else
      printf '%s\n' "$line"
    fi
  done <"$1"
  printf 'out = "%s"\n' "$2"
}

# loss_cmp GOT WANT RUN TOL STEPS: "STEP LOSS" lines of weft (GOT) against the reference's (WANT) for
# steps 1..STEPS within TOL relative; prints a FAIL line per step off, a summary, and "PASS FAIL" last
loss_cmp() {
  awk -v tol="$4" -v steps="$5" -v run="$3" '
    function abs(v) { return v < 0 ? -v : v }
    FILENAME == ARGV[1] { got[$1] = $2; next }
    { want[$1] = $2 }
    END {
      pass = 0; fail = 0; maxrel = 0; maxstep = 1
      for (s = 1; s <= steps; s++) {
        if (!(s in want)) { printf "FAIL %s step %d: no reference loss\n", run, s; fail++; continue }
        if (!(s in got)) { printf "FAIL %s step %d: missing from metrics.jsonl (torch %s)\n", run, s, want[s]; fail++; continue }
        rel = want[s] != 0 ? abs(got[s] - want[s]) / abs(want[s]) : abs(got[s])
        if (!(rel <= maxrel)) { maxrel = rel; maxstep = s }
        if (!(rel <= tol)) {
          printf "FAIL %s step %d: weft %s torch %s rel %.3g > %g\n", run, s, got[s], want[s], rel, tol; fail++
        } else pass++
      }
      printf "%s: %d steps, max relative loss difference %.3g (step %d: weft %s torch %s), tolerance %g\n",
             run, steps, maxrel, maxstep, got[maxstep], want[maxstep], tol
      print pass, fail
    }' "$1" "$2"
}
