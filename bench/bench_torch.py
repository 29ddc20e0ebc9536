#!/usr/bin/python3
"""bench_torch.py -- lnserve's default kernel against PyTorch's CPU LayerNorm
(torch.nn.functional.layer_norm, Debian's python3-torch 1.13, one thread)
and a memcpy of the same bytes, in one process, repetitions interleaved;
then each one's accuracy on the row families against a float64 reference.

    /usr/bin/python3 bench/bench_torch.py build/release/bench/liblnpeers.so

Run with Debian's /usr/bin/python3: that is where python3-torch installs
(a pyenv python3 earlier on PATH has no torch). lnserve's kernel, the memcpy,
the data, the float64 reference and the error measure come from
liblnpeers.so (core/ and bench/peers.c, see bench/peers.h), so the rows
and the measure are exactly bench_dnnl's. lnserve and the memcpy are timed
inside C (peers_rep: one ctypes call per repetition), PyTorch by a Python
loop of F.layer_norm calls under torch.inference_mode(), as a Python
service would call it; its own per-call overhead is part of its figure.

Shapes as bench_kernel.c: 768 x 64, 4096 x 64 (in cache), 4096 x 4096 (out
of cache); gain and bias on, eps 1e-5. GB/s counts row bytes read + written.

F.layer_norm allocates its output on every call. At 4096 x 4096 that is 64
MiB, above glibc's largest mmap threshold (32 MiB), so every call maps
fresh pages and pays their first touch (../shared/PERF-NOTES.md). The row
"torch, heap kept" repeats that shape after mallopt(M_MMAP_MAX, 0) and a
large M_TRIM_THRESHOLD, so the output block is reused: PyTorch's kernel
without the page faults, against memcpy and lnserve re-measured in that
same round.
"""
import ctypes
import os
import sys

# Before torch loads its OpenMP runtime; torch.set_num_threads(1) below too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

REPS = 7  # PEERS_REPS
MIN_REP_S = 0.02  # PEERS_MIN_REP_S
EPS = float(np.float32(1e-5))  # PEERS_EPS, the same float as the C side's
ACC_SEED = 20261123  # PEERS_ACC_SEED
ACC_ROWS = 64  # PEERS_ACC_ROWS
N_FAMILIES = 6  # PEERS_N_FAMILIES
MEMCPY, DEFAULT, REF = 0, 1, 2  # peers_what
SHAPES = [(768, 64), (4096, 64), (4096, 4096)]
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>


def load(path):
    lib = ctypes.CDLL(path)
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.peers_init.restype = ctypes.c_char_p
    lib.peers_init.argtypes = []
    lib.peers_family_name.restype = ctypes.c_char_p
    lib.peers_family_name.argtypes = [ctypes.c_int]
    lib.peers_fill_family.restype = None
    lib.peers_fill_family.argtypes = [ctypes.c_int, ctypes.c_uint64, vp, sz, sz]
    lib.peers_fill_bench.restype = None
    lib.peers_fill_bench.argtypes = [vp, sz]
    lib.peers_fill_affine.restype = None
    lib.peers_fill_affine.argtypes = [vp, vp, sz]
    lib.peers_ref64.restype = None
    lib.peers_ref64.argtypes = [sz, sz, vp, vp, vp, ctypes.c_float, vp]
    lib.peers_max_ulp.restype = ctypes.c_double
    lib.peers_max_ulp.argtypes = [vp, vp, sz]
    lib.peers_max_rel.restype = ctypes.c_double
    lib.peers_max_rel.argtypes = [vp, vp, sz]
    lib.peers_ln.restype = None
    lib.peers_ln.argtypes = [ctypes.c_int, sz, sz, vp, vp, vp, vp]
    lib.peers_rep.restype = ctypes.c_double
    lib.peers_rep.argtypes = [ctypes.c_int, sz, sz, vp, vp, vp, vp, sz]
    lib.peers_now_s.restype = ctypes.c_double
    lib.peers_now_s.argtypes = []
    lib.peers_alloc_floats.restype = vp
    lib.peers_alloc_floats.argtypes = [sz]
    return lib


def floats(lib, count):
    """A float32 array over peers_alloc_floats memory (64-byte aligned,
    touched: the same buffers as bench_dnnl's, see peers.h). Lives until
    the process exits."""
    buf = (ctypes.c_float * count).from_address(lib.peers_alloc_floats(count))
    return np.frombuffer(buf, dtype=np.float32)


def ptr(a):
    return a.ctypes.data


