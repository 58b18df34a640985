/* test_streams.c -- exec, attach, port-forward and run through the real
 * pieces: the HTTPS server, the kubelet API's routing and checks
 * (kubelet_api, anonymous and always allowed here), the upgrade hook
 * (kubelet_streams), the SPDY and WebSocket sessions, the exec bridges and
 * vkc-provider-mock over gRPC. The client side speaks the bytes kubectl
 * and WebSocket clients send, over TLS on a loopback socket.
 *
 * The mock comes from $VKC_BIN_DIR (default build/bin). The server runs on
 * a loop thread; the tests are its clients. */
#include <arpa/inet.h>
#include <check.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../../core/http_server.h"
#include "../../core/kubelet_api.h"
#include "../../core/kubelet_auth.h"
#include "../../core/kubelet_streams.h"
#include "../../core/metrics.h"
#include "../../core/provider_client.h"
#include "../../core/spdy.h"
#include "../../core/tls.h"
#include "log.h"
#include "work.h"

/* ---- the server side ------------------------------------------------------------ */

static struct {
    pid_t mock;
    char dir[64];
    provider_client *pc;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async stop;
    http_server *srv;
    vk_pool *pool;
    metrics *metrics;
    kubelet_auth *auth;
    kubelet_api *api;
    kubelet_streams *ks;
    SSL_CTX *tls;
    int port;
} fx;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The one pod bound to the node, in the mock and in the pod source. */
static const char pod_json[] = "{\"metadata\":{\"name\":\"p1\",\"namespace\":\"default\","
                               "\"uid\":\"u1\"},\"spec\":{\"containers\":[{\"name\":\"c\","
                               "\"image\":\"busybox\"}]}}";

static int pod_hook(void *ud, const char *ns, const char *name, vk_buf *out)
{
    (void)ud;
    if (strcmp(ns, "default") != 0 || strcmp(name, "p1") != 0)
        return 1;
    return vk_buf_puts(out, pod_json);
}

static void on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    ev_run(fx.loop, 0);
    return NULL;
}

static void start_mock(void)
{
    char bin[512], listen[128], sock[128];
    const char *dir = getenv("VKC_BIN_DIR");
    snprintf(bin, sizeof bin, "%s/vkc-provider-mock", dir && dir[0] ? dir : "build/bin");
    snprintf(fx.dir, sizeof fx.dir, "/tmp/vkc-streams-XXXXXX");
    if (!mkdtemp(fx.dir))
        abort();
    snprintf(listen, sizeof listen, "unix:%s/p.sock", fx.dir);
    snprintf(sock, sizeof sock, "%s/p.sock", fx.dir);
    fx.mock = fork();
    if (fx.mock == 0) {
        if (!getenv("VKC_TEST_VERBOSE")) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2);
        }
        execl(bin, bin, "--listen", listen, (char *)NULL);
        _exit(127);
    }
    for (long end = now_ms() + 10000; access(sock, F_OK) != 0 && now_ms() < end;)
        usleep(10000);
    fx.pc = pc_new(listen, 5000, NULL);
    pc_info info = {0};
    vk_status st = {0};
    if (!pc_wait_ready(fx.pc, 10000) ||
        pc_handshake(fx.pc, "node", "unix:/nonexistent", 5000, &info, &st) != VK_OK) {
        fprintf(stderr, "mock provider (%s) did not come up: %s\n", bin,
                st.message ? st.message : "");
        exit(1);
    }
    pc_info_clear(&info);
    if (pc_create_pod(fx.pc, pod_json, sizeof pod_json - 1, &st) != VK_OK) {
        fprintf(stderr, "create pod: %s\n", st.message);
        exit(1);
    }
    /* Exec wants a running container: the mock starts pods at once. */
    for (long end = now_ms() + 5000; now_ms() < end; usleep(20000)) {
        vk_buf b = VK_BUF_INIT;
        bool running = pc_get_pod_status(fx.pc, "default", "p1", "", &b, &st) == VK_OK &&
                       strstr(b.data, "\"Running\"");
        vk_buf_free(&b);
        vk_status_clear(&st);
        if (running)
            break;
    }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("VKC_TEST_VERBOSE"))
        vk_log_set_level(VK_LOG_DEBUG);
    vk_rpc_init();
    start_mock();
    char err[256];
    const char *hosts[] = {"127.0.0.1"};
    tls_config tc = {.hosts = hosts, .n_hosts = 1};
    fx.tls = tls_server_context(&tc, err, sizeof err);
    fx.loop = ev_loop_new(0);
    fx.ks = kubelet_streams_new(fx.loop);
    fx.pool = vk_pool_new(fx.loop, 1, 8);
    fx.metrics = metrics_new();
    kubelet_auth_config ac = {.node_name = "node", .anonymous = true,
                              .mode = KUBELET_AUTHZ_ALWAYS_ALLOW};
    fx.auth = kubelet_auth_new(&ac, err, sizeof err);
    kubelet_api_config kc = {.loop = fx.loop, .node_name = "node", .pool = fx.pool,
                             .metrics = fx.metrics, .auth = fx.auth, .pod = pod_hook};
    fx.api = fx.pool && fx.metrics && fx.auth ? kubelet_api_new(&kc) : NULL;
    if (!fx.api || !fx.ks) {
        fprintf(stderr, "kubelet API: %s\n", fx.auth ? "out of memory" : err);
        exit(1);
    }
    kubelet_api_set_upgrade(fx.api, kubelet_streams_upgrade, fx.ks);
    supervisor_listener l = kubelet_api_listener(fx.api);
    l.up(l.ud, fx.pc, NULL);
    http_server_config cfg = {
        .loop = fx.loop, .address = "127.0.0.1", .tls = fx.tls, .handler = kubelet_api_handle,
        .ud = fx.api,
    };
    fx.srv = fx.tls ? http_server_new(&cfg, err, sizeof err) : NULL;
    if (!fx.srv) {
        fprintf(stderr, "server: %s\n", err);
        exit(1);
    }
    fx.port = http_server_port(fx.srv);
    ev_async_init(&fx.stop, on_stop);
    ev_async_start(fx.loop, &fx.stop);
    pthread_create(&fx.thread, NULL, loop_main, NULL);
}

