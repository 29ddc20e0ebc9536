/*
 * ln_avx2.c -- the AVX2+FMA kernel behind ln_rows_avx2 (ln.h). The only file
 * of the tree compiled with -mavx2 -mfma; call it only when
 * ln_cpu_has_avx2() says so. Same semantics as ln_rows_ref, its oracle.
 *
 * Per group (a group of up to ~40 KiB stays in L1 between passes, so only
 * the first pass goes to memory):
 *   1. layernorm: one pass of float sums of t and t^2, t = x - c, around a
 *      shift c (the mean of the first 32 elements, in double). When the
 *      shift is within half a standard deviation of the mean, which holds
 *      for all but ~1 in 200 random rows, this gives the mean to within
 *      about u * sd and v to a few u. Otherwise (c an outlier, a
 *      drifting row, NaN) it falls back to the exact two passes of
 *      MATH.md 6: the sum of x in double (_mm256_cvtps_pd, 8 accumulators),
 *      then the sum of d^2 with d = (x - m_hi) - m_lo. rmsnorm sums x^2.
 *      Float accumulators are folded into doubles every 128 or 256
 *      elements, so each float lane sums at most 4 terms whatever N is;
 *   2. y = d * (r * g) + b with d = x - m and s = r * g each carried in
 *      two floats (apply_vec), so that only the last FMA rounds at the
 *      size of y.
 * The one-pass statistics cut the time per row by about a quarter
 * (N = 768 in L1: 155 ns -> 113 ns on the Xeon this was tuned on). The
 * scalar statistics (mean, variance, 1/sqrt) are finished in double.
 * Any N >= 1 and any group size: the last partial vector of a group is
 * handled with masked loads and stores, never reading or writing past it.
 * Pointers may be unaligned; y == x works because every pass reads an
 * element before the output pass writes it.
 *
 * Measured against ln_rows_ref (tests/test_core.c, 30 seeds): at most 3 ulp
 * of max(1, |y|) on every row family, mostly 1 (VEC_TOL_ULP is 4).
 *
 * Limit: squares are taken in float, so a group whose centred values are
 * above ~1e19 in magnitude overflows, and one whose values are all below
 * ~1e-19 underflows (only visible with eps == 0); activations are far from
 * both. No allocation, no state, thread-safe.
 */
#include "ln.h"
#include "diag.h"
#include "ln_internal.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

/* sum_d2 folds its float accumulators into doubles every this many floats,
 * sum_shifted (which has half as many of each kind) every half of it: at
 * most 4 terms per float lane. With 16 terms (1024) heavy-tailed rows
 * (Cauchy) lost up to ~1.5 u in the variance and reached 4 ulp in y; the
 * more frequent folds cost under 5 % at N = 4096 (bench/bench_kernel). */
#define LN_AVX2_FOLD 256


/* Lanes [0, rem) set, rem in 1..7: for the last partial vector of a group. */
static inline __m256i tail_mask(size_t rem)
{
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), lane);
}

static inline double hsum_pd(__m256d v)
{
    __m128d lo = _mm256_castpd256_pd128(v);
    __m128d hi = _mm256_extractf128_pd(v, 1);

    lo = _mm_add_pd(lo, hi);
    hi = _mm_unpackhi_pd(lo, lo);
    return _mm_cvtsd_f64(_mm_add_sd(lo, hi));
}

/* Adds the 8 float lanes of v, widened, into the 4 double lanes of acc. */
static inline __m256d add_widened(__m256d acc, __m256 v)
{
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

/* Sum of x[0..len) in double. */
static double sum_x(const float *x, size_t len)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    __m256d a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    __m256d a4 = _mm256_setzero_pd(), a5 = _mm256_setzero_pd();
    __m256d a6 = _mm256_setzero_pd(), a7 = _mm256_setzero_pd();
    size_t i = 0;

    /* Widening from memory: one vcvtps2pd per 4 floats, no shuffles. */
    for (; i + 32 <= len; i += 32) {
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
        a2 = _mm256_add_pd(a2, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 8)));
        a3 = _mm256_add_pd(a3, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 12)));
        a4 = _mm256_add_pd(a4, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 16)));
        a5 = _mm256_add_pd(a5, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 20)));
        a6 = _mm256_add_pd(a6, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 24)));
        a7 = _mm256_add_pd(a7, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 28)));
    }
    for (; i + 8 <= len; i += 8) {
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm_loadu_ps(x + i)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)));
    }
    if (i < len)
        a2 = add_widened(a2, _mm256_maskload_ps(x + i, tail_mask(len - i)));

    a0 = _mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3));
    a4 = _mm256_add_pd(_mm256_add_pd(a4, a5), _mm256_add_pd(a6, a7));
    return hsum_pd(_mm256_add_pd(a0, a4));
}

