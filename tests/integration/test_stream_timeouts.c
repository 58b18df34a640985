/* test_stream_timeouts.c -- what bounds a kubelet API stream whose
 * provider stops talking.
 *
 *   * A container log that is not followed, whose provider sends part of
 *     it and then neither sends more nor ends the stream, ends after the
 *     kubelet API's 10 s silence limit with what arrived; a followed one
 *     stays open (a quiet container is no fault).
 *   * Exec, attach and port-forward connections (SPDY and WebSocket) on
 *     which no byte moves either way for --streaming-connection-idle-timeout
 *     are closed, and the provider's calls cancelled; traffic either way
 *     keeps a session open. The flag parses like the kubelet's.
 *
 * The pieces are the real ones, in-process, as in test_streams.c: the
 * HTTPS server, the kubelet API, the upgrade hook (kubelet_streams, its
 * idle timeout set to 2 s here) and vkc-provider-mock over gRPC, whose
 * fault file (log-silence-after, hang) is rewritten and reloaded with
 * SIGHUP between cases. The mock comes from $VKC_BIN_DIR (default
 * build/bin). The server runs on a loop thread; the tests are its clients.
 */
#include <arpa/inet.h>
#include <check.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../core/flags.h"
#include "../../core/http_server.h"
#include "../../core/kubelet_api.h"
#include "../../core/kubelet_auth.h"
#include "../../core/kubelet_streams.h"
#include "../../core/metrics.h"
#include "../../core/provider_client.h"
#include "../../core/spdy.h"
#include "../../core/tls.h"
#include "harness.h"
#include "log.h"
#include "rpc.h"
#include "work.h"

#define IDLE_TIMEOUT 2.0 /* seconds: --streaming-connection-idle-timeout=2s */
#define LOG_SILENCE_MS 10000 /* kubelet_api.c's LOG_ANSWER_DEADLINE */

/* ---- the server side ------------------------------------------------------------ */

static struct {
    pid_t mock;
    char dir[64];
    char faults[128];
    int generation; /* of the fault file */
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

/* Replace the mock's fault rules with rules (lines) and wait until it
 * uses them: each generation also fails GetMetricsResource with its own
 * message, which tells when the reload happened. */
static void use_faults(const char *rules)
{
    char marker[32];
    snprintf(marker, sizeof marker, "generation-%d", ++fx.generation);
    FILE *f = fopen(fx.faults, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\nerror GetMetricsResource UNAVAILABLE %s\n", rules, marker);
    fclose(f);
    kill(fx.mock, SIGHUP);
    bool loaded = false;
    for (long end = harness_now_ms() + 10000; !loaded && harness_now_ms() < end;) {
        vk_buf out = VK_BUF_INIT;
        vk_status st = {0};
        pc_get_metrics_resource(fx.pc, &out, &st);
        loaded = st.message && strstr(st.message, marker);
        vk_buf_free(&out);
        vk_status_clear(&st);
        if (!loaded)
            harness_sleep_ms(20);
    }
    ck_assert_msg(loaded, "the mock did not load fault generation %d", fx.generation);
}

static void start_mock(void)
{
    char bin[512], listen[128], sock[128];
    snprintf(bin, sizeof bin, "%s/vkc-provider-mock", harness_bin_dir());
    if (!harness_make_tmpdir(fx.dir, sizeof fx.dir, "vkc-timeouts"))
        abort();
    snprintf(listen, sizeof listen, "unix:%s/p.sock", fx.dir);
    snprintf(sock, sizeof sock, "%s/p.sock", fx.dir);
    snprintf(fx.faults, sizeof fx.faults, "%s/faults", fx.dir);
    FILE *f = fopen(fx.faults, "w");
    if (!f)
        abort();
    fclose(f);
    /* Not harness_provider_spawn: outside a test case, check's asserts
     * cannot report. A line every 100 ms: the pod has a few lines of log
     * at once. */
    fx.mock = fork();
    if (fx.mock == 0) {
        if (!getenv("VKC_TEST_VERBOSE")) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2);
        }
        execl(bin, bin, "--listen", listen, "--faults", fx.faults, "--log-interval", "100",
              (char *)NULL);
        _exit(127);
    }
    if (fx.mock < 0 || !harness_wait_socket(&fx.mock, sock, 10000, 10)) {
        fprintf(stderr, "mock provider (%s) did not start\n", bin);
        exit(1);
    }
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
    for (long end = harness_now_ms() + 5000; harness_now_ms() < end; harness_sleep_ms(20)) {
        vk_buf b = VK_BUF_INIT;
        bool running = pc_get_pod_status(fx.pc, "default", "p1", "", &b, &st) == VK_OK &&
                       strstr(b.data, "\"Running\"");
        vk_buf_free(&b);
        vk_status_clear(&st);
        if (running)
            break;
    }
    harness_sleep_ms(500); /* a few lines of log */
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
    /* What main.c does with --streaming-connection-idle-timeout=2s. */
    kubelet_streams_set_idle_timeout(fx.ks, IDLE_TIMEOUT);
    kubelet_streams_set_metrics(fx.ks, fx.metrics);
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
    harness_remove_tree(fx.dir);
    vk_rpc_shutdown();
}

