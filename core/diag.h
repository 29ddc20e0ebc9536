/*
 * diag.h -- the per-row diagnostics beyond mean, rstd and radius
 * (../shared/MATH.md section 4), computed after the kernel from what it
 * returned: depth below the ellipsoid's surface, the row's condition
 * number, the Frobenius norms of the Jacobian and (layernorm) the Hessian,
 * the output's distance from its hyperplane, and its coordinates along the
 * model's principal axes.
 *
 * Pure functions on caller-owned arrays; no allocation; any thread.
 */
#pragma once

#include <stddef.h>

#include "ln.h"

/*
 * From the input rows x ([rows * n], before the kernel overwrites them in
 * place), with each group's mean m and variance v taken again in double
 * (two passes; opt-in outputs, so the extra pass is paid only on request):
 *   depth[r]     = 1 - radius without cancellation: with delta_k =
 *                  eps / (v_k + eps), 1 - rho^2 = mean_k delta_k and
 *                  depth = (1 - rho^2) / (1 + rho). (From the kernel's
 *                  float rstd instead, 1 - rho^2 would lose every digit on
 *                  rows with v << eps.)
 *   condition[r] = sqrt(1 + m^2 / v), the largest over the row's groups
 *                  (the worst one bounds the row's float32 error); 1 for
 *                  rmsnorm (nothing is centred) and for a constant group.
 * Either output may be NULL.
 */
void ln_depth_condition(const ln_params *p, const float *x, size_t n_rows, float *depth,
                        float *condition);

/*
 * From the input rows x (before the kernel, like ln_depth_condition), per
 * row, summed over the groups (dy/dx is block diagonal, one block a group):
 *   jac_fro[r]  = |dy/dx|_F. Per group of n, with r = 1/sqrt(v + eps),
 *                 rho^2 = v / (v + eps), c = rho^2 (2 - rho^2) = 1 -
 *                 delta^2 and uhat = (x - m) / |x - m|:
 *                 |J|_F^2 = r^2 [(1 - 1/n) sum g^2 - c sum g^2 uhat^2]
 *                 (rmsnorm: m = 0, v = mean(x^2), no 1/n term: the
 *                 projection is the identity). O(n), in double.
 *   nonlin[r]   = sqrt(sum over groups of |H|_F^2), H the Hessian of
 *                 layernorm's z = (x - m) r (before gain and bias): with
 *                 t = n v and T = n (v + eps),
 *                 |H|_F^2 = n t [(3n + 3) T^2 - 18 t T + 9 t^2] / T^5,
 *                 3 (n - 2) / (n v^2) at eps = 0. For the same width it
 *                 grows with the number of groups: Ni et al.'s "group
 *                 partition amplifies nonlinearity" as a number. Layernorm
 *                 only (MATH.md 4 derives no rmsnorm form): 0 for rmsnorm.
 * A group with v + eps == 0 (constant, eps 0) returns y = b (ln.h) and
 * counts 0 in both. Either output may be NULL. Checked against finite
 * differences in tests/test_diag.c.
 */
void ln_jacobian_nonlinearity(const ln_params *p, const float *x, size_t n_rows,
                              float *jac_fro, float *nonlin);

/*
 * Hyperplane residual of returned rows y ([rows * n]), per group
 * ([rows * groups]): (sum_i (y_i - b_i) / g_i) / sqrt(sum_i 1 / g_i^2)
 * over the group, in double. Zero in exact arithmetic, so it measures the
 * kernel's rounding. Layernorm with every gain nonzero only (the caller
 * checks; ln_plane_ok says). inv_gain is [n] with 1 / g_i in double
 * (ln_plane_inv_gain; made once per model), or NULL when p has no gain.
 * With AVX2 the sums run vectorized: a division per element made this
 * pass 4 to 9 times the kernel's time (bench/bench_kernel).
 */
void ln_plane_residual(const ln_params *p, const double *inv_gain, const float *y,
                       size_t n_rows, float *out);

/* inv_gain[i] = 1 / (double)p->gain[i] for the n gains (p->gain non-NULL,
 * all nonzero). */
void ln_plane_inv_gain(const ln_params *p, double *inv_gain);

/*
 * The per-group constants of the fused plane residual (ln_diag.plane_c):
 * c[2k] = sum_i b_i w_i and c[2k + 1] = 1 / sqrt(sum_i w_i^2) over group k,
 * w = inv_gain (1 without gain), b = 0 without bias; in double with
 * compensated sums. The kernel then needs only sum_i y_i w_i per row:
 * residual = (sum y w - c[2k]) * c[2k + 1].
 */
void ln_plane_consts(const ln_params *p, const double *inv_gain, double *c);

/* 1 when p is a layernorm whose gains are all nonzero (or absent). */
int ln_plane_ok(const ln_params *p);

/*
 * Coordinates along the k longest principal axes of each group of a
 * layernorm (LN-G's region is the product of the groups' regions, MATH.md
 * 3): out[(r * G + g) * k + j] = axes_{g,j} . (y_{r,g} - b_g) / semi_{g,j},
 * where axes is [G * k * n/G] (unit vectors, group by group,
 * core/geometry.h) and semi [G * k] the semi-axis lengths sqrt(n/G
 * lambda) (> 0). Each coordinate is in [-1, 1] up to rounding; over all
 * n/G - 1 axes of group g their squares sum to rho_g^2, so over every
 * group's axes to G radius^2.
 */
void ln_axis_coords(const ln_params *p, const double *axes, const double *semi, size_t k,
                    const float *y, size_t n_rows, float *out);
