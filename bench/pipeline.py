#!/usr/bin/python3
"""weft pipeline and data-parallel benchmarks (stdlib only). See bench/README.md.

(a) bubble: per-stage idle fraction of `weft run --pp S` on bench/models/pipe.wf
    (equal stages) from its --trace, against the analytic (S-1)/(K+S-1).
(b) speed: samples/s of `weft run` at dp=2 and pp=2 (1 BLAS thread per worker)
    against `weft train` (1 and 2 threads) on examples/mlp.wf and examples/cnn.wf,
    medians of --runs runs, with the per-worker compute/communication/waiting split.

Usually started through bench/pipeline.sh, which sets the OpenBLAS settings.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from benchlib import NOISY, add_run_options, cpu_busy_s, idle_pct, make_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
PIPE_MODELS = {"cnn": os.path.join(ROOT, "bench", "models", "pipe_cnn.wf"),
               "cnn64": os.path.join(ROOT, "bench", "models", "pipe_cnn64.wf"),
               "mlp": os.path.join(ROOT, "bench", "models", "pipe_mlp.wf")}
# split points of bench/models/pipe_*.wf (four equal blocks ending in h1..h4) for S stages
PIPE_SPLITS = {1: [], 2: ["h2"], 4: ["h1", "h2", "h3"]}
GOAL_POINTS = 5.0
SENDER_SLOTS = 64  # QN in src/cluster/worker.c
DATA_DIR = DATA  # replaced by make_data's folder in main()


# ---------------------------------------------------------------- running


def run_measured(cmd, env, log_path, timeout):
    """Runs cmd (stdout+stderr to log_path). Returns (rc, wall s, others' CPU load in % of
    the machine during the run: all CPUs' busy time minus the CPU time of cmd and every
    process it waited for, i.e. weft's workers)."""
    b0 = cpu_busy_s()
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        p = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > t0 + timeout:
                timed_out = True
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    if timed_out:
        rc = 124
    others = (cpu_busy_s() - b0 - ru.ru_utime - ru.ru_stime) / (wall * (os.cpu_count() or 1))
    return rc, wall, max(0.0, 100.0 * others)


def write_job(path, model, out, batch, K, threads, max_steps, split=None, optimizer="sgd", lr=0.01,
              momentum=None):
    lines = ["model = %s" % model, "data = %s" % DATA_DIR, "epochs = 1", "batch = %d" % batch,
             "micro_batches = %d" % K, "seed = 1", "optimizer = %s" % optimizer, "lr = %g" % lr,
             "threads = %d" % threads, "max_steps = %d" % max_steps, "out = %s" % out]
    if momentum is not None:
        lines.append("momentum = %g" % momentum)
    if split:
        lines.append("split = [%s]" % ", ".join(split))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def read_metrics(path):
    steps, workers = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if "event" not in d and "step" in d:
                steps[d["step"]] = d
            elif d.get("event") == "workers":
                workers = d
    return steps, workers


def steady_rate(steps, batch, first, last):
    """Samples/s over steps first..last (1-based), from the cumulative time_s at step ends."""
    t = steps[last]["time_s"] - steps[first - 1]["time_s"]
    return batch * (last - first + 1) / t if t > 0 else float("nan")


class Runner:
    def __init__(self, a):
        self.a = a
        self.tmp = a.tmp or tempfile.mkdtemp(prefix="weft-pipeline-")
        os.makedirs(self.tmp, exist_ok=True)
        self.n = 0
        self.env = dict(os.environ)
        self.failures = []

    def settle(self):
        """Waits (at most --settle s) until the CPUs are >= 90 % idle over one second."""
        t_end = time.monotonic() + self.a.settle
        while True:
            idle = idle_pct(1.0)
            if idle >= 90.0 or time.monotonic() >= t_end:
                return idle

    def run(self, tag, cmd):
        """Runs cmd; a run during which other processes used more than NOISY % of the machine
        is repeated (at most --retries times) and the least disturbed attempt kept."""
        best = None
        for attempt in range(1 + max(0, self.a.retries)):
            self.settle()
            self.n += 1
            log = os.path.join(self.tmp, "%03d-%s.log" % (self.n, tag))
            res = run_measured(cmd, self.env, log, self.a.timeout) + (log,)
            if res[0] != 0:
                best = res
                break
            if best is None or res[2] < best[2]:
                best = res
            if res[2] <= NOISY:
                break
            print("   (%s: others used %.0f%% of the machine; again)" % (tag, res[2]), flush=True)
        rc, wall, others, log = best
        return self._report(tag, cmd, rc, wall, others, log)

    def _report(self, tag, cmd, rc, wall, others, log):
        if rc != 0:
            with open(log) as f:
                tail = f.read()[-2000:]
            msg = "%s: exit %d after %.1f s (%s)\n  command: %s\n  log tail:\n%s" % (
                tag, rc, wall, "timed out" if rc == 124 else "failed", " ".join(cmd), tail)
            self.failures.append(msg)
            print("  FAILED: " + msg, flush=True)
        return rc, wall, others, log


# ---------------------------------------------------------------- (a) bubble


def analyse_trace(path, S, first_step, last_step):
    """Per-stage idle fraction over steps first_step..last_step from a weft --trace file.

    Step span: from the first event of the step on any stage to the last event of the step's
    pipeline on any stage (F, B, send, recv: the optimizer step that follows the last
    backward is not part of the schedule the analytic bubble describes; its share is
    reported in the breakdown). A recv event contributes only its end (when the data
    arrived): a stage that is done with step s-1 starts waiting for step s while other
    stages are still in step s-1, so the start of that wait is not when step s began. eval
    events are left out.
    idle(stage) = 1 - sum(F + B of those steps on that stage) / sum(step spans).

    The breakdown (recv, send, optimizer, untraced) clips every event, whatever its step, to
    the step spans: a stage's wait for step s+1 that starts inside step s's span counts there."""
    with open(path) as f:
        tr = json.load(f)
    evs = [e for e in tr["traceEvents"] if e.get("ph") == "X" and e.get("cat") != "eval"]
    lo, hi = {}, {}
    busy = [0.0] * S            # F + B of the measured steps
    nF, nB = [0] * S, [0] * S
    tF, tB = [0.0] * S, [0.0] * S
    for e in evs:
        st = e["args"]["step"]
        if st < first_step or st > last_step:
            continue
        s = e["pid"]  # pp only, dp = 1: worker index = stage
        t0, t1 = e["ts"], e["ts"] + e["dur"]
        c = e["cat"]
        if c in ("F", "B", "send", "recv"):
            start = t1 if c == "recv" else t0
            lo[st] = min(lo.get(st, start), start)
            hi[st] = max(hi.get(st, t1), t1)
        if c == "F":
            busy[s] += e["dur"]; nF[s] += 1; tF[s] += e["dur"]
        elif c == "B":
            busy[s] += e["dur"]; nB[s] += 1; tB[s] += e["dur"]
    nsteps = len(lo)
    spans = [(lo[k], hi[k]) for k in sorted(lo)]
    span = sum(b - a for a, b in spans)
    clip = {c: [0.0] * S for c in ("F", "B", "recv", "send", "optimizer", "allreduce")}
    for e in evs:
        c, s = e["cat"], e["pid"]
        if c not in clip or s >= S or e["args"]["step"] > last_step + 1:
            continue
        t0, t1 = e["ts"], e["ts"] + e["dur"]
        clip[c][s] += sum(max(0.0, min(t1, b) - max(t0, a)) for a, b in spans)
    pct = lambda x: 100.0 * x / span if span > 0 else float("nan")
    res = dict(steps=nsteps, span_ms=span / nsteps / 1e3 if nsteps else float("nan"),
               idle=[100.0 - pct(b) for b in busy],
               f_ms=[tF[s] / nF[s] / 1e3 if nF[s] else 0.0 for s in range(S)],
               b_ms=[tB[s] / nB[s] / 1e3 if nB[s] else 0.0 for s in range(S)],
               recv=[pct(clip["recv"][s]) for s in range(S)],
               opt=[pct(clip["optimizer"][s]) for s in range(S)],
               send=[pct(clip["send"][s]) for s in range(S)])
    # neither F/B nor any traced event: per-micro-batch gradient accumulation, gather, control
    res["untraced"] = [100.0 - sum(pct(clip[c][s]) for c in clip) for s in range(S)]
    # hand-off delay of each message: from the end of the producing F (activation, stage s-1)
    # or B (gradient, stage s+1) to the end of the consumer's recv, counted from when the
    # consumer started waiting if that was later. A recv is for the F or B that follows it.
    end = {(e["pid"], e["cat"], e["args"]["step"], e["args"]["mb"]): e["ts"] + e["dur"]
           for e in evs if e["cat"] in ("F", "B")}
    delays = []
    for s in range(S):
        mine = sorted((e for e in evs if e["pid"] == s and e["cat"] in ("F", "B", "recv")), key=lambda e: e["ts"])
        for i, e in enumerate(mine):
            st = e["args"]["step"]
            if e["cat"] != "recv" or st < first_step or st > last_step:
                continue
            nxt = next((x for x in mine[i + 1:] if x["cat"] in ("F", "B")), None)
            if nxt is None:
                continue
            src = s - 1 if nxt["cat"] == "F" else s + 1
            t_prod = end.get((src, nxt["cat"], st, e["args"]["mb"]))
            if t_prod is None:
                continue
            delays.append(e["ts"] + e["dur"] - max(t_prod, e["ts"]))
    res["sim_idle"] = simulate(evs, S, first_step, last_step, busy)
    res["handoff_ms"] = statistics.mean(delays) / 1e3 if delays else float("nan")
    res["handoff_max_ms"] = max(delays) / 1e3 if delays else float("nan")
    return res


def simulate(evs, S, first_step, last_step, busy):
    """Replays each measured step with its measured F and B durations, in each stage's traced
    order, with zero-time hand-offs and nothing else (no send, recv, accumulation, optimizer):
    F(s, j) starts when F(s-1, j) has ended, B(s, j) when B(s+1, j) has. Returns each stage's
    idle % over the replayed spans. measured - replayed = weft's own overhead (communication,
    per-micro-batch work outside F/B, gaps); replayed - analytic = what unequal and varying F/B
    times cost (stage imbalance, and on a shared VM, jitter)."""
    total = 0.0
    for st in range(first_step, last_step + 1):
        seq = [sorted((e for e in evs if e["pid"] == s and e["cat"] in ("F", "B") and e["args"]["step"] == st),
                      key=lambda e: e["ts"]) for s in range(S)]
        done, pos, free = {}, [0] * S, [0.0] * S
        progress = True
        while progress:
            progress = False
            for s in range(S):
                while pos[s] < len(seq[s]):
                    e = seq[s][pos[s]]
                    c, j = e["cat"], e["args"]["mb"]
                    dep = (s - 1, "F", j) if c == "F" and s > 0 else (s + 1, "B", j) if c == "B" and s < S - 1 else None
                    if dep is not None and dep not in done:
                        break
                    t0 = max(free[s], done[dep] if dep is not None else 0.0)
                    free[s] = done[(s, c, j)] = t0 + e["dur"]
                    pos[s] += 1
                    progress = True
        if any(pos[s] < len(seq[s]) for s in range(S)):
            return [float("nan")] * S  # an order the replay cannot follow
        total += max(free)
    return [100.0 * (1 - b / total) if total > 0 else float("nan") for b in busy]


def bench_bubble(R):
    a = R.a
    cores = os.cpu_count() or 1
    rows = []
    print("\n== (a) pipeline bubble: per-stage idle %% vs (S-1)/(K+S-1)  (models %s, batch %d, threads 1 per "
          "worker; %d steps measured after %s warm-up steps; the last step and the eval are left out)"
          % (", ".join(os.path.relpath(PIPE_MODELS[m], ROOT) for m in a.models), a.batch, a.steps,
             a.warmup if a.warmup is not None else "max(1, 64/K)"), flush=True)
    for model, S in [(m, S) for m in a.models for S in a.stages]:
        over = S > cores
        if over:
            print("   S=%d: OVERSUBSCRIBED: %d worker processes on %d cores; the idle figures below do not "
                  "measure the schedule and are not judged" % (S, S, cores), flush=True)
        for K in a.micro_batches:
            if a.batch % K:
                print("   skip K=%d: batch %d is not a multiple" % (K, a.batch))
                continue
            # a worker's sender ring has 64 slots and each allocates its copy buffer on first use:
            # the first 64 sends pay an allocation + zeroing + page faults on the critical path
            warm = a.warmup if a.warmup is not None else max(1, -(-SENDER_SLOTS // K))
            for sched in a.schedules:
                if K == 1 and sched != a.schedules[0]:
                    continue  # at K = 1 gpipe and 1f1b are the same order: F then B
                runs = []
                for r in range(1 if over else a.bubble_runs):  # oversubscribed rows are not judged
                    tag = "bubble-%s-S%d-K%d-%s-r%d" % (model, S, K, sched, r)
                    d = os.path.join(R.tmp, tag)
                    os.makedirs(d, exist_ok=True)
                    job = os.path.join(d, "job.job")
                    trace = os.path.join(d, "trace.json")
                    write_job(job, PIPE_MODELS[model], os.path.join(d, "out"), a.batch, K, 1, warm + a.steps + 1,
                              split=PIPE_SPLITS[S])
                    cmd = [a.weft, "run", job, "--pp", str(S), "--workers", str(S), "--schedule", sched,
                           "--micro-batches", str(K), "--threads", "1", "--trace", trace, "--quiet"]
                    rc, wall, others, log = R.run(tag, cmd)
                    if rc != 0:
                        continue
                    res = analyse_trace(trace, S, warm, warm + a.steps - 1)
                    res.update(others=others, wall=wall)
                    runs.append(res)
                    print("   run %s S=%d K=%d %-5s: step %.1f ms, idle %s, others %.0f%%%s" % (
                        model, S, K, sched, res["span_ms"], " ".join("%.1f" % x for x in res["idle"]), others,
                        "  noisy" if others > NOISY else ""), flush=True)
                if not runs:
                    rows.append(dict(model=model, S=S, K=K, sched=sched if K > 1 else "both", failed=True))
                    continue
                med = lambda key, s: statistics.median(x[key][s] for x in runs)
                row = dict(model=model, S=S, K=K, sched=sched if K > 1 else "both", over=over, runs=len(runs),
                           analytic=100.0 * (S - 1) / (K + S - 1),
                           span_ms=statistics.median(x["span_ms"] for x in runs),
                           others=max(x["others"] for x in runs))
                for key in ("idle", "sim_idle", "f_ms", "b_ms", "recv", "opt", "send", "untraced"):
                    row[key] = [med(key, s) for s in range(S)]
                for key in ("handoff_ms", "handoff_max_ms"):
                    row[key] = statistics.median(x[key] for x in runs)
                row["diff"] = [x - row["analytic"] for x in row["idle"]]
                row["ok"] = all(abs(x) <= GOAL_POINTS for x in row["diff"])
                rows.append(row)
    print_bubble(rows, cores)
    return rows


def print_bubble(rows, cores):
    maxS = max([r["S"] for r in rows] or [1])
    print("\n(a) per-stage idle %% = 1 - (F+B time) / step span, measured, beside the analytic (S-1)/(K+S-1); "
          "diff = measured - analytic in points; goal |diff| <= %.0f. replay = the same steps replayed with their "
          "measured F/B durations and zero-cost hand-offs (measured - replay: weft's overhead; replay - analytic: "
          "unequal or jittery F/B times)" % GOAL_POINTS)
    w = 20
    hdr = "%-5s %2s %3s %-6s %8s  " % ("model", "S", "K", "sched", "analytic") + "  ".join(
        "%-*s" % (w, "st%d idle (diff) replay" % s) for s in range(maxS)) + "  %8s  %s" % ("step ms", "result")
    print(hdr)
    for r in rows:
        if r.get("failed"):
            print("%-5s %2d %3d %-6s  run failed" % (r["model"], r["S"], r["K"], r["sched"]))
            continue
        cells = ["%5.1f (%+5.1f) %5.1f" % (i, d, x) for i, d, x in zip(r["idle"], r["diff"], r["sim_idle"])]
        cells += [" " * w] * (maxS - r["S"])
        if r["over"]:
            res = "n/a: oversubscribed (%d workers on %d cores)" % (r["S"], cores)
        else:
            res = "OK" if r["ok"] else "FAIL"
        if r["others"] > NOISY:
            res += "  noisy (others %.0f%%)" % r["others"]
        print("%-5s %2d %3d %-6s %7.1f%%  " % (r["model"], r["S"], r["K"], r["sched"], r["analytic"]) + "  ".join(cells)
              + "  %8.1f  %s" % (r["span_ms"], res))
    print("\n(a) where each stage's time goes, % of the step span: F+B | waiting in recv | optimizer | send | "
          "untraced, and the mean F / B time per micro-batch; hand-off: mean (max) ms from the end of the F or B "
          "that produced a message to the end of the recv that waited for it")
    for r in rows:
        if r.get("failed"):
            continue
        parts = []
        for s in range(r["S"]):
            parts.append("st%d %4.1f|%4.1f|%3.1f|%3.1f|%4.1f F %.1f B %.1f ms" % (
                s, 100 - r["idle"][s], r["recv"][s], r["opt"][s], r["send"][s], r["untraced"][s],
                r["f_ms"][s], r["b_ms"][s]))
        print("%-5s %2d %3d %-6s hand-off %4.2f (%5.2f)  " % (r["model"], r["S"], r["K"], r["sched"], r["handoff_ms"],
                                                             r["handoff_max_ms"]) + "   ".join(parts))
    sys.stdout.flush()


# ---------------------------------------------------------------- (b) speed


CASES = {
    "mlp": dict(model=os.path.join(ROOT, "examples", "mlp.wf")),
    "cnn": dict(model=os.path.join(ROOT, "examples", "cnn.wf")),
}


def bench_speed(R):
    a = R.a
    cores = os.cpu_count() or 1
    all_rows = []
    print("\n== (b) samples/s: weft run dp=2 / pp=2 (1 thread per worker) vs weft train, medians of %d runs "
          "(%d cores)" % (a.runs, cores), flush=True)
    for case in a.cases:
        warm, meas = (a.mlp_steps if case == "mlp" else a.cnn_steps)
        spe = 60000 // a.speed_batch  # stay inside epoch 1: its end evaluates and checkpoints
        meas = max(1, min(meas, spe - 1 - warm))
        total = warm + meas
        K = a.speed_micro_batches
        modes = [("single t1 K=%d" % K, "train", 1, K, None),
                 ("single t2 K=%d" % K, "train", 2, K, None),
                 ("single t1 K=1", "train", 1, 1, None),
                 ("dp=2 t1", "run", 1, K, ("--dp", "2", "--pp", "1", "--workers", "2")),
                 ("pp=2 t1", "run", 1, K, ("--pp", "2", "--dp", "1", "--workers", "2"))]
        print("-- %s: batch %d, steps %d..%d timed (warm-up %d), %s" % (
            case, a.speed_batch, warm + 1, total, warm, ", ".join(m[0] for m in modes)), flush=True)
        res = {m[0]: [] for m in modes}
        # interleave modes within each round so machine-load drift hits all of them
        for r in range(a.runs):
            order = modes if r % 2 == 0 else list(reversed(modes))
            for name, kind, thr, k, extra in order:
                tag = "speed-%s-%s-r%d" % (case, name.replace(" ", "_").replace("=", ""), r)
                d = os.path.join(R.tmp, tag)
                os.makedirs(d, exist_ok=True)
                job = os.path.join(d, "job.job")
                write_job(job, CASES[case]["model"], os.path.join(d, "out"), a.speed_batch, k, thr, total,
                          lr=0.05, momentum=0.9)
                if kind == "train":
                    cmd = [a.weft, "train", job, "--quiet"]
                else:
                    cmd = [a.weft, "run", job, "--threads", str(thr), "--micro-batches", str(k), "--quiet"] + list(extra)
                rc, wall, others, log = R.run(tag, cmd)
                if rc != 0:
                    continue
                steps, workers = read_metrics(os.path.join(d, "out", "metrics.jsonl"))
                if total not in steps or warm not in steps:
                    R.failures.append("%s: metrics.jsonl lacks step %d or %d (%s)" % (tag, warm, total, d))
                    continue
                sps = steady_rate(steps, a.speed_batch, warm + 1, total)
                res[name].append(dict(sps=sps, others=others, wall=wall, workers=workers))
                print("   run %d %-14s %9.1f samples/s  others %3.0f%%%s" % (
                    r + 1, name, sps, others, "  noisy" if others > NOISY else ""), flush=True)
        base = res[modes[0][0]]
        base_sps = statistics.median(x["sps"] for x in base) if base else float("nan")
        rows = []
        for name, kind, thr, k, extra in modes:
            rs = res[name]
            if not rs:
                rows.append(dict(case=case, mode=name, failed=True))
                continue
            med = statistics.median(x["sps"] for x in rs)
            # the run whose samples/s is the median (lower median for an even count) for the workers split
            mid = sorted(rs, key=lambda x: x["sps"])[(len(rs) - 1) // 2]
            rows.append(dict(case=case, mode=name, sps=med, ratio=med / base_sps, runs=[x["sps"] for x in rs],
                             spread=(max(x["sps"] for x in rs) - min(x["sps"] for x in rs)) / med * 100,
                             others=max(x["others"] for x in rs), workers=mid["workers"], kind=kind))
        all_rows += rows
    print_speed(all_rows, a)
    return all_rows


def print_speed(rows, a):
    print("\n(b) samples/s (median of %d), ratio to single t1 with the same job (batch %d, K = %d micro-batches)"
          % (a.runs, a.speed_batch, a.speed_micro_batches))
    print("%-4s %-15s %10s %7s %8s  %s" % ("case", "mode", "samples/s", "ratio", "spread", "note"))
    for r in rows:
        if r.get("failed"):
            print("%-4s %-15s  all runs failed" % (r["case"], r["mode"]))
            continue
        note = "noisy (others %.0f%%)" % r["others"] if r["others"] > NOISY else ""
        print("%-4s %-15s %10.1f %6.2fx %7.1f%%  %s" % (r["case"], r["mode"], r["sps"], r["ratio"], r["spread"], note))
    print("\n(b) per worker (median run's metrics \"workers\" line, whole run incl. step 0 and the final eval): "
          "compute / communication / waiting seconds, and % of wall")
    for r in rows:
        if r.get("failed") or r["kind"] != "run" or not r["workers"]:
            continue
        w = r["workers"]
        wall = w["wall_s"]
        for x in w["workers"]:
            print("%-4s %-9s worker %d (stage %d, replica %d): compute %6.2f s (%4.1f%%)  comm %6.2f s (%4.1f%%)  "
                  "wait %6.2f s (%4.1f%%)  wall %.2f s" % (
                      r["case"], r["mode"], x["worker"], x["stage"], x["replica"], x["compute_s"],
                      100 * x["compute_s"] / wall, x["comm_s"], 100 * x["comm_s"] / wall, x["wait_s"],
                      100 * x["wait_s"] / wall, wall))
    sys.stdout.flush()


# ---------------------------------------------------------------- main


def ints(s):
    return [int(x) for x in s.split(",") if x]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weft", required=True, help="the weft binary")
    ap.add_argument("--quick", action="store_true", help="fewer configurations, steps and runs: a smoke test")
    ap.add_argument("--only", choices=["a", "b"], help="run only (a) the bubble or (b) the speed benchmark")
    ap.add_argument("--models", default="cnn64,cnn,mlp",
                    help="(a) bench/models/pipe_*.wf to run (default cnn64,cnn,mlp)")
    ap.add_argument("--stages", type=ints, help="(a) pipeline depths S (default 2,4; 2 with --quick)")
    ap.add_argument("--micro-batches", type=ints, help="(a) K values (default 1,4,8; 1,4 with --quick)")
    ap.add_argument("--schedules", default="gpipe,1f1b", help="(a) schedules (default gpipe,1f1b)")
    ap.add_argument("--batch", type=int, default=256, help="(a) global batch (default 256)")
    ap.add_argument("--steps", type=int, help="(a) measured steps after step 0 (default 8; 3 with --quick)")
    ap.add_argument("--bubble-runs", type=int, help="(a) runs per configuration, per-stage medians (default 3, "
                    "1 with --quick; always 1 where S exceeds the cores)")
    ap.add_argument("--warmup", type=int, help="(a) steps before the measured ones (default max(1, 64/K): past "
                    "the first use of every sender-queue slot; 1 with --quick)")
    ap.add_argument("--cases", default="mlp,cnn", help="(b) models (default mlp,cnn)")
    ap.add_argument("--speed-batch", type=int, default=64, help="(b) global batch (default 64)")
    ap.add_argument("--speed-micro-batches", type=int, default=4, help="(b) K for every mode (default 4)")
    ap.add_argument("--runs", type=int, help="(b) runs per configuration, medians (default 3; 1 with --quick)")
    add_run_options(ap, 300)
    ap.add_argument("--tmp", help="folder for jobs, logs, traces (default a new temp folder)")
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args()
    q = a.quick
    a.stages = a.stages or ([2] if q else [2, 4])
    a.micro_batches = a.micro_batches or ([1, 4] if q else [1, 4, 8])
    a.schedules = [s for s in a.schedules.split(",") if s]
    a.steps = a.steps or (3 if q else 8)
    if q and a.warmup is None:
        a.warmup = 1
    a.runs = a.runs or (1 if q else 3)
    a.bubble_runs = a.bubble_runs or (1 if q else 3)
    a.cases = [c for c in a.cases.split(",") if c]
    a.models = [m for m in a.models.split(",") if m]
    a.mlp_steps = (10, 200) if q else (30, 900)  # inside epoch 1 (937 steps at batch 64)
    a.cnn_steps = (2, 10) if q else (5, 150)
    for s in a.stages:
        if s not in PIPE_SPLITS:
            ap.error("--stages: bench/models/pipe_*.wf have split points for S in %s" % sorted(PIPE_SPLITS))
    for m in a.models:
        if m not in PIPE_MODELS:
            ap.error("--models: one of %s" % ",".join(PIPE_MODELS))
    for c in a.cases:
        if c not in CASES:
            ap.error("--cases: one of %s" % ",".join(CASES))
    if not os.path.isdir(DATA):
        sys.exit("pipeline: %s is missing (Debian package dataset-fashion-mnist)" % DATA)
    R = Runner(a)
    global DATA_DIR
    if a.test_samples > 0:
        DATA_DIR = make_data(os.path.join(R.tmp, "data"), a.test_samples)
    print("weft: %s\nlogs, jobs, traces: %s\ndata: %s\ncores: %d, OPENBLAS_CORETYPE=%s" % (
        a.weft, R.tmp, DATA_DIR + (" (test set cut to %d samples)" % a.test_samples if a.test_samples > 0 else ""),
        os.cpu_count() or 1, os.environ.get("OPENBLAS_CORETYPE", "(unset)")), flush=True)
    out = {}
    if a.only != "b":
        out["bubble"] = bench_bubble(R)
    if a.only != "a":
        out["speed"] = bench_speed(R)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    if R.failures:
        print("\n%d weft run(s) failed:" % len(R.failures))
        for m in R.failures:
            print(" - " + m.splitlines()[0])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
