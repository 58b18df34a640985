/* kubelet_api.c -- routing and handlers of the kubelet API.
 *
 * A request becomes a `call` that lives through authorization (maybe a
 * review on the API server) and, for the provider's unary RPCs, a job on
 * the worker pool. A log request becomes a `log_stream` instead, with a
 * reader thread of its own: a followed log may stay open for days, which
 * must not hold a pool thread.
 *
 * Log stream handoff, under api->mu: the reader thread appends chunks to
 * the stream's ring (bounded in chunks and bytes, the thread waits on the
 * stream's condition variable while it is full), then puts the stream on
 * api->ready (at most once) and wakes the loop with an ev_async. The loop
 * moves chunks from the ring to the connection while it is writable; the
 * connection's `writable` callback resumes it. A stream is freed by the
 * loop once its thread finished and is off the ready list.
 */
#include "kubelet_api.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"
#include "logval.h"

#define DEFAULT_MAX_LOG_STREAMS 64
#define LOG_QUEUE_CHUNKS 64
#define LOG_QUEUE_BYTES (256 * 1024)
/* A log's response head waits this long for the provider's first chunk or
 * its error, so that a container the provider does not know (the pod
 * cache knew it: an unknown one is a 404 before the call) is a 404 too,
 * not a 200 with an empty body; a quiet followed log then gets its 200
 * anyway. */
#define LOG_HEAD_GRACE 1.0
/* A log that is not followed must get the provider's first chunk or its end
 * within this long (the provider client's unary deadline), and after that
 * never wait longer than this for the next chunk or the end: a provider
 * that never answers, or sends part of the log and then goes quiet without
 * ending the stream, must not hang `kubectl logs` (the kubelet reads a
 * file, which never hangs). Time the provider is held back because the
 * client is slow does not count. A followed log may stay quiet for as
 * long as the container does: it has no such limit (nor the streaming
 * idle timeout, which the kubelet does not apply to logs either). */
#define LOG_ANSWER_DEADLINE 10.0
#define MAX_SEGMENTS 6

#define JSON_HEADERS "Content-Type: application/json\r\n"
#define TEXT_HEADERS "Content-Type: text/plain; charset=utf-8\r\n"

enum route {
    R_UNKNOWN,
    R_HEALTHZ,
    R_PODS,
    R_RUNNING_PODS,
    R_LOGS,
    R_STATS,
    R_METRICS,
    R_METRICS_RESOURCE,
    R_EXEC,
    R_ATTACH,
    R_PORT_FORWARD,
    R_RUN,
};

/* Metric labels. */
static const char *const route_names[] = {
    "unknown", "healthz", "pods", "runningpods", "containerLogs", "stats",
    "metrics", "metrics_resource", "exec", "attach", "portForward", "run",
};

typedef struct log_stream log_stream;

struct kubelet_api {
    struct ev_loop *loop;
    char *node_name;
    vk_pool *pool;
    metrics *metrics;
    kubelet_auth *auth;
    kubelet_pods_fn pods;
    kubelet_pod_fn pod;
    void *pods_ud;
    int max_log_streams;
    kubelet_upgrade_fn upgrade;
    void *upgrade_ud;

    provider_client *pc;      /* NULL while the provider is down */

    metric *requests;         /* by route and code */
    metric *log_streams;      /* provider log streams open */
    metric *log_silences;     /* not followed, ended at LOG_ANSWER_DEADLINE */

    log_stream *streams;      /* every stream, loop side */
    int n_streams;
    pthread_mutex_t mu;
    log_stream *ready;        /* streams with news for the loop */
    ev_async wake;
};

typedef struct call {
    kubelet_api *api;
    http_request *req;        /* NULL once the client went away */
    enum route route;
    char *path;               /* segments point into it */
    const char *seg[MAX_SEGMENTS];
    int n_seg;
    kubelet_auth_pending *auth;
    bool in_pool;
    /* a unary provider call */
    provider_client *pc;
    int code;
    vk_status st;
    vk_buf out;
    Vkc__Provider__V1__GetPodsResponse *pods;
} call;

struct log_stream {
    kubelet_api *api;
    log_stream *prev, *next;  /* api->streams */
    http_request *req;        /* NULL once the client went away */
    bool head_sent;
    bool provider_gone;       /* cancelled because the provider went down */
    bool timed_out;           /* cancelled at LOG_ANSWER_DEADLINE before any chunk */
    ev_timer grace;           /* LOG_HEAD_GRACE, or LOG_ANSWER_DEADLINE unless follow */
    pthread_t thread;
    provider_client *pc;

    /* The provider request; the strings are owned. */
    Vkc__Provider__V1__GetContainerLogsRequest msg;
    Vkc__Provider__V1__PodRef ref;
    Vkc__Provider__V1__Int64Value tail, since_s, since_t, limit;

    /* Shared with the thread, under api->mu. */
    pthread_cond_t cond;
    pc_stream *stream;
    Vkc__Provider__V1__LogChunk *ring[LOG_QUEUE_CHUNKS];
    unsigned head, count;
    size_t bytes;
    bool cancelled, finished, on_ready;
    bool silenced;            /* ended at LOG_ANSWER_DEADLINE after chunks came */
    bool cut;                 /* silenced with a chunk the ring had no room for */
    bool held_back;           /* the thread waits for room in the ring */
    double active;            /* mono_now() of the provider's last chunk, or of
                               * the end of a wait for room */
    log_stream *ready_next;
    int code;
    char *message;
};

/* CLOCK_MONOTONIC in seconds: the log threads and the loop compare it. */
static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- responses -------------------------------------------------------------- */

static const char *status_reason(int code)
{
    switch (code) {
    case 400: return "BadRequest";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 422: return "Invalid";
    case 501: return "NotImplemented";
    case 503: return "ServiceUnavailable";
    case 504: return "Timeout";
    default: return "InternalError";
    }
}

