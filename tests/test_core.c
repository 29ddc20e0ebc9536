/*
 * test_core.c -- cmocka tests of core/ (ln.h): the reference against a
 * long-double oracle, every vector kernel (AVX2, AVX-512) against the
 * reference with the same tests, the dispatch.
 *
 * Two error measures, both relative to max(1, |want|):
 *   u    |got - want| / max(1, |want|) in units of u = 2^-24, float's unit
 *        roundoff. Used for the reference against the oracle and for the
 *        diagnostics (mean, rstd, radius).
 *   ulp  |got - want| / ulp(max(1, |want|)), where ulp(m) = 2^(floor(log2 m)
 *        - 23) is the spacing of floats at m: an ulp is 2^-23 at 1, 2^-22
 *        at 2. Used for the outputs y of a vector kernel against the
 *        reference, whose outputs are the float64 result correctly rounded
 *        (within 1.001 u of the exact value, checked against the oracle).
 *   An ulp at m is between 1 and 2 u of m (ulp(m) / m in (2^-24, 2^-23]),
 *   so 4 ulp is 8 u at a power of two and just over 4 u below the next one:
 *   the issue's bound "4 ulp of max(1, |y|)" is VEC_TOL_ULP_AVX2, tighter
 *   than the 8 u the outputs were held to before.
 * The largest error seen per row family is printed at the end.
 *
 * Random rows come from one seed, printed at start; LNSERVE_TEST_SEED=N
 * repeats a run. A vector kernel's tests are skipped on a CPU without it.
 * The first test must run before any ln_dispatch_init (order of the table).
 * The mean diagnostic's error is measured against the group's scale, see
 * max_mean_err.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_rng.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../core/ln.h"

#define U 0x1p-24

/*
 * The reference rounds once from double (compensated sums), so it is within
 * half an ulp of the exact result: <= 1 u normalized. The small excess
 * allows for the double arithmetic before that one rounding.
 */
#define REF_TOL_U 1.001

/*
 * A vector kernel against the reference: outputs within the kernel's tol_ulp, mean,
 * rstd and radius within VEC_TOL_U.
 *
 * The issue asks for 4 ulp of max(1, |y|) on every family; each kernel
 * states its bound in all_kernels[]:
 *   avx2    4 ulp. Measured over 30 seeds (every test here: the issue's
 *           families at N 1..65536 and groups 1..64, the hard rows, the
 *           162000-row batch): at most 3 ulp, mostly 1. Its output pass
 *           carries d = x - m and s = rstd * g in two floats (ln_avx2.c);
 *           with one float each it reached 5 ulp.
 *   avx512  4 ulp. The same two-float output pass as avx2 on 16 lanes;
 *           measured over 30 seeds on an AMD EPYC with AVX-512: at most
 *           3 ulp, mostly 1. (Its earlier single-float pass reached 6.)
 * Diagnostics: at most 2 u.
 */
#define VEC_TOL_ULP_AVX2 4.0
#define VEC_TOL_ULP_AVX512 4.0
#define VEC_TOL_U 8.0

/* The kernels under test; has() says whether this CPU can run one. */
typedef struct kernel_case {
    const char *name;
    ln_rows_fn fn;
    int (*has)(void);
    double tol_ulp; /* outputs against the reference, in ulp (top comment) */
} kernel_case;

static int has_always(void)
{
    return 1;
}

/* The reference first, then every vector kernel. */
static const kernel_case all_kernels[] = {
    { "ref", ln_rows_ref, has_always, 0.5 },
    { "avx2", ln_rows_avx2, ln_cpu_has_avx2, VEC_TOL_ULP_AVX2 },
    { "avx512", ln_rows_avx512, ln_cpu_has_avx512, VEC_TOL_ULP_AVX512 },
};
#define N_KERNELS (sizeof(all_kernels) / sizeof(all_kernels[0]))
static const kernel_case *const vec_kernels = all_kernels + 1;
#define N_VEC_KERNELS (N_KERNELS - 1)

/* Runs body once per vector kernel this CPU has; skips when it has none. */
static void for_vec_kernels(void (*body)(const kernel_case *))
{
    size_t i, ran = 0;

    for (i = 0; i < N_VEC_KERNELS; i++) {
        if (vec_kernels[i].has()) {
            body(&vec_kernels[i]);
            ran++;
        }
    }
    if (!ran)
        skip();
}

static uint64_t test_seed;

/* A stream for one test: depends on the run's seed and the name only. */
static rng rng_for(const char *name)
{
    return rng_seeded(test_seed, name);
}

static void fill_normal(rng *r, float *x, size_t len, double mean, double sd)
{
    size_t i;

    for (i = 0; i < len; i++)
        x[i] = (float)(mean + sd * rng_normal(r));
}

/* Gains in +-[0.5, 1.5] (one in ten negative), biases in [-1, 1]. */
static void fill_affine(rng *r, float *g, float *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        double gi = 0.5 + rng_unif(r);

        g[i] = (float)(rng_unif(r) < 0.1 ? -gi : gi);
        b[i] = (float)(2.0 * rng_unif(r) - 1.0);
    }
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);

    assert_non_null(p);
    return p;
}

/* ---- the largest error seen per family, printed at the end ---- */

#define MAX_FAMILIES 160

static struct family_err {
    char name[64];
    double y, yulp, mean, rstd, radius; /* y in u and in ulp, the rest in u */
} fam_tab[MAX_FAMILIES];
static size_t fam_count;

static void fam_note(const char *name, double ey, double eulp, double em, double er,
                     double erad)
{
    size_t i;

    for (i = 0; i < fam_count; i++)
        if (strcmp(fam_tab[i].name, name) == 0)
            break;
    if (i == fam_count) {
        assert_true(fam_count < MAX_FAMILIES);
        snprintf(fam_tab[fam_count++].name, sizeof(fam_tab[0].name), "%s", name);
    }
    fam_tab[i].y = fmax(fam_tab[i].y, ey);
    fam_tab[i].yulp = fmax(fam_tab[i].yulp, eulp);
    fam_tab[i].mean = fmax(fam_tab[i].mean, em);
    fam_tab[i].rstd = fmax(fam_tab[i].rstd, er);
    fam_tab[i].radius = fmax(fam_tab[i].radius, erad);
}

/* ---- normalized errors ---- */

/* |got - want| / max(1, |want|) in u; a NaN on either side is infinite. */
static double nerr_u(double got, long double want)
{
    double w = (double)want;

    if (isnan(got) || isnan(w))
        return INFINITY;
    return fabs(got - w) / fmax(1.0, fabs(w)) / U;
}

/* |got - want| in ulps of a float at max(1, |want|) (see the top comment);
 * a NaN on either side is infinite. */
