/* stats.c -- the kubelet's /stats/summary document and /metrics/resource
 * text, from the runtime's container stats and the host's /proc.
 *
 * One ListContainerStats call serves a whole request; pod figures are the
 * sums of their containers'. CPU rates (usageNanoCores) come from the
 * runtime when it computes them, else from the previous sample of the same
 * container, which a small cache keeps (entries of containers no longer
 * listed are dropped at each call).
 */
#include "cri.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

typedef struct usage {
    bool have;
    int64_t time_ns;
    uint64_t core_ns, nano_cores;
    uint64_t working_set, usage, rss, page_faults, major_page_faults;
    uint64_t available;
    bool have_available;
} usage;

typedef struct ctr_row {
    char name[128];
    char id[80];
    int64_t started_s;
    usage u;
} ctr_row;

typedef struct pod_row {
    char ns[128], name[256], uid[160];
    int64_t start_s;
    ctr_row *ctrs;
    size_t n_ctrs;
    usage u;
} pod_row;

typedef struct sample {
    char id[80];
    int64_t time_ns;
    uint64_t core_ns;
} sample;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static sample *cache;
static size_t n_cache;
static sample node_prev;

static uint64_t rate(uint64_t core_ns, int64_t t, uint64_t prev_core, int64_t prev_t)
{
    if (prev_t <= 0 || t <= prev_t || core_ns < prev_core)
        return 0;
    return (uint64_t)((double)(core_ns - prev_core) * 1e9 / (double)(t - prev_t));
}

/* usageNanoCores of containers whose runtime left it out, from the cache;
 * then the cache becomes this call's samples. */
static void fill_rates(pod_row *pods, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += pods[i].n_ctrs;
    sample *next = calloc(total ? total : 1, sizeof *next);
    size_t k = 0;
    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < pods[i].n_ctrs; j++) {
            usage *u = &pods[i].ctrs[j].u;
            if (!u->have)
                continue;
            for (size_t c = 0; c < n_cache && !u->nano_cores; c++)
                if (strcmp(cache[c].id, pods[i].ctrs[j].id) == 0)
                    u->nano_cores = rate(u->core_ns, u->time_ns, cache[c].core_ns,
                                         cache[c].time_ns);
            if (next) {
                snprintf(next[k].id, sizeof next[k].id, "%s", pods[i].ctrs[j].id);
                next[k].time_ns = u->time_ns;
                next[k++].core_ns = u->core_ns;
            }
        }
    }
    if (next) {
        free(cache);
        cache = next;
        n_cache = k;
    }
    pthread_mutex_unlock(&cache_lock);
}

static uint64_t u64(const Runtime__V1__UInt64Value *v)
{
    return v ? v->value : 0;
}

static void from_cri(usage *u, const Runtime__V1__ContainerStats *s)
{
    memset(u, 0, sizeof *u);
    if (s->cpu) {
        u->have = true;
        u->time_ns = s->cpu->timestamp;
        u->core_ns = u64(s->cpu->usage_core_nano_seconds);
        u->nano_cores = u64(s->cpu->usage_nano_cores);
    }
    if (s->memory) {
        u->have = true;
        if (!u->time_ns)
            u->time_ns = s->memory->timestamp;
        u->working_set = u64(s->memory->working_set_bytes);
        u->usage = u64(s->memory->usage_bytes);
        u->rss = u64(s->memory->rss_bytes);
        u->page_faults = u64(s->memory->page_faults);
        u->major_page_faults = u64(s->memory->major_page_faults);
        u->have_available = s->memory->available_bytes != NULL;
        u->available = u64(s->memory->available_bytes);
    }
}

static void add(usage *to, const usage *u)
{
    if (!u->have)
        return;
    to->have = true;
    to->time_ns = u->time_ns > to->time_ns ? u->time_ns : to->time_ns;
    to->core_ns += u->core_ns;
    to->nano_cores += u->nano_cores;
    to->working_set += u->working_set;
    to->usage += u->usage;
    to->rss += u->rss;
    to->page_faults += u->page_faults;
    to->major_page_faults += u->major_page_faults;
}

