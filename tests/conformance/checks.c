/* checks.c -- handshake, pod lifecycle, WatchPodStatus and callbacks.
 *
 * One main test pod carries the run: it is created here, used by the
 * stream and stats checks, and deleted at the end. Two short-lived pods
 * beside it exit with code 3, one never restarted, one restarted on
 * failure. A WatchPodStatus stream stays open through it all and records
 * what it sees, so the transitions of every pod can be checked afterwards.
 */
#include "conformance.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pod.h"

#define POLL_MS 200
#define WATCH_EVENTS_MAX 4096
#define WATCH_PODS_MAX 32
#define WATCH_WAIT_MS 10000  /* an event that should follow a change */

static const char *const known_caps[] = {
    "WatchPodStatus", "WatchNode", "GetContainerLogs", "ExecInContainer",
    "AttachToContainer", "PortForward", "GetStatsSummary", "GetMetricsResource",
};

bool has_cap(const suite *s, unsigned cap)
{
    return (s->info.caps & cap) != 0;
}

bool need_cap(suite *s, const char *name, unsigned cap, const char *rpc)
{
    if (has_cap(s, cap))
        return true;
    check_skip(name, "the provider does not declare %s", rpc);
    return false;
}

bool need_pod(suite *s, const char *name)
{
    if (s->running)
        return true;
    check_skip(name, "the test pod never reached Running");
    return false;
}

#define NO_WATCH "no WatchPodStatus stream (see watch/open)"

/* SKIP name unless the run's watch is open. */
static bool have_watch(suite *s, const char *name)
{
    if (s->watch)
        return true;
    check_skip(name, NO_WATCH);
    return false;
}

static void skip_all(const char *const *names, size_t n, const char *reason)
{
    for (size_t i = 0; i < n; i++)
        check_skip(names[i], "%s", reason);
}

/* ---- handshake --------------------------------------------------------------- */

/* Usable as a label value: the name goes into the taint
 * virtual-kubelet.io/provider=<name>. */
static bool label_value(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i < n - 1))
            return false;
    }
    return true;
}

void run_handshake_checks(suite *s)
{
    Vkc__Provider__V1__HandshakeRequest req = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = 1;
    req.core_version = (char *)"vkc-conformance";
    req.node_name = (char *)s->opt->node_name;
    req.core_target = s->core_target;
    vk_status st = {0, NULL};
    /* pc_handshake keeps only known capability names: call it for the
     * client's state, and look at the raw answer for the checks. */
    int code = pc_handshake(s->pc, s->opt->node_name, s->core_target,
                            s->opt->call_timeout_ms, &s->info, &st);
    if (!check("handshake/call", code == VK_OK, "Handshake failed: %s %s",
               vk_status_code_name(code), st.message ? st.message : "")) {
        vk_status_clear(&st);
        return;
    }
    vk_channel *ch = vk_channel_open(s->provider_target, 0);
    ProtobufCMessage *m = NULL;
    code = ch ? vk_unary(ch, "/vkc.provider.v1.Provider/Handshake", &req.base,
                         &vkc__provider__v1__handshake_response__descriptor,
                         s->opt->call_timeout_ms, &m, &st)
              : VK_UNAVAILABLE;
    Vkc__Provider__V1__HandshakeResponse *r = (Vkc__Provider__V1__HandshakeResponse *)m;
    if (check("handshake/idempotent", code == VK_OK, "a second Handshake failed: %s %s",
              vk_status_code_name(code), st.message ? st.message : "")) {
        check("handshake/protocol-version", r->protocol_version == 1,
              "protocol_version is %u, the contract is version 1", r->protocol_version);
        check("handshake/identity", label_value(r->provider_name) && r->provider_version[0],
              "provider_name \"%s\" must be a non-empty label value (it names the node's "
              "taint) and provider_version \"%s\" non-empty",
              r->provider_name, r->provider_version);
        vk_buf bad = VK_BUF_INIT;
        for (size_t i = 0; i < r->n_capabilities; i++) {
            bool known = false;
            for (size_t k = 0; k < sizeof known_caps / sizeof known_caps[0]; k++)
                known |= strcmp(known_caps[k], r->capabilities[i]) == 0;
            for (size_t j = 0; j < i; j++)
                if (strcmp(r->capabilities[i], r->capabilities[j]) == 0)
                    vk_buf_printf(&bad, " duplicate \"%s\";", r->capabilities[i]);
            if (!known)
                vk_buf_printf(&bad, " unknown \"%s\" (the core ignores it);", r->capabilities[i]);
        }
        check("handshake/capabilities", bad.len == 0, "capabilities:%s", bad.data);
        vk_buf_free(&bad);
        vk_buf caps = VK_BUF_INIT;
        pc_caps_format(s->info.caps, &caps);
        printf("      provider %s %s, capabilities: %s\n", r->provider_name,
               r->provider_version, caps.len ? caps.data : "(none)");
        vk_buf_free(&caps);
    } else {
        const char *rest[] = {"handshake/protocol-version", "handshake/identity",
                              "handshake/capabilities"};
        skip_all(rest, 3, "the second Handshake failed");
    }
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    if (ch)
        vk_channel_close(ch);
    vk_status_clear(&st);

    code = pc_ping(s->pc, 2000, &st);
    check("handshake/ping", code == VK_OK, "Ping failed within 2 s: %s %s",
          vk_status_code_name(code), st.message ? st.message : "");
    vk_status_clear(&st);
}

