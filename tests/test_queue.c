/*
 * test_queue.c -- the MPMC queue: admission limits, FIFO on one thread,
 * ring wrap-around, and several producers and consumers moving tagged
 * items with checksums (run under TSan by .ci/run).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "../server/queue.h"

static void test_reserve_all_or_nothing(void **state)
{
    (void)state;
    queue *q = queue_create(5);
    assert_non_null(q);
    assert_int_equal(queue_capacity(q), 5);
    assert_int_equal(queue_reserve(q, 3), 0);
    assert_int_equal(queue_reserve(q, 3), -EAGAIN); /* only 2 left */
    assert_int_equal(queue_depth(q), 3);
    assert_int_equal(queue_reserve(q, 2), 0);
    assert_int_equal(queue_reserve(q, 1), -EAGAIN);
    queue_unreserve(q, 5);
    assert_int_equal(queue_depth(q), 0);
    assert_int_equal(queue_reserve(q, 6), -EAGAIN); /* over capacity */
    assert_int_equal(queue_reserve(q, (size_t)-1), -EAGAIN);
    queue_destroy(q);
}

static void test_fifo_and_wrap(void **state)
{
    (void)state;
    /* capacity 3 gives a ring of 4: many laps exercise the sequence
     * arithmetic. */
    queue *q = queue_create(3);
    assert_non_null(q);
    void *item;
    assert_int_equal(queue_try_pop(q, &item), -EAGAIN);
    uintptr_t next_in = 1, next_out = 1;
    for (int lap = 0; lap < 1000; lap++) {
        size_t k = (size_t)(lap % 3) + 1;
        assert_int_equal(queue_reserve(q, k), 0);
        for (size_t i = 0; i < k; i++)
            queue_push(q, (void *)next_in++, 1);
        for (size_t i = 0; i < k; i++) {
            assert_int_equal(queue_try_pop(q, &item), 0);
            assert_ptr_equal(item, (void *)next_out++);
        }
        assert_int_equal(queue_try_pop(q, &item), -EAGAIN);
        assert_int_equal(queue_depth(q), 0);
    }
    queue_destroy(q);
}

static void test_close_drains_first(void **state)
{
    (void)state;
    queue *q = queue_create(4);
    assert_int_equal(queue_reserve(q, 2), 0);
    queue_push(q, (void *)1, 1);
    queue_push(q, (void *)2, 1);
    queue_close(q);
    void *item;
    assert_int_equal(queue_pop_wait(q, &item, 10), 0);
    assert_ptr_equal(item, (void *)1);
    assert_int_equal(queue_pop_wait(q, &item, 0), 0);
    assert_ptr_equal(item, (void *)2);
    assert_int_equal(queue_pop_wait(q, &item, 10), -ESHUTDOWN);
    queue_destroy(q);
}

static void test_weights(void **state)
{
    (void)state;
    queue *q = queue_create(4);
    void *item;
    size_t w = 0;
    assert_int_equal(queue_try_pop_max(q, 10, &item, &w), -EAGAIN);
    assert_int_equal(queue_reserve(q, 3), 0);
    queue_push(q, (void *)1, 5);
    queue_push(q, (void *)2, 2);
    queue_push(q, (void *)3, 7);
    /* Too heavy: refused, and it stays first in line. */
    assert_int_equal(queue_try_pop_max(q, 4, &item, &w), -E2BIG);
    assert_int_equal(queue_depth(q), 3);
    assert_int_equal(queue_try_pop_max(q, 5, &item, &w), 0);
    assert_ptr_equal(item, (void *)1);
    assert_int_equal(w, 5);
    assert_int_equal(queue_try_pop_max(q, 2, &item, &w), 0);
    assert_ptr_equal(item, (void *)2);
    assert_int_equal(w, 2);
    /* The waiting pop refuses it too, at once, and times out when empty
     * (a deadline already past: nothing here depends on timing). */
    assert_int_equal(queue_pop_max_until(q, 6, 0, 4, &item, &w), -E2BIG);
    assert_int_equal(queue_pop_max_until(q, 7, 0, 4, &item, &w), 0);
    assert_ptr_equal(item, (void *)3);
    assert_int_equal(queue_pop_max_until(q, 7, 0, 4, &item, &w), -ETIMEDOUT);
    assert_int_equal(queue_pop_max_until(q, 7, 0, 0, &item, &w), -ETIMEDOUT);
    assert_int_equal(queue_depth(q), 0);
    /* Closed and empty: -ESHUTDOWN; closed with an item: it is handed out. */
    assert_int_equal(queue_reserve(q, 1), 0);
    queue_push(q, (void *)4, 1);
    queue_close(q);
    assert_int_equal(queue_pop_max_until(q, 1, UINT64_MAX, 0, &item, &w), 0);
    assert_ptr_equal(item, (void *)4);
    assert_int_equal(queue_pop_max_until(q, 1, UINT64_MAX, 0, &item, &w), -ESHUTDOWN);
    queue_destroy(q);
}

