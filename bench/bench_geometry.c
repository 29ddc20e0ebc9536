/*
 * bench_geometry.c -- time of the model-level geometry solve
 * (geometry_create: all N eigenvalues, semi-axes, normal, log-volume) for
 * N = 768, 4096 and 65536, and of geometry_axes for the 16 longest axes
 * (O(N^2): the Gu-Eisenstat vector), with gains near 1 as in a trained
 * model: g = 1 + 0.05 * normal, rounded to float (a few equal gains
 * appear at large N and are deflated). The host is shared: each figure is
 * the median of several repetitions, and the minimum is printed beside it.
 *
 * Usage: bench_geometry  (no arguments)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <time.h>

#include "../core/geometry.h"

#define MAX_REPS 9
#define MIN_TOTAL_NS 1e9 /* stop repeating after this much time */
#define K_AXES 16

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

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static double unif(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1p-53;
}

static double normal(void)
{
    return sqrt(-2.0 * log(1.0 - unif())) * cos(6.283185307179586 * unif());
}

/* median and minimum of up to MAX_REPS timings of one call, in ms */
static void time_it(int axes, const float *g, size_t n, double *med, double *min,
                    const geometry **keep, geometry **last)
{
    double t[MAX_REPS], total = 0;
    int reps = 0;
    double *ax = NULL;

    if (axes && !(ax = malloc(K_AXES * n * sizeof *ax))) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    while (reps < MAX_REPS && (reps < 3 || total < MIN_TOTAL_NS)) {
        double t0 = now_ns();

        if (axes) {
            if (geometry_axes(*keep, K_AXES, ax) != 0) {
                fprintf(stderr, "geometry_axes failed\n");
                exit(1);
            }
        } else {
            geometry_destroy(*last);
            if (geometry_create(g, n, last, NULL) != 0) {
                fprintf(stderr, "geometry_create failed\n");
                exit(1);
            }
        }
        t[reps] = now_ns() - t0;
        total += t[reps++];
        if (axes && total > 2e9)
            break; /* one run of seconds is enough (N = 65536) */
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    *med = t[reps / 2] / 1e6;
    *min = t[0] / 1e6;
    free(ax);
}

int main(void)
{
    static const size_t sizes[] = { 768, 4096, 65536 };
    size_t s;

    printf("%8s %8s %12s %12s %10s %12s %10s %14s\n", "N", "n_red", "solve_ms", "solve_min",
           "residual", "trace_err", "ratio", "axes16_ms");
    for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s], i;
        float *g = malloc(n * sizeof *g);
        geometry *geo = NULL;
        double med, min, amed, amin;

        if (!g)
            return 1;
        for (i = 0; i < n; i++)
            g[i] = (float)(1.0 + 0.05 * normal());
        time_it(0, g, n, &med, &min, NULL, &geo);
        time_it(1, g, n, &amed, &amin, (const geometry **)&geo, NULL);
        printf("%8zu %8zu %12.2f %12.2f %10.2e %12.2e %10.4f %14.1f\n", n, geo->n_secular, med,
               min, geo->residual, geo->trace_error, geo->axis_ratio, amed);
        geometry_destroy(geo);
        free(g);
    }
    return 0;
}
