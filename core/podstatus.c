/* podstatus.c -- per-pod status slots and their writes.
 *
 * A slot holds the desired status and what is known of the API's: the
 * hashes (desired, API) seen when the two were last found in step, so a
 * watch event only costs a look at the cache's view (podstatus_view): no
 * tree. `fresh` is a copy of the pod newer than the watch cache (the
 * answer to our PUT, or a GET after a 409), used as the base of the next
 * write until the cache catches up. Both documents are kept packed, with
 * what the decision reads beside them; trees are built only to merge and
 * write.
 *
 * At most max_writes slots have a request out; the others that want to
 * write wait in a FIFO of slots (one place per pod, so bounded by the
 * pods) and build their write when their turn comes, from the newest
 * status. The API client's own FIFO thus never fills with status writes.
 */
#include "podstatus.h"

#include <ev.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "intern.h"
#include "json.h"
#include "log.h"
#include "logval.h"
#include "pod.h"
#include "podkey.h"
#include "ratelimit.h"

#define BUCKETS 1024 /* slots, one per pod: chains of ~10 at 10k pods */
#define RETRY_INITIAL_S 0.5
#define RETRY_MAX_S 30.0
/* Conflicts in a row answered by an immediate re-read; beyond, back off. */
#define MAX_QUICK_CONFLICTS 3
/* A pod whose status changes more often than this in a second floods: a
 * write per API round trip would give it the client's whole QPS budget
 * and say nothing anyone can read. Its writes are then spaced by
 * FLOOD_INTERVAL_S (the newest status always goes out) until a second
 * passes with fewer changes. Twice a steady 10 a second, a container
 * restarting every 100 ms, which is still written change by change: a
 * one-second window counts 11 of a steady 10/s when they straddle it. */
#define FLOOD_CHANGES_PER_S 20
#define FLOOD_INTERVAL_S 1.0
#define FLOOD_WARN_EVERY_S 60.0
/* Requests (PUT, or GET after a conflict) out at once by default: a
 * little over the API client's in-flight cap (100), so the wire stays
 * full while answers are handled, and no more: beyond, writes would wait
 * in the client's FIFO, each with a body built from a status that may be
 * stale by the time it leaves, and fill that FIFO for the deletes and
 * events that share it. A slot waiting here instead writes its newest
 * status when its turn comes. */
#define DEFAULT_MAX_OUT 150
#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct slot {
    struct slot *next;
    podstatus *ps;
    char *key;                     /* "ns/name"; ns and name point into it */
    const char *ns, *name;
    const char *uid;               /* interned, as fresh_uid */
    packed_json desired;           /* a PodStatus; empty until set */
    uint64_t desired_hash;
    bool in_step;                  /* in_step_desired/api are meaningful */
    uint64_t in_step_desired, in_step_api;
    uint64_t writing;              /* desired_hash of the write in flight */
    packed_json fresh;             /* a Pod; empty when none */
    const char *fresh_uid;         /* fresh's view, the uid owned */
    long long fresh_rv;
    uint64_t fresh_status_hash;
    int64_t req;                   /* PUT or GET in flight, 0 when none */
    bool dirty;                    /* look again when req completes */
    unsigned conflicts;
    struct backoff backoff;
    ev_timer retry;                /* back-off, or the flood's pacing */
    ev_tstamp window;              /* start of the second changes counts */
    unsigned changes;              /* desired status changes in it */
    bool flooding;
    ev_tstamp last_write, warned;  /* 0: never */
    bool waiting;                  /* in the podstatus' wait list */
    struct slot *wait_prev, *wait_next;
} slot;

struct podstatus {
    struct kube_client *kube;
    struct ev_loop *loop;
    podstatus_lookup_fn lookup;
    podstatus_peek_fn peek;
    void *ud;
    metric *writes;
    metric *floods;
    metric *pending;               /* gauge by state: out, waiting */
    slot *buckets[BUCKETS];
    unsigned failing;
    unsigned out, max_out;         /* slots with a request out; the bound */
    unsigned n_waiting;
    slot *wait_head, *wait_tail;   /* slots that want to write, oldest first */
    ev_timer admit;                /* lets waiting slots write, from the loop */
    bool admitting;                /* in admit_cb: the head's turn */
};

static void evaluate(slot *s);

/* ---- canonical hashing ------------------------------------------------------ */

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 1099511628211u;
    return h;
}