static void free_rows(pod_row *pods, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(pods[i].ctrs);
    free(pods);
}

/* Copy the running pods out of the table, then ask the runtime. */
static int collect(pod_row **out, size_t *n_out)
{
    size_t n = 0, cap = 0;
    pod_row *pods = NULL;
    cri_lock();
    for (cri_pod *p = pods_next(NULL); p; p = pods_next(p))
        cap++;
    pods = calloc(cap ? cap : 1, sizeof *pods);
    for (cri_pod *p = pods_next(NULL); pods && p && n < cap; p = pods_next(p)) {
        pod_row *r = &pods[n++];
        snprintf(r->ns, sizeof r->ns, "%s", p->ns);
        snprintf(r->name, sizeof r->name, "%s", p->name);
        snprintf(r->uid, sizeof r->uid, "%s", p->uid);
        r->start_s = p->start_s;
        r->ctrs = calloc(p->n_ctrs ? p->n_ctrs : 1, sizeof *r->ctrs);
        for (size_t i = 0; r->ctrs && i < p->n_ctrs; i++) {
            const cri_ctr *c = &p->ctrs[i];
            if (c->init || !c->id[0] || !c->started_ns)
                continue;
            ctr_row *cr = &r->ctrs[r->n_ctrs++];
            snprintf(cr->name, sizeof cr->name, "%s", c->spec->name);
            snprintf(cr->id, sizeof cr->id, "%s", c->id);
            cr->started_s = c->started_ns / NS_PER_S;
        }
    }
    cri_unlock();
    if (!pods)
        return -1;

    Runtime__V1__ListContainerStatsRequest req = RUNTIME__V1__LIST_CONTAINER_STATS_REQUEST__INIT;
    Runtime__V1__ContainerStatsFilter filter = RUNTIME__V1__CONTAINER_STATS_FILTER__INIT;
    Runtime__V1__ListContainerStatsResponse *resp = NULL;
    kv_list sel = {.desc = &runtime__v1__container_stats_filter__label_selector_entry__descriptor};
    char err[256];
    if (kv_add(&sel, LABEL_MANAGED, config.instance) < 0) {
        free_rows(pods, n);
        return -1;
    }
    filter.label_selector = (Runtime__V1__ContainerStatsFilter__LabelSelectorEntry **)sel.items;
    filter.n_label_selector = sel.n;
    req.filter = &filter;
    int code = rt_call(RT("ListContainerStats"), &req.base,
                       &runtime__v1__list_container_stats_response__descriptor, RT_QUICK_MS,
                       &resp, err, sizeof err);
    kv_free(&sel);
    if (code == VK_OK) {
        for (size_t s = 0; s < resp->n_stats; s++) {
            const Runtime__V1__ContainerStats *st = resp->stats[s];
            if (!st->attributes)
                continue;
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < pods[i].n_ctrs; j++)
                    if (strcmp(pods[i].ctrs[j].id, st->attributes->id) == 0)
                        from_cri(&pods[i].ctrs[j].u, st);
        }
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    } else {
        vk_warn("cannot get container stats", "error=\"%s\"", err);
    }
    fill_rates(pods, n);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < pods[i].n_ctrs; j++)
            add(&pods[i].u, &pods[i].ctrs[j].u);
    *out = pods;
    *n_out = n;
    return 0;
}

