#!/usr/bin/env python3
"""Integration tests of the binary protocol (proto/frame.md) served over
io_uring: start the real lnserve with --binary-port 0 and a Unix socket and
speak frames with struct (standard library only).

Every result is checked against a float64 reference computed here from the
float32 values sent. Covers: ping and metadata, pipelining (hundreds of
requests in one write), many concurrent connections, large requests split
across workers, every class of malformed frame (answered under its id with
the connection kept, or an ERROR frame and a close for a bad header),
CLOSE and half-close, BUSY under a tiny queue, clients that vanish with work
in flight, the plain-recv fallback (LNSERVE_URING_PLAIN=1), API keys, and a
SIGTERM drain that answers every request. The server must exit 0 with no
sanitizer report. Prints 'N passed, N failed' last.

    python3 tests/integration/test_binary.py --binary build/release/lnserve
"""
import argparse
import array
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lnserve_proc import LnserveProcess  # noqa: E402  (tests/lnserve_proc.py)

BINARY = None
SEED = int(os.environ.get("LNSERVE_TEST_SEED", str(int(time.time()) % 100000)))
TOL = 2.0 ** -20  # as tests/integration/test_server.py

MAGIC = b"LNSB"
HDR = struct.Struct("<4sBBHIIQ")  # magic, version, opcode, flags, body_len, reserved, id
PING, METADATA, INFER = 0x01, 0x02, 0x03
PONG, METADATA_RESP, INFER_RESP, ERROR = 0x81, 0x82, 0x83, 0xFF
FLAG_CLOSE = 1
FP32, FP16, BF16, FP64 = 1, 2, 3, 4
OUT, MEAN, RSTD, RADIUS = 1, 2, 4, 8
ALL = 15
ST = {0: "ok", 1: "bad_request", 2: "not_found", 3: "method_not_allowed",
      4: "payload_too_large", 5: "busy", 6: "shutting_down", 7: "out_of_memory",
      8: "internal", 9: "not_implemented"}

GAIN8 = [0.5, 1.0, 1.5, 2.0, -1.0, 0.25, 3.0, 1.0]
BIAS8 = [0.0, 0.1, -0.2, 0.3, 1.0, -1.0, 0.5, 0.0]


def frame(op, rid, body=b"", flags=0, magic=MAGIC, version=1, reserved=0, body_len=None):
    n = len(body) if body_len is None else body_len
    return HDR.pack(magic, version, op, flags, n, reserved, rid) + body


def infer_frame(rid, rows, model="layernorm", mask=ALL, flags=0, dtype=FP32):
    B, N = len(rows), len(rows[0])
    payload = array.array("f", [v for r in rows for v in r]).tobytes()
    name = model.encode()
    body = struct.pack("<IIIBBH", B, N, len(payload), dtype, mask, len(name)) + name + payload
    return frame(INFER, rid, body, flags)


def infer_body_raw(rows, cols, payload_len, dtype, mask, name, payload):
    return struct.pack("<IIIBBH", rows, cols, payload_len, dtype, mask, len(name)) + name + payload


def rand_rows(rng, B, N, mean=0.0, std=1.0):
    return [array.array("f", [rng.gauss(mean, std) for _ in range(N)]).tolist() for _ in range(B)]


class Conn:
    def __init__(self, addr, timeout=60):
        if isinstance(addr, str):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.s.settimeout(timeout)
        self.s.connect(addr)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            d = self.s.recv(1 << 20)
            if not d:
                return False
            self.buf += d
        return True

    def recv(self):
        """One response: (opcode, flags, id, status, msg, rest) or None at EOF."""
        if not self._fill(HDR.size):
            assert not self.buf, f"EOF inside a header ({len(self.buf)} bytes)"
            return None
        magic, ver, op, flags, n, res, rid = HDR.unpack_from(self.buf)
        assert magic == MAGIC and ver == 1 and res == 0, self.buf[:24]
        assert op & 0x80, f"opcode {op:#x} is not a response"
        assert self._fill(HDR.size + n), "EOF inside a body"
        body, self.buf = self.buf[HDR.size:HDR.size + n], self.buf[HDR.size + n:]
        st, ml = struct.unpack_from("<HH", body)
        msg = body[4:4 + ml].decode()
        assert st == 0 or ml > 0, "an error without a message"
        return op, flags, rid, ST.get(st, st), msg, body[4 + ml:]

    def eof(self, timeout=10):
        """True when the server closes (after any buffered frames)."""
        self.s.settimeout(timeout)
        try:
            return not self.buf and not self.s.recv(1)
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.s.close()


