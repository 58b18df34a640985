/* kubelet.c -- `vkc-bench kubelet`: the churn benchmark's baseline.
 *
 *   vkc-bench kubelet --kubeconfig NODE_KUBECONFIG --node NODE [--window W]
 *
 * The least a node agent must write to the API for a pod: it lists and
 * watches the pods bound to NODE (with the node's identity, as vkc does)
 * and, as fast as the API server allows (W requests in flight),
 *
 *   - PUTs .../status with a Running status for each pod not Running yet
 *     (the whole pod, the resourceVersion of the newest copy, as vkc);
 *   - DELETEs each pod that has a deletionTimestamp, with grace period 0
 *     and its uid as precondition.
 *
 * Nothing else: no provider, no events, no env resolution. It registers a
 * bare Node object so the pod GC leaves the pods alone. Runs until SIGTERM
 * or SIGINT; then prints its counters as key=value lines.
 */
#include "bench_common.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 16384

typedef struct fpod {
    struct fpod *next, *qnext;
    char *key;
    yajl_val pod;           /* newest copy (watch or our own write's answer) */
    long long rv;
    char *done_uid;         /* status written for this incarnation */
    bool queued, busy, deleted;
} fpod;

typedef struct fk {
    struct ev_loop *loop;
    struct kube_client *kc;
    struct kube_reflector *refl;
    const char *node;
    int window, in_flight;
    fpod *buckets[BUCKETS];
    fpod *qhead, *qtail;
    unsigned long puts_ok, puts_conflict, puts_err, dels_ok, dels_err;
    ev_signal sigterm, sigint;
    ev_timer retry;
} fk;

static void pump(fk *k);

static unsigned hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static fpod *get(fk *k, const char *key, bool create)
{
    fpod **s = &k->buckets[hash(key)];
    for (; *s; s = &(*s)->next)
        if (!strcmp((*s)->key, key))
            return *s;
    if (!create)
        return NULL;
    fpod *p = calloc(1, sizeof *p);
    if (!p || !(p->key = strdup(key)))
        bench_die("out of memory");
    *s = p;
    return p;
}

static long long rv_of(yajl_val pod)
{
    const char *rv = vk_json_str(vk_json_get(pod, "metadata", "resourceVersion", NULL), "0");
    return atoll(rv);
}

static const char *uid_of(yajl_val pod)
{
    return vk_json_str(vk_json_get(pod, "metadata", "uid", NULL), "");
}

static bool needs_work(fpod *p)
{
    if (!p->pod)
        return false;
    if (vk_json_get(p->pod, "metadata", "deletionTimestamp", NULL))
        return !p->deleted;
    const char *phase = vk_json_str(vk_json_get(p->pod, "status", "phase", NULL), "");
    return strcmp(phase, "Running") != 0 &&
           !(p->done_uid && !strcmp(p->done_uid, uid_of(p->pod)));
}

static void enqueue(fk *k, fpod *p)
{
    if (p->queued || p->busy || !needs_work(p))
        return;
    p->queued = true;
    p->qnext = NULL;
    if (k->qtail)
        k->qtail->qnext = p;
    else
        k->qhead = p;
    k->qtail = p;
}

static void take(fk *k, yajl_val obj)
{
    vk_buf key = VK_BUF_INIT;
    vk_buf_printf(&key, "%s/%s",
                  vk_json_str(vk_json_get(obj, "metadata", "namespace", NULL), ""),
                  vk_json_str(vk_json_get(obj, "metadata", "name", NULL), ""));
    fpod *p = get(k, key.data, true);
    vk_buf_free(&key);
    long long rv = rv_of(obj);
    if (p->pod && strcmp(uid_of(p->pod), uid_of(obj)) != 0) {
        p->deleted = false; /* a new incarnation */
    } else if (p->pod && rv < p->rv) {
        yajl_tree_free(obj); /* older than our own write's answer */
        return;
    }
    yajl_tree_free(p->pod);
    p->pod = obj;
    p->rv = rv;
    enqueue(k, p);
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    fk *k = ud;
    for (size_t i = 0; i < n; i++) {
        take(k, items[i]);
        items[i] = NULL;
    }
    pump(k);
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    fk *k = ud;
    if (type == KUBE_DELETED) {
        vk_buf key = VK_BUF_INIT;
        vk_buf_printf(&key, "%s/%s",
                      vk_json_str(vk_json_get(*object, "metadata", "namespace", NULL), ""),
                      vk_json_str(vk_json_get(*object, "metadata", "name", NULL), ""));
        fpod *p = get(k, key.data, false);
        vk_buf_free(&key);
        if (p && p->pod && !strcmp(uid_of(p->pod), uid_of(*object))) {
            yajl_tree_free(p->pod);
            p->pod = NULL; /* the entry stays (small), so a queued pointer stays valid */
        }
        return;
    }
    take(k, *object);
    *object = NULL;
    pump(k);
}

typedef struct call {
    fk *k;
    fpod *p;
    bool del;
} call;