static void teardown(void)
{
    ev_async_send(fx.loop, &fx.stop);
    pthread_join(fx.thread, NULL);
    http_server_free(fx.srv);
    kubelet_streams_free(fx.ks);
    vk_pool_free(fx.pool);
    kubelet_api_free(fx.api);
    kubelet_auth_free(fx.auth);
    metrics_free(fx.metrics);
    ev_async_stop(fx.loop, &fx.stop);
    ev_loop_destroy(fx.loop);
    SSL_CTX_free(fx.tls);
    pc_unref(fx.pc);
    if (fx.mock > 0) {
        kill(fx.mock, SIGTERM);
        waitpid(fx.mock, NULL, 0);
    }
    char sock[128];
    snprintf(sock, sizeof sock, "%s/p.sock", fx.dir);
    unlink(sock);
    rmdir(fx.dir);
    vk_rpc_shutdown();
}

/* ---- a blocking TLS client ---------------------------------------------------------- */

struct cli {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char head[4096]; /* the response head */
};

static void cli_open(struct cli *c, const char *request)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fx.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct timeval tv = {10, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    ck_assert_int_eq(SSL_connect(c->ssl), 1);
    ck_assert_int_eq(SSL_write(c->ssl, request, (int)strlen(request)), (int)strlen(request));
    size_t n = 0;
    while (n < 4 || memcmp(c->head + n - 4, "\r\n\r\n", 4) != 0) {
        ck_assert_uint_lt(n, sizeof c->head - 1);
        ck_assert_int_eq(SSL_read(c->ssl, c->head + n, 1), 1);
        n++;
    }
    c->head[n] = '\0';
}

static void cli_write(struct cli *c, const void *data, size_t len)
{
    if (len)
        ck_assert_int_eq(SSL_write(c->ssl, data, (int)len), (int)len);
}

