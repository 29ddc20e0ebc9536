#!/usr/bin/env python3
"""Integration tests: start the real lnserve binary on a free loopback port
and talk HTTP to it. Standard library only, so `make test` needs nothing
beyond python3.

Every response is checked against a float64 reference computed here from
the float32 values the server received. Prints 'N passed, N failed' last.

    python3 tests/integration/test_server.py --binary build/release/lnserve
"""
import argparse
import http.client
import json
import math
import os
import random
import signal
import socket
import ssl
import tempfile
import struct
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lnserve_proc import LnserveProcess  # noqa: E402  (tests/lnserve_proc.py)

BINARY = None
SEED = int(os.environ.get("LNSERVE_TEST_SEED", str(int(time.time()) % 100000)))

# A float32 kernel against the float64 reference of the same float32
# inputs: errors are a few float32 ulps of max(1, |y|); 2^-20 (16 ulp)
# leaves headroom for long rows without hiding a wrong formula.
TOL = 2.0 ** -20

GAIN8 = [0.5, 1.0, 1.5, 2.0, -1.0, 0.25, 3.0, 1.0]
BIAS8 = [0.0, 0.1, -0.2, 0.3, 1.0, -1.0, 0.5, 0.0]


def f32(v):
    return struct.unpack("f", struct.pack("f", v))[0]


def ref_row(x, kind="layernorm", groups=1, eps=1e-5, gain=None, bias=None):
    """float64 LayerNorm / RMSNorm / LN-G of one row of float32 values."""
    n = len(x)
    gs = n // groups
    y, means, rstds, rho2 = [], [], [], 0.0
    for k in range(groups):
        seg = x[k * gs:(k + 1) * gs]
        if kind == "layernorm":
            m = math.fsum(seg) / gs
            v = math.fsum((t - m) ** 2 for t in seg) / gs
        else:
            m = 0.0
            v = math.fsum(t * t for t in seg) / gs
        r = 1.0 / math.sqrt(v + eps) if v + eps > 0 else 0.0
        means.append(m)
        rstds.append(r)
        rho2 += v / (v + eps) if v + eps > 0 else 0.0
        for i, t in enumerate(seg):
            j = k * gs + i
            g = gain[j] if gain else 1.0
            b = bias[j] if bias else 0.0
            y.append(g * (t - m) * r + b)
    return y, means, rstds, math.sqrt(rho2 / groups)


def close(a, b, tol=TOL):
    return abs(a - b) <= tol * max(1.0, abs(b))


def check_infer(doc, rows, model_name="layernorm", **kw):
    """Checks a decoded infer response against the reference."""
    assert doc["model_name"] == model_name, doc.get("model_name")
    outs = {o["name"]: o for o in doc["outputs"]}
    B, N = len(rows), len(rows[0])
    G = kw.get("groups", 1)
    for name in ("output", "mean", "rstd", "radius"):
        assert name in outs, f"missing output {name}"
        assert outs[name]["datatype"] == "FP32"
    assert outs["output"]["shape"] == [B, N], outs["output"]["shape"]
    assert outs["mean"]["shape"] == [B, G]
    assert outs["rstd"]["shape"] == [B, G]
    assert outs["radius"]["shape"] == [B]
    y = outs["output"]["data"]
    assert len(y) == B * N
    for r, row in enumerate(rows):
        ry, rm, rr, rho = ref_row(row, **kw)
        for i in range(N):
            if not close(y[r * N + i], ry[i]):
                raise AssertionError(f"row {r} col {i}: got {y[r * N + i]!r} want {ry[i]!r}")
        for k in range(G):
            assert close(outs["mean"]["data"][r * G + k], rm[k]), (r, k, "mean")
            assert close(outs["rstd"]["data"][r * G + k], rr[k]), (r, k, "rstd")
        assert close(outs["radius"]["data"][r], rho), (r, "radius")


def rand_rows(rng, B, N, mean=0.0, std=1.0):
    return [[f32(rng.gauss(mean, std)) for _ in range(N)] for _ in range(B)]


def infer_body(rows, **extra):
    doc = {"inputs": [{"name": "input", "datatype": "FP32",
                       "shape": [len(rows), len(rows[0])],
                       "data": [v for row in rows for v in row]}]}
    doc.update(extra)
    return json.dumps(doc)


class Server(LnserveProcess):
    def __init__(self, *args, env=None):
        super().__init__(BINARY, *args, env=env)
        self.tls = None  # CA file to trust when the server speaks HTTPS

    def conn(self, timeout=60):
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls)
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        c.request(method, path, body=body, headers=headers or {})
        resp = c.getresponse()
        data = resp.read()
        if conn is None:
            c.close()
        return resp.status, dict(resp.getheaders()), data


# ---------------------------------------------------------------------------

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def endpoints(srv, rng):
    for path in ("/v2/health/live", "/v2/health/ready"):
        st, _, body = srv.request("GET", path)
        assert st == 200, (path, st)
        json.loads(body)
    for path in ("/v2", "/v2/"):
        st, _, body = srv.request("GET", path)
        assert st == 200, (path, st)
        assert json.loads(body)["name"] == "lnserve"
    for path in ("/v2/models/layernorm", "/v2/models/layernorm/versions/1"):
        st, _, body = srv.request("GET", path)
        assert st == 200, (path, st, body)
        meta = json.loads(body)
        assert meta["name"] == "layernorm"
        assert meta["inputs"][0]["name"] == "input"
        assert {o["name"] for o in meta["outputs"]} >= {"output", "mean", "rstd", "radius"}
    st, _, body = srv.request("GET", "/v2/models/ln8")
    meta = json.loads(body)
    assert meta["inputs"][0]["shape"] == [-1, 8], meta
    # X-Request-Id: echoed when the client sends one, made up otherwise
    st, hdrs, _ = srv.request("GET", "/v2/health/live", headers={"X-Request-Id": "abc-123"})
    assert hdrs.get("X-Request-Id") == "abc-123", hdrs
    ids = {srv.request("GET", "/v2/nope")[1].get("X-Request-Id") for _ in range(3)}
    assert len(ids) == 3 and None not in ids, ids
    for path in ("/v2/models/rmsnorm/ready", "/v2/models/ln8/versions/1/ready"):
        st, _, body = srv.request("GET", path)
        assert st == 200 and json.loads(body)["ready"] is True, (path, st, body)


