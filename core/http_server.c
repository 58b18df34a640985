/* http_server.c -- an HTTP/1.1 server, over TLS or plain, on a libev loop.
 *
 * One struct per connection (http_request) that moves through states:
 *
 *   READING -> HANDLING -> FLUSHING -> READING ...     (keep-alive)
 *                      \-> STREAMING -> FLUSHING
 *                      \-> RAW                        (upgraded)
 *   any -> CLOSING (send what is queued) -> LINGER (drain the client)
 *
 * All work happens in conn_run, called from the socket watcher or from a
 * zero-delay "kick" timer. Functions the owner of a request calls (respond,
 * write, close, ...) only change state and buffers, then kick, so a
 * connection is never freed, and no callback runs, beneath the owner's
 * feet. While conn_run is on the stack the connection is "busy" and a close
 * is deferred to its end.
 *
 * TLS is driven by SSL_read/SSL_write on the non-blocking socket; the
 * handshake happens inside the first SSL_read. A read that needs the socket
 * writable (or a write that needs it readable) is remembered so that the
 * watcher waits for the right event. Without a TLS context the same states
 * run on plain read/send (io_read, io_write hide the difference).
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>
#include <openssl/err.h>

#include "buf.h"
#include "log.h"
#include "logval.h"

#define DEFAULT_MAX_HEAD (16 * 1024)
#define DEFAULT_MAX_HEADERS 100
#define DEFAULT_MAX_BODY (1024 * 1024)
#define DEFAULT_MAX_CONNECTIONS 1024
#define DEFAULT_REQUEST_TIMEOUT 30.0
#define DEFAULT_IDLE_TIMEOUT 120.0
#define DEFAULT_HIGH_WATER (256 * 1024)

/* Client bytes held while the handler works (a pipelined request) or an
 * upgraded reader is paused; past it the server stops reading. */
#define INPUT_LIMIT (64 * 1024)
/* http_write refuses bytes once this many high-water marks are queued. */
#define HARD_LIMIT_FACTOR 16
#define READ_CHUNK (16 * 1024)
/* Constant so that a retried SSL_write is never shorter than the try
 * before, which OpenSSL requires. */
#define WRITE_CHUNK (64 * 1024)
/* Buffers bigger than this are released when they empty, so that one big
 * response does not pin memory for the connection's life. */
#define KEEP_BUFFER (64 * 1024)
/* How long a refused client gets to stop sending before the close; closing
 * on unread input would reset the connection and lose the response. */
#define LINGER_TIMEOUT 1.0
#define ACCEPT_RETRY 0.1
/* conn_run rounds (process, flush, callbacks) before yielding to the loop. */
#define MAX_ROUNDS 4

enum conn_state {
    ST_READING,
    ST_HANDLING,
    ST_STREAMING,
    ST_FLUSHING,
    ST_RAW,
    ST_CLOSING,
    ST_LINGER,
};

enum last_cb { CB_URL, CB_FIELD, CB_VALUE };

typedef struct header {
    unsigned name, value; /* offsets into head */
} header;

struct http_server {
    struct ev_loop *loop;
    http_server_config cfg;
    int fd, port;
    ev_io accept_io;
    ev_timer accept_retry;
    http_request *conns;
    int n_conns;
    bool refusing;  /* at max_connections; warned once */
    http_parser_settings settings;
};

struct http_request {
    http_server *srv;
    http_request *prev, *next;
    int fd;
    SSL *ssl;
    ev_io io;
    ev_timer timer;       /* request, idle and linger deadlines */
    ev_timer kick;        /* run again from the loop */
    enum conn_state state;
    int busy;
    bool again;           /* kicked while busy */
    bool dead;            /* free at the end of conn_run */
    bool notify;          /* ... and tell the owner (cb->closed) */
    bool eof;             /* the client closed its side */
    bool broken;          /* the connection failed: nothing more to send */
    bool read_wants_write, write_wants_read;
    bool blocked;         /* the owner waits for cb->writable */
    bool paused;
    bool keep_alive, head_only, chunked;
    char peer[INET6_ADDRSTRLEN];

    vk_buf in;            /* received, consumed up to in_pos */
    size_t in_pos;
    vk_buf out;           /* queued, sent up to out_pos */
    size_t out_pos;

