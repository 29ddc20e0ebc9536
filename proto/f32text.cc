/*
 * f32text.cc -- the C interface of f32text.h over dragonbox (printing) and
 * fast_float (parsing). C++17, built with -fno-exceptions -fno-rtti: both
 * libraries are header code that throws nothing and needs no RTTI, so the
 * objects link into the C program with -lstdc++ only for safety.
 *
 * Debian packages: libdragonbox-dev 1.1.3 (its core, dragonbox.h, is a
 * header; the package's libdragonbox_to_chars.a is not used: its to_chars
 * always writes exponent notation such as "1E0", so the layout is done
 * here from the decimal significand and exponent) and libfast-float-dev
 * 3.9 (header only; it has no JSON grammar mode yet, so f32text_parse
 * reads the grammar itself, and with it the digits, and hands fast_float
 * only the numbers its own double fast path must not round).
 */
#include "f32text.h"

#include <cstdint>
#include <cstring>

#include <immintrin.h>

#include <dragonbox/dragonbox.h>
#include <fast_float/fast_float.h>

namespace
{

/*
 * The 8 decimal digits of v < 10^8 as byte values 0..9, the first digit in
 * the lowest byte: v split in halves of 4 digits, each half in pairs, each
 * pair in digits, every step one multiply-shift and mask over all lanes at
 * once (floor(x * 10486 / 2^20) = x / 100 for x < 10^4, floor(x * 103 /
 * 2^10) = x / 10 for x < 100; no lane overflows: 9999 * 10486 < 2^32,
 * 99 * 103 < 2^16). All in a register: the printer stores its text from
 * registers and loads nothing back (loading a digit buffer just written
 * byte by byte waits for the stores: no store-to-load forwarding there).
 */
inline uint64_t digits8(uint32_t v)
{
    uint32_t hi = v / 10000;
    uint64_t x = hi | static_cast<uint64_t>(v - hi * 10000) << 32;
    uint64_t q = (x * 10486 >> 20) & 0x0000007f0000007full;

    x = q | (x - q * 100) << 16;
    q = (x * 103 >> 10) & 0x000f000f000f000full;
    return q | (x - q * 10) << 8;
}

/*
 * The number of decimal digits of v, 1 <= v < 10^9. The commonest counts
 * of shortest float32 digits, 9 and 8 (and 8 and 7 after dragonbox has
 * removed trailing zeros), by a branch each. On distinct values these
 * look like coin tosses, yet computing the count instead (from the bit
 * length, as below) was slower: 45 against 57 M floats/s printing
 * distinct values (a throwaway loop like bench_codec's; this VM has no
 * branch counters). Likely because whether dragonbox's larger divisor
 * gave one digit fewer is a branch just before, which the predictor
 * correlates with these, while the computed count holds up all that
 * follows by its latency. The rest from v's bit length b: floor(b *
 * log10(2)) (1233 / 2^12 is close enough for b <= 30; checked for every
 * v) is the count or one less, and one compare settles which.
 */
inline int count_digits(uint32_t v)
{
    static const uint32_t pow10[10] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};
    if (v >= 100000000)
        return 9;
    if (v >= 10000000)
        return 8;
    int t = (32 - __builtin_clz(v)) * 1233 >> 12;
    return t + (v >= pow10[t]);
}

inline bool is_digit(char c)
{
    return static_cast<unsigned char>(c - '0') < 10;
}

/* Whether the 8 bytes of c (the first in the lowest byte) are all ASCII
 * digits: a byte below '0' borrows in c - '0'..., one above '9' carries
 * into bit 7 in c + 0x46..., one with bit 7 set shows in c itself (and the
 * first byte that is not a digit always shows, whatever it does to the
 * bytes above it). */
inline bool all_digits8(uint64_t c)
{
    return ((c | (c + 0x4646464646464646ull) | (c - 0x3030303030303030ull)) &
            0x8080808080808080ull) == 0;
}

/* 0x80 in the first byte of the 8 in c (the first in the lowest byte)
 * that is not an ASCII digit, and maybe in bytes above it, which do not
 * count (all_digits8's test). */
inline uint64_t nondigits8(uint64_t c)
{
    return (c | (c + 0x4646464646464646ull) | (c - 0x3030303030303030ull)) &
           0x8080808080808080ull;
}

