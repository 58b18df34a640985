/* kube_watch.c -- a streaming GET cut into events by yajl's parser.
 *
 * The parser runs over each chunk as it arrives and only tracks nesting;
 * when a top-level value closes, yajl_get_bytes_consumed tells where in the
 * chunk it ended. The bytes from the end of the previous event up to there
 * (kept in `event` across chunks) are one event, parsed into a tree with
 * the project's bounded parser.
 */
#include "kube_watch.h"

#include <ev.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "ratelimit.h"

#define DEFAULT_MAX_EVENT ((size_t)16 << 20)
#define DEFAULT_TIMEOUT_MIN_S 300
/* How long after timeoutSeconds a watch still open counts as dead. */
#define WATCHDOG_GRACE_S 30

struct kube_watch {
    struct kube_client *c;
    int64_t req;              /* 0 once the request is over */
    yajl_handle parser;
    vk_buf event;             /* bytes of the event being received */
    const char *chunk;        /* being parsed */
    size_t chunk_start;       /* first byte of chunk not yet in event */
    int depth;
    size_t max_event;
    bool in_event;            /* inside on_event */
    bool freed;               /* kube_watch_free ran inside on_event */
    bool end_set;
    enum kube_watch_end_kind end_kind;
    long end_code;
    char end_msg[512];
    kube_event_fn on_event;
    kube_watch_end_fn on_end;
    void *ud;
};

static const char *const type_names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK"};

const char *kube_event_type_name(enum kube_event_type t)
{
    return (unsigned)t < sizeof type_names / sizeof type_names[0] ? type_names[t] : "?";
}

static void set_end(struct kube_watch *w, enum kube_watch_end_kind kind, long code,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The first reason wins: later ones are consequences (the transfer we
 * stopped reports a write error). */
static void set_end(struct kube_watch *w, enum kube_watch_end_kind kind, long code,
                    const char *fmt, ...)
{
    if (w->end_set)
        return;
    w->end_set = true;
    w->end_kind = kind;
    w->end_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->end_msg, sizeof w->end_msg, fmt, ap);
    va_end(ap);
}

static int keep(struct kube_watch *w, const char *data, size_t len)
{
    if (len > w->max_event - w->event.len) {
        set_end(w, KUBE_WATCH_FAILED, 0, "watch event exceeds %zu bytes", w->max_event);
        return -1;
    }
    if (vk_buf_append(&w->event, data, len) < 0) {
        set_end(w, KUBE_WATCH_FAILED, 0, "out of memory for a watch event");
        return -1;
    }
    return 0;
}

static int type_of(const char *name, enum kube_event_type *t)
{
    for (size_t i = 0; i < sizeof type_names / sizeof type_names[0]; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *t = (enum kube_event_type)i;
            return 0;
        }
    }
    return -1;
}

/* Parse the event in w->event and hand it over. 0 to go on, -1 to stop. */
static int dispatch(struct kube_watch *w)
{
    char err[160];
    yajl_val ev = vk_json_parse(w->event.data, w->event.len, err, sizeof err);
    if (!ev) {
        set_end(w, KUBE_WATCH_FAILED, 0, "malformed watch event: %s", err);
        return -1;
    }
    const char *type = vk_json_str(vk_json_member(ev, "type"), NULL);
    yajl_val *object = NULL;
    if (YAJL_IS_OBJECT(ev)) {
        for (size_t i = ev->u.object.len; i-- > 0;) {
            if (strcmp(ev->u.object.keys[i], "object") == 0) {
                object = &ev->u.object.values[i];
                break;
            }
        }
    }
    int rc = -1;
    enum kube_event_type t;
    if (!type || !object || !YAJL_IS_OBJECT(*object)) {
        set_end(w, KUBE_WATCH_FAILED, 0, "watch event without type or object");
    } else if (strcmp(type, "ERROR") == 0) {
        /* The object is a Status; the server closes the stream after it. */
        long code = (long)vk_json_int(vk_json_member(*object, "code"), 0);
        const char *msg = vk_json_str(vk_json_member(*object, "message"), "watch error");
        set_end(w, code == 410 ? KUBE_WATCH_GONE : KUBE_WATCH_FAILED, code, "%s", msg);
    } else if (type_of(type, &t) < 0) {
        set_end(w, KUBE_WATCH_FAILED, 0, "unknown watch event type %.64s", type);
    } else {
        w->in_event = true;
        w->on_event(w->ud, t, object);
        w->in_event = false;
        rc = w->freed ? -1 : 0;
    }
    yajl_tree_free(ev);
    return rc;
}

/* A value closed; at the top level that is the end of an event. Returns
 * yajl's "go on" (1) or "cancel" (0). */
static int value_done(struct kube_watch *w)
{
    if (w->depth > 0)
        return 1;
    size_t end = yajl_get_bytes_consumed(w->parser);
    if (keep(w, w->chunk + w->chunk_start, end - w->chunk_start) < 0)
        return 0;
    w->chunk_start = end;
    int rc = dispatch(w);
    vk_buf_reset(&w->event);
    return rc == 0;
}

static int on_null(void *ctx)
{
    return value_done(ctx);
}

static int on_boolean(void *ctx, int b)
{
    (void)b;
    return value_done(ctx);
}