def decode_infer(rest, mask):
    B, N, G, dt, m, _ = struct.unpack_from("<IIIBBH", rest)
    assert dt == FP32 and m == mask, (dt, m)
    off, out = 16, {}
    for bit, name, count in ((OUT, "output", B * N), (MEAN, "mean", B * G),
                             (RSTD, "rstd", B * G), (RADIUS, "radius", B)):
        if mask & bit:
            out[name] = array.array("f", rest[off:off + 4 * count]).tolist()
            off += 4 * count
    assert off == len(rest), (off, len(rest))
    return B, N, G, out


def ref_row(x, groups=1, eps=1e-5, gain=None, bias=None):
    n = len(x)
    gs = n // groups
    y, means, rstds, rho2 = [], [], [], 0.0
    for k in range(groups):
        seg = x[k * gs:(k + 1) * gs]
        m = math.fsum(seg) / gs
        v = math.fsum((t - m) ** 2 for t in seg) / gs
        r = 1.0 / math.sqrt(v + eps)
        means.append(m)
        rstds.append(r)
        rho2 += v / (v + eps)
        for i, t in enumerate(seg):
            j = k * gs + i
            y.append((gain[j] if gain else 1.0) * (t - m) * r + (bias[j] if bias else 0.0))
    return y, means, rstds, math.sqrt(rho2 / groups)


def close(a, b, tol=TOL):
    return abs(a - b) <= tol * max(1.0, abs(b))


def check_infer(resp, rows, mask=ALL, **kw):
    op, _, _, st, msg, rest = resp
    assert op == INFER_RESP and st == "ok", (op, st, msg)
    B, N, G, out = decode_infer(rest, mask)
    assert (B, N) == (len(rows), len(rows[0])), (B, N)
    for b, x in enumerate(rows):
        y, means, rstds, rho = ref_row(x, groups=G, **kw)
        if "output" in out:
            got = out["output"][b * N:(b + 1) * N]
            bad = [i for i in range(N) if not close(got[i], y[i])]
            assert not bad, f"row {b} col {bad[0]}: {got[bad[0]]} vs {y[bad[0]]}"
        for name, want in (("mean", means), ("rstd", rstds)):
            if name in out:
                for g in range(G):
                    assert close(out[name][b * G + g], want[g], 1e-5), (name, b, g)
        if "radius" in out:
            assert close(out["radius"][b], rho, 1e-5), ("radius", b)