static bool empty(yajl_val v)
{
    return !v || YAJL_IS_NULL(v) || (YAJL_IS_STRING(v) && !*v->u.string) ||
           (YAJL_IS_ARRAY(v) && !v->u.array.len) || (YAJL_IS_OBJECT(v) && !v->u.object.len);
}

static bool ignored_key(const char *k)
{
    return !strcmp(k, "lastTransitionTime") || !strcmp(k, "lastProbeTime");
}

typedef struct member {
    const char *key;
    yajl_val val;
} member;

static int by_key(const void *a, const void *b)
{
    return strcmp(((const member *)a)->key, ((const member *)b)->key);
}

uint64_t json_hash(uint64_t h, yajl_val v)
{
    if (empty(v))
        return mix(h, "~", 1);
    if (YAJL_IS_STRING(v))
        return mix(mix(h, "s", 1), v->u.string, strlen(v->u.string) + 1);
    if (YAJL_IS_NUMBER(v))
        return mix(mix(h, "#", 1), v->u.number.r, strlen(v->u.number.r) + 1);
    if (YAJL_IS_TRUE(v))
        return mix(h, "t", 1);
    if (YAJL_IS_FALSE(v))
        return mix(h, "f", 1);
    if (YAJL_IS_ARRAY(v)) {
        h = mix(h, "[", 1);
        for (size_t i = 0; i < v->u.array.len; i++)
            h = json_hash(h, v->u.array.values[i]);
        return mix(h, "]", 1);
    }
    size_t n = v->u.object.len, m = 0;
    member *ms = malloc(n * sizeof *ms);
    if (!ms) /* unsorted: at worst a needless write */
        return mix(h, &v, sizeof v);
    for (size_t i = 0; i < n; i++)
        if (!empty(v->u.object.values[i]) && !ignored_key(v->u.object.keys[i]))
            ms[m++] = (member){v->u.object.keys[i], v->u.object.values[i]};
    qsort(ms, m, sizeof *ms, by_key);
    h = mix(h, "{", 1);
    for (size_t i = 0; i < m; i++) {
        h = mix(h, ms[i].key, strlen(ms[i].key) + 1);
        h = json_hash(h, ms[i].val);
    }
    free(ms);
    return mix(h, "}", 1);
}

/* ---- slots ---------------------------------------------------------------------- */

static unsigned bucket(const char *key)
{
    return (unsigned)(mix(JSON_HASH_SEED, key, strlen(key)) % BUCKETS);
}

static slot **slot_of(podstatus *ps, const char *key)
{
    slot **p = &ps->buckets[bucket(key)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->next;
    return p;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    evaluate(w->data);
}

static slot *new_slot(podstatus *ps, const char *key)
{
    slot *s = calloc(1, sizeof *s);
    if (!s || !(s->key = podkey_split(key, &s->ns, &s->name))) {
        free(s);
        return NULL;
    }
    s->ps = ps;
    backoff_init(&s->backoff, RETRY_INITIAL_S, RETRY_MAX_S, 0);
    ev_init(&s->retry, retry_cb);
    s->retry.data = s;
    return s;
}

/* ---- the bound on requests out ----------------------------------------------- */

static void publish(podstatus *ps)
{
    metric_set(ps->pending, (const char *[]){"out"}, ps->out);
    metric_set(ps->pending, (const char *[]){"waiting"}, ps->n_waiting);
}

static void admit_soon(podstatus *ps)
{
    if (!ev_is_active(&ps->admit)) {
        ev_timer_set(&ps->admit, 0., 0.);
        ev_timer_start(ps->loop, &ps->admit);
    }
}

static void wait_for_room(slot *s)
{
    podstatus *ps = s->ps;
    if (ps->out < ps->max_out)
        admit_soon(ps);
    if (s->waiting)
        return; /* keeps its place; it writes its newest status anyway */
    s->waiting = true;
    s->wait_prev = ps->wait_tail;
    s->wait_next = NULL;
    *(ps->wait_tail ? &ps->wait_tail->wait_next : &ps->wait_head) = s;
    ps->wait_tail = s;
    ps->n_waiting++;
    publish(ps);
}

static void stop_waiting(slot *s)
{
    podstatus *ps = s->ps;
    if (!s->waiting)
        return;
    *(s->wait_prev ? &s->wait_prev->wait_next : &ps->wait_head) = s->wait_next;
    *(s->wait_next ? &s->wait_next->wait_prev : &ps->wait_tail) = s->wait_prev;
    s->waiting = false;
    ps->n_waiting--;
    publish(ps);
}

/* s's request was sent (id > 0) or refused. */
static void sent(slot *s, int64_t id)
{
    s->req = id > 0 ? id : 0;
    if (id > 0) {
        s->ps->out++;
        publish(s->ps);
    }
}

/* s's request is over: its place goes to the oldest waiting slot, from
 * the loop (the caller may still act on s). */
static void ended(slot *s)
{
    podstatus *ps = s->ps;
    s->req = 0;
    ps->out--;
    publish(ps);
    if (ps->wait_head)
        admit_soon(ps);
}

/* evaluate(s) as if its turn had come (a place must be free). */
static void evaluate_now(slot *s)
{
    bool was = s->ps->admitting;
    s->ps->admitting = true;
    evaluate(s);
    s->ps->admitting = was;
}

static void admit_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    podstatus *ps = w->data;
    ps->admitting = true;
    while (ps->out < ps->max_out && ps->wait_head) {
        slot *s = ps->wait_head;
        stop_waiting(s);
        evaluate(s);
    }
    ps->admitting = false;
}

