/* status.c -- a plugin's PodStatus made into a Kubernetes PodStatus.
 *
 * A plugin reports Kubernetes ContainerStatus objects per container and
 * nothing about the pod; the phase is derived from those states the way
 * interLink's virtual kubelet does it (checkPodsStatus in
 * pkg/virtualkubelet/execute.go):
 *
 *   - while an init container waits or runs, the pod is Pending and its
 *     containers wait with reason PodInitializing, or Init:done/total;
 *   - a running container makes the pod Running, and is ready;
 *   - once every container terminated the pod Succeeded, or Failed when
 *     one of them, or an init container, exited non-zero.
 *
 * Where interLink leaves a gap, the kubelet's rule fills it: a failed init
 * container fails a pod whose restartPolicy is Never; a Running pod does not
 * fall back to Pending; a report without containers changes nothing (the
 * caller keeps the old status). Reasons follow the kubelet's wording
 * (Completed, Error) rather than interLink's free text, since kubectl shows
 * them as they are.
 */
#include "interlink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"

/* A pod annotation through which interLink setups publish the pod's
 * address on the remote side. */
#define POD_IP_ANNOTATION "interlink.eu/pod-ip"

int64_t status_parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest)
        return 0;
    if (*rest == '.')
        for (rest++; *rest >= '0' && *rest <= '9'; rest++)
            ;
    int64_t offset = 0;
    int h, m;
    if ((*rest == '+' || *rest == '-') && sscanf(rest + 1, "%2d:%2d", &h, &m) == 2)
        offset = (*rest == '-' ? -1 : 1) * (h * 3600 + m * 60);
    else if (*rest != 'Z' && *rest != 'z' && *rest != '\0')
        return 0;
    return (int64_t)timegm(&tm) - offset;
}

static const char *member_str(yajl_val v, const char *key)
{
    const char *s = vk_json_str(vk_json_member(v, key), NULL);
    return s && s[0] ? s : NULL;
}

static yajl_val find_report(yajl_val list, const char *name)
{
    if (!YAJL_IS_ARRAY(list))
        return NULL;
    for (size_t i = 0; i < list->u.array.len; i++) {
        yajl_val c = list->u.array.values[i];
        if (strcmp(vk_json_str(vk_json_member(c, "name"), ""), name) == 0)
            return c;
    }
    return NULL;
}

/* One container's status from its report (NULL: none yet). Strings point
 * into the report or the spec. */
static void container(vk_container_status *s, const vk_container *spec, yajl_val r)
{
    memset(s, 0, sizeof *s);
    s->name = spec->name;
    s->image = member_str(r, "image") ? member_str(r, "image") : spec->image;
    s->image_id = member_str(r, "imageID");
    s->container_id = member_str(r, "containerID");
    s->restart_count = (int32_t)vk_json_int(vk_json_member(r, "restartCount"), 0);
    yajl_val state = vk_json_member(r, "state");
    yajl_val term = vk_json_member(state, "terminated");
    yajl_val wait = vk_json_member(state, "waiting");
    yajl_val run = vk_json_member(state, "running");
    /* interLink looks at terminated first, then waiting, then running. */
    if (YAJL_IS_OBJECT(term)) {
        s->state = VK_STATE_TERMINATED;
        s->exit_code = (int32_t)vk_json_int(vk_json_member(term, "exitCode"), 0);
        s->reason = member_str(term, "reason");
        if (!s->reason)
            s->reason = s->exit_code == 0 ? "Completed" : "Error";
        s->message = member_str(term, "message");
        s->started_at = status_parse_time(member_str(term, "startedAt"));
        s->finished_at = status_parse_time(member_str(term, "finishedAt"));
        if (member_str(term, "containerID"))
            s->container_id = member_str(term, "containerID");
    } else if (YAJL_IS_OBJECT(wait) || !YAJL_IS_OBJECT(run)) {
        s->state = VK_STATE_WAITING;
        s->reason = member_str(wait, "reason") ? member_str(wait, "reason") : "ContainerCreating";
        s->message = member_str(wait, "message");
    } else {
        s->state = VK_STATE_RUNNING;
        s->started_at = status_parse_time(member_str(run, "startedAt"));
        s->ready = s->started = true;
    }
}

