/* test_reconcile_queue.c -- the pod work queue: deduplication, one worker
 * per key, dirty re-queue, per-key backoff growth and reset, the bound;
 * and the loop driver: worker limit, pause/resume, asynchronous results. */
#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/reconcile.h"

START_TEST(dedup_and_fifo)
{
    workq *q = workq_new(100, 0.005, 30);
    ck_assert_int_eq(workq_add(q, "ns/a"), 0);
    ck_assert_int_eq(workq_add(q, "ns/b"), 0);
    ck_assert_int_eq(workq_add(q, "ns/a"), 0);
    ck_assert_uint_eq(workq_len(q), 2);
    ck_assert_uint_eq(workq_ready(q), 2);
    ck_assert_str_eq(workq_get(q, 0), "ns/a");
    ck_assert_str_eq(workq_get(q, 0), "ns/b");
    ck_assert_ptr_null(workq_get(q, 0));
    ck_assert_uint_eq(workq_processing(q), 2);
    ck_assert(workq_done(q, "ns/a", false, 0));
    ck_assert(workq_done(q, "ns/b", false, 0));
    ck_assert(!workq_done(q, "ns/b", false, 0));
    ck_assert_uint_eq(workq_len(q), 0);
    workq_free(q);
}
END_TEST

START_TEST(one_worker_per_key_and_dirty)
{
    workq *q = workq_new(100, 0.005, 30);
    workq_add(q, "k");
    ck_assert_str_eq(workq_get(q, 0), "k");
    /* Added while processing: not handed out twice, but again once done. */
    workq_add(q, "k");
    workq_add(q, "k");
    ck_assert_ptr_null(workq_get(q, 0));
    ck_assert(workq_done(q, "k", false, 0));
    ck_assert_uint_eq(workq_ready(q), 1);
    ck_assert_str_eq(workq_get(q, 0), "k");
    ck_assert(workq_done(q, "k", false, 0));
    ck_assert_uint_eq(workq_len(q), 0);
    workq_free(q);
}
END_TEST

START_TEST(backoff_grows_caps_and_resets)
{
    workq *q = workq_new(100, 0.005, 1.0);
    workq_add(q, "k");
    double now = 0, d = 0.005;
    for (int i = 0; i < 12; i++) {
        ck_assert_str_eq(workq_get(q, now), "k");
        workq_done(q, "k", true, now);
        double due = workq_next_due(q);
        /* Jitter draws from [d/2, d]; the cap holds. */
        ck_assert_msg(due - now >= d / 2 - 1e-12 && due - now <= d + 1e-12,
                      "retry %d: delay %g, expected in [%g, %g]", i, due - now, d / 2, d);
        ck_assert_ptr_null(workq_get(q, due - 1e-6));
        now = due;
        d = d * 2 > 1.0 ? 1.0 : d * 2;
    }
    /* Success forgets the key and its backoff. */
    ck_assert_str_eq(workq_get(q, now), "k");
    workq_done(q, "k", false, now);
    ck_assert_uint_eq(workq_len(q), 0);
    workq_add(q, "k");
    ck_assert_str_eq(workq_get(q, now), "k");
    workq_done(q, "k", true, now);
    ck_assert(workq_next_due(q) - now <= 0.005 + 1e-12);
    workq_free(q);
}
END_TEST

START_TEST(add_while_waiting_is_immediate)
{
    workq *q = workq_new(100, 10, 10);
    workq_add(q, "k");
    workq_get(q, 0);
    workq_done(q, "k", true, 0);
    ck_assert_ptr_null(workq_get(q, 1));
    /* New information about the pod: hand it out now, backoff kept. */
    workq_add(q, "k");
    ck_assert_str_eq(workq_get(q, 1), "k");
    /* Failed again while it was re-added meanwhile: at once. */
    workq_add(q, "k");
    workq_done(q, "k", true, 1);
    ck_assert_str_eq(workq_get(q, 1), "k");
    workq_done(q, "k", false, 1);
    workq_free(q);
}
END_TEST

START_TEST(waiting_sorted_by_due)
{
    workq *q = workq_new(100, 1, 1);
    const char *keys[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        workq_add(q, keys[i]);
        workq_get(q, 0);
    }
    /* Failures at times 3, 1, 2: handed out in due order. */
    workq_done(q, "a", true, 3);
    workq_done(q, "b", true, 1);
    workq_done(q, "c", true, 2);
    ck_assert_str_eq(workq_get(q, 10), "b");
    ck_assert_str_eq(workq_get(q, 10), "c");
    ck_assert_str_eq(workq_get(q, 10), "a");
    workq_free(q);
}
END_TEST

START_TEST(bounded)
{
    workq *q = workq_new(3, 0.005, 1);
    ck_assert_int_eq(workq_add(q, "a"), 0);
    ck_assert_int_eq(workq_add(q, "b"), 0);
    ck_assert_int_eq(workq_add(q, "c"), 0);
    ck_assert_int_eq(workq_add(q, "d"), -1);
    ck_assert_int_eq(workq_add(q, "a"), 0); /* known keys still fine */
    ck_assert_uint_eq(workq_len(q), 3);
    workq_free(q);
}
END_TEST

START_TEST(many_keys_grow_table)
{
    workq *q = workq_new(100000, 0.005, 1);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "ns/pod-%d", i);
        ck_assert_int_eq(workq_add(q, key), 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "ns/pod-%d", i);
        workq_add(q, key);
    }
    ck_assert_uint_eq(workq_len(q), 5000);
    for (int i = 0; i < 5000; i++) {
        const char *k = workq_get(q, 0);
        snprintf(key, sizeof key, "ns/pod-%d", i);
        ck_assert_str_eq(k, key);
        workq_done(q, key, false, 0);
    }
    ck_assert_uint_eq(workq_len(q), 0);
    workq_free(q);
}
END_TEST

