/* worker.c -- one pod's life on the runtime, run by its own thread.
 *
 * The worker is the kubelet's pod worker and PLEG in one: every second, or
 * when woken, it lists the pod's containers (one ListContainers call, and
 * ContainerStatus only for a container whose state moved), then acts: the
 * sandbox first, init containers one after another to completion, then the
 * containers, restarts as the policy and the back-off allow; and it
 * publishes the resulting status. CRI offers container events only from
 * v1.26 on (containerd 1.7); polling works with every runtime.
 *
 * The worker holds the table lock except around runtime calls, so what it
 * publishes is always consistent, and it is the only writer of its pod's
 * runtime state: nobody else can change the fields it reads while unlocked.
 */
#include "cri.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define RELIST_MS 1000
#define TEARDOWN_RETRY_MS 2000
#define SANDBOX_BACKOFF_MAX_S 300

/* Run a statement with the table lock released. */
#define UNLOCKED(stmt) do { cri_unlock(); stmt; cri_lock(); } while (0)

/* Copy s into dst of size n, cut to fit. */
static void set_text(char *dst, size_t n, const char *s)
{
    size_t len = s ? strnlen(s, n - 1) : 0;
    if (len)
        memcpy(dst, s, len);
    dst[len] = '\0';
}

/* ---- sandbox ------------------------------------------------------------------ */

static void sandbox_failed(cri_pod *p, const char *err)
{
    int64_t b = p->sandbox_backoff_s;
    p->sandbox_backoff_s = b == 0 ? 1 : b * 2 > SANDBOX_BACKOFF_MAX_S ? SANDBOX_BACKOFF_MAX_S : b * 2;
    p->sandbox_retry_ns = cri_now_ns() + p->sandbox_backoff_s * NS_PER_S;
    for (size_t i = 0; i < p->n_ctrs; i++) {
        if (p->ctrs[i].phase == CTR_NONE) {
            set_text(p->ctrs[i].reason, sizeof p->ctrs[i].reason, "ContainerCreating");
            set_text(p->ctrs[i].message, sizeof p->ctrs[i].message, err);
        }
    }
    vk_warn("cannot create the pod sandbox", "pod=%s/%s error=\"%s\"", p->ns, p->name, err);
    UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Warning",
                                "FailedCreatePodSandBox", err));
}

