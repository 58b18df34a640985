/* statuslat.c -- `vkc-bench statuslat`: how long a pod status change takes
 * to show in the API, seen through a watch.
 *
 *   vkc-bench statuslat --mode vkc|direct --kubeconfig ADMIN --node NODE
 *       [--node-kubeconfig NODE_KC] --ns NS --pods N [--rate 100]
 *       [--warmup S] [--duration S] [--csv FILE]
 *
 * vkc mode: N pods on vkc's node with the mock's scripted exits
 * (mock.vkc.io/exit-code "1", mock.vkc.io/run-ms R, restartPolicy Always)
 * so each container restarts every R ms, R = N * 1000 / rate: `rate`
 * status changes per second in all. Pods are created `rate` per second so
 * the changes are spread evenly. The k-th restart of a pod happens at
 * exactly t0 + k*R in the mock (t0: its first start); the watch stamps
 * the event that first shows restartCount k; latency = stamp - (t0 + k*R).
 *
 * t0 is recovered without a hook in the mock: each container's log (the
 * kubelet API, through the API server, timestamps=true) starts with a line
 * stamped, to the nanosecond, at the start of the running instance, so
 * t0 mod R is known; every observed status says, to the second, when
 * instance k started (state.running.startedAt), which pins t0 within a
 * window no wider than max(R, 1 s) once a few restarts were seen. Pods
 * where that leaves two candidates take the later one (the smaller
 * latency) and are counted as "ambiguous". Without logs t0 falls back to
 * the tightest bound (latency measured above each pod's fastest change),
 * reported as "approximate".
 *
 * direct mode (the baseline): N pods on a node no agent serves; a client
 * PUTs .../status with restartCount k+1 (the whole pod, newest
 * resourceVersion, as vkc does) `rate` times per second round-robin, with
 * the node's identity; latency = watch stamp - the moment the PUT was
 * submitted. A pod whose previous write is still in flight is skipped.
 */
#include "bench_common.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_S 1000000000LL

typedef struct obs {
    long pod;
    int k;
    int64_t started_ns;     /* state.running.startedAt (whole seconds) */
    int64_t t_ns;           /* watch stamp */
} obs;

typedef struct lpod {
    yajl_val pod;           /* direct: newest copy */
    long long rv;
    bool seen, running, busy, gone, obs0;
    int last_k;
    int written_k;          /* direct: the write in flight or last done */
    int64_t written_ns;
    int64_t log_start_ns;   /* vkc: start of the instance the log showed; 0 unknown */
} lpod;

typedef struct lat {
    struct ev_loop *loop;
    struct kube_client *admin, *node_kc;
    struct kube_reflector *refl;
    const char *ns, *node, *prefix;
    bool direct;
    long n;
    double rate, warmup, duration;
    int64_t run_ns;
    lpod *pods;
    long n_seen, n_running, n_gone, next_create, n_created, create_in_flight;
    obs *obs;
    size_t n_obs, cap_obs;
    double *lat;            /* direct: latencies (s) */
    size_t n_lat, cap_lat;
    long writes, skipped, conflicts, write_errors;
    long rr;
    int64_t meas0_ns, meas1_ns;
    enum { PH_CREATE, PH_WAIT, PH_MEASURE, PH_LOGS, PH_CLEAN, PH_DONE } phase;
    long logs_next, logs_in_flight, logs_ok, logs_failed;
    long del_next, del_in_flight;
    ev_timer tick, deadline;
    bool timed_out;
} lat;

static int64_t now_ns(void)
{
    return (int64_t)llround(bench_now() * 1e9);
}

static void push_obs(lat *l, obs o)
{
    if (l->n_obs == l->cap_obs) {
        l->cap_obs = l->cap_obs ? l->cap_obs * 2 : 4096;
        l->obs = realloc(l->obs, l->cap_obs * sizeof *l->obs);
        if (!l->obs)
            bench_die("out of memory");
    }
    l->obs[l->n_obs++] = o;
}

