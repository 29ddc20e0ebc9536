/*
 * test_geometry.c -- cmocka tests of core/geometry.h against LAPACK's dense
 * symmetric eigensolver (LAPACKE_dsyevd on M = diag(g^2) - g g^T / N) for
 * N <= 500, and against the closed forms of ../shared/MATH.md section 3 at
 * every N (product and sum of the eigenvalues, interlacing, g = 1).
 *
 * Errors are normalized by the largest eigenvalue (LAPACK's own accuracy is
 * absolute, ~N eps lambda_max). The largest error seen per family is
 * printed at the end. Random gains come from one seed, printed at start;
 * LNSERVE_TEST_SEED=N repeats a run.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "test_rng.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lapacke.h>

#include "../core/geometry.h"

/*
 * Tolerances, relative to lambda_max unless said. Measured over 22 seeds:
 * eigenvalues against LAPACK <= 8.7e-15 (LAPACK is itself only good to
 * ~N eps lambda_max); |V^T V - I| <= 1.0e-14 at N <= 500, 3.3e-14 at
 * N = 20000 and 2.5e-14 for the 4095 deflated axes of g = 1 (the test's
 * own dot products round that much); |M v - lambda v| <= 5.2e-16; the
 * closed-form log product <= 6.7e-15 relative to sum |log g_i^2|; the
 * secular backward error <= 1.0e-15 (4 eps = 8.9e-16 when the iteration
 * stops on |f| rather than on adjacent doubles).
 */
#define EIG_TOL 1e-13
#define ORTH_TOL 2e-13
#define RESID_TOL 1e-14
#define LOGPROD_TOL 1e-13 /* relative to sum |log g_i^2| */
#define TRACE_TOL 1e-13
#define SECULAR_TOL 4e-15 /* geometry->residual */

static uint64_t test_seed;

/* A stream for one test: depends on the run's seed and the name only. */
static rng rng_for(const char *name)
{
    return rng_seeded(test_seed, name);
}

static void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size);

    assert_non_null(p);
    return p;
}

/* ---- the largest error seen per family ---- */

#define MAX_FAMILIES 32

static struct family_err {
    const char *name;
    double eig, orth, resid, logprod, secular;
} fam_tab[MAX_FAMILIES];
static size_t fam_count;

static void fam_note(const char *name, double eig, double orth, double resid, double logprod,
                     double secular)
{
    size_t i;

    for (i = 0; i < fam_count; i++)
        if (strcmp(fam_tab[i].name, name) == 0)
            break;
    if (i == fam_count) {
        assert_true(fam_count < MAX_FAMILIES);
        fam_tab[fam_count++].name = name;
    }
    fam_tab[i].eig = fmax(fam_tab[i].eig, eig);
    fam_tab[i].orth = fmax(fam_tab[i].orth, orth);
    fam_tab[i].resid = fmax(fam_tab[i].resid, resid);
    fam_tab[i].logprod = fmax(fam_tab[i].logprod, logprod);
    fam_tab[i].secular = fmax(fam_tab[i].secular, secular);
}

/* ---- checks ---- */

