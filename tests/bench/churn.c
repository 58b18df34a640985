/* churn.c -- `vkc-bench churn`: create N pods bound to a node at once,
 * time until the API shows them all Running, delete them (graceful) and
 * time until they are all gone.
 *
 *   vkc-bench churn --kubeconfig ADMIN --node NODE --ns NS --pods N
 *                   [--prefix P] [--window W] [--timeout S] [--csv FILE]
 *                   [--rss-pid PID] [--settle S] [--metrics-port P] [--keep] [--delete-only]
 *                   [--annotations '"k":"v",...']
 *
 * Creates go out as fast as the API server takes them (W in flight; 429
 * and 5xx are retried). A list+watch of NS (fieldSelector spec.nodeName)
 * stamps each pod's first Running and its DELETED event. --keep stops
 * after all are Running; --delete-only deletes the pods P-* already there.
 * --settle waits S seconds once all are Running and reads --rss-pid's
 * memory again before deleting: the figure at rest, after the burst; with
 * --metrics-port (the core's --metrics-addr port) also its malloc heap in
 * use and free (process_heap_bytes), which tells live data from free
 * memory between live chunks.
 * A timeline (t, created, running, gone, rss_kb) is sampled every 250 ms
 * into --csv. The summary is key=value lines on stdout.
 */
#include "bench_common.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

typedef struct pod_state {
    bool created, seen, running, deleted, gone;
    int tries;
} pod_state;

typedef struct churn {
    struct ev_loop *loop;
    struct kube_client *kc;
    struct kube_reflector *refl;
    const char *ns, *node, *prefix, *annotations;
    long n;
    int window;
    bool keep, delete_only;
    pid_t rss_pid;
    FILE *csv;

    pod_state *pods;
    long next_create, n_created, create_errors, n_running, n_gone;
    long next_delete, n_deleted, delete_errors;
    long *retry;            /* indexes to submit again */
    long n_retry;
    int in_flight;
    bool synced, deleting, done, timed_out;
    double t0, t_created, t_running, t_del0, t_deleted, t_gone;
    long rss_running, anon_running, rss_max;
    long rss_settled, anon_settled;
    double heap_in_use, heap_free;
    int metrics_port;
    double settle_s;
    ev_timer sampler, deadline, retry_timer, settle;
    bool retry_due;     /* the pause after a refusal is over */
} churn;

typedef struct req {
    churn *ch;
    long index;
} req;

static void pump(churn *ch);

static void finish(churn *ch)
{
    ch->done = true;
    ev_break(ch->loop, EVBREAK_ALL);
}

static void start_deleting(churn *ch)
{
    ch->deleting = true;
    ch->t_del0 = bench_now();
    pump(ch);
}

static void settle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    churn *ch = w->data;
    ch->rss_settled = bench_rss_kb(ch->rss_pid, "VmRSS");
    ch->anon_settled = bench_rss_kb(ch->rss_pid, "RssAnon");
    if (ch->metrics_port > 0) {
        ch->heap_in_use = bench_metric(ch->metrics_port, "process_heap_bytes{state=\"in_use\"}");
        ch->heap_free = bench_metric(ch->metrics_port, "process_heap_bytes{state=\"free\"}");
    }
    bench_log("%.0f s later: VmRSS %ld kB, heap in use %.0f kB", ch->settle_s, ch->rss_settled,
              ch->heap_in_use / 1024);
    start_deleting(ch);
}

static void check_progress(churn *ch)
{
    double now = bench_now();
    if (!ch->deleting && !ch->delete_only && ch->n_running == ch->n && ch->t_running == 0) {
        ch->t_running = now - ch->t0;
        if (ch->rss_pid > 0) {
            ch->rss_running = bench_rss_kb(ch->rss_pid, "VmRSS");
            ch->anon_running = bench_rss_kb(ch->rss_pid, "RssAnon");
        }
        bench_log("all %ld pods Running after %.2f s", ch->n, ch->t_running);
        if (ch->keep) {
            finish(ch);
            return;
        }
        if (ch->settle_s > 0) {
            ev_timer_set(&ch->settle, ch->settle_s, 0);
            ev_timer_start(ch->loop, &ch->settle);
            return;
        }
        start_deleting(ch);
    }
    if (ch->deleting && ch->n_gone == ch->n && ch->t_gone == 0) {
        ch->t_gone = now - ch->t_del0;
        bench_log("all %ld pods gone %.2f s after the first delete", ch->n, ch->t_gone);
        finish(ch);
    }
}

