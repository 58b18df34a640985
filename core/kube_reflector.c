/* kube_reflector.c -- list, watch, and recover. */
#include "kube_reflector.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "ratelimit.h"

#define DEFAULT_PAGE_SIZE 500
#define DEFAULT_MAX_ITEMS 100000
#define DEFAULT_BACKOFF_INITIAL_S 0.2
#define DEFAULT_BACKOFF_MAX_S 30.0
/* A clean close this soon after the start, with nothing delivered, looks
 * like a server (or proxy) that cuts every watch: back off instead of
 * spinning. */
#define HEALTHY_WATCH_S 1.0
/* etcd revisions are int64 in decimal; anything longer is not one. */
#define MAX_RESOURCE_VERSION 64

enum step { STEP_LIST, STEP_WATCH };

struct kube_reflector {
    struct kube_client *c;
    struct ev_loop *loop;
    char *path;
    char *field_selector;
    char *label_selector;
    unsigned page_size;
    unsigned watch_timeout_s;
    size_t max_items;
    kube_replace_fn on_replace;
    kube_object_fn on_event;
    void *ud;

    int64_t list_req;         /* 0: no list page in flight */
    char *list_continue;      /* token of the next page, NULL for the first */
    yajl_val *items;          /* the list so far, taken out of its pages */
    size_t n_items, cap_items;

    struct kube_watch *watch;
    double watch_started;
    unsigned long watch_events;

    ev_timer retry;
    enum step next;           /* what the retry timer starts */
    struct backoff backoff;
    unsigned failing;         /* consecutive failures */

    char rv[MAX_RESOURCE_VERSION + 1];
    bool synced;
    int in_cb;                /* inside an owner callback */
    bool freed;               /* kube_reflector_free ran in there */
    struct kube_reflector_stats stats;
};

static void start_list_page(struct kube_reflector *r);
static void start_watch(struct kube_reflector *r);

/* ---- bookkeeping ------------------------------------------------------------ */

static void drop_items(struct kube_reflector *r)
{
    for (size_t i = 0; i < r->n_items; i++)
        yajl_tree_free(r->items[i]);
    r->n_items = 0;
    free(r->list_continue);
    r->list_continue = NULL;
}

static void destroy(struct kube_reflector *r)
{
    drop_items(r);
    free(r->items);
    free(r->path);
    free(r->field_selector);
    free(r->label_selector);
    free(r);
}

/* Cancel whatever is in flight; no callback will come. */
static void stop(struct kube_reflector *r)
{
    if (r->list_req > 0)
        kube_request_cancel(r->c, r->list_req);
    r->list_req = 0;
    kube_watch_free(r->watch);
    r->watch = NULL;
    ev_timer_stop(r->loop, &r->retry);
}

/* After an owner callback: finish a free that happened inside it. true
 * when r is gone. */
static bool leave_cb(struct kube_reflector *r)
{
    r->in_cb--;
    if (r->freed && !r->in_cb) {
        destroy(r);
        return true;
    }
    return r->freed;
}

static void schedule(struct kube_reflector *r, enum step step, double delay)
{
    r->next = step;
    ev_timer_stop(r->loop, &r->retry);
    ev_timer_set(&r->retry, delay, 0.);
    ev_timer_start(r->loop, &r->retry);
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    struct kube_reflector *r = w->data;
    if (r->next == STEP_WATCH) {
        start_watch(r);
    } else {
        drop_items(r);
        start_list_page(r);
    }
}

static void succeeded(struct kube_reflector *r)
{
    backoff_reset(&r->backoff);
    if (r->failing)
        vk_info("kube reflector recovered", "path=%s selector=\"%s\" failures=%u", r->path,
                r->field_selector ? r->field_selector : "", r->failing);
    r->failing = 0;
}

static void failed(struct kube_reflector *r, enum step step, long code, const char *error)
{
    double delay = backoff_next(&r->backoff);
    r->stats.failures++;
    r->failing++;
    /* Once per streak is enough for a human; the rest is noise. */
    enum vk_log_level level = r->failing == 1 ? VK_LOG_WARN : VK_LOG_DEBUG;
    if (vk_log_enabled(level))
        vk_log(level, step == STEP_LIST ? "kube list failed" : "kube watch failed",
               "path=%s selector=\"%s\" status=%ld error=\"%s\" retry_in=%.2fs failures=%u",
               r->path, r->field_selector ? r->field_selector : "", code, error, delay,
               r->failing);
    if (step == STEP_LIST)
        drop_items(r);
    schedule(r, step, delay);
}