class Server(LnserveProcess):
    def __init__(self, *args, env=None, unix=True):
        self.tmp = tempfile.mkdtemp(prefix="lnserve-bin-")
        self.sock = os.path.join(self.tmp, "ln.sock") if unix else None
        extra = ["--unix-socket", self.sock] if unix else []
        super().__init__(BINARY, "--binary-port", "0", *extra, *args, env=env,
                         binary_listeners=2 if unix else 1)
        # here port is the binary protocol's, as every test of this file uses it
        self.http_port, self.port = self.port, self.binary_port

    def tcp(self, timeout=60):
        return Conn(("127.0.0.1", self.port), timeout)

    def unix(self, timeout=60):
        return Conn(self.sock, timeout)

    def http_get(self, path):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        assert r.status == 200, (path, r.status, body)
        return body.decode()

    def scrape(self):
        """GET /metrics as {(name, frozenset(labels)): value}."""
        out = {}
        for line in self.http_get("/metrics").splitlines():
            if not line or line.startswith("#"):
                continue
            key, value = line.rsplit(" ", 1)
            name, _, labels = key.partition("{")
            out[(name, frozenset(tuple(kv.split("=", 1))
                                 for kv in labels.rstrip("}").split(",") if kv))] = float(value)
        return out

    def alive(self):
        c = self.tcp(10)
        c.send(frame(PING, 7))
        r = c.recv()
        c.close()
        return r is not None and r[0] == PONG and r[3] == "ok"

    def stop(self, sig=signal.SIGTERM, timeout=60):
        rc = super().stop(sig, timeout)
        assert not self.sanitizer_reports(), "".join(self.stderr_lines[-60:])
        return rc


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def ping_metadata(srv, rng):
    for c in (srv.tcp(), srv.unix()):
        c.send(frame(PING, 1) + frame(METADATA, 2, struct.pack("<HH", 3, 0) + b"ln8") +
               frame(METADATA, 3, struct.pack("<HH", 4, 0) + b"nope"))
        op, _, rid, st, _, rest = c.recv()
        assert (op, rid, st, rest) == (PONG, 1, "ok", b""), (op, rid, st)
        op, _, rid, st, _, rest = c.recv()
        assert (op, rid, st) == (METADATA_RESP, 2, "ok")
        kind, dtypes, _, dim, groups, max_rows, max_cols, eps = struct.unpack("<BBHIIIIf", rest)
        assert (kind, dtypes, dim, groups, max_cols) == (0, 1, 8, 1, 8), rest
        assert max_rows == 65536 and abs(eps - 1e-5) < 1e-9
        op, _, rid, st, msg, _ = c.recv()
        assert (op, rid, st) == (METADATA_RESP, 3, "not_found") and "nope" in msg, msg
        c.close()


@test
def infer_one_row(srv, rng):
    rows = rand_rows(rng, 1, 768, 3.0, 2.0)
    for c in (srv.tcp(), srv.unix()):
        c.send(infer_frame(42, rows))
        r = c.recv()
        assert r[2] == 42
        check_infer(r, rows)
        c.close()


@test
def masks_and_model(srv, rng):
    c = srv.tcp()
    rows = rand_rows(rng, 3, 8)
    for i, mask in enumerate((OUT, MEAN, RSTD, RADIUS, MEAN | RADIUS, OUT | RSTD)):
        c.send(infer_frame(i, rows, "ln8", mask))
        check_infer(c.recv(), rows, mask, gain=GAIN8, bias=BIAS8)
    rows = rand_rows(rng, 2, 16)
    c.send(infer_frame(9, rows, "lng4"))
    r = c.recv()
    check_infer(r, rows)
    assert decode_infer(r[5], ALL)[2] == 4
    c.close()


@test
def pipelined(srv, rng):
    c = srv.tcp()
    reqs = {}
    data = bytearray()
    for i in range(300):
        B, N = rng.choice([(1, 768), (2, 64), (1, 1), (4, 33), (1, 4096)])
        rows = rand_rows(rng, B, N)
        reqs[1000 + i] = rows
        data += infer_frame(1000 + i, rows)
    c.send(bytes(data))  # all 300 in one write
    for _ in range(300):
        r = c.recv()
        assert r[2] in reqs, r[2]
        check_infer(r, reqs.pop(r[2]))
    assert not reqs
    c.close()


@test
def concurrent_connections(srv, rng):
    errors = []
    seeds = [rng.random() for _ in range(32)]

    def client(k):
        try:
            r = random.Random(seeds[k])
            c = srv.unix() if k % 2 else srv.tcp()
            for burst in range(4):
                reqs = {}
                data = b""
                for j in range(8):
                    rows = rand_rows(r, r.choice([1, 2]), r.choice([8, 768]))
                    rid = (k << 32) | (burst * 8 + j)
                    reqs[rid] = rows
                    data += infer_frame(rid, rows)
                c.send(data)
                for _ in range(8):
                    resp = c.recv()
                    check_infer(resp, reqs.pop(resp[2]))
            c.close()
        except Exception as e:  # noqa: BLE001
            errors.append(f"client {k}: {e!r}")

    ts = [threading.Thread(target=client, args=(k,)) for k in range(32)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]


