/* fuzz_podstatus.c -- core/podstatus.c: writing the provider's pod statuses
 * to the API server, and the JSON hash it compares them with.
 *
 * The statuses come from the provider (GetPodStatus, WatchPodStatus) as
 * JSON the core does not otherwise check. podstatus.c talks to the API
 * server through kube_client.h; this target links it with a fake API
 * server (below) that keeps one Pod, bumps its resourceVersion on every
 * accepted write and answers a write based on an older one with 409, as
 * etcd's optimistic concurrency does. The watch cache lags behind it and
 * catches up when the input says so.
 *
 * Input: a byte of options, then NUL-separated parts: the Pod as the API
 * server has it, then the statuses the provider reports, in order.
 *
 * Checked: every PUT is the Pod (same namespace, name and uid) with a
 * usable resourceVersion (never "" or "0") and a status object; a status
 * is never written backwards (a terminal phase stays, Running never
 * becomes Pending or loses its phase); json_hash ignores the order of
 * object members; podstatus_config_error and podstatus_lost give Pending
 * and Failed statuses for any pod.
 */
#include <string.h>

#include <ev.h>

#include "fuzz.h"
#include "json.h"
#include "podstatus.h"

enum {
    OPT_CACHE_FOLLOWS = 1, /* the watch cache catches up after each status */
    OPT_REFUSE = 2,        /* the API server refuses the first write (422) */
    OPT_RELIST = 4,        /* podstatus_api_changed after each status */
};

/* ---- the fake API server ------------------------------------------------- */

struct kube_client {
    struct ev_loop *loop;
    yajl_val pod;       /* the API server's copy */
    long long rv;
    bool refuse;        /* answer the next write with 422 */
    struct {
        int64_t id;
        kube_done_fn done;
        void *ud;
        long status;
        vk_buf body;
    } q;                /* podstatus has at most one request per pod */
    bool waiting;
    int64_t next_id;
    int writes;
};

struct ev_loop *kube_client_loop(const struct kube_client *c)
{
    return c->loop;
}

