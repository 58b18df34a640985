/* probes.c -- liveness, readiness and startup probes of every pod.
 *
 * One scheduler thread owns the timing of all probes: it looks over the
 * pods (lock held, nothing slow), queues each probe whose time came, and
 * sleeps until the next one is due. A fixed pool of runner threads runs
 * the queued probes (probe_run.c), each bounded by its timeoutSeconds, and
 * applies the results under the lock. A probe is queued at most once at a
 * time, so the queue never holds more than one entry per probe, and a
 * slow or hung probe holds one runner, never the scheduler, the pod
 * workers or the status stream.
 *
 * Results follow the kubelet's prober workers: a run changes the reported
 * result only after successThreshold / failureThreshold runs in a row;
 * readiness starts as failed, liveness as passed; readiness and liveness
 * wait until the startup probe passed, which then is not run again; a
 * liveness or startup failure puts the probe on hold and marks the
 * container unhealthy, which its worker acts upon (kills it; the restart
 * policy and back-off decide what follows). Results belong to one
 * container: a restarted one starts over, initialDelaySeconds included.
 * Runs that could not happen (the runtime failed) are dropped, as the
 * kubelet drops prober errors.
 */
#include "cri.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

#define RUNNERS 4
#define SCAN_MAX_MS 1000        /* new pods are seen within this */
#define STOP_WAIT_MS 5000

static const char *const keys[PROBE_KINDS] = {"startupProbe", "livenessProbe", "readinessProbe"};
static const char *const titles[PROBE_KINDS] = {"Startup", "Liveness", "Readiness"};

typedef struct job {
    struct job *next;
    uint64_t serial;
    size_t index;               /* of the container in the pod */
    int kind;
    char ctr_id[80];
    char ctr_name[64];
    char pod_ip[64];
    char ns[64], pod[256], uid[160];
    int64_t started_ns;
    probe_spec spec;
    char refusal[256];          /* not a run: a probe that cannot run, told */
} job;

static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work;     /* a job was queued, or stop */
static pthread_cond_t tick;     /* the scheduler's sleep (monotonic) */
static pthread_cond_t gone;     /* a runner ended */
static job *head, *tail;
static bool stopping;
static int live_runners;
static pthread_t scheduler, runners[RUNNERS];
static int n_started;

/* ---- what the rest of the provider asks -------------------------------------------- */

uint8_t probes_defined(const cri_pod *p, const char *ctr)
{
    yajl_val c = spec_container_json(p, ctr);
    uint8_t m = 0;
    for (int k = 0; k < PROBE_KINDS; k++)
        if (YAJL_IS_OBJECT(vk_json_member(c, keys[k])))
            m |= (uint8_t)(1u << k);
    return m;
}

static bool mine(const cri_ctr *c, int kind)
{
    return c->id[0] && strcmp(c->probe[kind].ctr_id, c->id) == 0;
}

bool probes_started(const cri_ctr *c)
{
    if (!(c->probes & (1u << PROBE_STARTUP)))
        return true;
    return mine(c, PROBE_STARTUP) && c->probe[PROBE_STARTUP].result == PROBE_SUCCESS;
}

bool probes_ready(const cri_ctr *c)
{
    if (!probes_started(c))
        return false;
    if (!(c->probes & (1u << PROBE_READINESS)))
        return true;
    return mine(c, PROBE_READINESS) && c->probe[PROBE_READINESS].result == PROBE_SUCCESS;
}

int64_t probes_grace_seconds(const cri_pod *p, const cri_ctr *c, int kind)
{
    yajl_val probe = vk_json_member(spec_container_json(p, c->spec->name), keys[kind]);
    int64_t g = vk_json_int(vk_json_member(probe, "terminationGracePeriodSeconds"), -1);
    if (g >= 0)
        return g;
    g = vk_json_int(vk_json_get(p->spec, "spec", "terminationGracePeriodSeconds", NULL), 30);
    return g < 0 ? 0 : g;
}

/* ---- scheduling ------------------------------------------------------------------------ */

static void reset(probe_state *ps, const cri_ctr *c, int kind)
{
    memset(ps, 0, sizeof *ps);
    snprintf(ps->ctr_id, sizeof ps->ctr_id, "%s", c->id);
    /* The kubelet's initial results: not ready, alive, not yet started. */
    ps->result = kind == PROBE_READINESS ? PROBE_FAILURE
                 : kind == PROBE_LIVENESS ? PROBE_SUCCESS : PROBE_UNKNOWN;
}

/* A probe this provider cannot run is told once, as a warning event the
 * runners send (lock held here). */