    /* The request being received. */
    http_parser parser;
    int error;            /* HTTP status to refuse it with */
    enum last_cb last;
    vk_buf head;          /* "url\0name\0value\0name\0value\0..." */
    header *hdr;          /* max_headers of them */
    int n_headers;
    vk_buf decoded;       /* "path\0key\0value\0key\0value\0..." */
    size_t query_off;
    vk_buf body;

    const http_callbacks *cb;
    void *cb_ud;
};

static void conn_run(http_request *c);

/* ---- buffers ------------------------------------------------------------- */

static size_t in_avail(const http_request *c)
{
    return c->in.len - c->in_pos;
}

static size_t out_pending(const http_request *c)
{
    return c->out.len - c->out_pos;
}

static void consume_input(http_request *c, size_t n)
{
    c->in_pos += n;
    if (c->in_pos == c->in.len) {
        c->in_pos = 0;
        if (c->in.cap > KEEP_BUFFER)
            vk_buf_free(&c->in);
        else
            vk_buf_reset(&c->in);
    }
}

/* Queue output. Out of memory breaks the connection: nothing sensible can
 * be sent any more. */
static int out_append(http_request *c, const void *data, size_t len)
{
    if (vk_buf_append(&c->out, data, len) == 0)
        return 0;
    c->broken = true;
    return -1;
}

static int out_printf(http_request *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int out_printf(http_request *c, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof line) {
        c->broken = true;
        return -1;
    }
    return out_append(c, line, (size_t)n);
}

/* ---- lifecycle ------------------------------------------------------------- */

/* Have conn_run go (again): from the loop, or, when called from inside
 * conn_run (by a callback), for another round. */
static void kick(http_request *c)
{
    if (c->busy)
        c->again = true;
    else if (!ev_is_active(&c->kick))
        ev_timer_start(c->srv->loop, &c->kick);
}

/* notify: the owner is told through cb->closed. */
static void conn_close(http_request *c, bool notify)
{
    if (c->dead)
        return;
    c->dead = true;
    /* Whether the owner still wants to know is decided when freeing: it
     * may finish its response (or watch) in between. */
    c->notify = notify;
    kick(c);
}

static void conn_free(http_request *c)
{
    http_server *s = c->srv;
    ev_io_stop(s->loop, &c->io);
    ev_timer_stop(s->loop, &c->timer);
    ev_timer_stop(s->loop, &c->kick);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    if (c->notify && c->cb && c->cb->closed)
        c->cb->closed(c->cb_ud);
    if (c->ssl && !c->broken && SSL_is_init_finished(c->ssl)) {
        /* One try at close_notify; the peer's answer is not awaited. */
        ERR_clear_error();
        SSL_shutdown(c->ssl);
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd);
    vk_buf_free(&c->in);
    vk_buf_free(&c->out);
    vk_buf_free(&c->head);
    vk_buf_free(&c->decoded);
    vk_buf_free(&c->body);
    free(c->hdr);
    free(c);
}

static void arm_timer(http_request *c, double seconds)
{
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, seconds, 0.);
    ev_timer_start(c->srv->loop, &c->timer);
}

/* Send what is queued, then close; a client that does not take it in
 * time is dropped. */
static void enter_closing(http_request *c)
{
    c->keep_alive = false;
    c->state = ST_CLOSING;
    arm_timer(c, c->srv->cfg.request_timeout);
}

static void reset_request(http_request *c)
{
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->error = 0;
    c->last = CB_URL;
    c->n_headers = 0;
    c->query_off = 0;
    vk_buf_reset(&c->head);
    vk_buf_reset(&c->decoded);
    if (c->body.cap > KEEP_BUFFER)
        vk_buf_free(&c->body);
    else
        vk_buf_reset(&c->body);
    c->cb = NULL;
    c->cb_ud = NULL;
    c->blocked = false;
    c->head_only = false;
    c->chunked = false;
}