static double ulp_err(double got, long double want)
{
    double w = (double)want, m = fmax(1.0, fabs(w));
    int e;

    if (isnan(got) || isnan(w))
        return INFINITY;
    (void)frexp(m, &e); /* m = f 2^e, f in [0.5, 1): floor(log2 m) = e - 1 */
    return fabs(got - w) / ldexp(1.0, e - 1 - 23);
}

static double max_ulp_f(const float *got, const float *want, size_t count)
{
    double m = 0.0;
    size_t i;

    for (i = 0; i < count; i++)
        m = fmax(m, ulp_err(got[i], want[i]));
    return m;
}

static double max_ulp_ld(const float *got, const long double *want, size_t count)
{
    double m = 0.0;
    size_t i;

    for (i = 0; i < count; i++)
        m = fmax(m, ulp_err(got[i], want[i]));
    return m;
}

static double max_nerr_f(const float *got, const float *want, size_t count)
{
    double m = 0.0;
    size_t i;

    for (i = 0; i < count; i++)
        m = fmax(m, nerr_u(got[i], want[i]));
    return m;
}

static double max_nerr_ld(const float *got, const long double *want,
                          size_t count)
{
    double m = 0.0;
    size_t i;

    for (i = 0; i < count; i++)
        m = fmax(m, nerr_u(got[i], want[i]));
    return m;
}

/*
 * The mean diagnostic is compared in units of max(1, |mean|, 1/rstd): a
 * float kernel centres to within a few u of the group's scale sqrt(v + eps)
 * (MATH.md 6), which is what the outputs feel; on a row with mean 0 and
 * sd 1000 that is ~1e-4 absolute, not a few u of 1.
 */
static double max_mean_err(const float *got, const float *want,
                           const float *want_rstd, size_t count)
{
    double m = 0.0;
    size_t i;

    for (i = 0; i < count; i++) {
        double scale = fmax(1.0, fabs(want[i]));

        if (want_rstd[i] > 0.0f)
            scale = fmax(scale, 1.0 / want_rstd[i]);
        if (isnan(got[i]) || isnan(want[i]))
            return INFINITY;
        m = fmax(m, fabs((double)got[i] - want[i]) / scale / U);
    }
    return m;
}

/* ---- kernel outputs with every diagnostic ---- */

typedef struct outs {
    float *y, *mean, *rstd, *radius;
    ln_diag diag;
} outs;

static void outs_init(outs *o, size_t rows, const ln_params *p)
{
    o->y = xcalloc(rows * p->n, sizeof(float));
    o->mean = xcalloc(rows * p->groups, sizeof(float));
    o->rstd = xcalloc(rows * p->groups, sizeof(float));
    o->radius = xcalloc(rows, sizeof(float));
    o->diag = (ln_diag){ .mean = o->mean, .rstd = o->rstd, .radius = o->radius };
}

static void outs_fini(outs *o)
{
    free(o->y);
    free(o->mean);
    free(o->rstd);
    free(o->radius);
}

static void fail_case(const char *family, const ln_params *p, double ey,
                      double eulp, double em, double er, double erad, double tol_u,
                      double tol_ulp)
{
    fail_msg("%s: kind %d N=%zu G=%zu eps=%g gain %s bias %s: error y %.2f u "
             "(%.2f ulp), mean %.2f u, rstd %.2f u, radius %.2f u; bound %.3f u "
             "(outputs of a vector kernel: %.1f ulp)",
             family, (int)p->kind, p->n, p->groups, (double)p->eps,
             p->gain ? "on" : "off", p->bias ? "on" : "off", ey, eulp, em, er, erad,
             tol_u, tol_ulp);
}

/* A vector kernel against the reference on rows of x; all outputs. The
 * family is noted as "<kernel>/ref <family>". */
static void check_vs_ref(const kernel_case *kc, const char *family, const ln_params *p,
                         const float *x, size_t rows)
{
    outs want, got;
    double ey, eulp, em, er, erad;
    char name[64];

    snprintf(name, sizeof(name), "%s/ref %s", kc->name, family);
    outs_init(&want, rows, p);
    outs_init(&got, rows, p);
    ln_rows_ref(p, x, want.y, rows, &want.diag);
    kc->fn(p, x, got.y, rows, &got.diag);
    ey = max_nerr_f(got.y, want.y, rows * p->n);
    eulp = max_ulp_f(got.y, want.y, rows * p->n);
    em = max_mean_err(got.mean, want.mean, want.rstd, rows * p->groups);
    er = max_nerr_f(got.rstd, want.rstd, rows * p->groups);
    erad = max_nerr_f(got.radius, want.radius, rows);
    fam_note(name, ey, eulp, em, er, erad);
    if (!(eulp <= kc->tol_ulp && em <= VEC_TOL_U && er <= VEC_TOL_U && erad <= VEC_TOL_U))
        fail_case(name, p, ey, eulp, em, er, erad, VEC_TOL_U, kc->tol_ulp);
    outs_fini(&want);
    outs_fini(&got);
}

/* ---- the oracle: long double, Kahan sums, no rounding to float ---- */

static long double kahan_ld(const float *x, size_t len, long double centre,
                            int squares)
{
    long double s = 0.0L, c = 0.0L;
    size_t i;

    for (i = 0; i < len; i++) {
        long double v = (long double)x[i] - centre;
        long double t, yv;

        if (squares)
            v *= v;
        yv = v - c;
        t = s + yv;
        c = (t - s) - yv;
        s = t;
    }
    return s;
}

static void oracle_rows(const ln_params *p, const float *x, size_t rows,
                        long double *y, long double *mean, long double *rstd,
                        long double *radius)
{
    const size_t n = p->n, groups = p->groups, len = n / groups;
    size_t r, k, i;

    for (r = 0; r < rows; r++) {
        long double frac = 0.0L;

        for (k = 0; k < groups; k++) {
            const float *xg = x + r * n + k * len;
            long double m = 0.0L, v, denom, rs = 0.0L;

            if (p->kind == LN_KIND_LAYERNORM)
                m = kahan_ld(xg, len, 0.0L, 0) / (long double)len;
            v = kahan_ld(xg, len, m, 1) / (long double)len;
            denom = v + (long double)p->eps;
            if (denom > 0.0L) {
                rs = 1.0L / sqrtl(denom);
                frac += v / denom;
            }
            for (i = 0; i < len; i++) {
                size_t j = k * len + i;
                long double t = ((long double)xg[i] - m) * rs;

                if (p->gain)
                    t *= p->gain[j];
                if (p->bias)
                    t += p->bias[j];
                y[r * n + j] = t;
            }
            mean[r * groups + k] = m;
            rstd[r * groups + k] = rs;
        }
        radius[r] = sqrtl(frac / (long double)groups);
    }
}