/* |M v - lambda v|_inf for unit v, in O(N): M v = g^2 v - g (g^T v) / N */
static double eig_residual(const float *g, size_t n, const double *v, double lam)
{
    double gv = 0, worst = 0;
    size_t i;

    for (i = 0; i < n; i++)
        gv += (double)g[i] * v[i];
    for (i = 0; i < n; i++) {
        double gi = g[i], mv = gi * gi * v[i] - gi * gv / (double)n;

        worst = fmax(worst, fabs(mv - lam * v[i]));
    }
    return worst;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/*
 * Every check that needs no dense solver: sorted descending, last is 0,
 * interlacing with the sorted g^2, trace, closed-form product (no zero
 * gain), log-volume, normal, and (k_axes > 0) orthonormality and residual
 * of the k_axes longest axes. Returns the geometry (caller destroys).
 */
static geometry *check_closed_forms(const char *fam, const float *g, size_t n, size_t k_axes)
{
    geometry *geo = NULL;
    const char *why = NULL;
    double *d = xcalloc(n, sizeof *d), lmax, trace = 0, logprod = 0, inv_mean = 0;
    double orth = 0, resid = 0, logerr = 0;
    size_t i, j, n_zero = 0;

    assert_int_equal(geometry_create(g, n, &geo, &why), 0);
    assert_non_null(geo);
    assert_int_equal(geo->n, n);
    for (i = 0; i < n; i++) {
        d[i] = (double)g[i] * g[i];
        trace += d[i];
        n_zero += g[i] == 0;
    }
    trace *= 1.0 - 1.0 / (double)n;
    qsort(d, n, sizeof *d, cmp_double);
    lmax = geo->eigenvalues[0] > 0 ? geo->eigenvalues[0] : 1;
    assert_int_equal(geo->n_zero_gains, n_zero);
    assert_int_equal(geo->n_secular + geo->n_deflated + n_zero, n);

    /* descending; interlacing: ascending mu_k in [d_(k-1), d_(k)], exactly */
    assert_true(geo->eigenvalues[n - 1] == 0);
    for (i = 0; i < n; i++) {
        double mu = geo->eigenvalues[n - 1 - i];

        if (i + 1 < n)
            assert_true(geo->eigenvalues[i] >= geo->eigenvalues[i + 1]);
        assert_true(mu <= d[i]);
        if (i > 0)
            assert_true(mu >= d[i - 1]);
    }
    fam_note(fam, 0, 0, 0, 0, geo->residual);
    assert_true(geo->residual <= SECULAR_TOL);
    assert_true(geo->trace_error <= TRACE_TOL);
    for (i = 0; i + 1 < n; i++)
        assert_true(geo->semi_axes[i] == sqrt((double)n * geo->eigenvalues[i]));

    if (n_zero == 0) {
        double lv, nrm = 0, sumlog = 0, logscale = 1;

        /* prod of the n-1 nonzero = prod g^2 * mean(1 / g^2), in logs */
        for (i = 0; i < n; i++) {
            logprod += log(d[i]);
            logscale += fabs(log(d[i]));
            inv_mean += 1.0 / d[i];
        }
        logprod += log(inv_mean / (double)n);
        for (i = 0; i + 1 < n; i++)
            sumlog += log(geo->eigenvalues[i]);
        logerr = n > 1 ? fabs(sumlog - logprod) / logscale : 0;
        fam_note(fam, 0, 0, 0, logerr, 0);
        assert_true(logerr <= LOGPROD_TOL);
        lv = 0.5 * (double)(n - 1) * log(M_PI) - lgamma(0.5 * (double)(n - 1) + 1) +
             0.5 * (double)(n - 1) * log((double)n) + 0.5 * logprod;
        if (n > 1)
            assert_true(fabs(geo->log_volume - lv) <= LOGPROD_TOL * (logscale + fabs(lv)));
        /* unit normal, along G^{-1} 1, in the null space of M */
        assert_non_null(geo->normal);
        for (i = 0; i < n; i++) {
            nrm += geo->normal[i] * geo->normal[i];
            assert_true(geo->normal[i] * g[i] > 0); /* G^{-1} 1: sign of g */
        }
        assert_true(fabs(nrm - 1) <= (double)(n + 1) * DBL_EPSILON);
        assert_true(eig_residual(g, n, geo->normal, 0) <= RESID_TOL * lmax);
        if (n > 1)
            assert_true(fabs(geo->axis_ratio - geo->semi_axes[0] / geo->semi_axes[n - 2]) <=
                        1e-15 * geo->axis_ratio);
    } else {
        assert_null(geo->normal);
        assert_true(geo->log_volume == -INFINITY || n == 1);
    }

    if (k_axes > 0) {
        double *V = xcalloc(k_axes * n, sizeof *V);

        assert_int_equal(geometry_axes(geo, k_axes, V), 0);
        for (j = 0; j < k_axes; j++) {
            resid = fmax(resid, eig_residual(g, n, V + j * n, geo->eigenvalues[j]) / lmax);
            for (i = 0; i <= j; i++) {
                double dot = 0;
                size_t t;

                for (t = 0; t < n; t++)
                    dot += V[i * n + t] * V[j * n + t];
                orth = fmax(orth, fabs(dot - (i == j ? 1.0 : 0.0)));
            }
        }
        fam_note(fam, 0, orth, resid, 0, 0);
        assert_true(orth <= ORTH_TOL);
        assert_true(resid <= RESID_TOL);
        free(V);
    }
    free(d);
    return geo;
}

/* All of check_closed_forms with every axis, plus LAPACK's eigenvalues. */
static void check_lapack(const char *fam, const float *g, size_t n)
{
    double *M = xcalloc(n * n, sizeof *M), *w = xcalloc(n, sizeof *w), lmax, err = 0;
    geometry *geo = check_closed_forms(fam, g, n, n);
    size_t i, j;

    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++)
            M[i * n + j] = (i == j ? (double)g[i] * g[i] : 0) - (double)g[i] * g[j] / (double)n;
    assert_int_equal(LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', (lapack_int)n, M, (lapack_int)n, w),
                     0);
    lmax = fmax(fabs(w[n - 1]), DBL_MIN);
    for (i = 0; i < n; i++)
        err = fmax(err, fabs(geo->eigenvalues[i] - w[n - 1 - i]) / lmax);
    fam_note(fam, err, 0, 0, 0, 0);
    assert_true(err <= EIG_TOL);
    geometry_destroy(geo);
    free(M);
    free(w);
}

