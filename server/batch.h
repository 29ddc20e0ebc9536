/*
 * batch.h -- the dynamic batching policy a worker follows: after taking a
 * first job, take more until the batch holds max_rows rows, waiting for
 * more at most until max_delay_ns after the first job was queued (DESIGN
 * section 2; Triton's max_queue_delay_microseconds, measured the same
 * way: from the oldest request's arrival in the queue). With max_delay_ns
 * 0 only what is queued now is taken: the worker never blocks for more.
 *
 * The batch stops at the first job that does not fit (it stays queued,
 * first in line, for another worker), so a batch never holds more than
 * max_rows rows -- except a batch of one job that is larger on its own:
 * jobs are never split here.
 *
 * Pure logic over a source of weighted items and a clock (batch_src), so
 * tests drive it with fake jobs and a fake clock; workers.c plugs in the
 * queue and CLOCK_MONOTONIC. Any thread; no state of its own.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct batch_src {
    void *ctx;
    /* Never blocks: 0 with *item and *rows set, -EAGAIN (nothing queued),
     * -E2BIG (the oldest item has more than max_rows rows). */
    int (*try_pop)(void *ctx, size_t max_rows, void **item, size_t *rows);
    /* May block until deadline_ns: as try_pop, or -ETIMEDOUT, or
     * -ESHUTDOWN (nothing more will come). */
    int (*pop_until)(void *ctx, size_t max_rows, uint64_t deadline_ns, void **item, size_t *rows);
    uint64_t (*now_ns)(void *ctx);
} batch_src;

typedef struct batch_policy {
    size_t max_rows;       /* server.max_batch_rows, >= 1 */
    uint64_t max_delay_ns; /* server.max_queue_delay_us * 1000; 0 = never wait */
    size_t max_items;      /* room in the caller's items[], >= 1 */
} batch_policy;

typedef struct batch_result {
    size_t n_items;     /* >= 1: items[0] is the first job */
    size_t rows;        /* summed over the items */
    uint64_t waited_ns; /* time spent in pop_until (0 when max_delay_ns is 0) */
} batch_result;

/*
 * Completes a batch whose first item, items[0] with first_rows rows and
 * queued at first_queued_ns (the clock of src->now_ns), the caller has
 * already taken. Appends to items[] and returns what the batch holds.
 */
batch_result batch_gather(const batch_src *src, const batch_policy *p, void **items,
                          size_t first_rows, uint64_t first_queued_ns);
