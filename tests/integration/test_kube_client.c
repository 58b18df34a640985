/* test_kube_client.c -- core/kube_client, kube_watch and kube_reflector
 * against a real kube-apiserver (tests/cluster), plus a few local servers
 * for what a real one will not do on demand (never answer, cut a stream).
 *
 * The cluster: $VKC_CLUSTER_DIR when set (a directory tests/cluster/up.sh
 * prepared and that still runs), else one brought up here in a temporary
 * directory and torn down at the end. That needs the Kubernetes binaries
 * (tests/cluster/build.sh caches them); without them the test fails, it
 * does not skip.
 *
 * Everything happens in one namespace of this run. Two tests compact etcd
 * (to produce 410 Gone), which is harmless for other users of a shared
 * cluster: the API server does the same every five minutes.
 *
 * Every test runs in its own process (check's fork mode) with a time limit.
 */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../../core/kube_client.h"
#include "../../core/metrics.h"
#include "../../core/kube_reflector.h"
#include "../../core/kube_watch.h"
#include "../../core/kubeconfig.h"
#include "buf.h"
#include "json.h"
#include "log.h"
#include "harness.h"

/* A CA that signed nothing the cluster uses. */
static const char wrong_ca[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBjzCCATWgAwIBAgIUTQrNTHEOEsXRvHxaDQC4RHybjMswCgYIKoZIzj0EAwIw\n"
    "HDEaMBgGA1UEAwwRdmtjLXRlc3Qtd3JvbmctY2EwIBcNMjYxMTI4MDkxMDQyWhgP\n"
    "MjEyNjExMDQwOTEwNDJaMBwxGjAYBgNVBAMMEXZrYy10ZXN0LXdyb25nLWNhMFkw\n"
    "EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEbTfBZbcGrwsR8HBLZlnNw1/9wvwsk9C1\n"
    "9Jjf6rpqDB5JZ71Yf8BDs8+C7WZz52pyGLu76Eln7++V3NR5vg03PaNTMFEwHQYD\n"
    "VR0OBBYEFM3R9fyCjsF9BwpVKIdiLiQb5eX8MB8GA1UdIwQYMBaAFM3R9fyCjsF9\n"
    "BwpVKIdiLiQb5eX8MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh\n"
    "AJHHPZiaLxXk4PXKRoJmIHthkFfcoG5PK8bbn9fV2cB4AiA0ALPFfy2r6IPVYkZq\n"
    "Xhqho1gTFwocQgit/KRy9vUX0g==\n"
    "-----END CERTIFICATE-----\n";

static harness_cluster cluster;
static char etcd_url[256];
static char node_name[128];
static char node_kubeconfig[PATH_MAX];
static kube_config admin_cfg, node_cfg;
static char ns[64];

static struct ev_loop *loop;
static ev_timer tick;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run the loop until cond holds; fail the test after secs. The tick timer
 * makes each ev_run return at least every 50 ms. */
#define AWAIT(cond, secs)                                                             \
    do {                                                                              \
        double until_ = mono() + (secs);                                              \
        while (!(cond)) {                                                             \
            ck_assert_msg(mono() < until_, "gave up after %gs waiting for: %s",       \
                          (double)(secs), #cond);                                     \
            ev_run(loop, EVRUN_ONCE);                                                \
        }                                                                             \
    } while (0)

static void run_for(double secs)
{
    double until = mono() + secs;
    while (mono() < until)
        ev_run(loop, EVRUN_ONCE);
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l;
    (void)w;
    (void)revents;
}

static void setup(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    ck_assert_ptr_nonnull(loop);
    ev_timer_init(&tick, tick_cb, 0.05, 0.05);
    ev_timer_start(loop, &tick);
}

static void teardown(void)
{
    ev_timer_stop(loop, &tick);
    ev_loop_destroy(loop);
    loop = NULL;
}

/* ---- requests ------------------------------------------------------------------- */

struct result {
    int calls;
    long status;
    char *body;
    char *error;
    bool cancelled;
};

static void on_result(const struct kube_response *resp, void *ud)
{
    struct result *r = ud;
    r->calls++;
    r->status = resp->status;
    free(r->body);
    free(r->error);
    r->body = strdup(resp->body);
    r->error = resp->error ? strdup(resp->error) : NULL;
    r->cancelled = resp->cancelled;
}

static void result_free(struct result *r)
{
    free(r->body);
    free(r->error);
    memset(r, 0, sizeof *r);
}

static struct kube_client *client(const kube_config *cfg, const struct kube_client_opts *o)
{
    char err[256];
    struct kube_client *c = kube_client_new(loop, cfg, o, err, sizeof err);
    ck_assert_msg(c != NULL, "kube_client_new: %s", err);
    return c;
}

static const struct kube_client_opts unlimited = {.qps = -1};

/* One request, waited for. */
static void call(struct kube_client *c, struct result *r, const char *method, const char *path,
                 const char *content_type, const char *body)
{
    memset(r, 0, sizeof *r);
    int64_t id = kube_request(c, method, path, content_type, body, body ? strlen(body) : 0, 0,
                              on_result, r);
    ck_assert_msg(id > 0, "kube_request %s %s refused", method, path);
    AWAIT(r->calls == 1, 40);
}

static void expect(struct kube_client *c, long status, const char *method, const char *path,
                   const char *content_type, const char *body)
{
    struct result r;
    call(c, &r, method, path, content_type, body);
    ck_assert_msg(r.status == status, "%s %s: status %ld (%s), want %ld", method, path,
                  r.status, r.error ? r.error : "", status);
    result_free(&r);
}

static yajl_val parse(const char *body)
{
    char err[128];
    yajl_val v = vk_json_parse(body, strlen(body), err, sizeof err);
    ck_assert_msg(v != NULL, "bad JSON: %s", err);
    return v;
}

static char *cm_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/configmaps%s%s", ns, name ? "/" : "",
             name ? name : "");
    return path;
}

static char *cm_body(const char *name, const char *label, const char *value)
{
    static char body[4096];
    snprintf(body, sizeof body,
             "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"%s\","
             "\"labels\":{\"set\":\"%s\"}},\"data\":{\"k\":\"%s\"}}",
             name, label, value);
    return body;
}

/* Create n config maps NAME-0 .. NAME-(n-1) labelled set=label, all at
 * once. */
static void create_many(struct kube_client *c, const char *name, const char *label, int n)
{
    struct result *res = calloc((size_t)n, sizeof *res);
    ck_assert_ptr_nonnull(res);
    for (int i = 0; i < n; i++) {
        char one[128];
        snprintf(one, sizeof one, "%s-%d", name, i);
        const char *body = cm_body(one, label, "v");
        ck_assert(kube_request(c, "POST", cm_path(NULL), NULL, body, strlen(body), 0,
                               on_result, &res[i]) > 0);
    }
    for (int i = 0; i < n; i++) {
        AWAIT(res[i].calls == 1, 40);
        ck_assert_msg(res[i].status == 201, "create %s-%d: %ld %s", name, i, res[i].status,
                      res[i].error ? res[i].error : "");
        result_free(&res[i]);
    }
    free(res);
}