/* The value of one series in the /metrics text ("name" or
 * "name{label=\"v\"}"), 0 when absent. */
static double metric_value(const char *series)
{
    vk_buf text = VK_BUF_INIT;
    double v = 0;
    ck_assert_int_eq(metrics_render(fx.metrics, &text), 0);
    size_t n = strlen(series);
    for (const char *p = text.data; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            v = strtod(p + n + 1, NULL);
            break;
        }
    vk_buf_free(&text);
    return v;
}

static int threads(void)
{
    char line[256];
    long n = 0;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %ld", &n) == 1)
            break;
    if (f)
        fclose(f);
    return (int)n;
}

/* ---- a TLS client ----------------------------------------------------------------- */

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

static void cli_close(struct cli *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

/* Read what the server sends (appended to got when not NULL) until it
 * closes the connection, or until stop (when not NULL) says got is
 * complete: the milliseconds that took, or -1 when neither happened
 * within max_ms. */
static long cli_drain(struct cli *c, long max_ms, vk_buf *got, bool (*stop)(const vk_buf *))
{
    long start = harness_now_ms();
    char buf[16384];
    for (;;) {
        long left = start + max_ms - harness_now_ms();
        if (left <= 0)
            return -1;
        if (!SSL_pending(c->ssl)) {
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            if (poll(&p, 1, (int)left) == 0)
                return -1;
        }
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            if (SSL_get_error(c->ssl, n) == SSL_ERROR_WANT_READ)
                continue;
            return harness_now_ms() - start; /* closed */
        }
        if (got) {
            vk_buf_append(got, buf, (size_t)n);
            if (stop && stop(got))
                return harness_now_ms() - start;
        }
    }
}

/* The server closed the connection after between lo and hi ms (measured
 * from now); fail otherwise. */
static void assert_closed_within(struct cli *c, long lo, long hi, const char *what)
{
    long ms = cli_drain(c, hi, NULL, NULL);
    ck_assert_msg(ms >= 0, "%s: the connection was still open after %ld ms", what, hi);
    ck_assert_msg(ms >= lo, "%s: closed after %ld ms, before the idle timeout", what, ms);
}

/* ---- SPDY and WebSocket clients ------------------------------------------------------ */

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
};

static void s_open(struct sclient *s, const char *path, const char *protocol)
{
    char req[1024];
    snprintf(req, sizeof req,
             "POST %s HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
             "X-Stream-Protocol-Version: %s\r\nContent-Length: 0\r\n\r\n",
             path, protocol);
    cli_open(&s->cli, req);
    ck_assert_ptr_nonnull(strstr(s->cli.head, "101 Switching Protocols"));
    s->enc = spdy_session_new(&encoder_cbs, NULL, NULL);
}