static void free_slot(podstatus *ps, slot *s)
{
    if (s->req) {
        kube_request_cancel(ps->kube, s->req);
        ended(s);
    }
    stop_waiting(s);
    ev_timer_stop(ps->loop, &s->retry);
    packed_clear(&s->desired);
    packed_clear(&s->fresh);
    unintern(s->fresh_uid);
    free(s->key);
    unintern(s->uid);
    free(s);
}

static void count(podstatus *ps, const char *result)
{
    metric_add(ps->writes, (const char *[]){result}, 1);
}

/* Once per failure streak at warn level; the rest at debug. */
static void failed(slot *s, const char *what, long status, const char *error)
{
    podstatus *ps = s->ps;
    char pod_v[LOGVAL_MAX], err_v[LOGVAL_MAX];
    enum vk_log_level level = ps->failing++ ? VK_LOG_DEBUG : VK_LOG_WARN;
    if (vk_log_enabled(level))
        vk_log(level, what, "pod=%s status=%ld error=%s", logval(pod_v, sizeof pod_v, s->key),
               status, logval(err_v, sizeof err_v, error ? error : ""));
}

static void succeeded(podstatus *ps)
{
    if (ps->failing)
        vk_info("pod status writes work again", "failures=%u", ps->failing);
    ps->failing = 0;
}

/* One more change of the desired status: decide whether the pod floods,
 * and say so, at most once a minute per pod. */
static void count_change(slot *s)
{
    podstatus *ps = s->ps;
    ev_tstamp now = ev_now(ps->loop);
    if (now - s->window >= 1.0) {
        s->flooding = s->changes > FLOOD_CHANGES_PER_S && now - s->window < 2.0;
        s->window = now;
        s->changes = 0;
    }
    if (++s->changes <= FLOOD_CHANGES_PER_S || s->flooding)
        return;
    s->flooding = true;
    metric_add(ps->floods, NULL, 1);
    if (s->warned && now - s->warned < FLOOD_WARN_EVERY_S)
        return;
    s->warned = now;
    char pod_v[LOGVAL_MAX];
    vk_warn("provider floods a pod's status; writing it once a second", "pod=%s changes_per_s_over=%d",
            logval(pod_v, sizeof pod_v, s->key), FLOOD_CHANGES_PER_S);
}

static void retry_later(slot *s)
{
    ev_timer_stop(s->ps->loop, &s->retry);
    ev_timer_set(&s->retry, backoff_next(&s->backoff), 0.);
    ev_timer_start(s->ps->loop, &s->retry);
}

/* ---- deciding ---------------------------------------------------------------------- */

static const char *str_at(yajl_val v, const char *a, const char *b)
{
    return vk_json_str(vk_json_get(v, a, b, NULL), NULL);
}

/* etcd revisions in decimal; anything else compares as unknown (-1). */
static long long rv_number(yajl_val pod)
{
    const char *rv = str_at(pod, "metadata", "resourceVersion");
    char *end;
    if (!rv || !*rv)
        return -1;
    long long n = strtoll(rv, &end, 10);
    return *end ? -1 : n;
}