/* The host's CPU time and memory, from /proc. */
static void node_usage(usage *u)
{
    memset(u, 0, sizeof *u);
    u->time_ns = cri_now_ns();
    FILE *f = fopen("/proc/stat", "re");
    if (f) {
        unsigned long long v[8] = {0};
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            long hz = sysconf(_SC_CLK_TCK);
            /* Busy time: everything but idle (v[3]) and iowait (v[4]). */
            unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            u->core_ns = busy * (uint64_t)(NS_PER_S / (hz > 0 ? hz : 100));
            u->have = true;
        }
        fclose(f);
    }
    f = fopen("/proc/meminfo", "re");
    if (f) {
        char line[128];
        unsigned long long kb, total = 0, avail = 0, free_kb = 0;
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
                total = kb;
            else if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
                avail = kb;
            else if (sscanf(line, "MemFree: %llu kB", &kb) == 1)
                free_kb = kb;
        }
        fclose(f);
        u->usage = (total - free_kb) * 1024;
        u->working_set = (total - avail) * 1024;
        u->available = avail * 1024;
        u->have_available = true;
    }
    pthread_mutex_lock(&cache_lock);
    u->nano_cores = rate(u->core_ns, u->time_ns, node_prev.core_ns, node_prev.time_ns);
    node_prev.core_ns = u->core_ns;
    node_prev.time_ns = u->time_ns;
    pthread_mutex_unlock(&cache_lock);
}

/* ---- /stats/summary ------------------------------------------------------------------ */

static void kv_time(vk_json_writer *w, const char *key, int64_t s)
{
    char buf[32];
    vk_rfc3339(s, buf, sizeof buf);
    vk_jw_kv_str(w, key, buf);
}

static void cpu_memory(vk_json_writer *w, const usage *u)
{
    if (!u->have)
        return;
    int64_t t = u->time_ns / NS_PER_S;
    vk_jw_str(w, "cpu");
    vk_jw_map_open(w);
    kv_time(w, "time", t);
    vk_jw_kv_int(w, "usageNanoCores", (int64_t)u->nano_cores);
    vk_jw_kv_int(w, "usageCoreNanoSeconds", (int64_t)u->core_ns);
    vk_jw_map_close(w);
    vk_jw_str(w, "memory");
    vk_jw_map_open(w);
    kv_time(w, "time", t);
    if (u->have_available)
        vk_jw_kv_int(w, "availableBytes", (int64_t)u->available);
    vk_jw_kv_int(w, "usageBytes", (int64_t)u->usage);
    vk_jw_kv_int(w, "workingSetBytes", (int64_t)u->working_set);
    vk_jw_kv_int(w, "rssBytes", (int64_t)u->rss);
    vk_jw_kv_int(w, "pageFaults", (int64_t)u->page_faults);
    vk_jw_kv_int(w, "majorPageFaults", (int64_t)u->major_page_faults);
    vk_jw_map_close(w);
}

int cri_stats_summary(vk_ctx *ctx, vk_buf *out)
{
    pod_row *pods;
    size_t n;
    usage node;
    vk_json_writer w;
    if (collect(&pods, &n) < 0)
        return vk_ctx_error(ctx, VK_INTERNAL, "out of memory");
    node_usage(&node);
    if (vk_jw_begin(&w, out) < 0) {
        free_rows(pods, n);
        return vk_ctx_error(ctx, VK_INTERNAL, "out of memory");
    }
    vk_jw_map_open(&w);
    vk_jw_str(&w, "node");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "nodeName", "");
    kv_time(&w, "startTime", config.started_ns / NS_PER_S);
    cpu_memory(&w, &node);
    vk_jw_map_close(&w);
    vk_jw_str(&w, "pods");
    vk_jw_array_open(&w);
    for (size_t i = 0; i < n; i++) {
        pod_row *p = &pods[i];
        vk_jw_map_open(&w);
        vk_jw_str(&w, "podRef");
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "name", p->name);
        vk_jw_kv_str(&w, "namespace", p->ns);
        vk_jw_kv_str(&w, "uid", p->uid);
        vk_jw_map_close(&w);
        kv_time(&w, "startTime", p->start_s);
        vk_jw_str(&w, "containers");
        vk_jw_array_open(&w);
        for (size_t j = 0; j < p->n_ctrs; j++) {
            vk_jw_map_open(&w);
            vk_jw_kv_str(&w, "name", p->ctrs[j].name);
            kv_time(&w, "startTime", p->ctrs[j].started_s);
            cpu_memory(&w, &p->ctrs[j].u);
            vk_jw_map_close(&w);
        }
        vk_jw_array_close(&w);
        cpu_memory(&w, &p->u);
        vk_jw_map_close(&w);
    }
    vk_jw_array_close(&w);
    vk_jw_map_close(&w);
    free_rows(pods, n);
    return vk_jw_end(&w) < 0 ? vk_ctx_error(ctx, VK_INTERNAL, "out of memory") : VK_OK;
}