/* Stress: P producers push ITEMS tagged values each, in bursts reserved all
 * at once (retrying on -EAGAIN, as a front answering 503 would not);
 * C consumers pop with queue_pop_wait (spinning little, so they sleep and
 * are woken often). Every value arrives exactly once. */
enum { PRODUCERS = 4, CONSUMERS = 3, ITEMS = 20000, CAPACITY = 16 };

typedef struct stress {
    queue *q;
    int id;
    uint64_t sum;   /* consumer: sum of values seen */
    uint64_t count; /* consumer: items seen */
    unsigned char *seen; /* shared, indexed by value; written by one
                            consumer per value */
} stress;

static uintptr_t tag(int producer, int i)
{
    return (uintptr_t)producer * ITEMS + (uintptr_t)i + 1;
}

static void *producer_main(void *arg)
{
    stress *s = arg;
    int i = 0;
    while (i < ITEMS) {
        int burst = 1 + (i % 5);
        if (burst > ITEMS - i)
            burst = ITEMS - i;
        while (queue_reserve(s->q, (size_t)burst) != 0)
            sched_yield();
        for (int k = 0; k < burst; k++, i++)
            queue_push(s->q, (void *)tag(s->id, i), 1);
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    stress *s = arg;
    void *item;
    while (queue_pop_wait(s->q, &item, 16) == 0) {
        uintptr_t v = (uintptr_t)item;
        s->sum += v;
        s->count++;
        s->seen[v]++;
    }
    return NULL;
}

static void test_mpmc_checksums(void **state)
{
    (void)state;
    queue *q = queue_create(CAPACITY);
    assert_non_null(q);
    size_t n_values = (size_t)PRODUCERS * ITEMS + 1;
    unsigned char *seen = calloc(n_values, 1);
    assert_non_null(seen);

    pthread_t pt[PRODUCERS], ct[CONSUMERS];
    stress ps[PRODUCERS], cs[CONSUMERS];
    for (int c = 0; c < CONSUMERS; c++) {
        cs[c] = (stress){.q = q, .id = c, .seen = seen};
        assert_int_equal(pthread_create(&ct[c], NULL, consumer_main, &cs[c]), 0);
    }
    for (int p = 0; p < PRODUCERS; p++) {
        ps[p] = (stress){.q = q, .id = p};
        assert_int_equal(pthread_create(&pt[p], NULL, producer_main, &ps[p]), 0);
    }
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(pt[p], NULL);
    queue_close(q);
    uint64_t sum = 0, count = 0;
    for (int c = 0; c < CONSUMERS; c++) {
        pthread_join(ct[c], NULL);
        sum += cs[c].sum;
        count += cs[c].count;
    }

    uint64_t want = 0;
    for (int p = 0; p < PRODUCERS; p++)
        for (int i = 0; i < ITEMS; i++)
            want += tag(p, i);
    assert_int_equal(count, (uint64_t)PRODUCERS * ITEMS);
    assert_int_equal(sum, want);
    for (size_t v = 1; v < n_values; v++)
        if (seen[v] != 1)
            fail_msg("value %zu seen %d times", v, seen[v]);
    assert_int_equal(queue_depth(q), 0);
    free(seen);
    queue_destroy(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reserve_all_or_nothing),
        cmocka_unit_test(test_fifo_and_wrap),
        cmocka_unit_test(test_close_drains_first),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_mpmc_checksums),
    };
    return cmocka_run_group_tests_name("queue", tests, NULL, NULL);
}