/* ---- pod documents ------------------------------------------------------------- */

enum pod_kind { POD_MAIN, POD_EXIT, POD_RESTART };

/* The Pod JSON the core would send for a pod of this run. The main pod
 * references the suite's ConfigMap and Secret (volumes, envFrom) and
 * carries a field no Kubernetes version has, which must come back from
 * GetPod untouched. */
static int pod_json(const suite *s, const char *name, const char *uid, enum pod_kind kind,
                    const char *step, bool deleting, vk_buf *out)
{
    const conf_options *o = s->opt;
    char now[40];
    vk_rfc3339(time(NULL), now, sizeof now);
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_kv_str(&w, "kind", "Pod");
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "namespace", o->namespace_);
    vk_jw_kv_str(&w, "name", name);
    vk_jw_kv_str(&w, "uid", uid);
    vk_jw_kv_str(&w, "resourceVersion", "1");
    vk_jw_kv_str(&w, "creationTimestamp", now);
    if (deleting) {
        vk_jw_kv_str(&w, "deletionTimestamp", now);
        vk_jw_kv_int(&w, "deletionGracePeriodSeconds", 2);
    }
    vk_jw_str(&w, "labels");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "app", "vkc-conformance");
    vk_jw_kv_str(&w, "conformance.vkc.io/step", step);
    vk_jw_map_close(&w);
    vk_jw_str(&w, "annotations");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "conformance.vkc.io/marker", "kept");
    if (kind != POD_MAIN) {
        /* The mock runs no processes: these script the same exit for it.
         * Other providers ignore annotations they do not know. */
        vk_jw_kv_str(&w, "mock.vkc.io/exit-code", "3");
        vk_jw_kv_str(&w, "mock.vkc.io/run-ms", "300");
    }
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);

    vk_jw_str(&w, "spec");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "nodeName", o->node_name);
    vk_jw_kv_str(&w, "restartPolicy", kind == POD_MAIN ? "Always"
                                      : kind == POD_EXIT ? "Never" : "OnFailure");
    vk_jw_kv_int(&w, "terminationGracePeriodSeconds", 2);
    if (o->host_network)
        vk_jw_kv_bool(&w, "hostNetwork", true);
    vk_jw_str(&w, "containers");
    vk_jw_array_open(&w);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "name", CONF_CONTAINER);
    vk_jw_kv_str(&w, "image", o->image);
    vk_jw_kv_str(&w, "imagePullPolicy", "IfNotPresent");
    vk_jw_str(&w, "command");
    vk_jw_array_open(&w);
    for (char **a = kind == POD_MAIN ? o->command : o->exit_command; *a; a++)
        vk_jw_str(&w, *a);
    vk_jw_array_close(&w);
    vk_jw_str(&w, "env");
    vk_jw_array_open(&w);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "name", "CONFORMANCE_RUN");
    vk_jw_kv_str(&w, "value", s->run_id);
    vk_jw_map_close(&w);
    vk_jw_array_close(&w);
    if (kind == POD_MAIN && !o->no_volumes) {
        vk_jw_str(&w, "envFrom");
        vk_jw_array_open(&w);
        vk_jw_map_open(&w);
        vk_jw_str(&w, "configMapRef");
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "name", CONF_CONFIGMAP);
        vk_jw_map_close(&w);
        vk_jw_map_close(&w);
        vk_jw_array_close(&w);
        vk_jw_str(&w, "volumeMounts");
        vk_jw_array_open(&w);
        const char *mounts[][2] = {{"config", "/etc/conformance/config"},
                                   {"secret", "/etc/conformance/secret"}};
        for (size_t i = 0; i < 2; i++) {
            vk_jw_map_open(&w);
            vk_jw_kv_str(&w, "name", mounts[i][0]);
            vk_jw_kv_str(&w, "mountPath", mounts[i][1]);
            vk_jw_kv_bool(&w, "readOnly", true);
            vk_jw_map_close(&w);
        }
        vk_jw_array_close(&w);
    }
    vk_jw_map_close(&w);
    vk_jw_array_close(&w);
    if (kind == POD_MAIN && !o->no_volumes) {
        vk_jw_str(&w, "volumes");
        vk_jw_array_open(&w);
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "name", "config");
        vk_jw_str(&w, "configMap");
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "name", CONF_CONFIGMAP);
        vk_jw_map_close(&w);
        vk_jw_map_close(&w);
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "name", "secret");
        vk_jw_str(&w, "secret");
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "secretName", CONF_SECRET);
        vk_jw_map_close(&w);
        vk_jw_map_close(&w);
        vk_jw_array_close(&w);
    }
    if (kind == POD_MAIN) {
        vk_jw_str(&w, "conformanceFutureField");
        vk_jw_map_open(&w);
        vk_jw_kv_bool(&w, "kept", true);
        vk_jw_map_close(&w);
    }
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