/* ---- tests ---- */

static void test_near_one(void **state)
{
    static const size_t sizes[] = { 4, 5, 17, 33, 64, 100, 257, 500 };
    rng r = rng_for("near_one");
    size_t s, i;

    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *g = xcalloc(n, sizeof *g);

        for (i = 0; i < n; i++)
            g[i] = (float)(1.0 + 0.05 * rng_normal(&r));
        check_lapack("near 1", g, n);
        free(g);
    }
}

static void test_signed_spread(void **state)
{
    rng r = rng_for("signed_spread");
    size_t rep, i;

    for (rep = 0; rep < 4; rep++) {
        size_t n = 50 + (size_t)(rng_unif(&r) * 400);
        float *g = xcalloc(n, sizeof *g);

        for (i = 0; i < n; i++) {
            double gi = 0.5 + rng_unif(&r);

            g[i] = (float)(rng_unif(&r) < 0.3 ? -gi : gi);
        }
        check_lapack("+-[0.5,1.5]", g, n);
        free(g);
    }
}

static void test_orders_of_magnitude(void **state)
{
    rng r = rng_for("orders");
    size_t rep, i;

    for (rep = 0; rep < 3; rep++) {
        size_t n = 100 + 150 * rep;
        float *g = xcalloc(n, sizeof *g);

        for (i = 0; i < n; i++) {
            double gi = pow(10.0, -6.0 + 12.0 * rng_unif(&r));

            g[i] = (float)(rng_unif(&r) < 0.5 ? -gi : gi);
        }
        check_lapack("1e-6..1e6", g, n);
        free(g);
    }
}

/* equal gains (exact deflation), with mixed signs within a block */
static void test_repeated(void **state)
{
    static const float vals[] = { 0.5f, 1.0f, -1.0f, 1.5f, 2.0f, -0.5f };
    rng r = rng_for("repeated");
    size_t n = 300, i;
    float *g = xcalloc(n, sizeof *g);
    geometry *geo;

    for (i = 0; i < n; i++)
        g[i] = vals[(size_t)(rng_unif(&r) * 6)];
    check_lapack("repeated", g, n);
    /* 4 distinct g^2: 4 secular roots, the rest deflated */
    geo = check_closed_forms("repeated", g, n, 0);
    assert_int_equal(geo->n_secular, 4);
    geometry_destroy(geo);

    /* repeated blocks among distinct gains */
    for (i = 0; i < n; i++)
        g[i] = i % 3 == 0 ? (float)(0.8 + 0.4 * rng_unif(&r)) : vals[i % 6];
    check_lapack("repeated", g, n);
    free(g);
}

/* adjacent floats: poles 2^-23 apart, roots crowded between them */
static void test_near_repeated(void **state)
{
    rng r = rng_for("near_repeated");
    size_t n = 200, i;
    float *g = xcalloc(n, sizeof *g);

    for (i = 0; i < n; i++)
        g[i] = 1.0f + (float)(int)(rng_unif(&r) * 40) * 0x1p-23f;
    check_lapack("adjacent floats", g, n);
    for (i = 0; i < n; i++)
        g[i] = i < n / 2 ? 1.0f + (float)i * 0x1p-23f : (float)(1.0 + rng_unif(&r));
    check_lapack("adjacent floats", g, n);
    free(g);
}

