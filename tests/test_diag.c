/*
 * test_diag.c -- core/diag.c against direct float64 computations: depth
 * and condition on normal, offset, tiny-variance and constant rows and in
 * groups; the plane residual of the reference kernel's outputs; and the
 * axis coordinates, whose squares over all N-1 axes sum to radius^2
 * (MATH.md section 4); the Jacobian and Hessian Frobenius norms against
 * finite differences and closed forms.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../core/diag.h"
#include "../core/geometry.h"
#include "../core/ln_internal.h"
#include "test_rng.h"

static uint64_t test_seed;

enum { N = 96 };

static void fill(rng *r, float *x, size_t n, double mean, double sd)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(mean + sd * rng_normal(r));
}

/* Mean and (population) variance of x[0..n) in long double, two passes:
 * the tests' own oracle, independent of core. */
static void ld_moments(const float *x, size_t n, long double *mean, long double *var)
{
    long double m = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        m += x[i];
    m /= n;
    for (size_t i = 0; i < n; i++)
        v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *var = v / n;
}

static void test_depth_condition(void **state)
{
    (void)state;
    rng r = rng_seeded(test_seed, "depth");
    static const double means[] = {0, 1e4, -3, 5};
    static const double sds[] = {1, 1, 1e-4, 0};
    for (size_t groups = 1; groups <= 4; groups *= 2) {
        ln_params p = {.kind = LN_KIND_LAYERNORM, .n = N, .groups = groups, .eps = 1e-5f};
        for (size_t f = 0; f < 4; f++) {
            float x[N];
            fill(&r, x, N, means[f], sds[f]);
            float depth, cond;
            ln_depth_condition(&p, x, 1, &depth, &cond);
            size_t gs = N / groups;
            double om = 0, worst = 1;
            for (size_t k = 0; k < groups; k++) {
                long double m, v;
                ld_moments(x + k * gs, gs, &m, &v);
                om += (double)((long double)1e-5f / (v + (long double)1e-5f));
                if (v > 0)
                    worst = fmax(worst, (double)sqrtl(1 + m * m / v));
            }
            om /= groups;
            double want = om / (1 + sqrt(1 - om));
            /* float32 rounding of the result, plus eps's own rounding */
            assert_true(fabs(depth - want) <= 4e-7 * want + 1e-30);
            assert_true(fabs(cond - worst) <= 4e-7 * worst);
        }
    }
    /* rmsnorm: condition 1; constant zero row with eps 0: depth 1 */
    ln_params p = {.kind = LN_KIND_RMSNORM, .n = N, .groups = 1, .eps = 0};
    float z[N] = {0}, depth, cond;
    ln_depth_condition(&p, z, 1, &depth, &cond);
    assert_true(depth == 1.0f && cond == 1.0f);
}

static void test_plane_residual(void **state)
{
    (void)state;
    rng r = rng_seeded(test_seed, "plane");
    float gain[N], bias[N], x[N], y[N];
    for (size_t i = 0; i < N; i++) {
        gain[i] = (float)(0.5 + rng_unif(&r)) * (i % 7 ? 1.0f : -1.0f);
        bias[i] = (float)(rng_unif(&r) - 0.5);
    }
    for (size_t groups = 1; groups <= 8; groups *= 2) {
        ln_params p = {.kind = LN_KIND_LAYERNORM, .n = N, .groups = groups, .eps = 1e-5f,
                       .gain = gain, .bias = bias};
        assert_true(ln_plane_ok(&p));
        fill(&r, x, N, 100, 3);
        ln_rows_ref(&p, x, y, 1, &(ln_diag){0});
        float res[8];
        double inv_gain[N];
        ln_plane_inv_gain(&p, inv_gain);
        ln_plane_residual(&p, inv_gain, y, 1, res);
        for (size_t k = 0; k < groups; k++) /* a few float32 ulps of |y| ~ 3 */
            assert_true(fabsf(res[k]) <= 1e-5f);
    }
    gain[3] = 0;
    ln_params p = {.kind = LN_KIND_LAYERNORM, .n = N, .groups = 1, .gain = gain};
    assert_false(ln_plane_ok(&p));
    p.kind = LN_KIND_RMSNORM;
    gain[3] = 1;
    assert_false(ln_plane_ok(&p));
}

