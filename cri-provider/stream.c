/* stream.c -- a client of the runtime's streaming server (exec, attach,
 * port-forward).
 *
 * CRI Exec/Attach/PortForward answer with a URL of a server embedded in the
 * runtime (containerd's is the kubelet's streaming server, k8s.io/kubelet's
 * pkg/cri/streaming). It speaks SPDY/3.1 or WebSocket. This client speaks
 * SPDY, with sdk-c's session, the way the kubelet's own client does: an
 * HTTP upgrade to SPDY/3.1 with an X-Stream-Protocol-Version, then streams
 * named by their streamType header.
 *
 * Exec and attach (v4.channel.k8s.io): one stream per channel, error (a
 * final JSON metav1.Status carrying the exit code), stdin, stdout, stderr,
 * and resize (JSON {"Width","Height"} documents) with a terminal. The
 * server counts the streams it waits for from the flags of the CRI
 * request, so exactly those are opened. The server closes the connection
 * when the command ended.
 *
 * Port-forward (portforward.k8s.io): one connection to the pod's port is
 * a pair of streams, error then data, both carrying the port and a
 * requestID that pairs them (the server side is core/portforward.c). The
 * data stream carries the bytes both ways; the server writes a message on
 * the error stream when it could not connect, and finishes both streams
 * when the pod's connection ended, while the SPDY connection stays open
 * for more pairs: the end of both streams is the session's.
 *
 * SPDY rather than WebSocket because containerd 1.6 offers only
 * v4.channel.k8s.io over WebSocket, which cannot close stdin alone: over
 * SPDY the user's stdin EOF is a FIN on the stdin stream, and the command
 * reading stdin sees its end.
 *
 * The calling thread runs the socket: poll, reads into the session, writes
 * of its output queue, and the output goes to the user from there, so a
 * user who does not read stops the socket from being read. A second thread
 * reads the user's input into a bounded queue and wakes the socket thread
 * through a pipe; the queue moves into the session only while the
 * session's output queue is below its high-water mark, so a runtime that
 * does not read stops the user's input in turn.
 */
#include "cri.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "json.h"
#include "spdy.h"

#define PROTOCOL_EXEC "v4.channel.k8s.io"
#define PROTOCOL_PORT_FORWARD "portforward.k8s.io"
#define CONNECT_MS 10000
#define MAX_HEADER 8192
#define MAX_STATUS 65536
#define READ_CHUNK 16384
#define INPUT_QUEUE_MAX (1u << 20)  /* bytes of user input waiting for the socket */
#define INPUT_POLL_MS 200

/* What the input thread queues for the socket thread. */
enum { OP_STDIN, OP_CLOSE_STDIN, OP_RESIZE };

typedef struct session {
    int fd;
    int wake[2];
    vk_stream *io;
    spdy_session *spdy;
    /* For a port-forward, stdin_id and stdout_id are both the data stream. */
    uint32_t error_id, stdin_id, stdout_id, stderr_id, resize_id;
    /* Port-forward: the runtime finished (or reset) the error and the data
     * stream. The session ends with both, as the error message may follow
     * the data stream's end. */
    bool forward, error_ended, data_ended;
    vk_buf in;              /* bytes read and not yet taken by the session */
    size_t in_off;
    vk_buf status;          /* the error stream */
    bool user_gone;         /* output could not be delivered */

    pthread_mutex_t lock;   /* guards what follows: the input queue */
    pthread_cond_t room;
    vk_buf input;           /* records: 4-byte length, op byte, payload */
    bool input_done;        /* the reader thread ended: the user is gone */
    bool stop;              /* the socket side is finished */
} session;

/* ---- connection and handshake ------------------------------------------------ */

static int parse_url(const char *url, char *host, size_t hn, char *port, size_t pn,
                     const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7, *slash = strchr(h, '/');
    if (!slash)
        return -1;
    *path = slash;
    const char *colon = NULL;
    if (*h == '[') {   /* [::1]:port */
        const char *close = memchr(h, ']', (size_t)(slash - h));
        if (!close)
            return -1;
        snprintf(host, hn, "%.*s", (int)(close - h - 1), h + 1);
        colon = close[1] == ':' ? close + 1 : NULL;
    } else {
        colon = memchr(h, ':', (size_t)(slash - h));
        snprintf(host, hn, "%.*s", (int)((colon ? colon : slash) - h), h);
    }
    snprintf(port, pn, "%.*s", colon ? (int)(slash - colon - 1) : 2, colon ? colon + 1 : "80");
    return 0;
}