static void sandbox_ip(cri_pod *p)
{
    Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
    Runtime__V1__PodSandboxStatusResponse *resp = NULL;
    int code;
    if (p->pod->host_network) {
        set_text(p->pod_ip, sizeof p->pod_ip, node_ip());
        return;
    }
    req.pod_sandbox_id = p->sandbox_id;
    UNLOCKED(code = rt_call(RT("PodSandboxStatus"), &req.base,
                            &runtime__v1__pod_sandbox_status_response__descriptor, RT_QUICK_MS,
                            &resp, NULL, 0));
    if (code != VK_OK)
        return;
    if (resp->status && resp->status->network)
        set_text(p->pod_ip, sizeof p->pod_ip, resp->status->network->ip);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* The runtime keeps sandbox names (pod, namespace, uid, attempt) unique:
 * a sandbox of the same pod left by anyone (a provider that lost its
 * directory, a kubelet) takes its attempt number, so the new one counts on
 * from the highest. */
static uint32_t next_sandbox_attempt(const char *uid)
{
    Runtime__V1__ListPodSandboxResponse *all = rt_list_sandboxes(uid, false);
    uint32_t next = 0;
    for (size_t i = 0; all && i < all->n_items; i++)
        if (all->items[i]->metadata && all->items[i]->metadata->attempt >= next)
            next = all->items[i]->metadata->attempt + 1;
    if (all)
        protobuf_c_message_free_unpacked(&all->base, NULL);
    return next;
}

/* true when the pod has a sandbox. */
static bool ensure_sandbox(cri_pod *p)
{
    Runtime__V1__RunPodSandboxRequest req = RUNTIME__V1__RUN_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__PodSandboxConfig cfg;
    Runtime__V1__RunPodSandboxResponse *resp = NULL;
    spec_arena a = {NULL};
    char err[512];
    int code = VK_INTERNAL;

    if (p->sandbox_id[0])
        return true;
    if (cri_now_ns() < p->sandbox_retry_ns)
        return false;
    uint32_t attempt;
    char uid[160];
    set_text(uid, sizeof uid, p->uid);
    UNLOCKED(attempt = next_sandbox_attempt(uid));
    p->sandbox_attempt = attempt;
    if (spec_sandbox(p, &cfg, &a, err, sizeof err) == 0) {
        req.config = &cfg;
        UNLOCKED(
            if (mkdir(p->dir, 0700) < 0 && errno != EEXIST)
                snprintf(err, sizeof err, "cannot create %s: %s", p->dir, strerror(errno));
            else
                code = rt_call(RT("RunPodSandbox"), &req.base,
                               &runtime__v1__run_pod_sandbox_response__descriptor, RT_CREATE_MS,
                               &resp, err, sizeof err));
    }
    spec_arena_free(&a);
    if (code != VK_OK) {
        sandbox_failed(p, err);
        return false;
    }
    set_text(p->sandbox_id, sizeof p->sandbox_id, resp->pod_sandbox_id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    p->sandbox_backoff_s = 0;
    for (size_t i = 0; i < p->n_ctrs; i++)
        p->ctrs[i].message[0] = '\0';
    sandbox_ip(p);
    return true;
}

/* ---- containers ------------------------------------------------------------------- */

static enum ctr_phase phase_of(Runtime__V1__ContainerState s)
{
    switch (s) {
    case RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED: return CTR_CREATED;
    case RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING: return CTR_RUNNING;
    default: return CTR_EXITED;
    }
}

static Runtime__V1__ListContainersResponse *list_containers(const char *sandbox_id)
{
    Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
    Runtime__V1__ContainerFilter filter = RUNTIME__V1__CONTAINER_FILTER__INIT;
    Runtime__V1__ListContainersResponse *resp = NULL;
    filter.pod_sandbox_id = (char *)sandbox_id;
    req.filter = &filter;
    if (rt_call(RT("ListContainers"), &req.base, &runtime__v1__list_containers_response__descriptor,
                RT_QUICK_MS, &resp, NULL, 0) != VK_OK)
        return NULL;
    return resp;
}

/* Take the details of one container from the runtime (lock held). */
static void inspect(cri_pod *p, cri_ctr *c)
{
    Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    Runtime__V1__ContainerStatusResponse *resp = NULL;
    int code;
    req.container_id = c->id;
    UNLOCKED(code = rt_call(RT("ContainerStatus"), &req.base,
                            &runtime__v1__container_status_response__descriptor, RT_QUICK_MS,
                            &resp, NULL, 0));
    if (code != VK_OK)
        return;
    Runtime__V1__ContainerStatus *s = resp->status;
    if (s) {
        enum ctr_phase was = c->phase;
        c->phase = phase_of(s->state);
        c->started_ns = s->started_at;
        c->finished_ns = c->phase == CTR_EXITED ? s->finished_at : 0;
        c->exit_code = s->exit_code;
        set_text(c->reason, sizeof c->reason, s->reason);
        set_text(c->message, sizeof c->message, s->message);
        set_text(c->image_ref, sizeof c->image_ref, s->image_ref);
        if (c->phase == CTR_EXITED)
            termination_message(p, c->spec->name, c->attempt, c->exit_code, c->reason,
                                c->message, sizeof c->message);
        if (c->phase == CTR_EXITED && was != CTR_EXITED)
            c->exit_seen = false;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* Bring the containers' state up to date (lock held). */
static void refresh(cri_pod *p)
{
    Runtime__V1__ListContainersResponse *list;
    bool any = false;
    for (size_t i = 0; i < p->n_ctrs && !any; i++)
        any = p->ctrs[i].id[0] != '\0';
    if (!any)
        return;
    char sandbox[sizeof p->sandbox_id];
    set_text(sandbox, sizeof sandbox, p->sandbox_id);
    UNLOCKED(list = list_containers(sandbox));
    if (!list)
        return;
    for (size_t i = 0; i < p->n_ctrs; i++) {
        cri_ctr *c = &p->ctrs[i];
        if (!c->id[0])
            continue;
        Runtime__V1__Container *found = NULL;
        for (size_t j = 0; j < list->n_containers && !found; j++)
            if (strcmp(list->containers[j]->id, c->id) == 0)
                found = list->containers[j];
        if (!found) {
            /* Removed behind our back: it starts over as a new attempt. */
            vk_warn("container disappeared", "pod=%s/%s container=%s id=%.12s", p->ns, p->name,
                    c->spec->name, c->id);
            c->id[0] = '\0';
            c->phase = CTR_NONE;
            continue;
        }
        if (phase_of(found->state) != c->phase || (c->phase != CTR_EXITED && !c->started_ns))
            inspect(p, c);
    }
    protobuf_c_message_free_unpacked(&list->base, NULL);
}

/* How the current container ended becomes its lastState (lock held). */
static void remember_end(cri_ctr *c)
{
    if (!c->id[0] || c->phase != CTR_EXITED)
        return;
    ctr_end *e = &c->last;
    set_text(e->id, sizeof e->id, c->id);
    e->exit_code = c->exit_code;
    e->started_ns = c->started_ns;
    e->finished_ns = c->finished_ns;
    set_text(e->reason, sizeof e->reason,
             c->reason[0] ? c->reason : c->exit_code ? "Error" : "Completed");
    set_text(e->message, sizeof e->message, c->message);
    c->has_last = true;
}

/* The current container becomes the previous one; the one before that,
 * whose log nobody can ask for any more, is removed with its files (lock
 * held). */
static void retire(cri_pod *p, cri_ctr *c)
{
    if (!c->id[0])
        return;
    char old[sizeof c->prev_id], log[600], term[600];
    set_text(old, sizeof old, c->prev_id);
    if (old[0]) {
        pod_log_path(p, c->spec->name, (uint32_t)c->prev_attempt, log, sizeof log);
        pod_termination_path(p, c->spec->name, (uint32_t)c->prev_attempt, term, sizeof term);
    }
    remember_end(c);
    set_text(c->prev_id, sizeof c->prev_id, c->id);
    c->prev_attempt = c->attempt;
    c->id[0] = '\0';
    c->phase = CTR_NONE;
    if (old[0])
        UNLOCKED(rt_remove_container(old); unlink(log); unlink(term));
}

static void start_failed(cri_pod *p, cri_ctr *c, const char *reason, const char *msg)
{
    set_text(c->reason, sizeof c->reason, reason);
    set_text(c->message, sizeof c->message, msg);
    if (strcmp(reason, "CreateContainerConfigError") == 0)
        restart_config_retry(c, cri_now_ns());
    else
        restart_failed_start(c, cri_now_ns());
    /* A failure that repeats itself (an object still missing) is logged
     * once; the event goes every time, and the core aggregates those. */
    uint32_t hash = 2166136261u;    /* FNV-1a */
    for (const char *s = msg; *s; s++)
        hash = (hash ^ (unsigned char)*s) * 16777619u;
    if (hash != c->failure)
        vk_warn("cannot start container", "pod=%s/%s container=%s reason=%s error=\"%s\"",
                p->ns, p->name, c->spec->name, reason, msg);
    c->failure = hash;
    UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Warning", "Failed", msg));
    /* The kubelet's words for the wait that follows a failed pull, which
     * `kubectl describe pod` shows next to the failure. */
    if (strcmp(reason, "ErrImagePull") == 0) {
        char backoff[600];
        snprintf(backoff, sizeof backoff, "Back-off pulling image \"%s\"", c->spec->image);
        UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", "BackOff",
                                    backoff));
    }
}

/* Container names (container, pod, namespace, uid, attempt) are unique in
 * the runtime too, across sandboxes: a first start counts on from any
 * container of the same name left behind. */
static uint32_t first_attempt(const char *uid, const char *name)
{
    Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
    Runtime__V1__ContainerFilter filter = RUNTIME__V1__CONTAINER_FILTER__INIT;
    Runtime__V1__ListContainersResponse *resp = NULL;
    kv_list sel = {.desc = &runtime__v1__container_filter__label_selector_entry__descriptor};
    uint32_t next = 0;
    if (kv_add(&sel, LABEL_POD_UID, uid) == 0 && kv_add(&sel, LABEL_CONTAINER_NAME, name) == 0) {
        filter.label_selector = (Runtime__V1__ContainerFilter__LabelSelectorEntry **)sel.items;
        filter.n_label_selector = sel.n;
        req.filter = &filter;
        if (rt_call(RT("ListContainers"), &req.base,
                    &runtime__v1__list_containers_response__descriptor, RT_QUICK_MS, &resp, NULL,
                    0) == VK_OK) {
            for (size_t i = 0; i < resp->n_containers; i++)
                if (resp->containers[i]->metadata &&
                    resp->containers[i]->metadata->attempt >= next)
                    next = resp->containers[i]->metadata->attempt + 1;
            protobuf_c_message_free_unpacked(&resp->base, NULL);
        }
    }
    kv_free(&sel);
    return next;
}

/* Create and start the next attempt of c (lock held). */
static void start_container(cri_pod *p, cri_ctr *c)
{
    char reason[48] = "", msg[512] = "", dir[400];
    Runtime__V1__PodSandboxConfig sandbox;
    Runtime__V1__ContainerConfig cfg;
    Runtime__V1__CreateContainerRequest create = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
    Runtime__V1__StartContainerRequest start = RUNTIME__V1__START_CONTAINER_REQUEST__INIT;
    Runtime__V1__CreateContainerResponse *created = NULL;
    Runtime__V1__StartContainerResponse *started = NULL;
    spec_arena a = {NULL};
    uint32_t attempt = c->attempt + 1;
    int rc, code = VK_INTERNAL;

    retire(p, c);
    c->reason[0] = c->message[0] = '\0';
    UNLOCKED(rc = images_ensure(p, c->spec, reason, sizeof reason, msg, sizeof msg));
    if (rc < 0) {
        start_failed(p, c, reason, msg);
        return;
    }
    UNLOCKED(rc = volumes_setup(p, c->spec, msg, sizeof msg));
    if (rc < 0) {
        start_failed(p, c, "CreateContainerConfigError", msg);
        return;
    }
    if (!c->created) {
        char uid[160];
        set_text(uid, sizeof uid, p->uid);
        UNLOCKED(attempt = first_attempt(uid, c->spec->name));
    }
    /* The container's directory holds its log and termination message. */
    snprintf(dir, sizeof dir, "%s/%s", p->dir, c->spec->name);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        snprintf(msg, sizeof msg, "cannot create %s: %s", dir, strerror(errno));
        start_failed(p, c, "CreateContainerError", msg);
        return;
    }
    if (spec_sandbox(p, &sandbox, &a, msg, sizeof msg) < 0 ||
        spec_container(p, c, attempt, &cfg, &a, msg, sizeof msg) < 0) {
        spec_arena_free(&a);
        start_failed(p, c, "CreateContainerConfigError", msg);
        return;
    }
    create.pod_sandbox_id = p->sandbox_id;
    create.config = &cfg;
    create.sandbox_config = &sandbox;
    UNLOCKED(code = rt_call(RT("CreateContainer"), &create.base,
                            &runtime__v1__create_container_response__descriptor, RT_CREATE_MS,
                            &created, msg, sizeof msg));
    spec_arena_free(&a);
    if (code != VK_OK) {
        start_failed(p, c, "CreateContainerError", msg);
        return;
    }
    set_text(c->id, sizeof c->id, created->container_id);
    protobuf_c_message_free_unpacked(&created->base, NULL);
    c->attempt = attempt;
    c->created = true;
    c->phase = CTR_CREATED;
    c->started_ns = c->finished_ns = 0;
    c->exit_code = 0;
    c->exit_seen = false;
    c->image_ref[0] = '\0';

    start.container_id = c->id;
    UNLOCKED(code = rt_call(RT("StartContainer"), &start.base,
                            &runtime__v1__start_container_response__descriptor, RT_CREATE_MS,
                            &started, msg, sizeof msg));
    if (code != VK_OK) {
        /* The runtime records the failed start as an exit (StartError):
         * the next relist sees it and the restart rules apply. */
        vk_warn("cannot start container", "pod=%s/%s container=%s error=\"%s\"", p->ns, p->name,
                c->spec->name, msg);
        UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Warning", "Failed", msg));
        return;
    }
    protobuf_c_message_free_unpacked(&started->base, NULL);
    c->failure = 0;
    snprintf(msg, sizeof msg, "Started container %s", c->spec->name);
    UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", "Started", msg));
    inspect(p, c);
}

static bool due(const cri_ctr *c)
{
    return cri_now_ns() >= c->retry_at_ns;
}

/* An exited container: note the exit once; true when it runs again now. */
static bool restart_due(cri_pod *p, cri_ctr *c)
{
    bool wanted = restart_wanted(p, c);
    if (!c->exit_seen) {
        c->exit_seen = true;
        if (wanted)
            restart_schedule(c, cri_now_ns());
    }
    return wanted && due(c);
}

/* A container whose image changed by UpdatePod runs anew, whatever the
 * restart policy, as the kubelet does when a container's spec changes. */
static void replace(cri_pod *p, cri_ctr *c)
{
    c->replace = false;
    if (c->id[0] && (c->phase == CTR_RUNNING || c->phase == CTR_CREATED)) {
        char id[sizeof c->id];
        int64_t grace = spec_grace_seconds(p);
        set_text(id, sizeof id, c->id);
        UNLOCKED(rt_stop_container(id, grace));
        inspect(p, c);
    }
    c->backoff_s = 0;
    c->retry_at_ns = 0;
    start_container(p, c);
}

/* A container whose liveness or startup probe failed is killed; its
 * restart policy and back-off decide the rest, as for any exit (lock
 * held). */
static void kill_unhealthy(cri_pod *p, cri_ctr *c)
{
    int kind = c->unhealthy - 1;
    c->unhealthy = 0;
    if (c->phase != CTR_RUNNING || !c->id[0])
        return;
    char id[sizeof c->id], msg[200];
    bool again = strcmp(p->pod->restart_policy ? p->pod->restart_policy : "Always", "Never") != 0;
    int64_t grace = probes_grace_seconds(p, c, kind);
    snprintf(msg, sizeof msg, "Container %s failed %s probe%s", c->spec->name,
             kind == PROBE_STARTUP ? "startup" : "liveness", again ? ", will be restarted" : "");
    set_text(id, sizeof id, c->id);
    vk_info("killing an unhealthy container", "pod=%s/%s container=%s probe=%s", p->ns, p->name,
            c->spec->name, kind == PROBE_STARTUP ? "startup" : "liveness");
    UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", "Killing", msg);
             rt_stop_container(id, grace));
    inspect(p, c);
}

