/* pods.c -- the pod cache, reconcile decisions, provider jobs and resync.
 *
 * One entry per namespace/name, alive while the API has the pod or the
 * provider may still run an incarnation of it. The entry holds the API's
 * copy (`api`) and what the provider is known to run (`prov_*`: set by a
 * successful CreatePod or by the resync's GetPods, cleared by DeletePod or
 * when the provider says it lost the pod). Reconciling compares the two.
 *
 * No tree of a pod outlives the event that brought it: the API's copy is
 * what reconciling and status writes read on every pass (api_copy) plus
 * the pod packed (packed.h), parsed again only for a provider call, a
 * status write or a status of the core's own. At 10,000 pods the trees
 * were ~19 KB each, most of the core's memory.
 *
 * Provider calls run on the module's pool; their results come back on the
 * loop. Each job carries the provider generation it was issued in (bumped
 * at every up and down): a result from an earlier generation never
 * changes what the entry believes about the provider, since the resync of
 * the new generation said what it runs. An entry with a job in flight is
 * `busy` and never freed, so results always find it.
 */
#include "pods.h"

#include <ev.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envresolve.h"
#include "intern.h"
#include "json.h"
#include "kube_reflector.h"
#include "log.h"
#include "logval.h"
#include "packed.h"
#include "podkey.h"
#include "podstatus.h"
#include "reconcile.h"
#include "statusfeed.h"
#include "svccache.h"
#include "work.h"

#define DEFAULT_WORKERS 8
#define BUCKETS 1024
#define RESYNC_RETRY_S 1.0
/* glibc keeps freed memory in its heap: the bursts of whole-pod trees a
 * churn parses (~19 KB per watch event, freed at once) leave free pages
 * between the long-lived small allocations, and RSS would stay at its
 * peak while the pods run and after they are deleted. TRIM_DELAY_S after
 * the TRIM_EVENTS-th pod event since the last trim (the burst is then
 * mostly over), malloc_trim(0) gives those pages back: at most one trim
 * per delay while pods churn, none while idle. */
#define TRIM_EVENTS 256
#define TRIM_DELAY_S 2.0

enum op { OP_CREATE, OP_UPDATE, OP_DELETE, OP_RESYNC };
static const char *const op_names[] = {"create", "update", "delete", "resync"};
static const char *const op_failed_reasons[] = {
    "ProviderCreateFailed", "ProviderUpdateFailed", "ProviderDeleteFailed", "",
};

/* Why a status from the provider was not applied: provider_status_dropped_total's
 * reason label. */
enum drop_reason { DROP_UNKNOWN_POD, DROP_UID_MISMATCH, DROP_MALFORMED, DROP_REASONS };
static const char *const drop_reasons[] = {"unknown_pod", "uid_mismatch", "malformed"};
#define DROP_WARN_S 60.0

/* Failure streaks already reported, one bit each. */
enum {
    STREAK_CREATE = 1 << OP_CREATE,
    STREAK_UPDATE = 1 << OP_UPDATE,
    STREAK_DELETE = 1 << OP_DELETE,
    STREAK_CONFIG = 1 << 4,
};

typedef struct held {
    enum ref_kind kind;
    char *name;
    bool cached;            /* objcache_hold succeeded: release it */
} held;

enum phase { PHASE_OTHER, PHASE_RUNNING, PHASE_TERMINAL };

/* The API's copy of a pod. */
typedef struct api_copy {
    const char *uid;        /* interned, as every uid below */
    long long rv;           /* podstatus_view's */
    uint64_t status_hash;
    bool deleting;          /* metadata.deletionTimestamp set */
    bool never;             /* spec.restartPolicy Never */
    enum phase phase;
    packed_json pod;        /* without managedFields */
} api_copy;

typedef struct entry {
    struct entry *next;
    pods *p;
    char *key;              /* "ns/name"; ns and name point into it */
    const char *ns, *name;

    api_copy *api;          /* NULL: the API does not have the pod */
    uint64_t hash;          /* of api's updatable fields */
    bool listed;            /* seen in the list being applied */

    const char *refs_uid;   /* references recorded for this incarnation */
    held *refs;
    size_t n_refs;

    const char *prov_uid;   /* the incarnation the provider runs, or NULL */
    /* Its pod for DeletePod, unless api is that incarnation's (see
     * prov_pod_json): empty when it is. */
    packed_json prov_pod;
    uint64_t prov_hash;
    bool prov_seen;         /* in the GetPods being applied */

    const char *seq_uid;    /* WatchPodStatus order, per incarnation */
    uint64_t seq;

    bool busy;              /* a job or an API delete in flight */
    int64_t api_delete;
    unsigned streak;
    uint64_t config_note;   /* the config error last reported */
    bool warned;            /* optional-object warnings emitted */
    bool lost;              /* ProviderLost reported */
} entry;

struct pods {
    struct ev_loop *loop;
    char *node;
    struct kube_client *kube;
    refs *refs;
    objcache *oc;
    events *events;
    vk_pool *pool;
    struct kube_reflector *refl;
    svccache *svc;
    podstatus *ps;
    reconciler *rq;
    statusfeed *feed;
    double poll_s;
    bool stopping;

    entry *buckets[BUCKETS];
    size_t n_api;
    size_t churn;           /* pod events since the last trim */
    ev_timer trim;
    bool synced;
    yajl_val looked;        /* lookup_pod's last tree, freed at the next call */

    provider_client *pc;    /* while up */
    unsigned caps;
    unsigned gen;
    bool resyncing;
    bool resync_again;      /* asked for while one was in flight */
    ev_timer resync_retry;
    char *alloc_cpu, *alloc_memory, *alloc_storage, *host_ip;
    unsigned api_failing;

    metric *known, *reconciles, *dropped;
    /* Statuses dropped, per drop_reason: counted since the last warning,
     * which comes at most every DROP_WARN_S. */
    struct {
        unsigned long count;
        double warned;     /* ev_now of the last warning; 0: none yet */
    } drops[DROP_REASONS];
    struct {
        unsigned long count;
        double warned;
    } unnamed;              /* watched pods dropped for want of a key, likewise */
};

typedef struct job {
    pods *p;
    provider_client *pc;
    unsigned gen;
    enum op op;
    char *key;
    const char *uid;        /* interned */
    char *json;             /* what the provider gets: may hold secrets */
    size_t len;
    packed_json plain;      /* create: the unresolved pod, for DeletePod */
    uint64_t hash;
    int code;
    vk_status st;
    Vkc__Provider__V1__GetPodsResponse *listing;
    Vkc__Provider__V1__Node *node;
} job;