@test
def large_split(srv, rng):
    c = srv.tcp()
    rows = rand_rows(rng, 64, 4096)  # 256 K elements: split across the workers
    c.send(infer_frame(5, rows, mask=MEAN | RSTD | RADIUS))
    check_infer(c.recv(), rows, MEAN | RSTD | RADIUS)
    c.send(infer_frame(6, rows[:3]))
    check_infer(c.recv(), rows[:3])
    c.close()


def expect_error(c, rid, op, status, text):
    r = c.recv()
    assert r is not None, "connection closed"
    assert (r[0], r[2], r[3]) == (op, rid, status), (hex(r[0]), r[2], r[3], r[4])
    assert text in r[4], (r[4], text)
    assert all(32 <= ord(ch) < 127 for ch in r[4]), r[4]


@test
def malformed_bodies_keep_connection(srv, rng):
    c = srv.tcp()
    p8 = array.array("f", [1, 2, 3, 4, 5, 6, 7, 8]).tobytes()
    cases = [
        (infer_body_raw(1, 8, 32, 9, ALL, b"layernorm", p8), "bad_request", "dtype"),
        (infer_body_raw(1, 8, 16, FP16, ALL, b"layernorm", p8[:16]), "not_implemented", "FP16"),
        (infer_body_raw(1, 8, 64, FP64, ALL, b"layernorm", p8 * 2), "not_implemented", "FP64"),
        (infer_body_raw(1, 8, 32, FP32, 0, b"layernorm", p8), "bad_request", "mask"),
        (infer_body_raw(1, 8, 32, FP32, 0x10, b"layernorm", p8), "bad_request", "mask"),
        (infer_body_raw(1, 8, 32, FP32, ALL, b"", p8), "bad_request", "name_len"),
        (infer_body_raw(0, 8, 0, FP32, ALL, b"layernorm", b""), "bad_request", "rows"),
        (infer_body_raw(1, 0, 0, FP32, ALL, b"layernorm", b""), "bad_request", "cols"),
        (infer_body_raw(70000, 1, 280000, FP32, ALL, b"layernorm", b"\0" * 280000),
         "bad_request", "max_rows"),
        (infer_body_raw(1, 8, 28, FP32, ALL, b"layernorm", p8[:28]), "bad_request",
         "payload_len"),
        (infer_body_raw(1, 8, 32, FP32, ALL, b"layernorm", p8 + b"xx"), "bad_request", "body"),
        (infer_body_raw(1, 8, 32, FP32, ALL, b"layernorm", p8[:30]), "bad_request", "body"),
        (b"\x01\x00", "bad_request", "fixed bytes"),
        (infer_body_raw(1, 8, 32, FP32, ALL, b"nosuchmodel", p8), "not_found", "nosuchmodel"),
        (infer_body_raw(1, 4, 16, FP32, ALL, b"ln8", p8[:16]), "bad_request", "dim 8"),
        (infer_body_raw(1, 6, 24, FP32, ALL, b"lngany", p8[:24]), "bad_request", "groups"),
        (infer_body_raw(2, 4, 32, FP32, ALL, b"layernorm",
                        p8[:20] + struct.pack("<f", float("nan")) + p8[24:]),
         "bad_request", "row 1 column 1"),
        (infer_body_raw(1, 8, 32, FP32, ALL, b"layernorm",
                        struct.pack("<f", float("inf")) + p8[4:]), "bad_request", "row 0 column 0"),
    ]
    for i, (body, status, text) in enumerate(cases):
        c.send(frame(INFER, 100 + i, body))
        expect_error(c, 100 + i, INFER_RESP, status, text)
    # Opcodes and flags: answered, connection kept.
    c.send(frame(0x10, 200))
    expect_error(c, 200, ERROR, "bad_request", "opcode")
    c.send(frame(PONG, 201))
    expect_error(c, 201, ERROR, "bad_request", "opcode")
    c.send(frame(PING, 202, flags=0x8000))
    expect_error(c, 202, PONG, "bad_request", "flags")
    c.send(frame(PING, 203, b"xyz"))
    expect_error(c, 203, PONG, "bad_request", "body")
    c.send(frame(METADATA, 204, struct.pack("<HH", 0, 0)))
    expect_error(c, 204, METADATA_RESP, "bad_request", "name_len")
    c.send(frame(METADATA, 205, struct.pack("<HH", 3, 1) + b"ln8"))
    expect_error(c, 205, METADATA_RESP, "bad_request", "reserved")
    # Still good after all that.
    rows = rand_rows(rng, 1, 8)
    c.send(infer_frame(300, rows))
    check_infer(c.recv(), rows)
    c.close()


