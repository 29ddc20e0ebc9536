/*
 * ln_avx512.c -- the AVX-512 kernel behind ln_rows_avx512 (ln.h). The only
 * file of the tree compiled with -mavx512f -mavx512bw -mavx512vl -mfma; call
 * it only when ln_cpu_has_avx512() says so. Same semantics as ln_rows_ref,
 * its oracle, and the same algorithm as ln_avx2.c (whose header comment
 * explains the statistics) on 16-float vectors with mask registers for the
 * tails:
 *   1. layernorm: one pass of float sums of t and t^2, t = x - c, around a
 *      shift c (the mean of the first 32 elements, in double), folded into
 *      doubles every LN_AVX512_FOLD floats (at most 4 terms per float
 *      lane); when the shift is not within half a standard deviation of the
 *      mean, the exact two passes of MATH.md 6 (sum of x in double, then the
 *      centred squares around the two-float mean). rmsnorm sums x^2.
 *   2. y = d * (r * g) + b with d = x - m and s = r * g each carried in two
 *      floats, as in ln_avx2.c's apply_vec: only the last FMA rounds at the
 *      size of y. Same accuracy bound as AVX2 (tests/test_core.c).
 *      With ln_diag.plane set, the same pass also sums y * (1/g) in double
 *      for the plane residual (plane_add), so y is not read again; it
 *      costs 1.3x (4096 x 4096) to 1.65x (768 x 64) the kernel alone,
 *      against 1.6x to 3.1x for AVX2's second pass (bench/bench_kernel,
 *      README "Measured").
 *   In cache the output pass of one group runs fused with the statistics
 *   pass of the next (fused_group), which took 768 x 64 from ~62 % to ~71 %
 *   of memcpy on the Xeon VM this was first tuned on. Batches that take
 *   non-temporal stores (on the 1 MiB-L2 EPYC, 4096 x 64 out of place) run
 *   the two passes apart instead.
 *
 * Memory (prefetch measured with bench/bench_kernel on the 2-core Xeon VM,
 * the non-temporal threshold on the EPYC, ln_internal.h):
 *   - pass 2 prefetches the next group's input, so the one read of the next
 *     row from memory overlaps the arithmetic on this one (the statistics
 *     pass otherwise waits on it alone);
 *   - when y != x and the batch writes more than ln_nt_min_bytes() (half
 *     the L2), the output goes out with non-temporal stores: no
 *     read-for-ownership of lines that are only written, and the input is
 *     not evicted by them (ln_internal.h has the figures). Below that size
 *     the output is better left in cache for its reader.
 * Any N >= 1 and any group size; pointers may be unaligned (the
 * non-temporal loop starts at the first 64-byte boundary of y); y == x
 * works because every pass reads an element before the output pass writes
 * it. No allocation, no state, thread-safe.
 */
#include "ln.h"
#include "ln_internal.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

/* Floats per fold of the float accumulators into doubles: 4 accumulators
 * x 16 lanes x 4 terms, as in ln_avx2.c (16 terms per lane let heavy-tailed
 * rows reach 4 ulp there). */
#define LN_AVX512_FOLD 256


/* Prefetch of the next group's input in the non-fused output pass. To L2:
 * T0, T1, T2 and none measured within noise of each other at 4096 x 64,
 * and none lost ~15 % at 4096 x 4096. */
#define LN_PF(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)

static inline __mmask16 tail_k(size_t rem)
{
    return (__mmask16)((1u << rem) - 1u); /* rem in 0..16 */
}

/* Adds the 16 float lanes of v, widened, into the 8 double lanes of acc. */
static inline __m512d add_widened(__m512d acc, __m512 v)
{
    acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    return _mm512_add_pd(
        acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

/* Sum of x[0..len) in double. */
static double sum_x(const float *x, size_t len)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    __m512d a2 = _mm512_setzero_pd(), a3 = _mm512_setzero_pd();
    size_t i = 0;

    /* Widening from memory: one vcvtps2pd per 8 floats, no shuffles. */
    for (; i + 32 <= len; i += 32) {
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_loadu_ps(x + i)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)));
        a2 = _mm512_add_pd(a2, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16)));
        a3 = _mm512_add_pd(a3, _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24)));
    }
    for (; i < len; i += 8) {
        const __mmask8 k = (__mmask8)(len - i >= 8 ? 0xff : (1u << (len - i)) - 1u);

        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(k, x + i)));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
}

