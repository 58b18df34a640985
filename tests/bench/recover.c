/* recover.c -- `vkc-bench recover`: SIGKILL the provider under N running
 * pods and time the core's recovery.
 *
 *   vkc-bench recover --kubeconfig ADMIN --node NODE --ns NS --pods N
 *                     --provider-pid PID --core-log FILE [--timeout S]
 *
 * Before the kill: the API shows the N pods of NS Running. Then SIGKILL,
 * and every 20 ms the core's /metrics (the kubelet port, through the API
 * server's node proxy):
 *
 *   t_ready       the core's "provider ready" log line after the kill
 *                 (exact, from its timestamp);
 *   t_up          provider_up back at 1 after provider_restarts_total grew
 *                 (as polled);
 *   t_reconciled  reconcile_total{op="create",result="ok"} grew by N (the
 *                 resync found the new provider empty and created every pod
 *                 again) and reconcile_queue_depth is 0.
 *
 * Meanwhile a watch of NS counts pods that left Running (regressions) or
 * appeared; afterwards the kubelet API's /pods (the provider's view) must
 * list each of the N pods exactly once.
 */
#include "bench_common.h"

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

typedef struct rec {
    struct ev_loop *loop;
    struct kube_client *kc;
    struct kube_reflector *refl;
    const char *ns, *node, *core_log, *metrics_path;
    long n;
    pid_t victim;
    char **uids;            /* per pod index, at the start */
    long seen, running, regressions, extra, deleted;
    bool synced, killed, up, reconciled, polling;
    double base_created, base_restarts, t_kill, t_up, t_reconciled;
    double last_created, last_depth;
    int64_t poll_id;
    ev_timer poll, deadline, settle;
    bool timed_out;
} rec;

static void observe(rec *r, yajl_val pod, bool gone)
{
    long i = bench_pod_index(vk_json_str(vk_json_get(pod, "metadata", "name", NULL), NULL),
                             "rec");
    if (i < 0 || i >= r->n) {
        r->extra++;
        return;
    }
    const char *uid = vk_json_str(vk_json_get(pod, "metadata", "uid", NULL), "");
    const char *phase = vk_json_str(vk_json_get(pod, "status", "phase", NULL), "");
    if (!r->uids[i]) {
        r->uids[i] = strdup(uid);
        r->seen++;
        if (!strcmp(phase, "Running"))
            r->running++;
        return;
    }
    if (strcmp(r->uids[i], uid) != 0)
        r->extra++;
    if (gone)
        r->deleted++;
    else if (r->synced && strcmp(phase, "Running") != 0)
        r->regressions++;
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    rec *r = ud;
    for (size_t i = 0; i < n; i++)
        observe(r, items[i], false);
    if (!r->synced) {
        r->synced = true;
        ev_break(r->loop, EVBREAK_ONE);
    }
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    observe(ud, *object, type == KUBE_DELETED);
}

/* The value of the sample whose line starts with `series ` ("name" or
 * "name{labels}"); -1 when absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (!strncmp(l, series, n) && l[n] == ' ')
            return strtod(l + n + 1, NULL);
    }
    return -1;
}

static void poll_done(const struct kube_response *resp, void *ud)
{
    rec *r = ud;
    r->polling = false;
    if (resp->cancelled)
        return;
    if (!r->killed && resp->status != 200)
        bench_die("recover: %s: %ld %s", r->metrics_path, resp->status,
                  resp->error ? resp->error : "");
    if (resp->status != 200)
        return;
    double now = bench_now();
    double up = sample(resp->body, "provider_up");
    double created = sample(resp->body, "reconcile_total{op=\"create\",result=\"ok\"}");
    double depth = sample(resp->body, "reconcile_queue_depth");
    double restarts = sample(resp->body, "provider_restarts_total");
    /* A series never touched is not rendered: it counts 0. */
    created = created < 0 ? 0 : created;
    depth = depth < 0 ? 0 : depth;
    restarts = restarts < 0 ? 0 : restarts;
    if (!r->killed) {
        r->base_created = created;
        r->base_restarts = restarts;
        ev_break(r->loop, EVBREAK_ONE);
        return;
    }
    r->last_created = created;
    r->last_depth = depth;
    /* Up again: after the supervisor noticed the death (a restart counted). */
    if (!r->up && up == 1 && restarts > r->base_restarts) {
        r->up = true;
        r->t_up = now - r->t_kill;
    }
    if (r->up && !r->reconciled && created - r->base_created >= (double)r->n && depth == 0) {
        r->reconciled = true;
        r->t_reconciled = now - r->t_kill;
        bench_log("reconciled %.3f s after the kill", r->t_reconciled);
        ev_timer_stop(r->loop, &r->poll);
        /* Watch two more seconds for late regressions. */
        ev_timer_start(r->loop, &r->settle);
    }
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    rec *r = w->data;
    if (r->polling)
        return;
    r->polling = true;
    if (kube_request(r->kc, "GET", r->metrics_path, NULL, NULL, 0, 5000, poll_done, r) < 0)
        bench_die("cannot poll the metrics");
}