/* ---- the watch ----------------------------------------------------------- */

static void observe(churn *ch, yajl_val pod, bool gone)
{
    long i = bench_pod_index(vk_json_str(vk_json_get(pod, "metadata", "name", NULL), NULL),
                             ch->prefix);
    if (i < 0 || i >= ch->n)
        return;
    pod_state *p = &ch->pods[i];
    p->seen = true;
    if (gone) {
        if (!p->gone) {
            p->gone = true;
            ch->n_gone++;
        }
        return;
    }
    const char *phase = vk_json_str(vk_json_get(pod, "status", "phase", NULL), "");
    if (!p->running && !strcmp(phase, "Running")) {
        p->running = true;
        ch->n_running++;
    }
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    churn *ch = ud;
    for (size_t i = 0; i < n; i++)
        observe(ch, items[i], false);
    if (!ch->synced) {
        ch->synced = true;
        ev_break(ch->loop, EVBREAK_ONE);
    }
    check_progress(ch);
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    churn *ch = ud;
    observe(ch, *object, type == KUBE_DELETED);
    check_progress(ch);
}

/* ---- creates and deletes ------------------------------------------------------ */

static bool retryable(long status)
{
    return status == 0 || status == 429 || status >= 500;
}

static void request_done(const struct kube_response *resp, void *ud)
{
    req *r = ud;
    churn *ch = r->ch;
    long i = r->index;
    free(r);
    ch->in_flight--;
    if (resp->cancelled)
        return;
    pod_state *p = &ch->pods[i];
    bool ok = (resp->status >= 200 && resp->status < 300);
    if (!ch->deleting) {
        if (ok || resp->status == 409) {
            p->created = true;
            if (++ch->n_created == ch->n) {
                ch->t_created = bench_now() - ch->t0;
                bench_log("all %ld pods created after %.2f s (%ld retried)", ch->n,
                          ch->t_created, ch->create_errors);
            }
        } else {
            ch->create_errors++;
            if (!retryable(resp->status) || ++p->tries > 20)
                bench_die("create %s-%06ld: %ld %s", ch->prefix, i, resp->status,
                          resp->error ? resp->error : "");
            ch->retry[ch->n_retry++] = i;
        }
    } else {
        if (ok || resp->status == 404) {
            p->deleted = true;
            if (++ch->n_deleted == ch->n) {
                ch->t_deleted = bench_now() - ch->t_del0;
                bench_log("all %ld deletes accepted after %.2f s", ch->n, ch->t_deleted);
            }
        } else {
            ch->delete_errors++;
            if (!retryable(resp->status) || ++p->tries > 20)
                bench_die("delete %s-%06ld: %ld %s", ch->prefix, i, resp->status,
                          resp->error ? resp->error : "");
            ch->retry[ch->n_retry++] = i;
        }
    }
    pump(ch);
}

static void submit(churn *ch, long i)
{
    req *r = malloc(sizeof *r);
    if (!r)
        bench_die("out of memory");
    r->ch = ch;
    r->index = i;
    vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT;
    int64_t id;
    if (!ch->deleting) {
        vk_buf_printf(&path, "/api/v1/namespaces/%s/pods", ch->ns);
        bench_pod_json(&body, ch->ns, ch->prefix, i, ch->node, ch->annotations, NULL);
        id = kube_request(ch->kc, "POST", path.data, NULL, body.data, body.len, 0,
                          request_done, r);
    } else {
        /* Graceful: the pod's terminationGracePeriodSeconds (30). */
        vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s-%06ld", ch->ns, ch->prefix, i);
        id = kube_request(ch->kc, "DELETE", path.data, NULL, NULL, 0, 0, request_done, r);
    }
    vk_buf_free(&path);
    vk_buf_free(&body);
    if (id < 0)
        bench_die("cannot submit a request");
    ch->in_flight++;
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    churn *ch = w->data;
    ch->retry_due = true;
    pump(ch);
}