static void start_resync(pods *p);
static void resync_done(pods *p, job *j);

/* ---- small helpers --------------------------------------------------------- */

static const char *str_at(yajl_val v, const char *a, const char *b)
{
    return vk_json_str(vk_json_get(v, a, b, NULL), NULL);
}

static const char *uid_of(yajl_val pod)
{
    return str_at(pod, "metadata", "uid");
}

static bool deleting(yajl_val pod)
{
    return vk_json_get(pod, "metadata", "deletionTimestamp", NULL) != NULL;
}

static bool same_str(const char *a, const char *b)
{
    return a && b && !strcmp(a, b);
}

static enum phase phase_of(yajl_val pod)
{
    const char *phase = str_at(pod, "status", "phase");
    if (same_str(phase, "Running"))
        return PHASE_RUNNING;
    if (same_str(phase, "Succeeded") || same_str(phase, "Failed"))
        return PHASE_TERMINAL;
    return PHASE_OTHER;
}

static bool terminal(const api_copy *a)
{
    return a->phase == PHASE_TERMINAL;
}

static void free_copy(api_copy *a)
{
    if (!a)
        return;
    unintern(a->uid);
    packed_clear(&a->pod);
    free(a);
}

/* The API's copy of pod, a tree with a uid; NULL when memory ran out. */
static api_copy *copy_of(yajl_val pod)
{
    podstatus_view v = podstatus_view_of(pod);
    api_copy *a = calloc(1, sizeof *a);
    if (!a || !(a->uid = intern(v.uid)) || packed_set_tree(&a->pod, pod) < 0) {
        free_copy(a);
        return NULL;
    }
    a->rv = v.rv;
    a->status_hash = v.status_hash;
    a->deleting = deleting(pod);
    a->never = same_str(str_at(pod, "spec", "restartPolicy"), "Never");
    a->phase = phase_of(pod);
    return a;
}

static int serialize(yajl_val v, vk_buf *out)
{
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_tree(&w, v);
    return vk_jw_end(&w);
}

/* The fields UpdatePod exists for: what the API lets change on a running
 * pod. Comparing only these keeps status-only and resourceVersion-only
 * changes from reaching the provider, and holds across a core restart
 * (the provider's copy has resolved env, the API's does not). */
static uint64_t spec_hash(yajl_val pod)
{
    uint64_t h = JSON_HASH_SEED;
    yajl_val spec = vk_json_member(pod, "spec");
    h = json_hash(h, vk_json_get(pod, "metadata", "labels", NULL));
    h = json_hash(h, vk_json_get(pod, "metadata", "annotations", NULL));
    h = json_hash(h, vk_json_member(spec, "activeDeadlineSeconds"));
    h = json_hash(h, vk_json_member(spec, "tolerations"));
    static const char *const lists[] = {"initContainers", "containers"};
    for (size_t l = 0; l < 2; l++) {
        yajl_val cs = vk_json_member(spec, lists[l]);
        for (size_t i = 0; YAJL_IS_ARRAY(cs) && i < cs->u.array.len; i++) {
            h = json_hash(h, vk_json_member(cs->u.array.values[i], "name"));
            h = json_hash(h, vk_json_member(cs->u.array.values[i], "image"));
        }
    }
    return h;
}

static void count(pods *p, const char *op, const char *result)
{
    metric_add(p->reconciles, (const char *[]){op, result}, 1);
}

static void pod_event(pods *p, entry *e, const char *type, const char *reason, const char *msg)
{
    events_emit(p->events, e->ns, e->name, e->api ? e->api->uid : NULL, type, reason, msg);
}

/* ---- entries ------------------------------------------------------------------ */

static unsigned bucket(const char *key)
{
    uint32_t h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h % BUCKETS;
}

static entry **slot_of(pods *p, const char *key)
{
    entry **s = &p->buckets[bucket(key)];
    while (*s && strcmp((*s)->key, key) != 0)
        s = &(*s)->next;
    return s;
}

static entry *find(pods *p, const char *key)
{
    return *slot_of(p, key);
}

static entry *get_entry(pods *p, const char *ns, const char *name)
{
    vk_buf key = VK_BUF_INIT;
    if (vk_buf_printf(&key, "%s/%s", ns, name) < 0)
        return NULL;
    entry **s = slot_of(p, key.data);
    if (*s) {
        vk_buf_free(&key);
        return *s;
    }
    vk_buf_free(&key);
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->key = podkey_new(ns, name, &e->ns, &e->name))) {
        free(e);
        return NULL;
    }
    e->p = p;
    *s = e;
    return e;
}

static void clear_prov(entry *e)
{
    /* From GetPods it is the provider's copy, env resolved: secrets too;
     * packed_clear wipes it. */
    unintern(e->prov_uid);
    e->prov_uid = NULL;
    packed_clear(&e->prov_pod);
}

/* The pod DeletePod gets: the API's copy when it is the incarnation the
 * provider runs, else the one kept for it. */
static int prov_pod_json(const entry *e, vk_buf *out)
{
    if (e->api && same_str(e->api->uid, e->prov_uid))
        return packed_get(&e->api->pod, out);
    return packed_get(&e->prov_pod, out);
}

/* The API moves on from old (deleted, or replaced by a new incarnation):
 * when the provider runs it, keep its pod for DeletePod. */
static void keep_for_delete(entry *e, api_copy *old)
{
    if (old && same_str(e->prov_uid, old->uid) && !e->prov_pod.z) {
        e->prov_pod = old->pod;
        old->pod = (packed_json){NULL, 0, 0};
    }
}

static void drop_refs(pods *p, entry *e)
{
    if (e->refs_uid)
        refs_drop_pod(p->refs, e->refs_uid);
    for (size_t i = 0; i < e->n_refs; i++) {
        if (e->refs[i].cached)
            objcache_release(p->oc, e->refs[i].kind, e->ns, e->refs[i].name);
        free(e->refs[i].name);
    }
    free(e->refs);
    unintern(e->refs_uid);
    e->refs = NULL;
    e->n_refs = 0;
    e->refs_uid = NULL;
}

static void free_entry(pods *p, entry *e)
{
    drop_refs(p, e);
    free_copy(e->api);
    clear_prov(e);
    unintern(e->seq_uid);
    free(e->key);
    free(e);
}

static void trim_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    pods *p = w->data;
    malloc_trim(0);
    vk_debug("heap trimmed", "pod_events=%zu pods=%zu", p->churn, p->n_api);
    p->churn = 0;
}

/* One more pod event (watch event applied, entry removed): see
 * TRIM_EVENTS. */
