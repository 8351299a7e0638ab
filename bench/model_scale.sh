#!/usr/bin/env bash
# bench/model_scale.sh: how `weft check` (parse, graph build, autodiff, memory
# plan) scales with the number of statements in a model file.
#
#   bash bench/model_scale.sh [--weft PATH] [--old PATH] [--sizes 10000,40000,...]
#                             [--batch N] [--keep DIR] [--timeout S]
#
# Generates two kinds of model (awk, into a temp folder or --keep DIR):
#   chain N     input x : f32[B, 16]; h0 = linear(x, out=16); then N-3 cheap
#               layers, each reading the one before (relu, tanh, sigmoid, gelu
#               in turn); loss = mean(...); output loss
#   fanout N    blocks of 15 layers: 8 branches read the block's input (fan-out
#               8), a tree of 7 adds sums them (fan-in); about N statements
# and prints one row per model: statements, nodes after autodiff, seconds of
# `weft check MODEL --batch N` for --weft (default build-lin/weft, else
# build/weft) and, with --old, for another binary (e.g. a build of an earlier
# commit). A run past --timeout seconds (default 300) shows as ">S".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
weft=""
old=""
sizes="10000,40000,100000,400000"
batch=4
keep=""
timeout_s=300

while [ $# -gt 0 ]; do
    case "$1" in
    --weft) weft="$2"; shift 2 ;;
    --old) old="$2"; shift 2 ;;
    --sizes) sizes="$2"; shift 2 ;;
    --batch) batch="$2"; shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "model_scale.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
if [ -z "$weft" ]; then
    for c in "$root/build-lin/weft" "$root/build/weft"; do
        if [ -x "$c" ]; then weft="$c"; break; fi
    done
fi
if [ -z "$weft" ] || [ ! -x "$weft" ]; then
    echo "model_scale.sh: no weft binary (build it, or pass --weft PATH)" >&2
    exit 2
fi
if [ -n "$old" ] && [ ! -x "$old" ]; then
    echo "model_scale.sh: --old '$old' is not an executable" >&2
    exit 2
fi

if [ -n "$keep" ]; then
    dir="$keep"
    mkdir -p "$dir"
else
    dir="$(mktemp -d)"
    trap 'rm -rf "$dir"' EXIT
fi

gen_chain() { # N FILE
    awk -v n="$1" 'BEGIN {
        split("relu tanh sigmoid gelu", op, " ")
        print "model chain" n
        print "input x : f32[B, 16]"
        print "h0 = linear(x, out=16)"
        for (i = 1; i <= n - 4; i++) printf "h%d = %s(h%d)\n", i, op[(i - 1) % 4 + 1], i - 1
        printf "loss = mean(h%d)\n", n - 4
        print "output loss"
    }' >"$2"
}

gen_fanout() { # N FILE
    awk -v n="$1" 'BEGIN {
        split("relu tanh sigmoid gelu relu tanh sigmoid gelu", op, " ")
        print "model fanout" n
        print "input x : f32[B, 16]"
        print "h0 = linear(x, out=16)"
        blocks = int((n - 4) / 15)
        if (blocks < 1) blocks = 1
        for (b = 1; b <= blocks; b++) {
            p = "h" (b - 1)
            for (k = 1; k <= 8; k++) printf "b%d_%d = %s(%s)\n", b, k, op[k], p
            for (k = 1; k <= 4; k++) printf "b%d_s%d = add(b%d_%d, b%d_%d)\n", b, k, b, 2 * k - 1, b, 2 * k
            printf "b%d_t1 = add(b%d_s1, b%d_s2)\n", b, b, b
            printf "b%d_t2 = add(b%d_s3, b%d_s4)\n", b, b, b
            printf "h%d = add(b%d_t1, b%d_t2)\n", b, b, b
        }
        printf "loss = mean(h%d)\n", blocks
        print "output loss"
    }' >"$2"
}

# seconds of `weft check` (3 decimals), ">T" past the timeout, "fail" on an error
time_check() { # BIN MODEL
    local t0 t1 rc=0
    t0=$(date +%s.%N)
    timeout "$timeout_s" "$1" check "$2" --batch "$batch" >"$dir/out.txt" 2>"$dir/err.txt" || rc=$?
    t1=$(date +%s.%N)
    if [ "$rc" = 124 ]; then
        echo ">$timeout_s"
    elif [ "$rc" != 0 ]; then
        echo "fail"
        sed 's/^/    /' "$dir/err.txt" | head -3 >&2
    else
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
    fi
}

echo "weft check --batch $batch: $weft${old:+ (old: $old)}"
if [ -n "$old" ]; then
    printf "%-8s %10s %10s %12s %12s %9s\n" model statements nodes "new (s)" "old (s)" speedup
else
    printf "%-8s %10s %10s %12s\n" model statements nodes "seconds"
fi
IFS=, read -r -a size_list <<<"$sizes"
for kind in chain fanout; do
    for n in "${size_list[@]}"; do
        f="$dir/${kind}_$n.wf"
        "gen_$kind" "$n" "$f"
        stmts=$(grep -cv '^model ' "$f")
        t_new=$(time_check "$weft" "$f")
        nodes=$(sed -n 's/.* \([0-9]*\) nodes (.*/\1/p' "$dir/out.txt")
        if [ -n "$old" ]; then
            t_old=$(time_check "$old" "$f")
            speed=$(awk -v a="$t_new" -v b="$t_old" 'BEGIN {
                if (a + 0 > 0 && b ~ /^[0-9.]+$/) printf "%.0fx", b / a; else if (b ~ /^>/) printf ">%.0fx", substr(b, 2) / a; else print "-" }')
            printf "%-8s %10d %10s %12s %12s %9s\n" "$kind" "$stmts" "${nodes:--}" "$t_new" "$t_old" "$speed"
        else
            printf "%-8s %10d %10s %12s\n" "$kind" "$stmts" "${nodes:--}" "$t_new"
        fi
    done
done