static void push_lat(lat *l, double v)
{
    if (l->n_lat == l->cap_lat) {
        l->cap_lat = l->cap_lat ? l->cap_lat * 2 : 4096;
        l->lat = realloc(l->lat, l->cap_lat * sizeof *l->lat);
        if (!l->lat)
            bench_die("out of memory");
    }
    l->lat[l->n_lat++] = v;
}

/* ---- the watch ---------------------------------------------------------------- */

static void observe(lat *l, yajl_val *objp, bool gone)
{
    yajl_val pod = *objp;
    int64_t t = now_ns();
    long i = bench_pod_index(vk_json_str(vk_json_get(pod, "metadata", "name", NULL), NULL),
                             l->prefix);
    if (i < 0 || i >= l->n)
        return;
    lpod *p = &l->pods[i];
    if (!p->seen) {
        p->seen = true;
        l->n_seen++;
    }
    if (gone) {
        if (!p->gone) {
            p->gone = true;
            l->n_gone++;
        }
        return;
    }
    const char *phase = vk_json_str(vk_json_get(pod, "status", "phase", NULL), "");
    if (!p->running && !strcmp(phase, "Running")) {
        p->running = true;
        l->n_running++;
    }
    yajl_val cs = vk_json_get(pod, "status", "containerStatuses", NULL);
    yajl_val c0 = YAJL_IS_ARRAY(cs) && cs->u.array.len ? cs->u.array.values[0] : NULL;
    int k = c0 ? (int)vk_json_int(vk_json_member(c0, "restartCount"), -1) : -1;
    if (l->direct) {
        long long rv = atoll(vk_json_str(vk_json_get(pod, "metadata", "resourceVersion", NULL), "0"));
        if (!p->pod || rv > p->rv) {
            yajl_tree_free(p->pod);
            p->pod = pod;
            *objp = NULL;
            p->rv = rv;
        }
        if (k > p->last_k) {
            p->last_k = k;
            if (k == p->written_k && p->written_ns >= l->meas0_ns &&
                p->written_ns <= l->meas1_ns)
                push_lat(l, (double)(t - p->written_ns) / 1e9);
        }
        return;
    }
    if (k > p->last_k || (k == 0 && !p->obs0)) {
        double started = bench_parse_time(
            vk_json_str(vk_json_get(c0, "state", "running", "startedAt", NULL), NULL));
        if (started < 0)
            return;
        p->last_k = k;
        p->obs0 = true;
        push_obs(l, (obs){i, k, (int64_t)started * NS_PER_S, t});
    }
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    lat *l = ud;
    for (size_t i = 0; i < n; i++)
        observe(l, &items[i], false);
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    observe(ud, object, type == KUBE_DELETED);
}

/* ---- creating --------------------------------------------------------------- */

static void created(const struct kube_response *resp, void *ud)
{
    lat *l = ud;
    l->create_in_flight--;
    if (resp->cancelled)
        return;
    if (resp->status != 201 && resp->status != 409)
        bench_die("create: %ld %s", resp->status, resp->error ? resp->error : "");
    l->n_created++;
}

static void create_one(lat *l)
{
    long i = l->next_create++;
    vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT, ann = VK_BUF_INIT;
    if (!l->direct)
        vk_buf_printf(&ann, "\"mock.vkc.io/exit-code\":\"1\",\"mock.vkc.io/run-ms\":\"%lld\"",
                      (long long)(l->run_ns / 1000000));
    vk_buf_printf(&path, "/api/v1/namespaces/%s/pods", l->ns);
    bench_pod_json(&body, l->ns, l->prefix, i, l->node, l->direct ? NULL : ann.data, NULL);
    if (kube_request(l->admin, "POST", path.data, NULL, body.data, body.len, 0, created, l) < 0)
        bench_die("cannot submit a create");
    l->create_in_flight++;
    vk_buf_free(&path);
    vk_buf_free(&body);
    vk_buf_free(&ann);
}

/* ---- direct writes ------------------------------------------------------------ */

