/* kubelet_streams.c -- exec, attach, port-forward and run on an HTTP
 * request: protocol choice, the upgrade, and the plumbing between the
 * connection, the protocol session and the exec bridges. See
 * kubelet_streams.h. */
#include "kubelet_streams.h"

#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_bridge.h"
#include "log.h"
#include "logval.h"
#include "portforward.h"
#include "remotecommand.h"
#include "websocket.h"

#define STREAM_CREATION_TIMEOUT 30.0 /* seconds, the kubelet's default */
#define DEFAULT_IDLE_TIMEOUT (4 * 3600.0) /* --streaming-connection-idle-timeout's default */
#define EXPIRE_EVERY 5.0             /* seconds between port-forward pair checks */
#define RUN_MAX_OUTPUT (4u << 20)    /* bytes /run answers at most */

#define TEXT_HEADERS "Content-Type: text/plain; charset=utf-8\r\n"

struct conn;

/* One port-forward bridge and its sink context. */
struct fwd {
    struct conn *c;
    uint32_t id;
    exec_bridge *bridge;
};

struct conn {
    kubelet_streams *ks;
    struct conn *prev, *next;
    http_request *req;
    bool http_done; /* the request is no longer ours to touch */
    enum kubelet_stream_kind kind;
    provider_client *pc;
    char *ns, *pod, *uid, *container;
    rc_options opts;

    rc_session *rc;
    pf_session *pf;
    exec_bridge *bridge;   /* exec, attach, run */
    struct fwd **fwds;     /* port-forward */
    size_t nfwd, cap_fwd;

    vk_buf held;           /* client bytes the session did not take yet */
    bool read_paused;
    ev_timer timer;
    ev_timer idle;         /* the streaming connection idle timeout */
    double idle_timeout;   /* its length, as it was at the upgrade */
    ev_tstamp last_active; /* loop time bytes last moved either way */

    vk_buf run_out;        /* /run: the command's output */
    bool run_truncated;

    int in_kick;           /* kick() running: nested calls only mark */
    bool kick_again;
};

struct kubelet_streams {
    struct ev_loop *loop;
    struct conn *conns;
    double idle_timeout;  /* seconds; 0: none */
    metric *idle_closed;  /* by route */
    metric *open;         /* connections now, by route */
};

/* Metric labels, as kubelet_api.c names the routes. */
static const char *const kind_names[] = {
    [KUBELET_EXEC] = "exec", [KUBELET_ATTACH] = "attach",
    [KUBELET_PORT_FORWARD] = "portForward", [KUBELET_RUN] = "run",
};

static void kick(struct conn *c);

/* ---- life cycle of a connection ------------------------------------------------ */

static void conn_free(struct conn *c)
{
    kubelet_streams *ks = c->ks;
    ev_timer_stop(ks->loop, &c->timer);
    ev_timer_stop(ks->loop, &c->idle);
    if (c->prev)
        c->prev->next = c->next;
    else
        ks->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    metric_add(ks->open, (const char *[]){kind_names[c->kind]}, -1);
    exec_bridge_free(c->bridge);
    for (size_t i = 0; i < c->nfwd; i++) {
        exec_bridge_free(c->fwds[i]->bridge);
        free(c->fwds[i]);
    }
    free(c->fwds);
    rc_free(c->rc);
    pf_free(c->pf);
    rc_options_clear(&c->opts);
    vk_buf_free(&c->held);
    vk_buf_free(&c->run_out);
    pc_unref(c->pc);
    free(c->ns);
    free(c->pod);
    free(c->uid);
    free(c->container);
    free(c);
}

/* Free once nothing refers to the connection any more. */
static void maybe_free(struct conn *c)
{
    if (c->in_kick || !c->http_done || c->bridge || c->nfwd)
        return;
    conn_free(c);
}

