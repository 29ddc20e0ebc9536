/*
 * peers.c -- the peer benchmarks' shared data, reference, error measure and
 * timing (peers.h). Built twice: into bench_dnnl, and with -fPIC into
 * liblnpeers.so for bench_torch.py.
 */
#include "peers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ln.h"
#include "../tests/test_rng.h"

#define PEERS_MAX_CALLS 8

static const struct {
    const char *name;
    double mean, sd;
    int kind; /* 0 normal, 1 Cauchy, 2 mixed scales */
} families[PEERS_N_FAMILIES] = {
    {"N(0,1)", 0.0, 1.0, 0},        {"offset 1e4", 1e4, 1.0, 0},
    {"tiny sd 1e-4", 0.0, 1e-4, 0}, {"tiny sd 1e-4 at 1", 1.0, 1e-4, 0},
    {"Cauchy", 0.0, 1.0, 1},        {"mixed 1e3", 0.0, 1.0, 2},
};

const char *peers_init(void)
{
    const char *why = NULL;

    if (ln_dispatch_init(&why) != 0 && why)
        fprintf(stderr, "peers: %s\n", why);
    return ln_kernel_name();
}

const char *peers_family_name(int f)
{
    return f >= 0 && f < PEERS_N_FAMILIES ? families[f].name : NULL;
}

void peers_fill_family(int f, uint64_t seed, float *x, size_t n, size_t rows)
{
    rng r = rng_seeded(seed, families[f].name);
    size_t i, j;

    for (i = 0; i < rows; i++) {
        float *row = x + i * n;

        for (j = 0; j < n; j++) {
            if (families[f].kind == 1)
                row[j] = (float)(families[f].mean +
                                 families[f].sd * tan(3.141592653589793 * (rng_unif(&r) - 0.5)));
            else
                row[j] = (float)(families[f].mean + families[f].sd * rng_normal(&r));
        }
        if (families[f].kind == 2)
            for (j = n / 2; j < n; j++)
                row[j] = (float)(row[j] * 1000.0);
    }
}

void peers_fill_bench(float *x, size_t count)
{
    uint64_t state = 88172645463325252ull; /* bench_kernel.c's seed */
    size_t i;

    for (i = 0; i < count; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        x[i] = 10.0f + (float)(state >> 40) * 0x1p-23f;
    }
}

void peers_fill_affine(float *gain, float *bias, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        gain[i] = 1.0f + (float)(i % 7) * 0.01f;
        bias[i] = (float)(i % 5) * 0.1f;
    }
}

/* Neumaier's compensated sum: the reference must not lose what it judges. */
typedef struct ksum {
    double s, c;
} ksum;

static void ksum_add(ksum *k, double v)
{
    double t = k->s + v;

    if (fabs(k->s) >= fabs(v))
        k->c += (k->s - t) + v;
    else
        k->c += (v - t) + k->s;
    k->s = t;
}

void peers_ref64(size_t n, size_t rows, const float *x, const float *gain, const float *bias,
                 float eps, double *y)
{
    size_t i, j;

    for (i = 0; i < rows; i++) {
        const float *row = x + i * n;
        ksum s = {0.0, 0.0}, q = {0.0, 0.0};
        double mean, rstd;

        for (j = 0; j < n; j++)
            ksum_add(&s, row[j]);
        mean = (s.s + s.c) / (double)n;
        for (j = 0; j < n; j++) {
            double d = (double)row[j] - mean;

            ksum_add(&q, d * d);
        }
        rstd = 1.0 / sqrt((q.s + q.c) / (double)n + (double)eps);
        for (j = 0; j < n; j++)
            y[i * n + j] = ((double)row[j] - mean) * rstd * (double)gain[j] + (double)bias[j];
    }
}

double peers_max_ulp(const float *got, const double *want, size_t count)
{
    double worst = 0.0;
    size_t i;

    for (i = 0; i < count; i++) {
        double w = want[i], m = fmax(1.0, fabs(w));
        int e;

        if (isnan(got[i]) || isnan(w))
            return INFINITY;
        (void)frexp(m, &e); /* m = f 2^e, f in [0.5, 1): floor(log2 m) = e - 1 */
        worst = fmax(worst, fabs((double)got[i] - w) / ldexp(1.0, e - 1 - 23));
    }
    return worst;
}

double peers_max_rel(const float *got, const double *want, size_t count)
{
    double worst = 0.0;
    size_t i;

    for (i = 0; i < count; i++) {
        if (isnan(got[i]) || isnan(want[i]))
            return INFINITY;
        worst = fmax(worst, fabs((double)got[i] - want[i]) / fmax(1.0, fabs(want[i])));
    }
    return worst;
}

void peers_ln(int what, size_t n, size_t rows, const float *x, float *y, const float *gain,
              const float *bias)
{
    const ln_params p = {LN_KIND_LAYERNORM, n, 1, PEERS_EPS, gain, bias};

    if (what == PEERS_DEFAULT)
        ln_rows(&p, x, y, rows, NULL);
    else if (what == PEERS_REF)
        ln_rows_ref(&p, x, y, rows, NULL);
    else
        memcpy(y, x, n * rows * sizeof(float));
}

float *peers_alloc_floats(size_t count)
{
    size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);

    if (!p) {
        fprintf(stderr, "peers: out of memory (%zu floats)\n", count);
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

double peers_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double peers_rep(int what, size_t n, size_t rows, const float *x, float *y, const float *gain,
                 const float *bias, size_t iters)
{
    double t0 = peers_now_s();
    size_t i;

    for (i = 0; i < iters; i++)
        peers_ln(what, n, rows, x, y, gain, bias);
    return (peers_now_s() - t0) / (double)iters;
}

static int cmp_double(const void *a, const void *b)
{
    double da = *(const double *)a, db = *(const double *)b;

    return (da > db) - (da < db);
}

double peers_median(double *v, size_t count)
{
    qsort(v, count, sizeof(v[0]), cmp_double);
    return count % 2 ? v[count / 2] : 0.5 * (v[count / 2 - 1] + v[count / 2]);
}

void peers_time_rr(const peers_call_fn *calls, void *const *ctxs, size_t k, double *median_s)
{
    double reps[PEERS_MAX_CALLS][PEERS_REPS];
    size_t iters[PEERS_MAX_CALLS];
    size_t j, r, i;

    if (k > PEERS_MAX_CALLS) {
        fprintf(stderr, "peers_time_rr: at most %d callables\n", PEERS_MAX_CALLS);
        exit(1);
    }
    /* Warm-up (two calls: the first may pay for lazy setup), which also
     * sizes a repetition. */
    for (j = 0; j < k; j++) {
        double t0, dt;

        calls[j](ctxs[j]);
        t0 = peers_now_s();
        calls[j](ctxs[j]);
        dt = peers_now_s() - t0;
        iters[j] = (size_t)(PEERS_MIN_REP_S / (dt > 1e-9 ? dt : 1e-9)) + 1;
    }
    for (r = 0; r < PEERS_REPS; r++)
        for (j = 0; j < k; j++) {
            double t0 = peers_now_s();

            for (i = 0; i < iters[j]; i++)
                calls[j](ctxs[j]);
            reps[j][r] = (peers_now_s() - t0) / (double)iters[j];
        }
    for (j = 0; j < k; j++)
        median_s[j] = peers_median(reps[j], PEERS_REPS);
}
