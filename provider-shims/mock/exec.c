/* exec.c -- exec, attach and port-forward into pretend containers.
 *
 * There are no processes. Exec runs a few built-in commands:
 *
 *   echo ARGS...    cat    exit [N]    sleep SECONDS    env    stty size
 *   yes [STRING]    (output without end, for backpressure: see cmd_yes)
 *   sh -c 'LINE'    (LINE: one of these, words without quotes or shell syntax)
 *   sh              (reads command lines from stdin, one at a time)
 *
 * Anything else exits 127 with a message on stderr. With a tty, stderr goes
 * to stdout, "\n" is written as "\r\n" and input is echoed, as a terminal's
 * line discipline would. Attach behaves like cat on the container's main
 * process and ends when that process exits. Port-forward is an echo server.
 */
#include "mock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_WORDS 64
#define ATTACH_POLL_MS 200 /* how soon an attach notices its container exit */
#define YES_BUF 8192       /* bytes yes hands to one write, as coreutils does */

typedef struct session {
    vk_ctx *ctx;
    vk_stream *io;
    const vk_exec_request *req;
    uint32_t width, height;
    bool eof;           /* no more stdin (closed, or never asked for) */
    bool exiting;       /* the exit built-in ran: an interactive sh stops */
    vk_buf pending;     /* stdin received ... */
    size_t pending_at;  /* ... and consumed up to here */
    vk_buf env;         /* the container's "NAME=value\n" lines */
} session;

/* What exec and attach need to know about their container. */
typedef struct target {
    char uid[128];
    char ctr[256];
    int32_t restarts;
} target;

/* Find a running pod and, unless ctr is NULL, a running container of it
 * (the first one when ctr is empty). With env, copy the container's
 * environment. A VK_* code, with the message set on ctx. */
static int find_target(vk_ctx *ctx, const char *ns, const char *pod, const char *uid,
                       const char *ctr, target *t, vk_buf *env)
{
    int rc = VK_OK;
    pods_lock();
    mock_pod *mp = pods_find(ns, pod);
    const char *have_uid = mp ? pod_uid(mp) : "";
    mock_ctr *c = NULL;
    if (mp && ctr && ctr[0])
        c = pod_ctr(mp, ctr);
    for (size_t i = 0; mp && ctr && !ctr[0] && !c && i < mp->n_ctrs; i++)
        if (!mp->ctrs[i].init)
            c = &mp->ctrs[i];
    if (!mp || (uid && uid[0] && strcmp(uid, have_uid) != 0)) {
        rc = vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    } else if (ctr && !c) {
        rc = vk_ctx_error(ctx, VK_NOT_FOUND, "container %s is not part of pod %s/%s", ctr, ns, pod);
    } else if (!ctr && strcmp(mp->phase, "Running") != 0) {
        rc = vk_ctx_error(ctx, VK_FAILED_PRECONDITION, "pod %s/%s is not running (%s)",
                          ns, pod, mp->phase);
    } else if (ctr && c->state != VK_STATE_RUNNING) {
        rc = vk_ctx_error(ctx, VK_FAILED_PRECONDITION, "container %s of pod %s/%s is not running",
                          c->spec->name, ns, pod);
    } else if (t) {
        snprintf(t->uid, sizeof t->uid, "%s", have_uid);
        snprintf(t->ctr, sizeof t->ctr, "%s", c->spec->name);
        t->restarts = c->restarts;
        for (size_t i = 0; env && i < c->spec->n_env; i++)
            vk_buf_printf(env, "%s=%s\n", c->spec->env[i].name,
                          c->spec->env[i].value ? c->spec->env[i].value : "");
    }
    pods_unlock();
    return rc;
}

/* ---- terminal I/O ----------------------------------------------------------- */