static int create_pod(suite *s, const char *name, const char *uid, enum pod_kind kind,
                      vk_status *st)
{
    vk_buf json = VK_BUF_INIT;
    pod_json(s, name, uid, kind, "create", false, &json);
    core_service_add_pod(s->core, uid);
    int code = pc_create_pod(s->pc, json.data, json.len, st);
    vk_buf_free(&json);
    return code;
}

static int remove_pod(suite *s, const char *name, const char *uid, enum pod_kind kind,
                      vk_status *st)
{
    vk_buf json = VK_BUF_INIT;
    pod_json(s, name, uid, kind, "create", true, &json);
    int code = pc_delete_pod(s->pc, json.data, json.len, st);
    vk_buf_free(&json);
    return code;
}

/* ---- pod status ---------------------------------------------------------------- */

/* What the checks look at in a PodStatus. */
typedef struct status_view {
    char phase[16];
    char waiting[200];   /* "reason: message" of a waiting container */
    bool ctr_running, ctr_ready;
    int exit_code;   /* of the test container's last termination, -1: none */
    int restarts;
    char problem[256];
} status_view;

static void view_status(yajl_val st, status_view *v)
{
    memset(v, 0, sizeof *v);
    v->exit_code = -1;
    snprintf(v->phase, sizeof v->phase, "%s", vk_json_str(vk_json_member(st, "phase"), ""));
    yajl_val ctrs = vk_json_member(st, "containerStatuses");
    yajl_val c = NULL;
    for (size_t i = 0; YAJL_IS_ARRAY(ctrs) && i < ctrs->u.array.len; i++)
        if (strcmp(vk_json_str(vk_json_member(ctrs->u.array.values[i], "name"), ""),
                   CONF_CONTAINER) == 0)
            c = ctrs->u.array.values[i];
    if (!c) {
        snprintf(v->problem, sizeof v->problem, "no containerStatuses entry named %s",
                 CONF_CONTAINER);
        return;
    }
    v->ctr_running = vk_json_get(c, "state", "running", NULL) != NULL;
    yajl_val wait = vk_json_get(c, "state", "waiting", NULL);
    if (wait)
        snprintf(v->waiting, sizeof v->waiting, "%s: %s",
                 vk_json_str(vk_json_member(wait, "reason"), ""),
                 vk_json_str(vk_json_member(wait, "message"), ""));
    v->ctr_ready = vk_json_bool(vk_json_member(c, "ready"), false);
    v->restarts = (int)vk_json_int(vk_json_member(c, "restartCount"), 0);
    yajl_val term = vk_json_get(c, "state", "terminated", NULL);
    if (!term)
        term = vk_json_get(c, "lastState", "terminated", NULL);
    if (term)
        v->exit_code = (int)vk_json_int(vk_json_member(term, "exitCode"), -1);
}

/* GetPodStatus into v. The status code; v->problem says what was wrong with
 * a document that came back. */
static int get_status(suite *s, const char *name, const char *uid, status_view *v,
                      vk_status *st)
{
    vk_buf out = VK_BUF_INIT;
    memset(v, 0, sizeof *v);
    int code = pc_get_pod_status(s->pc, s->opt->namespace_, name, uid, &out, st);
    if (code == VK_OK) {
        char err[160];
        yajl_val doc = parse_json(out.data, out.len, err, sizeof err);
        if (doc)
            view_status(doc, v);
        else
            snprintf(v->problem, sizeof v->problem, "the PodStatus is not JSON: %s", err);
        yajl_tree_free(doc);
    }
    vk_buf_free(&out);
    return code;
}

typedef bool (*status_pred)(const status_view *v);

static bool is_running(const status_view *v)
{
    return strcmp(v->phase, "Running") == 0 && v->ctr_running;
}

static bool is_failed_3(const status_view *v)
{
    return strcmp(v->phase, "Failed") == 0 && v->exit_code == 3;
}

static bool has_restarted(const status_view *v)
{
    return v->restarts >= 1;
}

/* Poll GetPodStatus until pred holds or timeout_ms passed. On failure the
 * reason is written to why. */
static bool wait_status(suite *s, const char *name, const char *uid, status_pred pred,
                        int timeout_ms, char *why, size_t whylen)
{
    long end = now_ms() + timeout_ms;
    status_view v = {0};
    int code = VK_OK;
    vk_status st = {0, NULL};
    for (;;) {
        vk_status_clear(&st);
        code = get_status(s, name, uid, &v, &st);
        if (code == VK_OK && !v.problem[0] && pred(&v))
            break;
        if (now_ms() >= end) {
            if (code != VK_OK)
                snprintf(why, whylen, "GetPodStatus: %s %s", vk_status_code_name(code),
                         st.message ? st.message : "");
            else
                snprintf(why, whylen, "after %d s: phase \"%s\", container %s%s%s, exit code "
                         "%d, restarts %d%s%s", timeout_ms / 1000, v.phase,
                         v.ctr_running ? "running" : "not running",
                         v.waiting[0] ? ", waiting " : "", v.waiting, v.exit_code, v.restarts,
                         v.problem[0] ? "; " : "", v.problem);
            vk_status_clear(&st);
            return false;
        }
        sleep_ms(POLL_MS);
    }
    vk_status_clear(&st);
    return true;
}

/* ---- the watch log --------------------------------------------------------------- */

