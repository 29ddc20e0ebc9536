#include "diag.h"

#include "ln_internal.h"

#include <math.h>

void ln_depth_condition(const ln_params *p, const float *x, size_t n_rows, float *depth,
                        float *condition)
{
    size_t G = p->groups, gs = p->n / G;
    double eps = p->eps;
    for (size_t r = 0; r < n_rows; r++) {
        double one_minus_rho2 = 0, worst = 1;
        for (size_t k = 0; k < G; k++) {
            double m, v; /* rmsnorm: m = 0, v = mean(x^2) */
            ln_ref_group_moments(p->kind, x + r * p->n + k * gs, gs, &m, &v);
            /* v + eps == 0 (constant group, eps 0): the output is the
             * bias, at the centre: depth 1 (delta 1). */
            one_minus_rho2 += v + eps > 0 ? eps / (v + eps) : 1.0;
            if (p->kind == LN_KIND_LAYERNORM && v > 0) {
                double c = sqrt(1 + m * m / v);
                worst = c > worst ? c : worst;
            }
        }
        one_minus_rho2 /= (double)G;
        if (depth)
            depth[r] = (float)(one_minus_rho2 / (1 + sqrt(1 - one_minus_rho2)));
        if (condition)
            condition[r] = (float)worst;
    }
}

void ln_jacobian_nonlinearity(const ln_params *p, const float *x, size_t n_rows,
                              float *jac_fro, float *nonlin)
{
    size_t G = p->groups, n = p->n / G;
    double eps = p->eps, dn = (double)n;
    int is_ln = p->kind == LN_KIND_LAYERNORM;
    for (size_t r = 0; r < n_rows; r++) {
        double j2 = 0, h2 = 0;
        for (size_t k = 0; k < G; k++) {
            const float *xg = x + r * p->n + k * n;
            const float *g = p->gain ? p->gain + k * n : NULL;
            double m, v, sg2 = 0, sgd2 = 0; /* rmsnorm: m = 0, v = mean(x^2) */
            ln_ref_group_moments(p->kind, xg, n, &m, &v);
            for (size_t i = 0; i < n; i++) {
                double d = (double)xg[i] - m, g2 = g ? (double)g[i] * g[i] : 1.0;
                sg2 += g2;
                sgd2 += g2 * d * d;
            }
            double s2 = dn * v, den = v + eps;
            if (!(den > 0))
                continue; /* constant group, eps 0: y = b, no slope */
            double rho2 = v / den, c = rho2 * (2 - rho2);
            double sgu = s2 > 0 ? sgd2 / s2 : 0;
            j2 += ((is_ln ? 1 - 1 / dn : 1) * sg2 - c * sgu) / den;
            if (is_ln) {
                /* The formula with t / T = rho^2 taken out: no T^5 to
                 * overflow. */
                double T = dn * den;
                h2 += dn * rho2 * ((3 * dn + 3) - 18 * rho2 + 9 * rho2 * rho2) / (T * T);
            }
        }
        /* Rounding can leave a tiny negative where the exact value is 0
         * (n = 1: the output is the bias whatever x is). */
        if (jac_fro)
            jac_fro[r] = (float)sqrt(j2 > 0 ? j2 : 0);
        if (nonlin)
            nonlin[r] = (float)sqrt(h2 > 0 ? h2 : 0);
    }
}

int ln_plane_ok(const ln_params *p)
{
    if (p->kind != LN_KIND_LAYERNORM)
        return 0;
    for (size_t i = 0; p->gain && i < p->n; i++)
        if (p->gain[i] == 0)
            return 0;
    return 1;
}

void ln_plane_inv_gain(const ln_params *p, double *inv_gain)
{
    for (size_t i = 0; i < p->n; i++)
        inv_gain[i] = 1.0 / (double)p->gain[i];
}

void ln_plane_residual(const ln_params *p, const double *inv_gain, const float *y,
                       size_t n_rows, float *out)
{
    size_t G = p->groups, gs = p->n / G;
    int vec = ln_cpu_has_avx2();
    for (size_t k = 0; k < G; k++) {
        const double *w = inv_gain ? inv_gain + k * gs : NULL;
        const float *b = p->bias ? p->bias + k * gs : NULL;
        double den = 0;
        for (size_t i = 0; i < gs; i++)
            den += w ? w[i] * w[i] : 1.0;
        double norm = sqrt(den);
        for (size_t r = 0; r < n_rows; r++) {
            const float *yg = y + r * p->n + k * gs;
            double num = 0;
            if (vec)
                num = ln_plane_sum_avx2(yg, b, w, gs);
            else
                for (size_t i = 0; i < gs; i++)
                    num += ((double)yg[i] - (b ? (double)b[i] : 0.0)) * (w ? w[i] : 1.0);
            out[r * G + k] = (float)(num / norm);
        }
    }
}

void ln_plane_consts(const ln_params *p, const double *inv_gain, double *c)
{
    size_t G = p->groups, gs = p->n / G;
    for (size_t k = 0; k < G; k++) {
        /* Neumaier sums: sum b w may cancel. */
        double bw = 0, bw_c = 0, ww = 0;
        for (size_t i = 0; i < gs; i++) {
            double w = inv_gain ? inv_gain[k * gs + i] : 1.0;
            double t = (p->bias ? (double)p->bias[k * gs + i] : 0.0) * w, s = bw + t;
            bw_c += fabs(bw) >= fabs(t) ? (bw - s) + t : (t - s) + bw;
            bw = s;
            ww += w * w;
        }
        c[2 * k] = bw + bw_c;
        c[2 * k + 1] = 1.0 / sqrt(ww);
    }
}

void ln_axis_coords(const ln_params *p, const double *axes, const double *semi, size_t k,
                    const float *y, size_t n_rows, float *out)
{
    size_t n = p->n, G = p->groups, gs = n / G;
    for (size_t r = 0; r < n_rows; r++)
        for (size_t g = 0; g < G; g++) {
            const float *yg = y + r * n + g * gs;
            const float *bg = p->bias ? p->bias + g * gs : NULL;
            for (size_t j = 0; j < k; j++) {
                const double *a = axes + (g * k + j) * gs;
                double dot = 0;
                for (size_t i = 0; i < gs; i++)
                    dot += a[i] * ((double)yg[i] - (bg ? bg[i] : 0.0));
                out[(r * G + g) * k + j] = (float)(dot / semi[g * k + j]);
            }
        }
}