def scrape(srv):
    """GET /metrics parsed into {(name, frozenset(labels)): value}."""
    st, hdrs, body = srv.request("GET", "/metrics")
    assert st == 200 and hdrs["Content-Type"].startswith("text/plain"), (st, hdrs)
    out = {}
    for line in body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        name, _, labels = key.partition("{")
        pairs = frozenset(tuple(kv.split("=", 1)) for kv in labels.rstrip("}").split(",") if kv)
        out[(name, pairs)] = float(value)
    return out


@test
def metrics_and_config(srv, rng):
    before = scrape(srv)
    rows = rand_rows(rng, 5, 8)
    for _ in range(3):
        st, _, _ = srv.request("POST", "/v2/models/ln8/infer", infer_body(rows))
        assert st == 200
    srv.request("GET", "/v2/models/ln8/nope")
    after = scrape(srv)
    ok = ("lnserve_requests_total",
          frozenset({("model", '"ln8"'), ("endpoint", '"infer"'), ("code", '"200"'),
                     ("protocol", '"http"')}))
    assert after[ok] - before.get(ok, 0) == 3, (after.get(ok), before.get(ok))
    rows_key = ("lnserve_rows_total", frozenset({("model", '"ln8"'), ("version", '"1"')}))
    assert after[rows_key] - before.get(rows_key, 0) == 15
    cnt = ("lnserve_request_duration_seconds_count", frozenset({("model", '"ln8"')}))
    inf = ("lnserve_request_duration_seconds_bucket",
           frozenset({("model", '"ln8"'), ("le", '"+Inf"')}))
    assert after[cnt] == after[inf] >= 3
    assert ("lnserve_queue_depth", frozenset()) in after
    assert after[("lnserve_open_connections", frozenset())] >= 1
    # Triton's statistics extension, advertised in /v2
    st, _, body = srv.request("GET", "/v2")
    assert "statistics" in json.loads(body)["extensions"], body
    st, _, body = srv.request("GET", "/v2/models/ln8/stats")
    assert st == 200, body
    ms = settled_stats(srv, "/v2/models/ln8/stats")
    assert len(ms) == 1 and ms[0]["name"] == "ln8", ms
    stats = ms[0]["inference_stats"]
    assert stats["success"]["count"] >= 3 and stats["compute_infer"]["ns"] > 0
    assert ms[0]["inference_count"] >= 15 and ms[0]["execution_count"] >= 3
    assert ms[0]["last_inference"] > 1.6e12  # ms since the epoch
    # Default max_batch_rows 1: a 5-row request is one job, one execution.
    b5 = [b for b in ms[0]["batch_stats"] if b["batch_size"] == 5]
    assert b5 and b5[0]["compute_infer"]["count"] >= 3, ms[0]["batch_stats"]
    for path in ("/v2/models/stats", "/v2/models/ln8/versions/1/stats"):
        st, _, body = srv.request("GET", path)
        assert st == 200, (path, body)
        settled_stats(srv, path)
    names = {m["name"] for m in json.loads(srv.request("GET", "/v2/models/stats")[2])["model_stats"]}
    assert {"layernorm", "rmsnorm", "ln8"} <= names, names
    st, _, body = srv.request("GET", "/v2/models/ln8/config")
    assert st == 200, body
    cfg = json.loads(body)
    assert cfg["name"] == "ln8" and cfg["max_batch_size"] > 0
    assert cfg["input"][0]["dims"] == [8]
    assert [o["name"] for o in cfg["output"]] == ["output", "mean", "rstd", "radius"]
    # Defaults: batches of one job, no waiting.
    assert cfg["dynamic_batching"] == {"max_queue_delay_microseconds": 0,
                                       "preserve_ordering": False}, cfg
    assert cfg["parameters"]["max_batch_rows"] == {"string_value": "1"}, cfg