static void note_churn(pods *p)
{
    if (++p->churn >= TRIM_EVENTS && !ev_is_active(&p->trim)) {
        ev_timer_set(&p->trim, TRIM_DELAY_S, 0.);
        ev_timer_start(p->loop, &p->trim);
    }
}

/* Only for an entry that is not busy and that the API no longer has. */
static void remove_entry(pods *p, entry *e)
{
    entry **s = slot_of(p, e->key);
    *s = e->next;
    podstatus_forget(p->ps, e->key);
    free_entry(p, e);
    note_churn(p);
}

static bool refs_equal(const ref *list, size_t n, const held *h, size_t nh)
{
    if (n != nh)
        return false;
    for (size_t i = 0; i < n; i++)
        if (list[i].kind != h[i].kind || strcmp(list[i].name, h[i].name) != 0)
            return false;
    return true;
}

/* A pod may ask for its own service account's token whatever its volumes
 * say, as the Node authorizer lets a kubelet: list the account with the
 * references. */
static int add_service_account(yajl_val pod, ref **list, size_t *n)
{
    const char *sa = str_at(pod, "spec", "serviceAccountName");
    if (!sa || !*sa)
        sa = "default";
    for (size_t i = 0; i < *n; i++)
        if ((*list)[i].kind == REF_SERVICE_ACCOUNT && strcmp((*list)[i].name, sa) == 0)
            return 0;
    ref *grown = realloc(*list, (*n + 1) * sizeof *grown);
    if (!grown)
        return -1;
    grown[(*n)++] = (ref){REF_SERVICE_ACCOUNT, sa};
    *list = grown;
    return 0;
}

/* Record what the pod references, for the Core service and the cache. The
 * new objects are held before the old are released, so that an object
 * both reference keeps its watch. */
static void update_refs(pods *p, entry *e, yajl_val pod)
{
    ref *list = NULL;
    size_t n = 0;
    const char *uid = e->api->uid;
    if (env_pod_refs(pod, &list, &n) < 0)
        return;
    if (add_service_account(pod, &list, &n) < 0) {
        vk_warn("out of memory recording pod references", "pod=%s", e->key);
        free(list);
        return;
    }
    if (same_str(e->refs_uid, uid) && refs_equal(list, n, e->refs, e->n_refs)) {
        free(list);
        return;
    }
    held *h = calloc(n ? n : 1, sizeof *h);
    const char *u = intern(uid);
    size_t got = 0;
    while (h && u && got < n && (h[got].name = strdup(list[got].name)) != NULL) {
        h[got].kind = list[got].kind;
        got++;
    }
    if (got < n || refs_set_pod(p->refs, uid, e->ns, e->name, list, n) < 0) {
        vk_warn("out of memory recording pod references", "pod=%s", e->key);
        while (got > 0)
            free(h[--got].name);
        free(h);
        unintern(u);
        free(list);
        return;
    }
    for (size_t i = 0; i < n; i++)
        h[i].cached = objcache_hold(p->oc, h[i].kind, e->ns, h[i].name) == 0;
    for (size_t i = 0; i < e->n_refs; i++) {
        if (e->refs[i].cached)
            objcache_release(p->oc, e->refs[i].kind, e->ns, e->refs[i].name);
        free(e->refs[i].name);
    }
    free(e->refs);
    if (e->refs_uid && strcmp(e->refs_uid, uid) != 0)
        refs_drop_pod(p->refs, e->refs_uid);
    unintern(e->refs_uid);
    e->refs = h;
    e->n_refs = n;
    e->refs_uid = u;
    free(list);
}

static bool references(const entry *e, enum ref_kind kind, const char *name)
{
    for (size_t i = 0; i < e->n_refs; i++)
        if (e->refs[i].kind == kind && !strcmp(e->refs[i].name, name))
            return true;
    return false;
}

static void add(pods *p, const char *key)
{
    if (reconciler_add(p->rq, key) < 0)
        vk_warn("reconcile queue full; pod not reconciled", "pod=%s", key);
}

/* ---- the API side -------------------------------------------------------------- */

static void api_gone(pods *p, entry *e)
{
    drop_refs(p, e);
    podstatus_forget(p->ps, e->key);
    keep_for_delete(e, e->api);
    free_copy(e->api);
    e->api = NULL;
    p->n_api--;
    metric_set(p->known, NULL, (double)p->n_api);
    add(p, e->key);
}

/* A watched pod without namespace, name or uid cannot be tracked. The API
 * server never sends one, so it means a bug or a mangling proxy: said at
 * most every DROP_WARN_S, with what was missing and a count. */
static void drop_unnamed(pods *p, const char *ns, const char *name, const char *uid)
{
    p->unnamed.count++;
    double now = ev_now(p->loop);
    if (p->unnamed.warned && now - p->unnamed.warned < DROP_WARN_S)
        return;
    char missing[32] = "", name_v[LOGVAL_MAX];
    snprintf(missing, sizeof missing, "%s%s%s", ns ? "" : ",namespace", name ? "" : ",name",
             uid ? "" : ",uid");
    vk_warn("watched pods without namespace, name or uid dropped",
            "missing=%s count=%lu example_name=%s", missing + 1, p->unnamed.count,
            logval(name_v, sizeof name_v, name ? name : ""));
    p->unnamed.count = 0;
    p->unnamed.warned = now;
}

/* Take obj (a tree, freed here) as the API's copy of its pod. */
static void upsert(pods *p, yajl_val obj)
{
    const char *ns = str_at(obj, "metadata", "namespace");
    const char *name = str_at(obj, "metadata", "name");
    const char *uid = uid_of(obj);
    if (!ns || !name || !uid)
        drop_unnamed(p, ns, name, uid);
    entry *e = ns && name && uid ? get_entry(p, ns, name) : NULL;
    api_copy *a = e ? copy_of(obj) : NULL;
    if (!a) {
        if (ns && name && uid)
            vk_warn("out of memory; pod not tracked", "pod=%s/%s", ns, name);
        if (e) {
            e->listed = true; /* stale, not gone */
            add(p, e->key);   /* removed there if it was new */
        }
        yajl_tree_free(obj);
        return;
    }
    api_copy *old = e->api;
    bool fresh = !old || !same_str(old->uid, uid);
    uint64_t h = spec_hash(obj);
    bool relevant = fresh || h != e->hash || (a->deleting && !old->deleting);
    if (fresh && old) {
        drop_refs(p, e);
        podstatus_forget(p->ps, e->key);
    }
    if (fresh) {
        e->streak = 0;
        e->warned = e->lost = false;
    }
    if (!old)
        p->n_api++;
    e->api = a;
    e->hash = h;
    e->listed = true;
    if (fresh)
        keep_for_delete(e, old);
    free_copy(old);
    if (same_str(e->prov_uid, a->uid))
        packed_clear(&e->prov_pod); /* the API's copy serves DeletePod */
    update_refs(p, e, obj);
    yajl_tree_free(obj);
    note_churn(p);
    metric_set(p->known, NULL, (double)p->n_api);
    podstatus_api_changed(p->ps, e->key);
    if (relevant)
        add(p, e->key);
}