/* The first d (0..8) bytes of c, digits, as 8 digits with '0's in front:
 * the shifts in two halves so that 64 is a shift too. */
inline uint64_t digits_low(uint64_t c, int d)
{
    int up = 4 * (8 - d), down = 4 * d;
    return (c << up << up) | (0x3030303030303030ull >> down >> down);
}

/* The value of 8 ASCII digits, the first in the lowest byte: pairs, then
 * quads, then the whole, each step one multiply (no lane overflows: 99,
 * 9999, 99999999 fit their 8-, 16- and 32-bit lanes). */
inline uint32_t value8(uint64_t c)
{
    c -= 0x3030303030303030ull;
    c = (c * 10 + (c >> 8)) & 0x00ff00ff00ff00ffull;
    c = (c * 100 + (c >> 16)) & 0x0000ffff0000ffffull;
    return static_cast<uint32_t>(c * 10000 + (c >> 32));
}

/* Stores x at p, 8 bytes. */
inline void put8(char *p, uint64_t x)
{
    std::memcpy(p, &x, 8);
}

/*
 * Writes the text of 0.d1d2...dn * 10^k at o, after the sign, and returns
 * its length: c1 is d1 as ASCII, rest d2..d9 as ASCII ('0' past dn), the
 * first in the lowest byte. See f32text_print for the stores.
 */
inline size_t format_digits(char *o, char c1, uint64_t rest, int n, int k)
{
    const uint64_t zeros8 = 0x3030303030303030ull;

    put8(o, zeros8);
    put8(o + 8, zeros8);
    if (__builtin_expect(k >= -3 && k <= 9, 1)) { /* plain notation */
        if (k >= 1) {
            /* d1..d9, the point over d(k+1), and d(k+1).. stored again
             * after it: "1.2345", "123.45", "12000.0" (the zeros past dn
             * are digits too, and the fill's past d9). The shift in two
             * halves: it is 64 for k = 9. */
            int frac = n - k > 1 ? n - k : 1;
            o[0] = c1;
            put8(o + 1, rest);
            o[k] = '.';
            put8(o + k + 1, (rest >> (4 * (k - 1)) >> (4 * (k - 1))) | zeros8);
            return static_cast<size_t>(k + 1 + frac);
        }
        /* "0." and -k zeros from the fill, then the digits: "0.12345",
         * "0.00012345". */
        o[1] = '.';
        o[2 - k] = c1;
        put8(o + 3 - k, rest);
        return static_cast<size_t>(2 - k + n);
    }
    /* 1.2345e-7, 3.4028235e38, 1e-45: float32 exponents have 1 or 2
     * digits. The exponent's text overwrites the point of "1." when n = 1. */
    int x = k - 1, neg = x < 0, ax = neg ? -x : x, two = ax >= 10;
    uint32_t tens = static_cast<uint32_t>(ax) / 10, ones = static_cast<uint32_t>(ax) - tens * 10;
    uint32_t num = two ? ('0' + tens) | ('0' + ones) << 8 : '0' + ones;
    uint64_t e = neg ? 'e' | '-' << 8 | static_cast<uint64_t>(num) << 16
                     : 'e' | static_cast<uint64_t>(num) << 8;
    size_t m = n > 1 ? static_cast<size_t>(n) + 1 : 1; /* "1.2345" or "1" */

    o[0] = c1;
    o[1] = '.';
    put8(o + 2, rest);
    put8(o + m, e);
    return m + 2 + static_cast<size_t>(neg + two);
}

/* The text of sig * 10^exp (sig > 0, trailing zeros removed) at o. */
inline size_t format_decimal(char *o, uint32_t sig, int exponent)
{
    static const uint32_t pow10[10] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};
    int n = count_digits(sig);
    /* The digits left-aligned in 9, zeros after: d1 (never 0) and 8 more. */
    uint32_t sig9 = sig * pow10[9 - n], d1 = sig9 / 100000000;
    return format_digits(o, static_cast<char>('0' + d1),
                         digits8(sig9 - d1 * 100000000) | 0x3030303030303030ull, n,
                         n + exponent);
}