def is_uint(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def check_triton_stats(doc):
    """Every field of Triton's statistics extension
    (docs/protocol/extension_statistics.md), with its JSON type, and the
    sums that tie them together. Returns model_stats."""
    assert set(doc) == {"model_stats"}, doc.keys()
    duration = {"count", "ns"}
    for m in doc["model_stats"]:
        assert set(m) == {"name", "version", "last_inference", "inference_count",
                          "execution_count", "inference_stats", "batch_stats"}, m.keys()
        assert isinstance(m["name"], str) and isinstance(m["version"], str), m
        int(m["version"])  # perf_analyzer parses it as a number
        for k in ("last_inference", "inference_count", "execution_count"):
            assert is_uint(m[k]), (k, m[k])
        inf = m["inference_stats"]
        assert set(inf) == {"success", "fail", "queue", "compute_input", "compute_infer",
                            "compute_output", "cache_hit", "cache_miss"}, inf.keys()
        for k, d in inf.items():
            assert set(d) == duration and is_uint(d["count"]) and is_uint(d["ns"]), (k, d)
        ok = inf["success"]["count"]
        for k in ("queue", "compute_input", "compute_infer", "compute_output"):
            assert inf[k]["count"] == ok, (k, inf[k], ok)
        assert inf["cache_hit"] == inf["cache_miss"] == {"count": 0, "ns": 0}
        rows = execs = 0
        for b in m["batch_stats"]:
            assert set(b) == {"batch_size", "compute_input", "compute_infer",
                              "compute_output"}, b.keys()
            assert is_uint(b["batch_size"]) and b["batch_size"] > 0, b
            n = b["compute_infer"]["count"]
            for k in ("compute_input", "compute_infer", "compute_output"):
                assert set(b[k]) == duration and b[k]["count"] == n and is_uint(b[k]["ns"]), b
            rows += b["batch_size"] * n
            execs += n
        m["_sums"] = (execs, rows)
        if ok:
            assert m["execution_count"] >= 1 and m["last_inference"] > 1.6e12, m
    return doc["model_stats"]


def settled_stats(srv, path):
    """check_triton_stats on srv's path, once the counters agree: a worker
    records its batch after the response it sent may already be read, so
    right after a burst the batch sums can lag by one batch. Executions are
    worker batches, and their rows are the inferences."""
    for _ in range(250):
        ms = check_triton_stats(json.loads(srv.request("GET", path)[2]))
        if all(len(m["batch_stats"]) >= 64 or
               m.pop("_sums") == (m["execution_count"], m["inference_count"]) for m in ms):
            return ms
        time.sleep(0.02)
    raise AssertionError(f"batch_stats never matched the counts: {ms}")


@test
def opt_in_diagnostics(srv, rng):
    """depth, condition, plane_residual, axes, jacobian_fro and nonlinearity
    (MATH.md section 4)."""
    rows = rand_rows(rng, 6, 8, mean=3.0, std=2.0) + [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0 + 2 ** -20]]
    names = ["output", "radius", "depth", "condition", "plane_residual", "axes"]
    body = infer_body(rows, outputs=[{"name": n} for n in names], parameters={"axes": 7})
    st, _, data = srv.request("POST", "/v2/models/ln8/infer", body)
    assert st == 200, data
    outs = {o["name"]: o for o in json.loads(data)["outputs"]}
    assert [o["name"] for o in json.loads(data)["outputs"]] == names
    assert outs["axes"]["shape"] == [7, 7] and outs["plane_residual"]["shape"] == [7, 1]
    for r, row in enumerate(rows):
        _, means, rstds, rho = ref_row(row, gain=GAIN8, bias=BIAS8)
        m = means[0]
        v = math.fsum((t - m) ** 2 for t in row) / 8
        depth_ref = 1e-5 / (v + 1e-5) / (1 + rho)
        assert abs(outs["depth"]["data"][r] - depth_ref) <= 1e-5 * depth_ref + 1e-12, (r, depth_ref)
        assert abs(outs["radius"]["data"][r] + outs["depth"]["data"][r] - 1) <= 1e-6
        cond = math.sqrt(1 + m * m / v)
        assert abs(outs["condition"]["data"][r] - cond) <= 1e-4 * cond, (r, cond)
        assert abs(outs["plane_residual"]["data"][r]) <= 1e-5, outs["plane_residual"]["data"]
        c = outs["axes"]["data"][r * 7:(r + 1) * 7]
        assert all(abs(x) <= 1 + 1e-6 for x in c), c
        # all N-1 axes: the squares sum to radius^2
        assert abs(sum(x * x for x in c) - rho * rho) <= 1e-5, (r, sum(x * x for x in c), rho)
    # axes without parameters.axes: the default K, capped by the model
    st, _, data = srv.request("POST", "/v2/models/ln8/infer",
                              infer_body(rows[:1], outputs=[{"name": "axes"}]))
    assert st == 200 and json.loads(data)["outputs"][0]["shape"] == [1, 7], data
    # jacobian_fro and nonlinearity (MATH.md 4) against numpy-free float64:
    # J = diag(g) r (P - z z^T / n), |J|_F^2 summed; |H|_F^2 closed form.
    names2 = ["jacobian_fro", "nonlinearity"]
    st, _, data = srv.request("POST", "/v2/models/ln8/infer",
                              infer_body(rows, outputs=[{"name": n} for n in names2]))
    assert st == 200, data
    outs = {o["name"]: o for o in json.loads(data)["outputs"]}
    n, eps = 8, 1e-5
    for r, row in enumerate(rows):
        m = math.fsum(row) / n
        v = math.fsum((t - m) ** 2 for t in row) / n
        rr = 1 / math.sqrt(v + eps)
        z = [(t - m) * rr for t in row]
        j2 = 0.0
        for i in range(n):
            for j in range(n):
                a = (1.0 if i == j else 0.0) - 1 / n - z[i] * z[j] / n
                j2 += (GAIN8[i] * rr * a) ** 2
        rho2 = v / (v + eps)
        T = n * (v + eps)
        h2 = n * rho2 * ((3 * n + 3) - 18 * rho2 + 9 * rho2 * rho2) / (T * T)
        got_j, got_h = outs["jacobian_fro"]["data"][r], outs["nonlinearity"]["data"][r]
        assert abs(got_j - math.sqrt(j2)) <= 1e-5 * math.sqrt(j2) + 1e-6, (r, got_j, math.sqrt(j2))
        assert abs(got_h - math.sqrt(h2)) <= 1e-5 * math.sqrt(h2) + 1e-6, (r, got_h, math.sqrt(h2))
    # LN-G (lng4: dim 16, 4 groups of 4): each group's 3 axes, group by
    # group; per group the squares sum to that group's rho_k^2.
    rows16 = rand_rows(rng, 3, 16, mean=1.0, std=2.0)
    st, _, data = srv.request("POST", "/v2/models/lng4/infer",
                              infer_body(rows16, outputs=[{"name": "axes"}]))
    assert st == 200, data
    ax = json.loads(data)["outputs"][0]
    assert ax["shape"] == [3, 12], ax["shape"]
    for r, row in enumerate(rows16):
        for k in range(4):
            grp = row[4 * k:4 * k + 4]
            m = math.fsum(grp) / 4
            v = math.fsum((t - m) ** 2 for t in grp) / 4
            c = ax["data"][r * 12 + 3 * k:r * 12 + 3 * k + 3]
            assert abs(math.fsum(x * x for x in c) - v / (v + 1e-5)) <= 1e-5, (r, k, c)
    bad = [("/v2/models/rmsnorm/infer", [{"name": "plane_residual"}], {}, "plane_residual"),
           ("/v2/models/rmsnorm/infer", [{"name": "nonlinearity"}], {}, "nonlinearity"),
           ("/v2/models/layernorm/infer", [{"name": "axes"}], {}, "axes"),
           ("/v2/models/ln8/infer", [{"name": "axes"}], {"axes": 99}, "parameters.axes"),
           ("/v2/models/ln8/infer", [{"name": "axes"}], {"axes": 0}, "parameters.axes")]
    for path, outputs, params, needle in bad:
        _bad(srv, "POST", path, infer_body(rows[:1], outputs=outputs, parameters=params), 400, needle)


