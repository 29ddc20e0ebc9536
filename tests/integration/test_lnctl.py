#!/usr/bin/env python3
"""Integration test of lnctl against the real lnserve binary (standard
library only): health, models, geometry, infer with JSON-lines, CSV and
.npy in and out (checked against a float64 reference computed here), and a
short bench run whose JSON report must show zero wrong responses. A fake
server that answers wrong numbers checks that bench notices.

Every protocol (http-json, http-binary, binary-tcp, binary-unix): infer
prints exactly what the HTTP JSON path prints, bench completes with zero
errors, and fake binary servers (wrong numbers, an id never asked for)
make bench fail. Bad arguments exit 2 with a message that says what is
wrong. No timing is asserted.

    python3 tests/integration/test_lnctl.py --binary build/release/lnserve \
        --lnctl build/release/lnctl
"""
import argparse
import http.server
import json
import math
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

SEED = int(os.environ.get("LNSERVE_TEST_SEED", str(int(time.time()) % 100000)))
TOL = 2.0 ** -20
ARGS = None
URL = None
BIN_ADDR = None  # binary-tcp: HOST:PORT
SOCK = None      # binary-unix: the socket path


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


def wire(proto):
    """The lnctl options that select a protocol against the test server."""
    if proto == "binary-tcp":
        return ["--protocol", proto, "--addr", BIN_ADDR]
    if proto == "binary-unix":
        return ["--protocol", proto, "--addr", SOCK]
    return ["--protocol", proto]


PROTOCOLS = ("http-json", "http-binary", "binary-tcp", "binary-unix")


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


def test_infer_every_protocol_same_output():
    rng = random.Random(SEED + 3)
    rows = rand_rows(rng, 41, 23)
    jsonl = "".join(json.dumps(r) + "\n" for r in rows).encode()
    for model, stdin, extra in (("layernorm", jsonl, ["--batch", "8"]),
                                ("rmsnorm", jsonl, []),
                                ("layernorm", npy_bytes(rows), ["--batch", "5"])):
        rc, want, err = lnctl("infer", model, *extra, stdin=stdin)
        assert rc == 0, err
        if stdin[:1] == b"[":
            lines = want.decode().splitlines()
            assert len(lines) == len(rows) and all("radius" in l for l in lines), want[:300]
        for p in PROTOCOLS[1:]:
            # --protocol after the command here, before it (global) in the bench tests
            rc, got, err = lnctl("infer", model, *extra, *wire(p), stdin=stdin)
            assert rc == 0, (p, err)
            assert got == want, (p, model, got[:300], want[:300])


def test_infer_protocol_errors():
    for p in PROTOCOLS[1:]:
        rc, out, err = lnctl(*wire(p), "infer", "no-such-model", stdin=b"[1,2]\n")
        assert rc == 1 and ("404" in err or "not_found" in err), (p, rc, err)
        assert "no-such-model" in err, (p, err)


def test_health_models_binary():
    for p in ("binary-tcp", "binary-unix"):
        rc, out, err = lnctl(*wire(p), "health")
        assert rc == 0 and out.startswith(b"ping   yes"), (p, rc, out, err)
        rc, out, err = lnctl(*wire(p), "models", "layernorm", "rmsnorm")
        assert rc == 0, (p, err)
        text = out.decode()
        assert "layernorm\n  kind    layernorm" in text and "rmsnorm\n  kind    rmsnorm" in text, text
        assert "FP32" in text, text
        rc, out, err = lnctl(*wire(p), "models", "no-such-model")
        assert rc == 1 and "not_found" in err, (p, rc, err)
    # http-binary is HTTP: health and models as with JSON
    rc, out, err = lnctl("--protocol", "http-binary", "health")
    assert rc == 0 and b"ready  yes" in out, (rc, out, err)


def test_bench_every_protocol():
    for p in PROTOCOLS:
        depth = ["--pipeline", "4"] if p.startswith("binary") else []
        rc, out, err = lnctl(*wire(p), "bench", "--duration", "1.5", "--concurrency", "4",
                             "--warmup", "0.3", "--json", "--quiet", "--seed", str(SEED), *depth)
        assert rc == 0, (p, rc, out, err)
        d = json.loads(out)
        for k in BENCH_FIELDS:
            assert k in d, (p, k, d)
        assert d["protocol"] == p and d["pipeline"] == (4 if depth else 1), d
        assert d["requests"] > 0 and d["ok"] == d["requests"], d
        assert d["checked"] == d["requests"] and d["wrong"] == 0 and d["errors_total"] == 0, d
        assert d["response_bytes"] > 4 * 768, d
        lat = d["latency_us"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] * 1.01, (p, lat)
        # one thread: its CPU time over the window is a share of one core
        assert 0 < d["client_cpu"] <= 1.05, (p, d["client_cpu"])


def test_bench_binary_open_loop_rows():
    rc, out, err = lnctl(*wire("binary-unix"), "bench", "--rate", "400", "--requests", "200",
                         "--rows", "4", "--n", "100", "--model", "rmsnorm", "--concurrency", "2",
                         "--pipeline", "8", "--warmup", "0", "--check-every", "3", "--json",
                         "--quiet")
    assert rc == 0, (rc, out, err)
    d = json.loads(out)
    assert d["requests"] == 200 and d["ok"] == 200 and d["errors_total"] == 0, d
    assert d["checked"] == 66, d  # every third response
    assert abs(d["rows_s"] - d["req_s"] * 4) <= 1, d