/* Act on the state (lock held). */
static void advance(cri_pod *p)
{
    const char *phase = status_phase(p);
    if (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)
        return;
    size_t i = 0;
    for (; i < p->n_ctrs && p->ctrs[i].init; i++) {
        cri_ctr *c = &p->ctrs[i];
        if (c->replace && !(c->phase == CTR_EXITED && c->exit_code == 0)) {
            replace(p, c);
            return;
        }
        c->replace = false;
        if (c->phase == CTR_EXITED && c->exit_code == 0)
            continue;
        if (c->phase == CTR_EXITED ? restart_due(p, c) : c->phase == CTR_NONE && due(c))
            start_container(p, c);
        return;
    }
    for (; i < p->n_ctrs && !p->deleting; i++) {
        cri_ctr *c = &p->ctrs[i];
        if (c->unhealthy)
            kill_unhealthy(p, c);
        if (c->replace)
            replace(p, c);
        else if (c->phase == CTR_EXITED ? restart_due(p, c) : c->phase == CTR_NONE && due(c))
            start_container(p, c);
    }
}

/* Take the spec an UpdatePod left (lock held). */
static void apply_update(cri_pod *p)
{
    vk_pod *view = p->update;
    char err[256];
    if (!view)
        return;
    p->update = NULL;
    yajl_val tree = vk_json_parse(view->json, view->json_len, err, sizeof err);
    if (!tree) {
        vk_pod_free(view);
        return;
    }
    for (size_t i = 0; i < p->n_ctrs; i++) {
        cri_ctr *c = &p->ctrs[i];
        const vk_container *n = NULL;
        const vk_container *list = c->init ? view->init_containers : view->containers;
        size_t len = c->init ? view->n_init_containers : view->n_containers;
        for (size_t j = 0; j < len && !n; j++)
            if (strcmp(list[j].name, c->spec->name) == 0)
                n = &list[j];
        if (!n) {   /* renamed: the API does not allow it; keep the old spec */
            yajl_tree_free(tree);
            vk_pod_free(view);
            return;
        }
        if (c->created && strcmp(n->image ? n->image : "", c->spec->image ? c->spec->image : ""))
            c->replace = true;
    }
    for (size_t i = 0; i < p->n_ctrs; i++) {
        cri_ctr *c = &p->ctrs[i];
        const vk_container *list = c->init ? view->init_containers : view->containers;
        size_t len = c->init ? view->n_init_containers : view->n_containers;
        for (size_t j = 0; j < len; j++)
            if (strcmp(list[j].name, c->spec->name) == 0)
                c->spec = &list[j];
    }
    /* The deletion grace period is the pod's own business, not the update's. */
    view->deletion_grace_seconds = p->pod->deletion_grace_seconds;
    vk_pod_free(p->pod);
    yajl_tree_free(p->spec);
    p->pod = view;
    p->spec = tree;
}

