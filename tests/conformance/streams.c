/* streams.c -- GetContainerLogs, ExecInContainer, AttachToContainer,
 * PortForward, and cancellation of each by the caller.
 *
 * Every stream runs under a guard that cancels it when its time is up, so
 * a provider that never ends a stream fails a check instead of hanging the
 * suite. Output is kept up to OUTPUT_MAX bytes a stream, whatever a provider sends.
 */
#include "conformance.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define OUTPUT_MAX (1u << 20)
#define STREAM_MS 15000       /* one stream, start to end */
#define CANCEL_MS 2000        /* a cancelled stream must be over by then */
#define LOG_LINES_WANTED 3

/* ---- logs ------------------------------------------------------------------- */

typedef struct log_opts {
    int64_t tail, limit, since_ns; /* -1: absent */
    bool timestamps;
    const char *container, *pod, *uid;
} log_opts;

/* Read a log (no follow) into out. The stream's final status. */
static int read_log(suite *s, const log_opts *o, vk_buf *out, vk_status *st)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)s->opt->namespace_;
    ref.name = (char *)(o->pod ? o->pod : s->pod_name);
    ref.uid = (char *)(o->uid ? o->uid : s->pod_uid);
    Vkc__Provider__V1__Int64Value tail = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__Int64Value limit = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__Int64Value since = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__GetContainerLogsRequest req =
        VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    req.pod = &ref;
    req.container = (char *)(o->container ? o->container : CONF_CONTAINER);
    req.timestamps = o->timestamps;
    if (o->tail >= 0) {
        tail.value = o->tail;
        req.tail_lines = &tail;
    }
    if (o->limit >= 0) {
        limit.value = o->limit;
        req.limit_bytes = &limit;
    }
    if (o->since_ns >= 0) {
        since.value = o->since_ns;
        req.since_time_unix_nano = &since;
    }
    pc_stream *ls = NULL;
    int code = pc_get_container_logs(s->pc, &req, &ls, st);
    if (code != VK_OK)
        return code;
    guard g;
    bool guarded = guard_start(&g, ls, STREAM_MS) == 0;
    if (!guarded)
        pc_stream_cancel(ls);
    ProtobufCMessage *m;
    bool overflow = false;
    while (pc_stream_next(ls, &m) == 1) {
        Vkc__Provider__V1__LogChunk *c = (Vkc__Provider__V1__LogChunk *)m;
        if (out->len + c->data.len > OUTPUT_MAX) {
            overflow = true;
            pc_stream_cancel(ls);
        } else {
            vk_buf_append(out, c->data.data, c->data.len);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    bool fired = guarded && guard_stop(&g);
    vk_status_clear(st);
    code = pc_stream_finish(ls, st);
    pc_stream_free(ls);
    if (fired)
        vk_status_set(st, code = VK_DEADLINE_EXCEEDED, "the log stream did not end within %d s",
                      STREAM_MS / 1000);
    else if (overflow)
        vk_status_set(st, code = VK_RESOURCE_EXHAUSTED, "more than %u bytes of log", OUTPUT_MAX);
    return code;
}

static const char *msg(const vk_status *st)
{
    return st->message ? st->message : "";
}

/* Does every line start with an RFC 3339 timestamp and a space? The first
 * bad line into why. With first/last non-NULL, the times of the first and
 * last line. */
static bool timestamped(const vk_buf *b, char *why, size_t whylen, int64_t *first,
                        int64_t *last)
{
    size_t at = 0, line = 0;
    while (at < b->len) {
        const char *p = b->data + at;
        const char *nl = memchr(p, '\n', b->len - at);
        size_t len = nl ? (size_t)(nl - p) : b->len - at;
        size_t ts = rfc3339_prefix(p, len);
        line++;
        if (ts == 0 || ts >= len || p[ts] != ' ') {
            snprintf(why, whylen, "line %zu does not start with an RFC 3339 time and a "
                     "space: \"%.*s\"", line, (int)(len < 60 ? len : 60), p);
            return false;
        }
        int64_t t = rfc3339_parse_ns(p, ts);
        if (first && line == 1)
            *first = t;
        if (last)
            *last = t;
        at += len + 1;
    }
    return true;
}

static void follow_checks(suite *s)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)s->opt->namespace_;
    ref.name = s->pod_name;
    ref.uid = s->pod_uid;
    Vkc__Provider__V1__Int64Value tail = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    tail.value = 1;
    Vkc__Provider__V1__GetContainerLogsRequest req =
        VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    req.pod = &ref;
    req.container = (char *)CONF_CONTAINER;
    req.tail_lines = &tail;
    req.follow = true;
    vk_status st = {0, NULL};
    pc_stream *ls = NULL;
    int code = pc_get_container_logs(s->pc, &req, &ls, &st);
    if (code != VK_OK) {
        check_fail("logs/follow", "GetContainerLogs with follow: %s %s",
                   vk_status_code_name(code), msg(&st));
        check_skip("logs/follow-cancel", "the follow stream did not start");
        vk_status_clear(&st);
        return;
    }
    guard g;
    bool guarded = guard_start(&g, ls, STREAM_MS) == 0;
    if (!guarded)
        pc_stream_cancel(ls);
    vk_buf data = VK_BUF_INIT;
    ProtobufCMessage *m;
    long cancelled_at = 0;
    int rc;
    /* The last line, then at least one the container writes meanwhile. */
    while ((rc = pc_stream_next(ls, &m)) == 1) {
        Vkc__Provider__V1__LogChunk *c = (Vkc__Provider__V1__LogChunk *)m;
        if (data.len + c->data.len <= OUTPUT_MAX)
            vk_buf_append(&data, c->data.data, c->data.len);
        protobuf_c_message_free_unpacked(m, NULL);
        if (!cancelled_at && count_lines(data.data, data.len) >= 2) {
            cancelled_at = now_ms();
            pc_stream_cancel(ls);
        }
    }
    long took = cancelled_at ? now_ms() - cancelled_at : 0;
    bool fired = guarded && guard_stop(&g);
    code = pc_stream_finish(ls, &st);
    pc_stream_free(ls);
    if (cancelled_at) {
        check_pass("logs/follow");
        check("logs/follow-cancel", took < CANCEL_MS && code == VK_CANCELLED,
              "after cancel the stream took %ld ms to end, with %s", took,
              vk_status_code_name(code));
    } else {
        check_fail("logs/follow", "%s after %zu bytes (\"%.*s\"): want the last line, then "
                   "new lines as the container writes them", fired ? "no new line within "
                   "the stream's time" : "the stream ended", data.len,
                   (int)(data.len < 80 ? data.len : 80), data.data ? data.data : "");
        check_skip("logs/follow-cancel", "the follow stream never delivered new data");
    }
    vk_buf_free(&data);
    vk_status_clear(&st);
}