/* ---- responses ----------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static void put_head(http_request *c, int status, const char *headers, const char *framing)
{
    out_printf(c, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (headers)
        out_append(c, headers, strlen(headers));
    /* An HTTP/1.0 stream has no framing header (its body ends with the
     * connection): an empty line here would end the head early. */
    if (*framing)
        out_printf(c, "%s\r\n", framing);
    out_printf(c, "%s\r\n", c->keep_alive ? "" : "Connection: close\r\n");
    if (vk_log_enabled(VK_LOG_DEBUG)) {
        char path[LOGVAL_MAX];
        vk_log(VK_LOG_DEBUG, "http request", "method=%s path=%s status=%d peer=%s",
               http_request_method(c), logval(path, sizeof path, http_request_path(c)),
               status, c->peer);
    }
}

/* Refuse the request being read; the connection closes after the answer. */
static void refuse(http_request *c, int status, const char *why)
{
    char framing[64];
    snprintf(framing, sizeof framing, "Content-Length: %zu", strlen(why));
    c->keep_alive = false;
    out_printf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "%s\r\nConnection: close\r\n\r\n%s",
               status, reason_phrase(status), framing, why);
    vk_debug("http request refused", "status=%d peer=%s", status, c->peer);
    enter_closing(c);
}

void http_respond(http_request *r, int status, const char *headers, const char *body, size_t len)
{
    char framing[64];
    snprintf(framing, sizeof framing, "Content-Length: %zu", len);
    put_head(r, status, headers, framing);
    if (!r->head_only && len)
        out_append(r, body, len);
    r->cb = NULL;
    r->state = ST_FLUSHING;
    kick(r);
}

void http_stream_begin(http_request *r, int status, const char *headers)
{
    /* HTTP/1.0 has no chunked encoding: the body ends with the connection. */
    r->chunked = r->parser.http_major > 1 || r->parser.http_minor >= 1;
    if (!r->chunked)
        r->keep_alive = false;
    put_head(r, status, headers, r->chunked ? "Transfer-Encoding: chunked" : "");
    r->state = ST_STREAMING;
    kick(r);
}

void http_stream_end(http_request *r)
{
    if (r->chunked && !r->head_only)
        out_append(r, "0\r\n\r\n", 5);
    r->cb = NULL;
    r->state = ST_FLUSHING;
    kick(r);
}

int http_write(http_request *r, const void *data, size_t len)
{
    if (r->dead || r->broken ||
        out_pending(r) > r->srv->cfg.high_water * HARD_LIMIT_FACTOR)
        return -1;
    if (len == 0 || (r->state == ST_STREAMING && r->head_only))
        return 0;
    if (r->state == ST_STREAMING && r->chunked) {
        if (out_printf(r, "%zx\r\n", len) < 0 || out_append(r, data, len) < 0 ||
            out_append(r, "\r\n", 2) < 0)
            return -1;
    } else if (out_append(r, data, len) < 0) {
        return -1;
    }
    if (out_pending(r) >= r->srv->cfg.high_water)
        r->blocked = true;
    kick(r);
    return 0;
}

bool http_writable(http_request *r)
{
    if (out_pending(r) < r->srv->cfg.high_water)
        return true;
    r->blocked = true;
    return false;
}

void http_close(http_request *r)
{
    r->cb = NULL;
    enter_closing(r);
    kick(r);
}

void http_watch(http_request *r, const http_callbacks *cb, void *ud)
{
    r->cb = cb;
    r->cb_ud = ud;
}

void http_upgrade(http_request *r, const char *head, size_t len,
                  const http_callbacks *cb, void *ud)
{
    out_append(r, head, len);
    r->cb = cb;
    r->cb_ud = ud;
    r->keep_alive = false;
    r->state = ST_RAW;
    if (vk_log_enabled(VK_LOG_DEBUG)) {
        char path[LOGVAL_MAX];
        vk_log(VK_LOG_DEBUG, "http upgrade", "path=%s peer=%s",
               logval(path, sizeof path, http_request_path(r)), r->peer);
    }
    kick(r);
}

void http_pause_reading(http_request *r, bool paused)
{
    r->paused = paused;
    kick(r);
}

/* ---- the request ---------------------------------------------------------------- */

const char *http_request_method(const http_request *r)
{
    return http_method_str((enum http_method)r->parser.method);
}

const char *http_request_path(const http_request *r)
{
    return r->decoded.data ? r->decoded.data : "";
}

