/* bench_common.c -- helpers of vkc-bench and its entry point. */
#include "bench_common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "../../core/kubeconfig.h"
#include "log.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vkc-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void bench_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "[bench %02d:%02d:%02d.%03ld] ", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

struct kube_client *bench_client(struct ev_loop *loop, const char *kubeconfig)
{
    kube_config cfg;
    char err[512];
    if (kube_config_load_file(&cfg, kubeconfig, NULL, err, sizeof err) < 0)
        bench_die("%s", err);
    struct kube_client_opts o = {
        .qps = -1,
        .queue_max = 1000000,
        .timeout_ms = 120000,
    };
    struct kube_client *c = kube_client_new(loop, &cfg, &o, err, sizeof err);
    kube_config_free(&cfg);
    if (!c)
        bench_die("API client: %s", err);
    return c;
}

long bench_rss_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t fl = strlen(field);
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, field, fl) && line[fl] == ':') {
            v = strtol(line + fl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

double bench_metric(int port, const char *series)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {5, 0};
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    vk_buf b = VK_BUF_INIT;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1)) {
        char chunk[16384];
        ssize_t n;
        while ((n = read(fd, chunk, sizeof chunk)) > 0)
            vk_buf_append(&b, chunk, (size_t)n);
    }
    close(fd);
    double v = -1;
    size_t sl = strlen(series);
    for (const char *line = b.data; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (!strncmp(line, series, sl) && line[sl] == ' ') {
            v = strtod(line + sl + 1, NULL);
            break;
        }
    vk_buf_free(&b);
    return v;
}

long bench_pod_index(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (!name || strncmp(name, prefix, pl) != 0 || name[pl] != '-')
        return -1;
    char *end;
    long v = strtol(name + pl + 1, &end, 10);
    return *end || v < 0 ? -1 : v;
}

int bench_pod_json(vk_buf *out, const char *ns, const char *prefix, long index,
                   const char *node, const char *annotations, const char *restart_policy)
{
    vk_buf_reset(out);
    /* Every taint is tolerated: the baseline node has no heartbeat, and
     * vkc's node carries virtual-kubelet.io/provider. */
    return vk_buf_printf(out,
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s-%06ld\","
        "\"namespace\":\"%s\",\"labels\":{\"app\":\"vkc-bench\",\"bench\":\"%s\"}%s%s%s},"
        "\"spec\":{\"nodeName\":\"%s\",\"restartPolicy\":\"%s\","
        "\"tolerations\":[{\"operator\":\"Exists\"}],"
        "\"containers\":[{\"name\":\"main\",\"image\":\"busybox:bench\","
        "\"command\":[\"sleep\",\"3600\"]}]}}",
        prefix, index, ns, prefix, annotations ? ",\"annotations\":{" : "",
        annotations ? annotations : "", annotations ? "}" : "", node,
        restart_policy ? restart_policy : "Always");
}

static void fmt_time(char *buf, size_t n, double t)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The status a kubelet writes for a running pod, roughly the size of
 * vkc's: conditions, IPs, one status per container. */