static void count(kubelet_api *api, enum route r, int status)
{
    char code[8];
    snprintf(code, sizeof code, "%d", status);
    metric_add(api->requests, (const char *[]){route_names[r], code}, 1);
}

static void reply(kubelet_api *api, http_request *req, enum route r, int status,
                  const char *headers, const char *body, size_t len)
{
    count(api, r, status);
    http_respond(req, status, headers, body, len);
}

/* A Kubernetes Status document. */
static void reply_status(kubelet_api *api, http_request *req, enum route r, int status,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void reply_status(kubelet_api *api, http_request *req, enum route r, int status,
                         const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    vk_buf b = VK_BUF_INIT;
    vk_json_writer w;
    vk_jw_begin(&w, &b);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "kind", "Status");
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_map_close(&w);
    vk_jw_kv_str(&w, "status", "Failure");
    vk_jw_kv_str(&w, "message", message);
    vk_jw_kv_str(&w, "reason", status_reason(status));
    vk_jw_kv_int(&w, "code", status);
    vk_jw_map_close(&w);
    if (vk_jw_end(&w) < 0)
        reply(api, req, r, 500, TEXT_HEADERS, "out of memory\n", 14);
    else
        reply(api, req, r, status, JSON_HEADERS, b.data, b.len);
    vk_buf_free(&b);
}

static int http_code_of(int grpc_code)
{
    switch (grpc_code) {
    case VK_NOT_FOUND: return 404;
    case VK_INVALID_ARGUMENT:
    /* The kubelet's answer, e.g. to logs of a container still waiting. */
    case VK_FAILED_PRECONDITION: return 400;
    case VK_UNAVAILABLE: return 503;
    case VK_DEADLINE_EXCEEDED: return 504;
    case VK_UNIMPLEMENTED: return 501;
    default: return 500;
    }
}

static void reply_provider_error(kubelet_api *api, http_request *req, enum route r,
                                 int code, const char *message)
{
    reply_status(api, req, r, http_code_of(code), "%s",
                 message && message[0] ? message : vk_status_code_name(code));
}

/* ---- routing ------------------------------------------------------------------ */

/* Split path into segments; a trailing slash is allowed. An empty segment
 * inside stays: where a name is expected, names_ok refuses it (400). */
static void split(call *c)
{
    char *p = c->path + 1;
    c->n_seg = 0;
    if (c->path[0] != '/')
        return;
    while (*p && c->n_seg < MAX_SEGMENTS) {
        char *slash = strchr(p, '/');
        if (slash)
            *slash = '\0';
        c->seg[c->n_seg++] = p;
        if (!slash)
            return;
        p = slash + 1;
    }
    if (*p) /* more segments than any route has */
        c->n_seg = MAX_SEGMENTS + 1;
}

static bool seg_is(const call *c, int i, const char *s)
{
    return i < c->n_seg && strcmp(c->seg[i], s) == 0;
}

static enum route route_of(call *c)
{
    split(c);
    int n = c->n_seg;
    if (n > MAX_SEGMENTS || n == 0)
        return R_UNKNOWN;
    /* An empty segment matches no fixed word; as a name it is a 400
     * (names_ok). */
    const char *s = c->seg[0];
    if (strcmp(s, "healthz") == 0 &&
        (n == 1 || (n == 2 && (seg_is(c, 1, "ping") || seg_is(c, 1, "log") ||
                               seg_is(c, 1, "syncloop")))))
        return R_HEALTHZ;
    if (strcmp(s, "pods") == 0 && n == 1)
        return R_PODS;
    if (strcmp(s, "runningpods") == 0 && n == 1)
        return R_RUNNING_PODS;
    if (strcmp(s, "containerLogs") == 0 && n == 4)
        return R_LOGS;
    if (strcmp(s, "stats") == 0 && n == 2 && seg_is(c, 1, "summary"))
        return R_STATS;
    if (strcmp(s, "metrics") == 0 && n == 1)
        return R_METRICS;
    if (strcmp(s, "metrics") == 0 && n == 2 && seg_is(c, 1, "resource"))
        return R_METRICS_RESOURCE;
    if (strcmp(s, "exec") == 0 && (n == 4 || n == 5))
        return R_EXEC;
    if (strcmp(s, "attach") == 0 && (n == 4 || n == 5))
        return R_ATTACH;
    if (strcmp(s, "portForward") == 0 && (n == 3 || n == 4))
        return R_PORT_FORWARD;
    if (strcmp(s, "run") == 0 && (n == 4 || n == 5))
        return R_RUN;
    return R_UNKNOWN;
}

static bool method_ok(enum route r, const char *method)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool post = strcmp(method, "POST") == 0;
    switch (r) {
    case R_EXEC:
    case R_ATTACH:
    case R_PORT_FORWARD:
        return get || post;
    case R_RUN:
        return post;
    default:
        return get;
    }
}

/* ---- names in the path ------------------------------------------------------------- */

/* A DNS-1123 label of at most max characters: lower-case letters, digits
 * and inner dashes. */
static bool dns_label(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && i > 0 && i + 1 < len))
            return false;
    }
    return true;
}

/* A DNS-1123 subdomain (what pod names are): labels joined by dots, 253
 * characters at most. "." and ".." have empty labels. */
static bool dns_subdomain(const char *s)
{
    if (strlen(s) > 253)
        return false;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (!dns_label(s, n, 253))
            return false;
        if (!dot)
            return true;
        s = dot + 1;
    }
}

/* A pod UID as the API server makes them (a UUID) or a static pod's hash:
 * letters, digits and dashes. */
static bool uid_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!(s[i] >= 'a' && s[i] <= 'z') && !(s[i] >= 'A' && s[i] <= 'Z') &&
            !(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
            return false;
    return true;
}