typedef struct wreq {
    lat *l;
    long i;
} wreq;

static void written(const struct kube_response *resp, void *ud)
{
    wreq *w = ud;
    lat *l = w->l;
    lpod *p = &l->pods[w->i];
    free(w);
    p->busy = false;
    if (resp->cancelled)
        return;
    if (resp->status == 409) {
        l->conflicts++;
        p->written_ns = 0;
        return;
    }
    if (resp->status < 200 || resp->status >= 300) {
        l->write_errors++;
        p->written_ns = 0;
        return;
    }
    yajl_val answer = vk_json_parse(resp->body, resp->len, NULL, 0);
    long long rv = atoll(vk_json_str(vk_json_get(answer, "metadata", "resourceVersion", NULL), "0"));
    if (answer && rv > p->rv) {
        yajl_tree_free(p->pod);
        p->pod = answer;
        p->rv = rv;
    } else {
        yajl_tree_free(answer);
    }
}

static void write_one(lat *l)
{
    long i = l->rr++ % l->n;
    lpod *p = &l->pods[i];
    if (p->busy || !p->pod) {
        l->skipped++;
        return;
    }
    wreq *w = malloc(sizeof *w);
    if (!w)
        bench_die("out of memory");
    *w = (wreq){l, i};
    int k = (p->written_k > p->last_k ? p->written_k : p->last_k) + 1;
    p->written_k = k;
    p->written_ns = now_ns();
    if (bench_put_running(l->node_kc, p->pod, k, written, w) < 0)
        bench_die("cannot submit a status write");
    p->busy = true;
    l->writes++;
}

/* ---- logs (vkc mode) ------------------------------------------------------------ */

typedef struct lreq {
    lat *l;
    long i;
} lreq;

static void start_logs(lat *l);

static void got_log(const struct kube_response *resp, void *ud)
{
    lreq *r = ud;
    lat *l = r->l;
    long i = r->i;
    free(r);
    l->logs_in_flight--;
    if (resp->cancelled)
        return;
    double t = -1;
    if (resp->status == 200) {
        char stamp[64];
        size_t n = strcspn(resp->body, " \n");
        if (n < sizeof stamp) {
            memcpy(stamp, resp->body, n);
            stamp[n] = '\0';
            t = bench_parse_time(stamp);
        }
    }
    if (t > 0) {
        /* Nanoseconds: the stamp has 9 decimals; parse them exactly. */
        const char *dot = strchr(resp->body, '.');
        int64_t frac = 0;
        int digits = 0;
        for (const char *c = dot ? dot + 1 : ""; *c >= '0' && *c <= '9' && digits < 9; c++, digits++)
            frac = frac * 10 + (*c - '0');
        for (; digits < 9; digits++)
            frac *= 10;
        l->pods[i].log_start_ns = (int64_t)floor(t) * NS_PER_S + frac;
        l->logs_ok++;
    } else {
        if (l->logs_failed++ == 0)
            bench_log("container log of pod %ld unusable: %ld %.200s", i, resp->status,
                      resp->error ? resp->error : resp->body);
    }
    start_logs(l);
}

static void start_logs(lat *l)
{
    while (l->logs_in_flight < 16 && l->logs_next < l->n) {
        long i = l->logs_next++;
        lreq *r = malloc(sizeof *r);
        if (!r)
            bench_die("out of memory");
        *r = (lreq){l, i};
        vk_buf path = VK_BUF_INIT;
        vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s-%06ld/log?container=main"
                      "&timestamps=true&limitBytes=4096", l->ns, l->prefix, i);
        if (kube_request(l->admin, "GET", path.data, NULL, NULL, 0, 20000, got_log, r) < 0)
            bench_die("cannot submit a log request");
        l->logs_in_flight++;
        vk_buf_free(&path);
    }
}

/* ---- cleaning up ------------------------------------------------------------------ */

