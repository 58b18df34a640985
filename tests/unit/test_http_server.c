/* test_http_server.c -- the kubelet HTTPS server.
 *
 * One world per test, on a libev loop in a thread of its own:
 *
 *   open    kubelet API, anonymous allowed, AlwaysAllow, self-signed cert
 *   strict  kubelet API, client CA, token webhook, Webhook authorization,
 *           anonymous refused; its reviews go to `fake`
 *   raw     http_server with a test handler: limits, timeouts, streaming,
 *           backpressure, upgrades
 *   fake    http_server playing the API server (TokenReview, SAR)
 *
 * The provider is the SDK in this process, over a Unix socket. Clients are
 * libcurl (easy API) and a small blocking OpenSSL client for what curl
 * will not do (stop reading, trickle bytes, speak TLS 1.1).
 *
 * VKC_TEST_TIME_SCALE (default 1) stretches every timeout and wait, for
 * slow runs such as valgrind's.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../../core/http_server.h"
#include "../../core/kube_client.h"
#include "../../core/kubelet_api.h"
#include "../../core/kubelet_auth.h"
#include "../../core/metrics.h"
#include "../../core/provider_client.h"
#include "../../core/tls.h"
#include "buf.h"
#include "json.h"
#include "vkc-provider.h"
#include "work.h"

#define NODE "test-node"
#define RAW_HIGH_WATER (64 * 1024)
#define RAW_MAX_CONNECTIONS 8

static char certs[64]; /* made once, in main */
static double scale = 1; /* VKC_TEST_TIME_SCALE */

/* ---- the provider ------------------------------------------------------- */

static atomic_long logs_written;   /* bytes the endless log produced */
static atomic_int logs_cancelled;  /* log calls that saw their reader go */
static atomic_int logs_running;

static const char pod_json[] =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"namespace\":\"ns\","
    "\"name\":\"web\",\"uid\":\"u-1\"},\"spec\":{\"containers\":[{\"name\":\"c\"},"
    "{\"name\":\"hello\"},{\"name\":\"opts\"},{\"name\":\"endless\"},{\"name\":\"quiet\"}]}}";

static int p_logs(vk_ctx *ctx, const char *ns, const char *pod, const char *ctr,
                  const vk_log_options *o, vk_stream *out)
{
    if (strcmp(ctr, "hello") == 0) {
        vk_stream_write(out, "hello\nworld\n", 12);
        return VK_OK;
    }
    if (strcmp(ctr, "opts") == 0) {
        char b[256];
        int n = snprintf(b, sizeof b, "%s/%s tail=%lld follow=%d since=%lld time=%lld ts=%d "
                         "limit=%lld prev=%d", ns, pod, (long long)o->tail_lines, o->follow,
                         (long long)o->since_seconds, (long long)o->since_time_ns,
                         o->timestamps, (long long)o->limit_bytes, o->previous);
        vk_stream_write(out, b, (size_t)n);
        return VK_OK;
    }
    if (strcmp(ctr, "endless") == 0 || strcmp(ctr, "quiet") == 0) {
        static char chunk[16384];
        memset(chunk, 'x', sizeof chunk);
        atomic_fetch_add(&logs_running, 1);
        for (;;) {
            if (ctr[0] == 'e') {
                if (vk_stream_write(out, chunk, sizeof chunk) < 0)
                    break;
                atomic_fetch_add(&logs_written, (long)sizeof chunk);
            } else {
                vk_input in;
                if (vk_stream_read(out, &in, 100) < 0 || vk_ctx_cancelled(ctx))
                    break;
            }
        }
        atomic_fetch_add(&logs_cancelled, 1);
        atomic_fetch_sub(&logs_running, 1);
        return vk_ctx_error(ctx, VK_CANCELLED, "the reader went away");
    }
    return vk_ctx_error(ctx, VK_NOT_FOUND, "container %s is not part of pod %s/%s", ctr, ns, pod);
}

static int p_stats(vk_ctx *ctx, vk_buf *out)
{
    (void)ctx;
    vk_buf_puts(out, "{\"node\":{\"nodeName\":\"\",\"cpu\":{\"usageNanoCores\":5}},"
                     "\"pods\":[{\"podRef\":{\"name\":\"web\"}}]}");
    return VK_OK;
}

static int p_metrics(vk_ctx *ctx, vk_buf *out)
{
    (void)ctx;
    vk_buf_puts(out, "# TYPE pod_cpu_usage_seconds_total counter\n"
                     "pod_cpu_usage_seconds_total{namespace=\"ns\",pod=\"web\"} 1.5 1000\n");
    return VK_OK;
}

static int p_pods(vk_ctx *ctx, vk_pod_list *l)
{
    (void)ctx;
    vk_pod_list_add(l, pod_json, strlen(pod_json));
    return VK_OK;
}

static int p_exec(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code)
{
    (void)ctx;
    (void)req;
    (void)io;
    *exit_code = 0;
    return VK_OK;
}

static const vk_provider_ops provider_ops = {
    .name = "test",
    .version = "1",
    .get_pods = p_pods,
    .get_container_logs = p_logs,
    .exec = p_exec,
    .get_stats_summary = p_stats,
    .get_metrics_resource = p_metrics,
};

/* ---- the world ------------------------------------------------------------- */

typedef struct world {
    struct ev_loop *loop;
    pthread_t thread;
    ev_async stop, call;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    void (*fn)(void *);
    void *arg;
    bool done;

    char sock[128];
    vk_provider *prov;
    provider_client *pc;
    vk_pool *pool;
    metrics *metrics, *metrics2;
    struct kube_client *kube;
    kubelet_auth *auth_open, *auth_strict;
    kubelet_api *api_open, *api_strict;
    SSL_CTX *tls_self, *tls_ca, *tls_fake;
    http_server *open, *strict, *raw, *fake;
    int open_port, strict_port, raw_port, fake_port;
} world;

static world W;

/* Runs on the loop thread. */
static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void call_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
    pthread_mutex_lock(&W.mu);
    if (W.fn && !W.done) {
        W.fn(W.arg);
        W.done = true;
        pthread_cond_broadcast(&W.cond);
    }
    pthread_mutex_unlock(&W.mu);
}

/* Run fn(arg) on the loop thread and wait for it. */
static void on_loop(void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&W.mu);
    W.fn = fn;
    W.arg = arg;
    W.done = false;
    ev_async_send(W.loop, &W.call);
    while (!W.done)
        pthread_cond_wait(&W.cond, &W.mu);
    W.fn = NULL;
    pthread_mutex_unlock(&W.mu);
}

static void *loop_main(void *arg)
{
    (void)arg;
    ev_run(W.loop, 0);
    return NULL;
}

static char *cert_path(const char *name)
{
    static char paths[4][128];
    static unsigned next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s", certs, name);
    return p;
}

/* ---- the raw server's handler ---------------------------------------------- */

static struct {
    atomic_long produced;
    atomic_int not_writable;
    atomic_int closed;
} raw;

static char big[16384];

static void forever_writable(void *ud)
{
    http_request *r = ud;
    while (http_writable(r)) {
        if (http_write(r, big, sizeof big) < 0)
            return;
        atomic_fetch_add(&raw.produced, (long)sizeof big);
    }
    atomic_fetch_add(&raw.not_writable, 1);
}

static void raw_closed(void *ud)
{
    (void)ud;
    atomic_fetch_add(&raw.closed, 1);
}

static const http_callbacks forever_cbs = {.closed = raw_closed, .writable = forever_writable};
static const http_callbacks hang_cbs = {.closed = raw_closed};