static struct conn *conn_new(kubelet_streams *ks, http_request *req,
                             const kubelet_stream_target *t, provider_client *pc)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ks = ks;
    c->req = req;
    c->kind = t->kind;
    c->pc = pc_ref(pc);
    c->ns = strdup(t->ns);
    c->pod = strdup(t->pod);
    c->uid = strdup(t->uid);
    c->container = strdup(t->container);
    ev_init(&c->timer, NULL);
    ev_init(&c->idle, NULL);
    c->next = ks->conns;
    if (c->next)
        c->next->prev = c;
    ks->conns = c;
    metric_add(ks->open, (const char *[]){kind_names[c->kind]}, 1);
    if (!c->ns || !c->pod || !c->uid || !c->container) {
        c->http_done = true; /* the caller answers */
        conn_free(c);
        return NULL;
    }
    return c;
}

/* ---- the connection's side -------------------------------------------------------- */

static size_t sess_feed(struct conn *c, const uint8_t *p, size_t n)
{
    return c->rc ? rc_feed(c->rc, p, n) : pf_feed(c->pf, p, n);
}

static bool sess_wants_input(struct conn *c)
{
    return c->rc ? rc_wants_input(c->rc) : pf_wants_input(c->pf);
}

static size_t sess_output(struct conn *c, const uint8_t **p)
{
    return c->rc ? rc_output(c->rc, p) : pf_output(c->pf, p);
}

static void sess_output_sent(struct conn *c, size_t n)
{
    if (c->rc)
        rc_output_sent(c->rc, n);
    else
        pf_output_sent(c->pf, n);
}

static bool sess_closing(struct conn *c)
{
    return c->rc ? rc_closing(c->rc) : pf_closing(c->pf);
}

static void feed_held(struct conn *c)
{
    if (!c->held.len || !sess_wants_input(c))
        return;
    size_t used = sess_feed(c, (const uint8_t *)c->held.data, c->held.len);
    memmove(c->held.data, c->held.data + used, c->held.len - used);
    c->held.len -= used;
}

/* Move output to the HTTP server while it takes it, offer held input
 * again, and close when the session is done. Callbacks of the session and
 * the bridges may run from here and ask for another round. */
static void kick(struct conn *c)
{
    if (c->in_kick) {
        c->kick_again = true;
        return;
    }
    c->in_kick = 1;
    do {
        c->kick_again = false;
        if (c->http_done)
            break;
        const uint8_t *p;
        size_t n;
        while ((n = sess_output(c, &p)) > 0 && http_writable(c->req)) {
            if (http_write(c->req, p, n) < 0)
                break;
            sess_output_sent(c, n);
            c->last_active = ev_now(c->ks->loop);
        }
        feed_held(c);
        bool pause = c->held.len > 0;
        if (pause != c->read_paused) {
            c->read_paused = pause;
            http_pause_reading(c->req, pause);
        }
        if (sess_closing(c) && sess_output(c, &p) == 0) {
            http_close(c->req);
            c->http_done = true;
        }
    } while (c->kick_again);
    c->in_kick = 0;
    maybe_free(c);
}

static void on_http_data(void *ud, const char *data, size_t len)
{
    struct conn *c = ud;
    size_t used = 0;
    c->last_active = ev_now(c->ks->loop);
    c->in_kick = 1; /* callbacks of the feed only mark work for kick() */
    if (!c->held.len)
        used = sess_feed(c, (const uint8_t *)data, len);
    if (used < len && vk_buf_append(&c->held, data + used, len - used) < 0) {
        vk_warn("exec: out of memory for client input", "bytes=%zu", len - used);
        if (c->rc)
            rc_abort(c->rc, "out of memory");
    }
    c->in_kick = 0;
    kick(c);
}

static void on_http_writable(void *ud)
{
    kick(ud);
}

static void on_http_closed(void *ud)
{
    struct conn *c = ud;
    c->http_done = true;
    if (c->rc)
        rc_connection_lost(c->rc);
    else if (c->pf)
        pf_connection_lost(c->pf);
    else if (c->bridge)
        exec_bridge_cancel(c->bridge); /* /run */
    maybe_free(c);
}

static const http_callbacks http_cbs = {on_http_closed, on_http_writable, on_http_data};

