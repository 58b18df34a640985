/* pods.c -- the in-memory pod store and the scripted pod lifecycle.
 *
 * A pod is Pending (containers waiting in ContainerCreating) until
 * config.start_delay_ms after its creation, then Running with every
 * container started; init containers show as already completed. With the
 * exit-code annotation its containers exit run-ms after each start and
 * either restart or end, as the restartPolicy says.
 *
 * Transitions happen at fixed due times. The ticker thread applies them and
 * pushes the new status to the core; every lookup applies them too, so a
 * reader never sees a state that should already have changed.
 */
#include "mock.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS 4096
#define MIN_RUN_MS 10 /* bounds the restart rate of a crash-looping pod */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static mock_pod *buckets[BUCKETS];
static mock_pod *head, *tail;
static int64_t n_pods;
static uint32_t ip_counter;
static uint64_t id_counter;

void pods_lock(void) { pthread_mutex_lock(&lock); }
void pods_unlock(void) { pthread_mutex_unlock(&lock); }

static unsigned bucket(const char *ns, const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a over "ns/name" */
    for (const char *s = ns; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *s = name; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static mock_pod *lookup(const char *ns, const char *name)
{
    for (mock_pod *mp = buckets[bucket(ns, name)]; mp; mp = mp->hash_next)
        if (strcmp(mp->name, name) == 0 && strcmp(mp->ns, ns) == 0)
            return mp;
    return NULL;
}

const char *pod_uid(const mock_pod *mp)
{
    return mp->pod->uid ? mp->pod->uid : "";
}

static bool finished(const mock_pod *mp)
{
    return strcmp(mp->phase, "Succeeded") == 0 || strcmp(mp->phase, "Failed") == 0;
}

mock_ctr *pod_ctr(mock_pod *mp, const char *name)
{
    for (size_t i = 0; i < mp->n_ctrs; i++)
        if (strcmp(mp->ctrs[i].spec->name, name) == 0)
            return &mp->ctrs[i];
    return NULL;
}

/* ---- status ------------------------------------------------------------- */

static int status_json(const mock_pod *mp, vk_buf *out)
{
    vk_container_status *cs = calloc(mp->n_ctrs ? mp->n_ctrs : 1, sizeof *cs);
    if (!cs)
        return -1;
    size_t n_init = 0;
    for (size_t i = 0; i < mp->n_ctrs; i++) {
        const mock_ctr *c = &mp->ctrs[i];
        vk_container_status *s = &cs[i];
        n_init += c->init;
        s->name = c->spec->name;
        s->image = c->spec->image;
        s->image_id = c->spec->image;
        s->state = c->state;
        s->restart_count = c->restarts;
        switch (c->state) {
        case VK_STATE_WAITING:
            s->reason = "ContainerCreating";
            break;
        case VK_STATE_RUNNING:
            s->container_id = c->id;
            s->started_at = c->started_ns / NS_PER_S;
            s->ready = s->started = true;
            break;
        case VK_STATE_TERMINATED:
            s->container_id = c->id;
            s->reason = c->exit_code == 0 ? "Completed" : "Error";
            s->exit_code = c->exit_code;
            s->started_at = c->started_ns / NS_PER_S;
            s->finished_at = c->finished_ns / NS_PER_S;
            break;
        }
    }
    bool pending = strcmp(mp->phase, "Pending") == 0;
    vk_pod_status st = {
        .phase = mp->phase,
        .pod_ip = pending ? NULL : mp->ip,
        .host_ip = node_host_ip(),
        .start_time = mp->created_ns / NS_PER_S,
        .init_containers = cs,
        .n_init_containers = n_init,
        .containers = cs + n_init,
        .n_containers = mp->n_ctrs - n_init,
    };
    int rc = vk_pod_status_json(&st, mp->changed_s, out);
    free(cs);
    return rc;
}

/* Called with the lock held, so that two changes of one pod reach the SDK
 * in the order they happened (it keeps only the latest). */
static void notify(const mock_pod *mp)
{
    vk_buf b = VK_BUF_INIT;
    if (status_json(mp, &b) == 0)
        vk_provider_notify_pod(provider, mp->ns, mp->name, pod_uid(mp), b.data, b.len);
    else
        vk_warn("cannot build pod status", "pod=%s/%s", mp->ns, mp->name);
    vk_buf_free(&b);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void start_containers(mock_pod *mp, int64_t t)
{
    for (size_t i = 0; i < mp->n_ctrs; i++) {
        mock_ctr *c = &mp->ctrs[i];
        c->started_ns = c->init ? mp->created_ns : t;
        if (c->init) {
            c->state = VK_STATE_TERMINATED;
            c->finished_ns = t;
        } else {
            c->state = VK_STATE_RUNNING;
        }
    }
    mp->phase = "Running";
    mp->due_ns = mp->exit_code >= 0 ? t + mp->run_ms * NS_PER_MS : 0;
}

static void exit_containers(mock_pod *mp, int64_t t)
{
    const char *policy = mp->pod->restart_policy ? mp->pod->restart_policy : "Always";
    bool restart = strcmp(policy, "Always") == 0 ||
                   (strcmp(policy, "OnFailure") == 0 && mp->exit_code != 0);
    for (size_t i = 0; i < mp->n_ctrs; i++) {
        mock_ctr *c = &mp->ctrs[i];
        if (c->init)
            continue;
        if (restart) {
            c->prev_started_ns = c->started_ns;
            c->prev_finished_ns = t;
            c->started_ns = t;
            c->restarts++;
        } else {
            c->state = VK_STATE_TERMINATED;
            c->exit_code = mp->exit_code;
            c->finished_ns = t;
        }
    }
    if (restart) {
        mp->due_ns = t + mp->run_ms * NS_PER_MS;
    } else {
        mp->phase = mp->exit_code == 0 ? "Succeeded" : "Failed";
        mp->due_ns = 0;
    }
}

/* Apply every transition due by now, then report the result once. */
static void advance(mock_pod *mp, int64_t now)
{
    int64_t last = 0;
    while (mp->due_ns && mp->due_ns <= now) {
        last = mp->due_ns;
        if (strcmp(mp->phase, "Pending") == 0)
            start_containers(mp, last);
        else
            exit_containers(mp, last);
    }
    if (last) {
        mp->changed_s = last / NS_PER_S;
        notify(mp);
    }
}

mock_pod *pods_find(const char *ns, const char *name)
{
    mock_pod *mp = lookup(ns, name);
    if (mp)
        advance(mp, mock_now_ns());
    return mp;
}

mock_pod *pods_first(void)
{
    int64_t now = mock_now_ns();
    for (mock_pod *mp = head; mp; mp = mp->next)
        advance(mp, now);
    return head;
}

int64_t pods_tick(int64_t now)
{
    int64_t next = 0;
    pods_lock();
    for (mock_pod *mp = head; mp; mp = mp->next) {
        advance(mp, now);
        if (mp->due_ns && (next == 0 || mp->due_ns < next))
            next = mp->due_ns;
    }
    pods_unlock();
    return next;
}

/* ---- the store ------------------------------------------------------------ */

static void free_pod(mock_pod *mp)
{
    vk_pod_free(mp->pod);
    free(mp->ctrs);
    free(mp->ns);
    free(mp->name);
    free(mp);
}

static void unlink_pod(mock_pod *mp)
{
    mock_pod **pp = &buckets[bucket(mp->ns, mp->name)];
    while (*pp != mp)
        pp = &(*pp)->hash_next;
    *pp = mp->hash_next;
    if (mp->prev)
        mp->prev->next = mp->next;
    else
        head = mp->next;
    if (mp->next)
        mp->next->prev = mp->prev;
    else
        tail = mp->prev;
    n_pods--;
}

static void remove_pod(mock_pod *mp)
{
    unlink_pod(mp);
    vk_provider_notify_pod(provider, mp->ns, mp->name, pod_uid(mp), NULL, 0);
    free_pod(mp);
}

/* Point the containers at the specs of (a new version of) the pod view. */
static void bind_specs(mock_pod *mp)
{
    const vk_pod *p = mp->pod;
    for (size_t i = 0; i < mp->n_ctrs; i++) {
        mock_ctr *c = &mp->ctrs[i];
        c->init = i < p->n_init_containers;
        c->spec = c->init ? &p->init_containers[i] : &p->containers[i - p->n_init_containers];
    }
}

static mock_pod *new_pod(const char *ns, vk_pod *pod, int64_t now)
{
    mock_pod *mp = calloc(1, sizeof *mp);
    if (!mp)
        return NULL;
    mp->n_ctrs = pod->n_init_containers + pod->n_containers;
    mp->ctrs = calloc(mp->n_ctrs ? mp->n_ctrs : 1, sizeof *mp->ctrs);
    mp->ns = strdup(ns);
    mp->name = strdup(pod->name);
    mp->pod = pod;
    if (!mp->ctrs || !mp->ns || !mp->name) {
        mp->pod = NULL;
        free_pod(mp);
        return NULL;
    }
    bind_specs(mp);
    /* Container IDs never repeat across mock processes, as a runtime's do
     * not: a restarted mock that handed a pod its old ID again would hide
     * the restart, which the core counts by a changed containerID. The
     * counter starts at this process's first pod's time in ns, far beyond
     * any count an earlier process reached. */
    if (!id_counter)
        id_counter = (uint64_t)now;
    for (size_t i = 0; i < mp->n_ctrs; i++)
        snprintf(mp->ctrs[i].id, sizeof mp->ctrs[i].id, "mock://%016llx",
                 (unsigned long long)++id_counter);
    mp->phase = "Pending";
    mp->created_ns = now;
    mp->due_ns = now + config.start_delay_ms * NS_PER_MS;
    mp->changed_s = now / NS_PER_S;
    if (pod->host_network) {
        snprintf(mp->ip, sizeof mp->ip, "%s", node_host_ip());
    } else {
        uint32_t n = 0x10000 + ++ip_counter; /* 10.1.0.1 onwards */
        snprintf(mp->ip, sizeof mp->ip, "10.%u.%u.%u",
                 (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
    }
    return mp;
}

static void insert_pod(mock_pod *mp)
{
    unsigned b = bucket(mp->ns, mp->name);
    mp->hash_next = buckets[b];
    buckets[b] = mp;
    mp->prev = tail;
    if (tail)
        tail->next = mp;
    else
        head = mp;
    tail = mp;
    n_pods++;
}

/* The scripting annotations of a pod. */
static int read_script(vk_ctx *ctx, const vk_pod *pod, int *exit_code, int64_t *run_ms)
{
    *exit_code = -1;
    *run_ms = 1000;
    for (size_t i = 0; i < pod->n_annotations; i++) {
        const vk_kv *a = &pod->annotations[i];
        int64_t v;
        if (strcmp(a->name, MOCK_EXIT_CODE_ANNOTATION) == 0) {
            if (!a->value || mock_parse_int(a->value, 0, 255, &v) < 0)
                return vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                                    "annotation %s must be an exit code from 0 to 255",
                                    MOCK_EXIT_CODE_ANNOTATION);
            *exit_code = (int)v;
        } else if (strcmp(a->name, MOCK_RUN_MS_ANNOTATION) == 0) {
            if (!a->value || mock_parse_int(a->value, 0, INT32_MAX, &v) < 0)
                return vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                                    "annotation %s must be a number of milliseconds",
                                    MOCK_RUN_MS_ANNOTATION);
            *run_ms = v < MIN_RUN_MS ? MIN_RUN_MS : v;
        }
    }
    return VK_OK;
}

static vk_pod *copy_pod(vk_ctx *ctx, const vk_pod *pod)
{
    char err[256];
    vk_pod *copy = vk_pod_parse(pod->json, pod->json_len, err, sizeof err);
    if (!copy)
        vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "cannot read the pod: %s", err);
    return copy;
}

static const char *ns_of(const vk_pod *pod)
{
    return pod->namespace ? pod->namespace : "default";
}

int mock_create_pod(vk_ctx *ctx, const vk_pod *pod)
{
    const char *ns = ns_of(pod);
    const char *uid = pod->uid ? pod->uid : "";
    int exit_code;
    int64_t run_ms;
    int rc = read_script(ctx, pod, &exit_code, &run_ms);
    if (rc != VK_OK)
        return rc;
    vk_pod *copy = copy_pod(ctx, pod);
    if (!copy)
        return VK_INVALID_ARGUMENT;

    int64_t now = mock_now_ns();
    pods_lock();
    mock_pod *mp = pods_find(ns, pod->name);
    if (mp && strcmp(pod_uid(mp), uid) == 0) {
        rc = VK_OK;
        goto done;
    }
    if (mp && !finished(mp)) {
        rc = vk_ctx_error(ctx, VK_ALREADY_EXISTS, "pod %s/%s already runs with uid %s",
                          ns, pod->name, pod_uid(mp));
        goto done;
    }
    if (mp) /* a finished incarnation gives way to the new one */
        remove_pod(mp);
    if (n_pods >= config.max_pods) {
        rc = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED,
                          "the node is full: it runs %lld pods, its capacity",
                          (long long)n_pods);
        goto done;
    }
    mp = new_pod(ns, copy, now);
    if (!mp) {
        rc = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "the mock provider ran out of memory");
        goto done;
    }
    copy = NULL;
    mp->exit_code = exit_code;
    mp->run_ms = run_ms;
    insert_pod(mp);
    notify(mp);
    advance(mp, now);
    rc = VK_OK;
done:
    pods_unlock();
    vk_pod_free(copy);
    if (rc == VK_OK)
        mock_wake();
    return rc;
}

