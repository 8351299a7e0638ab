#!/usr/bin/env python3
"""PyTorch side of bench/skip.sh: the one-layer LSTM language model of the skip-region
benchmark on the same batches as weft, padded and packed; one JSON line.

    skip_torch.py --data DIR --seq-len 128 --batch 32 --seed 1 --warmup 5 --steps 30 \
                  [--modes padded,packed] [--torch-threads 1] [--blas-threads 1] [--lr 0.003] [--budget S]

DIR is a token dataset made by `weft tokenize` (train.tok, vocab.txt; docs/formats.md).
Samples are built as weft builds them with `sample = sequence` (include/weft/loader.h):
x = the sequence's first T ids padded with the pad id, y = the id after each position
(the pad id past the end), length = min(sequence length, T). Step t (0-based) trains on
the ids [t*B, (t+1)*B) of the epoch-0 order wf_epoch_order(seed, 0) (src/data/dataset.c,
ported below with weft's Philox generator, src/core/rng.c), i.e. on weft's own batches.
All samples are tensors before the clock starts; each step gathers its batch with
index_select (timed, as in weft, whose loader runs beside the step).

Model: nn.Embedding(V, 32) -> nn.LSTM(32, 128, batch_first=True) -> nn.Linear(128, V) ->
CrossEntropyLoss(ignore_index=pad), Adam. `padded` runs the whole [B, T] through the LSTM;
`packed` packs with pack_padded_sequence(lengths, enforce_sorted=False) and unpacks with
pad_packed_sequence(total_length=T) before the linear layer. Each mode: a fresh model
(seeded), `warmup` untimed steps, then `steps` timed ones; ms/step over those (wall, and the
process's CPU time: time.process_time).

With --budget S, a mode whose first step x (warmup + steps) exceeds S runs 1 warm-up step
and as many timed steps as fit (>= 2; the JSON says so in "note"), or is skipped
(ms_per_step null, "first_step_s" given) when not even 3 steps fit. PyTorch 1.13's packed
LSTM backward on the CPU grows with T^2 per training step: the backward of each time step's
slice of the packed sequence (SliceBackward0) zero-fills and adds a tensor the size of the
whole packed sequence (fill_ and add dominate torch.autograd.profiler's table). bench/skip.py
also runs each mode in a process of its own and kills one that runs far past its budget.

The helpers (epoch_order, read_tok, samples) use the standard library only, so bench/skip.py
imports them without torch.
"""
import argparse
import ctypes
import json
import os
import resource
import struct
import sys
import time

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
EPOCH_TAG = 0x45504F43484F5244  # src/data/dataset.c


def mix64(x):
    """wf_mix64: the splitmix64 finalizer."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def hash_combine(h, v):
    """wf_hash_combine."""
    return mix64(h ^ ((v + 0x9E3779B97F4A7C15 + (h << 6) + (h >> 2)) & M64))


def philox(key, ctr_hi, ctr_lo):
    """wf_philox: Philox4x32-10."""
    c0, c1 = ctr_lo & M32, (ctr_lo >> 32) & M32
    c2, c3 = ctr_hi & M32, (ctr_hi >> 32) & M32
    k0, k1 = key & M32, (key >> 32) & M32
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        hi0, lo0 = p0 >> 32, p0 & M32
        hi1, lo1 = p1 >> 32, p1 & M32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return [c0, c1, c2, c3]


class Rng:
    """struct wf_rng: wf_rng_init, wf_rng_u32, wf_rng_below."""

    def __init__(self, seed, stream):
        self.key = mix64((seed ^ 0x5745465452414E44) & M64)
        self.stream = stream
        self.counter = 0
        self.buf = []

    def u32(self):
        if not self.buf:
            self.buf = philox(self.key, self.stream, self.counter)
            self.counter += 1
        return self.buf.pop(0)

    def below(self, n):
        m = self.u32() * n
        lo = m & M32
        if lo < n:
            t = ((1 << 32) - n) % n
            while lo < t:
                m = self.u32() * n
                lo = m & M32
        return m >> 32


def epoch_order(n, seed, epoch):
    """wf_epoch_order: the order of the n training samples in that epoch."""
    r = Rng(seed, hash_combine(EPOCH_TAG, epoch))
    perm = list(range(n))
    for i in range(n, 1, -1):
        j = r.below(i)
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm


def read_tok(path):
    """A *.tok file: (vocab size, pad id, list of sequences as lists of ids)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:8] != b"WFTOKENS":
        raise ValueError("%s: not a token file" % path)
    _ver, b, V, pad = struct.unpack_from("<4I", raw, 8)
    S, N = struct.unpack_from("<2Q", raw, 24)
    off = struct.unpack_from("<%dQ" % (S + 1), raw, 48)
    base = 48 + 8 * (S + 1)
    ids = struct.unpack_from("<%d%s" % (N, "H" if b == 2 else "I"), raw, base)
    return V, pad, [ids[off[k]:off[k + 1]] for k in range(S)]