void run_log_checks(suite *s)
{
    const char *names[] = {"logs/read", "logs/tail-lines", "logs/limit-bytes",
                           "logs/timestamps", "logs/since-time", "logs/since-future",
                           "logs/follow", "logs/follow-cancel", "logs/unknown-container",
                           "logs/unknown-pod"};
    size_t n = sizeof names / sizeof names[0];
    bool go = has_cap(s, PC_CAP_GET_CONTAINER_LOGS);
    for (size_t i = 0; !go && i < n; i++)
        check_skip(names[i], "the provider does not declare GetContainerLogs");
    for (size_t i = 0; go && !s->running && i < n; i++)
        check_skip(names[i], "the test pod never reached Running");
    if (!go || !s->running)
        return;

    vk_status st = {0, NULL};
    vk_buf all = VK_BUF_INIT;
    log_opts o = {-1, -1, -1, false, NULL, NULL, NULL};
    int code = VK_OK;
    long end = now_ms() + STREAM_MS;
    do {
        vk_buf_reset(&all);
        vk_status_clear(&st);
        code = read_log(s, &o, &all, &st);
        if (code != VK_OK || count_lines(all.data, all.len) >= LOG_LINES_WANTED)
            break;
        sleep_ms(250);
    } while (now_ms() < end);
    size_t lines = count_lines(all.data, all.len);
    if (!check("logs/read", code == VK_OK && lines >= LOG_LINES_WANTED &&
                            all.data[all.len - 1] == '\n',
               "%s%s: %zu lines (want %d or more, the last one ending in a newline; the test "
               "container writes one a second)", vk_status_code_name(code), msg(&st), lines,
               LOG_LINES_WANTED)) {
        for (size_t i = 1; i < n; i++)
            check_skip(names[i], "the test container's log could not be read");
        vk_buf_free(&all);
        vk_status_clear(&st);
        return;
    }

    vk_buf out = VK_BUF_INIT;
    o.tail = 2;
    code = read_log(s, &o, &out, &st);
    check("logs/tail-lines", code == VK_OK && count_lines(out.data, out.len) == 2,
          "tail_lines=2 gave %s%s and %zu lines: \"%.*s\"", vk_status_code_name(code), msg(&st),
          count_lines(out.data, out.len), (int)(out.len < 120 ? out.len : 120),
          out.data ? out.data : "");
    o.tail = -1;
    vk_buf_reset(&out);
    vk_status_clear(&st);

    o.limit = 10;
    code = read_log(s, &o, &out, &st);
    check("logs/limit-bytes", code == VK_OK && out.len == 10,
          "limit_bytes=10 gave %s%s and %zu bytes (the log has more)", vk_status_code_name(code),
          msg(&st), out.len);
    o.limit = -1;
    vk_buf_reset(&out);
    vk_status_clear(&st);

    o.timestamps = true;
    code = read_log(s, &o, &out, &st);
    char why[200] = "";
    int64_t first = -1, last = -1;
    bool stamped = code == VK_OK && out.len > 0 && timestamped(&out, why, sizeof why, &first,
                                                                &last);
    check("logs/timestamps", stamped, "timestamps=true: %s%s %s", vk_status_code_name(code),
          msg(&st), why);
    vk_buf_reset(&out);
    vk_status_clear(&st);

    if (!stamped || last <= first) {
        check_skip("logs/since-time", "needs log lines with distinct timestamps");
    } else {
        /* From the last line's time on: that line, maybe newer ones, never
         * older ones. */
        o.since_ns = last;
        code = read_log(s, &o, &out, &st);
        int64_t f = -1;
        bool ok = code == VK_OK && out.len > 0 && timestamped(&out, why, sizeof why, &f, NULL);
        check("logs/since-time", ok && f >= last,
              "since_time of the last line gave %s%s, %zu bytes, first line at %lld ns (want "
              ">= %lld) %s", vk_status_code_name(code), msg(&st), out.len, (long long)f,
              (long long)last, why);
        vk_buf_reset(&out);
        vk_status_clear(&st);
    }

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    o.since_ns = ((int64_t)now.tv_sec + 3600) * 1000000000LL;
    o.timestamps = false;
    code = read_log(s, &o, &out, &st);
    check("logs/since-future", code == VK_OK && out.len == 0,
          "since_time an hour ahead gave %s%s and %zu bytes (want OK and none)",
          vk_status_code_name(code), msg(&st), out.len);
    o.since_ns = -1;
    vk_buf_reset(&out);
    vk_status_clear(&st);

    follow_checks(s);

    o.container = "conformance-no-such-container";
    code = read_log(s, &o, &out, &st);
    check("logs/unknown-container", code == VK_NOT_FOUND,
          "logs of a container the pod does not have: %s (%s), want NOT_FOUND",
          vk_status_code_name(code), msg(&st));
    o.container = NULL;
    vk_buf_reset(&out);
    vk_status_clear(&st);

    o.pod = "conformance-no-such-pod";
    o.uid = "";
    code = read_log(s, &o, &out, &st);
    check("logs/unknown-pod", code == VK_NOT_FOUND,
          "logs of a pod that does not exist: %s (%s), want NOT_FOUND",
          vk_status_code_name(code), msg(&st));
    vk_buf_free(&out);
    vk_buf_free(&all);
    vk_status_clear(&st);
}

