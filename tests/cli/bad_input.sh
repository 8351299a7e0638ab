#!/usr/bin/env bash
# Bad input: a malformed model file, a job naming a missing file, a shape
# mismatch, a truncated dataset, a corrupt or truncated checkpoint, bad
# command lines. Each must give one clear message naming the file, line or
# tensor at fault, a non-zero exit, and leave nothing half-written.
set -uo pipefail
WEFT=$1
SRC=$2
DATA=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect NAME EXIT_CODE PATTERN -- command...
expect() {
  local name=$1 code=$2 pat=$3
  shift 4
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local lines
  lines=$(grep -c . "$tmp/err")
  if [ "$rc" -eq "$code" ] && grep -qE -- "$pat" "$tmp/err" && [ "$lines" -eq 1 ]; then
    pass=$((pass + 1))
    echo "ok   $name: $(cat "$tmp/err")"
  else
    fail=$((fail + 1))
    echo "FAIL $name: exit $rc (want $code), $lines stderr lines, want /$pat/; stderr:"
    sed 's/^/    /' "$tmp/err"
  fi
}
no_leftovers() { # DIR: no temporary files were left behind
  if find "$1" -name '*.tmp.*' | grep -q .; then
    fail=$((fail + 1)); echo "FAIL leftovers in $1"; find "$1" -name '*.tmp.*'
  else
    pass=$((pass + 1))
  fi
}

job() { # file, model, data, extra
  cat >"$1" <<EOF
model = $2
data = $3
epochs = 1
batch = 32
max_steps = 5
out = $tmp/out-$(basename "$1" .job)
${4:-}
EOF
}

# found by review: a data input whose first dimension is fixed to the train batch overflowed the
# eval program's buffers (eval_batch differs); every fed program is checked now
printf 'input x : f32[32, 784]\ninput y : i32[32]\nfc1 = linear(x, out=10)\nloss = cross_entropy(fc1, y)\noutput loss\n' >"$tmp/fixedb.wf"
job "$tmp/fixedb.job" "$tmp/fixedb.wf" "$DATA" "eval_batch = 100"
expect "model: a data input not [B, ...] is refused for evaluation" 1 "fixedb.wf:1:1: input 'x' is f32\[32, 784\], but the samples of .* are images: f32\[B, \.\.\.\]" -- "$WEFT" train "$tmp/fixedb.job"
# any other scalar output is no accuracy (only accuracy() is); the per-token accuracy counts rows
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=10)\nce = cross_entropy(fc1, y)\nloss = mul(ce, 2)\noutput loss, ce\n' >"$tmp/extra.wf"
job "$tmp/extra.job" "$tmp/extra.wf" "$DATA" "eval_batch = 1000"
if "$WEFT" train "$tmp/extra.job" >"$tmp/out" 2>"$tmp/err" && grep -q "step 5: test loss" "$tmp/out"; then
  pass=$((pass + 1)); echo "ok   model: an extra scalar output is not reported as accuracy"
else
  fail=$((fail + 1)); echo "FAIL model: an extra scalar output: $(cat "$tmp/out" "$tmp/err")"
fi

# a model whose parameters cannot fit is refused before anything is allocated, naming the size
# (ulimit -v makes the limit the same on every machine)
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=2000000)\nfc2 = linear(fc1, out=10)\nloss = cross_entropy(fc2, y)\noutput loss\n' >"$tmp/huge.wf"
job "$tmp/huge.job" "$tmp/huge.wf" "$DATA"
t0=$(date +%s)
expect "model: parameters beyond the memory limit are refused" 1 "huge.wf: the parameters, their gradients and optimizer state need [0-9.e+]+ GB, more than this machine's address-space limit" -- bash -c 'ulimit -v 4000000; exec "$0" train "$1"' "$WEFT" "$tmp/huge.job"
# well under a second on a quiet machine (tests/exec/test_max_memory.c times the check itself); the
# bound only tells a refusal before allocating from one after zero-filling gigabytes, on a loaded machine too
if [ $(($(date +%s) - t0)) -le 30 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL the refusal took over 30 s"; fi

# malformed model files
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=10\nloss = cross_entropy(fc1, y)\noutput loss\n' >"$tmp/paren.wf"
expect "model: missing paren" 1 "paren.wf:3:[0-9]+: .*expected" -- "$WEFT" check "$tmp/paren.wf"
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linaer(x, out=10)\nloss = cross_entropy(fc1, y)\noutput loss\n' >"$tmp/op.wf"
expect "model: unknown op" 1 "op.wf:3:7: unknown op 'linaer'" -- "$WEFT" check "$tmp/op.wf"
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=10)\nz = add(fc1, x)\nloss = cross_entropy(z, y)\noutput loss\n' >"$tmp/shape.wf"
expect "model: shape mismatch names the layer" 1 "shape.wf:4:1: layer 'z' \(add\)" -- "$WEFT" check "$tmp/shape.wf"
expect "model: missing file" 1 "nothere.wf" -- "$WEFT" check "$tmp/nothere.wf"
job "$tmp/badmodel.job" "$tmp/op.wf" "$DATA"
expect "train: malformed model" 1 "op.wf:3:7: unknown op" -- "$WEFT" train "$tmp/badmodel.job"