static int connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    if (getaddrinfo(host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int err = 0;
        socklen_t len = sizeof err;
        if (poll(&pfd, 1, CONNECT_MS) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, CONNECT_MS) != 1)
                return -1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The value of header name in the response head (status line and header
 * lines, each ending in CRLF) into out; 0 or -1. */
static int header(const char *head, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
        const char *s = l + 2;
        if (strncasecmp(s, name, nl) != 0 || s[nl] != ':')
            continue;
        s += nl + 1;
        while (*s == ' ' || *s == '\t')
            s++;
        const char *e = strstr(s, "\r\n");
        snprintf(out, n, "%.*s", (int)(e ? e - s : (ptrdiff_t)strlen(s)), s);
        return 0;
    }
    return -1;
}

/* Upgrade the connection to SPDY speaking protocol. Bytes read past the
 * response head stay in s->in for the session. */
static int handshake(session *s, const char *host, const char *port, const char *path,
                     const char *protocol, char *err, size_t errlen)
{
    char got[64];
    vk_buf req = VK_BUF_INIT;
    bool v6 = strchr(host, ':') != NULL;
    if (vk_buf_printf(&req,
                      "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nConnection: Upgrade\r\n"
                      "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\n\r\n",
                      path, v6 ? "[" : "", host, v6 ? "]" : "", port, protocol) < 0 ||
        send_all(s->fd, req.data, req.len) < 0) {
        vk_buf_free(&req);
        snprintf(err, errlen, "cannot send the stream request: %s", strerror(errno));
        return -1;
    }
    vk_buf_free(&req);

    char *end = NULL;
    while (!end) {
        char buf[2048];
        struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
        if (poll(&pfd, 1, CONNECT_MS) != 1) {
            snprintf(err, errlen, "the runtime's stream server did not answer");
            return -1;
        }
        ssize_t n = recv(s->fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0 || s->in.len + (size_t)n > MAX_HEADER ||
            vk_buf_append(&s->in, buf, (size_t)n) < 0) {
            snprintf(err, errlen, "the runtime's stream server closed or sent garbage");
            return -1;
        }
        end = strstr(s->in.data, "\r\n\r\n");
    }
    end[2] = '\0';
    s->in_off = (size_t)(end + 4 - s->in.data);
    if (strncmp(s->in.data, "HTTP/1.1 101", 12) != 0) {
        const char *eol = strstr(s->in.data, "\r\n");
        snprintf(err, errlen, "the runtime's stream server refused: %.*s",
                 (int)(eol ? eol - s->in.data : 80), s->in.data);
        return -1;
    }
    if (header(s->in.data, "Upgrade", got, sizeof got) < 0 || strcasecmp(got, "SPDY/3.1") != 0) {
        snprintf(err, errlen, "the runtime's stream server did not switch to SPDY/3.1");
        return -1;
    }
    if (header(s->in.data, "X-Stream-Protocol-Version", got, sizeof got) < 0 ||
        strcmp(got, protocol) != 0) {
        snprintf(err, errlen, "the runtime's stream server does not speak %s", protocol);
        return -1;
    }
    return 0;
}

/* ---- the session's events ---------------------------------------------------------- */

static void on_data(void *user, uint32_t id, const uint8_t *data, size_t len)
{
    session *s = user;
    if (id == s->stdout_id) {
        if (!s->user_gone && vk_stream_write(s->io, data, len) < 0)
            s->user_gone = true;
    } else if (id == s->stderr_id) {
        if (!s->user_gone && vk_stream_write_stderr(s->io, data, len) < 0)
            s->user_gone = true;
    } else if (id == s->error_id && s->status.len + len <= MAX_STATUS) {
        vk_buf_append(&s->status, data, len);
    }
}