/* The reference against the oracle on rows of x; all outputs. */
static void check_vs_oracle(const char *family, const ln_params *p,
                            const float *x, size_t rows)
{
    long double *y = xcalloc(rows * p->n, sizeof(long double));
    long double *mean = xcalloc(rows * p->groups, sizeof(long double));
    long double *rstd = xcalloc(rows * p->groups, sizeof(long double));
    long double *radius = xcalloc(rows, sizeof(long double));
    outs got;
    double ey, em, er, erad;

    outs_init(&got, rows, p);
    oracle_rows(p, x, rows, y, mean, rstd, radius);
    ln_rows_ref(p, x, got.y, rows, &got.diag);
    ey = max_nerr_ld(got.y, y, rows * p->n);
    em = max_nerr_ld(got.mean, mean, rows * p->groups);
    er = max_nerr_ld(got.rstd, rstd, rows * p->groups);
    erad = max_nerr_ld(got.radius, radius, rows);
    fam_note(family, ey, max_ulp_ld(got.y, y, rows * p->n), em, er, erad);
    if (!(ey <= REF_TOL_U && em <= REF_TOL_U && er <= REF_TOL_U &&
          erad <= REF_TOL_U))
        fail_case(family, p, ey, max_ulp_ld(got.y, y, rows * p->n), em, er, erad,
                  REF_TOL_U, 0.5);
    outs_fini(&got);
    free(y);
    free(mean);
    free(rstd);
    free(radius);
}

/* Row families, each a name and how its rows are drawn. */
typedef struct row_family {
    const char *name;
    double mean, sd;
    /* 1: a few elements at +-1000 sd, as in LLM activations; 2: the first
     * 32 elements 3 sd high, which sends the vector kernels' one-pass
     * statistics to their exact two-pass fallback; 3: Cauchy (heavy tails:
     * mean + sd tan(pi (U - 1/2))); 4: mixed scales, the second half of the
     * row 1000 times the first; 5: constant, every element = mean */
    int outliers;
} row_family;

static const row_family families[] = {
    { "normal", 0.0, 1.0, 0 },    { "offset 1e4", 1e4, 1.0, 0 },
    { "offset 1e6", 1e6, 1.0, 0 }, { "offset -1e5", -1e5, 1.0, 0 },
    { "tiny sd 1e-4", 0.0, 1e-4, 0 }, { "tiny sd 1e-4 at 1", 1.0, 1e-4, 0 },
    { "outliers", 0.5, 1.0, 1 },  { "step at 1e4", 1e4, 1.0, 2 },
    { "cauchy", 0.0, 1.0, 3 },    { "mixed 1e3", 0.0, 1.0, 4 },
    { "constant", 3.3, 0.0, 5 },
};
/* The families of the issue "The core at its limits", indexes into
 * families[]: N(0,1), offset, tiny variance, Cauchy, mixed scales, constant. */
static const size_t issue_families[] = { 0, 1, 4, 8, 9, 10 };
#define N_FAMILIES (sizeof(families) / sizeof(families[0]))

static void fill_family(rng *r, const row_family *f, float *x, size_t len)
{
    fill_normal(r, x, len, f->mean, f->sd);
    if (f->outliers == 3) {
        size_t i;

        for (i = 0; i < len; i++)
            x[i] = (float)(f->mean + f->sd * tan(3.141592653589793 * (rng_unif(r) - 0.5)));
    } else if (f->outliers == 4) {
        size_t i;

        for (i = len / 2; i < len; i++)
            x[i] = (float)(x[i] * 1000.0);
    } else if (f->outliers == 2) {
        size_t i;

        for (i = 0; i < len && i < 32; i++)
            x[i] = (float)(x[i] + 3.0 * f->sd);
    } else if (f->outliers && len >= 4) {
        x[len / 3] = (float)(f->mean + 1000.0 * f->sd);
        x[len - 1] = (float)(f->mean - 700.0 * f->sd);
    }
}

/* ---- tests ---- */

static void test_dispatch_before_init(void **state)
{
    const ln_params p = { LN_KIND_LAYERNORM, 5, 1, 1e-5f, NULL, NULL };
    const float x[5] = { 1, 2, 3, 4, 6 };
    float y[5], want[5];

    assert_string_equal(ln_kernel_name(), "ref");
    ln_rows(&p, x, y, 1, NULL);
    ln_rows_ref(&p, x, want, 1, NULL);
    assert_memory_equal(y, want, sizeof(y));
}

static void test_params_check(void **state)
{
    ln_params p = { LN_KIND_LAYERNORM, 768, 1, 1e-5f, NULL, NULL };
    const char *why = "unset";

    assert_int_equal(ln_params_check(&p, &why), 0);
    assert_null(why);
    p.groups = 768;
    assert_int_equal(ln_params_check(&p, NULL), 0);
    p.eps = 0.0f;
    assert_int_equal(ln_params_check(&p, NULL), 0);

    p = (ln_params){ LN_KIND_RMSNORM, 0, 1, 1e-5f, NULL, NULL };
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    assert_non_null(why);
    p.n = 10;
    p.groups = 0;
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    p.groups = 3;
    why = NULL;
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    assert_non_null(strstr(why, "divide"));
    p.groups = 5;
    p.eps = -1e-5f;
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    p.eps = NAN;
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    p.eps = INFINITY;
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    p.eps = 1e-5f;
    p.kind = (ln_kind)7;
    assert_int_equal(ln_params_check(&p, &why), -EINVAL);
    assert_int_equal(ln_params_check(NULL, &why), -EINVAL);
}

/* The reference against the long-double oracle over families and shapes. */
static void test_ref_vs_oracle(void **state)
{
    static const size_t shapes[][2] = { /* N, G */
        { 1, 1 },   { 2, 1 },    { 3, 1 },    { 7, 1 },     { 8, 2 },
        { 31, 1 },  { 64, 8 },   { 100, 4 },  { 768, 1 },   { 768, 64 },
        { 1000, 8 }, { 4096, 1 }, { 4096, 4096 }, { 100003, 1 },
    };
    rng r = rng_for("ref_vs_oracle");
    size_t s, f, rows = 3;
    float *x = xcalloc(rows * 100003, sizeof(float));
    float *g = xcalloc(100003, sizeof(float));
    float *b = xcalloc(100003, sizeof(float));

    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        for (f = 0; f < N_FAMILIES; f++) {
            const size_t n = shapes[s][0];
            ln_params p = { LN_KIND_LAYERNORM, n, shapes[s][1], 1e-5f, NULL, NULL };
            size_t i;

            for (i = 0; i < rows; i++)
                fill_family(&r, &families[f], x + i * n, n);
            fill_affine(&r, g, b, n);
            check_vs_oracle("ref/oracle LN", &p, x, rows);
            p.eps = 0.0f;
            p.gain = g;
            p.bias = b;
            check_vs_oracle("ref/oracle LN eps 0 affine", &p, x, rows);
            p.kind = LN_KIND_RMSNORM;
            p.eps = 1e-5f;
            check_vs_oracle("ref/oracle RMS affine", &p, x, rows);
        }
    }
    free(x);
    free(g);
    free(b);
}

