#!/usr/bin/env python3
"""Integration test of lnctl against the real lnserve binary (standard
library only): health, models, geometry, infer with JSON-lines, CSV and
.npy in and out (checked against a float64 reference computed here), and a
short bench run whose JSON report must show zero wrong responses. A fake
server that answers wrong numbers checks that bench notices.

    python3 tests/integration/test_lnctl.py --binary build/release/lnserve \
        --lnctl build/release/lnctl
"""
import argparse
import http.server
import json
import math
import os
import random
import struct
import subprocess
import sys
import threading
import time
import traceback

SEED = int(os.environ.get("LNSERVE_TEST_SEED", str(int(time.time()) % 100000)))
TOL = 2.0 ** -20
ARGS = None
URL = None


def f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def ref_row(x, kind="layernorm", eps=1e-5):
    n = len(x)
    if kind == "layernorm":
        m = math.fsum(x) / n
        v = math.fsum((t - m) ** 2 for t in x) / n
    else:
        m = 0.0
        v = math.fsum(t * t for t in x) / n
    r = 1.0 / math.sqrt(v + eps)
    return [(t - m) * r for t in x], m, r, math.sqrt(v / (v + eps))


def close(a, b, tol=TOL):
    return abs(a - b) <= tol * max(1.0, abs(b))