/* A sandbox that stopped (its pause process died, the node rebooted) takes
 * the pod's namespaces with it. As the kubelet does, a pod that may restart
 * gets a new sandbox and every container starts anew in it, init containers
 * first; a pod with restartPolicy Never keeps what its containers did.
 * Lock held; false when the sandbox was dropped. */
static bool sandbox_alive(cri_pod *p)
{
    Runtime__V1__PodSandboxStatusRequest req = RUNTIME__V1__POD_SANDBOX_STATUS_REQUEST__INIT;
    Runtime__V1__PodSandboxStatusResponse *resp = NULL;
    char id[sizeof p->sandbox_id];
    int code;
    const char *phase = status_phase(p);
    if (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0 ||
        strcmp(p->pod->restart_policy ? p->pod->restart_policy : "Always", "Never") == 0)
        return true;
    set_text(id, sizeof id, p->sandbox_id);
    req.pod_sandbox_id = id;
    UNLOCKED(code = rt_call(RT("PodSandboxStatus"), &req.base,
                            &runtime__v1__pod_sandbox_status_response__descriptor, RT_QUICK_MS,
                            &resp, NULL, 0));
    bool alive = code != VK_NOT_FOUND;
    if (code == VK_OK) {
        alive = resp->status &&
                resp->status->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
        protobuf_c_message_free_unpacked(&resp->base, NULL);
    }
    if (alive)
        return true;
    vk_warn("pod sandbox stopped; starting the pod in a new one", "pod=%s/%s sandbox=%.12s",
            p->ns, p->name, id);
    UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", "SandboxChanged",
                                "Pod sandbox changed, it will be killed and re-created."));
    /* Its containers go with it; how they ended becomes their lastState. */
    UNLOCKED(rt_stop_sandbox(id));
    for (size_t i = 0; i < p->n_ctrs; i++) {
        if (p->ctrs[i].id[0]) {
            inspect(p, &p->ctrs[i]);
            remember_end(&p->ctrs[i]);
        }
    }
    UNLOCKED(rt_remove_sandbox(id));
    p->sandbox_id[0] = '\0';
    for (size_t i = 0; i < p->n_ctrs; i++) {
        cri_ctr *c = &p->ctrs[i];
        if (c->id[0]) {
            c->prev_attempt = c->attempt;
            c->prev_id[0] = c->id[0] = '\0';
        }
        c->phase = CTR_NONE;
        c->reason[0] = c->message[0] = '\0';
        c->retry_at_ns = 0;
    }
    return false;
}