/* ---- /metrics/resource ---------------------------------------------------------------- */

static const char *const help[][3] = {
    {"node_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the node in core-seconds"},
    {"node_memory_working_set_bytes", "gauge", "Current working set of the node in bytes"},
    {"pod_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the pod in core-seconds"},
    {"pod_memory_working_set_bytes", "gauge", "Current working set of the pod in bytes"},
    {"container_cpu_usage_seconds_total", "counter", "Cumulative cpu time consumed by the container in core-seconds"},
    {"container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes"},
    {"container_start_time_seconds", "gauge", "Start time of the container since unix epoch in seconds"},
};

static int head(vk_buf *b, size_t i)
{
    return vk_buf_printf(b, "# HELP %s [STABLE] %s\n# TYPE %s %s\n", help[i][0], help[i][2],
                         help[i][0], help[i][1]);
}

int cri_metrics_resource(vk_ctx *ctx, vk_buf *out)
{
    pod_row *pods;
    size_t n;
    usage node;
    if (collect(&pods, &n) < 0)
        return vk_ctx_error(ctx, VK_INTERNAL, "out of memory");
    node_usage(&node);
    int rc = 0;
    long long t = node.time_ns / NS_PER_MS;
    rc |= head(out, 0);
    rc |= vk_buf_printf(out, "node_cpu_usage_seconds_total %.9f %lld\n",
                        (double)node.core_ns / 1e9, t);
    rc |= head(out, 1);
    rc |= vk_buf_printf(out, "node_memory_working_set_bytes %" PRIu64 " %lld\n",
                        node.working_set, t);
    for (size_t m = 2; m < 7; m++) {
        rc |= head(out, m);
        for (size_t i = 0; i < n; i++) {
            pod_row *p = &pods[i];
            if (m < 4) {
                if (!p->u.have)
                    continue;
                rc |= vk_buf_printf(out, "%s{namespace=\"%s\",pod=\"%s\"} ", help[m][0], p->ns,
                                    p->name);
                rc |= m == 2 ? vk_buf_printf(out, "%.9f", (double)p->u.core_ns / 1e9)
                             : vk_buf_printf(out, "%" PRIu64, p->u.working_set);
                rc |= vk_buf_printf(out, " %lld\n", (long long)(p->u.time_ns / NS_PER_MS));
                continue;
            }
            for (size_t j = 0; j < p->n_ctrs; j++) {
                const ctr_row *c = &p->ctrs[j];
                if (!c->u.have)
                    continue;
                rc |= vk_buf_printf(out, "%s{container=\"%s\",namespace=\"%s\",pod=\"%s\"} ",
                                    help[m][0], c->name, p->ns, p->name);
                if (m == 4)
                    rc |= vk_buf_printf(out, "%.9f", (double)c->u.core_ns / 1e9);
                else if (m == 5)
                    rc |= vk_buf_printf(out, "%" PRIu64, c->u.working_set);
                else
                    rc |= vk_buf_printf(out, "%lld", (long long)c->started_s);
                rc |= vk_buf_printf(out, " %lld\n", (long long)(c->u.time_ns / NS_PER_MS));
            }
        }
    }
    rc |= vk_buf_printf(out, "# HELP scrape_error [ALPHA] 1 if there was an error while getting "
                             "container metrics, 0 otherwise\n# TYPE scrape_error gauge\n"
                             "scrape_error 0\n");
    free_rows(pods, n);
    return rc ? vk_ctx_error(ctx, VK_INTERNAL, "out of memory") : VK_OK;
}
