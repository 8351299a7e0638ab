#!/usr/bin/python3
"""weft elastic-recovery benchmark (stdlib only). See bench/RECOVERY.md.

Trains the CNN job (examples/cnn.wf, Fashion-MNIST) with
`weft run JOB --workers 4 --pp 2 --dp 2 --nodes 1:4` on loopback --runs times. In each run,
once --kill-after step lines are in OUT/metrics.jsonl, it asks `weft status` for the
members, SIGKILLs the worker of rank (run % 4) and lets the job recover and finish.

Recovery time = the Unix time taken right before the kill -> step_done_unix of the
metrics' recovery event (when the first step past the pre-failure high-water mark was
done). It is printed beside the run's median step time (consecutive time_s of the step
lines written before the kill) and the ratio, with the event's own figures (restored step,
steps done again, detection -> step) and a split of the time into detection, stop + fetch,
re-plan + restore + compile, and the first step(s) after it. Each run's final checkpoint
is compared byte for byte with a `weft train` run of the same job (run once up front).

Goal: median recovery (kill -> step) < 2 s.

Usually started through bench/recovery.sh, which sets the OpenBLAS settings.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from benchlib import NOISY, add_run_options, count_steps, cpu_busy_s, idle_pct, make_data, write_cnn_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
MODEL = os.path.join(ROOT, "examples", "cnn.wf")
GOAL_S = 2.0
MEMBER_RE = re.compile(r"^\s*member rank (\d+): stage (\d+), replica (\d+), node (\d+), pid (\d+)\s*$")
COMPILED_RE = re.compile(r"node set (\d+) compiled in ([0-9.]+) s")
WORKER_COMPILED_RE = re.compile(r"worker \d+ \(stage \d+, replica \d+, pid \d+\) compiled its sub-graph in ([0-9.]+) s")


class Failure(Exception):
    pass


# ---------------------------------------------------------------- machine load


def settle(limit):
    """Waits (at most `limit` s) until the CPUs are >= 90 % idle over one second."""
    t_end = time.monotonic() + limit
    while True:
        idle = idle_pct(1.0)
        if idle >= 90.0 or time.monotonic() >= t_end:
            return idle


# ---------------------------------------------------------------- processes


def ppid_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None  # a zombie is gone
    return int(fields[1])


def children_of(pid):
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and ppid_of(int(name)) == pid:
            kids.append(int(name))
    return kids


def is_our_weft(pid, weft):
    """pid is alive (not a zombie) and runs the weft binary this bench started."""
    if ppid_of(pid) is None:
        return False
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    if exe.endswith(" (deleted)"):
        exe = exe[:-len(" (deleted)")]
    return exe == os.path.realpath(weft) or argv0 == weft


def kill_ours(pids, weft):
    """SIGKILLs each pid of `pids` that is still a weft process this bench started."""
    for pid in pids:
        if is_our_weft(pid, weft):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---------------------------------------------------------------- jobs, files


def write_job(path, a, data, out):
    write_cnn_job(path, MODEL, data, out, a.max_steps, a.batch, a.micro_batches, a.eval_batch)


def read_metrics(path):
    """(step lines in file order, events in file order)."""
    steps, events = [], []
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return steps, events
    for line in text.splitlines():
        if not line.endswith("}"):
            continue  # a line being written
        try:
            d = json.loads(line)
        except ValueError:
            continue
        (events if "event" in d else steps).append(d)
    return steps, events


def weft_status(a, out):
    """Members of the current node set from `weft status`: {rank: (stage, replica, pid)}."""
    try:
        with open(os.path.join(out, "coordinator")) as f:
            coord = f.read().strip()
        with open(os.path.join(out, "weft-token")) as f:
            token = f.read().strip()
    except OSError:
        return {}, ""
    env = dict(os.environ, WEFT_TOKEN=token)
    try:
        p = subprocess.run([a.weft, "status", "--coordinator", coord], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10, universal_newlines=True)
    except subprocess.TimeoutExpired:
        return {}, "(weft status timed out)"
    members = {}
    for line in p.stdout.splitlines():
        m = MEMBER_RE.match(line)
        if m:
            r, s, d, _node, pid = (int(x) for x in m.groups())
            members[r] = (s, d, pid)
    return members, p.stdout


def tail(path, n=2500):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- runs


def reference(a, tmp, data):
    """One `weft train` of the job: the checkpoint every run must match."""
    d = os.path.join(tmp, "train")
    os.makedirs(d)
    job = os.path.join(d, "job.job")
    write_job(job, a, data, os.path.join(d, "out"))
    log = os.path.join(d, "log")
    t0 = time.monotonic()
    with open(log, "w") as f:
        try:
            p = subprocess.run([a.weft, "train", job, "--quiet"], stdout=f, stderr=subprocess.STDOUT,
                               timeout=a.timeout)
        except subprocess.TimeoutExpired:
            raise Failure("weft train timed out after %.0f s:\n%s" % (a.timeout, tail(log)))
    if p.returncode != 0:
        raise Failure("weft train failed (exit %d):\n%s" % (p.returncode, tail(log)))
    ckpt = os.path.join(d, "out", "checkpoint.safetensors")
    with open(ckpt, "rb") as f:
        ref = f.read()
    steps, _ = read_metrics(os.path.join(d, "out", "metrics.jsonl"))
    return ref, time.monotonic() - t0, steps


def one_run(a, tmp, data, k, ref):
    """One `weft run` with a SIGKILL of rank k % 4 after the warm-up. Returns a result dict."""
    rank = k % a.workers
    d = os.path.join(tmp, "run%d" % k)
    os.makedirs(d)
    out = os.path.join(d, "out")
    job = os.path.join(d, "job.job")
    write_job(job, a, data, out)
    log = os.path.join(d, "log")
    cmd = [a.weft, "run", job, "--workers", str(a.workers), "--pp", str(a.pp), "--dp", str(a.dp),
           "--nodes", "1:%d" % a.workers, "--quiet"]
    if a.heartbeat_timeout is not None:
        cmd += ["--heartbeat-timeout", str(a.heartbeat_timeout)]
    if a.snapshot_every is not None:
        cmd += ["--snapshot-every", str(a.snapshot_every)]
    res = dict(run=k + 1, rank=rank, ok=False)
    metrics = os.path.join(out, "metrics.jsonl")
    ours = set()  # weft run and every child of it seen
    b0 = cpu_busy_s()
    t0 = time.monotonic()
    deadline = t0 + a.timeout
    with open(log, "w") as logf:
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT)
    ours.add(p.pid)
    ru = None
    try:
        # warm-up: --kill-after step lines
        while count_steps(metrics) < a.kill_after:
            if p.poll() is not None:
                raise Failure("weft run exited (%d) before %d steps" % (p.returncode, a.kill_after))
            if time.monotonic() > deadline:
                raise Failure("no %d step lines within %.0f s" % (a.kill_after, a.timeout))
            ours.update(children_of(p.pid))
            time.sleep(0.02)
        ours.update(children_of(p.pid))
        members, text = {}, ""
        while rank not in members:
            members, text = weft_status(a, out)
            if rank in members:
                break
            if p.poll() is not None or time.monotonic() > deadline:
                raise Failure("weft status shows no member rank %d:\n%s" % (rank, text))
            time.sleep(0.1)
        stage, replica, pid = members[rank]
        ours.update(children_of(p.pid))
        if pid not in ours or not is_our_weft(pid, a.weft):
            raise Failure("member rank %d has pid %d, not a worker this run started (%s)"
                          % (rank, pid, sorted(ours)))
        n_before = count_steps(metrics)
        t_kill = time.time()
        os.kill(pid, signal.SIGKILL)
        res.update(stage=stage, replica=replica, pid=pid, t_kill=t_kill)
        # the rest of the run
        while True:
            wpid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if wpid:
                break
            if time.monotonic() > deadline:
                kill_ours(sorted(ours, reverse=True), a.weft)
                wpid, status, ru = os.wait4(p.pid, 0)
                raise Failure("weft run still running %.0f s after it started (killed)" % a.timeout)
            ours.update(children_of(p.pid))
            time.sleep(0.05)
        rc = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - t0
        if rc != 0:
            raise Failure("weft run exited with %d" % rc)
        res["others"] = max(0.0, 100.0 * (cpu_busy_s() - b0 - ru.ru_utime - ru.ru_stime)
                            / (wall * (os.cpu_count() or 1)))
        res["wall"] = wall
        steps, events = read_metrics(metrics)
        before = steps[:n_before]
        res["high_water"] = before[-1]["step"] if before else 0
        dts = [y["time_s"] - x["time_s"] for x, y in zip(before[1:], before[2:])]  # step 1 is a warm-up
        res["step_s"] = statistics.median(dts) if dts else float("nan")
        rec = [e for e in events if e.get("event") == "recovery"]
        if len(rec) != 1:
            raise Failure("%d recovery events in metrics.jsonl (want 1)" % len(rec))
        e = rec[0]
        sets = {s["version"]: s for s in events if s.get("event") == "set"}
        new = sets.get(e["to_version"], {})
        res.update(restored=e["restored_step"], replayed=e["replayed_steps"], source=e["source"],
                   det_step=e["seconds"], detect=e["detected_unix"] - t_kill,
                   kill_step=e["step_done_unix"] - t_kill, cause=e["cause"], first_step=e["step"],
                   layout="%dx%d" % (new.get("stages", 0), new.get("replicas", 0)))
        res["ratio"] = res["kill_step"] / res["step_s"] if res["step_s"] > 0 else float("nan")
        after = [s for s in steps[n_before:] if s["step"] > e["step"]]
        dts2 = [y["time_s"] - x["time_s"] for x, y in zip(after, after[1:])]
        res["step_after_s"] = statistics.median(dts2) if dts2 else float("nan")
        # where the time went: detected -> set planned (stop, select, fetch) -> set compiled
        # (assign, restore, compile) -> first step past the high-water mark (start, replay, step)
        with open(log, errors="replace") as f:
            text = f.read()
        comp = [float(m.group(2)) for m in COMPILED_RE.finditer(text) if int(m.group(1)) == e["to_version"]]
        res["stop_fetch"] = new.get("unix", float("nan")) - e["detected_unix"]
        res["compile"] = comp[0] if comp else float("nan")
        res["first"] = e["step_done_unix"] - new.get("unix", float("nan")) - res["compile"]
        tail_part = text[text.find("node set %d:" % e["to_version"]):]
        wc = [float(x) for x in WORKER_COMPILED_RE.findall(tail_part)]
        res["worker_compile"] = max(wc) if wc else float("nan")
        ckpt = os.path.join(out, "checkpoint.safetensors")
        with open(ckpt, "rb") as f:
            got = f.read()
        res["identical"] = got == ref
        if not res["identical"]:
            n = next((i for i, (x, y) in enumerate(zip(got, ref)) if x != y), min(len(got), len(ref)))
            res["differs_at"] = n
        res["ok"] = True
    except Failure as ex:
        res["error"] = str(ex)
        res["log"] = tail(log)
    finally:
        if p.poll() is None:
            kill_ours(sorted(ours, reverse=True), a.weft)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
        kill_ours(sorted(ours), a.weft)  # a worker left behind by a failed run
    return res


# ---------------------------------------------------------------- report


def fmt(x, f="%.3f"):
    return "  n/a" if x is None or x != x else f % x


def print_table(rows):
    print("\nper run: the rank SIGKILLed (stage/replica), the step lines logged before the kill, the set it went to "
          "(stages x replicas), the step training went on from and the steps done again; seconds from the "
          "recovery event (detected -> step) and from the kill (kill -> step); the median step time before the "
          "kill and after the recovery; recovery / step time; the final checkpoint against weft train; other "
          "processes' share of the machine during the run")
    hdr = ("%3s %4s %5s %6s %6s %8s %8s %9s %9s %8s %8s %7s %9s %7s" % (
        "run", "rank", "st/rp", "logged", "set", "restored", "replayed", "det->step", "kill->step", "step ms",
        "after ms", "ratio", "ckpt", "others"))
    print(hdr)
    for r in rows:
        if not r["ok"]:
            print("%3d %4d  FAILED: %s" % (r["run"], r["rank"], r["error"].splitlines()[0]))
            continue
        print("%3d %4d %5s %6d %6s %8d %8d %9.3f %10.3f %8.1f %8.1f %6.1fx %9s %6.0f%%%s" % (
            r["run"], r["rank"], "%d/%d" % (r["stage"], r["replica"]), r["high_water"], r["layout"], r["restored"],
            r["replayed"], r["det_step"], r["kill_step"], 1e3 * r["step_s"], 1e3 * r["step_after_s"], r["ratio"],
            "identical" if r["identical"] else "DIFFERS", r["others"], "  noisy" if r["others"] > NOISY else ""))
    print("\nwhere the time goes (s): kill -> detected (detected_unix), detected -> new set planned (stop, select, "
          "fetch; the set event's unix), planned -> set compiled (assign, restore, compile: the coordinator's "
          "'node set N compiled in' figure; slowest worker's own compile in brackets), compiled -> first step past "
          "the high-water mark (start, steps done again, one step)")
    print("%3s %9s %9s %19s %9s %10s" % ("run", "detect", "stop+fetch", "compile (worker)", "first", "total"))
    for r in rows:
        if not r["ok"]:
            continue
        print("%3d %9.3f %9.3f %9.3f (%7.3f) %9.3f %10.3f" % (
            r["run"], r["detect"], r["stop_fetch"], r["compile"], r["worker_compile"], r["first"], r["kill_step"]))


def print_run(r):
    if r["ok"]:
        print("   run %d: killed rank %d (stage %d, replica %d, pid %d) after %d logged steps -> set %s from step %d "
              "(%s, %d done again); kill -> step %.3f s, step %.1f ms (%.1fx); checkpoint %s; %.1f s, others %.0f%%"
              % (r["run"], r["rank"], r["stage"], r["replica"], r["pid"], r["high_water"], r["layout"], r["restored"],
                 r["source"], r["replayed"], r["kill_step"], 1e3 * r["step_s"], r["ratio"],
                 "identical" if r["identical"] else "DIFFERS from byte %d" % r["differs_at"], r["wall"],
                 r["others"]), flush=True)
    else:
        print("   run %d (rank %d): FAILED: %s\n     log tail:\n%s" % (
            r["run"], r["rank"], r["error"], "\n".join("       " + x for x in r["log"].splitlines())), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weft", required=True, help="the weft binary")
    ap.add_argument("--runs", type=int, default=5, help="runs, one kill each (default 5)")
    ap.add_argument("--batch", type=int, default=64, help="global batch (default 64)")
    ap.add_argument("--micro-batches", type=int, default=4, help="micro-batches per step (default 4)")
    ap.add_argument("--max-steps", type=int, default=600, help="steps per run (default 600: ~17 s on 2 quiet cores)")
    ap.add_argument("--eval-batch", type=int, default=1000, help="the job's eval_batch (default 1000): every "
                    "worker's compile, the re-compile of a recovery included, plans and zero-fills buffers for it")
    ap.add_argument("--kill-after", type=int, default=30, help="kill once this many step lines exist (default 30)")
    ap.add_argument("--workers", type=int, default=4, help="worker processes (default 4; the rank killed in run k "
                    "is k %% workers)")
    ap.add_argument("--pp", type=int, default=2, help="pipeline stages (default 2)")
    ap.add_argument("--dp", type=int, default=2, help="replicas per stage (default 2)")
    ap.add_argument("--heartbeat-timeout", type=float, help="passed to weft run (default: weft's)")
    ap.add_argument("--snapshot-every", type=int, help="passed to weft run (default: weft's, 10)")
    add_run_options(ap, 180)
    ap.add_argument("--keep-failed", action="store_true", help="keep the temp folder when a run fails or its "
                    "checkpoint differs")
    ap.add_argument("--json", help="write every figure to this file")
    a = ap.parse_args()
    if a.runs < 1 or a.kill_after < 2 or a.kill_after >= a.max_steps - 5:
        ap.error("need --runs >= 1 and 2 <= --kill-after < --max-steps - 5")
    if not os.path.isdir(DATA):
        sys.exit("recovery: %s is missing (Debian package dataset-fashion-mnist)" % DATA)
    tmp = tempfile.mkdtemp(prefix="weft-recovery-")
    keep = False
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = make_data(os.path.join(tmp, "data"), a.test_samples) if a.test_samples > 0 else DATA
        try:
            head = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, universal_newlines=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            head = ""
        print("weft: %s (source %s)\nmachine: %d cores, OPENBLAS_CORETYPE=%s\njob: %s, batch %d, %d micro-batches, "
              "%d steps, eval_batch %d, adam, threads 1; weft run --workers %d --pp %d --dp %d --nodes 1:%d%s%s\n"
              "kill: SIGKILL of rank (run %% %d) once %d step lines exist; %d run(s); temp folder %s" % (
                  a.weft, head or "?", os.cpu_count() or 1, os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
                  os.path.relpath(MODEL, ROOT), a.batch, a.micro_batches, a.max_steps, a.eval_batch, a.workers,
                  a.pp, a.dp, a.workers,
                  " --heartbeat-timeout %g" % a.heartbeat_timeout if a.heartbeat_timeout is not None else "",
                  " --snapshot-every %d" % a.snapshot_every if a.snapshot_every is not None else "",
                  a.workers, a.kill_after, a.runs, tmp), flush=True)
        settle(a.settle)
        try:
            ref, ref_wall, ref_steps = reference(a, tmp, data)
        except Failure as ex:
            print("reference: %s" % ex)
            keep = a.keep_failed
            return 1
        dts = [y["time_s"] - x["time_s"] for x, y in zip(ref_steps[1:], ref_steps[2:])]
        print("reference: weft train of the same job in %.1f s (median step %.1f ms, 1 thread)"
              % (ref_wall, 1e3 * statistics.median(dts) if dts else float("nan")), flush=True)
        rows = []
        for k in range(a.runs):
            r = None
            for attempt in range(1 + max(0, a.retries)):
                if attempt:
                    shutil.rmtree(os.path.join(tmp, "run%d" % k), ignore_errors=True)
                settle(a.settle)
                x = one_run(a, tmp, data, k, ref)
                x["attempts"] = attempt + 1
                print_run(x)
                if not x["ok"] or not x["identical"]:
                    r = x  # a failure or a different checkpoint is what this run found: no retry hides it
                    break
                if r is None or x["others"] < r["others"]:
                    r = x
                if x["others"] <= NOISY:
                    break
                if attempt < a.retries:
                    print("   (run %d: others used %.0f%% of the machine; again)" % (k + 1, x["others"]), flush=True)
                else:
                    print("   (run %d: keeping the least disturbed attempt, others %.0f%%)" % (k + 1, r["others"]),
                          flush=True)
            rows.append(r)
            if not r["ok"] or not r["identical"]:
                keep = keep or a.keep_failed
            if not keep:
                shutil.rmtree(os.path.join(tmp, "run%d" % k), ignore_errors=True)
        print_table(rows)
        good = [r for r in rows if r["ok"]]
        med = lambda key: statistics.median(r[key] for r in good) if good else float("nan")
        print("\nmedians of %d run(s): kill -> step %s s, detected -> step %s s, step time %s ms, ratio %s; "
              "detect %s, stop+fetch %s, compile %s, first step %s s; step time after the recovery %s ms" % (
                  len(good), fmt(med("kill_step")), fmt(med("det_step")), fmt(1e3 * med("step_s"), "%.1f"),
                  fmt(med("ratio"), "%.1fx"), fmt(med("detect")), fmt(med("stop_fetch")), fmt(med("compile")),
                  fmt(med("first")), fmt(1e3 * med("step_after_s"), "%.1f")))
        same = sum(1 for r in good if r["identical"])
        print("checkpoints byte-identical to weft train: %d of %d run(s)" % (same, len(rows)))
        worst = max((r["kill_step"] for r in good), default=float("nan"))
        under = sum(1 for r in good if r["kill_step"] < GOAL_S)
        ok = len(good) == len(rows) and med("kill_step") < GOAL_S
        print("goal: recovery < %g s: %s  (median kill -> step %s s, worst %s s; %d of %d run(s) under %g s)" % (
            GOAL_S, "OK" if ok else "FAIL", fmt(med("kill_step")), fmt(worst), under, len(rows), GOAL_S))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(dict(runs=[{k: v for k, v in r.items() if k != "log"} for r in rows],
                               reference_wall_s=ref_wall), f, indent=1)
        return 0 if ok and same == len(rows) else 1
    finally:
        if keep:
            print("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