/* The names of a logs, exec, attach, port-forward or run path, checked as
 * Kubernetes checks them when the objects are made: no namespace, pod or
 * container is called ".", ".." or "", so such a path never reaches the
 * provider. The path is decoded before it is split (as the kubelet's
 * router has it), so a "%2F" only adds a segment, and every segment is
 * checked. True, or false after answering 400. */
static bool names_ok(call *c)
{
    bool has_ctr = c->route != R_PORT_FORWARD;
    int named = has_ctr ? 4 : 3; /* segments without the uid */
    const char *ns = c->seg[1], *pod = c->seg[2];
    const char *uid = c->route != R_LOGS && c->n_seg > named ? c->seg[3] : NULL;
    const char *ctr = has_ctr ? c->seg[c->n_seg - 1] : NULL;
    const char *what = NULL, *bad = NULL, *rule = NULL;
    if (!dns_label(ns, strlen(ns), 63))
        what = "namespace", bad = ns, rule = "an RFC 1123 label";
    else if (!dns_subdomain(pod))
        what = "pod name", bad = pod, rule = "an RFC 1123 subdomain";
    else if (uid && !uid_ok(uid))
        what = "pod UID", bad = uid, rule = "letters, digits and '-'";
    else if (ctr && !dns_label(ctr, strlen(ctr), 63))
        what = "container name", bad = ctr, rule = "an RFC 1123 label";
    if (!what)
        return true;
    reply_status(c->api, c->req, c->route, 400, "invalid %s \"%.64s\": must be %s", what, bad,
                 rule);
    return false;
}

/* ---- the pod cache ------------------------------------------------------------------ */

static bool has_container(yajl_val pod, const char *name)
{
    static const char *const lists[] = {"containers", "initContainers", "ephemeralContainers"};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        yajl_val a = vk_json_get(pod, "spec", lists[i], NULL);
        for (size_t j = 0; YAJL_IS_ARRAY(a) && j < a->u.array.len; j++)
            if (strcmp(vk_json_str(vk_json_member(a->u.array.values[j], "name"), ""), name) == 0)
                return true;
    }
    return false;
}

/* Whether the pod (and container) t names is bound to this node, as the
 * kubelet asks its pod manager before it upgrades: an unknown one is a
 * 404 with a Status, not a 101 and then an error on the error stream.
 * True, or false after answering. Without a pod source the provider is
 * the only judge. */
static bool target_known(call *c, const kubelet_stream_target *t)
{
    kubelet_api *api = c->api;
    if (!api->pod)
        return true;
    vk_buf json = VK_BUF_INIT;
    char err[128];
    int rc = api->pod(api->pods_ud, t->ns, t->pod, &json);
    if (rc < 0) {
        vk_buf_free(&json);
        reply_status(api, c->req, c->route, 503, "the node's pods are not known yet");
        return false;
    }
    yajl_val pod = rc == 0 ? vk_json_parse(json.data, json.len, err, sizeof err) : NULL;
    vk_buf_free(&json);
    if (rc == 0 && !pod) {
        reply_status(api, c->req, c->route, 500, "cannot read the pod: %s", err);
        return false;
    }
    if (pod && t->uid[0] &&
        strcmp(vk_json_str(vk_json_get(pod, "metadata", "uid", NULL), ""), t->uid) != 0) {
        yajl_tree_free(pod);
        pod = NULL;
    }
    bool known = pod && (!t->container[0] || has_container(pod, t->container));
    bool found = pod != NULL;
    yajl_tree_free(pod);
    if (known)
        return true;
    if (!found && t->uid[0])
        reply_status(api, c->req, c->route, 404, "pod %s/%s with UID %s not found", t->ns, t->pod,
                     t->uid);
    else if (!found)
        reply_status(api, c->req, c->route, 404, "pod %s/%s not found", t->ns, t->pod);
    else
        reply_status(api, c->req, c->route, 404, "container %s not found in pod %s/%s",
                     t->container, t->ns, t->pod);
    return false;
}

/* ---- calls ------------------------------------------------------------------------ */

static void call_free(call *c)
{
    if (c->pc)
        pc_unref(c->pc);
    vk_status_clear(&c->st);
    vk_buf_free(&c->out);
    if (c->pods)
        protobuf_c_message_free_unpacked(&c->pods->base, NULL);
    free(c->path);
    free(c);
}

static void call_closed(void *ud)
{
    call *c = ud;
    c->req = NULL;
    if (c->auth) {
        kubelet_auth_cancel(c->auth);
        c->auth = NULL;
    }
    if (!c->in_pool)
        call_free(c);
}

static const http_callbacks call_callbacks = {.closed = call_closed};

/* ---- unary provider calls ---------------------------------------------------- */

static void job_work(void *arg)
{
    call *c = arg;
    switch (c->route) {
    case R_STATS:
        c->code = pc_get_stats_summary(c->pc, &c->out, &c->st);
        break;
    case R_METRICS_RESOURCE:
        c->code = pc_get_metrics_resource(c->pc, &c->out, &c->st);
        break;
    default: /* R_RUNNING_PODS */
        c->code = pc_get_pods(c->pc, &c->pods, &c->st);
        break;
    }
}

/* The summary with node.nodeName set to this node (providers need not know
 * their node's name; the kubelet's summary always carries it). */