@test
def bad_headers_close(srv, rng):
    cases = [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0, "bad_request", "magic"),
        (frame(PING, 11, version=2), 0, "bad_request", "version"),
        (frame(PING, 12, reserved=5), 12, "bad_request", "reserved"),
        (frame(INFER, 13, body_len=0xFFFFFFF0), 13, "payload_too_large", "limit"),
        (b"LNX", 0, "bad_request", "magic"),  # wrong at the 3rd byte, before 24 arrive
    ]
    for data, rid, status, text in cases:
        c = srv.tcp()
        c.send(frame(PING, 1) + data + frame(PING, 2))
        r = c.recv()
        assert (r[0], r[2]) == (PONG, 1), r
        r = c.recv()
        assert r is not None, "closed without an ERROR frame"
        assert (r[0], r[2], r[3]) == (ERROR, rid, status), (hex(r[0]), r[2], r[3], r[4])
        assert r[1] & FLAG_CLOSE and text in r[4], (r[1], r[4])
        assert c.eof(), "connection not closed after a bad header"
        c.close()
    assert srv.alive()


@test
def truncated_at_every_byte(srv, rng):
    rows = rand_rows(rng, 1, 8)
    f = infer_frame(77, rows)
    for cut in range(0, len(f)):
        c = srv.unix()
        c.send(f[:cut])
        c.close()  # the server must neither answer nor crash
    # The same frame dribbled one byte at a time is answered.
    c = srv.tcp()
    for i in range(len(f)):
        c.send(f[i:i + 1])
        time.sleep(0.001)
    check_infer(c.recv(), rows)
    c.close()
    assert srv.alive()


@test
def close_flag_and_half_close(srv, rng):
    rows = rand_rows(rng, 1, 768)
    c = srv.tcp()
    c.send(infer_frame(1, rows) + infer_frame(2, rows) + infer_frame(3, rows, flags=FLAG_CLOSE) +
           infer_frame(4, rows))  # after CLOSE: not read
    got = sorted(c.recv()[2] for _ in range(3))
    assert got == [1, 2, 3], got
    assert c.eof()
    c.close()
    c = srv.unix()
    c.send(b"".join(infer_frame(10 + i, rows) for i in range(20)))
    c.s.shutdown(socket.SHUT_WR)
    ids = set()
    for _ in range(20):
        r = c.recv()
        check_infer(r, rows)
        ids.add(r[2])
    assert ids == set(range(10, 30)) and c.eof()
    c.close()


@test
def vanishing_clients(srv, rng):
    rows = rand_rows(rng, 16, 4096)
    # Small answers: a client that writes without reading must not fill
    # both directions' socket buffers (that is its own deadlock: the server
    # stops reading while 1 MiB of answers wait, frame.md 7).
    big = infer_frame(1, rows, mask=RADIUS)
    for k in range(24):
        c = srv.tcp() if k % 2 else srv.unix()
        c.send(big * 6)
        if k % 3 == 0:  # a reset rather than a FIN
            c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    # Some that read one answer, then leave with the rest in flight.
    full = infer_frame(1, rows)
    for k in range(8):
        c = srv.tcp()
        c.send(full * 3)
        assert c.recv() is not None
        c.close()
    assert srv.alive()
    c = srv.tcp()
    c.send(infer_frame(2, rows[:2]))
    check_infer(c.recv(), rows[:2])
    c.close()