/* ln_plane_residual (vectorized where the CPU has AVX2) against a long
 * double sum of (y - b) / g for every N from 1 to 70 (every tail length),
 * groups 1 and 2, with and without gain and bias: within 1e-13 of the sum
 * of |terms| over the norm. y is arbitrary here, not a kernel output, so the
 * residual is O(1) and any misplaced term shows. */
static void test_plane_residual_sums(void **state)
{
    (void)state;
    rng r = rng_seeded(test_seed, "plane-sums");
    float gain[70], bias[70], y[3 * 70], res[3 * 2];
    double inv_gain[70];
    for (size_t n = 1; n <= 70; n++)
        for (size_t G = 1; G <= 2; G++) {
            if (n % G)
                continue;
            for (int flags = 0; flags < 4; flags++) {
                for (size_t i = 0; i < n; i++) {
                    gain[i] = (float)((0.3 + rng_unif(&r)) * (rng_unif(&r) < 0.2 ? -1 : 1));
                    bias[i] = (float)rng_normal(&r);
                }
                for (size_t i = 0; i < 3 * n; i++)
                    y[i] = (float)(3 * rng_normal(&r));
                ln_params p = {.kind = LN_KIND_LAYERNORM, .n = n, .groups = G,
                               .gain = flags & 1 ? gain : NULL,
                               .bias = flags & 2 ? bias : NULL};
                if (p.gain)
                    ln_plane_inv_gain(&p, inv_gain);
                ln_plane_residual(&p, p.gain ? inv_gain : NULL, y, 3, res);
                size_t gs = n / G;
                for (size_t row = 0; row < 3; row++)
                    for (size_t k = 0; k < G; k++) {
                        long double num = 0, den = 0, mag = 0;
                        for (size_t i = k * gs; i < (k + 1) * gs; i++) {
                            long double g = p.gain ? gain[i] : 1.0L;
                            long double t = ((long double)y[row * n + i] -
                                             (p.bias ? bias[i] : 0.0L)) / g;
                            num += t;
                            mag += fabsl(t);
                            den += 1 / (g * g);
                        }
                        double want = (double)(num / sqrtl(den));
                        double tol = (double)(mag / sqrtl(den)) * 1e-13 +
                                     fabs(want) * 0x1p-24;
                        if (fabs(res[row * G + k] - want) > tol)
                            fail_msg("n=%zu G=%zu flags %d row %zu group %zu: %.9g, want %.9g",
                                     n, G, flags, row, k, (double)res[row * G + k], want);
                    }
            }
        }
}

/* The plane residual as the kernels return it (ln_diag.plane: fused into
 * the AVX-512 output pass as sum y w - sum b w, a second pass elsewhere)
 * against ln_plane_residual on the same kernel's y: N 1..70 (every tail)
 * and 768, 2000 and 4096 x rows past ln_nt_min_bytes() (the non-temporal
 * path: 40 rows with a 1 MiB L2, more where it is bigger), groups 1 and
 * 2, gain and bias on and off, in place and not. Tolerance as above plus
 * |sum b w| 1e-13: the fused sum subtracts the bias once per group. */