static int summary_with_node(kubelet_api *api, const vk_buf *in, vk_buf *out)
{
    char err[128];
    yajl_val doc = vk_json_parse(in->data ? in->data : "", in->len, err, sizeof err);
    if (!YAJL_IS_OBJECT(doc)) {
        yajl_tree_free(doc);
        return -1;
    }
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    bool had_node = false;
    for (size_t i = 0; i < doc->u.object.len; i++) {
        const char *key = doc->u.object.keys[i];
        yajl_val v = doc->u.object.values[i];
        vk_jw_str(&w, key);
        if (strcmp(key, "node") != 0 || !YAJL_IS_OBJECT(v)) {
            vk_jw_tree(&w, v);
            continue;
        }
        had_node = true;
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "nodeName", api->node_name);
        for (size_t j = 0; j < v->u.object.len; j++) {
            if (strcmp(v->u.object.keys[j], "nodeName") == 0)
                continue;
            vk_jw_str(&w, v->u.object.keys[j]);
            vk_jw_tree(&w, v->u.object.values[j]);
        }
        vk_jw_map_close(&w);
    }
    if (!had_node) {
        vk_jw_str(&w, "node");
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "nodeName", api->node_name);
        vk_jw_map_close(&w);
    }
    vk_jw_map_close(&w);
    yajl_tree_free(doc);
    return vk_jw_end(&w);
}

static void podlist_open(vk_json_writer *w)
{
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "kind", "PodList");
    vk_jw_kv_str(w, "apiVersion", "v1");
    vk_jw_str(w, "metadata");
    vk_jw_map_open(w);
    vk_jw_map_close(w);
    vk_jw_str(w, "items");
}

static int running_pods(const Vkc__Provider__V1__GetPodsResponse *resp, vk_buf *out)
{
    vk_json_writer w;
    vk_jw_begin(&w, out);
    podlist_open(&w);
    vk_jw_array_open(&w);
    int rc = 0;
    for (size_t i = 0; i < resp->n_pods_json; i++) {
        char err[128];
        yajl_val pod = vk_json_parse_bytes(resp->pods_json[i].data, resp->pods_json[i].len,
                                           err, sizeof err);
        if (!pod)
            rc = -1;
        else
            vk_jw_tree(&w, pod);
        yajl_tree_free(pod);
    }
    vk_jw_array_close(&w);
    vk_jw_map_close(&w);
    return vk_jw_end(&w) < 0 ? -1 : rc;
}

static void job_done(void *arg)
{
    call *c = arg;
    kubelet_api *api = c->api;
    c->in_pool = false;
    if (!c->req) {
        call_free(c);
        return;
    }
    vk_buf body = VK_BUF_INIT;
    if (c->code != VK_OK) {
        reply_provider_error(api, c->req, c->route, c->code, c->st.message);
    } else if (c->route == R_METRICS_RESOURCE) {
        reply(api, c->req, c->route, 200, METRICS_HEADERS, c->out.data, c->out.len);
    } else if (c->route == R_STATS ? summary_with_node(api, &c->out, &body) < 0
                                   : running_pods(c->pods, &body) < 0) {
        reply_status(api, c->req, c->route, 500, "the provider sent malformed JSON");
    } else {
        reply(api, c->req, c->route, 200, JSON_HEADERS, body.data, body.len);
    }
    vk_buf_free(&body);
    call_free(c);
}

static void start_job(call *c)
{
    c->pc = pc_ref(c->api->pc);
    c->in_pool = true;
    http_watch(c->req, &call_callbacks, c);
    if (vk_pool_submit(c->api->pool, job_work, job_done, c) < 0) {
        c->in_pool = false;
        reply_status(c->api, c->req, c->route, 503, "the kubelet API is busy; try again");
        call_free(c);
    }
}

/* ---- log options --------------------------------------------------------------- */

/* Go's strconv.ParseBool, which the kubelet's query decoding uses. */
static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const no[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(v, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int parse_int64(const char *v, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno)
        return -1;
    *out = n;
    return 0;
}

static int digits(const char **p, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        *out = *out * 10 + (**p - '0');
    }
    return 0;
}

/* RFC 3339 ("2006-01-02T15:04:05.999999999Z07:00", fraction optional) to
 * Unix nanoseconds. */
static int parse_rfc3339(const char *s, int64_t *ns)
{
    struct tm tm = {0};
    int year, mon, day, hour, min, sec, frac = 0, scale = 1000000000;
    const char *p = s;
    if (digits(&p, 4, &year) < 0 || *p++ != '-' || digits(&p, 2, &mon) < 0 || *p++ != '-' ||
        digits(&p, 2, &day) < 0 || *p++ != 'T' || digits(&p, 2, &hour) < 0 || *p++ != ':' ||
        digits(&p, 2, &min) < 0 || *p++ != ':' || digits(&p, 2, &sec) < 0)
        return -1;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
    }
    int offset = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) < 0 || *p++ != ':' || digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
            return -1;
        offset = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *ns = ((int64_t)t - offset) * 1000000000LL + frac;
    return 0;
}

/* Fill the provider request from the query. 0, or an HTTP status with the
 * message in err (the kubelet's: 400 for what does not parse, 422 for
 * values out of range). */