def busy_test(binary_env=None):
    # The scalar reference kernel makes the worker slower than the loop's
    # decoding in every build variant (under TSan the vector kernels are
    # not), so a pipelined burst overflows a queue of 2 for sure.
    env = dict(binary_env or {}, LNSERVE_KERNEL="ref")
    srv = Server("--workers", "1", "--queue-capacity", "2", env=env, unix=False)
    try:
        rng = random.Random(SEED)
        rows = rand_rows(rng, 16, 2048)
        checked = False
        statuses = {}
        c = srv.tcp()
        # Whether a burst overflows depends on the loop outrunning the
        # worker, which sanitizers can upset: up to 5 bursts, each fully
        # answered exactly once, until one sees a busy.
        for burst in range(5):
            base = burst * 1000
            c.send(b"".join(infer_frame(base + i, rows, mask=RADIUS) for i in range(200)))
            seen = set()
            for _ in range(200):
                r = c.recv()
                assert r[2] not in seen, f"id {r[2]} answered twice"
                seen.add(r[2])
                statuses[r[3]] = statuses.get(r[3], 0) + 1
                if r[3] == "ok" and not checked:
                    check_infer(r, rows, RADIUS)
                    checked = True
                elif r[3] != "ok":
                    assert r[3] == "busy" and "retry" in r[4], r
            assert seen == set(range(base, base + 200)), statuses
            if statuses.get("busy", 0) > 0:
                break
        assert statuses.get("busy", 0) > 0, statuses
        c.close()
    finally:
        assert srv.stop() == 0


@test
def busy_queue(srv, rng):
    busy_test()


@test
def plain_recv_fallback(srv, rng):
    env = {"LNSERVE_URING_PLAIN": "1"}
    s2 = Server("--workers", "2", env=env)
    try:
        pipelined(s2, rng)
        assert any("using plain recv" in l for l in s2.stderr_lines), s2.stderr_lines
        concurrent_connections(s2, rng)
        bad_headers_close(s2, rng)
        close_flag_and_half_close(s2, rng)
        vanishing_clients(s2, rng)
    finally:
        assert s2.stop() == 0
    busy_test(env)


@test
def api_keys_refuse_tcp(srv, rng):
    p = subprocess.run([BINARY, "--port", "0", "--binary-port", "0"], capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, LNSERVE_API_KEYS="k1"))
    assert p.returncode != 0 and "binary_port" in p.stderr, (p.returncode, p.stderr)


def req_key(model, endpoint, code, protocol="binary"):
    return ("lnserve_requests_total",
            frozenset({("model", f'"{model}"'), ("endpoint", f'"{endpoint}"'),
                       ("code", f'"{code}"'), ("protocol", f'"{protocol}"')}))


def moved(before, after, key):
    return after.get(key, 0) - before.get(key, 0)


def triton_stats(srv, model):
    import json
    return json.loads(srv.http_get(f"/v2/models/{model}/stats"))["model_stats"][0]