/*
 * Fused statistics pass: sums of t and t^2, t = x - c, c a float shift near
 * the mean. Four accumulators of each kind hide the add and FMA latency
 * (12 vector operations per 64 floats against a 4-cycle chain).
 */
static void sum_shifted(const float *x, size_t len, float c, double *s1, double *s2)
{
    const __m512 vc = _mm512_set1_ps(c);
    __m512d t1 = _mm512_setzero_pd(), t2 = _mm512_setzero_pd();
    __m512 a0, a1, a2, a3, q0, q1, q2, q3;
    size_t i = 0;

#define LN_T(off) _mm512_sub_ps(_mm512_loadu_ps(x + i + (off)), vc)
    while (len - i >= 64) {
        size_t stop = len - i >= LN_AVX512_FOLD ? i + LN_AVX512_FOLD
                                                : i + (len - i) / 64 * 64;

        a0 = a1 = a2 = a3 = q0 = q1 = q2 = q3 = _mm512_setzero_ps();
        for (; i < stop; i += 64) {
            __m512 d0 = LN_T(0), d1 = LN_T(16), d2 = LN_T(32), d3 = LN_T(48);

            a0 = _mm512_add_ps(a0, d0);
            a1 = _mm512_add_ps(a1, d1);
            a2 = _mm512_add_ps(a2, d2);
            a3 = _mm512_add_ps(a3, d3);
            q0 = _mm512_fmadd_ps(d0, d0, q0);
            q1 = _mm512_fmadd_ps(d1, d1, q1);
            q2 = _mm512_fmadd_ps(d2, d2, q2);
            q3 = _mm512_fmadd_ps(d3, d3, q3);
        }
        t1 = add_widened(t1, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        t2 = add_widened(t2, _mm512_add_ps(_mm512_add_ps(q0, q1), _mm512_add_ps(q2, q3)));
    }
#undef LN_T
    /* Fewer than 64 left: at most 4 vectors, the last one masked. */
    a0 = q0 = _mm512_setzero_ps();
    for (; i < len; i += 16) {
        const __mmask16 k = tail_k(len - i >= 16 ? 16 : len - i);
        /* Masked-off lanes give t = 0, not -c. */
        __m512 d0 = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + i), vc);

        a0 = _mm512_add_ps(a0, d0);
        q0 = _mm512_fmadd_ps(d0, d0, q0);
    }
    *s1 = _mm512_reduce_add_pd(add_widened(t1, a0));
    *s2 = _mm512_reduce_add_pd(add_widened(t2, q0));
}

/* Sum of d^2, d = (x - m_hi) - m_lo (m_hi = m_lo = 0 for rmsnorm). */
static double sum_d2(const float *x, size_t len, float m_hi, float m_lo)
{
    const __m512 vh = _mm512_set1_ps(m_hi);
    const __m512 vl = _mm512_set1_ps(m_lo);
    __m512d total = _mm512_setzero_pd();
    __m512 s0, s1, s2, s3;
    size_t i = 0;

#define LN_D(off) _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i + (off)), vh), vl)
    while (len - i >= 64) {
        size_t stop = len - i >= LN_AVX512_FOLD ? i + LN_AVX512_FOLD
                                                : i + (len - i) / 64 * 64;

        s0 = s1 = s2 = s3 = _mm512_setzero_ps();
        for (; i < stop; i += 64) {
            __m512 d0 = LN_D(0), d1 = LN_D(16), d2 = LN_D(32), d3 = LN_D(48);

            s0 = _mm512_fmadd_ps(d0, d0, s0);
            s1 = _mm512_fmadd_ps(d1, d1, s1);
            s2 = _mm512_fmadd_ps(d2, d2, s2);
            s3 = _mm512_fmadd_ps(d3, d3, s3);
        }
        total = add_widened(total, _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    }
#undef LN_D
    s0 = _mm512_setzero_ps();
    for (; i < len; i += 16) {
        const __mmask16 k = tail_k(len - i >= 16 ? 16 : len - i);
        __m512 d0 = _mm512_maskz_sub_ps(
            k, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), vh), vl);

        s0 = _mm512_fmadd_ps(d0, d0, s0);
    }
    return _mm512_reduce_add_pd(add_widened(total, s0));
}

