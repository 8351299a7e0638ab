#!/usr/bin/python3
"""weft hostile-peers benchmark and test (stdlib only). See bench/README.md.

Trains the CNN job (examples/cnn.wf, Fashion-MNIST) with `weft run --workers 2 --pp 2`
on loopback and, once it is past its warm-up, measures its step rate for --window s
(before), then again for --window s while an attacker without the cluster token
(this script, in a process of its own at nice 19: an attacker elsewhere costs this machine no CPU)
hammers one listening socket (during):

  --idle N        connections that connect and send nothing (reopened when dropped)
  --loris N       slow-loris connections: a HELLO header, then one byte every 0.5 s
  --big N         HELLOs announcing 1 GiB (each sent once)
  --cycles N      connect/close cycles, spread over the window
  --wrong N       clients answering the challenge with a wrong token (each once)

--target coordinator attacks the coordinator's port (the `weft run` process); --target
worker the data listener of the first worker `weft status` lists (a pipeline job: its
stages connected to each other at the start; new peers are accepted only when a node set
changes); --target both (the default) runs one attacked job for each. Throughout, `weft status` is asked every 0.25 s and timed; the attacked
process's resident memory is read from /proc (its growth during the attack beyond its growth
over the window before: a worker's grows by itself while its first epoch touches the data). At the end the job's checkpoint is
compared byte for byte with a `weft train` of the same job.

Prints the rates, the ratio, the slowest `weft status`, the memory growth and:
  goal (TARGET): rate during >= 90% of before: OK|FAIL
  goal (TARGET): weft status < 1 s throughout: OK|FAIL
  goal (TARGET): RSS growth < 50 MB: OK|FAIL
  goal (TARGET): checkpoint byte-identical to weft train: OK|FAIL
and exits 1 if any goal fails. --check runs the same with only the functional goals
(status answered within --status-limit, memory, checkpoint), for the test suite.
"""
import argparse
import hashlib
import hmac
import multiprocessing
import os
import re
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from benchlib import count_steps, write_cnn_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
MODEL = os.path.join(ROOT, "examples", "cnn.wf")
MAGIC, VERSION = 0x54464557, 5  # WF_PROTO_VERSION
M_HELLO, M_CHALLENGE = 101, 100
NODE_RE = re.compile(r"^\s*node (\d+)\s+(\S+):(\d+) pid (\d+)", re.M)


class Failure(Exception):
    pass


def frame(mtype, payload, announce=None):
    n = len(payload) if announce is None else announce
    h = struct.pack("<IHHI", MAGIC, VERSION, mtype, n)
    return h + struct.pack("<I", zlib.crc32(h + payload) & 0xFFFFFFFF) + payload


def hello_payload(mac):
    return mac + struct.pack("<IIQII", 2, 1, 0, 0, os.getpid()) + struct.pack("<I", 0) + struct.pack("<QQI", 0, 0, 0)


# ---------------------------------------------------------------- the attacker