def time_rr(lib, calls):
    """calls: one function per contestant, f(iters) -> seconds per call over
    iters calls. Warm-up sizes each repetition; then REPS rounds of one
    repetition each in turn (peers_time_rr's scheme). Median seconds."""
    iters = []
    for f in calls:
        f(1)
        dt = f(1)
        iters.append(int(MIN_REP_S / max(dt, 1e-9)) + 1)
    reps = [[] for _ in calls]
    for _ in range(REPS):
        for j, f in enumerate(calls):
            reps[j].append(f(iters[j]))
    return [sorted(r)[REPS // 2] for r in reps]


def own(lib, what, n, rows, x, y, g, b):
    return lambda iters: lib.peers_rep(what, n, rows, ptr(x), ptr(y), ptr(g), ptr(b), iters)


def torch_call(lib, n, rows, x, g, b):
    xt = torch.from_numpy(x[: n * rows]).view(rows, n)
    gt, bt = torch.from_numpy(g[:n]), torch.from_numpy(b[:n])

    def run(iters):
        t0 = lib.peers_now_s()
        for _ in range(iters):
            F.layer_norm(xt, (n,), gt, bt, EPS)
        return (lib.peers_now_s() - t0) / iters

    return run


def print_rows(label, names, sec, n, rows):
    nbytes = 2.0 * n * rows * 4
    for name, s in zip(names, sec):
        print(f"{label:<11} {name:<17} {s * 1e6:10.2f} {rows / s:12.0f} {nbytes / s * 1e-9:8.2f}"
              f" {sec[0] / s * 100.0:9.1f}% {sec[1] / s:10.2f}x")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bench_torch.py path/to/liblnpeers.so")
    lib = load(sys.argv[1])
    kname = lib.peers_init().decode()
    torch.set_num_threads(1)
    own_name = f"lnserve {kname}"
    names = ["memcpy", own_name, "torch"]

    max_elems = 4096 * 4096
    x, y = floats(lib, max_elems), floats(lib, max_elems)
    g, b = floats(lib, 4096), floats(lib, 4096)
    lib.peers_fill_bench(ptr(x), max_elems)
    lib.peers_fill_affine(ptr(g), ptr(b), 4096)

    print(f"bench_torch: torch {torch.__version__} (threads: {torch.get_num_threads()}, "
          f"{torch.__file__.rsplit('/', 2)[0]}); lnserve default kernel {kname}; gain and bias "
          f"on; GB/s counts row bytes read + written; median of {REPS} interleaved reps")
    print(f"{'shape':<11} {'impl':<17} {'us/call':>10} {'rows/s':>12} {'GB/s':>8} "
          f"{'vs memcpy':>10} {'vs lnserve':>11}")
    with torch.inference_mode():
        for n, rows in SHAPES:
            calls = [own(lib, MEMCPY, n, rows, x, y, g, b), own(lib, DEFAULT, n, rows, x, y, g, b),
                     torch_call(lib, n, rows, x, g, b)]
            print_rows(f"{n}x{rows}", names, time_rr(lib, calls), n, rows)

        # The out-of-cache shape again with glibc keeping freed blocks in
        # the heap (see the top comment). Last: it changes malloc for good.
        libc = ctypes.CDLL(None)
        if libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1:
            n, rows = SHAPES[-1]
            calls = [own(lib, MEMCPY, n, rows, x, y, g, b), own(lib, DEFAULT, n, rows, x, y, g, b),
                     torch_call(lib, n, rows, x, g, b)]
            print_rows(f"{n}x{rows}", ["memcpy", own_name, "torch, heap kept"],
                       time_rr(lib, calls), n, rows)
        else:
            print("(mallopt refused: no heap-kept row)")

    print(f"\naccuracy: max |y - y64| in ulp of max(1, |y64|), y64 the float64 result; "
          f"N = 768 and 4096, {ACC_ROWS} rows each, eps 1e-5, gain and bias on")
    print(f"{'family':<18} {own_name:>14} {'lnserve ref':>12} {'torch':>12} {'torch relative':>16}")
    want = np.zeros(4096 * ACC_ROWS, dtype=np.float64)
    xa, ya = floats(lib, 4096 * ACC_ROWS), floats(lib, 4096 * ACC_ROWS)
    for f in range(N_FAMILIES):
        err, rel = [0.0, 0.0, 0.0], 0.0
        for n in (768, 4096):
            count = n * ACC_ROWS
            lib.peers_fill_family(f, ACC_SEED + n, ptr(xa), n, ACC_ROWS)
            lib.peers_ref64(n, ACC_ROWS, ptr(xa), ptr(g), ptr(b), EPS, ptr(want))
            for k, what in enumerate((DEFAULT, REF)):
                lib.peers_ln(what, n, ACC_ROWS, ptr(xa), ptr(ya), ptr(g), ptr(b))
                err[k] = max(err[k], lib.peers_max_ulp(ptr(ya), ptr(want), count))
            with torch.inference_mode():
                yt = F.layer_norm(torch.from_numpy(xa[:count]).view(ACC_ROWS, n), (n,),
                                  torch.from_numpy(g[:n]), torch.from_numpy(b[:n]), EPS)
            yt = np.ascontiguousarray(yt.numpy(), dtype=np.float32).reshape(-1)
            err[2] = max(err[2], lib.peers_max_ulp(ptr(yt), ptr(want), count))
            rel = max(rel, lib.peers_max_rel(ptr(yt), ptr(want), count))
        name = lib.peers_family_name(f).decode()
        print(f"{name:<18} {err[0]:14.3g} {err[1]:12.3g} {err[2]:12.3g} {rel:16.2g}")


if __name__ == "__main__":
    main()