/* The newest etcd revision, then compact everything older: watches and
 * exact reads from before it get 410 Gone. Goes to etcd's JSON gateway
 * with the client under test, over plain HTTP. */
static void compact_etcd(void)
{
    kube_config e = {0};
    e.server = etcd_url;
    struct kube_client *c = client(&e, &unlimited);
    struct result r;
    call(c, &r, "POST", "/v3/kv/range", NULL, "{\"key\":\"AA==\"}");
    ck_assert_msg(r.status == 200, "etcd range: %ld %s", r.status, r.error ? r.error : "");
    yajl_val v = parse(r.body);
    const char *rev = vk_json_str(vk_json_get(v, "header", "revision", NULL), NULL);
    ck_assert_ptr_nonnull(rev);
    char body[128];
    snprintf(body, sizeof body, "{\"revision\":\"%s\",\"physical\":true}", rev);
    yajl_tree_free(v);
    result_free(&r);
    /* Nothing written since an earlier compaction: already done. */
    call(c, &r, "POST", "/v3/kv/compaction", NULL, body);
    ck_assert_msg(r.status == 200 || (r.status == 400 && strstr(r.error, "has been compacted")),
                  "etcd compaction: %ld %s", r.status, r.error ? r.error : "");
    result_free(&r);
    kube_client_free(c);
}

/* ---- plain requests ------------------------------------------------------------------ */

START_TEST(get_version)
{
    struct kube_client *c = client(&admin_cfg, NULL);
    struct result r;
    call(c, &r, "GET", "/version", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_null(r.error);
    yajl_val v = parse(r.body);
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "major"), ""), "1");
    yajl_tree_free(v);
    const struct kube_client_stats *st = kube_client_stats(c);
    ck_assert_uint_eq(st->requests[KUBE_VERB_GET][200], 1);
    ck_assert_uint_eq(st->latency_count[KUBE_VERB_GET], 1);
    ck_assert(st->latency_sum[KUBE_VERB_GET] > 0);
    ck_assert_uint_eq(st->in_flight, 0);
    ck_assert_uint_eq(st->queued, 0);
    result_free(&r);

    /* An error body that is not a Status. */
    call(c, &r, "GET", "/no/such/path", NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    ck_assert_str_eq(r.error, "HTTP 404");
    result_free(&r);
    kube_client_free(c);
}
END_TEST