/* Write to stdout, or to stderr (err). 0, or -1 once the user is gone. */
static int put(session *s, bool err, const char *data, size_t len)
{
    const vk_exec_request *r = s->req;
    if (!r->tty) {
        if (err)
            return r->err ? vk_stream_write_stderr(s->io, data, len) : 0;
        return r->out ? vk_stream_write(s->io, data, len) : 0;
    }
    if (!r->out)
        return 0;
    vk_buf b = VK_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++)
        rc = data[i] == '\n' ? vk_buf_append(&b, "\r\n", 2) : vk_buf_append(&b, &data[i], 1);
    if (rc == 0)
        rc = vk_stream_write(s->io, b.data, b.len);
    vk_buf_free(&b);
    return rc;
}

static int say(session *s, bool err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int say(session *s, bool err, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return 0;
    return put(s, err, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Wait up to timeout_ms (-1: no limit) for stdin. 1 when s->pending holds
 * unread bytes; 0 when not (timeout, resize, or EOF: s->eof tells); -1 once
 * the user is gone. */
static int fill(session *s, int timeout_ms)
{
    if (s->pending_at < s->pending.len)
        return 1;
    vk_input in;
    int rc = vk_stream_read(s->io, &in, timeout_ms);
    if (rc <= 0)
        return rc;
    if (in.kind == VK_INPUT_RESIZE) {
        s->width = in.width;
        s->height = in.height;
        return 0;
    }
    if (in.kind == VK_INPUT_EOF) {
        s->eof = true;
        return 0;
    }
    vk_buf_reset(&s->pending);
    s->pending_at = 0;
    if (vk_buf_append(&s->pending, in.data, in.len) < 0)
        return -1;
    return in.len > 0;
}

/* Write out what stdin brought and fill() left pending: as is without a
 * tty (cat), as a terminal echoes it with one (Enter read as newline). */
static int echo_pending(session *s)
{
    char *p = s->pending.data + s->pending_at;
    size_t n = s->pending.len - s->pending_at;
    s->pending_at = s->pending.len;
    for (size_t i = 0; s->req->tty && i < n; i++)
        if (p[i] == '\r')
            p[i] = '\n';
    return put(s, false, p, n);
}

/* ---- built-ins --------------------------------------------------------------- */

static int run(session *s, int argc, const char *const *argv, int *code);

static int unsupported(session *s, int *code)
{
    *code = 127;
    return say(s, true, "mock: unsupported command\n");
}

static int cmd_cat(session *s, int *code)
{
    *code = 0;
    while (!s->eof) {
        int rc = fill(s, -1);
        if (rc < 0 || (rc > 0 && echo_pending(s) < 0))
            return -1;
    }
    return 0;
}

static int cmd_sleep(session *s, const char *arg, int *code)
{
    char *end;
    double secs = arg ? strtod(arg, &end) : -1;
    if (!arg || *end || !(secs >= 0 && secs <= 1e6)) {
        *code = 1;
        return say(s, true, "sleep: invalid time interval '%s'\n", arg ? arg : "");
    }
    int64_t until = mock_now_ns() + (int64_t)(secs * 1e9);
    for (;;) {
        int64_t left = (until - mock_now_ns() + NS_PER_MS - 1) / NS_PER_MS;
        if (left <= 0)
            break;
        /* Type-ahead stays for the shell, as a terminal keeps it, and
         * nothing more can be read until the shell takes it: just wait. */
        if (s->pending_at < s->pending.len) {
            struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        /* Otherwise reading is the sleep: it returns early once the user
         * is gone, and takes resizes meanwhile. */
        if (fill(s, (int)left) < 0)
            return -1;
    }
    *code = 0;
    return 0;
}

static int cmd_exit(session *s, const char *arg, int *code)
{
    int64_t v = 0;
    s->exiting = true;
    if (arg && mock_parse_int(arg, INT32_MIN, INT32_MAX, &v) < 0) {
        *code = 2;
        return say(s, true, "mock: exit: %s: numeric argument required\n", arg);
    }
    *code = (int)(v & 255);
    return 0;
}

/* Wait for the user to go away, dropping whatever stdin brings. */
static int wait_gone(session *s)
{
    while (fill(s, -1) >= 0)
        s->pending_at = s->pending.len;
    return -1;
}

/* yes [STRING...]: the words (or "y") and a newline, over and over, until
 * the user goes away. Each write blocks while the user is not reading, so
 * a stalled client holds this loop instead of growing a buffer anywhere. */
static int cmd_yes(session *s, int argc, const char *const *argv)
{
    if (!s->req->out)
        return wait_gone(s);
    vk_buf line = VK_BUF_INIT, b = VK_BUF_INIT;
    int rc = argc > 1 ? 0 : vk_buf_puts(&line, "y");
    for (int i = 1; i < argc && rc == 0; i++)
        rc = vk_buf_printf(&line, "%s%s", i > 1 ? " " : "", argv[i]);
    if (rc == 0)
        rc = vk_buf_puts(&line, "\n");
    /* Whole lines only, so every write ends at a line break. */
    while (rc == 0 && (b.len == 0 || b.len + line.len <= YES_BUF))
        rc = vk_buf_append(&b, line.data, line.len);
    while (rc == 0)
        rc = put(s, false, b.data, b.len);
    vk_buf_free(&line);
    vk_buf_free(&b);
    return -1;
}

/* One command line, split on blanks; shell syntax is not supported. */
static int run_line(session *s, const char *line, int *code)
{
    if (strpbrk(line, "\"'`$|&;<>()\\*?[]{}~#\n"))
        return unsupported(s, code);
    char *copy = strdup(line);
    if (!copy)
        return -1;
    const char *argv[MAX_WORDS];
    int argc = 0;
    char *save;
    for (char *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (argc == MAX_WORDS) {
            free(copy);
            return unsupported(s, code);
        }
        argv[argc++] = w;
    }
    int rc = argc ? run(s, argc, argv, code) : 0;
    if (!argc)
        *code = 0;
    free(copy);
    return rc;
}

/* sh without arguments: run the lines read from stdin, like a terminal
 * session when there is a tty (prompt, echo, backspace, ^C, ^D). */
static int cmd_shell(session *s, int *code)
{
    bool tty = s->req->tty;
    char line[1024];
    size_t len = 0;
    *code = 0;
    if (tty && put(s, false, "$ ", 2) < 0)
        return -1;
    while (!s->exiting) {
        int rc = fill(s, -1);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            if (s->eof)
                break;
            continue;
        }
        char c = s->pending.data[s->pending_at++];
        if (c == '\r' || c == '\n') {
            line[len] = '\0';
            len = 0;
            if ((tty && put(s, false, "\n", 1) < 0) || run_line(s, line, code) < 0 ||
                (tty && !s->exiting && put(s, false, "$ ", 2) < 0))
                return -1;
        } else if (tty && c == 4 && len == 0) { /* ^D */
            break;
        } else if (tty && c == 3) { /* ^C */
            len = 0;
            *code = 130;
            if (put(s, false, "^C\n$ ", 5) < 0)
                return -1;
        } else if (tty && (c == 0x7f || c == '\b')) {
            if (len) {
                len--;
                if (put(s, false, "\b \b", 3) < 0)
                    return -1;
            }
        } else if (len < sizeof line - 1) {
            line[len++] = c;
            if (tty && put(s, false, &c, 1) < 0)
                return -1;
        }
    }
    return 0;
}

/* Run one built-in; 0 with *code set, or -1 once the user is gone. */
static int run(session *s, int argc, const char *const *argv, int *code)
{
    const char *cmd = argv[0];
    *code = 0;
    if (strcmp(cmd, "echo") == 0) {
        vk_buf b = VK_BUF_INIT;
        int rc = 0;
        for (int i = 1; i < argc && rc == 0; i++)
            rc = vk_buf_printf(&b, "%s%s", i > 1 ? " " : "", argv[i]);
        if (rc == 0)
            rc = vk_buf_puts(&b, "\n");
        if (rc == 0)
            rc = put(s, false, b.data, b.len);
        vk_buf_free(&b);
        return rc;
    }
    if (strcmp(cmd, "cat") == 0 && argc == 1)
        return cmd_cat(s, code);
    if (strcmp(cmd, "exit") == 0 && argc <= 2)
        return cmd_exit(s, argc == 2 ? argv[1] : NULL, code);
    if (strcmp(cmd, "sleep") == 0 && argc <= 2)
        return cmd_sleep(s, argc == 2 ? argv[1] : NULL, code);
    if (strcmp(cmd, "env") == 0 && argc == 1)
        return put(s, false, s->env.data ? s->env.data : "", s->env.len);
    if (strcmp(cmd, "stty") == 0 && argc == 2 && strcmp(argv[1], "size") == 0) {
        if (s->req->tty)
            return say(s, false, "%u %u\n", s->height, s->width);
        *code = 1;
        return say(s, true, "stty: 'standard input': Inappropriate ioctl for device\n");
    }
    if (strcmp(cmd, "yes") == 0)
        return cmd_yes(s, argc, argv);
    if (strcmp(cmd, "sh") == 0 && argc == 1)
        return cmd_shell(s, code);
    if (strcmp(cmd, "sh") == 0 && argc == 3 && strcmp(argv[1], "-c") == 0)
        return run_line(s, argv[2], code);
    if (strcmp(cmd, "sh") == 0)
        return unsupported(s, code);
    *code = 127;
    return say(s, true, "mock: %s: command not found\n", cmd);
}

static void session_init(session *s, vk_ctx *ctx, const vk_exec_request *req, vk_stream *io)
{
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    s->io = io;
    s->req = req;
    s->width = req->width;
    s->height = req->height;
    s->eof = !req->in;
}

static void session_free(session *s)
{
    vk_buf_free(&s->pending);
    vk_buf_free(&s->env);
}

static int gone(vk_ctx *ctx)
{
    return vk_ctx_error(ctx, VK_CANCELLED, "the user went away");
}

int mock_exec(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code)
{
    if (req->n_command == 0)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "no command given");
    session s;
    session_init(&s, ctx, req, io);
    target t;
    int rc = find_target(ctx, req->namespace, req->pod, req->uid,
                         req->container ? req->container : "", &t, &s.env);
    if (rc == VK_OK && run(&s, (int)req->n_command, req->command, exit_code) < 0)
        rc = gone(ctx);
    session_free(&s);
    return rc;
}

/* Has the attached-to process ended? Then its exit code into *code. */
static bool main_exited(const vk_exec_request *req, const target *t, int *code)
{
    pods_lock();
    mock_pod *mp = pods_find(req->namespace, req->pod);
    mock_ctr *c = mp && strcmp(pod_uid(mp), t->uid) == 0
                      ? pod_ctr(mp, t->ctr) : NULL;
    bool exited = !c || c->state == VK_STATE_TERMINATED || c->restarts != t->restarts;
    if (!c)
        *code = 137; /* the container is gone: as if killed */
    else if (exited)
        *code = c->state == VK_STATE_TERMINATED ? c->exit_code : mp->exit_code;
    pods_unlock();
    return exited;
}

int mock_attach(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code)
{
    session s;
    session_init(&s, ctx, req, io);
    target t;
    int rc = find_target(ctx, req->namespace, req->pod, req->uid,
                         req->container ? req->container : "", &t, NULL);
    *exit_code = 0;
    while (rc == VK_OK && !(req->in && s.eof) && !main_exited(req, &t, exit_code)) {
        int n = fill(&s, ATTACH_POLL_MS);
        if (n < 0 || (n > 0 && echo_pending(&s) < 0))
            rc = gone(ctx);
    }
    session_free(&s);
    return rc;
}

int mock_port_forward(vk_ctx *ctx, const char *ns, const char *pod, int32_t port,
                      vk_stream *io)
{
    if (port < 1 || port > 65535)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "port %d is not a TCP port", (int)port);
    int rc = find_target(ctx, ns, pod, NULL, NULL, NULL, NULL);
    while (rc == VK_OK) {
        vk_input in;
        int n = vk_stream_read(io, &in, -1);
        if (n < 0 || (n > 0 && in.kind == VK_INPUT_DATA && vk_stream_write(io, in.data, in.len) < 0))
            rc = gone(ctx);
        else if (n > 0 && in.kind == VK_INPUT_EOF)
            break;
    }
    return rc;
}