static void on_pods_replace(void *ud, yajl_val *items, size_t n)
{
    pods *p = ud;
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            e->listed = false;
    for (size_t i = 0; i < n; i++) {
        yajl_val obj = items[i];
        items[i] = NULL;
        upsert(p, obj);
    }
    /* A complete list: what it lacks was deleted meanwhile. */
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            if (e->api && !e->listed)
                api_gone(p, e);
    if (!p->synced) {
        p->synced = true;
        vk_info("pods synced", "node=%s pods=%zu", p->node, p->n_api);
        start_resync(p);
    }
}

static void on_pods_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    pods *p = ud;
    if (type != KUBE_DELETED) {
        yajl_val obj = *object;
        *object = NULL;
        upsert(p, obj);
        return;
    }
    const char *ns = str_at(*object, "metadata", "namespace");
    const char *name = str_at(*object, "metadata", "name");
    if (!ns || !name) {
        drop_unnamed(p, ns, name, uid_of(*object));
        return;
    }
    vk_buf key = VK_BUF_INIT;
    if (vk_buf_printf(&key, "%s/%s", ns, name) < 0)
        return;
    entry *e = find(p, key.data);
    vk_buf_free(&key);
    if (e && e->api && same_str(e->api->uid, uid_of(*object)))
        api_gone(p, e);
}

/* podstatus's lookup, only when it merges and writes a status: a tree of
 * the API's copy, kept until the next call. */
static yajl_val lookup_pod(void *ud, const char *key)
{
    pods *p = ud;
    entry *e = find(p, key);
    yajl_tree_free(p->looked);
    p->looked = e && e->api ? packed_tree(&e->api->pod) : NULL;
    return p->looked;
}

/* podstatus's look on every watch event: no tree. */
static bool peek_pod(void *ud, const char *key, podstatus_view *out)
{
    entry *e = find(ud, key);
    if (!e || !e->api)
        return false;
    *out = (podstatus_view){e->api->uid, e->api->rv, e->api->status_hash};
    return true;
}

/* A pod waiting for this object may go ahead now. */
static void object_changed(void *ud, enum ref_kind kind, const char *ns, const char *name)
{
    pods *p = ud;
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            if (e->api && !e->prov_uid && !strcmp(e->ns, ns) && references(e, kind, name))
                add(p, e->key);
}

static void services_synced(void *ud)
{
    pods *p = ud;
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            if (e->api && !e->prov_uid)
                add(p, e->key);
}

static void api_deleted(const struct kube_response *resp, void *ud)
{
    entry *e = ud;
    pods *p = e->p;
    e->api_delete = 0;
    e->busy = false;
    if (resp->cancelled)
        return;
    /* 404: gone already; 409: the uid precondition failed, so the name
     * belongs to a new incarnation, which its own events bring. */
    bool ok = (resp->status >= 200 && resp->status < 300) || resp->status == 404 ||
              resp->status == 409;
    count(p, "api_delete", ok ? "ok" : "error");
    if (!ok) {
        char err_v[LOGVAL_MAX];
        if (!p->api_failing++)
            vk_warn("cannot delete pod from the API", "pod=%s status=%ld error=%s", e->key,
                    resp->status, logval(err_v, sizeof err_v, resp->error ? resp->error : ""));
    } else if (p->api_failing) {
        vk_info("pod deletions work again", "failures=%u", p->api_failing);
        p->api_failing = 0;
    }
    reconciler_done(p->rq, e->key, !ok);
}

static enum reconcile_result delete_from_api(pods *p, entry *e)
{
    vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT;
    if (vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s", e->ns, e->name) == 0 &&
        vk_buf_printf(&body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                      "\"gracePeriodSeconds\":0,\"preconditions\":{\"uid\":\"%s\"}}",
                      e->api->uid) == 0)
        e->api_delete = kube_request(p->kube, "DELETE", path.data, NULL, body.data, body.len, 0,
                                     api_deleted, e);
    else
        e->api_delete = -1;
    vk_buf_free(&path);
    vk_buf_free(&body);
    if (e->api_delete < 0) {
        e->api_delete = 0;
        return RECONCILE_RETRY;
    }
    e->busy = true;
    return RECONCILE_ASYNC;
}

/* ---- provider jobs ---------------------------------------------------------------- */

static void free_job(job *j)
{
    if (j->json) {
        explicit_bzero(j->json, j->len);
        free(j->json);
    }
    packed_clear(&j->plain);
    free(j->key);
    unintern(j->uid);
    vk_status_clear(&j->st);
    if (j->listing)
        protobuf_c_message_free_unpacked(&j->listing->base, NULL);
    if (j->node)
        protobuf_c_message_free_unpacked(&j->node->base, NULL);
    pc_unref(j->pc);
    free(j);
}

static void job_work(void *arg)
{
    job *j = arg;
    switch (j->op) {
    case OP_CREATE:
        j->code = pc_create_pod(j->pc, j->json, j->len, &j->st);
        break;
    case OP_UPDATE:
        j->code = pc_update_pod(j->pc, j->json, j->len, &j->st);
        break;
    case OP_DELETE:
        j->code = pc_delete_pod(j->pc, j->json, j->len, &j->st);
        break;
    case OP_RESYNC:
        j->code = pc_get_pods(j->pc, &j->listing, &j->st);
        if (j->code == VK_OK && pc_get_node(j->pc, &j->node, NULL) != VK_OK)
            j->node = NULL; /* only for env defaults: go on without */
        break;
    }
}

static void job_done(void *arg);

static job *new_job(pods *p, enum op op, const entry *e, const char *uid)
{
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->p = p;
    j->op = op;
    j->gen = p->gen;
    j->pc = pc_ref(p->pc);
    if ((e && !(j->key = strdup(e->key))) || (uid && !(j->uid = intern(uid)))) {
        free_job(j);
        return NULL;
    }
    return j;
}

static enum reconcile_result submit(pods *p, entry *e, job *j)
{
    if (vk_pool_submit(p->pool, job_work, job_done, j) < 0) {
        free_job(j);
        return RECONCILE_RETRY;
    }
    e->busy = true;
    return RECONCILE_ASYNC;
}