/* The kubelet's --streaming-connection-idle-timeout: a connection that
 * moved no byte either way for that long is closed, whatever state its
 * session is in (a provider that never answers, a command that is silent
 * and has no input, a client that stopped reading). Like the kubelet's
 * SPDY and WebSocket servers, any traffic counts, pings included; data
 * queued but not taken by the client does not. Checked lazily: bytes only
 * stamp last_active, and the timer re-arms for what is left. */
static void on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct conn *c = w->data;
    if (c->http_done)
        return; /* only the bridges' ends are awaited */
    double timeout = c->idle_timeout;
    ev_tstamp left = c->last_active + timeout - ev_now(loop);
    if (left > 0) {
        ev_timer_set(w, left, 0.);
        ev_timer_start(loop, w);
        return;
    }
    char ns_v[LOGVAL_MAX], pod_v[LOGVAL_MAX], ctr_v[LOGVAL_MAX];
    vk_info("streaming connection idle: closing it",
            "kind=%s namespace=%s pod=%s container=%s idle_s=%g", kind_names[c->kind],
            logval(ns_v, sizeof ns_v, c->ns), logval(pod_v, sizeof pod_v, c->pod),
            logval(ctr_v, sizeof ctr_v, c->container), timeout);
    metric_add(c->ks->idle_closed, (const char *[]){kind_names[c->kind]}, 1);
    /* As the kubelet does: drop the connection (what is queued still goes
     * out first), and cancel what runs on the provider, as if the client
     * had gone away. */
    c->in_kick = 1; /* the session's callbacks below must not free c */
    http_close(c->req);
    c->http_done = true;
    if (c->rc)
        rc_connection_lost(c->rc);
    else if (c->pf)
        pf_connection_lost(c->pf);
    c->in_kick = 0;
    maybe_free(c);
}

/* ---- exec and attach ------------------------------------------------------------- */

static void x_write(void *ctx, int which, const void *data, size_t len)
{
    struct conn *c = ctx;
    rc_write(c->rc, which == 2 ? RC_STDERR : RC_STDOUT, data, len);
    kick(c);
}

static bool x_writable(void *ctx)
{
    struct conn *c = ctx;
    return rc_writable(c->rc);
}

static void x_finish(void *ctx, int exit_code, const char *error)
{
    struct conn *c = ctx;
    rc_finish(c->rc, exit_code, error);
    kick(c);
}

static void x_pause(void *ctx, bool paused)
{
    struct conn *c = ctx;
    rc_pause_input(c->rc, paused);
    kick(c);
}

static void x_done(void *ctx)
{
    struct conn *c = ctx;
    exec_bridge_free(c->bridge);
    c->bridge = NULL;
    maybe_free(c);
}

static const exec_bridge_sink exec_sink = {x_write, x_writable, x_finish, x_pause, x_done};

static void rc_start(void *user)
{
    struct conn *c = user;
    ev_timer_stop(c->ks->loop, &c->timer);
    exec_bridge_request r = {
        .kind = c->kind == KUBELET_ATTACH ? EXEC_BRIDGE_ATTACH : EXEC_BRIDGE_EXEC,
        .ns = c->ns, .pod = c->pod, .uid = c->uid, .container = c->container,
        .command = c->opts.command, .ncommand = c->opts.ncommand,
        .stdin = c->opts.stdin, .stdout = c->opts.stdout, .stderr = c->opts.stderr,
        .tty = c->opts.tty,
    };
    c->bridge = exec_bridge_start(c->ks->loop, c->pc, &r, &exec_sink, c);
    if (!c->bridge)
        rc_finish(c->rc, 0, "cannot start: out of resources");
    kick(c);
}

static void rc_stdin(void *user, const uint8_t *data, size_t len)
{
    struct conn *c = user;
    if (c->bridge)
        exec_bridge_stdin(c->bridge, data, len);
}

static void rc_stdin_close(void *user)
{
    struct conn *c = user;
    if (c->bridge)
        exec_bridge_close_stdin(c->bridge);
}