static int log_options(http_request *req, log_stream *s, char *err, size_t errlen)
{
    static const char *const bools[] = {"follow", "timestamps", "previous"};
    protobuf_c_boolean *bool_fields[] = {&s->msg.follow, &s->msg.timestamps, &s->msg.previous};
    for (size_t i = 0; i < 3; i++) {
        const char *v = http_request_query(req, bools[i]);
        bool b = false;
        if (v && parse_bool(v, &b) < 0) {
            snprintf(err, errlen, "%s: invalid boolean \"%.64s\"", bools[i], v);
            return 400;
        }
        *bool_fields[i] = b;
    }
    static const char *const ints[] = {"tailLines", "sinceSeconds", "limitBytes"};
    Vkc__Provider__V1__Int64Value *vals[] = {&s->tail, &s->since_s, &s->limit};
    Vkc__Provider__V1__Int64Value **fields[] = {&s->msg.tail_lines, &s->msg.since_seconds,
                                                &s->msg.limit_bytes};
    static const int64_t mins[] = {0, 1, 1};
    for (size_t i = 0; i < 3; i++) {
        const char *v = http_request_query(req, ints[i]);
        if (!v)
            continue;
        if (parse_int64(v, &vals[i]->value) < 0) {
            snprintf(err, errlen, "%s: invalid integer \"%.64s\"", ints[i], v);
            return 400;
        }
        if (vals[i]->value < mins[i]) {
            snprintf(err, errlen, "%s: must be %s 0", ints[i],
                     mins[i] ? "greater than" : "greater than or equal to");
            return 422;
        }
        *fields[i] = vals[i];
    }
    const char *since = http_request_query(req, "sinceTime");
    if (since) {
        if (parse_rfc3339(since, &s->since_t.value) < 0) {
            snprintf(err, errlen, "sinceTime: invalid RFC 3339 time \"%.64s\"", since);
            return 400;
        }
        if (s->msg.since_seconds) {
            snprintf(err, errlen, "at most one of sinceTime or sinceSeconds may be specified");
            return 422;
        }
        s->msg.since_time_unix_nano = &s->since_t;
    }
    return 0;
}

/* ---- log streams ------------------------------------------------------------------ */

/* Thread side, api->mu held: tell the loop. */
static void log_notify_locked(log_stream *s)
{
    if (!s->on_ready) {
        s->on_ready = true;
        s->ready_next = s->api->ready;
        s->api->ready = s;
    }
}

static void *log_thread(void *arg)
{
    log_stream *s = arg;
    kubelet_api *api = s->api;
    vk_status st = {0, NULL};
    pc_stream *ps = NULL;
    int code = pc_get_container_logs(s->pc, &s->msg, &ps, &st);
    if (code == VK_OK) {
        pthread_mutex_lock(&api->mu);
        s->stream = ps;
        if (s->cancelled)
            pc_stream_cancel(ps);
        pthread_mutex_unlock(&api->mu);
        ProtobufCMessage *m;
        int n;
        while ((n = pc_stream_next(ps, &m)) == 1) {
            Vkc__Provider__V1__LogChunk *chunk = (Vkc__Provider__V1__LogChunk *)m;
            pthread_mutex_lock(&api->mu);
            s->active = mono_now();
            s->held_back = true;
            while (!s->cancelled && (s->count == LOG_QUEUE_CHUNKS || s->bytes >= LOG_QUEUE_BYTES))
                pthread_cond_wait(&s->cond, &api->mu);
            /* The provider's silence counts from here: while the client
             * was slow, gRPC flow control held it back. */
            s->held_back = false;
            s->active = mono_now();
            bool stop = s->cancelled;
            bool room = s->count < LOG_QUEUE_CHUNKS && s->bytes < LOG_QUEUE_BYTES;
            /* A chunk that was on its way when the silence deadline
             * ended the log still reaches the client; without room for
             * it the log is cut, and must not end as if complete. */
            bool keep = !stop || (s->silenced && room);
            if (keep) {
                s->ring[(s->head + s->count++) % LOG_QUEUE_CHUNKS] = chunk;
                s->bytes += chunk->data.len;
                log_notify_locked(s);
            } else if (s->silenced) {
                s->cut = true;
            }
            pthread_mutex_unlock(&api->mu);
            if (!keep)
                protobuf_c_message_free_unpacked(m, NULL);
            else
                ev_async_send(api->loop, &api->wake);
            if (stop)
                break;
        }
        code = pc_stream_finish(ps, &st);
        if (n < 0 && code == VK_OK)
            vk_status_set(&st, code = VK_INTERNAL, "the provider sent a malformed log chunk");
        pthread_mutex_lock(&api->mu);
        s->stream = NULL;
        pthread_mutex_unlock(&api->mu);
        pc_stream_free(ps);
    }
    pthread_mutex_lock(&api->mu);
    s->code = code;
    s->message = st.message;
    s->finished = true;
    log_notify_locked(s);
    pthread_mutex_unlock(&api->mu);
    ev_async_send(api->loop, &api->wake);
    return NULL;
}

/* Loop side: stop the provider's stream and drop what is queued. */
static void log_cancel(log_stream *s)
{
    kubelet_api *api = s->api;
    pthread_mutex_lock(&api->mu);
    s->cancelled = true;
    if (s->stream)
        pc_stream_cancel(s->stream);
    for (; s->count; s->count--, s->head = (s->head + 1) % LOG_QUEUE_CHUNKS)
        protobuf_c_message_free_unpacked(&s->ring[s->head]->base, NULL);
    s->bytes = 0;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&api->mu);
}

static void log_free(log_stream *s)
{
    kubelet_api *api = s->api;
    pthread_join(s->thread, NULL);
    ev_timer_stop(api->loop, &s->grace);
    if (s->prev)
        s->prev->next = s->next;
    else
        api->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    api->n_streams--;
    metric_set(api->log_streams, NULL, api->n_streams);
    for (; s->count; s->count--, s->head = (s->head + 1) % LOG_QUEUE_CHUNKS)
        protobuf_c_message_free_unpacked(&s->ring[s->head]->base, NULL);
    pc_unref(s->pc);
    pthread_cond_destroy(&s->cond);
    free(s->ref.namespace_);
    free(s->ref.name);
    free(s->msg.container);
    free(s->message);
    free(s);
}

static void log_begin(log_stream *s)
{
    if (!s->head_sent && s->req) {
        s->head_sent = true;
        count(s->api, R_LOGS, 200);
        http_stream_begin(s->req, 200, TEXT_HEADERS);
    }
}

/* Move queued chunks to the client while it takes them; finish once the
 * thread is done and everything was sent. */
