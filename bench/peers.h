/*
 * peers.h -- what the peer benchmarks share (bench/bench_dnnl.c, linked in;
 * bench/bench_torch.py, through build/<variant>/bench/liblnpeers.so and
 * ctypes): the benchmark data of bench_kernel.c, the accuracy row families,
 * a float64 reference, the error measure, and round-robin timing.
 *
 * Every peer is measured against lnserve's default kernel (ln_rows after
 * ln_dispatch_init) and a memcpy of the same bytes in the same process and
 * the same run, repetitions interleaved, so the ratios survive a noisy host
 * (../shared/PERF-NOTES.md). Single-threaded; nothing here is thread-safe.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define PEERS_EPS 1e-5f
#define PEERS_REPS 7
#define PEERS_MIN_REP_S 0.02 /* a repetition loops at least 20 ms */

/* Accuracy families (names from peers_family_name): 0 N(0,1), 1 offset
 * (mean 1e4, sd 1), 2 tiny sd 1e-4 at mean 0, 3 tiny sd 1e-4 at mean 1,
 * 4 Cauchy, 5 mixed scales (second half of each row 1000x the first).
 * As in tests/test_core.c, whose generator (tests/test_rng.h) they use. */
#define PEERS_N_FAMILIES 6
/* The accuracy runs (bench_dnnl.c, bench_torch.py): rows of family f at
 * N = 768 and 4096 drawn with peers_fill_family(f, PEERS_ACC_SEED + N, ...),
 * PEERS_ACC_ROWS rows each, so every peer sees the same rows. */
#define PEERS_ACC_SEED 20261123u
#define PEERS_ACC_ROWS 64

/* What peers_rep and peers_ln run. */
typedef enum peers_what {
    PEERS_MEMCPY = 0,  /* memcpy of the row bytes */
    PEERS_DEFAULT = 1, /* ln_rows: the kernel ln_dispatch_init picked */
    PEERS_REF = 2,     /* ln_rows_ref */
} peers_what;

/* ln_dispatch_init from the environment, as lnserve starts; returns the
 * default kernel's name ("avx2", "ref", ...). Call once before the rest. */
const char *peers_init(void);

/* The family's name, or NULL when f is out of range. */
const char *peers_family_name(int f);

/* rows rows of n floats of family f, from a stream seeded by seed and f. */
void peers_fill_family(int f, uint64_t seed, float *x, size_t n, size_t rows);

/* bench_kernel.c's data (10 + uniform [0, 2), xorshift from its seed) and
 * its gain and bias, so every kernel bench normalizes the same rows. */
void peers_fill_bench(float *x, size_t count);
void peers_fill_affine(float *gain, float *bias, size_t n);

/* LayerNorm in float64 with gain, bias and eps (compensated two-pass
 * moments): the reference every implementation is measured against. */
void peers_ref64(size_t n, size_t rows, const float *x, const float *gain, const float *bias,
                 float eps, double *y);

/* Max over elements of |got - want| / ulp(max(1, |want|)), ulp(m) the
 * spacing of floats at m (tests/test_core.c's measure); NaN is infinite. */
double peers_max_ulp(const float *got, const double *want, size_t count);

/* Max over elements of |got - want| / max(1, |want|): the same error as a
 * plain relative figure (the issue quotes PyTorch's so); NaN is infinite. */
double peers_max_rel(const float *got, const double *want, size_t count);

/* One call of what (eps PEERS_EPS, groups 1, no diagnostics). */
void peers_ln(int what, size_t n, size_t rows, const float *x, float *y, const float *gain,
              const float *bias);

/* Seconds per call of what over iters back-to-back calls: one repetition. */
double peers_rep(int what, size_t n, size_t rows, const float *x, float *y, const float *gain,
                 const float *bias, size_t iters);

/*
 * count floats, 64-byte aligned, zeroed (every page touched now, outside any
 * timing); exits on failure. Both benches take their buffers from here, so
 * lnserve and the peers read and write the same kind of memory in
 * bench_torch.py as in bench_dnnl (numpy's large arrays would be 16-byte
 * aligned, its zeros untouched). Freed with free().
 */
float *peers_alloc_floats(size_t count);

/* Monotonic clock, seconds. */
double peers_now_s(void);

/*
 * Round-robin timing of k callables: each is warmed up and its repetition
 * sized to PEERS_MIN_REP_S, then PEERS_REPS rounds each run one repetition
 * of every callable in turn; median_s[j] is callable j's median seconds per
 * call. Interleaving keeps a slow spell of the host from landing on one
 * callable only.
 */
typedef void (*peers_call_fn)(void *ctx);
void peers_time_rr(const peers_call_fn *calls, void *const *ctxs, size_t k, double *median_s);

/* Median of count values (sorts v). */
double peers_median(double *v, size_t count);