/* The running containers of a pod, stopped together (lock held). */
static void stop_all(cri_pod *p, int64_t grace_s)
{
    char (*ids)[80] = calloc(p->n_ctrs ? p->n_ctrs : 1, sizeof *ids);
    size_t n = 0;
    if (!ids)
        return;
    for (size_t i = 0; i < p->n_ctrs; i++) {
        cri_ctr *c = &p->ctrs[i];
        if (c->id[0] && c->phase != CTR_EXITED)
            set_text(ids[n++], sizeof ids[0], c->id);
    }
    if (n)
        UNLOCKED(rt_stop_containers(ids, n, grace_s));
    free(ids);
}

/* activeDeadlineSeconds passed: the pod fails and its containers are
 * stopped, as the kubelet does (lock held). */
static void deadline_exceeded(cri_pod *p)
{
    p->phase = "Failed";
    p->reason = "DeadlineExceeded";
    p->message = "Pod was active on the node longer than the specified deadline";
    vk_info("pod deadline exceeded", "pod=%s/%s", p->ns, p->name);
    UNLOCKED(vk_core_emit_event(provider, p->ns, p->name, p->uid, "Normal", "DeadlineExceeded",
                                "Pod was active on the node longer than the specified deadline"));
    stop_all(p, spec_grace_seconds(p));
    for (size_t i = 0; i < p->n_ctrs; i++)
        if (p->ctrs[i].id[0])
            inspect(p, &p->ctrs[i]);
}

