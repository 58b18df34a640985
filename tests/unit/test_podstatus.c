/* test_podstatus.c -- the status writer's bound on requests out: at most
 * max_writes PUTs (or GETs after a conflict) at once, the others waiting
 * their turn in arrival order and then writing their newest status, a
 * forgotten pod leaving the line, a re-read after a conflict not queueing.
 *
 * core/podstatus.c is compiled in here with the three API client calls it
 * makes renamed to a fake that records each request for the test to
 * answer (the Makefile links this test without core/podstatus.o). */
#define kube_request fake_request
#define kube_request_cancel fake_cancel
#define kube_client_loop fake_loop
#include "../../core/podstatus.c"
#undef kube_request
#undef kube_request_cancel
#undef kube_client_loop

#include <check.h>

#define MAX_FAKE 256
#define N_PODS 64

typedef struct fake_req {
    int64_t id;
    kube_done_fn done;
    void *ud;
    bool put;
    int pod;
    char *body;
} fake_req;

static struct {
    struct ev_loop *loop;
    fake_req r[MAX_FAKE];
    int n;
    int64_t next;
    int refuse_one_in;   /* 0: never; N: about one request in N refused */
    int cancels;
} K;

/* What the API server holds per pod: its copy is what lookup returns. */
static struct {
    char uid[16];
    long long rv;
    char message[32];
    bool gone;
} P[N_PODS];

static yajl_val looked;

struct ev_loop *fake_loop(const struct kube_client *c)
{
    (void)c;
    return K.loop;
}

int64_t fake_request(struct kube_client *c, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len, long timeout_ms,
                     kube_done_fn done, void *ud)
{
    (void)c;
    (void)content_type;
    (void)timeout_ms;
    if (K.refuse_one_in && rand() % K.refuse_one_in == 0)
        return -1;
    ck_assert_int_lt(K.n, MAX_FAKE);
    fake_req *r = &K.r[K.n++];
    *r = (fake_req){.id = ++K.next, .done = done, .ud = ud, .put = !strcmp(method, "PUT")};
    const char *p = strstr(path, "/pods/p");
    ck_assert_ptr_nonnull(p);
    r->pod = atoi(p + 7);
    r->body = body ? strndup(body, len) : NULL;
    return r->id;
}

int fake_cancel(struct kube_client *c, int64_t id)
{
    (void)c;
    for (int i = 0; i < K.n; i++) {
        if (K.r[i].id == id) {
            free(K.r[i].body);
            K.r[i] = K.r[--K.n];
            K.cancels++;
            return 0;
        }
    }
    ck_abort_msg("cancel of a request never made: %lld", (long long)id);
    return -1;
}

static char *pod_json(int i)
{
    static char buf[512];
    snprintf(buf, sizeof buf,
             "{\"metadata\":{\"name\":\"p%d\",\"namespace\":\"ns\",\"uid\":\"%s\","
             "\"resourceVersion\":\"%lld\"},\"status\":{\"phase\":\"Running\",\"message\":\"%s\"}}",
             i, P[i].uid, P[i].rv, P[i].message);
    return buf;
}

static yajl_val lookup(void *ud, const char *key)
{
    (void)ud;
    int i = atoi(key + strlen("ns/p"));
    yajl_tree_free(looked);
    looked = NULL;
    if (P[i].gone)
        return NULL;
    const char *j = pod_json(i);
    looked = vk_json_parse(j, strlen(j), NULL, 0);
    return looked;
}

/* Answer request k (an index into K.r) with code; a 200 stores the
 * written status as the API's, as the API server would. */
static void answer(int k, long code)
{
    fake_req r = K.r[k];
    K.r[k] = K.r[--K.n];
    const char *body = "";
    if (code == 200 && r.put) {
        yajl_val sent = vk_json_parse(r.body, strlen(r.body), NULL, 0);
        const char *m = vk_json_str(vk_json_get(sent, "status", "message", NULL), "");
        snprintf(P[r.pod].message, sizeof P[r.pod].message, "%s", m);
        yajl_tree_free(sent);
        P[r.pod].rv++;
    }
    if (code == 200)
        body = pod_json(r.pod);
    struct kube_response resp = {code, body, strlen(body), code == 200 ? NULL : "refused", false};
    free(r.body);
    r.done(&resp, r.ud);
}