static void log_pump(log_stream *s)
{
    kubelet_api *api = s->api;
    pthread_mutex_lock(&api->mu);
    if (s->req && s->count)
        log_begin(s);
    while (s->req && s->count && http_writable(s->req)) {
        Vkc__Provider__V1__LogChunk *chunk = s->ring[s->head];
        s->head = (s->head + 1) % LOG_QUEUE_CHUNKS;
        s->count--;
        s->bytes -= chunk->data.len;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&api->mu);
        int rc = http_write(s->req, chunk->data.data, chunk->data.len);
        protobuf_c_message_free_unpacked(&chunk->base, NULL);
        pthread_mutex_lock(&api->mu);
        if (rc < 0 && s->req) {
            http_close(s->req);
            s->req = NULL;
            pthread_mutex_unlock(&api->mu);
            log_cancel(s);
            pthread_mutex_lock(&api->mu);
        }
    }
    bool done = s->finished && !s->on_ready && s->count == 0;
    pthread_mutex_unlock(&api->mu);
    if (!done)
        return;
    bool complete = s->code == VK_OK || (s->silenced && !s->cut && s->code == VK_CANCELLED);
    if (s->req && s->head_sent && complete && !s->provider_gone) {
        /* Silenced: the client gets what arrived as a complete log, as
         * the kubelet's file would have given it; the warning says more.
         * Another error that came with the silence still cuts it. */
        http_stream_end(s->req);
    } else if (s->req && s->head_sent) {
        /* The status line is gone already: cutting the body short is the
         * only way left to tell the client its log is incomplete. */
        vk_debug("log stream failed", "code=%s", vk_status_code_name(s->code));
        http_close(s->req);
    } else if (s->req && s->timed_out) {
        reply_status(api, s->req, R_LOGS, 504,
                     "the provider did not answer GetContainerLogs within %.0f s",
                     LOG_ANSWER_DEADLINE);
    } else if (s->req && s->provider_gone) {
        reply_status(api, s->req, R_LOGS, 503, "the provider is not available");
    } else if (s->req && s->code != VK_OK) {
        reply_provider_error(api, s->req, R_LOGS, s->code, s->message);
    } else if (s->req) {
        reply(api, s->req, R_LOGS, 200, TEXT_HEADERS, "", 0);
    }
    log_free(s);
}

static void log_writable(void *ud)
{
    log_pump(ud);
}

static void log_closed(void *ud)
{
    log_stream *s = ud;
    s->req = NULL;
    log_cancel(s);
    log_pump(s);
}

static const http_callbacks log_callbacks = {.closed = log_closed, .writable = log_writable};

static void log_grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    log_stream *s = w->data;
    if (s->msg.follow) {
        log_begin(s);
        return;
    }
    /* Not followed: the deadline. A chunk or the end the loop has not
     * taken yet is an answer; a head already sent means chunks came. */
    kubelet_api *api = s->api;
    char ns_v[LOGVAL_MAX], pod_v[LOGVAL_MAX], ctr_v[LOGVAL_MAX];
    pthread_mutex_lock(&api->mu);
    bool answered = s->head_sent || s->finished || s->count;
    if (answered) {
        /* Chunks came: now the provider must not go quiet for as long
         * without ending the stream. */
        double quiet = mono_now() - s->active;
        if (s->finished || s->cancelled) {
            pthread_mutex_unlock(&api->mu);
            return;
        }
        if (s->held_back || quiet < LOG_ANSWER_DEADLINE) {
            pthread_mutex_unlock(&api->mu);
            ev_timer_set(w, s->held_back ? LOG_ANSWER_DEADLINE : LOG_ANSWER_DEADLINE - quiet, 0.);
            ev_timer_start(loop, w);
            return;
        }
        /* End the provider's stream but keep what is queued: the client
         * still gets every chunk that arrived, then the end (log_pump). */
        s->silenced = s->cancelled = true;
        if (s->stream)
            pc_stream_cancel(s->stream);
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&api->mu);
        metric_add(api->log_silences, NULL, 1);
        vk_warn("provider GetContainerLogs went quiet without ending the log; "
                "the response ends with what arrived",
                "namespace=%s pod=%s container=%s quiet_s=%.0f",
                logval(ns_v, sizeof ns_v, s->ref.namespace_),
                logval(pod_v, sizeof pod_v, s->ref.name),
                logval(ctr_v, sizeof ctr_v, s->msg.container), quiet);
        log_pump(s);
        return;
    }
    pthread_mutex_unlock(&api->mu);
    metric_add(api->log_silences, NULL, 1);
    vk_warn("provider GetContainerLogs did not answer; the log request fails",
            "namespace=%s pod=%s container=%s waited_s=%.0f",
            logval(ns_v, sizeof ns_v, s->ref.namespace_), logval(pod_v, sizeof pod_v, s->ref.name),
            logval(ctr_v, sizeof ctr_v, s->msg.container), LOG_ANSWER_DEADLINE);
    s->timed_out = true;
    log_cancel(s);
    log_pump(s);
}

static void wake_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    kubelet_api *api = w->data;
    pthread_mutex_lock(&api->mu);
    log_stream *list = api->ready;
    api->ready = NULL;
    for (log_stream *s = list; s; s = s->ready_next)
        s->on_ready = false;
    pthread_mutex_unlock(&api->mu);
    while (list) {
        log_stream *s = list;
        list = s->ready_next;
        log_pump(s);
    }
}

