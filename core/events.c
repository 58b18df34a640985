/* events.c -- a bounded, aggregating Event sender.
 *
 * Every event emitted becomes a record, found again by its identity (pod
 * uid, type, reason, message) through a hash table, and kept in LRU order
 * for eviction. A record that has something to send (its creation, or a
 * count the API server does not know yet) sits in the send queue once.
 * Emitters may be on any thread, so records are guarded by one mutex; the
 * loop is woken with an ev_async and sends at most MAX_IN_FLIGHT requests
 * at a time, each carrying a snapshot of the record taken under the lock.
 */
#include "events.h"

#include <ev.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "logval.h"
#include "pod.h"

#define DEFAULT_QUEUE_MAX 256
#define DEFAULT_CACHE_MAX 1024
#define DEFAULT_WINDOW_S 600.0
#define MAX_IN_FLIGHT 4
#define MAX_MESSAGE 1024
#define BUCKETS 512
#define COMPONENT "vkc"

typedef struct record {
    struct record *hnext;
    struct record *older, *newer;  /* LRU list: oldest first */
    struct record *qnext;          /* send queue */
    uint64_t hash;
    char *ns, *pod, *uid, *type, *reason, *message; /* one allocation */
    char name[300];                /* the Event object's name */
    unsigned count, sent;          /* occurrences; how many the API knows */
    int64_t first, last;           /* Unix seconds */
    bool queued, in_flight;
} record;

/* What one request carries, copied out of its record under the lock. */
typedef struct sending {
    events *e;
    int64_t id;
    uint64_t hash;
    char name[300];
    char *ns;
    unsigned count;
    struct sending *next;
} sending;

struct events {
    struct kube_client *kube;
    struct ev_loop *loop;
    char *node;
    size_t queue_max, cache_max;
    double window;
    metric *dropped;
    ev_async wake;

    pthread_mutex_t lock;
    record *buckets[BUCKETS];
    record *oldest, *newest;
    size_t n_records;
    record *qhead, *qtail;
    size_t n_queued;
    int64_t last_ns;               /* for unique names */

    sending *in_flight;            /* loop thread only */
    unsigned n_in_flight;
    unsigned failing;
};

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (h ^ 0xff) * 1099511628211u; /* separator: "ab","c" != "a","bc" */
}

static uint64_t identity(const char *ns, const char *uid, const char *type, const char *reason,
                         const char *message)
{
    uint64_t h = 14695981039346656037u;
    h = hash_str(h, ns);
    h = hash_str(h, uid);
    h = hash_str(h, type);
    h = hash_str(h, reason);
    return hash_str(h, message);
}

/* ---- records (lock held) -------------------------------------------------- */

static void lru_unlink(events *e, record *r)
{
    if (r->older)
        r->older->newer = r->newer;
    else
        e->oldest = r->newer;
    if (r->newer)
        r->newer->older = r->older;
    else
        e->newest = r->older;
    r->older = r->newer = NULL;
}

static void lru_touch(events *e, record *r)
{
    if (e->newest == r)
        return;
    if (r->older || r->newer || e->oldest == r)
        lru_unlink(e, r);
    r->older = e->newest;
    if (e->newest)
        e->newest->newer = r;
    else
        e->oldest = r;
    e->newest = r;
}

static record *find(events *e, uint64_t h, const char *ns, const char *uid, const char *type,
                    const char *reason, const char *message)
{
    for (record *r = e->buckets[h % BUCKETS]; r; r = r->hnext)
        if (r->hash == h && !strcmp(r->ns, ns) && !strcmp(r->uid, uid) &&
            !strcmp(r->type, type) && !strcmp(r->reason, reason) && !strcmp(r->message, message))
            return r;
    return NULL;
}

static void drop_record(events *e, record *r)
{
    record **p = &e->buckets[r->hash % BUCKETS];
    while (*p != r)
        p = &(*p)->hnext;
    *p = r->hnext;
    lru_unlink(e, r);
    e->n_records--;
    free(r);
}

/* Make room for one more record: the least recently used one that has
 * nothing left to send goes. false when every record is busy. */
static bool evict(events *e)
{
    if (e->n_records < e->cache_max)
        return true;
    for (record *r = e->oldest; r; r = r->newer) {
        if (!r->queued && !r->in_flight) {
            drop_record(e, r);
            return true;
        }
    }
    return false;
}

static void enqueue(events *e, record *r)
{
    if (r->queued || r->in_flight)
        return; /* what it carries will include this */
    r->queued = true;
    r->qnext = NULL;
    if (e->qtail)
        e->qtail->qnext = r;
    else
        e->qhead = r;
    e->qtail = r;
    e->n_queued++;
}