static void rc_resize(void *user, uint16_t width, uint16_t height)
{
    struct conn *c = user;
    if (c->bridge)
        exec_bridge_resize(c->bridge, width, height);
}

static void rc_writable_cb(void *user)
{
    struct conn *c = user;
    if (c->bridge)
        exec_bridge_writable(c->bridge);
}

static void rc_gone(void *user)
{
    struct conn *c = user;
    if (c->bridge)
        exec_bridge_cancel(c->bridge);
}

static const rc_callbacks rc_cbs = {rc_start, rc_stdin, rc_stdin_close, rc_resize,
                                    rc_writable_cb, rc_gone};

static void on_creation_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct conn *c = w->data;
    if (!rc_started(c->rc)) {
        rc_abort(c->rc, "timed out waiting for client to create streams");
        kick(c);
    }
}

/* ---- port-forward ------------------------------------------------------------------ */

static struct fwd *find_fwd(struct conn *c, uint32_t id)
{
    for (size_t i = 0; i < c->nfwd; i++)
        if (c->fwds[i]->id == id)
            return c->fwds[i];
    return NULL;
}

static void f_write(void *ctx, int which, const void *data, size_t len)
{
    (void)which;
    struct fwd *f = ctx;
    pf_write(f->c->pf, f->id, data, len);
    kick(f->c);
}

static bool f_writable(void *ctx)
{
    struct fwd *f = ctx;
    return pf_writable(f->c->pf);
}

static void f_finish(void *ctx, int exit_code, const char *error)
{
    (void)exit_code;
    struct fwd *f = ctx;
    pf_end(f->c->pf, f->id, error);
    kick(f->c);
}

static void f_pause(void *ctx, bool paused)
{
    /* One full forward holds back the whole connection: TCP is the only
     * flow control SPDY has here. */
    struct fwd *f = ctx;
    pf_pause_input(f->c->pf, paused);
    kick(f->c);
}

static void f_done(void *ctx)
{
    struct fwd *f = ctx;
    struct conn *c = f->c;
    for (size_t i = 0; i < c->nfwd; i++)
        if (c->fwds[i] == f) {
            c->fwds[i] = c->fwds[--c->nfwd];
            break;
        }
    exec_bridge_free(f->bridge);
    free(f);
    maybe_free(c);
}

static const exec_bridge_sink fwd_sink = {f_write, f_writable, f_finish, f_pause, f_done};

static void pf_forward(void *user, uint32_t id, uint16_t port)
{
    struct conn *c = user;
    struct fwd *f = calloc(1, sizeof *f);
    if (!f || (c->nfwd == c->cap_fwd && c->cap_fwd >= PF_MAX_FORWARDS * 2)) {
        free(f);
        pf_end(c->pf, id, "too many forwards");
        return;
    }
    if (c->nfwd == c->cap_fwd) {
        size_t cap = c->cap_fwd ? c->cap_fwd * 2 : 4;
        struct fwd **p = realloc(c->fwds, cap * sizeof *p);
        if (!p) {
            free(f);
            pf_end(c->pf, id, "out of memory");
            return;
        }
        c->fwds = p;
        c->cap_fwd = cap;
    }
    f->c = c;
    f->id = id;
    exec_bridge_request r = {
        .kind = EXEC_BRIDGE_PORT_FORWARD, .ns = c->ns, .pod = c->pod, .uid = c->uid,
        .port = port,
    };
    f->bridge = exec_bridge_start(c->ks->loop, c->pc, &r, &fwd_sink, f);
    if (!f->bridge) {
        free(f);
        pf_end(c->pf, id, "cannot start: out of resources");
        return;
    }
    c->fwds[c->nfwd++] = f;
}

static void pf_data(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    struct fwd *f = find_fwd(user, id);
    if (f)
        exec_bridge_stdin(f->bridge, data, len);
}

static void pf_close_write(void *user, uint32_t id)
{
    struct fwd *f = find_fwd(user, id);
    if (f)
        exec_bridge_close_stdin(f->bridge);
}