static void s_stream(struct sclient *s, uint32_t id, const char *type, const char *port)
{
    spdy_nv nv[] = {{"streamtype", type, 0}, {"port", port, 0}, {"requestid", "r1", 0}};
    ck_assert_int_eq(spdy_write_syn_stream(s->enc, id, 0, nv, port ? 3 : 1), 0);
    const uint8_t *p;
    size_t n = spdy_output(s->enc, &p);
    cli_write(&s->cli, p, n);
    spdy_output_sent(s->enc, n);
}

static void s_data(struct sclient *s, uint32_t id, const void *data, size_t len)
{
    uint8_t h[8] = {0, 0, 0, (uint8_t)id, 0, (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                    (uint8_t)len};
    cli_write(&s->cli, h, 8);
    cli_write(&s->cli, data, len);
}

static void s_close(struct sclient *s)
{
    spdy_session_free(s->enc);
    cli_close(&s->cli);
}

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
}

/* ---- logs ------------------------------------------------------------------------------ */

/* A chunked body is complete: its last chunk came. */
static bool body_complete(const vk_buf *b)
{
    return b->len >= 5 && memcmp(b->data + b->len - 5, "0\r\n\r\n", 5) == 0 &&
           (b->len == 5 || (b->len >= 7 && memcmp(b->data + b->len - 7, "\r\n", 2) == 0));
}

/* The data of a chunked body. */
static void dechunk(const vk_buf *in, vk_buf *out)
{
    const char *p = in->data, *end = in->data + in->len;
    while (p && p < end) {
        char *eol;
        unsigned long n = strtoul(p, &eol, 16);
        if (n == 0 || eol + 2 + n > end)
            break;
        vk_buf_append(out, eol + 2, n);
        p = eol + 2 + n + 2;
    }
}

