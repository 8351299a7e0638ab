#!/usr/bin/env python3
"""weft data-service benchmark: where preprocessing runs (stdlib only). See bench/README.md.

Two regimes, each trained by `weft train` with preprocessing placed on the cpu pool, on the
compute device (the training process's compute threads on a machine without a GPU), and
adaptively (`placement = auto`), side by side in one invocation:

  input-bound    examples/mlp.wf, batch 256, 2 compute threads: little compute per sample,
                 heavy transforms (noise with 8 draws per pixel); the pool's one thread
                 cannot keep up, the two compute threads prepare a batch faster;
  compute-bound  examples/cnn.wf, batch 64, 1 compute thread: much compute per sample,
                 lighter transforms (noise with 3 draws per pixel) that the pool's thread
                 prepares on the other core while the step computes.

Both use 1 pool thread (`loader_workers`). Reports the
steady samples/s (medians of --runs runs), the share of steps whose batch each placement
prepared, and for each regime adaptive / best fixed and adaptive / worse fixed. Goal: adaptive
within 5 % of the better fixed placement and ahead of the worse one, in both regimes.

Usually started through bench/data.sh, which sets the OpenBLAS settings.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from benchlib import cpu_busy_s

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
NORM = "normalize(mean=0.286, std=0.353), crop(pad=2), flip(p=0.5)"
REGIMES = {
    "input": dict(model="examples/mlp.wf", batch=256, transforms=NORM + ", noise(std=0.05, repeat=%d)"),
    "compute": dict(model="examples/cnn.wf", batch=64, transforms=NORM + ", noise(std=0.05, repeat=%d)"),
}


def write_job(path, out, regime, a, placement):
    r = REGIMES[regime]
    repeat = a.input_repeat if regime == "input" else a.compute_repeat
    with open(path, "w") as f:
        f.write("\n".join([
            "model = %s" % os.path.join(ROOT, r["model"]),
            "data = %s" % DATA,
            "data_stage = %s" % os.path.join(a.tmp, "stage"),
            "out = %s" % out,
            "epochs = 1",
            "max_steps = %d" % (a.input_steps if regime == "input" else a.compute_steps),
            "batch = %d" % r["batch"],
            "seed = 5",
            "optimizer = sgd",
            "lr = 0.05",
            "momentum = 0.9",
            "threads = %d" % (a.input_threads if regime == "input" else a.compute_threads),
            "loader_workers = %d" % a.loader_workers,
            "placement = %s" % placement,
            'transforms = "%s"' % (r["transforms"] % repeat),
            "eval_batch = 1000",
        ]) + "\n")


def run_one(a, regime, placement, k):
    d = os.path.join(a.tmp, "%s-%s-%d" % (regime, placement, k))
    os.makedirs(d, exist_ok=True)
    job = os.path.join(d, "job.job")
    write_job(job, os.path.join(d, "out"), regime, a, placement)
    b0, t0 = cpu_busy_s(), time.monotonic()
    with open(os.path.join(d, "log"), "w") as log:
        p = subprocess.run([a.weft, "train", job, "--quiet"], stdout=log, stderr=subprocess.STDOUT,
                           timeout=a.timeout)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        with open(os.path.join(d, "log")) as f:
            sys.exit("data bench: weft train failed (%s %s):\n%s" % (regime, placement, f.read()[-2000:]))
    steps = []
    with open(os.path.join(d, "out", "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            if "event" not in m:
                steps.append(m)
    w = a.warmup
    t = steps[-1]["time_s"] - steps[w - 1]["time_s"]
    rate = REGIMES[regime]["batch"] * (len(steps) - w) / t
    dev = sum(1 for s in steps[w:] if s.get("placement") == "device") / max(1, len(steps) - w)
    wait = sum(s.get("data_wait_s", 0) for s in steps[w:]) / t
    return rate, dev, wait, wall


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weft", required=True)
    ap.add_argument("--runs", type=int, default=3, help="runs per configuration, medians (default 3)")
    ap.add_argument("--input-threads", type=int, default=2, help="compute threads, input-bound job (default 2)")
    ap.add_argument("--compute-threads", type=int, default=1, help="compute threads, compute-bound job (default 1)")
    ap.add_argument("--loader-workers", type=int, default=1, help="cpu pool threads (default 1)")
    ap.add_argument("--input-steps", type=int, default=400)
    ap.add_argument("--compute-steps", type=int, default=400)
    ap.add_argument("--input-repeat", type=int, default=8, help="noise draws per pixel, input-bound job")
    ap.add_argument("--compute-repeat", type=int, default=3, help="noise draws per pixel, compute-bound job")
    ap.add_argument("--warmup", type=int, default=8, help="steps before the timed ones (default 8)")
    ap.add_argument("--regimes", default="input,compute")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--tmp")
    ap.add_argument("--json")
    a = ap.parse_args()
    a.tmp = a.tmp or tempfile.mkdtemp(prefix="weft-data-bench-")
    os.makedirs(a.tmp, exist_ok=True)
    regimes = [r for r in a.regimes.split(",") if r]
    print("weft data bench: %s; compute threads: input-bound %d, compute-bound %d; %d pool thread(s); "
          "%d run(s) each; cores %d" % (a.weft, a.input_threads, a.compute_threads, a.loader_workers, a.runs,
                                         os.cpu_count() or 1), flush=True)
    rows = {}
    for regime in regimes:
        for k in range(a.runs):
            # the placements alternate inside each round so drift hits all three alike
            for placement in ("cpu", "device", "auto"):
                rate, dev, wait, wall = run_one(a, regime, placement, k)
                rows.setdefault((regime, placement), []).append((rate, dev, wait))
                print("   run %-7s %-6s #%d: %8.1f samples/s, device-prepared %3.0f%%, data wait %3.0f%% (%.1f s)"
                      % (regime, placement, k, rate, 100 * dev, 100 * wait, wall), flush=True)
    print("\nsamples/s (median of %d), share of the timed steps prepared on the device, training's data wait"
          % a.runs)
    print("%-8s %-7s %10s %7s %7s %8s" % ("regime", "place", "samples/s", "spread", "device", "wait"))
    out, ok_all = [], True
    for regime in regimes:
        med = {}
        for placement in ("cpu", "device", "auto"):
            r = rows[(regime, placement)]
            rates = [x[0] for x in r]
            med[placement] = statistics.median(rates)
            spread = (max(rates) - min(rates)) / med[placement] if med[placement] else 0
            print("%-8s %-7s %10.1f %6.1f%% %6.0f%% %7.0f%%" % (
                regime, placement, med[placement], 100 * spread, 100 * statistics.median(x[1] for x in r),
                100 * statistics.median(x[2] for x in r)))
            out.append(dict(regime=regime, placement=placement, samples_per_s=med[placement], runs=r))
        best = max(med["cpu"], med["device"])
        worse = min(med["cpu"], med["device"])
        # per round: the three placements ran back to back, so their ratios share the
        # machine's load at that moment; the median over rounds is what is judged
        rb = statistics.median(rows[(regime, "auto")][k][0] / max(rows[(regime, "cpu")][k][0],
                                                                   rows[(regime, "device")][k][0])
                               for k in range(a.runs))
        rw = statistics.median(rows[(regime, "auto")][k][0] / min(rows[(regime, "cpu")][k][0],
                                                                   rows[(regime, "device")][k][0])
                               for k in range(a.runs))
        ok = rb >= 0.95 and rw > 1.0
        ok_all &= ok
        print("%-8s adaptive / best fixed %.3f, adaptive / worse fixed %.3f  (medians of the per-round ratios; "
              "ratios of the medians %.3f, %.3f; better fixed: %s)  %s"
              % (regime, rb, rw, med["auto"] / best, med["auto"] / worse,
                 "cpu" if med["cpu"] >= med["device"] else "device", "OK" if ok else "FAIL"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if not a.tmp.startswith("/tmp/weft-data-bench-"):
        return 0
    shutil.rmtree(a.tmp, ignore_errors=True)
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