static void pump(churn *ch)
{
    /* Retries first, but only once the short pause after a refusal is
     * over, so a 429 storm backs off. */
    while (ch->in_flight < ch->window) {
        if (ch->retry_due && ch->n_retry) {
            submit(ch, ch->retry[--ch->n_retry]);
        } else if (!ch->deleting && ch->next_create < ch->n) {
            submit(ch, ch->next_create++);
        } else if (ch->deleting && ch->next_delete < ch->n) {
            long i = ch->next_delete++;
            if (!ch->pods[i].gone)
                submit(ch, i);
            else if (++ch->n_deleted == ch->n)
                ch->t_deleted = bench_now() - ch->t_del0;
        } else {
            break;
        }
    }
    if (!ch->n_retry)
        ch->retry_due = false;
    else if (!ch->retry_due && !ev_is_active(&ch->retry_timer)) {
        ev_timer_set(&ch->retry_timer, 0.05, 0);
        ev_timer_start(ch->loop, &ch->retry_timer);
    }
}

/* ---- timeline ---------------------------------------------------------------- */

static void sample_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    churn *ch = w->data;
    long rss = ch->rss_pid > 0 ? bench_rss_kb(ch->rss_pid, "VmRSS") : -1;
    if (rss > ch->rss_max)
        ch->rss_max = rss;
    if (ch->csv)
        fprintf(ch->csv, "%.3f,%ld,%ld,%ld,%ld\n", bench_now() - ch->t0, ch->n_created,
                ch->n_running, ch->n_gone, rss);
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    churn *ch = w->data;
    ch->timed_out = true;
    bench_log("timeout: created=%ld running=%ld deleted=%ld gone=%ld", ch->n_created,
              ch->n_running, ch->n_deleted, ch->n_gone);
    finish(ch);
}

