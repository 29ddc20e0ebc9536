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
 * 3.9 (header only; it has no JSON grammar mode yet, so the grammar is
 * checked here before the number is handed to it).
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

/* Writes the decimal digits of v (< 10^10) ending at end; returns how many. */
inline int write_digits(char *end, uint32_t v)
{
    char *p = end;

    while (v >= 100) {
        uint32_t r = v % 100;
        v /= 100;
        p -= 2;
        std::memcpy(p, kDigits2 + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        std::memcpy(p, kDigits2 + 2 * v, 2);
    } else {
        *--p = static_cast<char>('0' + v);
    }
    return static_cast<int>(end - p);
}

inline bool is_digit(char c)
{
    return static_cast<unsigned char>(c - '0') < 10;
}

} // namespace

extern "C" size_t f32text_print(char *dst, float v)
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
    if (bits >> 31)
        *o++ = '-';
    if ((bits & 0x7fffffffu) == 0) {
        std::memcpy(o, "0.0", 3);
        return static_cast<size_t>(o + 3 - dst);
    }
    /* Shortest digits, trailing zeros removed: v = sig * 10^exp. At most
     * 9 digits, ending at digits + 16. */
    auto dec = jkj::dragonbox::to_decimal(v, jkj::dragonbox::policy::sign::ignore,
                                          jkj::dragonbox::policy::trailing_zero::remove);
    int n = write_digits(digits + 16, dec.significand);
    const char *d = digits + 16 - n;
    int k = n + dec.exponent; /* v = 0.d1d2...dn * 10^k */

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
    const char *q = p;

    /*
     * fast_float alone would also take "inf", "nan", ".5", "1.", "1.e5" and
     * "01"; the JSON grammar is checked around its parse instead of in a
     * pass of its own before it (that pass was ~10 % of the server's
     * cycles on N=4096 JSON infers, perf): the first byte here, the
     * fraction's first digit and the exponent after.
     */
    if (q < end && *q == '-')
        q++;
    if (q >= end || !is_digit(*q))
        return nullptr;
    if (*q == '0' && q + 1 < end && is_digit(q[1])) {
        /* "01": the number is "0"; the caller decides about the rest. */
        *out = p < q ? -0.0f : 0.0f;
        return q + 1;
    }
    float f;
    auto r = fast_float::from_chars(p, end, f);
    /* fast_float 3.9 stores +-inf for an overflow (and +-0 for an
     * underflow) and reports no error; not consuming the digits seen above
     * would be a library bug, refused rather than trusted. */
    if (r.ptr <= q)
        return nullptr;
    const char *t = q + 1;
    while (t < r.ptr && is_digit(*t))
        t++;
    /* "1." and "1.e5": JSON wants a digit after the point. */
    if (t < r.ptr && *t == '.' && (t + 1 >= r.ptr || !is_digit(t[1])))
        return nullptr;
    /* "1e", "1e+": fast_float leaves an exponent without digits unread;
     * JSON refuses the number. */
    if (r.ptr < end && (*r.ptr == 'e' || *r.ptr == 'E'))
        return nullptr;
    *out = f;
    return r.ptr;
}