podstatus_view podstatus_view_of(yajl_val pod)
{
    return (podstatus_view){
        .uid = str_at(pod, "metadata", "uid"),
        .rv = rv_number(pod),
        .status_hash = json_hash(JSON_HASH_SEED, vk_json_member(pod, "status")),
    };
}

static void drop_fresh(slot *s)
{
    packed_clear(&s->fresh);
    unintern(s->fresh_uid);
    s->fresh_uid = NULL;
}

/* Keep pod (the API server's answer) as fresh. */
static void set_fresh(slot *s, yajl_val pod)
{
    podstatus_view v = podstatus_view_of(pod);
    const char *uid = v.uid ? intern(v.uid) : NULL;
    if (!uid || packed_set_tree(&s->fresh, pod) < 0) {
        unintern(uid); /* without it the cache's copy is the base: a 409 at worst */
        drop_fresh(s);
        return;
    }
    unintern(s->fresh_uid);
    s->fresh_uid = uid;
    s->fresh_rv = v.rv;
    s->fresh_status_hash = v.status_hash;
}

/* The cache's view of the pod; false when it has none. */
static bool cache_view(slot *s, podstatus_view *v)
{
    podstatus *ps = s->ps;
    if (ps->peek)
        return ps->peek(ps->ud, s->key, v);
    yajl_val pod = ps->lookup(ps->ud, s->key);
    if (!YAJL_IS_OBJECT(pod))
        return false;
    *v = podstatus_view_of(pod);
    return true;
}

/* The view of the newest copy of the pod: the cache's, or fresh when it
 * is newer (*from_fresh). false when the cache has no copy. */
static bool base_view(slot *s, podstatus_view *v, bool *from_fresh)
{
    bool cached = cache_view(s, v);
    *from_fresh = false;
    if (s->fresh.z) {
        if (cached && v->uid && s->fresh_uid && !strcmp(v->uid, s->fresh_uid) &&
            s->fresh_rv > v->rv) {
            *v = (podstatus_view){s->fresh_uid, s->fresh_rv, s->fresh_status_hash};
            *from_fresh = true;
            return true;
        }
        drop_fresh(s);
    }
    return cached;
}

static int phase_rank(const char *phase)
{
    if (!phase)
        return -1;
    if (!strcmp(phase, "Pending"))
        return 0;
    if (!strcmp(phase, "Running"))
        return 1;
    if (!strcmp(phase, "Succeeded") || !strcmp(phase, "Failed"))
        return 2;
    return -1;
}

/* A status without a phase, or with one Kubernetes does not know, never
 * replaces a known phase: a provider's empty {} must not erase Running. */
static bool goes_backwards(const char *api, const char *want)
{
    int a = phase_rank(api);
    if (a >= 0 && phase_rank(want) < 0)
        return true;
    if (a == 2)
        return !want || strcmp(api, want) != 0;
    return a == 1 && phase_rank(want) == 0;
}

static bool has_condition(yajl_val conds, const char *type)
{
    for (size_t i = 0; YAJL_IS_ARRAY(conds) && i < conds->u.array.len; i++)
        if (!strcmp(vk_json_str(vk_json_member(conds->u.array.values[i], "type"), ""), type))
            return true;
    return false;
}

static yajl_val find_named(yajl_val list, const char *name)
{
    for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++)
        if (!strcmp(vk_json_str(vk_json_member(list->u.array.values[i], "name"), ""), name))
            return list->u.array.values[i];
    return NULL;
}

/* The restart count the API should show for the provider's container
 * status want, given the API's status of the same container. A provider
 * that lost its pods (it crashed, or its back end did) runs them again from
 * a count of 0; the containers did restart, so, as the kubelet does, count
 * on from the API's number: one more when the container changed (a new,
 * known containerID), never less than the API already shows. */
static long long restart_count(yajl_val want, yajl_val api)
{
    long long n = vk_json_int(vk_json_member(want, "restartCount"), 0);
    if (!api)
        return n;
    long long had = vk_json_int(vk_json_member(api, "restartCount"), 0);
    const char *id = vk_json_str(vk_json_member(want, "containerID"), "");
    const char *had_id = vk_json_str(vk_json_member(api, "containerID"), "");
    if (*id && *had_id && strcmp(id, had_id) != 0)
        had++;
    return n > had ? n : had;
}