class Attacker(threading.Thread):
    """Non-blocking sockets on one selector; runs until stop() (or `duration` s)."""

    def __init__(self, host, port, a, duration):
        super().__init__(daemon=True)
        self.addr = (host, port)
        self.a = a
        self.duration = duration
        self.sel = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.counts = dict(opened=0, dropped=0, refused_connect=0, cycles=0, big=0, wrong=0, loris_bytes=0)

    def stop(self):
        self.stopping.set()

    def open(self, kind, first=b""):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(self.addr)
        except BlockingIOError:
            pass
        except OSError:
            self.counts["refused_connect"] += 1
            s.close()
            return None
        st = dict(kind=kind, out=first, t_next=time.monotonic() + 0.5, got=b"")
        self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
        self.counts["opened"] += 1
        return s

    def close(self, s, reopen):
        st = self.sel.get_key(s).data
        self.sel.unregister(s)
        s.close()
        self.counts["dropped"] += 1
        if reopen and not self.stopping.is_set():
            self.spawn(st["kind"])

    def spawn(self, kind):
        if kind == "idle":
            self.open("idle")
        elif kind == "loris":
            # a HELLO header announcing 336 bytes (within its cap), sent a byte at a time
            self.open("loris", frame(M_HELLO, b"\0" * 336)[:16])
        elif kind == "big":
            self.counts["big"] += 1
            self.open("big", frame(M_HELLO, b"", 1 << 30)[:16] + b"\0" * 1024)
        elif kind == "wrong":
            self.counts["wrong"] += 1
            self.open("wrong")

    def run(self):
        a = self.a
        for _ in range(a.idle):
            self.spawn("idle")
        for _ in range(a.loris):
            self.spawn("loris")
        for _ in range(a.big):
            self.spawn("big")
        for _ in range(a.wrong):
            self.spawn("wrong")
        t0 = time.monotonic()
        cycle_every = self.duration / a.cycles if a.cycles else None
        next_cycle = t0
        while not self.stopping.is_set() and time.monotonic() - t0 < self.duration:
            now = time.monotonic()
            while cycle_every and self.counts["cycles"] < a.cycles and now >= next_cycle:
                try:
                    c = socket.create_connection(self.addr, timeout=1)
                    c.close()
                except OSError:
                    self.counts["refused_connect"] += 1
                self.counts["cycles"] += 1
                next_cycle += cycle_every
            for key, ev in self.sel.select(timeout=0.05):
                s, st = key.fileobj, key.data
                if ev & selectors.EVENT_READ:
                    try:
                        b = s.recv(65536)
                    except OSError:
                        b = b""
                    if not b:  # dropped: idle and slow-loris connections come back (the others are one-shot)
                        self.close(s, reopen=st["kind"] in ("idle", "loris"))
                        continue
                    st["got"] += b
                    if st["kind"] == "wrong" and len(st["got"]) >= 48 and not st.get("sent"):
                        nonce = st["got"][16:48]
                        mac = hmac.new(b"\x42" * 16, nonce + struct.pack("<I", 2), hashlib.sha256).digest()
                        st["out"] += frame(M_HELLO, hello_payload(mac))
                        st["sent"] = True
                if ev & selectors.EVENT_WRITE and st["out"]:
                    if st["kind"] == "loris":
                        if now < st["t_next"]:
                            continue
                        chunk, st["t_next"] = st["out"][:1], now + 0.5
                    else:
                        chunk = st["out"]
                    try:
                        k = s.send(chunk)
                    except OSError:
                        self.close(s, reopen=st["kind"] in ("idle", "loris"))
                        continue
                    st["out"] = st["out"][k:]
                    if st["kind"] == "loris":
                        self.counts["loris_bytes"] += k
                        if not st["out"]:
                            st["out"] = b"\0"  # the payload, a byte at a time, never finished
                if not st["out"]:
                    self.sel.modify(s, selectors.EVENT_READ, st)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


class AttackProcess:
    """The attacker in a process of its own at the lowest CPU priority (os.nice 19): an attacker on another
    machine costs this one no CPU, and on a 2-core test machine its own work would otherwise be charged to
    weft's step rate. Its connections are what weft has to handle, whatever its priority."""

    def __init__(self, host, port, a, duration):
        self.args = (host, port, a, duration)
        self.counts = {}
        self.q = multiprocessing.Queue()
        self.stopping = multiprocessing.Event()
        self.p = multiprocessing.Process(target=self._run, daemon=True)

    def _run(self):
        os.nice(19)
        atk = Attacker(*self.args)
        atk.stopping = self.stopping
        atk.run()
        self.q.put(atk.counts)

    def start(self):
        self.p.start()

    def stop(self):
        self.stopping.set()
        try:
            self.counts = self.q.get(timeout=15)
        except Exception:
            self.counts = dict(opened=0, dropped=0, refused_connect=0, cycles=0, big=0, wrong=0, loris_bytes=0)
        self.p.join(5)
        if self.p.is_alive():
            self.p.kill()


# ---------------------------------------------------------------- the job


def write_job(path, a, out):
    write_cnn_job(path, MODEL, DATA, out, a.max_steps, a.batch, 4, 2500)


def rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


