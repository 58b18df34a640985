/* probe_run.c -- read a probe from the pod spec and run it once: exec
 * through the runtime's ExecSync, httpGet and tcpSocket from the node to
 * the pod's address, the way the kubelet's prober does (pkg/probe). Every
 * run ends within the probe's timeoutSeconds. An HTTPS httpGet speaks TLS
 * with OpenSSL and, as the kubelet's (InsecureSkipVerify), does not verify
 * the server's certificate.
 */
#include "cri.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "json.h"

#define USER_AGENT "kube-probe/1.20"
#define MAX_OUTPUT 1024         /* of a failure, in the event */
#define MAX_RESPONSE 4096       /* read for the status line */
#define EXEC_SLACK_MS 5000      /* the runtime's own timeout fires first */

/* ---- the spec --------------------------------------------------------------------- */

void probe_spec_free(probe_spec *s)
{
    for (size_t i = 0; i < s->n_command; i++)
        free(s->command[i]);
    free(s->command);
    for (size_t i = 0; i < s->n_headers; i++) {
        free((char *)s->headers[i].name);
        free((char *)s->headers[i].value);
    }
    free(s->headers);
    free(s->host);
    free(s->path);
    *s = (probe_spec){0};
}

/* A port: a number, or the name of one of the container's ports. */
static int32_t port_of(yajl_val v, const vk_container *c)
{
    if (YAJL_IS_INTEGER(v))
        return YAJL_GET_INTEGER(v) > 0 && YAJL_GET_INTEGER(v) < 65536
                   ? (int32_t)YAJL_GET_INTEGER(v) : -1;
    const char *name = vk_json_str(v, NULL);
    for (size_t i = 0; name && i < c->n_ports; i++)
        if (c->ports[i].name && strcmp(c->ports[i].name, name) == 0)
            return c->ports[i].container_port;
    return -1;
}

static char *dup_str(yajl_val v, const char *def)
{
    return strdup(vk_json_str(v, def));
}

static int64_t positive(yajl_val v, int64_t def)
{
    int64_t n = vk_json_int(v, def);
    return n >= 1 ? n : def;
}