/* ---- exec and attach ------------------------------------------------------------- */

enum step_kind { STEP_STDIN, STEP_RESIZE, STEP_CLOSE };

typedef struct io_step {
    enum step_kind kind;
    const char *data;
    uint32_t width, height;
} io_step;

typedef struct exec_req {
    const char *pod, *uid, *container;
    const char *const *argv;   /* NULL-terminated; NULL for attach */
    bool in, tty;
    uint32_t width, height;    /* initial size with tty */
    const io_step *steps;
    size_t n_steps;
    int cancel_after_ms;       /* > 0: cancel ourselves then */
} exec_req;

typedef struct exec_result {
    int code;          /* the stream's final status */
    vk_status st;
    vk_buf out, err;
    int exits;         /* exit messages received */
    int exit_code;
    char exit_error[160];
    bool timed_out;
    long cancel_took;  /* ms from our cancel to the stream's end */
} exec_result;

static void exec_result_clear(exec_result *r)
{
    vk_status_clear(&r->st);
    vk_buf_free(&r->out);
    vk_buf_free(&r->err);
}

/* One exec (argv set) or attach (argv NULL): start, the input steps, then
 * the output until the stream ends. The guard ends it after STREAM_MS, or
 * after cancel_after_ms when the check cancels it on purpose. */