static void refuse(cri_pod *p, cri_ctr *c, int kind, const char *why, job **jobs)
{
    probe_state *ps = &c->probe[kind];
    ps->on_hold = true;
    if (ps->refused)
        return;
    ps->refused = true;
    vk_warn("probe not run", "pod=%s/%s container=%s probe=%s error=\"%s\"", p->ns, p->name,
            c->spec->name, keys[kind], why);
    job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->kind = kind;
    snprintf(j->ns, sizeof j->ns, "%s", p->ns);
    snprintf(j->pod, sizeof j->pod, "%s", p->name);
    snprintf(j->uid, sizeof j->uid, "%s", p->uid);
    snprintf(j->refusal, sizeof j->refusal, "%s probe of container %s not run: %.160s",
             titles[kind], c->spec->name, why);
    j->next = *jobs;
    *jobs = j;
}

/* Queue into *jobs the probes of c whose time came; *next_ns gets the
 * earliest time another one falls due (lock held). */
static void scan_container(cri_pod *p, size_t index, int64_t now, job **jobs, int64_t *next_ns)
{
    cri_ctr *c = &p->ctrs[index];
    if (!c->probes || c->phase != CTR_RUNNING || !c->id[0])
        return;
    yajl_val cj = spec_container_json(p, c->spec->name);
    for (int kind = 0; kind < PROBE_KINDS; kind++) {
        probe_state *ps = &c->probe[kind];
        if (!(c->probes & (1u << kind)))
            continue;
        if (strcmp(ps->ctr_id, c->id) != 0) {
            bool refused = ps->refused;
            reset(ps, c, kind);
            ps->refused = refused;
            ps->next_ns = c->started_ns + vk_json_int(vk_json_member(vk_json_member(cj, keys[kind]),
                                                                     "initialDelaySeconds"), 0) *
                                              NS_PER_S;
        }
        bool started = probes_started(c);
        if (ps->busy || ps->on_hold || (kind == PROBE_STARTUP) == started)
            continue;
        if (ps->next_ns > now) {
            if (ps->next_ns < *next_ns)
                *next_ns = ps->next_ns;
            continue;
        }
        job *j = calloc(1, sizeof *j);
        char err[256];
        if (!j)
            return;
        if (probe_parse(vk_json_member(cj, keys[kind]), c->spec, &j->spec, err, sizeof err) < 0) {
            probe_spec_free(&j->spec);
            free(j);
            refuse(p, c, kind, err, jobs);
            continue;
        }
        j->serial = p->serial;
        j->index = index;
        j->kind = kind;
        j->started_ns = now;
        snprintf(j->ctr_id, sizeof j->ctr_id, "%s", c->id);
        snprintf(j->ctr_name, sizeof j->ctr_name, "%s", c->spec->name);
        snprintf(j->pod_ip, sizeof j->pod_ip, "%s", p->pod_ip);
        snprintf(j->ns, sizeof j->ns, "%s", p->ns);
        snprintf(j->pod, sizeof j->pod, "%s", p->name);
        snprintf(j->uid, sizeof j->uid, "%s", p->uid);
        ps->busy = true;
        j->next = *jobs;
        *jobs = j;
    }
}

/* One look over every pod; the jobs due, and when to look again. */
static job *scan(int64_t *next_ns)
{
    job *jobs = NULL;
    int64_t now = cri_now_ns();
    *next_ns = now + SCAN_MAX_MS * NS_PER_MS;
    cri_lock();
    for (cri_pod *p = pods_next(NULL); p; p = pods_next(p)) {
        if (p->phase)
            continue;   /* finished: nothing to probe */
        for (size_t i = 0; i < p->n_ctrs; i++)
            if (!p->ctrs[i].init)
                scan_container(p, i, now, &jobs, next_ns);
    }
    cri_unlock();
    return jobs;
}

static void *scheduler_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&qlock);
    while (!stopping) {
        pthread_mutex_unlock(&qlock);
        int64_t next_ns;
        job *jobs = scan(&next_ns);
        pthread_mutex_lock(&qlock);
        while (jobs) {
            job *j = jobs;
            jobs = j->next;
            j->next = NULL;
            if (tail)
                tail->next = j;
            else
                head = j;
            tail = j;
            pthread_cond_signal(&work);
        }
        int64_t wait_ms = (next_ns - cri_now_ns()) / NS_PER_MS + 1;
        if (wait_ms <= 0 || stopping)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * NS_PER_MS;
        if (until.tv_nsec >= NS_PER_S) {
            until.tv_sec++;
            until.tv_nsec -= NS_PER_S;
        }
        pthread_cond_timedwait(&tick, &qlock, &until);
    }
    pthread_mutex_unlock(&qlock);
    return NULL;
}

