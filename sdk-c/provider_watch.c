/* provider_watch.c -- WatchPodStatus, WatchNode and GetNode.
 *
 * The pod side keeps one entry per pod uid holding only the latest status
 * the provider reported, stamped with a sequence from one counter. Entries
 * sit in a list ordered by that sequence, so each watcher needs only a
 * cursor (the last sequence it sent): it sends the entries beyond it, oldest
 * first. A fresh watcher's cursor is 0, so it starts with every pod's
 * current state, and updates made while a watcher is busy sending replace
 * each other in place: coalescing comes for free.
 *
 * A deleted pod stays as a tombstone until every current watcher has sent
 * it, or until there are more than TOMBSTONE_MAX of them (the oldest goes).
 * So the table holds the provider's pods plus a bounded number of the dead.
 */
#include "provider_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define TOMBSTONE_MAX 1024
/* Events copied out under the lock, then sent without it. */
#define BATCH_MAX 64
/* How often an idle watcher looks whether its call was cancelled. */
#define IDLE_CHECK_MS 200

struct pod_entry {
    struct pod_entry *older, *newer; /* the list by sequence */
    struct pod_entry *next;          /* in the bucket */
    uint64_t seq;
    char *status; /* NULL for a tombstone */
    size_t len;
    char *ns, *name;
    char uid[];
};

struct pod_watcher {
    struct pod_watcher *next;
    uint64_t cursor;
};

/* An entry as it was when copied out, in one allocation. */
struct event {
    uint64_t seq;
    bool deleted;
    size_t len;
    char *status, *ns, *name, *uid;
    char data[];
};

int watch_init(struct watch_table *w)
{
    memset(w, 0, sizeof *w);
    w->n_buckets = 64;
    w->buckets = calloc(w->n_buckets, sizeof *w->buckets);
    if (w->buckets == NULL)
        return -1;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&w->changed, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        free(w->buckets);
        return -1;
    }
    pthread_mutex_init(&w->mu, NULL);
    return 0;
}

void watch_destroy(struct watch_table *w)
{
    struct pod_entry *e = w->oldest;
    while (e != NULL) {
        struct pod_entry *next = e->newer;
        free(e->status);
        free(e);
        e = next;
    }
    free(w->buckets);
    pthread_cond_destroy(&w->changed);
    pthread_mutex_destroy(&w->mu);
}

void watch_wake(struct watch_table *w)
{
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->mu);
}

/* ---- the table (callers hold mu) ---------------------------------------- */