static const char *annotation(const vk_pod *pod, const char *key)
{
    for (size_t i = 0; i < pod->n_annotations; i++)
        if (strcmp(pod->annotations[i].name, key) == 0)
            return pod->annotations[i].value;
    return NULL;
}

static const char *const phase_names[] = {
    [IL_PENDING] = "Pending", [IL_RUNNING] = "Running",
    [IL_SUCCEEDED] = "Succeeded", [IL_FAILED] = "Failed",
};

int status_build(const il_pod *p, yajl_val report, vk_buf *out, enum il_phase *phase)
{
    const vk_pod *pod = p->pod;
    size_t n_init_spec = pod->n_init_containers, n_main = pod->n_containers;
    vk_container_status *cs = calloc(n_init_spec + n_main + 1, sizeof *cs);
    if (!cs)
        return -1;
    yajl_val init_reports = vk_json_member(report, "initContainers");
    yajl_val main_reports = vk_json_member(report, "containers");

    /* Init containers: those the plugin reports on (interLink counts only
     * these; a plugin that runs them inside its job may report none). */
    size_t n_init = 0, init_done = 0;
    bool init_waiting = false, init_running = false, init_failed = false;
    for (size_t i = 0; i < n_init_spec; i++) {
        yajl_val r = find_report(init_reports, pod->init_containers[i].name);
        if (!r)
            continue;
        vk_container_status *s = &cs[n_init++];
        container(s, &pod->init_containers[i], r);
        s->ready = false; /* init containers are never ready */
        if (s->state == VK_STATE_TERMINATED) {
            init_done++;
            init_failed |= s->exit_code != 0;
        }
        init_waiting |= s->state == VK_STATE_WAITING;
        init_running |= s->state == VK_STATE_RUNNING;
    }
    if (init_done == n_init)
        init_waiting = false;

    char init_reason[48];
    snprintf(init_reason, sizeof init_reason, "Init:%zu/%zu", init_done, n_init);
    size_t terminated = 0;
    bool running = false, failed = false;
    vk_container_status *mains = cs + n_init;
    for (size_t i = 0; i < n_main; i++) {
        vk_container_status *s = &mains[i];
        container(s, &pod->containers[i], find_report(main_reports, pod->containers[i].name));
        if (init_waiting || init_running) {
            *s = (vk_container_status){.name = s->name, .image = s->image,
                                       .state = VK_STATE_WAITING,
                                       .reason = init_running ? init_reason : "PodInitializing"};
            continue;
        }
        terminated += s->state == VK_STATE_TERMINATED;
        failed |= s->state == VK_STATE_TERMINATED && s->exit_code != 0;
        running |= s->state == VK_STATE_RUNNING;
    }

    enum il_phase ph = IL_PENDING;
    if (n_main && terminated == n_main)
        ph = failed || init_failed ? IL_FAILED : IL_SUCCEEDED;
    else if (init_failed && pod->restart_policy && strcmp(pod->restart_policy, "Never") == 0)
        ph = IL_FAILED;
    else if (running || p->phase == IL_RUNNING)
        ph = IL_RUNNING;

    vk_pod_status st = {
        .phase = phase_names[ph],
        .pod_ip = annotation(pod, POD_IP_ANNOTATION),
        .start_time = p->created_s,
        .init_containers = cs,
        .n_init_containers = n_init,
        .containers = mains,
        .n_containers = n_main,
    };
    int rc = vk_pod_status_json(&st, p->changed_s, out);
    free(cs);
    *phase = ph;
    return rc;
}