@test
def geometry(srv, rng):
    """GET /v2/models/{m}/geometry against MATH.md section 3's closed forms."""
    st, _, body = srv.request("GET", "/v2/models/ln8/geometry?axes=3")
    assert st == 200, body
    doc = json.loads(body)
    assert doc["kind"] == "layernorm" and doc["groups"] == 1 and doc["group_dim"] == 8
    g = doc["per_group"][0]
    n = 8
    lam = [a * a / n for a in g["semi_axes"]]
    assert len(lam) == n - 1 and lam == sorted(lam, reverse=True)
    trace = sum(x * x for x in GAIN8) * (1 - 1 / n)
    assert abs(sum(lam) - trace) <= 1e-12 * trace, (sum(lam), trace)
    logprod = sum(math.log(x * x) for x in GAIN8) + math.log(sum(1 / (x * x) for x in GAIN8) / n)
    assert abs(sum(math.log(x) for x in lam) - logprod) <= 1e-10, (lam, logprod)
    normal = g["hyperplane_normal"]
    want = [1 / x for x in GAIN8]
    norm = math.sqrt(sum(w * w for w in want))
    assert all(abs(a - w / norm) <= 1e-12 for a, w in zip(normal, want)), normal
    axes = g["axes"]
    assert len(axes) == 3
    for i in range(3):
        for j in range(3):
            dot = sum(a * b for a, b in zip(axes[i], axes[j]))
            assert abs(dot - (i == j)) <= 1e-12, (i, j, dot)
        # an axis lies in the hyperplane: orthogonal to the normal
        assert abs(sum(a * b for a, b in zip(axes[i], normal))) <= 1e-12
        # and is an eigenvector of M = diag(g^2) - g g^T / N
        gv = sum(gi * a for gi, a in zip(GAIN8, axes[i]))
        mv = [GAIN8[t] ** 2 * axes[i][t] - GAIN8[t] * gv / n for t in range(n)]
        assert all(abs(mv[t] - lam[i] * axes[i][t]) <= 1e-12 for t in range(n))
    st, _, body = srv.request("GET", "/v2/models/lng4/geometry")
    doc = json.loads(body)
    assert len(doc["per_group"]) == 4
    for grp in doc["per_group"]:  # unit gain: a sphere of radius sqrt(4)
        assert all(abs(a - 2.0) <= 1e-12 for a in grp["semi_axes"]), grp
    st, _, body = srv.request("GET", "/v2/models/layernorm/geometry")
    assert st == 200 and "closed_form" in json.loads(body)
    st, _, body = srv.request("GET", "/v2/models/ln8/geometry?axes=8")
    assert st == 400 and "axes" in json.loads(body)["error"]
    st, _, body = srv.request("GET", "/v2/models/layernorm/geometry?axes=1")
    assert st == 400


@test
def infer_builtins_and_affine(srv, rng):
    rows = rand_rows(rng, 3, 17, mean=5.0, std=2.0)
    st, _, body = srv.request("POST", "/v2/models/layernorm/infer", infer_body(rows, id="req-7"))
    assert st == 200, body
    doc = json.loads(body)
    assert doc["id"] == "req-7"
    check_infer(doc, rows)
    st, _, body = srv.request("POST", "/v2/models/rmsnorm/versions/1/infer", infer_body(rows))
    assert st == 200, body
    check_infer(json.loads(body), rows, model_name="rmsnorm", kind="rmsnorm")
    rows8 = rand_rows(rng, 5, 8)
    st, _, body = srv.request("POST", "/v2/models/ln8/infer", infer_body(rows8))
    assert st == 200, body
    check_infer(json.loads(body), rows8, model_name="ln8", gain=GAIN8, bias=BIAS8)
    rows16 = rand_rows(rng, 4, 16, mean=-3.0)
    st, _, body = srv.request("POST", "/v2/models/lng4/infer", infer_body(rows16))
    assert st == 200, body
    check_infer(json.loads(body), rows16, model_name="lng4", groups=4)


@test
def infer_nested_and_selected_outputs(srv, rng):
    rows = rand_rows(rng, 2, 5)
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 5], "data": rows}],
           "outputs": [{"name": "radius"}, {"name": "output"}]}
    st, _, body = srv.request("POST", "/v2/models/layernorm/infer", json.dumps(doc))
    assert st == 200, body
    out = json.loads(body)["outputs"]
    assert [o["name"] for o in out] == ["radius", "output"], out


# ---- binary tensor data extension, FP16 / BF16 / FP64 ----------------------

def f16(v):
    """v rounded to FP16 (round to nearest even; struct's 'e')."""
    return struct.unpack("<e", struct.pack("<e", v))[0]


def bf16_bits(v):
    """float32(v) rounded to BF16, as its 16 bits (nearest even)."""
    u = struct.unpack("<I", struct.pack("<f", v))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def bf16(v):
    return struct.unpack("<f", struct.pack("<I", bf16_bits(v) << 16))[0]


DTYPES = {  # name: (struct code, bytes, quantize to the datatype)
    "FP32": ("f", 4, f32),
    "FP16": ("e", 2, f16),
    "BF16": (None, 2, bf16),
    "FP64": ("d", 8, lambda v: v),
}


def pack(dt, vals):
    code, _, _ = DTYPES[dt]
    if dt == "BF16":
        return struct.pack(f"<{len(vals)}H", *[bf16_bits(v) for v in vals])
    return struct.pack(f"<{len(vals)}{code}", *vals)


def unpack(dt, raw):
    code, size, _ = DTYPES[dt]
    n = len(raw) // size
    if dt == "BF16":
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0]
                for h in struct.unpack(f"<{n}H", raw)]
    return list(struct.unpack(f"<{n}{code}", raw))


def ulp_of(dt, r):
    """Spacing of datatype dt's values at r (FP16 / BF16)."""
    bits, emin = (10, -14) if dt == "FP16" else (7, -126)
    e = max(math.frexp(abs(r))[1] - 1, emin) if r else emin
    return 2.0 ** (e - bits)


def check_rounded(dt, got, ref, where, from_json=False):
    """got, an FP16 / BF16 "output" value, is the float32 result rounded once.
    The float32 result is within TOL * max(1, |ref|) of the float64 ref, so
    got == round(ref) except when ref lies that close to a midpoint between
    two values of dt: there got may be the other neighbour, one ulp away.
    A JSON number is the float32-shortest text of the dt value: it reads
    back to that value once rounded to dt (from_json). Returns 1 if exact."""
    q = DTYPES[dt][2]
    want = q(ref)
    if from_json:
        assert abs(q(got) - got) <= abs(got) * 2.0 ** -24, (where, got)
        got = q(got)
    assert q(got) == got, (where, "not a value of", dt, got)
    if got == want:
        return 1
    u = ulp_of(dt, want)
    mid = (got + want) / 2
    slack = TOL * max(1.0, abs(ref))
    assert abs(got - want) <= u * 1.0000001 and abs(ref - mid) <= slack, \
        (where, dt, "got", got, "want", want, "ref", ref)
    return 0


