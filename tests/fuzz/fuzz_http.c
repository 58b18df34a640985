/* fuzz_http.c -- the request side of core/http_server.c: http-parser
 * driven through the server's callbacks, head and body limits, URL and
 * query decoding, keep-alive and pipelining, streamed and upgraded
 * responses.
 *
 * The server reads through OpenSSL. This target links it with a fake of
 * the few OpenSSL calls it makes (below): SSL_read hands out the input in
 * chunks, SSL_write records the output, the handshake is already done.
 * Connections are real (loopback TCP, accepted by the server), since only
 * accepting one creates it; the client's socket serves as a doorbell: one
 * byte written to it, never read, keeps the server's socket readable, so
 * that whenever the server wants to read it calls SSL_read.
 *
 * Input: one byte seeding the chunk sizes, one byte of options (tight
 * limits, when the client closes), then the bytes the client sends; the
 * client closes its side once the server has nothing more to do with them,
 * or right after its last byte.
 *
 * The handler answers by path: /stream with a chunked response, /later
 * once the connection is quiet (or never, when the client hangs up first),
 * an upgrade request by switching to raw bytes and echoing them, anything
 * else with a response describing the request. Checked:
 *   - a request reaches the handler with a path, consistent query and
 *     header lookups, and a body within the limit;
 *   - everything the server writes, up to a 101, parses as a sequence of
 *     HTTP/1.1 responses (each HEAD answered without a body), one per
 *     request plus at most one refusal, and ends on a message boundary;
 *   - once the client closed, the connection closes too, and a request
 *     still waiting for its answer hears about it (`closed`).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>
#include <http_parser.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "fuzz.h"
#include "http_server.h"

enum {
    OPT_SMALL = 1,  /* tight limits: 512-byte head, 8 headers, 64-byte body */
    OPT_HANGUP = 2, /* the client closes while /later waits for its answer */
    OPT_EOF = 4,    /* the client closes right after its last byte */
};

/* ---- the fake TLS layer ----------------------------------------------------- */

static struct {
    const uint8_t *in;
    size_t len, pos;
    uint32_t seed;
    bool breather; /* the last read returned data: the next waits a round */
    bool eof;      /* the client closed: reads past the input end say so */
    int last_error;
    vk_buf out;
    int open;      /* fake SSL objects alive */
    int progress;  /* reads and writes that moved bytes */
} tls;

struct ssl_st {
    int fd;
};

SSL *SSL_new(SSL_CTX *ctx)
{
    (void)ctx;
    tls.open++;
    return calloc(1, sizeof(SSL));
}

void SSL_free(SSL *ssl)
{
    if (ssl)
        tls.open--;
    free(ssl);
}

int SSL_set_fd(SSL *s, int fd)
{
    s->fd = fd;
    return 1;
}

void SSL_set_accept_state(SSL *s)
{
    (void)s;
}

uint64_t SSL_set_options(SSL *s, uint64_t op)
{
    (void)s;
    return op;
}

/* SSL_set_mode and friends. */
long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg)
{
    (void)ssl;
    (void)cmd;
    (void)parg;
    return larg;
}

int SSL_is_init_finished(const SSL *s)
{
    (void)s;
    return 1;
}

int SSL_read(SSL *ssl, void *buf, int num)
{
    (void)ssl;
    FUZZ_CHECK(num > 0);
    if (tls.pos < tls.len && !tls.breather) {
        size_t n = fuzz_chunk(&tls.seed, tls.len - tls.pos);
        if (n > (size_t)num)
            n = (size_t)num;
        memcpy(buf, tls.in + tls.pos, n);
        tls.pos += n;
        tls.breather = true;
        tls.progress++;
        return (int)n;
    }
    tls.breather = false;
    if (tls.pos == tls.len && tls.eof) {
        tls.last_error = SSL_ERROR_ZERO_RETURN;
        return 0;
    }
    tls.last_error = SSL_ERROR_WANT_READ;
    return -1;
}

int SSL_write(SSL *ssl, const void *buf, int num)
{
    (void)ssl;
    FUZZ_CHECK(num > 0);
    /* Short writes, so the server's partial write handling runs too. */
    size_t n = 1 + tls.out.len % (size_t)num;
    FUZZ_CHECK(vk_buf_append(&tls.out, buf, n) == 0);
    tls.progress++;
    return (int)n;
}

int SSL_get_error(const SSL *s, int ret_code)
{
    (void)s;
    (void)ret_code;
    return tls.last_error;
}

int SSL_shutdown(SSL *s)
{
    (void)s;
    return 1;
}

int SSL_has_pending(const SSL *s)
{
    (void)s;
    return tls.pos < tls.len;
}