/* Every N from 1 to 300, all four affine combinations, both kinds. */
static void vec_every_n(const kernel_case *kc)
{
    rng r = rng_for("vec_every_n");
    const size_t rows = 4;
    float *x = xcalloc(rows * 300, sizeof(float));
    float *g = xcalloc(300, sizeof(float));
    float *b = xcalloc(300, sizeof(float));
    size_t n;

    for (n = 1; n <= 300; n++) {
        ln_params p = { LN_KIND_LAYERNORM, n, 1, 1e-5f, NULL, NULL };

        fill_affine(&r, g, b, n);
        p.gain = n & 1 ? g : NULL;
        p.bias = n & 2 ? b : NULL;
        fill_family(&r, &families[0], x, n);
        fill_family(&r, &families[0], x + n, n);
        fill_family(&r, &families[1], x + 2 * n, n); /* offset 1e4 */
        fill_family(&r, &families[n & 4 ? 6 : 7], x + 3 * n, n); /* outliers, step */
        check_vs_ref(kc, "LN N=1..300", &p, x, rows);
        p.kind = LN_KIND_RMSNORM;
        check_vs_ref(kc, "RMS N=1..300", &p, x, rows);
    }
    free(x);
    free(g);
    free(b);
}

static void test_vec_every_n(void **state)
{
    for_vec_kernels(vec_every_n);
}

/* Large N (several fold blocks of pass 2, odd tails) on every family. */
static void vec_large_n(const kernel_case *kc)
{
    static const size_t ns[] = { 4096, 65536, 100003 };
    rng r = rng_for("vec_large_n");
    float *x = xcalloc(100003, sizeof(float));
    float *g = xcalloc(100003, sizeof(float));
    float *b = xcalloc(100003, sizeof(float));
    size_t s, f;
    char name[48];

    for (s = 0; s < sizeof(ns) / sizeof(ns[0]); s++) {
        fill_affine(&r, g, b, ns[s]);
        for (f = 0; f < N_FAMILIES; f++) {
            ln_params p = { LN_KIND_LAYERNORM, ns[s], 1, 1e-5f, g, b };

            snprintf(name, sizeof(name), "large %s", families[f].name);
            fill_family(&r, &families[f], x, ns[s]);
            check_vs_ref(kc, name, &p, x, 1);
            p.eps = 0.0f;
            check_vs_ref(kc, name, &p, x, 1);
            p.kind = LN_KIND_RMSNORM;
            check_vs_ref(kc, "large RMS", &p, x, 1);
        }
    }
    free(x);
    free(g);
    free(b);
}

static void test_vec_large_n(void **state)
{
    for_vec_kernels(vec_large_n);
}

/* Offset and tiny-variance rows at serving sizes, with groups, eps 0 too. */
static void vec_hard_rows(const kernel_case *kc)
{
    static const size_t shapes[][2] = { { 768, 1 }, { 1001, 7 }, { 4096, 8 } };
    rng r = rng_for("vec_hard_rows");
    const size_t rows = 8;
    float *x = xcalloc(rows * 4096, sizeof(float));
    float *g = xcalloc(4096, sizeof(float));
    float *b = xcalloc(4096, sizeof(float));
    size_t s, f, i;

    for (s = 0; s < 3; s++) {
        const size_t n = shapes[s][0];

        fill_affine(&r, g, b, n);
        for (f = 0; f < N_FAMILIES; f++) {
            ln_params p = { LN_KIND_LAYERNORM, n, shapes[s][1], 1e-5f, g, b };

            for (i = 0; i < rows; i++)
                fill_family(&r, &families[f], x + i * n, n);
            check_vs_ref(kc, families[f].name, &p, x, rows);
            p.eps = 0.0f;
            check_vs_ref(kc, families[f].name, &p, x, rows);
            p.gain = NULL;
            p.bias = NULL;
            check_vs_ref(kc, families[f].name, &p, x, rows);
            check_vs_oracle("ref/oracle hard rows", &p, x, rows);
        }
    }
    free(x);
    free(g);
    free(b);
}

static void test_vec_hard_rows(void **state)
{
    for_vec_kernels(vec_hard_rows);
}

/*
 * The issue's families (N(0,1), offset 1e4, sd 1e-4, Cauchy, mixed scales,
 * constant) at N from 1 to 65536 and groups 1, 2, 8, 64 (where they divide
 * N), gain and bias on, eps 1e-5 and 0: outputs within the kernel's tol_ulp of the
 * reference, noted per family as "<kernel>/ref issue <family>".
 */
static void vec_issue_families(const kernel_case *kc)
{
    static const size_t ns[] = { 1,   2,   3,   5,    7,    8,    15,   16,   17,    31,
                                 32,  33,  63,  64,   65,   100,  127,  128,  129,   255,
                                 256, 257, 768, 1000, 1024, 4096, 4099, 16384, 65536 };
    static const size_t gs[] = { 1, 2, 8, 64 };
    rng r = rng_for("vec_issue_families");
    const size_t max_elems = 4 * 4099;
    float *x = xcalloc(max_elems > 65536 ? max_elems : 65536, sizeof(float));
    float *g = xcalloc(65536, sizeof(float)), *b = xcalloc(65536, sizeof(float));
    size_t s, f, k, i;
    char name[48];

    for (s = 0; s < sizeof(ns) / sizeof(ns[0]); s++) {
        const size_t n = ns[s], rows = n <= 4099 ? 4 : 1;

        fill_affine(&r, g, b, n);
        for (f = 0; f < sizeof(issue_families) / sizeof(issue_families[0]); f++) {
            const row_family *fam = &families[issue_families[f]];

            snprintf(name, sizeof(name), "issue %s", fam->name);
            for (k = 0; k < sizeof(gs) / sizeof(gs[0]); k++) {
                ln_params p = { LN_KIND_LAYERNORM, n, gs[k], 1e-5f, g, b };

                if (n % gs[k] != 0)
                    continue;
                /* Each group drawn as a row of the family on its own. */
                for (i = 0; i < rows * gs[k]; i++)
                    fill_family(&r, fam, x + i * (n / gs[k]), n / gs[k]);
                check_vs_ref(kc, name, &p, x, rows);
                p.eps = 0.0f;
                check_vs_ref(kc, name, &p, x, rows);
            }
        }
    }
    free(x);
    free(g);
    free(b);
}

static void test_vec_issue_families(void **state)
{
    for_vec_kernels(vec_issue_families);
}