def binary_request(srv, path, header, blob, json_len=None, extra_headers=None):
    """POSTs header (a dict, as JSON) + blob with Inference-Header-Content-Length;
    returns status, headers, the response's JSON and its binary part."""
    hb = json.dumps(header).encode()
    hdrs = {"Inference-Header-Content-Length": str(len(hb) if json_len is None else json_len)}
    hdrs.update(extra_headers or {})
    st, rh, data = srv.request("POST", path, hb + blob, headers=hdrs)
    hl = rh.get("Inference-Header-Content-Length")
    n = int(hl) if hl is not None else len(data)
    return st, rh, json.loads(data[:n]), data[n:]


def split_outputs(doc, rest):
    """{name: (output dict, values)} from a response's JSON and binary part."""
    out, off = {}, 0
    for o in doc["outputs"]:
        size = o.get("parameters", {}).get("binary_data_size")
        if size is None:
            assert "data" in o, o
            out[o["name"]] = (o, o["data"])
        else:
            assert "data" not in o, o
            out[o["name"]] = (o, unpack(o["datatype"], rest[off:off + size]))
            off += size
    assert off == len(rest), (off, len(rest))
    return out


@test
def binary_tensor_data_dtypes(srv, rng):
    """Binary FP32 / FP16 / BF16 / FP64 inputs (struct-packed, sent with raw
    http.client), binary and JSON outputs mixed, against the float64
    reference of the float32 values the kernel saw."""
    st, _, body = srv.request("GET", "/v2")
    assert "binary_tensor_data" in json.loads(body)["extensions"]
    B, N = 4, 24
    exact = total = 0
    for dt, (_, size, q) in DTYPES.items():
        rows = [[q(rng.gauss(1.0, 3.0)) for _ in range(N)] for _ in range(B)]
        header = {"id": "b-" + dt,
                  "inputs": [{"name": "input", "datatype": dt, "shape": [B, N],
                              "parameters": {"binary_data_size": B * N * size}}],
                  "outputs": [{"name": "output", "parameters": {"binary_data": True}},
                              {"name": "mean", "parameters": {"binary_data": True}},
                              {"name": "rstd"},
                              {"name": "radius", "parameters": {"binary_data": True}}]}
        st, rh, doc, rest = binary_request(srv, "/v2/models/layernorm/infer", header,
                                           pack(dt, [v for r in rows for v in r]))
        assert st == 200, (dt, doc)
        assert rh.get("Content-Type") == "application/octet-stream", rh
        assert doc["id"] == "b-" + dt
        outs = split_outputs(doc, rest)
        o, y = outs["output"]
        assert o["datatype"] == dt and o["shape"] == [B, N], o
        for name in ("mean", "rstd", "radius"):
            assert outs[name][0]["datatype"] == "FP32", outs[name][0]
        for r, row in enumerate(rows):
            kernel_in = [f32(v) for v in row]  # FP64 is computed in float32
            ry, rm, rr, rho = ref_row(kernel_in)
            for i in range(N):
                got = y[r * N + i]
                if dt in ("FP16", "BF16"):
                    exact += check_rounded(dt, got, ry[i], (r, i))
                    total += 1
                else:
                    assert f32(got) == got, (dt, got)  # FP64: float32 widened
                    assert close(got, ry[i]), (dt, r, i, got, ry[i])
            assert close(outs["mean"][1][r], rm[0]) and close(outs["rstd"][1][r], rr[0])
            assert close(outs["radius"][1][r], rho)
    # nearly all exact; the rest one ulp off at a near-tie (check_rounded)
    assert exact >= total * 0.97, (exact, total)

    # binary_data_output: every output binary; JSON-data FP16 input
    rows = [[f16(rng.gauss(0, 1)) for _ in range(8)] for _ in range(2)]
    doc = {"inputs": [{"name": "input", "datatype": "FP16", "shape": [2, 8],
                       "data": [v for r in rows for v in r]}],
           "parameters": {"binary_data_output": True}}
    st, rh, resp, rest = binary_request(srv, "/v2/models/ln8/infer", doc, b"")
    assert st == 200, resp
    outs = split_outputs(resp, rest)
    assert all("binary_data_size" in o["parameters"] for o in resp["outputs"])
    for r, row in enumerate(rows):
        ry = ref_row(row, gain=GAIN8, bias=BIAS8)[0]
        for i in range(8):
            check_rounded("FP16", outs["output"][1][r * 8 + i], ry[i], (r, i))

    # JSON in, JSON out, FP16: values are FP16 values, JSON numbers
    st, rh, body = srv.request("POST", "/v2/models/layernorm/infer", json.dumps(
        {"inputs": [{"name": "input", "datatype": "FP16", "shape": [2, 8],
                     "data": rows}]}))
    assert st == 200 and rh["Content-Type"] == "application/json", (st, body)
    assert "Inference-Header-Content-Length" not in rh
    o = {o["name"]: o for o in json.loads(body)["outputs"]}["output"]
    assert o["datatype"] == "FP16"
    for r, row in enumerate(rows):
        ry = ref_row(row)[0]
        for i in range(8):
            check_rounded("FP16", o["data"][r * 8 + i], ry[i], (r, i), from_json=True)


@test
def perf_analyzer_style_and_raw(srv, rng):
    """perf_analyzer's C++ client: JSON body, Inference-Header-Content-Length =
    the body length, an empty Expect header. And a raw FP32 body (header 0)."""
    rows = rand_rows(rng, 3, 16)
    body = infer_body(rows).encode()
    st, rh, data = srv.request("POST", "/v2/models/layernorm/infer", body,
                               headers={"Inference-Header-Content-Length": str(len(body)),
                                        "Expect": ""})
    assert st == 200, data
    assert rh["Content-Type"] == "application/json"
    check_infer(json.loads(data), rows)
    # L = 0: the body is [B, 8] raw FP32 for a fixed-dim model; JSON answer
    rows8 = rand_rows(rng, 3, 8)
    raw = struct.pack("<24f", *[v for r in rows8 for v in r])
    st, rh, data = srv.request("POST", "/v2/models/ln8/infer", raw,
                               headers={"Inference-Header-Content-Length": "0"})
    assert st == 200, data
    check_infer(json.loads(data), rows8, model_name="ln8", gain=GAIN8, bias=BIAS8)
    _bad(srv, "POST", "/v2/models/layernorm/infer", raw, 400,
         "Inference-Header-Content-Length: 0", "fixed dim",
         headers={"Inference-Header-Content-Length": "0"})
    _bad(srv, "POST", "/v2/models/ln8/infer", raw[:-4], 400, "not whole rows",
         headers={"Inference-Header-Content-Length": "0"})