static void echo_data(void *ud, const char *data, size_t len)
{
    http_request *r = ud;
    char up[256];
    for (size_t off = 0; off < len; off += sizeof up) {
        size_t n = len - off < sizeof up ? len - off : sizeof up;
        for (size_t i = 0; i < n; i++)
            up[i] = (char)(data[off + i] >= 'a' && data[off + i] <= 'z' ? data[off + i] - 32
                                                                        : data[off + i]);
        http_write(r, up, n);
    }
    if (memmem(data, len, "quit", 4))
        http_close(r);
}

static const http_callbacks echo_cbs = {.closed = raw_closed, .data = echo_data};

static void raw_handler(void *ud, http_request *req)
{
    (void)ud;
    const char *path = http_request_path(req);
    if (strcmp(path, "/hello") == 0) {
        http_respond(req, 200, "Content-Type: text/plain\r\n", "hi", 2);
    } else if (strcmp(path, "/chunks") == 0) {
        http_stream_begin(req, 200, "Content-Type: text/plain\r\n");
        for (int i = 0; i < 5; i++) {
            char b[16];
            int n = snprintf(b, sizeof b, "chunk%d;", i);
            http_write(req, b, (size_t)n);
        }
        http_stream_end(req);
    } else if (strcmp(path, "/echo") == 0) {
        size_t len;
        const char *body = http_request_body(req, &len);
        const char *h = http_request_header(req, "x-test");
        const char *q = http_request_query(req, "q");
        const char *q2 = http_request_query_nth(req, "q", 1);
        const char *q3 = http_request_query_nth(req, "q", 2);
        vk_buf b = VK_BUF_INIT;
        vk_buf_printf(&b, "%s|%s|%s|%s|%s|%.*s", http_request_method(req), h ? h : "-",
                      q ? q : "-", q2 ? q2 : "-", q3 ? q3 : "-", (int)len, body);
        http_respond(req, 200, NULL, b.data, b.len);
        vk_buf_free(&b);
    } else if (strcmp(path, "/forever") == 0) {
        http_stream_begin(req, 200, NULL);
        http_watch(req, &forever_cbs, req);
        forever_writable(req);
    } else if (strcmp(path, "/hang") == 0) {
        http_watch(req, &hang_cbs, req);
    } else if (strcmp(path, "/upgrade") == 0 && http_request_is_upgrade(req)) {
        static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: shout\r\nConnection: Upgrade\r\n\r\n";
        http_upgrade(req, head, sizeof head - 1, &echo_cbs, req);
    } else {
        http_respond(req, 404, NULL, "no\n", 3);
    }
}

/* ---- the fake API server ------------------------------------------------------ */

static atomic_int token_reviews, sars;
static pthread_mutex_t sar_mu = PTHREAD_MUTEX_INITIALIZER;
static char last_sar[4096];

static void fake_handler(void *ud, http_request *req)
{
    (void)ud;
    size_t len;
    const char *body = http_request_body(req, &len);
    char err[128];
    yajl_val doc = vk_json_parse(body, len, err, sizeof err);
    const char *path = http_request_path(req);
    const char *answer;
    if (strcmp(path, "/apis/authentication.k8s.io/v1/tokenreviews") == 0) {
        atomic_fetch_add(&token_reviews, 1);
        const char *token = vk_json_str(vk_json_get(doc, "spec", "token", NULL), "");
        if (strcmp(token, "boom") == 0) {
            yajl_tree_free(doc);
            http_respond(req, 500, NULL, "boom", 4);
            return;
        }
        answer = strcmp(token, "good-token") == 0
            ? "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":true,\"user\":"
              "{\"username\":\"bob\",\"uid\":\"u-bob\",\"groups\":[\"devs\","
              "\"system:authenticated\"],\"extra\":{\"scopes\":[\"a\"]}}}}"
            : "{\"kind\":\"TokenReview\",\"status\":{\"authenticated\":false,"
              "\"error\":\"token expired\"}}";
    } else if (strcmp(path, "/apis/authorization.k8s.io/v1/subjectaccessreviews") == 0) {
        atomic_fetch_add(&sars, 1);
        pthread_mutex_lock(&sar_mu);
        snprintf(last_sar, sizeof last_sar, "%.*s", (int)len, body);
        pthread_mutex_unlock(&sar_mu);
        const char *user = vk_json_str(vk_json_get(doc, "spec", "user", NULL), "");
        const char *sub = vk_json_str(vk_json_get(doc, "spec", "resourceAttributes",
                                                  "subresource", NULL), "");
        bool allowed = strcmp(user, "alice") == 0 ||
                       (strcmp(user, "bob") == 0 && strcmp(sub, "metrics") != 0);
        answer = allowed ? "{\"kind\":\"SubjectAccessReview\",\"status\":{\"allowed\":true}}"
                         : "{\"kind\":\"SubjectAccessReview\",\"status\":{\"allowed\":false,"
                           "\"reason\":\"no\"}}";
    } else {
        answer = "{}";
    }
    yajl_tree_free(doc);
    http_respond(req, 201, "Content-Type: application/json\r\n", answer, strlen(answer));
}

/* ---- setup -------------------------------------------------------------------------- */

static int pods_hook(void *ud, vk_buf *out)
{
    (void)ud;
    vk_buf_puts(out, "[");
    vk_buf_puts(out, pod_json);
    vk_buf_puts(out, "]");
    return 0;
}

static int pod_hook(void *ud, const char *ns, const char *name, vk_buf *out)
{
    (void)ud;
    if (strcmp(ns, "ns") != 0 || strcmp(name, "web") != 0)
        return 1;
    return vk_buf_puts(out, pod_json);
}

static http_server *serve(SSL_CTX *tls, http_handler_fn fn, void *ud, int *port,
                          double request_timeout, size_t high_water, int max_conns)
{
    char err[256];
    http_server_config cfg = {
        .loop = W.loop, .address = "127.0.0.1", .tls = tls, .handler = fn, .ud = ud,
        .request_timeout = request_timeout, .idle_timeout = request_timeout,
        .high_water = high_water, .max_connections = max_conns,
    };
    http_server *s = http_server_new(&cfg, err, sizeof err);
    ck_assert_msg(s != NULL, "%s", err);
    *port = http_server_port(s);
    ck_assert_int_gt(*port, 0);
    return s;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    vk_buf b = VK_BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        vk_buf_append(&b, tmp, n);
    fclose(f);
    return vk_buf_steal(&b, len);
}

