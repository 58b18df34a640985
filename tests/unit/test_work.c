/* test_work.c -- vk_pool and vk_mailbox against a real libev loop. */
#include <check.h>
#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "work.h"

static struct ev_loop *loop;
static pthread_t loop_thread;
static ev_timer guard;     /* ends a loop that would otherwise hang */
static bool guard_fired;

static void guard_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)w;
    (void)revents;
    guard_fired = true;
    ev_break(l, EVBREAK_ALL);
}

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    loop_thread = pthread_self();
    guard_fired = false;
    ev_timer_init(&guard, guard_cb, 5.0, 0.);
    ev_timer_start(loop, &guard);
}

static void teardown(void)
{
    ev_timer_stop(loop, &guard);
    ev_loop_destroy(loop);
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- pool ------------------------------------------------------------- */

struct job_state {
    atomic_int worked;
    int done;               /* loop thread only */
    int want;               /* ev_break when done reaches it */
    atomic_bool work_off_loop;
    bool done_on_loop;
    int sleep_ms;
};

static void job_work(void *arg)
{
    struct job_state *js = arg;
    if (pthread_equal(pthread_self(), loop_thread))
        atomic_store(&js->work_off_loop, false);
    if (js->sleep_ms > 0)
        sleep_ms(js->sleep_ms);
    atomic_fetch_add(&js->worked, 1);
}

static void job_done(void *arg)
{
    struct job_state *js = arg;
    if (!pthread_equal(pthread_self(), loop_thread))
        js->done_on_loop = false;
    if (++js->done == js->want)
        ev_break(loop, EVBREAK_ALL);
}

static void init_state(struct job_state *js, int want)
{
    atomic_init(&js->worked, 0);
    atomic_init(&js->work_off_loop, true);
    js->done = 0;
    js->want = want;
    js->done_on_loop = true;
    js->sleep_ms = 0;
}

START_TEST(pool_runs_jobs_and_reports_on_loop)
{
    struct job_state js;
    init_state(&js, 20);
    vk_pool *p = vk_pool_new(loop, 3, 32);
    ck_assert_ptr_nonnull(p);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(vk_pool_submit(p, job_work, job_done, &js), 0);
    ev_run(loop, 0);
    ck_assert(!guard_fired);
    ck_assert_int_eq(atomic_load(&js.worked), 20);
    ck_assert_int_eq(js.done, 20);
    ck_assert(atomic_load(&js.work_off_loop));
    ck_assert(js.done_on_loop);
    ck_assert_int_eq(vk_pool_pending(p), 0);
    vk_pool_free(p);
}
END_TEST

/* A job that holds its worker until the test opens the gate. */
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;
    bool entered;
};

#define GATE_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false}