@test
def binary_tensor_data_bad(srv, rng):
    inf = "/v2/models/layernorm/infer"
    hdr = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4],
                       "parameters": {"binary_data_size": 16}}]}
    hb = json.dumps(hdr).encode()
    blob = struct.pack("<4f", 1, 2, 3, 4)
    for v in ("abc", "-1", "+5", "1e3", "5x", "99999999999999999999999"):
        _bad(srv, "POST", inf, hb + blob, 400, "Inference-Header-Content-Length",
             headers={"Inference-Header-Content-Length": v})
    _bad(srv, "POST", inf, hb + blob, 400, "is more than the body's",
         headers={"Inference-Header-Content-Length": str(len(hb) + 17)})
    _bad(srv, "POST", inf, hb + blob[:-2], 400, "follow the JSON header", "expected 16",
         headers={"Inference-Header-Content-Length": str(len(hb))})
    bad = json.dumps({"inputs": [{"name": "input", "datatype": "FP16", "shape": [1, 4],
                                  "parameters": {"binary_data_size": 16}}]}).encode()
    _bad(srv, "POST", inf, bad + blob, 400, "inputs[0].parameters.binary_data_size",
         "expected 8", headers={"Inference-Header-Content-Length": str(len(bad))})
    _bad(srv, "POST", inf, hb, 400, "needs the Inference-Header-Content-Length")
    # the server still answers after all that
    st, _, _ = srv.request("POST", inf, hb + blob,
                           headers={"Inference-Header-Content-Length": str(len(hb))})
    assert st == 200


@test
def constant_rows(srv, rng):
    rows = [[3.25] * 8, [0.0] * 8]
    st, _, body = srv.request("POST", "/v2/models/ln8/infer", infer_body(rows))
    assert st == 200, body
    outs = {o["name"]: o["data"] for o in json.loads(body)["outputs"]}
    assert [f32(v) for v in outs["output"]] == [f32(b) for b in BIAS8] * 2, outs["output"]
    assert outs["radius"] == [0.0, 0.0]


@test
def thousand_rows(srv, rng):
    rows = rand_rows(rng, 1000, 768, mean=100.0, std=3.0)
    st, _, body = srv.request("POST", "/v2/models/layernorm/infer", infer_body(rows))
    assert st == 200, body[:200]
    check_infer(json.loads(body), rows)


@test
def concurrent_clients(srv, rng):
    errors = []
    seeds = [rng.randrange(1 << 30) for _ in range(64)]

    def client(i):
        r = random.Random(seeds[i])
        c = srv.conn()
        try:
            for _ in range(4):
                N = r.choice([1, 2, 7, 64, 768, 1000])
                B = r.randint(1, 8)
                rows = rand_rows(r, B, N, mean=r.uniform(-50, 50), std=r.uniform(0.01, 10))
                st, _, body = srv.request("POST", "/v2/models/layernorm/infer",
                                          infer_body(rows), conn=c)
                if st != 200:
                    raise AssertionError(f"status {st}: {body[:200]}")
                check_infer(json.loads(body), rows)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(f"client {i}: {e!r}")
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def _bad(srv, method, path, body, status, *needles, headers=None):
    st, hdrs, data = srv.request(method, path, body, headers=headers)
    assert st == status, (path, body[:80] if body else body, st, data[:300])
    if status != 405 or data:
        msg = json.loads(data)["error"]
        for n in needles:
            assert n in msg, f"{n!r} not in error {msg!r}"
    return hdrs


@test
def bad_inputs(srv, rng):
    inf = "/v2/models/layernorm/infer"
    good = {"name": "input", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}

    def doc(**kw):
        d = dict(good)
        d.update(kw)
        return json.dumps({"inputs": [d]})

    _bad(srv, "POST", inf, '{"inputs": [', 400, "JSON")
    _bad(srv, "POST", inf, "", 400)
    _bad(srv, "POST", inf, "[1,2]", 400)
    _bad(srv, "POST", inf, '{"outputs": []}', 400, "inputs")
    _bad(srv, "POST", inf, '{"inputs": {}}', 400, "inputs")
    _bad(srv, "POST", inf, '{"inputs": []}', 400, "inputs")
    _bad(srv, "POST", inf, doc(name="x"), 400, "inputs[0].name", "input")
    _bad(srv, "POST", inf, doc(shape=[1, 4]), 400, "shape")
    _bad(srv, "POST", inf, doc(shape=[3]), 400, "shape")
    _bad(srv, "POST", inf, doc(shape=[1, -3]), 400, "shape")
    _bad(srv, "POST", inf, doc(shape="3"), 400, "shape")
    _bad(srv, "POST", inf, doc(data=[1, "a", 3]), 400, "data")
    _bad(srv, "POST", inf, doc(datatype="INT8"), 400, "datatype")
    _bad(srv, "POST", inf, doc(datatype="FP99"), 400, "datatype")
    _bad(srv, "POST", inf, doc(shape=[1, 0], data=[]), 400, "shape")
    _bad(srv, "POST", inf, doc(shape=[0, 3], data=[]), 400, "shape")
    _bad(srv, "POST", inf, doc(data=[1, 1e39, 3]), 400, "row 0", "column 1")
    _bad(srv, "POST", inf, doc(shape=[2, 3], data=[1, 2, 3, 4, -1e300, 6]), 400, "row 1", "column 1")
    _bad(srv, "POST", inf, '{"inputs":[{"name":"input","datatype":"FP32","shape":[1,2],"data":[1,NaN]}]}', 400)
    _bad(srv, "POST", "/v2/models/ln8/infer", doc(), 400, "shape", "8")
    _bad(srv, "POST", "/v2/models/lng4/infer", json.dumps(
        {"inputs": [dict(good, shape=[1, 6], data=[1, 2, 3, 4, 5, 6])]}), 400, "shape", "16")
    _bad(srv, "POST", inf, json.dumps({"inputs": [good], "outputs": [{"name": "nope"}]}), 400, "outputs")
    _bad(srv, "POST", "/v2/models/nope/infer", doc(), 404, "nope")
    _bad(srv, "GET", "/v2/models/nope", None, 404, "nope")
    _bad(srv, "GET", "/v3/whatever", None, 404, "/v3/whatever")
    _bad(srv, "GET", "/v2/models/layernorm/unknown", None, 404)
    h = _bad(srv, "GET", inf, None, 405, "POST")
    assert h.get("Allow") == "POST", h
    _bad(srv, "POST", "/v2/health/live", "{}", 405, "GET")
    _bad(srv, "DELETE", "/v2/models/layernorm", None, 405)
    # Still serving after all of that.
    st, _, _ = srv.request("GET", "/v2/health/ready")
    assert st == 200