static void stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    rec *r = w->data;
    if (w == &r->deadline)
        r->timed_out = true;
    ev_break(loop, EVBREAK_ALL);
}

/* The "provider ready" line of the core's log after t, as seconds; -1. */
static double ready_after(const char *log, double t)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return -1;
    char line[4096];
    double found = -1;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "msg=\"provider ready\""))
            continue;
        const char *ts = strstr(line, "ts=");
        if (!ts)
            continue;
        char stamp[40];
        size_t n = strcspn(ts + 3, " ");
        if (n >= sizeof stamp)
            continue;
        memcpy(stamp, ts + 3, n);
        stamp[n] = '\0';
        double v = bench_parse_time(stamp);
        if (v >= t) {
            found = v;
            break;
        }
    }
    fclose(f);
    return found;
}

typedef struct list_result {
    long status;
    char *body;
} list_result;

static void got(const struct kube_response *resp, void *ud)
{
    list_result *lr = ud;
    lr->status = resp->status;
    lr->body = strdup(resp->body ? resp->body : "");
}

int cmd_recover(int argc, char **argv)
{
    static rec r;
    r.ns = "bench-rec";
    const char *kubeconfig = NULL;
    double timeout = 120;
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'}, {"node", required_argument, NULL, 'N'},
        {"ns", required_argument, NULL, 'n'},         {"pods", required_argument, NULL, 'p'},
        {"provider-pid", required_argument, NULL, 'P'},
        {"core-log", required_argument, NULL, 'l'},   {"timeout", required_argument, NULL, 't'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'k': kubeconfig = optarg; break;
        case 'N': r.node = optarg; break;
        case 'n': r.ns = optarg; break;
        case 'p': r.n = atol(optarg); break;
        case 'P': r.victim = (pid_t)atoi(optarg); break;
        case 'l': r.core_log = optarg; break;
        case 't': timeout = atof(optarg); break;
        default: return 2;
        }
    }
    if (!kubeconfig || !r.node || r.n < 0 || r.victim <= 1 || !r.core_log)
        bench_die("recover: --kubeconfig --node --pods --provider-pid --core-log are needed");
    r.uids = calloc((size_t)r.n + 1, sizeof *r.uids);
    vk_buf mpath = VK_BUF_INIT, ppath = VK_BUF_INIT, sel = VK_BUF_INIT, path = VK_BUF_INIT;
    vk_buf_printf(&mpath, "/api/v1/nodes/%s/proxy/metrics", r.node);
    vk_buf_printf(&ppath, "/api/v1/nodes/%s/proxy/pods", r.node);
    r.metrics_path = mpath.data;
    r.loop = ev_default_loop(0);
    r.kc = bench_client(r.loop, kubeconfig);

    vk_buf_printf(&sel, "spec.nodeName=%s", r.node);
    vk_buf_printf(&path, "/api/v1/namespaces/%s/pods", r.ns);
    struct kube_reflector_config rc = {
        .path = path.data,
        .field_selector = sel.data,
        .on_replace = on_replace,
        .on_event = on_event,
        .ud = &r,
    };
    r.refl = kube_reflector_start(r.kc, &rc);
    ev_timer_init(&r.deadline, stop_cb, timeout, 0);
    r.deadline.data = &r;
    ev_timer_start(r.loop, &r.deadline);
    ev_run(r.loop, 0);
    if (!r.synced || r.seen != r.n || r.running != r.n)
        bench_die("recover: expected %ld Running pods in %s, the API shows %ld (%ld Running)",
                  r.n, r.ns, r.seen, r.running);
    /* The counter before the kill. */
    ev_init(&r.poll, poll_cb);
    r.poll.data = &r;
    poll_cb(r.loop, &r.poll, 0);
    ev_run(r.loop, 0);
    if (r.timed_out)
        bench_die("recover: cannot read the core's metrics at %s", r.metrics_path);

    ev_init(&r.settle, stop_cb);
    ev_timer_set(&r.settle, 2.0, 0);
    r.settle.data = &r;
    r.t_kill = bench_now();
    if (kill(r.victim, SIGKILL) < 0)
        bench_die("recover: kill %d failed", (int)r.victim);
    r.killed = true;
    bench_log("SIGKILL sent to the provider (pid %d) with %ld pods", (int)r.victim, r.n);
    ev_timer_set(&r.poll, 0.02, 0.02);
    ev_timer_start(r.loop, &r.poll);
    ev_run(r.loop, 0);
    ev_timer_stop(r.loop, &r.poll);
    ev_timer_stop(r.loop, &r.settle);

    double ready = ready_after(r.core_log, r.t_kill);
    /* The provider's view, through the kubelet API. */
    list_result lr = {0, NULL};
    if (kube_request(r.kc, "GET", ppath.data, NULL, NULL, 0, 20000, got, &lr) < 0)
        bench_die("cannot list the node's pods");
    while (!lr.body)
        ev_run(r.loop, EVRUN_ONCE);
    long listed = 0, matched = 0, dup = 0;
    yajl_val list = vk_json_parse(lr.body, strlen(lr.body), NULL, 0);
    yajl_val items = vk_json_member(list, "items");
    char *hit = calloc((size_t)r.n + 1, 1);
    for (size_t i = 0; YAJL_IS_ARRAY(items) && i < items->u.array.len; i++) {
        yajl_val it = items->u.array.values[i];
        if (strcmp(vk_json_str(vk_json_get(it, "metadata", "namespace", NULL), ""), r.ns) != 0)
            continue;
        listed++;
        long k = bench_pod_index(vk_json_str(vk_json_get(it, "metadata", "name", NULL), NULL), "rec");
        if (k < 0 || k >= r.n)
            continue;
        if (hit[k]++)
            dup++;
        else if (r.uids[k] &&
                 !strcmp(r.uids[k], vk_json_str(vk_json_get(it, "metadata", "uid", NULL), "")))
            matched++;
    }
    printf("pods=%ld\ntimed_out=%d\n", r.n, r.timed_out);
    printf("t_ready_s=%.3f\n", ready > 0 ? ready - r.t_kill : -1);
    printf("t_up_polled_s=%.3f\n", r.up ? r.t_up : -1);
    printf("t_reconciled_s=%.3f\n", r.reconciled ? r.t_reconciled : -1);
    printf("created_again=%.0f\nqueue_depth=%.0f\n", r.last_created - r.base_created, r.last_depth);
    printf("api_regressions=%ld\napi_extra=%ld\napi_deleted=%ld\n", r.regressions, r.extra,
           r.deleted);
    printf("provider_status=%ld\nprovider_listed=%ld\nprovider_matched=%ld\nprovider_dup=%ld\n",
           lr.status, listed, matched, dup);
    free(hit);
    yajl_tree_free(list);
    free(lr.body);
    ev_timer_stop(r.loop, &r.deadline);
    kube_reflector_free(r.refl);
    kube_client_free(r.kc);
    for (long i = 0; i < r.n; i++)
        free(r.uids[i]);
    free(r.uids);
    vk_buf_free(&mpath);
    vk_buf_free(&ppath);
    vk_buf_free(&sel);
    vk_buf_free(&path);
    bool ok = !r.timed_out && r.reconciled && !r.regressions && !r.extra && !dup &&
              matched == r.n && listed == r.n;
    return ok ? 0 : 1;
}
