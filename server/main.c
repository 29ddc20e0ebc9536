/*
 * main.c -- lnserve: parse the config, pick the kernel, build the model
 * table, start the queue, the workers, the HTTP front and (when asked
 * for) the binary front, then wait for SIGTERM or SIGINT and drain both
 * together: stop accepting, answer every request in flight, exit 0.
 *
 * Signals are blocked in every thread (the mask is inherited) and taken
 * synchronously here with sigwait, so no handler runs inside a library.
 */
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../config/config.h"
#include "../core/ln.h"
#include "auth.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "models.h"
#include "queue.h"
#include "uring.h"
#include "workers.h"

/*
 * Request and response buffers are malloc'd per request (16 KiB and more
 * at N = 4096) and freed on another thread, so glibc kept trimming the
 * top of each arena and growing it again: every new buffer page-faulted
 * (perf, binary N=4096 pipelined: page faults ~12 % of the worker's
 * time), and buffers past the 128 KiB mmap threshold were mapped and
 * unmapped per request. With trimming at 64 MiB and buffers up to 32 MiB
 * (glibc's cap) from the arenas, freed pages are reused. lnctl bench, one
 * worker, binary-tcp, two runs against one before: N=4096 x1 54 -> 78-84 k
 * req/s, x8 56 -> 93-101 k; N=768 x8 271 -> 392-434 k. The cost: up to
 * 64 MiB per arena stays mapped after a burst. Best effort: an allocator
 * that refuses (a sanitizer's) changes nothing else.
 */
static void tune_malloc(void)
{
    (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
    (void)mallopt(M_TRIM_THRESHOLD, 64 << 20);
}

int main(int argc, char **argv)
{
    config c;
    char err[CONFIG_ERR_MAX];
    int rc = 1;
    model_table models = {0};
    auth keys = {0};
    queue *q = NULL;
    workers *w = NULL;
    http_server *h = NULL;
    uring_server *u = NULL;
    metrics *mx = NULL;

    tune_malloc();
    config_init(&c);
    if (config_parse_args(&c, argc, argv, err) != 0) {
        fprintf(stderr, "lnserve: %s\n", err);
        fprintf(stderr, "lnserve: try --help\n");
        config_fini(&c);
        return 2;
    }
    if (c.help) {
        config_usage(stdout, argv[0]);
        config_fini(&c);
        return 0;
    }
    if (c.print_only) {
        config_print(&c, stdout);
        config_fini(&c);
        return 0;
    }
    if (c.check_only) {
        printf("config OK: %zu model(s) besides the built-ins\n", c.n_models);
        config_fini(&c);
        return 0;
    }

    log_set_level((log_level)c.log_level); /* config.h keeps log.h's order */
    log_set_format(c.log_format);
    const char *why = NULL;
    if (ln_dispatch_init(&why) != 0)
        log_msg(LOG_WARN, "kernel: %s", why ? why : "dispatch failed");
    log_msg(LOG_INFO, "kernel: %s", ln_kernel_name());

    if (models_init(&models, &c, err) != 0) {
        fprintf(stderr, "lnserve: %s\n", err);
        goto out;
    }

    if (auth_init(&keys, c.api_key_file, getenv("LNSERVE_API_KEYS"), err, sizeof err) != 0) {
        fprintf(stderr, "lnserve: %s\n", err);
        goto out;
    }
    if (auth_enabled(&keys))
        log_msg(LOG_INFO, "auth: %zu API key(s); health endpoints %s", keys.n,
                c.auth_open_health ? "open" : "need a key too");

    int n_workers = c.workers;
    if (n_workers <= 0) { /* one per CPU we may run on */
        int allowed[CPU_SETSIZE];
        n_workers = workers_allowed_cpus(allowed, CPU_SETSIZE);
        if (n_workers <= 0) {
            long online = sysconf(_SC_NPROCESSORS_ONLN);
            n_workers = online > 0 ? (int)online : 1;
        }
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    q = queue_create(c.queue_capacity);
    if (!q) {
        fprintf(stderr, "lnserve: cannot create a queue of %zu jobs\n", c.queue_capacity);
        goto out;
    }
    /* One set of metrics, indexed like the model table, shared by both
     * fronts and the workers. */
    const char **names = calloc(models.n ? models.n : 1, sizeof(char *));
    for (size_t i = 0; names && i < models.n; i++)
        names[i] = models.models[i].name;
    mx = names ? metrics_create(names, models.n) : NULL;
    free(names);
    if (!mx) {
        fprintf(stderr, "lnserve: out of memory\n");
        goto out;
    }
    w = workers_start(q, n_workers, c.cpus, c.n_cpus,
                      &(workers_batching){.max_rows = c.max_batch_rows,
                                          .max_delay_us = (uint64_t)c.max_queue_delay_us},
                      (int)c.io_threads + (c.binary_port >= 0 || c.unix_socket[0] ? 1 : 0), mx);
    if (!w)
        goto out;
    h = http_start(&c, &models, q, &keys, n_workers, mx, err);
    if (!h) {
        fprintf(stderr, "lnserve: %s\n", err);
        goto out;
    }
    /* The binary front (io_uring); off unless asked for, and HTTP goes on
     * alone where io_uring is not allowed. */
    if (uring_start(&c, &models, q, n_workers, auth_enabled(&keys), mx, &u, err) != 0) {
        fprintf(stderr, "lnserve: %s\n", err);
        goto out;
    }
    log_msg(LOG_INFO, "models: %zu (layernorm, rmsnorm built in)", models.n);
    log_msg(LOG_INFO,
            "workers: %d, io threads: %d, queue capacity: %zu jobs, batches of up to %zu rows, "
            "max queue delay %d us",
            n_workers, c.io_threads, c.queue_capacity, c.max_batch_rows, c.max_queue_delay_us);
    /* Scripts and tests read the port from this line (port 0 = any free). */
    printf("lnserve listening on %s://%s:%d\n", c.tls_cert_file[0] ? "https" : "http",
           c.address, http_port(h));
    if (uring_port(u) >= 0)
        printf("lnserve binary listening on tcp://%s:%d\n", c.address, uring_port(u));
    if (u && c.unix_socket[0])
        printf("lnserve binary listening on unix:%s\n", c.unix_socket);
    fflush(stdout);

    int sig = 0;
    sigdelset(&sigs, SIGPIPE);
    sigwait(&sigs, &sig);
    log_msg(LOG_INFO, "%s: draining (timeout %d s)", strsignal(sig), c.drain_timeout_s);
    uring_drain(u, c.drain_timeout_s); /* returns at once; drains beside HTTP */
    int left = http_drain(h, c.drain_timeout_s);
    if (left)
        log_msg(LOG_WARN, "drain: %d request(s) still receiving after %d s; closing them",
                left, c.drain_timeout_s);
    int cut = uring_stop(u);
    u = NULL;
    if (cut)
        log_msg(LOG_WARN, "drain: %d binary connection(s) still open after %d s; closed them",
                cut, c.drain_timeout_s);
    rc = 0;

out:
    uring_stop(u); /* before the workers: its requests run on them */
    http_stop(h);
    workers_stop(w);
    queue_destroy(q);
    metrics_destroy(mx); /* after everything that counts */
    models_fini(&models);
    auth_fini(&keys);
    config_fini(&c);
    if (rc == 0)
        log_msg(LOG_INFO, "stopped");
    return rc;
}