/*
 * Shortest decimals of 8 floats at once, with AVX-512: Schubfach
 * (R. Giulietti, "The Schubfach way to render doubles", 2020; the float
 * case as in OpenJDK's FloatToDecimal), which picks among at most four
 * candidates with no loop, then trailing zeros removed. Its answer is
 * dragonbox's, digit for digit, for every positive finite float32 but the
 * 7 smallest subnormals (Java's rule of two digits there); those lanes,
 * zeros, non-finite values, and any CPU without AVX-512 take the scalar
 * path. tests/f32_exhaustive.c compares the array printer with
 * f32text_print byte for byte over all 2^32 patterns.
 *
 * G_TAB[k + 45] = floor(b / 2^63) + 1, where b = floor(10^-k * 2^(125 -
 * floor(-k * log2 10))) + 1 is the 126-bit approximation of 10^-k; k runs
 * over floor(q * log10 2) (and floor(q * log10 2 + log10 3/4)) for the
 * binary exponents q of float32, -45..31. Computed exactly with Python's
 * integers.
 */
const uint64_t G_TAB[77] = {
    0x59aedfc10d7279c6ull, 0x47bf19673df52e38ull, 0x72cb5bd86321e38dull,
    0x5bd5e313828182d7ull, 0x4977e8dc68679be0ull, 0x758ca7c70d7292ffull,
    0x5e0a1fd271287599ull, 0x4b3b4ca85a86c47bull, 0x785ee10d5da46d91ull,
    0x604be73de4838adaull, 0x4d0985cb1d3608afull, 0x7b426fab61f00de4ull,
    0x629b8c891b267183ull, 0x4ee2d6d415b85acfull, 0x7e37be2022c0914cull,
    0x64f964e68233a770ull, 0x50c783eb9b5c85f3ull, 0x409f9cbc7c4a04c3ull,
    0x6765c793fa10079eull, 0x52b7d2dcc80cd2e5ull, 0x422ca8b0a00a4251ull,
    0x69e10de76676d081ull, 0x54b40b1f852bda01ull, 0x43c33c1937564801ull,
    0x6c6b935b8bbd4001ull, 0x56bc75e2d6310001ull, 0x4563918244f40001ull,
    0x6f05b59d3b200001ull, 0x58d15e1762800001ull, 0x470de4df82000001ull,
    0x71afd498d0000001ull, 0x5af3107a40000001ull, 0x48c2739500000001ull,
    0x746a528800000001ull, 0x5d21dba000000001ull, 0x4a817c8000000001ull,
    0x7735940000000001ull, 0x5f5e100000000001ull, 0x4c4b400000000001ull,
    0x7a12000000000001ull, 0x61a8000000000001ull, 0x4e20000000000001ull,
    0x7d00000000000001ull, 0x6400000000000001ull, 0x5000000000000001ull,
    0x4000000000000001ull, 0x6666666666666667ull, 0x51eb851eb851eb86ull,
    0x4189374bc6a7ef9eull, 0x68db8bac710cb296ull, 0x53e2d6238da3c212ull,
    0x431bde82d7b634dbull, 0x6b5fca6af2bd215full, 0x55e63b88c230e77full,
    0x44b82fa09b5a52ccull, 0x6df37f675ef6eae0ull, 0x57f5ff85e5925580ull,
    0x465e6604b7a84466ull, 0x709709a125da070aull, 0x5a126e1a84ae6c08ull,
    0x480ebe7b9d58566dull, 0x734aca5f6226f0aeull, 0x5c3bd5191b525a25ull,
    0x49c97747490eae84ull, 0x760f253edb4ab0d3ull, 0x5e72843249088d76ull,
    0x4b8ed0283a6d3df8ull, 0x78e480405d7b9659ull, 0x60b6cd004ac94514ull,
    0x4d5f0a66a23a9daaull, 0x7bcb43d769f762a9ull, 0x63090312bb2c4eeeull,
    0x4f3a68dbc8f03f25ull, 0x7ec3daf941806507ull, 0x65697bfa9acd1da0ull,
    0x51212ffbaf0a7e19ull, 0x40e7599625a1fe7bull,
};

