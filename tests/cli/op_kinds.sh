#!/usr/bin/env bash
# The op table is the only place that knows the built-in ops: no source
# file under src/ but src/graph/ops_*.c and src/graph/op_table.c names an
# op kind (WF_OP_*), and the executor, autodiff, the memory planner and the
# partitioner never dispatch on an op themselves (a switch on an op, an op
# field compared with a constant, a built-in op looked up by its name).
# Comments are not code and are skipped. Every finding is printed as
# file:line: text. The rule is proved to bite: a copy of the tree with
# WF_OP_RELU (and a switch, and a comparison) injected into it must fail.
#   op_kinds.sh WEFT SRC     (WEFT is unused; the arguments of every cli test)
set -uo pipefail
SRC=$2

# Prints FILE with comments blanked (line numbers kept): /* ... */ across
# lines and // to the end of the line. String literals holding comment
# markers are not expected in these files.
uncomment() {
  awk '{
    out = ""; s = $0
    while (s != "") {
      if (incom) {
        k = index(s, "*/")
        if (!k) { s = ""; break }
        s = substr(s, k + 2); incom = 0
      } else {
        a = index(s, "/*"); b = index(s, "//")
        if (b && (!a || b < a)) { out = out substr(s, 1, b - 1); s = ""; break }
        if (!a) { out = out s; s = ""; break }
        out = out substr(s, 1, a - 1) " "; s = substr(s, a + 2); incom = 1
      }
    }
    print out
  }' "$1"
}

# scan TREE: prints "op_kinds: FILE:LINE: WHAT: TEXT" for each finding; returns
# the number of findings (capped at 255 by the shell).
scan() {
  local tree=$1 n=0 f rel line text
  local -a files
  mapfile -t files < <(cd "$tree" && find src -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort)
  if [ "${#files[@]}" -eq 0 ]; then
    echo "op_kinds: no sources under $tree/src"
    return 1
  fi
  for rel in "${files[@]}"; do
    case "$rel" in
    src/graph/ops_*.c | src/graph/op_table.c) continue ;;
    esac
    while IFS=: read -r line text; do
      echo "op_kinds: $rel:$line: names a built-in op kind: ${text#"${text%%[![:space:]]*}"}"
      n=$((n + 1))
    done < <(uncomment "$tree/$rel" | grep -nE '\bWF_OP_[A-Z]')
  done
  local cons='([A-Z_][A-Z0-9_]*|[0-9]+)'
  local cmp='(==|!=|<=|>=|<|>)'
  for rel in src/exec/executor.c src/graph/autodiff.c src/compile/plan.c src/compile/partition.c; do
    f="$tree/$rel"
    if [ ! -f "$f" ]; then
      echo "op_kinds: $rel is missing"
      n=$((n + 1))
      continue
    fi
    while IFS=: read -r line text; do
      echo "op_kinds: $rel:$line: switches on an op: ${text#"${text%%[![:space:]]*}"}"
      n=$((n + 1))
    done < <(uncomment "$f" | grep -nE 'switch[[:space:]]*\((.*[^A-Za-z0-9_])?op[[:space:]]*\)')
    while IFS=: read -r line text; do
      echo "op_kinds: $rel:$line: compares an op with a constant: ${text#"${text%%[![:space:]]*}"}"
      n=$((n + 1))
    done < <(uncomment "$f" | grep -nE "(->|\.)op[[:space:]]*${cmp}[[:space:]]*${cons}\b|\b${cons}[[:space:]]*${cmp}[[:space:]]*[A-Za-z_][][A-Za-z0-9_().>-]*(->|\.)op\b")
    while IFS=: read -r line text; do
      echo "op_kinds: $rel:$line: looks up a built-in op by name: ${text#"${text%%[![:space:]]*}"}"
      n=$((n + 1))
    done < <(uncomment "$f" | grep -nE 'wf_op_find[[:space:]]*\([[:space:]]*"')
  done
  return $((n > 255 ? 255 : n))
}

if [ -n "${OP_KINDS_SCAN_ONLY:-}" ]; then
  scan "$SRC"
  exit $?
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/check.bash"

clean() {
  local out rc=0
  out=$(OP_KINDS_SCAN_ONLY=1 timeout 60 bash "$0" - "$SRC" 2>&1) || rc=$?
  [ -n "$out" ] && echo "$out"
  [ $rc -eq 0 ]
}
check "no op kind named outside the op table; no op dispatch in executor, autodiff, planner, partitioner" clean

# The same script on a copy with violations injected, at known lines.
mkdir -p "$tmp/tree"
cp -r "$SRC/src" "$tmp/tree/src"
ex=$tmp/tree/src/exec/executor.c
cat >>"$ex" <<'EOF'
/* a comment naming WF_OP_MATMUL and switch (n->op) is not code */
static int injected_is_relu(const struct wf_node *n) { return n->op == WF_OP_RELU; }
static int injected_kind(const struct wf_node *n) {
    switch (n->op) {
    default: return 0;
    }
}
static int injected_by_name(const struct wf_node *n) { return 4 != n->op || n->op == wf_op_find("relu"); }
EOF
relu_line=$(grep -n 'injected_is_relu' "$ex" | cut -d: -f1)
switch_line=$((relu_line + 2))
name_line=$((relu_line + 6))
# allowed: an op definition file may name op kinds
echo 'static const int allowed_here = WF_OP_RELU;' >>"$tmp/tree/src/graph/ops_dense.c"
echo 'static const int planner_kind = WF_OP_CONV2D; // injected' >>"$tmp/tree/src/compile/plan.c"
plan_line=$(wc -l <"$tmp/tree/src/compile/plan.c")
out=$(OP_KINDS_SCAN_ONLY=1 timeout 60 bash "$0" - "$tmp/tree" 2>&1)
rc=$?
while IFS= read -r l; do echo "  (injected) $l"; done <<<"$out"
has() { echo "$out" | grep -qF -- "$1"; }
check "the injected tree fails" test $rc -ne 0
check "reports WF_OP_RELU at src/exec/executor.c:$relu_line" \
  has "op_kinds: src/exec/executor.c:$relu_line: names a built-in op kind: static int injected_is_relu"
check "reports the comparison at src/exec/executor.c:$relu_line" \
  has "op_kinds: src/exec/executor.c:$relu_line: compares an op with a constant"
check "reports the switch at src/exec/executor.c:$switch_line" \
  has "op_kinds: src/exec/executor.c:$switch_line: switches on an op: switch (n->op) {"
check "reports 4 != n->op at src/exec/executor.c:$name_line" \
  has "op_kinds: src/exec/executor.c:$name_line: compares an op with a constant"
check "reports the look-up by name at src/exec/executor.c:$name_line" \
  has "op_kinds: src/exec/executor.c:$name_line: looks up a built-in op by name"
check "reports WF_OP_CONV2D at src/compile/plan.c:$plan_line" \
  has "op_kinds: src/compile/plan.c:$plan_line: names a built-in op kind: static const int planner_kind = WF_OP_CONV2D;"
check "exactly those 6 findings (comments and src/graph/ops_*.c skipped)" test "$(echo "$out" | grep -c '^op_kinds: ')" -eq 6
check "the exit status counts them" test $rc -eq 6

check_done op_kinds