static void setup(void)
{
    memset(&W, 0, sizeof W);
    atomic_store(&logs_written, 0);
    atomic_store(&logs_cancelled, 0);
    atomic_store(&logs_running, 0);
    atomic_store(&raw.produced, 0);
    atomic_store(&raw.not_writable, 0);
    atomic_store(&raw.closed, 0);
    atomic_store(&token_reviews, 0);
    atomic_store(&sars, 0);
    memset(big, 'y', sizeof big);
    char err[256];

    snprintf(W.sock, sizeof W.sock, "unix:%s/p-%d.sock", certs, (int)getpid());
    unlink(W.sock + 5);
    W.prov = vk_provider_new(&provider_ops, NULL);
    ck_assert_int_eq(vk_provider_start(W.prov, W.sock), 0);
    W.pc = pc_new(W.sock, 5000, NULL);
    ck_assert(pc_wait_ready(W.pc, 5000));
    pc_info info = {0};
    vk_status st = {0, NULL};
    ck_assert_int_eq(pc_handshake(W.pc, NODE, "unix:/nonexistent/core.sock", 5000, &info, &st),
                     VK_OK);
    pc_info_clear(&info);

    W.loop = ev_loop_new(EVFLAG_AUTO);
    pthread_mutex_init(&W.mu, NULL);
    pthread_cond_init(&W.cond, NULL);
    ev_async_init(&W.stop, stop_cb);
    ev_async_start(W.loop, &W.stop);
    ev_async_init(&W.call, call_cb);
    ev_async_start(W.loop, &W.call);
    W.pool = vk_pool_new(W.loop, 2, 16);
    W.metrics = metrics_new();
    W.metrics2 = metrics_new();

    tls_config self = {.hosts = (const char *[]){"127.0.0.1", "localhost"}, .n_hosts = 2};
    W.tls_self = tls_server_context(&self, err, sizeof err);
    ck_assert_msg(W.tls_self != NULL, "%s", err);
    tls_config ca = {.client_ca_file = cert_path("ca.crt"),
                     .hosts = (const char *[]){"127.0.0.1"}, .n_hosts = 1};
    W.tls_ca = tls_server_context(&ca, err, sizeof err);
    ck_assert_msg(W.tls_ca != NULL, "%s", err);
    tls_config fake = {.cert_file = cert_path("apiserver.crt"),
                       .key_file = cert_path("apiserver.key")};
    W.tls_fake = tls_server_context(&fake, err, sizeof err);
    ck_assert_msg(W.tls_fake != NULL, "%s", err);

    W.fake = serve(W.tls_fake, fake_handler, NULL, &W.fake_port, 0, 0, 0);
    char server[64];
    snprintf(server, sizeof server, "https://127.0.0.1:%d", W.fake_port);
    kube_config kc = {0};
    kc.server = server;
    kc.ca_pem = slurp(cert_path("ca.crt"), &kc.ca_pem_len);
    W.kube = kube_client_new(W.loop, &kc, NULL, err, sizeof err);
    free(kc.ca_pem);
    ck_assert_msg(W.kube != NULL, "%s", err);

    kubelet_auth_config open = {.node_name = NODE, .anonymous = true,
                                .mode = KUBELET_AUTHZ_ALWAYS_ALLOW};
    W.auth_open = kubelet_auth_new(&open, err, sizeof err);
    kubelet_auth_config strict = {.node_name = NODE, .token_webhook = true,
                                  .mode = KUBELET_AUTHZ_WEBHOOK, .kube = W.kube};
    W.auth_strict = kubelet_auth_new(&strict, err, sizeof err);
    ck_assert(W.auth_open && W.auth_strict);

    kubelet_api_config acfg = {.loop = W.loop, .node_name = NODE, .pool = W.pool,
                               .metrics = W.metrics, .auth = W.auth_open, .pods = pods_hook,
                               .pod = pod_hook};
    W.api_open = kubelet_api_new(&acfg);
    acfg.metrics = W.metrics2;
    acfg.auth = W.auth_strict;
    acfg.pods = NULL;
    acfg.pod = NULL;
    W.api_strict = kubelet_api_new(&acfg);
    ck_assert(W.api_open && W.api_strict);
    supervisor_listener l1 = kubelet_api_listener(W.api_open);
    supervisor_listener l2 = kubelet_api_listener(W.api_strict);
    l1.up(l1.ud, W.pc, NULL);
    l2.up(l2.ud, W.pc, NULL);

    W.open = serve(W.tls_self, kubelet_api_handle, W.api_open, &W.open_port, 0, 0, 0);
    W.strict = serve(W.tls_ca, kubelet_api_handle, W.api_strict, &W.strict_port, 0, 0, 0);
    W.raw = serve(W.tls_self, raw_handler, NULL, &W.raw_port, 1.0 * scale, RAW_HIGH_WATER,
                  RAW_MAX_CONNECTIONS);
    ck_assert_int_eq(pthread_create(&W.thread, NULL, loop_main, NULL), 0);
}

static void teardown(void)
{
    ev_async_send(W.loop, &W.stop);
    pthread_join(W.thread, NULL);
    /* The loop is stopped: this thread is its thread now. */
    http_server_free(W.open);
    http_server_free(W.strict);
    http_server_free(W.raw);
    supervisor_listener l1 = kubelet_api_listener(W.api_open);
    supervisor_listener l2 = kubelet_api_listener(W.api_strict);
    l1.down(l1.ud);
    l2.down(l2.ud);
    vk_pool_free(W.pool);
    kubelet_api_free(W.api_open);
    kubelet_api_free(W.api_strict);
    kubelet_auth_free(W.auth_open);
    kubelet_auth_free(W.auth_strict);
    kube_client_free(W.kube);
    http_server_free(W.fake);
    SSL_CTX_free(W.tls_self);
    SSL_CTX_free(W.tls_ca);
    SSL_CTX_free(W.tls_fake);
    metrics_free(W.metrics);
    metrics_free(W.metrics2);
    ev_async_stop(W.loop, &W.stop);
    ev_async_stop(W.loop, &W.call);
    ev_loop_destroy(W.loop);
    pthread_mutex_destroy(&W.mu);
    pthread_cond_destroy(&W.cond);
    pc_unref(W.pc);
    vk_provider_stop(W.prov);
    vk_provider_wait(W.prov);
    vk_provider_free(W.prov);
    unlink(W.sock + 5);
}

/* ---- curl -------------------------------------------------------------------------- */

typedef struct resp {
    CURLcode rc;
    long status;
    long connects;
    vk_buf body;
    vk_buf head;
} resp;

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    vk_buf_append(ud, p, size * n);
    return size * n;
}

typedef struct req_opts {
    const char *method;      /* NULL: GET */
    const char *auth;        /* Authorization header value */
    const char *cert;        /* client certificate name in certs/ (+ .crt/.key) */
    const char *body;
    const char *header;      /* one extra header line */
    CURL *handle;            /* reuse (keep-alive); NULL: a fresh one */
} req_opts;

static resp fetch(int port, const char *path, const req_opts *o)
{
    static const req_opts none;
    if (!o)
        o = &none;
    resp r = {.body = VK_BUF_INIT, .head = VK_BUF_INIT};
    CURL *h = o->handle ? o->handle : curl_easy_init();
    char url[512], auth[512], crt[256], key[256];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, path);
    struct curl_slist *hdrs = NULL;
    if (o->auth) {
        snprintf(auth, sizeof auth, "Authorization: %s", o->auth);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (o->header)
        hdrs = curl_slist_append(hdrs, o->header);
    curl_easy_setopt(h, CURLOPT_URL, url);
    /* Dot segments go out as written: judging them is the server's job. */
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &r.head);
    if (o->method && strcmp(o->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    else if (o->method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, o->method);
    if (o->body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(o->body));
    }
    if (o->cert) {
        snprintf(crt, sizeof crt, "%s/%s.crt", certs, o->cert);
        snprintf(key, sizeof key, "%s/%s.key", certs, o->cert);
        curl_easy_setopt(h, CURLOPT_SSLCERT, crt);
        curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    }
    r.rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &r.connects);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs);
    if (!o->handle)
        curl_easy_cleanup(h);
    if (!r.body.data)
        vk_buf_puts(&r.body, "");
    if (!r.head.data)
        vk_buf_puts(&r.head, "");
    return r;
}

static void resp_free(resp *r)
{
    vk_buf_free(&r->body);
    vk_buf_free(&r->head);
}

/* A Status body with this code and reason. */
static void assert_status(const resp *r, long code, const char *reason, const char *in_message)
{
    ck_assert_int_eq(r->rc, CURLE_OK);
    ck_assert_int_eq(r->status, code);
    char err[128];
    yajl_val doc = vk_json_parse(r->body.data, r->body.len, err, sizeof err);
    ck_assert_msg(doc != NULL, "not JSON: %s", r->body.data);
    ck_assert_str_eq(vk_json_str(vk_json_member(doc, "kind"), ""), "Status");
    ck_assert_str_eq(vk_json_str(vk_json_member(doc, "status"), ""), "Failure");
    ck_assert_str_eq(vk_json_str(vk_json_member(doc, "reason"), ""), reason);
    ck_assert_int_eq(vk_json_int(vk_json_member(doc, "code"), 0), code);
    if (in_message)
        ck_assert_msg(strstr(vk_json_str(vk_json_member(doc, "message"), ""), in_message),
                      "message lacks '%s': %s", in_message, r->body.data);
    yajl_tree_free(doc);
}