static void on_end(session *s, uint32_t id)
{
    if (s->forward && id == s->error_id)
        s->error_ended = true;
    else if (s->forward && id == s->stdout_id)
        s->data_ended = true;
}

static void on_fin(void *user, uint32_t id)
{
    on_end(user, id);
}

static void on_reset(void *user, uint32_t id, uint32_t status)
{
    (void)status;
    on_end(user, id);
}

static const spdy_callbacks callbacks = {
    .on_data = on_data,
    .on_fin = on_fin,
    .on_reset = on_reset,
};

/* Open the streams of an exec or attach the runtime waits for, error
 * first as kubectl does. 0 or -1. */
static int open_exec_streams(session *s, const stream_opts *o)
{
    const struct {
        bool want;
        const char *type;
        uint32_t *id;
    } streams[] = {
        {true, "error", &s->error_id},
        {o->in, "stdin", &s->stdin_id},
        {o->out, "stdout", &s->stdout_id},
        {o->err, "stderr", &s->stderr_id},
        {o->tty, "resize", &s->resize_id},
    };
    for (size_t i = 0; i < sizeof streams / sizeof streams[0]; i++) {
        if (!streams[i].want)
            continue;
        spdy_nv nv = {"streamType", streams[i].type, 0};
        /* The error stream carries nothing from us: it is finished at once. */
        *streams[i].id = spdy_open(s->spdy, &nv, 1, i == 0);
        if (!*streams[i].id)
            return -1;
    }
    return 0;
}

/* ---- the user's input --------------------------------------------------------------- */

static void wake(session *s)
{
    char c = 0;
    ssize_t n = write(s->wake[1], &c, 1); /* a full pipe is awake already */
    (void)n;
}

/* Queue one operation for the socket thread, waiting while the queue is
 * full. -1 once the socket side is finished. */
static int enqueue(session *s, int op, const void *data, size_t len)
{
    uint32_t n = (uint32_t)len + 1;
    unsigned char b = (unsigned char)op;
    pthread_mutex_lock(&s->lock);
    while (!s->stop && s->input.len + n + 4 > INPUT_QUEUE_MAX && s->input.len > 0)
        pthread_cond_wait(&s->room, &s->lock);
    int rc = s->stop ? -1 : 0;
    if (rc == 0 && (vk_buf_append(&s->input, &n, 4) < 0 || vk_buf_append(&s->input, &b, 1) < 0 ||
                    vk_buf_append(&s->input, data, len) < 0))
        rc = -1;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    return rc;
}

static int enqueue_resize(session *s, uint32_t w, uint32_t h)
{
    char json[64];
    int n = snprintf(json, sizeof json, "{\"Width\":%u,\"Height\":%u}", w, h);
    return enqueue(s, OP_RESIZE, json, (size_t)n);
}

static void *input_main(void *arg)
{
    session *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->lock);
        if (stop)
            break;
        vk_input in;
        int rc = vk_stream_read(s->io, &in, INPUT_POLL_MS);
        if (rc < 0)
            break;
        if (rc == 0)
            continue;
        rc = in.kind == VK_INPUT_DATA     ? enqueue(s, OP_STDIN, in.data, in.len)
             : in.kind == VK_INPUT_RESIZE ? enqueue_resize(s, in.width, in.height)
                                          : enqueue(s, OP_CLOSE_STDIN, NULL, 0);
        if (rc < 0)
            break;
    }
    pthread_mutex_lock(&s->lock);
    s->input_done = true;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    return NULL;
}

/* Move queued input into the session while its output queue has room;
 * the rest waits for the next turn of the loop. Input for a stream that is
 * not open (stdin without -i, a resize without a terminal) is dropped.
 * false when the user went away. */
