#!/usr/bin/env bash
# Accuracy goals of the core engine: the MLP reaches >= 88 % and the CNN
# >= 91 % test accuracy on Fashion-MNIST within 10 epochs, with the example
# jobs as shipped. Takes a few minutes (the CNN dominates).
# Usage: bench/accuracy.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
[ -x "$BUILD/weft" ] || make all BUILD="$BUILD"
if grep -q avx512f /proc/cpuinfo; then export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for spec in mlp:88 cnn:91; do
  name=${spec%%:*}
  goal=${spec##*:}
  sed "s|^out = .*|out = $out/$name|; s|^model = |model = $PWD/examples/|" "examples/$name.job" >"$out/$name.job"
  "$BUILD/weft" train "$out/$name.job" | tee "$out/$name.log" | grep -E "^epoch [0-9]+/[0-9]+ +loss"
  acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$out/$name.log" | tail -1)
  if awk -v a="$acc" -v g="$goal" 'BEGIN { exit !(a >= g) }'; then
    echo "accuracy: $name $acc% >= $goal%: pass"
  else
    echo "accuracy: $name $acc% < $goal%: FAIL"
    status=1
  fi
done
exit $status