static const char *str_at(yajl_val v, const char *a, const char *b)
{
    return vk_json_str(vk_json_get(v, a, b, NULL), NULL);
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* The order of phases a pod moves through; -1 for none or another. */
static int rank(const char *phase)
{
    if (!phase)
        return -1;
    if (!strcmp(phase, "Pending"))
        return 0;
    if (!strcmp(phase, "Running"))
        return 1;
    return !strcmp(phase, "Succeeded") || !strcmp(phase, "Failed") ? 2 : -1;
}

static void check_forward(const char *from, const char *to)
{
    if (rank(from) == 2)
        FUZZ_CHECK(same(from, to));
    if (rank(from) == 1)
        FUZZ_CHECK(to && (rank(to) >= 1 || !strcmp(to, "Unknown")));
}

/* The pod text[0..len) with metadata.resourceVersion set to rv. */
static void with_rv(const char *text, size_t len, long long rv, vk_buf *out)
{
    yajl_val v = vk_json_parse_bytes(text, len, NULL, 0);
    FUZZ_CHECK(YAJL_IS_OBJECT(v));
    vk_json_writer w;
    FUZZ_CHECK(vk_jw_begin(&w, out) == 0);
    vk_jw_map_open(&w);
    for (size_t i = 0; i < v->u.object.len; i++) {
        yajl_val m = v->u.object.values[i];
        vk_jw_str(&w, v->u.object.keys[i]);
        if (strcmp(v->u.object.keys[i], "metadata") != 0 || !YAJL_IS_OBJECT(m)) {
            vk_jw_tree(&w, m);
            continue;
        }
        vk_jw_map_open(&w);
        for (size_t j = 0; j < m->u.object.len; j++) {
            if (strcmp(m->u.object.keys[j], "resourceVersion") == 0)
                continue;
            vk_jw_str(&w, m->u.object.keys[j]);
            vk_jw_tree(&w, m->u.object.values[j]);
        }
        char num[24];
        snprintf(num, sizeof num, "%lld", rv);
        vk_jw_kv_str(&w, "resourceVersion", num);
        vk_jw_map_close(&w);
    }
    vk_jw_map_close(&w);
    FUZZ_CHECK(vk_jw_end(&w) == 0);
    yajl_tree_free(v);
}

static void put(struct kube_client *c, const char *body, size_t len)
{
    yajl_val v = vk_json_parse_bytes(body, len, NULL, 0);
    FUZZ_CHECK(YAJL_IS_OBJECT(v));
    const char *rv = str_at(v, "metadata", "resourceVersion");
    FUZZ_CHECK(rv && *rv && strcmp(rv, "0") != 0);
    FUZZ_CHECK(same(str_at(v, "metadata", "uid"), str_at(c->pod, "metadata", "uid")));
    FUZZ_CHECK(same(str_at(v, "metadata", "name"), str_at(c->pod, "metadata", "name")));
    FUZZ_CHECK(YAJL_IS_OBJECT(vk_json_member(v, "status")));
    char current[24];
    snprintf(current, sizeof current, "%lld", c->rv);
    if (c->refuse) {
        c->refuse = false;
        c->q.status = 422;
    } else if (strcmp(rv, current) != 0) {
        c->q.status = 409;
    } else {
        check_forward(str_at(c->pod, "status", "phase"), str_at(v, "status", "phase"));
        vk_buf stored = VK_BUF_INIT;
        with_rv(body, len, ++c->rv, &stored);
        yajl_tree_free(c->pod);
        c->pod = vk_json_parse(stored.data, stored.len, NULL, 0);
        FUZZ_CHECK(c->pod != NULL);
        FUZZ_CHECK(vk_buf_append(&c->q.body, stored.data, stored.len) == 0);
        vk_buf_free(&stored);
        c->q.status = 200;
        c->writes++;
    }
    yajl_tree_free(v);
}

int64_t kube_request(struct kube_client *c, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len, long timeout_ms,
                     kube_done_fn done, void *ud)
{
    (void)content_type;
    (void)timeout_ms;
    FUZZ_CHECK(!c->waiting);
    FUZZ_CHECK(path && strncmp(path, "/api/v1/namespaces/", 19) == 0);
    vk_buf_reset(&c->q.body);
    if (strcmp(method, "PUT") == 0) {
        FUZZ_CHECK(strstr(path, "/status") != NULL);
        put(c, body, len);
    } else {
        FUZZ_CHECK(strcmp(method, "GET") == 0);
        vk_buf text = VK_BUF_INIT;
        vk_json_writer w;
        FUZZ_CHECK(vk_jw_begin(&w, &text) == 0);
        vk_jw_tree(&w, c->pod);
        FUZZ_CHECK(vk_jw_end(&w) == 0);
        FUZZ_CHECK(vk_buf_append(&c->q.body, text.data, text.len) == 0);
        vk_buf_free(&text);
        c->q.status = 200;
    }
    c->q.id = ++c->next_id;
    c->q.done = done;
    c->q.ud = ud;
    c->waiting = true;
    return c->q.id;
}

int kube_request_cancel(struct kube_client *c, int64_t id)
{
    if (!c->waiting || c->q.id != id)
        return -1;
    c->waiting = false;
    return 0;
}

static bool answer(struct kube_client *c)
{
    if (!c->waiting)
        return false;
    c->waiting = false;
    struct kube_response resp = {c->q.status, c->q.body.data ? c->q.body.data : "", c->q.body.len,
                                 c->q.status == 200 ? NULL : "refused", false};
    c->q.done(&resp, c->q.ud);
    return true;
}

/* ---- the watch cache --------------------------------------------------------- */

static yajl_val cache;

static yajl_val lookup(void *ud, const char *key)
{
    (void)ud;
    (void)key;
    return cache;
}

static yajl_val copy(yajl_val v)
{
    vk_buf text = VK_BUF_INIT;
    vk_json_writer w;
    FUZZ_CHECK(vk_jw_begin(&w, &text) == 0);
    vk_jw_tree(&w, v);
    FUZZ_CHECK(vk_jw_end(&w) == 0);
    yajl_val c = vk_json_parse(text.data, text.len, NULL, 0);
    vk_buf_free(&text);
    return c;
}

/* ---- json_hash -------------------------------------------------------------------- */

static bool unique_keys(yajl_val v)
{
    if (YAJL_IS_ARRAY(v)) {
        for (size_t i = 0; i < v->u.array.len; i++)
            if (!unique_keys(v->u.array.values[i]))
                return false;
    } else if (YAJL_IS_OBJECT(v)) {
        for (size_t i = 0; i < v->u.object.len; i++) {
            for (size_t j = 0; j < i; j++)
                if (!strcmp(v->u.object.keys[i], v->u.object.keys[j]))
                    return false;
            if (!unique_keys(v->u.object.values[i]))
                return false;
        }
    }
    return true;
}

/* v with the members of every object in reverse order. */
static void write_reversed(vk_json_writer *w, yajl_val v)
{
    if (YAJL_IS_ARRAY(v)) {
        vk_jw_array_open(w);
        for (size_t i = 0; i < v->u.array.len; i++)
            write_reversed(w, v->u.array.values[i]);
        vk_jw_array_close(w);
    } else if (YAJL_IS_OBJECT(v)) {
        vk_jw_map_open(w);
        for (size_t i = v->u.object.len; i-- > 0;) {
            /* As vk_jw_tree writes keys: byte for byte (vk_jw_str would
             * replace what it does not take for UTF-8, such as the overlong
             * forms yajl's parser lets through). */
            const char *k = v->u.object.keys[i];
            vk_jw_check(w, yajl_gen_string(w->g, (const unsigned char *)k, strlen(k)));
            write_reversed(w, v->u.object.values[i]);
        }
        vk_jw_map_close(w);
    } else {
        vk_jw_tree(w, v);
    }
}

static void check_hash(yajl_val v)
{
    if (!unique_keys(v))
        return;
    vk_buf text = VK_BUF_INIT;
    vk_json_writer w;
    FUZZ_CHECK(vk_jw_begin(&w, &text) == 0);
    write_reversed(&w, v);
    FUZZ_CHECK(vk_jw_end(&w) == 0);
    yajl_val r = vk_json_parse(text.data, text.len, NULL, 0);
    FUZZ_CHECK(r != NULL);
    FUZZ_CHECK(json_hash(JSON_HASH_SEED, v) == json_hash(JSON_HASH_SEED, r));
    yajl_tree_free(r);
    vk_buf_free(&text);
}

/* ---- the target ----------------------------------------------------------------------- */

static void settle(struct kube_client *c)
{
    for (int i = 0; i < 32 && answer(c); i++)
        ev_run(c->loop, EVRUN_NOWAIT);
}

static void check_own_status(yajl_val st, const char *phase)
{
    FUZZ_CHECK(YAJL_IS_OBJECT(st));
    FUZZ_CHECK(same(vk_json_str(vk_json_member(st, "phase"), NULL), phase));
    yajl_tree_free(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t opts = fuzz_byte(&in);
    const uint8_t *part;
    size_t len;
    fuzz_part(&in, 0, &part, &len);
    yajl_val pod = vk_json_parse_bytes(part, len, NULL, 0);
    if (pod)
        check_hash(pod);
    const char *ns = str_at(pod, "metadata", "namespace");
    const char *name = str_at(pod, "metadata", "name");
    const char *uid = str_at(pod, "metadata", "uid");
    if (!YAJL_IS_OBJECT(pod) || !ns || !name || !uid || strchr(ns, '/')) {
        yajl_tree_free(pod);
        return 0;
    }
    check_own_status(podstatus_config_error(pod, "secret \"db\" not found"), "Pending");
    check_own_status(podstatus_lost(pod, "the provider lost the pod"), "Failed");

    struct kube_client kube = {.loop = ev_default_loop(0), .pod = pod, .rv = 7,
                               .refuse = opts & OPT_REFUSE};
    FUZZ_CHECK(kube.loop != NULL);
    /* The API's copy starts at resourceVersion 7, whatever the input said. */
    vk_buf text = VK_BUF_INIT, start = VK_BUF_INIT;
    vk_json_writer w;
    FUZZ_CHECK(vk_jw_begin(&w, &text) == 0);
    vk_jw_tree(&w, pod);
    FUZZ_CHECK(vk_jw_end(&w) == 0);
    with_rv(text.data, text.len, kube.rv, &start);
    kube.pod = vk_json_parse(start.data, start.len, NULL, 0);
    yajl_tree_free(pod);
    vk_buf_free(&text);
    vk_buf_free(&start);
    FUZZ_CHECK(kube.pod != NULL);
    cache = copy(kube.pod);
    ns = str_at(kube.pod, "metadata", "namespace");
    name = str_at(kube.pod, "metadata", "name");
    char key[512];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    char *pod_uid = strdup(str_at(kube.pod, "metadata", "uid"));
    FUZZ_CHECK(pod_uid != NULL);

    podstatus_config cfg = {.kube = &kube, .lookup = lookup};
    podstatus *ps = podstatus_new(&cfg);
    FUZZ_CHECK(ps != NULL);
    for (int i = 0; i < 8 && fuzz_part(&in, 0, &part, &len); i++) {
        yajl_val status = vk_json_parse_bytes(part, len, NULL, 0);
        if (status)
            check_hash(status);
        /* As pods.c does: a status that is not an object is dropped there. */
        if (!YAJL_IS_OBJECT(status)) {
            yajl_tree_free(status);
            continue;
        }
        FUZZ_CHECK(podstatus_set(ps, key, pod_uid, status) == 0);
        settle(&kube);
        if (opts & OPT_CACHE_FOLLOWS) {
            yajl_tree_free(cache);
            cache = copy(kube.pod);
            podstatus_api_changed(ps, key);
            settle(&kube);
        } else if (opts & OPT_RELIST) {
            podstatus_api_changed(ps, key);
            settle(&kube);
        }
    }
    podstatus_forget(ps, key);
    podstatus_free(ps);
    free(pod_uid);
    yajl_tree_free(cache);
    cache = NULL;
    yajl_tree_free(kube.pod);
    vk_buf_free(&kube.q.body);
    /* The loop lives on, with nothing left running: ev_run counts what is. */
    FUZZ_CHECK(ev_run(kube.loop, EVRUN_NOWAIT) == 0);
    return 0;
}
