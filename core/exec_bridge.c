/* exec_bridge.c -- a provider stream call run by two threads, its client
 * side on the loop. See exec_bridge.h. */
#include "exec_bridge.h"

#include <ev.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct chunk {
    struct chunk *next;
    int which;
    size_t len;
    uint8_t data[];
};

enum item_kind { ITEM_DATA, ITEM_RESIZE, ITEM_CLOSE };

struct item {
    struct item *next;
    enum item_kind kind;
    uint16_t width, height;
    size_t len;
    uint8_t data[];
};

struct exec_bridge {
    struct ev_loop *loop;
    ev_async async;
    provider_client *pc;
    exec_bridge_sink sink;
    void *ctx;

    /* the request, owned */
    enum exec_bridge_kind kind;
    char *ns, *pod, *uid, *container;
    char **command;
    size_t ncommand;
    bool stdin, stdout, stderr, tty;
    uint16_t port;

    pthread_t reader, sender;
    bool reader_running, sender_running; /* created, not yet joined */

    pthread_mutex_t mu;
    pthread_cond_t cond;
    /* under mu */
    pc_stream *stream;        /* once the call started */
    bool call_over;           /* the reader is done with the call */
    bool sender_over;
    bool cancelled;
    struct chunk *out_head, *out_tail;
    size_t out_bytes;
    struct item *in_head, *in_tail;
    size_t in_bytes;
    int exit_code;
    char *error;              /* the result when not an exit code */

    /* loop only */
    bool input_paused;
    bool input_closed;
    bool finished;
    bool done;
};

/* ---- the reader thread --------------------------------------------------------- */

static void set_error(exec_bridge *b, const char *fmt, const char *detail)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, detail);
    pthread_mutex_lock(&b->mu);
    if (!b->error)
        b->error = strdup(msg);
    pthread_mutex_unlock(&b->mu);
}

/* Queue provider output for the loop; waits while the queue is full. */
static bool push_output(exec_bridge *b, int which, const ProtobufCBinaryData *d)
{
    if (d->len == 0)
        return true;
    struct chunk *c = malloc(sizeof *c + d->len);
    if (!c)
        return false;
    c->next = NULL;
    c->which = which;
    c->len = d->len;
    memcpy(c->data, d->data, d->len);
    pthread_mutex_lock(&b->mu);
    /* A message larger than the queue goes in alone. */
    while (!b->cancelled && b->out_bytes && b->out_bytes + c->len > EXEC_BRIDGE_QUEUE)
        pthread_cond_wait(&b->cond, &b->mu);
    bool cancelled = b->cancelled;
    if (!cancelled) {
        if (b->out_tail)
            b->out_tail->next = c;
        else
            b->out_head = c;
        b->out_tail = c;
        b->out_bytes += c->len;
    }
    pthread_mutex_unlock(&b->mu);
    if (cancelled) {
        free(c);
        return false;
    }
    ev_async_send(b->loop, &b->async);
    return true;
}

static int start_call(exec_bridge *b, pc_stream **s, vk_status *st)
{
    Vkc__Provider__V1__PodRef pod = VKC__PROVIDER__V1__POD_REF__INIT;
    pod.namespace_ = b->ns;
    pod.name = b->pod;
    pod.uid = b->uid;
    if (b->kind == EXEC_BRIDGE_PORT_FORWARD) {
        Vkc__Provider__V1__PortForwardStart start = VKC__PROVIDER__V1__PORT_FORWARD_START__INIT;
        start.pod = &pod;
        start.port = b->port;
        return pc_port_forward(b->pc, &start, s, st);
    }
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &pod;
    start.container = b->container;
    start.command = b->command;
    start.n_command = b->ncommand;
    start.stdin = b->stdin;
    start.stdout = b->stdout;
    start.stderr = b->stderr;
    start.tty = b->tty;
    return b->kind == EXEC_BRIDGE_EXEC ? pc_exec(b->pc, &start, s, st)
                                       : pc_attach(b->pc, &start, s, st);
}

