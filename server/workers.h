/*
 * workers.h -- kernel threads, pinned to CPUs, that pop jobs from the queue
 * in dynamic batches (batch.h) and run them. A job is anything that starts
 * with a `job` header; the worker calls job->run(job) and from then on the
 * job belongs to that function (see http.c: the last job of a request
 * resumes its connection).
 *
 * Ownership: front (fills the header, pushes with queue_push(q, j,
 * j->n_rows)) -> queue -> the one worker that pops it, which reads the
 * header, then calls run and never touches the job again.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "metrics.h"
#include "queue.h"

/* What a job's run adds up for the batch statistics. */
typedef struct job_times {
    uint64_t infer_ns;  /* kernel time (Triton: compute_infer) */
    uint64_t output_ns; /* encoding done by this run, if it was the last job */
} job_times;

typedef struct job job;
struct job {
    /* Called on a worker thread, exactly once; adds to *t. */
    void (*run)(job *j, job_times *t);
    size_t n_rows;      /* rows it computes (>= 1): what max_batch_rows counts */
    int model;          /* metrics index of its model, or -1 */
    uint64_t queued_ns; /* metrics_now_ns() at the push */
    uint64_t input_ns;  /* decode time its execution is charged with (a
                           request's first job carries the request's) */
};

/* Dynamic batching (server.max_batch_rows, server.max_queue_delay_us). */
typedef struct workers_batching {
    size_t max_rows;
    uint64_t max_delay_us;
} workers_batching;

typedef struct workers workers;

/*
 * Starts n threads popping from q. Thread i is pinned to cpus[i % n_cpus];
 * with n_cpus == 0, to the i-th (mod count) of the CPUs this process may
 * run on. A failed pin is logged as a warning and the thread runs
 * unpinned. Each batch is recorded in mx (metrics_batch), per model.
 * io_threads: the other busy threads (HTTP I/O, the io_uring loop); the
 * workers spin briefly before sleeping only when the CPUs allowed hold
 * n + io_threads of them. NULL on failure (logged).
 */
workers *workers_start(queue *q, int n, const int *cpus, int n_cpus,
                       const workers_batching *batching, int io_threads, metrics *mx);

/* The CPUs this process may run on (sched_getaffinity), ascending, at most
 * max of them; returns how many (0 if unknown). */
int workers_allowed_cpus(int *cpus, int max);

/* Closes the queue, lets the workers finish every queued job, joins them
 * and frees. */
void workers_stop(workers *w);
