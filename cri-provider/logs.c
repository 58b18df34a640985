/* logs.c -- container logs from the runtime's CRI log files.
 *
 * The runtime writes one file per container attempt,
 * <pod dir>/<container>/<attempt>.log, in the CRI format:
 *
 *     2026-11-28T09:00:00.123456789Z stdout F hello
 *
 * (time, stream, tag, content). Tag P marks a partial line, continued by the
 * next entry; F ends it. Lines come out as the kubelet gives them: content
 * only, partials joined, optionally prefixed by the time of their first
 * part. Following polls the file: the stream ends when the container has
 * exited and the file is drained, or when the user goes away.
 */
#include "cri.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define MAX_LINE (1 << 20)  /* longer entries are cut: the runtime splits at 16 KiB */
#define OUT_CHUNK 32768
#define FOLLOW_POLL_MS 250

typedef struct reader {
    int fd;
    vk_stream *out;
    vk_buf *sink;           /* instead of out: logs_tail */
    const vk_log_options *opt;
    int64_t since_ns;
    int64_t left;           /* bytes still allowed, -1 no limit */
    bool in_partial;        /* the last entry was a P */
    bool skipping;          /* the current line is older than since */
    bool gone;              /* the user went away, or the limit was hit */
    vk_buf line;            /* an entry not yet ended by '\n' */
    vk_buf pending;         /* output not yet sent */
} reader;