static bool finished(const cri_pod *p)
{
    const char *phase = status_phase(p);
    return strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0;
}

static void sync_pod(cri_pod *p)
{
    apply_update(p);
    if (!finished(p) && termination_deadline_passed(p, cri_now_ns()))
        deadline_exceeded(p);
    /* A finished pod without a sandbox gets none. */
    if ((p->sandbox_id[0] || !finished(p)) && ensure_sandbox(p) && sandbox_alive(p)) {
        refresh(p);
        advance(p);
        if (!finished(p))
            UNLOCKED(volumes_sync(p));
    }
    status_update(p);
}

/* How long the worker may sleep (lock held): the relist period, or less
 * when a restart falls due sooner. */
static int64_t sleep_ms(const cri_pod *p)
{
    int64_t now = cri_now_ns(), ms = RELIST_MS;
    for (size_t i = 0; i < p->n_ctrs; i++) {
        int64_t at = p->ctrs[i].retry_at_ns;
        if (at > now && (at - now) / NS_PER_MS < ms)
            ms = (at - now) / NS_PER_MS + 1;
    }
    return ms;
}

/* ---- teardown ------------------------------------------------------------------------ */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT)
        vk_warn("cannot remove", "path=%s error=\"%s\"", path, strerror(errno));
    return 0;
}

