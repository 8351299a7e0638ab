#!/usr/bin/env bash
# `weft tokenize --classes file` and `labels = class` end to end, on small
# fortune files made here:
#   - the class files (train.cls, test.cls, classes.txt) and the summary
#     (class table, majority-class baseline) match a reference computed here
#     in Python from the same files: every sequence labelled with the file
#     it came from, the split rule, the header binding the .tok's SHA-256;
#   - the same inputs give the same bytes; a file given twice is one class;
#   - --top K keeps the K largest classes (ties by name) and drops the rest;
#   - a run without --classes removes the class files of an earlier one;
#   - refused options; a class file of another tokenization is refused;
#   - `weft train` of a mean-pooled embedding classifier (with the lengths
#     input) learns the classes beyond the baseline, prints no per-character
#     line, `weft eval` of its checkpoint gives the same test accuracy and
#     `weft sample` refuses it;
#     labels = class on a folder without class files, or with sample =
#     window, is refused naming the job file and the key.
# Usage: tokenize_classes.sh WEFT SRC
set -uo pipefail
WEFT=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT # every weft below runs in the foreground under timeout: nothing outlives the test
LIMIT=120
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
w() { timeout $LIMIT "$WEFT" "$@"; }

# fortunes FILE N WORD: N fortunes, each a few lines of WORD and other words
mkdir -p "$tmp/in"
fortunes() {
  local f=$1 n=$2 word=$3 k
  : >"$f"
  for ((k = 0; k < n; k++)); do
    printf '%s number %d, %s %s.\n-- %s\n%%\n' "$word" "$k" "$word" "$(printf '%*s' $((k % 5 + 1)) '' | tr ' ' "${word:0:1}")" "$word" >>"$f"
  done
}
fortunes "$tmp/in/apples" 40 apple
fortunes "$tmp/in/bananas" 20 banana
fortunes "$tmp/in/cherries" 20 cherry
printf 'just one plain text\n' >"$tmp/in/plain.txt"

# The reference: fortunes as in tokenize.sh, each labelled with its file's
# class (distinct files by inode, in argument order); --top K keeps the K
# largest (ties by name) before the split; prints the summary's class lines
# and "decode: ..." for anything the files do not hold.
cat >"$tmp/ref.py" <<'EOF'
import hashlib, os, re, struct, sys
out, every, top, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
seqs, cls, ident, names = [], [], [], []
for f in files:
    t = open(f, 'rb').read().decode('utf-8')
    parts = re.split(r'(?m)^%\n', t) if re.search(r'(?m)^%$', t) else [t]
    st = os.stat(f)
    if (st.st_dev, st.st_ino) not in ident:
        ident.append((st.st_dev, st.st_ino)); names.append(os.path.basename(f))
    k = ident.index((st.st_dev, st.st_ino))
    for p in parts:
        if p.strip(): seqs.append(p); cls.append(k)
counts = [cls.count(k) for k in range(len(names))]
n_all, dropped = len(names), 0
if top:
    order = sorted((k for k in range(len(names)) if counts[k]), key=lambda k: (-counts[k], names[k].encode(), k))[:top]
    new = {k: i for i, k in enumerate(order)}
    keep = [i for i in range(len(seqs)) if cls[i] in new]
    dropped = len(seqs) - len(keep)
    seqs, cls = [seqs[i] for i in keep], [new[cls[i]] for i in keep]
    names = [names[k] for k in order]
C = len(names)
split = {'train': [i for i in range(len(seqs)) if (i + 1) % every], 'test': [i for i in range(len(seqs)) if (i + 1) % every == 0]}
per = {s: [sum(1 for i in split[s] if cls[i] == k) for k in range(C)] for s in split}
if top: print("classes: %d (by file; the %d largest of %d, %d sequences of the others left out)" % (C, C, n_all, dropped))
else: print("classes: %d (by file)" % C)
print("  %5s %8s %8s  %s" % ("class", "train", "test", "name"))
for k in range(C): print("  %5d %8d %8d  %s" % (k, per['train'][k], per['test'][k], names[k]))
maj = max(range(C), key=lambda k: (per['train'][k], -k))
ntr, nte = len(split['train']), len(split['test'])
print("majority-class baseline: class %d (%s) is %d of %d test sequences = %.2f%% (train %.2f%%)" %
      (maj, names[maj], per['test'][maj], nte, 100.0 * per['test'][maj] / nte, 100.0 * per['train'][maj] / ntr))
