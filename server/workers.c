#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "batch.h"
#include "log.h"

/* Pops spin this many times (~ a few microseconds) before sleeping: a
 * request's jobs usually arrive back to back, and a futex wake costs more
 * than the spin. Only when every worker and I/O thread can have a CPU of
 * its own (workers_start): on a shared CPU the spin takes the time of the
 * I/O thread that would produce the next job. Measured with
 * bench/http_bench.sh (server, its I/O thread and worker on one CPU): the
 * spin was 9-12 % of the server's cycles in perf; without it 1-row N=768
 * JSON infers went from 13.0-13.5k to 13.8-13.9k req/s (2 interleaved
 * runs each), and from ~5.3k to ~11k in one run each while other builds
 * loaded the host. */
#define WORKER_SPIN_ITERS 2000

typedef struct worker worker;

struct workers {
    queue *q;
    metrics *mx;
    workers_batching batching;
    size_t max_items; /* jobs per batch at most */
    unsigned spin_iters; /* WORKER_SPIN_ITERS or 0, see there */
    int n; /* threads started */
    pthread_t *threads;
    worker *ws; /* [n_ws] */
    int n_ws;
};

/* One model's share of a batch. */
typedef struct batch_part {
    int model;
    size_t rows;
    uint64_t input_ns, infer_ns, output_ns;
} batch_part;

struct worker {
    workers *w;
    void **items;      /* [max_items] */
    batch_part *parts; /* [max_items] */
};

static int src_try_pop(void *ctx, size_t max_rows, void **item, size_t *rows)
{
    workers *w = ctx;
    return queue_try_pop_max(w->q, max_rows, item, rows);
}

static int src_pop_until(void *ctx, size_t max_rows, uint64_t deadline_ns, void **item,
                         size_t *rows)
{
    workers *w = ctx;
    return queue_pop_max_until(w->q, max_rows, deadline_ns, w->spin_iters, item, rows);
}

static uint64_t src_now(void *ctx)
{
    (void)ctx;
    return metrics_now_ns();
}

static void *worker_main(void *arg)
{
    worker *self = arg;
    workers *w = self->w;
    queue *q = w->q;
    const batch_src src = {
        .ctx = w, .try_pop = src_try_pop, .pop_until = src_pop_until, .now_ns = src_now};
    const batch_policy pol = {
        .max_rows = w->batching.max_rows,
        .max_delay_ns = w->batching.max_delay_us * 1000u,
        .max_items = w->max_items,
    };
    /* SCHED_BATCH: a worker woken by a push does not preempt the I/O
     * thread that pushed it when they share a CPU, so that thread goes on
     * decoding the requests already read and the worker then takes them
     * together, instead of two context switches per request. No effect on
     * a CPU of its own. Unprivileged; on failure the thread stays normal. */
    struct sched_param sp = {.sched_priority = 0};
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
    /* Waits of ~100 us must not oversleep by the default 50 us timer
     * slack of a normal thread. */
    if (pol.max_delay_ns)
        prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    void *item;
    while (queue_pop_wait(q, &item, w->spin_iters) == 0) {
        job *first = item;
        self->items[0] = first;
        batch_result b = batch_gather(&src, &pol, self->items, first->n_rows, first->queued_ns);
        size_t n_parts = 0;
        uint64_t busy_ns = 0;
        for (size_t i = 0; i < b.n_items; i++) {
            job *j = self->items[i];
            /* The header is read before run: afterwards j may be gone. */
            int model = j->model;
            size_t rows = j->n_rows;
            uint64_t input_ns = j->input_ns;
            job_times t = {0, 0};
            j->run(j, &t);
            size_t k = 0;
            while (k < n_parts && self->parts[k].model != model)
                k++;
            if (k == n_parts)
                self->parts[n_parts++] = (batch_part){.model = model};
            self->parts[k].rows += rows;
            self->parts[k].input_ns += input_ns;
            self->parts[k].infer_ns += t.infer_ns;
            self->parts[k].output_ns += t.output_ns;
            busy_ns += t.infer_ns;
        }
        /* One add to the shared counter per batch, not per job. */
        metrics_worker_busy(w->mx, busy_ns);
        /* One model execution per model in the batch (Triton's
         * execution_count and batch_stats). */
        for (size_t k = 0; k < n_parts; k++)
            metrics_batch(w->mx, self->parts[k].model,
                          &(metrics_batch_sample){
                              .rows = self->parts[k].rows,
                              .input_ns = self->parts[k].input_ns,
                              .infer_ns = self->parts[k].infer_ns,
                              .output_ns = self->parts[k].output_ns,
                          });
        metrics_batch_gathered(w->mx, b.n_items, b.waited_ns);
    }
    return NULL;
}

