/* lease.c -- create, read and renew the node's Lease. */
#include "lease.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "logval.h"
#include "ratelimit.h"

#define COLLECTION "/apis/coordination.k8s.io/v1/namespaces/" LEASE_NAMESPACE "/leases"
#define BACKOFF_INITIAL_S 0.2
#define BACKOFF_MAX_S 7.0
/* A conflict (409) or a vanished Lease (404) is answered at once with a
 * GET or a POST; should that keep happening, the retries back off like
 * any other failure instead of hammering the server. */
#define MAX_QUICK_RETRIES 3

enum step { STEP_GET, STEP_CREATE, STEP_RENEW };

struct lease {
    struct kube_client *kube;
    struct ev_loop *loop;
    char *name;
    char *path;
    char *owner_uid;          /* NULL: leave ownerReferences alone */
    int duration_s;
    double renew_s;
    long timeout_ms;
    bool running;

    yajl_val obj;             /* the Lease as last read or written; NULL: unknown */
    int64_t req;              /* in flight; 0: none */
    enum step req_step;
    ev_timer timer;
    struct backoff backoff;
    unsigned failing;         /* failures in a row */
    unsigned quick;           /* immediate retries in a row */
    double written_at;        /* renewTime of the request in flight */

    metric *renewals, *last_renew;
};

/* ---- the document ------------------------------------------------------ */

/* renewTime is a MicroTime: RFC 3339 with exactly six fractional digits. */
static void micro_time_now(char *out, size_t cap, double *unix_now)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, cap - n, ".%06ldZ", ts.tv_nsec / 1000);
    *unix_now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool skipped(const char *key, const char *const *skip)
{
    for (; *skip; skip++)
        if (strcmp(key, *skip) == 0)
            return true;
    return false;
}

/* The members of object v except those named in skip, so that what the
 * server added (labels, annotations, managedFields, acquireTime, fields of
 * newer versions) goes back untouched. */
static void copy_members(vk_json_writer *w, yajl_val v, const char *const *skip)
{
    if (!YAJL_IS_OBJECT(v))
        return;
    for (size_t i = 0; i < v->u.object.len; i++) {
        if (skipped(v->u.object.keys[i], skip))
            continue;
        vk_jw_str(w, v->u.object.keys[i]);
        vk_jw_tree(w, v->u.object.values[i]);
    }
}

static void write_owners(vk_json_writer *w, const lease *l, yajl_val current)
{
    vk_jw_str(w, "ownerReferences");
    vk_jw_array_open(w);
    /* Owners other than a Node are someone else's business. */
    if (YAJL_IS_ARRAY(current)) {
        for (size_t i = 0; i < current->u.array.len; i++) {
            yajl_val ref = current->u.array.values[i];
            if (strcmp(vk_json_str(vk_json_member(ref, "kind"), ""), "Node") != 0)
                vk_jw_tree(w, ref);
        }
    }
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "apiVersion", "v1");
    vk_jw_kv_str(w, "kind", "Node");
    vk_jw_kv_str(w, "name", l->name);
    vk_jw_kv_str(w, "uid", l->owner_uid);
    vk_jw_map_close(w);
    vk_jw_array_close(w);
}

/* The Lease to POST (l->obj NULL) or PUT (l->obj with its
 * resourceVersion), renewed now. */