/* GCC 12's AVX-512 intrinsics self-initialize their "undefined" operand,
 * which -Wuninitialized flags in C++ at every use: off for the functions
 * below, which are intrinsics only. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512cd"))) inline __m512i
mul_high(__m512i g, __m512i cp)
{
    /* The high 64 bits of the 128-bit product, from four 32 x 32 ones
     * (g < 2^63, cp < 2^62: no sum below overflows). */
    const __m512i m32 = _mm512_set1_epi64(0xffffffff);
    __m512i gh = _mm512_srli_epi64(g, 32), ch = _mm512_srli_epi64(cp, 32);
    __m512i ll = _mm512_mul_epu32(g, cp), lh = _mm512_mul_epu32(g, ch);
    __m512i hl = _mm512_mul_epu32(gh, cp), hh = _mm512_mul_epu32(gh, ch);
    __m512i mid = _mm512_add_epi64(_mm512_srli_epi64(ll, 32),
                                   _mm512_add_epi64(_mm512_and_si512(lh, m32),
                                                    _mm512_and_si512(hl, m32)));
    return _mm512_add_epi64(_mm512_add_epi64(hh, _mm512_srli_epi64(mid, 32)),
                            _mm512_add_epi64(_mm512_srli_epi64(lh, 32), _mm512_srli_epi64(hl, 32)));
}

/* Schubfach's rop: g * cp / 2^95, rounded to odd. */
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512cd"))) inline __m512i rop(__m512i g,
                                                                                   __m512i cp)
{
    __m512i x1 = mul_high(g, cp), vbp = _mm512_srli_epi64(x1, 31);
    __mmask8 sticky = _mm512_test_epi64_mask(x1, _mm512_set1_epi64(0xffffffff));
    return _mm512_mask_or_epi64(vbp, sticky, vbp, _mm512_set1_epi64(1));
}

/* What format_digits takes, for 8 values. */
struct digits8_block {
    uint64_t rest[8];
    int32_t c1[8], n[8], k[8];
};