START_TEST(configmap_lifecycle)
{
    struct kube_client *c = client(&admin_cfg, NULL);
    struct result r;
    call(c, &r, "POST", cm_path(NULL), NULL, cm_body("life", "life", "v1"));
    ck_assert_int_eq(r.status, 201);
    result_free(&r);

    call(c, &r, "POST", cm_path(NULL), NULL, cm_body("life", "life", "v1"));
    ck_assert_int_eq(r.status, 409);
    ck_assert_ptr_nonnull(r.error);
    ck_assert_msg(strstr(r.error, "already exists"), "error: %s", r.error);
    ck_assert_ptr_nonnull(strstr(r.body, "\"reason\":\"AlreadyExists\""));
    result_free(&r);

    call(c, &r, "GET", cm_path("life"), NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    yajl_val v = parse(r.body);
    ck_assert_str_eq(vk_json_str(vk_json_get(v, "data", "k", NULL), ""), "v1");
    yajl_tree_free(v);
    result_free(&r);

    call(c, &r, "PATCH", cm_path("life"), "application/merge-patch+json",
         "{\"data\":{\"k\":\"v2\"}}");
    ck_assert_int_eq(r.status, 200);
    v = parse(r.body);
    ck_assert_str_eq(vk_json_str(vk_json_get(v, "data", "k", NULL), ""), "v2");
    yajl_tree_free(v);
    result_free(&r);

    call(c, &r, "PUT", cm_path("life"), NULL, cm_body("life", "life", "v3"));
    ck_assert_int_eq(r.status, 200);
    result_free(&r);

    call(c, &r, "DELETE", cm_path("life"), NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    result_free(&r);

    call(c, &r, "GET", cm_path("life"), NULL, NULL);
    ck_assert_int_eq(r.status, 404);
    ck_assert_msg(r.error && strstr(r.error, "\"life\" not found"), "error: %s", r.error);
    result_free(&r);

    const struct kube_client_stats *st = kube_client_stats(c);
    ck_assert_uint_eq(st->requests[KUBE_VERB_POST][201], 1);
    ck_assert_uint_eq(st->requests[KUBE_VERB_POST][409], 1);
    ck_assert_uint_eq(st->requests[KUBE_VERB_PATCH][200], 1);
    ck_assert_uint_eq(st->requests[KUBE_VERB_PUT][200], 1);
    ck_assert_uint_eq(st->requests[KUBE_VERB_DELETE][200], 1);
    ck_assert_uint_eq(st->requests[KUBE_VERB_GET][404], 1);
    kube_client_free(c);
}
END_TEST

START_TEST(list_paging)
{
    struct kube_client *c = client(&admin_cfg, &unlimited);
    create_many(c, "page", "page", 30);
    bool seen[30] = {false};
    int total = 0, pages = 0;
    char *cont = NULL;
    do {
        vk_buf path = VK_BUF_INIT;
        ck_assert_int_eq(vk_buf_puts(&path, cm_path(NULL)), 0);
        ck_assert_int_eq(kube_path_query(&path, "labelSelector", "set=page"), 0);
        ck_assert_int_eq(kube_path_query(&path, "limit", "10"), 0);
        if (cont)
            ck_assert_int_eq(kube_path_query(&path, "continue", cont), 0);
        free(cont);
        cont = NULL;
        struct result r;
        call(c, &r, "GET", path.data, NULL, NULL);
        vk_buf_free(&path);
        ck_assert_int_eq(r.status, 200);
        yajl_val v = parse(r.body);
        yajl_val items = vk_json_member(v, "items");
        ck_assert(YAJL_IS_ARRAY(items));
        ck_assert_uint_le(items->u.array.len, 10);
        for (size_t i = 0; i < items->u.array.len; i++) {
            const char *name = vk_json_str(
                vk_json_get(items->u.array.values[i], "metadata", "name", NULL), "");
            int k = -1;
            ck_assert_int_eq(sscanf(name, "page-%d", &k), 1);
            ck_assert(k >= 0 && k < 30 && !seen[k]);
            seen[k] = true;
            total++;
        }
        const char *next = vk_json_str(vk_json_get(v, "metadata", "continue", NULL), "");
        if (*next)
            cont = strdup(next);
        pages++;
        yajl_tree_free(v);
        result_free(&r);
    } while (cont);
    ck_assert_int_eq(total, 30);
    ck_assert_int_ge(pages, 3);
    kube_client_free(c);
}
END_TEST

/* ---- watch ------------------------------------------------------------------------ */

struct seen_event {
    enum kube_event_type type;
    char name[64];
    char rv[32];
};

struct watch_log {
    struct seen_event ev[64];
    int n;
    int ends;
    struct kube_watch_end end;
    char end_msg[512];
    yajl_val kept;             /* taken from the first event */
    struct kube_watch *w;
    int free_at;               /* free the watch inside event number free_at */
};

static void log_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    struct watch_log *l = ud;
    ck_assert_int_lt(l->n, 64);
    struct seen_event *e = &l->ev[l->n++];
    e->type = type;
    snprintf(e->name, sizeof e->name, "%s",
             vk_json_str(vk_json_get(*object, "metadata", "name", NULL), ""));
    snprintf(e->rv, sizeof e->rv, "%s",
             vk_json_str(vk_json_get(*object, "metadata", "resourceVersion", NULL), ""));
    if (!l->kept) {
        l->kept = *object;
        *object = NULL;
    }
    if (l->free_at == l->n) {
        kube_watch_free(l->w);
        l->w = NULL;
    }
}

static void log_end(void *ud, const struct kube_watch_end *end)
{
    struct watch_log *l = ud;
    l->ends++;
    l->end = *end;
    snprintf(l->end_msg, sizeof l->end_msg, "%s", end->message);
    l->end.message = l->end_msg;
    kube_watch_free(l->w);
    l->w = NULL;
}

static void watch_log_free(struct watch_log *l)
{
    kube_watch_free(l->w);
    yajl_tree_free(l->kept);
    memset(l, 0, sizeof *l);
}

/* The resourceVersion of a (filtered) list of config maps. */
static char *list_rv(struct kube_client *c, const char *field, const char *value)
{
    vk_buf path = VK_BUF_INIT;
    ck_assert_int_eq(vk_buf_puts(&path, cm_path(NULL)), 0);
    ck_assert_int_eq(kube_path_query(&path, field, value), 0);
    struct result r;
    call(c, &r, "GET", path.data, NULL, NULL);
    vk_buf_free(&path);
    ck_assert_int_eq(r.status, 200);
    yajl_val v = parse(r.body);
    char *rv = strdup(vk_json_str(vk_json_get(v, "metadata", "resourceVersion", NULL), ""));
    ck_assert(rv && *rv);
    yajl_tree_free(v);
    result_free(&r);
    return rv;
}

START_TEST(watch_sees_changes)
{
    struct kube_client *c = client(&admin_cfg, &unlimited);
    char *rv = list_rv(c, "fieldSelector", "metadata.name=watched");
    struct watch_log l = {0};
    struct kube_watch_opts o = {
        .path = cm_path(NULL),
        .resource_version = rv,
        .field_selector = "metadata.name=watched",
        .timeout_s = 60,
        .on_event = log_event,
        .on_end = log_end,
        .ud = &l,
    };
    l.w = kube_watch_start(c, &o);
    ck_assert_ptr_nonnull(l.w);
    expect(c, 201, "POST", cm_path(NULL), NULL, cm_body("watched", "w", "1"));
    expect(c, 200, "PATCH", cm_path("watched"), "application/merge-patch+json",
           "{\"data\":{\"k\":\"2\"}}");
    expect(c, 200, "DELETE", cm_path("watched"), NULL, NULL);
    AWAIT(l.n >= 3, 30);
    ck_assert_int_eq(l.n, 3);
    ck_assert_int_eq(l.ev[0].type, KUBE_ADDED);
    ck_assert_int_eq(l.ev[1].type, KUBE_MODIFIED);
    ck_assert_int_eq(l.ev[2].type, KUBE_DELETED);
    for (int i = 0; i < 3; i++)
        ck_assert_str_eq(l.ev[i].name, "watched");
    ck_assert(strtoull(l.ev[0].rv, NULL, 10) < strtoull(l.ev[1].rv, NULL, 10));
    /* The object taken out of the first event outlived it. */
    ck_assert_str_eq(vk_json_str(vk_json_get(l.kept, "data", "k", NULL), ""), "1");
    ck_assert_int_eq(l.ends, 0);
    watch_log_free(&l);   /* a live watch: stops without on_end */
    run_for(0.2);
    ck_assert_uint_eq(kube_client_stats(c)->in_flight, 0);
    free(rv);
    kube_client_free(c);
}
END_TEST

START_TEST(watch_limits)
{
    /* An event over max_event ends the watch with a clear error. */
    struct kube_client *c = client(&admin_cfg, &unlimited);
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect(c, 201, "POST", cm_path(NULL), NULL, cm_body("big", "big", big));
    struct watch_log l = {0};
    struct kube_watch_opts o = {
        .path = cm_path(NULL),
        .field_selector = "metadata.name=big",
        .timeout_s = 60,
        .max_event = 1000,
        .on_event = log_event,
        .on_end = log_end,
        .ud = &l,
    };
    l.w = kube_watch_start(c, &o);   /* no resourceVersion: an ADDED for "big" first */
    ck_assert_ptr_nonnull(l.w);
    AWAIT(l.ends == 1, 30);
    ck_assert_int_eq(l.n, 0);
    ck_assert_int_eq(l.end.kind, KUBE_WATCH_FAILED);
    ck_assert_str_eq(l.end.message, "watch event exceeds 1000 bytes");
    watch_log_free(&l);
    kube_client_free(c);

    /* A response over max_body is refused. */
    c = client(&admin_cfg, &(struct kube_client_opts){.max_body = 64});
    struct result r;
    call(c, &r, "GET", "/version", NULL, NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.error, "response body exceeds 64 bytes");
    result_free(&r);
    kube_client_free(c);
}
END_TEST

/* ---- reflector ---------------------------------------------------------------------- */

struct refl_log {
    int replaces;
    size_t last_n;
    struct watch_log events;   /* reuses the watch event log */
};

static void refl_replace(void *ud, yajl_val *items, size_t n)
{
    struct refl_log *l = ud;
    l->replaces++;
    l->last_n = n;
    for (size_t i = 0; i < n; i++)
        ck_assert(YAJL_IS_OBJECT(items[i]));
}

static void refl_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    struct refl_log *l = ud;
    log_event(&l->events, type, object);
}

START_TEST(reflector_survives_watch_end)
{
    struct kube_client *c = client(&admin_cfg, &unlimited);
    create_many(c, "refl", "refl", 12);
    struct refl_log l = {0};
    struct kube_reflector_config cfg = {
        .path = cm_path(NULL),
        .label_selector = "set=refl",
        .page_size = 5,
        .watch_timeout_s = 2,
        .on_replace = refl_replace,
        .on_event = refl_event,
        .ud = &l,
    };
    struct kube_reflector *r = kube_reflector_start(c, &cfg);
    ck_assert_ptr_nonnull(r);
    ck_assert(!kube_reflector_synced(r));
    AWAIT(kube_reflector_synced(r), 20);
    ck_assert_int_eq(l.replaces, 1);
    ck_assert_uint_eq(l.last_n, 12);
    const struct kube_reflector_stats *st = kube_reflector_stats(r);
    unsigned long long rv0 = strtoull(kube_reflector_resource_version(r), NULL, 10);
    ck_assert(rv0 > 0);

    /* Two watches end on their timeoutSeconds; each is reopened from the
     * resourceVersion reached, without a list and without replaying. */
    AWAIT(st->watches >= 3, 20);
    ck_assert_uint_eq(st->lists, 1);
    ck_assert_uint_eq(st->gone, 0);
    ck_assert_uint_eq(st->failures, 0);
    ck_assert_int_eq(l.events.n, 0);
    ck_assert(strtoull(kube_reflector_resource_version(r), NULL, 10) >= rv0);

    struct result res;
    call(c, &res, "POST", cm_path(NULL), NULL, cm_body("refl-new", "refl", "v"));
    ck_assert_int_eq(res.status, 201);
    yajl_val v = parse(res.body);
    unsigned long long rv_new =
        strtoull(vk_json_str(vk_json_get(v, "metadata", "resourceVersion", NULL), "0"), NULL, 10);
    yajl_tree_free(v);
    result_free(&res);
    AWAIT(l.events.n == 1, 20);
    ck_assert_int_eq(l.events.ev[0].type, KUBE_ADDED);
    ck_assert_str_eq(l.events.ev[0].name, "refl-new");
    ck_assert(strtoull(kube_reflector_resource_version(r), NULL, 10) >= rv_new);

    /* One more forced end: still nothing replayed. */
    unsigned long w = st->watches;
    AWAIT(st->watches > w, 20);
    run_for(0.3);
    ck_assert_int_eq(l.events.n, 1);
    ck_assert_uint_eq(st->lists, 1);

    kube_reflector_free(r);
    watch_log_free(&l.events);
    kube_client_free(c);
}
END_TEST