static int render(const lease *l, vk_buf *out, double *unix_now)
{
    static const char *const top_skip[] = {"metadata", "spec", NULL};
    static const char *const meta_skip[] = {"ownerReferences", NULL};
    static const char *const spec_skip[] = {"holderIdentity", "leaseDurationSeconds",
                                            "renewTime", NULL};
    static const char *const none[] = {NULL};
    char now[40];
    micro_time_now(now, sizeof now, unix_now);
    yajl_val meta = vk_json_member(l->obj, "metadata");
    yajl_val owners = vk_json_member(meta, "ownerReferences");

    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    if (l->obj) {
        copy_members(&w, l->obj, top_skip);
    } else {
        vk_jw_kv_str(&w, "apiVersion", "coordination.k8s.io/v1");
        vk_jw_kv_str(&w, "kind", "Lease");
    }
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    if (meta) {
        copy_members(&w, meta, l->owner_uid ? meta_skip : none);
    } else {
        vk_jw_kv_str(&w, "name", l->name);
        vk_jw_kv_str(&w, "namespace", LEASE_NAMESPACE);
    }
    if (l->owner_uid)
        write_owners(&w, l, owners);
    vk_jw_map_close(&w);
    vk_jw_str(&w, "spec");
    vk_jw_map_open(&w);
    copy_members(&w, vk_json_member(l->obj, "spec"), spec_skip);
    vk_jw_kv_str(&w, "holderIdentity", l->name);
    vk_jw_kv_int(&w, "leaseDurationSeconds", l->duration_s);
    vk_jw_kv_str(&w, "renewTime", now);
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

/* ---- outcomes ------------------------------------------------------------ */

static void schedule(lease *l, double delay)
{
    ev_timer_stop(l->loop, &l->timer);
    ev_timer_set(&l->timer, delay, 0.);
    ev_timer_start(l->loop, &l->timer);
}

static void succeeded(lease *l, yajl_val obj, double renewed_at)
{
    yajl_tree_free(l->obj);
    l->obj = obj;
    l->quick = 0;
    backoff_reset(&l->backoff);
    if (l->failing)
        vk_info("node lease renewed again", "node=%s failures=%u", l->name, l->failing);
    l->failing = 0;
    metric_add(l->renewals, (const char *[]){"ok"}, 1);
    metric_set(l->last_renew, NULL, renewed_at);
    schedule(l, l->renew_s);
}

static void failed(lease *l, long status, const char *why)
{
    char why_v[LOGVAL_MAX];
    metric_add(l->renewals, (const char *[]){"error"}, 1);
    if (l->failing++ == 0)
        vk_warn("cannot renew the node lease", "node=%s status=%ld error=%s", l->name, status,
                logval(why_v, sizeof why_v, why));
    else
        vk_debug("cannot renew the node lease", "node=%s status=%ld error=%s failures=%u",
                 l->name, status, logval(why_v, sizeof why_v, why), l->failing);
    double delay = backoff_next(&l->backoff);
    schedule(l, delay < l->renew_s ? delay : l->renew_s);
}

static void send(lease *l, enum step s);

/* A 404 or 409 that another request answers: at once, a few times. */
static void retry_now(lease *l, enum step s, const struct kube_response *resp)
{
    if (++l->quick > MAX_QUICK_RETRIES) {
        l->quick = 0;
        failed(l, resp->status, resp->error ? resp->error : "conflict");
        return;
    }
    send(l, s);
}

static void on_done(const struct kube_response *resp, void *ud)
{
    lease *l = ud;
    l->req = 0;
    if (resp->cancelled)
        return;
    long code = resp->status;
    yajl_val obj = NULL;
    if (code >= 200 && code < 300) {
        char err[128];
        obj = vk_json_parse(resp->body, resp->len, err, sizeof err);
        if (!YAJL_IS_OBJECT(obj)) {
            if (obj)
                snprintf(err, sizeof err, "the answer is not a JSON object");
            yajl_tree_free(obj);
            failed(l, code, err);
            return;
        }
    }
    if (obj) {
        if (l->req_step == STEP_GET) {
            yajl_tree_free(l->obj);
            l->obj = obj;
            send(l, STEP_RENEW);
        } else {
            succeeded(l, obj, l->written_at);
        }
        return;
    }
    if (code == 404 && l->req_step != STEP_CREATE) {
        /* Never created, or collected with a deleted Node. */
        yajl_tree_free(l->obj);
        l->obj = NULL;
        retry_now(l, STEP_CREATE, resp);
    } else if (code == 409 && l->req_step != STEP_GET) {
        /* Written by someone else since we read it, or created
         * concurrently: read it again, then renew that. */
        yajl_tree_free(l->obj);
        l->obj = NULL;
        retry_now(l, STEP_GET, resp);
    } else {
        failed(l, code, resp->error ? resp->error : "unexpected answer");
    }
}

static void send(lease *l, enum step s)
{
    vk_buf body = VK_BUF_INIT;
    int64_t id = -1;
    l->req_step = s;
    if (s == STEP_GET) {
        id = kube_request(l->kube, "GET", l->path, NULL, NULL, 0, l->timeout_ms, on_done, l);
    } else if (render(l, &body, &l->written_at) == 0) {
        if (s == STEP_CREATE)
            id = kube_request(l->kube, "POST", COLLECTION, NULL, body.data, body.len,
                              l->timeout_ms, on_done, l);
        else
            id = kube_request(l->kube, "PUT", l->path, NULL, body.data, body.len,
                              l->timeout_ms, on_done, l);
    }
    vk_buf_free(&body);
    if (id < 0) {
        failed(l, 0, "cannot submit the request (out of memory or client queue full)");
        return;
    }
    l->req = id;
}

/* Read the Lease if we do not know it, else renew it. */
static void step(lease *l)
{
    send(l, l->obj ? STEP_RENEW : STEP_GET);
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    step(t->data);
}

/* ---- public ---------------------------------------------------------------- */

lease *lease_new(const lease_config *cfg)
{
    if (!cfg->kube || !cfg->node_name || !*cfg->node_name)
        return NULL;
    lease *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    vk_buf path = VK_BUF_INIT;
    l->name = strdup(cfg->node_name);
    if (!l->name || vk_buf_printf(&path, COLLECTION "/%s", cfg->node_name) < 0) {
        vk_buf_free(&path);
        free(l->name);
        free(l);
        return NULL;
    }
    l->path = vk_buf_steal(&path, NULL);
    l->kube = cfg->kube;
    l->loop = kube_client_loop(cfg->kube);
    l->duration_s = cfg->duration_s > 0 ? cfg->duration_s : LEASE_DEFAULT_DURATION_S;
    l->renew_s = (cfg->renew_ms > 0 ? cfg->renew_ms : LEASE_DEFAULT_RENEW_MS) / 1000.0;
    /* Bounded well inside the lease, leaving time for retries. */
    l->timeout_ms = l->duration_s * 1000L / 4;
    ev_init(&l->timer, on_timer);
    l->timer.data = l;
    backoff_init(&l->backoff, BACKOFF_INITIAL_S, BACKOFF_MAX_S, 0);
    if (cfg->metrics) {
        l->renewals = metrics_counter(cfg->metrics, "lease_renewals_total",
            "Node Lease writes (create or renew), by result.", "result");
        l->last_renew = metrics_gauge(cfg->metrics, "lease_last_renew_timestamp_seconds",
            "Unix time of the last successful node Lease renewal.", NULL);
    }
    return l;
}

void lease_start(lease *l, const char *node_uid)
{
    if (node_uid && (!l->owner_uid || strcmp(node_uid, l->owner_uid) != 0)) {
        char *uid = strdup(node_uid);
        if (uid) {
            free(l->owner_uid);
            l->owner_uid = uid;
        }
    }
    if (l->running)
        return;
    l->running = true;
    step(l);
}

void lease_stop(lease *l)
{
    l->running = false;
    ev_timer_stop(l->loop, &l->timer);
    if (l->req) {
        kube_request_cancel(l->kube, l->req);
        l->req = 0;
    }
}

void lease_free(lease *l)
{
    if (!l)
        return;
    lease_stop(l);
    yajl_tree_free(l->obj);
    free(l->owner_uid);
    free(l->path);
    free(l->name);
    free(l);
}