static void test_plane_fused(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        ln_rows_fn fn;
        int (*has)(void);
    } kernels[] = { { "ref", ln_rows_ref, NULL },
                    { "avx2", ln_rows_avx2, ln_cpu_has_avx2 },
                    { "avx512", ln_rows_avx512, ln_cpu_has_avx512 } };
    static const size_t big[] = { 768, 2000, 4096 };
    rng r = rng_seeded(test_seed, "plane-fused");
    const size_t nmax = 4096;
    size_t rmax = ln_nt_min_bytes() / (nmax * sizeof(float)) + 1;
    if (rmax < 40)
        rmax = 40;
    float *gain = malloc(nmax * sizeof(float)), *bias = malloc(nmax * sizeof(float));
    float *x = malloc(nmax * rmax * sizeof(float)), *y = malloc(nmax * rmax * sizeof(float));
    float *got = malloc(2 * rmax * sizeof(float)), *want = malloc(2 * rmax * sizeof(float));
    double *w = malloc(nmax * sizeof(double)), c[4];
    size_t checked = 0;
    assert_non_null(gain);
    assert_non_null(bias);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(w);
    assert_non_null(got);
    assert_non_null(want);
    for (size_t kc = 0; kc < sizeof(kernels) / sizeof(kernels[0]); kc++) {
        if (kernels[kc].has && !kernels[kc].has())
            continue;
        for (size_t t = 0; t < 70 + 3; t++) {
            size_t n = t < 70 ? t + 1 : big[t - 70], rows = t < 70 ? 3 : rmax;
            for (size_t G = 1; G <= 2; G++) {
                if (n % G)
                    continue;
                for (int flags = 0; flags < 8; flags++) {
                    for (size_t i = 0; i < n; i++) {
                        gain[i] = (float)((0.3 + rng_unif(&r)) * (rng_unif(&r) < 0.2 ? -1 : 1));
                        bias[i] = (float)(2 * rng_normal(&r));
                    }
                    fill(&r, x, n * rows, 5, 2);
                    ln_params p = {.kind = LN_KIND_LAYERNORM, .n = n, .groups = G,
                                   .eps = 1e-5f, .gain = flags & 1 ? gain : NULL,
                                   .bias = flags & 2 ? bias : NULL};
                    float *out = flags & 4 ? x : y; /* in place */
                    if (p.gain)
                        ln_plane_inv_gain(&p, w);
                    ln_plane_consts(&p, p.gain ? w : NULL, c);
                    /* Neither gain nor bias: plane_c may be NULL (ln.h). */
                    ln_diag d = {.plane = got, .plane_w = p.gain ? w : NULL,
                                 .plane_c = (flags & 3) == 0 && t % 2 ? NULL : c};
                    kernels[kc].fn(&p, x, out, rows, &d);
                    ln_plane_residual(&p, p.gain ? w : NULL, out, rows, want);
                    size_t gs = n / G;
                    for (size_t row = 0; row < rows; row++)
                        for (size_t k = 0; k < G; k++) {
                            double mag = 0;
                            for (size_t i = k * gs; i < (k + 1) * gs; i++)
                                mag += fabs(((double)out[row * n + i] -
                                             (p.bias ? bias[i] : 0.0)) *
                                            (p.gain ? w[i] : 1.0)) +
                                       fabs((p.bias ? bias[i] : 0.0) * (p.gain ? w[i] : 1.0));
                            double tol = mag * c[2 * k + 1] * 1e-13 +
                                         fabs((double)want[row * G + k]) * 0x1p-23;
                            if (fabs((double)got[row * G + k] - want[row * G + k]) > tol)
                                fail_msg("%s n=%zu G=%zu flags %d row %zu group %zu: %.9g, "
                                         "want %.9g",
                                         kernels[kc].name, n, G, flags, row, k,
                                         (double)got[row * G + k], (double)want[row * G + k]);
                            checked++;
                        }
                }
            }
        }
    }
    printf("plane residual as returned by the kernels: %zu groups checked\n", checked);
    free(gain);
    free(bias);
    free(x);
    free(y);
    free(w);
    free(got);
    free(want);
}