class StatusPoller(threading.Thread):
    """Runs `weft status` every 0.25 s; keeps the slowest answer per phase and the last output."""

    def __init__(self, weft, out, limit):
        super().__init__(daemon=True)
        self.weft, self.out, self.limit = weft, out, limit
        self.phase = "before"
        self.worst = {}
        self.failures = []
        self.last = ""
        self.stopping = threading.Event()

    def ask(self):
        with open(os.path.join(self.out, "coordinator")) as f:
            coord = f.read().strip()
        with open(os.path.join(self.out, "weft-token")) as f:
            env = dict(os.environ, WEFT_TOKEN=f.read().strip())
        t0 = time.monotonic()
        try:
            p = subprocess.run([self.weft, "status", "--coordinator", coord], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=self.limit * 3 + 5, universal_newlines=True)
            ok, text = p.returncode == 0, p.stdout
        except subprocess.TimeoutExpired:
            ok, text = False, "(timed out)"
        dt = time.monotonic() - t0
        return ok, dt, text

    def run(self):
        while not self.stopping.is_set():
            try:
                ok, dt, text = self.ask()
            except OSError:
                break  # the job ended: its contact files are gone
            if not ok and not os.path.exists(os.path.join(self.out, "coordinator")):
                break
            ph = self.phase
            self.worst[ph] = max(self.worst.get(ph, 0.0), dt)
            if ok:
                self.last = text
            else:
                self.failures.append("%s: weft status failed after %.2f s: %s" % (ph, dt, text.strip()[-300:]))
            time.sleep(0.25)


