#!/usr/bin/env python3
"""lnserve against NVIDIA's own clients, unmodified: tritonclient.http (from
PyPI, pinned, in the virtual environment `make test-interop` builds) and
perf_analyzer (the binary that tritonclient's manylinux wheel ships). Run by
`make test-interop`; prints 'N passed, N failed' last.

    build/venv/bin/python tests/interop/test_tritonclient.py \\
        --binary build/release/lnserve --perf-analyzer build/perf_analyzer/bin/perf_analyzer

Steps, each one line of the closing count:
  health             is_server_live, is_server_ready, is_model_ready
  server_metadata    get_server_metadata: name, extensions has binary_tensor_data
                     and statistics
  model_metadata     get_model_metadata (with and without a version): input
                     shape [-1, 768], outputs listed
  model_config       get_model_config: max_batch_size > 0, dims [768],
                     dynamic_batching with max_queue_delay_microseconds
  infer_*            infer in FP32 and FP16, input binary (the default) and
                     JSON (binary_data=False), outputs by default (all, binary)
                     and requested (InferRequestedOutput, binary_data True and
                     False); output, mean and rstd against a float64 numpy
                     LayerNorm: FP32 within 16 float32 ulps of max(1, |ref|),
                     FP16 within one FP16 ulp of max(1, |ref|)
  infer_gain_bias    a model with gain and bias (dim 8)
  infer_any_n        the built-in `layernorm` (any N) with N = 100
  async_infer        16 async_infer calls on a client with concurrency 4
  statistics         get_inference_statistics parses; success count grew;
                     execution_count and batch_stats agree with inference_count
  perf_analyzer      concurrency 1, 4 and 16 (about 30 s) on ln768 with
                     real float rows (--input-data: perf_analyzer's default
                     random bytes include NaN/inf, which lnserve rejects with
                     400); fails on any error it reports, and unless it
                     printed the server-side section it reads from /stats
                     (statistics is advertised); the report goes to
                     build/interop/. Skipped, with the reason, when the binary
                     is missing or cannot run here.
  clean_exit         the server exits 0 on SIGTERM

The server listens on 127.0.0.1 only, on a port it picks.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import traceback

import numpy as np
import tritonclient.http as httpclient

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lnserve_proc import LnserveProcess  # noqa: E402  (tests/lnserve_proc.py)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SEED = int(os.environ.get("LNSERVE_TEST_SEED", str(int(time.time()) % 100000)))
EPS = 1e-5
GAIN8 = [0.5, 1.0, 1.5, 2.0, -1.0, 0.25, 3.0, 1.0]
BIAS8 = [0.0, 0.1, -0.2, 0.3, 1.0, -1.0, 0.5, 0.0]
MODELS = [
    {"name": "ln768", "dim": 768},
    {"name": "ln8", "kind": "layernorm", "dim": 8, "gain": GAIN8, "bias": BIAS8},
]


class Skip(Exception):
    pass


class Server(LnserveProcess):
    def __init__(self, binary, *args):
        super().__init__(binary, *args)
        self.hostport = f"127.0.0.1:{self.port}"


def ref_ln(x, gain=None, bias=None):
    """float64 LayerNorm of each row: output, mean [B,1], rstd [B,1]."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + EPS)
    y = (x - mean) * rstd
    if gain is not None:
        y = y * np.asarray(gain, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y, mean, rstd


def check_close(name, got, ref, dtype):
    """got within 16 float32 ulps (FP32) or one FP16 ulp (FP16) of
    max(1, |ref|); shapes and dtype must match."""
    got = np.asarray(got)
    if got.dtype != np.dtype(dtype):
        raise AssertionError(f"{name}: dtype {got.dtype}, expected {np.dtype(dtype)}")
    if got.shape != ref.shape:
        raise AssertionError(f"{name}: shape {got.shape}, expected {ref.shape}")
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{name}: non-finite values")
    mag = np.maximum(1.0, np.abs(ref))
    if np.dtype(dtype) == np.float16:
        tol = np.spacing(mag.astype(np.float16)).astype(np.float64)
    else:
        tol = 16.0 * np.spacing(mag.astype(np.float32)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - ref)
    worst = int(np.argmax(err / tol))
    if np.any(err > tol):
        idx = np.unravel_index(worst, ref.shape)
        raise AssertionError(
            f"{name}: {int(np.sum(err > tol))} values out of tolerance; worst at {idx}: "
            f"got {got.flat[worst]!r} ref {ref.flat[worst]!r} tol {tol.flat[worst]:.3g}")


def make_rows(rng, b, n, dtype):
    # Offsets and scales that differ per row, so mean and rstd matter.
    x = rng.normal(size=(b, n)) * rng.uniform(0.1, 8.0, size=(b, 1)) \
        + rng.uniform(-50, 50, size=(b, 1))
    return x.astype(dtype)


def do_infer(client, model, x, dtype_name, input_binary, outputs=None, **kw):
    inp = httpclient.InferInput("input", list(x.shape), dtype_name)
    inp.set_data_from_numpy(x, binary_data=input_binary)
    return client.infer(model, [inp], outputs=outputs, **kw)


def check_result(res, x, np_dtype, gain=None, bias=None, names=("output", "mean", "rstd")):
    y, mean, rstd = ref_ln(x.astype(np.float64), gain, bias)
    if "output" in names:
        check_close("output", res.as_numpy("output"), y, np_dtype)
    # mean and rstd are FP32 whatever the input's datatype.
    if "mean" in names:
        check_close("mean", res.as_numpy("mean"), mean, np.float32)
    if "rstd" in names:
        check_close("rstd", res.as_numpy("rstd"), rstd, np.float32)


def run_perf_analyzer(pa, srv, outdir, seconds_budget=90):
    if not pa or not os.path.exists(pa):
        raise Skip(f"perf_analyzer not found at {pa!r}")
    env = dict(os.environ)
    # The wheel's perf_analyzer links libcudart.so.12 (never called without a
    # GPU); nvidia-cuda-runtime-cu12 beside it provides the library.
    cudart = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(pa))),
                          "nvidia", "cuda_runtime", "lib")
    if os.path.isdir(cudart):
        env["LD_LIBRARY_PATH"] = cudart + ":" + env.get("LD_LIBRARY_PATH", "")
    try:
        v = subprocess.run([pa, "--version"], env=env, capture_output=True, text=True,
                           timeout=30)
    except OSError as e:
        raise Skip(f"perf_analyzer cannot run here: {e}")
    if v.returncode != 0 or "Perf Analyzer" not in v.stdout + v.stderr:
        raise Skip("perf_analyzer cannot run here: " + (v.stdout + v.stderr).strip()[-400:])
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(SEED)
    data = {"data": [{"input": {"content": [round(float(f), 6) for f in
                                            make_rows(rng, 1, 768, np.float64)[0]],
                                "shape": [768]}} for _ in range(8)]}
    data_path = os.path.join(outdir, "pa_input.json")
    with open(data_path, "w") as f:
        json.dump(data, f)
    log_path = os.path.join(outdir, "perf_analyzer.log")
    # One run per concurrency: perf_analyzer ends a sweep at the first level
    # that does not stabilize (noise on a shared 2-core machine), so a single
    # --concurrency-range run would often skip the higher levels.
    summary, errors, log = [], [], []
    t0 = time.time()
    for conc in (1, 4, 16):
        csv_path = os.path.join(outdir, f"perf_analyzer_c{conc}.csv")
        cmd = [pa, "-m", "ln768", "-u", srv.hostport, "-i", "http",
               "--concurrency-range", f"{conc}:{conc}", "--measurement-interval", "2000",
               "--max-trials", "3", "--stability-percentage", "50",
               "-b", "1", "--input-data", data_path, "-f", csv_path]
        left = seconds_budget - (time.time() - t0)
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=max(5, left))
            out, rc = p.stdout + p.stderr, p.returncode
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            rc = "timeout"
        log.append("$ " + " ".join(cmd) + "\n" + out + f"\n# rc={rc}\n")
        got = [l for l in out.splitlines() if l.startswith("Concurrency:")]
        # With statistics advertised, perf_analyzer reads /stats and reports
        # the server's side (queue, compute input/infer/output) too.
        if got and "Server:" not in out:
            errors.append(f"concurrency {conc}: no server-side section (/stats not read)")
        unstable = any("stable measurement" in l for l in out.splitlines())
        summary += got or [f"Concurrency: {conc}, no stable measurement in 3 windows"
                           if unstable else f"Concurrency: {conc}, no result"]
        # "Failed to obtain stable measurement" is the machine's noise, not
        # an error of the server; anything else that says error is.
        # perf_analyzer exits 2 when the only level did not stabilize.
        errs = [l for l in out.splitlines()
                if ("error" in l.lower() or "failed to maintain" in l.lower())
                and "stable measurement" not in l]
        if (rc != 0 and not (unstable and rc == 2)) or errs or not (got or unstable):
            errors.append(f"concurrency {conc} rc={rc}: " +
                          " | ".join(errs[:3] or out.splitlines()[-3:]))
    with open(log_path, "w") as f:
        f.write("".join(log) + f"# {time.time() - t0:.1f} s in all\n")
    for l in summary:
        print("    " + l)
    print(f"    report: {os.path.relpath(log_path, ROOT)}, build/interop/perf_analyzer_c*.csv")
    if errors:
        raise AssertionError("; ".join(errors))
    if not any("throughput" in l for l in summary):
        raise AssertionError("perf_analyzer measured nothing stable at any concurrency")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--perf-analyzer", default="")
    ap.add_argument("--outdir", default=os.path.join(ROOT, "build", "interop"))
    args = ap.parse_args()
    print(f"tritonclient interop: seed {SEED}")
    rng = np.random.default_rng(SEED)

    margs = []
    for m in MODELS:
        margs += ["--model", json.dumps(m)]
    srv = Server(args.binary, *margs)
    url = srv.hostport
    client = httpclient.InferenceServerClient(url=url)

    passed = failed = skipped = 0

    def run(name, fn, *a):
        nonlocal passed, failed, skipped
        try:
            fn(*a)
            print(f"  ok    {name}")
            passed += 1
        except Skip as e:
            print(f"  SKIP  {name}: {e}")
            skipped += 1
        except Exception as e:  # noqa: BLE001
            print(f"  FAIL  {name}: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3)
            failed += 1

    def health():
        assert client.is_server_live(), "is_server_live false"
        assert client.is_server_ready(), "is_server_ready false"
        assert client.is_model_ready("ln768"), "is_model_ready(ln768) false"
        assert client.is_model_ready("ln768", "1"), "is_model_ready(ln768, 1) false"
        assert not client.is_model_ready("nosuchmodel"), "is_model_ready(nosuchmodel) true"

    def server_metadata():
        md = client.get_server_metadata()
        assert md.get("name"), md
        assert "binary_tensor_data" in md.get("extensions", []), md
        assert "statistics" in md.get("extensions", []), md

    def model_metadata():
        for ver in ("", "1"):
            md = client.get_model_metadata("ln768", model_version=ver)
            assert md["name"] == "ln768", md
            inp = {t["name"]: t for t in md["inputs"]}
            assert inp["input"]["shape"] == [-1, 768], md
            outs = [t["name"] for t in md["outputs"]]
            for o in ("output", "mean", "rstd"):
                assert o in outs, md

    def model_config():
        cfg = client.get_model_config("ln768")
        assert cfg["name"] == "ln768", cfg
        assert isinstance(cfg["max_batch_size"], int) and cfg["max_batch_size"] > 0, cfg
        inp = {t["name"]: t for t in cfg["input"]}
        assert inp["input"]["dims"] == [768], cfg
        assert inp["input"]["data_type"] == "TYPE_FP32", cfg
        db = cfg["dynamic_batching"]
        assert db["max_queue_delay_microseconds"] == 0, cfg  # the default

    def infer_case(dtype_name, np_dtype, input_binary, outputs_mode):
        def f():
            x = make_rows(rng, 4, 768, np_dtype)
            if outputs_mode == "default":
                outs = None
            else:
                ob = outputs_mode == "binary"
                outs = [httpclient.InferRequestedOutput("output", binary_data=ob),
                        httpclient.InferRequestedOutput("mean", binary_data=ob),
                        httpclient.InferRequestedOutput("rstd", binary_data=not ob)]
            res = do_infer(client, "ln768", x, dtype_name, input_binary, outs,
                           request_id=f"req-{dtype_name}-{outputs_mode}")
            check_result(res, x, np_dtype)
            r = res.get_response()
            assert r.get("id") == f"req-{dtype_name}-{outputs_mode}", r
            if outs is not None:
                names = [o["name"] for o in r["outputs"]]
                assert sorted(names) == ["mean", "output", "rstd"], names
                by = {o["name"]: o for o in r["outputs"]}
                ob = outputs_mode == "binary"
                for n, want_bin in (("output", ob), ("mean", ob), ("rstd", not ob)):
                    is_bin = "binary_data_size" in (by[n].get("parameters") or {})
                    assert is_bin == want_bin, (n, by[n])
        return f

    def infer_mixed_one_output():
        x = make_rows(rng, 3, 768, np.float32)
        outs = [httpclient.InferRequestedOutput("output", binary_data=True)]
        res = do_infer(client, "ln768", x, "FP32", True, outs, model_version="1")
        check_result(res, x, np.float32, names=("output",))
        names = [o["name"] for o in res.get_response()["outputs"]]
        assert names == ["output"], names

    def infer_gain_bias():
        for binary in (True, False):
            x = make_rows(rng, 5, 8, np.float32)
            res = do_infer(client, "ln8", x, "FP32", binary)
            check_result(res, x, np.float32, GAIN8, BIAS8)

    def infer_any_n():
        x = make_rows(rng, 3, 100, np.float32)
        res = do_infer(client, "layernorm", x, "FP32", True)
        check_result(res, x, np.float32)

    def async_infer():
        ac = httpclient.InferenceServerClient(url=url, concurrency=4)
        try:
            jobs = []
            for i in range(16):
                dt, npd = (("FP16", np.float16) if i % 2 else ("FP32", np.float32))
                x = make_rows(rng, 1 + i % 3, 768, npd)
                inp = httpclient.InferInput("input", list(x.shape), dt)
                inp.set_data_from_numpy(x, binary_data=(i % 4 != 3))
                jobs.append((x, npd, ac.async_infer("ln768", [inp], request_id=str(i))))
            for x, npd, h in jobs:
                check_result(h.get_result(timeout=30), x, npd)
        finally:
            ac.close()

    def statistics():
        # A worker records its batch just after handing back the response,
        # so right after the last infer the batch sums may lag: poll.
        for _ in range(100):
            st = client.get_inference_statistics("ln768")
            ms = st["model_stats"]
            assert ms and ms[0]["name"] == "ln768", st
            count = ms[0]["inference_stats"]["success"]["count"]
            assert count >= 10, st
            m = ms[0]
            execs = sum(b["compute_infer"]["count"] for b in m["batch_stats"])
            rows = sum(b["batch_size"] * b["compute_infer"]["count"] for b in m["batch_stats"])
            if execs == m["execution_count"] >= 1 and rows == m["inference_count"]:
                return
            time.sleep(0.02)
        raise AssertionError(f"batch_stats disagree with the counts: {m}")

    run("health", health)
    run("server_metadata", server_metadata)
    run("model_metadata", model_metadata)
    run("model_config", model_config)
    for dt, npd in (("FP32", np.float32), ("FP16", np.float16)):
        for ib in (True, False):
            for om in ("default", "binary", "json"):
                tag = f"infer_{dt.lower()}_in_{'bin' if ib else 'json'}_out_{om}"
                run(tag, infer_case(dt, npd, ib, om))
    run("infer_one_output_versioned", infer_mixed_one_output)
    run("infer_gain_bias", infer_gain_bias)
    run("infer_any_n", infer_any_n)
    run("async_infer", async_infer)
    run("statistics", statistics)
    run("perf_analyzer", run_perf_analyzer, args.perf_analyzer, srv, args.outdir)
    client.close()

    def clean_exit():
        rc = srv.stop()
        assert rc == 0, f"server exit {rc}: {''.join(srv.stderr_lines)[-1000:]}"

    run("clean_exit", clean_exit)
    if srv.proc.poll() is None:
        srv.proc.kill()
    if skipped:
        print(f"tritonclient interop: {skipped} skipped (see SKIP lines)")
    print(f"tritonclient interop: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
