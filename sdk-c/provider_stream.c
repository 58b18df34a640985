/* provider_stream.c -- the streaming RPCs a callback takes part in:
 * GetContainerLogs, ExecInContainer, AttachToContainer and PortForward.
 *
 * Output goes straight to the call, one writer at a time, in chunks of at
 * most 64 KiB: a user who does not read blocks the writer through gRPC flow
 * control, so nothing piles up here. Input comes from a reader thread per
 * bidirectional call that receives client messages into a queue of a few.
 * While the queue is full the reader stops receiving, so flow control pushes
 * back on the user as well.
 */
#include "provider_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "log.h"

#define CHUNK_MAX (64u << 10)
#define QUEUE_MAX 4

enum stream_kind { STREAM_LOGS, STREAM_EXEC, STREAM_PORT_FORWARD };

enum channel { OUT_STDOUT, OUT_STDERR };

struct vk_stream {
    vk_ctx *ctx;
    enum stream_kind kind;

    pthread_mutex_t send_mu; /* one message in flight, chunks of a write together */
    bool send_closed;        /* a send failed, or the callback returned */

    pthread_t reader;
    bool has_reader;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue, reader_done or stop changed */
    ProtobufCMessage *queue[QUEUE_MAX];
    size_t head, count;
    bool reader_done; /* the user half-closed or went away */
    bool malformed;   /* ... after sending a message that did not decode */
    bool stop;        /* the call is over: the reader must exit */
    bool eof;         /* VK_INPUT_EOF was handed out */
    ProtobufCMessage *current; /* backs the data of the last vk_input */
};

static int stream_init(vk_stream *s, vk_ctx *ctx, enum stream_kind kind)
{
    *s = (vk_stream){.ctx = ctx, .kind = kind};
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return -1;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&s->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return -1;
    pthread_mutex_init(&s->send_mu, NULL);
    pthread_mutex_init(&s->mu, NULL);
    return 0;
}

static void stream_destroy(vk_stream *s)
{
    while (s->count > 0) {
        protobuf_c_message_free_unpacked(s->queue[s->head], NULL);
        s->head = (s->head + 1) % QUEUE_MAX;
        s->count--;
    }
    if (s->current != NULL)
        protobuf_c_message_free_unpacked(s->current, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->send_mu);
}

/* ---- output ------------------------------------------------------------- */

static int send_one(vk_stream *s, enum channel ch, const uint8_t *data, size_t len)
{
    ProtobufCBinaryData bytes = {len, (uint8_t *)data};
    switch (s->kind) {
    case STREAM_LOGS: {
        Vkc__Provider__V1__LogChunk m = VKC__PROVIDER__V1__LOG_CHUNK__INIT;
        m.data = bytes;
        return vk_scall_send(s->ctx->call, &m.base);
    }
    case STREAM_EXEC: {
        Vkc__Provider__V1__ExecOutput m;
        vkc__provider__v1__exec_output__init(&m);
        if (ch == OUT_STDERR) {
            m.output_case = VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDERR;
            m.stderr = bytes;
        } else {
            m.output_case = VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT;
            m.stdout = bytes;
        }
        return vk_scall_send(s->ctx->call, &m.base);
    }
    case STREAM_PORT_FORWARD: {
        Vkc__Provider__V1__PortForwardOutput m = VKC__PROVIDER__V1__PORT_FORWARD_OUTPUT__INIT;
        m.data = bytes;
        return vk_scall_send(s->ctx->call, &m.base);
    }
    }
    return -1;
}

static int stream_send(vk_stream *s, enum channel ch, const void *data, size_t len)
{
    const uint8_t *at = data;
    int rc = 0;
    pthread_mutex_lock(&s->send_mu);
    if (s->send_closed)
        rc = -1;
    while (rc == 0 && len > 0) {
        size_t n = len < CHUNK_MAX ? len : CHUNK_MAX;
        if (send_one(s, ch, at, n) < 0) {
            s->send_closed = true;
            rc = -1;
        }
        at += n;
        len -= n;
    }
    pthread_mutex_unlock(&s->send_mu);
    return rc;
}

int vk_stream_write(vk_stream *s, const void *data, size_t len)
{
    return stream_send(s, OUT_STDOUT, data, len);
}

int vk_stream_write_stderr(vk_stream *s, const void *data, size_t len)
{
    /* Logs and port-forward data are one byte stream: error text mixed into
     * it would corrupt it. */
    if (s->kind != STREAM_EXEC)
        return -1;
    return stream_send(s, OUT_STDERR, data, len);
}

/* No writer may send after this; a write in progress ends first. */
static void close_send(vk_stream *s)
{
    pthread_mutex_lock(&s->send_mu);
    s->send_closed = true;
    pthread_mutex_unlock(&s->send_mu);
}

/* ---- input -------------------------------------------------------------- */

