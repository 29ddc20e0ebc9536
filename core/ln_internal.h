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

/*
 * Out-of-place batches that write more than this many bytes get
 * non-temporal stores in the vector kernels: half the L2 (per core), so
 * from where input and output together no longer fit in it. There, every
 * output line written through the cache is first read for ownership and
 * later written back past an L2 that cannot keep it, and the stream evicts
 * the input it reads; non-temporal stores write each line once. Measured
 * with bench/bench_kernel on the 2-core AMD EPYC (AVX-512, 48 KiB L1D,
 * 1 MiB L2), 64 rows: N = 4096 (1 MiB out) 1.46 -> 2.44 M rows/s with
 * them, N = 3072 2.49 -> 3.28 M; N = 2048 (512 KiB) even; N = 1024 and
 * 1536 lose 12-20 % (their output still fits). The cost is the reader's:
 * the output is then in memory, not in cache. 8 MiB where the L2 size is
 * unknown (glibc's sysconf reads it from CPUID; on a hybrid CPU it is
 * one core type's). sysconf once, then a relaxed atomic; any thread.
 */
size_t ln_nt_min_bytes(void);