static void gate_work(void *arg)
{
    struct gate *g = arg;
    pthread_mutex_lock(&g->lock);
    g->entered = true;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_wait_entered(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->entered)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(struct gate *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

START_TEST(pool_queue_full)
{
    struct gate g = GATE_INIT;
    struct job_state js;
    init_state(&js, 2);
    vk_pool *p = vk_pool_new(loop, 1, 2);
    ck_assert_int_eq(vk_pool_submit(p, gate_work, NULL, &g), 0);
    gate_wait_entered(&g);
    /* The only worker is busy: two may wait, the third is refused. */
    ck_assert_int_eq(vk_pool_submit(p, job_work, job_done, &js), 0);
    ck_assert_int_eq(vk_pool_submit(p, job_work, job_done, &js), 0);
    ck_assert_int_eq(vk_pool_submit(p, job_work, job_done, &js), -1);
    ck_assert_int_eq(vk_pool_pending(p), 3);
    gate_open(&g);
    ev_run(loop, 0);
    ck_assert(!guard_fired);
    ck_assert_int_eq(js.done, 2);
    /* Room again once the queue drained. */
    js.want = 3;
    ck_assert_int_eq(vk_pool_submit(p, job_work, job_done, &js), 0);
    ev_run(loop, 0);
    ck_assert(!guard_fired);
    ck_assert_int_eq(js.done, 3);
    vk_pool_free(p);
}
END_TEST

static vk_pool *resubmit_pool;
static int resubmit_rc = 1;

static void done_resubmits(void *arg)
{
    job_done(arg);
    resubmit_rc = vk_pool_submit(resubmit_pool, job_work, job_done, arg);
}

START_TEST(pool_free_waits_for_jobs)
{
    struct job_state js;
    init_state(&js, -1);
    js.sleep_ms = 30;
    vk_pool *p = vk_pool_new(loop, 2, 16);
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(vk_pool_submit(p, job_work, job_done, &js), 0);
    ck_assert_int_eq(vk_pool_submit(p, job_work, done_resubmits, &js), 0);
    resubmit_pool = p;
    ck_assert_int_gt(vk_pool_pending(p), 0);
    /* The loop never runs: free itself must wait and deliver. */
    vk_pool_free(p);
    ck_assert_int_eq(atomic_load(&js.worked), 9);
    ck_assert_int_eq(js.done, 9);
    ck_assert(js.done_on_loop);
    /* A done callback cannot queue more work into a pool being freed. */
    ck_assert_int_eq(resubmit_rc, -1);
}
END_TEST

START_TEST(pool_does_not_keep_loop_alive)
{
    vk_pool *p = vk_pool_new(loop, 1, 1);
    ev_timer_stop(loop, &guard);
    /* Nothing else is active, so ev_run returns at once. */
    ev_run(loop, 0);
    ev_timer_start(loop, &guard);
    vk_pool_free(p);
}
END_TEST

START_TEST(pool_rejects_bad_sizes)
{
    ck_assert_ptr_null(vk_pool_new(loop, 0, 1));
    ck_assert_ptr_null(vk_pool_new(loop, 1, 0));
}
END_TEST

/* ---- mailbox ------------------------------------------------------------ */

struct letters {
    int got;
    int want;
    bool on_loop;
};

static vk_mailbox *mbox;

static void letter_cb(void *arg)
{
    struct letters *ls = arg;
    if (!pthread_equal(pthread_self(), loop_thread))
        ls->on_loop = false;
    if (++ls->got == ls->want)
        ev_break(loop, EVBREAK_ALL);
}

static void *poster_main(void *arg)
{
    for (int i = 0; i < 50; i++) {
        while (vk_post(mbox, letter_cb, arg) != 0)
            sleep_ms(1); /* full: the loop is draining it */
    }
    return NULL;
}

START_TEST(mailbox_delivers_from_threads)
{
    struct letters ls = {0, 200, true};
    mbox = vk_mailbox_new(loop, 16);
    ck_assert_ptr_nonnull(mbox);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, poster_main, &ls);
    ev_run(loop, 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert(!guard_fired);
    ck_assert_int_eq(ls.got, 200);
    ck_assert(ls.on_loop);
    vk_mailbox_free(mbox);
}
END_TEST

static int seen[8];
static int nseen;

static void record_cb(void *arg)
{
    seen[nseen++] = (int)(long)arg;
}

START_TEST(mailbox_full_and_free_delivers_rest)
{
    nseen = 0;
    vk_mailbox *m = vk_mailbox_new(loop, 3);
    ck_assert_int_eq(vk_post(m, record_cb, (void *)1L), 0);
    ck_assert_int_eq(vk_post(m, record_cb, (void *)2L), 0);
    ck_assert_int_eq(vk_post(m, record_cb, (void *)3L), 0);
    ck_assert_int_eq(vk_post(m, record_cb, (void *)4L), -1);
    ck_assert_int_eq(nseen, 0);
    vk_mailbox_free(m);
    ck_assert_int_eq(nseen, 3);
    ck_assert_int_eq(seen[0], 1); /* in order */
    ck_assert_int_eq(seen[1], 2);
    ck_assert_int_eq(seen[2], 3);
}
END_TEST

static vk_mailbox *chain_box;
static int chain_left;

/* A letter that posts the next one: delivered one loop iteration apart. */
static void chain_cb(void *arg)
{
    (void)arg;
    if (--chain_left == 0)
        ev_break(loop, EVBREAK_ALL);
    else
        ck_assert_int_eq(vk_post(chain_box, chain_cb, NULL), 0);
}

START_TEST(mailbox_letter_posts_letter)
{
    chain_box = vk_mailbox_new(loop, 1);
    chain_left = 10;
    ck_assert_int_eq(vk_post(chain_box, chain_cb, NULL), 0);
    ev_run(loop, 0);
    ck_assert(!guard_fired);
    ck_assert_int_eq(chain_left, 0);
    vk_mailbox_free(chain_box);
}
END_TEST

static Suite *work_suite(void)
{
    Suite *s = suite_create("work");
    TCase *tc = tcase_create("pool");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, pool_runs_jobs_and_reports_on_loop);
    tcase_add_test(tc, pool_queue_full);
    tcase_add_test(tc, pool_free_waits_for_jobs);
    tcase_add_test(tc, pool_does_not_keep_loop_alive);
    tcase_add_test(tc, pool_rejects_bad_sizes);
    suite_add_tcase(s, tc);

    tc = tcase_create("mailbox");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, mailbox_delivers_from_threads);
    tcase_add_test(tc, mailbox_full_and_free_delivers_rest);
    tcase_add_test(tc, mailbox_letter_posts_letter);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(work_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
