/* streams.c -- vkc-bench-streams: exec round-trip latency and log
 * throughput through the API server, each next to the same transfer done
 * with the provider directly, interleaved in the same run.
 *
 *   exec  one long-lived `cat` session each way: a WebSocket
 *         (v4.channel.k8s.io) exec through the API server (TLS, admin
 *         cert; the API server proxies it to vkc-core's kubelet API, which
 *         bridges it to ExecInContainer), and ExecInContainer straight on
 *         the provider's gRPC socket. A round trip is one message written
 *         to stdin until all of it came back on stdout.
 *   logs  GET .../pods/POD/log (through the API server, one kept-alive
 *         connection) and GetContainerLogs on the provider's socket, the
 *         same options, so the same bytes.
 *
 * A separate program (not a vkc-bench subcommand): it links the core's
 * provider client, blocking, where vkc-bench is one libev loop. Output:
 * key=value lines on stdout, per-round samples in --csv.
 */
#include <curl/curl.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../core/provider_client.h"
#include "buf.h"

#define WARMUP 10
#define WS_CHANNEL_STDIN 0
#define WS_CHANNEL_STDOUT 1

typedef struct opts {
    const char *server, *ca, *cert, *key, *socket, *ns, *pod, *container, *csv;
    int rounds, msg_bytes, log_gets;
} opts;

/* A WebSocket exec session through the API server: a TLS connection that
 * curl made (CONNECT_ONLY) and bytes read but not yet parsed. */
typedef struct ws {
    CURL *curl;
    curl_socket_t fd;
    vk_buf in;
    size_t at; /* parsed up to here */
} ws;

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vkc-bench-streams: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* q of v[0..n) (nearest rank), sorting v. */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)n + 0.999999);
    return v[i ? i - 1 : 0];
}

/* A curl handle with the admin TLS identity; path is appended to --server. */
static CURL *api_handle(const opts *o, const char *path)
{
    CURL *c = curl_easy_init();
    if (!c)
        die("curl_easy_init failed");
    char url[1024];
    snprintf(url, sizeof url, "%s%s", o->server, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, o->ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, o->cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, o->key);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    return c;
}

/* ---- exec through the API server: WebSocket, v4.channel.k8s.io ---------------------- */

static void ws_write(ws *w, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        size_t n = 0;
        CURLcode rc = curl_easy_send(w->curl, p, len, &n);
        if (rc == CURLE_AGAIN) {
            struct pollfd pfd = {.fd = w->fd, .events = POLLOUT};
            poll(&pfd, 1, 1000);
            continue;
        }
        if (rc != CURLE_OK)
            die("exec through the API server: send: %s", curl_easy_strerror(rc));
        p += n;
        len -= n;
    }
}

/* Append what the connection has (waiting for at least one byte). */
static void ws_fill(ws *w)
{
    char buf[16384];
    for (;;) {
        size_t n = 0;
        CURLcode rc = curl_easy_recv(w->curl, buf, sizeof buf, &n);
        if (rc == CURLE_AGAIN) {
            struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
            if (poll(&pfd, 1, 10000) == 0)
                die("exec through the API server: no answer in 10 s");
            continue;
        }
        if (rc != CURLE_OK || n == 0)
            die("exec through the API server: connection closed (%s)", curl_easy_strerror(rc));
        if (vk_buf_append(&w->in, buf, n) < 0)
            die("out of memory");
        return;
    }
}

/* A client frame: binary, masked (RFC 6455 5.3), payload = channel + data. */
static void ws_send(ws *w, int channel, const void *data, size_t len)
{
    uint8_t head[14], mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t n = 0, total = len + 1;
    head[n++] = 0x82;
    if (total < 126) {
        head[n++] = (uint8_t)(0x80 | total);
    } else {
        head[n++] = 0x80 | 126;
        head[n++] = (uint8_t)(total >> 8);
        head[n++] = (uint8_t)total;
    }
    memcpy(head + n, mask, 4);
    n += 4;
    uint8_t *frame = malloc(n + total);
    if (!frame)
        die("out of memory");
    memcpy(frame, head, n);
    frame[n] = (uint8_t)(channel ^ mask[0]);
    for (size_t i = 0; i < len; i++)
        frame[n + 1 + i] = ((const uint8_t *)data)[i] ^ mask[(i + 1) % 4];
    ws_write(w, frame, n + total);
    free(frame);
}