/* Parse RFC 3339 with optional fraction and zone; Unix ns, or -1. */
static int64_t parse_time(const char *s, size_t len)
{
    struct tm tm;
    char buf[64];
    if (len < 20 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(buf, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    int64_t ns = 0, scale = 100000000;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ns += (*p - '0') * scale;
    int64_t off = 0;
    if ((*p == '+' || *p == '-') && strlen(p) >= 6) {
        off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        if (*p == '-')
            off = -off;
    } else if (*p != 'Z') {
        return -1;
    }
    return ((int64_t)timegm(&tm) - off) * NS_PER_S + ns;
}

static int flush(reader *r)
{
    if (r->pending.len && !r->gone &&
        (r->sink ? vk_buf_append(r->sink, r->pending.data, r->pending.len)
                 : vk_stream_write(r->out, r->pending.data, r->pending.len)) < 0)
        r->gone = true;
    vk_buf_reset(&r->pending);
    return r->gone ? -1 : 0;
}

/* Queue output, honouring limit_bytes. */
static int emit(reader *r, const char *data, size_t len)
{
    if (r->left >= 0 && (int64_t)len > r->left)
        len = (size_t)r->left;
    if (len && vk_buf_append(&r->pending, data, len) < 0)
        return -1;
    if (r->left >= 0) {
        r->left -= (int64_t)len;
        if (r->left == 0) {
            flush(r);
            r->gone = true;
            return -1;
        }
    }
    return r->pending.len >= OUT_CHUNK ? flush(r) : 0;
}

/* One entry, without its '\n'. Entries that do not parse are passed on
 * whole, as the kubelet does with lines it cannot read. */
static int entry(reader *r, const char *s, size_t len)
{
    const char *sp1 = memchr(s, ' ', len);
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', len - (size_t)(sp1 + 1 - s)) : NULL;
    const char *sp3 = sp2 ? memchr(sp2 + 1, ' ', len - (size_t)(sp2 + 1 - s)) : NULL;
    int64_t ts = sp1 ? parse_time(s, (size_t)(sp1 - s)) : -1;
    if (ts < 0 || !sp3) {
        if (emit(r, s, len) < 0 || emit(r, "\n", 1) < 0)
            return -1;
        return 0;
    }
    bool partial = sp2[1] == 'P';
    const char *content = sp3 + 1;
    size_t clen = len - (size_t)(content - s);
    bool first = !r->in_partial;
    r->in_partial = partial;
    /* A line is in or out as a whole, by the time of its first part. */
    if (first)
        r->skipping = r->since_ns && ts < r->since_ns;
    if (r->skipping)
        return 0;
    if (first && r->opt->timestamps) {
        if (emit(r, s, (size_t)(sp1 - s)) < 0 || emit(r, " ", 1) < 0)
            return -1;
    }
    if (emit(r, content, clen) < 0)
        return -1;
    return partial ? 0 : emit(r, "\n", 1);
}

/* Read to the end of the file; 0, or -1 when the stream is over. */
static int drain(reader *r)
{
    char buf[READ_CHUNK];
    for (;;) {
        ssize_t n = read(r->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return r->gone ? -1 : 0;
        const char *s = buf, *e = buf + n;
        while (s < e) {
            const char *nl = memchr(s, '\n', (size_t)(e - s));
            size_t len = nl ? (size_t)(nl - s) : (size_t)(e - s);
            if (r->line.len + len <= MAX_LINE && vk_buf_append(&r->line, s, len) < 0)
                return -1;
            if (nl) {
                int rc = entry(r, r->line.data ? r->line.data : "", r->line.len);
                vk_buf_reset(&r->line);
                if (rc < 0)
                    return -1;
            }
            s += len + (nl != NULL);
        }
    }
}

/* Offset of the first of the last n lines of the file. */
static off_t tail_offset(int fd, int64_t n)
{
    struct stat st;
    char buf[READ_CHUNK];
    if (fstat(fd, &st) < 0)
        return 0;
    off_t end = st.st_size, pos = end;
    int64_t seen = 0;
    /* A last line without its '\n' yet is a line too. */
    if (end > 0 && pread(fd, buf, 1, end - 1) == 1 && buf[0] == '\n')
        seen = -1;
    while (pos > 0) {
        size_t len = pos > (off_t)sizeof buf ? sizeof buf : (size_t)pos;
        ssize_t got = pread(fd, buf, len, pos - (off_t)len);
        if (got != (ssize_t)len)
            return 0;
        for (ssize_t i = got - 1; i >= 0; i--) {
            if (buf[i] == '\n' && ++seen == n)
                return pos - (off_t)len + i + 1;
        }
        pos -= (off_t)len;
    }
    return 0;
}

/* Still running: the container that wrote the file is the pod's current
 * one and has not exited. */
static bool still_running(const char *ns, const char *pod, const char *ctr, const char *id)
{
    bool running = false;
    cri_lock();
    cri_pod *p = pods_find(ns, pod);
    cri_ctr *c = p ? pod_ctr(p, ctr) : NULL;
    if (c)
        running = strcmp(c->id, id) == 0 && (c->phase == CTR_RUNNING || c->phase == CTR_CREATED);
    cri_unlock();
    return running;
}

int cri_container_logs(vk_ctx *ctx, const char *ns, const char *pod, const char *container,
                       const vk_log_options *opt, vk_stream *out)
{
    char path[600], id[80] = "";
    cri_lock();
    cri_pod *p = pods_find(ns, pod);
    cri_ctr *c = p ? pod_ctr(p, container) : NULL;
    if (!c) {
        cri_unlock();
        return vk_ctx_error(ctx, VK_NOT_FOUND, p ? "container %s not found in pod %s/%s"
                                                 : "pod %s/%s not found",
                            p ? container : ns, p ? ns : pod, pod);
    }
    int code = VK_OK;
    if (opt->previous) {
        if (c->prev_attempt < 0)
            code = vk_ctx_error(ctx, VK_FAILED_PRECONDITION,
                                "previous terminated container \"%s\" in pod \"%s\" not found",
                                container, pod);
        else
            pod_log_path(p, container, (uint32_t)c->prev_attempt, path, sizeof path);
    } else if (!c->created) {
        code = vk_ctx_error(ctx, VK_FAILED_PRECONDITION,
                            "container \"%s\" in pod \"%s\" is waiting to start: %s", container,
                            pod, c->reason[0] ? c->reason : "ContainerCreating");
    } else {
        pod_log_path(p, container, c->attempt, path, sizeof path);
        snprintf(id, sizeof id, "%s", c->id);
    }
    cri_unlock();
    if (code != VK_OK)
        return code;

    reader r = {.out = out, .opt = opt, .left = opt->limit_bytes};
    r.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0) {
        /* Created but not started yet: no file, nothing logged so far. */
        if (errno != ENOENT || !opt->follow)
            return errno == ENOENT ? VK_OK
                                   : vk_ctx_error(ctx, VK_INTERNAL, "cannot read the log: %s",
                                                  strerror(errno));
    }
    if (opt->since_seconds > 0)
        r.since_ns = cri_now_ns() - opt->since_seconds * NS_PER_S;
    if (opt->since_time_ns > r.since_ns)
        r.since_ns = opt->since_time_ns;
    if (r.fd >= 0 && opt->tail_lines >= 0) {
        if (opt->tail_lines == 0)
            lseek(r.fd, 0, SEEK_END);
        else
            lseek(r.fd, tail_offset(r.fd, opt->tail_lines), SEEK_SET);
    }

    for (;;) {
        if (r.fd < 0)
            r.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (r.fd >= 0 && drain(&r) < 0)
            break;
        if (flush(&r) < 0 || !opt->follow)
            break;
        /* Once the container is seen stopped, one more read takes what it
         * wrote between the last read and its exit. */
        if (!id[0] || !still_running(ns, pod, container, id)) {
            if (r.fd >= 0)
                drain(&r);
            flush(&r);
            break;
        }
        vk_input in;
        if (vk_stream_read(out, &in, FOLLOW_POLL_MS) < 0)
            break;
    }
    if (r.fd >= 0)
        close(r.fd);
    vk_buf_free(&r.line);
    vk_buf_free(&r.pending);
    return VK_OK;
}

void logs_tail(const char *path, size_t max_lines, size_t max_bytes, vk_buf *out)
{
    vk_log_options opt = {.tail_lines = (int64_t)max_lines, .limit_bytes = (int64_t)max_bytes};
    reader r = {.sink = out, .opt = &opt, .left = opt.limit_bytes};
    r.fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r.fd < 0)
        return;
    lseek(r.fd, tail_offset(r.fd, opt.tail_lines), SEEK_SET);
    drain(&r);
    flush(&r);
    close(r.fd);
    vk_buf_free(&r.line);
    vk_buf_free(&r.pending);
}