X509 *SSL_get0_peer_certificate(const SSL *s)
{
    (void)s;
    return NULL;
}

long SSL_get_verify_result(const SSL *ssl)
{
    (void)ssl;
    return X509_V_OK;
}

void ERR_clear_error(void)
{
}

unsigned long ERR_peek_last_error(void)
{
    return 0;
}

const char *ERR_reason_error_string(unsigned long e)
{
    (void)e;
    return NULL;
}

/* ---- the handler --------------------------------------------------------------- */

#define MAX_REQUESTS 256

static struct {
    size_t max_body;
    bool head[MAX_REQUESTS]; /* each request's method was HEAD */
    int requests;
    http_request *raw;       /* the upgraded connection, if any */
    http_request *later;     /* a /later request not answered yet */
    int unanswered;          /* /later requests the client left */
} app;

static void raw_closed(void *ud)
{
    (void)ud;
    app.raw = NULL;
}

static void later_closed(void *ud)
{
    (void)ud;
    FUZZ_CHECK(app.later != NULL);
    app.later = NULL;
    app.unanswered++;
}

static const http_callbacks later_callbacks = {later_closed, NULL, NULL};

static void raw_data(void *ud, const char *data, size_t len)
{
    (void)ud;
    FUZZ_CHECK(app.raw && len > 0);
    http_write(app.raw, data, len);
}

static const http_callbacks raw_callbacks = {raw_closed, NULL, raw_data};

