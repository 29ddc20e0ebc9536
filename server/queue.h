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
 * Threads: any number of producers and consumers. Items are opaque
 * pointers; ownership of the item passes from the pusher to the one
 * popper that receives it.
 */
#pragma once

#include <stddef.h>

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

/* Pushes one item under a reservation made by queue_reserve(). Never
 * fails; wakes one sleeping consumer if there is one. */
void queue_push(queue *q, void *item);

/* Pops one item: 0 and *item set, or -EAGAIN when empty. */
int queue_try_pop(queue *q, void **item);

/* Pops one item, spinning spin_iters times and then sleeping until one
 * arrives. Returns 0, or -ESHUTDOWN once queue_close() was called and the
 * queue is empty (items pushed before close are still handed out). */
int queue_pop_wait(queue *q, void **item, unsigned spin_iters);

/* Wakes every sleeper; queue_pop_wait returns -ESHUTDOWN once empty. */
void queue_close(queue *q);

/* Items reserved or queued now (a snapshot, for metrics and tests). */
size_t queue_depth(const queue *q);

size_t queue_capacity(const queue *q);