/* Flags of one output-pass instantiation, all compile-time constants. */
enum {
    AP_GAIN = 1,  /* multiply by g */
    AP_BIAS = 2,  /* add b */
    AP_PLANE = 4, /* sum y * w in double for the plane residual */
    AP_NT = 8,    /* non-temporal stores from the first 64-byte boundary */
};

typedef struct apply_args {
    const float *x, *g, *b, *pf; /* pf: the next group's input, to prefetch */
    const double *w;             /* AP_PLANE with AP_GAIN: 1 / g */
    float *y;
    size_t len;
    __m512 vh, vl, rh, rl; /* m = m_hi + m_lo, rstd = r_hi + r_lo */
} apply_args;

/*
 * The plane residual's sum, fused: adds y_i * w_i (w_i = 1 without gain) of the
 * lanes in k, widened to double, into acc[0] (lanes 0-7) and acc[1] (8-15).
 * The widening and the product are exact, so each term carries one
 * rounding of 2^-53; the bias enters once per group as sum b w
 * (ln_plane_consts). 5 operations per 16 outputs, against a second pass
 * over y, b and w.
 */
static inline __attribute__((always_inline)) void
plane_add(__m512 yv, const apply_args *a, size_t i, __mmask16 k, int flags, __m512d *acc)
{
    if (!(flags & AP_PLANE))
        return;

    const __mmask8 k0 = (__mmask8)k, k1 = (__mmask8)(k >> 8);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(yv));
    const __m512d hi =
        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(yv), 1)));

    if (flags & AP_GAIN) {
        acc[0] = _mm512_mask3_fmadd_pd(lo, _mm512_maskz_loadu_pd(k0, a->w + i), acc[0], k0);
        acc[1] = _mm512_mask3_fmadd_pd(hi, _mm512_maskz_loadu_pd(k1, a->w + i + 8), acc[1], k1);
    } else {
        acc[0] = _mm512_mask_add_pd(acc[0], k0, acc[0], lo);
        acc[1] = _mm512_mask_add_pd(acc[1], k1, acc[1], hi);
    }
}

/* The sum of the 8 accumulators (4 pairs of plane_add) in a fixed order. */
static inline double plane_total(const __m512d *acc)
{
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]),
                                              _mm512_add_pd(acc[2], acc[3]))) +
           _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[4], acc[5]),
                                              _mm512_add_pd(acc[6], acc[7])));
}

/*
 * One vector of output at i, lanes in k (0xffff: a full vector), with
 * ln_avx2.c's arithmetic (apply_vec there explains it): y = d * s + b with
 * d = x - m and s = r * g each carried in two floats, so that only the last
 * FMA rounds at the size of y. 10 operations per 16 outputs.
 */
static inline __attribute__((always_inline)) __m512
out_vec(const apply_args *a, size_t i, __mmask16 k, int flags)
{
    const __m512 xv = _mm512_maskz_loadu_ps(k, a->x + i);
    const __m512 dh = _mm512_sub_ps(xv, a->vh);
    const __m512 dl = _mm512_sub_ps(_mm512_sub_ps(_mm512_sub_ps(xv, dh), a->vh), a->vl);
    __m512 s_hi = a->rh, s_lo = a->rl, lo;

    if (flags & AP_GAIN) {
        const __m512 g = _mm512_maskz_loadu_ps(k, a->g + i);

        s_hi = _mm512_mul_ps(a->rh, g);
        s_lo = _mm512_fmadd_ps(a->rl, g, _mm512_fmsub_ps(a->rh, g, s_hi));
    }
    lo = (flags & AP_BIAS) ? _mm512_fmadd_ps(dl, s_hi, _mm512_maskz_loadu_ps(k, a->b + i))
                           : _mm512_mul_ps(dl, s_hi);
    return _mm512_fmadd_ps(dh, s_hi, _mm512_fmadd_ps(dh, s_lo, lo));
}