static int count_lines(const vk_buf *b)
{
    int n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

START_TEST(log_not_followed_ends_after_provider_silence)
{
    use_faults("log-silence-after 3");
    double silences = metric_value("kubelet_api_log_silence_timeouts_total");
    /* Both at once: the followed one must outlive the other's limit. */
    struct cli once, follow;
    long start = harness_now_ms();
    cli_open(&once, "GET /containerLogs/default/p1/c HTTP/1.1\r\nHost: n\r\n\r\n");
    cli_open(&follow, "GET /containerLogs/default/p1/c?follow=true HTTP/1.1\r\nHost: n\r\n\r\n");
    ck_assert_ptr_nonnull(strstr(once.head, "200 OK"));
    ck_assert_ptr_nonnull(strstr(follow.head, "200 OK"));

    /* Not followed: three lines, then, once the provider was quiet for the
     * limit, a complete response (not a cut one), its stream cancelled. */
    vk_buf raw = VK_BUF_INIT, data = VK_BUF_INIT;
    long ms = cli_drain(&once, LOG_SILENCE_MS + 8000, &raw, body_complete);
    ck_assert_msg(ms >= 0, "the log did not end within %d ms of silence", LOG_SILENCE_MS + 8000);
    ck_assert_msg(body_complete(&raw), "the log was cut short, not ended: \"%.*s\"",
                  (int)raw.len, raw.data);
    long took = harness_now_ms() - start;
    ck_assert_msg(took >= LOG_SILENCE_MS - 500, "ended after %ld ms, before the limit", took);
    dechunk(&raw, &data);
    ck_assert_int_eq(count_lines(&data), 3);
    ck_assert_ptr_nonnull(strstr(data.data, "p1/c line"));
    ck_assert(metric_value("kubelet_api_log_silence_timeouts_total") == silences + 1);
    vk_buf_free(&raw);
    vk_buf_free(&data);
    cli_close(&once);

    /* Followed: the same silence is a quiet container; neither the log
     * limit nor the streaming idle timeout ends it. */
    ck_assert_int_eq(cli_drain(&follow, 2 * 1000 + 500, NULL, NULL), -1);
    cli_close(&follow);
    /* The client leaving cancels the provider's stream. */
    HARNESS_EVENTUALLY(metric_value("kubelet_api_log_streams") == 0, 5000, 20);
}
END_TEST

/* ---- exec, attach, port-forward --------------------------------------------------------- */

#define HANG_STREAMS "hang ExecInContainer\nhang AttachToContainer\nhang PortForward"

/* The bridges' threads end: the provider's calls were cancelled. */
static void assert_threads_back(int before)
{
    /* Two threads per bridge; allow a gRPC thread coming or going. */
    HARNESS_EVENTUALLY(threads() <= before + 1, 5000, 20);
}

START_TEST(spdy_exec_provider_never_answers)
{
    use_faults(HANG_STREAMS);
    double closed = metric_value("kubelet_api_stream_idle_timeouts_total{route=\"exec\"}");
    int before = threads();
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=sh&output=1", "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdout", NULL);
    assert_closed_within(&s.cli, 1500, 6000, "SPDY exec");
    s_close(&s);
    assert_threads_back(before);
    ck_assert(metric_value("kubelet_api_stream_idle_timeouts_total{route=\"exec\"}") ==
              closed + 1);
}
END_TEST

START_TEST(websocket_attach_provider_never_answers)
{
    use_faults(HANG_STREAMS);
    int before = threads();
    struct cli c;
    ws_open(&c, "/attach/default/p1/c?input=1&output=1", "v5.channel.k8s.io");
    assert_closed_within(&c, 1500, 6000, "WebSocket attach");
    cli_close(&c);
    assert_threads_back(before);
    ck_assert(metric_value("kubelet_api_stream_idle_timeouts_total{route=\"attach\"}") >= 1);
}
END_TEST

START_TEST(port_forward_provider_never_answers)
{
    use_faults(HANG_STREAMS);
    int before = threads();
    struct sclient s;
    s_open(&s, "/portForward/default/p1", "portforward.k8s.io");
    s_stream(&s, 1, "error", "8080");
    s_stream(&s, 3, "data", "8080");
    assert_closed_within(&s.cli, 1500, 6000, "SPDY port-forward");
    s_close(&s);

    struct cli c;
    ws_open(&c, "/portForward/default/p1?port=8080", "v4.channel.k8s.io");
    assert_closed_within(&c, 1500, 6000, "WebSocket port-forward");
    cli_close(&c);
    assert_threads_back(before);
    ck_assert(metric_value("kubelet_api_stream_idle_timeouts_total{route=\"portForward\"}") >= 2);
}
END_TEST

/* Bytes from the client alone keep the session: idle means no traffic
 * in either direction, not "the provider said nothing". */
START_TEST(client_traffic_keeps_the_session)
{
    use_faults(HANG_STREAMS);
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=cat&input=1&output=1", "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdin", NULL);
    s_stream(&s, 5, "stdout", NULL);
    for (int i = 0; i < 8; i++) { /* 4 s, twice the idle timeout */
        s_data(&s, 3, "x", 1);
        ck_assert_msg(cli_drain(&s.cli, 500, NULL, NULL) == -1,
                      "closed although the client sent data %d ms ago", 500);
    }
    assert_closed_within(&s.cli, 1000, 6000, "SPDY exec after the client went quiet");
    s_close(&s);
}
END_TEST

/* Output alone keeps it too: a command that only writes is not idle. */
static bool never(const vk_buf *b)
{
    (void)b;
    return false;
}

START_TEST(output_keeps_the_session)
{
    use_faults("# none");
    struct sclient s;
    s_open(&s, "/exec/default/p1/c?command=yes&output=1", "v4.channel.k8s.io");
    s_stream(&s, 1, "error", NULL);
    s_stream(&s, 3, "stdout", NULL);
    vk_buf got = VK_BUF_INIT;
    long end = harness_now_ms() + 4000;
    while (harness_now_ms() < end) {
        got.len = 0; /* keep reading, keep nothing */
        ck_assert_int_eq(cli_drain(&s.cli, 200, &got, never), -1);
        ck_assert_uint_gt(got.len, 0);
    }
    vk_buf_free(&got);
    s_close(&s);
}
END_TEST

/* ---- the flag ------------------------------------------------------------------------------ */

static int parse(const char *value, int *ms)
{
    char *argv[] = {"vkc-core", "--nodename", "n", "--provider-socket", "/tmp/x.sock",
                    (char *)value, NULL};
    FILE *null = fopen("/dev/null", "w");
    flags f;
    int rc = flags_parse(&f, value ? 6 : 5, argv, null, null);
    *ms = f.streaming_idle_timeout_ms;
    flags_free(&f);
    fclose(null);
    return rc;
}

START_TEST(flag_parses_like_the_kubelets)
{
    int ms;
    ck_assert_int_eq(parse(NULL, &ms), FLAGS_RUN);
    ck_assert_int_eq(ms, 4 * 3600 * 1000); /* the kubelet's 4h0m0s */
    ck_assert_int_eq(parse("--streaming-connection-idle-timeout=4h0m0s", &ms), FLAGS_RUN);
    ck_assert_int_eq(ms, 4 * 3600 * 1000);
    ck_assert_int_eq(parse("--streaming-connection-idle-timeout=2s", &ms), FLAGS_RUN);
    ck_assert_int_eq(ms, 2000);
    ck_assert_int_eq(parse("--streaming-connection-idle-timeout=1m30s", &ms), FLAGS_RUN);
    ck_assert_int_eq(ms, 90000);
    ck_assert_int_eq(parse("--streaming-connection-idle-timeout=0", &ms), FLAGS_RUN);
    ck_assert_int_eq(ms, 0);
    /* Under a millisecond is still a limit, not "none". */
    ck_assert_int_eq(parse("--streaming-connection-idle-timeout=500us", &ms), FLAGS_RUN);
    ck_assert_int_eq(ms, 1);

    /* Bad values: exit status 2 and one line naming the flag. */
    const char *bad[] = {"=5", "=-1s", "=4x", "=", "=1y"};
    char core[512];
    snprintf(core, sizeof core, "%s/vkc-core", harness_bin_dir());
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char flag[128];
        snprintf(flag, sizeof flag, "--streaming-connection-idle-timeout%s", bad[i]);
        char *argv[] = {core, "--nodename", "n", "--provider-socket", "/tmp/x.sock", flag, NULL};
        vk_buf out = VK_BUF_INIT;
        int status = harness_run(argv, &out);
        ck_assert_msg(status == 2, "%s: exit %d, output %s", flag, status, out.data);
        ck_assert_msg(strstr(out.data, "--streaming-connection-idle-timeout: bad duration"),
                      "%s: %s", flag, out.data);
        vk_buf_free(&out);
    }
    /* Longer than the int of milliseconds holds: said so, not "bad". */
    char *too_long[] = {core, "--nodename", "n", "--provider-socket", "/tmp/x.sock",
                        "--streaming-connection-idle-timeout=720h", NULL};
    vk_buf tl = VK_BUF_INIT;
    ck_assert_int_eq(harness_run(too_long, &tl), 2);
    ck_assert_msg(strstr(tl.data, "\"720h\" is too long (at most 596h)"), "%s", tl.data);
    vk_buf_free(&tl);
    char *help[] = {core, "--help", NULL};
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(harness_run(help, &out), 0);
    ck_assert_ptr_nonnull(strstr(out.data, "--streaming-connection-idle-timeout"));
    ck_assert_ptr_nonnull(strstr(out.data, "4h0m0s"));
    vk_buf_free(&out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("stream_timeouts");
    TCase *t = tcase_create("core");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, flag_parses_like_the_kubelets);
    tcase_add_test(t, log_not_followed_ends_after_provider_silence);
    tcase_add_test(t, spdy_exec_provider_never_answers);
    tcase_add_test(t, websocket_attach_provider_never_answers);
    tcase_add_test(t, port_forward_provider_never_answers);
    tcase_add_test(t, client_traffic_keeps_the_session);
    tcase_add_test(t, output_keeps_the_session);
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
