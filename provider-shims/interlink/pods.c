/* pods.c -- the pod table and the lifecycle RPCs.
 *
 * interLink has no endpoint that lists a plugin's pods, so this table is
 * the shim's only record of what it created: GetPods answers from it, and
 * state.c keeps a copy on disk so that a restarted shim neither loses its
 * pods nor has the core create them a second time.
 *
 * A pod enters the table before its /create is sent and is marked busy
 * while a /create or /delete is in flight. A second operation on a busy pod
 * is refused with UNAVAILABLE (the core retries), so no two plugin calls for
 * one pod overlap and an entry is never freed under a call that uses it.
 */
#include "interlink.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static il_pod *head;
static int64_t n_pods;

void pods_lock(void) { pthread_mutex_lock(&lock); }
void pods_unlock(void) { pthread_mutex_unlock(&lock); }

il_pod *pods_first(void) { return head; }

static const char *str(const char *s) { return s ? s : ""; }

il_pod *pods_by_uid(const char *uid)
{
    for (il_pod *p = head; p; p = p->next)
        if (strcmp(str(p->pod->uid), uid) == 0)
            return p;
    return NULL;
}

il_pod *pods_by_name(const char *ns, const char *name)
{
    for (il_pod *p = head; p; p = p->next)
        if (strcmp(str(p->pod->name), name) == 0 && strcmp(str(p->pod->namespace), ns) == 0)
            return p;
    return NULL;
}

static void add(il_pod *p)
{
    il_pod **at = &head;
    while (*at)
        at = &(*at)->next;
    *at = p;
    n_pods++;
}

static void drop(il_pod *p)
{
    for (il_pod **at = &head; *at; at = &(*at)->next) {
        if (*at == p) {
            *at = p->next;
            n_pods--;
            break;
        }
    }
    vk_pod_free(p->pod);
    free(p->job_id);
    free(p->status);
    free(p);
}

static void notify(const il_pod *p)
{
    /* Under the lock, so that changes reach the SDK in the order they
     * happened; it never blocks. */
    vk_provider_notify_pod(provider, str(p->pod->namespace), str(p->pod->name),
                           str(p->pod->uid), p->status, strlen(p->status));
}

void pods_restore(il_pod *p)
{
    pods_lock();
    add(p);
    notify(p);
    pods_unlock();
}

void pods_free(void)
{
    while (head)
        drop(head);
}

void pods_set_status(il_pod *p, char *status_json, enum il_phase phase)
{
    free(p->status);
    p->status = status_json;
    p->phase = phase;
    notify(p);
}

static bool finished(const il_pod *p)
{
    return p->phase == IL_SUCCEEDED || p->phase == IL_FAILED;
}

static bool ctx_cancelled(void *ud)
{
    return vk_ctx_cancelled(ud);
}

/* A view the table owns: the SDK frees the call's view when it returns. */
static vk_pod *copy_view(const vk_pod *pod)
{
    return vk_pod_parse(pod->json, pod->json_len, NULL, 0);
}

/* ---- create ------------------------------------------------------------- */

/* The job id from a CreateStruct. Plugins written for interLink 0.3 answer
 * a list of them; others answer a plain string. Only the id is missing
 * then: the plugin said 200, so the pod is accepted either way. */
static char *job_id(const vk_buf *resp, const char *uid)
{
    yajl_val v = resp->len ? vk_json_parse(resp->data, resp->len, NULL, 0) : NULL;
    yajl_val cs = YAJL_IS_ARRAY(v) && v->u.array.len ? v->u.array.values[0] : v;
    const char *jid = vk_json_str(vk_json_member(cs, "PodJID"), NULL);
    const char *for_uid = vk_json_str(vk_json_member(cs, "PodUID"), uid);
    char *out = jid && strcmp(for_uid, uid) == 0 ? strdup(jid) : NULL;
    yajl_tree_free(v);
    return out;
}

/* /delete of a pod the core asked to create, after a /create whose outcome
 * is unknown: a retried CreatePod would otherwise start a second job. */