static void test_axis_coords(void **state)
{
    (void)state;
    rng r = rng_seeded(test_seed, "axes");
    float gain[N], bias[N], x[N], y[N], radius;
    for (size_t i = 0; i < N; i++) {
        gain[i] = (float)(0.2 + 2 * rng_unif(&r));
        bias[i] = (float)rng_normal(&r);
    }
    ln_params p = {.kind = LN_KIND_LAYERNORM, .n = N, .groups = 1, .eps = 1e-5f,
                   .gain = gain, .bias = bias};
    geometry *geo = NULL;
    assert_int_equal(geometry_create(gain, N, &geo, NULL), 0);
    double *axes = malloc((N - 1) * N * sizeof(double));
    float c[N - 1];
    assert_non_null(axes);
    assert_int_equal(geometry_axes(geo, N - 1, axes), 0);
    for (int t = 0; t < 20; t++) {
        fill(&r, x, N, 0, t < 10 ? 1.0 : 3e-3); /* near the surface and deep inside */
        ln_rows_ref(&p, x, y, 1, &(ln_diag){.radius = &radius});
        ln_axis_coords(&p, axes, geo->semi_axes, N - 1, y, 1, c);
        double sum = 0;
        for (size_t j = 0; j < N - 1; j++) {
            assert_true(fabsf(c[j]) <= 1.0f + 1e-5f);
            sum += (double)c[j] * c[j];
        }
        assert_true(fabs(sum - (double)radius * radius) <= 1e-5);
    }
    free(axes);
    geometry_destroy(geo);
}

/* LN-G: every group's axes, group by group; per group the squares of all
 * its gs - 1 coordinates sum to that group's rho_k^2 = v_k / (v_k + eps),
 * and a coordinate moves only with its own group's values. */
static void test_axis_coords_groups(void **state)
{
    (void)state;
    enum { G = 4, GS = N / G, K = GS - 1 };
    rng r = rng_seeded(test_seed, "axes-groups");
    float gain[N], bias[N], x[N], y[N], c[G * K];
    for (size_t i = 0; i < N; i++) {
        gain[i] = (float)(0.2 + 2 * rng_unif(&r));
        bias[i] = (float)rng_normal(&r);
    }
    ln_params p = {.kind = LN_KIND_LAYERNORM, .n = N, .groups = G, .eps = 1e-5f,
                   .gain = gain, .bias = bias};
    double *axes = malloc((size_t)G * K * GS * sizeof(double)), semi[G * K];
    assert_non_null(axes);
    for (size_t g = 0; g < G; g++) {
        geometry *geo = NULL;
        assert_int_equal(geometry_create(gain + g * GS, GS, &geo, NULL), 0);
        assert_int_equal(geometry_axes(geo, K, axes + g * K * GS), 0);
        for (size_t j = 0; j < K; j++)
            semi[g * K + j] = geo->semi_axes[j];
        geometry_destroy(geo);
    }
    for (int t = 0; t < 20; t++) {
        fill(&r, x, N, 1.0, t < 10 ? 1.0 : 3e-3);
        ln_rows_ref(&p, x, y, 1, NULL);
        ln_axis_coords(&p, axes, semi, K, y, 1, c);
        for (size_t g = 0; g < G; g++) {
            long double m, v;
            ld_moments(x + g * GS, GS, &m, &v);
            double rho2 = (double)(v / (v + (long double)1e-5f)), sum = 0;
            for (size_t j = 0; j < K; j++) {
                assert_true(fabsf(c[g * K + j]) <= 1.0f + 1e-5f);
                sum += (double)c[g * K + j] * c[g * K + j];
            }
            if (fabs(sum - rho2) > 1e-5)
                fail_msg("group %zu: sum of squares %.9g, rho_k^2 %.9g", g, sum, rho2);
        }
        /* Change group 2 only: groups 0, 1 and 3 keep their coordinates. */
        float c2[G * K];
        for (size_t i = 2 * GS; i < 3 * GS; i++)
            x[i] = (float)(x[i] * 2.0 + 1.0);
        ln_rows_ref(&p, x, y, 1, NULL);
        ln_axis_coords(&p, axes, semi, K, y, 1, c2);
        for (size_t j = 0; j < G * K; j++)
            if (j / K != 2)
                assert_true(c2[j] == c[j]);
    }
    free(axes);
}

/* ---- Jacobian and Hessian norms against finite differences ---- */

/* y = LN(x) (or RMSNorm) of one row of n in double, G groups, gain g and
 * no bias (the bias does not move derivatives); z when g is NULL. */
