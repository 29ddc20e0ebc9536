/*
 * bench_kernel.c -- LayerNorm kernels against a memory copy of the same
 * bytes, measured in the same run (the host is shared and noisy, so only
 * ratios taken together mean much; PERF-NOTES.md).
 *
 * Shapes: 768 x 64 rows (in L1/L2), 4096 x 64 (1 MiB in, 1 MiB out: L2 or
 * L3, and past half of a 1 MiB L2 it takes non-temporal stores), 4096 x
 * 4096 (64 MiB in,
 * 64 MiB out: out of cache). Gain and bias on, diagnostics off, except on
 * the "+plane" rows: the same kernel with the plane residual on (fused
 * into the output pass in avx512, a second pass in avx2), whose last
 * column is its time over the kernel's alone. Bytes are
 * the row data read plus written (2 * rows * N * 4); gain and bias stay in
 * cache and are not counted. Buffers are allocated and touched once up
 * front, so no run pays for first-touch page faults. Each figure is the
 * median of several timed repetitions after a warm-up; a repetition loops
 * until it has run at least MIN_REP_NS.
 *
 * Usage: bench_kernel  (no arguments)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/diag.h"
#include "../core/ln.h"

#define REPS 7
#define MIN_REP_NS 20000000.0 /* 20 ms per repetition */

typedef struct shape {
    size_t n, rows;
} shape;

typedef struct bench_ctx {
    ln_params p;
    const float *x;
    float *y;
    size_t rows;
    const ln_diag *d; /* NULL: no diagnostics */
} bench_ctx;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double da = *(const double *)a, db = *(const double *)b;

    return (da > db) - (da < db);
}

/* One call of the thing measured: fn, or memcpy of the row bytes when NULL. */
static void run_once(const bench_ctx *c, ln_rows_fn fn)
{
    if (fn)
        fn(&c->p, c->x, c->y, c->rows, c->d);
    else
        memcpy(c->y, c->x, c->rows * c->p.n * sizeof(float));
}

/* Median seconds per call. */
static double time_call(const bench_ctx *c, ln_rows_fn fn)
{
    double reps[REPS], t0, t1, per_call;
    size_t iters, i, r;

    /* Warm-up, which also sizes a repetition. */
    t0 = now_ns();
    run_once(c, fn);
    t1 = now_ns();
    per_call = t1 - t0 > 1.0 ? t1 - t0 : 1.0;
    iters = (size_t)(MIN_REP_NS / per_call) + 1;

    for (r = 0; r < REPS; r++) {
        t0 = now_ns();
        for (i = 0; i < iters; i++)
            run_once(c, fn);
        t1 = now_ns();
        reps[r] = (t1 - t0) / (double)iters * 1e-9;
    }
    qsort(reps, REPS, sizeof(reps[0]), cmp_double);
    return reps[REPS / 2];
}

static void *alloc_touched(size_t count)
{
    float *p = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
    size_t i;

    if (!p) {
        fprintf(stderr, "bench_kernel: out of memory\n");
        exit(1);
    }
    for (i = 0; i < count; i++)
        p[i] = 0.0f;
    return p;
}

int main(void)
{
    static const shape shapes[] = { { 768, 64 }, { 4096, 64 }, { 4096, 4096 } };
    const int has_avx2 = ln_cpu_has_avx2();
    const int has_avx512 = ln_cpu_has_avx512();
    size_t s, i, max_elems = 0, max_rows = 0;
    float *x, *y, *g, *b, *plane;
    double inv_gain[4096], plane_c[2];
    uint64_t state = 88172645463325252ull;

    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        if (shapes[s].n * shapes[s].rows > max_elems)
            max_elems = shapes[s].n * shapes[s].rows;
        if (shapes[s].rows > max_rows)
            max_rows = shapes[s].rows;
    }
    x = alloc_touched(max_elems);
    y = alloc_touched(max_elems);
    g = alloc_touched(4096);
    b = alloc_touched(4096);
    /* Rows with an offset, so the data is not trivially compressible. */
    for (i = 0; i < max_elems; i++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        x[i] = 10.0f + (float)(state >> 40) * 0x1p-23f;
    }
    for (i = 0; i < 4096; i++) {
        g[i] = 1.0f + (float)(i % 7) * 0.01f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    plane = alloc_touched(max_rows); /* one group: a residual per row */

    printf("bench_kernel: gain and bias on; GB/s counts row bytes read + written; "
           "median of %d reps\n",
           REPS);
    printf("%-12s %-7s %12s %14s %9s %10s\n", "shape", "kernel", "us/call",
           "rows/s", "GB/s", "vs memcpy");
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const shape sh = shapes[s];
        const double bytes = 2.0 * (double)(sh.n * sh.rows) * sizeof(float);
        bench_ctx c = { { LN_KIND_LAYERNORM, sh.n, 1, 1e-5f, g, b }, x, y, sh.rows, NULL };
        ln_diag pd;
        struct {
            const char *name;
            ln_rows_fn fn;
            int plane;
        } kernels[] = { { "memcpy", NULL, 0 },
                        { "ref", ln_rows_ref, 0 },
                        { "avx2", has_avx2 ? ln_rows_avx2 : NULL, 0 },
                        { "+plane", has_avx2 ? ln_rows_avx2 : NULL, 1 },
                        { "avx512", has_avx512 ? ln_rows_avx512 : NULL, 0 },
                        { "+plane", has_avx512 ? ln_rows_avx512 : NULL, 1 } };
        double copy_s = 0.0, alone_s = 0.0;
        char label[32];
        size_t k;

        snprintf(label, sizeof(label), "%zux%zu", sh.n, sh.rows);
        for (k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
            double sec;

            if (k >= 2 && !kernels[k].fn) {
                printf("%-12s %-7s %12s\n", label, kernels[k].name, "(not on this CPU)");
                continue;
            }
            ln_plane_inv_gain(&c.p, inv_gain);
            ln_plane_consts(&c.p, inv_gain, plane_c);
            pd = (ln_diag){ .plane = plane, .plane_w = inv_gain, .plane_c = plane_c };
            c.d = kernels[k].plane ? &pd : NULL;
            sec = time_call(&c, kernels[k].fn);
            if (k == 0)
                copy_s = sec;
            printf("%-12s %-7s %12.2f %14.0f %9.2f %9.1f%%", label,
                   kernels[k].name, sec * 1e6, (double)sh.rows / sec,
                   bytes / sec * 1e-9, copy_s / sec * 100.0);
            if (kernels[k].plane)
                printf("   %5.2fx alone", sec / alone_s);
            else
                alone_s = sec;
            printf("\n");
        }
    }
    free(x);
    free(y);
    free(g);
    free(b);
    free(plane);
    return 0;
}