START_TEST(reflector_relists_on_gone)
{
    /* Events are not in the API server's watch cache (1.20), so their
     * watches go to etcd, which refuses a compacted revision: the
     * reflector's next watch, from the list's resourceVersion, gets an
     * ERROR event with code 410 and must list again. */
    struct kube_client *c = client(&admin_cfg, &unlimited);
    struct refl_log l = {0};
    char path[256];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/events", ns);
    struct kube_reflector_config cfg = {
        .path = path,
        .watch_timeout_s = 2,
        .on_replace = refl_replace,
        .on_event = refl_event,
        .ud = &l,
    };
    struct kube_reflector *r = kube_reflector_start(c, &cfg);
    ck_assert_ptr_nonnull(r);
    AWAIT(kube_reflector_synced(r), 20);
    const struct kube_reflector_stats *st = kube_reflector_stats(r);
    ck_assert_uint_eq(st->lists, 1);
    /* Move etcd two revisions past the list (a watch from RV starts at
     * RV+1, which must be below the compaction), then forget the history. */
    create_many(c, "bump", "bump", 2);
    compact_etcd();
    AWAIT(st->gone >= 1 && st->lists >= 2, 30);
    ck_assert_int_eq(l.replaces, (int)st->lists);
    ck_assert(kube_reflector_synced(r));
    kube_reflector_free(r);
    watch_log_free(&l.events);
    kube_client_free(c);
}
END_TEST

START_TEST(gone_as_event_and_status)
{
    struct kube_client *c = client(&admin_cfg, &unlimited);
    compact_etcd();

    /* An exact read of a compacted revision: HTTP 410. */
    struct result r;
    vk_buf p = VK_BUF_INIT;
    ck_assert_int_eq(vk_buf_puts(&p, cm_path(NULL)), 0);
    ck_assert_int_eq(kube_path_query(&p, "resourceVersion", "2"), 0);
    ck_assert_int_eq(kube_path_query(&p, "resourceVersionMatch", "Exact"), 0);
    call(c, &r, "GET", p.data, NULL, NULL);
    vk_buf_free(&p);
    ck_assert_int_eq(r.status, 410);
    ck_assert_msg(r.error && strstr(r.error, "too old"), "error: %s", r.error);
    result_free(&r);

    /* A watch from a compacted revision: an ERROR event with code 410. */
    struct watch_log l = {0};
    char path[256];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/events", ns);
    struct kube_watch_opts o = {
        .path = path,
        .resource_version = "1",
        .timeout_s = 30,
        .on_event = log_event,
        .on_end = log_end,
        .ud = &l,
    };
    l.w = kube_watch_start(c, &o);
    ck_assert_ptr_nonnull(l.w);
    AWAIT(l.ends == 1, 20);
    ck_assert_int_eq(l.end.kind, KUBE_WATCH_GONE);
    ck_assert_int_eq(l.end.code, 410);
    ck_assert_msg(strstr(l.end.message, "too old"), "message: %s", l.end.message);
    ck_assert_int_eq(l.n, 0);
    watch_log_free(&l);
    kube_client_free(c);
}
END_TEST

/* ---- rate limit ------------------------------------------------------------------------ */

START_TEST(rate_limit_spaces_requests)
{
    struct kube_client *c = client(&admin_cfg, &(struct kube_client_opts){.qps = 5, .burst = 1});
    struct result r[10] = {0};
    /* The client reads the loop's clock (ev_now), which last moved in
     * setup: on a loaded machine that can be long ago, and the waits
     * measured here would seem short by as much. */
    ev_now_update(loop);
    double t0 = mono();
    for (int i = 0; i < 10; i++)
        ck_assert(kube_request(c, "GET", "/version", NULL, NULL, 0, 0, on_result, &r[i]) > 0);
    const struct kube_client_stats *st = kube_client_stats(c);
    ck_assert_uint_eq(st->queued, 9);
    ck_assert_uint_eq(st->in_flight, 1);
    for (int i = 0; i < 10; i++) {
        AWAIT(r[i].calls == 1, 20);
        ck_assert_int_eq(r[i].status, 200);
        result_free(&r[i]);
    }
    /* Nine waits of 1/qps: 1.8 s, less a little slack for rounding. */
    double took = mono() - t0;
    ck_assert_msg(took >= 1.7, "10 requests at 5 qps, burst 1 took %.3fs", took);
    ck_assert_uint_eq(st->queued, 0);
    kube_client_free(c);
}
END_TEST

/* Completions of in_flight_cap: how many were out when each landed. */
static struct kube_client *cap_client;
static unsigned cap_done, cap_ok, cap_most;

static void on_capped(const struct kube_response *resp, void *ud)
{
    (void)ud;
    unsigned out = kube_client_stats(cap_client)->in_flight;
    cap_most = out > cap_most ? out : cap_most;
    cap_ok += resp->status == 200;
    cap_done++;
}

START_TEST(in_flight_cap)
{
    /* No rate limit: only the cap holds the burst back, and every request
     * still completes, in order of submission. */
    cap_client = client(&admin_cfg, &(struct kube_client_opts){.qps = -1, .max_in_flight = 3});
    cap_done = cap_ok = cap_most = 0;
    for (int i = 0; i < 40; i++)
        ck_assert(kube_request(cap_client, "GET", "/version", NULL, NULL, 0, 0, on_capped, NULL) >
                  0);
    const struct kube_client_stats *st = kube_client_stats(cap_client);
    ck_assert_uint_eq(st->in_flight, 3);
    ck_assert_uint_eq(st->queued, 37);
    AWAIT(cap_done == 40, 30);
    ck_assert_uint_eq(cap_ok, 40);
    ck_assert_msg(cap_most <= 3, "%u requests were out at once", cap_most);
    ck_assert_uint_eq(st->queued, 0);
    kube_client_free(cap_client);
}
END_TEST