void worker_remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* The pod-level cgroups the runtime created under --cgroup-root. */
static void remove_cgroups(const char *uid)
{
    char path[512];
    snprintf(path, sizeof path, "/sys/fs/cgroup/cgroup.controllers");
    if (access(path, F_OK) == 0) {
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/pod%s", config.cgroup_root, uid);
        rmdir(path);
        return;
    }
    static const char *const controllers[] = {
        "blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
        "net_cls", "net_prio", "perf_event", "pids", "rdma", "systemd", "misc",
        "unified",  /* the cgroup2 hierarchy of a hybrid set-up */
    };
    for (size_t i = 0; i < sizeof controllers / sizeof *controllers; i++) {
        snprintf(path, sizeof path, "/sys/fs/cgroup/%s%s/pod%s", controllers[i],
                 config.cgroup_root, uid);
        rmdir(path);
    }
}

/* Stop the containers within the grace period, remove every sandbox of the
 * pod and its directory. true when all is gone (lock held). */
static bool teardown(cri_pod *p)
{
    stop_all(p, spec_grace_seconds(p));
    char uid[160], sandbox[sizeof p->sandbox_id], dir[sizeof p->dir];
    bool ok = true;
    set_text(uid, sizeof uid, p->uid);
    set_text(sandbox, sizeof sandbox, p->sandbox_id);
    set_text(dir, sizeof dir, p->dir);
    UNLOCKED(
        Runtime__V1__ListPodSandboxResponse *list = rt_list_sandboxes(uid, true);
        ok = list != NULL;
        for (size_t i = 0; list && i < list->n_items; i++)
            ok = rt_remove_sandbox(list->items[i]->id) == 0 && ok;
        if (list)
            protobuf_c_message_free_unpacked(&list->base, NULL);
        if (sandbox[0])
            ok = rt_remove_sandbox(sandbox) == 0 && ok;
        if (ok) {
            remove_cgroups(uid);
            volumes_unmount(dir);
            worker_remove_tree(dir);
        });
    return ok;
}

void *worker_main(void *arg)
{
    cri_pod *p = arg;
    cri_lock();
    while (!pods_stopping()) {
        if (p->deleting) {
            if (teardown(p)) {
                vk_info("pod removed", "pod=%s/%s uid=%s", p->ns, p->name, p->uid);
                pods_release(p);
                break;
            }
            pods_wait(p, TEARDOWN_RETRY_MS);
            continue;
        }
        p->kick = false;
        sync_pod(p);
        if (!p->kick && !p->deleting && !pods_stopping())
            pods_wait(p, sleep_ms(p));
    }
    pods_worker_done();
    cri_unlock();
    return NULL;
}

/* ---- restart of the provider ---------------------------------------------------------- */

