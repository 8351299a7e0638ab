#!/usr/bin/env bash
# `weft tokenize` end to end: a few fortune files into a token dataset whose
# summary and contents match a reference computed here in Python from the
# same files, the same bytes from two runs, the byte vocabulary, the split
# rule, and refused input (no --out, a missing file, a NUL byte, invalid
# UTF-8, --test-every 1, too little text).
# Usage: tokenize.sh WEFT SRC
set -uo pipefail
WEFT=$1
SRC=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

F=/usr/share/games/fortunes
files=("$F/fortunes" "$F/goedel" "$F/pratchett" "$F/riddles")
for f in "${files[@]}"; do
  [ -f "$f" ] || { echo "tokenize: $f missing (install the fortunes package: scripts/install-deps.sh)"; exit 1; }
done

"$WEFT" tokenize --help >"$tmp/h" 2>&1 && grep -q "usage: weft tokenize" "$tmp/h" && ok "help" || bad "help"
"$WEFT" --help | grep -q "tokenize" && ok "listed in weft --help" || bad "not listed in weft --help"

"$WEFT" tokenize "${files[@]}" --out "$tmp/a" >"$tmp/sa" 2>&1 && ok "tokenize 4 fortune files" || { bad "tokenize"; cat "$tmp/sa"; }
"$WEFT" tokenize --out "$tmp/b" "${files[@]}" >"$tmp/sb" 2>&1 || bad "second run"
same=1
for f in train.tok test.tok vocab.txt; do cmp -s "$tmp/a/$f" "$tmp/b/$f" || same=0; done
[ $same = 1 ] && ok "two runs give the same bytes" || bad "two runs differ"
ls "$tmp/a" | grep -q '\.tmp' && bad "temporary files left" || ok "no temporary files left"

# The reference: fortunes split on lines holding only '%', blank ones
# skipped, every 10th to test; chars vocabulary = pad + sorted code points.
cat >"$tmp/ref.py" <<'EOF'
import re, struct, sys
out, every, mode, files = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
seqs = []
for f in files:
    raw = open(f, 'rb').read()
    t = raw if mode == 'bytes' else raw.decode('utf-8')
    sep = b'(?m)^%\n' if mode == 'bytes' else r'(?m)^%\n'
    parts = re.split(sep, t) if re.search(b'(?m)^%$' if mode == 'bytes' else r'(?m)^%$', t) else [t]
    seqs += [p for p in parts if p.strip()]
