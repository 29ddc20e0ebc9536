/*
 * bench_binary.c -- load client for lnserve's binary protocol, on the
 * blocking client library (tools/lnbin.h). One thread per connection.
 *
 *   bench_binary ADDR [--n 768] [--rows 1] [--conns 4] [--depth 32] [--secs 5]
 *                [--rate R] [--mask 15]
 *
 * Closed loop (default): each connection keeps --depth requests in flight
 * (pipelining), queueing a new one per response and writing whenever no
 * further response is already buffered. Measures the peak.
 * Open loop (--rate R requests/s in all): each connection has a sender
 * thread that sends on a fixed schedule and the latency of a request is
 * counted from its scheduled time, so a stalled server cannot hide its
 * queueing (no coordinated omission).
 *
 * Every 64th response is checked against the scalar reference (core/);
 * prints requests/s, latency percentiles, errors (non-ok statuses) and
 * wrong answers. Exit status 1 on any error or wrong answer.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/ln.h"
#include "../tools/lnbin.h"

#define TS_RING 65536 /* send times by id; > any depth in flight */

typedef struct opts {
    const char *addr;
    uint32_t n, rows;
    int conns, depth;
    double secs, rate;
    unsigned mask;
} opts;

typedef struct worker {
    const opts *o;
    int k;
    lnbin *c;
    const float *x, *y_ref;
    _Atomic uint64_t ts[TS_RING]; /* send (or scheduled) time by id % TS_RING */
    atomic_ullong sent;           /* requests written (open loop: by the sender) */
    atomic_int sender_done;
    float *lat_us;
    size_t n_lat, cap_lat;
    unsigned long long done, errors, wrong;
    int failed;
    pthread_t t, sender;
} worker;

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void record(worker *w, uint64_t ns)
{
    if (w->n_lat == w->cap_lat) {
        w->cap_lat = w->cap_lat ? 2 * w->cap_lat : 65536;
        w->lat_us = realloc(w->lat_us, w->cap_lat * sizeof(float));
        if (!w->lat_us) {
            perror("realloc");
            exit(2);
        }
    }
    w->lat_us[w->n_lat++] = (float)ns / 1000.0f;
}

static int queue_one(worker *w, uint64_t id, uint64_t t)
{
    /* relaxed: the receiver reads it after the response, which the socket
     * orders in practice; atomic only so the two threads never race. */
    atomic_store_explicit(&w->ts[id % TS_RING], t, memory_order_relaxed);
    return lnbin_queue_infer(w->c, id, "layernorm", w->o->mask, w->o->rows, w->o->n, w->x);
}

static void check(worker *w, const lnbin_response *r)
{
    if (r->r.status != LNS_OK) {
        if (w->errors++ == 0)
            fprintf(stderr, "bench_binary: status %u: %.*s\n", r->r.wire_status,
                    (int)r->r.msg_len, r->r.msg);
        return;
    }
    if (!(w->done % 64) && r->r.output) {
        size_t n = (size_t)w->o->rows * w->o->n;
        for (size_t i = 0; i < n; i++) {
            float got = frame_get_f32(r->r.output + 4 * i), want = w->y_ref[i];
            if (!(fabsf(got - want) <= 1e-5f * fmaxf(1.0f, fabsf(want)))) {
                w->wrong++;
                break;
            }
        }
    }
}

static void *closed_loop(void *arg)
{
    worker *w = arg;
    uint64_t end = now_ns() + (uint64_t)(w->o->secs * 1e9), id = 0, inflight = 0;
    for (; inflight < (uint64_t)w->o->depth; inflight++)
        queue_one(w, id++, now_ns());
    if (lnbin_flush(w->c) != 0)
        goto fail;
    int stopping = 0;
    while (inflight) {
        lnbin_response r;
        if (lnbin_recv(w->c, &r) != 0)
            goto fail;
        uint64_t t = now_ns();
        inflight--;
        record(w, t - atomic_load_explicit(&w->ts[r.h.id % TS_RING], memory_order_relaxed));
        check(w, &r);
        w->done++;
        stopping |= t >= end;
        if (!stopping) {
            queue_one(w, id++, t);
            inflight++;
        }
        if (!lnbin_has_frame(w->c) && lnbin_flush(w->c) != 0)
            goto fail;
    }
    return NULL;
fail:
    w->failed = 1;
    return NULL;
}

static void *sender_main(void *arg)
{
    worker *w = arg;
    double per_conn = w->o->rate / w->o->conns;
    uint64_t t0 = now_ns() + 1000000u * (uint64_t)w->k / (uint64_t)w->o->conns; /* stagger */
    uint64_t n_total = (uint64_t)(per_conn * w->o->secs), i = 0;
    while (i < n_total) {
        uint64_t due = t0 + (uint64_t)((double)i * 1e9 / per_conn);
        struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        /* Everything due by now goes out in one write, each stamped with
         * its own scheduled time: the schedule holds even when this
         * thread wakes late, and one write per request would make the
         * client, not the server, the bottleneck. */
        uint64_t t = now_ns();
        uint64_t first = i;
        do {
            if (queue_one(w, i, due) != 0)
                goto out;
            i++;
            due = t0 + (uint64_t)((double)i * 1e9 / per_conn);
        } while (i < n_total && due <= t && i - first < 256);
        if (lnbin_flush(w->c) != 0)
            goto out;
        /* release: the receiver's acquire load of `sent` sees the ts. */
        atomic_store_explicit(&w->sent, i, memory_order_release);
    }
out:
    atomic_store_explicit(&w->sender_done, 1, memory_order_release);
    return NULL;
}

