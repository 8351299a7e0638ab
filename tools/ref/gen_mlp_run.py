#!/usr/bin/python3
"""Writes the PyTorch reference of a whole weft training run (the MLP).

Run with Debian's PyTorch (python3-torch, 1.13) and NumPy from anywhere:

    /usr/bin/python3 tools/ref/gen_mlp_run.py [outdir]   # default tests/ref/mlp_run

It needs Debian's Fashion-MNIST (package dataset-fashion-mnist) in
/usr/share/datasets/fashion-mnist. It writes into outdir:

    init.safetensors   fc1/fc2/fc3 .weight/.bias of torch.nn.Linear's default
                       init after torch.manual_seed(0), float32
    losses.txt         "STEP LOSS" per line, STEP 1..200 as weft's metrics.jsonl
                       counts steps, LOSS the mean cross-entropy of that step's
                       batch before the update, 9 significant digits
    order_head.txt     the first 20 sample ids of epoch 0's order (diagnosis only)
    mlp_run.job        the weft job that repeats the run (tests/cli/torch_run.sh
                       rewrites it with absolute paths and its own `out`)

The run: examples/mlp.wf (784-256-256-10, ReLU), batch 64 taken in order from
weft's epoch-0 order for seed 1 (re-implemented below with exact integer
arithmetic: Philox4x32-10, wf_mix64, wf_hash_combine, wf_rng_init,
wf_rng_below, wf_epoch_order), x = float32(pixel) / 255, CrossEntropyLoss
(mean), SGD(lr=0.05, momentum=0.9), float32, one thread, 200 steps.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.normpath(os.path.join(HERE, "..", "..", "tests", "ref", "mlp_run"))
DATA = "/usr/share/datasets/fashion-mnist"
SEED = 1
BATCH = 64
STEPS = 200
LR = 0.05
MOMENTUM = 0.9

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF

# ---- weft's randomness (src/core/rng.c, src/data/dataset.c), exact ----

PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85


def philox(key, ctr_hi, ctr_lo):
    c0, c1 = ctr_lo & M32, (ctr_lo >> 32) & M32
    c2, c3 = ctr_hi & M32, (ctr_hi >> 32) & M32
    k0, k1 = key & M32, (key >> 32) & M32
    for _ in range(10):
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> 32, p0 & M32
        hi1, lo1 = p1 >> 32, p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & M32
        k1 = (k1 + PHILOX_W1) & M32
    return [c0, c1, c2, c3]


def mix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def hash_combine(h, v):
    return mix64(h ^ ((v + 0x9E3779B97F4A7C15 + ((h << 6) & M64) + (h >> 2)) & M64))


class Rng:
    """struct wf_rng: wf_rng_init, wf_rng_u32, wf_rng_below."""

    def __init__(self, seed, stream):
        self.key = mix64(seed ^ 0x5745465452414E44)
        self.stream = stream
        self.counter = 0
        self.buf = [0, 0, 0, 0]
        self.idx = 4

    def u32(self):
        if self.idx >= 4:
            self.buf = philox(self.key, self.stream, self.counter)
            self.counter = (self.counter + 1) & M64
            self.idx = 0
        v = self.buf[self.idx]
        self.idx += 1
        return v

    def below(self, n):
        m = self.u32() * n
        l = m & M32
        if l < n:
            t = ((1 << 32) - n) % n  # (uint32_t)(-n) % n
            while l < t:
                m = self.u32() * n
                l = m & M32
        return m >> 32


EPOCH_TAG = 0x45504F43484F5244  # "EPOCHORD"


def epoch_order(n, seed, epoch):
    r = Rng(seed, hash_combine(EPOCH_TAG, epoch))
    perm = list(range(n))
    for i in range(n, 1, -1):
        j = r.below(i)
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm


# ---- data ----


def read_idx(path, magic):
    with gzip.open(path, "rb") as f:
        buf = f.read()
    got, n = struct.unpack(">II", buf[:8])
    assert got == magic, f"{path}: magic {got:#x}"
    if magic == 0x803:
        h, w = struct.unpack(">II", buf[8:16])
        return np.frombuffer(buf, dtype=np.uint8, offset=16).reshape(n, h * w)
    return np.frombuffer(buf, dtype=np.uint8, offset=8).reshape(n)


# ---- safetensors (format of docs/formats.md, as weft's writer lays it out) ----


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- the run ----


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 256)
        self.fc2 = torch.nn.Linear(256, 256)
        self.fc3 = torch.nn.Linear(256, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


JOB = """\
# A 200-step MLP run that tools/ref/gen_mlp_run.py repeats in PyTorch; its
# per-step losses are losses.txt. tests/cli/torch_run.sh runs this job with
# absolute paths and its own `out`.
model = ../../../examples/mlp.wf
data = /usr/share/datasets/fashion-mnist
init = init.safetensors
epochs = 1
batch = 64
micro_batches = 1
seed = 1
optimizer = sgd
lr = 0.05
momentum = 0.9
max_steps = 200
threads = 1
"""


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)

    images = read_idx(os.path.join(DATA, "train-images-idx3-ubyte.gz"), 0x803)
    labels = read_idx(os.path.join(DATA, "train-labels-idx1-ubyte.gz"), 0x801)
    n = images.shape[0]
    assert n == labels.shape[0] == 60000, n
    x_all = images.astype(np.float32) / np.float32(255.0)
    y_all = labels.astype(np.int64)

    order = epoch_order(n, SEED, 0)
    with open(os.path.join(OUT, "order_head.txt"), "w") as f:
        f.write(" ".join(str(i) for i in order[:20]) + "\n")

    torch.manual_seed(0)
    model = MLP()
    write_safetensors(os.path.join(OUT, "init.safetensors"),
                      {k: v.detach().numpy() for k, v in model.state_dict().items()})

    loss_fn = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    lines = []
    for s in range(STEPS):
        ids = order[BATCH * s:BATCH * s + BATCH]
        x = torch.from_numpy(x_all[ids])
        y = torch.from_numpy(y_all[ids])
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        lines.append("%d %.9g\n" % (s + 1, loss.item()))
    with open(os.path.join(OUT, "losses.txt"), "w") as f:
        f.writelines(lines)
    with open(os.path.join(OUT, "mlp_run.job"), "w") as f:
        f.write(JOB)
    print("wrote %s: %d steps, loss %s -> %s" % (OUT, STEPS, lines[0].split()[1], lines[-1].split()[1]))


if __name__ == "__main__":
    main()