static void *reader_main(void *arg)
{
    vk_stream *s = arg;
    const ProtobufCMessageDescriptor *desc = s->kind == STREAM_EXEC
        ? &vkc__provider__v1__exec_input__descriptor
        : &vkc__provider__v1__port_forward_input__descriptor;
    for (;;) {
        ProtobufCMessage *msg = NULL;
        int rc = vk_scall_recv(s->ctx->call, desc, &msg);
        pthread_mutex_lock(&s->mu);
        if (rc != 1) {
            s->reader_done = true;
            s->malformed = rc < 0;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        while (s->count == QUEUE_MAX && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) {
            pthread_mutex_unlock(&s->mu);
            protobuf_c_message_free_unpacked(msg, NULL);
            return NULL;
        }
        s->queue[(s->head + s->count) % QUEUE_MAX] = msg;
        s->count++;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

static int start_reader(vk_stream *s)
{
    if (pthread_create(&s->reader, NULL, reader_main, s) != 0)
        return -1;
    s->has_reader = true;
    return 0;
}

/* Call after the call was finished, which is what ends a receive in
 * progress. */
static void stop_reader(vk_stream *s)
{
    if (!s->has_reader)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->reader, NULL);
    s->has_reader = false;
}

/* Turn a client message into input; false for messages with nothing in
 * them for the callback (a repeated start, empty data). Called under mu. */
static bool translate(vk_stream *s, const ProtobufCMessage *msg, vk_input *in)
{
    *in = (vk_input){.kind = VK_INPUT_DATA};
    if (s->kind == STREAM_EXEC) {
        const Vkc__Provider__V1__ExecInput *m = (const void *)msg;
        switch (m->input_case) {
        case VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN:
            in->data = m->stdin.data;
            in->len = m->stdin.len;
            return in->len > 0;
        case VKC__PROVIDER__V1__EXEC_INPUT__INPUT_RESIZE:
            if (m->resize == NULL)
                return false;
            in->kind = VK_INPUT_RESIZE;
            in->width = m->resize->width;
            in->height = m->resize->height;
            return true;
        case VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN_CLOSE:
            in->kind = VK_INPUT_EOF;
            return true;
        default:
            return false;
        }
    }
    const Vkc__Provider__V1__PortForwardInput *m = (const void *)msg;
    switch (m->input_case) {
    case VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_DATA:
        in->data = m->data.data;
        in->len = m->data.len;
        return in->len > 0;
    case VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_CLOSE_WRITE:
        in->kind = VK_INPUT_EOF;
        return true;
    default:
        return false;
    }
}

static void deadline_after(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static int ms_until(const struct timespec *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (ts->tv_sec - now.tv_sec) * 1000L + (ts->tv_nsec - now.tv_nsec) / 1000000L;
    return ms > 0 ? (int)ms : 0;
}

/* Nothing more will come from the user: wait until the call ends.
 * -1 when it did, 0 after timeout_ms. */
static int wait_end(vk_stream *s, int timeout_ms)
{
    if (timeout_ms >= 0)
        return vk_scall_cancelled(s->ctx->call, timeout_ms) ? -1 : 0;
    while (!vk_scall_cancelled(s->ctx->call, 1000))
        ;
    return -1;
}

int vk_stream_read(vk_stream *s, vk_input *in, int timeout_ms)
{
    if (s->kind == STREAM_LOGS)
        return wait_end(s, timeout_ms);

    struct timespec deadline;
    if (timeout_ms >= 0)
        deadline_after(&deadline, timeout_ms);
    if (s->current != NULL) {
        protobuf_c_message_free_unpacked(s->current, NULL);
        s->current = NULL;
    }

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->count > 0) {
            ProtobufCMessage *msg = s->queue[s->head];
            s->head = (s->head + 1) % QUEUE_MAX;
            s->count--;
            pthread_cond_broadcast(&s->cv); /* room for the reader */
            if (!s->eof && translate(s, msg, in)) {
                s->eof = in->kind == VK_INPUT_EOF;
                s->current = msg;
                pthread_mutex_unlock(&s->mu);
                return 1;
            }
            protobuf_c_message_free_unpacked(msg, NULL);
        }
        if (s->reader_done)
            break;
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) {
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
    }
    bool malformed = s->malformed;
    bool eof = s->eof;
    s->eof = true;
    pthread_mutex_unlock(&s->mu);

    /* The reader is done: the user half-closed, or is gone. */
    if (malformed || vk_scall_cancelled(s->ctx->call, 0))
        return -1;
    if (!eof) {
        /* Half-closing says "no more input" just like stdin_close. */
        *in = (vk_input){.kind = VK_INPUT_EOF};
        return 1;
    }
    return wait_end(s, timeout_ms < 0 ? -1 : ms_until(&deadline));
}

/* ---- the RPCs ----------------------------------------------------------- */

/* A callback's code for the pod ref names: a NOT_FOUND it gave no message
 * for says which pod (as provider.c does for the unary RPCs). */
static int64_t opt_value(const Vkc__Provider__V1__Int64Value *v, int64_t absent)
{
    return v != NULL ? v->value : absent;
}

void serve_container_logs(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetContainerLogsRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_container_logs_request__descriptor);
    if (req == NULL)
        return;
    if (provider_check_ref(ctx, req->pod) < 0)
        goto out;
    vk_log_options opt = {
        .tail_lines = opt_value(req->tail_lines, -1),
        .follow = req->follow,
        .since_seconds = opt_value(req->since_seconds, 0),
        .since_time_ns = opt_value(req->since_time_unix_nano, 0),
        .timestamps = req->timestamps,
        .limit_bytes = opt_value(req->limit_bytes, -1),
        .previous = req->previous,
    };
    vk_stream s;
    if (stream_init(&s, ctx, STREAM_LOGS) < 0) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the log stream"));
        goto out;
    }
    int code = ctx->p->ops->get_container_logs(ctx, req->pod->namespace_, req->pod->name,
                                               req->container, &opt, &s);
    close_send(&s);
    provider_finish(ctx, provider_pod_code(ctx, code, req->pod->namespace_, req->pod->name));
    stream_destroy(&s);