static void gone(struct kube_reflector *r, const char *why)
{
    r->stats.gone++;
    vk_info("kube resourceVersion expired; listing again", "path=%s rv=%s reason=\"%s\"",
            r->path, r->rv, why);
    drop_items(r);
    schedule(r, STEP_LIST, backoff_next(&r->backoff));
}

/* ---- list ------------------------------------------------------------------- */

static void deliver_list(struct kube_reflector *r, const char *rv)
{
    snprintf(r->rv, sizeof r->rv, "%s", rv);
    r->stats.lists++;
    r->synced = true;
    succeeded(r);
    free(r->list_continue);
    r->list_continue = NULL;
    r->in_cb++;
    r->on_replace(r->ud, r->items, r->n_items);
    for (size_t i = 0; i < r->n_items; i++)
        yajl_tree_free(r->items[i]);
    r->n_items = 0;
    if (leave_cb(r))
        return;
    start_watch(r);
}

/* Move the page's items into r->items. -1 with a message when over the
 * bound or out of memory. */
static int take_items(struct kube_reflector *r, yajl_val items, char *err, size_t errlen)
{
    if (!items || YAJL_IS_NULL(items))
        return 0;
    if (!YAJL_IS_ARRAY(items)) {
        snprintf(err, errlen, "list has no items array");
        return -1;
    }
    size_t n = items->u.array.len;
    if (n > r->max_items - r->n_items) {
        snprintf(err, errlen, "list has more than %zu items", r->max_items);
        return -1;
    }
    if (r->n_items + n > r->cap_items) {
        size_t cap = r->cap_items ? r->cap_items : 64;
        while (cap < r->n_items + n)
            cap *= 2;
        yajl_val *p = realloc(r->items, cap * sizeof *p);
        if (!p) {
            snprintf(err, errlen, "out of memory for the list");
            return -1;
        }
        r->items = p;
        r->cap_items = cap;
    }
    for (size_t i = 0; i < n; i++) {
        r->items[r->n_items++] = items->u.array.values[i];
        items->u.array.values[i] = NULL;
    }
    return 0;
}

static void list_done(const struct kube_response *resp, void *ud)
{
    struct kube_reflector *r = ud;
    r->list_req = 0;
    if (resp->cancelled)
        return;
    if (resp->status == 410) {
        /* The continue token outlived etcd's compaction. */
        gone(r, resp->error);
        return;
    }
    if (resp->error) {
        failed(r, STEP_LIST, resp->status, resp->error);
        return;
    }
    char err[200];
    yajl_val page = vk_json_parse(resp->body, resp->len, err, sizeof err);
    if (!page) {
        failed(r, STEP_LIST, resp->status, err);
        return;
    }
    yajl_val meta = vk_json_member(page, "metadata");
    const char *rv = vk_json_str(vk_json_member(meta, "resourceVersion"), "");
    const char *cont = vk_json_str(vk_json_member(meta, "continue"), "");
    if (take_items(r, vk_json_member(page, "items"), err, sizeof err) < 0) {
        failed(r, STEP_LIST, resp->status, err);
    } else if (*cont) {
        free(r->list_continue);
        r->list_continue = strdup(cont);
        if (!r->list_continue)
            failed(r, STEP_LIST, resp->status, "out of memory");
        else
            start_list_page(r);
    } else if (!*rv || strlen(rv) > MAX_RESOURCE_VERSION) {
        failed(r, STEP_LIST, resp->status, "list without a usable resourceVersion");
    } else {
        /* rv lives in page: deliver before freeing it. */
        deliver_list(r, rv);
        /* r may be gone; page is ours. */
    }
    yajl_tree_free(page);
}

static void start_list_page(struct kube_reflector *r)
{
    vk_buf path = VK_BUF_INIT;
    char limit[24];
    snprintf(limit, sizeof limit, "%u", r->page_size);
    bool bad = vk_buf_puts(&path, r->path) < 0 ||
               kube_path_query(&path, "limit", limit) < 0 ||
               (r->list_continue &&
                kube_path_query(&path, "continue", r->list_continue) < 0) ||
               (r->field_selector &&
                kube_path_query(&path, "fieldSelector", r->field_selector) < 0) ||
               (r->label_selector &&
                kube_path_query(&path, "labelSelector", r->label_selector) < 0);
    if (!bad)
        r->list_req = kube_request(r->c, "GET", path.data, NULL, NULL, 0, 0, list_done, r);
    vk_buf_free(&path);
    if (bad || r->list_req < 0) {
        r->list_req = 0;
        failed(r, STEP_LIST, 0, "cannot submit the list request (memory or rate-limit queue)");
    }
}

/* ---- watch ------------------------------------------------------------------ */