static void pf_cancel(void *user, uint32_t id)
{
    struct fwd *f = find_fwd(user, id);
    if (f)
        exec_bridge_cancel(f->bridge);
}

static void pf_writable_cb(void *user)
{
    struct conn *c = user;
    for (size_t i = 0; i < c->nfwd; i++)
        exec_bridge_writable(c->fwds[i]->bridge);
}

static const pf_callbacks pf_cbs = {pf_forward, pf_data, pf_close_write, pf_cancel,
                                    pf_writable_cb};

static void on_expire(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct conn *c = w->data;
    pf_expire(c->pf, PF_STREAM_TIMEOUT);
    kick(c);
}

/* ---- run -------------------------------------------------------------------------------- */

static void r_write(void *ctx, int which, const void *data, size_t len)
{
    (void)which;
    struct conn *c = ctx;
    if (c->run_out.len + len > RUN_MAX_OUTPUT) {
        c->run_truncated = true;
        exec_bridge_cancel(c->bridge);
        return;
    }
    if (vk_buf_append(&c->run_out, data, len) < 0) {
        c->run_truncated = true;
        exec_bridge_cancel(c->bridge);
    }
}

static bool r_writable(void *ctx)
{
    (void)ctx;
    return true; /* bounded by RUN_MAX_OUTPUT instead */
}

static void r_finish(void *ctx, int exit_code, const char *error)
{
    struct conn *c = ctx;
    if (c->http_done)
        return;
    vk_buf msg = VK_BUF_INIT;
    if (error || exit_code) {
        if (error)
            vk_buf_printf(&msg, "error executing command in container: %s\n", error);
        else
            vk_buf_printf(&msg, "command terminated with non-zero exit code: exit status %d\n",
                          exit_code);
        http_respond(c->req, 500, TEXT_HEADERS, msg.data, msg.len);
    } else {
        http_respond(c->req, 200, TEXT_HEADERS, c->run_out.data, c->run_out.len);
    }
    vk_buf_free(&msg);
    c->http_done = true;
}

static void r_pause(void *ctx, bool paused)
{
    (void)ctx, (void)paused;
}

static void r_done(void *ctx)
{
    struct conn *c = ctx;
    if (!c->http_done) {
        /* Cancelled for too much output: say so. */
        static const char msg[] = "command output too large\n";
        http_respond(c->req, 500, TEXT_HEADERS, msg, sizeof msg - 1);
        c->http_done = true;
    }
    exec_bridge_free(c->bridge);
    c->bridge = NULL;
    maybe_free(c);
}

static const exec_bridge_sink run_sink = {r_write, r_writable, r_finish, r_pause, r_done};

static const http_callbacks run_http_cbs = {on_http_closed, NULL, NULL};

static void serve_run(struct conn *c)
{
    /* The kubelet's legacy /run: one "cmd" parameter split at spaces. */
    const char *cmd = http_request_query(c->req, "cmd");
    char *copy = strdup(cmd ? cmd : "");
    char *words[RC_MAX_COMMAND + 1];
    size_t n = 0;
    for (char *save = NULL, *w = copy ? strtok_r(copy, " ", &save) : NULL;
         w && n < RC_MAX_COMMAND; w = strtok_r(NULL, " ", &save))
        words[n++] = w;
    words[n] = NULL;
    if (n == 0) {
        static const char msg[] = "cmd is required\n";
        http_respond(c->req, 400, TEXT_HEADERS, msg, sizeof msg - 1);
        c->http_done = true;
        free(copy);
        maybe_free(c);
        return;
    }
    exec_bridge_request r = {
        .kind = EXEC_BRIDGE_EXEC, .ns = c->ns, .pod = c->pod, .uid = c->uid,
        .container = c->container, .command = words, .ncommand = n, .stdout = true,
        .stderr = true,
    };
    c->bridge = exec_bridge_start(c->ks->loop, c->pc, &r, &run_sink, c);
    free(copy);
    if (!c->bridge) {
        static const char msg[] = "cannot start: out of resources\n";
        http_respond(c->req, 500, TEXT_HEADERS, msg, sizeof msg - 1);
        c->http_done = true;
        maybe_free(c);
        return;
    }
    http_watch(c->req, &run_http_cbs, c);
}