static void *open_loop(void *arg)
{
    worker *w = arg;
    if (pthread_create(&w->sender, NULL, sender_main, w) != 0) {
        w->failed = 1;
        return NULL;
    }
    for (;;) {
        uint64_t sent = atomic_load_explicit(&w->sent, memory_order_acquire);
        if (w->done == sent) {
            if (atomic_load_explicit(&w->sender_done, memory_order_acquire) &&
                atomic_load_explicit(&w->sent, memory_order_acquire) == w->done)
                break;
        }
        lnbin_response r;
        if (lnbin_recv(w->c, &r) != 0) {
            w->failed = 1;
            break;
        }
        uint64_t t = now_ns();
        record(w, t - atomic_load_explicit(&w->ts[r.h.id % TS_RING], memory_order_relaxed));
        check(w, &r);
        w->done++;
    }
    pthread_join(w->sender, NULL);
    return NULL;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_binary ADDR [--n 768] [--rows 1] [--conns 4] [--depth 32] "
                    "[--secs 5] [--rate R] [--mask 15]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    opts o = {.n = 768, .rows = 1, .conns = 4, .depth = 32, .secs = 5, .rate = 0, .mask = 15};
    if (argc < 2)
        usage();
    o.addr = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--n"))
            o.n = (uint32_t)atoi(v);
        else if (!strcmp(k, "--rows"))
            o.rows = (uint32_t)atoi(v);
        else if (!strcmp(k, "--conns"))
            o.conns = atoi(v);
        else if (!strcmp(k, "--depth"))
            o.depth = atoi(v);
        else if (!strcmp(k, "--secs"))
            o.secs = atof(v);
        else if (!strcmp(k, "--rate"))
            o.rate = atof(v);
        else if (!strcmp(k, "--mask"))
            o.mask = (unsigned)atoi(v);
        else
            usage();
    }
    if (o.n < 1 || o.rows < 1 || o.conns < 1 || o.depth < 1 || o.depth >= TS_RING ||
        o.secs <= 0 || o.mask < 1 || o.mask > 15)
        usage();

    size_t n = (size_t)o.rows * o.n;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    if (!x || !y)
        return 2;
    srand(1);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rand() / (float)RAND_MAX * 4.0f - 2.0f + 0.5f;
    ln_params p = {.kind = LN_KIND_LAYERNORM, .n = o.n, .groups = 1, .eps = 1e-5f};
    ln_rows_ref(&p, x, y, o.rows, &(ln_diag){0});

    worker *ws = calloc((size_t)o.conns, sizeof(worker));
    if (!ws)
        return 2;
    for (int k = 0; k < o.conns; k++) {
        ws[k].o = &o;
        ws[k].k = k;
        ws[k].x = x;
        ws[k].y_ref = y;
        int rc = lnbin_connect(o.addr, &ws[k].c);
        if (rc) {
            fprintf(stderr, "bench_binary: connect %s: %s\n", o.addr, strerror(-rc));
            return 2;
        }
    }
    uint64_t t0 = now_ns();
    for (int k = 0; k < o.conns; k++)
        pthread_create(&ws[k].t, NULL, o.rate > 0 ? open_loop : closed_loop, &ws[k]);
    for (int k = 0; k < o.conns; k++)
        pthread_join(ws[k].t, NULL);
    double secs = (double)(now_ns() - t0) / 1e9;

    unsigned long long done = 0, errors = 0, wrong = 0;
    size_t n_lat = 0;
    int failed = 0;
    for (int k = 0; k < o.conns; k++) {
        done += ws[k].done;
        errors += ws[k].errors;
        wrong += ws[k].wrong;
        n_lat += ws[k].n_lat;
        failed |= ws[k].failed;
    }
    float *all = malloc((n_lat ? n_lat : 1) * sizeof(float));
    size_t off = 0;
    for (int k = 0; k < o.conns; k++) {
        memcpy(all + off, ws[k].lat_us, ws[k].n_lat * sizeof(float));
        off += ws[k].n_lat;
    }
    qsort(all, n_lat, sizeof(float), cmp_float);
#define PCT(q) (n_lat ? all[(size_t)((double)(n_lat - 1) * (q))] : 0.0f)
    printf("binary %s N=%u rows=%u conns=%d %s: %.0f req/s, p50 %.1f us, p99 %.1f us, "
           "p99.9 %.1f us, max %.1f us; %llu done, %llu errors, %llu wrong%s\n",
           o.addr, o.n, o.rows, o.conns,
           o.rate > 0 ? "open loop" : "closed loop", (double)done / secs, PCT(0.5), PCT(0.99),
           PCT(0.999), PCT(1.0), done, errors, wrong, failed ? ", CONNECTION FAILED" : "");
    if (o.rate > 0)
        printf("  offered %.0f req/s\n", o.rate);
    else
        printf("  depth %d per connection\n", o.depth);
    for (int k = 0; k < o.conns; k++) {
        lnbin_close(ws[k].c);
        free(ws[k].lat_us);
    }
    free(all);
    free(ws);
    free(x);
    free(y);
    return (errors || wrong || failed) ? 1 : 0;
}
