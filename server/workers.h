/*
 * workers.h -- kernel threads, pinned to CPUs, that pop jobs from the queue
 * and run them. A job is anything that starts with a `job` header; the
 * worker calls job->run(job) and from then on the job belongs to that
 * function (see http.c: the last job of a request resumes its connection).
 */
#pragma once

#include "queue.h"

typedef struct job job;
struct job {
    void (*run)(job *j); /* called on a worker thread, exactly once */
};

typedef struct workers workers;

/*
 * Starts n threads popping from q. Thread i is pinned to cpus[i % n_cpus];
 * with n_cpus == 0, to the i-th (mod count) of the CPUs this process may
 * run on. A failed pin is logged as a warning and the thread runs
 * unpinned. NULL on failure (logged).
 */
workers *workers_start(queue *q, int n, const int *cpus, int n_cpus);

/* The CPUs this process may run on (sched_getaffinity), ascending, at most
 * max of them; returns how many (0 if unknown). */
int workers_allowed_cpus(int *cpus, int max);

/* Closes the queue, lets the workers finish every queued job, joins them
 * and frees. */
void workers_stop(workers *w);
