/*
 * ln_internal.h -- shared by the kernel files of core/ only.
 */
#pragma once

#include <stddef.h>

#include "ln.h"

/*
 * The reference's moments of one group, in double with compensated sums
 * (ln_ref.c): mean (0 for rmsnorm) and v (q = mean(x^2) for rmsnorm). The
 * vector kernels square in float; for the rare group whose squares pass
 * FLT_MAX (values spread beyond ~1.8e19) they take its moments from here.
 */
void ln_ref_group_moments(ln_kind kind, const float *x, size_t len, double *mean, double *var);

/*
 * sum_i (y_i - b_i) w_i in double over len elements (b or w NULL: 0 and
 * 1): the plane residual's numerator (diag.c), with AVX2 (ln_avx2.c; call
 * only when ln_cpu_has_avx2()). Each term is exact before the
 * multiplication (floats widen exactly and their difference fits a double
 * unless their exponents differ by more than 29), so the sum's error is a
 * few 2^-53 of sum |terms|.
 */
double ln_plane_sum_avx2(const float *y, const float *b, const double *w, size_t len);
