/* logs.c -- synthetic container logs.
 *
 * A running container writes line k at start + (k-1) * log interval:
 *
 *     2026-11-28T09:00:00Z web/nginx line 1
 *
 * A line is a function of its container instance's start time and its
 * number, so the store keeps no text: the last MAX_LINES lines of every
 * container can be produced at any time and older ones are gone, which is
 * what a bounded ring of lines would give, without its memory.
 */
#include "mock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_LINES 1000
#define CHUNK (32 * 1024)
#define FOLLOW_POLL_NS (100 * NS_PER_MS) /* how soon a follower notices cancellation */

/* One container instance, as copied out of the store. */
typedef struct source {
    const char *pod, *ctr;
    char *uid;
    int64_t start, end; /* end 0: still running */
    int32_t restarts;
} source;

typedef struct writer {
    vk_stream *out;
    vk_buf buf;
    int64_t left; /* bytes still allowed, -1: no limit */
    bool timestamps;
    int64_t quiet_after; /* the log-silence-after fault: lines, -1: none */
    int64_t lines;       /* written so far */
} writer;

static int64_t interval_ns(void)
{
    return config.log_interval_ms * NS_PER_MS;
}

/* Lines the instance has written by `now`. */
static int64_t lines_at(const source *s, int64_t now)
{
    int64_t e = s->end && s->end < now ? s->end : now;
    return e < s->start ? 0 : (e - s->start) / interval_ns() + 1;
}

static int snapshot(vk_ctx *ctx, const char *ns, const char *pod, const char *ctr,
                    bool previous, source *s)
{
    int rc = VK_OK;
    pods_lock();
    mock_pod *mp = pods_find(ns, pod);
    mock_ctr *c = mp ? pod_ctr(mp, ctr) : NULL;
    if (!mp) {
        rc = vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    } else if (!c) {
        rc = vk_ctx_error(ctx, VK_NOT_FOUND, "container %s is not part of pod %s/%s", ctr, ns, pod);
    } else if (previous && !c->prev_started_ns) {
        rc = vk_ctx_error(ctx, VK_NOT_FOUND,
                          "container %s of pod %s/%s has not restarted: it has no previous logs",
                          ctr, ns, pod);
    } else if (c->state == VK_STATE_WAITING) {
        rc = vk_ctx_error(ctx, VK_FAILED_PRECONDITION,
                          "container %s of pod %s/%s is waiting to start: ContainerCreating",
                          ctr, ns, pod);
    } else if (!(s->uid = strdup(pod_uid(mp)))) {
        rc = vk_ctx_error(ctx, VK_INTERNAL, "the mock provider ran out of memory");
    } else {
        s->pod = pod;
        s->ctr = ctr;
        s->restarts = c->restarts;
        s->start = previous ? c->prev_started_ns : c->started_ns;
        s->end = previous ? c->prev_finished_ns
                          : c->state == VK_STATE_TERMINATED ? c->finished_ns : 0;
    }
    pods_unlock();
    return rc;
}

/* Learn whether a followed instance ended. false once it is gone: the pod
 * was deleted or replaced, or the container restarted more than once. */
static bool refresh(const char *ns, source *s)
{
    bool ok = false;
    pods_lock();
    mock_pod *mp = pods_find(ns, s->pod);
    mock_ctr *c = mp && strcmp(pod_uid(mp), s->uid) == 0
                      ? pod_ctr(mp, s->ctr) : NULL;
    if (c && c->restarts == s->restarts) {
        if (c->state == VK_STATE_TERMINATED)
            s->end = c->finished_ns;
        ok = true;
    } else if (c && c->restarts == s->restarts + 1) {
        s->end = c->prev_finished_ns;
        ok = true;
    }
    pods_unlock();
    return ok;
}

static void rfc3339_nano(int64_t ns, char *buf, size_t n)
{
    time_t sec = (time_t)(ns / NS_PER_S);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%09lldZ", (long long)(ns % NS_PER_S));
}

/* 0, or -1 once the user is gone. */
static int flush(writer *w)
{
    int rc = w->buf.len ? vk_stream_write(w->out, w->buf.data, w->buf.len) : 0;
    vk_buf_reset(&w->buf);
    return rc;
}