static void ln_double(ln_kind kind, const double *x, size_t n, size_t G, double eps,
                      const double *g, double *y)
{
    size_t gs = n / G;
    for (size_t k = 0; k < G; k++) {
        const double *xg = x + k * gs;
        double m = 0, v = 0;
        if (kind == LN_KIND_LAYERNORM) {
            for (size_t i = 0; i < gs; i++)
                m += xg[i];
            m /= (double)gs;
        }
        for (size_t i = 0; i < gs; i++)
            v += (xg[i] - m) * (xg[i] - m);
        v /= (double)gs;
        for (size_t i = 0; i < gs; i++)
            y[k * gs + i] = (xg[i] - m) / sqrt(v + eps) * (g ? g[k * gs + i] : 1.0);
    }
}

enum { FD_N = 8 };

/* |dy/dx|_F by central differences (step h relative to the row's scale). */
static double fd_jacobian(ln_kind kind, const double *x, size_t n, size_t G, double eps,
                          const double *g, double h)
{
    double sum = 0, xp[FD_N], yp[FD_N], ym[FD_N];
    for (size_t j = 0; j < n; j++) {
        for (size_t i = 0; i < n; i++)
            xp[i] = x[i];
        xp[j] = x[j] + h;
        ln_double(kind, xp, n, G, eps, g, yp);
        xp[j] = x[j] - h;
        ln_double(kind, xp, n, G, eps, g, ym);
        for (size_t i = 0; i < n; i++) {
            double d = (yp[i] - ym[i]) / (2 * h);
            sum += d * d;
        }
    }
    return sqrt(sum);
}

/* |d2z/dx2|_F (z without gain) by second central differences. */
static double fd_hessian(const double *x, size_t n, size_t G, double eps, double h)
{
    double sum = 0, xp[FD_N], a[FD_N], b[FD_N], c[FD_N], d[FD_N];
    for (size_t j = 0; j < n; j++)
        for (size_t k = 0; k < n; k++) {
            const double sj[4] = {h, h, -h, -h}, sk[4] = {h, -h, h, -h};
            double *out[4] = {a, b, c, d};
            for (int q = 0; q < 4; q++) {
                for (size_t i = 0; i < n; i++)
                    xp[i] = x[i];
                xp[j] += sj[q];
                xp[k] += sk[q];
                ln_double(LN_KIND_LAYERNORM, xp, n, G, eps, NULL, out[q]);
            }
            for (size_t i = 0; i < n; i++) {
                double e = (a[i] - b[i] - c[i] + d[i]) / (4 * h * h);
                sum += e * e;
            }
        }
    return sqrt(sum);
}

/*
 * jacobian_fro and nonlinearity against finite differences in double, on
 * rows of 8 (exactly representable in float, so both see the same x), for
 * layernorm and rmsnorm, groups 1, 2 and 4, eps 1e-2 (v ~ eps: the eps
 * terms matter) and 0, with and without gains. The differences' own error
 * is ~1e-7 relative (steps of 1e-4 / 1e-3 of the row's scale); the bound is
 * 2e-5.
 */
