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

# The token-data replays (charlm.sh, fortune_ref.sh) share the rest. They set REF (the reference
# folder), REF_JOB (its job file name), REF_GEN (the script that wrote it), tmp, WEFT, LIMIT and TOL,
# and define ok, bad and finish.
#   ref_tokenize WHAT FILE... [-- OPTION...]   weft tokenize FILEs into $tmp/data and checks the files
#                                              against $REF/tokens.sha256 (finishes the test on failure)
#   ref_write_job NAME [KEY VALUE]...          $tmp/NAME.job: the committed job with data $tmp/data and
#                                              out $tmp/NAME, model and init absolute, each KEY set to VALUE
#   ref_train NAME [ENV...]                    weft train $tmp/NAME.job (with ENV), output in $tmp/NAME.log
#   ref_compare_losses NAME                    every step's loss of $tmp/NAME against $REF/losses.txt
ref_tokenize() {
  local what=$1 files=() opts=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do files+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  opts=("$@")
  if ! timeout "$LIMIT" "$WEFT" tokenize "${files[@]}" --out "$tmp/data" "${opts[@]}" >"$tmp/tokenize.log" 2>&1; then
    bad "weft tokenize ${opts[*]} failed:"
    sed 's/^/    /' "$tmp/tokenize.log"
    finish
  fi
  if (cd "$tmp/data" && sha256sum --quiet -c "$REF/tokens.sha256") >"$tmp/sha.log" 2>&1; then
    ok "weft tokenize ${opts[*]} makes the $what the reference read"
  else
    bad "the $what differ from the reference's (weft tokenize changed? rerun $REF_GEN):"
    sed 's/^/    /' "$tmp/sha.log"
    finish
  fi
}

ref_write_job() {
  local name=$1 refdir line key val
  shift
  refdir=$(cd "$REF" && pwd)
  while IFS= read -r line; do
    if [[ $line =~ ^[[:space:]]*(model|init)[[:space:]]*=[[:space:]]*([^[:space:]#]+)(.*)$ ]]; then
      key=${BASH_REMATCH[1]} val=${BASH_REMATCH[2]}
      [[ $val == /* ]] || val=$refdir/$val
      printf '%s = "%s"\n' "$key" "$val"
    elif [[ ! $line =~ ^[[:space:]]*(data|out)[[:space:]]*= ]]; then
      printf '%s\n' "$line"
    fi
  done <"$REF/$REF_JOB" >"$tmp/$name.job"
  printf 'data = "%s"\nout = "%s"\n' "$tmp/data" "$tmp/$name" >>"$tmp/$name.job"
  while [ $# -ge 2 ]; do
    sed -i "s/^$1 = .*/$1 = $2/" "$tmp/$name.job"
    shift 2
  done
}

ref_train() {
  local name=$1
  shift
  if env "$@" timeout "$LIMIT" "$WEFT" train "$tmp/$name.job" >"$tmp/$name.log" 2>&1; then return 0; fi
  bad "weft train $name exited non-zero; job and output:"
  sed 's/^/    /' "$tmp/$name.job" "$tmp/$name.log"
  return 1
}

ref_compare_losses() {
  local name=$1 out p f
  sed -n 's/^{"step":\([0-9]*\),.*"loss":\([^,}]*\).*/\1 \2/p' "$tmp/$name/metrics.jsonl" >"$tmp/$name.loss"
  out=$(loss_cmp "$tmp/$name.loss" "$REF/losses.txt" "$name" "$TOL" "$(wc -l <"$REF/losses.txt")")
  echo "$out" | sed '$d'
  read -r p f <<<"$(echo "$out" | tail -n 1)"
  pass=$((pass + p))
  fail=$((fail + f))
}