# jobs naming missing files, bad keys
job "$tmp/missing.job" "$tmp/nothere.wf" "$DATA"
expect "job: missing model file" 1 "missing.job:1:[0-9]+: .*nothere.wf" -- "$WEFT" train "$tmp/missing.job"
job "$tmp/missingdata.job" "$SRC/examples/mlp.wf" "$tmp/nodata"
expect "job: missing data folder" 1 "missingdata.job:2:[0-9]+: .*nodata" -- "$WEFT" train "$tmp/missingdata.job"
job "$tmp/badkey.job" "$SRC/examples/mlp.wf" "$DATA" "epoch = 3"
expect "job: unknown key" 1 "badkey.job:7:1: .*epoch" -- "$WEFT" train "$tmp/badkey.job"
expect "job: missing job file" 1 "nojob.job" -- "$WEFT" train "$tmp/nojob.job"

# the model does not fit the data: names the tensor
printf 'input x : f32[B, 785]\ninput y : i32[B]\nfc1 = linear(x, out=10)\nloss = cross_entropy(fc1, y)\noutput loss\n' >"$tmp/wide.wf"
job "$tmp/wide.job" "$tmp/wide.wf" "$DATA"
expect "train: input does not fit the data" 1 "wide.wf:1:1: input 'x'.*785" -- "$WEFT" train "$tmp/wide.job"