/* ---- the driver ------------------------------------------------------------ */

typedef struct run {
    reconciler *r;
    struct ev_loop *loop;
    int calls, max_busy, busy, fail_first;
    char pending[16][16];
    int n_pending;
    ev_timer finish, stop;
} run;

static enum reconcile_result process(void *ud, const char *key)
{
    run *t = ud;
    t->calls++;
    if (t->fail_first > 0) {
        t->fail_first--;
        return RECONCILE_RETRY;
    }
    if (key[0] == 's')
        return RECONCILE_DONE;
    /* Asynchronous: finish on a timer, a little later. */
    snprintf(t->pending[t->n_pending++], sizeof t->pending[0], "%s", key);
    t->busy++;
    if (t->busy > t->max_busy)
        t->max_busy = t->busy;
    if (!ev_is_active(&t->finish)) {
        ev_timer_set(&t->finish, 0.002, 0.);
        ev_timer_start(t->loop, &t->finish);
    }
    return RECONCILE_ASYNC;
}

static void finish_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    run *t = w->data;
    int n = t->n_pending;
    t->n_pending = 0;
    for (int i = 0; i < n; i++) {
        t->busy--;
        reconciler_done(t->r, t->pending[i], false);
    }
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void run_init(run *t, unsigned workers)
{
    memset(t, 0, sizeof *t);
    t->loop = ev_loop_new(EVFLAG_AUTO);
    reconciler_config cfg = {.loop = t->loop, .workers = workers, .process = process, .ud = t};
    t->r = reconciler_new(&cfg);
    ck_assert_ptr_nonnull(t->r);
    ev_init(&t->finish, finish_cb);
    t->finish.data = t;
    ev_init(&t->stop, stop_cb);
}

static void run_for(run *t, double s)
{
    ev_timer_set(&t->stop, s, 0.);
    ev_timer_start(t->loop, &t->stop);
    ev_run(t->loop, 0);
}

/* Run the loop until cond holds, for 10 s at most. The work takes
 * milliseconds, but a fixed run of a few hundred ms can end first on a
 * loaded machine (or under ASan): the process may not get the CPU for that
 * long. Checks that nothing happens (paused) still run for a fixed time. */
#define RUN_UNTIL(t, cond)                                                  \
    do {                                                                    \
        double end_ = ev_time() + 10;                                       \
        while (!(cond) && ev_time() < end_)                                 \
            run_for((t), 0.01);                                             \
    } while (0)

static void run_free(run *t)
{
    ev_timer_stop(t->loop, &t->finish);
    ev_timer_stop(t->loop, &t->stop);
    reconciler_free(t->r);
    ev_loop_destroy(t->loop);
}

START_TEST(driver_paused_then_bounded_workers)
{
    run t;
    run_init(&t, 3);
    char key[16];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "a%d", i);
        reconciler_add(t.r, key);
    }
    /* Starts paused: nothing is handed out, the depth shows the backlog. */
    run_for(&t, 0.02);
    ck_assert_int_eq(t.calls, 0);
    ck_assert_uint_eq(reconciler_depth(t.r), 10);
    reconciler_resume(t.r);
    RUN_UNTIL(&t, t.calls >= 10 && t.busy == 0 && reconciler_depth(t.r) == 0);
    ck_assert_int_eq(t.calls, 10);
    ck_assert_int_eq(t.max_busy, 3);
    ck_assert_uint_eq(reconciler_depth(t.r), 0);
    run_free(&t);
}
END_TEST

START_TEST(driver_retries_with_backoff)
{
    run t;
    run_init(&t, 2);
    t.fail_first = 4;
    reconciler_resume(t.r);
    reconciler_add(t.r, "sync");
    /* 4 failures (5+10+20+40 ms at most) then a success, and no more. */
    RUN_UNTIL(&t, t.calls >= 5 && reconciler_depth(t.r) == 0);
    ck_assert_int_eq(t.calls, 5);
    ck_assert_uint_eq(reconciler_depth(t.r), 0);
    /* Paused: retries wait too. */
    t.fail_first = 1000;
    reconciler_add(t.r, "sync");
    run_for(&t, 0.01);
    reconciler_pause(t.r);
    int calls = t.calls;
    run_for(&t, 0.1);
    ck_assert_int_eq(t.calls, calls);
    ck_assert_uint_eq(reconciler_depth(t.r), 1);
    t.fail_first = 0;
    reconciler_resume(t.r);
    RUN_UNTIL(&t, reconciler_depth(t.r) == 0);
    ck_assert_uint_eq(reconciler_depth(t.r), 0);
    run_free(&t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("reconcile_queue");
    /* check's default limit is 4 s a test; many_keys_grow_table and the
     * driver (up to 10 s of RUN_UNTIL) can need more on a loaded machine.
     * Only a hang should reach the limit. */
    TCase *tc = tcase_create("workq");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, dedup_and_fifo);
    tcase_add_test(tc, one_worker_per_key_and_dirty);
    tcase_add_test(tc, backoff_grows_caps_and_resets);
    tcase_add_test(tc, add_while_waiting_is_immediate);
    tcase_add_test(tc, waiting_sorted_by_due);
    tcase_add_test(tc, bounded);
    tcase_add_test(tc, many_keys_grow_table);
    suite_add_tcase(s, tc);
    TCase *td = tcase_create("driver");
    tcase_set_timeout(td, 30);
    tcase_add_test(td, driver_paused_then_bounded_workers);
    tcase_add_test(td, driver_retries_with_backoff);
    suite_add_tcase(s, td);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