/*
 * Fused statistics pass: sums of t and t^2 with t = x - c, where c is a
 * float shift near the mean. Four accumulators of each kind (eight
 * registers, leaving room for the shift and temporaries), folded into
 * doubles every LN_AVX2_FOLD / 2 floats so each float lane sums at most 4
 * terms.
 */
static void sum_shifted(const float *x, size_t len, float c, double *s1,
                        double *s2)
{
    const __m256 vc = _mm256_set1_ps(c);
    __m256d t1 = _mm256_setzero_pd(), t2 = _mm256_setzero_pd();
    __m256 a0, a1, a2, a3, q0, q1, q2, q3;
    size_t i = 0;

#define LN_T(off) _mm256_sub_ps(_mm256_loadu_ps(x + i + (off)), vc)
    while (len - i >= 32) {
        size_t stop = len - i >= LN_AVX2_FOLD / 2 ? i + LN_AVX2_FOLD / 2
                                                  : i + (len - i) / 32 * 32;

        a0 = a1 = a2 = a3 = q0 = q1 = q2 = q3 = _mm256_setzero_ps();
        for (; i < stop; i += 32) {
            __m256 d0 = LN_T(0), d1 = LN_T(8), d2 = LN_T(16), d3 = LN_T(24);

            a0 = _mm256_add_ps(a0, d0);
            a1 = _mm256_add_ps(a1, d1);
            a2 = _mm256_add_ps(a2, d2);
            a3 = _mm256_add_ps(a3, d3);
            q0 = _mm256_fmadd_ps(d0, d0, q0);
            q1 = _mm256_fmadd_ps(d1, d1, q1);
            q2 = _mm256_fmadd_ps(d2, d2, q2);
            q3 = _mm256_fmadd_ps(d3, d3, q3);
        }
        t1 = add_widened(t1, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
        t2 = add_widened(t2, _mm256_add_ps(_mm256_add_ps(q0, q1), _mm256_add_ps(q2, q3)));
    }
    /* Fewer than 32 left: at most 3 whole vectors, then the masked tail. */
    a0 = q0 = _mm256_setzero_ps();
    for (; i + 8 <= len; i += 8) {
        __m256 d0 = LN_T(0);

        a0 = _mm256_add_ps(a0, d0);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
    }
#undef LN_T
    if (i < len) {
        const __m256i m = tail_mask(len - i);
        __m256 d0 = _mm256_sub_ps(_mm256_maskload_ps(x + i, m), vc);

        /* Masked-off lanes loaded 0, which shifts to -c: zero them. */
        d0 = _mm256_and_ps(d0, _mm256_castsi256_ps(m));
        a0 = _mm256_add_ps(a0, d0);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
    }
    *s1 = hsum_pd(add_widened(t1, a0));
    *s2 = hsum_pd(add_widened(t2, q0));
}

/*
 * Sum of d^2, d = (x - m_hi) - m_lo (m_hi = m_lo = 0 for rmsnorm,
 * which leaves x unchanged).
 */
static double sum_d2(const float *x, size_t len, float m_hi, float m_lo)
{
    const __m256 vh = _mm256_set1_ps(m_hi);
    const __m256 vl = _mm256_set1_ps(m_lo);
    __m256d total = _mm256_setzero_pd();
    __m256 s0, s1, s2, s3, s4, s5, s6, s7;
    size_t i = 0;

#define LN_D(off) _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + (off)), vh), vl)
    while (len - i >= 64) {
        size_t stop = len - i >= LN_AVX2_FOLD ? i + LN_AVX2_FOLD
                                              : i + (len - i) / 64 * 64;

        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = _mm256_setzero_ps();
        for (; i < stop; i += 64) {
            __m256 d0 = LN_D(0), d1 = LN_D(8), d2 = LN_D(16), d3 = LN_D(24);
            __m256 d4 = LN_D(32), d5 = LN_D(40), d6 = LN_D(48), d7 = LN_D(56);

            s0 = _mm256_fmadd_ps(d0, d0, s0);
            s1 = _mm256_fmadd_ps(d1, d1, s1);
            s2 = _mm256_fmadd_ps(d2, d2, s2);
            s3 = _mm256_fmadd_ps(d3, d3, s3);
            s4 = _mm256_fmadd_ps(d4, d4, s4);
            s5 = _mm256_fmadd_ps(d5, d5, s5);
            s6 = _mm256_fmadd_ps(d6, d6, s6);
            s7 = _mm256_fmadd_ps(d7, d7, s7);
        }
        s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        s4 = _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7));
        total = add_widened(total, _mm256_add_ps(s0, s4));
    }
    /* Fewer than 64 left: at most 7 terms per lane, then the masked tail. */
    s0 = _mm256_setzero_ps();
    s1 = _mm256_setzero_ps();
    for (; i + 8 <= len; i += 8) {
        __m256 d0 = LN_D(0);

        s0 = _mm256_fmadd_ps(d0, d0, s0);
    }
