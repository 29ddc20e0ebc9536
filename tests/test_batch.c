/*
 * test_batch.c -- the dynamic batching policy (server/batch.h): with fake
 * jobs and a fake clock, the row cap, the first job that does not fit
 * staying first in line, delay 0 never waiting, and the delay bound (no
 * wait ever reaches past the first job's arrival + max_delay); then over
 * the real queue with producer and consumer threads, every job in exactly
 * one batch and no batch over the cap (run under TSan by .ci/run). No test
 * here measures time: the clock is the fake one, or not asserted on.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <cmocka.h>

#include "../server/batch.h"
#include "../server/queue.h"

/* ---- a fake source: jobs that arrive at given times on a fake clock ---- */

typedef struct fake_job {
    size_t rows;
    uint64_t arrival_ns;
} fake_job;

typedef struct fake {
    const fake_job *jobs;
    size_t n, next; /* jobs[next] is the oldest not yet taken */
    uint64_t now;
    int closed;            /* no more jobs will come once these are taken */
    unsigned waits;        /* pop_until calls */
    uint64_t max_deadline; /* the latest deadline pop_until was given */
} fake;

static int fake_try_pop(void *ctx, size_t max_rows, void **item, size_t *rows)
{
    fake *f = ctx;
    if (f->next == f->n || f->jobs[f->next].arrival_ns > f->now)
        return -EAGAIN;
    if (f->jobs[f->next].rows > max_rows)
        return -E2BIG;
    *item = (void *)&f->jobs[f->next];
    *rows = f->jobs[f->next].rows;
    f->next++;
    return 0;
}

static int fake_pop_until(void *ctx, size_t max_rows, uint64_t deadline_ns, void **item,
                          size_t *rows)
{
    fake *f = ctx;
    f->waits++;
    if (deadline_ns > f->max_deadline)
        f->max_deadline = deadline_ns;
    if (f->next < f->n && f->jobs[f->next].arrival_ns <= deadline_ns) {
        if (f->jobs[f->next].arrival_ns > f->now)
            f->now = f->jobs[f->next].arrival_ns; /* sleeps until it arrives */
        return fake_try_pop(ctx, max_rows, item, rows);
    }
    if (f->next == f->n && f->closed)
        return -ESHUTDOWN;
    f->now = deadline_ns;
    return -ETIMEDOUT;
}

static uint64_t fake_now(void *ctx)
{
    return ((fake *)ctx)->now;
}

/* Takes the first job as a worker does (unconditionally), then gathers. */
static batch_result run(fake *f, size_t max_rows, uint64_t delay_ns, size_t max_items, void **items)
{
    batch_src src = {
        .ctx = f, .try_pop = fake_try_pop, .pop_until = fake_pop_until, .now_ns = fake_now};
    batch_policy p = {.max_rows = max_rows, .max_delay_ns = delay_ns, .max_items = max_items};
    assert_true(f->next < f->n && f->jobs[f->next].arrival_ns <= f->now);
    const fake_job *first = &f->jobs[f->next++];
    items[0] = (void *)first;
    return batch_gather(&src, &p, items, first->rows, first->arrival_ns);
}

static void test_delay0_takes_what_is_queued(void **state)
{
    (void)state;
    /* Three queued now, one a microsecond later. */
    const fake_job jobs[] = {{1, 0}, {2, 10}, {1, 20}, {1, 1020}};
    fake f = {.jobs = jobs, .n = 4, .now = 1000};
    void *items[8];
    batch_result b = run(&f, 64, 0, 8, items);
    assert_int_equal(b.n_items, 3);
    assert_int_equal(b.rows, 4);
    assert_int_equal(b.waited_ns, 0);
    assert_int_equal(f.waits, 0); /* never blocked for more */
    assert_int_equal(f.now, 1000);
    assert_ptr_equal(items[2], &jobs[2]);
    assert_int_equal(f.next, 3); /* the late one is still queued */
}