static void write_container_statuses(vk_json_writer *w, yajl_val want, yajl_val api)
{
    vk_jw_array_open(w);
    for (size_t i = 0; YAJL_IS_ARRAY(want) && i < want->u.array.len; i++) {
        yajl_val c = want->u.array.values[i];
        if (!YAJL_IS_OBJECT(c)) {
            vk_jw_tree(w, c);
            continue;
        }
        yajl_val had = find_named(api, vk_json_str(vk_json_member(c, "name"), ""));
        vk_jw_map_open(w);
        for (size_t k = 0; k < c->u.object.len; k++) {
            if (!strcmp(c->u.object.keys[k], "restartCount"))
                continue;
            vk_jw_str(w, c->u.object.keys[k]);
            vk_jw_tree(w, c->u.object.values[k]);
        }
        vk_jw_kv_int(w, "restartCount", restart_count(c, had));
        vk_jw_map_close(w);
    }
    vk_jw_array_close(w);
}

/* desired, with what the API has that it does not set (conditions of
 * other types, qosClass), the first startTime the API recorded (the
 * kubelet's: set once, when the pod was first acknowledged, so a provider
 * that starts the pod again does not move it), and restart counts that
 * survive the provider losing its pods. */
static void write_merged(vk_json_writer *w, yajl_val desired, yajl_val api)
{
    yajl_val want_conds = vk_json_member(desired, "conditions");
    yajl_val api_conds = vk_json_member(api, "conditions");
    bool api_started = vk_json_member(api, "startTime") != NULL;
    vk_jw_map_open(w);
    for (size_t i = 0; YAJL_IS_OBJECT(desired) && i < desired->u.object.len; i++) {
        const char *k = desired->u.object.keys[i];
        if (!strcmp(k, "conditions") || (!strcmp(k, "startTime") && api_started))
            continue;
        vk_jw_str(w, k);
        if (!strcmp(k, "containerStatuses") || !strcmp(k, "initContainerStatuses"))
            write_container_statuses(w, desired->u.object.values[i], vk_json_member(api, k));
        else
            vk_jw_tree(w, desired->u.object.values[i]);
    }
    vk_jw_str(w, "conditions");
    vk_jw_array_open(w);
    for (size_t i = 0; YAJL_IS_ARRAY(want_conds) && i < want_conds->u.array.len; i++)
        vk_jw_tree(w, want_conds->u.array.values[i]);
    for (size_t i = 0; YAJL_IS_ARRAY(api_conds) && i < api_conds->u.array.len; i++) {
        yajl_val c = api_conds->u.array.values[i];
        const char *type = vk_json_str(vk_json_member(c, "type"), NULL);
        if (type && !has_condition(want_conds, type))
            vk_jw_tree(w, c);
    }
    vk_jw_array_close(w);
    static const char *const kept[] = {"qosClass", "startTime"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        yajl_val v = vk_json_member(api, kept[i]);
        if (v && (!vk_json_member(desired, kept[i]) || !strcmp(kept[i], "startTime"))) {
            vk_jw_str(w, kept[i]);
            vk_jw_tree(w, v);
        }
    }
    vk_jw_map_close(w);
}