/* A Warning event and a log line for the first failure of a streak. */
static void report_failure(pods *p, entry *e, const job *j)
{
    unsigned bit = 1u << j->op;
    if (e->streak & bit)
        return;
    e->streak |= bit;
    char msg_v[LOGVAL_MAX];
    const char *why = j->st.message && *j->st.message ? j->st.message : vk_status_code_name(j->code);
    vk_warn("provider call failed", "op=%s pod=%s code=%s error=%s", op_names[j->op], e->key,
            vk_status_code_name(j->code), logval(msg_v, sizeof msg_v, why));
    if (!e->api || !same_str(e->api->uid, j->uid))
        return; /* an incarnation the API no longer has: no one to tell */
    vk_buf msg = VK_BUF_INIT;
    vk_buf_printf(&msg, "The provider could not %s the pod: %s", op_names[j->op], why);
    pod_event(p, e, "Warning", op_failed_reasons[j->op], msg.data ? msg.data : why);
    vk_buf_free(&msg);
}

static void job_done(void *arg)
{
    job *j = arg;
    pods *p = j->p;
    if (p->stopping) {
        free_job(j);
        return;
    }
    if (j->op == OP_RESYNC) {
        p->resyncing = false;
        resync_done(p, j);
        free_job(j);
        return;
    }
    entry *e = find(p, j->key); /* busy entries are never removed */
    e->busy = false;
    bool ok = j->code == VK_OK || (j->op == OP_DELETE && j->code == VK_NOT_FOUND);
    count(p, op_names[j->op], ok ? "ok" : "error");
    if (j->gen != p->gen) {
        /* The provider went away meanwhile; its resync decides. */
        reconciler_done(p->rq, j->key, !ok);
        free_job(j);
        return;
    }
    if (!ok) {
        report_failure(p, e, j);
        if (j->op == OP_UPDATE && j->code == VK_NOT_FOUND && same_str(e->prov_uid, j->uid))
            clear_prov(e); /* lost: the next pass creates it again */
        reconciler_done(p->rq, j->key, true);
        free_job(j);
        return;
    }
    e->streak &= ~(1u << j->op);
    switch (j->op) {
    case OP_CREATE:
        clear_prov(e);
        e->prov_uid = j->uid;
        j->uid = NULL;
        if (!e->api || !same_str(e->api->uid, e->prov_uid)) {
            /* The API moved on meanwhile: keep what was created. */
            e->prov_pod = j->plain;
            j->plain = (packed_json){NULL, 0, 0};
        }
        e->prov_hash = j->hash;
        e->streak &= ~(unsigned)STREAK_CONFIG;
        break;
    case OP_UPDATE:
        e->prov_hash = j->hash;
        break;
    case OP_DELETE:
        if (same_str(e->prov_uid, j->uid))
            clear_prov(e);
        add(p, e->key); /* what comes next: the API delete, or a new incarnation */
        break;
    case OP_RESYNC:
        break;
    }
    reconciler_done(p->rq, j->key, false);
    free_job(j);
}

/* ---- environment ----------------------------------------------------------------- */

static enum env_lookup lookup(pods *p, enum ref_kind kind, const char *ns, const char *name,
                              yajl_val *obj)
{
    switch (objcache_lookup(p->oc, kind, ns, name, obj)) {
    case OBJCACHE_FOUND:
        return ENV_FOUND;
    case OBJCACHE_ABSENT:
        return ENV_NOT_FOUND;
    case OBJCACHE_UNKNOWN:
        break;
    }
    return ENV_LOOKUP_FAILED; /* not listed yet: its first list re-queues the pod */
}

static enum env_lookup get_configmap(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    return lookup(ud, REF_CONFIGMAP, ns, name, obj);
}

static enum env_lookup get_secret(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    return lookup(ud, REF_SECRET, ns, name, obj);
}

/* Resolve e's pod; *pod gets its tree (the caller's, NULL when memory
 * ran out). */
static enum env_status resolve(pods *p, entry *e, yajl_val *pod, env_result *res)
{
    memset(res, 0, sizeof *res);
    if (!(*pod = packed_tree(&e->api->pod))) {
        res->status = ENV_NOMEM;
        return ENV_NOMEM;
    }
    size_t n_svc;
    const env_service *svc = svccache_for(p->svc, e->ns, &n_svc);
    const char *pod_ip = str_at(*pod, "status", "podIP");
    const char *pod_ips[1] = {pod_ip}, *host_ips[1] = {p->host_ip};
    env_inputs in = {
        .get_configmap = get_configmap,
        .get_secret = get_secret,
        .ud = p,
        .services = svc,
        .n_services = n_svc,
        .pod_ips = pod_ips,
        .n_pod_ips = pod_ip ? 1 : 0,
        .host_ips = host_ips,
        .n_host_ips = p->host_ip ? 1 : 0,
        .alloc_cpu = p->alloc_cpu,
        .alloc_memory = p->alloc_memory,
        .alloc_ephemeral_storage = p->alloc_storage,
    };
    return env_resolve_tree(*pod, &in, res);
}

/* The pod cannot start as written: tell the API (status, event) and wait
 * for the object, or for a new spec. */
static void config_error(pods *p, entry *e, yajl_val pod, const env_result *res)
{
    const char *msg = res->error.message ? res->error.message : "the pod cannot be configured";
    const char *reason = res->error_event ? res->error_event : "CreateContainerConfigError";
    uint64_t note = JSON_HASH_SEED;
    for (const char *c = reason; *c; c++)
        note = (note ^ (unsigned char)*c) * 1099511628211u;
    for (const char *c = msg; *c; c++)
        note = (note ^ (unsigned char)*c) * 1099511628211u;
    yajl_val st = podstatus_config_error(pod, msg);
    if (st)
        podstatus_set(p->ps, e->key, e->api->uid, st);
    count(p, "create", "config_error");
    if ((e->streak & STREAK_CONFIG) && e->config_note == note)
        return;
    e->streak |= STREAK_CONFIG;
    e->config_note = note;
    pod_event(p, e, "Warning", reason, msg);
}