/*
 * The 8 float32 patterns at bits as format_digits' arguments, for each
 * lane whose bit in the result is clear; a set bit asks the caller for the
 * scalar path (zero, the 7 smallest subnormals, infinity, NaN).
 */
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512cd"), always_inline)) inline unsigned
decimal8(const uint32_t *bits, digits8_block *d)
{
    const __m512i one = _mm512_set1_epi64(1);
    __m512i x = _mm512_cvtepu32_epi64(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(bits)));
    __m512i t = _mm512_and_si512(x, _mm512_set1_epi64(0x7fffff));
    __m512i bq = _mm512_and_si512(_mm512_srli_epi64(x, 23), _mm512_set1_epi64(0xff));
    __mmask8 sub = _mm512_cmpeq_epi64_mask(bq, _mm512_setzero_si512());
    __mmask8 special = (sub & _mm512_cmplt_epu64_mask(t, _mm512_set1_epi64(8))) |
                       _mm512_cmpeq_epi64_mask(bq, _mm512_set1_epi64(0xff));
    /* v = c * 2^q; q_min = -149 for subnormals and the smallest normals */
    __m512i q = _mm512_mask_mov_epi64(_mm512_sub_epi64(bq, _mm512_set1_epi64(150)), sub,
                                      _mm512_set1_epi64(-149));
    __m512i c = _mm512_mask_mov_epi64(_mm512_or_si512(t, _mm512_set1_epi64(0x800000)), sub, t);
    __m512i out = _mm512_and_si512(c, one); /* an odd c excludes the interval's ends */
    __m512i cb = _mm512_slli_epi64(c, 2);
    __m512i cbr = _mm512_add_epi64(cb, _mm512_set1_epi64(2));
    /* c = 2^23 above q_min: the gap below v is half the one above */
    __mmask8 cmin = _mm512_cmpeq_epi64_mask(c, _mm512_set1_epi64(0x800000)) &
                    _mm512_cmpneq_epi64_mask(q, _mm512_set1_epi64(-149));
    __m512i cbl = _mm512_sub_epi64(cb, _mm512_mask_mov_epi64(_mm512_set1_epi64(2), cmin, one));
    /* k = floor(q log10 2), or floor(q log10 2 + log10 3/4) for cmin */
    __m512i qm = _mm512_mullo_epi64(q, _mm512_set1_epi64(661971961083LL));
    qm = _mm512_mask_add_epi64(qm, cmin, qm, _mm512_set1_epi64(-274743187321LL));
    __m512i k = _mm512_srai_epi64(qm, 41);
    /* h = q + floor(-k log2 10) + 33 */
    __m512i f = _mm512_srai_epi64(
        _mm512_mullo_epi64(_mm512_sub_epi64(_mm512_setzero_si512(), k),
                           _mm512_set1_epi64(913124641741LL)),
        38);
    __m512i h = _mm512_add_epi64(_mm512_add_epi64(q, f), _mm512_set1_epi64(33));
    __m512i idx = _mm512_mask_mov_epi64(_mm512_add_epi64(k, _mm512_set1_epi64(45)), special,
                                        _mm512_setzero_si512());
    __m512i g = _mm512_i64gather_epi64(idx, G_TAB, 8);
    __m512i vb = rop(g, _mm512_sllv_epi64(cb, h));
    __m512i vbl = rop(g, _mm512_sllv_epi64(cbl, h));
    __m512i vbr = rop(g, _mm512_sllv_epi64(cbr, h));
    /* s = floor(v / 10^k); sp10, tp10: the multiples of 10 around it */
    __m512i s = _mm512_srli_epi64(vb, 2);
    __m512i sp10 = _mm512_mullo_epi64(
        _mm512_srli_epi64(_mm512_mul_epu32(s, _mm512_set1_epi64(1717986919)), 34),
        _mm512_set1_epi64(10));
    __m512i tp10 = _mm512_add_epi64(sp10, _mm512_set1_epi64(10));
    __m512i lo = _mm512_add_epi64(vbl, out); /* x is in the interval: lo <= 4x <= hi */
    __m512i hi = _mm512_sub_epi64(vbr, out);
    __mmask8 upin = _mm512_cmple_epu64_mask(lo, _mm512_slli_epi64(sp10, 2));
    __mmask8 wpin = _mm512_cmple_epu64_mask(_mm512_slli_epi64(tp10, 2), hi);
    __m512i tt = _mm512_add_epi64(s, one);
    __mmask8 uin = _mm512_cmple_epu64_mask(lo, _mm512_slli_epi64(s, 2));
    __mmask8 win = _mm512_cmple_epu64_mask(_mm512_slli_epi64(tt, 2), hi);
    /* both s and s + 1 in: the closer, the even one on a tie */
    __m512i mid2 = _mm512_slli_epi64(_mm512_add_epi64(s, tt), 1);
    __mmask8 even = _mm512_testn_epi64_mask(s, one);
    __mmask8 take_s = _mm512_cmplt_epu64_mask(vb, mid2) |
                      (_mm512_cmpeq_epi64_mask(vb, mid2) & even);
    __m512i r = _mm512_mask_mov_epi64(tt, take_s, s);
    r = _mm512_mask_mov_epi64(r, (uin ^ win) & uin, s);
    r = _mm512_mask_mov_epi64(r, (uin ^ win) & win, tt);
    r = _mm512_mask_mov_epi64(r, upin ^ wpin, _mm512_mask_mov_epi64(tp10, upin, sp10));
    __m512i e = k;
    /* trailing zeros, all lanes at once (r < 2^32: x / 10 = x * 0xcccccccd / 2^35) */
    __mmask8 live = static_cast<__mmask8>(~special) & _mm512_test_epi64_mask(r, r);
    for (;;) {
        __m512i r10 = _mm512_srli_epi64(_mm512_mul_epu32(r, _mm512_set1_epi64(0xcccccccd)), 35);
        __mmask8 z = _mm512_mask_cmpeq_epi64_mask(live, r, _mm512_mullo_epi64(r10, _mm512_set1_epi64(10)));
        if (!z)
            break;
        r = _mm512_mask_mov_epi64(r, z, r10);
        e = _mm512_mask_add_epi64(e, z, e, one);
    }
    /* format_decimal's digits, lane by lane: n = the digit count of r,
     * r * 10^(9 - n) its digits left-aligned in 9, d1 = that / 10^8
     * (x * 720575941 / 2^56 for x < 10^9), the 8 after it as digits8
     * does them (x / 10^4 = x * 3518437209 / 2^45 for x < 10^8). */
    const __m512i p10lo = _mm512_setr_epi64(1, 10, 100, 1000, 10000, 100000, 1000000, 10000000);
    const __m512i p10hi = _mm512_setr_epi64(100000000, 1000000000, 0, 0, 0, 0, 0, 0);
    /* count_digits' way: from the bit length b (1..30), floor(b log10 2)
     * is the count or one less */
    __m512i nb = _mm512_srli_epi64(
        _mm512_mullo_epi64(_mm512_sub_epi64(_mm512_set1_epi64(64), _mm512_lzcnt_epi64(r)),
                           _mm512_set1_epi64(1233)),
        12);
    __m512i n = _mm512_mask_add_epi64(
        nb, _mm512_cmpge_epu64_mask(r, _mm512_permutex2var_epi64(p10lo, nb, p10hi)), nb, one);
    __m512i scale = _mm512_permutex2var_epi64(p10lo, _mm512_sub_epi64(_mm512_set1_epi64(9), n), p10hi);
    __m512i sig9 = _mm512_mullo_epi64(r, scale);
    __m512i d1 = _mm512_srli_epi64(_mm512_mul_epu32(sig9, _mm512_set1_epi64(720575941)), 56);
    __m512i v8 = _mm512_sub_epi64(sig9, _mm512_mullo_epi64(d1, _mm512_set1_epi64(100000000)));
    __m512i h4 = _mm512_srli_epi64(_mm512_mul_epu32(v8, _mm512_set1_epi64(3518437209LL)), 45);
    __m512i w = _mm512_or_si512(
        h4, _mm512_slli_epi64(_mm512_sub_epi64(v8, _mm512_mullo_epi64(h4, _mm512_set1_epi64(10000))), 32));
    __m512i qq = _mm512_and_si512(_mm512_srli_epi64(_mm512_mullo_epi64(w, _mm512_set1_epi64(10486)), 20),
                                  _mm512_set1_epi64(0x0000007f0000007fLL));
    w = _mm512_or_si512(qq, _mm512_slli_epi64(_mm512_sub_epi64(w, _mm512_mullo_epi64(qq, _mm512_set1_epi64(100))), 16));
    qq = _mm512_and_si512(_mm512_srli_epi64(_mm512_mullo_epi64(w, _mm512_set1_epi64(103)), 10),
                          _mm512_set1_epi64(0x000f000f000f000fLL));
    w = _mm512_or_si512(qq, _mm512_slli_epi64(_mm512_sub_epi64(w, _mm512_mullo_epi64(qq, _mm512_set1_epi64(10))), 8));
    w = _mm512_or_si512(w, _mm512_set1_epi64(0x3030303030303030LL));
    _mm512_storeu_si512(d->rest, w);
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(d->c1),
                        _mm512_cvtepi64_epi32(_mm512_add_epi64(d1, _mm512_set1_epi64('0'))));
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(d->n), _mm512_cvtepi64_epi32(n));
    _mm256_storeu_si256(reinterpret_cast<__m256i *>(d->k), _mm512_cvtepi64_epi32(_mm512_add_epi64(n, e)));
    return special;
}

