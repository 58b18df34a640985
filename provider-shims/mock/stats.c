/* stats.c -- plausible resource usage: the /stats/summary document and the
 * /metrics/resource text.
 *
 * A running container uses half its CPU and memory requests (10m and 16Mi
 * without requests); its CPU time grows with its uptime. The node adds a
 * fixed overhead of its own to the sum of its pods.
 */
#include "mock.h"

#include <stdarg.h>
#include <stdio.h>

#define MIB (1024LL * 1024)
#define NODE_NANOCORES 50000000LL /* 50m */
#define NODE_MEMORY (256 * MIB)

typedef struct usage {
    int64_t nanocores;      /* now */
    int64_t core_ns;        /* since the start */
    int64_t working_set;
    int64_t bytes;
} usage;

static void add(usage *to, const usage *u)
{
    to->nanocores += u->nanocores;
    to->core_ns += u->core_ns;
    to->working_set += u->working_set;
    to->bytes += u->bytes;
}

/* Regular containers that started report usage; the others none. */
static bool reports(const mock_ctr *c)
{
    return !c->init && c->started_ns;
}

static usage ctr_usage(const mock_ctr *c, int64_t now)
{
    usage u = {0};
    const vk_resources *r = &c->spec->resources;
    int64_t rate = r->cpu_request_milli > 0 ? r->cpu_request_milli * 1000000 / 2 : 10000000;
    int64_t end = c->state == VK_STATE_TERMINATED ? c->finished_ns : now;
    u.core_ns = (int64_t)((double)rate * (double)(end - c->started_ns) / NS_PER_S);
    if (c->state == VK_STATE_RUNNING) {
        u.nanocores = rate;
        u.working_set = r->memory_request_bytes > 0 ? r->memory_request_bytes / 2 : 16 * MIB;
        u.bytes = u.working_set + 4 * MIB;
    }
    return u;
}

static usage pod_usage(const mock_pod *mp, int64_t now)
{
    usage u = {0};
    for (size_t i = 0; i < mp->n_ctrs; i++) {
        if (reports(&mp->ctrs[i])) {
            usage cu = ctr_usage(&mp->ctrs[i], now);
            add(&u, &cu);
        }
    }
    return u;
}

/* The node: its pods and an overhead of its own. */
static usage node_usage(const mock_pod *pods, int64_t now)
{
    usage u = {
        .nanocores = NODE_NANOCORES,
        .core_ns = (int64_t)((double)NODE_NANOCORES * (double)(now - config.started_ns) / NS_PER_S),
        .working_set = NODE_MEMORY,
        .bytes = NODE_MEMORY,
    };
    for (const mock_pod *mp = pods; mp; mp = mp->next) {
        usage pu = pod_usage(mp, now);
        add(&u, &pu);
    }
    return u;
}

/* The document being written; one failed append spoils it, so remember. */
typedef struct doc {
    vk_buf *b;
    bool oom;
} doc;