/* The next server frame (unmasked): opcode, payload in *p (valid until the
 * next call). */
static int ws_frame(ws *w, const uint8_t **p, size_t *len)
{
    for (;;) {
        const uint8_t *b = (const uint8_t *)w->in.data + w->at;
        size_t have = w->in.len - w->at, head = 2;
        if (have >= 2) {
            uint64_t n = b[1] & 0x7f;
            if (n == 126)
                head = 4;
            else if (n == 127)
                head = 10;
            if (have >= head) {
                if (head == 4)
                    n = (uint64_t)b[2] << 8 | b[3];
                for (size_t i = 2; head == 10 && i < 10; i++)
                    n = n << 8 | b[i];
                if (have >= head + n) {
                    *p = b + head;
                    *len = (size_t)n;
                    w->at += head + (size_t)n;
                    return b[0] & 0x0f;
                }
            }
        }
        if (w->at == w->in.len) {
            vk_buf_reset(&w->in);
            w->at = 0;
        }
        ws_fill(w);
    }
}

static void ws_open(ws *w, const opts *o)
{
    char path[512];
    snprintf(path, sizeof path,
             "/api/v1/namespaces/%s/pods/%s/exec?container=%s&command=cat&stdin=true&stdout=true",
             o->ns, o->pod, o->container);
    *w = (ws){.curl = api_handle(o, path), .in = VK_BUF_INIT};
    /* HTTP/1.1 in ALPN: the upgrade below is an HTTP/1.1 request. */
    curl_easy_setopt(w->curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(w->curl, CURLOPT_CONNECT_ONLY, 1L);
    CURLcode rc = curl_easy_perform(w->curl);
    if (rc != CURLE_OK)
        die("cannot connect to %s: %s", o->server, curl_easy_strerror(rc));
    curl_easy_getinfo(w->curl, CURLINFO_ACTIVESOCKET, &w->fd);
    const char *host = strstr(o->server, "://");
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n",
                     path, host ? host + 3 : o->server);
    ws_write(w, req, (size_t)n);
    char *end;
    while (!(end = memmem(w->in.data, w->in.len, "\r\n\r\n", 4)))
        ws_fill(w);
    if (strncmp(w->in.data, "HTTP/1.1 101", 12) != 0)
        die("exec through the API server refused: %.*s", (int)w->in.len, w->in.data);
    w->at = (size_t)(end + 4 - w->in.data);
}

/* Write msg to stdin; time until all of it came back on stdout. */
static double ws_round(ws *w, const char *msg, size_t len)
{
    double t0 = now_ms();
    ws_send(w, WS_CHANNEL_STDIN, msg, len);
    size_t got = 0;
    while (got < len) {
        const uint8_t *p;
        size_t n;
        int op = ws_frame(w, &p, &n);
        if (op == 0x8)
            die("exec through the API server: closed by the server");
        if (op == 0x2 && n > 1 && p[0] == WS_CHANNEL_STDOUT) {
            if (got + n - 1 > len || memcmp(msg + got, p + 1, n - 1) != 0)
                die("exec through the API server: stdout is not what was sent");
            got += n - 1;
        }
    }
    return now_ms() - t0;
}

static void ws_close(ws *w)
{
    curl_easy_cleanup(w->curl);
    vk_buf_free(&w->in);
}

/* ---- the provider directly ------------------------------------------------------------ */

static provider_client *direct_client(const opts *o)
{
    char target[600];
    snprintf(target, sizeof target, "unix:%s", o->socket);
    provider_client *pc = pc_new(target, 5000, NULL);
    pc_info info = {0};
    vk_status st = {0};
    /* An empty core target leaves the provider's callbacks on the core. */
    if (!pc || !pc_wait_ready(pc, 10000) ||
        pc_handshake(pc, "vkc-node", "", 5000, &info, &st) != VK_OK)
        die("cannot reach the provider on %s: %s", o->socket, st.message ? st.message : "");
    pc_info_clear(&info);
    return pc;
}

