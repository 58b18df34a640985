/* stream.c -- a client of the runtime's streaming server (exec, attach).
 *
 * CRI Exec/Attach answer with a URL of a server embedded in the runtime
 * (containerd's is the kubelet's streaming server). It speaks SPDY/3.1 or
 * WebSocket; this client speaks WebSocket, framed by wslay, with the
 * `v4.channel.k8s.io` subprotocol: every binary message starts with a
 * channel byte, 0 stdin, 1 stdout, 2 stderr, 3 error (a final JSON
 * metav1.Status carrying the exit code), 4 terminal resize (JSON
 * {"Width","Height"}).
 *
 * That protocol cannot close stdin alone (v5.channel.k8s.io added that;
 * containerd 1.6's server predates it): a user's stdin EOF is not passed
 * on, so a command that reads stdin to its end waits until the user goes
 * away.
 *
 * The calling thread runs the socket: poll, wslay reads and writes, and the
 * output goes to the user from there, so a user who does not read stops
 * the socket from being read. A second thread reads the user's input into a
 * bounded queue and wakes the socket thread through a pipe.
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
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <wslay/wslay.h>

#include "json.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define PROTOCOL "v4.channel.k8s.io"
#define CONNECT_MS 10000
#define MAX_HEADER 8192
#define MAX_MESSAGE (4u << 20)
#define MAX_STATUS 65536
#define INPUT_QUEUE_MAX (1u << 20)  /* bytes of user input waiting for the socket */
#define INPUT_POLL_MS 200

enum { CH_STDIN, CH_STDOUT, CH_STDERR, CH_ERROR, CH_RESIZE };