/* One message of the call; false when reading should stop. */
static bool on_message(exec_bridge *b, ProtobufCMessage *m, bool *have_exit)
{
    if (b->kind == EXEC_BRIDGE_PORT_FORWARD) {
        Vkc__Provider__V1__PortForwardOutput *o = (Vkc__Provider__V1__PortForwardOutput *)m;
        return push_output(b, 1, &o->data);
    }
    Vkc__Provider__V1__ExecOutput *o = (Vkc__Provider__V1__ExecOutput *)m;
    switch (o->output_case) {
    case VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT:
        return push_output(b, 1, &o->stdout);
    case VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDERR:
        return push_output(b, 2, &o->stderr);
    case VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT:
        *have_exit = true;
        if (o->exit && o->exit->error && o->exit->error[0]) {
            set_error(b, "%s", o->exit->error);
        } else {
            pthread_mutex_lock(&b->mu);
            b->exit_code = o->exit ? o->exit->exit_code : 0;
            pthread_mutex_unlock(&b->mu);
        }
        return true;
    default:
        return true;
    }
}

static void *reader_main(void *arg)
{
    exec_bridge *b = arg;
    vk_status st = {0};
    pc_stream *s = NULL;
    bool have_exit = false;

    if (start_call(b, &s, &st) != VK_OK) {
        set_error(b, "%s", st.message ? st.message : vk_status_code_name(st.code));
        goto out;
    }
    pthread_mutex_lock(&b->mu);
    b->stream = s;
    bool cancelled = b->cancelled;
    pthread_cond_broadcast(&b->cond); /* the sender waits for the stream */
    pthread_mutex_unlock(&b->mu);
    if (cancelled)
        pc_stream_cancel(s);

    for (;;) {
        ProtobufCMessage *m = NULL;
        int r = pc_stream_next(s, &m);
        if (r == 0)
            break;
        if (r < 0) {
            set_error(b, "%s", "the provider sent a message that does not decode");
            pc_stream_cancel(s);
            break;
        }
        bool go_on = on_message(b, m, &have_exit);
        protobuf_c_message_free_unpacked(m, NULL);
        if (!go_on)
            break;
    }
    vk_status_clear(&st);
    int code = pc_stream_finish(s, &st);
    if (code != VK_OK)
        set_error(b, "provider: %s", st.message ? st.message : vk_status_code_name(code));
    else if (!have_exit && b->kind != EXEC_BRIDGE_PORT_FORWARD)
        set_error(b, "%s", "the provider ended the stream without an exit status");
out:
    vk_status_clear(&st);
    pthread_mutex_lock(&b->mu);
    b->call_over = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    ev_async_send(b->loop, &b->async);
    return NULL;
}

/* ---- the sender thread --------------------------------------------------------- */

static void *sender_main(void *arg)
{
    exec_bridge *b = arg;
    pthread_mutex_lock(&b->mu);
    while (!b->stream && !b->call_over && !b->cancelled)
        pthread_cond_wait(&b->cond, &b->mu);
    pc_stream *s = b->stream;
    for (;;) {
        while (!b->in_head && !b->call_over && !b->cancelled)
            pthread_cond_wait(&b->cond, &b->mu);
        if (!b->in_head || b->call_over || b->cancelled || !s)
            break;
        struct item *it = b->in_head;
        b->in_head = it->next;
        if (!b->in_head)
            b->in_tail = NULL;
        b->in_bytes -= it->len;
        pthread_mutex_unlock(&b->mu);
        /* The loop may be waiting for room to resume reading the client. */
        ev_async_send(b->loop, &b->async);

        int r;
        bool pf = b->kind == EXEC_BRIDGE_PORT_FORWARD;
        switch (it->kind) {
        case ITEM_DATA:
            r = pf ? pc_stream_data(s, it->data, it->len) : pc_stream_stdin(s, it->data, it->len);
            break;
        case ITEM_RESIZE:
            r = pc_stream_resize(s, it->width, it->height);
            break;
        default:
            r = pf ? pc_stream_close_write(s) : pc_stream_close_stdin(s);
            break;
        }
        free(it);
        pthread_mutex_lock(&b->mu);
        if (r < 0)
            break; /* the call is over; the reader tells how */
    }
    b->sender_over = true;
    pthread_mutex_unlock(&b->mu);
    ev_async_send(b->loop, &b->async);
    return NULL;
}

