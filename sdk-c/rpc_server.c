/* rpc_server.c -- server side of rpc.h.
 *
 * One "next" completion queue carries the server's own events: new calls and
 * the shutdown notice. An acceptor thread keeps one grpc_server_request_call
 * outstanding on it, binding each call to a fresh pluck queue of its own, and
 * hands each accepted call to a new handler thread. Calls it cannot serve
 * (unknown method, too many running) it answers itself, at once.
 *
 * Every server call starts RECV_CLOSE_ON_SERVER as soon as it is accepted:
 * that batch ends when the call is over for any reason, which is what
 * vk_scall_cancelled waits for. It is reaped before the call is released.
 *
 * Handler threads are joinable; a finished one parks itself on a list that
 * the acceptor (and vk_server_stop) joins, so threads never pile up.
 */
#include "rpc_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "log.h"

struct route {
    char *method;
    vk_handler fn;
    void *ud;
};

struct vk_server {
    char *addr;
    size_t max_message;
    int max_workers;
    struct route *routes;
    size_t nroutes;

    grpc_server *server;
    grpc_completion_queue *cq;   /* new calls and the shutdown notice */
    pthread_t acceptor;
    int shutdown_tag;            /* its address is the shutdown tag */

    pthread_mutex_t lock;        /* guards everything below */
    pthread_cond_t cond;         /* shutdown_done or active changed */
    int active;                  /* handler threads not yet finished */
    vk_scall *finished;          /* handler threads waiting to be joined */
    bool running;                /* started, not yet stopped */
    bool stopping;
    bool shutdown_done;
};

struct vk_scall {
    vk_server *server;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_call_details details;
    grpc_metadata_array request_md;
    const struct route *route;
    pthread_t thread;
    vk_scall *next;              /* on server->finished */

    /* Send side; the handler sends from one thread at a time. */
    bool sent_initial;
    bool status_sent;            /* a status went out successfully */
    atomic_bool over;            /* a status was sent or the call cancelled */

    /* The RECV_CLOSE_ON_SERVER batch. */
    pthread_mutex_t close_lock;  /* held by the one thread plucking it */
    int close_tag;               /* its address is the batch's tag */
    int client_cancelled;        /* set by gRPC when the batch completes */
    atomic_bool closed;          /* batch reaped */
};

/* ---- bad-input log gate -------------------------------------------------- */

/* Bad input a client can send in a loop (malformed requests, replies over
 * the limit) must not flood the log: a burst of LOG_BURST lines, then one a
 * second. The next line that gets out counts the ones held back. */
#define LOG_BURST 10

static struct {
    pthread_mutex_t mu;
    bool started;
    double tokens, last; /* seconds, CLOCK_MONOTONIC */
    unsigned held;
} log_gate = {PTHREAD_MUTEX_INITIALIZER, false, LOG_BURST, 0, 0};

static bool log_allow(unsigned *held)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    pthread_mutex_lock(&log_gate.mu);
    if (log_gate.started) {
        log_gate.tokens += now - log_gate.last;
        if (log_gate.tokens > LOG_BURST)
            log_gate.tokens = LOG_BURST;
    }
    log_gate.started = true;
    log_gate.last = now;
    bool ok = log_gate.tokens >= 1;
    if (ok) {
        log_gate.tokens -= 1;
        *held = log_gate.held;
        log_gate.held = 0;
    } else {
        log_gate.held++;
    }
    pthread_mutex_unlock(&log_gate.mu);
    return ok;
}

/* ---- calls -------------------------------------------------------------- */

static vk_scall *scall_new(vk_server *s)
{
    vk_scall *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->server = s;
    c->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->request_md);
    atomic_init(&c->over, false);
    atomic_init(&c->closed, false);
    pthread_mutex_init(&c->close_lock, NULL);
    return c;
}

/* Everything gRPC; the struct itself stays for pthread_join. */
static void scall_release(vk_scall *c)
{
    if (c->call != NULL)
        grpc_call_unref(c->call);
    c->call = NULL;
    vk_rpc_cq_destroy(c->cq);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->request_md);
    pthread_mutex_destroy(&c->close_lock);
}

static void start_close(vk_scall *c)
{
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->client_cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL)
        != GRPC_CALL_OK) {
        /* Never expected; nothing is pending, so nobody may wait for it. */
        c->client_cancelled = 1;
        atomic_store(&c->closed, true);
    }
}

/* Reap the close batch, waiting up to wait_ms (< 0: for ever). Several
 * threads may ask at once: one plucks, the others wait for the lock within
 * their own time limit, so a mere look (0) never waits behind a long wait. */