/* The previous container's end, from the runtime, as its lastState. */
static void adopt_last(cri_pod *p, cri_ctr *c)
{
    Runtime__V1__ContainerStatusRequest req = RUNTIME__V1__CONTAINER_STATUS_REQUEST__INIT;
    Runtime__V1__ContainerStatusResponse *resp = NULL;
    if (!c->prev_id[0] || c->prev_attempt < 0)
        return;
    req.container_id = c->prev_id;
    if (rt_call(RT("ContainerStatus"), &req.base,
                &runtime__v1__container_status_response__descriptor, RT_QUICK_MS, &resp, NULL,
                0) != VK_OK)
        return;
    Runtime__V1__ContainerStatus *s = resp->status;
    if (s && s->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED) {
        ctr_end *e = &c->last;
        set_text(e->id, sizeof e->id, c->prev_id);
        e->exit_code = s->exit_code;
        e->started_ns = s->started_at;
        e->finished_ns = s->finished_at;
        set_text(e->reason, sizeof e->reason,
                 s->reason[0] ? s->reason : s->exit_code ? "Error" : "Completed");
        set_text(e->message, sizeof e->message, s->message);
        termination_message(p, c->spec->name, (uint32_t)c->prev_attempt, s->exit_code,
                            e->reason, e->message, sizeof e->message);
        c->has_last = true;
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

void worker_adopt(cri_pod *p)
{
    Runtime__V1__ListPodSandboxResponse *boxes = rt_list_sandboxes(p->uid, true);
    Runtime__V1__PodSandbox *best = NULL;
    for (size_t i = 0; boxes && i < boxes->n_items; i++) {
        Runtime__V1__PodSandbox *b = boxes->items[i];
        if (b->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY &&
            (!best || b->created_at > best->created_at))
            best = b;
    }
    if (best) {
        set_text(p->sandbox_id, sizeof p->sandbox_id, best->id);
        p->start_s = best->created_at / NS_PER_S;
    }
    if (boxes)
        protobuf_c_message_free_unpacked(&boxes->base, NULL);
    if (!p->sandbox_id[0])
        return;
    Runtime__V1__ListContainersResponse *list = list_containers(p->sandbox_id);
    for (size_t i = 0; list && i < list->n_containers; i++) {
        Runtime__V1__Container *k = list->containers[i];
        cri_ctr *c = k->metadata ? pod_ctr(p, k->metadata->name) : NULL;
        if (!c)
            continue;
        uint32_t at = k->metadata->attempt;
        if (!c->created || at > c->attempt) {
            if (c->created) {
                set_text(c->prev_id, sizeof c->prev_id, c->id);
                c->prev_attempt = c->attempt;
            }
            set_text(c->id, sizeof c->id, k->id);
            c->attempt = at;
            c->created = true;
        } else if ((int64_t)at > c->prev_attempt) {
            set_text(c->prev_id, sizeof c->prev_id, k->id);
            c->prev_attempt = at;
        }
    }
    if (list)
        protobuf_c_message_free_unpacked(&list->base, NULL);
    for (size_t i = 0; i < p->n_ctrs; i++)
        adopt_last(p, &p->ctrs[i]);
    if (p->pod->host_network)
        set_text(p->pod_ip, sizeof p->pod_ip, node_ip());
}

void worker_remove_orphans(void)
{
    Runtime__V1__ListPodSandboxResponse *boxes = rt_list_sandboxes(NULL, true);
    for (size_t i = 0; boxes && i < boxes->n_items; i++) {
        Runtime__V1__PodSandbox *b = boxes->items[i];
        const char *uid = b->metadata ? b->metadata->uid : "";
        bool known = false;
        cri_lock();
        for (cri_pod *p = pods_next(NULL); p && !known; p = pods_next(p))
            known = strcmp(p->uid, uid) == 0;
        cri_unlock();
        if (known)
            continue;
        /* Deleting pods are not in pods_next, and their workers remove
         * their sandboxes themselves: leave those alone too. */
        char dir[512];
        snprintf(dir, sizeof dir, "%s/pods/%s", config.root_dir, uid);
        if (access(dir, F_OK) == 0)
            continue;
        vk_info("removing an orphaned sandbox", "id=%.12s uid=%s", b->id, uid);
        rt_remove_sandbox(b->id);
    }
    if (boxes)
        protobuf_c_message_free_unpacked(&boxes->base, NULL);
}