static enum reconcile_result create_or_update(pods *p, entry *e, enum op op)
{
    if (!svccache_synced(p->svc))
        return RECONCILE_RETRY; /* its first list re-queues the pod */
    yajl_val pod;
    env_result res;
    enum env_status st = resolve(p, e, &pod, &res);
    enum reconcile_result rr = RECONCILE_RETRY;
    if (st == ENV_MISSING || st == ENV_INVALID) {
        if (op == OP_CREATE) {
            config_error(p, e, pod, &res);
            rr = RECONCILE_DONE;
        } else if (!(e->streak & STREAK_UPDATE)) {
            e->streak |= STREAK_UPDATE;
            pod_event(p, e, "Warning", op_failed_reasons[op], res.error.message);
        }
    } else if (st == ENV_OK) {
        for (size_t i = 0; i < res.n_warnings && !e->warned; i++)
            pod_event(p, e, "Warning", res.warnings[i].reason, res.warnings[i].message);
        e->warned = true;
        job *j = new_job(p, op, e, e->api->uid);
        if (j && (op != OP_CREATE || packed_copy(&j->plain, &e->api->pod) == 0)) {
            j->json = vk_buf_steal(&res.pod, &j->len);
            j->hash = e->hash;
            rr = submit(p, e, j);
        } else if (j) {
            free_job(j);
        }
    }
    env_result_free(&res);
    yajl_tree_free(pod);
    return rr;
}

static enum reconcile_result delete_in_provider(pods *p, entry *e)
{
    job *j = new_job(p, OP_DELETE, e, e->prov_uid);
    if (!j)
        return RECONCILE_RETRY;
    vk_buf b = VK_BUF_INIT;
    if (prov_pod_json(e, &b) < 0) {
        vk_buf_free(&b);
        free_job(j);
        return RECONCILE_RETRY;
    }
    j->json = vk_buf_steal(&b, &j->len);
    return submit(p, e, j);
}

/* A restartPolicy Never pod that ran must not run twice. */
static bool must_not_rerun(const api_copy *a)
{
    return a->never && a->phase == PHASE_RUNNING;
}

static void mark_lost(pods *p, entry *e)
{
    static const char msg[] =
        "The provider lost this pod after it had started (the provider restarted or its "
        "back end dropped the pod); with restartPolicy Never it is not run again.";
    yajl_val pod = packed_tree(&e->api->pod);
    yajl_val st = pod ? podstatus_lost(pod, msg) : NULL;
    yajl_tree_free(pod);
    if (st)
        podstatus_set(p->ps, e->key, e->api->uid, st);
    count(p, "create", "provider_lost");
    if (!e->lost) {
        e->lost = true;
        vk_warn("provider lost a pod that must not run again", "pod=%s", e->key);
        pod_event(p, e, "Warning", "ProviderLost", msg);
    }
}

static enum reconcile_result process(void *ud, const char *key)
{
    pods *p = ud;
    entry *e = find(p, key);
    if (!e)
        return RECONCILE_DONE;
    if (!p->pc)
        return RECONCILE_RETRY;
    const char *uid = e->api ? e->api->uid : NULL;
    /* Another incarnation (or one the API no longer has) goes first. */
    if (e->prov_uid && !same_str(e->prov_uid, uid))
        return delete_in_provider(p, e);
    if (!e->api) {
        remove_entry(p, e);
        return RECONCILE_DONE;
    }
    if (e->api->deleting)
        return e->prov_uid ? delete_in_provider(p, e) : delete_from_api(p, e);
    if (!e->prov_uid) {
        if (terminal(e->api))
            return RECONCILE_DONE; /* finished: never run again */
        if (must_not_rerun(e->api)) {
            mark_lost(p, e);
            return RECONCILE_DONE;
        }
        return create_or_update(p, e, OP_CREATE);
    }
    if (e->prov_hash != e->hash)
        return create_or_update(p, e, OP_UPDATE);
    return RECONCILE_DONE;
}

/* ---- statuses ---------------------------------------------------------------------- */

/* A status the provider sent that cannot be applied: counted, and said at
 * most once a minute per reason with one example, since a provider that
 * sends them may send hundreds a second (its bug, or a pod it lost track
 * of) and the log must stay readable. */
static void drop_status(pods *p, enum drop_reason why, const statusfeed_event *ev)
{
    metric_add(p->dropped, (const char *[]){drop_reasons[why]}, 1);
    p->drops[why].count++;
    double now = ev_now(p->loop);
    if (p->drops[why].warned && now - p->drops[why].warned < DROP_WARN_S)
        return;
    char ns_v[LOGVAL_MAX], name_v[LOGVAL_MAX], uid_v[LOGVAL_MAX];
    vk_warn("pod statuses from the provider dropped",
            "reason=%s count=%lu example_ns=%s example_name=%s example_uid=%s", drop_reasons[why], p->drops[why].count, logval(ns_v, sizeof ns_v, ev->ns),
            logval(name_v, sizeof name_v, ev->name), logval(uid_v, sizeof uid_v, ev->uid));
    p->drops[why].count = 0;
    p->drops[why].warned = now;
}

static void on_status(void *ud, const statusfeed_event *ev)
{
    pods *p = ud;
    vk_buf key = VK_BUF_INIT;
    if (vk_buf_printf(&key, "%s/%s", ev->ns, ev->name) < 0)
        return;
    entry *e = find(p, key.data);
    vk_buf_free(&key);
    if (!e) {
        /* Neither the API's nor the provider's as far as the core knows.
         * "Gone" is the normal end of a pod the core already forgot; and
         * until the API was listed the core knows no pod at all. */
        if (!ev->gone && p->synced)
            drop_status(p, DROP_UNKNOWN_POD, ev);
        return;
    }
    if (ev->seq) {
        if (same_str(e->seq_uid, ev->uid) && ev->seq <= e->seq)
            return; /* older than what was applied */
        if (!same_str(e->seq_uid, ev->uid)) {
            const char *u = intern(ev->uid);
            if (!u)
                return;
            unintern(e->seq_uid);
            e->seq_uid = u;
        }
        e->seq = ev->seq;
    }
    if (ev->gone) {
        if (same_str(e->prov_uid, ev->uid) && !e->busy) {
            clear_prov(e);
            add(p, e->key);
        }
        return;
    }
    if (!e->api || !same_str(e->api->uid, ev->uid)) {
        /* The incarnation the provider runs (an orphan being deleted, the
         * old pod of a recreated name) may report until it is gone; any
         * other is one neither side has. */
        if (!same_str(e->prov_uid, ev->uid))
            drop_status(p, DROP_UID_MISMATCH, ev);
        return;
    }
    yajl_val st = vk_json_parse(ev->status_json, ev->len, NULL, 0);
    if (!YAJL_IS_OBJECT(st)) {
        drop_status(p, DROP_MALFORMED, ev);
        yajl_tree_free(st);
        return;
    }
    podstatus_set(p->ps, e->key, ev->uid, st);
}