static bool wait_closed(vk_scall *c, long wait_ms)
{
    if (atomic_load(&c->closed))
        return true;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    int rc = wait_ms < 0 ? pthread_mutex_lock(&c->close_lock)
                         : pthread_mutex_timedlock(&c->close_lock, &until);
    if (rc != 0)
        return atomic_load(&c->closed);
    if (!atomic_load(&c->closed)) {
        gpr_timespec deadline = gpr_inf_future(GPR_CLOCK_REALTIME);
        if (wait_ms >= 0) {
            deadline.tv_sec = until.tv_sec;
            deadline.tv_nsec = (int32_t)until.tv_nsec;
        }
        grpc_event ev = grpc_completion_queue_pluck(c->cq, &c->close_tag,
                                                    deadline, NULL);
        if (ev.type == GRPC_OP_COMPLETE)
            atomic_store(&c->closed, true);
    }
    pthread_mutex_unlock(&c->close_lock);
    return atomic_load(&c->closed);
}

/* Run send-side ops, preceded by the initial metadata the first time. */
static bool run_send(vk_scall *c, const grpc_op *extra, size_t n)
{
    grpc_op ops[3];
    size_t k = 0;
    memset(ops, 0, sizeof(ops));
    if (!c->sent_initial)
        ops[k++].op = GRPC_OP_SEND_INITIAL_METADATA;
    memcpy(ops + k, extra, n * sizeof(*extra));
    c->sent_initial = true;
    return vk_rpc_batch(c->call, c->cq, ops, k + n);
}

static void set_status_op(grpc_op *op, int code, grpc_slice *details)
{
    op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op->data.send_status_from_server.status = (grpc_status_code)code;
    op->data.send_status_from_server.status_details = details;
}

/* End the call from any thread. Cancelling with a status still sends that
 * status to the client (the server transport writes it as trailers), and
 * unlike a send batch it may run while another thread sends. */
static void end_call(vk_scall *c, int code, const char *why)
{
    if (!atomic_exchange(&c->over, true))
        grpc_call_cancel_with_status(c->call, (grpc_status_code)code, why,
                                     NULL);
}

/* A message above the limit ends the call with RESOURCE_EXHAUSTED, so the
 * client learns why instead of seeing a bare failure. */
static bool refuse_oversize(vk_scall *c, const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    size_t max = c->server->max_message;
    if (len <= max)
        return false;
    char why[96];
    snprintf(why, sizeof(why), "reply of %zu bytes exceeds the %zu byte limit",
             len, max);
    /* The handler only sees its send fail; this is the one line that says
     * why. */
    unsigned held;
    if (log_allow(&held))
        vk_warn("reply over the size limit", "method=%s bytes=%zu limit=%zu suppressed=%u",
                c->route->method, len, max, held);
    end_call(c, VK_RESOURCE_EXHAUSTED, why);
    return true;
}

const char *vk_scall_method(const vk_scall *c)
{
    return c->route->method;
}

long vk_scall_deadline_left_ms(const vk_scall *c)
{
    gpr_timespec deadline = c->details.deadline;
    if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0)
        return -1;
    gpr_timespec left = gpr_time_sub(deadline, gpr_now(deadline.clock_type));
    if (left.tv_sec < 0)
        return 0;
    return (long)left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

int vk_scall_recv(vk_scall *c, const ProtobufCMessageDescriptor *desc,
                  ProtobufCMessage **out)
{
    *out = NULL;
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    if (!vk_rpc_batch(c->call, c->cq, &op, 1) || bb == NULL) {
        if (bb != NULL)
            grpc_byte_buffer_destroy(bb);
        return 0;
    }
    *out = vk_rpc_unpack(bb, desc);
    if (*out == NULL) {
        /* Logged here, where the message type and size are known; callers
         * only see -1. */
        unsigned held;
        if (log_allow(&held))
            vk_warn("malformed request", "method=%s message=%s bytes=%zu suppressed=%u",
                    c->route->method, desc->name, grpc_byte_buffer_length(bb), held);
        char why[160];
        snprintf(why, sizeof(why), "malformed %s message", desc->name);
        end_call(c, VK_INVALID_ARGUMENT, why);
    }
    grpc_byte_buffer_destroy(bb);
    return *out != NULL ? 1 : -1;
}

int vk_scall_send(vk_scall *c, const ProtobufCMessage *msg)
{
    if (atomic_load(&c->over) || refuse_oversize(c, msg))
        return -1;
    grpc_byte_buffer *bb = vk_rpc_pack(msg);
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    bool ok = run_send(c, &op, 1);
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : -1;
}

int vk_scall_reply(vk_scall *c, const ProtobufCMessage *msg)
{
    if (atomic_load(&c->over) || refuse_oversize(c, msg))
        return -1;
    if (atomic_exchange(&c->over, true))
        return -1;
    grpc_byte_buffer *bb = vk_rpc_pack(msg);
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[2];
    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_MESSAGE;
    ops[0].data.send_message.send_message = bb;
    set_status_op(&ops[1], VK_OK, &details);
    c->status_sent = run_send(c, ops, 2);
    grpc_byte_buffer_destroy(bb);
    return c->status_sent ? 0 : -1;
}