int cmd_churn(int argc, char **argv)
{
    churn ch = {.ns = "bench", .prefix = "churn", .n = 10000, .window = 200, .rss_max = -1,
                .rss_running = -1, .anon_running = -1, .rss_settled = -1,
                .anon_settled = -1, .heap_in_use = -1, .heap_free = -1};
    const char *kubeconfig = NULL, *csv = NULL;
    double timeout = 600;
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'}, {"node", required_argument, NULL, 'N'},
        {"ns", required_argument, NULL, 'n'},         {"pods", required_argument, NULL, 'p'},
        {"prefix", required_argument, NULL, 'P'},     {"window", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},    {"csv", required_argument, NULL, 'c'},
        {"rss-pid", required_argument, NULL, 'r'},    {"keep", no_argument, NULL, 'K'},
        {"delete-only", no_argument, NULL, 'D'},      {"annotations", required_argument, NULL, 'a'},
        {"settle", required_argument, NULL, 's'},
        {"metrics-port", required_argument, NULL, 'M'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'k': kubeconfig = optarg; break;
        case 'N': ch.node = optarg; break;
        case 'n': ch.ns = optarg; break;
        case 'p': ch.n = atol(optarg); break;
        case 'P': ch.prefix = optarg; break;
        case 'w': ch.window = atoi(optarg); break;
        case 't': timeout = atof(optarg); break;
        case 'c': csv = optarg; break;
        case 'r': ch.rss_pid = (pid_t)atoi(optarg); break;
        case 'K': ch.keep = true; break;
        case 'D': ch.delete_only = true; break;
        case 'a': ch.annotations = optarg; break;
        case 's': ch.settle_s = atof(optarg); break;
        case 'M': ch.metrics_port = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!kubeconfig || !ch.node || ch.n <= 0 || ch.window <= 0)
        bench_die("churn: --kubeconfig, --node and --pods > 0 are needed");
    ch.pods = calloc((size_t)ch.n, sizeof *ch.pods);
    ch.retry = calloc((size_t)ch.n, sizeof *ch.retry);
    if (!ch.pods || !ch.retry)
        bench_die("out of memory");
    if (csv) {
        ch.csv = fopen(csv, "w");
        if (!ch.csv)
            bench_die("cannot write %s", csv);
        fprintf(ch.csv, "t_s,created,running,gone,rss_kb\n");
    }
    ch.loop = ev_default_loop(0);
    ch.kc = bench_client(ch.loop, kubeconfig);

    vk_buf sel = VK_BUF_INIT, path = VK_BUF_INIT;
    vk_buf_printf(&sel, "spec.nodeName=%s", ch.node);
    vk_buf_printf(&path, "/api/v1/namespaces/%s/pods", ch.ns);
    struct kube_reflector_config rc = {
        .path = path.data,
        .field_selector = sel.data,
        .label_selector = NULL,
        .on_replace = on_replace,
        .on_event = on_event,
        .ud = &ch,
    };
    ch.refl = kube_reflector_start(ch.kc, &rc);
    if (!ch.refl)
        bench_die("cannot start the watch");
    ev_timer_init(&ch.deadline, deadline_cb, 120, 0);
    ch.deadline.data = &ch;
    ev_timer_start(ch.loop, &ch.deadline);
    ev_run(ch.loop, 0); /* until the first list */
    ev_timer_stop(ch.loop, &ch.deadline);
    if (!ch.synced)
        bench_die("the pod watch never synced");

    ev_init(&ch.retry_timer, retry_cb);
    ch.retry_timer.data = &ch;
    ev_init(&ch.settle, settle_cb);
    ch.settle.data = &ch;
    ev_timer_init(&ch.sampler, sample_cb, 0, 0.25);
    ch.sampler.data = &ch;
    ev_timer_init(&ch.deadline, deadline_cb, timeout, 0);
    ch.deadline.data = &ch;
    ev_timer_start(ch.loop, &ch.deadline);
    ch.t0 = bench_now();
    ev_timer_start(ch.loop, &ch.sampler);
    if (ch.delete_only) {
        ch.deleting = true;
        ch.t_del0 = ch.t0;
        for (long i = 0; i < ch.n; i++)
            if (!ch.pods[i].seen) {
                ch.pods[i].gone = true;
                ch.n_gone++;
            }
    }
    pump(&ch);
    check_progress(&ch);
    if (!ch.done)
        ev_run(ch.loop, 0);
    sample_cb(ch.loop, &ch.sampler, 0);

    printf("pods=%ld\n", ch.n);
    printf("timed_out=%d\n", ch.timed_out);
    printf("created=%ld\ncreate_retries=%ld\n", ch.n_created, ch.create_errors);
    printf("t_created_s=%.3f\n", ch.t_created);
    printf("running=%ld\nt_running_s=%.3f\n", ch.n_running, ch.t_running);
    printf("deleted=%ld\ndelete_retries=%ld\nt_deleted_s=%.3f\n", ch.n_deleted,
           ch.delete_errors, ch.t_deleted);
    printf("gone=%ld\nt_gone_s=%.3f\n", ch.n_gone, ch.t_gone);
    printf("rss_running_kb=%ld\nanon_running_kb=%ld\nrss_max_kb=%ld\n", ch.rss_running,
           ch.anon_running, ch.rss_max);
    printf("rss_settled_kb=%ld\nanon_settled_kb=%ld\n", ch.rss_settled, ch.anon_settled);
    printf("heap_in_use_settled_kb=%.0f\nheap_free_settled_kb=%.0f\n",
           ch.heap_in_use < 0 ? -1 : ch.heap_in_use / 1024, ch.heap_free < 0 ? -1 : ch.heap_free / 1024);
    if (ch.rss_pid > 0)
        printf("hwm_kb=%ld\n", bench_rss_kb(ch.rss_pid, "VmHWM"));

    ev_timer_stop(ch.loop, &ch.sampler);
    ev_timer_stop(ch.loop, &ch.deadline);
    ev_timer_stop(ch.loop, &ch.settle);
    ev_timer_stop(ch.loop, &ch.retry_timer);
    kube_reflector_free(ch.refl);
    kube_client_free(ch.kc);
    if (ch.csv)
        fclose(ch.csv);
    vk_buf_free(&sel);
    vk_buf_free(&path);
    free(ch.pods);
    free(ch.retry);
    return ch.timed_out ? 1 : 0;
}