const char *http_request_query_nth(const http_request *r, const char *key, int n)
{
    if (!r->query_off)
        return NULL;
    const char *p = r->decoded.data + r->query_off;
    const char *end = r->decoded.data + r->decoded.len;
    while (p < end) {
        const char *value = p + strlen(p) + 1;
        if (strcmp(p, key) == 0 && n-- == 0)
            return value;
        p = value + strlen(value) + 1;
    }
    return NULL;
}

const char *http_request_query(const http_request *r, const char *key)
{
    return http_request_query_nth(r, key, 0);
}

const char *http_request_header(const http_request *r, const char *name)
{
    for (int i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->head.data + r->hdr[i].name, name) == 0)
            return r->head.data + r->hdr[i].value;
    return NULL;
}

const char *http_request_body(const http_request *r, size_t *len)
{
    *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

const char *http_request_peer(const http_request *r)
{
    return r->peer;
}

X509 *http_request_peer_cert(const http_request *r)
{
    X509 *cert = r->ssl ? SSL_get0_peer_certificate(r->ssl) : NULL;
    return cert && SSL_get_verify_result(r->ssl) == X509_V_OK ? cert : NULL;
}

bool http_request_is_upgrade(const http_request *r)
{
    return r->parser.upgrade;
}

/* ---- parsing --------------------------------------------------------------------- */

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Append s[0..len) percent-decoded and NUL-terminated; '+' is a space in
 * a query (as Go's url.ParseQuery has it). -1 on a bad escape or an
 * encoded NUL, which no C string can carry. */
static int decode(vk_buf *out, const char *s, size_t len, bool query)
{
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '%') {
            int hi = i + 2 < len ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = (char)(hi * 16 + lo);
            i += 2;
        } else if (ch == '+' && query) {
            ch = ' ';
        }
        if (vk_buf_append(out, &ch, 1) < 0)
            return -1;
    }
    return vk_buf_append(out, "", 1);
}

static int decode_query(vk_buf *out, const char *q, size_t len)
{
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(pe - q));
        const char *ke = eq ? eq : pe;
        if (pe > q &&
            (decode(out, q, (size_t)(ke - q), true) < 0 ||
             decode(out, eq ? eq + 1 : pe, eq ? (size_t)(pe - eq - 1) : 0, true) < 0))
            return -1;
        q = amp ? amp + 1 : end;
    }
    return 0;
}

/* Split the URL into the decoded path and query. 0, or an HTTP status. */
static int parse_target(http_request *c)
{
    const char *url = c->head.data;
    size_t len = strlen(url);
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
        return 400;
    if (decode(&c->decoded, url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, false) < 0)
        return 400;
    if (u.field_set & (1 << UF_QUERY)) {
        c->query_off = c->decoded.len;
        if (decode_query(&c->decoded, url + u.field_data[UF_QUERY].off,
                         u.field_data[UF_QUERY].len) < 0)
            return 400;
        if (c->decoded.len == c->query_off)
            c->query_off = 0;
    }
    return 0;
}

/* Parser callbacks: return -1 with c->error set to stop. */

static int head_append(http_request *c, const char *at, size_t len, int status)
{
    if (c->head.len + len + 1 > c->srv->cfg.max_head) {
        c->error = status;
        return -1;
    }
    if (vk_buf_append(&c->head, at, len) < 0) {
        c->error = 500;
        return -1;
    }
    return 0;
}

static int on_message_begin(http_parser *p)
{
    http_request *c = p->data;
    /* From the first byte the whole request must arrive in time: trickling
     * bytes does not buy a slow client more. */
    arm_timer(c, c->srv->cfg.request_timeout);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    return head_append(p->data, at, len, 414);
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    http_request *c = p->data;
    if (c->last != CB_FIELD) {
        if (c->n_headers == c->srv->cfg.max_headers) {
            c->error = 431;
            return -1;
        }
        /* Ends the URL or the previous value. */
        if (head_append(c, "", 1, 431) < 0)
            return -1;
        c->hdr[c->n_headers].name = (unsigned)c->head.len;
        c->hdr[c->n_headers].value = (unsigned)c->head.len;
        c->n_headers++;
        c->last = CB_FIELD;
    }
    return head_append(c, at, len, 431);
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    http_request *c = p->data;
    if (c->last != CB_VALUE) {
        if (head_append(c, "", 1, 431) < 0)
            return -1;
        c->hdr[c->n_headers - 1].value = (unsigned)c->head.len;
        c->last = CB_VALUE;
    }
    return head_append(c, at, len, 431);
}

