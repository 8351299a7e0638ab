#!/usr/bin/python3
"""Writes the PyTorch reference of a whole weft training run of a recurrent
classifier: a small version of examples/fortune_class.wf (two stacked LSTM
layers in `unit`s with skip regions, the second one's final h scored by a
linear layer) on a few tokenized, class-labelled fortune files.

Run with Debian's PyTorch (python3-torch, 1.13) and NumPy from the
repository root, after building weft:

    /usr/bin/python3 tools/ref/gen_fortune_class_run.py [--weft build/weft] [outdir]
    # default outdir tests/ref/fortune_class_run

It needs the fortunes package (/usr/share/games/fortunes). It runs
`weft tokenize FILES --out TMP --classes file` on the files of tokenize.txt
(below), reads TMP/train.tok and TMP/train.cls directly (docs/formats.md,
"Token datasets", "Class labels"), and reuses gen_mlp_run.py's exact
re-implementation of weft's epoch order and its safetensors writer. It writes
into outdir:

    tokenize.txt            the text files tokenized, one path a line, in
                            order (class k is the k-th file)
    tokens.sha256           `sha256sum` lines of the six files weft tokenize
                            made (train.tok, test.tok, vocab.txt, train.cls,
                            test.cls, classes.txt); the test makes them again
                            and checks them before training
    fortune_class_run.wf    the weft model (vocab and class count those of
                            the tokenized files)
    fortune_class_run.job   the weft job that repeats the run
                            (tests/cli/fortune_ref.sh sets `data` to the
                            folder it tokenizes into, makes the other paths
                            absolute and gives its own `out`)
    init.safetensors        the PyTorch model's initial weights after
                            torch.manual_seed(0) (nn.Embedding's N(0, 1),
                            nn.LSTM's and nn.Linear's defaults) under weft's
                            names, float32:
                              emb.weight                <- emb.weight
                              l1.s1.{weight,bias}_{ih,hh} <- lstm.*_l0
                              l2.s1.{weight,bias}_{ih,hh} <- lstm.*_l1
                              logits.weight, .bias      <- fc.weight, .bias
                            (nn.LSTM's rows are the gates i, f, g, o, as
                            weft's lstm: docs/recurrent.md)
    losses.txt              "STEP LOSS" per line, STEP 1..100 as weft's
                            metrics.jsonl counts steps, LOSS the step's mean
                            cross-entropy before the update, 9 significant
                            digits

The samples (sample = sequence, labels = class, seq_len T = 64): sample i is
train sequence i cut to T ids and padded with the pad id, its length
min(len, T) (never 0: tokenize skips empty sequences; checked), its label
the sequence's class. PyTorch's side feeds the padded batch through
torch.nn.utils.rnn.pack_padded_sequence(lengths, enforce_sorted=False) into
nn.LSTM(num_layers=2, batch_first=True), so each layer runs a sequence's
live steps only and h_n[-1] is the second layer's h after the sequence's last
character: what weft's skip regions and their bypass give (the state stays
as it was past a sequence's end). Steps: 276 samples make 17 steps of 16 an
epoch (the rest of the order is dropped), so step s (0-based) takes batch
s mod 17 of epoch s div 17's order for seed 1: the run crosses five epoch
boundaries. Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-8) as weft's adam,
float32, one thread, micro_batches 1.

Why lr 0.001 (examples/fortune_class.job uses 0.003): at lr 0.003 this run
is chaotic from about step 55 on: PyTorch's own float32 and float64 runs of
it (same init, same order) agree within 1e-7 up to step 51 and then part,
4e-7 at step 56, 5e-4 at 61, 6e-2 at 66, and so does weft's run from
PyTorch's float32 one (1.9e-5 at step 58, 1.5e-3 at 61), so no
implementation could match it within 1e-4 over 100 steps. At lr 0.001
PyTorch's float32 and float64 runs agree within 1e-6 over all 100 steps.
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import gen_mlp_run as mlprun  # noqa: E402  (weft's epoch order, safetensors writer)
from gen_charlm_run import read_tok, sha256  # noqa: E402

FORTUNES = "/usr/share/games/fortunes"
FILES = [os.path.join(FORTUNES, f) for f in ("goedel", "pets", "paradoxum", "riddles")]
SEED = 1
BATCH = 16
STEPS = 100
T = 64
DIM = 16
HIDDEN = 32
LR = 0.001  # not 0.003: see the docstring

CLS_MAGIC = b"WFTOKCLS"
CLS_HEADER = 64


def read_cls(path, tok_path):
    """(class count, class ids) of a weft .cls file, checked against its .tok as weft checks it."""
    with open(path, "rb") as f:
        buf = f.read()
    assert len(buf) >= CLS_HEADER and buf[:8] == CLS_MAGIC, f"{path}: not a weft class file"
    version, n_cls, n_seq = struct.unpack_from("<IIQ", buf, 8)
    digest = buf[24:56]
    (reserved,) = struct.unpack_from("<Q", buf, 56)
    with open(tok_path, "rb") as f:
        tok_digest = hashlib.sha256(f.read()).digest()
    assert version == 1 and reserved == 0 and n_cls >= 1, f"{path}: bad header"
    assert digest == tok_digest, f"{path}: labels of another tokenization"
    assert len(buf) == CLS_HEADER + 4 * n_seq, f"{path}: {len(buf)} bytes, header says otherwise"
    ids = np.frombuffer(buf, dtype="<i4", count=n_seq, offset=CLS_HEADER).astype(np.int64)
    assert np.all((ids >= 0) & (ids < n_cls)), f"{path}: a class id outside 0..{n_cls - 1}"
    return n_cls, ids


def sequences(offsets, ids, pad, t):
    """weft's sequence samples (docs/formats.md): x[i] = sequence i cut to t ids, padded with pad; len[i] = min(len, t)."""
    n = len(offsets) - 1
    x = np.full((n, t), pad, dtype=np.int64)
    lens = np.zeros(n, dtype=np.int64)
    for i in range(n):
        s = ids[offsets[i]:offsets[i + 1]][:t]
        x[i, :len(s)] = s
        lens[i] = len(s)
    return x, lens