static size_t list_provider_pods(void *ud, statusfeed_pod **out)
{
    pods *p = ud;
    size_t n = 0, cap = 0;
    statusfeed_pod *list = NULL;
    for (size_t i = 0; i < BUCKETS; i++) {
        for (entry *e = p->buckets[i]; e; e = e->next) {
            if (!e->prov_uid)
                continue;
            if (n == cap) {
                size_t c = cap ? cap * 2 : 64;
                statusfeed_pod *l = realloc(list, c * sizeof *l);
                if (!l)
                    goto done;
                list = l;
                cap = c;
            }
            list[n] = (statusfeed_pod){strdup(e->ns), strdup(e->name), strdup(e->prov_uid)};
            if (!list[n].ns || !list[n].name || !list[n].uid) {
                free(list[n].ns);
                free(list[n].name);
                free(list[n].uid);
                goto done;
            }
            n++;
        }
    }
done:
    *out = list;
    return n;
}

/* ---- resync ------------------------------------------------------------------------- */

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s && *s ? strdup(s) : NULL;
}

/* Defaults for resourceFieldRef and status.hostIP from GetNode. */
static void learn_node(pods *p, const Vkc__Provider__V1__Node *n)
{
    size_t na = n->n_allocatable;
    for (size_t i = 0; i < (na ? na : n->n_capacity); i++) {
        const char *k = na ? n->allocatable[i]->key : n->capacity[i]->key;
        const char *v = na ? n->allocatable[i]->value : n->capacity[i]->value;
        if (!strcmp(k, "cpu"))
            set_str(&p->alloc_cpu, v);
        else if (!strcmp(k, "memory"))
            set_str(&p->alloc_memory, v);
        else if (!strcmp(k, "ephemeral-storage"))
            set_str(&p->alloc_storage, v);
    }
    yajl_val addrs = vk_json_parse_bytes(n->addresses_json.data, n->addresses_json.len, NULL, 0);
    for (size_t i = 0; YAJL_IS_ARRAY(addrs) && i < addrs->u.array.len; i++) {
        yajl_val a = addrs->u.array.values[i];
        if (same_str(vk_json_str(vk_json_member(a, "type"), NULL), "InternalIP")) {
            set_str(&p->host_ip, vk_json_str(vk_json_member(a, "address"), NULL));
            break;
        }
    }
    yajl_tree_free(addrs);
}

/* Note one pod of GetPods in its entry. */
static void note_provider_pod(pods *p, const ProtobufCBinaryData *data)
{
    yajl_val pod = vk_json_parse_bytes(data->data, data->len, NULL, 0);
    const char *ns = str_at(pod, "metadata", "namespace");
    const char *name = str_at(pod, "metadata", "name");
    const char *uid = uid_of(pod);
    entry *e = ns && name && uid ? get_entry(p, ns, name) : NULL;
    if (!e) {
        if (pod)
            vk_warn("provider pod not understood or out of memory", "pod=%s/%s", ns ? ns : "",
                    name ? name : "");
        yajl_tree_free(pod);
        return;
    }
    bool api_has_it = e->api && same_str(e->api->uid, uid);
    clear_prov(e);
    e->prov_uid = intern(uid);
    e->prov_hash = spec_hash(pod);
    e->prov_seen = true;
    /* Its own JSON for DeletePod, when the API's copy cannot serve. */
    if (!e->prov_uid ||
        (!api_has_it && packed_set(&e->prov_pod, (const char *)data->data, data->len) < 0)) {
        vk_warn("out of memory noting a provider pod", "pod=%s", e->key);
        clear_prov(e);
    }
    if (!(p->caps & PC_CAP_WATCH_POD_STATUS)) {
        yajl_val st = vk_json_member(pod, "status");
        if (YAJL_IS_OBJECT(st) && api_has_it) {
            vk_buf b = VK_BUF_INIT;
            statusfeed_event ev = {.ns = ns, .name = name, .uid = uid};
            if (serialize(st, &b) == 0) {
                ev.status_json = b.data;
                ev.len = b.len;
                on_status(p, &ev);
            }
            vk_buf_free(&b);
        }
    }
    yajl_tree_free(pod);
}

static void resync_done(pods *p, job *j)
{
    if (j->gen != p->gen) {
        start_resync(p); /* that provider is gone: list the current one, if up */
        return;
    }
    if (j->code != VK_OK) {
        char msg_v[LOGVAL_MAX];
        vk_warn("cannot list the provider's pods; retrying", "code=%s error=%s",
                vk_status_code_name(j->code),
                logval(msg_v, sizeof msg_v, j->st.message ? j->st.message : ""));
        ev_timer_set(&p->resync_retry, RESYNC_RETRY_S, 0.);
        ev_timer_start(p->loop, &p->resync_retry);
        return;
    }
    if (j->node)
        learn_node(p, j->node);
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            e->prov_seen = false;
    for (size_t i = 0; i < j->listing->n_pods_json; i++)
        note_provider_pod(p, &j->listing->pods_json[i]);
    size_t lost = 0, orphans = 0;
    for (size_t i = 0; i < BUCKETS; i++) {
        for (entry *e = p->buckets[i]; e; e = e->next) {
            if (!e->prov_seen && e->prov_uid)
                clear_prov(e);
            lost += e->api && !e->prov_uid && !terminal(e->api);
            orphans += !e->api && e->prov_uid;
            add(p, e->key);
        }
    }
    vk_info("provider resynced", "api_pods=%zu provider_pods=%zu to_create=%zu to_delete=%zu",
            p->n_api, j->listing->n_pods_json, lost, orphans);
    reconciler_resume(p->rq);
    if (p->resync_again)
        start_resync(p);
}

static void start_resync(pods *p)
{
    if (p->resyncing)
        p->resync_again = true; /* its listing may predate what prompted this */
    if (!p->pc || !p->synced || p->resyncing)
        return;
    p->resync_again = false;
    job *j = new_job(p, OP_RESYNC, NULL, NULL);
    if (!j || vk_pool_submit(p->pool, job_work, job_done, j) < 0) {
        if (j)
            free_job(j);
        ev_timer_set(&p->resync_retry, RESYNC_RETRY_S, 0.);
        ev_timer_start(p->loop, &p->resync_retry);
        return;
    }
    p->resyncing = true;
}

static void resync_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    start_resync(w->data);
}

/* ---- provider up and down ----------------------------------------------------------- */

static void forget_sequences(pods *p)
{
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            e->seq = 0;
}

/* The status stream broke and is back: maybe a provider restarted behind
 * the supervisor's back. Its pods are listed again. */
static void feed_reopened(void *ud, bool quiet)
{
    pods *p = ud;
    vk_log(quiet ? VK_LOG_DEBUG : VK_LOG_INFO,
           "pod status stream reopened; listing the provider's pods again", "node=%s", p->node);
    forget_sequences(p);
    start_resync(p);
}