static int on_headers_complete(http_parser *p)
{
    http_request *c = p->data;
    if (c->last == CB_FIELD) {
        /* A name without a value: give it an empty one. */
        if (head_append(c, "", 1, 431) < 0)
            return -1;
        c->hdr[c->n_headers - 1].value = (unsigned)c->head.len;
    }
    if (head_append(c, "", 1, 431) < 0)
        return -1;
    if ((c->error = parse_target(c)) != 0)
        return -1;
    if (p->content_length != ULLONG_MAX && p->content_length > c->srv->cfg.max_body) {
        c->error = 413;
        return -1;
    }
    const char *expect = http_request_header(c, "Expect");
    if (expect && strcasecmp(expect, "100-continue") == 0)
        out_printf(c, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    http_request *c = p->data;
    if (c->body.len + len > c->srv->cfg.max_body) {
        c->error = 413;
        return -1;
    }
    if (vk_buf_append(&c->body, at, len) < 0) {
        c->error = 500;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    /* One request at a time: what follows waits until this one is
     * answered (and may not be HTTP at all after an upgrade). */
    http_parser_pause(p, 1);
    return 0;
}

static void dispatch(http_request *c)
{
    c->keep_alive = http_should_keep_alive(&c->parser) && !c->parser.upgrade;
    c->head_only = c->parser.method == HTTP_HEAD;
    c->state = ST_HANDLING;
    ev_timer_stop(c->srv->loop, &c->timer);
    c->srv->cfg.handler(c->srv->cfg.ud, c);
}

static void parse_input(http_request *c)
{
    while (c->state == ST_READING && !c->dead && in_avail(c) > 0) {
        size_t n = http_parser_execute(&c->parser, &c->srv->settings,
                                       c->in.data + c->in_pos, in_avail(c));
        consume_input(c, n);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (c->error) {
            refuse(c, c->error, c->error == 431   ? "request header fields too large\n"
                                : c->error == 414 ? "request URI too long\n"
                                : c->error == 413 ? "request body too large\n"
                                                  : "bad request\n");
        } else if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            dispatch(c);
        } else if (e == HPE_HEADER_OVERFLOW) {
            refuse(c, 431, "request header fields too large\n");
        } else if (e != HPE_OK) {
            refuse(c, 400, "bad request\n");
        }
    }
}

/* ---- I/O --------------------------------------------------------------------------- */

static bool can_read(const http_request *c)
{
    if (c->eof || c->broken || c->state == ST_CLOSING)
        return false;
    return c->state == ST_LINGER || in_avail(c) < INPUT_LIMIT;
}

/* What io_read and io_write return when they moved no bytes. */
enum {
    IO_AGAIN = 0,   /* the socket is not ready: wait for it */
    IO_OTHER = -1,  /* TLS needs the socket ready the other way */
    IO_EOF = -2,    /* the client closed (close_notify or a FIN) */
    IO_ERROR = -3,  /* a TLS or socket error: nothing more can be sent */
};

static int io_read(http_request *c, char *buf, size_t want)
{
    if (!c->ssl) {
        ssize_t n = read(c->fd, buf, want);
        if (n > 0)
            return (int)n;
        if (n == 0)
            return IO_EOF;
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? IO_AGAIN : IO_ERROR;
    }
    ERR_clear_error();
    int n = SSL_read(c->ssl, buf, (int)want);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return IO_AGAIN;
    if (e == SSL_ERROR_WANT_WRITE)
        return IO_OTHER;
    /* A plain FIN counts as close_notify: SSL_OP_IGNORE_UNEXPECTED_EOF. */
    if (e == SSL_ERROR_ZERO_RETURN)
        return IO_EOF;
    if (!SSL_is_init_finished(c->ssl)) {
        const char *why = ERR_reason_error_string(ERR_peek_last_error());
        vk_debug("TLS handshake failed", "peer=%s error=\"%s\"", c->peer,
                 why ? why : "connection closed");
    }
    return IO_ERROR;
}

static int io_write(http_request *c, const char *data, size_t len)
{
    if (!c->ssl) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n > 0)
            return (int)n;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? IO_AGAIN
                                                                                  : IO_ERROR;
    }
    ERR_clear_error();
    int n = SSL_write(c->ssl, data, (int)len);
    if (n > 0)
        return n;
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE)
        return IO_AGAIN;
    if (e == SSL_ERROR_WANT_READ)
        return IO_OTHER;
    return IO_ERROR;
}

