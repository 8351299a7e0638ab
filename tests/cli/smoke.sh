#!/usr/bin/env bash
# The weft command end to end: --help everywhere, `check` on every example,
# a short training run whose checkpoint `eval` reads back with the same
# accuracy, metrics file contents.
set -uo pipefail
WEFT=$1
SRC=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

for c in "" train eval check; do
  if "$WEFT" $c --help >"$tmp/h" 2>&1 && grep -q "usage: weft" "$tmp/h"; then ok "help $c"; else bad "help $c"; fi
done
"$WEFT" --version | grep -q "^weft " && ok version || bad version
"$WEFT" >/dev/null 2>&1; [ $? -eq 2 ] && ok "no command exits 2" || bad "no command exits 2"

"$WEFT" check "$SRC/examples/mlp.wf" >"$tmp/c" && grep -q "parameters: 269322" "$tmp/c" && ok "check mlp" || bad "check mlp"
"$WEFT" check "$SRC/examples/cnn.wf" --batch 64 >"$tmp/c" && grep -q "parameters: 454922" "$tmp/c" && ok "check cnn" || bad "check cnn"
"$WEFT" check "$SRC/examples/resmlp.wf" >"$tmp/c" && grep -q "loss: loss" "$tmp/c" && ok "check resmlp" || bad "check resmlp"

cat >"$tmp/s.job" <<EOF
model = $SRC/examples/cnn.wf
data = /usr/share/datasets/fashion-mnist
epochs = 1
batch = 32
optimizer = adam
lr = 0.001
max_steps = 40
out = $tmp/out
EOF
"$WEFT" train "$tmp/s.job" >"$tmp/t" 2>&1 && ok "train cnn 40 steps" || { bad "train cnn"; cat "$tmp/t"; }
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/t" | tail -1)
"$WEFT" eval "$tmp/out/checkpoint.safetensors" >"$tmp/e" 2>&1 || { bad "eval"; cat "$tmp/e"; }
acc2=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/e")
[ -n "$acc" ] && [ "$acc" = "$acc2" ] && ok "eval reads back the accuracy ($acc%)" || bad "eval accuracy '$acc2' vs train '$acc'"
n=$(grep -c '"step":' "$tmp/out/metrics.jsonl")
[ "$n" -eq 40 ] && ok "metrics has 40 step lines" || bad "metrics has $n step lines"
python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$tmp/out/metrics.jsonl" && ok "metrics is JSON lines" || bad "metrics is not JSON lines"

echo "smoke: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