/* ---- the upgrade ------------------------------------------------------------------------------- */

static const char *query_nth(void *ud, const char *key, int n)
{
    return http_request_query_nth(ud, key, n);
}

static void refuse(struct conn *c, int status, const char *headers, const char *fmt,
                   const char *detail)
{
    vk_buf h = VK_BUF_INIT, body = VK_BUF_INIT;
    vk_buf_puts(&h, TEXT_HEADERS);
    if (headers)
        vk_buf_puts(&h, headers);
    vk_buf_printf(&body, fmt, detail);
    vk_buf_puts(&body, "\n");
    http_respond(c->req, status, h.data, body.data, body.len);
    vk_buf_free(&h);
    vk_buf_free(&body);
    c->http_done = true;
    maybe_free(c);
}

/* Pick SPDY or WebSocket and the protocol version, and build the 101
 * response in head. 0, or an HTTP status after answering. */
static int negotiate(struct conn *c, bool pf, bool *websocket, const char **proto, vk_buf *head)
{
    http_request *req = c->req;
    const char *upgrade = http_request_header(req, "Upgrade");
    const char *connection = http_request_header(req, "Connection");
    *websocket = ws_is_upgrade(upgrade, connection);
    if (*websocket) {
        *proto = ws_select_protocol(http_request_header(req, "Sec-WebSocket-Protocol"),
                                    pf ? pf_websocket_protocols : rc_websocket_protocols);
        if (!*proto) {
            refuse(c, 400, NULL, "unable to upgrade: requested protocol(s) are not supported%s",
                   "");
            return 400;
        }
        const char *err;
        if (ws_handshake_response(head, http_request_header(req, "Sec-WebSocket-Key"),
                                  http_request_header(req, "Sec-WebSocket-Version"), *proto,
                                  &err) < 0) {
            refuse(c, 400, "Sec-WebSocket-Version: 13\r\n", "unable to upgrade: %s", err);
            return 400;
        }
        return 0;
    }
    if (!upgrade || !strcasestr(upgrade, "spdy/3.1") || !http_request_is_upgrade(req)) {
        refuse(c, 400, NULL, "unable to upgrade: missing upgrade headers in request%s", "");
        return 400;
    }
    /* Only the first X-Stream-Protocol-Version header is visible here;
     * kubectl sends its best version first. */
    const char *offered = http_request_header(req, "X-Stream-Protocol-Version");
    int status = pf ? pf_negotiate_spdy(offered, proto) : rc_negotiate_spdy(offered, proto);
    if (status == 400) {
        refuse(c, 400, NULL, "unable to upgrade: %s is required", "X-Stream-Protocol-Version");
        return 400;
    }
    if (status == 403) {
        vk_buf h = VK_BUF_INIT;
        for (const char *const *p = pf ? pf_spdy_protocols : rc_spdy_protocols; *p; p++)
            vk_buf_printf(&h, "X-Accepted-Stream-Protocol-Versions: %s\r\n", *p);
        refuse(c, 403, h.data, "unable to upgrade: unable to negotiate protocol: client supports %s",
               offered);
        vk_buf_free(&h);
        return 403;
    }
    if (vk_buf_printf(head,
                      "HTTP/1.1 101 Switching Protocols\r\n"
                      "Connection: Upgrade\r\n"
                      "Upgrade: SPDY/3.1\r\n"
                      "X-Stream-Protocol-Version: %s\r\n\r\n",
                      *proto) < 0) {
        refuse(c, 500, NULL, "%s", "out of memory");
        return 500;
    }
    return 0;
}

