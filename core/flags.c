/* flags.c -- getopt_long over the vkc-core flags, then defaults and
 * validation, so the rest of the core sees only sane values. */
#include "flags.h"

#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "command.h"
#include "log.h"
#include "version.h"

enum {
    O_NODENAME = 256, O_KUBECONFIG, O_PROVIDER, O_PROVIDER_CONFIG, O_LOG_LEVEL,
    O_METRICS_ADDR, O_LISTEN_PORT, O_PROVIDER_CMD, O_PROVIDER_SOCKET,
    O_SOCKET_DIR, O_PING_INTERVAL, O_PING_TIMEOUT, O_MAX_BACKOFF,
    O_STOP_TIMEOUT, O_VERSION, O_NODE_LABELS, O_DISABLE_TAINT, O_NODE_IP,
    O_KUBE_QPS, O_KUBE_BURST, O_POD_WORKERS, O_TLS_CERT, O_TLS_KEY, O_CLIENT_CA,
    O_TOKEN_WEBHOOK, O_AUTHZ_MODE, O_ANONYMOUS, O_USER, O_STREAM_IDLE,
};

static const struct option options[] = {
    {"nodename", required_argument, NULL, O_NODENAME},
    {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
    {"provider", required_argument, NULL, O_PROVIDER},
    {"provider-config", required_argument, NULL, O_PROVIDER_CONFIG},
    {"log-level", required_argument, NULL, O_LOG_LEVEL},
    {"metrics-addr", required_argument, NULL, O_METRICS_ADDR},
    {"listen-port", required_argument, NULL, O_LISTEN_PORT},
    {"provider-cmd", required_argument, NULL, O_PROVIDER_CMD},
    {"provider-socket", required_argument, NULL, O_PROVIDER_SOCKET},
    {"socket-dir", required_argument, NULL, O_SOCKET_DIR},
    {"provider-ping-interval", required_argument, NULL, O_PING_INTERVAL},
    {"provider-ping-timeout", required_argument, NULL, O_PING_TIMEOUT},
    {"provider-restart-max-backoff", required_argument, NULL, O_MAX_BACKOFF},
    {"provider-stop-timeout", required_argument, NULL, O_STOP_TIMEOUT},
    {"node-labels", required_argument, NULL, O_NODE_LABELS},
    {"disable-taint", no_argument, NULL, O_DISABLE_TAINT},
    {"node-ip", required_argument, NULL, O_NODE_IP},
    {"kube-api-qps", required_argument, NULL, O_KUBE_QPS},
    {"kube-api-burst", required_argument, NULL, O_KUBE_BURST},
    {"pod-sync-workers", required_argument, NULL, O_POD_WORKERS},
    {"tls-cert-file", required_argument, NULL, O_TLS_CERT},
    {"tls-private-key-file", required_argument, NULL, O_TLS_KEY},
    {"client-ca-file", required_argument, NULL, O_CLIENT_CA},
    {"authentication-token-webhook", optional_argument, NULL, O_TOKEN_WEBHOOK},
    {"authorization-mode", required_argument, NULL, O_AUTHZ_MODE},
    {"anonymous-auth", optional_argument, NULL, O_ANONYMOUS},
    {"streaming-connection-idle-timeout", required_argument, NULL, O_STREAM_IDLE},
    {"user", required_argument, NULL, O_USER},
    {"version", no_argument, NULL, O_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char usage[] =
    "usage: vkc-core (--provider-cmd CMD | --provider-socket PATH) [flags]\n"
    "\n"
    "A Kubernetes node backed by a provider process (see proto/provider.proto).\n"
    "\n"
    "provider:\n"
    "  --provider-cmd CMD        start and supervise the provider: CMD is split into\n"
    "                            words like a shell would (quotes, backslash), with\n"
    "                            no expansion; use sh -c '...' for shell syntax\n"
    "  --provider-socket PATH    connect to a provider already serving on PATH\n"
    "  --provider NAME           expected provider name (warn when it differs)\n"
    "  --provider-config PATH    passed to a started provider as VKC_PROVIDER_CONFIG\n"
    "  --socket-dir DIR          where provider.sock and core.sock live (mode 0700;\n"
    "                            default /run/vkc/NODE as root, /run/vkc-NODE with\n"
    "                            --user, else $XDG_RUNTIME_DIR/vkc/NODE or\n"
    "                            /tmp/vkc-UID/NODE)\n"
    "  --provider-ping-interval D          liveness ping period (2s)\n"
    "  --provider-ping-timeout D           deadline of one ping (1s); three missed\n"
    "                                      pings in a row mean the provider hung\n"
    "  --provider-restart-max-backoff D    restart delay cap (30s)\n"
    "  --provider-stop-timeout D           SIGTERM to SIGKILL at shutdown (10s)\n"
    "\n"
    "node:\n"
    "  --nodename NAME           node name (default: the host name)\n"
    "  --kubeconfig PATH         API server credentials\n"
    "  --node-labels K=V,...     extra labels of the Node\n"
    "  --disable-taint           no virtual-kubelet.io/provider taint\n"
    "  --node-ip IP              the node's InternalIP (default: detected)\n"
    "  --kube-api-qps N          API requests per second (50)\n"
    "  --kube-api-burst N        API request burst (100)\n"
    "  --pod-sync-workers N      concurrent provider calls for pods (10)\n"
    "  --metrics-addr ADDR       also serve /metrics over plain HTTP on [host]:port\n"
    "                            (off; the kubelet API's /metrics needs no flag)\n"
    "\n"
    "kubelet API:\n"
    "  --listen-port PORT        HTTPS port (10250)\n"
    "  --tls-cert-file PATH      serving certificate (default: self-signed)\n"
    "  --tls-private-key-file PATH\n"
    "  --client-ca-file PATH     authenticate clients by x509 certificate\n"
    "  --authentication-token-webhook[=BOOL]  bearer tokens via TokenReview\n"
    "  --authorization-mode MODE AlwaysAllow or Webhook (SubjectAccessReview;\n"
    "                            the default when a kubeconfig is given)\n"
    "  --anonymous-auth[=BOOL]   serve unauthenticated requests (false)\n"
    "  --streaming-connection-idle-timeout D\n"
    "                            close an exec, attach or port-forward connection\n"
    "                            idle this long in both directions (4h0m0s; 0: never)\n"
    "\n"
    "general:\n"
    "  --user USER[:GROUP]       as root: once the port is bound and the keys are\n"
    "                            read, run as USER (and GROUP, else USER's groups);\n"
    "                            the provider is started as USER too\n"
    "  --log-level LEVEL         debug, info, warn or error (info)\n"
    "  --version, --help\n"
    "\n"
    "Durations: 500ms, 2s, 1m, 1m30s.\n";

static enum flags_result bad(FILE *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static enum flags_result bad(FILE *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vkc-core: ", err);
    vfprintf(err, fmt, ap);
    fputs("\n", err);
    va_end(ap);
    return FLAGS_EXIT_BAD;
}

static int set(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
    return *field ? 0 : -1;
}

int flags_parse_duration(const char *s, int *ms)
{
    /* Go's units (time.ParseDuration), as the kubelet's flags take them. */
    static const struct { const char *name; double ms; } units[] = {
        {"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1}, {"s", 1000},
        {"m", 60000}, {"h", 3600000},
    };
    double total = 0;

    if (strcmp(s, "0") == 0) {
        *ms = 0;
        return 0;
    }
    if (!*s)
        return -1;
    while (*s) {
        double v = 0, scale = 1;
        int digits = 0;
        for (; isdigit((unsigned char)*s); s++, digits++)
            v = v * 10 + (*s - '0');
        if (*s == '.')
            for (s++; isdigit((unsigned char)*s); s++, digits++)
                v += (*s - '0') * (scale /= 10);
        if (digits == 0)
            return -1;
        size_t u = 0; /* "ms" comes before "m" in units, so it wins */
        while (u < sizeof units / sizeof units[0] &&
               strncmp(s, units[u].name, strlen(units[u].name)) != 0)
            u++;
        if (u == sizeof units / sizeof units[0])
            return -1;
        s += strlen(units[u].name);
        total += v * units[u].ms;
        if (total > INT_MAX)
            return -2;
    }
    /* A positive duration under a millisecond is not "none". */
    *ms = total > 0 && total < 1 ? 1 : (int)total;
    return 0;
}

/* A DNS-1123 subdomain, what Kubernetes accepts as a node name. */
static int valid_node_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        int alnum = islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]);
        int first = i == 0 || s[i - 1] == '.';
        int last = i + 1 == len || s[i + 1] == '.';
        if (alnum)
            continue;
        if ((s[i] != '-' && s[i] != '.') || first || last)
            return 0;
    }
    return 1;
}

static int parse_port(const char *s, int *port)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!isdigit((unsigned char)*s) || *end || v < 1 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

/* [host]:port, host empty, a name, an IPv4 address or [IPv6]. */
static int valid_addr(const char *s)
{
    const char *colon = strrchr(s, ':');
    int port;
    if (!colon || parse_port(colon + 1, &port) < 0)
        return 0;
    if (s[0] == '[')
        return colon > s + 1 && colon[-1] == ']';
    return memchr(s, ':', (size_t)(colon - s)) == NULL;
}

/* Go's strconv.ParseBool subset that kubelet flags accept; no value: true. */
static int parse_bool(const char *s, int *v)
{
    if (!s || !strcmp(s, "true") || !strcmp(s, "1")) {
        *v = 1;
        return 0;
    }
    if (!strcmp(s, "false") || !strcmp(s, "0")) {
        *v = 0;
        return 0;
    }
    return -1;
}

static int parse_count(const char *s, int max, int *v)
{
    char *end;
    long n = strtol(s, &end, 10);
    if (!isdigit((unsigned char)*s) || *end || n < 1 || n > max)
        return -1;
    *v = (int)n;
    return 0;
}

/* k=v[,k=v...] with Kubernetes label syntax checked loosely: a non-empty
 * key of name characters (and one '/' prefix), a value of at most 63. */
static int valid_labels(const char *s)
{
    while (*s) {
        size_t klen = strcspn(s, "=,");
        if (klen == 0 || klen > 253 || s[klen] != '=')
            return 0;
        for (size_t i = 0; i < klen; i++)
            if (!isalnum((unsigned char)s[i]) && !strchr("-._/", s[i]))
                return 0;
        s += klen + 1;
        size_t vlen = strcspn(s, ",");
        if (vlen > 63)
            return 0;
        for (size_t i = 0; i < vlen; i++)
            if (!isalnum((unsigned char)s[i]) && !strchr("-._", s[i]))
                return 0;
        s += vlen;
        if (*s == ',' && *++s == '\0')
            return 0;
    }
    return 1;
}

static char *default_node_name(void)
{
    char host[256];
    if (gethostname(host, sizeof host) < 0)
        return NULL;
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return strdup(host);
}

/* With --user the directory is handed to that user, who must be able to
 * reach it: /run/vkc (made mode 0700 for root) would stop it, /run does
 * not. */
static char *default_socket_dir(const char *node, const char *user)
{
    vk_buf b = VK_BUF_INIT;
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int rc;
    if (user)
        rc = vk_buf_printf(&b, "/run/vkc-%s", node);
    else if (geteuid() == 0)
        rc = vk_buf_printf(&b, "/run/vkc/%s", node);
    else if (xdg && xdg[0] == '/')
        rc = vk_buf_printf(&b, "%s/vkc/%s", xdg, node);
    else
        rc = vk_buf_printf(&b, "/tmp/vkc-%u/%s", (unsigned)geteuid(), node);
    if (rc < 0) {
        vk_buf_free(&b);
        return NULL;
    }
    return vk_buf_steal(&b, NULL);
}

static int set_duration(FILE *err, const char *name, const char *value, int *ms, int min)
{
    int rc = flags_parse_duration(value, ms);
    if (rc == -2) {
        bad(err, "--%s: \"%s\" is too long (at most %dh)", name, value, INT_MAX / 3600000);
        return -1;
    }
    if (rc < 0) {
        bad(err, "--%s: bad duration \"%s\" (examples: 500ms, 2s, 1m)", name, value);
        return -1;
    }
    if (*ms < min) {
        bad(err, "--%s: must be at least %dms", name, min);
        return -1;
    }
    return 0;
}

/* Defaults and cross-flag rules once every flag was seen. */
static enum flags_result finish(flags *f, const char *cmd, FILE *err)
{
    const size_t sun_max = sizeof(((struct sockaddr_un *)0)->sun_path);

    if (!cmd == !f->provider_socket)
        return bad(err, "exactly one of --provider-cmd and --provider-socket is required");
    if (!f->node_name && !(f->node_name = default_node_name()))
        return bad(err, "--nodename: cannot read the host name");
    if (!valid_node_name(f->node_name))
        return bad(err, "--nodename: \"%s\" is not a valid node name (lowercase "
                   "letters, digits, '-' and '.')", f->node_name);
    if (f->log_level && vk_log_set_level_name(f->log_level) < 0)
        return bad(err, "--log-level: unknown level \"%s\" (debug, info, warn, error)",
                   f->log_level);
    if (f->metrics_addr && !valid_addr(f->metrics_addr))
        return bad(err, "--metrics-addr: \"%s\" is not [host]:port", f->metrics_addr);

    if (cmd) {
        const char *why;
        if (command_split(cmd, &f->provider_argv, &why) < 0)
            return bad(err, "--provider-cmd: %s", why);
        f->provider_path = command_resolve(f->provider_argv[0]);
        if (!f->provider_path)
            return bad(err, "--provider-cmd: %s: command not found or not executable",
                       f->provider_argv[0]);
    } else {
        const char *path = f->provider_socket;
        if (strncmp(path, "unix://", 7) == 0)
            path += 7;
        else if (strncmp(path, "unix:", 5) == 0)
            path += 5;
        memmove(f->provider_socket, path, strlen(path) + 1);
        if (!f->provider_socket[0] || strlen(f->provider_socket) >= sun_max)
            return bad(err, "--provider-socket: path empty or longer than %zu bytes",
                       sun_max - 1);
    }

    if (f->node_labels && !valid_labels(f->node_labels))
        return bad(err, "--node-labels: \"%s\" is not key=value[,key=value...]", f->node_labels);
    if (!f->tls_cert_file != !f->tls_key_file)
        return bad(err, "--tls-cert-file and --tls-private-key-file go together");
    if (f->authz_webhook < 0)
        f->authz_webhook = f->kubeconfig != NULL;

    if (!f->socket_dir && !(f->socket_dir = default_socket_dir(f->node_name, f->user)))
        return bad(err, "out of memory");
    size_t len = strlen(f->socket_dir);
    while (len > 1 && f->socket_dir[len - 1] == '/')
        f->socket_dir[--len] = '\0';
    if (len == 0 || len + sizeof "/provider.sock" > sun_max)
        return bad(err, "--socket-dir: path empty or too long for a Unix socket "
                   "(at most %zu bytes)", sun_max - sizeof "/provider.sock");
    return FLAGS_RUN;
}

enum flags_result flags_parse(flags *f, int argc, char **argv, FILE *out, FILE *err)
{
    char *cmd = NULL;
    enum flags_result rc = FLAGS_RUN;

    memset(f, 0, sizeof *f);
    f->listen_port = 10250;
    f->ping_interval_ms = 2000;
    f->ping_timeout_ms = 1000;
    f->restart_max_backoff_ms = 30000;
    f->stop_timeout_ms = 10000;
    f->streaming_idle_timeout_ms = 4 * 3600 * 1000; /* the kubelet's 4h0m0s */
    f->kube_api_qps = 50;
    f->kube_api_burst = 100;
    f->pod_sync_workers = 10;
    f->authz_webhook = -1; /* decided once --kubeconfig is known */

    optind = 0; /* glibc: full reinitialisation, so parsing can run twice */
    opterr = 0;
    int c;
    while (rc == FLAGS_RUN && (c = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        /* glibc sets optopt to the character of a bad short option and to
         * 0 or the option's value (>= 256) for a bad long one. */
        char short_name[3] = {'-', (char)optopt, '\0'};
        const char *name = optopt > 0 && optopt < 256 ? short_name : argv[optind - 1];
        int mem = 0;
        switch (c) {
        case O_NODENAME: mem = set(&f->node_name, optarg); break;
        case O_KUBECONFIG: mem = set(&f->kubeconfig, optarg); break;
        case O_PROVIDER: mem = set(&f->provider_name, optarg); break;
        case O_PROVIDER_CONFIG: mem = set(&f->provider_config, optarg); break;
        case O_LOG_LEVEL: mem = set(&f->log_level, optarg); break;
        case O_METRICS_ADDR: mem = set(&f->metrics_addr, optarg); break;
        case O_PROVIDER_CMD: mem = set(&cmd, optarg); break;
        case O_PROVIDER_SOCKET: mem = set(&f->provider_socket, optarg); break;
        case O_SOCKET_DIR: mem = set(&f->socket_dir, optarg); break;
        case O_USER: mem = set(&f->user, optarg); break;
        case O_NODE_LABELS: mem = set(&f->node_labels, optarg); break;
        case O_DISABLE_TAINT: f->disable_taint = 1; break;
        case O_NODE_IP: mem = set(&f->node_ip, optarg); break;
        case O_TLS_CERT: mem = set(&f->tls_cert_file, optarg); break;
        case O_TLS_KEY: mem = set(&f->tls_key_file, optarg); break;
        case O_CLIENT_CA: mem = set(&f->client_ca_file, optarg); break;
        case O_KUBE_QPS: {
            char *end;
            f->kube_api_qps = strtod(optarg, &end);
            if (*end || !(f->kube_api_qps > 0 && f->kube_api_qps <= 100000))
                rc = bad(err, "--kube-api-qps: \"%s\" is not a rate (0 < qps <= 100000)", optarg);
            break;
        }
        case O_KUBE_BURST:
            if (parse_count(optarg, 100000, &f->kube_api_burst) < 0)
                rc = bad(err, "--kube-api-burst: \"%s\" is not a count (1-100000)", optarg);
            break;
        case O_POD_WORKERS:
            if (parse_count(optarg, 1000, &f->pod_sync_workers) < 0)
                rc = bad(err, "--pod-sync-workers: \"%s\" is not a count (1-1000)", optarg);
            break;
        case O_TOKEN_WEBHOOK:
            if (parse_bool(optarg, &f->token_webhook) < 0)
                rc = bad(err, "--authentication-token-webhook: \"%s\" is not true or false", optarg);
            break;
        case O_ANONYMOUS:
            if (parse_bool(optarg, &f->anonymous_auth) < 0)
                rc = bad(err, "--anonymous-auth: \"%s\" is not true or false", optarg);
            break;
        case O_AUTHZ_MODE:
            if (!strcmp(optarg, "Webhook"))
                f->authz_webhook = 1;
            else if (!strcmp(optarg, "AlwaysAllow"))
                f->authz_webhook = 0;
            else
                rc = bad(err, "--authorization-mode: \"%s\" is not AlwaysAllow or Webhook", optarg);
            break;
        case O_LISTEN_PORT:
            if (parse_port(optarg, &f->listen_port) < 0)
                rc = bad(err, "--listen-port: \"%s\" is not a port (1-65535)", optarg);
            break;
        case O_PING_INTERVAL:
            if (set_duration(err, "provider-ping-interval", optarg, &f->ping_interval_ms, 1) < 0)
                rc = FLAGS_EXIT_BAD;
            break;
        case O_PING_TIMEOUT:
            if (set_duration(err, "provider-ping-timeout", optarg, &f->ping_timeout_ms, 1) < 0)
                rc = FLAGS_EXIT_BAD;
            break;
        case O_MAX_BACKOFF:
            if (set_duration(err, "provider-restart-max-backoff", optarg,
                             &f->restart_max_backoff_ms, 1) < 0)
                rc = FLAGS_EXIT_BAD;
            break;
        case O_STREAM_IDLE:
            if (set_duration(err, "streaming-connection-idle-timeout", optarg,
                             &f->streaming_idle_timeout_ms, 0) < 0)
                rc = FLAGS_EXIT_BAD;
            break;
        case O_STOP_TIMEOUT:
            if (set_duration(err, "provider-stop-timeout", optarg, &f->stop_timeout_ms, 0) < 0)
                rc = FLAGS_EXIT_BAD;
            break;
        case O_VERSION:
            fprintf(out, "vkc-core %s (provider protocol %u)\n", VKC_CORE_VERSION,
                    VKC_PROTOCOL_VERSION);
            rc = FLAGS_EXIT_OK;
            break;
        case 'h':
            fputs(usage, out);
            rc = FLAGS_EXIT_OK;
            break;
        case ':':
            rc = bad(err, "%s needs a value", name);
            break;
        default:
            rc = bad(err, "unknown flag %s (see --help)", name);
            break;
        }
        if (mem < 0)
            rc = bad(err, "out of memory");
    }
    if (rc == FLAGS_RUN && optind < argc)
        rc = bad(err, "unexpected argument \"%s\" (see --help)", argv[optind]);
    if (rc == FLAGS_RUN)
        rc = finish(f, cmd, err);
    free(cmd);
    return rc;
}

void flags_free(flags *f)
{
    free(f->node_name);
    free(f->kubeconfig);
    free(f->provider_name);
    free(f->provider_config);
    free(f->log_level);
    free(f->metrics_addr);
    command_free(f->provider_argv);
    free(f->provider_path);
    free(f->provider_socket);
    free(f->socket_dir);
    free(f->user);
    free(f->node_labels);
    free(f->node_ip);
    free(f->tls_cert_file);
    free(f->tls_key_file);
    free(f->client_ca_file);
    memset(f, 0, sizeof *f);
}