/*
 * x and y offset by 0..7 floats from a 32-byte boundary: the output must be
 * bit-identical to the aligned run, and nothing around y may change.
 */
static void vec_misaligned(const kernel_case *kc)
{
    static const size_t ns[] = { 5, 13, 64, 100, 769 };
    const size_t rows = 3;
    const float sentinel = -12345.5f;
    rng r = rng_for("vec_misaligned");
    size_t s, ox, oy, i;

    for (s = 0; s < sizeof(ns) / sizeof(ns[0]); s++) {
        const size_t n = ns[s], total = rows * n;
        /* C11: the size must be a multiple of the alignment. */
        const size_t bytes = ((total + 16) * sizeof(float) + 31) / 32 * 32;
        float *xa = aligned_alloc(32, bytes);
        float *ya = aligned_alloc(32, bytes);
        float *aligned_y = xcalloc(total, sizeof(float));
        float *g = xcalloc(n, sizeof(float)), *b = xcalloc(n, sizeof(float));
        ln_params p = { LN_KIND_LAYERNORM, n, 1, 1e-5f, g, b };

        assert_non_null(xa);
        assert_non_null(ya);
        fill_affine(&r, g, b, n);
        fill_normal(&r, xa, total, 3.0, 2.0);
        kc->fn(&p, xa, aligned_y, rows, NULL);
        check_vs_ref(kc, "misaligned", &p, xa, rows);
        for (ox = 1; ox < 8; ox++) {
            memmove(xa + ox, xa + ox - 1, total * sizeof(float));
            for (oy = 0; oy < 8; oy++) {
                for (i = 0; i < total + 16; i++)
                    ya[i] = sentinel;
                kc->fn(&p, xa + ox, ya + oy, rows, NULL);
                assert_memory_equal(ya + oy, aligned_y, total * sizeof(float));
                for (i = 0; i < oy; i++)
                    assert_true(ya[i] == sentinel);
                for (i = oy + total; i < total + 16; i++)
                    assert_true(ya[i] == sentinel);
            }
        }
        free(xa);
        free(ya);
        free(aligned_y);
        free(g);
        free(b);
    }
}

static void test_vec_misaligned(void **state)
{
    for_vec_kernels(vec_misaligned);
}

/*
 * A batch big enough for the vector kernels' non-temporal stores (more
 * than ln_nt_min_bytes(), half the L2, out and y != x): y misaligned by 0..15 floats from a 64-byte line,
 * row lengths that keep every group's start moving against the lines, and
 * groups; same bits as the aligned run, nothing written around y, and
 * within the bound of the reference. Every vector kernel runs it.
 */
static void vec_large_batch(const kernel_case *kc)
{
    static const size_t shapes[][3] = { /* N, G, rows */
        { 1001, 7, 2100 }, { 4096, 1, 520 }, { 13, 1, 162000 }
    };
    const float sentinel = -12345.5f;
    rng r = rng_for("vec_large_batch");
    size_t s, oy, i;

    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const size_t n = shapes[s][0], rows = shapes[s][2], total = rows * n;
        const size_t bytes = ((total + 32) * sizeof(float) + 63) / 64 * 64;
        float *x = xcalloc(total, sizeof(float));
        float *ya = aligned_alloc(64, bytes);
        float *want = xcalloc(total, sizeof(float));
        float *g = xcalloc(n, sizeof(float)), *b = xcalloc(n, sizeof(float));
        ln_params p = { LN_KIND_LAYERNORM, n, shapes[s][1], 1e-5f, g, b };

        assert_non_null(ya);
        fill_affine(&r, g, b, n);
        for (i = 0; i < rows; i++)
            fill_family(&r, &families[i % N_FAMILIES], x + i * n, n);
        check_vs_ref(kc, "large batch", &p, x, rows);
        kc->fn(&p, x, want, rows, NULL);
        for (oy = 0; oy < 16; oy += 5) {
            for (i = 0; i < total + 32; i++)
                ya[i] = sentinel;
            kc->fn(&p, x, ya + oy, rows, NULL);
            assert_memory_equal(ya + oy, want, total * sizeof(float));
            for (i = 0; i < oy; i++)
                assert_true(ya[i] == sentinel);
            for (i = oy + total; i < total + 32; i++)
                assert_true(ya[i] == sentinel);
        }
        free(x);
        free(ya);
        free(want);
        free(g);
        free(b);
    }
}

static void test_vec_large_batch(void **state)
{
    for_vec_kernels(vec_large_batch);
}

/* y == x gives the same bits as out of place, for both kernels. */
/* Finite rows whose values spread past ~1.8e19 overflow float squares:
 * the vector kernels must take such a group's moments in double (found by
 * schemathesis: [3e19, -3e19, ...] came back all zeros, radius NaN). */
static void test_huge_spread(void **state)
{
    static const float rows[][8] = {
        {3e19f, -3e19f, 3e19f, -3e19f, 3e19f, -3e19f, 3e19f, -3e19f},
        {1e38f, -1e38f, 0, 5, 1e30f, -3e37f, 2, 1},
    }; /* Differences past FLT_MAX (3.4e38 and -3.4e38 in one group) are out
        * of the vector kernels' range: see ln.h. */
    (void)state;
    for (size_t kern = 0; kern < N_KERNELS; kern++) {
        if (!all_kernels[kern].has())
            continue;
        for (size_t kind = 0; kind < 2; kind++)
            for (size_t groups = 1; groups <= 2; groups++)
                for (size_t t = 0; t < sizeof rows / sizeof rows[0]; t++) {
                    ln_params p = {(ln_kind)kind, 8, groups, 1e-5f, NULL, NULL};
                    float y[8], want[8], mean[2], rstd[2], radius, wr;
                    ln_diag d = {.mean = mean, .rstd = rstd, .radius = &radius}, dw = {.radius = &wr};
                    all_kernels[kern].fn(&p, rows[t], y, 1, &d);
                    ln_rows_ref(&p, rows[t], want, 1, &dw);
                    for (size_t i = 0; i < 8; i++)
                        if (!(fabsf(y[i] - want[i]) <= 1e-5f * fmaxf(1.0f, fabsf(want[i]))))
                            fail_msg("%s kind %zu groups %zu row %zu col %zu: %g, want %g",
                                     all_kernels[kern].name, kind, groups, t, i, y[i],
                                     want[i]);
                    assert_true(isfinite(radius) && fabsf(radius - wr) <= 1e-6f);
                    for (size_t k = 0; k < groups; k++)
                        assert_true(isfinite(mean[k]) && rstd[k] > 0.0f);
                }
    }
}

