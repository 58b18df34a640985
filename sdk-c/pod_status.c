/* pod_status.c -- write PodStatus JSON, and splice it into a Pod document. */
#include "pod.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "json.h"

void vk_rfc3339(int64_t unix_seconds, char *buf, size_t n)
{
    /* Years 1 to 9999: what RFC 3339, and Go's time.Time in JSON, can say. */
    const int64_t min = -62135596800, max = 253402300799;
    time_t t = (time_t)(unix_seconds < min ? min : unix_seconds > max ? max : unix_seconds);
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, n, "%s", "");
        return;
    }
    snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void kv_time(vk_json_writer *w, const char *key, int64_t t)
{
    char buf[32];
    if (!t)
        return;
    vk_rfc3339(t, buf, sizeof buf);
    vk_jw_kv_str(w, key, buf);
}

/* ---- conditions ------------------------------------------------------------ */

static bool init_done(const vk_container_status *c)
{
    return c->state == VK_STATE_TERMINATED && c->exit_code == 0;
}

static bool is_ready(const vk_container_status *c)
{
    return c->ready;
}

/* The kubelet's message naming the containers that fail `ok`, Go-style:
 * "containers with unready status: [a b]". Nothing when all pass. */
static int failing(vk_buf *msg, const char *what, const vk_container_status *cs,
                   size_t n, bool (*ok)(const vk_container_status *))
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (ok(&cs[i]))
            continue;
        rc = vk_buf_printf(msg, "%s%s", msg->len ? " " : what,
                           cs[i].name ? cs[i].name : "");
    }
    if (rc == 0 && msg->len)
        rc = vk_buf_puts(msg, "]");
    return rc;
}

static void condition(vk_json_writer *w, const char *type, bool status,
                      const char *reason, const char *message, const char *now)
{
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "type", type);
    vk_jw_kv_str(w, "status", status ? "True" : "False");
    vk_jw_kv_str(w, "lastTransitionTime", now);
    vk_jw_kv_str(w, "reason", reason);
    vk_jw_kv_str(w, "message", message);
    vk_jw_map_close(w);
}

/* As the kubelet derives them (pkg/kubelet/status/generate.go): init
 * containers count as done when they exited 0; a Succeeded pod is
 * Initialized but no longer ready; Ready follows ContainersReady since
 * there are no readiness gates here. */
static void conditions(vk_json_writer *w, const vk_pod_status *st, int64_t now)
{
    char ts[32];
    vk_rfc3339(now, ts, sizeof ts);
    bool succeeded = st->phase && strcmp(st->phase, "Succeeded") == 0;
    vk_buf not_init = VK_BUF_INIT, not_ready = VK_BUF_INIT;
    if (failing(&not_init, "containers with incomplete status: [", st->init_containers,
                st->n_init_containers, init_done) < 0 ||
        failing(&not_ready, "containers with unready status: [", st->containers,
                st->n_containers, is_ready) < 0)
        w->failed = true;

    bool initialized = succeeded || !not_init.len;
    const char *init_reason = succeeded ? "PodCompleted"
                              : initialized ? NULL : "ContainersNotInitialized";

    bool ready = false;
    const char *ready_reason = NULL, *ready_message = NULL;
    if (succeeded) {
        ready_reason = "PodCompleted";
    } else if (!st->n_containers) {
        ready_reason = "UnknownContainerStatuses";
    } else if (not_ready.len) {
        ready_reason = "ContainersNotReady";
        ready_message = not_ready.data;
    } else {
        ready = true;
    }

    vk_jw_str(w, "conditions");
    vk_jw_array_open(w);
    condition(w, "PodScheduled", true, NULL, NULL, ts);
    condition(w, "Initialized", initialized, init_reason,
              initialized ? NULL : not_init.data, ts);
    condition(w, "ContainersReady", ready, ready_reason, ready_message, ts);
    condition(w, "Ready", ready, ready_reason, ready_message, ts);
    vk_jw_array_close(w);
    vk_buf_free(&not_init);
    vk_buf_free(&not_ready);
}

/* ---- container statuses ---------------------------------------------------- */

static void terminated(vk_json_writer *w, const vk_terminated *t)
{
    vk_jw_str(w, "terminated");
    vk_jw_map_open(w);
    vk_jw_kv_int(w, "exitCode", t->exit_code);
    vk_jw_kv_str(w, "reason", t->reason);
    vk_jw_kv_str(w, "message", t->message);
    kv_time(w, "startedAt", t->started_at);
    kv_time(w, "finishedAt", t->finished_at);
    vk_jw_kv_str(w, "containerID", t->container_id);
    vk_jw_map_close(w);
}

