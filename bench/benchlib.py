"""Pieces the benchmark scripts share: the machine's CPU accounting and a small dataset folder."""
import gzip
import os
import time

DATA = "/usr/share/datasets/fashion-mnist"
NOISY = 10.0  # % of the machine used by other processes during a run above which it is flagged (or repeated)


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


def add_run_options(ap, timeout):
    """The options of a benchmark whose rows are `weft` runs: the evaluation's size, waiting for an
    idle machine, repeating disturbed runs and the time limit per process."""
    ap.add_argument("--test-samples", type=int, default=1000,
                    help="test samples in the evaluation every run ends with (default 1000; 0 = all 10000)")
    ap.add_argument("--settle", type=float, default=20,
                    help="before each run, wait up to this many s for the CPUs to be >= 90%% idle (default 20)")
    ap.add_argument("--retries", type=int, default=2,
                    help="repeat a run during which other processes used more than %.0f percent of the machine, "
                    "keeping the least disturbed attempt (default 2)" % NOISY)
    ap.add_argument("--timeout", type=float, default=timeout,
                    help="seconds per weft process (default %g)" % timeout)


def write_cnn_job(path, model, data, out, max_steps, batch, micro_batches, eval_batch):
    """The short CNN job the multi-process benchmarks train (Adam, seed 3, one thread per worker)."""
    with open(path, "w") as f:
        f.write("\n".join([
            "model = %s" % model,
            "data = %s" % data,
            "epochs = 1",
            "max_steps = %d" % max_steps,
            "batch = %d" % batch,
            "micro_batches = %d" % micro_batches,
            "seed = 3",
            "optimizer = adam",
            "lr = 0.001",
            "threads = 1",
            "eval_batch = %d" % eval_batch,
            "out = %s" % out,
        ]) + "\n")


def count_steps(path):
    """Complete step lines in a run's metrics.jsonl so far (0 before it exists)."""
    try:
        with open(path) as f:
            return sum(1 for line in f if line.startswith('{"step"') and line.endswith("}\n"))
    except OSError:
        return 0
