#!/usr/bin/env python3
"""PyTorch side of weft's benchmark: trains the MLP or CNN of examples/ on
Fashion-MNIST and prints one JSON line with its steady-state training speed.

    torch_train.py --model mlp|cnn --batch 64 --blas-threads 1 --torch-threads 1 \
                   --warmup 100 --steps 1000 [--data DIR] [--no-mkldnn] [--blas-info]

The data is read from the IDX .gz files with gzip+numpy, x = pixel/255, and
held as tensors in memory before training starts. Each step gathers its batch
from a per-epoch shuffled index (part of the timed work, as in weft), then
runs forward, CrossEntropyLoss, backward and SGD (lr 0.05, momentum 0.9).
Steps 1..warmup are not timed; samples/s is taken over the next `steps` steps
with the same rule as bench/bench.py uses for weft's metrics.jsonl: the first
step of every epoch after the first is left out of both count and time (weft
evaluates and checkpoints there), so windows may span epochs.
"""
import argparse
import ctypes
import gzip
import json
import os
import resource
import sys
import time

import numpy as np


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def steady_rate(times, batch, warmup, steps, steps_per_epoch):
    """Samples/s over steps warmup+1 .. warmup+steps, from cumulative
    end-of-step times (times[k] = time after step k+1); the first step of
    each epoch after the first is excluded. Shared with bench.py."""
    n_used, t_used = 0, 0.0
    for s in range(warmup + 1, warmup + steps + 1):  # 1-based step numbers
        if s > 1 and (s - 1) % steps_per_epoch == 0:
            continue
        prev = times[s - 2] if s >= 2 else 0.0
        t_used += times[s - 1] - prev
        n_used += 1
    return batch * n_used / t_used if t_used > 0 else 0.0, n_used, t_used


def blas_info():
    """Which BLAS/LAPACK/oneDNN objects this process has mapped, and OpenBLAS's view."""
    maps = set()
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1] if len(line.split()) >= 6 else ""
            b = os.path.basename(p)
            if any(k in b for k in ("blas", "lapack", "dnnl", "mkl", "blis", "gomp", "omp")):
                maps.add(os.path.realpath(p))
    info = {"mapped": sorted(maps)}
    try:
        ob = ctypes.CDLL("libopenblas.so.0")
        ob.openblas_get_corename.restype = ctypes.c_char_p
        ob.openblas_get_config.restype = ctypes.c_char_p
        info["openblas_core"] = ob.openblas_get_corename().decode()
        info["openblas_config"] = ob.openblas_get_config().decode()
        info["openblas_threads"] = ob.openblas_get_num_threads()
    except OSError as e:
        info["openblas_error"] = str(e)
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["mlp", "cnn"], required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--blas-threads", type=int, default=1)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--no-mkldnn", action="store_true", help="route conv through im2col + BLAS")
    ap.add_argument("--blas-info", action="store_true", help="add the mapped BLAS libraries to the JSON")
    a = ap.parse_args()

    import torch
    import torch.nn as nn

    torch.set_num_threads(a.torch_threads)
    torch.manual_seed(a.seed)
    if a.no_mkldnn:
        torch.backends.mkldnn.enabled = False
    # OPENBLAS_NUM_THREADS is set by the caller; set it again through the library itself.
    try:
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(a.blas_threads)
    except OSError:
        pass

    x = read_idx(os.path.join(a.data, "train-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(a.data, "train-labels-idx1-ubyte.gz"))
    n = x.shape[0]
    X = torch.from_numpy(x.astype(np.float32) / 255.0)
    X = X.reshape(n, 784) if a.model == "mlp" else X.reshape(n, 1, 28, 28)
    X = X.contiguous()
    Y = torch.from_numpy(y.astype(np.int64))

    if a.model == "mlp":
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    else:
        model = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
    model.train()
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(a.seed)

    B = a.batch
    spe = n // B
    total = a.warmup + a.steps
    times = []
    losses = []
    perm = None
    t0 = time.perf_counter()
    for s in range(total):
        es = s % spe
        if es == 0:
            perm = torch.randperm(n, generator=gen)
        idx = perm[es * B:(es + 1) * B]
        xb = X.index_select(0, idx)
        yb = Y.index_select(0, idx)
        out = model(xb)
        loss = loss_fn(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)

    sps, n_used, t_used = steady_rate(times, B, a.warmup, a.steps, spe)
    res = {
        "side": "pytorch", "model": a.model, "batch": B, "blas_threads": a.blas_threads,
        "torch_threads": a.torch_threads, "mkldnn": bool(torch.backends.mkldnn.enabled),
        "warmup": a.warmup, "steps": a.steps, "timed_steps": n_used, "timed_s": round(t_used, 6),
        "samples_per_s": round(sps, 1), "first_loss": losses[0], "last_loss": losses[-1],
        "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "torch": torch.__version__,
    }
    if a.blas_info:
        res["blas"] = blas_info()
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