def test_bad_arguments():
    cases = [
        (["bench", "--protocol", "carrier-pigeon"], "expected http-json, http-binary"),
        (["--protocol", "binary-tcp", "bench"], "needs --addr HOST:PORT"),
        (["--protocol", "binary-unix", "infer", "layernorm"], "needs --addr PATH"),
        (["--protocol", "binary-tcp", "--addr", "127.0.0.1", "health"], "expects HOST:PORT"),
        (["--protocol", "binary-tcp", "--addr", "h:99999", "health"], "expects HOST:PORT"),
        (["--addr", "127.0.0.1:1", "health"], "--addr is for binary-tcp and binary-unix"),
        (["bench", "--pipeline", "4"], "pipelining is for binary-tcp and binary-unix"),
        (["bench", "--protocol", "http-binary", "--pipeline", "2"], "pipelining is for"),
        (["bench", "--protocol", "binary-tcp", "--addr", "h:1", "--pipeline", "0"],
         "--pipeline 0: expected 1..4096"),
        (["bench", "--protocol", "binary-tcp", "--addr", "h:1", "--pipeline", "5000"],
         "--pipeline 5000: expected 1..4096"),
        (["bench", "--protocol"], "--protocol needs a value"),
        (["--protocol", "binary-tcp", "--addr", "h:1", "geometry", "layernorm"],
         "geometry is served over HTTP only"),
        (["--protocol", "binary-unix", "--addr", "/x", "models"], "name the models"),
        (["models", "layernorm"], "takes no names"),
    ]
    for args, msg in cases:
        rc, out, err = lnctl(*args, stdin=b"[1,2]\n")
        assert rc == 2 and msg in err, (args, rc, err)


def test_binary_unreachable():
    rc, out, err = lnctl("--protocol", "binary-unix", "--addr", "/nonexistent/ln.sock", "health")
    assert rc == 1 and "connect" in err, (rc, err)
    rc, out, err = lnctl("--protocol", "binary-tcp", "--addr", "127.0.0.1:1", "--timeout", "2",
                         "bench", "--requests", "5", "--concurrency", "1", "--warmup", "0",
                         "--json", "--quiet")
    assert rc == 1, (rc, out, err)
    d = json.loads(out)
    assert d["errors"]["connect"] > 0 and d["ok"] == 0, d


def frame_server(answer):
    """A fake binary-protocol server on loopback: answer(header, body) returns the bytes
    to send back for each request frame. Returns (server socket, port)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)

    def serve(c):
        buf = b""
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                while len(buf) >= 24:
                    blen = struct.unpack_from("<I", buf, 8)[0]
                    if len(buf) < 24 + blen:
                        break
                    c.sendall(answer(buf[:24], buf[24:24 + blen]))
                    buf = buf[24 + blen:]
        except OSError:
            pass
        finally:
            c.close()

    def accept():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return ls, ls.getsockname()[1]


def zeros_answer(hdr, body, id_delta=0):
    """An OK INFER_RESP with every value 0 (frame.md 4.2), under the request's id + id_delta."""
    rid = struct.unpack_from("<Q", hdr, 16)[0] + id_delta
    rows, cols = struct.unpack_from("<II", body, 0)
    mask = body[13]
    nvals = sum(n for bit, n in ((1, rows * cols), (2, rows), (4, rows), (8, rows)) if mask & bit)
    resp = struct.pack("<HHIIIBBH", 0, 0, rows, cols, 1, 1, mask, 0) + b"\0" * (4 * nvals)
    return struct.pack("<IBBHIIQ", 0x42534E4C, 1, 0x83, 0, len(resp), 0, rid) + resp


def test_bench_binary_catches_wrong():
    for answer, what in ((zeros_answer, "wrong"),
                         (lambda h, b: zeros_answer(h, b, id_delta=1 << 40), "protocol")):
        ls, port = frame_server(answer)
        try:
            p = subprocess.run([ARGS.lnctl, "--protocol", "binary-tcp", "--addr",
                                f"127.0.0.1:{port}", "--timeout", "5", "bench", "--requests", "20",
                                "--concurrency", "2", "--pipeline", "3", "--warmup", "0", "--n",
                                "16", "--json", "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            assert p.returncode == 1, (what, p.returncode, p.stdout, p.stderr)
            d = json.loads(p.stdout)
            assert d["ok"] == 0 and d["errors"][what] > 0, (what, d)
            if what == "wrong":
                assert d["wrong"] == 20, d
        finally:
            ls.close()


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
    global BIN_ADDR, SOCK
    tmpdir = tempfile.mkdtemp(prefix="test_lnctl.")
    SOCK = os.path.join(tmpdir, "ln.sock")
    proc = subprocess.Popen([ARGS.binary, "--address", "127.0.0.1", "--port", "0",
                             "--binary-port", "0", "--unix-socket", SOCK],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines = [proc.stdout.readline() for _ in range(3)]
    if "listening on" not in lines[0] or not all("binary listening" in l for l in lines[1:]):
        proc.kill()
        sys.exit("server did not start: " + "".join(lines))
    URL = "http://127.0.0.1:" + lines[0].strip().rsplit(":", 1)[1]
    BIN_ADDR = "127.0.0.1:" + lines[1].strip().rsplit(":", 1)[1]
    assert lines[2].strip().endswith("unix:" + SOCK), lines
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
        shutil.rmtree(tmpdir, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