codes = [0] + sorted(set(ord(c) for s in seqs for c in s))
idx = {c: i for i, c in enumerate(codes)}
for s in split:
    tok = open('%s/%s.tok' % (out, s), 'rb').read()
    S = struct.unpack('<Q', tok[24:32])[0]
    off = struct.unpack('<%dQ' % (S + 1), tok[48:48 + 8 * (S + 1)])
    ids = struct.unpack('<%dH' % off[-1], tok[48 + 8 * (S + 1):])
    if [list(ids[off[k]:off[k + 1]]) for k in range(S)] != [[idx[ord(c)] for c in seqs[i]] for i in split[s]]:
        print("decode: %s.tok does not hold the text" % s)
    b = open('%s/%s.cls' % (out, s), 'rb').read()
    magic, ver, c, n, sha, res = struct.unpack('<8sIIQ32sQ', b[:64])
    if (magic, ver, c, n, sha, res) != (b'WFTOKCLS', 1, C, S, hashlib.sha256(tok).digest(), 0):
        print("decode: %s.cls header %r" % (s, (magic, ver, c, n, res)))
    if len(b) != 64 + 4 * S or list(struct.unpack('<%di' % S, b[64:])) != [cls[i] for i in split[s]]:
        print("decode: %s.cls does not hold each sequence's class" % s)
want = 'weft-classes 1 files %d\n' % C + ''.join('%d %s\n' % (k, names[k]) for k in range(C))
if open('%s/classes.txt' % out).read() != want: print("decode: classes.txt")
EOF

# check NAME DIR EVERY TOP FILES...: the summary's class lines and the files against the reference
check() {
  local name=$1 dir=$2 every=$3 top=$4
  shift 4
  python3 "$tmp/ref.py" "$dir" "$every" "$top" "$@" >"$tmp/ref.out" 2>&1
  grep -E '^(classes:|  |majority-class)' "$tmp/$name.log" >"$tmp/got.out"
  if grep -q '^decode\|Traceback' "$tmp/ref.out"; then
    bad "$name: the files: $(grep '^decode\|Error' "$tmp/ref.out" | head -3)"
  elif ! cmp -s "$tmp/got.out" "$tmp/ref.out"; then
    bad "$name: the summary differs from the reference:"
    diff "$tmp/got.out" "$tmp/ref.out" | sed 's/^/    /'
  else
    ok "$name: class files and summary match the reference ($(grep '^majority' "$tmp/got.out" | cut -d: -f2 | cut -c2-))"
  fi
}

# ---- two fortune files ----
in2=("$tmp/in/apples" "$tmp/in/bananas")
if w tokenize "${in2[@]}" --out "$tmp/d2" --classes file --test-every 5 >"$tmp/two.log" 2>&1; then
  ok "tokenize --classes file of 2 files"
  check two "$tmp/d2" 5 0 "${in2[@]}"
  grep -q '^majority-class baseline: class 0 (apples) is 8 of 12 test sequences = 66.67% (train 66.67%)$' "$tmp/two.log" &&
    ok "baseline: 8 of 12 test sequences" || bad "baseline line: $(grep majority "$tmp/two.log")"
  grep -q "^wrote .*/train.cls, .*/test.cls, .*/classes.txt$" "$tmp/two.log" && ok "names the class files" || bad "wrote line"
else
  bad "tokenize --classes file:"
  sed 's/^/    /' "$tmp/two.log"