def samples(seqs, T, pad):
    """(x, y, length) per sequence as weft's `sample = sequence`, `labels = shifted` builds them."""
    out = []
    for s in seqs:
        n = min(len(s), T)
        x = list(s[:n]) + [pad] * (T - n)
        y = list(s[1:T + 1]) + [pad] * (T - len(s[1:T + 1]))
        out.append((x, y, n))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1, help="the weft job's seed: picks the batches (default 1)")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--modes", default="padded,packed")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.003)
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds per mode (0: none): when the first step x (warmup + steps) would exceed it, the mode "
                    "runs 1 warm-up step and as many timed ones as fit (at least 2), or is skipped when 3 steps would "
                    "not fit")
    a = ap.parse_args()

    import torch
    import torch.nn as nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.set_num_threads(a.torch_threads)
    try:  # OPENBLAS_NUM_THREADS is set by the caller; set it again through the library itself
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(a.blas_threads)
    except OSError:
        pass

    V, pad, seqs = read_tok(os.path.join(a.data, "train.tok"))
    T, B = a.seq_len, a.batch
    total = a.warmup + a.steps
    if total * B > len(seqs):
        sys.exit("skip_torch.py: %d steps of %d need %d sequences, the data has %d" % (total, B, total * B, len(seqs)))
    perm = epoch_order(len(seqs), a.seed, 0)
    sm = samples(seqs, T, pad)
    X = torch.tensor([s[0] for s in sm], dtype=torch.int64)
    Y = torch.tensor([s[1] for s in sm], dtype=torch.int64)
    L = torch.tensor([s[2] for s in sm], dtype=torch.int64)
    P = torch.tensor(perm, dtype=torch.int64)

    class LM(nn.Module):
        def __init__(self, packed):
            super().__init__()
            self.packed = packed
            self.emb = nn.Embedding(V, 32)
            self.lstm = nn.LSTM(32, 128, batch_first=True)
            self.out = nn.Linear(128, V)

        def forward(self, x, lens):
            e = self.emb(x)
            if self.packed:
                h, _ = self.lstm(pack_padded_sequence(e, lens, batch_first=True, enforce_sorted=False))
                h, _ = pad_packed_sequence(h, batch_first=True, total_length=T)
            else:
                h, _ = self.lstm(e)
            return self.out(h)

    res = {"side": "pytorch", "torch": torch.__version__, "seq_len": T, "batch": B, "warmup": a.warmup,
           "steps": a.steps, "torch_threads": a.torch_threads, "blas_threads": a.blas_threads,
           "modes": a.modes}
    for mode in a.modes.split(","):
        torch.manual_seed(a.seed)
        model = LM(mode == "packed")
        model.train()
        loss_fn = nn.CrossEntropyLoss(ignore_index=pad)
        opt = torch.optim.Adam(model.parameters(), lr=a.lr)
        warmup, steps = a.warmup, a.steps
        times, cpus, losses = [], [], []
        note = None
        t0 = time.perf_counter()
        c0 = time.process_time()
        s = 0
        while s < warmup + steps:
            idx = P[s * B:(s + 1) * B]
            xb, yb, lb = X.index_select(0, idx), Y.index_select(0, idx), L.index_select(0, idx)
            logits = model(xb, lb)
            loss = loss_fn(logits.reshape(-1, V), yb.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            s += 1
            if s == 1 and a.budget > 0 and times[0] * (warmup + steps) > a.budget:
                fit = int(a.budget / times[0])
                if fit < 3:
                    note = "skipped: its first step took %.1f s, 3 steps would exceed --budget %.0f s" % (
                        times[0], a.budget)
                    break
                warmup, steps = 1, min(steps, fit - 1)
                note = "%d timed steps after 1 warm-up: its first step took %.1f s (--budget %.0f s)" % (
                    steps, times[0], a.budget)
        if note and note.startswith("skipped"):
            res[mode] = {"ms_per_step": None, "note": note, "first_step_s": times[0]}
            continue
        dt = times[warmup + steps - 1] - times[warmup - 1]
        dc = cpus[warmup + steps - 1] - cpus[warmup - 1]
        res[mode] = {"ms_per_step": 1000.0 * dt / steps, "cpu_ms_per_step": 1000.0 * dc / steps, "timed_s": dt,
                     "warmup": warmup, "steps": steps,
                     "first_loss": losses[0], "last_loss": losses[-1]}
        if note:
            res[mode]["note"] = note
    res["peak_rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