static void deleted(const struct kube_response *resp, void *ud)
{
    lat *l = ud;
    l->del_in_flight--;
    if (!resp->cancelled && resp->status != 200 && resp->status != 202 && resp->status != 404)
        bench_log("delete: %ld %s", resp->status, resp->error ? resp->error : "");
}

static void start_deletes(lat *l)
{
    while (l->del_in_flight < 100 && l->del_next < l->n) {
        long i = l->del_next++;
        vk_buf path = VK_BUF_INIT;
        vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s-%06ld", l->ns, l->prefix, i);
        /* No agent serves the baseline's node: remove its pods at once. */
        static const char now[] = "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                                  "\"gracePeriodSeconds\":0}";
        if (kube_request(l->admin, "DELETE", path.data, NULL, l->direct ? now : NULL,
                         l->direct ? sizeof now - 1 : 0, 0, deleted, l) < 0)
            bench_die("cannot submit a delete");
        l->del_in_flight++;
        vk_buf_free(&path);
    }
}

/* ---- the schedule ------------------------------------------------------------------- */

static double t_phase;

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    lat *l = w->data;
    double now = bench_now();
    switch (l->phase) {
    case PH_CREATE: {
        /* rate per second, caught up if the loop was late */
        long due = (long)((now - t_phase) * l->rate) + 1;
        while (l->next_create < l->n && l->next_create < due)
            create_one(l);
        if (l->next_create == l->n) {
            l->phase = PH_WAIT;
            bench_log("%ld pods submitted; waiting for them", l->n);
        }
        break;
    }
    case PH_WAIT:
        if ((l->direct ? l->n_seen : l->n_running) == l->n && l->n_created == l->n) {
            bench_log("all %ld pods %s; warming up %.0f s, measuring %.0f s", l->n,
                      l->direct ? "present" : "Running", l->warmup, l->duration);
            l->phase = PH_MEASURE;
            t_phase = now;
            l->meas0_ns = now_ns() + (int64_t)(l->warmup * 1e9);
            l->meas1_ns = l->meas0_ns + (int64_t)(l->duration * 1e9);
        }
        break;
    case PH_MEASURE:
        if (l->direct) {
            long due = (long)((now - t_phase) * l->rate);
            while (l->rr < due && now_ns() < l->meas1_ns)
                write_one(l);
        }
        if (now_ns() >= l->meas1_ns + (l->direct ? NS_PER_S : 0)) {
            l->phase = l->direct ? PH_CLEAN : PH_LOGS;
            if (!l->direct)
                start_logs(l);
            else
                start_deletes(l);
        }
        break;
    case PH_LOGS:
        start_logs(l);
        if (l->logs_next == l->n && l->logs_in_flight == 0) {
            l->phase = PH_CLEAN;
            start_deletes(l);
        }
        break;
    case PH_CLEAN:
        start_deletes(l);
        if (l->del_next == l->n && l->del_in_flight == 0 && l->n_gone == l->n_seen) {
            l->phase = PH_DONE;
            ev_break(loop, EVBREAK_ALL);
        }
        break;
    case PH_DONE:
        break;
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    lat *l = w->data;
    bench_log("timeout in phase %d (seen %ld running %ld gone %ld)", (int)l->phase, l->n_seen,
              l->n_running, l->n_gone);
    l->timed_out = true;
    ev_break(loop, EVBREAK_ALL);
}

/* ---- vkc mode: from observations to latencies ------------------------------------------ */