void kubelet_streams_upgrade(void *ud, http_request *req, const kubelet_stream_target *t,
                             provider_client *pc)
{
    kubelet_streams *ks = ud;
    struct conn *c = conn_new(ks, req, t, pc);
    if (!c) {
        static const char msg[] = "out of memory\n";
        http_respond(req, 500, TEXT_HEADERS, msg, sizeof msg - 1);
        return;
    }
    if (t->kind == KUBELET_RUN) {
        serve_run(c);
        return;
    }

    bool pf = t->kind == KUBELET_PORT_FORWARD, websocket;
    const char *proto;
    char err[256];
    uint16_t ports[PF_MAX_PORTS];
    int nports = 0;
    if (!pf && rc_parse_options(&c->opts, query_nth, req, t->kind == KUBELET_EXEC, err,
                                sizeof err) < 0) {
        refuse(c, 400, NULL, "%s", err);
        return;
    }
    vk_buf head = VK_BUF_INIT;
    if (negotiate(c, pf, &websocket, &proto, &head) != 0) {
        vk_buf_free(&head);
        return;
    }
    if (pf && websocket &&
        (nports = pf_parse_ports(query_nth, req, ports, PF_MAX_PORTS, err,
                                 sizeof err)) < 0) {
        vk_buf_free(&head);
        refuse(c, 400, NULL, "%s", err);
        return;
    }
    if (pf)
        c->pf = pf_new(websocket ? PF_WEBSOCKET : PF_SPDY, proto, ports, (size_t)nports, &pf_cbs,
                       c);
    else
        c->rc = rc_new(websocket ? RC_WEBSOCKET : RC_SPDY, proto, &c->opts, &rc_cbs, c);
    if (!c->rc && !c->pf) {
        vk_buf_free(&head);
        refuse(c, 500, NULL, "%s", "out of memory");
        return;
    }

    http_upgrade(req, head.data, head.len, &http_cbs, c);
    vk_buf_free(&head);
    c->last_active = ev_now(ks->loop);
    c->idle_timeout = ks->idle_timeout;
    if (ks->idle_timeout > 0) {
        ev_timer_init(&c->idle, on_idle, ks->idle_timeout, 0.);
        c->idle.data = c;
        ev_timer_start(ks->loop, &c->idle);
    }
    c->timer.data = c;
    if (c->rc && !websocket) {
        ev_timer_init(&c->timer, on_creation_timeout, STREAM_CREATION_TIMEOUT, 0);
        ev_timer_start(ks->loop, &c->timer);
    } else if (c->pf && !websocket) {
        ev_timer_init(&c->timer, on_expire, EXPIRE_EVERY, EXPIRE_EVERY);
        ev_timer_start(ks->loop, &c->timer);
    }
    c->in_kick = 1; /* open may start bridges; kick once after */
    if (c->rc)
        rc_open(c->rc);
    else
        pf_open(c->pf);
    c->in_kick = 0;
    kick(c);
}

kubelet_streams *kubelet_streams_new(struct ev_loop *loop)
{
    kubelet_streams *ks = calloc(1, sizeof *ks);
    if (!ks)
        return NULL;
    ks->loop = loop;
    ks->idle_timeout = DEFAULT_IDLE_TIMEOUT;
    return ks;
}

void kubelet_streams_set_idle_timeout(kubelet_streams *ks, double seconds)
{
    ks->idle_timeout = seconds > 0 ? seconds : 0;
}

void kubelet_streams_set_metrics(kubelet_streams *ks, metrics *m)
{
    ks->idle_closed = metrics_counter(
        m, "kubelet_api_stream_idle_timeouts_total",
        "Exec, attach and port-forward connections closed by "
        "--streaming-connection-idle-timeout, by route.",
        "route");
    ks->open = metrics_gauge(m, "kubelet_api_stream_connections",
                             "Exec, attach, port-forward and run connections open now, by route.",
                             "route");
}

void kubelet_streams_free(kubelet_streams *ks)
{
    if (!ks)
        return;
    while (ks->conns) {
        struct conn *c = ks->conns;
        c->http_done = true; /* the server is gone */
        conn_free(c);
    }
    free(ks);
}