static void name_record(events *e, record *r)
{
    /* client-go's "<object>.<hex nanoseconds>", made unique here. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    if (ns <= e->last_ns)
        ns = e->last_ns + 1;
    e->last_ns = ns;
    snprintf(r->name, sizeof r->name, "%.200s.%llx", r->pod, (unsigned long long)ns);
}

static record *new_record(uint64_t h, const char *ns, const char *pod, const char *uid,
                          const char *type, const char *reason, const char *message)
{
    const char *src[6] = {ns, pod, uid, type, reason, message};
    size_t len[6], total = 0;
    for (int i = 0; i < 6; i++)
        total += (len[i] = strlen(src[i])) + 1;
    record *r = calloc(1, sizeof *r + total);
    if (!r)
        return NULL;
    char *p = (char *)(r + 1);
    char **dst[6] = {&r->ns, &r->pod, &r->uid, &r->type, &r->reason, &r->message};
    for (int i = 0; i < 6; i++) {
        *dst[i] = memcpy(p, src[i], len[i] + 1);
        p += len[i] + 1;
    }
    r->hash = h;
    return r;
}

/* ---- emit (any thread) ------------------------------------------------------- */

int events_emit(events *e, const char *ns, const char *pod, const char *uid,
                const char *type, const char *reason, const char *message)
{
    char msg[MAX_MESSAGE + 1];
    snprintf(msg, sizeof msg, "%s", message ? message : "");
    uid = uid ? uid : "";
    uint64_t h = identity(ns, uid, type, reason, msg);
    int64_t now = (int64_t)time(NULL);
    int rc = 0;

    pthread_mutex_lock(&e->lock);
    record *r = find(e, h, ns, uid, type, reason, msg);
    if (r && now - r->first > e->window && !r->queued && !r->in_flight) {
        drop_record(e, r); /* too old to aggregate into: a new Event */
        r = NULL;
    }
    if (r) {
        r->count++;
        r->last = now;
        lru_touch(e, r);
        if (!r->queued && !r->in_flight && e->n_queued >= e->queue_max)
            rc = -1; /* the count reaches the API with the next one */
        else
            enqueue(e, r);
    } else if (e->n_queued >= e->queue_max || !evict(e) ||
               !(r = new_record(h, ns, pod, uid, type, reason, msg))) {
        rc = -1;
    } else {
        r->hnext = e->buckets[h % BUCKETS];
        e->buckets[h % BUCKETS] = r;
        e->n_records++;
        r->count = 1;
        r->first = r->last = now;
        name_record(e, r);
        lru_touch(e, r);
        enqueue(e, r);
    }
    if (rc == 0)
        ev_async_send(e->loop, &e->wake);
    pthread_mutex_unlock(&e->lock);
    if (rc < 0)
        metric_add(e->dropped, NULL, 1);
    return rc;
}

/* ---- sending (loop thread) ------------------------------------------------- */

static void send_more(events *e);

static void write_body(vk_buf *b, events *e, const record *r)
{
    char first[32], last[32];
    vk_rfc3339(r->first, first, sizeof first);
    vk_rfc3339(r->last, last, sizeof last);
    vk_json_writer w;
    vk_jw_begin(&w, b);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_kv_str(&w, "kind", "Event");
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "name", r->name);
    vk_jw_kv_str(&w, "namespace", r->ns);
    vk_jw_map_close(&w);
    vk_jw_str(&w, "involvedObject");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_kv_str(&w, "kind", "Pod");
    vk_jw_kv_str(&w, "namespace", r->ns);
    vk_jw_kv_str(&w, "name", r->pod);
    if (r->uid[0])
        vk_jw_kv_str(&w, "uid", r->uid);
    vk_jw_map_close(&w);
    vk_jw_kv_str(&w, "reason", r->reason);
    vk_jw_kv_str(&w, "message", r->message);
    vk_jw_kv_str(&w, "type", r->type);
    vk_jw_str(&w, "source");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "component", COMPONENT);
    vk_jw_kv_str(&w, "host", e->node);
    vk_jw_map_close(&w);
    vk_jw_kv_str(&w, "reportingComponent", COMPONENT);
    vk_jw_kv_str(&w, "reportingInstance", e->node);
    vk_jw_kv_str(&w, "firstTimestamp", first);
    vk_jw_kv_str(&w, "lastTimestamp", last);
    vk_jw_kv_int(&w, "count", r->count);
    vk_jw_map_close(&w);
    vk_jw_end(&w);
}

static void unlink_sending(events *e, sending *s)
{
    for (sending **p = &e->in_flight; *p; p = &(*p)->next) {
        if (*p == s) {
            *p = s->next;
            break;
        }
    }
    e->n_in_flight--;
}

