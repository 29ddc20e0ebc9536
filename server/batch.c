/*
 * batch.c -- see batch.h.
 */
#include "batch.h"

#include <errno.h>

batch_result batch_gather(const batch_src *src, const batch_policy *p, void **items,
                          size_t first_rows, uint64_t first_queued_ns)
{
    batch_result b = {.n_items = 1, .rows = first_rows, .waited_ns = 0};
    uint64_t deadline = first_queued_ns + p->max_delay_ns;
    while (b.n_items < p->max_items && b.rows < p->max_rows) {
        size_t room = p->max_rows - b.rows, rows = 0;
        void *item = NULL;
        int rc = src->try_pop(src->ctx, room, &item, &rows);
        if (rc == -EAGAIN && p->max_delay_ns > 0) {
            uint64_t t0 = src->now_ns(src->ctx);
            if (t0 >= deadline) /* the oldest job has waited long enough */
                break;
            rc = src->pop_until(src->ctx, room, deadline, &item, &rows);
            b.waited_ns += src->now_ns(src->ctx) - t0;
        }
        if (rc != 0) /* empty (no waiting), the next does not fit, time is up, closing */
            break;
        items[b.n_items++] = item;
        b.rows += rows;
    }
    return b;
}
