#include "diag.h"

#include <math.h>

void ln_depth_condition(const ln_params *p, const float *x, size_t n_rows, float *depth,
                        float *condition)
{
    size_t G = p->groups, gs = p->n / G;
    double eps = p->eps;
    for (size_t r = 0; r < n_rows; r++) {
        double one_minus_rho2 = 0, worst = 1;
        for (size_t k = 0; k < G; k++) {
            const float *xg = x + r * p->n + k * gs;
            double m = 0, v = 0;
            if (p->kind == LN_KIND_LAYERNORM) {
                for (size_t i = 0; i < gs; i++)
                    m += xg[i];
                m /= (double)gs;
            }
            for (size_t i = 0; i < gs; i++)
                v += ((double)xg[i] - m) * ((double)xg[i] - m);
            v /= (double)gs;
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

int ln_plane_ok(const ln_params *p)
{
    if (p->kind != LN_KIND_LAYERNORM)
        return 0;
    for (size_t i = 0; p->gain && i < p->n; i++)
        if (p->gain[i] == 0)
            return 0;
    return 1;
}

void ln_plane_residual(const ln_params *p, const float *y, size_t n_rows, float *out)
{
    size_t G = p->groups, gs = p->n / G;
    for (size_t r = 0; r < n_rows; r++) {
        const float *yr = y + r * p->n;
        for (size_t k = 0; k < G; k++) {
            double num = 0, den = 0;
            for (size_t i = k * gs; i < (k + 1) * gs; i++) {
                double g = p->gain ? p->gain[i] : 1.0;
                double b = p->bias ? p->bias[i] : 0.0;
                num += ((double)yr[i] - b) / g;
                den += 1 / (g * g);
            }
            out[r * G + k] = (float)(num / sqrt(den));
        }
    }
}

void ln_axis_coords(const ln_params *p, const double *axes, const double *semi, size_t k,
                    const float *y, size_t n_rows, float *out)
{
    size_t n = p->n;
    for (size_t r = 0; r < n_rows; r++) {
        const float *yr = y + r * n;
        for (size_t j = 0; j < k; j++) {
            const double *a = axes + j * n;
            double dot = 0;
            for (size_t i = 0; i < n; i++)
                dot += a[i] * ((double)yr[i] - (p->bias ? p->bias[i] : 0.0));
            out[r * k + j] = (float)(dot / semi[j]);
        }
    }
}