static void test_zero_gains(void **state)
{
    rng r = rng_for("zero_gains");
    size_t n = 150, i, z;
    float *g = xcalloc(n, sizeof *g);
    geometry *geo;

    for (i = 0; i < n; i++)
        g[i] = rng_unif(&r) < 0.1 ? 0.0f : (float)(0.5 + rng_unif(&r));
    check_lapack("zero gains", g, n);
    geo = check_closed_forms("zero gains", g, n, 0);
    for (z = i = 0; i < n; i++)
        z += g[i] == 0;
    /* exactly z zero eigenvalues, the others > 0; the region is flat */
    for (i = 0; i < n; i++)
        assert_true((geo->eigenvalues[i] == 0) == (i >= n - z));
    assert_true(geo->log_volume == -INFINITY);
    assert_true(geo->axis_ratio == INFINITY);
    geometry_destroy(geo);

    /* one zero gain */
    for (i = 0; i < n; i++)
        g[i] = i == 7 ? 0.0f : (float)(0.5 + rng_unif(&r));
    check_lapack("zero gains", g, n);
    /* zeros and repeats together */
    for (i = 0; i < n; i++)
        g[i] = i % 4 == 0 ? 0.0f : (i % 4 == 1 ? 2.0f : (float)(0.5 + rng_unif(&r)));
    check_lapack("zero gains", g, n);
    /* all zero: M = 0 */
    memset(g, 0, n * sizeof *g);
    geo = check_closed_forms("zero gains", g, n, 3);
    for (i = 0; i < n; i++)
        assert_true(geo->eigenvalues[i] == 0);
    assert_true(geo->axis_ratio == 1);
    geometry_destroy(geo);
    free(g);
}

/* g = 1 (NULL or explicit): every nonzero eigenvalue is exactly 1 */
static void test_ones(void **state)
{
    static const size_t sizes[] = { 1, 2, 3, 768, 4096 };
    size_t s, i;

    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        float *g = xcalloc(n, sizeof *g);
        geometry *a = NULL, *b;
        double lv;

        for (i = 0; i < n; i++)
            g[i] = 1.0f;
        assert_int_equal(geometry_create(NULL, n, &a, NULL), 0);
        b = check_closed_forms("g = 1", g, n, n < 100 ? n : 8);
        for (i = 0; i < n; i++) {
            assert_true(a->eigenvalues[i] == (i + 1 < n ? 1.0 : 0.0));
            assert_true(b->eigenvalues[i] == a->eigenvalues[i]);
            assert_true(fabs(a->normal[i] - 1.0 / sqrt((double)n)) <= 1e-16);
        }
        /* a ball of radius sqrt(N) in N - 1 dimensions */
        lv = 0.5 * (double)(n - 1) * log(M_PI) - lgamma(0.5 * (double)(n - 1) + 1) +
             0.5 * (double)(n - 1) * log((double)n);
        assert_true(fabs(a->log_volume - lv) <= 1e-12 * (1 + fabs(lv)));
        assert_true(a->axis_ratio == 1);
        geometry_destroy(a);
        geometry_destroy(b);
        free(g);
    }
}

/* N = 1, 2, 3 against hand-derived values and LAPACK */
static void test_small(void **state)
{
    float g1[1] = { -3.0f }, g2[2] = { 2.0f, -0.5f }, g3[3] = { 1.0f, 2.0f, 3.0f };
    geometry *geo;

    geo = check_closed_forms("N = 1, 2, 3", g1, 1, 1);
    assert_true(geo->eigenvalues[0] == 0);
    assert_null(geo->semi_axes);
    assert_true(geo->log_volume == 0 && geo->axis_ratio == 1);
    assert_true(fabs(geo->normal[0] + 1.0) == 0); /* 1 / g, g < 0 */
    geometry_destroy(geo);

    /* N = 2: eigenvalues (g1^2 + g2^2) / 2 and 0 */
    geo = check_closed_forms("N = 1, 2, 3", g2, 2, 2);
    assert_true(fabs(geo->eigenvalues[0] - 2.125) <= 4 * DBL_EPSILON);
    geometry_destroy(geo);
    check_lapack("N = 1, 2, 3", g2, 2);
    check_lapack("N = 1, 2, 3", g3, 3);
    check_lapack("N = 1, 2, 3", g1, 1);
}

/*
 * The per-row axis coordinates: for y = LN(x) (double), c_k = v_k^T (y - b)
 * / sqrt(N lambda_k) over the N - 1 axes has sum c_k^2 = v / (v + eps),
 * and each |c_k| <= 1.
 */