static void setup(void)
{
    memset(&K, 0, sizeof K);
    K.loop = ev_loop_new(EVFLAG_AUTO);
    for (int i = 0; i < N_PODS; i++) {
        snprintf(P[i].uid, sizeof P[i].uid, "u%d", i);
        P[i].rv = 10;
        snprintf(P[i].message, sizeof P[i].message, "initial");
        P[i].gone = false;
    }
}

static void teardown(void)
{
    while (K.n)
        free(K.r[--K.n].body);
    yajl_tree_free(looked);
    looked = NULL;
    ev_loop_destroy(K.loop);
}

static podstatus *new_writer(metrics *m, unsigned max_writes)
{
    podstatus_config cfg = {.kube = (struct kube_client *)&K, .metrics = m, .lookup = lookup,
                            .max_writes = max_writes};
    podstatus *ps = podstatus_new(&cfg);
    ck_assert_ptr_nonnull(ps);
    return ps;
}

static void set_status(podstatus *ps, int i, const char *message)
{
    char key[32], st[128];
    snprintf(key, sizeof key, "ns/p%d", i);
    snprintf(st, sizeof st, "{\"phase\":\"Running\",\"message\":\"%s\"}", message);
    ck_assert_int_eq(podstatus_set(ps, key, P[i].uid, vk_json_parse(st, strlen(st), NULL, 0)), 0);
}

/* status_writes_pending{state}, as /metrics would show it. */
static double gauge(const podstatus *ps, const char *state)
{
    return metric_get(ps->pending, (const char *[]){state});
}

/* Runs what the loop has due now (the admission timer). */
static void turn(void)
{
    ev_run(K.loop, EVRUN_NOWAIT);
}

START_TEST(bound_and_order)
{
    metrics *m = metrics_new();
    podstatus *ps = new_writer(m, 3);
    for (int i = 0; i < 10; i++)
        set_status(ps, i, "started");
    ck_assert_int_eq(K.n, 3);
    ck_assert_double_eq(gauge(ps, "out"), 3);
    ck_assert_double_eq(gauge(ps, "waiting"), 7);
    /* Each answer lets the oldest waiting pod write: first come, first served. */
    for (int next = 3; next < 10; next++) {
        answer(0, 200);
        ck_assert_int_eq(K.n, 2);
        turn();
        ck_assert_int_eq(K.n, 3);
        ck_assert_int_eq(K.r[2].pod, next);
    }
    while (K.n)
        answer(0, 200);
    turn();
    ck_assert_int_eq(K.n, 0);
    ck_assert_double_eq(gauge(ps, "out"), 0);
    ck_assert_double_eq(gauge(ps, "waiting"), 0);
    for (int i = 0; i < 10; i++)
        ck_assert_str_eq(P[i].message, "started");
    podstatus_free(ps);
    metrics_free(m);
}
END_TEST

START_TEST(waiting_pod_writes_its_newest_status_once)
{
    metrics *m = metrics_new();
    podstatus *ps = new_writer(m, 1);
    set_status(ps, 0, "a");
    set_status(ps, 1, "first");
    set_status(ps, 1, "second");
    set_status(ps, 1, "third");
    ck_assert_int_eq(K.n, 1);
    ck_assert_double_eq(gauge(ps, "waiting"), 1); /* one place per pod */
    answer(0, 200);
    turn();
    ck_assert_int_eq(K.n, 1);
    ck_assert_int_eq(K.r[0].pod, 1);
    ck_assert_ptr_nonnull(strstr(K.r[0].body, "\"message\":\"third\""));
    answer(0, 200);
    turn();
    ck_assert_int_eq(K.n, 0); /* nothing older goes after it */
    ck_assert_str_eq(P[1].message, "third");
    podstatus_free(ps);
    metrics_free(m);
}
END_TEST

START_TEST(forgotten_pod_leaves_the_line)
{
    metrics *m = metrics_new();
    podstatus *ps = new_writer(m, 1);
    set_status(ps, 0, "a");
    set_status(ps, 1, "b");
    set_status(ps, 2, "c");
    ck_assert_double_eq(gauge(ps, "waiting"), 2);
    podstatus_forget(ps, "ns/p1");
    ck_assert_double_eq(gauge(ps, "waiting"), 1);
    answer(0, 200);
    turn();
    ck_assert_int_eq(K.n, 1);
    ck_assert_int_eq(K.r[0].pod, 2);
    /* Forgetting the pod whose request is out cancels it, and its place
     * goes on. */
    set_status(ps, 3, "d");
    podstatus_forget(ps, "ns/p2");
    ck_assert_int_eq(K.cancels, 1);
    ck_assert_double_eq(gauge(ps, "out"), 0);
    turn();
    ck_assert_int_eq(K.n, 1);
    ck_assert_int_eq(K.r[0].pod, 3);
    podstatus_free(ps);
    ck_assert_int_eq(K.cancels, 2); /* freeing cancels what is out */
    metrics_free(m);
}
END_TEST