static void conn_read(http_request *c)
{
    char buf[READ_CHUNK];
    c->read_wants_write = false;
    while (can_read(c)) {
        size_t want = sizeof buf;
        if (c->state != ST_LINGER && INPUT_LIMIT - in_avail(c) < want)
            want = INPUT_LIMIT - in_avail(c);
        int n = io_read(c, buf, want);
        if (n > 0) {
            if (c->state != ST_LINGER && vk_buf_append(&c->in, buf, (size_t)n) < 0)
                c->broken = true;
            continue;
        }
        if (n == IO_AGAIN)
            break;
        if (n == IO_OTHER) {
            c->read_wants_write = true;
            break;
        }
        c->eof = true;
        /* close_notify or a FIN still lets us send; an error does not. */
        if (n == IO_ERROR)
            c->broken = true;
    }
}

static void conn_flush(http_request *c)
{
    c->write_wants_read = false;
    while (!c->broken && out_pending(c) > 0) {
        size_t n = out_pending(c) < WRITE_CHUNK ? out_pending(c) : WRITE_CHUNK;
        int w = io_write(c, c->out.data + c->out_pos, n);
        if (w > 0) {
            c->out_pos += (size_t)w;
            continue;
        }
        if (w == IO_AGAIN)
            break;
        if (w == IO_OTHER) {
            c->write_wants_read = true;
            break;
        }
        c->broken = true;
        c->eof = true;
    }
    if (c->out_pos == c->out.len) {
        c->out_pos = 0;
        if (c->out.cap > KEEP_BUFFER)
            vk_buf_free(&c->out);
        else
            vk_buf_reset(&c->out);
    } else if (c->out_pos > KEEP_BUFFER && c->out_pos > c->out.len / 2) {
        /* Moving the unsent rest is fine for OpenSSL: see conn_new. */
        memmove(c->out.data, c->out.data + c->out_pos, out_pending(c));
        c->out.len -= c->out_pos;
        c->out.data[c->out.len] = '\0';
        c->out_pos = 0;
    }
}

/* React to what reading found: a request, client bytes, or the end. */
static void conn_process(http_request *c)
{
    switch (c->state) {
    case ST_READING:
        /* A client that sent its request and then closed its side still
         * gets it parsed (and answered, when the answer comes at once). */
        if (!c->broken)
            parse_input(c);
        if (!c->eof && !c->broken)
            break;
        if (c->state == ST_READING) {
            conn_close(c, false);
        } else {
            /* The request was dispatched, and the end came in the same
             * read: the state the handler left must see it too, in one
             * more round. Nothing else would run it: a handler that
             * answers later calls nothing that kicks, and the watcher,
             * stopped at the end, never reports it again; the handler
             * would never hear `closed`. */
            c->again = true;
        }
        break;
    case ST_HANDLING:
    case ST_STREAMING:
        if (c->eof || c->broken)
            conn_close(c, true);
        break;
    case ST_RAW:
        if (c->broken) {
            conn_close(c, true);
            return;
        }
        if (!c->paused && in_avail(c) > 0 && c->cb && c->cb->data) {
            size_t n = in_avail(c);
            /* Consumed first: the callback may pause, write or close. */
            const char *data = c->in.data + c->in_pos;
            c->in_pos += n;
            c->cb->data(c->cb_ud, data, n);
            if (c->in_pos == c->in.len)
                consume_input(c, 0);
        }
        if (c->eof && !c->dead && (c->paused || in_avail(c) == 0))
            conn_close(c, true);
        break;
    case ST_FLUSHING:
        if (c->broken)
            conn_close(c, false);
        else if (c->eof)
            c->keep_alive = false;
        break;
    case ST_CLOSING:
        if (c->broken)
            conn_close(c, false);
        break;
    case ST_LINGER:
        if (c->eof || c->broken)
            conn_close(c, false);
        break;
    }
}