static int on_number(void *ctx, const char *s, size_t len)
{
    (void)s;
    (void)len;
    return value_done(ctx);
}

static int on_string(void *ctx, const unsigned char *s, size_t len)
{
    (void)s;
    (void)len;
    return value_done(ctx);
}

static int on_open(void *ctx)
{
    struct kube_watch *w = ctx;
    w->depth++;
    return 1;
}

static int on_close(void *ctx)
{
    struct kube_watch *w = ctx;
    w->depth--;
    return value_done(w);
}

static const yajl_callbacks parse_callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_boolean,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_open,
    .yajl_end_map = on_close,
    .yajl_start_array = on_open,
    .yajl_end_array = on_close,
};

static void destroy(struct kube_watch *w)
{
    if (w->parser)
        yajl_free(w->parser);
    vk_buf_free(&w->event);
    free(w);
}

static int on_data(const char *data, size_t len, void *ud)
{
    struct kube_watch *w = ud;
    w->chunk = data;
    w->chunk_start = 0;
    yajl_status st = yajl_parse(w->parser, (const unsigned char *)data, len);
    w->chunk = NULL;
    if (w->freed) {
        destroy(w);
        return -1;
    }
    if (st == yajl_status_client_canceled)
        return -1;
    if (st != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(w->parser, 0, NULL, 0);
        const char *m = msg ? (const char *)msg : "invalid JSON";
        set_end(w, KUBE_WATCH_FAILED, 0, "malformed watch stream: %.*s",
                (int)strcspn(m, "\n"), m);
        if (msg)
            yajl_free_error(w->parser, msg);
        return -1;
    }
    return keep(w, data + w->chunk_start, len - w->chunk_start);
}

static bool blank(const vk_buf *b)
{
    for (size_t i = 0; i < b->len; i++)
        if (!strchr(" \t\r\n", b->data[i]))
            return false;
    return true;
}

static void on_done(const struct kube_response *resp, void *ud)
{
    struct kube_watch *w = ud;
    w->req = 0;
    if (resp->cancelled)
        set_end(w, KUBE_WATCH_CANCELLED, 0, "cancelled");
    else if (resp->status == 410)
        set_end(w, KUBE_WATCH_GONE, 410, "%s", resp->error);
    else if (resp->error)
        set_end(w, KUBE_WATCH_FAILED, resp->status, "%s", resp->error);
    else if (w->depth > 0 || !blank(&w->event))
        set_end(w, KUBE_WATCH_FAILED, resp->status, "watch stream ended in the middle of an event");
    else
        set_end(w, KUBE_WATCH_CLOSED, resp->status, "closed by the server");
    struct kube_watch_end end = {w->end_kind, w->end_code, w->end_msg};
    /* The owner may free w in there. */
    w->on_end(w->ud, &end);
}

struct kube_watch *kube_watch_start(struct kube_client *c, const struct kube_watch_opts *o)
{
    if (!c || !o || !o->path || !o->on_event || !o->on_end)
        return NULL;
    struct kube_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->c = c;
    w->max_event = o->max_event ? o->max_event : DEFAULT_MAX_EVENT;
    w->on_event = o->on_event;
    w->on_end = o->on_end;
    w->ud = o->ud;
    w->parser = yajl_alloc(&parse_callbacks, NULL, w);
    if (!w->parser || !yajl_config(w->parser, yajl_allow_multiple_values, 1)) {
        destroy(w);
        return NULL;
    }
    unsigned timeout_s = o->timeout_s;
    if (!timeout_s) {
        /* Spread reconnects out, as client-go does. */
        uint64_t seed = (uint64_t)(ev_now(kube_client_loop(c)) * 1e6) ^ (uint64_t)(uintptr_t)w;
        timeout_s = DEFAULT_TIMEOUT_MIN_S +
                    (unsigned)(rand_unit(&seed) * DEFAULT_TIMEOUT_MIN_S);
    }
    vk_buf path = VK_BUF_INIT;
    char num[24];
    snprintf(num, sizeof num, "%u", timeout_s);
    int bad = vk_buf_puts(&path, o->path) < 0 ||
              kube_path_query(&path, "watch", "1") < 0 ||
              kube_path_query(&path, "allowWatchBookmarks", "true") < 0 ||
              kube_path_query(&path, "timeoutSeconds", num) < 0 ||
              (o->resource_version && *o->resource_version &&
               kube_path_query(&path, "resourceVersion", o->resource_version) < 0) ||
              (o->field_selector && *o->field_selector &&
               kube_path_query(&path, "fieldSelector", o->field_selector) < 0) ||
              (o->label_selector && *o->label_selector &&
               kube_path_query(&path, "labelSelector", o->label_selector) < 0);
    if (!bad)
        w->req = kube_stream(c, path.data, ((long)timeout_s + WATCHDOG_GRACE_S) * 1000L,
                             on_data, on_done, w);
    vk_buf_free(&path);
    if (bad || w->req < 0) {
        destroy(w);
        return NULL;
    }
    return w;
}

void kube_watch_free(struct kube_watch *w)
{
    if (!w)
        return;
    if (w->req > 0) {
        kube_request_cancel(w->c, w->req);
        w->req = 0;
    }
    if (w->in_event) {
        /* on_data frees it once the parser has returned. */
        w->freed = true;
        return;
    }
    destroy(w);
}