static void test_inplace(void **state)
{
    static const size_t shapes[][2] = { { 1, 1 }, { 37, 1 }, { 768, 4 }, { 4099, 1 } };
    rng r = rng_for("inplace");
    const size_t rows = 3;
    size_t s, kern;

    for (kern = 0; kern < N_KERNELS; kern++) {
        ln_rows_fn fn = all_kernels[kern].fn;

        if (!all_kernels[kern].has())
            continue;
        for (s = 0; s < 4; s++) {
            const size_t n = shapes[s][0];
            float *x = xcalloc(rows * n, sizeof(float));
            float *y = xcalloc(rows * n, sizeof(float));
            float *g = xcalloc(n, sizeof(float)), *b = xcalloc(n, sizeof(float));
            ln_params p = { LN_KIND_LAYERNORM, n, shapes[s][1], 1e-5f, g, b };

            fill_affine(&r, g, b, n);
            fill_normal(&r, x, rows * n, 1e4, 1.0);
            fn(&p, x, y, rows, NULL);
            fn(&p, x, x, rows, NULL);
            assert_memory_equal(x, y, rows * n * sizeof(float));
            p.kind = LN_KIND_RMSNORM;
            fill_normal(&r, x, rows * n, 0.0, 1.0);
            fn(&p, x, y, rows, NULL);
            fn(&p, x, x, rows, NULL);
            assert_memory_equal(x, y, rows * n * sizeof(float));
            free(x);
            free(y);
            free(g);
            free(b);
        }
    }
}

/*
 * Constant groups: y == bias exactly (0 without bias), radius 0, mean the
 * constant, rstd 1/sqrt(eps) or 0 when eps == 0; never NaN. Also a row whose
 * first group is constant and second is not.
 */
static void test_constant_rows(void **state)
{
    static const float values[] = { 0.0f, 1.0f, -3.5f, 1e4f, 123456.79f, -1e30f };
    static const size_t shapes[][2] = { { 1, 1 }, { 5, 1 }, { 8, 2 }, { 768, 1 }, { 1001, 7 } };
    static const float epss[] = { 0.0f, 1e-5f };
    rng r = rng_for("constant_rows");
    size_t kern, s, v, e, i;

    for (kern = 0; kern < N_KERNELS; kern++) {
        ln_rows_fn fn = all_kernels[kern].fn;

        if (!all_kernels[kern].has())
            continue;
        for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            const size_t n = shapes[s][0], groups = shapes[s][1], len = n / groups;
            float *x = xcalloc(n, sizeof(float)), *y = xcalloc(n, sizeof(float));
            float *g = xcalloc(n, sizeof(float)), *b = xcalloc(n, sizeof(float));
            float *mean = xcalloc(groups, sizeof(float));
            float *rstd = xcalloc(groups, sizeof(float));
            float radius;
            ln_diag d = { .mean = mean, .rstd = rstd, .radius = &radius };

            fill_affine(&r, g, b, n);
            for (v = 0; v < sizeof(values) / sizeof(values[0]); v++) {
                for (e = 0; e < 2; e++) {
                    ln_params p = { LN_KIND_LAYERNORM, n, groups, epss[e], g, b };
                    float want_rstd = epss[e] > 0.0f ? (float)(1.0 / sqrt(epss[e])) : 0.0f;

                    for (i = 0; i < n; i++)
                        x[i] = values[v];
                    fn(&p, x, y, 1, &d);
                    assert_memory_equal(y, b, n * sizeof(float));
                    assert_true(radius == 0.0f);
                    for (i = 0; i < groups; i++) {
                        assert_true(mean[i] == values[v]);
                        assert_true(rstd[i] == want_rstd);
                    }
                    p.bias = NULL;
                    fn(&p, x, y, 1, &d);
                    for (i = 0; i < n; i++)
                        assert_true(y[i] == 0.0f);
                    /* RMSNorm of a zero group is the same case. */
                    if (values[v] == 0.0f) {
                        p.kind = LN_KIND_RMSNORM;
                        p.bias = b;
                        fn(&p, x, y, 1, &d);
                        assert_memory_equal(y, b, n * sizeof(float));
                        assert_true(radius == 0.0f && rstd[0] == want_rstd);
                    }
                    /* Only the first group constant. */
                    if (groups > 1) {
                        p.kind = LN_KIND_LAYERNORM;
                        p.bias = b;
                        fill_normal(&r, x + len, n - len, 2.0, 1.0);
                        fn(&p, x, y, 1, &d);
                        assert_memory_equal(y, b, len * sizeof(float));
                        for (i = len; i < n; i++)
                            assert_false(isnan(y[i]));
                        assert_true(radius > 0.0f && radius < 1.0f);
                    }
                }
            }
            free(x);
            free(y);
            free(g);
            free(b);
            free(mean);
            free(rstd);
        }
    }
}

/* LN-G with G in {1, 2, 8, 64, N}; G = N must return the bias exactly. */
static void test_groups(void **state)
{
    static const size_t ns[] = { 512, 768, 4096 };
    static const size_t gs[] = { 1, 2, 8, 64, 0 }; /* 0: G = N */
    rng r = rng_for("groups");
    const size_t rows = 3;
    size_t s, k, i, kv;

    for (s = 0; s < 3; s++) {
        const size_t n = ns[s];
        float *x = xcalloc(rows * n, sizeof(float));
        float *y = xcalloc(rows * n, sizeof(float));
        float *g = xcalloc(n, sizeof(float)), *b = xcalloc(n, sizeof(float));
        float radius[3];
        ln_diag d = { .radius = radius };

        fill_affine(&r, g, b, n);
        for (k = 0; k < 5; k++) {
            const size_t groups = gs[k] ? gs[k] : n;
            ln_params p = { LN_KIND_LAYERNORM, n, groups, 1e-5f, g, b };

            fill_normal(&r, x, rows * n, 1.0, 2.0);
            check_vs_oracle("ref/oracle groups", &p, x, rows);
            for (kv = 0; kv < N_VEC_KERNELS; kv++) {
                if (!vec_kernels[kv].has())
                    continue;
                check_vs_ref(&vec_kernels[kv], "groups", &p, x, rows);
                p.gain = NULL;
                p.bias = NULL;
                check_vs_ref(&vec_kernels[kv], "groups", &p, x, rows);
                p.kind = LN_KIND_RMSNORM;
                check_vs_ref(&vec_kernels[kv], "groups RMS", &p, x, rows);
                p.kind = LN_KIND_LAYERNORM;
                p.gain = g;
                p.bias = b;
            }
            if (groups == n) {
                ln_rows(&p, x, y, rows, &d);
                ln_rows_ref(&p, x, y, rows, &d);
                for (i = 0; i < rows; i++) {
                    assert_memory_equal(y + i * n, b, n * sizeof(float));
                    assert_true(radius[i] == 0.0f);
                }
                for (kv = 0; kv < N_VEC_KERNELS; kv++) {
                    if (!vec_kernels[kv].has())
                        continue;
                    vec_kernels[kv].fn(&p, x, y, rows, &d);
                    for (i = 0; i < rows; i++) {
                        assert_memory_equal(y + i * n, b, n * sizeof(float));
                        assert_true(radius[i] == 0.0f);
                    }
                }
            }
        }
        free(x);
        free(y);
        free(g);
        free(b);
    }
}