/* After a flush: finish a response, tell a producer it may go on. true when
 * another round may find more to do. */
static bool conn_advance(http_request *c)
{
    if (c->dead)
        return false;
    if (c->broken) {
        conn_close(c, c->state == ST_HANDLING || c->state == ST_STREAMING ||
                          c->state == ST_RAW);
        return false;
    }
    if (out_pending(c) == 0 && c->state == ST_FLUSHING) {
        if (!c->keep_alive) {
            enter_closing(c);
            return true;
        }
        reset_request(c);
        c->state = ST_READING;
        arm_timer(c, c->srv->cfg.idle_timeout);
        return in_avail(c) > 0;
    }
    if (out_pending(c) == 0 && c->state == ST_CLOSING) {
        if (c->eof) {
            conn_close(c, false);
            return false;
        }
        /* Stop sending, then read until the client closes too (bounded),
         * so that our close does not reset the connection under the
         * response. */
        if (c->ssl) {
            ERR_clear_error();
            SSL_shutdown(c->ssl);
        }
        shutdown(c->fd, SHUT_WR);
        consume_input(c, in_avail(c));
        c->state = ST_LINGER;
        arm_timer(c, LINGER_TIMEOUT);
        return true;
    }
    if (c->blocked && out_pending(c) < c->srv->cfg.high_water && c->cb && c->cb->writable &&
        (c->state == ST_HANDLING || c->state == ST_STREAMING || c->state == ST_RAW)) {
        c->blocked = false;
        c->cb->writable(c->cb_ud);
        return true;
    }
    return false;
}

static void conn_update(http_request *c)
{
    int ev = 0;
    bool readable = can_read(c);
    if (readable || c->write_wants_read)
        ev |= EV_READ;
    if (out_pending(c) > 0 || c->read_wants_write)
        ev |= EV_WRITE;
    if (ev != (c->io.events & (EV_READ | EV_WRITE))) {
        ev_io_stop(c->srv->loop, &c->io);
        ev_io_set(&c->io, c->fd, ev);
        if (ev)
            ev_io_start(c->srv->loop, &c->io);
    }
    /* Decrypted bytes waiting inside OpenSSL never make the socket
     * readable: fetch them from the loop. */
    if (readable && c->ssl && SSL_has_pending(c->ssl))
        kick(c);
}

static void conn_run(http_request *c)
{
    c->busy++;
    if (!c->dead && (can_read(c) || c->read_wants_write))
        conn_read(c);
    bool more = true;
    for (int round = 0; more && round < MAX_ROUNDS && !c->dead; round++) {
        c->again = false;
        conn_process(c);
        if (!c->dead)
            conn_flush(c);
        more = conn_advance(c) || c->again;
    }
    c->busy--;
    if (c->dead) {
        conn_free(c);
        return;
    }
    conn_update(c);
    if (more)
        kick(c);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_run(w->data);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    conn_run(w->data);
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    http_request *c = w->data;
    if (c->state == ST_READING)
        vk_debug("http client timed out", "peer=%s", c->peer);
    /* Armed in READING (request and idle deadlines), CLOSING and LINGER. */
    conn_close(c, false);
    conn_run(c);
}

/* ---- accepting ---------------------------------------------------------------------- */

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t n)
{
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    if (ss->ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)n);
    } else if (ss->ss_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
        /* IPv4 clients of a dual-stack listener: show them as IPv4. */
        inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], out, (socklen_t)n);
    } else if (ss->ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)n);
    } else {
        snprintf(out, n, "?");
    }
}