static size_t hash(const char *s)
{
    size_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct pod_entry *find(struct watch_table *w, const char *uid)
{
    struct pod_entry *e = w->buckets[hash(uid) % w->n_buckets];
    while (e != NULL && strcmp(e->uid, uid) != 0)
        e = e->next;
    return e;
}

/* Double the buckets; on failure the chains just get longer. */
static void grow(struct watch_table *w)
{
    size_t n = w->n_buckets * 2;
    struct pod_entry **b = calloc(n, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < w->n_buckets; i++) {
        struct pod_entry *e = w->buckets[i];
        while (e != NULL) {
            struct pod_entry *next = e->next;
            size_t at = hash(e->uid) % n;
            e->next = b[at];
            b[at] = e;
            e = next;
        }
    }
    free(w->buckets);
    w->buckets = b;
    w->n_buckets = n;
}

static struct pod_entry *insert(struct watch_table *w, const char *ns,
                                const char *name, const char *uid)
{
    size_t lu = strlen(uid) + 1, ln = strlen(ns) + 1, lm = strlen(name) + 1;
    struct pod_entry *e = calloc(1, sizeof *e + lu + ln + lm);
    if (e == NULL)
        return NULL;
    memcpy(e->uid, uid, lu);
    e->ns = e->uid + lu;
    memcpy(e->ns, ns, ln);
    e->name = e->ns + ln;
    memcpy(e->name, name, lm);
    if (w->n_entries >= w->n_buckets)
        grow(w);
    size_t at = hash(uid) % w->n_buckets;
    e->next = w->buckets[at];
    w->buckets[at] = e;
    w->n_entries++;
    return e;
}

static void unlink_seq(struct watch_table *w, struct pod_entry *e)
{
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        w->oldest = e->newer;
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        w->newest = e->older;
    e->older = e->newer = NULL;
}

/* Give e the next sequence, which makes it the newest entry. e must not be
 * in the list. */
static void stamp(struct watch_table *w, struct pod_entry *e)
{
    e->seq = ++w->seq;
    e->older = w->newest;
    e->newer = NULL;
    if (w->newest != NULL)
        w->newest->newer = e;
    else
        w->oldest = e;
    w->newest = e;
}

static void remove_entry(struct watch_table *w, struct pod_entry *e)
{
    unlink_seq(w, e);
    struct pod_entry **pp = &w->buckets[hash(e->uid) % w->n_buckets];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    w->n_entries--;
    if (e->status == NULL)
        w->n_tombstones--;
    free(e->status);
    free(e);
}

/* Drop the tombstones every current watcher has sent. Everything at or
 * below w->pruned was dealt with before, so only newer entries are looked
 * at. */
static void prune(struct watch_table *w)
{
    uint64_t min = w->seq;
    for (struct pod_watcher *pw = w->watchers; pw != NULL; pw = pw->next)
        if (pw->cursor < min)
            min = pw->cursor;
    if (min <= w->pruned)
        return;
    struct pod_entry *e = w->newest;
    while (e != NULL && e->seq > w->pruned) {
        struct pod_entry *older = e->older;
        if (e->status == NULL && e->seq <= min)
            remove_entry(w, e);
        e = older;
    }
    w->pruned = min;
}

static void drop_oldest_tombstone(struct watch_table *w)
{
    for (struct pod_entry *e = w->oldest; e != NULL; e = e->newer) {
        if (e->status == NULL) {
            remove_entry(w, e);
            return;
        }
    }
}

/* Take e out of the list and drop its status, before set_status. */
static void detach(struct watch_table *w, struct pod_entry *e)
{
    unlink_seq(w, e);
    if (e->status == NULL)
        w->n_tombstones--;
    free(e->status);
    e->status = NULL;
}

/* Give e a new status (NULL: the pod is gone) and the next sequence, and
 * wake the watchers. e may be freed on return. */
static void set_status(struct watch_table *w, struct pod_entry *e, char *status, size_t len)
{
    e->status = status;
    e->len = status != NULL ? len : 0;
    stamp(w, e);
    if (status == NULL) {
        w->n_tombstones++;
        if (w->n_tombstones > TOMBSTONE_MAX)
            drop_oldest_tombstone(w);
        prune(w);
    }
    pthread_cond_broadcast(&w->changed);
}

/* ---- reporting ---------------------------------------------------------- */

int vk_provider_notify_pod(vk_provider *p, const char *ns, const char *name,
                           const char *uid, const char *status_json, size_t len)
{
    struct watch_table *w = &p->watch;
    char *copy = NULL;
    if (status_json != NULL) {
        copy = malloc(len + 1);
        if (copy == NULL)
            return -1;
        memcpy(copy, status_json, len);
        copy[len] = '\0';
    }

    pthread_mutex_lock(&w->mu);
    struct pod_entry *e = find(w, uid ? uid : "");
    if (e != NULL) {
        bool same = copy != NULL ? e->status != NULL && e->len == len &&
                                       memcmp(e->status, copy, len) == 0
                                 : e->status == NULL;
        if (same) {
            pthread_mutex_unlock(&w->mu);
            free(copy);
            return 0;
        }
        detach(w, e);
    } else {
        e = insert(w, ns ? ns : "", name ? name : "", uid ? uid : "");
        if (e == NULL) {
            pthread_mutex_unlock(&w->mu);
            free(copy);
            return -1;
        }
    }
    set_status(w, e, copy, len);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void watch_forget(struct watch_table *w, const char *uid)
{
    if (uid[0] == '\0')
        return;
    pthread_mutex_lock(&w->mu);
    struct pod_entry *e = find(w, uid);
    if (e != NULL && e->status != NULL) {
        detach(w, e);
        set_status(w, e, NULL, 0);
    }
    pthread_mutex_unlock(&w->mu);
}

void vk_provider_notify_node(vk_provider *p)
{
    struct watch_table *w = &p->watch;
    pthread_mutex_lock(&w->mu);
    w->node_gen++;
    pthread_cond_broadcast(&w->changed);
    pthread_mutex_unlock(&w->mu);
}

/* ---- WatchPodStatus ------------------------------------------------------- */

static struct event *copy_event(const struct pod_entry *e)
{
    size_t lu = strlen(e->uid) + 1, ln = strlen(e->ns) + 1, lm = strlen(e->name) + 1;
    struct event *ev = malloc(sizeof *ev + e->len + lu + ln + lm);
    if (ev == NULL)
        return NULL;
    ev->seq = e->seq;
    ev->deleted = e->status == NULL;
    ev->len = e->len;
    ev->status = ev->data;
    if (e->len > 0)
        memcpy(ev->status, e->status, e->len);
    ev->uid = ev->data + e->len;
    memcpy(ev->uid, e->uid, lu);
    ev->ns = ev->uid + lu;
    memcpy(ev->ns, e->ns, ln);
    ev->name = ev->ns + ln;
    memcpy(ev->name, e->name, lm);
    return ev;
}

/* Copy up to max entries newer than cursor, oldest first. */
static size_t collect(struct watch_table *w, uint64_t cursor, struct event **out, size_t max)
{
    struct pod_entry *e = w->newest;
    if (e == NULL || e->seq <= cursor)
        return 0;
    while (e->older != NULL && e->older->seq > cursor)
        e = e->older;
    size_t n = 0;
    for (; e != NULL && n < max; e = e->newer) {
        if ((out[n] = copy_event(e)) == NULL)
            break;
        n++;
    }
    return n;
}

static int send_event(vk_ctx *ctx, const struct event *ev)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = ev->ns;
    ref.name = ev->name;
    ref.uid = ev->uid;
    Vkc__Provider__V1__PodStatusEvent m = VKC__PROVIDER__V1__POD_STATUS_EVENT__INIT;
    m.pod = &ref;
    m.sequence = ev->seq;
    m.deleted = ev->deleted;
    m.status_json.data = (uint8_t *)ev->status;
    m.status_json.len = ev->len;
    return vk_scall_send(ctx->call, &m.base);
}

static void wait_change(struct watch_table *w)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += IDLE_CHECK_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&w->changed, &w->mu, &ts);
}