fi
w tokenize "${in2[@]}" --out "$tmp/d2b" --classes file --test-every 5 >/dev/null 2>&1
same=1
for f in train.tok test.tok vocab.txt train.cls test.cls classes.txt; do cmp -s "$tmp/d2/$f" "$tmp/d2b/$f" || same=0; done
[ $same = 1 ] && ok "two runs give the same bytes" || bad "two runs differ"
ls "$tmp/d2" | grep -q '\.tmp' && bad "temporary files left" || ok "no temporary files left"

# ---- one file twice (another path to it), a plain file: classes by file ----
in4=("$tmp/in/apples" "$tmp/in/plain.txt" "$tmp/in/bananas" "$tmp/in/./apples")
if w tokenize "${in4[@]}" --out "$tmp/d4" --classes file >"$tmp/dup.log" 2>&1; then
  check dup "$tmp/d4" 10 0 "${in4[@]}"
  grep -q '^classes: 3 (by file)$' "$tmp/dup.log" && ok "a file named twice is one class" || bad "$(grep '^classes' "$tmp/dup.log")"
else
  bad "tokenize of a file named twice:"
  sed 's/^/    /' "$tmp/dup.log"
fi

# ---- --top: the largest classes, ties by name ----
in3=("$tmp/in/cherries" "$tmp/in/apples" "$tmp/in/plain.txt" "$tmp/in/bananas")
if w tokenize "${in3[@]}" --out "$tmp/d3" --classes file --top 2 --test-every 4 >"$tmp/top.log" 2>&1; then
  check top "$tmp/d3" 4 2 "${in3[@]}"
  grep -q '^classes: 2 (by file; the 2 largest of 4, 21 sequences of the others left out)$' "$tmp/top.log" &&
    sed -n '/^  class/,/^majority/p' "$tmp/top.log" | grep -q '^      1       15        5  bananas$' &&
    ok "--top 2: apples and bananas (a tie with cherries, by name)" || bad "--top 2: $(sed -n 4,8p "$tmp/top.log")"
else
  bad "tokenize --top 2:"
  sed 's/^/    /' "$tmp/top.log"
fi

# ---- without --classes: the class files of an earlier run are removed ----
cp -r "$tmp/d2" "$tmp/d2c"
if w tokenize "${in2[@]}" --out "$tmp/d2c" --test-every 5 >"$tmp/plain.log" 2>&1 && [ -f "$tmp/d2c/train.tok" ] &&
  [ ! -e "$tmp/d2c/train.cls" ] && [ ! -e "$tmp/d2c/test.cls" ] && [ ! -e "$tmp/d2c/classes.txt" ]; then
  ok "a run without --classes removes the earlier class files"
else
  bad "stale class files: $(ls "$tmp/d2c")"
fi

# ---- refused options ----
expect_fail() { # NAME WANT_RC PATTERN ARGS...
  local name=$1 want=$2 pat=$3
  shift 3
  w tokenize "$@" >"$tmp/e" 2>&1
  local rc=$?
  if [ $rc -eq "$want" ] && grep -q -- "$pat" "$tmp/e"; then ok "$name"; else bad "$name (rc $rc): $(head -2 "$tmp/e")"; fi
}
expect_fail "--classes dir" 2 "--classes takes 'file' (each input file is a class), got 'dir'" "${in2[@]}" --out "$tmp/x" --classes dir
expect_fail "--classes with no value" 2 "--classes takes 'file'" "${in2[@]}" --out "$tmp/x" --classes
expect_fail "--top without --classes" 2 "--top K keeps the largest classes: give --classes file too" "${in2[@]}" --out "$tmp/x" --top 2
expect_fail "--top 0" 2 "--top needs a positive integer, got '0'" "${in2[@]}" --out "$tmp/x" --classes file --top 0
expect_fail "--top leaving too little" 1 "40 sequences of the classes kept: the test split" "$tmp/in/plain.txt" "$tmp/in/apples" --out "$tmp/x" --classes file --top 1 --test-every 50
[ -e "$tmp/x/train.tok" ] && bad "a refused run wrote files" || ok "refused runs write nothing"
w tokenize --help | grep -q -- "--classes file" && ok "--classes in --help" || bad "--classes not in --help"