/* ---- a raw TLS client ---------------------------------------------------------------- */

typedef struct rawc {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} rawc;

/* max_version 0: any. rcvbuf 0: the default. 0, or -1 when the handshake
 * failed. */
static int rawc_open(rawc *c, int port, int max_version, int rcvbuf)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(c->fd, 0);
    if (rcvbuf)
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = {5, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (max_version) {
        /* Old versions are off by default (security level): allow them
         * here, the server must be the one refusing. */
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
        SSL_CTX_set_cipher_list(c->ctx, "ALL:@SECLEVEL=0");
    }
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    int rc = SSL_connect(c->ssl) == 1 ? 0 : -1;
    ERR_clear_error();
    return rc;
}

static void rawc_send(rawc *c, const char *data, size_t len)
{
    ck_assert_int_eq(SSL_write(c->ssl, data, (int)len), (int)len);
}

/* Read into out until the server closes (1), nothing came for timeout_ms
 * (0), or, with limit > 0, limit bytes came (0). */
static int rawc_read_some(rawc *c, vk_buf *out, int timeout_ms, size_t limit)
{
    long ms = (long)(timeout_ms * scale);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16384];
    for (;;) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n > 0) {
            vk_buf_append(out, buf, (size_t)n);
            if (limit && out->len >= limit)
                return 0;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        int timed_out = e == SSL_ERROR_WANT_READ ||
                        (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK));
        ERR_clear_error();
        return timed_out ? 0 : 1;
    }
}

static int rawc_read(rawc *c, vk_buf *out, int timeout_ms)
{
    return rawc_read_some(c, out, timeout_ms, 0);
}

static void rawc_close(rawc *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    ms = (long)(ms * scale);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait until *v == want, up to ms. The waits below give what another
 * thread does 10 s: they bound only a failing test, and a loaded machine
 * (or ASan) can hold a thread back for seconds. */
static bool wait_int(atomic_int *v, int want, long ms)
{
    long end = now_ms() + (long)(ms * scale);
    while (atomic_load(v) != want && now_ms() < end)
        sleep_ms(10);
    return atomic_load(v) == want;
}

/* Wait until *v stops growing (unchanged for half a second), up to 10 s;
 * its value then, or -1 if it never stopped. */
static long settled(atomic_long *v)
{
    long end = now_ms() + (long)(10000 * scale);
    long last = atomic_load(v);
    while (now_ms() < end) {
        sleep_ms(500);
        long now = atomic_load(v);
        if (now == last)
            return now;
        last = now;
    }
    return -1;
}

/* ---- connection layer ------------------------------------------------------------------ */

START_TEST(serves_keep_alive_and_parses_requests)
{
    CURL *h = curl_easy_init();
    req_opts o = {.handle = h};
    resp a = fetch(W.raw_port, "/hello", &o);
    ck_assert_int_eq(a.status, 200);
    ck_assert_str_eq(a.body.data, "hi");
    ck_assert_int_eq(a.connects, 1);
    o.method = "POST";
    o.body = "payload";
    o.header = "X-Test: value 1";
    resp b = fetch(W.raw_port, "/echo?q=a%20b+c&x=1&q=%2Fbin%2Fsh", &o);
    ck_assert_int_eq(b.status, 200);
    ck_assert_str_eq(b.body.data, "POST|value 1|a b c|/bin/sh|-|payload");
    ck_assert_int_eq(b.connects, 0); /* the connection was reused */
    curl_easy_cleanup(h);
    resp c = fetch(W.raw_port, "/nothing", NULL);
    ck_assert_int_eq(c.status, 404);
    resp_free(&a);
    resp_free(&b);
    resp_free(&c);
}
END_TEST

/* Send one request on a fresh connection; the answer's status line. */
static void raw_exchange(const char *req, vk_buf *out)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    rawc_send(&c, req, strlen(req));
    rawc_read(&c, out, 3000);
    rawc_close(&c);
    ck_assert_ptr_nonnull(out->data);
}

START_TEST(bad_requests)
{
    vk_buf out = VK_BUF_INIT;
    raw_exchange("GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 400 ", 13) == 0, "got %s", out.data);
    vk_buf_reset(&out);
    raw_exchange("GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 400 ", 13) == 0, "got %s", out.data);
    vk_buf_reset(&out);
    raw_exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 413 ", 13) == 0, "got %s", out.data);
    vk_buf_reset(&out);
    raw_exchange("BREW /pot HTCPCP/1.0\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 400 ", 13) == 0, "got %s", out.data);
    vk_buf_reset(&out);
    /* HEAD: the head of the GET answer, no body. HTTP/1.0: closed after. */
    raw_exchange("HEAD /hello HTTP/1.0\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 200 ", 13) == 0, "got %s", out.data);
    ck_assert_ptr_nonnull(strstr(out.data, "Content-Length: 2\r\n"));
    ck_assert_msg(out.len >= 4 && strcmp(out.data + out.len - 4, "\r\n\r\n") == 0,
                  "a body came: %s", out.data);
    vk_buf_free(&out);

    /* Names no namespace, pod or container can have (percent-encoded
     * too): a 400 Status, before the provider (or its absence, for
     * attach) is asked. */
    static const char *const bad_names[] = {
        "/containerLogs/ns/../hello",     "/containerLogs/./web/hello",
        "/containerLogs/ns/web/..",       "/containerLogs/ns/%2e%2e/hello",
        "/containerLogs/ns//hello",       "/containerLogs/NS/web/hello",
        "/containerLogs/ns/web/-c",       "/containerLogs/ns/web./hello",
        "/exec/ns/web/../c?command=ls",   "/exec/ns/web/%2E?command=ls",
        "/exec/ns/web//c?command=ls",     "/attach/ns/web/c%20d",
        "/portForward/../web",            "/portForward/ns/web/%2e",
    };
    for (size_t i = 0; i < sizeof bad_names / sizeof bad_names[0]; i++) {
        resp r = fetch(W.open_port, bad_names[i], NULL);
        ck_assert_msg(r.status == 400, "%s: got %ld", bad_names[i], r.status);
        assert_status(&r, 400, "BadRequest", "invalid ");
        resp_free(&r);
    }
    /* A pod name is a subdomain: dots between labels are fine, so this
     * one passes the checks and is looked up (there is no such pod). */
    resp r = fetch(W.open_port, "/containerLogs/ns/web.v1/hello", NULL);
    assert_status(&r, 404, "NotFound", "pod ns/web.v1 not found");
    resp_free(&r);
}
END_TEST

START_TEST(streams_chunked_responses)
{
    resp r = fetch(W.raw_port, "/chunks", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "chunk0;chunk1;chunk2;chunk3;chunk4;");
    ck_assert_ptr_nonnull(strcasestr(r.head.data, "Transfer-Encoding: chunked"));
    resp_free(&r);
}
END_TEST

/* HTTP/1.0 has no chunks: the body runs to the close, right after a head
 * that says so. */