/* ---- the loop side --------------------------------------------------------------- */

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    exec_bridge *b = w->data;
    if (b->done)
        return;

    pthread_mutex_lock(&b->mu);
    bool resume = b->input_paused && b->in_bytes < EXEC_BRIDGE_QUEUE / 2;
    pthread_mutex_unlock(&b->mu);
    if (resume && !b->finished) {
        b->input_paused = false;
        b->sink.pause_input(b->ctx, false);
    }

    pthread_mutex_lock(&b->mu);
    while (b->out_head && !b->cancelled) {
        pthread_mutex_unlock(&b->mu);
        if (!b->sink.writable(b->ctx)) {
            pthread_mutex_lock(&b->mu);
            break;
        }
        pthread_mutex_lock(&b->mu);
        struct chunk *c = b->out_head;
        b->out_head = c->next;
        if (!b->out_head)
            b->out_tail = NULL;
        b->out_bytes -= c->len;
        pthread_cond_broadcast(&b->cond); /* room for the reader */
        pthread_mutex_unlock(&b->mu);
        b->sink.write(b->ctx, c->which, c->data, c->len);
        free(c);
        pthread_mutex_lock(&b->mu);
    }
    bool finish = b->call_over && !b->out_head && !b->cancelled && !b->finished;
    int exit_code = b->exit_code;
    char *error = finish ? b->error : NULL;
    bool over = b->call_over && (b->sender_over || !b->sender_running);
    bool cancelled = b->cancelled;
    pthread_mutex_unlock(&b->mu);

    if (finish) {
        b->finished = true;
        if (b->kind == EXEC_BRIDGE_PORT_FORWARD && error) {
            char msg[768];
            snprintf(msg, sizeof msg, "error forwarding port %u to pod %s, uid %s: %s", b->port,
                     b->pod, b->uid, error);
            b->sink.finish(b->ctx, 0, msg);
        } else {
            b->sink.finish(b->ctx, exit_code, error);
        }
    }
    if (over && (b->finished || cancelled)) {
        b->done = true;
        b->sink.done(b->ctx); /* may free b */
    }
}

static void push_input(exec_bridge *b, struct item *it)
{
    pthread_mutex_lock(&b->mu);
    if (b->cancelled || b->call_over) {
        pthread_mutex_unlock(&b->mu);
        free(it);
        return;
    }
    if (b->in_tail)
        b->in_tail->next = it;
    else
        b->in_head = it;
    b->in_tail = it;
    b->in_bytes += it->len;
    bool full = b->in_bytes >= EXEC_BRIDGE_QUEUE;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    if (full && !b->input_paused) {
        b->input_paused = true;
        b->sink.pause_input(b->ctx, true);
    }
}

static struct item *new_item(enum item_kind kind, const void *data, size_t len)
{
    struct item *it = calloc(1, sizeof *it + len);
    if (!it)
        return NULL;
    it->kind = kind;
    it->len = len;
    if (len)
        memcpy(it->data, data, len);
    return it;
}

void exec_bridge_stdin(exec_bridge *b, const void *data, size_t len)
{
    if (b->input_closed || len == 0)
        return;
    struct item *it = new_item(ITEM_DATA, data, len);
    if (!it) {
        vk_warn("exec: out of memory, input dropped", "bytes=%zu", len);
        return;
    }
    push_input(b, it);
}