static void start_logs(call *c)
{
    kubelet_api *api = c->api;
    http_request *req = c->req;
    if (api->n_streams >= api->max_log_streams) {
        reply_status(api, req, R_LOGS, 503, "too many log streams are open; try again later");
        return;
    }
    log_stream *s = calloc(1, sizeof *s);
    if (!s) {
        reply_status(api, req, R_LOGS, 500, "out of memory");
        return;
    }
    Vkc__Provider__V1__GetContainerLogsRequest msg = VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    Vkc__Provider__V1__Int64Value v = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    s->msg = msg;
    s->ref = ref;
    s->tail = s->since_s = s->since_t = s->limit = v;
    s->api = api;
    char err[256];
    int status = log_options(req, s, err, sizeof err);
    if (status) {
        free(s);
        reply_status(api, req, R_LOGS, status, "%s", err);
        return;
    }
    s->ref.namespace_ = strdup(c->seg[1]);
    s->ref.name = strdup(c->seg[2]);
    s->ref.uid = "";
    s->msg.container = strdup(c->seg[3]);
    s->msg.pod = &s->ref;
    s->pc = pc_ref(api->pc);
    s->req = req;
    ev_timer_init(&s->grace, log_grace_cb, s->msg.follow ? LOG_HEAD_GRACE : LOG_ANSWER_DEADLINE,
                  0.);
    s->grace.data = s;
    s->active = mono_now();
    pthread_cond_init(&s->cond, NULL);
    if (!s->ref.namespace_ || !s->ref.name || !s->msg.container ||
        pthread_create(&s->thread, NULL, log_thread, s) != 0) {
        pc_unref(s->pc);
        pthread_cond_destroy(&s->cond);
        free(s->ref.namespace_);
        free(s->ref.name);
        free(s->msg.container);
        free(s);
        reply_status(api, req, R_LOGS, 503, "cannot start a log stream now");
        return;
    }
    s->next = api->streams;
    if (api->streams)
        api->streams->prev = s;
    api->streams = s;
    api->n_streams++;
    metric_set(api->log_streams, NULL, api->n_streams);
    ev_timer_start(api->loop, &s->grace);
    http_watch(req, &log_callbacks, s);
}

/* ---- handlers ------------------------------------------------------------------------ */

static void serve_pods(call *c)
{
    kubelet_api *api = c->api;
    vk_buf items = VK_BUF_INIT, body = VK_BUF_INIT;
    if (!api->pods || api->pods(api->pods_ud, &items) < 0) {
        reply_status(api, c->req, c->route, 503, "the node's pods are not known yet");
    } else if (vk_buf_puts(&body, "{\"kind\":\"PodList\",\"apiVersion\":\"v1\","
                                  "\"metadata\":{},\"items\":") < 0 ||
               vk_buf_append(&body, items.len ? items.data : "[]", items.len ? items.len : 2) < 0 ||
               vk_buf_puts(&body, "}") < 0) {
        reply_status(api, c->req, c->route, 500, "out of memory");
    } else {
        reply(api, c->req, c->route, 200, JSON_HEADERS, body.data, body.len);
    }
    vk_buf_free(&items);
    vk_buf_free(&body);
}

static void serve_metrics(call *c)
{
    vk_buf body = VK_BUF_INIT;
    if (c->api->metrics && metrics_render(c->api->metrics, &body) < 0)
        reply_status(c->api, c->req, c->route, 500, "out of memory");
    else
        reply(c->api, c->req, c->route, 200, METRICS_HEADERS, body.data ? body.data : "",
              body.len);
    vk_buf_free(&body);
}

/* The provider is up and declared cap; else answer and return false. */
static bool provider_can(call *c, int cap)
{
    vk_status st = {0, NULL};
    bool ok = false;
    if (!c->api->pc)
        reply_status(c->api, c->req, c->route, 503, "the provider is not available");
    else if (cap && pc_require(c->api->pc, (enum pc_cap)cap, &st) != VK_OK)
        reply_status(c->api, c->req, c->route, 501, "%s", st.message);
    else
        ok = true;
    vk_status_clear(&st);
    return ok;
}

static void serve_upgrade(call *c)
{
    kubelet_api *api = c->api;
    static const enum kubelet_stream_kind kinds[] = {
        [R_EXEC] = KUBELET_EXEC, [R_ATTACH] = KUBELET_ATTACH,
        [R_PORT_FORWARD] = KUBELET_PORT_FORWARD, [R_RUN] = KUBELET_RUN,
    };
    static const int caps[] = {
        [R_EXEC] = PC_CAP_EXEC, [R_ATTACH] = PC_CAP_ATTACH,
        [R_PORT_FORWARD] = PC_CAP_PORT_FORWARD, [R_RUN] = PC_CAP_EXEC,
    };
    if (!names_ok(c) || !provider_can(c, caps[c->route]))
        return;
    /* /kind/ns/pod[/uid]/container; port-forward has no container. */
    bool pf = c->route == R_PORT_FORWARD;
    int named = pf ? 3 : 4; /* segments without the uid */
    kubelet_stream_target t = {
        .kind = kinds[c->route],
        .ns = c->seg[1],
        .pod = c->seg[2],
        .uid = c->n_seg > named ? c->seg[3] : "",
        .container = pf ? "" : c->seg[c->n_seg - 1],
    };
    if (!target_known(c, &t))
        return;
    api->upgrade(api->upgrade_ud, c->req, &t, api->pc);
}

/* Until the streaming protocols exist. */
static void upgrade_unavailable(void *ud, http_request *req, const kubelet_stream_target *t,
                                provider_client *pc)
{
    (void)pc;
    static const enum route routes[] = {
        [KUBELET_EXEC] = R_EXEC, [KUBELET_ATTACH] = R_ATTACH,
        [KUBELET_PORT_FORWARD] = R_PORT_FORWARD, [KUBELET_RUN] = R_RUN,
    };
    kubelet_api *api = ud;
    reply_status(api, req, routes[t->kind], 501,
                 "exec, attach, port-forward and run are not available yet: "
                 "vkc does not speak the SPDY and WebSocket streaming protocols yet");
}