static void run_exec(suite *s, const exec_req *q, exec_result *r)
{
    memset(r, 0, sizeof *r);
    r->exit_code = -1;
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)s->opt->namespace_;
    ref.name = (char *)(q->pod ? q->pod : s->pod_name);
    ref.uid = (char *)(q->uid ? q->uid : s->pod_uid);
    Vkc__Provider__V1__TerminalSize size = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    size.width = q->width;
    size.height = q->height;
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &ref;
    start.container = (char *)(q->container ? q->container : CONF_CONTAINER);
    size_t argc = 0;
    while (q->argv && q->argv[argc])
        argc++;
    start.command = (char **)q->argv;
    start.n_command = argc;
    start.stdin = q->in;
    start.stdout = true;
    start.stderr = !q->tty;
    start.tty = q->tty;
    if (q->tty && q->width)
        start.size = &size;
    pc_stream *es = NULL;
    r->code = q->argv ? pc_exec(s->pc, &start, &es, &r->st) : pc_attach(s->pc, &start, &es, &r->st);
    if (r->code != VK_OK)
        return;
    guard g;
    bool guarded = guard_start(&g, es, q->cancel_after_ms > 0 ? q->cancel_after_ms : STREAM_MS) == 0;
    if (!guarded)
        pc_stream_cancel(es);
    for (size_t i = 0; i < q->n_steps; i++) {
        const io_step *p = &q->steps[i];
        int rc = p->kind == STEP_STDIN ? pc_stream_stdin(es, p->data, strlen(p->data))
                 : p->kind == STEP_RESIZE ? pc_stream_resize(es, p->width, p->height)
                                          : pc_stream_close_stdin(es);
        if (rc < 0)
            break; /* over already: the status tells why */
    }
    ProtobufCMessage *m;
    while (pc_stream_next(es, &m) == 1) {
        Vkc__Provider__V1__ExecOutput *o = (Vkc__Provider__V1__ExecOutput *)m;
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT) {
            r->exits++;
            r->exit_code = o->exit ? o->exit->exit_code : 0;
            snprintf(r->exit_error, sizeof r->exit_error, "%s",
                     o->exit && o->exit->error ? o->exit->error : "");
        } else {
            bool err = o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDERR;
            vk_buf *b = err ? &r->err : &r->out;
            const ProtobufCBinaryData *d = err ? &o->stderr : &o->stdout;
            if (b->len + d->len <= OUTPUT_MAX)
                vk_buf_append(b, d->data, d->len);
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    long ended = now_ms();
    bool fired = guarded && guard_stop(&g);
    vk_status_clear(&r->st);
    r->code = pc_stream_finish(es, &r->st);
    pc_stream_free(es);
    if (fired && q->cancel_after_ms > 0)
        r->cancel_took = ended - g.deadline_ms;
    else if (fired)
        r->timed_out = true;
}

static const char *text(const vk_buf *b)
{
    return b->data ? b->data : "";
}