START_TEST(http10_stream_ends_with_the_connection)
{
    vk_buf out = VK_BUF_INIT;
    raw_exchange("GET /chunks HTTP/1.0\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 200 ", 13) == 0, "got %s", out.data);
    const char *end = strstr(out.data, "\r\n\r\n");
    ck_assert_msg(end != NULL, "no end of head: %s", out.data);
    ck_assert_str_eq(end + 4, "chunk0;chunk1;chunk2;chunk3;chunk4;");
    ck_assert_ptr_nonnull(strstr(out.data, "\r\nConnection: close\r\n\r\n"));
    ck_assert_ptr_null(strcasestr(out.data, "Transfer-Encoding"));
    vk_buf_reset(&out);
    /* HEAD: the same head, and nothing after it. */
    raw_exchange("HEAD /chunks HTTP/1.0\r\n\r\n", &out);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 200 ", 13) == 0, "got %s", out.data);
    end = strstr(out.data, "\r\n\r\n");
    ck_assert_msg(end != NULL && end[4] == '\0', "a body came: %s", out.data);
    ck_assert_ptr_nonnull(strstr(out.data, "\r\nConnection: close\r\n\r\n"));
    vk_buf_free(&out);
}
END_TEST

START_TEST(huge_header_is_refused_and_closed)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    vk_buf req = VK_BUF_INIT;
    vk_buf_puts(&req, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ");
    for (int i = 0; i < 40000; i++)
        vk_buf_puts(&req, "a");
    vk_buf_puts(&req, "\r\n\r\n");
    rawc_send(&c, req.data, req.len);
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(rawc_read(&c, &out, 5000), 1); /* closed by the server */
    ck_assert_msg(out.data && strncmp(out.data, "HTTP/1.1 431 ", 13) == 0, "got: %.80s",
                  out.data ? out.data : "(nothing)");
    vk_buf_free(&out);
    vk_buf_free(&req);
    rawc_close(&c);

    /* Too many headers, each small. */
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    vk_buf_puts(&req, "GET /hello HTTP/1.1\r\nHost: x\r\n");
    for (int i = 0; i < 150; i++)
        vk_buf_printf(&req, "X-H%d: v\r\n", i);
    vk_buf_puts(&req, "\r\n");
    rawc_send(&c, req.data, req.len);
    ck_assert_int_eq(rawc_read(&c, &out, 5000), 1);
    ck_assert_msg(out.data && strncmp(out.data, "HTTP/1.1 431 ", 13) == 0, "got: %.80s",
                  out.data ? out.data : "(nothing)");
    vk_buf_free(&out);
    vk_buf_free(&req);
    rawc_close(&c);
}
END_TEST

START_TEST(slow_and_idle_clients_are_dropped)
{
    /* Trickling a byte every 200 ms does not extend the 1 s deadline. */
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    long start = now_ms();
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaa";
    bool closed = false;
    for (size_t i = 0; i < strlen(req) && !closed; i++) {
        if (SSL_write(c.ssl, req + i, 1) != 1)
            closed = true;
        vk_buf out = VK_BUF_INIT;
        if (!closed && rawc_read(&c, &out, 200) == 1)
            closed = true;
        ck_assert_msg(out.len == 0, "unexpected answer: %s", out.data);
        vk_buf_free(&out);
    }
    ERR_clear_error();
    ck_assert_msg(closed, "a slow client was never dropped");
    /* Dropped at the 1 s deadline, not when the trickle ends (about 14 s);
     * the upper bound leaves a loaded machine room to run the timer late. */
    long took = now_ms() - start;
    ck_assert_msg(took >= 900 * scale && took < 6000 * scale, "dropped after %ld ms", took);
    rawc_close(&c);

    /* A client that connects and says nothing. */
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    start = now_ms();
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(rawc_read(&c, &out, 10000), 1);
    ck_assert_int_lt(now_ms() - start, (long)(6000 * scale));
    vk_buf_free(&out);
    rawc_close(&c);
}
END_TEST

START_TEST(old_tls_is_refused)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, TLS1_1_VERSION, 0), -1);
    rawc_close(&c);
    ck_assert_int_eq(rawc_open(&c, W.raw_port, TLS1_2_VERSION, 0), 0);
    ck_assert_int_eq(SSL_version(c.ssl), TLS1_2_VERSION);
    rawc_close(&c);
}
END_TEST

START_TEST(connection_limit)
{
    /* Each connection sends a request that is never answered: a handled
     * request has no timeout, so none is dropped as idle (1 s) while a
     * loaded machine opens the others, which would free a slot early. */
    rawc c[RAW_MAX_CONNECTIONS + 1];
    const char *hang = "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n";
    for (int i = 0; i < RAW_MAX_CONNECTIONS; i++) {
        ck_assert_int_eq(rawc_open(&c[i], W.raw_port, 0, 0), 0);
        rawc_send(&c[i], hang, strlen(hang));
    }
    ck_assert_int_eq(rawc_open(&c[RAW_MAX_CONNECTIONS], W.raw_port, 0, 0), -1);
    rawc_close(&c[RAW_MAX_CONNECTIONS]);
    rawc_close(&c[0]);
    /* The slot frees once the server has seen the close, which a loaded
     * machine may delay: retry instead of trusting a fixed pause. */
    int rc = -1;
    for (long end = now_ms() + (long)(10000 * scale); rc != 0 && now_ms() < end;) {
        rc = rawc_open(&c[0], W.raw_port, 0, 0);
        if (rc != 0) {
            rawc_close(&c[0]);
            sleep_ms(50);
        }
    }
    ck_assert_int_eq(rc, 0);
    for (int i = 0; i < RAW_MAX_CONNECTIONS; i++)
        rawc_close(&c[i]);
}
END_TEST

START_TEST(backpressure_bounds_memory_and_close_is_reported)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 4096), 0);
    const char *req = "GET /forever HTTP/1.1\r\nHost: x\r\n\r\n";
    rawc_send(&c, req, strlen(req));
    /* Read nothing: the producer must stall. */
    long b = settled(&raw.produced);
    ck_assert_msg(b > 0, "the producer never stalled");
    ck_assert_int_gt(atomic_load(&raw.not_writable), 0);
    /* Output buffer + socket buffers, nowhere near unbounded. */
    ck_assert_msg(b < 16L * 1024 * 1024, "produced %ld bytes for a client reading nothing", b);
    /* Reading resumes the producer. */
    vk_buf out = VK_BUF_INIT;
    rawc_read_some(&c, &out, 300, 4u << 20);
    ck_assert_int_gt(atomic_load(&raw.produced), b);
    vk_buf_free(&out);
    /* Going away is noticed. */
    rawc_close(&c);
    ck_assert(wait_int(&raw.closed, 1, 10000));
}
END_TEST

START_TEST(disconnect_while_handling_is_reported)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    const char *req = "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n";
    rawc_send(&c, req, strlen(req));
    sleep_ms(1500); /* past the request timeout: a handled request has none */
    ck_assert_int_eq(atomic_load(&raw.closed), 0);
    rawc_close(&c);
    ck_assert(wait_int(&raw.closed, 1, 10000));
}
END_TEST

static atomic_int loop_held;

/* On the loop thread: keep it from reading while the client writes. */
static void hold_loop(void *arg)
{
    (void)arg;
    atomic_store(&loop_held, 1);
    sleep_ms(300);
}

static void *hold_loop_thread(void *arg)
{
    (void)arg;
    on_loop(hold_loop, NULL);
    return NULL;
}

START_TEST(close_in_the_read_of_the_request_is_reported)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    /* The request and the client's close must reach the server in one
     * read: the loop is held while both are sent. */
    atomic_store(&loop_held, 0);
    pthread_t holder;
    ck_assert_int_eq(pthread_create(&holder, NULL, hold_loop_thread, NULL), 0);
    ck_assert(wait_int(&loop_held, 1, 10000));
    const char *req = "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n";
    rawc_send(&c, req, strlen(req));
    /* close_notify and FIN, without the reset a close() with unread
     * session tickets would send. */
    SSL_shutdown(c.ssl);
    ERR_clear_error();
    shutdown(c.fd, SHUT_WR);
    pthread_join(holder, NULL);
    /* /hang never answers: only `closed` ends it. */
    ck_assert(wait_int(&raw.closed, 1, 10000));
    rawc_close(&c);
}
END_TEST