/*
 * MATH.md 5 with eps = 0: LN(a x + c) == LN(x), RMSNorm(a x) == RMSNorm(x).
 * a x + c is rounded to float, which moves each input by up to
 * u |x'_i|, i.e. u |x'_i| / (a sd) in normalized units; that moves the
 * outputs by a few times as much. Bound: twice the kernel bound (two runs)
 * plus 8 u max|x'| / (a sd).
 */
static void test_invariance(void **state)
{
    static const double ac[][2] = { { 0.25, 0.0 }, { 0.25, -2.0 }, { 4.0, 3.0 },
                                    { 3.7, 100.0 }, { 1000.0, -1e4 } };
    rng r = rng_for("invariance");
    const size_t n = 1000;
    float *x = xcalloc(n, sizeof(float)), *xs = xcalloc(n, sizeof(float));
    float *y1 = xcalloc(n, sizeof(float)), *y2 = xcalloc(n, sizeof(float));
    size_t kern, t, i;
    char name[48];

    for (kern = 0; kern < N_KERNELS; kern++) {
        ln_rows_fn fn = all_kernels[kern].fn;

        if (!all_kernels[kern].has())
            continue;
        for (t = 0; t < sizeof(ac) / sizeof(ac[0]); t++) {
            const double a = ac[t][0], c = ac[t][1];
            ln_params p = { LN_KIND_LAYERNORM, n, 1, 0.0f, NULL, NULL };
            double sum = 0.0, ss = 0.0, sd, xmax = 0.0, bound, e;

            fill_normal(&r, x, n, 0.3, 1.5);
            for (i = 0; i < n; i++)
                sum += x[i];
            for (i = 0; i < n; i++)
                ss += (x[i] - sum / n) * (x[i] - sum / n);
            sd = sqrt(ss / n);
            for (i = 0; i < n; i++) {
                xs[i] = (float)(a * x[i] + c);
                xmax = fmax(xmax, fabs(xs[i]));
            }
            bound = 2.0 * VEC_TOL_U + 8.0 * xmax / (a * sd);
            fn(&p, x, y1, 1, NULL);
            fn(&p, xs, y2, 1, NULL);
            e = max_nerr_f(y2, y1, n);
            snprintf(name, sizeof(name), "invariance LN %s", all_kernels[kern].name);
            fam_note(name, e, 0, 0, 0, 0);
            if (!(e <= bound))
                fail_msg("LN(%g x + %g): %.2f u > %.2f u", a, c, e, bound);

            p.kind = LN_KIND_RMSNORM;
            for (i = 0; i < n; i++)
                xs[i] = (float)(a * x[i]);
            bound = 2.0 * VEC_TOL_U + 8.0;
            fn(&p, x, y1, 1, NULL);
            fn(&p, xs, y2, 1, NULL);
            e = max_nerr_f(y2, y1, n);
            snprintf(name, sizeof(name), "invariance RMS %s", all_kernels[kern].name);
            fam_note(name, e, 0, 0, 0, 0);
            if (!(e <= bound))
                fail_msg("RMS(%g x): %.2f u > %.2f u", a, e, bound);
        }
    }
    free(x);
    free(xs);
    free(y1);
    free(y2);
}

/*
 * Diagnostics: any subset of pointers may be NULL and the others are still
 * written, the same values as with all of them; radius is in [0, 1].
 */
static void test_diag_subsets(void **state)
{
    rng r = rng_for("diag_subsets");
    const size_t n = 96, groups = 4, rows = 5;
    float *x = xcalloc(rows * n, sizeof(float)), *y = xcalloc(rows * n, sizeof(float));
    float mean[20], rstd[20], radius[5], m2[20], r2[20], rad2[5];
    size_t kern, mask, i;

    fill_normal(&r, x, rows * n, -2.0, 0.5);
    for (kern = 0; kern < N_KERNELS; kern++) {
        ln_rows_fn fn = all_kernels[kern].fn;
        ln_params p = { LN_KIND_LAYERNORM, n, groups, 1e-5f, NULL, NULL };
        ln_diag all = { .mean = mean, .rstd = rstd, .radius = radius };

        if (!all_kernels[kern].has())
            continue;
        fn(&p, x, y, rows, &all);
        for (i = 0; i < rows; i++)
            assert_true(radius[i] >= 0.0f && radius[i] <= 1.0f);
        for (mask = 0; mask < 8; mask++) {
            ln_diag part = { .mean = mask & 1 ? m2 : NULL,
                             .rstd = mask & 2 ? r2 : NULL,
                             .radius = mask & 4 ? rad2 : NULL };

            fn(&p, x, y, rows, &part);
            if (mask & 1)
                assert_memory_equal(m2, mean, sizeof(m2));
            if (mask & 2)
                assert_memory_equal(r2, rstd, sizeof(r2));
            if (mask & 4)
                assert_memory_equal(rad2, radius, sizeof(rad2));
        }
        /* rmsnorm reports mean 0. */
        p.kind = LN_KIND_RMSNORM;
        fn(&p, x, y, rows, &all);
        for (i = 0; i < rows * groups; i++)
            assert_true(mean[i] == 0.0f && rstd[i] > 0.0f);
    }
    free(x);
    free(y);
}

static void run_and_compare(ln_rows_fn direct)
{
    const ln_params p = { LN_KIND_LAYERNORM, 77, 1, 1e-5f, NULL, NULL };
    float x[77], y[77], want[77];
    size_t i;

    for (i = 0; i < 77; i++)
        x[i] = (float)(i * i % 13) + 1e4f;
    ln_rows(&p, x, y, 1, NULL);
    direct(&p, x, want, 1, NULL);
    assert_memory_equal(y, want, sizeof(y));
}

/* The kernel the dispatch picks when LNSERVE_KERNEL is unset: the widest
 * vector kernel the CPU has. */
static const char *best_name(void)
{
    if (ln_cpu_has_avx512())
        return "avx512";
    return ln_cpu_has_avx2() ? "avx2" : "ref";
}

static ln_rows_fn best_fn(void)
{
    if (ln_cpu_has_avx512())
        return ln_rows_avx512;
    return ln_cpu_has_avx2() ? ln_rows_avx2 : ln_rows_ref;
}

/* LNSERVE_KERNEL: ref, avx2, avx512, bad values, unset. Restores the
 * variable. */