/* The pod a request names, or NULL with NOT_FOUND set on ctx. A request
 * carrying another uid names another incarnation. Lock held. */
static mock_pod *find_incarnation(vk_ctx *ctx, const vk_pod *pod)
{
    mock_pod *mp = pods_find(ns_of(pod), pod->name);
    if (mp && pod->uid && pod->uid[0] && strcmp(pod->uid, pod_uid(mp)) != 0)
        mp = NULL;
    if (!mp)
        vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns_of(pod), pod->name);
    return mp;
}

static bool same_containers(const vk_pod *a, const vk_pod *b)
{
    if (a->n_init_containers != b->n_init_containers || a->n_containers != b->n_containers)
        return false;
    for (size_t i = 0; i < a->n_containers; i++)
        if (strcmp(a->containers[i].name, b->containers[i].name) != 0)
            return false;
    for (size_t i = 0; i < a->n_init_containers; i++)
        if (strcmp(a->init_containers[i].name, b->init_containers[i].name) != 0)
            return false;
    return true;
}

int mock_update_pod(vk_ctx *ctx, const vk_pod *pod)
{
    int exit_code;
    int64_t run_ms;
    int rc = read_script(ctx, pod, &exit_code, &run_ms);
    if (rc != VK_OK)
        return rc;
    vk_pod *copy = copy_pod(ctx, pod);
    if (!copy)
        return VK_INVALID_ARGUMENT;

    pods_lock();
    mock_pod *mp = find_incarnation(ctx, pod);
    if (!mp) {
        rc = VK_NOT_FOUND;
    } else if (!same_containers(mp->pod, copy)) {
        rc = vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                          "containers of a pod cannot be added, removed or renamed");
    } else {
        vk_pod *old = mp->pod;
        mp->pod = copy;
        copy = old;
        bind_specs(mp);
        mp->exit_code = exit_code;
        mp->run_ms = run_ms;
        /* A script added to a running pod starts counting now. */
        if (strcmp(mp->phase, "Running") == 0 && (exit_code < 0 || !mp->due_ns))
            mp->due_ns = exit_code < 0 ? 0 : mock_now_ns() + run_ms * NS_PER_MS;
        notify(mp);
        rc = VK_OK;
    }
    pods_unlock();
    vk_pod_free(copy);
    if (rc == VK_OK)
        mock_wake();
    return rc;
}