int probe_parse(yajl_val probe, const vk_container *c, probe_spec *s, char *err, size_t errlen)
{
    yajl_val exec = vk_json_member(probe, "exec");
    yajl_val http = vk_json_member(probe, "httpGet");
    yajl_val tcp = vk_json_member(probe, "tcpSocket");
    *s = (probe_spec){
        .initial_delay_s = vk_json_int(vk_json_member(probe, "initialDelaySeconds"), 0),
        .period_s = positive(vk_json_member(probe, "periodSeconds"), 10),
        .timeout_s = positive(vk_json_member(probe, "timeoutSeconds"), 1),
        .success_threshold = (int32_t)positive(vk_json_member(probe, "successThreshold"), 1),
        .failure_threshold = (int32_t)positive(vk_json_member(probe, "failureThreshold"), 3),
    };
    if (s->initial_delay_s < 0)
        s->initial_delay_s = 0;
    if (exec) {
        yajl_val cmd = vk_json_member(exec, "command");
        size_t n = YAJL_IS_ARRAY(cmd) ? cmd->u.array.len : 0;
        s->how = PROBE_EXEC;
        if (!n) {
            snprintf(err, errlen, "exec probe without a command");
            return -1;
        }
        s->command = calloc(n, sizeof *s->command);
        for (size_t i = 0; s->command && i < n; i++, s->n_command++)
            if (!(s->command[i] = dup_str(cmd->u.array.values[i], "")))
                break;
        if (s->n_command < n)
            goto oom;
        return 0;
    }
    if (http || tcp) {
        yajl_val port = vk_json_member(http ? http : tcp, "port");
        s->how = http ? PROBE_HTTP : PROBE_TCP;
        s->port = port_of(port, c);
        if (s->port < 0) {
            snprintf(err, errlen, "probe port %s is not a port of container %s",
                     vk_json_str(port, "(number)"), c->name);
            return -1;
        }
        s->host = dup_str(vk_json_member(http ? http : tcp, "host"), "");
        if (!s->host)
            goto oom;
        if (tcp)
            return 0;
        const char *scheme = vk_json_str(vk_json_member(http, "scheme"), "HTTP");
        s->https = strcasecmp(scheme, "HTTPS") == 0;
        if (!s->https && strcasecmp(scheme, "HTTP") != 0) {
            snprintf(err, errlen, "%s probes are not supported by vkc-provider-cri", scheme);
            return -1;
        }
        const char *path = vk_json_str(vk_json_member(http, "path"), "/");
        s->path = malloc(strlen(path) + 2);
        if (!s->path)
            goto oom;
        snprintf(s->path, strlen(path) + 2, "%s%s", path[0] == '/' ? "" : "/", path);
        yajl_val hs = vk_json_member(http, "httpHeaders");
        size_t n = YAJL_IS_ARRAY(hs) ? hs->u.array.len : 0;
        s->headers = n ? calloc(n, sizeof *s->headers) : NULL;
        if (n && !s->headers)
            goto oom;
        for (size_t i = 0; i < n; i++) {
            const char *name = vk_json_str(vk_json_member(hs->u.array.values[i], "name"), NULL);
            const char *value = vk_json_str(vk_json_member(hs->u.array.values[i], "value"), "");
            /* A header line must stay one line. */
            if (!name || strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
                continue;
            vk_kv *h = &s->headers[s->n_headers];
            h->name = strdup(name);
            h->value = strdup(value);
            s->n_headers++;
            if (!h->name || !h->value)
                goto oom;
        }
        return 0;
    }
    snprintf(err, errlen, vk_json_member(probe, "grpc") ? "gRPC probes are not supported"
                                                         : "a probe with no handler");
    return -1;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/* ---- exec ------------------------------------------------------------------------- */

static void add_output(char *out, size_t n, const uint8_t *data, size_t len)
{
    size_t have = strlen(out);
    if (!len || have + 1 >= n)
        return;
    size_t k = len < n - 1 - have ? len : n - 1 - have;
    memcpy(out + have, data, k);
    out[have + k] = '\0';
}

static enum probe_result run_exec(const probe_spec *s, const char *ctr_id, char *out, size_t n)
{
    Runtime__V1__ExecSyncRequest req = RUNTIME__V1__EXEC_SYNC_REQUEST__INIT;
    Runtime__V1__ExecSyncResponse *resp = NULL;
    char err[256];
    req.container_id = (char *)ctr_id;
    req.cmd = s->command;
    req.n_cmd = s->n_command;
    req.timeout = s->timeout_s;
    int64_t start = cri_now_ns();
    int code = rt_call(RT("ExecSync"), &req.base, &runtime__v1__exec_sync_response__descriptor,
                       (int)(s->timeout_s * 1000) + EXEC_SLACK_MS, &resp, err, sizeof err);
    if (code != VK_OK) {
        /* A command that outlives its timeout fails the probe; anything
         * else is the runtime's trouble, not the container's. */
        if (code == VK_DEADLINE_EXCEEDED || cri_now_ns() - start >= s->timeout_s * NS_PER_S) {
            snprintf(out, n, "command timed out after %llds", (long long)s->timeout_s);
            return PROBE_FAILURE;
        }
        snprintf(out, n, "%s", err);
        return PROBE_ERROR;
    }
    out[0] = '\0';
    add_output(out, n, resp->stdout.data, resp->stdout.len);
    add_output(out, n, resp->stderr.data, resp->stderr.len);
    enum probe_result r = resp->exit_code == 0 ? PROBE_SUCCESS : PROBE_FAILURE;
    if (r == PROBE_FAILURE && !out[0])
        snprintf(out, n, "command exited with %d", resp->exit_code);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return r;
}

/* ---- network ------------------------------------------------------------------------ */

static int ms_left(int64_t deadline_ns)
{
    int64_t left = (deadline_ns - cri_now_ns()) / NS_PER_MS;
    return left <= 0 ? 0 : left > 600000 ? 600000 : (int)left;
}

/* A connected socket to host:port before the deadline, or -1 with out set
 * the way Go's dialer says it. */
static int dial(const char *host, int32_t port, int64_t deadline, char *out, size_t n)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    int gai = getaddrinfo(host, ps, &hints, &ai);
    if (gai != 0) {
        snprintf(out, n, "dial tcp: lookup %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int err = fd < 0 ? errno : 0;
    if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            socklen_t len = sizeof err;
            int r = poll(&pfd, 1, ms_left(deadline));
            if (r == 0)
                err = ETIMEDOUT;
            else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                err = errno;
        }
    }
    freeaddrinfo(ai);
    if (err) {
        snprintf(out, n, "dial tcp %s:%d: %s", host, port,
                 err == ETIMEDOUT ? "i/o timeout" : err == ECONNREFUSED
                                                        ? "connect: connection refused"
                                                        : strerror(err));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static const char *target(const probe_spec *s, const char *pod_ip)
{
    return s->host && s->host[0] ? s->host : pod_ip;
}

static enum probe_result run_tcp(const probe_spec *s, const char *pod_ip, char *out, size_t n)
{
    int fd = dial(target(s, pod_ip), s->port, cri_now_ns() + s->timeout_s * NS_PER_S, out, n);
    if (fd < 0)
        return PROBE_FAILURE;
    close(fd);
    return PROBE_SUCCESS;
}

static bool has_header(const probe_spec *s, const char *name)
{
    for (size_t i = 0; i < s->n_headers; i++)
        if (strcasecmp(s->headers[i].name, name) == 0)
            return true;
    return false;
}

/* An HTTP probe's connection: TLS over fd when ssl is set. Every wait on
 * it ends at the probe's deadline. */
typedef struct probe_conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    int64_t deadline;
} probe_conn;

static bool wait_fd(const probe_conn *c, bool readable)
{
    struct pollfd pfd = {.fd = c->fd, .events = readable ? POLLIN : POLLOUT};
    return poll(&pfd, 1, ms_left(c->deadline)) > 0;
}

/* After an OpenSSL call returned rc: true when it only waits for the
 * socket and the socket became ready in time, so the call is to be made
 * again. */
static bool tls_again(const probe_conn *c, int rc)
{
    int e = SSL_get_error(c->ssl, rc);
    return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
           wait_fd(c, e == SSL_ERROR_WANT_READ);
}

/* The TLS handshake with host. 0, or -1 with why set. */
static int tls_start(probe_conn *c, const char *host, char *why, size_t n)
{
    unsigned char addr[sizeof(struct in6_addr)];
    int rc = 0;
    ERR_clear_error();
    c->ctx = SSL_CTX_new(TLS_client_method());
    c->ssl = c->ctx ? SSL_new(c->ctx) : NULL;
    if (c->ssl && SSL_set_fd(c->ssl, c->fd) == 1) {
        SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
        /* Go names the server (SNI) by host name, never by address. */
        if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1)
            SSL_set_tlsext_host_name(c->ssl, host);
        while ((rc = SSL_connect(c->ssl)) != 1 && tls_again(c, rc))
            ;
    }
    if (rc == 1)
        return 0;
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, why, n);
    else
        snprintf(why, n, "%s", ms_left(c->deadline) == 0 ? "net/http: TLS handshake timeout"
                                                          : "TLS handshake failed");
    return -1;
}