/* The Pod document pod with its status replaced by the merged one. */
static int write_pod(vk_buf *out, yajl_val pod, yajl_val desired)
{
    yajl_val api = vk_json_member(pod, "status");
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    for (size_t i = 0; i < pod->u.object.len; i++) {
        const char *k = pod->u.object.keys[i];
        if (!strcmp(k, "status"))
            continue;
        vk_jw_str(&w, k);
        vk_jw_tree(&w, pod->u.object.values[i]);
    }
    vk_jw_str(&w, "status");
    write_merged(&w, desired, api);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

/* The merged status's hash, to compare with the API's. */
static int merged_hash(yajl_val desired, yajl_val api, uint64_t *out)
{
    vk_buf b = VK_BUF_INIT;
    vk_json_writer w;
    vk_jw_begin(&w, &b);
    write_merged(&w, desired, api);
    if (vk_jw_end(&w) < 0) {
        vk_buf_free(&b);
        return -1;
    }
    yajl_val merged = vk_json_parse(b.data, b.len, NULL, 0);
    vk_buf_free(&b);
    if (!merged)
        return -1;
    *out = json_hash(JSON_HASH_SEED, merged);
    yajl_tree_free(merged);
    return 0;
}

/* ---- writing ---------------------------------------------------------------------- */

static void read_done(const struct kube_response *resp, void *ud)
{
    slot *s = ud;
    ended(s);
    if (resp->cancelled)
        return;
    if (resp->status == 200) {
        yajl_val pod = vk_json_parse(resp->body, resp->len, NULL, 0);
        if (YAJL_IS_OBJECT(pod))
            set_fresh(s, pod);
        yajl_tree_free(pod);
    } else if (resp->status == 404) {
        return; /* gone: its DELETED event will forget the slot */
    } else if (!(resp->status >= 200 && resp->status < 300)) {
        failed(s, "cannot re-read pod after a conflict", resp->status, resp->error);
        retry_later(s);
        return;
    }
    s->dirty = false;
    /* The write the re-read was for goes now, in the place the GET had:
     * behind the waiting slots, the copy would be stale by its turn. */
    evaluate_now(s);
}

static void reread(slot *s)
{
    vk_buf path = VK_BUF_INIT;
    int64_t id = -1;
    if (vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s", s->ns, s->name) == 0)
        id = kube_request(s->ps->kube, "GET", path.data, NULL, NULL, 0, 0, read_done, s);
    vk_buf_free(&path);
    sent(s, id);
    if (id < 0)
        retry_later(s);
}

static void write_done(const struct kube_response *resp, void *ud)
{
    slot *s = ud;
    podstatus *ps = s->ps;
    ended(s);
    if (resp->cancelled)
        return;
    if (resp->status == 200 || resp->status == 201) {
        count(ps, "ok");
        succeeded(ps);
        s->conflicts = 0;
        backoff_reset(&s->backoff);
        yajl_val pod = vk_json_parse(resp->body, resp->len, NULL, 0);
        if (YAJL_IS_OBJECT(pod)) {
            s->in_step = true;
            s->in_step_desired = s->writing;
            s->in_step_api = json_hash(JSON_HASH_SEED, vk_json_member(pod, "status"));
            set_fresh(s, pod);
        }
        yajl_tree_free(pod);
    } else if (resp->status == 409) {
        count(ps, "conflict");
        if (++s->conflicts <= MAX_QUICK_CONFLICTS) {
            reread(s);
            return;
        }
        failed(s, "pod status write conflicts", resp->status, resp->error);
        s->conflicts = 0;
        retry_later(s);
        return;
    } else if (resp->status == 404) {
        count(ps, "not_found");
        return;
    } else {
        count(ps, "error");
        failed(s, "cannot write pod status", resp->status, resp->error);
        if (resp->status == 400 || resp->status == 422) {
            /* The API refuses this status as written: wait for a new one. */
            s->in_step = false;
            s->dirty = false;
            return;
        }
        retry_later(s);
        return;
    }
    if (s->dirty) {
        s->dirty = false;
        evaluate(s);
    }
}

/* The merge and the write, once the views said the API is not in step:
 * only here are trees built. pod is the base (borrowed). */
static void write_status(slot *s, yajl_val pod, uint64_t api_hash)
{
    podstatus *ps = s->ps;
    char pod_v[LOGVAL_MAX];
    yajl_val desired = packed_tree(&s->desired);
    yajl_val api = vk_json_member(pod, "status");
    uint64_t want;
    if (!desired || merged_hash(desired, api, &want) < 0) {
        yajl_tree_free(desired);
        retry_later(s);
        return;
    }
    const char *api_phase = vk_json_str(vk_json_member(api, "phase"), NULL);
    const char *want_phase = vk_json_str(vk_json_member(desired, "phase"), NULL);
    if (want == api_hash || goes_backwards(api_phase, want_phase)) {
        if (want != api_hash)
            vk_debug("pod status not written: it would go backwards", "pod=%s from=%s to=%s",
                     logval(pod_v, sizeof pod_v, s->key), api_phase, want_phase ? want_phase : "");
        s->in_step = true;
        s->in_step_desired = s->desired_hash;
        s->in_step_api = api_hash;
        yajl_tree_free(desired);
        return;
    }
    const char *rv = str_at(pod, "metadata", "resourceVersion");
    if (!rv || !*rv || !strcmp(rv, "0")) {
        failed(s, "pod has no usable resourceVersion", 0, rv ? rv : "");
        yajl_tree_free(desired);
        return;
    }
    vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT;
    int64_t id = -1;
    if (vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s/status", s->ns, s->name) == 0 &&
        write_pod(&body, pod, desired) == 0) {
        s->writing = s->desired_hash;
        s->last_write = ev_now(ps->loop);
        id = kube_request(ps->kube, "PUT", path.data, NULL, body.data, body.len, 0,
                          write_done, s);
    }
    vk_buf_free(&path);
    vk_buf_free(&body);
    yajl_tree_free(desired);
    sent(s, id);
    if (id < 0) {
        count(ps, "error");
        retry_later(s);
    }
}

static void evaluate(slot *s)
{
    podstatus *ps = s->ps;
    if (s->req) {
        s->dirty = true;
        return;
    }
    if (ev_is_active(&s->retry))
        return; /* backing off or pacing; the timer evaluates */
    if (s->flooding) {
        ev_tstamp wait = s->last_write + FLOOD_INTERVAL_S - ev_now(ps->loop);
        if (wait > 0) {
            ev_timer_set(&s->retry, wait, 0.);
            ev_timer_start(ps->loop, &s->retry);
            return;
        }
    }
    podstatus_view v;
    bool from_fresh;
    if (!base_view(s, &v, &from_fresh) || !s->desired.z || !s->uid ||
        strcmp(v.uid ? v.uid : "", s->uid))
        return;
    if (s->in_step && s->in_step_desired == s->desired_hash && s->in_step_api == v.status_hash)
        return;
    /* First come, first served: while others wait, a newcomer waits too. */
    if (ps->out >= ps->max_out || (ps->wait_head && !ps->admitting)) {
        wait_for_room(s);
        return;
    }
    yajl_val fresh = from_fresh ? packed_tree(&s->fresh) : NULL;
    yajl_val pod = from_fresh ? fresh : ps->lookup(ps->ud, s->key);
    if (YAJL_IS_OBJECT(pod))
        write_status(s, pod, v.status_hash);
    else
        retry_later(s); /* memory ran out building the tree */
    yajl_tree_free(fresh);
}

/* ---- public -------------------------------------------------------------------------- */

podstatus *podstatus_new(const podstatus_config *cfg)
{
    podstatus *ps = calloc(1, sizeof *ps);
    if (!ps)
        return NULL;
    ps->kube = cfg->kube;
    ps->loop = kube_client_loop(cfg->kube);
    ps->lookup = cfg->lookup;
    ps->peek = cfg->peek;
    ps->ud = cfg->ud;
    ps->max_out = cfg->max_writes ? cfg->max_writes : DEFAULT_MAX_OUT;
    ev_init(&ps->admit, admit_cb);
    ps->admit.data = ps;
    if (cfg->metrics) {
        ps->writes = metrics_counter(cfg->metrics, "status_writes_total",
                                     "Pod status writes to the API server, by result.", "result");
        ps->floods = metrics_counter(cfg->metrics, "status_floods_total",
                                     "Times a pod's status changed more than "
                                     STR(FLOOD_CHANGES_PER_S) " times in a second; its writes "
                                     "are then paced to one per " STR(FLOOD_INTERVAL_S) " s.",
                                     NULL);
        ps->pending = metrics_gauge(cfg->metrics, "status_writes_pending",
                                    "Pods whose status write is out (PUT, or GET after a "
                                    "conflict) or waiting for its turn (at most one per pod).",
                                    "state");
        metric_set(metrics_gauge(cfg->metrics, "status_writes_pending_limit",
                                 "The bound of status_writes_pending{state=\"out\"}.", NULL),
                   NULL, ps->max_out);
        publish(ps);
    }
    return ps;
}

void podstatus_free(podstatus *ps)
{
    if (!ps)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        while (ps->buckets[i]) {
            slot *s = ps->buckets[i];
            ps->buckets[i] = s->next;
            free_slot(ps, s);
        }
    }
    /* Last: freeing a slot with a request out gives its place away. */
    ev_timer_stop(ps->loop, &ps->admit);
    free(ps);
}

int podstatus_set(podstatus *ps, const char *key, const char *uid, yajl_val status)
{
    slot **p = slot_of(ps, key);
    slot *s = *p;
    if (!s) {
        s = new_slot(ps, key);
        if (!s) {
            yajl_tree_free(status);
            return -1;
        }
        *p = s;
    }
    if (!s->uid || strcmp(s->uid, uid) != 0) {
        const char *u = intern(uid);
        if (!u) {
            yajl_tree_free(status);
            return -1;
        }
        unintern(s->uid);
        s->uid = u;
        s->in_step = false;
    }
    uint64_t h = json_hash(JSON_HASH_SEED, status);
    int rc = packed_set_tree(&s->desired, status);
    yajl_tree_free(status);
    if (rc < 0)
        return -1;
    if (h != s->desired_hash)
        count_change(s);
    s->desired_hash = h;
    evaluate(s);
    return 0;
}

void podstatus_api_changed(podstatus *ps, const char *key)
{
    slot *s = *slot_of(ps, key);
    if (s)
        evaluate(s);
}

void podstatus_forget(podstatus *ps, const char *key)
{
    slot **p = slot_of(ps, key);
    slot *s = *p;
    if (!s)
        return;
    *p = s->next;
    free_slot(ps, s);
}

/* ---- statuses of the core's own ------------------------------------------------ */

/* The pod's containers (init containers first), every one in state. */
static vk_container_status *containers_in(yajl_val pod, enum vk_container_state state,
                                          const char *reason, const char *message,
                                          size_t *n_init, size_t *n)
{
    yajl_val init = vk_json_get(pod, "spec", "initContainers", NULL);
    yajl_val ctrs = vk_json_get(pod, "spec", "containers", NULL);
    size_t ni = YAJL_IS_ARRAY(init) ? init->u.array.len : 0;
    size_t nc = YAJL_IS_ARRAY(ctrs) ? ctrs->u.array.len : 0;
    vk_container_status *cs = calloc(ni + nc ? ni + nc : 1, sizeof *cs);
    if (!cs)
        return NULL;
    int64_t now = (int64_t)time(NULL);
    for (size_t i = 0; i < ni + nc; i++) {
        yajl_val c = i < ni ? init->u.array.values[i] : ctrs->u.array.values[i - ni];
        cs[i].name = vk_json_str(vk_json_member(c, "name"), "");
        cs[i].image = vk_json_str(vk_json_member(c, "image"), "");
        cs[i].state = state;
        cs[i].reason = reason;
        cs[i].message = message;
        if (state == VK_STATE_TERMINATED && i < ni) {
            /* The pod ran: its init containers had completed. */
            cs[i].reason = "Completed";
            cs[i].message = NULL;
            cs[i].finished_at = now;
        } else if (state == VK_STATE_TERMINATED) {
            cs[i].exit_code = 137;
            cs[i].finished_at = now;
        }
    }
    *n_init = ni;
    *n = nc;
    return cs;
}

static yajl_val status_tree(const vk_pod_status *st)
{
    vk_buf b = VK_BUF_INIT;
    yajl_val v = NULL;
    if (vk_pod_status_json(st, (int64_t)time(NULL), &b) == 0)
        v = vk_json_parse(b.data, b.len, NULL, 0);
    vk_buf_free(&b);
    return v;
}

yajl_val podstatus_config_error(yajl_val pod, const char *message)
{
    size_t ni, nc;
    vk_container_status *cs = containers_in(pod, VK_STATE_WAITING, "CreateContainerConfigError",
                                            message, &ni, &nc);
    if (!cs)
        return NULL;
    vk_pod_status st = {
        .phase = "Pending",
        .host_ip = str_at(pod, "status", "hostIP"),
        .init_containers = cs,
        .n_init_containers = ni,
        .containers = cs + ni,
        .n_containers = nc,
    };
    yajl_val v = status_tree(&st);
    free(cs);
    return v;
}

yajl_val podstatus_lost(yajl_val pod, const char *message)
{
    size_t ni, nc;
    vk_container_status *cs = containers_in(pod, VK_STATE_TERMINATED, "ProviderLost", message,
                                            &ni, &nc);
    if (!cs)
        return NULL;
    vk_pod_status st = {
        .phase = "Failed",
        .reason = "ProviderLost",
        .message = message,
        .pod_ip = str_at(pod, "status", "podIP"),
        .host_ip = str_at(pod, "status", "hostIP"),
        .init_containers = cs,
        .n_init_containers = ni,
        .containers = cs + ni,
        .n_containers = nc,
    };
    yajl_val v = status_tree(&st);
    free(cs);
    return v;
}
