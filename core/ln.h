/*
 * ln.h -- LayerNorm / RMSNorm / LN-G kernels for float32 rows, with the
 * per-row diagnostics that come free with the statistics.
 *
 * core/ depends on libc and libm only. Nothing here allocates, creates
 * threads or keeps global mutable state except the dispatch choice, which
 * is made once (ln_dispatch_init) before any worker runs and is read-only
 * afterwards. Every function is safe to call from many threads at once on
 * disjoint outputs.
 *
 * Formulas: ../shared/MATH.md sections 1, 4 and 6.
 */
#pragma once

#include <stddef.h>

typedef enum ln_kind {
    LN_KIND_LAYERNORM = 0,
    LN_KIND_RMSNORM = 1,
} ln_kind;

/*
 * A normalization layer. The caller owns gain and bias (length n each, or
 * NULL for 1 and 0) and keeps them alive while the params are in use.
 */
typedef struct ln_params {
    ln_kind kind;
    size_t n;          /* row length N, > 0 */
    size_t groups;     /* G >= 1, divides n */
    float eps;         /* >= 0, added to the variance inside the root */
    const float *gain; /* [n] or NULL */
    const float *bias; /* [n] or NULL */
} ln_params;

/*
 * Per-row outputs besides y. Any pointer may be NULL: that diagnostic is
 * not written. For row r of a batch, mean and rstd are written at
 * [r * groups + k] for group k and radius at [r].
 *
 *   mean   group mean (rmsnorm: 0)
 *   rstd   1 / sqrt(var + eps) (rmsnorm: 1 / sqrt(mean(x^2) + eps)); a group
 *          with var + eps == 0 (constant group with eps == 0) reports 0
 *   radius rho = sqrt(mean over groups of v_k / (v_k + eps)), in [0, 1];
 *          0 for a constant row, never NaN
 *   plane  the hyperplane residual of the returned y per group at
 *          [r * groups + k] (diag.h, ln_plane_residual; layernorm with
 *          nonzero gains only), with plane_w and plane_c from the model
 *          (ln_plane_inv_gain, ln_plane_consts). plane_w must be given
 *          when p has a gain, and plane_c may be NULL only when p has
 *          neither gain nor bias. The AVX-512 kernel sums it inside its
 *          output pass, from the y it stores; the reference in its own
 *          loop; AVX2 runs ln_plane_residual after it.
 */
typedef struct ln_diag {
    float *mean;            /* [rows * groups] or NULL */
    float *rstd;            /* [rows * groups] or NULL */
    float *radius;          /* [rows] or NULL */
    float *plane;           /* [rows * groups] or NULL */
    const double *plane_w;  /* [n]: 1 / g in double; NULL without gain */
    const double *plane_c;  /* [2 * groups]: ln_plane_consts; NULL when the
                             * model has neither gain nor bias */
} ln_diag;

/*
 * Normalizes n_rows rows of p->n floats. Row r starts at x + r * p->n and
 * its output at y + r * p->n. x and y may be unaligned; y == x is allowed
 * (in place); other overlaps are not. A constant group yields y = bias on
 * that group, exactly, and never NaN. Inputs must be finite (the front
 * checks); non-finite inputs propagate as IEEE arithmetic does. The vector
 * kernels square in float and take a group's moments in double when those
 * squares overflow (values spread past ~1.8e19); they compute x - mean in
 * float, so a group whose values differ by more than FLT_MAX (about
 * 3.4e38, i.e. values near both +FLT_MAX and -FLT_MAX) is out of their
 * range: only the reference handles it.
 */
typedef void (*ln_rows_fn)(const ln_params *p, const float *x, float *y,
                           size_t n_rows, const ln_diag *d);

/* Scalar reference: accumulates in double, rounds once. The oracle. */
void ln_rows_ref(const ln_params *p, const float *x, float *y, size_t n_rows,
                 const ln_diag *d);

/* AVX2+FMA kernel. Call only when ln_cpu_has_avx2() is true. */
void ln_rows_avx2(const ln_params *p, const float *x, float *y, size_t n_rows,
                  const ln_diag *d);

/* AVX-512 (F, BW, VL) + FMA kernel, 16-float vectors, non-temporal stores
 * for large out-of-place batches. Call only when ln_cpu_has_avx512() is
 * true. */
void ln_rows_avx512(const ln_params *p, const float *x, float *y, size_t n_rows,
                    const ln_diag *d);

/* 1 when the CPU (and OS) support AVX2 and FMA, else 0. */
int ln_cpu_has_avx2(void);

/* 1 when the CPU (and OS, ZMM state) support AVX-512 F, BW and VL and FMA,
 * else 0. */
int ln_cpu_has_avx512(void);

/*
 * Chooses the kernel once: AVX-512 when the CPU has it, else AVX2 when it
 * has that, else the reference. LNSERVE_KERNEL=ref|avx2|avx512 overrides;
 * asking for a kernel the CPU lacks, or an unknown value, returns -1 and
 * leaves the reference selected, with a reason in *why (static string).
 * Call once before any ln_rows().
 */
int ln_dispatch_init(const char **why);

/* The chosen kernel's name: "ref", "avx2" or "avx512". */
const char *ln_kernel_name(void);

/* Runs the kernel chosen by ln_dispatch_init (the reference before it). */
void ln_rows(const ln_params *p, const float *x, float *y, size_t n_rows,
             const ln_diag *d);

/* 0 when p is usable (n > 0, groups >= 1 divides n, eps >= 0 finite), else
 * -EINVAL with a static reason in *why. */
int ln_params_check(const ln_params *p, const char **why);