# truncated and corrupt datasets
mkdir -p "$tmp/trunc"
cp "$DATA"/*.gz "$tmp/trunc/"
head -c 200000 "$DATA/train-images-idx3-ubyte.gz" >"$tmp/trunc/train-images-idx3-ubyte.gz"
job "$tmp/trunc.job" "$SRC/examples/mlp.wf" "$tmp/trunc"
expect "data: truncated gzip" 1 "train-images-idx3-ubyte.gz" -- "$WEFT" train "$tmp/trunc.job"
mkdir -p "$tmp/short"
cp "$DATA"/*.gz "$tmp/short/"
gunzip -c "$DATA/t10k-labels-idx1-ubyte.gz" | head -c 5000 >"$tmp/short/t10k-labels-idx1-ubyte"
rm "$tmp/short/t10k-labels-idx1-ubyte.gz"
job "$tmp/short.job" "$SRC/examples/mlp.wf" "$tmp/short"
expect "data: truncated labels" 1 "t10k-labels-idx1-ubyte.*truncated" -- "$WEFT" train "$tmp/short.job"
if [ -e "$tmp/out-trunc/checkpoint.safetensors" ]; then fail=$((fail + 1)); echo "FAIL checkpoint written for a failed run"; fi

# corrupt and truncated checkpoints
job "$tmp/good.job" "$SRC/examples/mlp.wf" "$DATA"
"$WEFT" train "$tmp/good.job" --quiet >/dev/null 2>&1 || { fail=$((fail + 1)); echo "FAIL could not train the good job"; }
ck="$tmp/out-good/checkpoint.safetensors"
cp "$ck" "$tmp/saved.safetensors"
head -c 100000 "$ck" >"$tmp/trunc.safetensors"
expect "eval: truncated checkpoint" 1 "trunc.safetensors: .*" -- "$WEFT" eval "$tmp/trunc.safetensors"
python3 - "$ck" "$tmp/corrupt.safetensors" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = b.index(b'"data_offsets"')
b[i + 1:i + 5] = b'XXXX'
open(sys.argv[2], 'wb').write(b)
PY
expect "eval: corrupt header" 1 "corrupt.safetensors: " -- "$WEFT" eval "$tmp/corrupt.safetensors"
head -c 4 "$ck" >"$tmp/tiny.safetensors"
expect "eval: 4-byte file" 1 "tiny.safetensors: " -- "$WEFT" eval "$tmp/tiny.safetensors"
expect "resume: truncated checkpoint" 1 "trunc.safetensors: " -- "$WEFT" train "$tmp/good.job" --resume "$tmp/trunc.safetensors"
if cmp -s "$ck" "$tmp/saved.safetensors"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL a failed resume changed the checkpoint"; fi
job "$tmp/other.job" "$SRC/examples/mlp.wf" "$DATA" "lr = 0.5"
expect "resume: checkpoint of another job" 1 "different job settings" -- "$WEFT" train "$tmp/other.job" --resume "$ck"
expect "eval: missing checkpoint" 1 "nockpt.safetensors" -- "$WEFT" eval "$tmp/nockpt.safetensors"
# a checkpoint whose model does not fit the dataset it is evaluated on: both shapes named, nothing read
mkdir -p "$tmp/small"
python3 - "$tmp/small" <<'PY'
import struct, sys
d = sys.argv[1]
open(d + '/t10k-images-idx3-ubyte', 'wb').write(struct.pack('>IIII', 0x803, 10, 8, 8) + bytes(range(64)) * 10)
open(d + '/t10k-labels-idx1-ubyte', 'wb').write(struct.pack('>II', 0x801, 10) + bytes(i % 10 for i in range(10)))
PY
expect "eval: dataset of another sample shape" 1 \
  "saved.safetensors:weft.model:[0-9]+:[0-9]+: input 'x' is f32\[B, 784\]: 784 values per sample, but .*small/t10k-images-idx3-ubyte has 1 x 8 x 8 = 64 per sample" \
  -- "$WEFT" eval "$tmp/saved.safetensors" --data "$tmp/small"
python3 - "$tmp/saved.safetensors" "$tmp/badstep.safetensors" <<'PY'
import sys
b = open(sys.argv[1], 'rb').read()
i = b.index(b'"weft.step":"') + len(b'"weft.step":"')
j = b.index(b'"', i)
b = b[:i] + b'-' + b[i + 1:j] + b[j:]  # same length: the header length field stays right
open(sys.argv[2], 'wb').write(b)
PY
expect "eval: step that is not a count" 1 "badstep.safetensors: metadata 'weft.step' is '-.*', expected a count" \
  -- "$WEFT" eval "$tmp/badstep.safetensors"
no_leftovers "$tmp"

# NUL bytes and invalid UTF-8 in model and job files: an error at line:col, never a silent end of file
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=10)\000\nloss = cross_entropy(fc1, y)\noutput loss\n' >"$tmp/nul.wf"
expect "model: NUL byte" 1 "nul.wf:3:24: NUL byte in the text" -- "$WEFT" check "$tmp/nul.wf"
printf 'input x : f32[B, 784]\ninput y : i32[B]\nfc1 = linear(x, out=10)\nloss = cross_entropy(fc1, y)\noutput loss\n\000fc2 = linaer(x)\n' >"$tmp/nulend.wf"
expect "model: NUL byte hiding a line" 1 "nulend.wf:6:1: NUL byte in the text" -- "$WEFT" check "$tmp/nulend.wf"
printf 'input x : f32[B, 784]  # caf\351\ninput y : i32[B]\n' >"$tmp/latin1.wf"
expect "model: invalid UTF-8" 1 "latin1.wf:1:29: invalid UTF-8 \(byte 0xe9\)" -- "$WEFT" check "$tmp/latin1.wf"
printf 'input x\303\251 : f32[B, 784]\n' >"$tmp/accent.wf"
expect "model: non-ASCII name" 1 "accent.wf:1:8: unexpected character" -- "$WEFT" check "$tmp/accent.wf"
job "$tmp/nul.job" "$SRC/examples/mlp.wf" "$DATA" "lr = 0.05"
printf '\000lr = 0.5\n' >>"$tmp/nul.job"
expect "job: NUL byte" 1 "nul.job:8:1: NUL byte in the text" -- "$WEFT" train "$tmp/nul.job" --quiet
job "$tmp/latin1.job" "$SRC/examples/mlp.wf" "$DATA" $'# caf\351'
expect "job: invalid UTF-8" 1 "latin1.job:7:6: invalid UTF-8 \(byte 0xe9\)" -- "$WEFT" train "$tmp/latin1.job" --quiet

# command lines
expect "cli: unknown command" 2 "unknown command 'trian'" -- "$WEFT" trian
expect "cli: bad --stop-after" 2 "--stop-after needs a positive integer" -- "$WEFT" train "$tmp/good.job" --stop-after x

echo "bad_input: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