static void test_row_cap(void **state)
{
    (void)state;
    void *items[16];
    /* 3 + 3 fit in 8, the third 3 does not: it stays first in line, and
     * the batch does not reach past it for the 2 behind it. */
    const fake_job a[] = {{3, 0}, {3, 0}, {3, 0}, {2, 0}};
    fake f = {.jobs = a, .n = 4, .now = 5};
    batch_result b = run(&f, 8, 0, 16, items);
    assert_int_equal(b.n_items, 2);
    assert_int_equal(b.rows, 6);
    assert_int_equal(f.next, 2);
    /* Exactly the cap. */
    const fake_job c[] = {{2, 0}, {2, 0}, {2, 0}, {2, 0}, {1, 0}};
    f = (fake){.jobs = c, .n = 5, .now = 5};
    b = run(&f, 8, 1000, 16, items);
    assert_int_equal(b.n_items, 4);
    assert_int_equal(b.rows, 8);
    assert_int_equal(f.waits, 0); /* full: no reason to wait */
    /* A first job over the cap runs alone; nothing else is taken. */
    const fake_job d[] = {{20, 0}, {1, 0}};
    f = (fake){.jobs = d, .n = 2, .now = 5};
    b = run(&f, 8, 1000, 16, items);
    assert_int_equal(b.n_items, 1);
    assert_int_equal(b.rows, 20);
    assert_int_equal(f.waits, 0);
    assert_int_equal(f.next, 1);
    /* max_batch_rows 1: one job per batch, as without batching. */
    const fake_job e[] = {{1, 0}, {1, 0}};
    f = (fake){.jobs = e, .n = 2, .now = 5};
    b = run(&f, 1, 1000, 1, items);
    assert_int_equal(b.n_items, 1);
    assert_int_equal(f.waits, 0);
    /* The items[] room caps it too. */
    const fake_job g[] = {{1, 0}, {1, 0}, {1, 0}, {1, 0}};
    f = (fake){.jobs = g, .n = 4, .now = 5};
    b = run(&f, 64, 0, 3, items);
    assert_int_equal(b.n_items, 3);
}

static void test_delay_bound(void **state)
{
    (void)state;
    void *items[16];
    const uint64_t delay = 100000; /* 100 us */
    /* First job queued at t = 1 ms, taken at 1.05 ms: the batch may wait
     * until 1.1 ms, no later. One more arrives in time, one too late. */
    const fake_job a[] = {{1, 1000000}, {1, 1080000}, {1, 1200000}};
    fake f = {.jobs = a, .n = 3, .now = 1050000};
    batch_result b = run(&f, 64, delay, 16, items);
    assert_int_equal(b.n_items, 2);
    assert_true(f.waits >= 1);
    assert_true(f.max_deadline <= 1000000 + delay); /* never waits past the bound */
    assert_true(f.now <= 1000000 + delay);
    assert_int_equal(b.waited_ns, f.now - 1050000);
    assert_int_equal(f.next, 2);
    /* A first job that already waited longer than the delay: no waiting. */
    const fake_job c[] = {{1, 0}, {1, 600000}};
    f = (fake){.jobs = c, .n = 2, .now = 500000};
    b = run(&f, 64, delay, 16, items);
    assert_int_equal(b.n_items, 1);
    assert_int_equal(f.waits, 0);
    assert_int_equal(b.waited_ns, 0);
    /* Jobs that keep arriving within the bound are all taken, until the
     * cap; none after the deadline. */
    fake_job many[12];
    for (size_t i = 0; i < 12; i++)
        many[i] = (fake_job){1, 2000000 + i * 15000}; /* every 15 us */
    f = (fake){.jobs = many, .n = 12, .now = 2000000};
    b = run(&f, 64, delay, 16, items);
    assert_int_equal(b.n_items, 7); /* arrivals at 0..90 us */
    assert_true(f.max_deadline <= 2000000 + delay);
    assert_true(f.now <= 2000000 + delay);
    /* The same under a row cap of 4: full before the deadline. */
    f = (fake){.jobs = many, .n = 12, .now = 2000000};
    b = run(&f, 4, delay, 16, items);
    assert_int_equal(b.n_items, 4);
    assert_int_equal(b.rows, 4);
}

static void test_shutdown_ends_batch(void **state)
{
    (void)state;
    void *items[4];
    const fake_job a[] = {{1, 0}, {1, 0}};
    fake f = {.jobs = a, .n = 2, .now = 10, .closed = 1};
    batch_result b = run(&f, 64, 1000000, 4, items);
    assert_int_equal(b.n_items, 2); /* what is there is still taken */
    assert_true(f.now < 1000000);   /* and the closed source is not waited on */
}

/* ---- over the real queue, with threads ----------------------------------- */

enum { PRODUCERS = 3, CONSUMERS = 2, JOBS = 6000, CAPACITY = 32, MAX_ROWS = 8 };

typedef struct shared {
    queue *q;
    unsigned char *seen; /* [PRODUCERS * JOBS + 1], by job id */
} shared;

