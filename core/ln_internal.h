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