START_TEST(upgrade_hands_over_raw_bytes)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.raw_port, 0, 0), 0);
    /* The first raw bytes come in the same write as the request. */
    const char *req = "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
                      "Upgrade: shout\r\n\r\nhello ";
    rawc_send(&c, req, strlen(req));
    vk_buf out = VK_BUF_INIT;
    rawc_read(&c, &out, 500);
    ck_assert_ptr_nonnull(out.data);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 101 ", 13) == 0, "got %s", out.data);
    ck_assert_ptr_nonnull(strstr(out.data, "\r\n\r\nHELLO "));
    vk_buf_reset(&out);
    rawc_send(&c, "world quit", 10);
    ck_assert_int_eq(rawc_read(&c, &out, 3000), 1);
    ck_assert_str_eq(out.data, "WORLD QUIT");
    vk_buf_free(&out);
    rawc_close(&c);
}
END_TEST

/* ---- kubelet API routes ----------------------------------------------------------------- */

START_TEST(health_pods_and_unknown_routes)
{
    resp r = fetch(W.open_port, "/healthz", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "ok");
    resp_free(&r);
    r = fetch(W.open_port, "/healthz/ping", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);

    r = fetch(W.open_port, "/pods", NULL);
    ck_assert_int_eq(r.status, 200);
    char err[128];
    yajl_val doc = vk_json_parse(r.body.data, r.body.len, err, sizeof err);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(vk_json_str(vk_json_member(doc, "kind"), ""), "PodList");
    yajl_val items = vk_json_member(doc, "items");
    ck_assert(YAJL_IS_ARRAY(items) && items->u.array.len == 1);
    ck_assert_str_eq(vk_json_str(vk_json_get(items->u.array.values[0], "metadata", "name",
                                             NULL), ""), "web");
    yajl_tree_free(doc);
    resp_free(&r);

    r = fetch(W.open_port, "/nope", NULL);
    assert_status(&r, 404, "NotFound", NULL);
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web", NULL);
    assert_status(&r, 404, "NotFound", NULL);
    resp_free(&r);
    req_opts post = {.method = "POST"};
    r = fetch(W.open_port, "/pods", &post);
    assert_status(&r, 405, "MethodNotAllowed", NULL);
    resp_free(&r);

    /* /pods without a pod source (the strict API has none) is 503. */
    r = fetch(W.strict_port, "/pods", &(req_opts){.cert = "alice"});
    assert_status(&r, 503, "ServiceUnavailable", NULL);
    resp_free(&r);
}
END_TEST

START_TEST(provider_routes)
{
    resp r = fetch(W.open_port, "/stats/summary", NULL);
    ck_assert_int_eq(r.status, 200);
    char err[128];
    yajl_val doc = vk_json_parse(r.body.data, r.body.len, err, sizeof err);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(vk_json_str(vk_json_get(doc, "node", "nodeName", NULL), ""), NODE);
    ck_assert_int_eq(vk_json_int(vk_json_get(doc, "node", "cpu", "usageNanoCores", NULL), 0), 5);
    ck_assert_ptr_nonnull(vk_json_member(doc, "pods"));
    yajl_tree_free(doc);
    resp_free(&r);

    r = fetch(W.open_port, "/metrics/resource", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "pod_cpu_usage_seconds_total{"));
    resp_free(&r);

    r = fetch(W.open_port, "/runningpods/", NULL);
    ck_assert_int_eq(r.status, 200);
    doc = vk_json_parse(r.body.data, r.body.len, err, sizeof err);
    ck_assert_ptr_nonnull(doc);
    ck_assert_str_eq(vk_json_str(vk_json_member(doc, "kind"), ""), "PodList");
    ck_assert_str_eq(vk_json_str(vk_json_get(vk_json_member(doc, "items")->u.array.values[0],
                                             "metadata", "uid", NULL), ""), "u-1");
    yajl_tree_free(doc);
    resp_free(&r);

    r = fetch(W.open_port, "/metrics", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "kubelet_api_requests_total{route=\"stats\","
                                              "code=\"200\"} 1"));
    resp_free(&r);

    /* Without the provider: 503. */
    supervisor_listener l = kubelet_api_listener(W.api_open);
    on_loop(l.down, l.ud);
    r = fetch(W.open_port, "/stats/summary", NULL);
    assert_status(&r, 503, "ServiceUnavailable", "provider");
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web/hello", NULL);
    assert_status(&r, 503, "ServiceUnavailable", "provider");
    resp_free(&r);
}
END_TEST

static void provider_up(void *arg)
{
    (void)arg;
    supervisor_listener l = kubelet_api_listener(W.api_open);
    l.up(l.ud, W.pc, NULL);
}

static char hook_seen[256];

static void test_hook(void *ud, http_request *req, const kubelet_stream_target *t,
                      provider_client *pc)
{
    (void)ud;
    snprintf(hook_seen, sizeof hook_seen, "%d %s %s [%s] [%s] %s", t->kind, t->ns, t->pod,
             t->uid, t->container, pc ? "pc" : "-");
    http_respond(req, 200, NULL, hook_seen, strlen(hook_seen));
}

static void set_hook(void *arg)
{
    kubelet_api_set_upgrade(W.api_open, arg ? test_hook : NULL, NULL);
}

START_TEST(upgrade_routes_go_to_one_hook)
{
    req_opts post = {.method = "POST"};
    resp r = fetch(W.open_port, "/exec/ns/web/c?command=ls", &post);
    assert_status(&r, 501, "NotImplemented", "not available yet");
    resp_free(&r);
    /* The provider did not declare attach or port-forward. */
    r = fetch(W.open_port, "/attach/ns/web/c", &post);
    assert_status(&r, 501, "NotImplemented", "does not implement AttachToContainer");
    resp_free(&r);

    on_loop(set_hook, (void *)1);
    r = fetch(W.open_port, "/exec/ns/web/u-1/c", &post);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "0 ns web [u-1] [c] pc");
    resp_free(&r);
    /* What the pod source does not know never reaches the hook. */
    r = fetch(W.open_port, "/exec/ns/web/uid-9/c", &post);
    assert_status(&r, 404, "NotFound", "pod ns/web with UID uid-9 not found");
    resp_free(&r);
    r = fetch(W.open_port, "/exec/ns/nope/c?command=ls", &post);
    assert_status(&r, 404, "NotFound", "pod ns/nope not found");
    resp_free(&r);
    r = fetch(W.open_port, "/run/ns/web/missing", &post);
    assert_status(&r, 404, "NotFound", "container missing not found in pod ns/web");
    resp_free(&r);
    r = fetch(W.open_port, "/run/ns/web/c", &post);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "3 ns web [] [c] pc");
    resp_free(&r);
    r = fetch(W.open_port, "/run/ns/web/c", NULL); /* run is POST only */
    assert_status(&r, 405, "MethodNotAllowed", NULL);
    resp_free(&r);
    on_loop(set_hook, NULL);
    on_loop(provider_up, NULL); /* harmless: replaces the client with itself */
}
END_TEST