@test
def counted_in_metrics_and_stats(srv, rng):
    """Binary requests show in /metrics (protocol="binary", by model and
    the HTTP code of their status) and in Triton's /stats, like HTTP ones."""
    before = srv.scrape()
    st0 = triton_stats(srv, "ln8")
    c = srv.tcp()
    rows = rand_rows(rng, 3, 8)
    for i in range(4):
        c.send(infer_frame(i, rows, "ln8"))
        check_infer(c.recv(), rows, gain=GAIN8, bias=BIAS8)
    p8 = array.array("f", [1, 2, 3, 4, 5, 6, 7, 8]).tobytes()
    c.send(frame(INFER, 10, infer_body_raw(1, 4, 16, FP32, ALL, b"ln8", p8[:16])))
    expect_error(c, 10, INFER_RESP, "bad_request", "dim 8")
    c.send(frame(INFER, 11, infer_body_raw(1, 8, 32, FP32, ALL, b"nosuchmodel", p8)))
    expect_error(c, 11, INFER_RESP, "not_found", "nosuchmodel")
    c.send(frame(METADATA, 12, struct.pack("<HH", 3, 0) + b"ln8") + frame(PING, 13))
    assert c.recv()[2] == 12 and c.recv()[2] == 13
    c.close()
    # Counted when the loop queues the response: poll briefly for it.
    for _ in range(100):
        after = srv.scrape()
        if moved(before, after, req_key("ln8", "infer", 200)) >= 4:
            break
        time.sleep(0.02)
    assert moved(before, after, req_key("ln8", "infer", 200)) == 4
    assert moved(before, after, req_key("ln8", "infer", 400)) == 1
    assert moved(before, after, req_key("", "infer", 404)) == 1
    assert moved(before, after, req_key("ln8", "model_metadata", 200)) == 1
    assert moved(before, after, req_key("", "ping", 200)) >= 1
    assert moved(before, after, req_key("ln8", "infer", 200, "http")) == 0
    ok = ("nv_inference_request_success", frozenset({("model", '"ln8"'), ("version", '"1"')}))
    assert moved(before, after, ok) == 4
    rows_key = ("lnserve_rows_total", frozenset({("model", '"ln8"'), ("version", '"1"')}))
    assert moved(before, after, rows_key) == 12
    for _ in range(100):  # a worker records its batch after handing back the response
        st1 = triton_stats(srv, "ln8")
        if st1["execution_count"] - st0["execution_count"] >= 4:
            break
        time.sleep(0.02)
    inf0, inf1 = st0["inference_stats"], st1["inference_stats"]
    assert inf1["success"]["count"] - inf0["success"]["count"] == 4, (st0, st1)
    assert inf1["fail"]["count"] - inf0["fail"]["count"] == 1, (st0, st1)
    assert inf1["compute_infer"]["ns"] > inf0["compute_infer"]["ns"]
    assert st1["inference_count"] - st0["inference_count"] == 12
    assert st1["execution_count"] - st0["execution_count"] >= 4  # one per worker batch


@test
def sigterm_drains(srv, rng):
    s2 = Server("--workers", "1")
    rows = rand_rows(rng, 32, 4096)
    c = s2.tcp()
    u = s2.unix()
    idle = s2.tcp()
    # A round trip on each first: the server has accepted these connections
    # (a connection still in the listen backlog when the drain starts is
    # refused, as on HTTP), so what they send next must be answered.
    for conn, pid in ((c, 1000), (u, 1001), (idle, 1002)):
        conn.send(frame(PING, pid))
        assert conn.recv()[2] == pid
    c.send(b"".join(infer_frame(i, rows, mask=RADIUS) for i in range(40)))
    # Behind c's 20 MB, u's frame may still be unread in its socket when
    # SIGTERM comes (seen under TSan on a loaded machine): it must still be
    # answered, computed or "shutting_down", never cut off.
    u.send(infer_frame(99, rows[:1]))
    time.sleep(0.05)
    s2.proc.send_signal(signal.SIGTERM)
    seen = {}
    while True:
        r = c.recv()
        if r is None:
            break
        assert r[2] not in seen, f"id {r[2]} answered twice"
        seen[r[2]] = r[3]
        if r[3] == "ok":
            if list(seen.values()).count("ok") <= 2:
                check_infer(r, rows, RADIUS)
        else:
            assert r[3] == "shutting_down", r
    assert set(seen) == set(range(40)), sorted(set(range(40)) - set(seen))
    assert list(seen.values()).count("ok") > 0, seen
    ru = u.recv()
    assert ru is not None and ru[2] == 99, "u's frame was not answered"
    if ru[3] == "ok":
        check_infer(ru, rows[:1])
    else:
        assert ru[3] == "shutting_down", ru[:5]
    assert idle.eof(), "idle connection not closed by the drain"
    rc = s2.proc.wait(timeout=60)
    assert rc == 0, rc
    s2.stop()
    try:
        s2.tcp(2)
        raise AssertionError("still accepting after SIGTERM")
    except OSError:
        pass
    assert not os.path.exists(s2.sock), "unix socket left behind"