int vk_scall_finish(vk_scall *c, int code, const char *message)
{
    if (atomic_exchange(&c->over, true))
        return -1;
    grpc_slice details = message != NULL
        ? grpc_slice_from_copied_string(message) : grpc_empty_slice();
    grpc_op op;
    memset(&op, 0, sizeof(op));
    set_status_op(&op, code, &details);
    c->status_sent = run_send(c, &op, 1);
    grpc_slice_unref(details);
    return c->status_sent ? 0 : -1;
}

bool vk_scall_cancelled(vk_scall *c, int wait_ms)
{
    return wait_closed(c, wait_ms < 0 ? 0 : wait_ms) && c->client_cancelled;
}

/* ---- handler threads ----------------------------------------------------- */

/* Join the handler threads that have finished. */
static void reap(vk_server *s)
{
    pthread_mutex_lock(&s->lock);
    vk_scall *done = s->finished;
    s->finished = NULL;
    pthread_mutex_unlock(&s->lock);
    while (done != NULL) {
        vk_scall *next = done->next;
        pthread_join(done->thread, NULL);
        free(done);
        done = next;
    }
}

static void *handler_main(void *arg)
{
    vk_scall *c = arg;
    vk_server *s = c->server;
    c->route->fn(c, c->route->ud);
    if (!atomic_load(&c->over))
        vk_scall_finish(c, VK_INTERNAL, "handler ended without a status");
    /* Without a status on the wire the close batch would wait for the
     * client; cancelling ends it now. */
    if (!c->status_sent)
        grpc_call_cancel(c->call, NULL);
    wait_closed(c, -1);
    scall_release(c);

    pthread_mutex_lock(&s->lock);
    s->active--;
    c->next = s->finished;
    s->finished = c;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Answer a call the server will not run, on the acceptor thread. Sending a
 * status closes the server side at once, so this does not block long. */
static void answer_now(vk_scall *c, int code, const char *why)
{
    vk_scall_finish(c, code, why);
    if (!c->status_sent)
        grpc_call_cancel(c->call, NULL);
    wait_closed(c, -1);
    scall_release(c);
    free(c);
}

static const struct route *find_route(vk_server *s, grpc_slice method)
{
    for (size_t i = 0; i < s->nroutes; i++)
        if (grpc_slice_str_cmp(method, s->routes[i].method) == 0)
            return &s->routes[i];
    return NULL;
}

static void dispatch(vk_server *s, vk_scall *c)
{
    char why[256];
    start_close(c);
    c->route = find_route(s, c->details.method);
    if (c->route == NULL) {
        snprintf(why, sizeof(why), "method %.*s is not implemented",
                 (int)GRPC_SLICE_LENGTH(c->details.method),
                 (const char *)GRPC_SLICE_START_PTR(c->details.method));
        answer_now(c, VK_UNIMPLEMENTED, why);
        return;
    }

    pthread_mutex_lock(&s->lock);
    bool busy = s->active >= s->max_workers;
    if (!busy)
        s->active++;
    pthread_mutex_unlock(&s->lock);
    if (busy) {
        snprintf(why, sizeof(why), "server busy: %d calls running",
                 s->max_workers);
        answer_now(c, VK_RESOURCE_EXHAUSTED, why);
        return;
    }

    int err = pthread_create(&c->thread, NULL, handler_main, c);
    if (err != 0) {
        pthread_mutex_lock(&s->lock);
        s->active--;
        pthread_mutex_unlock(&s->lock);
        vk_error("cannot start handler thread", "error=\"%s\"", strerror(err));
        answer_now(c, VK_RESOURCE_EXHAUSTED, "cannot start a handler thread");
    }
}

/* ---- acceptor ----------------------------------------------------------- */

static bool request_next(vk_server *s)
{
    vk_scall *c = scall_new(s);
    if (c == NULL)
        return false;
    grpc_call_error err = grpc_server_request_call(
        s->server, &c->call, &c->details, &c->request_md, c->cq, s->cq, c);
    if (err != GRPC_CALL_OK) {
        scall_release(c);
        free(c);
        return false;
    }
    return true;
}

static void *acceptor_main(void *arg)
{
    vk_server *s = arg;
    bool requesting = request_next(s);
    if (!requesting)
        vk_error("server cannot accept calls", "addr=%s", s->addr);
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(
            s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.tag == &s->shutdown_tag) {
            pthread_mutex_lock(&s->lock);
            s->shutdown_done = true;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
            continue;
        }
        vk_scall *c = ev.tag;
        if (!ev.success) { /* the request died with the server */
            scall_release(c);
            free(c);
            continue;
        }
        dispatch(s, c);
        reap(s);
        pthread_mutex_lock(&s->lock);
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->lock);
        if (!stopping && !request_next(s))
            vk_error("server cannot accept calls", "addr=%s", s->addr);
    }
    return NULL;
}