static bool pump_input(session *s)
{
    char drain[64];
    while (read(s->wake[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&s->lock);
    size_t off = 0;
    while (off + 4 <= s->input.len && spdy_writable(s->spdy)) {
        uint32_t n;
        memcpy(&n, s->input.data + off, 4);
        int op = (unsigned char)s->input.data[off + 4];
        const char *data = s->input.data + off + 5;
        uint32_t id = op == OP_RESIZE ? s->resize_id : s->stdin_id;
        if (id) /* -1: the runtime reset the stream; nothing to do about it */
            (void)spdy_data(s->spdy, id, data, n - 1, op == OP_CLOSE_STDIN);
        off += 4 + n;
    }
    if (off) {
        memmove(s->input.data, s->input.data + off, s->input.len - off);
        s->input.len -= off;
        pthread_cond_broadcast(&s->room);
    }
    bool alive = !s->input_done;
    pthread_mutex_unlock(&s->lock);
    return alive;
}

/* ---- the session ------------------------------------------------------------------------- */

/* The exit code in a v4 error-channel Status: 0 for Success, the
 * ExitCode cause of a NonZeroExitCode failure; -1 otherwise (err set). */
static int exit_status(const vk_buf *status, char *err, size_t errlen)
{
    char perr[128];
    if (!status->len) {
        snprintf(err, errlen, "the runtime ended the stream without a status");
        return -1;
    }
    yajl_val v = vk_json_parse(status->data, status->len, perr, sizeof perr);
    if (!v) {
        snprintf(err, errlen, "the runtime sent an unreadable status: %s", perr);
        return -1;
    }
    int code = -1;
    const char *st = vk_json_str(vk_json_member(v, "status"), "");
    if (strcmp(st, "Success") == 0) {
        code = 0;
    } else if (strcmp(vk_json_str(vk_json_member(v, "reason"), ""), "NonZeroExitCode") == 0) {
        yajl_val causes = vk_json_get(v, "details", "causes", NULL);
        for (size_t i = 0; YAJL_IS_ARRAY(causes) && i < causes->u.array.len; i++) {
            yajl_val c = causes->u.array.values[i];
            if (strcmp(vk_json_str(vk_json_member(c, "reason"), ""), "ExitCode") == 0)
                code = atoi(vk_json_str(vk_json_member(c, "message"), "-1"));
        }
    }
    if (code < 0)
        snprintf(err, errlen, "%s", vk_json_str(vk_json_member(v, "message"), "command failed"));
    yajl_tree_free(v);
    return code;
}

/* Feed read bytes to the session as far as it takes them. */
static void feed(session *s)
{
    if (s->in_off >= s->in.len)
        return;
    s->in_off += spdy_feed(s->spdy, (const uint8_t *)s->in.data + s->in_off,
                           s->in.len - s->in_off);
    if (s->in_off == s->in.len) {
        vk_buf_reset(&s->in);
        s->in_off = 0;
    }
}

/* Read what the socket has. false when the connection is over. */
static bool receive(session *s)
{
    char buf[READ_CHUNK];
    ssize_t n = recv(s->fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n <= 0 || vk_buf_append(&s->in, buf, (size_t)n) < 0)
        return false;
    return true;
}

/* Write what the session queued. false when the connection is broken. */
static bool transmit(session *s)
{
    const uint8_t *p;
    size_t len = spdy_output(s->spdy, &p);
    if (!len)
        return true;
    ssize_t n = send(s->fd, p, len, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    spdy_output_sent(s->spdy, (size_t)n);
    return true;
}

/* Until the runtime closes the connection (after the status, when the
 * command ended) or ends a port-forward's streams, the user goes away, or the
 * session fails. */
static void run(session *s)
{
    bool input_alive = true, open = true;
    while (open && input_alive && !s->user_gone) {
        /* Every wake-up pumps the input: the wake pipe, or output drained
         * below the high-water mark. */
        feed(s);
        if (s->error_ended && s->data_ended)
            return;
        input_alive = pump_input(s);
        const uint8_t *p;
        bool pending = spdy_output(s->spdy, &p) > 0;
        if (spdy_closing(s->spdy) && !pending)
            break;
        /* Read more only once the session took what it has. */
        bool want_read = s->in_off == s->in.len && spdy_wants_input(s->spdy);
        struct pollfd pfd[2] = {
            {.fd = s->fd, .events = (short)((want_read ? POLLIN : 0) | (pending ? POLLOUT : 0))},
            {.fd = s->wake[0], .events = POLLIN},
        };
        int n = poll(pfd, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
            open = receive(s);
        if (open && (pfd[0].revents & POLLOUT))
            open = transmit(s);
    }
    feed(s); /* the status may be in the last bytes read */
}

static void session_init(session *s, vk_stream *io)
{
    *s = (session){.fd = -1, .wake = {-1, -1}, .io = io};
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->room, NULL);
}

/* Connect to url and upgrade to SPDY speaking protocol; the caller opens
 * the streams next. VK_OK, or an error status (message through ctx). */
static int session_connect(vk_ctx *ctx, session *s, const char *url, const char *protocol)
{
    char host[256], port[16], err[512] = "";
    const char *path;
    if (parse_url(url, host, sizeof host, port, sizeof port, &path) < 0)
        return vk_ctx_error(ctx, VK_INTERNAL, "the runtime gave an unusable stream URL %s", url);
    s->fd = connect_to(host, port);
    if (s->fd < 0)
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "cannot reach the runtime's stream server");
    if (handshake(s, host, port, path, protocol, err, sizeof err) < 0)
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "%s", err);
    s->spdy = spdy_client_new(&callbacks, s, NULL);
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) < 0 || !s->spdy)
        return vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the stream");
    return VK_OK;
}

