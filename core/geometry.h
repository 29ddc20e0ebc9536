/*
 * geometry.h -- model-level geometry of a LayerNorm layer: the eigen-
 * structure of M = diag(g^2) - g g^T / N, whose eigenvectors with nonzero
 * eigenvalue are the principal axes of the (N-1)-dimensional ellipsoid that
 * all outputs y - b lie in, with semi-axes sqrt(N lambda).
 *
 * Computed once when a model loads (never on the per-row path). core/
 * depends on libc and libm only; this module allocates (geometry_create)
 * and keeps no global state. A geometry is read-only after creation:
 * geometry_axes may run on one from many threads at once.
 *
 * Method (../shared/MATH.md section 3): M is diagonal minus rank one.
 * Repeated gains and zero gains are deflated exactly; the remaining n_red
 * distinct d_j = g_j^2 carry one root each of the secular equation
 *   f(lambda) = 1 - (1/N) sum_i g_i^2 / (g_i^2 - lambda) = 0,
 * found by a safeguarded two-pole rational Newton iteration (Li's
 * "middle way" family, as LAPACK dlaed4) in a variable shifted to the
 * nearer pole. f is evaluated with a Barnes-Hut treecode over the sorted
 * poles (exact sums near the root, multipole series truncated at 1e-17
 * relative far from it), so all eigenvalues cost about O(N log N) instead
 * of O(N^2). Eigenvectors use the Gu-Eisenstat recomputation of the rank-
 * one vector, so they are orthogonal to working precision; that step is
 * O(n_red^2) and only runs in geometry_axes.
 */
#pragma once

#include <stddef.h>

typedef struct geometry_priv geometry_priv;

typedef struct geometry {
    /* public, read-only */
    size_t n;            /* N >= 1 */
    double *eigenvalues; /* [n] eigenvalues of M, descending; the last is 0 */
    double *semi_axes;   /* [n - 1] sqrt(N lambda) for the n - 1 largest
                            eigenvalues, descending; NULL when n == 1 */
    /*
     * [n] unit hyperplane normal G^{-1} 1 / |G^{-1} 1| (the eigenvector of
     * eigenvalue 0), or NULL when some gain is 0: then there is no
     * hyperplane constraint (y_i = b_i on each zero-gain feature, the other
     * features fill a full-dimensional ellipsoid), and the eigenvalue 0 has
     * eigenvectors e_i, one per zero gain.
     */
    double *normal;
    size_t n_zero_gains; /* features with g_i == 0 */
    size_t n_secular;    /* eigenvalues found as secular roots (n_red) */
    size_t n_deflated;   /* eigenvalues equal to a repeated g_i^2, exact */
    /*
     * log of the (N-1)-volume of the output ellipsoid:
     * log omega_{N-1} + ((N-1)/2) log N + (1/2) sum log lambda over the
     * N - 1 largest eigenvalues (omega_k: volume of the unit k-ball).
     * -INFINITY when some gain is 0 (the region is flat); 0 when n == 1.
     */
    double log_volume;
    /* longest / shortest semi-axis over the n - 1 axes; INFINITY when the
     * shortest is 0 (a zero gain), 1 when n == 1 or every gain is 0 */
    double axis_ratio;
    /*
     * Solver health: the largest secular residual |f(lambda)| /
     * (1 + sum_i |w_i / (d_i - lambda)| + |tau| sum_i w_i / (d_i -
     * lambda)^2) over the secular roots (w_i = g_i^2 / N, d_i = g_i^2, tau
     * = lambda minus its nearer pole): a backward error, <= 4 eps = 8.9e-16
     * when converged; and |sum lambda -
     * trace(M)| / trace(M) (0 when trace(M) == 0).
     */
    double residual;
    double trace_error;

    geometry_priv *priv; /* private */
} geometry;

/*
 * Computes the geometry of gain (length n, or NULL for all ones). Gains
 * must be finite. Returns 0 and *out (free with geometry_destroy), or
 * -EINVAL (n == 0, a non-finite gain; *why says which) or -ENOMEM.
 * *why may be NULL.
 */
int geometry_create(const float *gain, size_t n, geometry **out, const char **why);

/*
 * Writes the unit eigenvectors (principal axes) of the k largest
 * eigenvalues, in the order of g->eigenvalues: axis j at axes[j * n ...
 * j * n + n - 1]. k <= n. Inside a block of equal gains the eigenvalue is
 * repeated and its axes are one orthonormal basis of that block orthogonal
 * to g (any other would do as well). Costs O(n_red^2 + k n): measured (bench_geometry,
 * k = 16) 0.6 ms at N = 768, 17 ms at 4096, 4.5 s at 65536. Returns 0,
 * -EINVAL (k > n) or -ENOMEM.
 */
int geometry_axes(const geometry *g, size_t k, double *axes);

/* Frees g and everything it owns. NULL is allowed. */
void geometry_destroy(geometry *g);