/* Exactly len bytes; false at the end of the connection. */
static bool cli_read(struct cli *c, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        int r = SSL_read(c->ssl, (char *)buf + got, (int)(len - got));
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void cli_close(struct cli *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

/* ---- SPDY client ------------------------------------------------------------------------- */

static int refuse_all(void *u, uint32_t id, const spdy_headers *h)
{
    (void)u, (void)id, (void)h;
    return SPDY_REFUSED_STREAM;
}
static void ignore_data(void *u, uint32_t id, const uint8_t *d, size_t l)
{
    (void)u, (void)id, (void)d, (void)l;
}
static const spdy_callbacks encoder_cbs = {refuse_all, ignore_data, NULL, NULL, NULL};

struct sclient {
    struct cli cli;
    spdy_session *enc; /* the client's compression context */
    z_stream inf;
    bool inf_ready;
    /* what the server sent, by stream id (odd, < 32) */
    char data[32][8192];
    size_t len[32];
    bool fin[32], replied[32], reset[32];
    bool goaway;
};

static void s_open(struct sclient *s, const char *path, const char *protocol)
{
    memset(s, 0, sizeof *s);
    char req[1024];
    snprintf(req, sizeof req,
             "POST %s HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
             "X-Stream-Protocol-Version: %s\r\nContent-Length: 0\r\n\r\n",
             path, protocol);
    cli_open(&s->cli, req);
    s->enc = spdy_session_new(&encoder_cbs, NULL, NULL);
}

static void s_flush(struct sclient *s)
{
    const uint8_t *p;
    size_t n = spdy_output(s->enc, &p);
    cli_write(&s->cli, p, n);
    spdy_output_sent(s->enc, n);
}

static void s_stream(struct sclient *s, uint32_t id, const char *type, const char *port)
{
    spdy_nv nv[] = {{"streamtype", type, 0}, {"port", port, 0}, {"requestid", "r1", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(s->enc, id, 0, nv, port ? 3 : 1), 0);
    s_flush(s);
}

static void s_data(struct sclient *s, uint32_t id, bool fin, const void *data, size_t len)
{
    uint8_t h[8] = {0, 0, 0, (uint8_t)id, fin ? SPDY_FLAG_FIN : 0, (uint8_t)(len >> 16),
                    (uint8_t)(len >> 8), (uint8_t)len};
    cli_write(&s->cli, h, 8);
    cli_write(&s->cli, data, len);
}

/* The next frame: its 8-byte head in h, its payload in payload (1 MiB).
 * False at the end of the connection. */
static bool s_frame(struct sclient *s, uint8_t h[8], uint8_t *payload, size_t *len)
{
    if (!cli_read(&s->cli, h, 8))
        return false;
    *len = (size_t)h[5] << 16 | (size_t)h[6] << 8 | h[7];
    ck_assert_uint_le(*len, 1u << 20);
    ck_assert(cli_read(&s->cli, payload, *len));
    return true;
}

/* The stream of a data frame (control frames have the top bit set). */
static uint32_t data_id(const uint8_t h[8])
{
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* Take in one frame: data goes to its stream's buffer, control frames
 * update the session's state. */
static void s_take(struct sclient *s, const uint8_t h[8], uint8_t *payload, size_t len)
{
    uint32_t id = data_id(h);
    if (!(h[0] & 0x80)) {
        ck_assert_uint_lt(id, 32);
        ck_assert(s->replied[id]);
        ck_assert_uint_le(s->len[id] + len, sizeof s->data[id] - 1);
        memcpy(s->data[id] + s->len[id], payload, len);
        s->len[id] += len;
        if (h[4] & SPDY_FLAG_FIN)
            s->fin[id] = true;
        return;
    }
    uint16_t type = (uint16_t)(h[2] << 8 | h[3]);
    id = (uint32_t)payload[2] << 8 | payload[3];
    if (type == SPDY_SYN_REPLY) {
        /* Keep the inflater in step, as a real client must. */
        if (!s->inf_ready) {
            ck_assert_int_eq(inflateInit(&s->inf), Z_OK);
            s->inf_ready = true;
        }
        uint8_t out[256];
        s->inf.next_in = payload + 4;
        s->inf.avail_in = (uInt)(len - 4);
        s->inf.next_out = out;
        s->inf.avail_out = sizeof out;
        int r = inflate(&s->inf, Z_SYNC_FLUSH);
        if (r == Z_NEED_DICT) {
            inflateSetDictionary(&s->inf, spdy_dictionary, (uInt)spdy_dictionary_len);
            r = inflate(&s->inf, Z_SYNC_FLUSH);
        }
        ck_assert_int_eq(r, Z_OK);
        ck_assert_uint_eq(sizeof out - s->inf.avail_out, 4); /* no headers */
        s->replied[id] = true;
    } else if (type == SPDY_RST_STREAM) {
        s->reset[id] = true;
    } else if (type == SPDY_GOAWAY) {
        s->goaway = true;
    }
}

/* Read frames until the server closes the connection or, when until is
 * not 0, until stream until has ended or holds at least min bytes. */
static void s_read(struct sclient *s, uint32_t until, size_t min)
{
    static uint8_t payload[1 << 20];
    uint8_t h[8];
    size_t len;
    while ((!until || (!s->fin[until] && (!min || s->len[until] < min))) &&
           s_frame(s, h, payload, &len))
        s_take(s, h, payload, len);
}

static void s_close(struct sclient *s)
{
    if (s->inf_ready)
        inflateEnd(&s->inf);
    spdy_session_free(s->enc);
    cli_close(&s->cli);
}

/* ---- tests ------------------------------------------------------------------------------- */

START_TEST(spdy_exec_exit_code)
{
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=sh&input=1&output=1&error=1", "v4.channel.k8s.io");
    ck_assert_ptr_nonnull(strstr(s.cli.head, "101 Switching Protocols"));
    ck_assert_ptr_nonnull(strstr(s.cli.head, "X-Stream-Protocol-Version: v4.channel.k8s.io"));
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdin", NULL);
    s_stream(&s, 5, "stdout", NULL);
    s_stream(&s, 7, "stderr", NULL);
    const char *in = "echo hi\nnosuch\nexit 3\n";
    s_data(&s, 3, true, in, strlen(in));
    s_read(&s, 0, 0);
    ck_assert(s.goaway);
    ck_assert(s.fin[5] && s.fin[7] && s.fin[1]);
    ck_assert_str_eq(s.data[5], "hi\n");
    ck_assert_ptr_nonnull(strstr(s.data[7], "nosuch"));
    ck_assert_ptr_nonnull(strstr(s.data[1], "\"reason\":\"NonZeroExitCode\""));
    ck_assert_ptr_nonnull(strstr(s.data[1], "{\"reason\":\"ExitCode\",\"message\":\"3\"}"));
    s_close(&s);
}
END_TEST

/* The response to a request that is not upgraded: the head is read, the
 * body (Content-Length bytes) goes to body. */
static void cli_body(struct cli *c, char *body, size_t size)
{
    const char *cl = strcasestr(c->head, "Content-Length:");
    ck_assert_ptr_nonnull(cl);
    size_t n = strtoul(cl + 15, NULL, 10);
    ck_assert_uint_lt(n, size);
    ck_assert(cli_read(c, body, n));
    body[n] = '\0';
}

/* A Kubernetes Status answer with this code and reason, before any
 * upgrade. */
static void assert_status(const char *request, int code, const char *reason,
                          const char *in_message)
{
    struct cli c;
    char body[2048], status[16];
    cli_open(&c, request);
    snprintf(status, sizeof status, " %d ", code);
    ck_assert_msg(strstr(c.head, status), "expected %d, got: %s", code, c.head);
    ck_assert_ptr_null(strcasestr(c.head, "Upgrade"));
    ck_assert_ptr_nonnull(strcasestr(c.head, "Content-Type: application/json"));
    cli_body(&c, body, sizeof body);
    ck_assert_ptr_nonnull(strstr(body, "\"kind\":\"Status\""));
    ck_assert_ptr_nonnull(strstr(body, "\"apiVersion\":\"v1\""));
    ck_assert_ptr_nonnull(strstr(body, "\"status\":\"Failure\""));
    char want[64];
    snprintf(want, sizeof want, "\"reason\":\"%s\"", reason);
    ck_assert_msg(strstr(body, want), "no %s in %s", want, body);
    snprintf(want, sizeof want, "\"code\":%d", code);
    ck_assert_msg(strstr(body, want), "no %s in %s", want, body);
    ck_assert_msg(strstr(body, in_message), "no \"%s\" in %s", in_message, body);
    cli_close(&c);
}

#define SPDY_UPGRADE(path, proto)                                                              \
    "POST " path " HTTP/1.1\r\nHost: n\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"         \
    "X-Stream-Protocol-Version: " proto "\r\nContent-Length: 0\r\n\r\n"
#define WS_UPGRADE(path, proto)                                                                \
    "GET " path " HTTP/1.1\r\nHost: n\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"          \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"               \
    "Sec-WebSocket-Protocol: " proto "\r\n\r\n"

/* An unknown pod or container is a 404 Status, not a 101 followed by an
 * error on the error stream. */
START_TEST(unknown_pod_or_container_is_404)
{
    assert_status(SPDY_UPGRADE("/exec/default/nope/c?command=sh&output=1", "v4.channel.k8s.io"),
                  404, "NotFound", "pod default/nope not found");
    assert_status(WS_UPGRADE("/exec/default/p1/nope?command=sh&output=1", "v5.channel.k8s.io"),
                  404, "NotFound", "container nope not found in pod default/p1");
    assert_status(SPDY_UPGRADE("/exec/default/p1/u2/c?command=sh&output=1", "v4.channel.k8s.io"),
                  404, "NotFound", "pod default/p1 with UID u2 not found");
    assert_status(WS_UPGRADE("/attach/default/nope/c?output=1", "v4.channel.k8s.io"), 404,
                  "NotFound", "pod default/nope not found");
    assert_status(SPDY_UPGRADE("/portForward/default/nope", "portforward.k8s.io"), 404,
                  "NotFound", "pod default/nope not found");
    assert_status("POST /run/default/p1/nope?cmd=echo%20x HTTP/1.1\r\nHost: n\r\n"
                  "Content-Length: 0\r\n\r\n",
                  404, "NotFound", "container nope not found in pod default/p1");
    /* Logs too: from the pod cache, before any provider call. */
    assert_status("GET /containerLogs/default/nope/c HTTP/1.1\r\nHost: n\r\n\r\n", 404,
                  "NotFound", "pod default/nope not found");
    assert_status("GET /containerLogs/default/p1/nope?follow=true HTTP/1.1\r\nHost: n\r\n\r\n",
                  404, "NotFound", "container nope not found in pod default/p1");
    /* The right UID is fine. */
    struct sclient s;
    s_open(&s, "/exec/default/p1/u1/c?command=echo&command=ok&output=1", "v4.channel.k8s.io");
    ck_assert_ptr_nonnull(strstr(s.cli.head, "101 Switching Protocols"));
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdout", NULL);
    s_read(&s, 0, 0);
    ck_assert_str_eq(s.data[3], "ok\n");
    s_close(&s);
}
END_TEST

/* Names Kubernetes does not allow are a 400 Status before anything else. */
START_TEST(bad_names_are_400)
{
    assert_status(SPDY_UPGRADE("/exec/default/../c?command=sh&output=1", "v4.channel.k8s.io"),
                  400, "BadRequest", "invalid pod name");
    assert_status(SPDY_UPGRADE("/exec/default/p1/%2e%2e?command=sh&output=1",
                               "v4.channel.k8s.io"),
                  400, "BadRequest", "invalid container name");
    assert_status(SPDY_UPGRADE("/portForward/./p1", "portforward.k8s.io"), 400, "BadRequest",
                  "invalid namespace");
}
END_TEST

/* A number from /proc/PID/status ("Threads", "VmRSS" in KiB, ...); pid 0
 * is this process, which runs the core's side. */
static long proc_status(pid_t pid, const char *key)
{
    char path[64], line[256], fmt[64];
    snprintf(path, sizeof path, pid ? "/proc/%d/status" : "/proc/self/status", (int)pid);
    snprintf(fmt, sizeof fmt, "%s: %%ld", key);
    long n = 0;
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, fmt, &n) == 1)
            break;
    if (f)
        fclose(f);
    return n;
}

static int threads(void)
{
    return (int)proc_status(0, "Threads");
}

START_TEST(spdy_client_goes_away_mid_exec)
{
    /* Commands that would run for long; the client hangs up. The server
     * must cancel them (their bridge threads end) and keep serving. */
    int before = threads();
    for (int i = 0; i < 3; i++) {
        struct sclient s;
        s_open(&s, "/exec/default/p1/c?command=sh&input=1&output=1", "v4.channel.k8s.io");
        s_stream(&s, 1, "error", NULL);
        s_stream(&s, 3, "stdin", NULL);
        s_stream(&s, 5, "stdout", NULL);
        s_data(&s, 3, false, "echo up\n", 8);
        s_read(&s, 5, 3);
        ck_assert_msg(strcmp(s.data[5], "up\n") == 0, "stdout \"%s\" fin %d goaway %d reset %d err \"%s\"",
                      s.data[5], s.fin[5], s.goaway, s.reset[5], s.data[1]);
        s_data(&s, 3, false, "sleep 100\n", 10);
        s_close(&s);
    }
    /* Two threads per running exec; allow a gRPC thread coming or going. */
    long end = now_ms() + 10000;
    while (threads() > before + 1 && now_ms() < end)
        usleep(20000);
    ck_assert_int_le(threads(), before + 1);
}
END_TEST

/* A resize message that is not a terminal size: a BadRequest on the error
 * stream, the command cancelled (its bridge threads end), the connection
 * closed; the server goes on serving. */
START_TEST(spdy_bad_resize_ends_the_session)
{
    int before = threads();
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=sh&input=1&output=1&tty=1", "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdin", NULL);
    s_stream(&s, 5, "stdout", NULL);
    s_stream(&s, 7, "resize", NULL);
    const char *good = "{\"Width\":100,\"Height\":30}\n";
    s_data(&s, 7, false, good, strlen(good));
    s_data(&s, 3, false, "stty size\n", 10);
    /* The mock's shell answers at once; a loaded machine may take a while. */
    for (long end = now_ms() + 15000; !strstr(s.data[5], "30 100") && now_ms() < end;)
        s_read(&s, 5, s.len[5] + 1);
    ck_assert_msg(strstr(s.data[5], "30 100"), "stdout: %s", s.data[5]);
    s_data(&s, 7, false, "not json\n", 9);
    s_read(&s, 0, 0);
    ck_assert(s.goaway);
    ck_assert(s.fin[1]);
    ck_assert_ptr_nonnull(strstr(s.data[1], "\"reason\":\"BadRequest\""));
    ck_assert_ptr_nonnull(strstr(s.data[1], "invalid resize message"));
    s_close(&s);
    long end = now_ms() + 10000;
    while (threads() > before + 1 && now_ms() < end)
        usleep(20000);
    ck_assert_int_le(threads(), before + 1);
    /* Nothing else is affected. */
    s_open(&s, "/exec/default/p1/c?command=echo&command=still&output=1", "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdout", NULL);
    s_read(&s, 0, 0);
    ck_assert_str_eq(s.data[3], "still\n");
    s_close(&s);
}
END_TEST

START_TEST(spdy_bad_requests)
{
    struct cli c;
    cli_open(&c, "POST /exec/default/p1/c?command=sh&output=1 HTTP/1.1\r\nHost: n\r\n"
                 "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                 "X-Stream-Protocol-Version: v9.channel.k8s.io\r\nContent-Length: 0\r\n\r\n");
    ck_assert_ptr_nonnull(strstr(c.head, " 403 "));
    ck_assert_ptr_nonnull(strstr(c.head, "X-Accepted-Stream-Protocol-Versions: v4.channel.k8s.io"));
    cli_close(&c);
    cli_open(&c, "POST /exec/default/p1/c?command=sh HTTP/1.1\r\nHost: n\r\n"
                 "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                 "X-Stream-Protocol-Version: v4.channel.k8s.io\r\nContent-Length: 0\r\n\r\n");
    ck_assert_ptr_nonnull(strstr(c.head, " 400 "));
    cli_close(&c);
}
END_TEST

START_TEST(spdy_port_forward_echo)
{
    struct sclient s;
    s_open(&s, "/portForward/default/p1", "portforward.k8s.io");
    ck_assert_ptr_nonnull(strstr(s.cli.head, "101 Switching Protocols"));
    s_stream(&s, 1, "error", "8080");
    s_stream(&s, 3, "data", "8080");
    s_data(&s, 3, true, "ping", 4);
    s_read(&s, 3, 0);
    ck_assert_str_eq(s.data[3], "ping");
    s_read(&s, 1, 0);
    ck_assert_uint_eq(s.len[1], 0); /* no error */
    s_close(&s);
}
END_TEST

/* ---- WebSocket ------------------------------------------------------------------------------- */

static void ws_open(struct cli *c, const char *path, const char *protocol)
{
    char req[1024];
    snprintf(req, sizeof req,
             "GET %s HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: %s\r\n\r\n",
             path, protocol);
    cli_open(c, req);
    ck_assert_ptr_nonnull(strstr(c->head, "101 Switching Protocols"));
    ck_assert_ptr_nonnull(strstr(c->head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

static void ws_send(struct cli *c, const void *data, size_t len)
{
    uint8_t f[256] = {0x82, (uint8_t)(0x80 | len), 1, 2, 3, 4};
    ck_assert_uint_lt(len, 126);
    for (size_t i = 0; i < len; i++)
        f[6 + i] = ((const uint8_t *)data)[i] ^ f[2 + i % 4];
    cli_write(c, f, 6 + len);
}

/* The next message: its opcode, payload in buf. */
static int ws_recv(struct cli *c, uint8_t *buf, size_t *len)
{
    uint8_t h[2];
    if (!cli_read(c, h, 2))
        return -1;
    size_t n = h[1] & 0x7f;
    if (n == 126) {
        uint8_t e[2];
        ck_assert(cli_read(c, e, 2));
        n = (size_t)e[0] << 8 | e[1];
    }
    ck_assert_uint_lt(n, 4096);
    ck_assert(cli_read(c, buf, n));
    buf[n] = 0;
    *len = n;
    return h[0] & 0x0f;
}

START_TEST(websocket_v5_cat)
{
    struct cli c;
    ws_open(&c, "/exec/default/p1/c?command=cat&input=1&output=1", "v5.channel.k8s.io");
    uint8_t buf[4096];
    size_t n;
    ck_assert_int_eq(ws_recv(&c, buf, &n), 2);
    ck_assert_uint_eq(n, 1); /* the hello on stdout */
    ws_send(&c, "\0meow\n", 6);
    ws_send(&c, "\xff\0", 2); /* v5: stdin is over */
    char out[256] = "";
    bool closed = false;
    for (int op; !closed && (op = ws_recv(&c, buf, &n)) >= 0;) {
        if (op == 8)
            closed = true;
        else if (buf[0] == 1)
            strncat(out, (char *)buf + 1, sizeof out - strlen(out) - 1);
        else if (buf[0] == 3)
            ck_assert_str_eq((char *)buf + 1, "{\"metadata\":{},\"status\":\"Success\"}");
    }
    ck_assert(closed);
    ck_assert_str_eq(out, "meow\n");
    cli_close(&c);
}
END_TEST

START_TEST(websocket_port_forward)
{
    struct cli c;
    ws_open(&c, "/portForward/default/p1?port=8080", "v4.channel.k8s.io");
    uint8_t buf[4096];
    size_t n;
    for (int ch = 0; ch < 2; ch++) {
        ck_assert_int_eq(ws_recv(&c, buf, &n), 2);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(buf[0], ch);
        ck_assert_uint_eq(buf[1] | buf[2] << 8, 8080);
    }
    ws_send(&c, "\0echo me", 8);
    ck_assert_int_eq(ws_recv(&c, buf, &n), 2);
    ck_assert_uint_eq(buf[0], 0);
    ck_assert_str_eq((char *)buf + 1, "echo me");
    cli_close(&c);
}
END_TEST

START_TEST(spdy_exec_arguments)
{
    /* Repeated command parameters are the arguments, in order. */
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=echo&command=a%20b&command=c&output=1",
           "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdout", NULL);
    s_read(&s, 0, 0);
    ck_assert_str_eq(s.data[3], "a b c\n");
    ck_assert_str_eq(s.data[1], "{\"metadata\":{},\"status\":\"Success\"}");
    s_close(&s);
}
END_TEST

START_TEST(run_command)
{
    struct cli c;
    cli_open(&c, "POST /run/default/p1/c?cmd=echo%20ran HTTP/1.1\r\nHost: n\r\n"
                 "Content-Length: 0\r\n\r\n");
    ck_assert_ptr_nonnull(strstr(c.head, " 200 "));
    char body[16] = "";
    ck_assert(cli_read(&c, body, 4));
    ck_assert_str_eq(body, "ran\n");
    cli_close(&c);
}
END_TEST

/* CPU time the process has used, all threads, in clock ticks. */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* utime and stime are fields 14 and 15; the name before them, in
     * parentheses, may hold blanks. */
    const char *p = strrchr(buf, ')');
    unsigned long user = 0, sys = 0;
    ck_assert(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                          &user, &sys) == 2);
    return (long)(user + sys);
}

/* Read stdout (stream id) of a yes exec until want more bytes came,
 * checking that they go on with "y\n" from *at, the bytes read so far. */
static void s_read_yes(struct sclient *s, uint32_t id, size_t *at, size_t want)
{
    static uint8_t payload[1 << 20];
    uint8_t h[8];
    size_t len;
    for (size_t end = *at + want; *at < end;) {
        ck_assert(s_frame(s, h, payload, &len));
        if (h[0] & 0x80 || data_id(h) != id) {
            s_take(s, h, payload, len);
            continue;
        }
        ck_assert(!(h[4] & SPDY_FLAG_FIN));
        size_t i = 0;
        while (i < len && payload[i] == "y\n"[(*at + i) % 2])
            i++;
        ck_assert_msg(i == len, "byte %zu of stdout is %#x", *at + i, payload[i]);
        *at += len;
    }
}

/* A client that stops reading an endless command (the mock's yes). The
 * provider's writes must stall instead of piling up in the core: the mock
 * stops using CPU, and the core, which runs in this process, stops
 * growing (VmRSS). Reading again resumes the same byte stream; hanging up
 * cancels the call. */
START_TEST(spdy_exec_backpressure)
{
    int before = threads();
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=yes&output=1", "v4.channel.k8s.io");
    ck_assert_ptr_nonnull(strstr(s.cli.head, "101 Switching Protocols"));
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdout", NULL);
    size_t at = 0;
    s_read_yes(&s, 3, &at, 1u << 20);

    /* Not reading: sockets, gRPC windows and the bridge queue fill, then
     * the provider waits. Most of what is held sits in kernel socket
     * buffers (tcp_rmem), which VmRSS does not count; what the core holds
     * must not grow. The machine may be busy: allow a few ticks. */
    long cpu = cpu_ticks(fx.mock), busy = -1;
    for (long end = now_ms() + 20000; now_ms() < end && (busy < 0 || busy > 2);) {
        usleep(500000);
        long now = cpu_ticks(fx.mock);
        busy = now - cpu;
        cpu = now;
    }
    ck_assert_msg(busy >= 0 && busy <= 2, "the provider still ran %ld ticks in 0.5 s", busy);
    long rss = proc_status(0, "VmRSS");
    long mock_threads = proc_status(fx.mock, "Threads");
    usleep(3000000);
    busy = cpu_ticks(fx.mock) - cpu;
    long grew = proc_status(0, "VmRSS") - rss;
    ck_assert_msg(busy <= 10, "the provider ran %ld ticks in 3 s while the client did not read",
                  busy);
    ck_assert_msg(grew < 4096, "the core grew by %ld KiB in 3 s while the client did not read",
                  grew);

    /* Reading again: what was held comes intact, and the provider runs
     * again (production resumed, not just buffers drained). */
    cpu = cpu_ticks(fx.mock);
    for (long end = now_ms() + 20000; now_ms() < end && cpu_ticks(fx.mock) - cpu < 5;)
        s_read_yes(&s, 3, &at, 256u << 10);
    ck_assert_msg(cpu_ticks(fx.mock) - cpu >= 5, "yes did not resume after %zu bytes", at);

    /* Hanging up cancels the call: the bridge's threads here and the
     * call's reader thread in the mock end. */
    s_close(&s);
    long end = now_ms() + 10000;
    while ((threads() > before + 1 || proc_status(fx.mock, "Threads") >= mock_threads) &&
           now_ms() < end)
        usleep(20000);
    ck_assert_int_le(threads(), before + 1);
    ck_assert_int_lt(proc_status(fx.mock, "Threads"), mock_threads);
}
END_TEST

/* Last: it takes the provider down. */
START_TEST(provider_dies_mid_exec)
{
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=sh&input=1&output=1", "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdin", NULL);
    s_stream(&s, 5, "stdout", NULL);
    s_data(&s, 3, false, "echo up\n", 8);
    s_read(&s, 5, 3);
    ck_assert_str_eq(s.data[5], "up\n");
    kill(fx.mock, SIGKILL);
    waitpid(fx.mock, NULL, 0);
    fx.mock = 0;
    /* The client hears why, on the error stream, and the connection ends. */
    s_read(&s, 0, 0);
    ck_assert(s.goaway);
    ck_assert(s.fin[5] && s.fin[1]);
    ck_assert_ptr_nonnull(strstr(s.data[1], "\"reason\":\"InternalError\""));
    ck_assert_ptr_nonnull(strstr(s.data[1], "provider: "));
    s_close(&s);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("streams");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, spdy_exec_exit_code);
    tcase_add_test(t, unknown_pod_or_container_is_404);
    tcase_add_test(t, bad_names_are_400);
    tcase_add_test(t, spdy_bad_resize_ends_the_session);
    tcase_add_test(t, spdy_client_goes_away_mid_exec);
    tcase_add_test(t, spdy_bad_requests);
    tcase_add_test(t, spdy_port_forward_echo);
    tcase_add_test(t, websocket_v5_cat);
    tcase_add_test(t, websocket_port_forward);
    tcase_add_test(t, spdy_exec_arguments);
    tcase_add_test(t, run_command);
    tcase_add_test(t, spdy_exec_backpressure);
    tcase_add_test(t, provider_dies_mid_exec);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    setup();
    SRunner *sr = srunner_create(suite());
    /* The server runs on a thread of this process: no forking. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    teardown();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
