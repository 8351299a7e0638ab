#!/usr/bin/python3
"""Writes the PyTorch reference of a whole weft training run on token data:
the character language model of examples/charlm.wf on a small tokenized
subset of the fortunes corpus.

Run with Debian's PyTorch (python3-torch, 1.13) and NumPy from the
repository root, after building weft:

    /usr/bin/python3 tools/ref/gen_charlm_run.py [--weft build/weft] [outdir]   # default tests/ref/charlm_run

It needs the fortunes package (/usr/share/games/fortunes). It runs
`weft tokenize FILES --out TMP` on the files of tokenize.txt (below), reads
TMP/train.tok directly (docs/formats.md, "Token datasets"), and reuses
gen_mlp_run.py's exact re-implementation of weft's epoch order and its
safetensors writer. It writes into outdir:

    tokenize.txt       the text files tokenized, one path a line, in order
    tokens.sha256      `sha256sum` lines of the three files weft tokenize made
                       (train.tok, test.tok, vocab.txt); the test makes them
                       again and checks them against these before training
    init.safetensors   emb.weight (torch.nn.Embedding's N(0, 1) init) and
                       fc1/fc2 .weight/.bias (torch.nn.Linear's default) after
                       torch.manual_seed(0), float32
    losses.txt         "STEP LOSS" per line, STEP 1..100 as weft's metrics.jsonl
                       counts steps, LOSS the step's mean cross-entropy before
                       the update, 9 significant digits
    charlm_run.job     the weft job that repeats the run (tests/cli/charlm.sh
                       sets `data` to the folder it tokenizes into, makes the
                       other paths absolute and gives its own `out`)

The samples (window, labels = next, stride 1, seq_len T = 16): the train
split's ids as one stream in file order, across sequence boundaries; sample
i is ids [i, i+T) and its label id i+T; there are N - T samples of N ids.
Steps: 8763 samples make 68 steps of 128 an epoch (the rest of the order is
dropped), so steps 1..68 take epoch 0's order for seed 1 and steps 69..100
epoch 1's: the run crosses an epoch boundary. Adam(lr=0.003, betas=(0.9,
0.999), eps=1e-8) as weft's adam, float32, one thread, micro_batches 1.
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

FORTUNES = "/usr/share/games/fortunes"
FILES = [os.path.join(FORTUNES, f) for f in ("goedel", "pratchett", "translate-me")]
SEED = 1
BATCH = 128
STEPS = 100
T = 16  # examples/charlm.wf: input x : i32[B, 16]
VOCAB = 114  # examples/charlm.wf: embedding(x, vocab=114, dim=16), linear(h, out=114)
DIM = 16
HIDDEN = 256
LR = 0.003

TOK_MAGIC = b"WFTOKENS"
TOK_HEADER = 48


def read_tok(path):
    """(vocab size, pad id, sequence offsets, ids) of a weft .tok file, checked as weft checks it."""
    with open(path, "rb") as f:
        buf = f.read()
    assert len(buf) >= TOK_HEADER and buf[:8] == TOK_MAGIC, f"{path}: not a weft token file"
    version, id_bytes, vocab, pad = struct.unpack_from("<IIII", buf, 8)
    n_seq, n_tok, reserved = struct.unpack_from("<QQQ", buf, 24)
    assert version == 1 and id_bytes in (2, 4) and reserved == 0 and pad < vocab, f"{path}: bad header"
    off_end = TOK_HEADER + 8 * (n_seq + 1)
    offsets = np.frombuffer(buf, dtype="<u8", count=n_seq + 1, offset=TOK_HEADER)
    ids = np.frombuffer(buf, dtype="<u2" if id_bytes == 2 else "<u4", count=n_tok, offset=off_end)
    assert off_end + id_bytes * n_tok == len(buf), f"{path}: {len(buf)} bytes, header says otherwise"
    assert offsets[0] == 0 and offsets[-1] == n_tok and np.all(np.diff(offsets.astype(np.int64)) >= 0)
    assert np.all(ids < vocab), f"{path}: an id not below the vocab size {vocab}"
    return vocab, pad, offsets, ids.astype(np.int64)


def windows(ids, t, stride=1):
    """weft's window samples (docs/formats.md): x[i] = ids[i*s : i*s+t], y[i] = ids[i*s+t]."""
    n = (len(ids) - t - 1) // stride + 1
    starts = np.arange(n) * stride
    x = ids[starts[:, None] + np.arange(t)[None, :]]
    y = ids[starts + t]
    return x, y


class CharLM(torch.nn.Module):
    """examples/charlm.wf."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, DIM)
        self.fc1 = torch.nn.Linear(T * DIM, HIDDEN)
        self.fc2 = torch.nn.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(self.emb(x).flatten(1))))


JOB = """\
# A {steps}-step run of examples/charlm.wf on a small tokenized subset of the
# fortunes corpus (tokenize.txt) that tools/ref/gen_charlm_run.py repeats in
# PyTorch; its per-step losses are losses.txt. tests/cli/charlm.sh tokenizes
# the files of tokenize.txt into a folder of its own and sets `data` to it,
# makes the other paths absolute and gives its own `out`.
model = ../../../examples/charlm.wf
data = data
init = init.safetensors
seq_len = {t}
sample = window
labels = next
epochs = 2
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


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    args = sys.argv[1:]
    weft = os.path.join(ROOT, "build", "weft")
    if args[:1] == ["--weft"]:
        weft, args = args[1], args[2:]
    out = args[0] if args else os.path.join(ROOT, "tests", "ref", "charlm_run")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)

    tmp = tempfile.mkdtemp()
    try:
        data = os.path.join(tmp, "data")
        subprocess.run([weft, "tokenize", *FILES, "--out", data], check=True, stdout=subprocess.DEVNULL)
        names = ("train.tok", "test.tok", "vocab.txt")
        sums = {n: sha256(os.path.join(data, n)) for n in names}
        vocab, _, _, ids = read_tok(os.path.join(data, "train.tok"))
    finally:
        shutil.rmtree(tmp)
    assert vocab <= VOCAB, f"the subset's vocabulary ({vocab} ids) exceeds the model's {VOCAB}"

    x_all, y_all = windows(ids, T)
    n = len(y_all)
    spe = n // BATCH  # weft's steps an epoch: the order's tail that fills no batch is dropped
    orders = {}

    torch.manual_seed(0)
    model = CharLM()
    init = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for s in range(STEPS):
        epoch, es = divmod(s, spe)
        if epoch not in orders:
            orders[epoch] = mlprun.epoch_order(n, SEED, epoch)
        ids_b = orders[epoch][BATCH * es:BATCH * es + BATCH]
        x = torch.from_numpy(x_all[ids_b])
        y = torch.from_numpy(y_all[ids_b])
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
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
    with open(os.path.join(out, "charlm_run.job"), "w") as f:
        f.write(JOB.format(steps=STEPS, t=T, batch=BATCH, seed=SEED, lr=LR))
    print("wrote %s: %d samples, %d steps an epoch, vocab %d; %d steps, loss %.9g -> %.9g"
          % (out, n, spe, vocab, STEPS, losses[0], losses[-1]))


if __name__ == "__main__":
    main()
