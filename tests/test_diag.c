/*
 * test_diag.c -- core/diag.c against direct float64 computations: depth
 * and condition on normal, offset, tiny-variance and constant rows and in
 * groups; the plane residual of the reference kernel's outputs; and the
 * axis coordinates, whose squares over all N-1 axes sum to radius^2
 * (MATH.md section 4).
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
#include "test_rng.h"

static uint64_t test_seed;

enum { N = 96 };

static void fill(rng *r, float *x, size_t n, double mean, double sd)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(mean + sd * rng_normal(r));
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
                long double m = 0, v = 0;
                for (size_t i = 0; i < gs; i++)
                    m += x[k * gs + i];
                m /= gs;
                for (size_t i = 0; i < gs; i++)
                    v += (x[k * gs + i] - m) * (x[k * gs + i] - m);
                v /= gs;
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
        ln_plane_residual(&p, y, 1, res);
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

int main(void)
{
    const char *env = getenv("LNSERVE_TEST_SEED");
    test_seed = env ? strtoull(env, NULL, 10) : 0x5eed;
    printf("test_diag: seed %llu (LNSERVE_TEST_SEED to replay)\n", (unsigned long long)test_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_depth_condition),
        cmocka_unit_test(test_plane_residual),
        cmocka_unit_test(test_axis_coords),
    };
    return cmocka_run_group_tests_name("diag", tests, NULL, NULL);
}