@test
def sigterm_answers_what_was_sent(srv, rng):
    """A frame sent just before SIGTERM on an accepted, idle connection is
    answered (ok or shutting_down), never cut off: the drain must not close
    a connection whose bytes are still unread in its socket or waiting in
    the ring. Racy by nature, so several rounds of 8 connections."""
    rows = rand_rows(rng, 1, 4096)
    big = rand_rows(rng, 32, 4096)
    outcomes = {"ok": 0, "shutting_down": 0}
    for _ in range(4):
        s2 = Server("--workers", "1")
        busy = s2.tcp()
        conns = [s2.tcp() for _ in range(8)]
        for i, conn in enumerate(conns + [busy]):
            conn.send(frame(PING, 500 + i))
            assert conn.recv()[2] == 500 + i
        # 20 MB on one connection keeps the loop busy, so the small frames
        # sent next may still be unread (or in the ring) when SIGTERM lands.
        # The burst is wholly sent first: bytes a client is still writing
        # when the drain closes an idle connection are the client's race,
        # as on HTTP keep-alive, and not what this test is about.
        burst = b"".join(infer_frame(100 + i, big, mask=RADIUS) for i in range(40))
        sender = threading.Thread(target=busy.s.sendall, args=(burst,))
        sender.start()
        sender.join(60)
        for i, conn in enumerate(conns):
            conn.send(infer_frame(i, rows))
        s2.proc.send_signal(signal.SIGTERM)
        seen = set()
        while True:
            r = busy.recv()
            if r is None:
                break
            assert r[2] not in seen and r[3] in outcomes, r[:5]
            seen.add(r[2])
        assert seen == set(range(100, 140)), sorted(set(range(100, 140)) - seen)
        for i, conn in enumerate(conns):
            r = conn.recv()
            assert r is not None, f"connection {i}: closed without an answer"
            assert r[2] == i and r[3] in outcomes, r[:5]
            outcomes[r[3]] += 1
            assert conn.eof(), f"connection {i} not closed by the drain"
            conn.close()
        assert s2.proc.wait(timeout=60) == 0
        s2.stop()
    print(f"    outcomes: {outcomes}")


def main():
    global BINARY
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("-k", default="", help="run only tests whose name contains this")
    args = ap.parse_args()
    BINARY = os.path.abspath(args.binary)
    print(f"binary protocol: seed {SEED} (LNSERVE_TEST_SEED to repeat)")
    rng = random.Random(SEED)
    models = [
        {"name": "ln8", "kind": "layernorm", "dim": 8, "gain": GAIN8, "bias": BIAS8},
        {"name": "lng4", "kind": "layernorm", "dim": 16, "groups": 4},
        {"name": "lngany", "kind": "layernorm", "dim": 0, "groups": 4},
    ]
    margs = []
    for m in models:
        margs += ["--model", __import__("json").dumps(m)]
    passed = failed = 0
    srv = Server("--workers", "2", *margs)
    try:
        for fn in TESTS:
            if args.k and args.k not in fn.__name__:
                continue
            t0 = time.time()
            try:
                fn(srv, rng)
                passed += 1
                print(f"[ OK ] {fn.__name__} ({time.time() - t0:.2f} s)", flush=True)
            except Exception:  # noqa: BLE001 -- every failure is reported
                failed += 1
                print(f"[FAIL] {fn.__name__}", flush=True)
                traceback.print_exc()
    finally:
        try:
            rc = srv.stop()
        except AssertionError as e:
            print(f"[FAIL] sanitizer report:\n{e}")
            rc, failed = -1, failed + 1
    if rc != 0:
        failed += 1
        print(f"[FAIL] server exit status {rc}")
        print("".join(srv.stderr_lines[-40:]))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