static void put(doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(doc *d, const char *fmt, ...)
{
    char piece[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof piece || vk_buf_append(d->b, piece, (size_t)n) < 0)
        d->oom = true;
}

/* A JSON string; also a valid Prometheus label value for the names here. */
static void quote(doc *d, const char *s)
{
    put(d, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            put(d, "\\%c", c);
        else if (c == '\n')
            put(d, "\\n");
        else if (c < 0x20)
            put(d, "\\u%04x", c);
        else
            put(d, "%c", c);
    }
    put(d, "\"");
}

static void time_field(doc *d, const char *name, int64_t ns)
{
    char t[32];
    vk_rfc3339(ns / NS_PER_S, t, sizeof t);
    put(d, "\"%s\":\"%s\"", name, t);
}

static void cpu_memory(doc *d, const usage *u, int64_t now, int64_t available)
{
    char t[32];
    vk_rfc3339(now / NS_PER_S, t, sizeof t);
    put(d, "\"cpu\":{\"time\":\"%s\",\"usageNanoCores\":%lld,\"usageCoreNanoSeconds\":%lld},"
           "\"memory\":{\"time\":\"%s\",",
        t, (long long)u->nanocores, (long long)u->core_ns, t);
    if (available >= 0)
        put(d, "\"availableBytes\":%lld,", (long long)available);
    put(d, "\"usageBytes\":%lld,\"workingSetBytes\":%lld,\"rssBytes\":%lld}",
        (long long)u->bytes, (long long)u->working_set, (long long)u->working_set);
}

static int finish(vk_ctx *ctx, const doc *d)
{
    return d->oom ? vk_ctx_error(ctx, VK_INTERNAL, "the mock provider ran out of memory") : VK_OK;
}

int mock_stats_summary(vk_ctx *ctx, vk_buf *out)
{
    doc d = {.b = out};
    int64_t now = mock_now_ns();
    pods_lock();
    mock_pod *pods = pods_first();
    usage nu = node_usage(pods, now);
    int64_t available = config.memory_bytes > nu.working_set ? config.memory_bytes - nu.working_set : 0;
    put(&d, "{\"node\":{\"nodeName\":\"\",");
    time_field(&d, "startTime", config.started_ns);
    put(&d, ",");
    cpu_memory(&d, &nu, now, available);
    put(&d, "},\"pods\":[");
    for (const mock_pod *mp = pods; mp; mp = mp->next) {
        put(&d, "%s{\"podRef\":{\"name\":", mp == pods ? "" : ",");
        quote(&d, mp->name);
        put(&d, ",\"namespace\":");
        quote(&d, mp->ns);
        put(&d, ",\"uid\":");
        quote(&d, pod_uid(mp));
        put(&d, "},");
        time_field(&d, "startTime", mp->created_ns);
        put(&d, ",\"containers\":[");
        const char *sep = "";
        for (size_t i = 0; i < mp->n_ctrs; i++) {
            const mock_ctr *c = &mp->ctrs[i];
            if (!reports(c))
                continue;
            usage cu = ctr_usage(c, now);
            put(&d, "%s{\"name\":", sep);
            quote(&d, c->spec->name);
            put(&d, ",");
            time_field(&d, "startTime", c->started_ns);
            put(&d, ",");
            cpu_memory(&d, &cu, now, -1);
            put(&d, "}");
            sep = ",";
        }
        usage pu = pod_usage(mp, now);
        put(&d, "],");
        cpu_memory(&d, &pu, now, -1);
        put(&d, "}");
    }
    pods_unlock();
    put(&d, "]}");
    return finish(ctx, &d);
}

static void family(doc *d, const char *name, const char *type, const char *help)
{
    put(d, "# HELP %s [STABLE] %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A sample labelled with namespace, pod and (when not NULL) container. */
static void sample(doc *d, const char *name, const mock_pod *mp, const char *ctr,
                   double value, int64_t now)
{
    put(d, "%s{", name);
    if (ctr) {
        put(d, "container=");
        quote(d, ctr);
        put(d, ",");
    }
    put(d, "namespace=");
    quote(d, mp->ns);
    put(d, ",pod=");
    quote(d, mp->name);
    put(d, "} %.9g %lld\n", value, (long long)(now / NS_PER_MS));
}

static void ctr_samples(doc *d, const char *name, const mock_pod *pods, bool cpu, int64_t now)
{
    for (const mock_pod *mp = pods; mp; mp = mp->next) {
        for (size_t i = 0; i < mp->n_ctrs; i++) {
            if (!reports(&mp->ctrs[i]))
                continue;
            usage u = ctr_usage(&mp->ctrs[i], now);
            sample(d, name, mp, mp->ctrs[i].spec->name,
                   cpu ? (double)u.core_ns / NS_PER_S : (double)u.working_set, now);
        }
    }
}

static void pod_samples(doc *d, const char *name, const mock_pod *pods, bool cpu, int64_t now)
{
    for (const mock_pod *mp = pods; mp; mp = mp->next) {
        usage u = pod_usage(mp, now);
        sample(d, name, mp, NULL, cpu ? (double)u.core_ns / NS_PER_S : (double)u.working_set, now);
    }
}

int mock_metrics_resource(vk_ctx *ctx, vk_buf *out)
{
    doc d = {.b = out};
    int64_t now = mock_now_ns();
    long long ms = (long long)(now / NS_PER_MS);
    pods_lock();
    mock_pod *pods = pods_first();
    usage nu = node_usage(pods, now);
    family(&d, "node_cpu_usage_seconds_total", "counter",
           "Cumulative cpu time consumed by the node in core-seconds");
    put(&d, "node_cpu_usage_seconds_total %.9g %lld\n", (double)nu.core_ns / NS_PER_S, ms);
    family(&d, "node_memory_working_set_bytes", "gauge",
           "Current working set of the node in bytes");
    put(&d, "node_memory_working_set_bytes %lld %lld\n", (long long)nu.working_set, ms);
    family(&d, "pod_cpu_usage_seconds_total", "counter",
           "Cumulative cpu time consumed by the pod in core-seconds");
    pod_samples(&d, "pod_cpu_usage_seconds_total", pods, true, now);
    family(&d, "pod_memory_working_set_bytes", "gauge",
           "Current working set of the pod in bytes");
    pod_samples(&d, "pod_memory_working_set_bytes", pods, false, now);
    family(&d, "container_cpu_usage_seconds_total", "counter",
           "Cumulative cpu time consumed by the container in core-seconds");
    ctr_samples(&d, "container_cpu_usage_seconds_total", pods, true, now);
    family(&d, "container_memory_working_set_bytes", "gauge",
           "Current working set of the container in bytes");
    ctr_samples(&d, "container_memory_working_set_bytes", pods, false, now);
    pods_unlock();
    return finish(ctx, &d);
}