def lnctl(*args, stdin=b"", timeout=120):
    p = subprocess.run([ARGS.lnctl, "--url", URL] + list(args), input=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def rand_rows(rng, B, N):
    return [[f32(rng.gauss(rng.uniform(-5, 5), rng.uniform(0.1, 3))) for _ in range(N)]
            for _ in range(B)]


def npy_bytes(rows, dtype="<f4"):
    B, N = len(rows), len(rows[0])
    h = "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }" % (dtype, B, N)
    pad = (64 - (10 + len(h) + 1) % 64) % 64
    h = h + " " * pad + "\n"
    head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode()
    fmt = "f" if dtype == "<f4" else "d"
    return head + struct.pack("<%d%s" % (B * N, fmt), *[v for r in rows for v in r])


def npy_read(b):
    assert b[:6] == b"\x93NUMPY", b[:10]
    hl = struct.unpack("<H", b[8:10])[0]
    h = b[10:10 + hl].decode()
    assert "'<f4'" in h and "False" in h, h
    shape = h.split("(")[1].split(")")[0].split(",")
    B, N = int(shape[0]), int(shape[1])
    assert (10 + hl) % 64 == 0
    vals = struct.unpack("<%df" % (B * N), b[10 + hl:])
    return [list(vals[r * N:(r + 1) * N]) for r in range(B)]


def check_rows(got, rows, kind="layernorm"):
    assert len(got) == len(rows), (len(got), len(rows))
    for r, (g, x) in enumerate(zip(got, rows)):
        y, _, _, _ = ref_row(x, kind)
        assert len(g) == len(y)
        for i in range(len(y)):
            if not close(g[i], y[i]):
                raise AssertionError(f"row {r} col {i}: got {g[i]!r} want {y[i]!r}")


# ---- tests ---------------------------------------------------------------

def test_health():
    rc, out, err = lnctl("health")
    assert rc == 0, err
    assert b"live   yes" in out and b"ready  yes" in out, out


def test_health_unreachable():
    p = subprocess.run([ARGS.lnctl, "--url", "http://127.0.0.1:1", "--timeout", "2", "health"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert p.returncode == 1 and b"connect" in p.stderr, p.stderr


def test_models():
    rc, out, err = lnctl("models")
    assert rc == 0, err
    text = out.decode()
    for name in ("layernorm", "rmsnorm"):
        assert f"\n{name}\n" in "\n" + text, text
    assert "input   input" in text and "output  radius" in text, text


def test_geometry():
    rc, out, err = lnctl("geometry", "layernorm")
    assert rc == 0, (rc, err)
    doc = json.loads(out)
    assert doc["name"] == "layernorm" and doc["kind"] == "layernorm", doc
    assert "closed_form" in doc, doc  # any-N built-in: the sphere of radius sqrt(n)
    rc, out, err = lnctl("geometry", "no-such-model")
    assert rc == 1 and "no model named no-such-model" in err, (rc, err)


def test_infer_json():
    rng = random.Random(SEED)
    rows = rand_rows(rng, 37, 19)
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    rc, out, err = lnctl("infer", "layernorm", "--batch", "8", stdin=text)
    assert rc == 0, err
    lines = out.decode().splitlines()
    assert len(lines) == len(rows)
    for r, (line, x) in enumerate(zip(lines, rows)):
        d = json.loads(line)
        y, m, rs, rho = ref_row(x)
        for i in range(len(y)):
            assert close(d["output"][i], y[i]), (r, i, d["output"][i], y[i])
        assert close(d["mean"][0], m) and close(d["rstd"][0], rs), (r, d)
        assert close(d["radius"], rho), (r, d["radius"], rho)


def test_infer_csv():
    rng = random.Random(SEED + 1)
    rows = rand_rows(rng, 10, 7)
    text = "".join(",".join(repr(v) for v in r) + "\n" for r in rows).encode()
    rc, out, err = lnctl("infer", "rmsnorm", "--batch", "3", stdin=text)
    assert rc == 0, err
    got = [[float(t) for t in line.split(",")] for line in out.decode().splitlines()]
    check_rows(got, rows, "rmsnorm")
    # CSV in, JSON lines out
    rc, out, err = lnctl("infer", "layernorm", "--out", "json", stdin=text)
    assert rc == 0, err
    check_rows([json.loads(line)["output"] for line in out.decode().splitlines()], rows)


def test_infer_npy():
    rng = random.Random(SEED + 2)
    rows = rand_rows(rng, 65, 33)
    for dtype in ("<f4", "<f8"):
        rc, out, err = lnctl("infer", "layernorm", stdin=npy_bytes(rows, dtype))
        assert rc == 0, err
        check_rows(npy_read(out), rows)
    rc, out, err = lnctl("infer", "layernorm", "--out", "csv", stdin=npy_bytes(rows))
    assert rc == 0, err
    check_rows([[float(t) for t in l.split(",")] for l in out.decode().splitlines()], rows)


def test_infer_errors():
    rc, out, err = lnctl("infer", "layernorm", stdin=b"[1,2]\n[1,2,3]\n")
    assert rc == 1 and "line 2" in err, (rc, err)
    rc, out, err = lnctl("infer", "no-such-model", stdin=b"[1,2]\n")
    assert rc == 1 and "404" in err, (rc, err)
    rc, out, err = lnctl("infer", stdin=b"[1,2]\n")
    assert rc == 2, (rc, err)


BENCH_FIELDS = ("protocol", "model", "rows", "n", "connections", "duration_s", "requests", "ok",
                "req_s", "rows_s", "mb_s", "latency_us", "checked", "wrong", "errors",
                "errors_total")


def test_bench_closed():
    rc, out, err = lnctl("bench", "--duration", "2", "--concurrency", "8", "--warmup", "0.5",
                         "--json", "--seed", str(SEED))
    assert rc == 0, (rc, out, err)
    d = json.loads(out)
    for k in BENCH_FIELDS:
        assert k in d, (k, d)
    for k in ("p50", "p90", "p99", "p99_9", "max", "mean"):
        assert d["latency_us"][k] > 0, d
    lat = d["latency_us"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"] * 1.01, lat
    assert d["wrong"] == 0 and d["errors_total"] == 0, d
    assert d["requests"] > 0 and d["ok"] == d["requests"] and d["checked"] == d["requests"], d
    assert d["connections"] == 8 and d["protocol"] == "http-json", d
    assert abs(d["req_s"] * 2 - d["requests"]) <= max(0.1 * d["requests"], 20), d
    # the progress line went to stderr, once a second
    assert "req/s" in err, err


def test_bench_open_loop_rows():
    rc, out, err = lnctl("bench", "--rate", "400", "--requests", "200", "--rows", "4", "--n",
                         "100", "--model", "rmsnorm", "--concurrency", "4", "--warmup", "0",
                         "--json", "--quiet")
    assert rc == 0, (rc, out, err)
    d = json.loads(out)
    assert d["requests"] == 200 and d["wrong"] == 0 and d["errors_total"] == 0, d
    assert abs(d["rows_s"] - d["req_s"] * 4) <= 1, d
    assert 0.3 <= d["duration_s"] <= 5, d  # 200 requests at 400/s: about 0.5 s
    assert err == "", err


def test_bench_protocols():
    for p in ("http-binary", "binary-tcp", "binary-unix"):
        rc, out, err = lnctl("bench", "--protocol", p, "--duration", "1")
        assert rc == 2 and "not supported by this server yet" in err, (p, rc, err)
    rc, out, err = lnctl("bench", "--protocol", "carrier-pigeon")
    assert rc == 2, (rc, err)


class WrongHandler(http.server.BaseHTTPRequestHandler):
    """Answers every infer with zeros: a server that is wrong."""
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        B, N = req["inputs"][0]["shape"]
        body = json.dumps({"model_name": "layernorm", "outputs": [
            {"name": "output", "datatype": "FP32", "shape": [B, N], "data": [0.0] * (B * N)}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


def test_bench_catches_wrong():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WrongHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        p = subprocess.run([ARGS.lnctl, "--url", f"http://127.0.0.1:{srv.server_port}", "bench",
                            "--requests", "20", "--concurrency", "2", "--warmup", "0", "--n", "16",
                            "--json", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        d = json.loads(p.stdout)
        assert d["wrong"] == 20 and d["ok"] == 0, d
    finally:
        srv.shutdown()


def main():
    global ARGS, URL
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--lnctl", required=True)
    ARGS = ap.parse_args()
    print(f"test_lnctl.py: seed {SEED} (LNSERVE_TEST_SEED)")
    proc = subprocess.Popen([ARGS.binary, "--address", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "listening on" not in line:
        proc.kill()
        sys.exit("server did not start: " + line)
    URL = "http://127.0.0.1:" + line.strip().rsplit(":", 1)[1]
    tests = [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]
    passed = failed = 0
    try:
        for name, fn in tests:
            t0 = time.time()
            try:
                fn()
                passed += 1
                print(f"ok   {name} ({time.time() - t0:.1f} s)")
            except Exception:
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()
    finally:
        proc.terminate()
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        if rc != 0:
            print(f"FAIL server exited {rc} after SIGTERM")
            failed += 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