static void write_status(vk_json_writer *w, yajl_val pod, int restart_count)
{
    char ts[32], ip[32];
    fmt_time(ts, sizeof ts, bench_now());
    const char *uid = vk_json_str(vk_json_get(pod, "metadata", "uid", NULL), "x");
    unsigned h = 0;
    for (const char *c = uid; *c; c++)
        h = h * 31 + (unsigned char)*c;
    snprintf(ip, sizeof ip, "10.2.%u.%u", (h >> 8) & 255, (h & 253) + 1);
    vk_jw_str(w, "status");
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "phase", "Running");
    vk_jw_str(w, "conditions");
    vk_jw_array_open(w);
    static const char *const types[] = {"Initialized", "Ready", "ContainersReady", "PodScheduled"};
    for (size_t i = 0; i < 4; i++) {
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "type", types[i]);
        vk_jw_kv_str(w, "status", "True");
        vk_jw_kv_str(w, "lastTransitionTime", ts);
        vk_jw_map_close(w);
    }
    vk_jw_array_close(w);
    vk_jw_kv_str(w, "hostIP", "127.0.0.1");
    vk_jw_kv_str(w, "podIP", ip);
    vk_jw_str(w, "podIPs");
    vk_jw_array_open(w);
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "ip", ip);
    vk_jw_map_close(w);
    vk_jw_array_close(w);
    vk_jw_kv_str(w, "startTime", ts);
    vk_jw_kv_str(w, "qosClass", "BestEffort");
    vk_jw_str(w, "containerStatuses");
    vk_jw_array_open(w);
    yajl_val cs = vk_json_get(pod, "spec", "containers", NULL);
    for (size_t i = 0; YAJL_IS_ARRAY(cs) && i < cs->u.array.len; i++) {
        yajl_val c = cs->u.array.values[i];
        const char *image = vk_json_str(vk_json_member(c, "image"), "");
        char cid[80];
        snprintf(cid, sizeof cid, "bench://%s-%zu-%d", uid, i, restart_count);
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "name", vk_json_str(vk_json_member(c, "name"), "c"));
        vk_jw_str(w, "state");
        vk_jw_map_open(w);
        vk_jw_str(w, "running");
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "startedAt", ts);
        vk_jw_map_close(w);
        vk_jw_map_close(w);
        vk_jw_str(w, "lastState");
        vk_jw_map_open(w);
        vk_jw_map_close(w);
        vk_jw_kv_bool(w, "ready", true);
        vk_jw_kv_int(w, "restartCount", restart_count);
        vk_jw_kv_str(w, "image", image);
        vk_jw_kv_str(w, "imageID", image);
        vk_jw_kv_str(w, "containerID", cid);
        vk_jw_kv_bool(w, "started", true);
        vk_jw_map_close(w);
    }
    vk_jw_array_close(w);
    vk_jw_map_close(w);
}

int64_t bench_put_running(struct kube_client *c, yajl_val pod, int restart_count,
                          kube_done_fn done, void *ud)
{
    const char *ns = vk_json_str(vk_json_get(pod, "metadata", "namespace", NULL), NULL);
    const char *name = vk_json_str(vk_json_get(pod, "metadata", "name", NULL), NULL);
    if (!ns || !name || !YAJL_IS_OBJECT(pod))
        return -1;
    vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT;
    vk_json_writer w;
    vk_jw_begin(&w, &body);
    vk_jw_map_open(&w);
    for (size_t i = 0; i < pod->u.object.len; i++) {
        if (!strcmp(pod->u.object.keys[i], "status"))
            continue;
        vk_jw_str(&w, pod->u.object.keys[i]);
        vk_jw_tree(&w, pod->u.object.values[i]);
    }
    write_status(&w, pod, restart_count);
    vk_jw_map_close(&w);
    int64_t id = -1;
    if (vk_jw_end(&w) == 0 &&
        vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s/status", ns, name) == 0)
        id = kube_request(c, "PUT", path.data, NULL, body.data, body.len, 0, done, ud);
    vk_buf_free(&path);
    vk_buf_free(&body);
    return id;
}

double bench_parse_time(const char *s)
{
    if (!s)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -1;
    double frac = 0;
    if (*p == '.') {
        double scale = 0.1;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            frac += (*p - '0') * scale;
    }
    if (*p != 'Z')
        return -1;
    return (double)timegm(&tm) + frac;
}

int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_quantile(const double *sorted, size_t n, double q)
{
    if (!n)
        return 0;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void usage(void)
{
    fputs("usage: vkc-bench churn|kubelet|statuslat|recover [options]\n"
          "  see tests/bench/README.md\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    signal(SIGPIPE, SIG_IGN);
    vk_log_set_level(VK_LOG_WARN);
    vk_log_set_component("bench");
    const char *cmd = argv[1];
    argc--;
    argv++;
    if (!strcmp(cmd, "churn"))
        return cmd_churn(argc, argv);
    if (!strcmp(cmd, "kubelet"))
        return cmd_kubelet(argc, argv);
    if (!strcmp(cmd, "statuslat"))
        return cmd_statuslat(argc, argv);
    if (!strcmp(cmd, "recover"))
        return cmd_recover(argc, argv);
    usage();
}