static void authorized(call *c, const kubelet_auth_result *res)
{
    kubelet_api *api = c->api;
    if (res->status) {
        reply_status(api, c->req, c->route, res->status, "%s", res->message);
        call_free(c);
        return;
    }
    if (c->route == R_UNKNOWN) {
        reply_status(api, c->req, c->route, 404, "the server could not find the requested resource");
    } else if (!method_ok(c->route, http_request_method(c->req))) {
        reply_status(api, c->req, c->route, 405, "method %s is not allowed here",
                     http_request_method(c->req));
    } else {
        switch (c->route) {
        case R_HEALTHZ:
            reply(api, c->req, c->route, 200, TEXT_HEADERS, "ok", 2);
            break;
        case R_PODS:
            serve_pods(c);
            break;
        case R_METRICS:
            serve_metrics(c);
            break;
        case R_RUNNING_PODS:
            if (provider_can(c, 0)) {
                start_job(c);
                return; /* the job owns the call */
            }
            break;
        case R_STATS:
        case R_METRICS_RESOURCE:
            if (provider_can(c, c->route == R_STATS ? PC_CAP_GET_STATS_SUMMARY
                                                    : PC_CAP_GET_METRICS_RESOURCE)) {
                start_job(c);
                return;
            }
            break;
        case R_LOGS:
            if (names_ok(c) && provider_can(c, PC_CAP_GET_CONTAINER_LOGS) &&
                target_known(c, &(kubelet_stream_target){.ns = c->seg[1], .pod = c->seg[2],
                                                         .uid = "", .container = c->seg[3]}))
                start_logs(c);
            break;
        default:
            serve_upgrade(c);
            break;
        }
    }
    call_free(c);
}

static void auth_done(void *ud, const kubelet_auth_result *res)
{
    call *c = ud;
    c->auth = NULL;
    authorized(c, res);
}

void kubelet_api_handle(void *ud, http_request *req)
{
    kubelet_api *api = ud;
    call *c = calloc(1, sizeof *c);
    if (c)
        c->path = strdup(http_request_path(req));
    if (!c || !c->path) {
        free(c);
        http_respond(req, 500, TEXT_HEADERS, "out of memory\n", 14);
        return;
    }
    c->api = api;
    c->req = req;
    c->route = route_of(c);
    kubelet_auth_request ar = {
        .method = http_request_method(req),
        .path = http_request_path(req),
        .authorization = http_request_header(req, "Authorization"),
        .cert = http_request_peer_cert(req),
        .peer = http_request_peer(req),
    };
    kubelet_auth_result res;
    c->auth = kubelet_auth_check(api->auth, &ar, &res, auth_done, c);
    if (c->auth)
        http_watch(req, &call_callbacks, c);
    else
        authorized(c, &res);
}

/* ---- the provider ------------------------------------------------------------------- */

static void provider_up(void *ud, provider_client *pc, const pc_info *info)
{
    (void)info;
    kubelet_api *api = ud;
    if (api->pc)
        pc_unref(api->pc);
    api->pc = pc_ref(pc);
}

static void provider_down(void *ud)
{
    kubelet_api *api = ud;
    for (log_stream *s = api->streams; s; s = s->next) {
        s->provider_gone = true;
        log_cancel(s);
    }
    if (api->pc)
        pc_unref(api->pc);
    api->pc = NULL;
}

supervisor_listener kubelet_api_listener(kubelet_api *api)
{
    supervisor_listener l = {.up = provider_up, .down = provider_down, .ud = api};
    return l;
}

/* ---- setup ---------------------------------------------------------------------------- */

void kubelet_api_set_upgrade(kubelet_api *api, kubelet_upgrade_fn fn, void *ud)
{
    api->upgrade = fn ? fn : upgrade_unavailable;
    api->upgrade_ud = fn ? ud : api;
}

kubelet_api *kubelet_api_new(const kubelet_api_config *cfg)
{
    kubelet_api *api = calloc(1, sizeof *api);
    if (!api || !(api->node_name = strdup(cfg->node_name))) {
        free(api);
        return NULL;
    }
    api->loop = cfg->loop;
    api->pool = cfg->pool;
    api->metrics = cfg->metrics;
    api->auth = cfg->auth;
    api->pods = cfg->pods;
    api->pod = cfg->pod;
    api->pods_ud = cfg->pods_ud;
    api->max_log_streams = cfg->max_log_streams > 0 ? cfg->max_log_streams
                                                    : DEFAULT_MAX_LOG_STREAMS;
    kubelet_api_set_upgrade(api, NULL, NULL);
    api->requests = metrics_counter(cfg->metrics, "kubelet_api_requests_total",
                                    "Kubelet API requests by route and status code.",
                                    "route,code");
    api->log_streams = metrics_gauge(cfg->metrics, "kubelet_api_log_streams",
                                     "Container log streams open to the provider.", NULL);
    api->log_silences = metrics_counter(
        cfg->metrics, "kubelet_api_log_silence_timeouts_total",
        "Container log requests (not followed) ended because the provider sent nothing "
        "for 10 s without ending the log: before its first chunk they fail with 504, "
        "after it the response ends with what arrived.",
        NULL);
    pthread_mutex_init(&api->mu, NULL);
    ev_async_init(&api->wake, wake_cb);
    api->wake.data = api;
    ev_async_start(api->loop, &api->wake);
    /* The async watcher alone must not keep ev_run going. */
    ev_unref(api->loop);
    return api;
}

void kubelet_api_free(kubelet_api *api)
{
    if (!api)
        return;
    while (api->streams) {
        log_stream *s = api->streams;
        s->req = NULL;
        log_cancel(s);
        log_free(s);
    }
    ev_ref(api->loop);
    ev_async_stop(api->loop, &api->wake);
    pthread_mutex_destroy(&api->mu);
    if (api->pc)
        pc_unref(api->pc);
    free(api->node_name);
    free(api);
}
