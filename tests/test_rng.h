/*
 * test_rng.h -- the seeded random numbers the unit tests share: splitmix64,
 * one stream per test derived from the run's seed and the test's name, so
 * a test's numbers do not change when another test draws more or fewer.
 * Header-only (static inline): each test binary includes it once.
 */
#pragma once

#include <math.h>
#include <stdint.h>

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A stream that depends on seed and name only (FNV-1a of the name). */
static inline rng rng_seeded(uint64_t seed, const char *name)
{
    rng r = {seed};
    uint64_t h = 1469598103934665603ull;

    while (*name)
        h = (h ^ (unsigned char)*name++) * 1099511628211ull;
    r.s ^= h;
    return r;
}

/* Uniform in [0, 1) with 53 random bits. */
static inline double rng_unif(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1p-53;
}

/* Standard normal (Box-Muller). */
static inline double rng_normal(rng *r)
{
    double u1 = 1.0 - rng_unif(r); /* (0, 1]: log is finite */
    double u2 = rng_unif(r);

    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
