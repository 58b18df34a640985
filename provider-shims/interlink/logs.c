/* logs.c -- GetContainerLogs through the plugin's /getLogs.
 *
 * The request is interLink's LogStruct, sent with GET like interLink does:
 *
 *   {"Namespace": "...", "PodUID": "...", "PodName": "...", "ContainerName": "...",
 *    "Opts": {"Tail": 0, "Bytes": 0, "Timestamps": false, "Follow": false,
 *             "Previous": false, "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"}}
 *
 * 0 and the zero time mean "not set", as in Go. interLink's API server
 * refuses Tail with Bytes and SinceSeconds with SinceTime; kubectl allows
 * both, so the shim sends one of each pair and enforces the byte limit
 * itself, which it does in every case since not every plugin honours it.
 * The answer streams to the user as it arrives, at the pace the user reads:
 * a follow lasts until the plugin ends it or the user leaves, however quiet
 * the container is.
 */
#include "interlink.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "json.h"

#define NS_PER_S 1000000000LL

struct reader {
    vk_ctx *ctx;
    vk_stream *out;
    int64_t left; /* bytes still allowed, -1: no limit */
};

static int sink(void *ud, const char *data, size_t len)
{
    struct reader *r = ud;
    size_t n = r->left >= 0 && (int64_t)len > r->left ? (size_t)r->left : len;
    if (n && vk_stream_write(r->out, data, n) < 0)
        return -1;
    if (r->left < 0)
        return 0;
    r->left -= (int64_t)n;
    return r->left == 0 ? 1 : 0;
}

static bool cancelled(void *ud)
{
    return vk_ctx_cancelled(((struct reader *)ud)->ctx);
}

/* Go's time.Time in JSON: RFC 3339 with nanoseconds, trailing zeros cut. */
static void go_time(int64_t unix_ns, char *buf, size_t n)
{
    if (!unix_ns) {
        snprintf(buf, n, "0001-01-01T00:00:00Z");
        return;
    }
    int64_t s = unix_ns / NS_PER_S, ns = unix_ns % NS_PER_S;
    if (ns < 0) {
        s--;
        ns += NS_PER_S;
    }
    char whole[32], frac[16] = "";
    vk_rfc3339(s, whole, sizeof whole);
    if (ns) {
        snprintf(frac, sizeof frac, ".%09lld", (long long)ns);
        for (size_t i = strlen(frac); frac[i - 1] == '0'; i--)
            frac[i - 1] = '\0';
    }
    whole[strlen(whole) - 1] = '\0'; /* the Z goes after the fraction */
    snprintf(buf, n, "%s%sZ", whole, frac);
}

static int request(const char *ns, const char *pod, const char *uid, const char *container,
                   const vk_log_options *opt, vk_buf *out)
{
    char since[48];
    go_time(opt->since_time_ns, since, sizeof since);
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "Namespace", ns);
    vk_jw_kv_str(&w, "PodUID", uid);
    vk_jw_kv_str(&w, "PodName", pod);
    vk_jw_kv_str(&w, "ContainerName", container);
    vk_jw_str(&w, "Opts");
    vk_jw_map_open(&w);
    vk_jw_kv_int(&w, "Tail", opt->tail_lines > 0 ? opt->tail_lines : 0);
    vk_jw_kv_int(&w, "Bytes", opt->tail_lines > 0 || opt->limit_bytes < 0 ? 0 : opt->limit_bytes);
    vk_jw_kv_bool(&w, "Timestamps", opt->timestamps);
    vk_jw_kv_bool(&w, "Follow", opt->follow);
    vk_jw_kv_bool(&w, "Previous", opt->previous);
    vk_jw_kv_int(&w, "SinceSeconds", opt->since_time_ns ? 0 : opt->since_seconds);
    vk_jw_kv_str(&w, "SinceTime", since);
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

int il_container_logs(vk_ctx *ctx, const char *ns, const char *pod,
                      const char *container, const vk_log_options *opt, vk_stream *out)
{
    char uid[256] = "";
    int code = VK_OK;
    pods_lock();
    il_pod *p = pods_by_name(ns, pod);
    if (!p || !p->accepted)
        code = vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    else if (!vk_pod_container(p->pod, container))
        code = vk_ctx_error(ctx, VK_NOT_FOUND, "container %s is not part of pod %s/%s",
                            container, ns, pod);
    else
        snprintf(uid, sizeof uid, "%s", p->pod->uid);
    pods_unlock();
    if (code != VK_OK || opt->tail_lines == 0 || opt->limit_bytes == 0)
        return code; /* interLink has no way to ask for nothing */

    vk_buf body = VK_BUF_INIT;
    if (request(ns, pod, uid, container, opt, &body) < 0) {
        vk_buf_free(&body);
        return vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "out of memory");
    }
    struct reader r = {.ctx = ctx, .out = out, .left = opt->limit_bytes};
    vk_status st = {0, NULL};
    code = plugin_stream("GET", "/getLogs", body.data, body.len, !opt->follow, sink,
                         cancelled, &r, &st);
    if (code != VK_OK)
        code = vk_ctx_error(ctx, code, "%s", st.message ? st.message : "");
    vk_status_clear(&st);
    vk_buf_free(&body);
    return code;
}