static int cmp_obs(const void *a, const void *b)
{
    const obs *x = a, *y = b;
    if (x->pod != y->pod)
        return x->pod < y->pod ? -1 : 1;
    return x->k - y->k;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static void solve(lat *l, long *ambiguous, long *inconsistent, long *approximate)
{
    qsort(l->obs, l->n_obs, sizeof *l->obs, cmp_obs);
    int64_t R = l->run_ns;
    for (size_t a = 0; a < l->n_obs;) {
        size_t b = a;
        while (b < l->n_obs && l->obs[b].pod == l->obs[a].pod)
            b++;
        lpod *p = &l->pods[l->obs[a].pod];
        int64_t lo = INT64_MIN, hi = INT64_MAX; /* t0 in [lo, hi] */
        for (size_t j = a; j < b; j++) {
            const obs *o = &l->obs[j];
            int64_t base = (int64_t)o->k * R;
            int64_t l1 = o->started_ns - base;
            int64_t h1 = o->started_ns + NS_PER_S - 1 - base;
            int64_t h2 = o->t_ns - base;
            if (l1 > lo)
                lo = l1;
            if (h1 < hi)
                hi = h1;
            if (h2 < hi)
                hi = h2;
        }
        int64_t t0;
        if (p->log_start_ns) {
            int64_t phi = ((p->log_start_ns % R) + R) % R;
            int64_t m_hi = floor_div(hi - phi, R);
            int64_t m_lo = -floor_div(-(lo - phi), R); /* ceil */
            if (m_hi < m_lo) {
                (*inconsistent)++;
                a = b;
                continue;
            }
            if (m_hi > m_lo)
                (*ambiguous)++;
            t0 = phi + m_hi * R;
        } else {
            (*approximate)++;
            t0 = hi;
        }
        for (size_t j = a; j < b; j++) {
            const obs *o = &l->obs[j];
            if (o->k < 1 || o->t_ns < l->meas0_ns || o->t_ns > l->meas1_ns)
                continue;
            push_lat(l, (double)(o->t_ns - (t0 + (int64_t)o->k * R)) / 1e9);
        }
        a = b;
    }
}

int cmd_statuslat(int argc, char **argv)
{
    static lat l;
    l.ns = "bench-lat";
    l.prefix = "lat";
    l.n = 100;
    l.rate = 100;
    l.warmup = 5;
    l.duration = 30;
    const char *kubeconfig = NULL, *node_kubeconfig = NULL, *csv = NULL, *mode = "vkc";
    double timeout = 900;
    static const struct option opts[] = {
        {"mode", required_argument, NULL, 'm'},       {"kubeconfig", required_argument, NULL, 'k'},
        {"node-kubeconfig", required_argument, NULL, 'K'},
        {"node", required_argument, NULL, 'N'},       {"ns", required_argument, NULL, 'n'},
        {"pods", required_argument, NULL, 'p'},       {"rate", required_argument, NULL, 'r'},
        {"warmup", required_argument, NULL, 'W'},     {"duration", required_argument, NULL, 'd'},
        {"csv", required_argument, NULL, 'c'},        {"prefix", required_argument, NULL, 'P'},
        {"timeout", required_argument, NULL, 't'},    {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'm': mode = optarg; break;
        case 'k': kubeconfig = optarg; break;
        case 'K': node_kubeconfig = optarg; break;
        case 'N': l.node = optarg; break;
        case 'n': l.ns = optarg; break;
        case 'p': l.n = atol(optarg); break;
        case 'r': l.rate = atof(optarg); break;
        case 'W': l.warmup = atof(optarg); break;
        case 'd': l.duration = atof(optarg); break;
        case 'c': csv = optarg; break;
        case 'P': l.prefix = optarg; break;
        case 't': timeout = atof(optarg); break;
        default: return 2;
        }
    }
    l.direct = !strcmp(mode, "direct");
    if (!kubeconfig || !l.node || l.n <= 0 || l.rate <= 0 || (l.direct && !node_kubeconfig))
        bench_die("statuslat: --kubeconfig, --node, --pods (and --node-kubeconfig for direct)");
    l.run_ns = (int64_t)llround((double)l.n / l.rate * 1e9);
    if (!l.direct && l.run_ns < 10 * 1000000LL)
        bench_die("statuslat: run-ms would be below the mock's minimum of 10 ms");
    l.pods = calloc((size_t)l.n, sizeof *l.pods);
    if (!l.pods)
        bench_die("out of memory");
    l.loop = ev_default_loop(0);
    l.admin = bench_client(l.loop, kubeconfig);
    if (l.direct)
        l.node_kc = bench_client(l.loop, node_kubeconfig);

    vk_buf sel = VK_BUF_INIT, path = VK_BUF_INIT;
    vk_buf_printf(&sel, "spec.nodeName=%s", l.node);
    vk_buf_printf(&path, "/api/v1/namespaces/%s/pods", l.ns);
    struct kube_reflector_config rc = {
        .path = path.data,
        .field_selector = sel.data,
        .on_replace = on_replace,
        .on_event = on_event,
        .ud = &l,
    };
    l.refl = kube_reflector_start(l.admin, &rc);
    if (!l.refl)
        bench_die("cannot start the watch");
    bench_log("statuslat %s: %ld pods, %.0f changes/s%s", mode, l.n, l.rate,
              l.direct ? "" : " (mock restarts)");
    if (!l.direct)
        bench_log("run-ms %lld", (long long)(l.run_ns / 1000000));
    t_phase = bench_now() + 1; /* the watch gets a second to sync */
    ev_timer_init(&l.tick, tick_cb, 1.0, 0.002);
    l.tick.data = &l;
    ev_timer_start(l.loop, &l.tick);
    ev_timer_init(&l.deadline, deadline_cb, timeout, 0);
    l.deadline.data = &l;
    ev_timer_start(l.loop, &l.deadline);
    ev_run(l.loop, 0);

    long ambiguous = 0, inconsistent = 0, approximate = 0;
    if (!l.direct)
        solve(&l, &ambiguous, &inconsistent, &approximate);
    qsort(l.lat, l.n_lat, sizeof *l.lat, bench_cmp_double);
    double sum = 0;
    for (size_t i = 0; i < l.n_lat; i++)
        sum += l.lat[i];
    printf("mode=%s\npods=%ld\nrate=%.1f\nrun_ms=%lld\n", mode, l.n, l.rate,
           (long long)(l.run_ns / 1000000));
    printf("timed_out=%d\nsamples=%zu\n", l.timed_out, l.n_lat);
    printf("p50_ms=%.2f\np90_ms=%.2f\np99_ms=%.2f\nmax_ms=%.2f\nmean_ms=%.2f\n",
           bench_quantile(l.lat, l.n_lat, 0.5) * 1e3, bench_quantile(l.lat, l.n_lat, 0.9) * 1e3,
           bench_quantile(l.lat, l.n_lat, 0.99) * 1e3,
           l.n_lat ? l.lat[l.n_lat - 1] * 1e3 : 0, l.n_lat ? sum / (double)l.n_lat * 1e3 : 0);
    printf("changes_per_s=%.1f\n", (double)l.n_lat / l.duration);
    if (l.direct)
        printf("writes=%ld\nskipped=%ld\nconflicts=%ld\nwrite_errors=%ld\n", l.writes, l.skipped,
               l.conflicts, l.write_errors);
    else
        printf("observations=%zu\nlogs_ok=%ld\nlogs_failed=%ld\nambiguous_pods=%ld\n"
               "inconsistent_pods=%ld\napproximate_pods=%ld\n",
               l.n_obs, l.logs_ok, l.logs_failed, ambiguous, inconsistent, approximate);
    if (csv) {
        FILE *f = fopen(csv, "w");
        if (!f)
            bench_die("cannot write %s", csv);
        fprintf(f, "latency_ms\n");
        for (size_t i = 0; i < l.n_lat; i++)
            fprintf(f, "%.3f\n", l.lat[i] * 1e3);
        fclose(f);
    }
    ev_timer_stop(l.loop, &l.tick);
    ev_timer_stop(l.loop, &l.deadline);
    kube_reflector_free(l.refl);
    kube_client_free(l.admin);
    kube_client_free(l.node_kc);
    for (long i = 0; i < l.n; i++)
        yajl_tree_free(l.pods[i].pod);
    free(l.pods);
    free(l.obs);
    free(l.lat);
    vk_buf_free(&sel);
    vk_buf_free(&path);
    return l.timed_out ? 1 : 0;
}