static void test_dispatch_env(void **state)
{
    const char *old = getenv("LNSERVE_KERNEL");
    char *saved = old ? strdup(old) : NULL;
    const int has = ln_cpu_has_avx2();
    const char *why;

    setenv("LNSERVE_KERNEL", "ref", 1);
    why = "unset";
    assert_int_equal(ln_dispatch_init(&why), 0);
    assert_null(why);
    assert_string_equal(ln_kernel_name(), "ref");
    run_and_compare(ln_rows_ref);

    setenv("LNSERVE_KERNEL", "avx2", 1);
    if (has) {
        assert_int_equal(ln_dispatch_init(&why), 0);
        assert_string_equal(ln_kernel_name(), "avx2");
        run_and_compare(ln_rows_avx2);
    } else {
        assert_int_equal(ln_dispatch_init(&why), -1);
        assert_non_null(why);
        assert_string_equal(ln_kernel_name(), "ref");
        run_and_compare(ln_rows_ref);
    }

    setenv("LNSERVE_KERNEL", "avx512", 1);
    if (ln_cpu_has_avx512()) {
        assert_int_equal(ln_dispatch_init(&why), 0);
        assert_string_equal(ln_kernel_name(), "avx512");
        run_and_compare(ln_rows_avx512);
    } else {
        assert_int_equal(ln_dispatch_init(&why), -1);
        assert_non_null(why);
        assert_string_equal(ln_kernel_name(), "ref");
        run_and_compare(ln_rows_ref);
    }

    /* An unknown value falls back to ref even after a vector kernel was
     * chosen. */
    setenv("LNSERVE_KERNEL", "AVX2 ", 1);
    why = NULL;
    assert_int_equal(ln_dispatch_init(&why), -1);
    assert_non_null(why);
    assert_string_equal(ln_kernel_name(), "ref");
    run_and_compare(ln_rows_ref);

    setenv("LNSERVE_KERNEL", "", 1);
    assert_int_equal(ln_dispatch_init(NULL), 0);
    assert_string_equal(ln_kernel_name(), best_name());

    unsetenv("LNSERVE_KERNEL");
    assert_int_equal(ln_dispatch_init(&why), 0);
    assert_string_equal(ln_kernel_name(), best_name());
    run_and_compare(best_fn());

    if (saved) {
        setenv("LNSERVE_KERNEL", saved, 1);
        free(saved);
    }
}

typedef struct worker_arg {
    const ln_params *p;
    const float *x;
    float *y;
    size_t rows;
} worker_arg;

static void *worker_main(void *arg)
{
    const worker_arg *w = arg;
    size_t rep;

    for (rep = 0; rep < 20; rep++)
        ln_rows(w->p, w->x, w->y, w->rows, NULL);
    return NULL;
}

/* Workers calling ln_rows after init: same bits, and TSan stays quiet. */
static void test_threads(void **state)
{
    enum { N_THREADS = 4, ROWS = 8, N = 256 };
    rng r = rng_for("threads");
    const ln_params p = { LN_KIND_LAYERNORM, N, 1, 1e-5f, NULL, NULL };
    float *x = xcalloc(N_THREADS * ROWS * N, sizeof(float));
    float *y = xcalloc(N_THREADS * ROWS * N, sizeof(float));
    float *want = xcalloc(N_THREADS * ROWS * N, sizeof(float));
    pthread_t th[N_THREADS];
    worker_arg args[N_THREADS];
    const char *old = getenv("LNSERVE_KERNEL");
    char *saved = old ? strdup(old) : NULL;
    size_t t;

    unsetenv("LNSERVE_KERNEL");
    assert_int_equal(ln_dispatch_init(NULL), 0);
    fill_normal(&r, x, N_THREADS * ROWS * N, 0.0, 1.0);
    for (t = 0; t < N_THREADS; t++) {
        args[t] = (worker_arg){ &p, x + t * ROWS * N, y + t * ROWS * N, ROWS };
        assert_int_equal(pthread_create(&th[t], NULL, worker_main, &args[t]), 0);
    }
    for (t = 0; t < N_THREADS; t++)
        assert_int_equal(pthread_join(th[t], NULL), 0);
    best_fn()(&p, x, want, N_THREADS * ROWS, NULL);
    assert_memory_equal(y, want, N_THREADS * ROWS * N * sizeof(float));
    if (saved) {
        setenv("LNSERVE_KERNEL", saved, 1);
        free(saved);
    }
    free(x);
    free(y);
    free(want);
}

static int print_errors(void **state)
{
    size_t i;

    printf("max error per family: y in u = 2^-24 of max(1, |y|) and in ulp of a "
           "float at max(1, |y|); diagnostics in u\n"
           "(bounds: ref/oracle %.3f u; avx2/ref y %.1f ulp, avx512/ref y %.1f ulp, "
           "diagnostics %.1f u):\n",
           REF_TOL_U, VEC_TOL_ULP_AVX2, VEC_TOL_ULP_AVX512, VEC_TOL_U);
    printf("  %-36s %8s %8s %8s %8s %8s\n", "family", "y u", "y ulp", "mean", "rstd",
           "radius");
    for (i = 0; i < fam_count; i++)
        printf("  %-36s %8.3f %8.3f %8.3f %8.3f %8.3f\n", fam_tab[i].name, fam_tab[i].y,
               fam_tab[i].yulp, fam_tab[i].mean, fam_tab[i].rstd, fam_tab[i].radius);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_before_init), /* must stay first */
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_ref_vs_oracle),
        cmocka_unit_test(test_vec_every_n),
        cmocka_unit_test(test_vec_large_n),
        cmocka_unit_test(test_vec_hard_rows),
        cmocka_unit_test(test_vec_issue_families),
        cmocka_unit_test(test_vec_misaligned),
        cmocka_unit_test(test_vec_large_batch),
        cmocka_unit_test(test_huge_spread),
        cmocka_unit_test(test_inplace),
        cmocka_unit_test(test_constant_rows),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_invariance),
        cmocka_unit_test(test_diag_subsets),
        cmocka_unit_test(test_dispatch_env),
        cmocka_unit_test(test_threads),
    };
    const char *env = getenv("LNSERVE_TEST_SEED");

    if (env && *env)
        test_seed = strtoull(env, NULL, 0);
    else
        test_seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    printf("test_core: seed %llu (LNSERVE_TEST_SEED=%llu repeats this run), "
           "AVX2 %s, AVX-512 %s\n",
           (unsigned long long)test_seed, (unsigned long long)test_seed,
           ln_cpu_has_avx2() ? "yes" : "no: AVX2 tests skipped",
           ln_cpu_has_avx512() ? "yes" : "no: AVX-512 tests skipped");
    return cmocka_run_group_tests_name("core", tests, NULL, print_errors);
}