START_TEST(rate_limit_queue_bound_and_free)
{
    /* One token every 10 s: the three waiting requests are still waiting
     * when the client is freed, however long the first one takes on a
     * loaded machine (at 0.5 qps the second could leave after 2 s). */
    metrics *m = metrics_new();
    metric *waiting = metrics_gauge(m, "w", "", "client");
    metric *rejected = metrics_counter(m, "r", "", "client");
    metric *limits = metrics_gauge(m, "l", "", "client,bound");
    struct kube_client_opts o = {.qps = 0.1, .burst = 1, .queue_max = 3, .name = "t",
                                 .waiting = waiting, .rejected = rejected, .limits = limits};
    struct kube_client *c = client(&admin_cfg, &o);
    struct result r[10] = {0};
    int accepted = 0;
    for (int i = 0; i < 10; i++)
        if (kube_request(c, "GET", "/version", NULL, NULL, 0, 0, on_result, &r[i]) > 0)
            accepted++;
    ck_assert_int_eq(accepted, 4);   /* one on the wire, three waiting */
    ck_assert_uint_eq(kube_client_stats(c)->rejected, 6);
    /* What /metrics shows of it. */
    ck_assert_double_eq(metric_get(waiting, (const char *[]){"t"}), 3);
    ck_assert_double_eq(metric_get(rejected, (const char *[]){"t"}), 6);
    ck_assert_double_eq(metric_get(limits, (const char *[]){"t", "waiting"}), 3);
    ck_assert_double_eq(metric_get(limits, (const char *[]){"t", "in_flight"}), 100);
    AWAIT(r[0].calls == 1, 20);
    ck_assert_int_eq(r[0].status, 200);
    /* Freeing the client runs the waiting ones' callbacks, cancelled. */
    kube_client_free(c);
    ck_assert_double_eq(metric_get(waiting, (const char *[]){"t"}), 0);
    metrics_free(m);
    for (int i = 1; i < 4; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert(r[i].cancelled);
        ck_assert_int_eq(r[i].status, 0);
        ck_assert_str_eq(r[i].error, "cancelled");
    }
    for (int i = 0; i < 10; i++) {
        ck_assert_int_le(r[i].calls, 1);
        result_free(&r[i]);
    }
}
END_TEST

START_TEST(queue_deadline)
{
    /* A request whose deadline passes while it waits for a token fails
     * then, not when its turn comes. Its turn is 20 s away (0.05 qps), so
     * the bound can leave a loaded machine plenty of room and still tell
     * the two apart. */
    struct kube_client *c = client(&admin_cfg, &(struct kube_client_opts){.qps = 0.05, .burst = 1});
    struct result first = {0}, late = {0};
    ev_now_update(loop); /* deadlines count from the loop's clock: see above */
    ck_assert(kube_request(c, "GET", "/version", NULL, NULL, 0, 0, on_result, &first) > 0);
    double t0 = mono();
    ck_assert(kube_request(c, "GET", "/version", NULL, NULL, 0, 300, on_result, &late) > 0);
    AWAIT(late.calls == 1, 19);
    double took = mono() - t0;
    ck_assert_int_eq(late.status, 0);
    ck_assert_msg(strstr(late.error, "rate limit"), "error: %s", late.error);
    ck_assert_msg(took >= 0.25 && took < 15, "took %.3fs", took);
    AWAIT(first.calls == 1, 20);
    result_free(&first);
    result_free(&late);
    kube_client_free(c);
}
END_TEST

/* ---- transport failures --------------------------------------------------------------- */

/* A socket that accepts connections in the kernel and never answers. */
static int black_hole(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

START_TEST(timeout_cancel_and_free)
{
    int port;
    int fd = black_hole(&port);
    char server[64];
    snprintf(server, sizeof server, "https://127.0.0.1:%d", port);
    kube_config cfg = admin_cfg;
    cfg.server = server;
    struct kube_client *c = client(&cfg, &unlimited);

    struct result r = {0}, cancelled = {0}, pending = {0};
    /* Deadlines count from the loop's clock (ev_now), which last moved in
     * setup: bring it to now, or the 500 ms would seem to end early by as
     * long as setup took on a loaded machine. */
    ev_now_update(loop);
    double t0 = mono();
    ck_assert(kube_request(c, "GET", "/version", NULL, NULL, 0, 500, on_result, &r) > 0);
    int64_t id = kube_request(c, "GET", "/version", NULL, NULL, 0, 5000, on_result, &cancelled);
    ck_assert(id > 0);
    ck_assert_int_eq(kube_request_cancel(c, id), 0);
    ck_assert_int_eq(kube_request_cancel(c, id), -1);
    AWAIT(r.calls == 1, 10);
    double took = mono() - t0;
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strcasestr(r.error, "timed out") || strcasestr(r.error, "timeout"),
                  "error: %s", r.error);
    ck_assert_msg(took >= 0.45, "timed out after %.3fs", took);
    ck_assert_uint_eq(kube_client_stats(c)->requests[KUBE_VERB_GET][0], 1);

    ck_assert(kube_request(c, "GET", "/version", NULL, NULL, 0, 20000, on_result, &pending) > 0);
    run_for(0.3);
    ck_assert_int_eq(cancelled.calls, 0);
    ck_assert_int_eq(pending.calls, 0);
    kube_client_free(c);
    ck_assert_int_eq(cancelled.calls, 0);
    ck_assert_int_eq(pending.calls, 1);
    ck_assert(pending.cancelled);
    ck_assert_int_eq(pending.status, 0);
    result_free(&r);
    result_free(&cancelled);
    result_free(&pending);
    close(fd);
}
END_TEST

START_TEST(tls_wrong_ca)
{
    kube_config cfg = admin_cfg;
    cfg.ca_pem = (char *)wrong_ca;
    cfg.ca_pem_len = sizeof wrong_ca - 1;
    struct kube_client *c = client(&cfg, NULL);
    struct result r;
    call(c, &r, "GET", "/version", NULL, NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(r.error && strstr(r.error, "certificate"), "error: %s", r.error);
    fprintf(stderr, "wrong CA gives: %s\n", r.error);
    result_free(&r);
    kube_client_free(c);
}
END_TEST

START_TEST(node_identity_forbidden)
{
    struct kube_client *c = client(&node_cfg, NULL);
    struct result r;
    call(c, &r, "GET", "/api/v1/secrets", NULL, NULL);
    ck_assert_int_eq(r.status, 403);
    char who[192];
    snprintf(who, sizeof who, "User \"system:node:%s\" cannot list resource \"secrets\"",
             node_name);
    ck_assert_msg(r.error && strstr(r.error, who), "error: %s", r.error);
    result_free(&r);
    kube_client_free(c);
}
END_TEST

START_TEST(http2_one_connection)
{
    struct kube_client *c = client(&admin_cfg, &unlimited);
    struct watch_log l = {0};
    struct kube_watch_opts o = {
        .path = cm_path(NULL),
        .field_selector = "metadata.name=nothing-here",
        .timeout_s = 60,
        .on_event = log_event,
        .on_end = log_end,
        .ud = &l,
    };
    l.w = kube_watch_start(c, &o);
    ck_assert_ptr_nonnull(l.w);
    struct result r[20] = {0};
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 20; i++)
            ck_assert(kube_request(c, "GET", "/version", NULL, NULL, 0, 0, on_result, &r[i]) > 0);
        for (int i = 0; i < 20; i++) {
            AWAIT(r[i].calls == 1, 20);
            ck_assert_int_eq(r[i].status, 200);
            result_free(&r[i]);
        }
    }
    /* 40 requests and a watch, concurrent, over one multiplexed connection. */
    ck_assert_uint_eq(kube_client_stats(c)->connections, 1);
    ck_assert_int_eq(l.ends, 0);
    watch_log_free(&l);
    kube_client_free(c);
}
END_TEST