train = [s for i, s in enumerate(seqs) if (i + 1) % every]
test = [s for i, s in enumerate(seqs) if (i + 1) % every == 0]
units = lambda s: list(s) if mode == 'bytes' else [ord(c) for c in s]
codes = list(range(256)) if mode == 'bytes' else [0] + sorted(set(c for s in seqs for c in units(s)))
lens = sorted(len(units(s)) for s in seqs)
rank = lambda p: lens[max((len(lens) * p + 99) // 100 - 1, 0)]
ntr, nte = sum(len(units(s)) for s in train), sum(len(units(s)) for s in test)
print("tokenize: %d files (%d fortune), %d sequences (train %d, test %d), %d tokens (train %d, test %d)" %
      (len(files), len(files), len(seqs), len(train), len(test), ntr + nte, ntr, nte))
print("vocab: %d %s, pad id 0, 2 bytes per id" % (len(codes), mode))
print("sequence length (tokens): median %d, p90 %d, max %d" % (rank(50), rank(90), lens[-1]))
# the files decode back to the text
idx = {c: i for i, c in enumerate(codes)}
for name, part in (('train', train), ('test', test)):
    b = open('%s/%s.tok' % (out, name), 'rb').read()
    magic, ver, w, V, pad, S, N, res = struct.unpack('<8sIIIIQQQ', b[:48])
    off = struct.unpack('<%dQ' % (S + 1), b[48:48 + 8 * (S + 1)])
    ids = struct.unpack('<%dH' % N, b[48 + 8 * (S + 1):])
    want = [[idx[c] for c in units(s)] for s in part]
    got = [list(ids[off[k]:off[k + 1]]) for k in range(S)]
    if (magic, ver, w, V, pad, res) != (b'WFTOKENS', 1, 2, len(codes), 0, 0) or got != want:
        print("decode: %s.tok does not hold the text" % name)
voc = open('%s/vocab.txt' % out).read().split('\n')
if voc[0] != 'weft-vocab 1 %s %d pad 0' % (mode, len(codes)) or len(voc) != len(codes) + 2:
    print("decode: vocab.txt header or length")
for i, c in enumerate(codes):
    f = voc[i + 1].split(' ')
    if f[0] != str(i) or f[1] != ('U+%04X' % c if mode == 'chars' else '0x%02X' % c):
        print("decode: vocab.txt line %d: %s" % (i + 2, voc[i + 1])); break
EOF
python3 "$tmp/ref.py" "$tmp/a" 10 chars "${files[@]}" >"$tmp/ra"
head -3 "$tmp/sa" >"$tmp/sa3"
if cmp -s "$tmp/sa3" <(head -3 "$tmp/ra"); then ok "summary matches the reference: $(head -1 "$tmp/sa" | cut -d, -f2-3)"; else bad "summary"; diff "$tmp/sa3" "$tmp/ra"; fi
grep -q "^decode" "$tmp/ra" && { bad "contents"; grep "^decode" "$tmp/ra"; } || ok "train.tok, test.tok and vocab.txt hold the text"
grep -q "^vocab: 91 chars" "$tmp/sa" && ok "vocab 91 chars" || bad "vocab: $(sed -n 2p "$tmp/sa")"

"$WEFT" tokenize "${files[@]}" --out "$tmp/c" --vocab bytes --test-every 4 >"$tmp/sc" 2>&1 || { bad "--vocab bytes"; cat "$tmp/sc"; }
python3 "$tmp/ref.py" "$tmp/c" 4 bytes "${files[@]}" >"$tmp/rc"
if cmp -s <(head -3 "$tmp/sc") <(head -3 "$tmp/rc") && ! grep -q "^decode" "$tmp/rc"; then
  ok "--vocab bytes --test-every 4 matches the reference"
else
  bad "--vocab bytes"; diff <(head -3 "$tmp/sc") "$tmp/rc"
fi

# refused input
expect_fail() { # NAME WANT_RC PATTERN ARGS...
  local name=$1 want=$2 pat=$3; shift 3
  "$WEFT" tokenize "$@" >"$tmp/e" 2>&1
  local rc=$?
  if [ $rc -eq "$want" ] && grep -q -- "$pat" "$tmp/e"; then ok "$name"; else bad "$name (rc $rc): $(head -2 "$tmp/e")"; fi
}
expect_fail "no --out" 2 "--out DIR is required" "${files[0]}"
expect_fail "no input" 2 "no text files given" --out "$tmp/x"
expect_fail "--test-every 1" 2 "N >= 2" "${files[0]}" --out "$tmp/x" --test-every 1
expect_fail "--vocab words" 2 "expected --vocab chars or --vocab bytes" "${files[0]}" --out "$tmp/x" --vocab words
expect_fail "missing file" 1 "$tmp/nope" "$tmp/nope" --out "$tmp/x"
printf 'abc\n%%\nde\0f\n' >"$tmp/nul.txt"
expect_fail "NUL byte" 1 "nul.txt: byte 0 at offset 8: not a text file" "$tmp/nul.txt" --out "$tmp/x"
printf 'caf\xe9\n' >"$tmp/latin1.txt"
expect_fail "invalid UTF-8" 1 "latin1.txt: invalid UTF-8 at offset 3 (byte 0xe9; try --vocab bytes)" "$tmp/latin1.txt" "${files[@]}" --out "$tmp/x"
expect_fail "too few sequences" 1 "the test split (every 10th sequence) would be empty" "$F/pratchett" --out "$tmp/x"
[ -e "$tmp/x/train.tok" ] && bad "a refused run wrote files" || ok "refused runs write nothing"

echo "tokenize: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