static void forget_on_plugin(const vk_pod *pod)
{
    vk_buf resp = VK_BUF_INIT;
    vk_status st = {0, NULL};
    if (plugin_call("POST", "/delete", pod->json, pod->json_len, &resp, &st, NULL, NULL,
                    NULL) != VK_OK && st.code != VK_NOT_FOUND)
        vk_warn("cannot clean up after a failed create", "pod=%s/%s error=\"%s\"",
                str(pod->namespace), str(pod->name), str(st.message));
    vk_status_clear(&st);
    vk_buf_free(&resp);
}

/* Delete a finished pod of the same name but another uid, which the core
 * replaces. With the lock held; returns with it held. */
static int replace_finished(vk_ctx *ctx, il_pod *old)
{
    old->busy = true;
    vk_pod *doc = old->pod;
    pods_unlock();
    vk_buf resp = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code = plugin_call("POST", "/delete", doc->json, doc->json_len, &resp, &st,
                           ctx_cancelled, ctx, NULL);
    vk_buf_free(&resp);
    pods_lock();
    if (code == VK_OK || code == VK_NOT_FOUND) {
        drop(old);
        code = VK_OK;
    } else {
        old->busy = false;
        code = vk_ctx_error(ctx, code, "%s", str(st.message));
    }
    vk_status_clear(&st);
    return code;
}

int il_create_pod(vk_ctx *ctx, const vk_pod *pod)
{
    const char *ns = str(pod->namespace), *name = pod->name, *uid = str(pod->uid);
    if (!uid[0])
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                            "pod %s/%s has no metadata.uid: interLink plugins know pods by uid",
                            ns, name);
    pods_lock();
    il_pod *old = pods_by_name(ns, name);
    int code = VK_OK;
    if (old && strcmp(str(old->pod->uid), uid) == 0) {
        if (old->busy)
            code = vk_ctx_error(ctx, VK_UNAVAILABLE, "pod %s/%s is being %s", ns, name,
                                old->accepted ? "deleted" : "created");
        pods_unlock();
        return code;
    }
    if (old && old->busy)
        code = vk_ctx_error(ctx, VK_UNAVAILABLE,
                            "the previous pod %s/%s (uid %s) is still being created or deleted",
                            ns, name, str(old->pod->uid));
    else if (old && !finished(old))
        code = vk_ctx_error(ctx, VK_ALREADY_EXISTS, "pod %s/%s with uid %s still runs",
                            ns, name, str(old->pod->uid));
    else if (old)
        code = replace_finished(ctx, old);
    if (code == VK_OK && n_pods >= config.max_pods)
        code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED,
                            "the node runs its maximum of %lld pods", (long long)config.max_pods);
    il_pod *p = NULL;
    if (code == VK_OK && (!(p = calloc(1, sizeof *p)) || !(p->pod = copy_view(pod)))) {
        free(p);
        code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "out of memory");
    }
    if (code != VK_OK) {
        pods_unlock();
        return code;
    }
    p->busy = true;
    add(p);
    pods_unlock();

    vk_buf body = VK_BUF_INIT, resp = VK_BUF_INIT;
    vk_status st = {0, NULL};
    bool unknown = false;
    code = create_body(pod, &body, &st);
    if (code == VK_OK)
        code = plugin_call("POST", "/create", body.data, body.len, &resp, &st, ctx_cancelled,
                           ctx, &unknown);
    vk_buf_free(&body);
    if (code != VK_OK && unknown)
        forget_on_plugin(pod);

    pods_lock();
    if (code == VK_OK) {
        vk_buf status = VK_BUF_INIT;
        p->job_id = job_id(&resp, uid);
        p->accepted = true;
        p->busy = false;
        p->created_s = p->changed_s = il_wall_s();
        enum il_phase phase;
        if (status_build(p, NULL, &status, &phase) == 0)
            pods_set_status(p, vk_buf_steal(&status, NULL), phase);
        vk_buf_free(&status);
        vk_info("pod created", "pod=%s/%s uid=%s job=%s", ns, name, uid, str(p->job_id));
    } else {
        drop(p);
        code = vk_ctx_error(ctx, code, "%s", str(st.message));
    }
    pods_unlock();
    vk_buf_free(&resp);
    vk_status_clear(&st);
    if (code == VK_OK) {
        state_save();
        poller_kick();
    }
    return code;
}

