/*
 * f32_exhaustive.c -- every one of the 2^32 float32 bit patterns that is
 * finite: f32text_print, then f32text_parse, must give the same bits, and
 * the text must be a JSON number. Minutes of CPU: `make check-f32-exhaustive`,
 * not part of `make test` (test_proto samples 2 million patterns).
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../proto/f32text.h"

int main(void)
{
    uint64_t bad = 0, checked = 0;
    char buf[F32TEXT_MAX];

    for (uint64_t u = 0; u <= UINT32_MAX; u++) {
        uint32_t bits = (uint32_t)u, back;
        float v, got;
        size_t n;

        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        n = f32text_print(buf, v);
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
    printf("f32_exhaustive: %" PRIu64 " finite float32 patterns, %" PRIu64
           " failed to round-trip\n",
           checked, bad);
    return bad != 0;
}