static void call_done(const struct kube_response *resp, void *ud)
{
    call *c = ud;
    fk *k = c->k;
    fpod *p = c->p;
    bool del = c->del;
    free(c);
    k->in_flight--;
    p->busy = false;
    if (resp->cancelled)
        return;
    bool ok = resp->status >= 200 && resp->status < 300;
    if (del) {
        if (ok || resp->status == 404 || resp->status == 409) {
            k->dels_ok++;
            p->deleted = true;
        } else {
            k->dels_err++;
        }
    } else if (ok) {
        k->puts_ok++;
        yajl_val answer = vk_json_parse(resp->body, resp->len, NULL, 0);
        if (p->pod) {
            free(p->done_uid);
            p->done_uid = strdup(uid_of(p->pod));
        }
        if (answer && rv_of(answer) > p->rv && p->pod &&
            !strcmp(uid_of(answer), uid_of(p->pod))) {
            yajl_tree_free(p->pod);
            p->pod = answer;
            p->rv = rv_of(answer);
        } else {
            yajl_tree_free(answer);
        }
    } else if (resp->status == 409) {
        k->puts_conflict++; /* a newer copy is on its way through the watch */
    } else if (resp->status == 404) {
        k->puts_err++;
    } else {
        k->puts_err++;
    }
    if (!ok && resp->status != 409 && resp->status != 404) {
        if (!ev_is_active(&k->retry)) {
            ev_timer_set(&k->retry, 0.1, 0);
            ev_timer_start(k->loop, &k->retry);
        }
    }
    enqueue(k, p);
    pump(k);
}

static void issue(fk *k, fpod *p)
{
    call *c = malloc(sizeof *c);
    if (!c)
        bench_die("out of memory");
    *c = (call){k, p, false};
    int64_t id;
    if (vk_json_get(p->pod, "metadata", "deletionTimestamp", NULL)) {
        c->del = true;
        vk_buf path = VK_BUF_INIT, body = VK_BUF_INIT;
        vk_buf_printf(&path, "/api/v1/namespaces/%s/pods/%s",
                      vk_json_str(vk_json_get(p->pod, "metadata", "namespace", NULL), ""),
                      vk_json_str(vk_json_get(p->pod, "metadata", "name", NULL), ""));
        vk_buf_printf(&body, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                      "\"gracePeriodSeconds\":0,\"preconditions\":{\"uid\":\"%s\"}}",
                      uid_of(p->pod));
        id = kube_request(k->kc, "DELETE", path.data, NULL, body.data, body.len, 0, call_done, c);
        vk_buf_free(&path);
        vk_buf_free(&body);
    } else {
        id = bench_put_running(k->kc, p->pod, 0, call_done, c);
    }
    if (id < 0)
        bench_die("cannot submit a request");
    p->busy = true;
    k->in_flight++;
}

static void pump(fk *k)
{
    if (ev_is_active(&k->retry))
        return;
    while (k->in_flight < k->window && k->qhead) {
        fpod *p = k->qhead;
        k->qhead = p->qnext;
        if (!k->qhead)
            k->qtail = NULL;
        p->queued = false;
        if (!p->busy && needs_work(p))
            issue(k, p);
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    fk *k = w->data;
    for (size_t i = 0; i < BUCKETS; i++)
        for (fpod *p = k->buckets[i]; p; p = p->next)
            enqueue(k, p);
    pump(k);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    (void)w;
    ev_break(loop, EVBREAK_ALL);
}

static void node_done(const struct kube_response *resp, void *ud)
{
    (void)ud;
    if (resp->status != 201 && resp->status != 409)
        bench_log("kubelet: cannot register the node: %ld %s", resp->status,
                  resp->error ? resp->error : "");
}

int cmd_kubelet(int argc, char **argv)
{
    static fk k;
    k.window = 500;
    const char *kubeconfig = NULL;
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"node", required_argument, NULL, 'N'},
        {"window", required_argument, NULL, 'w'},
        {0, 0, 0, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'k': kubeconfig = optarg; break;
        case 'N': k.node = optarg; break;
        case 'w': k.window = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!kubeconfig || !k.node)
        bench_die("kubelet: --kubeconfig and --node are needed");
    k.loop = ev_default_loop(0);
    k.kc = bench_client(k.loop, kubeconfig);
    vk_buf node = VK_BUF_INIT, sel = VK_BUF_INIT;
    vk_buf_printf(&node, "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"%s\"}}",
                  k.node);
    kube_request(k.kc, "POST", "/api/v1/nodes", NULL, node.data, node.len, 0, node_done, NULL);
    vk_buf_printf(&sel, "spec.nodeName=%s", k.node);
    struct kube_reflector_config rc = {
        .path = "/api/v1/pods",
        .field_selector = sel.data,
        .on_replace = on_replace,
        .on_event = on_event,
        .ud = &k,
    };
    k.refl = kube_reflector_start(k.kc, &rc);
    if (!k.refl)
        bench_die("cannot start the watch");
    ev_init(&k.retry, retry_cb);
    k.retry.data = &k;
    ev_signal_init(&k.sigterm, on_signal, SIGTERM);
    ev_signal_init(&k.sigint, on_signal, SIGINT);
    ev_signal_start(k.loop, &k.sigterm);
    ev_signal_start(k.loop, &k.sigint);
    bench_log("baseline kubelet running for node %s", k.node);
    ev_run(k.loop, 0);
    printf("status_puts_ok=%lu\nstatus_puts_conflict=%lu\nstatus_puts_error=%lu\n"
           "deletes_ok=%lu\ndeletes_error=%lu\n",
           k.puts_ok, k.puts_conflict, k.puts_err, k.dels_ok, k.dels_err);
    fflush(stdout);
    ev_timer_stop(k.loop, &k.retry);
    kube_reflector_free(k.refl);
    kube_client_free(k.kc);
    vk_buf_free(&node);
    vk_buf_free(&sel);
    return 0;
}
