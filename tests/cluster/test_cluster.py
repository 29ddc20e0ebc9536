#!/usr/bin/env python3
"""Cluster test: three lnserve replicas behind HAProxy, one killed under load.

Everything on 127.0.0.1. HAProxy (the Debian package, installed with
tools/install-deps.sh haproxy when missing) runs on docker/haproxy.cfg itself,
unchanged: that file takes the replica addresses and its own ports from the
environment (LNSERVE1..3, LB_BIND, STATS_BIND), which compose sets to the
container names and this test to loopback ports. So what passes here is the
balancing, health checking and retry logic that compose ships.

Timeline (--duration D seconds of load, 12 by default):
  0      client threads start POSTing infers through HAProxy (keep-alive)
  D/4    replica 2 gets SIGKILL (requests in flight on it are lost mid-way)
  D/2    replica 2 restarts on the same port
  3D/4   replica 3 gets SIGTERM (drains: readiness 503, then exits 0)
  D      load stops
Asserts: every response is 200 with a well-formed body; a sample of the
bodies matches a float64 reference; HAProxy marked replica 2 DOWN after the
kill and UP after the restart, replica 3 DOWN after SIGTERM; replica 3 exited 0.

Bounded: a watchdog ends the run after --duration + 60 s; every process it
starts dies with it (PR_SET_PDEATHSIG) and is stopped in a finally block.
"""

import argparse
import csv
import ctypes
import http.client
import io
import json
import math
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EPS = 1e-5
PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this test process dies."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


class Cluster:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.procs = []  # every process started, for cleanup
        self.replicas = [None, None, None]  # Popen per replica
        self.ports = [None, None, None]
        self.haproxy = None
        self.lb_port = None
        self.stats_port = None

    # -- processes -------------------------------------------------------
    def start_replica(self, i, port=0):
        ncpu = os.cpu_count() or 1
        log = open(os.path.join(self.tmp, f"lnserve{i + 1}.log"), "ab")
        cmd = [self.args.binary, "--port", str(port), "--workers", "1", "--io-threads", "1",
               "--cpus", str(i % ncpu), "--drain-timeout-s", "5"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                             preexec_fn=die_with_parent)
        log.close()
        self.procs.append(p)
        line = b""
        deadline = time.monotonic() + 10
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
                raise RuntimeError(f"lnserve{i + 1} did not print its port within 10 s")
            ch = os.read(p.stdout.fileno(), 1)  # unbuffered: select stays truthful
            if not ch:
                raise RuntimeError(f"lnserve{i + 1} exited (rc {p.wait()}) before listening")
            line += ch
        text = line.decode()
        if "listening on http://127.0.0.1:" not in text:
            raise RuntimeError(f"lnserve{i + 1}: unexpected first line {text!r}")
        self.ports[i] = int(text.rsplit(":", 1)[1])
        self.replicas[i] = p
        return self.ports[i]

    def start_haproxy(self, haproxy_bin):
        self.lb_port, self.stats_port = free_port(), free_port()
        env = dict(os.environ)
        for i in range(3):
            env[f"LNSERVE{i + 1}"] = f"127.0.0.1:{self.ports[i]}"
        env["LB_BIND"] = f"127.0.0.1:{self.lb_port}"
        env["STATS_BIND"] = f"127.0.0.1:{self.stats_port}"
        cfg = self.args.haproxy_cfg
        check = subprocess.run([haproxy_bin, "-c", "-f", cfg], env=env, capture_output=True,
                               text=True, timeout=20)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy -c rejects {cfg}:\n{check.stdout}{check.stderr}")
        log = open(os.path.join(self.tmp, "haproxy.log"), "ab")
        # -db: foreground, no daemon; logs go to stdout (the config says so).
        self.haproxy = subprocess.Popen([haproxy_bin, "-db", "-f", cfg], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=die_with_parent)
        log.close()
        self.procs.append(self.haproxy)

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 3
        for p in self.procs:
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()

    # -- HAProxy stats -----------------------------------------------------
    def stats(self):
        """{svname: row} of the lnserve backend, from /stats;csv."""
        c = http.client.HTTPConnection("127.0.0.1", self.stats_port, timeout=2)
        try:
            c.request("GET", "/stats;csv")
            r = c.getresponse()
            text = r.read().decode()
        finally:
            c.close()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {row["svname"]: row for row in rows if row["pxname"] == "lnserve"}