/* Write line k. 0 to go on, 1 when the byte limit is reached, 2 when the
 * log-silence-after fault says to go quiet, -1 when the user is gone. */
static int emit(writer *w, const source *s, int64_t k)
{
    int64_t t = s->start + (k - 1) * interval_ns();
    size_t before = w->buf.len;
    char ts[40];
    if (w->timestamps) {
        rfc3339_nano(t, ts, sizeof ts);
        vk_buf_printf(&w->buf, "%s ", ts);
    }
    vk_rfc3339(t / NS_PER_S, ts, sizeof ts);
    vk_buf_printf(&w->buf, "%s %s/%s line %lld\n", ts, s->pod, s->ctr, (long long)k);
    if (w->left >= 0) {
        int64_t added = (int64_t)(w->buf.len - before);
        if (added >= w->left) {
            w->buf.len = before + (size_t)w->left;
            w->buf.data[w->buf.len] = '\0';
            w->left = 0;
            return flush(w) < 0 ? -1 : 1;
        }
        w->left -= added;
    }
    if (w->quiet_after >= 0 && ++w->lines >= w->quiet_after)
        return flush(w) < 0 ? -1 : 2;
    return w->buf.len >= CHUNK ? flush(w) : 0;
}

static int emit_range(writer *w, const source *s, int64_t from, int64_t to)
{
    int rc = 0;
    for (int64_t k = from; k <= to && rc == 0; k++)
        rc = emit(w, s, k);
    return rc ? rc : flush(w);
}

/* Wait for line k of a followed instance; false when the wait ended
 * because the call was cancelled or the instance is gone. */
static bool wait_line(vk_ctx *ctx, const char *ns, source *s, int64_t k)
{
    for (;;) {
        if (vk_ctx_cancelled(ctx) || !refresh(ns, s))
            return false;
        int64_t now = mock_now_ns();
        if (lines_at(s, now) >= k || (s->end && s->end <= now))
            return true;
        int64_t wait = s->start + (k - 1) * interval_ns() - now;
        if (wait > FOLLOW_POLL_NS)
            wait = FOLLOW_POLL_NS;
        struct timespec ts = {0, (long)(wait > 0 ? wait : 0)};
        nanosleep(&ts, NULL);
    }
}

int mock_container_logs(vk_ctx *ctx, const char *ns, const char *pod,
                        const char *container, const vk_log_options *opt,
                        vk_stream *out)
{
    source s = {0};
    int rc = snapshot(ctx, ns, pod, container, opt->previous, &s);
    if (rc != VK_OK)
        return rc;

    writer w = {.out = out, .buf = VK_BUF_INIT, .left = opt->limit_bytes,
                .timestamps = opt->timestamps, .quiet_after = faults_log_silence_after()};
    int64_t now = mock_now_ns();
    int64_t n = lines_at(&s, now);
    int64_t first = n > MAX_LINES ? n - MAX_LINES + 1 : 1;
    int64_t since = opt->since_time_ns;
    if (opt->since_seconds > 0 && opt->since_seconds < now / NS_PER_S &&
        now - opt->since_seconds * NS_PER_S > since)
        since = now - opt->since_seconds * NS_PER_S;
    if (since > s.start) {
        int64_t k = (since - s.start + interval_ns() - 1) / interval_ns() + 1;
        first = k > first ? k : first;
    }
    if (opt->tail_lines >= 0 && n - opt->tail_lines + 1 > first)
        first = n - opt->tail_lines + 1;

    int sent = w.quiet_after == 0 ? 2 : w.left == 0 ? 1 : emit_range(&w, &s, first, n);
    bool follow = opt->follow && !opt->previous;
    while (sent == 0 && follow && !(s.end && lines_at(&s, INT64_MAX) <= n)) {
        if (!wait_line(ctx, ns, &s, n + 1))
            break;
        int64_t m = lines_at(&s, mock_now_ns());
        sent = emit_range(&w, &s, n + 1, m);
        n = m;
    }
    if (sent == 2) /* a provider that never ends the log, followed or not */
        faults_hang(ctx);
    vk_buf_free(&w.buf);
    free(s.uid);
    if (sent < 0 || vk_ctx_cancelled(ctx))
        return vk_ctx_error(ctx, VK_CANCELLED, "the log reader went away");
    return VK_OK;
}