/* The start of b on one line: control characters as \n, \r or \xNN. */
static const char *excerpt(const vk_buf *b, char *buf, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < b->len && i < 60 && at + 5 < n; i++) {
        unsigned char c = (unsigned char)b->data[i];
        if (c == '\n' || c == '\r')
            at += (size_t)snprintf(buf + at, n - at, "\\%c", c == '\n' ? 'n' : 'r');
        else if (c < 0x20 || c == 0x7f)
            at += (size_t)snprintf(buf + at, n - at, "\\x%02x", c);
        else
            buf[at++] = (char)c;
    }
    buf[at] = '\0';
    return buf;
}

/* "OK, 1 exit message(s), exit code 0, stdout "...", stderr "..."" for
 * failure messages. */
static const char *describe(const exec_result *r, char *buf, size_t n)
{
    char out[256], err[256];
    snprintf(buf, n, "%s%s%s%s, %d exit message(s), exit code %d%s%s, stdout \"%s\", "
             "stderr \"%s\"", r->timed_out ? "timed out, " : "", vk_status_code_name(r->code),
             r->st.message ? " " : "", r->st.message ? r->st.message : "", r->exits, r->exit_code,
             r->exit_error[0] ? " error " : "", r->exit_error,
             excerpt(&r->out, out, sizeof out), excerpt(&r->err, err, sizeof err));
    return buf;
}

static bool finished(const exec_result *r, int exit_code)
{
    return !r->timed_out && r->code == VK_OK && r->exits == 1 && r->exit_code == exit_code &&
           !r->exit_error[0];
}