static void sent(const struct kube_response *resp, void *ud)
{
    sending *s = ud;
    events *e = s->e;
    unlink_sending(e, s);
    if (resp->cancelled) {
        free(s->ns);
        free(s);
        return;
    }
    bool ok = resp->status >= 200 && resp->status < 300;
    if (!ok) {
        char ns_v[LOGVAL_MAX], err_v[LOGVAL_MAX];
        if (!e->failing++)
            vk_warn("cannot record event", "namespace=%s event=%s status=%ld error=%s",
                    logval(ns_v, sizeof ns_v, s->ns), s->name, resp->status,
                    logval(err_v, sizeof err_v, resp->error ? resp->error : ""));
        metric_add(e->dropped, NULL, 1);
    } else if (e->failing) {
        vk_info("recording events again", "failures=%u", e->failing);
        e->failing = 0;
    }

    pthread_mutex_lock(&e->lock);
    record *r;
    for (r = e->buckets[s->hash % BUCKETS]; r; r = r->hnext)
        if (r->in_flight && r->hash == s->hash && !strcmp(r->name, s->name))
            break;
    if (r) {
        r->in_flight = false;
        if (ok) {
            r->sent = s->count;
        } else if (!r->sent || resp->status == 404) {
            /* Not created, or expired since (Events live an hour): the
             * next occurrence creates it afresh, under a new name. */
            r->sent = 0;
            name_record(e, r);
        }
        if (ok && r->count > r->sent && e->n_queued < e->queue_max)
            enqueue(e, r);
    }
    pthread_mutex_unlock(&e->lock);
    free(s->ns);
    free(s);
    send_more(e);
}

static void send_more(events *e)
{
    while (e->n_in_flight < MAX_IN_FLIGHT) {
        vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT;
        sending *s = calloc(1, sizeof *s);
        if (!s)
            return;
        bool create;
        pthread_mutex_lock(&e->lock);
        record *r = e->qhead;
        if (r) {
            e->qhead = r->qnext;
            if (!e->qhead)
                e->qtail = NULL;
            e->n_queued--;
            r->queued = false;
            r->in_flight = true;
            create = r->sent == 0;
            s->e = e;
            s->hash = r->hash;
            s->count = r->count;
            s->ns = strdup(r->ns);
            memcpy(s->name, r->name, sizeof s->name);
            if (create) {
                vk_buf_printf(&path, "/api/v1/namespaces/%s/events", r->ns);
                write_body(&body, e, r);
            } else {
                char last[32];
                vk_rfc3339(r->last, last, sizeof last);
                vk_buf_printf(&path, "/api/v1/namespaces/%s/events/%s", r->ns, r->name);
                vk_buf_printf(&body, "{\"count\":%u,\"lastTimestamp\":\"%s\"}", r->count, last);
            }
        }
        pthread_mutex_unlock(&e->lock);
        if (!r) {
            free(s);
            return;
        }
        if (s->ns && path.data && body.data)
            s->id = kube_request(e->kube, create ? "POST" : "PATCH", path.data,
                                 create ? NULL : "application/merge-patch+json",
                                 body.data, body.len, 0, sent, s);
        vk_buf_free(&path);
        vk_buf_free(&body);
        if (s->id > 0) {
            s->next = e->in_flight;
            e->in_flight = s;
            e->n_in_flight++;
            continue;
        }
        /* Refused (memory, the client's queue): drop it, as a full queue would. */
        metric_add(e->dropped, NULL, 1);
        pthread_mutex_lock(&e->lock);
        r->in_flight = false;
        pthread_mutex_unlock(&e->lock);
        free(s->ns);
        free(s);
        return;
    }
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    send_more(w->data);
}

/* ---- lifecycle ----------------------------------------------------------------- */

events *events_new(const events_config *cfg)
{
    events *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->node = strdup(cfg->node_name);
    if (!e->node) {
        free(e);
        return NULL;
    }
    e->kube = cfg->kube;
    e->loop = kube_client_loop(cfg->kube);
    e->queue_max = cfg->queue_max ? cfg->queue_max : DEFAULT_QUEUE_MAX;
    e->cache_max = cfg->cache_max ? cfg->cache_max : DEFAULT_CACHE_MAX;
    e->window = cfg->window_s > 0 ? cfg->window_s : DEFAULT_WINDOW_S;
    if (cfg->metrics)
        e->dropped = metrics_counter(cfg->metrics, "events_dropped_total",
            "Pod events not recorded: queue full or the API server refused them.", NULL);
    pthread_mutex_init(&e->lock, NULL);
    ev_async_init(&e->wake, wake_cb);
    e->wake.data = e;
    ev_async_start(e->loop, &e->wake);
    ev_unref(e->loop); /* pending events alone do not keep the loop running */
    return e;
}

void events_free(events *e)
{
    if (!e)
        return;
    while (e->in_flight) {
        sending *s = e->in_flight;
        e->in_flight = s->next;
        kube_request_cancel(e->kube, s->id);
        free(s->ns);
        free(s);
    }
    ev_ref(e->loop);
    ev_async_stop(e->loop, &e->wake);
    while (e->oldest)
        drop_record(e, e->oldest);
    pthread_mutex_destroy(&e->lock);
    free(e->node);
    free(e);
}