# ---- weft train: a mean-pooled embedding classifier ----
V=$(head -1 "$tmp/d2/vocab.txt" | cut -d' ' -f4)
cat >"$tmp/cls.wf" <<EOF
model classify
input x : i32[B, 64]
input y : i32[B]
input len : i32[B]
e = embedding(x, vocab=$V, dim=8)
p = mean(e, axis=1)
o = linear(p, out=2)
loss = cross_entropy(o, y)
acc = accuracy(o, y)
output loss, acc
EOF
job() { # NAME DATA [LINES...]
  local name=$1 data=$2
  shift 2
  printf 'model = "%s"\ndata = "%s"\nout = "%s"\nseq_len = 64\n' "$tmp/cls.wf" "$data" "$tmp/$name" >"$tmp/$name.job"
  printf '%s\n' "$@" >>"$tmp/$name.job"
}
job train "$tmp/d2" "sample = sequence" "labels = class" "epochs = 30" "batch = 8" "optimizer = adam" "lr = 0.05" "seed = 3"
if w train "$tmp/train.job" >"$tmp/train.log" 2>&1; then
  acc=$(sed -n 's/^step [0-9]*: test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/train.log")
  if [ -n "$acc" ] && awk -v a="$acc" 'BEGIN { exit !(a > 66.67) }'; then
    ok "weft train learns the classes: test accuracy $acc% > the 66.67% baseline"
  else
    bad "weft train: test accuracy '$acc', not above the baseline:"
    tail -4 "$tmp/train.log" | sed 's/^/    /'
  fi
  grep -q "per character" "$tmp/train.log" && bad "a class model printed the per-character line" ||
    ok "no per-character loss or text sample for a class model"
  if w eval "$tmp/train/checkpoint.safetensors" >"$tmp/eval.log" 2>&1 && grep -q "test accuracy $acc%" "$tmp/eval.log"; then
    ok "weft eval of the checkpoint: test accuracy $acc%"
  else
    bad "weft eval: $(cat "$tmp/eval.log")"
  fi
  w sample "$tmp/train/checkpoint.safetensors" >"$tmp/sample.log" 2>&1
  rc=$?
  [ $rc -eq 1 ] && grep -q "was trained with labels = class: it scores a sequence's class, not the next token" "$tmp/sample.log" &&
    ok "weft sample refuses a class model" || bad "weft sample of a class model (rc $rc): $(cat "$tmp/sample.log")"
else
  bad "weft train:"
  sed 's/^/    /' "$tmp/train.job" "$tmp/train.log"
fi

# refused jobs: named by file, line, column and key
train_fail() { # NAME PATTERN
  w train "$tmp/$1.job" >"$tmp/$1.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$2" "$tmp/$1.log"; then ok "$1 refused"; else bad "$1 (rc $rc): $(head -3 "$tmp/$1.log")"; fi
}
job noclass "$tmp/d2c" "sample = sequence" "labels = class"
train_fail noclass "$tmp/noclass.job:6:1: labels = class, but data = $tmp/d2c has no class labels (classes.txt, train.cls, test.cls: made by weft tokenize --classes file)"
job window "$tmp/d2" "sample = window" "labels = class"
train_fail window "$tmp/window.job:6:10: labels = class needs sample = sequence"
# another tokenization's class file: the count or the digest says so
cp -r "$tmp/d2" "$tmp/d2x"
cp "$tmp/d4/train.cls" "$tmp/d2x/train.cls"
job stale "$tmp/d2x" "sample = sequence" "labels = class"
train_fail stale "$tmp/d2x/train.cls: class count 3 at offset 12 differs from $tmp/d2x/classes.txt's (2 classes)"
cp "$tmp/d2/train.cls" "$tmp/d2x/train.cls"
cp "$tmp/d2/test.cls" "$tmp/d2x/train.cls"
train_fail stale "$tmp/d2x/train.cls: sequence count 12 at offset 16 differs from $tmp/d2x/train.tok's (48 sequences)"

echo "tokenize_classes: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