out:
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* After the callback: say how it went, end the call, stop the reader.
 * last is the message to send before the OK status (ExecExit), or NULL. */
static void end_bidi(vk_stream *s, int code, const ProtobufCMessage *last)
{
    pthread_mutex_lock(&s->mu);
    bool malformed = s->malformed;
    pthread_mutex_unlock(&s->mu);

    pthread_mutex_lock(&s->send_mu);
    if (!malformed && code == VK_OK && last != NULL && !s->send_closed)
        vk_scall_send(s->ctx->call, last);
    s->send_closed = true;
    pthread_mutex_unlock(&s->send_mu);

    /* A message that did not decode already ended the call with
     * INVALID_ARGUMENT, and was logged, in vk_scall_recv. */
    if (!malformed)
        provider_finish(s->ctx, code);
    stop_reader(s);
    stream_destroy(s);
}

typedef int (*exec_fn)(vk_ctx *, const vk_exec_request *, vk_stream *, int *);

static void serve_exec_like(vk_ctx *ctx, exec_fn cb)
{
    Vkc__Provider__V1__ExecInput *first =
        provider_recv(ctx, &vkc__provider__v1__exec_input__descriptor);
    if (first == NULL)
        return;
    if (first->input_case != VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                                          "the first %s message must be start", ctx->name));
        goto out;
    }
    const Vkc__Provider__V1__ExecStart *st = first->start;
    if (provider_check_ref(ctx, st->pod) < 0)
        goto out;
    vk_exec_request r = {
        .namespace = st->pod->namespace_,
        .pod = st->pod->name,
        .uid = st->pod->uid,
        .container = st->container,
        .command = (const char *const *)st->command,
        .n_command = st->n_command,
        .in = st->stdin,
        .out = st->stdout,
        .err = st->stderr,
        .tty = st->tty,
        .width = st->size ? st->size->width : 0,
        .height = st->size ? st->size->height : 0,
    };
    vk_stream s;
    if (stream_init(&s, ctx, STREAM_EXEC) < 0) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the stream"));
        goto out;
    }
    if (start_reader(&s) < 0) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "cannot start the stream reader"));
        stream_destroy(&s);
        goto out;
    }
    int exit_code = 0;
    int code = provider_pod_code(ctx, cb(ctx, &r, &s, &exit_code), st->pod->namespace_,
                                 st->pod->name);

    Vkc__Provider__V1__ExecExit ex = VKC__PROVIDER__V1__EXEC_EXIT__INIT;
    ex.exit_code = exit_code;
    Vkc__Provider__V1__ExecOutput out;
    vkc__provider__v1__exec_output__init(&out);
    out.output_case = VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT;
    out.exit = &ex;
    end_bidi(&s, code, &out.base);
out:
    protobuf_c_message_free_unpacked(&first->base, NULL);
}

void serve_exec(vk_ctx *ctx) { serve_exec_like(ctx, ctx->p->ops->exec); }
void serve_attach(vk_ctx *ctx) { serve_exec_like(ctx, ctx->p->ops->attach); }

void serve_port_forward(vk_ctx *ctx)
{
    Vkc__Provider__V1__PortForwardInput *first =
        provider_recv(ctx, &vkc__provider__v1__port_forward_input__descriptor);
    if (first == NULL)
        return;
    if (first->input_case != VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_START) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                                          "the first PortForward message must be start"));
        goto out;
    }
    const Vkc__Provider__V1__PortForwardStart *st = first->start;
    if (provider_check_ref(ctx, st->pod) < 0)
        goto out;
    vk_stream s;
    if (stream_init(&s, ctx, STREAM_PORT_FORWARD) < 0) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the stream"));
        goto out;
    }
    if (start_reader(&s) < 0) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "cannot start the stream reader"));
        stream_destroy(&s);
        goto out;
    }
    int code = provider_pod_code(ctx,
                                 ctx->p->ops->port_forward(ctx, st->pod->namespace_,
                                                           st->pod->name, st->port, &s),
                                 st->pod->namespace_, st->pod->name);
    end_bidi(&s, code, NULL);
out:
    protobuf_c_message_free_unpacked(&first->base, NULL);
}
