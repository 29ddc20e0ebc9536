/*
 * hist.h -- a log-linear latency histogram (the HdrHistogram layout) that
 * keeps every percentile within 1 % of the exact value.
 *
 * Values are non-negative integers (lnctl records nanoseconds). Values
 * below 2^HIST_SUB_BITS+1 (256) each get their own bucket; above that every
 * power-of-two range [2^k, 2^(k+1)) is cut into 2^HIST_SUB_BITS (128) equal
 * sub-buckets, so a bucket is at most 1/128 of its lower edge wide. A
 * percentile reports the midpoint of its bucket, clamped to the recorded
 * min and max: at most 1/256 (0.4 %) away from the true order statistic.
 * The whole uint64 range fits in HIST_BUCKETS counters (59 KiB).
 *
 * Recording is O(1) with no allocation (one clz, a shift, an add), so it is
 * fit for a hot path. A hist is plain data owned by the caller: not thread
 * safe; give each thread its own and hist_merge them.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
/* 256 exact buckets for 0..255, then 128 per power of two from 2^8 to 2^63. */
#define HIST_BUCKETS (2 * HIST_SUB + (64 - HIST_SUB_BITS - 1) * HIST_SUB)

typedef struct hist {
    uint64_t count;
    uint64_t min; /* UINT64_MAX when empty */
    uint64_t max;
    double sum;
    uint64_t b[HIST_BUCKETS];
} hist;

/* Empties h. */
void hist_reset(hist *h);

/* Adds one observation of value v. */
void hist_record(hist *h, uint64_t v);

/* Adds every observation of src into dst. */
void hist_merge(hist *dst, const hist *src);

/*
 * The value at percentile p (0..100): the smallest recorded value v such
 * that at least ceil(p / 100 * count) observations are <= v (p = 0 gives
 * the minimum, 100 the maximum), up to the bucket's resolution (see top).
 * 0 when empty.
 */
uint64_t hist_percentile(const hist *h, double p);

/* Arithmetic mean; 0 when empty. */
double hist_mean(const hist *h);

/* Bucket index of v and the [lo, hi] range of values bucket i holds
 * (exposed for the tests). */
size_t hist_index(uint64_t v);
void hist_bucket_range(size_t i, uint64_t *lo, uint64_t *hi);
