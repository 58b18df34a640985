/* status.c -- a pod's PodStatus from what its worker knows, pushed to the
 * core when it changed.
 *
 * Container states and the pod phase follow the kubelet (kubelet_pods.go:
 * getPhase, convertToAPIContainerStatuses). Change detection compares the
 * status built without any time in it, since the conditions' transition
 * times are "now" and would make every build look new.
 */
#include "cri.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool policy_is(const cri_pod *p, const char *policy)
{
    return strcmp(p->pod->restart_policy ? p->pod->restart_policy : "Always", policy) == 0;
}

/* An exited container that will run again. */
static bool restarting(const cri_pod *p, const cri_ctr *c)
{
    return c->phase == CTR_EXITED && restart_wanted(p, c);
}

const char *status_phase(const cri_pod *p)
{
    if (p->phase)
        return p->phase;
    size_t pending_init = 0, failed_init = 0;
    size_t running = 0, waiting = 0, stopped = 0, succeeded = 0;
    for (size_t i = 0; i < p->n_ctrs; i++) {
        const cri_ctr *c = &p->ctrs[i];
        bool exited = c->phase == CTR_EXITED;
        /* Between a restart's retire and its new container: it ran before. */
        bool again = (c->phase == CTR_NONE || c->phase == CTR_CREATED) && c->created;
        if (c->init) {
            if (exited && c->exit_code == 0)
                continue;
            if ((exited && c->exit_code != 0) || again)
                failed_init++;
            else
                pending_init++;
            continue;
        }
        if (c->phase == CTR_RUNNING) {
            running++;
        } else if (exited || again) {
            stopped++;
            succeeded += exited && c->exit_code == 0;
        } else {
            waiting++;
        }
    }
    if (failed_init && policy_is(p, "Never"))
        return "Failed";
    if (pending_init || failed_init || waiting)
        return "Pending";
    if (running)
        return "Running";
    if (policy_is(p, "Always"))
        return "Running";
    if (stopped == succeeded)
        return "Succeeded";
    return policy_is(p, "Never") ? "Failed" : "Running";
}

static bool inits_done(const cri_pod *p)
{
    for (size_t i = 0; i < p->n_ctrs && p->ctrs[i].init; i++)
        if (!(p->ctrs[i].phase == CTR_EXITED && p->ctrs[i].exit_code == 0))
            return false;
    return true;
}

/* One container's status; text space for the strings it points to. */
typedef struct ctr_text {
    char id[128];
    char message[320];
    char last_id[128];
    vk_terminated last;
} ctr_text;

static void container_status(const cri_pod *p, const cri_ctr *c, int64_t now_ns,
                             vk_container_status *s, ctr_text *t)
{
    memset(s, 0, sizeof *s);
    s->name = c->spec->name;
    s->image = c->spec->image;
    s->image_id = c->image_ref[0] ? c->image_ref : NULL;
    s->restart_count = c->created ? (int32_t)c->attempt : 0;
    if (c->id[0]) {
        snprintf(t->id, sizeof t->id, "%s://%s", rt_name(), c->id);
        s->container_id = t->id;
    }
    if (c->has_last) {
        snprintf(t->last_id, sizeof t->last_id, "%s://%s", rt_name(), c->last.id);
        t->last = (vk_terminated){
            .exit_code = c->last.exit_code,
            .reason = c->last.reason,
            .message = c->last.message[0] ? c->last.message : NULL,
            .started_at = c->last.started_ns / NS_PER_S,
            .finished_at = c->last.finished_ns / NS_PER_S,
            .container_id = t->last_id,
        };
        s->last_terminated = &t->last;
    }
    s->state = VK_STATE_WAITING;
    switch (c->phase) {
    case CTR_RUNNING:
        s->state = VK_STATE_RUNNING;
        s->started_at = c->started_ns / NS_PER_S;
        s->started = probes_started(c);
        s->ready = probes_ready(c);
        return;
    case CTR_EXITED:
        if (restarting(p, c) && c->retry_at_ns > now_ns && !p->deleting) {
            s->reason = "CrashLoopBackOff";
            snprintf(t->message, sizeof t->message,
                     "back-off %llds restarting failed container=%s pod=%s_%s(%s)",
                     (long long)c->backoff_s, c->spec->name, p->name, p->ns, p->uid);
            s->message = t->message;
            return;
        }
        s->state = VK_STATE_TERMINATED;
        s->exit_code = c->exit_code;
        s->reason = c->reason[0] ? c->reason : c->exit_code ? "Error" : "Completed";
        s->message = c->message[0] ? c->message : NULL;
        s->started_at = c->started_ns / NS_PER_S;
        s->finished_at = c->finished_ns / NS_PER_S;
        return;
    case CTR_CREATED:
        s->reason = "ContainerCreating";
        return;
    case CTR_NONE:
        if (strcmp(c->reason, "ErrImagePull") == 0 && c->retry_at_ns > now_ns)
            s->reason = "ImagePullBackOff";
        else if (c->reason[0])
            s->reason = c->reason;
        else
            s->reason = !c->init && !inits_done(p) ? "PodInitializing" : "ContainerCreating";
        s->message = c->message[0] ? c->message : NULL;
        return;
    }
}

static int build(const cri_pod *p, const char *phase, int64_t now_s, vk_buf *out)
{
    size_t n = p->n_ctrs ? p->n_ctrs : 1, n_init = 0;
    vk_container_status *cs = calloc(n, sizeof *cs);
    ctr_text *text = calloc(n, sizeof *text);
    int rc = -1;
    if (cs && text) {
        int64_t now_ns = cri_now_ns();
        for (size_t i = 0; i < p->n_ctrs; i++) {
            container_status(p, &p->ctrs[i], now_ns, &cs[i], &text[i]);
            n_init += p->ctrs[i].init;
        }
        vk_pod_status st = {
            .phase = phase,
            .reason = p->reason,
            .message = p->message,
            .pod_ip = p->pod_ip[0] ? p->pod_ip : NULL,
            .host_ip = node_ip(),
            .start_time = p->start_s,
            .init_containers = cs,
            .n_init_containers = n_init,
            .containers = cs + n_init,
            .n_containers = p->n_ctrs - n_init,
        };
        rc = vk_pod_status_json(&st, now_s, out);
    }
    free(cs);
    free(text);
    return rc;
}

void status_update(cri_pod *p)
{
    const char *phase = status_phase(p);
    vk_buf probe = VK_BUF_INIT, json = VK_BUF_INIT;
    if (build(p, phase, 0, &probe) < 0)
        goto out;
    if (p->status_probe && strcmp(p->status_probe, probe.data) == 0)
        goto out;
    p->changed_s = cri_now_ns() / NS_PER_S;
    if (build(p, phase, p->changed_s, &json) < 0)
        goto out;
    /* A pod that finished stays finished, whatever happens to its
     * containers afterwards. */
    if (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)
        p->phase = phase;
    free(p->status_probe);
    free(p->status_json);
    p->status_probe = vk_buf_steal(&probe, NULL);
    p->status_json = vk_buf_steal(&json, NULL);
    if (provider)
        vk_provider_notify_pod(provider, p->ns, p->name, p->uid, p->status_json,
                               strlen(p->status_json));
out:
    vk_buf_free(&probe);
    vk_buf_free(&json);
}
