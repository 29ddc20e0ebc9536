/*
 * queue.c -- see queue.h. Vyukov's bounded MPMC queue: cell i holds a
 * sequence number that says whose turn it is. A producer at position pos
 * may write cell pos & mask when seq == pos, then publishes seq = pos + 1;
 * a consumer at pos may read it when seq == pos + 1, then frees it for the
 * next lap with seq = pos + ring size.
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define CACHE_LINE 64

typedef struct cell {
    atomic_size_t seq;
    void *item; /* written by the producer before its release store of seq */
    /* Written likewise. Atomic (relaxed) because queue_try_pop_max reads it
     * before it owns the cell: a stale read there is detected by the failed
     * CAS on tail, but must not be a data race. */
    atomic_size_t weight;
} cell;

struct queue {
    cell *cells;
    size_t mask;     /* ring size - 1; ring size is a power of two >= capacity */
    size_t capacity; /* admission limit */
    alignas(CACHE_LINE) atomic_size_t head; /* next position to push */
    alignas(CACHE_LINE) atomic_size_t tail; /* next position to pop */
    alignas(CACHE_LINE) atomic_size_t reserved; /* reserved or queued */
    alignas(CACHE_LINE) atomic_int sleepers;    /* consumers in cond_wait */
    atomic_int closed;
    pthread_mutex_t lock; /* guards the sleep/wake handshake only */
    pthread_cond_t nonempty;
};

queue *queue_create(size_t capacity)
{
    if (capacity == 0 || capacity > (SIZE_MAX >> 2))
        return NULL;
    size_t ring = 1;
    while (ring < capacity)
        ring <<= 1;

    queue *q = aligned_alloc(CACHE_LINE, (sizeof(*q) + CACHE_LINE - 1) /
                                             CACHE_LINE * CACHE_LINE);
    if (!q)
        return NULL;
    q->cells = calloc(ring, sizeof(cell));
    if (!q->cells) {
        free(q);
        return NULL;
    }
    for (size_t i = 0; i < ring; i++)
        atomic_init(&q->cells[i].seq, i);
    q->mask = ring - 1;
    q->capacity = capacity;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->reserved, 0);
    atomic_init(&q->sleepers, 0);
    atomic_init(&q->closed, 0);
    pthread_mutex_init(&q->lock, NULL);
    /* CLOCK_MONOTONIC: queue_pop_max_until's deadline is on that clock. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->nonempty, &ca);
    pthread_condattr_destroy(&ca);
    return q;
}

void queue_destroy(queue *q)
{
    if (!q)
        return;
    pthread_cond_destroy(&q->nonempty);
    pthread_mutex_destroy(&q->lock);
    free(q->cells);
    free(q);
}

int queue_reserve(queue *q, size_t n)
{
    /* Relaxed is enough: the count only bounds memory; the items
     * themselves are published by the cell sequence numbers. */
    size_t cur = atomic_load_explicit(&q->reserved, memory_order_relaxed);
    do {
        if (n > q->capacity || cur > q->capacity - n)
            return -EAGAIN;
    } while (!atomic_compare_exchange_weak_explicit(
        &q->reserved, &cur, cur + n, memory_order_relaxed,
        memory_order_relaxed));
    return 0;
}

void queue_unreserve(queue *q, size_t n)
{
    atomic_fetch_sub_explicit(&q->reserved, n, memory_order_relaxed);
}