/* How emit stores a vector: masked, unaligned, or non-temporal (y + i
 * 64-byte aligned, a full vector). */
enum { ST_MASK, ST_PLAIN, ST_STREAM };

/* One vector of output at i, lanes in k: computed, stored, and added to the
 * plane sum (acc, a pair of plane_add's accumulators). */
static inline __attribute__((always_inline)) void
emit(const apply_args *a, size_t i, __mmask16 k, int flags, int store, __m512d *acc)
{
    const __m512 yv = out_vec(a, i, k, flags);

    if (store == ST_STREAM)
        _mm512_stream_ps(a->y + i, yv);
    else if (store == ST_PLAIN)
        _mm512_storeu_ps(a->y + i, yv);
    else
        _mm512_mask_storeu_ps(a->y + i, k, yv);
    plane_add(yv, a, i, k, flags, acc);
}

static inline __attribute__((always_inline)) double apply_group(const apply_args *ap,
                                                                int flags)
{
    /* A local copy: stores through y cannot alias it, so its pointers and
     * constants stay in registers (through ap they were reloaded after
     * every store, which cost ~40 % in cache). */
    const apply_args a_ = *ap, *a = &a_;
    const size_t len = a->len;
    /* Full vectors stream past the cache with AP_NT (from the first
     * 64-byte boundary of y); the head before it and the tail are masked. */
    const int store = (flags & AP_NT) ? ST_STREAM : ST_PLAIN;
    __m512d acc[8];
    size_t i = 0;

    for (int q = 0; q < 8; q++)
        acc[q] = _mm512_setzero_pd();
    if (flags & AP_NT) {
        size_t head = (size_t)((64u - ((uintptr_t)a->y & 63u)) & 63u) / sizeof(float);

        i = head < len ? head : len;
        if (i)
            emit(a, 0, tail_k(i), flags, ST_MASK, acc);
    }
    for (; i + 32 <= len; i += 32) {
        LN_PF(a->pf + i);
        LN_PF(a->pf + i + 16);
        emit(a, i, 0xffff, flags, store, acc);
        emit(a, i + 16, 0xffff, flags, store, acc + 2);
    }
    for (; i < len; i += 16)
        emit(a, i, tail_k(len - i >= 16 ? 16 : len - i), flags, ST_MASK, acc);
    return (flags & AP_PLANE) ? plane_total(acc) : 0.0;
}

/*
 * The output pass of one group fused with the statistics pass of the next
 * (xn, shift c; the same sums and folds as sum_shifted): in cache, the
 * statistics pass waits on loads from L2 and the output pass on arithmetic,
 * so interleaved they overlap. xn never overlaps a->y (the next group
 * follows this one), so in place works. Not used with non-temporal stores.
 */