typedef struct watch_event {
    char uid[96];
    status_view v;
    bool deleted;
} watch_event;

struct watch_log {
    pc_stream *stream;
    pthread_t thread;
    pthread_mutex_t mu;    /* guards what follows */
    pthread_cond_t cv;     /* an event came, or the stream ended */
    watch_event *events;
    size_t n, dropped;
    struct { char uid[96]; uint64_t seq; } last[WATCH_PODS_MAX];
    size_t n_last;
    vk_buf problems;
    bool ended;
};

static void watch_problem(watch_log *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* With w->mu held. The first few problems are enough to tell. */
static void watch_problem(watch_log *w, const char *fmt, ...)
{
    if (w->problems.len > 2048)
        return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    vk_buf_printf(&w->problems, "%s%s", w->problems.len ? "; " : "", line);
}

static void watch_record(watch_log *w, const Vkc__Provider__V1__PodStatusEvent *ev)
{
    watch_event e = {0};
    const char *uid = ev->pod ? ev->pod->uid : "";
    snprintf(e.uid, sizeof e.uid, "%s", uid);
    e.deleted = ev->deleted;
    e.v.exit_code = -1;
    char err[160];
    yajl_val doc = NULL;
    if (!ev->deleted || ev->status_json.len) {
        doc = parse_json(ev->status_json.data, ev->status_json.len, err, sizeof err);
        if (doc)
            view_status(doc, &e.v);
    }
    pthread_mutex_lock(&w->mu);
    if (!uid[0])
        watch_problem(w, "an event names no pod uid");
    if (!doc && !ev->deleted)
        watch_problem(w, "the status of %s is not JSON: %s", uid, err);
    size_t i = 0;
    while (i < w->n_last && strcmp(w->last[i].uid, uid) != 0)
        i++;
    if (i < w->n_last) {
        if (ev->sequence <= w->last[i].seq)
            watch_problem(w, "pod uid %s: sequence %llu after %llu", uid,
                          (unsigned long long)ev->sequence,
                          (unsigned long long)w->last[i].seq);
        else
            w->last[i].seq = ev->sequence;
    } else if (i < WATCH_PODS_MAX) {
        snprintf(w->last[i].uid, sizeof w->last[i].uid, "%s", uid);
        w->last[i].seq = ev->sequence;
        w->n_last++;
    }
    if (w->n < WATCH_EVENTS_MAX)
        w->events[w->n++] = e;
    else
        w->dropped++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    yajl_tree_free(doc);
}

static void *watch_main(void *arg)
{
    watch_log *w = arg;
    ProtobufCMessage *m;
    int rc;
    while ((rc = pc_stream_next(w->stream, &m)) == 1) {
        watch_record(w, (Vkc__Provider__V1__PodStatusEvent *)m);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    pthread_mutex_lock(&w->mu);
    if (rc < 0)
        watch_problem(w, "an event did not decode");
    w->ended = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Open a watch and record it from a thread. NULL with st set on failure. */
static watch_log *watch_open(suite *s, vk_status *st)
{
    watch_log *w = calloc(1, sizeof *w);
    if (w)
        w->events = calloc(WATCH_EVENTS_MAX, sizeof *w->events);
    if (!w || !w->events) {
        free(w);
        vk_status_set(st, VK_RESOURCE_EXHAUSTED, "out of memory");
        return NULL;
    }
    if (pc_watch_pod_status(s->pc, &w->stream, st) != VK_OK) {
        free(w->events);
        free(w);
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&w->mu, NULL);
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        pc_stream_free(w->stream);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        free(w->events);
        free(w);
        vk_status_set(st, VK_RESOURCE_EXHAUSTED, "cannot start a thread");
        return NULL;
    }
    return w;
}

/* Cancel the watch and wait for its thread. The time that took, in ms;
 * *code gets the stream's final status. */
static long watch_close(watch_log *w, int *code)
{
    long start = now_ms();
    pc_stream_cancel(w->stream);
    pthread_join(w->thread, NULL);
    long took = now_ms() - start;
    int c = pc_stream_finish(w->stream, NULL);
    if (code)
        *code = c;
    pc_stream_free(w->stream);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    vk_buf_free(&w->problems);
    free(w->events);
    free(w);
    return took;
}

enum watch_want { WANT_RUNNING, WANT_FAILED_3, WANT_DELETED };

static bool wanted(const watch_event *e, const char *uid, enum watch_want want)
{
    if (strcmp(e->uid, uid) != 0)
        return false;
    switch (want) {
    case WANT_RUNNING: return !e->deleted && is_running(&e->v);
    case WANT_FAILED_3: return !e->deleted && is_failed_3(&e->v);
    case WANT_DELETED: return e->deleted;
    }
    return false;
}

/* Wait up to timeout_ms for a recorded event of that kind. */
static bool watch_wait(watch_log *w, const char *uid, enum watch_want want, int timeout_ms)
{
    long end = now_ms() + timeout_ms;
    struct timespec at = {end / 1000, (end % 1000) * 1000000L};
    size_t seen = 0;
    bool found = false;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        for (; seen < w->n && !found; seen++)
            found = wanted(&w->events[seen], uid, want);
        if (found || w->ended || now_ms() >= end)
            break;
        pthread_cond_timedwait(&w->cv, &w->mu, &at);
    }
    pthread_mutex_unlock(&w->mu);
    return found;
}

/* ---- pod checks -------------------------------------------------------------- */

static void expect_code(const char *name, int code, vk_status *st, int want, const char *what)
{
    check(name, code == want, "%s: got %s (%s), want %s", what, vk_status_code_name(code),
          st->message ? st->message : "no message", vk_status_code_name(want));
    vk_status_clear(st);
}

static void unknown_pod_checks(suite *s)
{
    vk_status st = {0, NULL};
    vk_buf out = VK_BUF_INIT;
    const char *ns = s->opt->namespace_;
    char name[96];
    snprintf(name, sizeof name, "conf-nonexistent-%s", s->run_id);

    int code = pc_get_pod(s->pc, ns, name, NULL, &out, &st);
    expect_code("pod/get-unknown", code, &st, VK_NOT_FOUND, "GetPod of a pod never created");
    code = pc_get_pod_status(s->pc, ns, name, NULL, &out, &st);
    expect_code("pod/get-status-unknown", code, &st, VK_NOT_FOUND,
                "GetPodStatus of a pod never created");
    vk_buf_free(&out);

    vk_buf json = VK_BUF_INIT;
    pod_json(s, name, "conf-nonexistent-uid", POD_MAIN, "update", false, &json);
    code = pc_update_pod(s->pc, json.data, json.len, &st);
    expect_code("pod/update-unknown", code, &st, VK_NOT_FOUND, "UpdatePod of a pod never created");
    vk_buf_reset(&json);
    pod_json(s, name, "conf-nonexistent-uid", POD_MAIN, "delete", true, &json);
    code = pc_delete_pod(s->pc, json.data, json.len, &st);
    expect_code("pod/delete-unknown", code, &st, VK_NOT_FOUND, "DeletePod of a pod never created");
    vk_buf_free(&json);
}

static void malformed_checks(suite *s)
{
    vk_status st = {0, NULL};
    static const char bad[] = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {";
    int code = pc_create_pod(s->pc, bad, sizeof bad - 1, &st);
    bool said = st.message && st.message[0];
    check("pod/create-malformed-json", code == VK_INVALID_ARGUMENT && said,
          "CreatePod of truncated JSON: got %s (%s), want INVALID_ARGUMENT with a message",
          vk_status_code_name(code), said ? st.message : "no message");
    vk_status_clear(&st);

    /* Valid JSON, but no pod anyone could run: no name, no containers. */
    static const char empty[] = "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {}}";
    code = pc_create_pod(s->pc, empty, sizeof empty - 1, &st);
    expect_code("pod/create-not-a-pod", code, &st, VK_INVALID_ARGUMENT,
                "CreatePod of a pod without name or containers");
}

/* GetPod of the main pod: identity, status, and what must pass through. */
static void get_pod_checks(suite *s)
{
    vk_status st = {0, NULL};
    vk_buf out = VK_BUF_INIT;
    const char *ns = s->opt->namespace_;
    int code = pc_get_pod(s->pc, ns, s->pod_name, s->pod_uid, &out, &st);
    char err[160] = "";
    yajl_val pod = code == VK_OK ? parse_json(out.data, out.len, err, sizeof err) : NULL;
    if (code != VK_OK) {
        check_fail("pod/get", "GetPod: %s %s", vk_status_code_name(code),
                   st.message ? st.message : "");
        check_skip("pod/get-passthrough", "GetPod failed");
    } else if (!pod) {
        check_fail("pod/get", "GetPod returned no JSON document: %s", err);
        check_skip("pod/get-passthrough", "GetPod failed");
    } else {
        const char *uid = vk_json_str(vk_json_get(pod, "metadata", "uid", NULL), "");
        const char *name = vk_json_str(vk_json_get(pod, "metadata", "name", NULL), "");
        const char *phase = vk_json_str(vk_json_get(pod, "status", "phase", NULL), "");
        check("pod/get", strcmp(uid, s->pod_uid) == 0 && strcmp(name, s->pod_name) == 0 &&
                         strcmp(phase, "Running") == 0,
              "GetPod gave name \"%s\" uid \"%s\" status.phase \"%s\"; want %s, %s, Running",
              name, uid, phase, s->pod_name, s->pod_uid);
        bool field = vk_json_bool(vk_json_get(pod, "spec", "conformanceFutureField", "kept",
                                              NULL), false);
        const char *marker = vk_json_str(vk_json_get(pod, "metadata", "annotations",
                                                     "conformance.vkc.io/marker", NULL), "");
        check("pod/get-passthrough", field && strcmp(marker, "kept") == 0,
              "GetPod lost %s%s: the contract says fields a provider does not know are "
              "passed through", field ? "" : "spec.conformanceFutureField ",
              strcmp(marker, "kept") == 0 ? "" : "the annotation conformance.vkc.io/marker");
    }
    yajl_tree_free(pod);
    vk_status_clear(&st);

    /* The same namespace/name with another uid is another pod. */
    vk_buf_reset(&out);
    char other[128];
    snprintf(other, sizeof other, "%s-other", s->pod_uid);
    code = pc_get_pod(s->pc, ns, s->pod_name, other, &out, &st);
    int status_code = pc_get_pod_status(s->pc, ns, s->pod_name, other, &out, NULL);
    check("pod/get-other-uid", code == VK_NOT_FOUND && status_code == VK_NOT_FOUND,
          "GetPod and GetPodStatus naming the running pod's namespace/name with another uid "
          "gave %s and %s, want NOT_FOUND (a uid is one incarnation of the name)",
          vk_status_code_name(code), vk_status_code_name(status_code));
    vk_status_clear(&st);
    vk_buf_free(&out);
}

/* Is the pod of that uid in GetPods, and with a status? 1 yes, 0 no, -1
 * the call failed (why says). */
static int listed(suite *s, const char *uid, bool *with_status, char *why, size_t whylen)
{
    Vkc__Provider__V1__GetPodsResponse *resp = NULL;
    vk_status st = {0, NULL};
    int code = pc_get_pods(s->pc, &resp, &st);
    if (code != VK_OK) {
        snprintf(why, whylen, "GetPods: %s %s", vk_status_code_name(code),
                 st.message ? st.message : "");
        vk_status_clear(&st);
        return -1;
    }
    int found = 0;
    for (size_t i = 0; i < resp->n_pods_json && !found; i++) {
        char err[160];
        yajl_val p = parse_json(resp->pods_json[i].data, resp->pods_json[i].len, err, sizeof err);
        if (!p) {
            snprintf(why, whylen, "GetPods entry %zu is not JSON: %s", i, err);
            found = -1;
        } else if (strcmp(vk_json_str(vk_json_get(p, "metadata", "uid", NULL), ""), uid) == 0) {
            found = 1;
            if (with_status)
                *with_status = vk_json_str(vk_json_get(p, "status", "phase", NULL), NULL) != NULL;
        }
        yajl_tree_free(p);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return found;
}

static void update_check(suite *s)
{
    vk_status st = {0, NULL};
    vk_buf json = VK_BUF_INIT;
    pod_json(s, s->pod_name, s->pod_uid, POD_MAIN, "updated", false, &json);
    int code = pc_update_pod(s->pc, json.data, json.len, &st);
    vk_buf_free(&json);
    if (!check("pod/update", code == VK_OK, "UpdatePod with a new label: %s %s",
               vk_status_code_name(code), st.message ? st.message : "")) {
        check_skip("pod/update-visible", "UpdatePod failed");
        vk_status_clear(&st);
        return;
    }
    vk_buf out = VK_BUF_INIT;
    code = pc_get_pod(s->pc, s->opt->namespace_, s->pod_name, s->pod_uid, &out, &st);
    char err[160] = "";
    yajl_val pod = code == VK_OK ? parse_json(out.data, out.len, err, sizeof err) : NULL;
    const char *step = vk_json_str(vk_json_get(pod, "metadata", "labels",
                                               "conformance.vkc.io/step", NULL), "(none)");
    const char *phase = vk_json_str(vk_json_get(pod, "status", "phase", NULL), "");
    check("pod/update-visible", strcmp(step, "updated") == 0 && strcmp(phase, "Running") == 0,
          "after UpdatePod, GetPod shows label conformance.vkc.io/step=%s and phase \"%s\" "
          "(want updated, Running)%s%s", step, phase, err[0] ? ": " : "", err);
    yajl_tree_free(pod);
    vk_buf_free(&out);
    vk_status_clear(&st);
}

void run_pod_checks(suite *s)
{
    malformed_checks(s);
    unknown_pod_checks(s);

    vk_status st = {0, NULL};
    if (need_cap(s, "watch/open", PC_CAP_WATCH_POD_STATUS, "WatchPodStatus")) {
        s->watch = watch_open(s, &st);
        check("watch/open", s->watch != NULL, "WatchPodStatus: %s %s",
              vk_status_code_name(st.code), st.message ? st.message : "");
        vk_status_clear(&st);
    }

    snprintf(s->pod_name, sizeof s->pod_name, "conf-main-%s", s->run_id);
    snprintf(s->pod_uid, sizeof s->pod_uid, "%s-main-1", s->run_id);
    int code = create_pod(s, s->pod_name, s->pod_uid, POD_MAIN, &st);
    bool created = check("pod/create", code == VK_OK, "CreatePod: %s %s",
                         vk_status_code_name(code), st.message ? st.message : "");
    s->created = created;
    vk_status_clear(&st);
    if (created) {
        code = create_pod(s, s->pod_name, s->pod_uid, POD_MAIN, &st);
        expect_code("pod/create-idempotent", code, &st, VK_OK,
                    "CreatePod of the same pod (same uid) again");
        char other[128];
        snprintf(other, sizeof other, "%s-other", s->pod_uid);
        code = create_pod(s, s->pod_name, other, POD_MAIN, &st);
        expect_code("pod/create-conflict", code, &st, VK_ALREADY_EXISTS,
                    "CreatePod of the same namespace/name with another uid while the first "
                    "runs");
    } else {
        check_skip("pod/create-idempotent", "CreatePod failed");
        check_skip("pod/create-conflict", "CreatePod failed");
    }

    /* The pods that exit run meanwhile. */
    char exit_name[64], exit_uid[96], restart_name[64], restart_uid[96];
    snprintf(exit_name, sizeof exit_name, "conf-exit-%s", s->run_id);
    snprintf(exit_uid, sizeof exit_uid, "%s-exit-1", s->run_id);
    snprintf(restart_name, sizeof restart_name, "conf-restart-%s", s->run_id);
    snprintf(restart_uid, sizeof restart_uid, "%s-restart-1", s->run_id);
    int exit_code = create_pod(s, exit_name, exit_uid, POD_EXIT, &st);
    char exit_why[1024];
    snprintf(exit_why, sizeof exit_why, "CreatePod: %s %s", vk_status_code_name(exit_code),
             st.message ? st.message : "");
    vk_status_clear(&st);
    int restart_code = create_pod(s, restart_name, restart_uid, POD_RESTART, &st);
    char restart_why[1024];
    snprintf(restart_why, sizeof restart_why, "CreatePod: %s %s",
             vk_status_code_name(restart_code), st.message ? st.message : "");
    vk_status_clear(&st);

    char why[1024] = "CreatePod failed";
    s->running = created && wait_status(s, s->pod_name, s->pod_uid, is_running,
                                        s->opt->start_timeout_ms, why, sizeof why);
    check("pod/running", s->running, "the test pod did not reach Running with its container "
          "running: %s", why);

    if (have_watch(s, "watch/running") && created)
        check("watch/running", watch_wait(s->watch, s->pod_uid, WANT_RUNNING, WATCH_WAIT_MS),
              "no WatchPodStatus event showed the test pod Running with its container running");
    else if (s->watch)
        check_skip("watch/running", "CreatePod failed");

    /* A second watch opened now must start with the pod's current status:
     * nothing changes that would make the provider send it otherwise. */
    const char *second[] = {"watch/initial", "watch/cancel", "watch/cancel-then-ping"};
    if (!s->watch || !s->running) {
        skip_all(second, 3, s->watch ? "the test pod never reached Running" : NO_WATCH);
    } else {
        watch_log *w2 = watch_open(s, &st);
        if (!w2) {
            check_fail("watch/initial", "a second WatchPodStatus: %s %s",
                       vk_status_code_name(st.code), st.message ? st.message : "");
            skip_all(second + 1, 2, "the second WatchPodStatus failed");
            vk_status_clear(&st);
        } else {
            check("watch/initial", watch_wait(w2, s->pod_uid, WANT_RUNNING, 5000),
                  "a new WatchPodStatus did not start with the running pod's current status "
                  "within 5 s");
            int end = VK_OK;
            long took = watch_close(w2, &end);
            check("watch/cancel", took < 2000 && end == VK_CANCELLED,
                  "cancelling a WatchPodStatus took %ld ms and ended it with %s (want "
                  "CANCELLED at once)", took, vk_status_code_name(end));
            code = pc_ping(s->pc, 2000, &st);
            check("watch/cancel-then-ping", code == VK_OK, "Ping after a cancelled watch: %s",
                  vk_status_code_name(code));
            vk_status_clear(&st);
        }
    }

    if (need_pod(s, "pod/get")) {
        get_pod_checks(s);
        char lwhy[256] = "";
        bool with_status = false;
        int in = listed(s, s->pod_uid, &with_status, lwhy, sizeof lwhy);
        check("pod/list", in == 1 && with_status, "%s", in < 0 ? lwhy
              : in == 0 ? "GetPods does not list the running test pod"
                        : "GetPods lists the test pod without status.phase");
        update_check(s);
    } else {
        check_skip("pod/get-passthrough", "the test pod never reached Running");
        check_skip("pod/get-other-uid", "the test pod never reached Running");
        check_skip("pod/list", "the test pod never reached Running");
        check_skip("pod/update", "the test pod never reached Running");
        check_skip("pod/update-visible", "the test pod never reached Running");
    }

    /* restartPolicy Never: the pod ends Failed with the exit code kept. */
    bool failed = exit_code == VK_OK &&
                  wait_status(s, exit_name, exit_uid, is_failed_3, s->opt->start_timeout_ms,
                              exit_why, sizeof exit_why);
    check("pod/terminated", failed, "a pod whose container exits 3 under restartPolicy Never "
          "did not end Failed with exit code 3: %s", exit_why);
    if (have_watch(s, "watch/terminated"))
        check("watch/terminated", exit_code == VK_OK &&
                                  watch_wait(s->watch, exit_uid, WANT_FAILED_3, WATCH_WAIT_MS),
              "no WatchPodStatus event showed the exited pod Failed with exit code 3");
    bool restarted = restart_code == VK_OK &&
                     wait_status(s, restart_name, restart_uid, has_restarted,
                                 s->opt->start_timeout_ms, restart_why, sizeof restart_why);
    check("pod/restart", restarted, "a container exiting 3 under restartPolicy OnFailure was "
          "not restarted (restartCount >= 1): %s", restart_why);

    if (exit_code == VK_OK) {
        code = remove_pod(s, exit_name, exit_uid, POD_EXIT, &st);
        expect_code("pod/delete-terminated", code, &st, VK_OK, "DeletePod of a pod that ended");
    }
    if (restart_code == VK_OK) {
        code = remove_pod(s, restart_name, restart_uid, POD_RESTART, &st);
        expect_code("pod/delete-restarting", code, &st, VK_OK,
                    "DeletePod of a pod whose container restarts");
    }
}

/* ---- deletion ----------------------------------------------------------------- */

void run_delete_checks(suite *s)
{
    vk_status st = {0, NULL};
    const char *after[] = {"pod/delete-unlisted", "pod/delete-get", "pod/delete-get-status",
                           "pod/delete-again", "watch/deleted"};
    int code = VK_OK;
    bool deleted = false;
    if (!s->created) {
        check_skip("pod/delete", "CreatePod failed");
    } else {
        code = remove_pod(s, s->pod_name, s->pod_uid, POD_MAIN, &st);
        deleted = check("pod/delete", code == VK_OK, "DeletePod of the test pod: %s %s",
                        vk_status_code_name(code), st.message ? st.message : "");
        vk_status_clear(&st);
    }
    if (!deleted) {
        skip_all(after, sizeof after / sizeof after[0], "the test pod was not deleted");
    } else {
        char why[256] = "";
        int in = listed(s, s->pod_uid, NULL, why, sizeof why);
        check("pod/delete-unlisted", in == 0, "%s",
              in < 0 ? why : "GetPods still lists the pod after DeletePod returned");
        vk_buf out = VK_BUF_INIT;
        code = pc_get_pod(s->pc, s->opt->namespace_, s->pod_name, s->pod_uid, &out, &st);
        expect_code("pod/delete-get", code, &st, VK_NOT_FOUND, "GetPod after DeletePod");
        code = pc_get_pod_status(s->pc, s->opt->namespace_, s->pod_name, s->pod_uid, &out, &st);
        expect_code("pod/delete-get-status", code, &st, VK_NOT_FOUND,
                    "GetPodStatus after DeletePod");
        vk_buf_free(&out);
        code = remove_pod(s, s->pod_name, s->pod_uid, POD_MAIN, &st);
        expect_code("pod/delete-again", code, &st, VK_NOT_FOUND, "DeletePod of a deleted pod");
        s->running = false;
        if (have_watch(s, "watch/deleted"))
            check("watch/deleted", watch_wait(s->watch, s->pod_uid, WANT_DELETED, WATCH_WAIT_MS),
                  "no WatchPodStatus event with deleted=true for the deleted pod within %d s",
                  WATCH_WAIT_MS / 1000);
    }

    /* Gone, the name is free for a new incarnation. */
    char uid2[128];
    snprintf(uid2, sizeof uid2, "%s-main-2", s->run_id);
    code = create_pod(s, s->pod_name, uid2, POD_MAIN, &st);
    bool recreated = check("pod/recreate", code == VK_OK,
                           "CreatePod of the deleted pod's name with a new uid: %s %s",
                           vk_status_code_name(code), st.message ? st.message : "");
    vk_status_clear(&st);
    if (recreated) {
        code = remove_pod(s, s->pod_name, uid2, POD_MAIN, &st);
        expect_code("pod/recreate-delete", code, &st, VK_OK, "DeletePod of the new incarnation");
    } else {
        check_skip("pod/recreate-delete", "pod/recreate failed");
    }

    if (!s->watch) {
        const char *last[] = {"watch/sequence", "watch/end"};
        skip_all(last, 2, NO_WATCH);
    } else {
        pthread_mutex_lock(&s->watch->mu);
        bool ok = s->watch->problems.len == 0;
        char *problems = ok ? NULL : strdup(s->watch->problems.data);
        size_t n = s->watch->n, pods = s->watch->n_last;
        pthread_mutex_unlock(&s->watch->mu);
        check("watch/sequence", ok && n > 0, "%s", problems ? problems : "no events at all");
        printf("      WatchPodStatus: %zu events for %zu pods\n", n, pods);
        free(problems);
        int end = VK_OK;
        long took = watch_close(s->watch, &end);
        s->watch = NULL;
        check("watch/end", took < 2000, "the watch took %ld ms to end after cancel", took);
    }
}

/* ---- callbacks ---------------------------------------------------------------- */

void run_callback_checks(suite *s)
{
    core_usage u;
    core_service_usage(s->core, &u);
    if (u.reads == 0)
        check_skip("callback/referenced-only", "the provider never called GetSecret, "
                   "GetConfigMap or RequestServiceAccountToken%s",
                   s->opt->no_volumes ? " (--no-volumes)" : "");
    else
        check("callback/referenced-only", u.denied == 0,
              "of %zu reads, %zu asked for objects no test pod references: %s", u.reads,
              u.denied, u.problems.data ? u.problems.data : "");
    if (u.events == 0)
        check_skip("callback/events", "the provider emitted no events");
    else
        check("callback/events", u.bad_events.len == 0, "%s", u.bad_events.data);
    printf("      Core service: %zu object reads, %zu events\n", u.reads, u.events);
    core_usage_clear(&u);
}

void suite_cleanup(suite *s)
{
    if (s->watch) {
        watch_close(s->watch, NULL);
        s->watch = NULL;
    }
    if (s->running) {
        vk_status st = {0, NULL};
        remove_pod(s, s->pod_name, s->pod_uid, POD_MAIN, &st);
        vk_status_clear(&st);
    }
}