/* ---- bearer tokens ---------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fputc('\n', f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

START_TEST(bearer_token_file)
{
    struct kube_client *admin = client(&admin_cfg, &unlimited);
    char path[256];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/serviceaccounts", ns);
    expect(admin, 201, "POST", path, NULL, "{\"metadata\":{\"name\":\"tok\"}}");
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/serviceaccounts/tok/token", ns);
    struct result r;
    call(admin, &r, "POST", path, NULL,
         "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\","
         "\"spec\":{\"expirationSeconds\":3600}}");
    ck_assert_msg(r.status == 201, "TokenRequest: %ld %s", r.status, r.error ? r.error : "");
    yajl_val v = parse(r.body);
    char *token = strdup(vk_json_str(vk_json_get(v, "status", "token", NULL), ""));
    ck_assert(token && *token);
    yajl_tree_free(v);
    result_free(&r);
    kube_client_free(admin);

    char dir[] = "/tmp/vkc-token-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/token", dir);
    write_file(file, token);

    kube_config cfg = {0};
    cfg.server = admin_cfg.server;
    cfg.ca_pem = admin_cfg.ca_pem;
    cfg.ca_pem_len = admin_cfg.ca_pem_len;
    cfg.token_file = file;
    struct kube_client *c = client(&cfg, &unlimited);
    char who[192];
    snprintf(who, sizeof who, "system:serviceaccount:%s:tok", ns);
    /* The account may not read config maps: 403 naming it proves the token
     * went along. */
    call(c, &r, "GET", cm_path(NULL), NULL, NULL);
    ck_assert_int_eq(r.status, 403);
    ck_assert_msg(r.error && strstr(r.error, who), "error: %s", r.error);
    result_free(&r);

    /* A rotated file (new inode) is read at the next request. */
    write_file(file, "not-a-valid-token");
    call(c, &r, "GET", cm_path(NULL), NULL, NULL);
    ck_assert_int_eq(r.status, 401);
    ck_assert_str_eq(r.error, "Unauthorized");
    result_free(&r);

    /* An unreadable file keeps the last token. */
    write_file(file, token);
    call(c, &r, "GET", cm_path(NULL), NULL, NULL);
    ck_assert_int_eq(r.status, 403);
    result_free(&r);
    ck_assert_int_eq(unlink(file), 0);
    call(c, &r, "GET", cm_path(NULL), NULL, NULL);
    ck_assert_int_eq(r.status, 403);
    result_free(&r);
    kube_client_free(c);

    /* A token file that never existed: requests fail with the reason. */
    c = client(&cfg, &unlimited);
    call(c, &r, "GET", cm_path(NULL), NULL, NULL);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(r.error && strstr(r.error, "bearer token"), "error: %s", r.error);
    result_free(&r);
    kube_client_free(c);

    /* An inline token. */
    cfg.token_file = NULL;
    cfg.token = token;
    c = client(&cfg, &unlimited);
    call(c, &r, "GET", cm_path(NULL), NULL, NULL);
    ck_assert_int_eq(r.status, 403);
    result_free(&r);
    kube_client_free(c);
    ck_assert_int_eq(rmdir(dir), 0);
    free(token);
}
END_TEST

/* ---- client certificates ------------------------------------------------------------- */

/* Write to path through a rename, as a certificate renewal does. */
static FILE *open_tmp(const char *path, char *tmp, size_t cap)
{
    snprintf(tmp, cap, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    return f;
}

static void commit_tmp(FILE *f, const char *tmp, const char *path)
{
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

/* A client certificate (system:masters) signed by the cluster's CA, valid
 * from `from` to `to` seconds relative to now, and its key, written to
 * cert_path and key_path. Returns its notAfter. The OpenSSL 3.0 command
 * line cannot backdate a certificate, hence the API. */
static time_t make_client_cert(const char *cert_path, const char *key_path, long from, long to)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/pki/ca.crt", cluster.dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof path, "%s/pki/ca.key", cluster.dir);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert(ca && ca_key);

    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ck_assert(key && x);
    X509_NAME *name = X509_get_subject_name(x);
    ck_assert(X509_set_version(x, 2) == 1 &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL) ^ (long)getpid()) &&
              X509_gmtime_adj(X509_getm_notBefore(x), from) &&
              X509_gmtime_adj(X509_getm_notAfter(x), to) &&
              X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                         (const unsigned char *)"system:masters", -1, -1, 0) &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                         (const unsigned char *)"vkc-test-cert", -1, -1, 0) &&
              X509_set_issuer_name(x, X509_get_subject_name(ca)) == 1 &&
              X509_set_pubkey(x, key) == 1 && X509_sign(x, ca_key, EVP_sha256()) > 0);
    struct tm tm;
    ck_assert(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1);

    char tmp[PATH_MAX];
    f = open_tmp(key_path, tmp, sizeof tmp);
    ck_assert(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
    commit_tmp(f, tmp, key_path);
    f = open_tmp(cert_path, tmp, sizeof tmp);
    ck_assert(PEM_write_X509(f, x) == 1);
    commit_tmp(f, tmp, cert_path);
    X509_free(x);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return timegm(&tm);
}

/* stderr, where the logs go, into a file of dir from now on; the fd to
 * read it back from. */
static int capture_stderr(const char *dir, int *saved)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/stderr", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    *saved = dup(STDERR_FILENO);
    ck_assert_int_ge(*saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    return fd;
}