START_TEST(reread_after_conflict_does_not_queue)
{
    metrics *m = metrics_new();
    podstatus *ps = new_writer(m, 1);
    set_status(ps, 0, "mine");
    set_status(ps, 1, "other");
    ck_assert_int_eq(K.n, 1);
    answer(0, 409); /* pod 0 conflicts: it re-reads at once */
    ck_assert_int_eq(K.n, 1);
    ck_assert(!K.r[0].put);
    ck_assert_int_eq(K.r[0].pod, 0);
    P[0].rv++;      /* someone else wrote meanwhile */
    answer(0, 200); /* the GET's answer: the write goes in the same place */
    ck_assert_int_eq(K.n, 1);
    ck_assert(K.r[0].put);
    ck_assert_int_eq(K.r[0].pod, 0);
    ck_assert_double_eq(gauge(ps, "waiting"), 1);
    answer(0, 200);
    turn();
    ck_assert_int_eq(K.r[0].pod, 1);
    answer(0, 200);
    ck_assert_str_eq(P[0].message, "mine");
    ck_assert_str_eq(P[1].message, "other");
    podstatus_free(ps);
    metrics_free(m);
}
END_TEST

/* Random statuses, answers (200, 409, 500, 422), refusals, forgotten
 * pods and API changes; after every step: never more than the bound out,
 * the gauges tell the truth, and a pod waiting with room free always has
 * the admission timer coming. At the end everything drains. */
START_TEST(random_steps_keep_the_invariants)
{
    srand(7);
    metrics *m = metrics_new();
    const unsigned max = 5;
    podstatus *ps = new_writer(m, max);
    K.refuse_one_in = 20;
    static const long codes[] = {200, 200, 200, 200, 200, 200, 409, 409, 500, 422};
    for (int step = 0; step < 50000; step++) {
        int a = rand() % 100, i = rand() % N_PODS;
        char key[32], msg[16];
        snprintf(key, sizeof key, "ns/p%d", i);
        snprintf(msg, sizeof msg, "s%d", rand() % 7);
        if (a < 30) {
            set_status(ps, i, msg);
        } else if (a < 60 && K.n) {
            answer(rand() % K.n, codes[rand() % 10]);
        } else if (a < 70) {
            snprintf(P[i].message, sizeof P[i].message, "%s", msg); /* another writer */
            P[i].rv++;
            podstatus_api_changed(ps, key);
        } else if (a < 72) {
            podstatus_forget(ps, key);
        } else {
            turn();
        }
        unsigned waiting = 0;
        for (slot *w = ps->wait_head; w; w = w->wait_next) {
            ck_assert(w->waiting && !w->req);
            waiting++;
        }
        ck_assert_uint_eq(waiting, ps->n_waiting);
        ck_assert_uint_eq(ps->out, (unsigned)K.n);
        ck_assert_uint_le(ps->out, max);
        ck_assert(!(ps->wait_head && ps->out < max) || ev_is_active(&ps->admit));
        if (step % 100 == 0) {
            ck_assert_double_eq(gauge(ps, "out"), K.n);
            ck_assert_double_eq(gauge(ps, "waiting"), waiting);
        }
    }
    K.refuse_one_in = 0;
    for (int round = 0; round < 1000 && (K.n || ps->wait_head); round++) {
        while (K.n)
            answer(0, 200);
        turn();
    }
    ck_assert_int_eq(K.n, 0);
    ck_assert_ptr_null(ps->wait_head);
    podstatus_free(ps);
    metrics_free(m);
}
END_TEST

int main(void)
{
    /* The random steps fail thousands of writes on purpose. */
    vk_log_set_level(VK_LOG_ERROR);
    Suite *s = suite_create("podstatus");
    TCase *tc = tcase_create("bound");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, bound_and_order);
    tcase_add_test(tc, waiting_pod_writes_its_newest_status_once);
    tcase_add_test(tc, forgotten_pod_leaves_the_line);
    tcase_add_test(tc, reread_after_conflict_does_not_queue);
    tcase_add_test(tc, random_steps_keep_the_invariants);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