static pc_stream *direct_exec_open(provider_client *pc, const opts *o)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)o->ns;
    ref.name = (char *)o->pod;
    char *argv[] = {"cat"};
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &ref;
    start.container = (char *)o->container;
    start.command = argv;
    start.n_command = 1;
    start.stdin = start.stdout = true;
    pc_stream *s = NULL;
    vk_status st = {0};
    if (pc_exec(pc, &start, &s, &st) != VK_OK)
        die("ExecInContainer: %s", st.message ? st.message : "");
    return s;
}

static double direct_round(pc_stream *s, const char *msg, size_t len)
{
    double t0 = now_ms();
    if (pc_stream_stdin(s, msg, len) < 0)
        die("ExecInContainer: the call ended");
    size_t got = 0;
    while (got < len) {
        ProtobufCMessage *m = NULL;
        if (pc_stream_next(s, &m) != 1)
            die("ExecInContainer: the call ended before the echo");
        Vkc__Provider__V1__ExecOutput *out = (Vkc__Provider__V1__ExecOutput *)m;
        if (out->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT) {
            size_t n = out->stdout.len;
            if (got + n > len || memcmp(msg + got, out->stdout.data, n) != 0)
                die("ExecInContainer: stdout is not what was sent");
            got += n;
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return now_ms() - t0;
}

/* Bytes of one whole log from the provider. */
static size_t direct_log(provider_client *pc, const opts *o)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)o->ns;
    ref.name = (char *)o->pod;
    Vkc__Provider__V1__GetContainerLogsRequest req = VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    req.pod = &ref;
    req.container = (char *)o->container;
    req.timestamps = true;
    pc_stream *s = NULL;
    vk_status st = {0};
    if (pc_get_container_logs(pc, &req, &s, &st) != VK_OK)
        die("GetContainerLogs: %s", st.message ? st.message : "");
    size_t bytes = 0;
    ProtobufCMessage *m = NULL;
    while (pc_stream_next(s, &m) == 1) {
        bytes += ((Vkc__Provider__V1__LogChunk *)m)->data.len;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    if (pc_stream_finish(s, &st) != VK_OK)
        die("GetContainerLogs: %s", st.message ? st.message : "");
    pc_stream_free(s);
    return bytes;
}

/* ---- logs through the API server -------------------------------------------------------- */

static size_t count_bytes(char *data, size_t size, size_t n, void *ud)
{
    (void)data;
    *(size_t *)ud += size * n;
    return size * n;
}

static size_t api_log(CURL *c)
{
    size_t bytes = 0;
    long code = 0;
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &bytes);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK || code != 200)
        die("log through the API server: %s, HTTP %ld", curl_easy_strerror(rc), code);
    return bytes;
}

/* ---- the runs ----------------------------------------------------------------------------- */

static void bench_exec(const opts *o, provider_client *pc, FILE *csv)
{
    ws w;
    ws_open(&w, o);
    pc_stream *s = direct_exec_open(pc, o);
    size_t len = (size_t)o->msg_bytes;
    char *msg = malloc(len);
    double *api = calloc((size_t)o->rounds, sizeof *api);
    double *direct = calloc((size_t)o->rounds, sizeof *direct);
    if (!msg || !api || !direct)
        die("out of memory");
    /* Interleaved, so both paths see the same machine load. */
    for (int i = -WARMUP; i < o->rounds; i++) {
        for (size_t k = 0; k < len; k++)
            msg[k] = (char)('a' + (i + WARMUP + (int)k) % 26);
        double a = ws_round(&w, msg, len), d = direct_round(s, msg, len);
        if (i >= 0) {
            api[i] = a;
            direct[i] = d;
            if (csv)
                fprintf(csv, "%d,%.3f,%.3f\n", i, a, d);
        }
    }
    size_t n = (size_t)o->rounds;
    printf("exec_rounds=%d\nexec_msg_bytes=%d\n", o->rounds, o->msg_bytes);
    printf("exec_api_p50_ms=%.3f\nexec_api_p99_ms=%.3f\n", quantile(api, n, 0.5), quantile(api, n, 0.99));
    printf("exec_direct_p50_ms=%.3f\nexec_direct_p99_ms=%.3f\n",
           quantile(direct, n, 0.5), quantile(direct, n, 0.99));
    pc_stream_close_stdin(s);
    ProtobufCMessage *m = NULL;
    while (pc_stream_next(s, &m) == 1)
        protobuf_c_message_free_unpacked(m, NULL);
    pc_stream_free(s);
    ws_close(&w);
    free(msg);
    free(api);
    free(direct);
}