typedef struct session {
    int fd;
    int wake[2];
    vk_stream *io;
    wslay_event_context_ptr ws;
    vk_buf early;           /* bytes read with the handshake's response */
    size_t early_off;
    vk_buf status;          /* the error channel */
    bool user_gone;         /* output could not be delivered */

    pthread_mutex_t lock;   /* guards what follows: the input queue */
    pthread_cond_t room;
    vk_buf input;           /* framed messages: 4-byte length, payload */
    bool input_done;        /* the reader thread ended */
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

static void base64(const unsigned char *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
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

static int handshake(session *s, const char *host, const char *port, const char *path,
                     char *err, size_t errlen)
{
    unsigned char nonce[16], digest[20];
    char key[32], expect[32], got[64];
    vk_buf req = VK_BUF_INIT;
    if (getrandom(nonce, sizeof nonce, 0) != sizeof nonce)
        return -1;
    base64(nonce, sizeof nonce, key);
    bool v6 = strchr(host, ':') != NULL;
    if (vk_buf_printf(&req,
                      "GET %s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " PROTOCOL "\r\n\r\n",
                      path, v6 ? "[" : "", host, v6 ? "]" : "", port, key) < 0 ||
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
        if (n <= 0 || s->early.len + (size_t)n > MAX_HEADER ||
            vk_buf_append(&s->early, buf, (size_t)n) < 0) {
            snprintf(err, errlen, "the runtime's stream server closed or sent garbage");
            return -1;
        }
        end = strstr(s->early.data, "\r\n\r\n");
    }
    end[2] = '\0';
    s->early_off = (size_t)(end + 4 - s->early.data);
    if (strncmp(s->early.data, "HTTP/1.1 101", 12) != 0) {
        const char *eol = strstr(s->early.data, "\r\n");
        snprintf(err, errlen, "the runtime's stream server refused: %.*s",
                 (int)(eol ? eol - s->early.data : 80), s->early.data);
        return -1;
    }
    vk_buf accept = VK_BUF_INIT;
    int rc = vk_buf_printf(&accept, "%s" WS_GUID, key);
    if (rc == 0) {
        EVP_Digest(accept.data, accept.len, digest, NULL, EVP_sha1(), NULL);
        base64(digest, sizeof digest, expect);
    }
    vk_buf_free(&accept);
    if (rc < 0 || header(s->early.data, "Sec-WebSocket-Accept", got, sizeof got) < 0 ||
        strcmp(got, expect) != 0) {
        snprintf(err, errlen, "the runtime's stream server answered a bad handshake");
        return -1;
    }
    if (header(s->early.data, "Sec-WebSocket-Protocol", got, sizeof got) < 0 ||
        strcmp(got, PROTOCOL) != 0) {
        snprintf(err, errlen, "the runtime's stream server does not speak " PROTOCOL);
        return -1;
    }
    return 0;
}

/* ---- wslay callbacks ------------------------------------------------------------ */

static ssize_t on_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *ud)
{
    session *s = ud;
    (void)flags;
    if (s->early_off < s->early.len) {
        size_t n = s->early.len - s->early_off;
        n = n < len ? n : len;
        memcpy(buf, s->early.data + s->early_off, n);
        s->early_off += n;
        return (ssize_t)n;
    }
    ssize_t n;
    do
        n = recv(s->fd, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

static ssize_t on_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    session *s = ud;
    (void)flags;
    ssize_t n;
    do
        n = send(s->fd, data, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        wslay_event_set_error(ctx, errno == EAGAIN ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

static int on_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *ud)
{
    (void)ud;
    if (getrandom(buf, len, 0) != (ssize_t)len) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return 0;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    session *s = ud;
    (void)ctx;
    if (arg->opcode != WSLAY_BINARY_FRAME && arg->opcode != WSLAY_TEXT_FRAME)
        return;
    if (arg->msg_length < 2)    /* the empty "connected" message, or nothing */
        return;
    const char *data = (const char *)arg->msg + 1;
    size_t len = arg->msg_length - 1;
    switch (arg->msg[0]) {
    case CH_STDOUT:
        if (!s->user_gone && vk_stream_write(s->io, data, len) < 0)
            s->user_gone = true;
        break;
    case CH_STDERR:
        if (!s->user_gone && vk_stream_write_stderr(s->io, data, len) < 0)
            s->user_gone = true;
        break;
    case CH_ERROR:
        if (s->status.len + len <= MAX_STATUS)
            vk_buf_append(&s->status, data, len);
        break;
    default:
        break;
    }
}

/* ---- the user's input --------------------------------------------------------------- */

static void wake(session *s)
{
    char c = 0;
    ssize_t n = write(s->wake[1], &c, 1); /* a full pipe is awake already */
    (void)n;
}

/* Queue one message for the socket thread, waiting while the queue is
 * full. -1 once the socket side is finished. */
static int enqueue(session *s, int channel, const void *data, size_t len)
{
    uint32_t n = (uint32_t)len + 1;
    unsigned char ch = (unsigned char)channel;
    pthread_mutex_lock(&s->lock);
    while (!s->stop && s->input.len + n + 4 > INPUT_QUEUE_MAX && s->input.len > 0)
        pthread_cond_wait(&s->room, &s->lock);
    int rc = s->stop ? -1 : 0;
    if (rc == 0 && (vk_buf_append(&s->input, &n, 4) < 0 || vk_buf_append(&s->input, &ch, 1) < 0 ||
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
    return enqueue(s, CH_RESIZE, json, (size_t)n);
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
        if (rc == 0 || in.kind == VK_INPUT_EOF)
            continue;
        if ((in.kind == VK_INPUT_DATA ? enqueue(s, CH_STDIN, in.data, in.len)
                                      : enqueue_resize(s, in.width, in.height)) < 0)
            break;
    }
    pthread_mutex_lock(&s->lock);
    s->input_done = true;
    pthread_mutex_unlock(&s->lock);
    wake(s);
    return NULL;
}

/* Move queued input into wslay. false when the user went away. */
static bool pump_input(session *s)
{
    char drain[64];
    while (read(s->wake[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&s->lock);
    size_t off = 0;
    while (off + 4 <= s->input.len) {
        uint32_t n;
        memcpy(&n, s->input.data + off, 4);
        struct wslay_event_msg msg = {WSLAY_BINARY_FRAME,
                                      (const uint8_t *)s->input.data + off + 4, n};
        wslay_event_queue_msg(s->ws, &msg);
        off += 4 + n;
    }
    vk_buf_reset(&s->input);
    pthread_cond_broadcast(&s->room);
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

static void run(session *s)
{
    bool input_alive = true;
    while (!s->user_gone) {
        if (!input_alive)
            break;
        struct pollfd pfd[2] = {
            {.fd = s->fd, .events = (short)((wslay_event_want_read(s->ws) ? POLLIN : 0) |
                                            (wslay_event_want_write(s->ws) ? POLLOUT : 0))},
            {.fd = s->wake[0], .events = POLLIN},
        };
        if (!pfd[0].events)
            break;
        /* Bytes of the handshake's read may hold frames already. */
        int n = s->early_off < s->early.len ? 1 : poll(pfd, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        if (pfd[1].revents & POLLIN)
            input_alive = pump_input(s);
        if ((s->early_off < s->early.len || (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) &&
            wslay_event_recv(s->ws) != 0)
            break;
        if (wslay_event_want_write(s->ws) && wslay_event_send(s->ws) != 0)
            break;
    }
}

int stream_session(vk_ctx *ctx, const char *url, bool tty, vk_stream *io, uint32_t width,
                   uint32_t height, int *exit_code)
{
    char host[256], port[16], err[512] = "";
    const char *path;
    session s = {.fd = -1, .wake = {-1, -1}, .io = io};
    pthread_t reader;
    bool reader_started = false;
    int code = VK_OK;
    struct wslay_event_callbacks cb = {
        .recv_callback = on_recv,
        .send_callback = on_send,
        .genmask_callback = on_genmask,
        .on_msg_recv_callback = on_msg,
    };

    *exit_code = -1;
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.room, NULL);
    if (parse_url(url, host, sizeof host, port, sizeof port, &path) < 0) {
        code = vk_ctx_error(ctx, VK_INTERNAL, "the runtime gave an unusable stream URL %s", url);
        goto out;
    }
    s.fd = connect_to(host, port);
    if (s.fd < 0) {
        code = vk_ctx_error(ctx, VK_UNAVAILABLE, "cannot reach the runtime's stream server");
        goto out;
    }
    if (handshake(&s, host, port, path, err, sizeof err) < 0) {
        code = vk_ctx_error(ctx, VK_UNAVAILABLE, "%s", err);
        goto out;
    }
    if (pipe2(s.wake, O_NONBLOCK | O_CLOEXEC) < 0 ||
        wslay_event_context_client_init(&s.ws, &cb, &s) != 0) {
        code = vk_ctx_error(ctx, VK_INTERNAL, "cannot set up the stream");
        goto out;
    }
    wslay_event_config_set_max_recv_msg_length(s.ws, MAX_MESSAGE);
    if (tty && width && height)
        enqueue_resize(&s, width, height);
    if (pthread_create(&reader, NULL, input_main, &s) != 0) {
        code = vk_ctx_error(ctx, VK_INTERNAL, "cannot start the stream's input thread");
        goto out;
    }
    reader_started = true;
    run(&s);
    if (!s.user_gone && s.status.len) {
        *exit_code = exit_status(&s.status, err, sizeof err);
        if (*exit_code < 0)
            code = vk_ctx_error(ctx, VK_UNKNOWN, "%s", err);
    }
out:
    pthread_mutex_lock(&s.lock);
    s.stop = true;
    pthread_cond_broadcast(&s.room);
    pthread_mutex_unlock(&s.lock);
    if (reader_started)
        pthread_join(reader, NULL);
    if (s.ws)
        wslay_event_context_free(s.ws);
    if (s.fd >= 0)
        close(s.fd);
    if (s.wake[0] >= 0) {
        close(s.wake[0]);
        close(s.wake[1]);
    }
    vk_buf_free(&s.early);
    vk_buf_free(&s.status);
    vk_buf_free(&s.input);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.room);
    return code;
}