static void container_state(vk_json_writer *w, const vk_container_status *c)
{
    vk_jw_str(w, "state");
    vk_jw_map_open(w);
    switch (c->state) {
    case VK_STATE_RUNNING:
        vk_jw_str(w, "running");
        vk_jw_map_open(w);
        kv_time(w, "startedAt", c->started_at);
        vk_jw_map_close(w);
        break;
    case VK_STATE_TERMINATED: {
        vk_terminated t = {
            .exit_code = c->exit_code, .reason = c->reason, .message = c->message,
            .started_at = c->started_at, .finished_at = c->finished_at,
            .container_id = c->container_id,
        };
        terminated(w, &t);
        break;
    }
    case VK_STATE_WAITING:
    default:
        vk_jw_str(w, "waiting");
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "reason", c->reason);
        vk_jw_kv_str(w, "message", c->message);
        vk_jw_map_close(w);
        break;
    }
    vk_jw_map_close(w);
}

static void container_statuses(vk_json_writer *w, const char *key,
                               const vk_container_status *cs, size_t n)
{
    if (!n)
        return;
    vk_jw_str(w, key);
    vk_jw_array_open(w);
    for (size_t i = 0; i < n; i++) {
        const vk_container_status *c = &cs[i];
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "name", c->name ? c->name : "");
        container_state(w, c);
        if (c->last_terminated) {
            vk_jw_str(w, "lastState");
            vk_jw_map_open(w);
            terminated(w, c->last_terminated);
            vk_jw_map_close(w);
        }
        vk_jw_kv_bool(w, "ready", c->ready);
        vk_jw_kv_int(w, "restartCount", c->restart_count);
        /* image and imageID are required strings in the API. */
        vk_jw_kv_str(w, "image", c->image ? c->image : "");
        vk_jw_kv_str(w, "imageID", c->image_id ? c->image_id : "");
        vk_jw_kv_str(w, "containerID", c->container_id);
        vk_jw_kv_bool(w, "started", c->started);
        vk_jw_map_close(w);
    }
    vk_jw_array_close(w);
}

int vk_pod_status_json(const vk_pod_status *st, int64_t now, vk_buf *out)
{
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "phase", st->phase);
    vk_jw_kv_str(&w, "reason", st->reason);
    vk_jw_kv_str(&w, "message", st->message);
    vk_jw_kv_str(&w, "hostIP", st->host_ip);
    vk_jw_kv_str(&w, "podIP", st->pod_ip);
    if (st->pod_ip) {
        vk_jw_str(&w, "podIPs");
        vk_jw_array_open(&w);
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "ip", st->pod_ip);
        vk_jw_map_close(&w);
        vk_jw_array_close(&w);
    }
    kv_time(&w, "startTime", st->start_time);
    conditions(&w, st, now);
    container_statuses(&w, "initContainerStatuses", st->init_containers,
                       st->n_init_containers);
    container_statuses(&w, "containerStatuses", st->containers, st->n_containers);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

/* ---- splicing ---------------------------------------------------------------- */

int vk_pod_with_status(const char *pod_json, size_t pod_len,
                       const char *status_json, size_t status_len, vk_buf *out)
{
    yajl_val pod = vk_json_parse_bytes(pod_json, pod_len, NULL, 0);
    yajl_val status = pod ? vk_json_parse_bytes(status_json, status_len, NULL, 0) : NULL;
    int rc = -1;
    if (YAJL_IS_OBJECT(pod) && YAJL_IS_OBJECT(status)) {
        vk_json_writer w;
        vk_jw_begin(&w, out);
        vk_jw_map_open(&w);
        /* The status takes the old one's place; every other member, known
         * to us or not, goes through as it was. */
        bool written = false;
        for (size_t i = 0; i < pod->u.object.len; i++) {
            bool is_status = strcmp(pod->u.object.keys[i], "status") == 0;
            if (is_status && written)
                continue; /* a duplicate key: one status is enough */
            vk_jw_str(&w, pod->u.object.keys[i]);
            vk_jw_tree(&w, is_status ? status : pod->u.object.values[i]);
            written |= is_status;
        }
        if (!written) {
            vk_jw_str(&w, "status");
            vk_jw_tree(&w, status);
        }
        vk_jw_map_close(&w);
        rc = vk_jw_end(&w);
    }
    yajl_tree_free(pod);
    yajl_tree_free(status);
    return rc;
}