static void bench_logs(const opts *o, provider_client *pc)
{
    char path[512];
    snprintf(path, sizeof path, "/api/v1/namespaces/%s/pods/%s/log?container=%s&timestamps=true",
             o->ns, o->pod, o->container);
    CURL *c = api_handle(o, path);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_bytes);
    double api_ms = 0, direct_ms = 0;
    size_t api_bytes = 0, direct_bytes = 0;
    api_log(c); /* connect and warm up outside the timing */
    for (int i = 0; i < o->log_gets; i++) {
        double t0 = now_ms();
        api_bytes += api_log(c);
        double t1 = now_ms();
        direct_bytes += direct_log(pc, o);
        direct_ms += now_ms() - t1;
        api_ms += t1 - t0;
    }
    curl_easy_cleanup(c);
    printf("log_gets=%d\nlog_api_bytes=%zu\nlog_direct_bytes=%zu\n", o->log_gets, api_bytes, direct_bytes);
    printf("log_api_ms_per_get=%.3f\nlog_direct_ms_per_get=%.3f\n",
           api_ms / o->log_gets, direct_ms / o->log_gets);
    printf("log_api_mb_s=%.2f\nlog_direct_mb_s=%.2f\n",
           (double)api_bytes / 1e6 / (api_ms / 1e3), (double)direct_bytes / 1e6 / (direct_ms / 1e3));
}

static void usage(void)
{
    fprintf(stderr,
            "usage: vkc-bench-streams --server https://HOST:PORT --ca F --cert F --key F\n"
            "         --socket PROVIDER_SOCK --ns NS --pod POD [--container main]\n"
            "         [--rounds 200] [--msg-bytes 64] [--log-gets 100] [--csv F]\n");
    exit(2);
}

static void parse(int argc, char **argv, opts *o)
{
    static const struct option longs[] = {
        {"server", required_argument, NULL, 's'},  {"ca", required_argument, NULL, 'a'},
        {"cert", required_argument, NULL, 'c'},    {"key", required_argument, NULL, 'k'},
        {"socket", required_argument, NULL, 'S'},  {"ns", required_argument, NULL, 'n'},
        {"pod", required_argument, NULL, 'p'},     {"container", required_argument, NULL, 'C'},
        {"rounds", required_argument, NULL, 'r'},  {"msg-bytes", required_argument, NULL, 'm'},
        {"log-gets", required_argument, NULL, 'l'}, {"csv", required_argument, NULL, 'v'},
        {NULL, 0, NULL, 0},
    };
    *o = (opts){.container = "main", .rounds = 200, .msg_bytes = 64, .log_gets = 100};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        switch (ch) {
        case 's': o->server = optarg; break;
        case 'a': o->ca = optarg; break;
        case 'c': o->cert = optarg; break;
        case 'k': o->key = optarg; break;
        case 'S': o->socket = optarg; break;
        case 'n': o->ns = optarg; break;
        case 'p': o->pod = optarg; break;
        case 'C': o->container = optarg; break;
        case 'r': o->rounds = atoi(optarg); break;
        case 'm': o->msg_bytes = atoi(optarg); break;
        case 'l': o->log_gets = atoi(optarg); break;
        case 'v': o->csv = optarg; break;
        default: usage();
        }
    }
    if (!o->server || !o->ca || !o->cert || !o->key || !o->socket || !o->ns || !o->pod ||
        o->rounds < 1 || o->msg_bytes < 1 || o->msg_bytes > 65000 || o->log_gets < 1)
        usage();
}

int main(int argc, char **argv)
{
    opts o;
    parse(argc, argv, &o);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    vk_rpc_init();
    FILE *csv = o.csv ? fopen(o.csv, "w") : NULL;
    if (o.csv && !csv)
        die("cannot write %s", o.csv);
    if (csv)
        fprintf(csv, "round,api_ms,direct_ms\n");
    provider_client *pc = direct_client(&o);
    bench_exec(&o, pc, csv);
    bench_logs(&o, pc);
    if (csv)
        fclose(csv);
    pc_unref(pc);
    vk_rpc_shutdown();
    curl_global_cleanup();
    return 0;
}
