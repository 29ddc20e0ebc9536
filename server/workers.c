#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Pops spin this many times (~ a few microseconds) before sleeping: a
 * request's jobs usually arrive back to back, and a futex wake costs more
 * than the spin. */
#define WORKER_SPIN_ITERS 2000

struct workers {
    queue *q;
    int n;
    pthread_t *threads;
};

static void *worker_main(void *arg)
{
    queue *q = arg;
    void *item;
    while (queue_pop_wait(q, &item, WORKER_SPIN_ITERS) == 0) {
        job *j = item;
        j->run(j);
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

workers *workers_start(queue *q, int n, const int *cpus, int n_cpus)
{
    workers *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->q = q;
    w->threads = calloc((size_t)n, sizeof(pthread_t));
    if (!w->threads) {
        free(w);
        return NULL;
    }
    /* Without a CPU list, pin within the CPUs this process may use (a
     * container's cpuset, taskset), not to CPU 0..n-1 of the machine:
     * replicas on one host would otherwise all crowd onto the same cores. */
    int allowed[CPU_SETSIZE];
    int n_allowed = workers_allowed_cpus(allowed, CPU_SETSIZE);
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&w->threads[i], NULL, worker_main, q);
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
}

void workers_stop(workers *w)
{
    if (!w)
        return;
    queue_close(w->q);
    for (int i = 0; i < w->n; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    free(w);
}