/* ---- update, delete --------------------------------------------------------- */

/* The accepted pod the request names, or NULL after setting the error. */
static il_pod *known(vk_ctx *ctx, const vk_pod *pod, int *code)
{
    const char *ns = str(pod->namespace), *name = pod->name;
    il_pod *p = pods_by_name(ns, name);
    if (p && pod->uid && strcmp(pod->uid, str(p->pod->uid)) != 0)
        p = NULL; /* another incarnation of that name */
    if (p && p->busy) {
        *code = vk_ctx_error(ctx, VK_UNAVAILABLE, "pod %s/%s is being %s", ns, name,
                             p->accepted ? "deleted" : "created");
        return NULL;
    }
    if (!p)
        *code = vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
    return p;
}

/* interLink has no update endpoint: the new document is kept (GetPod shows
 * it, and it goes with /status and /delete), the plugin's job stays. */
int il_update_pod(vk_ctx *ctx, const vk_pod *pod)
{
    int code = VK_OK;
    pods_lock();
    il_pod *p = known(ctx, pod, &code);
    vk_pod *copy = p ? copy_view(pod) : NULL;
    if (p && copy) {
        vk_pod_free(p->pod);
        p->pod = copy;
    } else if (p) {
        code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "out of memory");
    }
    pods_unlock();
    if (code == VK_OK)
        state_save();
    return code;
}

int il_delete_pod(vk_ctx *ctx, const vk_pod *pod)
{
    int code = VK_OK;
    pods_lock();
    il_pod *p = known(ctx, pod, &code);
    if (p)
        p->busy = true;
    pods_unlock();
    if (!p)
        return code;

    /* The document of the request: it carries the grace period. */
    vk_buf resp = VK_BUF_INIT;
    vk_status st = {0, NULL};
    code = plugin_call("POST", "/delete", pod->json, pod->json_len, &resp, &st, ctx_cancelled,
                       ctx, NULL);
    vk_buf_free(&resp);
    pods_lock();
    if (code == VK_OK || code == VK_NOT_FOUND) {
        /* Not found by the plugin: its job is gone already, so is the pod. */
        vk_info("pod deleted", "pod=%s/%s uid=%s", str(pod->namespace), pod->name,
                str(p->pod->uid));
        drop(p);
        code = VK_OK;
    } else {
        p->busy = false;
        code = vk_ctx_error(ctx, code, "%s", str(st.message));
    }
    pods_unlock();
    vk_status_clear(&st);
    if (code == VK_OK)
        state_save();
    return code;
}

/* ---- reads ------------------------------------------------------------------- */

static il_pod *readable(vk_ctx *ctx, const char *ns, const char *name, int *code)
{
    il_pod *p = pods_by_name(ns, name);
    if (p && p->accepted && p->status)
        return p;
    *code = vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
    return NULL;
}

int il_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    int code = VK_OK;
    pods_lock();
    il_pod *p = readable(ctx, ns, name, &code);
    if (p && vk_pod_with_status(p->pod->json, p->pod->json_len, p->status,
                                strlen(p->status), out) < 0)
        code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "out of memory");
    pods_unlock();
    return code;
}

int il_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    int code = VK_OK;
    pods_lock();
    il_pod *p = readable(ctx, ns, name, &code);
    if (p && vk_buf_puts(out, p->status) < 0)
        code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "out of memory");
    pods_unlock();
    return code;
}

int il_get_pods(vk_ctx *ctx, vk_pod_list *out)
{
    int code = VK_OK;
    vk_buf doc = VK_BUF_INIT;
    pods_lock();
    for (il_pod *p = head; p && code == VK_OK; p = p->next) {
        if (!p->accepted || !p->status)
            continue;
        vk_buf_reset(&doc);
        if (vk_pod_with_status(p->pod->json, p->pod->json_len, p->status,
                               strlen(p->status), &doc) < 0)
            code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "out of memory");
        else
            vk_pod_list_add(out, doc.data, doc.len);
    }
    pods_unlock();
    vk_buf_free(&doc);
    return code;
}