void run_exec_checks(suite *s)
{
    const char *names[] = {"exec/stdout", "exec/exit-code", "exec/stderr", "exec/stdin",
                           "exec/tty", "exec/resize", "exec/missing-executable",
                           "exec/unknown-container", "exec/unknown-pod"};
    size_t n = sizeof names / sizeof names[0];
    bool go = has_cap(s, PC_CAP_EXEC);
    for (size_t i = 0; !go && i < n; i++)
        check_skip(names[i], "the provider does not declare ExecInContainer");
    for (size_t i = 0; go && !s->running && i < n; i++)
        check_skip(names[i], "the test pod never reached Running");
    if (!go || !s->running)
        return;

    exec_result r;
    char d[512];
    const char *echo[] = {"echo", "hello", "conformance", NULL};
    run_exec(s, &(exec_req){.argv = echo}, &r);
    check("exec/stdout", finished(&r, 0) && strcmp(text(&r.out), "hello conformance\n") == 0 &&
                         r.err.len == 0,
          "echo hello conformance: %s", describe(&r, d, sizeof d));
    exec_result_clear(&r);

    const char *exit3[] = {"sh", "-c", "exit 3", NULL};
    run_exec(s, &(exec_req){.argv = exit3}, &r);
    check("exec/exit-code", finished(&r, 3), "sh -c 'exit 3': %s", describe(&r, d, sizeof d));
    exec_result_clear(&r);

    /* A shell reports a command it cannot find on stderr, with 127. */
    const char *missing[] = {"sh", "-c", "vkc-conformance-no-such-command", NULL};
    run_exec(s, &(exec_req){.argv = missing}, &r);
    check("exec/stderr", finished(&r, 127) && r.err.len > 0 && r.out.len == 0,
          "sh -c vkc-conformance-no-such-command (want stderr only, exit 127): %s",
          describe(&r, d, sizeof d));
    exec_result_clear(&r);

    const char *cat[] = {"cat", NULL};
    io_step in[] = {{STEP_STDIN, "line one\n", 0, 0}, {STEP_STDIN, "line two\n", 0, 0},
                    {STEP_CLOSE, NULL, 0, 0}};
    run_exec(s, &(exec_req){.argv = cat, .in = true, .steps = in, .n_steps = 3}, &r);
    check("exec/stdin", finished(&r, 0) && strcmp(text(&r.out), "line one\nline two\n") == 0,
          "cat with stdin, then stdin closed: %s", describe(&r, d, sizeof d));
    exec_result_clear(&r);

    /* An interactive shell on a terminal: the resize must reach it. Resize
     * and stdin are separate streams, which a runtime serves concurrently
     * (containerd, CRI-O: so does the kubelet), so their order is not the
     * protocol's; the shell sleeps a second before it asks for the size. */
    const char *sh[] = {"sh", NULL};
    io_step term[] = {{STEP_RESIZE, NULL, 120, 50}, {STEP_STDIN, "sleep 1\r", 0, 0},
                      {STEP_STDIN, "stty size\r", 0, 0}, {STEP_STDIN, "exit 7\r", 0, 0}};
    run_exec(s, &(exec_req){.argv = sh, .in = true, .tty = true, .width = 80, .height = 24,
                            .steps = term, .n_steps = 4}, &r);
    check("exec/tty", finished(&r, 7) && r.err.len == 0,
          "sh on a terminal, then \"exit 7\" (want exit 7, everything on stdout): %s",
          describe(&r, d, sizeof d));
    check("exec/resize", strstr(text(&r.out), "50 120") != NULL,
          "after a resize to 120x50, \"stty size\" should print \"50 120\": %s",
          describe(&r, d, sizeof d));
    exec_result_clear(&r);

    /* Either the stream ends with an error status, or the command "ran"
     * and failed the way a shell reports it. */
    const char *nothing[] = {"/vkc-conformance/no-such-executable", NULL};
    run_exec(s, &(exec_req){.argv = nothing}, &r);
    bool as_status = !r.timed_out && r.code != VK_OK && r.code != VK_DEADLINE_EXCEEDED &&
                     r.code != VK_CANCELLED && r.st.message && r.st.message[0];
    bool as_exit = !r.timed_out && r.code == VK_OK && r.exits == 1 &&
                   (r.exit_code == 126 || r.exit_code == 127);
    check("exec/missing-executable", as_status || as_exit,
          "exec of an executable that does not exist: want an error status with a message, "
          "or exit 126/127: %s", describe(&r, d, sizeof d));
    exec_result_clear(&r);

    run_exec(s, &(exec_req){.argv = echo, .container = "conformance-no-such-container"}, &r);
    check("exec/unknown-container", r.code == VK_NOT_FOUND,
          "exec in a container the pod does not have: %s", describe(&r, d, sizeof d));
    exec_result_clear(&r);

    run_exec(s, &(exec_req){.argv = echo, .pod = "conformance-no-such-pod", .uid = ""}, &r);
    check("exec/unknown-pod", r.code == VK_NOT_FOUND, "exec in a pod that does not exist: %s",
          describe(&r, d, sizeof d));
    exec_result_clear(&r);
}

/* ---- cancellation by the caller ---------------------------------------------------- */

static bool ping(suite *s)
{
    return pc_ping(s->pc, 2000, NULL) == VK_OK;
}

/* Is the process still there? Asked through exec; -1 when that fails. */
static int process_alive(suite *s, const char *pid)
{
    char line[64];
    snprintf(line, sizeof line, "kill -0 %s", pid);
    const char *argv[] = {"sh", "-c", line, NULL};
    exec_result r;
    run_exec(s, &(exec_req){.argv = argv}, &r);
    int alive = r.code != VK_OK || r.exits != 1 ? -1 : r.exit_code == 0;
    exec_result_clear(&r);
    return alive;
}