@test
def groups_not_dividing(srv, rng):
    # the built-in has G = 1; a config model with G = 4 and any N is the
    # place for "N not divisible by groups": lngany has dim 0, groups 4.
    body = infer_body([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    _bad(srv, "POST", "/v2/models/lngany/infer", body, 400, "groups")
    rows = rand_rows(rng, 2, 12)
    st, _, data = srv.request("POST", "/v2/models/lngany/infer", infer_body(rows))
    assert st == 200, data
    check_infer(json.loads(data), rows, model_name="lngany", groups=4)


def test_body_too_large(rng):
    """server.max_body_bytes holds with a Content-Length and without one."""
    srv = Server("--max-body-bytes", "65536")
    try:
        _body_too_large(srv, rng)
    finally:
        assert srv.stop() == 0


def _body_too_large(srv, rng):
    big = infer_body(rand_rows(rng, 16, 1024))
    assert len(big) > 65536
    _bad(srv, "POST", "/v2/models/layernorm/infer", big, 413, "max_body_bytes")
    # chunked upload, no Content-Length: the limit still holds
    c = srv.conn()
    c.putrequest("POST", "/v2/models/layernorm/infer")
    c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    data = big.encode()
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        try:
            c.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            break
    try:
        c.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    resp = c.getresponse()
    assert resp.status == 413, resp.status
    c.close()
    st, _, _ = srv.request("GET", "/v2/health/live")
    assert st == 200


# ---------------------------------------------------------------------------


def test_busy_503(rng):
    """A one-job queue and one worker, fed by four I/O threads: some
    requests are turned away with 503 + Retry-After, the rest are correct,
    none is lost, and the server serves normally afterwards."""
    srv = Server("--workers", "1", "--queue-capacity", "1", "--io-threads", "4")
    try:
        rows = rand_rows(rng, 32, 2048)
        body = infer_body(rows)
        results = []
        lock = threading.Lock()

        def client():
            c = srv.conn()
            for _ in range(6):
                st, hdrs, data = srv.request("POST", "/v2/models/layernorm/infer", body, conn=c)
                with lock:
                    results.append((st, hdrs, data))
            c.close()

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 96
        codes = [r[0] for r in results]
        assert set(codes) <= {200, 503}, set(codes)
        assert 503 in codes, "no request was turned away: queue limit not enforced"
        assert 200 in codes
        checked = False
        for st, hdrs, data in results:
            if st == 503:
                assert hdrs.get("Retry-After") == "1", hdrs
                assert "queue" in json.loads(data)["error"]
            elif not checked:
                check_infer(json.loads(data), rows)
                checked = True
        st, _, data = srv.request("POST", "/v2/models/layernorm/infer", body)
        assert st == 200
        print(f"    503 path: {codes.count(503)} of {len(codes)} turned away")
    finally:
        assert srv.stop() == 0


def test_sigterm_drain(rng):
    """SIGTERM with requests in flight: each gets its full answer, the
    server then refuses new connections and exits 0."""
    srv = Server("--workers", "2")
    rows = rand_rows(rng, 200, 768)
    data = infer_body(rows).encode()
    half = len(data) // 2
    socks = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"POST /v2/models/layernorm/infer HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(data) + data[:half])
        socks.append(s)
    time.sleep(0.3)  # the server has the headers: these requests are in flight
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    for s in socks:
        s.sendall(data[half:])
    answers = []
    for s in socks:
        s.settimeout(60)
        buf = b""
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            head, sep, rest = buf.partition(b"\r\n\r\n")
            if sep:
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(rest) >= int(cl[0].split(b":")[1]):
                    break
        s.close()
        answers.append(buf)
    for buf in answers:
        head, _, rest = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
    check_infer(json.loads(answers[0].partition(b"\r\n\r\n")[2]), rows)
    rc = srv.stop(timeout=30)
    assert rc == 0, f"exit code {rc}"
    try:
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
        raise AssertionError("still accepting after exit")
    except OSError:
        pass


def test_auth_and_limits(rng):
    """API keys from a file and the environment; health open by default;
    max_elements."""
    with tempfile.TemporaryDirectory() as d:
        keys = os.path.join(d, "keys")
        with open(keys, "w") as f:
            f.write("# operators\nfile-key-1\n\nfile-key-2\n")
        srv = Server("--api-key-file", keys, "--max-elements", "100",
                     env={"LNSERVE_API_KEYS": "env-key-a,env-key-b"})
        try:
            inf = "/v2/models/layernorm/infer"
            body = infer_body(rand_rows(rng, 2, 10))
            for hdrs in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "file-key-1"},
                         {"Authorization": "Bearer file-key-1x"}, {"Authorization": "Bearer file-key"},
                         {"Authorization": "Bearer " + "k" * 300}):
                st, h, data = srv.request("POST", inf, body, headers=hdrs)
                assert st == 401, (hdrs, st)
                assert h.get("WWW-Authenticate") == "Bearer"
                assert "Authorization: Bearer" in json.loads(data)["error"]
                st, _, _ = srv.request("GET", "/v2/models/layernorm", headers=hdrs)
                assert st == 401
            for key in ("file-key-1", "file-key-2", "env-key-a", "env-key-b"):
                st, _, data = srv.request("POST", inf, body, headers={"Authorization": "Bearer " + key})
                assert st == 200, (key, st, data)
            st, _, _ = srv.request("GET", "/v2/health/ready")
            assert st == 200
            big = infer_body(rand_rows(rng, 11, 10))
            st, _, data = srv.request("POST", inf, big, headers={"Authorization": "Bearer env-key-a"})
            assert st == 400 and "max_elements" in json.loads(data)["error"], (st, data)
        finally:
            assert srv.stop() == 0
        srv = Server("--api-key-file", keys, "--auth-open-health", "0")
        try:
            st, _, _ = srv.request("GET", "/v2/health/live")
            assert st == 401
            st, _, _ = srv.request("GET", "/v2/health/live", headers={"Authorization": "Bearer file-key-2"})
            assert st == 200
        finally:
            assert srv.stop() == 0