static void on_up(void *ud, provider_client *pc, const pc_info *info)
{
    pods *p = ud;
    if (p->stopping)
        return;
    p->pc = pc_ref(pc);
    p->caps = info->caps;
    p->gen++;
    forget_sequences(p); /* they belong to one provider process */
    statusfeed_config fc = {
        .loop = p->loop,
        .pc = pc,
        .watch = (info->caps & PC_CAP_WATCH_POD_STATUS) != 0,
        .pool = p->pool,
        .poll_interval_s = p->poll_s,
        .deliver = on_status,
        .reopened = feed_reopened,
        .list = list_provider_pods,
        .ud = p,
    };
    p->feed = statusfeed_start(&fc);
    start_resync(p);
}

static void on_down(void *ud)
{
    pods *p = ud;
    if (!p->pc)
        return;
    p->gen++;
    p->resync_again = false;
    reconciler_pause(p->rq);
    statusfeed_stop(p->feed);
    p->feed = NULL;
    ev_timer_stop(p->loop, &p->resync_retry);
    pc_unref(p->pc); /* jobs in flight hold their own */
    p->pc = NULL;
}

supervisor_listener pods_listener(pods *p)
{
    return (supervisor_listener){.up = on_up, .down = on_down, .ud = p};
}

/* ---- lifecycle ------------------------------------------------------------------------ */

pods *pods_start(const pods_config *cfg)
{
    pods *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    unsigned workers = cfg->workers ? cfg->workers : DEFAULT_WORKERS;
    p->loop = kube_client_loop(cfg->kube);
    p->kube = cfg->kube;
    p->refs = cfg->refs;
    p->oc = cfg->objcache;
    p->events = cfg->events;
    p->poll_s = cfg->status_poll_s;
    p->node = strdup(cfg->node_name);
    ev_init(&p->resync_retry, resync_retry_cb);
    p->resync_retry.data = p;
    ev_init(&p->trim, trim_cb);
    p->trim.data = p;
    if (cfg->metrics) {
        p->known = metrics_gauge(cfg->metrics, "pods_known",
                                 "Pods bound to the node, as the API server lists them.", NULL);
        p->reconciles = metrics_counter(cfg->metrics, "reconcile_total",
                                        "Pod reconcile steps, by operation and result.", "op,result");
        p->dropped = metrics_counter(cfg->metrics, "provider_status_dropped_total",
                                     "Pod statuses from the provider dropped, by reason.", "reason");
    }
    reconciler_config rc = {
        .loop = p->loop,
        .workers = workers,
        .process = process,
        .ud = p,
        .depth = cfg->metrics ? metrics_gauge(cfg->metrics, "reconcile_queue_depth",
                                              "Pods waiting to be reconciled.", NULL) : NULL,
    };
    podstatus_config sc = {
        .kube = cfg->kube,
        .metrics = cfg->metrics,
        .lookup = lookup_pod,
        .peek = peek_pod,
        .ud = p,
    };
    vk_buf selector = VK_BUF_INIT;
    /* Jobs: the reconciler's workers, a resync and a poll at most. */
    p->pool = vk_pool_new(p->loop, (int)workers, (int)workers + 2);
    p->rq = reconciler_new(&rc);
    p->ps = podstatus_new(&sc);
    if (!p->node || !p->pool || !p->rq || !p->ps ||
        vk_buf_printf(&selector, "spec.nodeName=%s", cfg->node_name) < 0)
        goto fail;
    objcache_listen(p->oc, object_changed, p);
    p->svc = svccache_start(p->kube, services_synced, p);
    struct kube_reflector_config pc = {
        .path = "/api/v1/pods",
        .field_selector = selector.data,
        .on_replace = on_pods_replace,
        .on_event = on_pods_event,
        .ud = p,
    };
    p->refl = kube_reflector_start(p->kube, &pc);
    vk_buf_free(&selector);
    if (!p->svc || !p->refl)
        goto fail;
    return p;
fail:
    vk_buf_free(&selector);
    vk_error("cannot start the pod module", "reason=%s", "out-of-memory");
    pods_stop(p);
    return NULL;
}

void pods_stop(pods *p)
{
    if (!p)
        return;
    p->stopping = true;
    kube_reflector_free(p->refl);
    svccache_free(p->svc);
    statusfeed_stop(p->feed);
    ev_timer_stop(p->loop, &p->resync_retry);
    ev_timer_stop(p->loop, &p->trim);
    for (size_t i = 0; i < BUCKETS; i++)
        for (entry *e = p->buckets[i]; e; e = e->next)
            if (e->api_delete)
                kube_request_cancel(p->kube, e->api_delete);
    vk_pool_free(p->pool); /* waits for provider calls; their results are dropped */
    podstatus_free(p->ps);
    yajl_tree_free(p->looked);
    for (size_t i = 0; i < BUCKETS; i++) {
        while (p->buckets[i]) {
            entry *e = p->buckets[i];
            p->buckets[i] = e->next;
            free_entry(p, e);
        }
    }
    if (p->oc)
        objcache_listen(p->oc, NULL, NULL);
    reconciler_free(p->rq);
    pc_unref(p->pc);
    free(p->alloc_cpu);
    free(p->alloc_memory);
    free(p->alloc_storage);
    free(p->host_ip);
    free(p->node);
    free(p);
}

int pods_get_json(void *ud, const char *ns, const char *name, vk_buf *out)
{
    pods *p = ud;
    if (!p->synced)
        return -1;
    vk_buf key = VK_BUF_INIT;
    if (vk_buf_printf(&key, "%s/%s", ns, name) < 0)
        return -1;
    entry *e = find(p, key.data);
    vk_buf_free(&key);
    if (!e || !e->api)
        return 1;
    return packed_get(&e->api->pod, out);
}

int pods_list_json(void *ud, vk_buf *out)
{
    pods *p = ud;
    if (!p->synced)
        return -1;
    size_t start = out->len;
    bool first = true;
    int rc = vk_buf_append(out, "[", 1);
    for (size_t i = 0; i < BUCKETS && rc == 0; i++) {
        for (entry *e = p->buckets[i]; e && rc == 0; e = e->next) {
            if (!e->api)
                continue;
            if (!first)
                rc = vk_buf_append(out, ",", 1);
            first = false;
            if (rc == 0)
                rc = packed_get(&e->api->pod, out);
        }
    }
    if (rc == 0)
        rc = vk_buf_append(out, "]", 1);
    if (rc < 0 && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}
