# Sourced by the shell tests in tests/cli that rerun a committed reference job
# (torch_run.sh, torch_losses.sh): the job as it runs from anywhere.
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
