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

/* "00" "01" ... "99": two digits per table lookup. */
constexpr char kDigits2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/*
 * The 9 decimal digits of v (< 10^9, leading zeros included), written at
 * dst. The first digit and the four pairs after it each come from v by
 * their own divisions by constants (multiply and shift), not from the one
 * before: side by side, without the chain and the branches of a
 * divide-by-100 loop. The loop also gave the digit count; count_digits
 * does now.
 */
inline void write_digits9(char *dst, uint32_t v)
{
    uint32_t lo = v % 100000000, q2 = lo / 100, q4 = lo / 10000, q6 = lo / 1000000;

    dst[0] = static_cast<char>('0' + v / 100000000);
    std::memcpy(dst + 1, kDigits2 + 2 * q6, 2);
    std::memcpy(dst + 3, kDigits2 + 2 * (q4 - q6 * 100), 2);
    std::memcpy(dst + 5, kDigits2 + 2 * (q2 - q4 * 100), 2);
    std::memcpy(dst + 7, kDigits2 + 2 * (lo - q2 * 100), 2);
}

/*
 * The number of decimal digits of v, 1 <= v < 10^9. The commonest counts
 * of shortest float32 digits, 9 and 8, by a branch each: a predicted
 * branch gives the count at once, where a computed one holds up every
 * address of the text and, through its length, of the caller's next
 * text (computing it always cost ~12 % of the print rate, bench_codec's
 * data). The rest from v's bit length b: floor(b * log10(2)) (1233 / 2^12
 * is close enough for b <= 30; checked for every v) is the count or one
 * less, and one compare settles which.
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

} // namespace

/* flatten: dragonbox's core inlined here rather than called (~+3 % in
 * bench_codec's print). */
extern "C" __attribute__((flatten)) size_t f32text_print(char *dst, float v)
{
    /*
     * Every copy has a fixed size of 16 bytes (from digits, of which only
     * the first n count; from zeros): the compiler makes them two moves,
     * where copies of a variable length were calls into libc's memmove,
     * ~10 % of the server's cycles on N=4096 JSON infers. They write up to
     * 27 bytes past dst, within F32TEXT_MAX (32); the bytes past the
     * returned length are scratch, which the caller writes over.
     */
    static const char zeros[16] = {'0', '0', '0', '0', '0', '0', '0', '0',
                                   '0', '0', '0', '0', '0', '0', '0', '0'};
    char digits[32];
    char *o = dst;
    uint32_t bits;

    std::memcpy(&bits, &v, sizeof bits);
    *o = '-';
    o += bits >> 31; /* the sign of noise is a coin toss: no branch on it */
    if ((bits & 0x7fffffffu) == 0) {
        std::memcpy(o, "0.0", 3);
        return static_cast<size_t>(o + 3 - dst);
    }
    /* Shortest digits, trailing zeros removed: v = sig * 10^exp. At most
     * 9 digits, ending at digits + 16. */
    auto dec = jkj::dragonbox::to_decimal(v, jkj::dragonbox::policy::sign::ignore,
                                          jkj::dragonbox::policy::trailing_zero::remove);
    write_digits9(digits + 7, dec.significand);
    int n = count_digits(dec.significand);
    const char *d = digits + 16 - n;
    int k = n + dec.exponent; /* v = 0.d1d2...dn * 10^k */

    /* The two commonest layouts for values of a LayerNorm's scale first,
     * with offsets that depend on n alone (+7 % in bench_codec's print). */
    if (k == 0) { /* 0.12345 */
        std::memcpy(o, "0.", 2);
        std::memcpy(o + 2, d, 16);
        return static_cast<size_t>(o + 2 + n - dst);
    }
    if (k == 1 && n > 1) { /* 1.2345 */
        o[0] = d[0];
        o[1] = '.';
        std::memcpy(o + 2, d + 1, 16);
        return static_cast<size_t>(o + 1 + n - dst);
    }
    if (k >= n && k <= 9) { /* integer: digits, zeros, ".0" */
        std::memcpy(o, d, 16);
        o += n;
        std::memcpy(o, zeros, 16);
        o += k - n;
        std::memcpy(o, ".0", 2);
        o += 2;
    } else if (k > 0 && k < n) { /* 123.45 */
        std::memcpy(o, d, 16);
        o += k;
        *o++ = '.';
        std::memcpy(o, d + k, 16);
        o += n - k;
    } else if (k <= 0 && k >= -3) { /* 0.00012345 */
        *o++ = '0';
        *o++ = '.';
        std::memcpy(o, zeros, 16);
        o += -k;
        std::memcpy(o, d, 16);
        o += n;
    } else { /* 1.2345e-7, 3.4028235e38 */
        int x = k - 1;
        *o++ = d[0];
        if (n > 1) {
            *o++ = '.';
            std::memcpy(o, d + 1, 16);
            o += n - 1;
        }
        *o++ = 'e';
        if (x < 0) {
            *o++ = '-';
            x = -x;
        }
        /* float32 exponents stay within 2 digits: 1e-45 .. 3.4e38 */
        if (x >= 10) {
            std::memcpy(o, kDigits2 + 2 * x, 2);
            o += 2;
        } else {
            *o++ = static_cast<char>('0' + x);
        }
    }
    return static_cast<size_t>(o - dst);
}

extern "C" const char *f32text_parse(const char *p, const char *end, float *out)
{
    /* 10^0 .. 10^22: exact in double (5^22 < 2^53). */
    static const double kPow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                      1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                      1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
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
     * 189 M floats/s at N=768 and from 71 to 185 at N=4096 (best of 3).
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
        while (end - q >= 8 && (std::memcpy(&c, q, 8), all_digits8(c))) {
            w = w * 100000000 + value8(c);
            q += 8;
        }
        while (q < end && is_digit(*q))
            w = w * 10 + static_cast<unsigned>(*q++ - '0');
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
