#!/usr/bin/env python3
"""proto/openapi.yaml against the live server: schemathesis (from PyPI, in
the virtual environment `make test-openapi` builds) generates requests from
the document and checks every response against it. Run by
`make test-openapi`; prints 'N passed, N failed' last.

    python3 tests/interop/test_openapi.py --binary build/release/lnserve \\
        --schemathesis build/venv/bin/schemathesis

Steps, each one line of the closing count:
  paths_served       every documented path answers 200 for a real model (a
                     wrong path would otherwise pass: 404 is documented)
  schemathesis       the document as published, but with the {model} path
                     parameter narrowed to the served models, so generated
                     requests reach the decoder rather than a 404; with an
                     API key (the bearer scheme); checks not_a_server_error,
                     status_code_conformance, content_type_conformance,
                     response_schema_conformance, response_headers_conformance
  schemathesis_401   the same operations without the key: every answer is
                     the documented 401
  clean_exit         the server exits 0 on SIGTERM with nothing in flight

After each run, the responses by endpoint and status (from schemathesis'
HAR report) show what was reached: 200s of every kind, 400s, 404s, 413s.
Bounded: --max-examples per operation (OPENAPI_MAX_EXAMPLES, 50) and
--max-time seconds for the main run (OPENAPI_MAX_TIME, 100). The server
listens on 127.0.0.1 only, on a port it picks; schemathesis runs in a
temporary directory (its .hypothesis/ goes there), removed on success.
"""
import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import yaml  # PyYAML: a dependency of schemathesis, so in the venv

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lnserve_proc import LnserveProcess  # noqa: E402  (tests/lnserve_proc.py)

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = os.path.join(HERE, "..", "..", "proto", "openapi.yaml")
SEED = int(os.environ.get("LNSERVE_TEST_SEED", str(int(time.time()) % 100000)))
API_KEY = "openapi-test-key"
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,response_headers_conformance")

# Served besides the built-ins layernorm and rmsnorm (dim 0, any N): a
# fixed dim with gain and bias, groups, an rmsnorm with a zero gain (its
# geometry has a null axis_ratio), groups with any N.
MODELS = [
    {"name": "ln8", "kind": "layernorm", "dim": 8,
     "gain": [0.5, 1.0, 1.5, 2.0, -1.0, 0.25, 3.0, 1.0],
     "bias": [0.0, 0.1, -0.2, 0.3, 1.0, -1.0, 0.5, 0.0]},
    {"name": "lng4", "kind": "layernorm", "dim": 16, "groups": 4},
    {"name": "rms4", "kind": "rmsnorm", "dim": 4, "gain": [1.0, 0.0, 2.0, 3.0]},
    {"name": "lngany", "kind": "layernorm", "dim": 0, "groups": 4},
]
MODEL_NAMES = ["layernorm", "rmsnorm"] + [m["name"] for m in MODELS]


class Server(LnserveProcess):
    def __init__(self, binary, *args, env=None):
        super().__init__(binary, *args, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()


def load_schema():
    with open(SCHEMA, encoding="utf-8") as f:
        return yaml.safe_load(f)


def narrowed_schema(doc):
    """The document with {model} limited to the served models: otherwise
    nearly every generated name is unknown and answered 404 before the
    request reaches the decoder. Nothing else changes; negative cases still
    send other names."""
    params = doc["components"]["parameters"]
    params["model"]["schema"]["enum"] = MODEL_NAMES
    params["modelUnversioned"]["schema"]["enum"] = MODEL_NAMES
    return doc


def paths_served(srv, doc):
    """Each documented operation, with model ln8 and version 1, answers 200
    with the documented content type (JSON bodies must parse)."""
    auth = {"Authorization": "Bearer " + API_KEY}
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8],
                                   "data": [1, 2, 3, 4, 5, 6, 7, 8]}]})
    n = 0
    for path, item in doc["paths"].items():
        for method in ("get", "post"):
            op = item.get(method)
            if not op:
                continue
            url = path.replace("{model}", "ln8").replace("{version}", "1")
            st, hdr, data = srv.request(method.upper(), url,
                                        body=body if method == "post" else None,
                                        headers=auth)
            assert st == 200, (method, url, st, data[:200])
            assert hdr.get("X-Request-Id"), (url, "no X-Request-Id")
            ctype = hdr.get("Content-Type", "").split(";")[0].strip()
            resp = op["responses"]["200"]
            if "$ref" in resp:
                resp = doc["components"]["responses"][resp["$ref"].rsplit("/", 1)[1]]
            assert ctype in resp["content"], (method, url, ctype)
            if ctype == "application/json":
                json.loads(data)
            n += 1
    assert n >= 20, f"only {n} operations documented"


def har_summary(path):
    """Responses by endpoint and status (and binary infer answers), from
    schemathesis' HAR report: what the run actually reached."""
    with open(path, encoding="utf-8") as f:
        entries = json.load(f)["log"]["entries"]
    counts = {}
    for e in entries:
        url = e["request"]["url"].split("?", 1)[0]
        path_ = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else url
        if path_.startswith("/v2/models/") and path_ != "/v2/models/stats":
            last = path_.rstrip("/").rsplit("/", 1)[1]
            ep = last if last in ("ready", "infer", "config", "stats", "geometry") else "metadata"
        else:
            ep = path_
        ep = e["request"]["method"] + " " + ep
        st = str(e["response"]["status"])
        ctype = [h["value"] for h in e["response"]["headers"] if h["name"].lower() == "content-type"]
        if ctype and ctype[0].startswith("application/octet-stream"):
            st += "(binary)"
        counts.setdefault(ep, {}).setdefault(st, 0)
        counts[ep][st] += 1
    lines = []
    for ep in sorted(counts):
        if ep.split(" ", 1)[0] not in ("GET", "POST"):
            continue  # the coverage phase's other methods: all 405
        lines.append(f"    {ep}: " + ", ".join(f"{st} x{n}" for st, n in sorted(counts[ep].items())))
    other = sum(n for ep, c in counts.items() if ep.split(" ", 1)[0] not in ("GET", "POST")
                for n in c.values())
    other_st = sorted({st for ep, c in counts.items()
                       if ep.split(" ", 1)[0] not in ("GET", "POST") for st in c})
    if other:
        lines.append(f"    other methods: {other} requests, status {', '.join(other_st)}")
    return len(entries), lines