static void test_axis_coordinates(void **state)
{
    rng r = rng_for("axis_coordinates");
    size_t rep;

    for (rep = 0; rep < 6; rep++) {
        size_t n = rep < 3 ? 64 : 301, i, k;
        float *g = xcalloc(n, sizeof *g);
        double *b = xcalloc(n, sizeof *b), *x = xcalloc(n, sizeof *x), *y = xcalloc(n, sizeof *y);
        double *V = xcalloc(n * n, sizeof *V), m = 0, v = 0, eps, rs, sum = 0;
        geometry *geo = NULL;

        for (i = 0; i < n; i++) {
            /* rep 2 and 5: repeated gains, so some axes come from deflation */
            g[i] = rep % 3 == 2 && i % 2 ? 1.25f : (float)(0.5 + rng_unif(&r));
            b[i] = 2 * rng_unif(&r) - 1;
            x[i] = 3 + 2 * rng_normal(&r);
            m += x[i];
        }
        m /= (double)n;
        for (i = 0; i < n; i++)
            v += (x[i] - m) * (x[i] - m);
        v /= (double)n;
        eps = rep % 3 == 0 ? 1e-5 : v * 0.7; /* near the surface, and deep inside */
        rs = 1 / sqrt(v + eps);
        for (i = 0; i < n; i++)
            y[i] = g[i] * (x[i] - m) * rs + b[i];
        assert_int_equal(geometry_create(g, n, &geo, NULL), 0);
        assert_int_equal(geometry_axes(geo, n - 1, V), 0);
        for (k = 0; k + 1 < n; k++) {
            double c = 0;

            for (i = 0; i < n; i++)
                c += V[k * n + i] * (y[i] - b[i]);
            c /= geo->semi_axes[k];
            assert_true(fabs(c) <= 1 + 1e-12);
            sum += c * c;
        }
        assert_true(fabs(sum - v / (v + eps)) <= 1e-12);
        /* and the output lies on the hyperplane */
        for (sum = 0, i = 0; i < n; i++)
            sum += geo->normal[i] * (y[i] - b[i]);
        assert_true(fabs(sum) <= 1e-12);
        geometry_destroy(geo);
        free(g);
        free(b);
        free(x);
        free(y);
        free(V);
    }
}

/* Large N, no dense solver: closed forms, and the 6 longest axes. */
static void test_large(void **state)
{
    rng r = rng_for("large");
    size_t n = 20000, i;
    float *g = xcalloc(n, sizeof *g);
    geometry *geo;

    for (i = 0; i < n; i++)
        g[i] = (float)(1.0 + 0.05 * rng_normal(&r));
    geo = check_closed_forms("large N", g, n, 6);
    geometry_destroy(geo);
    for (i = 0; i < n; i++)
        g[i] = (float)pow(10.0, -3.0 + 6.0 * rng_unif(&r));
    geo = check_closed_forms("large N", g, n, 6);
    geometry_destroy(geo);
    free(g);
}

static void test_invalid(void **state)
{
    float g[3] = { 1.0f, NAN, 2.0f };
    geometry *geo = (geometry *)&geo;
    const char *why = NULL;
    double V[9];

    assert_int_equal(geometry_create(g, 0, &geo, &why), -EINVAL);
    assert_null(geo);
    assert_non_null(why);
    why = NULL;
    assert_int_equal(geometry_create(g, 3, &geo, &why), -EINVAL);
    assert_non_null(why);
    g[1] = INFINITY;
    assert_int_equal(geometry_create(g, 3, &geo, NULL), -EINVAL);
    g[1] = 1.0f;
    assert_int_equal(geometry_create(g, 3, &geo, NULL), 0);
    assert_int_equal(geometry_axes(geo, 4, V), -EINVAL);
    assert_int_equal(geometry_axes(geo, 0, V), 0);
    geometry_destroy(geo);
    geometry_destroy(NULL);
}

static int print_families(void **state)
{
    size_t i;

    printf("largest errors: eigenvalues vs LAPACK and |M v - lambda v| relative to lambda_max; "
           "|V^T V - I|; log product relative to sum |log g^2|; secular backward error\n");
    for (i = 0; i < fam_count; i++)
        printf("  %-16s eig %.2e  orth %.2e  resid %.2e  logprod %.2e  secular %.2e\n",
               fam_tab[i].name, fam_tab[i].eig, fam_tab[i].orth, fam_tab[i].resid,
               fam_tab[i].logprod, fam_tab[i].secular);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_small),
        cmocka_unit_test(test_ones),
        cmocka_unit_test(test_near_one),
        cmocka_unit_test(test_signed_spread),
        cmocka_unit_test(test_orders_of_magnitude),
        cmocka_unit_test(test_repeated),
        cmocka_unit_test(test_near_repeated),
        cmocka_unit_test(test_zero_gains),
        cmocka_unit_test(test_axis_coordinates),
        cmocka_unit_test(test_large),
    };
    const char *env = getenv("LNSERVE_TEST_SEED");

    test_seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    printf("test_geometry seed %llu (LNSERVE_TEST_SEED to repeat)\n",
           (unsigned long long)test_seed);
    return cmocka_run_group_tests(tests, NULL, print_families);
}
