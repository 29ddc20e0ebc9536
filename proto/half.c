/*
 * half.c -- see half.h. Bit manipulation on the float32 pattern; the only
 * float arithmetic is one exact scaling of an FP16 subnormal.
 */
#include "half.h"

#include <string.h>

static uint32_t f32_bits(float f)
{
    uint32_t u;

    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;

    memcpy(&f, &u, sizeof f);
    return f;
}

float half_fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;

    if (exp == 0x1f) /* inf, or NaN with its payload moved up */
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp != 0) /* normal: rebias 15 -> 127 */
        return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
    /* zero or subnormal: man * 2^-24, exact in float32 (man < 2^10, and
     * the product is a normal float32 or zero) */
    {
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
}

uint16_t half_f32_to_fp16(float f)
{
    uint32_t u = f32_bits(f), a = u & 0x7fffffffu;
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);

    if (a > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) /* >= 65520 (incl. inf): past the last midpoint */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) {
        /* Normal FP16 (>= 2^-14): drop 13 mantissa bits, round to nearest
         * even by adding 0xfff plus the kept lsb; a carry out of the
         * mantissa bumps the exponent, which is the right answer (and stays
         * below 31: the largest input here rounds to 65504). */
        uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((r - (112u << 23)) >> 13));
    }
    {
        /* FP16 subnormal or zero: round(|f| * 2^24) with the implicit bit,
         * |f| = m * 2^(e - 150), so the result is m >> (126 - e) rounded.
         * 1024 (a carry into the exponent) is 0x0400, the smallest normal:
         * right again. */
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift, q, rem,
                 half;
        if (e < 102) /* |f| < 2^-25: below half the smallest subnormal */
            return sign;
        shift = 126 - e; /* 14 .. 24 */
        q = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u)))
            q++;
        return (uint16_t)(sign | q);
    }
}

float half_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
}

uint16_t half_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);

    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet, same sign */
        return (uint16_t)((u >> 16) | 0x0040u);
    /* Round to nearest even on the low 16 bits; a carry runs into the
     * exponent and past the largest finite value into inf, as it should. */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