/* decimal8 over blocks of 8 (constants loaded once). */
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx512cd"))) void
decimals(const uint32_t *bits, size_t blocks, digits8_block *d, unsigned *special)
{
    for (size_t b = 0; b < blocks; b++)
        special[b] = decimal8(bits + 8 * b, &d[b]);
}

#pragma GCC diagnostic pop

bool have_avx512()
{
    static const bool yes = __builtin_cpu_supports("avx512f") &&
                            __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512vl") &&
                            __builtin_cpu_supports("avx512cd");
    return yes;
}

} // namespace

/*
 * The digits are computed in registers and stored from them, the layout
 * picked by predicted branches. The text used to be written to a digit
 * buffer byte pair by byte pair and copied from there in 16-byte loads,
 * which cannot take their data from the smaller stores before them and
 * wait for those to reach the cache. bench_codec's print on distinct
 * values went from 52 to 56 M floats/s (a throwaway loop: 57 to 59;
 * dragonbox's to_decimal alone 85). A layout chosen by arithmetic instead
 * of the branches on k was slower in that loop, 50-54, though the branch
 * on k >= 1 is a coin toss for LayerNorm outputs: on this data the
 * latency the arithmetic adds costs more than the branch's mispredictions.
 * So did dragonbox's own choice between its two divisors, made by
 * arithmetic in a reimplementation of its search: 46-49 against 57.
 *
 * Every store has a fixed size (8 bytes; of '0's, of digits): they write
 * up to 19 bytes past dst, within F32TEXT_MAX; the bytes past the
 * returned length are scratch, which the caller writes over.
 * flatten: dragonbox's core inlined here rather than called (53 to 60 M
 * floats/s in that loop).
 */
