/*
 * ln_ref.c -- the scalar reference kernel, the oracle every vector path is
 * tested against, and parameter validation.
 *
 * Contract (ln.h): every statistic is accumulated in double over the float
 * inputs, with Neumaier compensation so that the order of summation does
 * not matter even for long offset rows, and every output is rounded to
 * float exactly once. The result is therefore within about half an ulp of
 * the exact LayerNorm of the given floats (MATH.md section 6). Speed is not
 * a goal here; no allocation, no state, thread-safe.
 */
#include "ln.h"
#include "ln_internal.h"

#include <errno.h>
#include <math.h>

/*
 * Compensated (Neumaier) double sum. Plain double summation of 1e5 floats
 * with mean 1e4 can lose ~1e-7 of the mean in the worst case, which is an
 * ulp of a unit-variance output; the compensation removes that doubt from
 * the oracle.
 */
typedef struct ref_sum {
    double s;
    double c;
} ref_sum;

static void ref_sum_add(ref_sum *a, double v)
{
    double t = a->s + v;

    if (fabs(a->s) >= fabs(v))
        a->c += (a->s - t) + v;
    else
        a->c += (v - t) + a->s;
    a->s = t;
}

static double ref_sum_get(const ref_sum *a)
{
    return a->s + a->c;
}

/* Statistics of one group of len elements, all in double. */
typedef struct ref_stats {
    double mean; /* 0 for rmsnorm */
    double var;  /* v, or q = mean(x^2) for rmsnorm */
    double rstd; /* 1 / sqrt(var + eps), 0 when var + eps == 0 */
    double frac; /* var / (var + eps), the group's rho^2; 0 when var + eps == 0 */
} ref_stats;

static ref_stats ref_group_stats(ln_kind kind, const float *x, size_t len,
                                 double eps)
{
    ref_stats st = { 0 };
    ref_sum ss = { 0 };
    double denom;
    size_t i;

    if (kind == LN_KIND_LAYERNORM) {
        ref_sum sum = { 0 };

        for (i = 0; i < len; i++)
            ref_sum_add(&sum, x[i]);
        st.mean = ref_sum_get(&sum) / (double)len;
        /*
         * Two passes, never E[x^2] - E[x]^2 (MATH.md 6). For a constant
         * group the sum is exact (k * x needs at most 24 + 29 bits for
         * k < 2^29), so mean == x and every d below is exactly 0.
         */
        for (i = 0; i < len; i++) {
            double d = (double)x[i] - st.mean;

            ref_sum_add(&ss, d * d);
        }
    } else {
        for (i = 0; i < len; i++)
            ref_sum_add(&ss, (double)x[i] * x[i]);
    }
    st.var = ref_sum_get(&ss) / (double)len;
    denom = st.var + eps;
    /* A constant group with eps == 0: report rstd 0 so y = bias, no NaN. */
    if (denom > 0.0) {
        st.rstd = 1.0 / sqrt(denom);
        st.frac = st.var / denom;
    }
    return st;
}

void ln_ref_group_moments(ln_kind kind, const float *x, size_t len, double *mean, double *var)
{
    ref_stats st = ref_group_stats(kind, x, len, 0.0);

    *mean = st.mean;
    *var = st.var;
}

void ln_rows_ref(const ln_params *p, const float *x, float *y, size_t n_rows,
                 const ln_diag *d)
{
    const size_t n = p->n;
    const size_t groups = p->groups;
    const size_t len = n / groups;
    const double eps = p->eps;
    size_t r, k, i;

    for (r = 0; r < n_rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double frac_sum = 0.0;

        for (k = 0; k < groups; k++) {
            const size_t off = k * len;
            /* Statistics first: with y == x the loop below overwrites xr. */
            ref_stats st = ref_group_stats(p->kind, xr + off, len, eps);

            for (i = off; i < off + len; i++) {
                double t = ((double)xr[i] - st.mean) * st.rstd;

                if (p->gain)
                    t *= p->gain[i];
                if (p->bias)
                    t += p->bias[i];
                yr[i] = (float)t;
            }
            if (d && d->plane) {
                /* sum (y - b) w over the float outputs just stored: here
                 * and not through diag.c's ln_plane_residual, so that the
                 * oracle (which lnctl links alone) needs nothing else of
                 * core, and so that the tests compare two computations. */
                double num = 0.0;

                for (i = off; i < off + len; i++)
                    num += ((double)yr[i] - (p->bias ? (double)p->bias[i] : 0.0)) *
                           (d->plane_w ? d->plane_w[i] : 1.0);
                d->plane[r * groups + k] =
                    (float)(d->plane_c ? num * d->plane_c[2 * k + 1] : num / sqrt((double)len));
            }
            if (d && d->mean)
                d->mean[r * groups + k] = (float)st.mean;
            if (d && d->rstd)
                d->rstd[r * groups + k] = (float)st.rstd;
            frac_sum += st.frac;
        }
        if (d && d->radius)
            d->radius[r] = (float)sqrt(frac_sum / (double)groups);
    }
}

int ln_params_check(const ln_params *p, const char **why)
{
    const char *reason = NULL;

    if (!p)
        reason = "params missing";
    else if (p->kind != LN_KIND_LAYERNORM && p->kind != LN_KIND_RMSNORM)
        reason = "kind must be layernorm or rmsnorm";
    else if (p->n == 0)
        reason = "n must be > 0";
    else if (p->groups == 0)
        reason = "groups must be >= 1";
    else if (p->n % p->groups != 0)
        reason = "groups must divide n";
    else if (!isfinite(p->eps) || p->eps < 0.0f)
        reason = "eps must be finite and >= 0";

    if (why)
        *why = reason;
    return reason ? -EINVAL : 0;
}