#undef LN_D
    if (i < len) {
        const __m256i m = tail_mask(len - i);
        __m256 d0 = _mm256_sub_ps(_mm256_sub_ps(_mm256_maskload_ps(x + i, m), vh), vl);

        /* Masked-off lanes loaded 0, which centres to -m: zero them. */
        d0 = _mm256_and_ps(d0, _mm256_castsi256_ps(m));
        s1 = _mm256_mul_ps(d0, d0);
    }
    total = add_widened(total, _mm256_add_ps(s0, s1));
    return hsum_pd(total);
}

/*
 * One vector of output, y = d * s + b, with both factors carried in two
 * floats so that only the final FMA rounds at the size of y:
 *   d = x - m = dh + dl: dh = x - m_hi, dl = ((x - dh) - m_hi) - m_lo; the
 *     first two terms are Fast2Sum, exact when |x| >= |m_hi| (where
 *     |x| < |m_hi| / 2, d is within a factor 2 of -m and small against the
 *     row's spread, so its rounding does not reach y);
 *   s = r g = s_hi + s_lo: s_hi = fl(r_hi g), s_lo = (r_hi g - s_hi) (exact,
 *     by FMA) + r_lo g, with r_hi + r_lo = rstd to ~2^-48;
 *   y = fma(dh, s_hi, fma(dh, s_lo, fma(dl, s_hi, b))).
 * Where a bias cancels part of d * s (|d * s| up to a few |y|), the roundings
 * of d, of rstd and of r g were each 0.5 u of d * s, so of up to ~1.5 u of
 * y: with them the kernel reached 5 ulp on the test families; without
 * them at most 3 (tests/test_core.c, VEC_TOL_ULP). The price is 10 vector
 * operations per 8 outputs instead of 4: in-cache shapes, which are bound
 * by arithmetic, lose about 40 % (bench/bench_kernel); shapes that stream
 * from memory lose little. Always inlined with constant has_gain /
 * has_bias, so each of the four combinations gets its own branch-free loop.
 */
static inline __attribute__((always_inline)) __m256
apply_vec(__m256 xv, __m256 gv, __m256 bv, __m256 vh, __m256 vl, __m256 rh,
          __m256 rl, int has_gain, int has_bias)
{
    const __m256 dh = _mm256_sub_ps(xv, vh);
    const __m256 dl = _mm256_sub_ps(_mm256_sub_ps(_mm256_sub_ps(xv, dh), vh), vl);
    __m256 s_hi = rh, s_lo = rl, lo;

    if (has_gain) {
        s_hi = _mm256_mul_ps(rh, gv);
        s_lo = _mm256_fmadd_ps(rl, gv, _mm256_fmsub_ps(rh, gv, s_hi));
    }
    lo = has_bias ? _mm256_fmadd_ps(dl, s_hi, bv) : _mm256_mul_ps(dl, s_hi);
    return _mm256_fmadd_ps(dh, s_hi, _mm256_fmadd_ps(dh, s_lo, lo));
}

/*
 * The output pass of one group. nt: y goes out with non-temporal stores
 * from its first 32-byte boundary (ordinary masked stores before it and for
 * the tail), so lines that are only written are not read for ownership
 * first; the caller fences.
 */