/* Run the connected session with its streams open, the user's input read
 * by a thread of its own. VK_OK, or an error status. */
static int session_run(vk_ctx *ctx, session *s)
{
    pthread_t reader;
    if (pthread_create(&reader, NULL, input_main, s) != 0)
        return vk_ctx_error(ctx, VK_INTERNAL, "cannot start the stream's input thread");
    run(s);
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->room);
    pthread_mutex_unlock(&s->lock);
    pthread_join(reader, NULL);
    if (spdy_error(s->spdy))
        vk_warn("the runtime's stream broke SPDY", "error=\"%s\"", spdy_error(s->spdy));
    return VK_OK;
}

static void session_free(session *s)
{
    spdy_session_free(s->spdy);
    if (s->fd >= 0)
        close(s->fd);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    vk_buf_free(&s->in);
    vk_buf_free(&s->status);
    vk_buf_free(&s->input);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->room);
}

int stream_session(vk_ctx *ctx, const char *url, const stream_opts *o, vk_stream *io,
                   int *exit_code)
{
    char err[512];
    session s;
    session_init(&s, io);
    *exit_code = -1;
    int code = session_connect(ctx, &s, url, PROTOCOL_EXEC);
    if (code == VK_OK && open_exec_streams(&s, o) < 0)
        code = vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the stream");
    if (code == VK_OK && o->tty && o->width && o->height)
        enqueue_resize(&s, o->width, o->height);
    if (code == VK_OK)
        code = session_run(ctx, &s);
    if (code == VK_OK && !s.user_gone && s.status.len) {
        *exit_code = exit_status(&s.status, err, sizeof err);
        if (*exit_code < 0)
            code = vk_ctx_error(ctx, VK_UNKNOWN, "%s", err);
    }
    session_free(&s);
    return code;
}

int stream_port_forward(vk_ctx *ctx, const char *url, int32_t port, vk_stream *io)
{
    char port_s[16];
    session s;
    session_init(&s, io);
    snprintf(port_s, sizeof port_s, "%d", port);
    /* One forward per connection: requestID 0 pairs its two streams. */
    spdy_nv nv[] = {{"streamType", "error", 0}, {"port", port_s, 0}, {"requestID", "0", 0}};
    size_t n_nv = sizeof nv / sizeof nv[0];
    int code = session_connect(ctx, &s, url, PROTOCOL_PORT_FORWARD);
    if (code == VK_OK) {
        /* The error stream carries nothing from us: it is finished at once. */
        s.error_id = spdy_open(s.spdy, nv, n_nv, true);
        nv[0].value = "data";
        s.stdin_id = s.stdout_id = s.error_id ? spdy_open(s.spdy, nv, n_nv, false) : 0;
        s.forward = true;
        if (!s.stdout_id)
            code = vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the stream");
    }
    if (code == VK_OK)
        code = session_run(ctx, &s);
    /* The runtime could not reach the port: nothing listens there. */
    if (code == VK_OK && s.status.len)
        code = vk_ctx_error(ctx, VK_UNAVAILABLE, "%.*s", (int)s.status.len, s.status.data);
    session_free(&s);
    return code;
}