/* What was logged so far (static buffer), echoed to the real stderr. */
static const char *captured(int fd, int saved)
{
    static char text[32768];
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    ck_assert_int_ge(n, 0);
    text[n] = '\0';
    ck_assert(write(saved, text, (size_t)n) == n);
    ck_assert_int_eq(ftruncate(fd, 0), 0);
    ck_assert(lseek(fd, 0, SEEK_SET) == 0);
    return text;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

START_TEST(client_cert_expired_then_renewed)
{
    char dir[] = "/tmp/vkc-cert-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char cert[PATH_MAX], key[PATH_MAX], config[PATH_MAX];
    snprintf(cert, sizeof cert, "%s/client.crt", dir);
    snprintf(key, sizeof key, "%s/client.key", dir);
    snprintf(config, sizeof config, "%s/kubeconfig", dir);
    time_t expired_at = make_client_cert(cert, key, -2 * 86400, -86400);
    char not_after[64];
    strftime(not_after, sizeof not_after, "not_after=%Y-%m-%dT%H:%M:%SZ", gmtime(&expired_at));
    /* Relative paths in a kubeconfig are relative to its own directory. */
    char ca_dir[PATH_MAX];
    ck_assert_ptr_nonnull(realpath(cluster.dir, ca_dir));
    FILE *f = fopen(config, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "apiVersion: v1\nkind: Config\n"
               "clusters: [{name: c, cluster: {server: '%s', certificate-authority: '%s/pki/ca.crt'}}]\n"
               "users: [{name: u, user: {client-certificate: client.crt, client-key: client.key}}]\n"
               "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
               "current-context: x\n",
            admin_cfg.server, ca_dir);
    ck_assert_int_eq(fclose(f), 0);
    kube_config cfg;
    char err[512];
    ck_assert_msg(kube_config_load_file(&cfg, config, NULL, err, sizeof err) == 0, "%s", err);

    int saved, fd = capture_stderr(dir, &saved);
    struct kube_client *c = client(&cfg, &unlimited);
    kube_config_free(&cfg);
    const char *log = captured(fd, saved);
    /* Said at start, with the date and the file. */
    ck_assert_msg(strstr(log, "level=warn") && strstr(log, "msg=\"client certificate expired\"") &&
                  strstr(log, not_after) && strstr(log, cert), "start:\n%s", log);

    /* The server refuses it with a bare 401; the log says why, once for
     * the whole streak. */
    struct result r;
    for (int i = 0; i < 3; i++) {
        call(c, &r, "GET", "/version", NULL, NULL);
        ck_assert_int_eq(r.status, 401);
        ck_assert_str_eq(r.error, "Unauthorized");
        result_free(&r);
    }
    log = captured(fd, saved);
    ck_assert_msg(count_of(log, "msg=\"client certificate expired\"") == 1 &&
                  strstr(log, "status=401") && strstr(log, not_after) && strstr(log, cert),
                  "after 401s:\n%s", log);

    /* Renewed on disk: the next request presents the new one, same client. */
    make_client_cert(cert, key, -60, 3600);
    call(c, &r, "GET", "/version", NULL, NULL);
    ck_assert_msg(r.status == 200, "renewed: %ld %s", r.status, r.error ? r.error : "");
    result_free(&r);
    log = captured(fd, saved);
    ck_assert_msg(strstr(log, "msg=\"client certificate reloaded\"") &&
                  !strstr(log, "client certificate expired"), "after renewal:\n%s", log);

    /* A half-written renewal (a key that is not the certificate's) is not
     * taken: requests keep the working pair. */
    char other_cert[PATH_MAX], other_key[PATH_MAX];
    snprintf(other_cert, sizeof other_cert, "%s/other.crt", dir);
    snprintf(other_key, sizeof other_key, "%s/other.key", dir);
    make_client_cert(other_cert, other_key, -60, 3600);
    ck_assert_int_eq(rename(other_key, key), 0);
    call(c, &r, "GET", "/version", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    result_free(&r);
    ck_assert_int_eq(rename(other_cert, cert), 0);
    call(c, &r, "GET", "/version", NULL, NULL);
    ck_assert_int_eq(r.status, 200);
    result_free(&r);
    log = captured(fd, saved);
    ck_assert_msg(strstr(log, "the key does not match the certificate") &&
                  strstr(log, "msg=\"client certificate reloaded\""), "half renewal:\n%s", log);

    kube_client_free(c);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    close(fd);
    ck_assert_int_eq(harness_remove_tree(dir), 0);
}
END_TEST

/* ---- stream framing, against a scripted local server ------------------------------------ */

#define PAUSE "\001"
#define HDR200 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"

static const char *const conn_split[] = {
    HDR200,
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"5\"}}}\n"
    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"na",
    PAUSE,
    "me\":\"b\"},\"x\":[1,2.5,true,null,{\"y\":\"}\\\"{\"}]}}\n  \n"
    "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}"
    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n{\"type\":\"ADD",
    PAUSE,
    "ED\",\"obj",
    NULL,
};
static const char *const conn_error[] = {
    HDR200,
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":500,\"message\":\"boom\"}}\n",
    NULL,
};
static const char *const conn_410[] = {
    "HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    "{\"kind\":\"Status\",\"status\":\"Failure\","
    "\"message\":\"too old resource version\",\"code\":410}",
    NULL,
};
static const char *const conn_free_inside[] = {
    HDR200,
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\n"
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"c\"}}}\n",
    PAUSE,
    NULL,
};
static const char *const conn_garbage[] = {
    HDR200,
    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n]",
    NULL,
};
static const char *const conn_text_error[] = {
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    "backend down\nsecond line\n",
    NULL,
};
static const char *const conn_429[] = {
    "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    "Connection: close\r\n\r\n"
    "{\"kind\":\"Status\",\"status\":\"Failure\",\"message\":\"too many requests\",\"code\":429}",
    NULL,
};
static const char *const conn_ok[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok",
    NULL,
};
static const char *const *const script[] = {
    conn_split, conn_error, conn_410, conn_free_inside, conn_garbage, conn_text_error,
    conn_429, conn_ok, NULL,
};

static void write_all(int fd, const char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n <= 0)
            _exit(3);
        p += n;
        len -= (size_t)n;
    }
}

static void serve_script(int lfd)
{
    for (int k = 0; script[k]; k++) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(2);
        char req[8192];
        size_t have = 0;
        while (have < sizeof req - 1) {
            ssize_t n = read(fd, req + have, sizeof req - 1 - have);
            if (n <= 0)
                _exit(2);
            have += (size_t)n;
            req[have] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        for (int i = 0; script[k][i]; i++) {
            if (strcmp(script[k][i], PAUSE) == 0)
                usleep(100 * 1000);
            else
                write_all(fd, script[k][i], strlen(script[k][i]));
        }
        close(fd);
    }
    _exit(0);
}

static void fake_watch(struct kube_client *c, struct watch_log *l, int free_at)
{
    memset(l, 0, sizeof *l);
    l->free_at = free_at;
    struct kube_watch_opts o = {
        .path = "/api/v1/pods",
        .resource_version = "1",
        .field_selector = "spec.nodeName=n1",
        .timeout_s = 30,
        .on_event = log_event,
        .on_end = log_end,
        .ud = l,
    };
    l->w = kube_watch_start(c, &o);
    ck_assert_ptr_nonnull(l->w);
}

START_TEST(watch_stream_framing)
{
    int port;
    int lfd = black_hole(&port);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        serve_script(lfd);
    }
    close(lfd);
    char server[64];
    snprintf(server, sizeof server, "http://127.0.0.1:%d", port);
    kube_config cfg = {0};
    cfg.server = server;
    struct kube_client *c = client(&cfg, NULL);
    struct watch_log l;

    /* Events split across chunks, several in one chunk, whitespace, a
     * brace inside a string; then the stream is cut inside an event. */
    fake_watch(c, &l, 0);
    AWAIT(l.ends == 1, 10);
    ck_assert_int_eq(l.n, 4);
    ck_assert_int_eq(l.ev[0].type, KUBE_ADDED);
    ck_assert_str_eq(l.ev[0].name, "a");
    ck_assert_int_eq(l.ev[1].type, KUBE_MODIFIED);
    ck_assert_str_eq(l.ev[1].name, "b");
    ck_assert_int_eq(l.ev[2].type, KUBE_BOOKMARK);
    ck_assert_str_eq(l.ev[2].rv, "9");
    ck_assert_int_eq(l.ev[3].type, KUBE_DELETED);
    ck_assert_str_eq(l.ev[3].name, "c");
    ck_assert_int_eq(l.end.kind, KUBE_WATCH_FAILED);
    ck_assert_str_eq(l.end.message, "watch stream ended in the middle of an event");
    watch_log_free(&l);

    /* An ERROR event other than 410. */
    fake_watch(c, &l, 0);
    AWAIT(l.ends == 1, 10);
    ck_assert_int_eq(l.n, 1);
    ck_assert_int_eq(l.end.kind, KUBE_WATCH_FAILED);
    ck_assert_int_eq(l.end.code, 500);
    ck_assert_str_eq(l.end.message, "boom");
    watch_log_free(&l);

    /* 410 as the HTTP status. */
    fake_watch(c, &l, 0);
    AWAIT(l.ends == 1, 10);
    ck_assert_int_eq(l.end.kind, KUBE_WATCH_GONE);
    ck_assert_int_eq(l.end.code, 410);
    ck_assert_str_eq(l.end.message, "too old resource version");
    watch_log_free(&l);

    /* Freed from inside its own on_event: nothing more arrives. */
    fake_watch(c, &l, 2);
    AWAIT(l.n >= 2, 10);
    run_for(0.4);
    ck_assert_int_eq(l.n, 2);
    ck_assert_int_eq(l.ends, 0);
    watch_log_free(&l);

    /* Not JSON. */
    fake_watch(c, &l, 0);
    AWAIT(l.ends == 1, 10);
    ck_assert_int_eq(l.n, 1);
    ck_assert_int_eq(l.end.kind, KUBE_WATCH_FAILED);
    ck_assert_msg(strstr(l.end.message, "malformed watch stream"), "message: %s", l.end.message);
    watch_log_free(&l);

    /* A plain request whose error body is text. */
    struct result r;
    call(c, &r, "GET", "/healthz", NULL, NULL);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.error, "HTTP 503: backend down");
    result_free(&r);

    /* 429 with Retry-After: 1: the next request leaves only a second later. */
    call(c, &r, "GET", "/api", NULL, NULL);
    ck_assert_int_eq(r.status, 429);
    result_free(&r);
    ev_now_update(loop);
    double refused_at = ev_now(loop);
    call(c, &r, "GET", "/api", NULL, NULL);
    ev_now_update(loop);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(ev_now(loop) - refused_at >= 0.9, "sent again after %.3f s",
                  ev_now(loop) - refused_at);
    ck_assert_uint_eq(kube_client_stats(c)->retry_after_holds, 1);
    result_free(&r);

    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Cut mid-event (a clean close), ERROR event and garbage (stopped by
     * us), 410; the freed one is not counted. */
    const struct kube_client_stats *st = kube_client_stats(c);
    ck_assert_uint_eq(st->requests[KUBE_VERB_WATCH][200], 1);
    ck_assert_uint_eq(st->requests[KUBE_VERB_WATCH][0], 2);
    ck_assert_uint_eq(st->requests[KUBE_VERB_WATCH][410], 1);
    kube_client_free(c);
}
END_TEST