static inline __attribute__((always_inline)) void
apply_group(const float *x, float *y, size_t len, float m_hi, float m_lo,
            float r_hi, float r_lo, const float *g, const float *b, int has_gain,
            int has_bias, int nt)
{
    const __m256 vh = _mm256_set1_ps(m_hi);
    const __m256 vl = _mm256_set1_ps(m_lo);
    const __m256 rh = _mm256_set1_ps(r_hi);
    const __m256 rl = _mm256_set1_ps(r_lo);
    const __m256 zero = _mm256_setzero_ps();
    size_t i = 0;

    if (nt) {
        size_t head = (size_t)((32u - ((uintptr_t)y & 31u)) & 31u) / sizeof(float);

        if (head > len)
            head = len;
        if (head) {
            const __m256i m = tail_mask(head);
            __m256 y0 = apply_vec(_mm256_maskload_ps(x, m),
                                  has_gain ? _mm256_maskload_ps(g, m) : zero,
                                  has_bias ? _mm256_maskload_ps(b, m) : zero, vh, vl, rh,
                                  rl, has_gain, has_bias);

            _mm256_maskstore_ps(y, m, y0);
            i = head;
        }
        for (; i + 8 <= len; i += 8)
            _mm256_stream_ps(y + i,
                             apply_vec(_mm256_loadu_ps(x + i),
                                       has_gain ? _mm256_loadu_ps(g + i) : zero,
                                       has_bias ? _mm256_loadu_ps(b + i) : zero, vh, vl,
                                       rh, rl, has_gain, has_bias));
    }
    for (; i + 16 <= len; i += 16) {
        __m256 y0 = apply_vec(_mm256_loadu_ps(x + i),
                              has_gain ? _mm256_loadu_ps(g + i) : zero,
                              has_bias ? _mm256_loadu_ps(b + i) : zero, vh, vl, rh,
                              rl, has_gain, has_bias);
        __m256 y1 = apply_vec(_mm256_loadu_ps(x + i + 8),
                              has_gain ? _mm256_loadu_ps(g + i + 8) : zero,
                              has_bias ? _mm256_loadu_ps(b + i + 8) : zero, vh, vl,
                              rh, rl, has_gain, has_bias);

        _mm256_storeu_ps(y + i, y0);
        _mm256_storeu_ps(y + i + 8, y1);
    }
    for (; i < len; i += 8) {
        /* Full vector, or the masked last one: identical arithmetic. */
        const __m256i m = len - i >= 8 ? _mm256_set1_epi32(-1) : tail_mask(len - i);
        __m256 y0 = apply_vec(_mm256_maskload_ps(x + i, m),
                              has_gain ? _mm256_maskload_ps(g + i, m) : zero,
                              has_bias ? _mm256_maskload_ps(b + i, m) : zero, vh, vl,
                              rh, rl, has_gain, has_bias);

        _mm256_maskstore_ps(y + i, m, y0);
    }
}