START_TEST(container_logs)
{
    resp r = fetch(W.open_port, "/containerLogs/ns/web/hello", NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "hello\nworld\n");
    ck_assert_ptr_nonnull(strcasestr(r.head.data, "Transfer-Encoding: chunked"));
    resp_free(&r);

    /* Not in the pod: the pod cache's 404, before any provider call. */
    r = fetch(W.open_port, "/containerLogs/ns/web/missing", NULL);
    assert_status(&r, 404, "NotFound", "container missing not found in pod ns/web");
    resp_free(&r);
    /* In the pod, unknown to the provider: the provider's NOT_FOUND. */
    r = fetch(W.open_port, "/containerLogs/ns/web/c", NULL);
    assert_status(&r, 404, "NotFound", "container c is not part of pod ns/web");
    resp_free(&r);

    r = fetch(W.open_port, "/containerLogs/ns/web/opts?tailLines=5&follow=true&timestamps=1"
                           "&limitBytes=100&previous=false&sinceTime=2024-01-02T03:04:05.5Z",
              NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body.data, "ns/web tail=5 follow=1 since=0 time=1704164645500000000 "
                                  "ts=1 limit=100 prev=0");
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web/opts?sinceSeconds=30&sinceTime=", NULL);
    assert_status(&r, 400, "BadRequest", "sinceTime");
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web/opts?sinceSeconds=30"
                           "&sinceTime=2024-01-02T03:04:05%2B01:00", NULL);
    assert_status(&r, 422, "Invalid", "at most one");
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web/opts?tailLines=-1", NULL);
    assert_status(&r, 422, "Invalid", "tailLines");
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web/opts?follow=maybe", NULL);
    assert_status(&r, 400, "BadRequest", "follow");
    resp_free(&r);
    r = fetch(W.open_port, "/containerLogs/ns/web/opts?sinceTime=2024-01-02T04:04:05%2B01:00",
              NULL);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body.data, "time=1704164645000000000"));
    resp_free(&r);
}
END_TEST

START_TEST(log_stream_backpressure_and_cancel)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.open_port, 0, 4096), 0);
    const char *req = "GET /containerLogs/ns/web/endless?follow=true HTTP/1.1\r\nHost: x\r\n\r\n";
    rawc_send(&c, req, strlen(req));
    ck_assert(wait_int(&logs_running, 1, 10000));
    long b = settled(&logs_written);
    ck_assert_msg(b > 0, "the provider never stopped writing");
    ck_assert_msg(b < 32L * 1024 * 1024, "%ld bytes in flight for a client reading nothing", b);
    vk_buf out = VK_BUF_INIT;
    rawc_read_some(&c, &out, 300, 1u << 20);
    ck_assert_ptr_nonnull(out.data);
    ck_assert_msg(strncmp(out.data, "HTTP/1.1 200 ", 13) == 0, "got %.40s", out.data);
    vk_buf_free(&out);
    rawc_close(&c);
    ck_assert_msg(wait_int(&logs_cancelled, 1, 10000), "the provider stream was not cancelled");
    ck_assert(wait_int(&logs_running, 0, 10000));
    /* The server counted the stream down, on its loop once the call is
     * over, which may come a little after the handler returned. */
    bool counted_down = false;
    for (long end = now_ms() + (long)(10000 * scale); !counted_down && now_ms() < end;) {
        resp m = fetch(W.open_port, "/metrics", NULL);
        counted_down = m.body.data && strstr(m.body.data, "kubelet_api_log_streams 0");
        resp_free(&m);
        if (!counted_down)
            sleep_ms(20);
    }
    ck_assert_msg(counted_down, "kubelet_api_log_streams did not go back to 0");
}
END_TEST

static void provider_down(void *arg)
{
    (void)arg;
    supervisor_listener l = kubelet_api_listener(W.api_open);
    l.down(l.ud);
}

START_TEST(provider_down_cuts_log_streams)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.open_port, 0, 0), 0);
    const char *req = "GET /containerLogs/ns/web/endless?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    rawc_send(&c, req, strlen(req));
    vk_buf out = VK_BUF_INIT;
    rawc_read_some(&c, &out, 3000, 64 * 1024);
    ck_assert_msg(out.data && strncmp(out.data, "HTTP/1.1 200 ", 13) == 0, "got %.40s",
                  out.data ? out.data : "(nothing)");
    on_loop(provider_down, NULL);
    vk_buf_reset(&out);
    ck_assert_int_eq(rawc_read(&c, &out, 10000), 1); /* the server closed */
    /* ... without the last chunk: the client knows the log is cut. */
    ck_assert(out.len < 5 || memcmp(out.data + out.len - 5, "0\r\n\r\n", 5) != 0);
    ck_assert_msg(wait_int(&logs_cancelled, 1, 10000), "the provider stream was not cancelled");
    vk_buf_free(&out);
    rawc_close(&c);
    on_loop(provider_up, NULL);
    resp r = fetch(W.open_port, "/containerLogs/ns/web/hello", NULL);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
}
END_TEST

START_TEST(quiet_follow_gets_headers_and_cancels)
{
    rawc c;
    ck_assert_int_eq(rawc_open(&c, W.open_port, 0, 0), 0);
    const char *req = "GET /containerLogs/ns/web/quiet?follow=true HTTP/1.1\r\nHost: x\r\n\r\n";
    rawc_send(&c, req, strlen(req));
    vk_buf out = VK_BUF_INIT;
    /* The headers, then silence: still open after 5 s without data (room
     * for the headers to come late on a loaded machine). */
    ck_assert_int_eq(rawc_read(&c, &out, 5000), 0);
    ck_assert_msg(out.data && strncmp(out.data, "HTTP/1.1 200 ", 13) == 0, "got %s",
                  out.data ? out.data : "(nothing)");
    ck_assert_int_eq(atomic_load(&logs_cancelled), 0);
    vk_buf_free(&out);
    rawc_close(&c);
    ck_assert_msg(wait_int(&logs_cancelled, 1, 10000), "the provider stream was not cancelled");
}
END_TEST

/* ---- authentication and authorization ------------------------------------------------------ */

START_TEST(anonymous_refused_and_client_certs)
{
    resp r = fetch(W.strict_port, "/healthz", NULL);
    assert_status(&r, 401, "Unauthorized", NULL);
    resp_free(&r);
    r = fetch(W.strict_port, "/nope", NULL); /* authentication comes before routing */
    assert_status(&r, 401, "Unauthorized", NULL);
    resp_free(&r);

    r = fetch(W.strict_port, "/healthz", &(req_opts){.cert = "alice"});
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    pthread_mutex_lock(&sar_mu);
    ck_assert_ptr_nonnull(strstr(last_sar, "\"user\":\"alice\""));
    ck_assert_ptr_nonnull(strstr(last_sar, "\"groups\":[\"devs\",\"admins\",\"system:authenticated\"]"));
    ck_assert_ptr_nonnull(strstr(last_sar, "\"subresource\":\"proxy\""));
    ck_assert_ptr_nonnull(strstr(last_sar, "\"name\":\"" NODE "\""));
    ck_assert_ptr_nonnull(strstr(last_sar, "\"verb\":\"get\""));
    pthread_mutex_unlock(&sar_mu);

    /* A certificate of another CA fails the handshake, and so does one of
     * the right CA that is not meant for clients. */
    r = fetch(W.strict_port, "/healthz", &(req_opts){.cert = "mallory"});
    ck_assert_int_ne(r.rc, CURLE_OK);
    resp_free(&r);
    r = fetch(W.strict_port, "/healthz", &(req_opts){.cert = "apiserver"});
    ck_assert_int_ne(r.rc, CURLE_OK);
    resp_free(&r);
}
END_TEST