int workers_allowed_cpus(int *cpus, int max)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 0;
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < max; c++)
        if (CPU_ISSET(c, &set))
            cpus[n++] = c;
    return n;
}

static void pin(pthread_t t, int i, int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu < 0 || cpu >= CPU_SETSIZE) {
        log_msg(LOG_WARN, "worker %d: cpu %d out of range, not pinned", i, cpu);
        return;
    }
    CPU_SET(cpu, &set);
    int rc = pthread_setaffinity_np(t, sizeof set, &set);
    if (rc)
        log_msg(LOG_WARN, "worker %d: pinning to cpu %d failed: %s; running unpinned",
                i, cpu, strerror(rc));
}

workers *workers_start(queue *q, int n, const int *cpus, int n_cpus,
                       const workers_batching *batching, int io_threads, metrics *mx)
{
    workers *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->q = q;
    w->mx = mx;
    w->batching = *batching;
    if (w->batching.max_rows == 0)
        w->batching.max_rows = 1;
    /* Room for the jobs of one batch: at most one per row, and bounded by
     * the queue's capacity so the per-worker arrays stay small (a batch
     * that reaches it simply ends there). */
    w->max_items = w->batching.max_rows < queue_capacity(q) ? w->batching.max_rows
                                                             : queue_capacity(q);
    w->threads = calloc((size_t)n, sizeof(pthread_t));
    w->ws = calloc((size_t)n, sizeof(worker));
    if (!w->threads || !w->ws)
        goto fail;
    w->n_ws = n;
    for (int i = 0; i < n; i++) {
        w->ws[i].w = w;
        w->ws[i].items = calloc(w->max_items, sizeof(void *));
        w->ws[i].parts = calloc(w->max_items, sizeof(batch_part));
        if (!w->ws[i].items || !w->ws[i].parts)
            goto fail;
    }
    /* Without a CPU list, pin within the CPUs this process may use (a
     * container's cpuset, taskset), not to CPU 0..n-1 of the machine:
     * replicas on one host would otherwise all crowd onto the same cores. */
    int allowed[CPU_SETSIZE];
    int n_allowed = workers_allowed_cpus(allowed, CPU_SETSIZE);
    w->spin_iters = n_allowed >= n + io_threads ? WORKER_SPIN_ITERS : 0;
    log_msg(LOG_DEBUG, "workers: %d, I/O threads %d, CPUs %d: %s", n, io_threads, n_allowed,
            w->spin_iters ? "spin before sleeping" : "sleep at once (CPUs shared)");
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&w->threads[i], NULL, worker_main, &w->ws[i]);
        if (rc) {
            log_msg(LOG_ERROR, "worker %d: pthread_create: %s", i, strerror(rc));
            workers_stop(w);
            return NULL;
        }
        w->n = i + 1;
        char name[16]; /* the kernel's limit, NUL included */
        snprintf(name, sizeof name, "lnserve-w%d", i % 10000);
        pthread_setname_np(w->threads[i], name);
        if (n_cpus > 0)
            pin(w->threads[i], i, cpus[i % n_cpus]);
        else if (n_allowed > 0)
            pin(w->threads[i], i, allowed[i % n_allowed]);
    }
    return w;
fail:
    log_msg(LOG_ERROR, "workers: out of memory");
    w->n = 0;
    workers_stop(w);
    return NULL;
}

void workers_stop(workers *w)
{
    if (!w)
        return;
    queue_close(w->q);
    for (int i = 0; i < w->n; i++)
        pthread_join(w->threads[i], NULL);
    for (int i = 0; w->ws && i < w->n_ws; i++) {
        free(w->ws[i].items);
        free(w->ws[i].parts);
    }
    free(w->ws);
    free(w->threads);
    free(w);
}
