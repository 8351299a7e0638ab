# Sourced by the multi-process shell tests in tests/cli: the processes a
# test started, and their end.
#   mine+=(PID...)   record every pid the test starts
#   alive PID        running (a zombie counts as gone) and a weft process
#   none_alive PID...  no PID is alive
#   trap cleanup EXIT  resumes and kills what is left of mine, removes $tmp
# and slow.bash: slow, scaled SECONDS, wait_for SECONDS COMMAND...
. "$(dirname "${BASH_SOURCE[0]}")/slow.bash"
mine=()
alive() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }
  s=${s%% *}
  [ "$s" != Z ] && [ "$s" != X ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q weft
}
none_alive() {
  local p
  for p in "$@"; do alive "$p" && return 1; done
  return 0
}
cleanup() {
  local p
  for p in "${mine[@]}"; do
    if alive "$p"; then
      kill -CONT "$p" 2>/dev/null
      kill -KILL "$p" 2>/dev/null
    fi
  done
  [ -z "${tmp:-}" ] || rm -rf "$tmp"
}
