/* poller.c -- the thread that polls the plugin's /status.
 *
 * interLink plugins never push: interLink's virtual kubelet asks /status
 * about its pods every few seconds. The poller does the same for every pod
 * the plugin accepted and that has not finished, IL_STATUS_BATCH pods per
 * request, and reports each change to the core, which sees it on
 * WatchPodStatus. A round without pods still sends /status an empty list,
 * which is how interLink's API server pings a plugin (/pinglink); whether
 * the last round worked is the node's Ready condition.
 */
#include "interlink.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

static pthread_t thread;
static bool started;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv;
static bool kicked;
static atomic_bool stopping;

static bool healthy;
static char health[512] = "the interLink plugin has not been polled yet";

bool poller_healthy(char *message, size_t n)
{
    pthread_mutex_lock(&mu);
    bool ok = healthy;
    snprintf(message, n, "%s", health);
    pthread_mutex_unlock(&mu);
    return ok;
}

/* The core hears of flips only: curl's messages vary from one failed
 * round to the next ("after 3 ms"), and GetNode has the latest anyway. */
static void set_health(bool ok, const char *message)
{
    pthread_mutex_lock(&mu);
    bool flipped = ok != healthy;
    healthy = ok;
    snprintf(health, sizeof health, "%s", message);
    pthread_mutex_unlock(&mu);
    if (!flipped)
        return;
    if (ok)
        vk_info("the interLink plugin answers", NULL);
    else
        vk_warn("the interLink plugin is not healthy", "error=\"%s\"", message);
    vk_provider_notify_node(provider);
}

static bool poll_cancelled(void *ud)
{
    (void)ud;
    return atomic_load(&stopping);
}

static bool finished(const il_pod *p)
{
    return p->phase == IL_SUCCEEDED || p->phase == IL_FAILED;
}

static bool askable(const il_pod *p)
{
    return p->accepted && !p->busy && !finished(p) && p->status;
}

/* The /status bodies for every pod to ask about: JSON lists of Pods, with
 * their current status as interLink's API server sends them. At least one
 * body, "[]" when there is no pod to ask about. NULL when memory ran out. */
static vk_buf *batches(size_t *n_out)
{
    pods_lock();
    size_t asked = 0;
    for (il_pod *p = pods_first(); p; p = p->next)
        asked += askable(p);
    size_t n = asked ? (asked + IL_STATUS_BATCH - 1) / IL_STATUS_BATCH : 1;
    vk_buf *b = calloc(n, sizeof *b);
    bool ok = b != NULL;
    size_t i = 0;
    for (il_pod *p = pods_first(); p && ok; p = p->next) {
        if (!askable(p))
            continue;
        vk_buf *body = &b[i / IL_STATUS_BATCH];
        ok = vk_buf_puts(body, i % IL_STATUS_BATCH ? "," : "[") == 0 &&
             vk_pod_with_status(p->pod->json, p->pod->json_len, p->status,
                                strlen(p->status), body) == 0;
        i++;
    }
    pods_unlock();
    for (size_t k = 0; k < n && ok; k++)
        ok = vk_buf_puts(&b[k], b[k].len ? "]" : "[]") == 0;
    if (!ok) {
        for (size_t k = 0; b && k < n; k++)
            vk_buf_free(&b[k]);
        free(b);
        vk_error("out of memory polling the plugin", NULL);
        return NULL;
    }
    *n_out = n;
    return b;
}

static bool has_entries(yajl_val report, const char *key)
{
    yajl_val v = vk_json_member(report, key);
    return YAJL_IS_ARRAY(v) && v->u.array.len > 0;
}

/* One PodStatus of the plugin applied to its pod; true when it changed.
 * With the lock held. */
static bool apply_one(yajl_val report)
{
    il_pod *p = pods_by_uid(vk_json_str(vk_json_member(report, "UID"), ""));
    if (!p || !p->accepted || p->busy || finished(p))
        return false;
    if (!has_entries(report, "containers") && !has_entries(report, "initContainers"))
        return false; /* nothing known yet */
    vk_buf b = VK_BUF_INIT;
    enum il_phase phase;
    bool changed = false;
    if (status_build(p, report, &b, &phase) == 0 && strcmp(b.data, p->status) != 0) {
        /* Changed: now is the transition time of the conditions. */
        int64_t before = p->changed_s;
        p->changed_s = il_wall_s();
        vk_buf_reset(&b);
        if (status_build(p, report, &b, &phase) == 0) {
            pods_set_status(p, vk_buf_steal(&b, NULL), phase);
            changed = true;
            if (finished(p))
                vk_info("pod finished", "pod=%s/%s phase=%s",
                        p->pod->namespace ? p->pod->namespace : "", p->pod->name,
                        phase == IL_SUCCEEDED ? "Succeeded" : "Failed");
        } else {
            p->changed_s = before;
        }
    }
    vk_buf_free(&b);
    return changed;
}

/* 0, or -1 with why in st. */
static int apply(const vk_buf *resp, bool *changed, vk_status *st)
{
    char err[128] = "not a list", excerpt[400];
    yajl_val v = vk_json_parse(resp->data ? resp->data : "", resp->len, err, sizeof err);
    if (!YAJL_IS_ARRAY(v)) {
        plugin_excerpt(resp, excerpt, sizeof excerpt);
        vk_status_set(st, VK_INTERNAL,
                      "the interLink plugin's answer to GET /status is not a list of PodStatus "
                      "(%s): %s", err, excerpt);
        yajl_tree_free(v);
        return -1;
    }
    pods_lock();
    for (size_t i = 0; i < v->u.array.len; i++)
        *changed |= apply_one(v->u.array.values[i]);
    pods_unlock();
    yajl_tree_free(v);
    return 0;
}

static void poll_round(void)
{
    size_t n = 0;
    vk_buf *bodies = batches(&n);
    if (!bodies)
        return;
    bool changed = false, ok = true;
    vk_status st = {0, NULL};
    for (size_t i = 0; i < n && ok && !atomic_load(&stopping); i++) {
        vk_buf resp = VK_BUF_INIT;
        ok = plugin_call("GET", "/status", bodies[i].data, bodies[i].len, &resp, &st,
                         poll_cancelled, NULL, NULL) == VK_OK &&
             apply(&resp, &changed, &st) == 0;
        vk_buf_free(&resp);
    }
    for (size_t i = 0; i < n; i++)
        vk_buf_free(&bodies[i]);
    free(bodies);
    if (changed)
        state_save();
    if (!atomic_load(&stopping))
        set_health(ok, ok ? "the interLink plugin answers" : st.message ? st.message : "");
    vk_status_clear(&st);
}

static void *poller_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stopping)) {
        poll_round();
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t ns = until.tv_nsec + config.poll_interval_ms % MS_PER_S * 1000000LL;
        until.tv_sec += config.poll_interval_ms / MS_PER_S + ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
        pthread_mutex_lock(&mu);
        while (!kicked && !atomic_load(&stopping) &&
               pthread_cond_timedwait(&cv, &mu, &until) == 0)
            ;
        kicked = false;
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

int poller_start(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc == 0 && (rc = pthread_create(&thread, NULL, poller_main, NULL)) != 0)
        pthread_cond_destroy(&cv);
    started = rc == 0;
    return rc;
}

void poller_kick(void)
{
    pthread_mutex_lock(&mu);
    kicked = true;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
}

void poller_stop(void)
{
    if (!started)
        return;
    pthread_mutex_lock(&mu);
    atomic_store(&stopping, true);
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    pthread_join(thread, NULL);
    pthread_cond_destroy(&cv);
    started = false;
}