class FortuneClass(torch.nn.Module):
    """fortune_class_run.wf: embedding, two stacked LSTM layers over the live steps, linear on the last h."""

    def __init__(self, vocab, n_cls):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, DIM)
        self.lstm = torch.nn.LSTM(DIM, HIDDEN, num_layers=2, batch_first=True)
        self.fc = torch.nn.Linear(HIDDEN, n_cls)

    def forward(self, x, lens):
        packed = torch.nn.utils.rnn.pack_padded_sequence(self.emb(x), lens, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)
        return self.fc(h_n[-1])  # h_n is unsorted back to the batch's order


def weft_names(state):
    """The PyTorch state dict under weft's parameter names."""
    out = {}
    for k, v in state.items():
        a = v.detach().numpy().copy()
        if k.startswith("lstm."):
            base, layer = k[len("lstm."):].rsplit("_l", 1)
            out["l%d.s1.%s" % (int(layer) + 1, base)] = a
        elif k.startswith("fc."):
            out["logits." + k[len("fc."):]] = a
        else:
            out[k] = a
    return out


MODEL = """\
# A small version of examples/fortune_class.wf that tools/ref/gen_fortune_class_run.py
# repeats in PyTorch (nn.LSTM(num_layers=2) on packed sequences): a fortune's
# file from its first {t} characters, read by two stacked LSTM layers whose
# skip regions do no work past each sequence's end, so the state after the
# last step is each sequence's state after its own last character.
# vocab = {vocab} and out = {n_cls} are those of the files of tokenize.txt.
model fortune_class_run

input x : i32[B, {t}]                    # the sequence's first {t} ids, padded with the pad id
input y : i32[B]                        # its class
input len : i32[B]                      # its length (1 .. {t})

emb = embedding(x, vocab={vocab}, dim={dim})
unit l1(over=emb, length=len) {{
    state s : f32[B, {s}]                # [h | c], zeros at the start
    region {{                            # only where t < len
        s1 = lstm(emb, s, hidden={h})
        h = slice(s1, axis=1, start=0, len={h})
    }}
    next s = s1                         # past the end the state stays as it was
    output h                            # l1.h: [B, {t}, {h}], 0 past the end
}}
unit l2(over=l1.h, length=len) {{
    state s : f32[B, {s}]
    region {{
        s1 = lstm(l1.h, s, hidden={h})
    }}
    next s = s1
}}
last = slice(l2.s, axis=1, start=0, len={h})    # h after each sequence's last character
logits = linear(last, out={n_cls})
loss = cross_entropy(logits, y)
acc = accuracy(logits, y)

output loss, acc
"""

