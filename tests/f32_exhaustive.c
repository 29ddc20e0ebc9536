/*
 * f32_exhaustive.c -- every one of the 2^32 float32 bit patterns that is
 * finite: f32text_print, then f32text_parse, must give the same bits, and
 * the text must be a JSON number; and f32text_print_array, fed the
 * patterns in order in arrays of BLOCK, must write byte for byte what
 * f32text_print wrote for them, with commas (its AVX-512 path finds the
 * digits another way: Schubfach, not dragonbox). Minutes of CPU: `make
 * check-f32-exhaustive`, not part of `make test` (test_proto samples 2
 * million patterns and 2.5 million array values).
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../proto/f32text.h"

#define BLOCK 4096

static float block[BLOCK];
static char one_by_one[BLOCK * (F32TEXT_LEN_MAX + 1) + F32TEXT_MAX];
static char array[BLOCK * (F32TEXT_LEN_MAX + 1) + F32TEXT_MAX];

/* 1 when print_array's text of the n values in block differs from the
 * len bytes of one_by_one. */
static int array_differs(size_t n, size_t len)
{
    size_t got = f32text_print_array(array, block, n);
    if (got == len && memcmp(array, one_by_one, len) == 0)
        return 0;
    size_t at = 0;
    while (at < got && at < len && array[at] == one_by_one[at])
        at++;
    printf("print_array wrote \"%.30s\" where f32text_print wrote \"%.30s\"\n", array + at,
           one_by_one + at);
    return 1;
}

int main(void)
{
    uint64_t bad = 0, checked = 0, bad_array = 0;
    size_t n_block = 0, len = 0;

    for (uint64_t u = 0; u <= UINT32_MAX; u++) {
        uint32_t bits = (uint32_t)u, back;
        float v, got;
        char *buf;
        size_t n;

        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        if (n_block)
            one_by_one[len++] = ',';
        buf = one_by_one + len;
        n = f32text_print(buf, v);
        len += n;
        block[n_block++] = v;
        if (n_block == BLOCK) {
            bad_array += (uint64_t)array_differs(n_block, len);
            n_block = len = 0;
        }
        if (n > F32TEXT_LEN_MAX || f32text_parse(buf, buf + n, &got) != buf + n) {
            bad++;
            continue;
        }
        memcpy(&back, &got, sizeof back);
        if (back != bits) {
            if (bad++ < 10)
                printf("0x%08" PRIx32 " printed as %.*s reads 0x%08" PRIx32 "\n", bits, (int)n, buf,
                       back);
        }
        checked++;
        if ((u & 0x0fffffffu) == 0x0fffffffu)
            fprintf(stderr, "f32_exhaustive: %3.0f%%\n", (double)(u + 1) / 4294967296.0 * 100);
    }
    if (n_block)
        bad_array += (uint64_t)array_differs(n_block, len);
    printf("f32_exhaustive: %" PRIu64 " finite float32 patterns, %" PRIu64
           " failed to round-trip; %" PRIu64 " arrays of up to %d printed differently"
           " (print_array's %s path)\n",
           checked, bad, bad_array, BLOCK, f32text_print_array_path());
    return bad != 0 || bad_array != 0;
}