def schemathesis(st_bin, schema_path, url, args, log_name, workdir):
    """Runs schemathesis in workdir (its .hypothesis and report land there)
    and returns its exit status."""
    har = os.path.join(workdir, log_name + ".har")
    argv = [st_bin, "run", schema_path, "--url", url, "--checks", CHECKS,
            "--seed", str(SEED), "--no-color",
            # One worker: two race in Hypothesis' lambda-source cache
            # (FlakyFailure in the coverage phase, schemathesis 4.32.5).
            "--workers", os.environ.get("OPENAPI_WORKERS", "1"),
            "--generation-database", "none",
            "--report", "har", "--report-har-path", har] + args
    print("  $ " + " ".join(argv), flush=True)
    t0 = time.time()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       cwd=workdir)
    out = p.stdout
    m = re.search(r"Test cases:\s*\n\s*(.*)", out)
    cases = m.group(1).strip() if m else "?"
    ops = re.search(r"Operations:\s*(.*)", out)
    print(f"  {log_name}: exit {p.returncode} in {time.time() - t0:.1f} s; operations "
          f"{ops.group(1).strip() if ops else '?'}; test cases: {cases}", flush=True)
    if p.returncode != 0:
        print(out)
    else:
        # The phases and the warnings, without the banner.
        tail = out[out.find("SUMMARY"):] if "SUMMARY" in out else ""
        for line in tail.splitlines():
            line = line.strip()
            if line and not line.startswith(("=", "Seed:", "Reports:", "- HAR:")):
                print("    | " + line)
    if os.path.exists(har):
        n, lines = har_summary(har)
        print(f"  {log_name}: {n} requests sent; responses by endpoint and status:")
        print("\n".join(lines), flush=True)
    return p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--schemathesis", required=True)
    ap.add_argument("--max-examples", type=int,
                    default=int(os.environ.get("OPENAPI_MAX_EXAMPLES", "50")))
    ap.add_argument("--max-time", type=int,
                    default=int(os.environ.get("OPENAPI_MAX_TIME", "100")))
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    args.schemathesis = os.path.abspath(args.schemathesis)
    print(f"openapi: seed {SEED} (LNSERVE_TEST_SEED to repeat); "
          f"{args.max_examples} examples per operation, at most {args.max_time} s")

    doc = load_schema()
    tmp = tempfile.mkdtemp(prefix="lnserve-openapi-")
    narrowed = os.path.join(tmp, "openapi.narrowed.yaml")
    with open(narrowed, "w", encoding="utf-8") as f:
        yaml.safe_dump(narrowed_schema(load_schema()), f, sort_keys=False)

    margs = []
    for m in MODELS:
        margs += ["--model", json.dumps(m)]
    # Small limits so that generated requests reach them: 413 past 4 KiB,
    # 400 past 256 rows.
    srv = Server(binary, "--workers", "2", "--max-body-bytes", "4096", "--max-rows", "256",
                 "--auth-open-health", "0", *margs, env={"LNSERVE_API_KEYS": API_KEY})
    passed = failed = 0

    def run(name, fn, *a):
        nonlocal passed, failed
        t0 = time.time()
        try:
            fn(*a)
            passed += 1
            print(f"[ OK ] {name} ({time.time() - t0:.2f} s)", flush=True)
        except Exception:  # noqa: BLE001 -- every failure is reported
            failed += 1
            print(f"[FAIL] {name}", flush=True)
            traceback.print_exc()

    def main_run():
        rc = schemathesis(args.schemathesis, narrowed, srv.url,
                          ["--max-examples", str(args.max_examples),
                           "--max-time", str(args.max_time),
                           "--header", "Authorization: Bearer " + API_KEY,
                           "--generation-with-security-parameters", "false"],
                          "schemathesis", tmp)
        assert rc == 0, f"schemathesis exit {rc}"
        assert srv.proc.poll() is None, "the server died"

    def unauthorized_run():
        rc = schemathesis(args.schemathesis, narrowed, srv.url,
                          ["--max-examples", "3", "--phases", "examples,fuzzing",
                           "--generation-with-security-parameters", "false"],
                          "schemathesis_401", tmp)
        assert rc == 0, f"schemathesis exit {rc}"
        st, hdr, _ = srv.request("GET", "/v2/models/ln8")
        assert st == 401 and hdr.get("WWW-Authenticate") == "Bearer", (st, hdr)

    rc = None
    try:
        run("paths_served", paths_served, srv, doc)
        run("schemathesis", main_run)
        run("schemathesis_401", unauthorized_run)
    finally:
        rc = srv.stop()

    def clean_exit():
        assert rc == 0, f"exit code {rc}: {''.join(srv.stderr_lines[-20:])}"

    run("clean_exit", clean_exit)
    if failed:
        print(f"openapi: reports and the narrowed document kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"openapi: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
