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
    static const uint32_t pow10[10] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};
    const uint64_t zeros8 = 0x3030303030303030ull;
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
    uint32_t sig = dec.significand;
    int n = count_digits(sig);
    int k = n + dec.exponent; /* v = 0.d1d2...dn * 10^k */
    /* The digits left-aligned in 9, zeros after: d1 (never 0) and 8 more. */
    uint32_t sig9 = sig * pow10[9 - n], d1 = sig9 / 100000000;
    char c1 = static_cast<char>('0' + d1);
    uint64_t rest = digits8(sig9 - d1 * 100000000) | zeros8; /* d2..d9 */

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
            return static_cast<size_t>(o - dst) + static_cast<size_t>(k + 1 + frac);
        }
        /* "0." and -k zeros from the fill, then the digits: "0.12345",
         * "0.00012345". */
        o[1] = '.';
        o[2 - k] = c1;
        put8(o + 3 - k, rest);
        return static_cast<size_t>(o - dst) + static_cast<size_t>(2 - k + n);
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
    return static_cast<size_t>(o - dst) + m + 2 + static_cast<size_t>(neg + two);
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