class Load:
    """Client threads: each one keep-alive connection to HAProxy, every
    response counted; a sample checked against a float64 reference."""

    def __init__(self, port, threads, seed):
        self.port = port
        self.n_threads = threads
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.ok = 0
        self.checked = 0
        self.failures = []  # (t, what)
        self.t0 = None
        self.threads = []

    def start(self):
        self.t0 = time.monotonic()
        for k in range(self.n_threads):
            t = threading.Thread(target=self.run, args=(k,), daemon=True)
            t.start()
            self.threads.append(t)

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(15)

    def fail(self, what):
        with self.lock:
            self.failures.append((time.monotonic() - self.t0, what))

    def run(self, k):
        rng = random.Random(self.seed * 1000 + k)
        conn = None
        i = 0
        while not self.stop.is_set():
            i += 1
            b = rng.randint(1, 4)
            n = rng.choice((8, 16, 33, 64, 256))
            rows = []
            for _ in range(b):
                off, scale = rng.uniform(-100, 100), rng.uniform(0.01, 10)
                rows.append([f32(off + scale * rng.gauss(0, 1)) for _ in range(n)])
            body = json.dumps({"id": f"{k}-{i}", "inputs": [
                {"name": "input", "datatype": "FP32", "shape": [b, n],
                 "data": [v for r in rows for v in r]}]})
            with self.lock:
                self.sent += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("POST", "/v2/models/layernorm/infer", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                self.fail(f"{type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
                continue
            if r.status != 200:
                self.fail(f"HTTP {r.status}: {data[:200]!r}")
                continue
            try:
                out = {o["name"]: o for o in json.loads(data)["outputs"]}
                if out["output"]["shape"] != [b, n] or len(out["output"]["data"]) != b * n:
                    raise ValueError(f"output shape {out['output']['shape']} for [{b}, {n}]")
                if i % 4 == 0:
                    self.check(rows, out)
                    with self.lock:
                        self.checked += 1
            except (ValueError, KeyError, TypeError) as e:
                self.fail(f"bad body: {e}: {data[:200]!r}")
                continue
            with self.lock:
                self.ok += 1
        if conn is not None:
            conn.close()

    @staticmethod
    def check(rows, out):
        n = len(rows[0])
        y = out["output"]["data"]
        for r, row in enumerate(rows):
            mean = math.fsum(row) / n
            var = math.fsum((x - mean) ** 2 for x in row) / n
            rstd = 1.0 / math.sqrt(var + EPS)
            if abs(out["mean"]["data"][r] - mean) > 1e-5 * (1 + abs(mean)):
                raise ValueError(f"row {r}: mean {out['mean']['data'][r]} != {mean}")
            if abs(out["rstd"]["data"][r] - rstd) > 1e-5 * rstd:
                raise ValueError(f"row {r}: rstd {out['rstd']['data'][r]} != {rstd}")
            for c, x in enumerate(row):
                ref = (x - mean) * rstd
                got = y[r * n + c]
                if abs(got - ref) > 1e-4 * (1 + abs(ref)):
                    raise ValueError(f"row {r} col {c}: {got} != {ref}")


def find_haproxy():
    h = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy")
                                    else None)
    if h:
        return h
    print("cluster: haproxy missing; tools/install-deps.sh haproxy", flush=True)
    subprocess.run([os.path.join(ROOT, "tools", "install-deps.sh"), "haproxy"], check=True)
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build/release/lnserve"))
    ap.add_argument("--haproxy-cfg", default=os.path.join(ROOT, "docker/haproxy.cfg"))
    ap.add_argument("--duration", type=float, default=12.0, help="seconds of load")
    ap.add_argument("--threads", type=int, default=6, help="client threads")
    ap.add_argument("--keep-logs", action="store_true")
    args = ap.parse_args()
    seed = int(os.environ.get("LNSERVE_TEST_SEED", int(time.time()) % 100000))
    print(f"cluster: seed {seed}", flush=True)

    # SIGTERM/SIGINT unwind through the finally below; a watchdog bounds the run.
    def on_signal(sig, frame):
        raise SystemExit(f"cluster: {signal.Signals(sig).name}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    haproxy_bin = find_haproxy()
    tmp = tempfile.mkdtemp(prefix="lnserve-cluster-")
    cl = Cluster(args, tmp)

    def watchdog():
        print("cluster: FAIL: watchdog: still running after "
              f"{args.duration + 60:.0f} s; killing everything", flush=True)
        for p in cl.procs:
            if p.poll() is None:
                p.kill()
        os._exit(1)
    wd = threading.Timer(args.duration + 60, watchdog)
    wd.daemon = True
    wd.start()

    ok = False
    try:
        ok = run(cl, args, seed, haproxy_bin)
    finally:
        cl.stop_all()
        wd.cancel()
        if ok and not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            for name in sorted(os.listdir(tmp)):
                with open(os.path.join(tmp, name), "rb") as f:
                    tail = f.read()[-3000:].decode(errors="replace")
                print(f"---- {name} (last 3000 bytes; all in {tmp})\n{tail}")
    print("cluster: PASS" if ok else "cluster: FAIL", flush=True)
    return 0 if ok else 1


def run(cl, args, seed, haproxy_bin):
    for i in range(3):
        cl.start_replica(i)
    cl.start_haproxy(haproxy_bin)
    print(f"cluster: replicas on {cl.ports}, haproxy on {cl.lb_port} (stats {cl.stats_port}), "
          f"{haproxy_bin} -f {os.path.relpath(args.haproxy_cfg, ROOT)}", flush=True)

    # All three UP (checked, not merely assumed) before the load starts.
    deadline = time.monotonic() + 10
    while True:
        try:
            st = cl.stats()
            if all(st.get(f"lnserve{i}", {}).get("status") == "UP" and
                   st[f"lnserve{i}"].get("check_status", "").startswith("L7OK")
                   for i in (1, 2, 3)):
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("HAProxy did not report three replicas UP within 10 s")
        time.sleep(0.1)

    # Watch HAProxy's view of each replica: (t, server, status, check_status).
    transitions = []
    watch_stop = threading.Event()
    load = Load(cl.lb_port, args.threads, seed)

    def watch():
        last = {}
        while not watch_stop.is_set():
            try:
                st = cl.stats()
            except OSError:
                st = {}
            t = time.monotonic() - load.t0
            for sv in ("lnserve1", "lnserve2", "lnserve3"):
                s = st.get(sv, {}).get("status")
                key = (s, st.get(sv, {}).get("check_status"))
                if s and key != last.get(sv):
                    transitions.append((t, sv, s, key[1]))
                    last[sv] = key
            watch_stop.wait(0.05)

    d = args.duration
    load.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    events = {}

    def at(t):
        left = load.t0 + t - time.monotonic()
        if left > 0:
            time.sleep(left)
        return time.monotonic() - load.t0

    events["kill"] = at(d / 4)
    sent_before_kill = load.sent
    cl.replicas[1].send_signal(signal.SIGKILL)
    cl.replicas[1].wait()
    print(f"cluster: t={events['kill']:.2f}s SIGKILL lnserve2 (pid {cl.replicas[1].pid}) "
          f"after {sent_before_kill} requests", flush=True)

    events["restart"] = at(d / 2)
    cl.start_replica(1, cl.ports[1])
    print(f"cluster: t={events['restart']:.2f}s lnserve2 restarted on port {cl.ports[1]}",
          flush=True)

    events["term"] = at(3 * d / 4)
    cl.replicas[2].send_signal(signal.SIGTERM)
    print(f"cluster: t={events['term']:.2f}s SIGTERM lnserve3", flush=True)

    at(d)
    load.join()
    # The states the checks must reach may lag by a check interval or two.
    def state_reached(sv, status, after):
        return any(t >= after and s == sv and st == status for t, s, st, _ in transitions)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (
            state_reached("lnserve2", "UP", events["restart"]) and
            state_reached("lnserve3", "DOWN", events["term"])):
        time.sleep(0.1)
    watch_stop.set()
    watcher.join(5)
    try:
        term_rc = cl.replicas[2].wait(10)
    except subprocess.TimeoutExpired:
        term_rc = None
    final = cl.stats()

    elapsed = time.monotonic() - load.t0
    print(f"cluster: {load.sent} requests in {elapsed:.1f} s ({load.sent / elapsed:.0f}/s) "
          f"through HAProxy, {load.ok} ok, {len(load.failures)} failed, "
          f"{load.checked} bodies checked against float64", flush=True)
    for t, sv, s, chk in transitions:
        print(f"cluster:   t={t:6.2f}s HAProxy: {sv} {s} ({chk})", flush=True)
    be = final.get("BACKEND", {})
    print("cluster: HAProxy backend: retries (wretr) " + be.get("wretr", "?") +
          ", redispatches (wredis) " + be.get("wredis", "?") +
          ", 5xx to clients " + be.get("hrsp_5xx", "?"), flush=True)
    for sv in ("lnserve1", "lnserve2", "lnserve3"):
        r = final.get(sv, {})
        print(f"cluster:   {sv}: {r.get('stot')} requests, status {r.get('status')}, "
              f"econ {r.get('econ')}, eresp {r.get('eresp')}, wretr {r.get('wretr')}, "
              f"wredis {r.get('wredis')}", flush=True)

    problems = []
    for t, what in load.failures[:10]:
        problems.append(f"request failed at t={t:.2f}s: {what}")
    if load.failures:
        problems.append(f"{len(load.failures)} failed requests in all")
    if load.ok < 100:
        problems.append(f"only {load.ok} requests succeeded: too little load to mean anything")
    down = [t for t, sv, s, _ in transitions
            if sv == "lnserve2" and s == "DOWN" and events["kill"] <= t < events["restart"]]
    if down:
        print(f"cluster: HAProxy marked lnserve2 DOWN {down[0] - events['kill']:.2f} s "
              "after SIGKILL", flush=True)
    else:
        problems.append("HAProxy did not mark lnserve2 DOWN after SIGKILL")
    # The active check itself (not only the errors observed in traffic, HANA)
    # must have failed against the dead replica: L4CON = connection refused.
    if not any(sv == "lnserve2" and events["kill"] <= t < events["restart"] and
               (chk or "").startswith(("L4", "L6", "L7STS", "L7TOUT"))
               for t, sv, _, chk in transitions):
        problems.append("HAProxy's health check never failed on lnserve2 while it was dead")
    if not state_reached("lnserve2", "UP", events["restart"]):
        problems.append("HAProxy did not mark lnserve2 UP again after its restart")
    if not state_reached("lnserve3", "DOWN", events["term"]):
        problems.append("HAProxy did not mark lnserve3 DOWN after SIGTERM")
    if term_rc != 0:
        problems.append(f"lnserve3 after SIGTERM: exit status {term_rc}, expected 0")
    if final.get("lnserve1", {}).get("status") != "UP":
        problems.append("lnserve1 is not UP at the end")
    for p in problems:
        print(f"cluster: FAIL: {p}", flush=True)
    return not problems


if __name__ == "__main__":
    sys.exit(main())
