/*
 * queue.h -- bounded lock-free MPMC queue of jobs with admission control,
 * and a blocking pop for workers that spin briefly, then sleep.
 *
 * The ring is Vyukov's bounded MPMC array queue (per-cell sequence numbers,
 * one CAS per push and per pop). Admission is separate from the ring: a
 * front reserves room for all of a request's jobs at once with
 * queue_reserve() -- all or nothing, so a request is never half queued --
 * and then pushes them; a push with a reservation can never find the ring
 * full. A pop releases one unit of reservation. So the queue holds at most
 * `capacity` jobs, memory is bounded, and "full" is answered before any
 * job of the request is queued (HTTP 503).
 *
 * Each item carries a weight (for lnserve: the rows of a job), stored in
 * its cell, so a consumer can refuse the oldest item without taking it
 * (queue_try_pop_max): a dynamic batcher then never holds a job it cannot
 * run, and never has to read an item it does not own.
 *
 * Threads: any number of producers and consumers. Items are opaque
 * pointers; ownership of the item passes from the pusher to the one
 * popper that receives it.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

typedef struct queue queue;

/* A queue admitting at most capacity (>= 1) items. NULL on ENOMEM. */
queue *queue_create(size_t capacity);

/* Frees the queue. No thread may use it any more. */
void queue_destroy(queue *q);

/* Reserves room for n items: 0, or -EAGAIN when fewer than n are free
 * (nothing is reserved then). */
int queue_reserve(queue *q, size_t n);

/* Gives back n reserved units that will not be pushed. */
void queue_unreserve(queue *q, size_t n);

/* Pushes one item of the given weight under a reservation made by
 * queue_reserve(). Never fails; wakes one sleeping consumer if there is
 * one. */
void queue_push(queue *q, void *item, size_t weight);

/* Pops one item: 0 and *item set, or -EAGAIN when empty. */
int queue_try_pop(queue *q, void **item);

/* Pops the oldest item only if its weight is at most max_weight: 0 with
 * *item and *weight set; -EAGAIN when empty; -E2BIG when the oldest item
 * weighs more (it stays queued, first in line). Never blocks. */
int queue_try_pop_max(queue *q, size_t max_weight, void **item, size_t *weight);

/* queue_try_pop_max that waits for an item until deadline_ns
 * (CLOCK_MONOTONIC, as metrics_now_ns), spinning spin_iters times first:
 * 0, -E2BIG, -ETIMEDOUT at the deadline (none when it is UINT64_MAX), or
 * -ESHUTDOWN once the queue is closed and empty. A sleeper that is woken
 * for an item too heavy for it passes the wake-up on to another sleeper. */
int queue_pop_max_until(queue *q, size_t max_weight, uint64_t deadline_ns, unsigned spin_iters,
                        void **item, size_t *weight);

/* Pops one item, spinning spin_iters times and then sleeping until one
 * arrives (queue_pop_max_until with no weight limit and no deadline).
 * Returns 0, or -ESHUTDOWN once queue_close() was called and the queue is
 * empty (items pushed before close are still handed out). */
int queue_pop_wait(queue *q, void **item, unsigned spin_iters);

/* Wakes every sleeper; queue_pop_wait returns -ESHUTDOWN once empty. */
void queue_close(queue *q);

/* Items reserved or queued now (a snapshot, for metrics and tests). */
size_t queue_depth(const queue *q);

size_t queue_capacity(const queue *q);