static void conn_new(http_server *s, int fd, const struct sockaddr_storage *ss)
{
    http_request *c = calloc(1, sizeof *c);
    SSL *ssl = s->cfg.tls ? SSL_new(s->cfg.tls) : NULL;
    header *hdr = calloc((size_t)s->cfg.max_headers, sizeof *hdr);
    if (!c || (s->cfg.tls && (!ssl || SSL_set_fd(ssl, fd) != 1)) || !hdr) {
        vk_warn("cannot accept a connection", "error=\"out of memory\"");
        free(c);
        free(hdr);
        SSL_free(ssl);
        close(fd);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ssl) {
        SSL_set_accept_state(ssl);
        /* A client that closes without close_notify has still closed
         * cleanly for HTTP, whose messages carry their own length. */
        SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
        /* conn_flush retries a write with the rest of the output buffer,
         * which may have grown or moved since. */
        SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
    c->srv = s;
    c->fd = fd;
    c->ssl = ssl;
    c->hdr = hdr;
    peer_name(ss, c->peer, sizeof c->peer);
    reset_request(c);
    c->state = ST_READING;
    ev_io_init(&c->io, io_cb, fd, 0);
    c->io.data = c;
    ev_timer_init(&c->timer, timer_cb, 0., 0.);
    c->timer.data = c;
    ev_timer_init(&c->kick, kick_cb, 0., 0.);
    c->kick.data = c;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    /* The handshake and the first request share one deadline. */
    arm_timer(c, s->cfg.request_timeout);
    conn_update(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    http_server *s = w->data;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int fd = accept4(s->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* Out of descriptors or memory: pause instead of spinning
                 * on a listener that stays readable. */
                vk_warn("cannot accept a connection", "error=\"%s\"", strerror(errno));
                ev_io_stop(loop, &s->accept_io);
                ev_timer_start(loop, &s->accept_retry);
            }
            return;
        }
        if (s->n_conns >= s->cfg.max_connections) {
            if (!s->refusing)
                vk_warn("kubelet API at its connection limit; refusing new ones",
                        "max_connections=%d", s->cfg.max_connections);
            s->refusing = true;
            close(fd);
            continue;
        }
        s->refusing = false;
        conn_new(s, fd, &ss);
    }
}

static void accept_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    http_server *s = w->data;
    ev_io_start(loop, &s->accept_io);
}

static int listen_on(http_server *s, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg.port);
    const char *host = s->cfg.address ? s->cfg.address : "*";
    int rc = getaddrinfo(s->cfg.address, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 511) < 0) {
        snprintf(err, errlen, "cannot listen on %s port %d: %s",
                 host, s->cfg.port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
    s->fd = fd;
    return 0;
}

http_server *http_server_new(const http_server_config *cfg, char *err, size_t errlen)
{
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->loop = cfg->loop;
    s->cfg = *cfg;
    if (!s->cfg.max_head)
        s->cfg.max_head = DEFAULT_MAX_HEAD;
    if (s->cfg.max_headers <= 0)
        s->cfg.max_headers = DEFAULT_MAX_HEADERS;
    if (!s->cfg.max_body)
        s->cfg.max_body = DEFAULT_MAX_BODY;
    if (s->cfg.max_connections <= 0)
        s->cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (s->cfg.request_timeout <= 0)
        s->cfg.request_timeout = DEFAULT_REQUEST_TIMEOUT;
    if (s->cfg.idle_timeout <= 0)
        s->cfg.idle_timeout = DEFAULT_IDLE_TIMEOUT;
    if (!s->cfg.high_water)
        s->cfg.high_water = DEFAULT_HIGH_WATER;
    s->settings.on_message_begin = on_message_begin;
    s->settings.on_url = on_url;
    s->settings.on_header_field = on_header_field;
    s->settings.on_header_value = on_header_value;
    s->settings.on_headers_complete = on_headers_complete;
    s->settings.on_body = on_body;
    s->settings.on_message_complete = on_message_complete;
    int rc = listen_on(s, err, errlen);
    s->cfg.address = NULL; /* the caller's string is not kept */
    if (rc < 0) {
        free(s);
        return NULL;
    }
    ev_io_init(&s->accept_io, accept_cb, s->fd, EV_READ);
    s->accept_io.data = s;
    ev_timer_init(&s->accept_retry, accept_retry_cb, ACCEPT_RETRY, 0.);
    s->accept_retry.data = s;
    ev_io_start(s->loop, &s->accept_io);
    return s;
}

int http_server_port(const http_server *s)
{
    return s->port;
}

void http_server_free(http_server *s)
{
    if (!s)
        return;
    while (s->conns) {
        http_request *c = s->conns;
        if (!c->dead)
            c->notify = true;
        c->dead = true;
        conn_free(c);
    }
    ev_io_stop(s->loop, &s->accept_io);
    ev_timer_stop(s->loop, &s->accept_retry);
    close(s->fd);
    free(s);
}