typedef struct consumer {
    shared *sh;
    uint64_t delay_ns;
    size_t batches, jobs, over_cap;
} consumer;

static uint64_t mono_ns(void *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int q_try_pop(void *ctx, size_t max_rows, void **item, size_t *rows)
{
    return queue_try_pop_max(ctx, max_rows, item, rows);
}

static int q_pop_until(void *ctx, size_t max_rows, uint64_t deadline_ns, void **item, size_t *rows)
{
    return queue_pop_max_until(ctx, max_rows, deadline_ns, 16, item, rows);
}

/* Job ids encode their rows: id % 11 + 1 rows, so some exceed MAX_ROWS. */
static size_t rows_of(uintptr_t id)
{
    return id % 11 + 1;
}

static void *consumer_main(void *arg)
{
    consumer *c = arg;
    queue *q = c->sh->q;
    batch_src src = {.ctx = q, .try_pop = q_try_pop, .pop_until = q_pop_until, .now_ns = mono_ns};
    batch_policy p = {.max_rows = MAX_ROWS, .max_delay_ns = c->delay_ns, .max_items = MAX_ROWS};
    void *items[MAX_ROWS];
    while (queue_pop_wait(q, &items[0], 16) == 0) {
        uintptr_t first = (uintptr_t)items[0];
        batch_result b = batch_gather(&src, &p, items, rows_of(first), mono_ns(NULL));
        size_t rows = 0;
        for (size_t i = 0; i < b.n_items; i++) {
            uintptr_t id = (uintptr_t)items[i];
            rows += rows_of(id);
            c->sh->seen[id]++;
        }
        assert_int_equal(rows, b.rows);
        if (b.n_items > 1 && rows > MAX_ROWS)
            c->over_cap++;
        c->batches++;
        c->jobs += b.n_items;
    }
    return NULL;
}

typedef struct producer {
    shared *sh;
    int id;
} producer;

static void *producer_main(void *arg)
{
    producer *p = arg;
    for (int i = 0; i < JOBS; i++) {
        uintptr_t id = (uintptr_t)p->id * JOBS + (uintptr_t)i + 1;
        while (queue_reserve(p->sh->q, 1) != 0)
            sched_yield();
        queue_push(p->sh->q, (void *)id, rows_of(id));
    }
    return NULL;
}

static void threaded(uint64_t delay_ns)
{
    shared sh = {.q = queue_create(CAPACITY)};
    assert_non_null(sh.q);
    sh.seen = calloc((size_t)PRODUCERS * JOBS + 1, 1);
    assert_non_null(sh.seen);
    pthread_t ct[CONSUMERS], pt[PRODUCERS];
    consumer cs[CONSUMERS];
    producer ps[PRODUCERS];
    for (int i = 0; i < CONSUMERS; i++) {
        cs[i] = (consumer){.sh = &sh, .delay_ns = delay_ns};
        assert_int_equal(pthread_create(&ct[i], NULL, consumer_main, &cs[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        ps[i] = (producer){.sh = &sh, .id = i};
        assert_int_equal(pthread_create(&pt[i], NULL, producer_main, &ps[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++)
        pthread_join(pt[i], NULL);
    queue_close(sh.q); /* the consumers drain what is left, then stop */
    size_t jobs = 0;
    for (int i = 0; i < CONSUMERS; i++) {
        pthread_join(ct[i], NULL);
        jobs += cs[i].jobs;
        assert_int_equal(cs[i].over_cap, 0);
    }
    assert_int_equal(jobs, (size_t)PRODUCERS * JOBS);
    for (size_t id = 1; id <= (size_t)PRODUCERS * JOBS; id++)
        if (sh.seen[id] != 1)
            fail_msg("job %zu seen %d times", id, sh.seen[id]);
    assert_int_equal(queue_depth(sh.q), 0);
    free(sh.seen);
    queue_destroy(sh.q);
}

static void test_threaded_no_delay(void **state)
{
    (void)state;
    threaded(0);
}

static void test_threaded_with_delay(void **state)
{
    (void)state;
    threaded(50000); /* 50 us */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_delay0_takes_what_is_queued),
        cmocka_unit_test(test_row_cap),
        cmocka_unit_test(test_delay_bound),
        cmocka_unit_test(test_shutdown_ends_batch),
        cmocka_unit_test(test_threaded_no_delay),
        cmocka_unit_test(test_threaded_with_delay),
    };
    return cmocka_run_group_tests_name("batch", tests, NULL, NULL);
}