void run_cancel_checks(suite *s)
{
    if (need_cap(s, "exec/cancel", PC_CAP_EXEC, "ExecInContainer") && need_pod(s, "exec/cancel")) {
        const char *sleeper[] = {"sleep", "600", NULL};
        exec_result r;
        char d[512];
        run_exec(s, &(exec_req){.argv = sleeper, .cancel_after_ms = 1000}, &r);
        bool alive = ping(s);
        check("exec/cancel", r.code == VK_CANCELLED && r.cancel_took < CANCEL_MS && alive,
              "cancelling \"sleep 600\" after 1 s: the stream ended %ld ms later, with %s%s",
              r.cancel_took, describe(&r, d, sizeof d), alive ? "" : "; Ping then failed");
        exec_result_clear(&r);

        /* Where the shell can say its pid, see that the command is gone. */
        const char *report[] = {"sh", "-c", "echo $$; exec sleep 600", NULL};
        run_exec(s, &(exec_req){.argv = report, .cancel_after_ms = 1500}, &r);
        char pid[16] = "";
        size_t k = 0;
        while (k < r.out.len && k < sizeof pid - 1 && r.out.data[k] >= '0' && r.out.data[k] <= '9')
            pid[k] = r.out.data[k], k++;
        pid[k] = '\0';
        if (!pid[0] || k >= r.out.len || r.out.data[k] != '\n') {
            check_skip("exec/cancel-stops-command", "the provider's sh did not report its pid "
                       "(%s)", describe(&r, d, sizeof d));
        } else {
            int still = 1;
            for (long end = now_ms() + 5000; still == 1 && now_ms() < end;) {
                still = process_alive(s, pid);
                if (still == 1)
                    sleep_ms(200);
            }
            check("exec/cancel-stops-command", still == 0,
                  "the command of a cancelled exec (pid %s) %s", pid,
                  still == 1 ? "still runs 5 s later" : "could not be looked at with kill -0");
        }
        exec_result_clear(&r);
    } else {
        check_skip("exec/cancel-stops-command", "see exec/cancel");
    }

    if (need_cap(s, "attach/cancel", PC_CAP_ATTACH, "AttachToContainer") && need_pod(s, "attach/cancel")) {
        exec_result r;
        char d[512];
        run_exec(s, &(exec_req){.cancel_after_ms = 1000}, &r);
        bool alive = ping(s);
        check("attach/cancel", r.code == VK_CANCELLED && r.cancel_took < CANCEL_MS && alive,
              "cancelling an attach after 1 s: it ended %ld ms later: %s%s", r.cancel_took,
              describe(&r, d, sizeof d), alive ? "" : "; Ping then failed");
        exec_result_clear(&r);
        run_exec(s, &(exec_req){.pod = "conformance-no-such-pod", .uid = ""}, &r);
        check("attach/unknown-pod", r.code == VK_NOT_FOUND,
              "attach to a pod that does not exist: %s", describe(&r, d, sizeof d));
        exec_result_clear(&r);
    } else {
        check_skip("attach/unknown-pod", "see attach/cancel");
    }
}

/* ---- port-forward ------------------------------------------------------------------ */

/* A TCP echo server on 127.0.0.1, one connection at a time. */
typedef struct echo_server {
    int fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
} echo_server;

static void echo_conn(echo_server *e, int c)
{
    char buf[4096];
    for (long end = now_ms() + STREAM_MS; !e->stop && now_ms() < end;) {
        struct pollfd p = {c, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0)
            break;
        if (write(c, buf, (size_t)n) != n)
            break;
    }
    close(c);
}

static void *echo_main(void *arg)
{
    echo_server *e = arg;
    while (!e->stop) {
        struct pollfd p = {e->fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept4(e->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0)
            echo_conn(e, c);
    }
    return NULL;
}

/* Bind 127.0.0.1:port (0: any free port) without listening. The fd, with
 * *bound the port, or -1. */
static int tcp_bind(int port, int *bound)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        close(fd);
        return -1;
    }
    *bound = ntohs(a.sin_port);
    return fd;
}

static int echo_start(echo_server *e, int port)
{
    memset(e, 0, sizeof *e);
    atomic_init(&e->stop, false);
    e->fd = tcp_bind(port, &e->port);
    if (e->fd < 0 || listen(e->fd, 4) < 0 || pthread_create(&e->thread, NULL, echo_main, e) != 0) {
        if (e->fd >= 0)
            close(e->fd);
        return -1;
    }
    return 0;
}

static void echo_stop(echo_server *e)
{
    atomic_store(&e->stop, true);
    pthread_join(e->thread, NULL);
    close(e->fd);
}

/* Forward to port: send payload, close our side, collect what comes back.
 * The final status. */