int mock_delete_pod(vk_ctx *ctx, const vk_pod *pod)
{
    pods_lock();
    mock_pod *mp = find_incarnation(ctx, pod);
    if (mp)
        remove_pod(mp);
    pods_unlock();
    return mp ? VK_OK : VK_NOT_FOUND;
}

static int not_found(vk_ctx *ctx, const char *ns, const char *name)
{
    return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
}

static int out_of_memory(vk_ctx *ctx)
{
    return vk_ctx_error(ctx, VK_INTERNAL, "the mock provider ran out of memory");
}

/* The pod JSON with its current status appended to out. Lock held. */
static int pod_json(const mock_pod *mp, vk_buf *out)
{
    vk_buf st = VK_BUF_INIT;
    int rc = status_json(mp, &st);
    if (rc == 0)
        rc = vk_pod_with_status(mp->pod->json, mp->pod->json_len, st.data, st.len, out);
    vk_buf_free(&st);
    return rc;
}

int mock_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    pods_lock();
    mock_pod *mp = pods_find(ns, name);
    int rc = mp ? pod_json(mp, out) : 0;
    pods_unlock();
    if (!mp)
        return not_found(ctx, ns, name);
    return rc == 0 ? VK_OK : out_of_memory(ctx);
}

int mock_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    pods_lock();
    mock_pod *mp = pods_find(ns, name);
    int rc = mp ? status_json(mp, out) : 0;
    pods_unlock();
    if (!mp)
        return not_found(ctx, ns, name);
    return rc == 0 ? VK_OK : out_of_memory(ctx);
}

int mock_get_pods(vk_ctx *ctx, vk_pod_list *out)
{
    vk_buf b = VK_BUF_INIT;
    int rc = 0;
    pods_lock();
    for (mock_pod *mp = pods_first(); mp && rc == 0; mp = mp->next) {
        vk_buf_reset(&b);
        rc = pod_json(mp, &b);
        if (rc == 0)
            vk_pod_list_add(out, b.data, b.len);
    }
    pods_unlock();
    vk_buf_free(&b);
    return rc == 0 ? VK_OK : out_of_memory(ctx);
}

void pods_free(void)
{
    pods_lock();
    while (head) {
        mock_pod *mp = head;
        unlink_pod(mp);
        free_pod(mp);
    }
    pods_unlock();
}