extern "C" __attribute__((flatten)) size_t f32text_print(char *dst, float v)
{
    char *o = dst;
    uint32_t bits;

    std::memcpy(&bits, &v, sizeof bits);
    *o = '-';
    o += bits >> 31; /* the sign of noise is a coin toss: no branch on it */
    if ((bits & 0x7fffffffu) == 0) {
        std::memcpy(o, "0.0", 3);
        return static_cast<size_t>(o + 3 - dst);
    }
    /* Shortest digits, trailing zeros removed: v = sig * 10^exp, sig < 10^9
     * (dragonbox's removal loop nearly always stops at once). */
    auto dec = jkj::dragonbox::to_decimal(v, jkj::dragonbox::policy::sign::ignore,
                                          jkj::dragonbox::policy::trailing_zero::remove);
    return static_cast<size_t>(o - dst) + format_decimal(o, dec.significand, dec.exponent);
}

extern "C" const char *f32text_print_array_path(void)
{
    return have_avx512() ? "avx512" : "scalar";
}

extern "C" size_t f32text_print_array(char *dst, const float *v, size_t count)
{
    constexpr size_t CHUNK = 8 * 16;
    char *o = dst;
    size_t i = 0;

    if (have_avx512()) {
        /* The digits of a chunk first, then its text: the vector work of
         * one block does not wait for the stores of the one before. A
         * chunk is up to CHUNK values, whole blocks of 8. */
        digits8_block d[CHUNK / 8];
        unsigned special[CHUNK / 8];
        uint32_t bits[CHUNK];
        for (size_t m; (m = (count - i < CHUNK ? count - i : CHUNK) / 8 * 8) > 0; i += m) {
            std::memcpy(bits, v + i, m * sizeof *bits);
            decimals(bits, m / 8, d, special);
            for (size_t j = 0; j < m; j++) {
                const digits8_block &db = d[j / 8];
                size_t l = j % 8;
                *o = ',';
                o += i + j > 0;
                if (special[j / 8] >> l & 1) {
                    o += f32text_print(o, v[i + j]);
                    continue;
                }
                *o = '-';
                o += bits[j] >> 31;
                o += format_digits(o, static_cast<char>(db.c1[l]), db.rest[l], db.n[l], db.k[l]);
            }
        }
    }
    for (; i < count; i++) {
        *o = ',';
        o += i > 0;
        o += f32text_print(o, v[i]);
    }
    return static_cast<size_t>(o - dst);
}