static void handle(void *ud, http_request *r)
{
    (void)ud;
    const char *method = http_request_method(r);
    const char *path = http_request_path(r);
    FUZZ_CHECK(method && path && *path);
    if (app.requests < MAX_REQUESTS)
        app.head[app.requests] = strcmp(method, "HEAD") == 0;
    app.requests++;

    static const char *const keys[] = {"command", "port", "follow", "", "a b"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *first = http_request_query(r, keys[i]);
        FUZZ_CHECK(first == http_request_query_nth(r, keys[i], 0));
        for (int n = 1; first && http_request_query_nth(r, keys[i], n); n++)
            FUZZ_CHECK(n < 1 << 16);
    }
    static const char *const names[][2] = {
        {"Host", "host"}, {"CONTENT-TYPE", "content-type"}, {"Upgrade", "uPgRaDe"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        FUZZ_CHECK(http_request_header(r, names[i][0]) == http_request_header(r, names[i][1]));
    size_t body_len;
    const char *body = http_request_body(r, &body_len);
    FUZZ_CHECK(body && body_len <= app.max_body);
    FUZZ_CHECK(http_request_peer(r) && http_request_peer_cert(r) == NULL);

    if (http_request_is_upgrade(r) && !app.raw) {
        static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: fuzz\r\nConnection: Upgrade\r\n\r\n";
        app.raw = r;
        http_upgrade(r, head, sizeof head - 1, &raw_callbacks, NULL);
        return;
    }
    if (strcmp(path, "/later") == 0 && !app.later) {
        /* Answered once the connection goes quiet, as after a call to the
         * provider; the client may leave first. */
        app.later = r;
        http_watch(r, &later_callbacks, NULL);
        return;
    }
    if (strcmp(path, "/stream") == 0) {
        http_stream_begin(r, 200, "Content-Type: text/plain\r\n");
        http_write(r, "one\n", 4);
        http_write(r, "", 0);
        http_write(r, body, body_len);
        http_stream_end(r);
        return;
    }
    vk_buf text = VK_BUF_INIT;
    vk_buf_printf(&text, "%s %s body=%zu\n", method, path, body_len);
    http_respond(r, strcmp(path, "/missing") == 0 ? 404 : 200,
                 "Content-Type: text/plain\r\n", text.data, text.len);
    vk_buf_free(&text);
}

/* ---- checking the output --------------------------------------------------------- */

typedef struct reader {
    int responses;  /* final responses seen */
    bool upgraded;
    bool in_message;
} reader;

static int r_begin(http_parser *p)
{
    ((reader *)p->data)->in_message = true;
    return 0;
}

static int r_headers(http_parser *p)
{
    reader *rd = p->data;
    if (p->status_code == 101) {
        rd->upgraded = true;
        return 1;
    }
    if (p->status_code < 200)
        return 1; /* 100 Continue: no body, and not the final response */
    int i = rd->responses;
    return i < app.requests && i < MAX_REQUESTS && app.head[i] ? 1 : 0;
}

static int r_complete(http_parser *p)
{
    reader *rd = p->data;
    rd->in_message = false;
    if (p->status_code >= 200)
        rd->responses++;
    /* What follows a 101 is not HTTP. */
    return rd->upgraded ? -1 : 0;
}

static void check_output(void)
{
    http_parser_settings s;
    http_parser_settings_init(&s);
    s.on_message_begin = r_begin;
    s.on_headers_complete = r_headers;
    s.on_message_complete = r_complete;
    reader rd = {0, false, false};
    http_parser p;
    http_parser_init(&p, HTTP_RESPONSE);
    p.data = &rd;
    size_t n = http_parser_execute(&p, &s, tls.out.data ? tls.out.data : "", tls.out.len);
    if (!rd.upgraded) {
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK || n != tls.out.len)
            fprintf(stderr, "server output is not HTTP (%s at %zu): %.*s\n",
                    http_errno_name(HTTP_PARSER_ERRNO(&p)), n, (int)tls.out.len, tls.out.data);
        FUZZ_CHECK(HTTP_PARSER_ERRNO(&p) == HPE_OK && n == tls.out.len);
        /* The connection closed: a message cut short is an error, except
         * a body that runs to the close. */
        http_parser_execute(&p, &s, NULL, 0);
        FUZZ_CHECK(HTTP_PARSER_ERRNO(&p) == HPE_OK && !rd.in_message);
    }
    /* One response per request, plus one refusal of what followed. */
    FUZZ_CHECK(rd.responses <= app.requests + 1);
    FUZZ_CHECK(rd.upgraded || rd.responses >= app.requests - app.unanswered);
}

/* ---- the target ------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint32_t seed = fuzz_byte(&in) | 0x100u;
    unsigned opts = fuzz_byte(&in);
    memset(&app, 0, sizeof app);
    vk_buf_free(&tls.out);
    memset(&tls, 0, sizeof tls);
    tls.in = in.data;
    tls.len = in.size;
    tls.seed = seed;
    tls.eof = opts & OPT_EOF;

    struct ev_loop *loop = ev_default_loop(0);
    FUZZ_CHECK(loop != NULL);
    http_server_config cfg = {
        .loop = loop,
        .address = "127.0.0.1",
        .tls = (SSL_CTX *)&tls, /* only handed to the fake SSL_new */
        .handler = handle,
    };
    if (opts & OPT_SMALL) {
        cfg.max_head = 512;
        cfg.max_headers = 8;
        cfg.max_body = 64;
        cfg.high_water = 64;
    }
    app.max_body = cfg.max_body ? cfg.max_body : 1024 * 1024;
    char err[256];
    http_server *srv = http_server_new(&cfg, err, sizeof err);
    FUZZ_CHECK(srv != NULL);

    /* Closed with a reset, so that thousands of connections a second leave
     * no TIME_WAIT behind to run out of ports. */
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct linger reset = {1, 0};
    FUZZ_CHECK(client >= 0 && setsockopt(client, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_server_port(srv))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* libFuzzer's timer signal may cut the wait short: the connection goes
     * on, and asking again says when it is there. */
    int rc;
    while ((rc = connect(client, (struct sockaddr *)&addr, sizeof addr)) != 0 &&
           (errno == EINTR || errno == EALREADY))
        ;
    if (rc != 0 && errno != EISCONN) {
        /* Say why: a leak of descriptors or loopback ports shows here. */
        perror("fuzz_http: connect");
        abort();
    }
    FUZZ_CHECK(write(client, "!", 1) == 1);
    for (int i = 0; i < 100 && !tls.open; i++)
        ev_run(loop, EVRUN_NOWAIT);
    FUZZ_CHECK(tls.open == 1);

    /* Run until the connection closed: the client closes once the server
     * made no progress for a few rounds, and then the server must follow
     * within a bounded number of rounds. */
    int idle = 0, after_eof = 0;
    while (tls.open) {
        int before = tls.progress;
        ev_run(loop, EVRUN_NOWAIT);
        idle = tls.progress == before ? idle + 1 : 0;
        if (idle >= 4 && app.later && !(opts & OPT_HANGUP)) {
            http_respond(app.later, 200, NULL, "later\n", 6);
            app.later = NULL;
            idle = 0;
        }
        if (idle >= 4 && !tls.eof && tls.pos == tls.len) {
            if (app.raw)
                http_close(app.raw); /* the handler's side of an upgrade ends */
            app.raw = NULL;
            tls.eof = true;
        }
        if (tls.eof && tls.pos == tls.len)
            FUZZ_CHECK(++after_eof < 1000);
    }
    /* A request left waiting heard that its client went. */
    FUZZ_CHECK(app.later == NULL);
    check_output();

    http_server_free(srv);
    close(client);
    /* The loop lives on, with nothing left running: ev_run counts what is. */
    FUZZ_CHECK(ev_run(loop, EVRUN_NOWAIT) == 0);
    return 0;
}