static int conn_send(const probe_conn *c, const char *data, size_t len)
{
    while (len) {
        ssize_t w;
        if (c->ssl) {
            int rc = SSL_write(c->ssl, data, (int)len);
            if (rc <= 0 && tls_again(c, rc))
                continue;
            w = rc;
        } else {
            w = send(c->fd, data, len, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (!wait_fd(c, false))
                    return -1;
                continue;
            }
        }
        if (w <= 0)
            return -1;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Up to len bytes: how many, 0 at the end of the response, -1 on an error
 * or at the deadline. */
static ssize_t conn_recv(const probe_conn *c, char *buf, size_t len)
{
    for (;;) {
        if (c->ssl) {
            int rc = SSL_read(c->ssl, buf, (int)len);
            if (rc > 0)
                return rc;
            if (SSL_get_error(c->ssl, rc) == SSL_ERROR_ZERO_RETURN)
                return 0;
            if (!tls_again(c, rc))
                return -1;
            continue;
        }
        ssize_t k = recv(c->fd, buf, len, 0);
        if (k >= 0)
            return k;
        if ((errno != EAGAIN && errno != EINTR) || !wait_fd(c, true))
            return -1;
    }
}

static void conn_close(probe_conn *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

/* GET path; a status from 200 to 399 passes. Redirects are not followed:
 * a 3xx passes as it is, as the kubelet treats a redirect elsewhere. */
static enum probe_result run_http(const probe_spec *s, const char *pod_ip, char *out, size_t n)
{
    const char *host = target(s, pod_ip);
    probe_conn c = {.deadline = cri_now_ns() + s->timeout_s * NS_PER_S};
    char url[512];
    bool v6 = strchr(host, ':') != NULL;
    snprintf(url, sizeof url, "%s://%s%s%s:%d%s", s->https ? "https" : "http", v6 ? "[" : "",
             host, v6 ? "]" : "", s->port, s->path);
    char why[256];
    c.fd = dial(host, s->port, c.deadline, why, sizeof why);
    if (c.fd < 0) {
        snprintf(out, n, "Get \"%s\": %s", url, why);
        return PROBE_FAILURE;
    }
    vk_buf req = VK_BUF_INIT;
    enum probe_result r = PROBE_FAILURE;
    char resp[MAX_RESPONSE + 1];
    size_t got = 0;
    if (s->https && tls_start(&c, host, why, sizeof why) < 0) {
        snprintf(out, n, "Get \"%s\": %s", url, why);
        goto out;
    }
    int rc = vk_buf_printf(&req, "GET %s HTTP/1.1\r\n", s->path);
    if (!has_header(s, "Host"))
        rc |= vk_buf_printf(&req, "Host: %s%s%s:%d\r\n", v6 ? "[" : "", host, v6 ? "]" : "",
                            s->port);
    if (!has_header(s, "User-Agent"))
        rc |= vk_buf_puts(&req, "User-Agent: " USER_AGENT "\r\n");
    if (!has_header(s, "Accept"))
        rc |= vk_buf_puts(&req, "Accept: */*\r\n");
    for (size_t i = 0; i < s->n_headers; i++)
        rc |= vk_buf_printf(&req, "%s: %s\r\n", s->headers[i].name, s->headers[i].value);
    rc |= vk_buf_puts(&req, "Connection: close\r\n\r\n");
    if (rc != 0 || conn_send(&c, req.data, req.len) < 0) {
        snprintf(out, n, "Get \"%s\": cannot send the request", url);
        goto out;
    }
    /* Enough for the status line. */
    while (got < MAX_RESPONSE && !memchr(resp, '\n', got)) {
        ssize_t k = conn_recv(&c, resp + got, MAX_RESPONSE - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    resp[got] = '\0';
    int status = 0;
    if (!memchr(resp, '\n', got) || sscanf(resp, "HTTP/%*d.%*d %d", &status) != 1) {
        snprintf(out, n, "Get \"%s\": %s", url,
                 ms_left(c.deadline) == 0 ? "context deadline exceeded (Client.Timeout exceeded "
                                            "while awaiting headers)"
                                          : "malformed HTTP response");
        goto out;
    }
    if (status >= 200 && status < 400)
        r = PROBE_SUCCESS;
    else
        snprintf(out, n, "HTTP probe failed with statuscode: %d", status);
out:
    vk_buf_free(&req);
    conn_close(&c);
    return r;
}

enum probe_result probe_run(const probe_spec *s, const char *ctr_id, const char *pod_ip,
                            char *out, size_t n)
{
    char buf[MAX_OUTPUT];
    enum probe_result r;
    buf[0] = '\0';
    if (s->how == PROBE_EXEC) {
        r = run_exec(s, ctr_id, buf, sizeof buf);
    } else if (!target(s, pod_ip) || !target(s, pod_ip)[0]) {
        snprintf(buf, sizeof buf, "the pod has no IP address yet");
        r = PROBE_ERROR;
    } else {
        r = s->how == PROBE_HTTP ? run_http(s, pod_ip, buf, sizeof buf)
                                 : run_tcp(s, pod_ip, buf, sizeof buf);
    }
    snprintf(out, n, "%s", buf);
    return r;
}