extern "C" const char *f32text_parse(const char *p, const char *end, float *out)
{
    /* 10^0 .. 10^22: exact in double (5^22 < 2^53). */
    static const double kPow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    static const uint64_t kPow10u[9] = {1,      10,      100,      1000,     10000,
                                        100000, 1000000, 10000000, 100000000};
    const char *q = p;
    bool neg = false;
    uint64_t w = 0; /* the digits, point ignored; wraps past 19 of them */
    int64_t n_digits = 0, n_frac = 0, e10 = 0;

    /*
     * One pass reads the JSON grammar -?(0|[1-9][0-9]*)(.[0-9]+)?
     * ([eE][+-]?[0-9]+)? and the digits as an integer w, so that v = w *
     * 10^(e10 - n_frac). fast_float (which takes "1.", "01" and "inf"
     * too, so the grammar was checked around it, walking the digits
     * twice) is left the numbers the double fast path below cannot take:
     * none of the %.9g text of bench_codec, whose parse went from 85 to
     * 189 M floats/s at N=768 and from 71 to 185 at N=4096 (best of 3, on
     * one array parsed again and again; ~74 on distinct values). The
     * branches on '-' and on "0" are coin tosses on noise but cheaper
     * than arithmetic on them: q += (*q == '-') put a load's latency in
     * the chain from one number to the next (-7 % on distinct values).
     */
    if (q < end && *q == '-') {
        neg = true;
        q++;
    }
    if (q >= end || !is_digit(*q))
        return nullptr;
    if (*q == '0') {
        q++; /* "01" is the number "0"; the caller decides about the rest */
    } else {
        do {
            w = w * 10 + static_cast<unsigned>(*q++ - '0');
            n_digits++;
        } while (q < end && is_digit(*q));
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || !is_digit(*q))
            return nullptr; /* "1." and "1.e5": JSON wants a digit */
        const char *f = q;
        uint64_t c;
        if (end - q >= 16) {
            /*
             * Up to 16 digits in one go, however many there are: their
             * count from where the first non-digit shows in two words, the
             * digits of each word as an 8-digit number with '0's shifted in
             * in front. The loops below stop at a count the data decides
             * (7 to 10 digits in %.9g text of noise) and mispredict their
             * exits: bench_codec's parse went from 74 to 78 M floats/s on
             * distinct values (best of 4, N = 768 and 4096 alike).
             */
            uint64_t a, b, na, nb;
            std::memcpy(&a, q, 8);
            std::memcpy(&b, q + 8, 8);
            na = nondigits8(a);
            nb = nondigits8(b);
            int ca = na ? __builtin_ctzll(na) >> 3 : 8;
            int cb = nb ? __builtin_ctzll(nb) >> 3 : 8;
            int cnt = ca < 8 ? ca : 8 + cb;
            cb = ca < 8 ? 0 : cb;
            w = (w * kPow10u[ca] + value8(digits_low(a, ca))) * kPow10u[cb] +
                value8(digits_low(b, cb));
            q += cnt;
        }
        if (q - f == 16 || end - f < 16) {
            while (end - q >= 8 && (std::memcpy(&c, q, 8), all_digits8(c))) {
                w = w * 100000000 + value8(c);
                q += 8;
            }
            while (q < end && is_digit(*q))
                w = w * 10 + static_cast<unsigned>(*q++ - '0');
        }
        n_frac = q - f;
        n_digits += n_frac;
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        bool eneg = false;
        q++;
        if (q < end && (*q == '+' || *q == '-'))
            eneg = *q++ == '-';
        if (q >= end || !is_digit(*q))
            return nullptr; /* "1e", "1e+" */
        do {
            if (e10 < 100000) /* past that only fast_float looks */
                e10 = e10 * 10 + (*q - '0');
            q++;
        } while (q < end && is_digit(*q));
        if (eneg)
            e10 = -e10;
    }
    e10 -= n_frac;
    /*
     * The fast path (Clinger's): w <= 2^53 and 10^|e10| <= 10^22 are exact
     * doubles, so w * 10^e10 or w / 10^-e10 is one IEEE operation: the
     * correctly rounded double d of the decimal x. It is 0 or lies between
     * 1e-22 and 2^53 * 1e22 < FLT_MAX, where floats are normal; (float)d
     * is then the correctly rounded float of x unless d sits exactly on a
     * midpoint between two floats: rounding to double is monotonic and
     * every such midpoint is a double, so x and d are on the same side of
     * each of them, or d is on it. On it (its 29 bits below float
     * precision are 1 followed by zeros), x may be just off it: fast_float
     * decides (test_proto's "short" midpoints fail without this check).
     * Needs round-to-nearest, as fast_float's own fast path does.
     */
    if (n_digits <= 19 && w <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        double d = static_cast<double>(w);
        uint64_t db;
        d = e10 < 0 ? d / kPow10[-e10] : d * kPow10[e10];
        std::memcpy(&db, &d, sizeof db);
        if ((db & 0x1fffffffu) != 0x10000000u) {
            float f = static_cast<float>(d);
            *out = neg ? -f : f;
            return q;
        }
    }
    /* More than 2^53 in the digits, a large exponent or a midpoint: the
     * number text is known to be JSON and to end at q. fast_float 3.9
     * stores +-inf for an overflow (and +-0 for an underflow) and reports
     * no error; reading to another end than q would be a library bug,
     * refused rather than trusted. */
    float f;
    auto r = fast_float::from_chars(p, q, f);
    if (r.ptr != q)
        return nullptr;
    *out = f;
    return q;
}