void queue_push(queue *q, void *item, size_t weight)
{
    size_t pos = atomic_load_explicit(&q->head, memory_order_relaxed);
    cell *c;
    for (;;) {
        c = &q->cells[pos & q->mask];
        /* Pairs with the consumer's release store that freed the cell. */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(
                    &q->head, &pos, pos + 1, memory_order_relaxed,
                    memory_order_relaxed))
                break;
        } else {
            /* dif < 0 would mean a full ring, which the reservation rules
             * out; dif > 0: another producer took pos, reload. */
            pos = atomic_load_explicit(&q->head, memory_order_relaxed);
        }
    }
    c->item = item;
    atomic_store_explicit(&c->weight, weight, memory_order_relaxed);
    /* Publishes item and weight; pairs with the acquire load in
     * queue_try_pop_max. */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);

    /* Dekker with queue_pop_wait: our store of seq, then this fence, then
     * the load of sleepers; the sleeper increments sleepers, fences, then
     * re-checks the ring. One of the two sees the other. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&q->sleepers, memory_order_relaxed) > 0) {
        pthread_mutex_lock(&q->lock);
        pthread_cond_signal(&q->nonempty);
        pthread_mutex_unlock(&q->lock);
    }
}

int queue_try_pop_max(queue *q, size_t max_weight, void **item, size_t *weight)
{
    size_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    cell *c;
    size_t w;
    for (;;) {
        c = &q->cells[pos & q->mask];
        /* Pairs with the producer's release store in queue_push. */
        size_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            w = atomic_load_explicit(&c->weight, memory_order_relaxed);
            if (w > max_weight) {
                /* Refused, unless another consumer took pos meanwhile (then
                 * w may belong to a later lap's item): look again. */
                size_t now = atomic_load_explicit(&q->tail, memory_order_relaxed);
                if (now == pos)
                    return -E2BIG;
                pos = now;
                continue;
            }
            /* Success means no one else took pos, so the cell was not
             * recycled after the reads of seq and weight above. */
            if (atomic_compare_exchange_weak_explicit(
                    &q->tail, &pos, pos + 1, memory_order_relaxed,
                    memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return -EAGAIN;
        } else {
            pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
        }
    }
    *item = c->item;
    if (weight)
        *weight = w;
    /* Frees the cell for the producer one lap ahead; pairs with the
     * acquire load in queue_push. */
    atomic_store_explicit(&c->seq, pos + q->mask + 1, memory_order_release);
    atomic_fetch_sub_explicit(&q->reserved, 1, memory_order_relaxed);
    return 0;
}

int queue_try_pop(queue *q, void **item)
{
    return queue_try_pop_max(q, SIZE_MAX, item, NULL);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int queue_pop_max_until(queue *q, size_t max_weight, uint64_t deadline_ns, unsigned spin_iters,
                        void **item, size_t *weight)
{
    int rc, forever = deadline_ns == UINT64_MAX;
    for (unsigned i = 0; i < spin_iters; i++) {
        rc = queue_try_pop_max(q, max_weight, item, weight);
        if (rc != -EAGAIN)
            return rc;
        if (!forever && (i & 63) == 63 && mono_ns() >= deadline_ns)
            return -ETIMEDOUT;
        cpu_relax();
    }

    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    pthread_mutex_lock(&q->lock);
    atomic_fetch_add_explicit(&q->sleepers, 1, memory_order_relaxed);
    /* See queue_push: sleepers++ before re-checking the ring. */
    atomic_thread_fence(memory_order_seq_cst);
    for (;;) {
        rc = queue_try_pop_max(q, max_weight, item, weight);
        if (rc != -EAGAIN)
            break;
        /* Pairs with the release store in queue_close. */
        if (atomic_load_explicit(&q->closed, memory_order_acquire)) {
            rc = -ESHUTDOWN;
            break;
        }
        if (forever) {
            pthread_cond_wait(&q->nonempty, &q->lock);
            continue;
        }
        if (pthread_cond_timedwait(&q->nonempty, &q->lock, &ts) == ETIMEDOUT) {
            rc = queue_try_pop_max(q, max_weight, item, weight);
            if (rc == -EAGAIN)
                rc = -ETIMEDOUT;
            break;
        }
    }
    int others = atomic_fetch_sub_explicit(&q->sleepers, 1, memory_order_relaxed) - 1;
    /* We may have taken the one wake-up a push sent for an item we do not
     * take: pass it on, or an idle consumer would sleep beside it. */
    if (rc == -E2BIG && others > 0)
        pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int queue_pop_wait(queue *q, void **item, unsigned spin_iters)
{
    return queue_pop_max_until(q, SIZE_MAX, UINT64_MAX, spin_iters, item, NULL);
}

void queue_close(queue *q)
{
    pthread_mutex_lock(&q->lock);
    atomic_store_explicit(&q->closed, 1, memory_order_release);
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

size_t queue_depth(const queue *q)
{
    return atomic_load_explicit(&q->reserved, memory_order_relaxed);
}

size_t queue_capacity(const queue *q)
{
    return q->capacity;
}