def reference(a, tmp):
    d = os.path.join(tmp, "train")
    os.makedirs(d)
    write_job(os.path.join(d, "job"), a, os.path.join(d, "out"))
    p = subprocess.run([a.weft, "train", os.path.join(d, "job"), "--quiet"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=a.timeout, universal_newlines=True)
    if p.returncode != 0:
        raise Failure("weft train failed:\n" + p.stdout[-2000:])
    return os.path.join(d, "out", "checkpoint.safetensors")


def wait_for(cond, limit, what):
    t_end = time.monotonic() + limit
    while time.monotonic() < t_end:
        if cond():
            return
        time.sleep(0.05)
    raise Failure("timed out after %.0f s waiting for %s" % (limit, what))


def cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def attacked_run(a, tmp, ref):
    d = os.path.join(tmp, "run")
    os.makedirs(d)
    out = os.path.join(d, "out")
    write_job(os.path.join(d, "job"), a, out)
    log = open(os.path.join(d, "log"), "w")
    job = subprocess.Popen([a.weft, "run", os.path.join(d, "job"), "--workers", "2", "--pp", "2", "--quiet"],
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    metrics = os.path.join(out, "metrics.jsonl")
    poller = None
    try:
        wait_for(lambda: count_steps(metrics) >= a.warmup or job.poll() is not None, a.timeout,
                 "%d steps" % a.warmup)
        if job.poll() is not None:
            raise Failure("the job ended before its warm-up")
        poller = StatusPoller(a.weft, out, a.status_limit)
        poller.start()
        wait_for(lambda: NODE_RE.search(poller.last or "") is not None or job.poll() is not None, 30, "weft status")
        if job.poll() is not None:
            raise Failure("the job ended (exit %d) before the first window; its log ends:\n%s" %
                          (job.returncode, open(os.path.join(d, "log")).read()[-2000:]))
        if a.target_now == "coordinator":
            host, port = open(os.path.join(out, "coordinator")).read().strip().rsplit(":", 1)
            victim = job.pid
        else:
            nodes = [NODE_RE.match(line) for line in poller.last.splitlines()]
            nodes = [m for m in nodes if m]
            if not nodes:
                raise Failure("weft status lists no worker:\n" + poller.last)
            host, port, victim = nodes[0].group(2), nodes[0].group(3), int(nodes[0].group(4))
        port = int(port)
        # before
        n0, t0, rss0 = count_steps(metrics), time.monotonic(), rss_mb(victim)
        rss_max0 = rss0
        while time.monotonic() - t0 < a.window:
            time.sleep(0.1)
            rss_max0 = max(rss_max0, rss_mb(victim))
        n1, t1 = count_steps(metrics), time.monotonic()
        # during
        poller.phase = "during"
        rss2 = rss_mb(victim)
        rss_max = rss2
        atk = AttackProcess(host, port, a, a.window + 5)
        atk.start()
        t_open = time.monotonic()
        while time.monotonic() - t_open < 1.0:  # the connections are open
            time.sleep(0.1)
            rss_max = max(rss_max, rss_mb(victim))
        n2, t2, c2 = count_steps(metrics), time.monotonic(), cpu_s(victim)
        while time.monotonic() - t2 < a.window:
            time.sleep(0.1)
            rss_max = max(rss_max, rss_mb(victim))
        n3, t3, c3 = count_steps(metrics), time.monotonic(), cpu_s(victim)
        atk.stop()
        poller.phase = "after"
        if job.poll() is not None and n3 >= a.max_steps:
            raise Failure("the job finished during the attack window: raise --max-steps")
        rc = job.wait(a.timeout)
        poller.stopping.set()
        poller.join(30)
        if rc != 0:
            raise Failure("weft run failed (exit %d):\n%s" % (rc, open(os.path.join(d, "log")).read()[-3000:]))
        same = open(ref, "rb").read() == open(os.path.join(out, "checkpoint.safetensors"), "rb").read()
        turned = [line for line in open(os.path.join(d, "log")) if "turned away" in line]
        return dict(before=(n1 - n0) / (t1 - t0), during=(n3 - n2) / (t3 - t2), rss0=rss0, rss_grow0=rss_max0 - rss0,
                    rss2=rss2, rss_grow=rss_max - rss2, cpu=c3 - c2,
                    status=poller.worst, status_failures=poller.failures, same=same, counts=atk.counts,
                    target="%s:%d" % (host, port), turned=turned)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        if poller:
            poller.stopping.set()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weft", required=True)
    ap.add_argument("--target", choices=("coordinator", "worker", "both"), default="both",
                    help="which listening socket to attack (default both, one job each)")
    ap.add_argument("--idle", type=int, default=50)
    ap.add_argument("--loris", type=int, default=50)
    ap.add_argument("--big", type=int, default=10)
    ap.add_argument("--cycles", type=int, default=200)
    ap.add_argument("--wrong", type=int, default=5)
    ap.add_argument("--window", type=float, default=8.0, help="seconds measured before and during (default 8)")
    ap.add_argument("--warmup", type=int, default=20, help="steps before the first window (default 20)")
    ap.add_argument("--max-steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--status-limit", type=float, default=1.0, help="slowest weft status allowed (default 1 s)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--check", action="store_true",
                    help="the test suite's run: goals on status, memory and checkpoint only (no rate goal)")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="weft-hostile-")
    results = []
    try:
        ref = reference(a, tmp)
        for target in (("coordinator", "worker") if a.target == "both" else (a.target,)):
            a.target_now = target
            results.append((target, attacked_run(a, os.path.join(tmp, target), ref)))
    except Failure as e:
        print("hostile: FAIL: %s" % e)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    failed = 0
    for target, r in results:
        failed += report(a, target, r)
    return 1 if failed else 0


def report(a, target, r):
    c = r["counts"]
    print("attack on the %s (%s): %d idle, %d slow-loris, %d HELLOs of 1 GiB, %d wrong tokens, %d connect/close; "
          "%d connections opened, %d dropped by weft" % (target, r["target"], a.idle, a.loris, c["big"],
                                                        c["wrong"], c["cycles"], c["opened"], c["dropped"]))
    ratio = r["during"] / r["before"] if r["before"] > 0 else 0.0
    print("  step rate: before %.2f steps/s, during %.2f steps/s (%.0f%%)" % (r["before"], r["during"], 100 * ratio))
    worst = max(r["status"].values()) if r["status"] else float("nan")
    print("  weft status: slowest %s" % ", ".join("%s %.3f s" % kv for kv in sorted(r["status"].items())))
    # a worker's memory grows by itself while its first epoch touches the data: the attack's
    # share is the growth during the attack beyond the growth over the window before it
    growth = r["rss_grow"] - max(0.0, r["rss_grow0"])
    print("  resident memory of the attacked process: %.1f MB, +%.1f MB over the window before, +%.1f MB over "
          "the attack (+%.1f MB more); its CPU time during the attack: %.2f s" %
          (r["rss0"], r["rss_grow0"], r["rss_grow"], growth, r["cpu"]))
    for line in r["turned"][:3]:
        print("  " + line.strip())
    for f in r["status_failures"][:5]:
        print("  " + f)
    goals = []
    if not a.check:
        goals.append(("rate during >= 90% of before", ratio >= 0.9))
    goals.append(("weft status < %g s throughout" % a.status_limit,
                  not r["status_failures"] and worst < a.status_limit))
    goals.append(("RSS growth < 50 MB", growth < 50))
    goals.append(("checkpoint byte-identical to weft train", r["same"]))
    for name, ok in goals:
        print("goal (%s): %s: %s" % (target, name, "OK" if ok else "FAIL"))
    return sum(1 for _, ok in goals if not ok)


if __name__ == "__main__":
    sys.exit(main())