static void watch_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    struct kube_reflector *r = ud;
    const char *rv = vk_json_str(vk_json_get(*object, "metadata", "resourceVersion", NULL), NULL);
    if (rv && *rv && strlen(rv) <= MAX_RESOURCE_VERSION)
        memcpy(r->rv, rv, strlen(rv) + 1);
    if (!r->watch_events++)
        succeeded(r);
    if (type == KUBE_BOOKMARK)
        return;
    r->in_cb++;
    r->on_event(r->ud, type, object);
    leave_cb(r);
}

static void watch_end(void *ud, const struct kube_watch_end *end)
{
    struct kube_reflector *r = ud;
    /* end lives in the watch: free it last. */
    struct kube_watch *w = r->watch;
    r->watch = NULL;
    /* A watch that stayed open a while proved the server healthy even if
     * nothing changed (a quiet Secret's watch sees no event for hours): the
     * next failure starts a new streak, not the storm's raised back-off. */
    if (end->kind != KUBE_WATCH_CANCELLED && ev_now(r->loop) - r->watch_started >= HEALTHY_WATCH_S)
        succeeded(r);
    switch (end->kind) {
    case KUBE_WATCH_CANCELLED:
        break;
    case KUBE_WATCH_GONE:
        gone(r, end->message);
        break;
    case KUBE_WATCH_CLOSED:
        if (r->watch_events || ev_now(r->loop) - r->watch_started >= HEALTHY_WATCH_S) {
            vk_debug("kube watch closed; watching again", "path=%s rv=%s events=%lu", r->path,
                     r->rv, r->watch_events);
            schedule(r, STEP_WATCH, 0);
        } else {
            failed(r, STEP_WATCH, end->code, "the server closed the watch at once");
        }
        break;
    case KUBE_WATCH_FAILED:
        failed(r, STEP_WATCH, end->code, end->message);
        break;
    }
    kube_watch_free(w);
}

static void start_watch(struct kube_reflector *r)
{
    struct kube_watch_opts o = {
        .path = r->path,
        .resource_version = r->rv,
        .field_selector = r->field_selector,
        .label_selector = r->label_selector,
        .timeout_s = r->watch_timeout_s,
        .on_event = watch_event,
        .on_end = watch_end,
        .ud = r,
    };
    r->watch = kube_watch_start(r->c, &o);
    if (!r->watch) {
        failed(r, STEP_WATCH, 0, "cannot submit the watch request");
        return;
    }
    r->stats.watches++;
    r->watch_started = ev_now(r->loop);
    r->watch_events = 0;
}

/* ---- public ----------------------------------------------------------------- */

struct kube_reflector *kube_reflector_start(struct kube_client *c,
                                            const struct kube_reflector_config *cfg)
{
    if (!c || !cfg || !cfg->path || cfg->path[0] != '/' || !cfg->on_replace || !cfg->on_event)
        return NULL;
    struct kube_reflector *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->loop = kube_client_loop(c);
    bool has_field = cfg->field_selector && *cfg->field_selector;
    bool has_label = cfg->label_selector && *cfg->label_selector;
    r->path = strdup(cfg->path);
    r->field_selector = has_field ? strdup(cfg->field_selector) : NULL;
    r->label_selector = has_label ? strdup(cfg->label_selector) : NULL;
    if (!r->path || (has_field && !r->field_selector) || (has_label && !r->label_selector)) {
        destroy(r);
        return NULL;
    }
    r->page_size = cfg->page_size ? cfg->page_size : DEFAULT_PAGE_SIZE;
    r->watch_timeout_s = cfg->watch_timeout_s;
    r->max_items = cfg->max_items ? cfg->max_items : DEFAULT_MAX_ITEMS;
    r->on_replace = cfg->on_replace;
    r->on_event = cfg->on_event;
    r->ud = cfg->ud;
    backoff_init(&r->backoff,
                 cfg->backoff_initial_s > 0 ? cfg->backoff_initial_s : DEFAULT_BACKOFF_INITIAL_S,
                 cfg->backoff_max_s > 0 ? cfg->backoff_max_s : DEFAULT_BACKOFF_MAX_S, 0);
    ev_init(&r->retry, retry_cb);
    r->retry.data = r;
    schedule(r, STEP_LIST, 0);
    return r;
}

void kube_reflector_free(struct kube_reflector *r)
{
    if (!r)
        return;
    stop(r);
    if (r->in_cb) {
        r->freed = true;
        return;
    }
    destroy(r);
}

bool kube_reflector_synced(const struct kube_reflector *r)
{
    return r->synced;
}

const char *kube_reflector_resource_version(const struct kube_reflector *r)
{
    return r->rv;
}

const struct kube_reflector_stats *kube_reflector_stats(const struct kube_reflector *r)
{
    return &r->stats;
}