/* Why a watch stream is over, or VK_OK while it goes on. */
static int watch_over(vk_ctx *ctx)
{
    if (vk_scall_cancelled(ctx->call, 0))
        return VK_CANCELLED;
    if (atomic_load(&ctx->p->stopping))
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "the provider is shutting down");
    return VK_OK;
}

void serve_watch_pod_status(vk_ctx *ctx)
{
    Vkc__Provider__V1__WatchPodStatusRequest *req =
        provider_recv(ctx, &vkc__provider__v1__watch_pod_status_request__descriptor);
    if (req == NULL)
        return;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    struct watch_table *w = &ctx->p->watch;
    struct pod_watcher me = {.cursor = 0};
    pthread_mutex_lock(&w->mu);
    me.next = w->watchers;
    w->watchers = &me;
    pthread_mutex_unlock(&w->mu);

    struct event *batch[BATCH_MAX];
    int code;
    while ((code = watch_over(ctx)) == VK_OK) {
        pthread_mutex_lock(&w->mu);
        size_t n = collect(w, me.cursor, batch, BATCH_MAX);
        if (n == 0) {
            wait_change(w);
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);

        size_t sent = 0;
        while (sent < n && send_event(ctx, batch[sent]) == 0)
            sent++;
        uint64_t last = sent > 0 ? batch[sent - 1]->seq : 0;
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        if (sent < n) {
            code = VK_CANCELLED; /* the core went away */
            break;
        }
        pthread_mutex_lock(&w->mu);
        me.cursor = last;
        prune(w);
        pthread_mutex_unlock(&w->mu);
    }

    pthread_mutex_lock(&w->mu);
    struct pod_watcher **pp = &w->watchers;
    while (*pp != &me)
        pp = &(*pp)->next;
    *pp = me.next;
    prune(w);
    pthread_mutex_unlock(&w->mu);
    provider_finish(ctx, code);
}

/* ---- GetNode and WatchNode ------------------------------------------------ */

/* Ask the provider for its node. VK_OK with *out to free with
 * vk_node_free and msg pointing into it, or the error code. */
static int fetch_node(vk_ctx *ctx, vk_node **out, Vkc__Provider__V1__Node *msg)
{
    vk_node *n = vk_node_new();
    if (n == NULL)
        return vk_ctx_error(ctx, VK_INTERNAL, "out of memory");
    int code = ctx->p->ops->get_node(ctx, n);
    if (code == VK_OK && vk_node_message(n, msg) < 0)
        code = vk_ctx_error(ctx, VK_INTERNAL, "out of memory building the node");
    if (code != VK_OK) {
        vk_node_free(n);
        return code;
    }
    *out = n;
    return VK_OK;
}

void serve_get_node(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetNodeRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_node_request__descriptor);
    if (req == NULL)
        return;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    vk_node *n = NULL;
    Vkc__Provider__V1__Node msg;
    int code = fetch_node(ctx, &n, &msg);
    if (code != VK_OK) {
        provider_finish(ctx, code);
        return;
    }
    provider_reply(ctx, &msg.base);
    vk_node_free(n);
}

void serve_watch_node(vk_ctx *ctx)
{
    Vkc__Provider__V1__WatchNodeRequest *req =
        provider_recv(ctx, &vkc__provider__v1__watch_node_request__descriptor);
    if (req == NULL)
        return;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    struct watch_table *w = &ctx->p->watch;
    bool first = true;
    uint64_t sent_gen = 0;
    int code;
    while ((code = watch_over(ctx)) == VK_OK) {
        pthread_mutex_lock(&w->mu);
        uint64_t gen = w->node_gen;
        if (!first && gen == sent_gen) {
            wait_change(w);
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        pthread_mutex_unlock(&w->mu);

        /* A change reported while get_node runs bumps the generation again,
         * so it is sent next round: never missed, at worst sent twice. */
        vk_node *n = NULL;
        Vkc__Provider__V1__Node msg;
        if ((code = fetch_node(ctx, &n, &msg)) != VK_OK)
            break;
        int rc = vk_scall_send(ctx->call, &msg.base);
        vk_node_free(n);
        if (rc < 0) {
            code = VK_CANCELLED;
            break;
        }
        first = false;
        sent_gen = gen;
    }
    provider_finish(ctx, code);
}
