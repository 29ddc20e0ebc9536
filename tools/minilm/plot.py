#!/usr/bin/env python3
"""docs/minilm.png from what tests/minilm/test_minilm.py measured: per
LayerNorm of all-MiniLM-L6-v2, the distribution of the rows' distance from
the ellipsoid's surface, and the semi-axis spectrum from lnserve's
/geometry. Run from the venv (`make plot-minilm`; needs matplotlib):

    build/venv/bin/python tools/minilm/plot.py --report build/minilm/report.json \\
        --out docs/minilm.png

Left: radius. With the model's eps = 1e-12 every row's float32 radius is
exactly 1 (it rounds to 1 once v > ~1.7e7 eps), so the histogram is of
log10(1 - rho) (lnserve's `depth`, at eps 1e-12), and, dashed, of the same
rows at PyTorch's default eps 1e-5 (computed in float64 by the test), for
scale. Right: sorted semi-axis lengths sqrt(N lambda_k) / sqrt(N), i.e. the
ellipsoid's axes in units of the unit-gain sphere's radius; layer5.output's
two dead-gain axes (~1e-31 / 1e-8 relative) lie below the plotted range and
are marked.
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--report", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    with open(a.report) as f:
        rep = json.load(f)
    arr = np.load(os.path.splitext(a.report)[0] + ".npz")
    names = list(rep["models"])
    cmap = plt.get_cmap("viridis")
    colors = {n: cmap(i / (len(names) - 1)) for i, n in enumerate(names)}

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=80)
    bins = np.linspace(-13, -2, 111)
    for n in names:
        d = arr[f"{n}/depth"].astype(np.float64)
        ax1.hist(np.log10(d), bins=bins, histtype="step", color=colors[n], label=short(n))
        d5 = 1.0 - arr[f"{n}/radius_at_eps_1e5"].astype(np.float64)
        ax1.hist(np.log10(d5), bins=bins, histtype="step", linestyle="--", color=colors[n])
    ax1.set_xlabel("log10(1 - radius)   solid: eps = 1e-12 (the model's, lnserve `depth`); "
                   "dashed: eps = 1e-5", fontsize=8)
    ax1.set_ylabel(f"token rows (of {rep['rows']}, {rep['sentences']} sentences)")
    ax1.set_title("Radius: every row sits at the ellipsoid's surface (float32 radius = 1)",
                  fontsize=9)
    ax1.legend(fontsize=6, ncol=2)

    N = 384
    floor = 1e-2
    for n in names:
        s = np.array(rep["models"][n]["semi_axes"]) / np.sqrt(N)
        k = np.arange(1, s.size + 1)
        ax2.plot(k, np.maximum(s, floor), color=colors[n], lw=1, label=short(n))
        lost = s < floor
        if lost.any():
            ax2.scatter(k[lost], np.full(lost.sum(), floor), marker="v", color=colors[n], s=18,
                        zorder=3, label=f"{short(n)}: {lost.sum()} axes < {floor:g} (dead gains)")
    ax2.set_yscale("log")
    ax2.set_xlabel("axis k (longest first)")
    ax2.set_ylabel("semi-axis / sqrt(N)  (= |gain| scale)")
    ax2.set_title("Semi-axis spectrum from lnserve /geometry (secular solver), N = 384",
                  fontsize=9)
    ax2.legend(fontsize=6, ncol=2)
    fig.suptitle("all-MiniLM-L6-v2: the 13 LayerNorms on real activations (make plot-minilm)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(a.out)
    print(f"plot.py: wrote {a.out} ({os.path.getsize(a.out)} bytes)")


def short(n):
    return n.replace("minilm.", "").replace("attention", "attn").replace("embeddings", "emb")


if __name__ == "__main__":
    main()
