"""Pieces the benchmark scripts share: the machine's CPU accounting and a small dataset folder."""
import gzip
import os
import time

DATA = "/usr/share/datasets/fashion-mnist"


def cpu_busy_s():
    """CPU seconds spent (not idle) on all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def idle_pct(interval=1.0):
    """Percent of all CPUs idle over `interval` s (others' load makes every figure noisy)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v[:8])
    i0, t0 = snap()
    time.sleep(interval)
    i1, t1 = snap()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


def make_data(folder, n_test):
    """A dataset folder: the Fashion-MNIST training files (symlinks) and the first n_test test
    samples (uncompressed IDX), so the evaluation a run ends with stays short (the checkpoint
    does not depend on it)."""
    os.makedirs(folder, exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        dst = os.path.join(folder, name)
        if not os.path.exists(dst):
            os.symlink(os.path.join(DATA, name), dst)
    for name, item in (("t10k-images-idx3-ubyte", 28 * 28), ("t10k-labels-idx1-ubyte", 1)):
        with gzip.open(os.path.join(DATA, name + ".gz"), "rb") as f:
            raw = f.read()
        ndim = raw[3]
        hdr = bytearray(raw[:4 + 4 * ndim])
        n = min(n_test, int.from_bytes(hdr[4:8], "big"))
        hdr[4:8] = n.to_bytes(4, "big")
        with open(os.path.join(folder, name), "wb") as f:
            f.write(bytes(hdr) + raw[4 + 4 * ndim:4 + 4 * ndim + n * item])
    return folder