/* ---- results --------------------------------------------------------------------------- */

/* Take a run's result (lock held). true when the container must die. */
static bool apply(const job *j, enum probe_result r)
{
    cri_pod *p = pods_by_serial(j->serial);
    if (!p || j->index >= p->n_ctrs)
        return false;
    cri_ctr *c = &p->ctrs[j->index];
    probe_state *ps = &c->probe[j->kind];
    if (strcmp(ps->ctr_id, j->ctr_id) != 0)
        return false;   /* a new container started over meanwhile */
    ps->busy = false;
    ps->next_ns = j->started_ns + j->spec.period_s * NS_PER_S;
    if (r == PROBE_ERROR || strcmp(c->id, j->ctr_id) != 0)
        return false;
    if (r == ps->last) {
        ps->run++;
    } else {
        ps->last = r;
        ps->run = 1;
    }
    if ((r == PROBE_FAILURE && ps->run < j->spec.failure_threshold) ||
        (r == PROBE_SUCCESS && ps->run < j->spec.success_threshold) || ps->result == r)
        return false;
    ps->result = r;
    bool kill = r == PROBE_FAILURE && j->kind != PROBE_READINESS;
    if (kill) {
        ps->on_hold = true;
        ps->run = 0;
        c->unhealthy = 1 + j->kind;
        p->kick = true;
        pthread_cond_signal(&p->wake);
    }
    status_update(p);
    return kill;
}

static void run(job *j)
{
    char out[1100], msg[1200];
    if (j->refusal[0]) {
        vk_core_emit_event(provider, j->ns, j->pod, j->uid, "Warning", "Unhealthy", j->refusal);
        return;
    }
    enum probe_result r = probe_run(&j->spec, j->ctr_id, j->pod_ip, out, sizeof out);
    if (r == PROBE_ERROR)
        vk_debug("probe could not run", "pod=%s/%s container=%s probe=%s error=\"%s\"", j->ns,
                 j->pod, j->ctr_name, keys[j->kind], out);
    cri_lock();
    apply(j, r);
    cri_unlock();
    if (r == PROBE_FAILURE) {
        snprintf(msg, sizeof msg, "%s probe failed: %s", titles[j->kind], out);
        vk_core_emit_event(provider, j->ns, j->pod, j->uid, "Warning", "Unhealthy", msg);
    }
}

static void *runner_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&qlock);
    for (;;) {
        while (!head && !stopping)
            pthread_cond_wait(&work, &qlock);
        if (stopping)
            break;
        job *j = head;
        head = j->next;
        if (!head)
            tail = NULL;
        pthread_mutex_unlock(&qlock);
        run(j);
        probe_spec_free(&j->spec);
        free(j);
        pthread_mutex_lock(&qlock);
    }
    live_runners--;
    pthread_cond_broadcast(&gone);
    pthread_mutex_unlock(&qlock);
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------------- */

int probes_start(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&tick, &attr);
    pthread_cond_init(&gone, &attr);
    pthread_cond_init(&work, NULL);
    pthread_condattr_destroy(&attr);

    /* SIGINT and SIGTERM belong to vk_provider_wait. */
    sigset_t old, set;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    set = old;
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    int rc = pthread_create(&scheduler, NULL, scheduler_main, NULL);
    for (n_started = 0; rc == 0 && n_started < RUNNERS; n_started++) {
        rc = pthread_create(&runners[n_started], NULL, runner_main, NULL);
        if (rc != 0)
            break;
        pthread_mutex_lock(&qlock);
        live_runners++;
        pthread_mutex_unlock(&qlock);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0 && n_started == 0) {
        vk_error("cannot start the probe threads", "error=\"%s\"", strerror(rc));
        return -1;
    }
    return 0;
}

bool probes_stop(void)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += STOP_WAIT_MS / 1000;
    pthread_mutex_lock(&qlock);
    stopping = true;
    pthread_cond_broadcast(&work);
    pthread_cond_signal(&tick);
    while (live_runners > 0 && pthread_cond_timedwait(&gone, &qlock, &until) != ETIMEDOUT)
        ;
    int left = live_runners;
    pthread_mutex_unlock(&qlock);
    pthread_join(scheduler, NULL);
    if (left > 0) {
        vk_warn("probe runners still busy; exiting without them", "runners=%d", left);
        return false;
    }
    for (int i = 0; i < n_started; i++)
        pthread_join(runners[i], NULL);
    while (head) {
        job *j = head;
        head = j->next;
        probe_spec_free(&j->spec);
        free(j);
    }
    tail = NULL;
    pthread_cond_destroy(&tick);
    pthread_cond_destroy(&gone);
    pthread_cond_destroy(&work);
    return true;
}