static void test_jacobian_nonlinearity(void **state)
{
    (void)state;
    rng r = rng_seeded(test_seed, "jacobian");
    static const double sds[] = {0.1, 1.0, 3.0};
    for (int kind = 0; kind < 2; kind++)
        for (size_t G = 1; G <= 4; G *= 2)
            for (int e = 0; e < 2; e++)
                for (int withg = 0; withg < 2; withg++)
                    for (size_t f = 0; f < 3; f++) {
                        float xf[FD_N], gf[FD_N];
                        double x[FD_N], g[FD_N];
                        fill(&r, xf, FD_N, kind ? 0.7 : 2.0, sds[f]);
                        for (size_t i = 0; i < FD_N; i++) {
                            gf[i] = (float)(0.5 + rng_unif(&r));
                            x[i] = xf[i];
                            g[i] = gf[i];
                        }
                        ln_params p = {.kind = kind ? LN_KIND_RMSNORM : LN_KIND_LAYERNORM,
                                       .n = FD_N, .groups = G, .eps = e ? 0.0f : 1e-2f,
                                       .gain = withg ? gf : NULL};
                        float jac = -1, nl = -1;
                        ln_jacobian_nonlinearity(&p, xf, 1, &jac, &nl);
                        /* Steps relative to the narrowest group's scale:
                         * a group of 2 may hold two close values. */
                        double scale = INFINITY;
                        for (size_t k = 0; k < G; k++) {
                            size_t gs = FD_N / G;
                            double m = 0, v = 0;
                            for (size_t i = 0; i < gs; i++)
                                m += kind ? 0 : x[k * gs + i] / (double)gs;
                            for (size_t i = 0; i < gs; i++)
                                v += (x[k * gs + i] - m) * (x[k * gs + i] - m) / (double)gs;
                            scale = fmin(scale, sqrt(v + (double)p.eps));
                        }
                        double want_j = fd_jacobian(p.kind, x, FD_N, G, (double)p.eps,
                                                    withg ? g : NULL, 1e-4 * scale);
                        if (fabs(jac - want_j) > 2e-5 * want_j + 1e-6 / scale)
                            fail_msg("jacobian_fro kind %d G=%zu eps=%g gain %d sd=%g: "
                                     "%.9g, finite differences %.9g",
                                     kind, G, (double)p.eps, withg, sds[f], (double)jac,
                                     want_j);
                        if (kind == 0) {
                            double want_h = fd_hessian(x, FD_N, G, (double)p.eps,
                                                       1e-3 * scale);
                            if (fabs(nl - want_h) > 2e-5 * want_h + 1e-6 / (scale * scale))
                                fail_msg("nonlinearity G=%zu eps=%g sd=%g: %.9g, finite "
                                         "differences %.9g",
                                         G, (double)p.eps, sds[f], (double)nl, want_h);
                        } else {
                            assert_true(nl == 0.0f);
                        }
                    }
}

/* Closed forms: a constant row (y = b) has no slope; at eps = 0 a group's
 * Hessian norm is sqrt(3 (n - 2) / (n v^2)); the same row split into more
 * groups of equal variance has a larger one (Ni et al.). */
static void test_nonlinearity_closed_form(void **state)
{
    (void)state;
    float x[N], jac, nl;
    for (size_t i = 0; i < N; i++)
        x[i] = 5.0f;
    ln_params p = {.kind = LN_KIND_LAYERNORM, .n = N, .groups = 1, .eps = 0.0f};
    ln_jacobian_nonlinearity(&p, x, 1, &jac, &nl);
    assert_true(jac == 0.0f && nl == 0.0f);
    /* +-1 alternating: every group of even size has mean 0 and v = 1. */
    for (size_t i = 0; i < N; i++)
        x[i] = i % 2 ? -1.0f : 1.0f;
    double last = 0;
    for (size_t G = 1; G <= 16; G *= 2) {
        p.groups = G;
        ln_jacobian_nonlinearity(&p, x, 1, &jac, &nl);
        double n = (double)N / (double)G, want = sqrt((double)G * 3 * (n - 2) / n);
        assert_true(fabs(nl - want) <= 1e-6 * want);
        assert_true(nl > last);
        last = nl;
        /* Without gain at eps 0 the Jacobian is r (P - z z^T / n) per
         * group: singular values 1 (n - 2 times), 0, 0 (v = 1, r = 1). */
        double want_j = sqrt((double)G * (n - 2));
        assert_true(fabs(jac - want_j) <= 1e-6 * want_j);
    }
}

int main(void)
{
    const char *env = getenv("LNSERVE_TEST_SEED");
    test_seed = env ? strtoull(env, NULL, 10) : 0x5eed;
    printf("test_diag: seed %llu (LNSERVE_TEST_SEED to replay)\n", (unsigned long long)test_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth_condition),
        cmocka_unit_test(test_plane_residual),
        cmocka_unit_test(test_plane_residual_sums),
        cmocka_unit_test(test_plane_fused),
        cmocka_unit_test(test_axis_coords),
        cmocka_unit_test(test_axis_coords_groups),
        cmocka_unit_test(test_jacobian_nonlinearity),
        cmocka_unit_test(test_nonlinearity_closed_form),
    };
    return cmocka_run_group_tests_name("diag", tests, NULL, NULL);
}