static inline __attribute__((always_inline)) double
fused_group(const apply_args *ap, int flags, const float *xn, float c, double *s1,
            double *s2)
{
    const apply_args a_ = *ap, *a = &a_; /* as in apply_group */
    const size_t len = a->len, l64 = len / 64 * 64;
    const __m512 vc = _mm512_set1_ps(c);
    __m512d t1 = _mm512_setzero_pd(), t2 = _mm512_setzero_pd();
    __m512d acc[8];
    double e1, e2;
    size_t i = 0;

    for (int q = 0; q < 8; q++)
        acc[q] = _mm512_setzero_pd();
#define LN_T(off) _mm512_sub_ps(_mm512_loadu_ps(xn + i + (off)), vc)
    while (i < l64) {
        const size_t stop = l64 - i >= LN_AVX512_FOLD ? i + LN_AVX512_FOLD : l64;
        __m512 a0, a1, a2, a3, q0, q1, q2, q3;

        a0 = a1 = a2 = a3 = q0 = q1 = q2 = q3 = _mm512_setzero_ps();
        for (; i < stop; i += 64) {
            __m512 d0 = LN_T(0), d1 = LN_T(16), d2 = LN_T(32), d3 = LN_T(48);

            a0 = _mm512_add_ps(a0, d0);
            a1 = _mm512_add_ps(a1, d1);
            a2 = _mm512_add_ps(a2, d2);
            a3 = _mm512_add_ps(a3, d3);
            q0 = _mm512_fmadd_ps(d0, d0, q0);
            q1 = _mm512_fmadd_ps(d1, d1, q1);
            q2 = _mm512_fmadd_ps(d2, d2, q2);
            q3 = _mm512_fmadd_ps(d3, d3, q3);
            for (int q = 0; q < 4; q++)
                emit(a, i + 16 * (size_t)q, 0xffff, flags, ST_PLAIN, acc + 2 * q);
        }
        t1 = add_widened(t1, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        t2 = add_widened(t2, _mm512_add_ps(_mm512_add_ps(q0, q1), _mm512_add_ps(q2, q3)));
    }
#undef LN_T
    sum_shifted(xn + l64, len - l64, c, &e1, &e2);
    *s1 = _mm512_reduce_add_pd(t1) + e1;
    *s2 = _mm512_reduce_add_pd(t2) + e2;
    for (; i < len; i += 16)
        emit(a, i, tail_k(len - i >= 16 ? 16 : len - i), flags, ST_MASK, acc);
    return (flags & AP_PLANE) ? plane_total(acc) : 0.0;
}

/* Returns the plane sum (0 without AP_PLANE). */
static double fused_dispatch(const apply_args *a, int flags, const float *xn, float c,
                             double *s1, double *s2)
{
    switch (flags) {
#define LN_CASE(f) \
    case f:        \
        return fused_group(a, f, xn, c, s1, s2);
        LN_CASE(0) LN_CASE(1) LN_CASE(2) LN_CASE(3) LN_CASE(4) LN_CASE(5) LN_CASE(6) LN_CASE(7)
#undef LN_CASE
    }
    return 0.0;
}

/* The 16 instantiations of the output pass, one branch-free loop each.
 * Returns the plane sum (0 without AP_PLANE). */
static double apply_dispatch(const apply_args *a, int flags)
{
    switch (flags) {
#define LN_CASE(f) \
    case f:        \
        return apply_group(a, f);
        LN_CASE(0) LN_CASE(1) LN_CASE(2) LN_CASE(3) LN_CASE(4) LN_CASE(5) LN_CASE(6) LN_CASE(7)
        LN_CASE(8) LN_CASE(9) LN_CASE(10) LN_CASE(11) LN_CASE(12) LN_CASE(13) LN_CASE(14)
        LN_CASE(15)
#undef LN_CASE
    }
    return 0.0;
}

/* The shift of the one-pass statistics: the mean of the first 32 elements
 * for layernorm; 0 for rmsnorm, whose pass then sums x^2 in s2. */
static float group_shift(const float *xg, size_t len, int is_ln)
{
    const size_t head = len < 32 ? len : 32;

    return is_ln ? (float)(sum_x(xg, head) / (double)head) : 0.0f;
}

/* What a group's statistics give: its diagnostics and output constants. */
typedef struct group_out {
    double mean, var, rstd;
    float rstd_f;
} group_out;

/*
 * Statistics of the group at xg from its one-pass sums around the shift c,
 * and the output constants of a. As in ln_avx2.c: when c is not within half
 * a standard deviation of the mean (or a sum is NaN), the exact two passes
 * of MATH.md 6 instead.
 */
static void group_finish(const float *xg, size_t len, int is_ln, double eps, float c,
                         double s1, double s2, group_out *o, apply_args *a)
{
    double denom;
    float m_hi, m_lo;

    o->mean = 0.0;
    o->rstd = 0.0;
    if (is_ln) {
        double shift = s1 / (double)len;

        o->var = s2 / (double)len - shift * shift;
        o->mean = (double)c + shift;
        if (!(shift * shift <= 0.25 * o->var)) {
            o->mean = sum_x(xg, len) / (double)len;
            m_hi = (float)o->mean;
            m_lo = (float)(o->mean - (double)m_hi);
            o->var = sum_d2(xg, len, m_hi, m_lo) / (double)len;
        }
    } else {
        o->var = s2 / (double)len;
    }
    if (isinf(o->var)) /* float squares overflowed (spread past ~1.8e19) */
        ln_ref_group_moments(is_ln ? LN_KIND_LAYERNORM : LN_KIND_RMSNORM, xg, len, &o->mean,
                             &o->var);
    denom = o->var + eps;
    /* var + eps == 0: rstd 0 (ln.h), so y = b. */
    if (denom > 0.0)
        o->rstd = 1.0 / sqrt(denom);
    o->rstd_f = (float)o->rstd;
    m_hi = (float)o->mean;
    m_lo = (float)(o->mean - (double)m_hi);
    /* A constant group has mean == x exactly (c == x, t == 0), so every d
     * is 0 and y = b whatever rstd is. */
    a->vh = _mm512_set1_ps(m_hi);
    a->vl = _mm512_set1_ps(m_lo);
    a->rh = _mm512_set1_ps(o->rstd_f);
    a->rl = _mm512_set1_ps((float)(o->rstd - (double)o->rstd_f));
}

void ln_rows_avx512(const ln_params *p, const float *x, float *y, size_t n_rows,
                    const ln_diag *d)
{
    const size_t groups = p->groups;
    const size_t len = p->n / groups;
    const size_t n_seg = n_rows * groups; /* groups of the batch, in order */
    const double eps = p->eps;
    const int is_ln = p->kind == LN_KIND_LAYERNORM;
    /* y is a float pointer, so 4-byte aligned in any valid program; the
     * check keeps the aligned-store loop honest if it is not. */
    const int nt = y != x && n_seg * len * sizeof(float) > ln_nt_min_bytes() &&
                   ((uintptr_t)y & 3u) == 0;
    const int base_flags = (p->gain ? AP_GAIN : 0) | (p->bias ? AP_BIAS : 0) |
                           (d && d->plane ? AP_PLANE : 0);
    double frac_sum = 0.0, s1, s2;
    float c;
    size_t j;

    if (n_seg == 0)
        return;
    /* Statistics of the first group; each later group's come fused with the
     * output pass of the one before it (in cache) or alone (with NT). */
    c = group_shift(x, len, is_ln);
    sum_shifted(x, len, c, &s1, &s2);
    for (j = 0; j < n_seg; j++) {
        const size_t off = j * len, k = j % groups;
        const float *xn = x + off + len;
        group_out o;
        apply_args a;
        const int flags = base_flags;
        double plane;

        group_finish(x + off, len, is_ln, eps, c, s1, s2, &o, &a);
        a.x = x + off;
        a.y = y + off;
        a.g = p->gain ? p->gain + k * len : NULL;
        a.b = p->bias ? p->bias + k * len : NULL;
        a.w = d && d->plane && d->plane_w ? d->plane_w + k * len : NULL;
        a.len = len;
        /* The last group prefetches itself: a hint past the batch would
         * not fault, but would be pointless. */
        a.pf = j + 1 < n_seg ? xn : x + off;
        if (j + 1 < n_seg && !nt) {
            c = group_shift(xn, len, is_ln);
            plane = fused_dispatch(&a, flags, xn, c, &s1, &s2);
        } else {
            plane = apply_dispatch(&a, flags | (nt ? AP_NT : 0));
            if (j + 1 < n_seg) {
                c = group_shift(xn, len, is_ln);
                sum_shifted(xn, len, c, &s1, &s2);
            }
        }

        if (d && d->mean)
            d->mean[j] = (float)o.mean;
        if (d && d->rstd)
            d->rstd[j] = o.rstd_f;
        if (d && d->plane)
            d->plane[j] = d->plane_c ? (float)((plane - d->plane_c[2 * k]) * d->plane_c[2 * k + 1])
                                     : (float)(plane / sqrt((double)len));
        if (o.var + eps > 0.0)
            frac_sum += o.var / (o.var + eps);
        if (k + 1 == groups) {
            if (d && d->radius)
                d->radius[j / groups] = (float)sqrt(frac_sum / (double)groups);
            frac_sum = 0.0;
        }
    }
    /* Non-temporal stores are weakly ordered: make them visible before the
     * caller hands y to another thread. */
    if (nt)
        _mm_sfence();
}