void ln_rows_avx2(const ln_params *p, const float *x, float *y, size_t n_rows,
                  const ln_diag *d)
{
    const size_t n = p->n;
    const size_t groups = p->groups;
    const size_t len = n / groups;
    const double eps = p->eps;
    const int is_ln = p->kind == LN_KIND_LAYERNORM;
    /* Non-temporal stores for out-of-place batches past half the L2
     * (ln_nt_min_bytes, ln_internal.h);
     * y is 4-byte aligned in any valid program, the check keeps the
     * aligned-store loop honest if it is not. */
    const int nt = y != x && n_rows * n * sizeof(float) > ln_nt_min_bytes() &&
                   ((uintptr_t)y & 3u) == 0;
    size_t r, k;

    for (r = 0; r < n_rows; r++) {
        double frac_sum = 0.0;

        for (k = 0; k < groups; k++) {
            const size_t off = r * n + k * len;
            const float *g = p->gain ? p->gain + k * len : NULL;
            const float *b = p->bias ? p->bias + k * len : NULL;
            double mean = 0.0, var, denom, rstd = 0.0;
            float m_hi = 0.0f, m_lo = 0.0f, rstd_f, rstd_lo;

            if (is_ln) {
                double s1, s2, shift;
                float c;

                /*
                 * One statistics pass around a shift c, the mean of the
                 * first 32 elements: t = x - c is O(sd), so the float sums
                 * of t and t^2 lose nothing to an offset, and when
                 * |mean - c| <= sd / 2 the cancellation in
                 * v = mean(t^2) - shift^2 magnifies their error by at most
                 * 1.25. Normal rows pass that check but for about 1 in
                 * 200; any other row (c an outlier, a drifting row, NaN)
                 * takes the two exact passes below instead. A constant
                 * group gives c == x, t == 0, so mean == x, m_lo == 0 and
                 * every d is 0: y = bias.
                 */
                c = (float)(sum_x(x + off, len < 32 ? len : 32) /
                            (double)(len < 32 ? len : 32));
                sum_shifted(x + off, len, c, &s1, &s2);
                shift = s1 / (double)len;
                var = s2 / (double)len - shift * shift;
                mean = (double)c + shift;
                if (!(shift * shift <= 0.25 * var)) {
                    /* Mean in double, then centred squares (MATH.md 6). */
                    mean = sum_x(x + off, len) / (double)len;
                    m_hi = (float)mean;
                    m_lo = (float)(mean - (double)m_hi);
                    var = sum_d2(x + off, len, m_hi, m_lo) / (double)len;
                } else {
                    m_hi = (float)mean;
                    m_lo = (float)(mean - (double)m_hi);
                }
            } else {
                var = sum_d2(x + off, len, 0.0f, 0.0f) / (double)len;
            }
            if (isinf(var)) {
                /* Finite values spread past ~1.8e19: their float squares
                 * overflowed. Take this group's moments in double. */
                ln_ref_group_moments(p->kind, x + off, len, &mean, &var);
                m_hi = (float)mean;
                m_lo = (float)(mean - (double)m_hi);
            }
            denom = var + eps;
            /* var + eps == 0: rstd 0 (ln.h), so y = 0 * 0 * g + b = b. */
            if (denom > 0.0) {
                rstd = 1.0 / sqrt(denom);
                frac_sum += var / denom;
            }
            rstd_f = (float)rstd;
            rstd_lo = (float)(rstd - (double)rstd_f);

#define LN_APPLY(nt_)                                                                     \
    do {                                                                                  \
        if (g && b)                                                                       \
            apply_group(x + off, y + off, len, m_hi, m_lo, rstd_f, rstd_lo, g, b, 1, 1, nt_); \
        else if (g)                                                                       \
            apply_group(x + off, y + off, len, m_hi, m_lo, rstd_f, rstd_lo, g, NULL, 1, 0,   \
                        nt_);                                                             \
        else if (b)                                                                       \
            apply_group(x + off, y + off, len, m_hi, m_lo, rstd_f, rstd_lo, NULL, b, 0, 1,   \
                        nt_);                                                             \
        else                                                                              \
            apply_group(x + off, y + off, len, m_hi, m_lo, rstd_f, rstd_lo, NULL, NULL, 0, 0, \
                        nt_);                                                             \
    } while (0)
            if (nt)
                LN_APPLY(1);
            else
                LN_APPLY(0);
#undef LN_APPLY

            if (d && d->mean)
                d->mean[r * groups + k] = (float)mean;
            if (d && d->rstd)
                d->rstd[r * groups + k] = rstd_f;
        }
        if (d && d->radius)
            d->radius[r] = (float)sqrt(frac_sum / (double)groups);
    }
    /* Non-temporal stores are weakly ordered: make them visible before the
     * caller hands y to another thread. */
    if (nt)
        _mm_sfence();
    /* A second pass here; the AVX-512 kernel fuses it. */
    if (d && d->plane)
        ln_plane_residual(p, d->plane_w, y, n_rows, d->plane);
}

double ln_plane_sum_avx2(const float *y, const float *b, const double *w, size_t len)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    __m256d a2 = _mm256_setzero_pd(), a3 = _mm256_setzero_pd();
    const __m256d one = _mm256_set1_pd(1.0);
    size_t i = 0;

    /* Four floats at a time widen straight from memory (vcvtps2pd). */
#define LN_PT(acc, off)                                                        \
    do {                                                                       \
        __m256d d = _mm256_cvtps_pd(_mm_loadu_ps(y + i + (off)));              \
        if (b)                                                                 \
            d = _mm256_sub_pd(d, _mm256_cvtps_pd(_mm_loadu_ps(b + i + (off)))); \
        acc = _mm256_fmadd_pd(d, w ? _mm256_loadu_pd(w + i + (off)) : one, acc); \
    } while (0)
    for (; i + 16 <= len; i += 16) {
        LN_PT(a0, 0);
        LN_PT(a1, 4);
        LN_PT(a2, 8);
        LN_PT(a3, 12);
    }
    for (; i + 4 <= len; i += 4)
        LN_PT(a0, 0);
#undef LN_PT
    double s = hsum_pd(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3)));
    for (; i < len; i++)
        s += ((double)y[i] - (b ? (double)b[i] : 0.0)) * (w ? w[i] : 1.0);
    return s;
}