void exec_bridge_resize(exec_bridge *b, uint16_t width, uint16_t height)
{
    if (b->input_closed && b->kind == EXEC_BRIDGE_PORT_FORWARD)
        return;
    pthread_mutex_lock(&b->mu);
    /* Only the latest size matters: update one still waiting. */
    if (b->in_tail && b->in_tail->kind == ITEM_RESIZE) {
        b->in_tail->width = width;
        b->in_tail->height = height;
        pthread_mutex_unlock(&b->mu);
        return;
    }
    pthread_mutex_unlock(&b->mu);
    struct item *it = new_item(ITEM_RESIZE, NULL, 0);
    if (!it)
        return;
    it->width = width;
    it->height = height;
    push_input(b, it);
}

void exec_bridge_close_stdin(exec_bridge *b)
{
    if (b->input_closed)
        return;
    b->input_closed = true;
    struct item *it = new_item(ITEM_CLOSE, NULL, 0);
    if (it)
        push_input(b, it);
}

void exec_bridge_writable(exec_bridge *b)
{
    ev_async_send(b->loop, &b->async);
}

void exec_bridge_cancel(exec_bridge *b)
{
    pthread_mutex_lock(&b->mu);
    if (b->cancelled) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    b->cancelled = true;
    pc_stream *s = b->stream;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
    if (s)
        pc_stream_cancel(s);
    ev_async_send(b->loop, &b->async);
}

/* ---- life cycle ------------------------------------------------------------------- */

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

exec_bridge *exec_bridge_start(struct ev_loop *loop, provider_client *pc,
                               const exec_bridge_request *req, const exec_bridge_sink *sink,
                               void *ctx)
{
    exec_bridge *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->loop = loop;
    b->sink = *sink;
    b->ctx = ctx;
    b->kind = req->kind;
    b->stdin = req->stdin;
    b->stdout = req->stdout;
    b->stderr = req->stderr;
    b->tty = req->tty;
    b->port = req->port;
    b->ns = dup_or_empty(req->ns);
    b->pod = dup_or_empty(req->pod);
    b->uid = dup_or_empty(req->uid);
    b->container = dup_or_empty(req->container);
    b->command = calloc(req->ncommand + 1, sizeof *b->command);
    bool ok = b->ns && b->pod && b->uid && b->container && b->command;
    for (size_t i = 0; ok && i < req->ncommand; i++, b->ncommand++)
        ok = (b->command[i] = strdup(req->command[i])) != NULL;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cond, NULL);
    ev_async_init(&b->async, on_async);
    b->async.data = b;
    ev_async_start(loop, &b->async);
    b->pc = pc_ref(pc);
    if (!ok || pthread_create(&b->reader, NULL, reader_main, b) != 0) {
        exec_bridge_free(b);
        return NULL;
    }
    b->reader_running = true;
    if (pthread_create(&b->sender, NULL, sender_main, b) != 0) {
        exec_bridge_free(b);
        return NULL;
    }
    b->sender_running = true;
    return b;
}

void exec_bridge_free(exec_bridge *b)
{
    if (!b)
        return;
    exec_bridge_cancel(b);
    if (b->reader_running)
        pthread_join(b->reader, NULL);
    if (b->sender_running)
        pthread_join(b->sender, NULL);
    ev_async_stop(b->loop, &b->async);
    if (b->stream)
        pc_stream_free(b->stream);
    pc_unref(b->pc);
    while (b->out_head) {
        struct chunk *c = b->out_head;
        b->out_head = c->next;
        free(c);
    }
    while (b->in_head) {
        struct item *it = b->in_head;
        b->in_head = it->next;
        free(it);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cond);
    free(b->error);
    free(b->ns);
    free(b->pod);
    free(b->uid);
    free(b->container);
    for (size_t i = 0; i < b->ncommand; i++)
        free(b->command[i]);
    free(b->command);
    free(b);
}