JOB = """\
# A {steps}-step run of fortune_class_run.wf on a few class-labelled fortune
# files (tokenize.txt, `weft tokenize ... --classes file`) that
# tools/ref/gen_fortune_class_run.py repeats in PyTorch; its per-step losses
# are losses.txt. tests/cli/fortune_ref.sh tokenizes the files of
# tokenize.txt into a folder of its own and sets `data` to it, makes the
# other paths absolute and gives its own `out`.
model = fortune_class_run.wf
data = data
init = init.safetensors
seq_len = {t}
sample = sequence
labels = class
epochs = {epochs}
batch = {batch}
micro_batches = 1
seed = {seed}
optimizer = adam
lr = {lr}
beta1 = 0.9
beta2 = 0.999
eps = 1e-8
max_steps = {steps}
threads = 1
"""


def main():
    args = sys.argv[1:]
    weft = os.path.join(ROOT, "build", "weft")
    if args[:1] == ["--weft"]:
        weft, args = args[1], args[2:]
    out = args[0] if args else os.path.join(ROOT, "tests", "ref", "fortune_class_run")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    tmp = tempfile.mkdtemp()
    try:
        data = os.path.join(tmp, "data")
        subprocess.run([weft, "tokenize", *FILES, "--out", data, "--classes", "file"], check=True,
                       stdout=subprocess.DEVNULL)
        names = ("train.tok", "test.tok", "vocab.txt", "train.cls", "test.cls", "classes.txt")
        sums = {n: sha256(os.path.join(data, n)) for n in names}
        vocab, pad, offsets, ids = read_tok(os.path.join(data, "train.tok"))
        n_cls, labels = read_cls(os.path.join(data, "train.cls"), os.path.join(data, "train.tok"))
    finally:
        shutil.rmtree(tmp)
    assert n_cls == len(FILES), f"{n_cls} classes of {len(FILES)} files"

    x_all, len_all = sequences(offsets.astype(np.int64), ids, pad, T)
    n = len(len_all)
    assert len(labels) == n
    assert np.all(len_all >= 1), "a sequence of length 0 (tokenize should skip them)"
    spe = n // BATCH  # weft's steps an epoch: the order's tail that fills no batch is dropped
    epochs = -(-STEPS // spe)
    assert epochs >= 2, "the run should cross an epoch boundary"
    orders = {}

    torch.manual_seed(0)
    model = FortuneClass(vocab, n_cls)
    init = weft_names(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for s in range(STEPS):
        epoch, es = divmod(s, spe)
        if epoch not in orders:
            orders[epoch] = mlprun.epoch_order(n, SEED, epoch)
        ids_b = orders[epoch][BATCH * es:BATCH * es + BATCH]
        x = torch.from_numpy(x_all[ids_b])
        lens = torch.from_numpy(len_all[ids_b])
        y = torch.from_numpy(labels[ids_b])
        opt.zero_grad()
        loss = F.cross_entropy(model(x, lens), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())

    mlprun.write_safetensors(os.path.join(out, "init.safetensors"), init)
    with open(os.path.join(out, "losses.txt"), "w") as f:
        f.writelines("%d %.9g\n" % (s + 1, v) for s, v in enumerate(losses))
    with open(os.path.join(out, "tokenize.txt"), "w") as f:
        f.writelines(p + "\n" for p in FILES)
    with open(os.path.join(out, "tokens.sha256"), "w") as f:
        f.writelines("%s  %s\n" % (sums[k], k) for k in names)
    with open(os.path.join(out, "fortune_class_run.wf"), "w") as f:
        f.write(MODEL.format(t=T, vocab=vocab, n_cls=n_cls, dim=DIM, h=HIDDEN, s=2 * HIDDEN))
    with open(os.path.join(out, "fortune_class_run.job"), "w") as f:
        f.write(JOB.format(steps=STEPS, t=T, epochs=epochs, batch=BATCH, seed=SEED, lr=LR))
    cut = int(np.sum(len_all == T))
    print("wrote %s: %d sequences (%d cut to %d), %d classes, vocab %d, %d steps an epoch; %d steps, loss %.9g -> %.9g"
          % (out, n, cut, T, n_cls, vocab, spe, STEPS, losses[0], losses[-1]))


if __name__ == "__main__":
    main()