/* ---- server ------------------------------------------------------------- */

vk_server *vk_server_new(const char *addr, size_t max_message, int max_workers)
{
    vk_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->addr = strdup(addr);
    if (s->addr == NULL) {
        free(s);
        return NULL;
    }
    s->max_message = vk_rpc_max_message(max_message);
    s->max_workers = max_workers < 1 ? 1 : max_workers;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &attr);
    pthread_condattr_destroy(&attr);
    return s;
}

void vk_server_handle(vk_server *s, const char *method, vk_handler fn, void *ud)
{
    struct route *r = realloc(s->routes, (s->nroutes + 1) * sizeof(*r));
    if (r == NULL) {
        vk_error("out of memory registering handler", "method=%s", method);
        return;
    }
    s->routes = r;
    r[s->nroutes].method = strdup(method);
    if (r[s->nroutes].method == NULL) {
        vk_error("out of memory registering handler", "method=%s", method);
        return;
    }
    r[s->nroutes].fn = fn;
    r[s->nroutes].ud = ud;
    s->nroutes++;
}

/* gRPC creates the socket file with the process umask; only the owner
 * (the core, or a provider run as the same user) may connect. */
static int restrict_socket(const char *addr)
{
    if (strncmp(addr, "unix:", 5) != 0)
        return 0;
    const char *path = addr + 5;
    if (strncmp(path, "//", 2) == 0)
        path += 2;
    if (chmod(path, 0600) != 0) {
        vk_error("cannot restrict socket", "path=%s error=\"%s\"", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Tear down a server whose acceptor is not running, in the order gRPC
 * requires: shutdown notice, server, then its queue. */
static void abandon(vk_server *s)
{
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    grpc_server_cancel_all_calls(s->server);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL).tag != &s->shutdown_tag)
        ;
    grpc_server_destroy(s->server);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                      NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(s->cq);
    s->server = NULL;
    s->cq = NULL;
}

int vk_server_start(vk_server *s)
{
    if (s->server != NULL)
        return -1;
    vk_rpc_args storage;
    s->server = grpc_server_create(
        vk_rpc_args_init(&storage, s->max_message, true), NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);

    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s->server, s->addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0 || restrict_socket(s->addr) != 0) {
        if (port == 0)
            vk_error("cannot listen", "addr=%s", s->addr);
        abandon(s);
        return -1;
    }

    s->stopping = false;
    s->shutdown_done = false;
    grpc_server_start(s->server);
    int err = pthread_create(&s->acceptor, NULL, acceptor_main, s);
    if (err != 0) {
        vk_error("cannot start acceptor thread", "error=\"%s\"", strerror(err));
        abandon(s);
        return -1;
    }
    s->running = true;
    return 0;
}

/* Wait for the shutdown notice up to wait_ms (< 0: for ever). */
static bool wait_shutdown(vk_server *s, int wait_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += wait_ms / 1000;
    until.tv_nsec += (long)(wait_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->lock);
    while (!s->shutdown_done) {
        if (wait_ms < 0)
            pthread_cond_wait(&s->cond, &s->lock);
        else if (pthread_cond_timedwait(&s->cond, &s->lock, &until) != 0)
            break;
    }
    bool done = s->shutdown_done;
    pthread_mutex_unlock(&s->lock);
    return done;
}

void vk_server_stop(vk_server *s, int grace_ms)
{
    pthread_mutex_lock(&s->lock);
    bool mine = s->running && !s->stopping;
    s->stopping = true;
    pthread_mutex_unlock(&s->lock);
    if (!mine)
        return;

    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    if (!wait_shutdown(s, grace_ms < 0 ? 0 : grace_ms)) {
        grpc_server_cancel_all_calls(s->server);
        wait_shutdown(s, -1);
    }
    grpc_server_destroy(s->server);
    s->server = NULL;
    grpc_completion_queue_shutdown(s->cq);
    pthread_join(s->acceptor, NULL); /* it drains the queue to its end */
    grpc_completion_queue_destroy(s->cq);
    s->cq = NULL;

    pthread_mutex_lock(&s->lock);
    while (s->active > 0)
        pthread_cond_wait(&s->cond, &s->lock);
    s->running = false;
    pthread_mutex_unlock(&s->lock);
    reap(s);
}

void vk_server_free(vk_server *s)
{
    if (s == NULL)
        return;
    vk_server_stop(s, 0);
    for (size_t i = 0; i < s->nroutes; i++)
        free(s->routes[i].method);
    free(s->routes);
    free(s->addr);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
}