static int forward(suite *s, const char *pod, const char *uid, int port, const char *payload,
                   vk_buf *got, vk_status *st)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)s->opt->namespace_;
    ref.name = (char *)pod;
    ref.uid = (char *)uid;
    Vkc__Provider__V1__PortForwardStart start = VKC__PROVIDER__V1__PORT_FORWARD_START__INIT;
    start.pod = &ref;
    start.port = port;
    pc_stream *ps = NULL;
    int code = pc_port_forward(s->pc, &start, &ps, st);
    if (code != VK_OK)
        return code;
    guard g;
    bool guarded = guard_start(&g, ps, STREAM_MS) == 0;
    if (!guarded)
        pc_stream_cancel(ps);
    if (pc_stream_data(ps, payload, strlen(payload)) == 0)
        pc_stream_close_write(ps);
    ProtobufCMessage *m;
    while (pc_stream_next(ps, &m) == 1) {
        Vkc__Provider__V1__PortForwardOutput *o = (Vkc__Provider__V1__PortForwardOutput *)m;
        if (got->len + o->data.len <= OUTPUT_MAX)
            vk_buf_append(got, o->data.data, o->data.len);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    bool fired = guarded && guard_stop(&g);
    vk_status_clear(st);
    code = pc_stream_finish(ps, st);
    pc_stream_free(ps);
    if (fired)
        vk_status_set(st, code = VK_DEADLINE_EXCEEDED,
                      "the port-forward did not end within %d s of closing our side",
                      STREAM_MS / 1000);
    return code;
}

void run_port_forward_checks(suite *s)
{
    const char *names[] = {"portforward/echo", "portforward/no-listener",
                           "portforward/unknown-pod"};
    bool go = has_cap(s, PC_CAP_PORT_FORWARD) && s->running && !s->opt->skip_port_forward;
    for (size_t i = 0; !go && i < 3; i++)
        check_skip(names[i], "%s", s->opt->skip_port_forward ? "--skip-port-forward"
                   : !has_cap(s, PC_CAP_PORT_FORWARD) ? "the provider does not declare PortForward"
                                                      : "the test pod never reached Running");
    if (!go)
        return;

    echo_server e;
    int port = s->opt->port_forward_port;
    bool serving = false;
    if (s->opt->echo_server) {
        serving = echo_start(&e, port) == 0;
        if (!serving) {
            check_fail("portforward/echo", "cannot serve an echo on 127.0.0.1:%d: %s", port,
                       strerror(errno));
            return;
        }
        port = e.port;
    }
    vk_status st = {0, NULL};
    vk_buf got = VK_BUF_INIT;
    const char *payload = "ping from vkc-conformance\n";
    int code = forward(s, s->pod_name, s->pod_uid, port, payload, &got, &st);
    check("portforward/echo", code == VK_OK && strcmp(got.data ? got.data : "", payload) == 0,
          "to port %d: %s %s, got %zu bytes \"%.60s\" (want the %zu bytes sent, echoed)", port,
          vk_status_code_name(code), msg(&st), got.len, got.data ? got.data : "",
          strlen(payload));
    vk_buf_reset(&got);
    vk_status_clear(&st);
    if (serving)
        echo_stop(&e);

    /* A port nothing listens on: one we bound and never listened on. */
    int closed = 0;
    int fd = s->opt->echo_server ? tcp_bind(0, &closed) : -1;
    if (fd < 0) {
        check_skip("portforward/no-listener", "only with --echo-server, where the pod shares "
                   "the suite's network and a closed port is known");
    } else {
        code = forward(s, s->pod_name, s->pod_uid, closed, payload, &got, &st);
        check("portforward/no-listener", code == VK_UNAVAILABLE,
              "to port %d where nothing listens: %s (%s), want UNAVAILABLE", closed,
              vk_status_code_name(code), msg(&st));
        close(fd);
        vk_buf_reset(&got);
        vk_status_clear(&st);
    }

    code = forward(s, "conformance-no-such-pod", "", port, payload, &got, &st);
    check("portforward/unknown-pod", code == VK_NOT_FOUND,
          "port-forward to a pod that does not exist: %s (%s), want NOT_FOUND",
          vk_status_code_name(code), msg(&st));
    vk_buf_free(&got);
    vk_status_clear(&st);
}