def test_dynamic_batching(rng):
    """max_batch_rows / max_queue_delay_us: one worker that waits up to
    0.5 s for more jobs, fed bursts of concurrent 1-row requests. Every
    answer is right; /config says what the server does; the statistics
    count worker batches as executions; a batch holds several requests
    (tried over up to 5 bursts: how many arrive within the delay is up to
    the scheduler); no batch is over the row cap; and SIGTERM with a batch
    waiting answers everything."""
    srv = Server("--workers", "1", "--max-batch-rows", "6", "--max-queue-delay-us", "500000",
                 "--io-threads", "4")
    try:
        st, _, body = srv.request("GET", "/v2/models/layernorm/config")
        cfg = json.loads(body)
        assert cfg["dynamic_batching"] == {"max_queue_delay_microseconds": 500000,
                                           "preserve_ordering": False,
                                           "preferred_batch_size": [6]}, cfg
        rows = rand_rows(rng, 1, 64)
        body = infer_body(rows)

        def burst(n):
            results = []
            lock = threading.Lock()

            def client():
                st, _, data = srv.request("POST", "/v2/models/layernorm/infer", body)
                with lock:
                    results.append((st, data))

            ts = [threading.Thread(target=client) for _ in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            assert len(results) == n
            for st, data in results:
                assert st == 200, data
                check_infer(json.loads(data), rows)

        batched = False
        for _ in range(5):
            burst(8)
            ms = settled_stats(srv, "/v2/models/layernorm/stats")[0]
            assert all(b["batch_size"] <= 6 for b in ms["batch_stats"]), ms["batch_stats"]
            if ms["execution_count"] < ms["inference_stats"]["success"]["count"]:
                batched = True
                break
        assert batched, ms
        m = scrape(srv)
        key = ("lnserve_batch_rows_count", frozenset({("model", '"layernorm"')}))
        assert m[key] == ms["execution_count"], (m[key], ms)
        assert m[("lnserve_batch_wait_seconds_count", frozenset())] >= m[key]
        assert m[("lnserve_batch_wait_seconds_sum", frozenset())] > 0
        # The queue wait includes the batching delay, honestly.
        assert ms["inference_stats"]["queue"]["ns"] > 0
        # SIGTERM while jobs wait for a batch to fill: all answered.
        out = []

        def late():
            out.append(srv.request("POST", "/v2/models/layernorm/infer", body)[0])

        ts = [threading.Thread(target=late) for _ in range(3)]
        for t in ts:
            t.start()
        time.sleep(0.1)
        srv.proc.send_signal(signal.SIGTERM)
        for t in ts:
            t.join()
        assert out == [200, 200, 200], out
    finally:
        assert srv.stop() == 0


def test_json_logs(rng):
    """--log-format json: every stderr line is one JSON object; the access
    log carries the request id; --log-level warn drops info lines."""
    srv = Server("--log-format", "json", "--access-log", "1")
    try:
        st, hdrs, _ = srv.request("GET", "/v2/health/live", headers={"X-Request-Id": "log-\"q\"-1"})
        assert st == 200
    finally:
        assert srv.stop() == 0
    lines = [json.loads(l) for l in srv.stderr_lines if l.strip()]
    assert lines and all(set(l) == {"ts", "level", "msg"} for l in lines), lines[:3]
    assert any('id=log-"q"-1' in l["msg"] for l in lines), [l["msg"] for l in lines]
    srv = Server("--log-level", "warn")
    try:
        srv.request("GET", "/v2/health/live")
    finally:
        assert srv.stop() == 0
    assert not any(" info " in l for l in srv.stderr_lines), srv.stderr_lines


def test_tls(rng):
    """HTTPS with a self-signed certificate from server.tls_cert_file/key."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        srv = Server("--tls-cert-file", cert, "--tls-key-file", key)
        try:
            srv.tls = cert
            rows = rand_rows(rng, 3, 33)
            st, _, data = srv.request("POST", "/v2/models/layernorm/infer", infer_body(rows))
            assert st == 200, data
            check_infer(json.loads(data), rows)
            # plain HTTP to the TLS port is not served
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            raw.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                got = raw.recv(100)
            except (ConnectionResetError, socket.timeout):
                got = b""
            assert not got.startswith(b"HTTP/1.1 200"), got
            raw.close()
        finally:
            assert srv.stop() == 0


def main():
    global BINARY
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("-k", default="", help="run only tests whose name contains this")
    args = ap.parse_args()
    BINARY = os.path.abspath(args.binary)
    print(f"integration: seed {SEED} (LNSERVE_TEST_SEED to repeat)")
    rng = random.Random(SEED)

    models = [
        {"name": "ln8", "kind": "layernorm", "dim": 8, "gain": GAIN8, "bias": BIAS8},
        {"name": "lng4", "kind": "layernorm", "dim": 16, "groups": 4},
        {"name": "lngany", "kind": "layernorm", "dim": 0, "groups": 4},
    ]
    margs = []
    for m in models:
        margs += ["--model", json.dumps(m)]
    passed = failed = 0

    def run(name, fn, *a):
        nonlocal passed, failed
        if args.k and args.k not in name:
            return
        t0 = time.time()
        try:
            fn(*a)
            passed += 1
            print(f"[ OK ] {name} ({time.time() - t0:.2f} s)")
        except Exception:  # noqa: BLE001 -- every failure is reported
            failed += 1
            print(f"[FAIL] {name}")
            traceback.print_exc()

    srv = Server("--workers", "2", *margs)
    try:
        for fn in TESTS:
            run(fn.__name__, fn, srv, rng)
    finally:
        rc = srv.stop()

    def clean_exit():
        assert rc == 0, f"exit code {rc}: {''.join(srv.stderr_lines[-20:])}"

    run("clean_exit", clean_exit)
    run("body_too_large", test_body_too_large, rng)
    run("busy_503", test_busy_503, rng)
    run("auth_and_limits", test_auth_and_limits, rng)
    run("tls", test_tls, rng)
    run("json_logs", test_json_logs, rng)
    run("dynamic_batching", test_dynamic_batching, rng)
    run("sigterm_drain", test_sigterm_drain, rng)
    print(f"integration: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