/* ---- the cluster ----------------------------------------------------------------------- */

static void setup_result(const struct kube_response *resp, void *ud)
{
    struct result *r = ud;
    r->calls++;
    r->status = resp->status;
    if (resp->error)
        fprintf(stderr, "setup request: %s\n", resp->error);
}

/* One request from main, outside any test. */
static long setup_call(const char *method, const char *path, const char *body)
{
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    char err[256];
    struct kube_client *c = kube_client_new(l, &admin_cfg, NULL, err, sizeof err);
    if (!c) {
        fprintf(stderr, "kube_client_new: %s\n", err);
        ev_loop_destroy(l);
        return -1;
    }
    struct result r = {0};
    ev_timer guard;
    ev_timer_init(&guard, tick_cb, 60, 0);
    ev_timer_start(l, &guard);
    if (kube_request(c, method, path, NULL, body, body ? strlen(body) : 0, 0, setup_result, &r) > 0)
        while (!r.calls && ev_is_active(&guard))
            ev_run(l, EVRUN_ONCE);
    ev_timer_stop(l, &guard);
    kube_client_free(c);
    ev_loop_destroy(l);
    return r.calls ? r.status : -1;
}

static Suite *suite(void)
{
    Suite *s = suite_create("kube_client");
    TCase *tc = tcase_create("apiserver");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, get_version);
    tcase_add_test(tc, configmap_lifecycle);
    tcase_add_test(tc, list_paging);
    tcase_add_test(tc, watch_sees_changes);
    tcase_add_test(tc, watch_limits);
    tcase_add_test(tc, reflector_survives_watch_end);
    tcase_add_test(tc, reflector_relists_on_gone);
    tcase_add_test(tc, gone_as_event_and_status);
    tcase_add_test(tc, rate_limit_spaces_requests);
    tcase_add_test(tc, in_flight_cap);
    tcase_add_test(tc, rate_limit_queue_bound_and_free);
    tcase_add_test(tc, queue_deadline);
    tcase_add_test(tc, timeout_cancel_and_free);
    tcase_add_test(tc, tls_wrong_ca);
    tcase_add_test(tc, node_identity_forbidden);
    tcase_add_test(tc, http2_one_connection);
    tcase_add_test(tc, bearer_token_file);
    tcase_add_test(tc, client_cert_expired_then_renewed);
    tcase_add_test(tc, watch_stream_framing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    vk_log_set_component("test");
    const char *level = getenv("VKC_LOG_LEVEL");
    vk_log_set_level_name(level && *level ? level : "info");

    if (harness_cluster_up(&cluster, "vkc-kube-client") < 0)
        return EXIT_FAILURE;

    char err[512];
    int rc = EXIT_FAILURE;
    if (harness_cluster_env(&cluster, "VKC_ETCD_URL", etcd_url, sizeof etcd_url) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_NAME", node_name, sizeof node_name) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBECONFIG", node_kubeconfig,
                            sizeof node_kubeconfig) < 0) {
        fprintf(stderr, "FAIL: %s lacks VKC_ETCD_URL, VKC_NODE_NAME or VKC_NODE_KUBECONFIG\n",
                cluster.env);
        goto out;
    }
    if (kube_config_load_file(&admin_cfg, cluster.admin_kubeconfig, NULL, err, sizeof err) < 0 ||
        kube_config_load_file(&node_cfg, node_kubeconfig, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "FAIL: %s\n", err);
        goto out;
    }
    snprintf(ns, sizeof ns, "vkc-kube-client-%ld", (long)getpid());
    char body[160];
    snprintf(body, sizeof body, "{\"metadata\":{\"name\":\"%s\"}}", ns);
    long st = setup_call("POST", "/api/v1/namespaces", body);
    if (st != 201) {
        fprintf(stderr, "FAIL: cannot create namespace %s (status %ld)\n", ns, st);
        goto out;
    }

    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    rc = failed ? EXIT_FAILURE : EXIT_SUCCESS;

    char path[128];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s", ns);
    setup_call("DELETE", path, NULL);
out:
    kube_config_free(&admin_cfg);
    kube_config_free(&node_cfg);
    harness_cluster_down(&cluster);
    return rc;
}