START_TEST(token_webhook_and_sar)
{
    req_opts good = {.auth = "Bearer good-token"};
    resp r = fetch(W.strict_port, "/stats/summary", &good);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    ck_assert_int_eq(atomic_load(&token_reviews), 1);
    ck_assert_int_eq(atomic_load(&sars), 1);
    pthread_mutex_lock(&sar_mu);
    ck_assert_ptr_nonnull(strstr(last_sar, "\"subresource\":\"stats\""));
    ck_assert_ptr_nonnull(strstr(last_sar, "\"uid\":\"u-bob\""));
    ck_assert_ptr_nonnull(strstr(last_sar, "\"extra\":{\"scopes\":[\"a\"]}"));
    pthread_mutex_unlock(&sar_mu);

    /* Cached: neither review again. */
    r = fetch(W.strict_port, "/stats/summary", &good);
    ck_assert_int_eq(r.status, 200);
    resp_free(&r);
    ck_assert_int_eq(atomic_load(&token_reviews), 1);
    ck_assert_int_eq(atomic_load(&sars), 1);

    /* bob may not read metrics. */
    r = fetch(W.strict_port, "/metrics/resource", &good);
    assert_status(&r, 403, "Forbidden", "user=bob, verb=get, resource=nodes, subresource=metrics");
    resp_free(&r);

    /* POST maps to create. */
    r = fetch(W.strict_port, "/exec/ns/web/c", &(req_opts){.auth = "Bearer good-token",
                                                         .method = "POST"});
    ck_assert_int_eq(r.status, 501);
    resp_free(&r);
    pthread_mutex_lock(&sar_mu);
    ck_assert_ptr_nonnull(strstr(last_sar, "\"verb\":\"create\""));
    pthread_mutex_unlock(&sar_mu);

    /* A refused token is 401; asked once, then cached. */
    req_opts bad = {.auth = "Bearer bad-token"};
    r = fetch(W.strict_port, "/healthz", &bad);
    assert_status(&r, 401, "Unauthorized", NULL);
    resp_free(&r);
    r = fetch(W.strict_port, "/healthz", &bad);
    assert_status(&r, 401, "Unauthorized", NULL);
    resp_free(&r);
    ck_assert_int_eq(atomic_load(&token_reviews), 2);

    /* A review that fails is 401 and not cached. */
    req_opts boom = {.auth = "Bearer boom"};
    for (int i = 0; i < 2; i++) {
        r = fetch(W.strict_port, "/healthz", &boom);
        assert_status(&r, 401, "Unauthorized", NULL);
        resp_free(&r);
    }
    ck_assert_int_eq(atomic_load(&token_reviews), 4);
}
END_TEST

START_TEST(auth_attributes)
{
    ck_assert_str_eq(kubelet_auth_subresource("/stats/summary"), "stats");
    ck_assert_str_eq(kubelet_auth_subresource("/stats"), "stats");
    ck_assert_str_eq(kubelet_auth_subresource("/metrics"), "metrics");
    ck_assert_str_eq(kubelet_auth_subresource("/metrics/resource"), "metrics");
    ck_assert_str_eq(kubelet_auth_subresource("/metricsfoo"), "proxy");
    ck_assert_str_eq(kubelet_auth_subresource("/logs/syslog"), "log");
    ck_assert_str_eq(kubelet_auth_subresource("/spec/"), "spec");
    ck_assert_str_eq(kubelet_auth_subresource("/containerLogs/a/b/c"), "proxy");
    ck_assert_str_eq(kubelet_auth_subresource("/exec/a/b/c"), "proxy");
    ck_assert_str_eq(kubelet_auth_verb("GET"), "get");
    ck_assert_str_eq(kubelet_auth_verb("HEAD"), "get");
    ck_assert_str_eq(kubelet_auth_verb("POST"), "create");
    ck_assert_str_eq(kubelet_auth_verb("PUT"), "update");
    ck_assert_str_eq(kubelet_auth_verb("PATCH"), "patch");
    ck_assert_str_eq(kubelet_auth_verb("DELETE"), "delete");
    enum kubelet_authz_mode m;
    ck_assert_int_eq(kubelet_authz_mode_parse("Webhook", &m), 0);
    ck_assert_int_eq(m, KUBELET_AUTHZ_WEBHOOK);
    ck_assert_int_eq(kubelet_authz_mode_parse("AlwaysAllow", &m), 0);
    ck_assert_int_eq(m, KUBELET_AUTHZ_ALWAYS_ALLOW);
    ck_assert_int_eq(kubelet_authz_mode_parse("Node", &m), -1);
}
END_TEST

/* ---- main --------------------------------------------------------------------------------- */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "failed: %s\n", cmd);
        exit(1);
    }
}

/* A CA, a client certificate (alice, two organizations) and a server
 * certificate for the fake API server from it; a second CA and a client
 * of it (mallory). */
static void make_certs(void)
{
    snprintf(certs, sizeof certs, "/tmp/vkc-test-http-XXXXXX");
    if (!mkdtemp(certs)) {
        perror("mkdtemp");
        exit(1);
    }
    const char *d = certs;
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    for (int i = 0; i < 2; i++) {
        const char *ca = i ? "evil-ca" : "ca";
        sh("cd %s && openssl req -x509 %s -keyout %s.key -out %s.crt -subj /CN=%s -days 2 "
           "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
           ">/dev/null 2>&1", d, key, ca, ca, ca);
    }
    struct { const char *name, *ca, *subj, *ext; } leaves[] = {
        {"alice", "ca", "/O=devs/O=admins/CN=alice", "extendedKeyUsage=clientAuth"},
        {"mallory", "evil-ca", "/O=devs/CN=mallory", "extendedKeyUsage=clientAuth"},
        {"apiserver", "ca", "/CN=fake-apiserver",
         "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1"},
    };
    for (size_t i = 0; i < sizeof leaves / sizeof leaves[0]; i++) {
        sh("cd %s && printf '%s\\n' > %s.ext && "
           "openssl req %s -keyout %s.key -out %s.csr -subj '%s' >/dev/null 2>&1 && "
           "openssl x509 -req -in %s.csr -CA %s.crt -CAkey %s.key -CAcreateserial -days 2 "
           "-extfile %s.ext -out %s.crt >/dev/null 2>&1",
           d, leaves[i].ext, leaves[i].name, key, leaves[i].name, leaves[i].name,
           leaves[i].subj, leaves[i].name, leaves[i].ca, leaves[i].ca, leaves[i].name,
           leaves[i].name);
    }
}

static Suite *http_suite(void)
{
    Suite *s = suite_create("http_server");
    TCase *tc = tcase_create("server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, serves_keep_alive_and_parses_requests);
    tcase_add_test(tc, bad_requests);
    tcase_add_test(tc, streams_chunked_responses);
    tcase_add_test(tc, http10_stream_ends_with_the_connection);
    tcase_add_test(tc, huge_header_is_refused_and_closed);
    tcase_add_test(tc, slow_and_idle_clients_are_dropped);
    tcase_add_test(tc, old_tls_is_refused);
    tcase_add_test(tc, connection_limit);
    tcase_add_test(tc, backpressure_bounds_memory_and_close_is_reported);
    tcase_add_test(tc, disconnect_while_handling_is_reported);
    tcase_add_test(tc, close_in_the_read_of_the_request_is_reported);
    tcase_add_test(tc, upgrade_hands_over_raw_bytes);
    tcase_add_test(tc, health_pods_and_unknown_routes);
    tcase_add_test(tc, provider_routes);
    tcase_add_test(tc, upgrade_routes_go_to_one_hook);
    tcase_add_test(tc, container_logs);
    tcase_add_test(tc, log_stream_backpressure_and_cancel);
    tcase_add_test(tc, provider_down_cuts_log_streams);
    tcase_add_test(tc, quiet_follow_gets_headers_and_cancels);
    tcase_add_test(tc, anonymous_refused_and_client_certs);
    tcase_add_test(tc, token_webhook_and_sar);
    tcase_add_test(tc, auth_attributes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *sc = getenv("VKC_TEST_TIME_SCALE");
    if (sc && atof(sc) >= 1)
        scale = atof(sc);
    make_certs();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    vk_rpc_init();
    SRunner *sr = srunner_create(http_suite());
    /* gRPC's threads do not survive fork(): run the tests in this process. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    vk_rpc_shutdown();
    curl_global_cleanup();
    sh("rm -rf %s", certs);
    return failed == 0 ? 0 : 1;
}
