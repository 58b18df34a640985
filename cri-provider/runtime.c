/* runtime.c -- the CRI client: one gRPC channel to the runtime, calls with
 * deadlines, and the few compound operations several files need. */
#include "cri.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static vk_channel *channel;
static pthread_mutex_t version_lock = PTHREAD_MUTEX_INITIALIZER;
static char runtime_name[64] = "cri";
static char runtime_version[64] = "unknown";
static atomic_bool have_version;

static const char *const api_names[] = {
    [CRI_API_V1] = "v1",
    [CRI_API_V1ALPHA2] = "v1alpha2",
};
/* The API version calls are made in: the one asked for, or in auto mode v1
 * until the runtime turned out to have only v1alpha2. */
static atomic_int api = CRI_API_V1;

/* One unary call in API version version (see rt_call). */
static int call_in(int version, const char *method, const ProtobufCMessage *req,
                   const ProtobufCMessageDescriptor *desc, int timeout_ms, void *resp,
                   char *err, size_t errlen)
{
    char path[128];
    snprintf(path, sizeof path, "/runtime.%s.%s", api_names[version], method);
    vk_status st = {0, NULL};
    ProtobufCMessage *r = NULL;
    int code = vk_unary(channel, path, req, desc, timeout_ms, &r, &st);
    if (code == VK_OK) {
        *(ProtobufCMessage **)resp = r;
    } else {
        const char *m = strrchr(method, '/');
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", m ? m + 1 : method,
                     st.message && st.message[0] ? st.message : vk_status_code_name(code));
        vk_debug("runtime call failed", "method=%s code=%s message=\"%s\"", path,
                 vk_status_code_name(code), st.message ? st.message : "");
    }
    vk_status_clear(&st);
    return code;
}

static int ask_version(int version, Runtime__V1__VersionResponse **resp)
{
    Runtime__V1__VersionRequest req = RUNTIME__V1__VERSION_REQUEST__INIT;
    req.version = (char *)api_names[version];
    return call_in(version, RT("Version"), &req.base, &runtime__v1__version_response__descriptor,
                   RT_QUICK_MS, resp, NULL, 0);
}

void rt_fetch_version(void)
{
    if (atomic_load(&have_version))
        return;
    Runtime__V1__VersionResponse *resp = NULL;
    int version = config.cri_api == CRI_API_AUTO ? CRI_API_V1 : (int)config.cri_api;
    int code = ask_version(version, &resp);
    /* A runtime older than runtime.v1 (containerd 1.5, CRI-O 1.19) does not
     * know the service at all. */
    if (code == VK_UNIMPLEMENTED && config.cri_api == CRI_API_AUTO)
        code = ask_version(version = CRI_API_V1ALPHA2, &resp);
    if (code != VK_OK)
        return;
    /* Written once: readers see the strings only after the flag. */
    pthread_mutex_lock(&version_lock);
    if (!atomic_load(&have_version)) {
        snprintf(runtime_name, sizeof runtime_name, "%s", resp->runtime_name);
        snprintf(runtime_version, sizeof runtime_version, "%s", resp->runtime_version);
        atomic_store(&api, version);
        atomic_store(&have_version, true);
        vk_info("runtime answered", "runtime=%s version=%s cri_api=%s", runtime_name,
                runtime_version, api_names[version]);
    }
    pthread_mutex_unlock(&version_lock);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

int rt_open(const char *endpoint)
{
    if (config.cri_api != CRI_API_AUTO)
        atomic_store(&api, (int)config.cri_api);
    channel = vk_channel_open(endpoint, 0);
    if (!channel) {
        vk_error("bad runtime endpoint", "endpoint=%s", endpoint);
        return -1;
    }
    /* A runtime that is not up yet is no reason to fail: the node reports
     * NotReady until it answers. */
    if (vk_channel_wait_ready(channel, 5000))
        rt_fetch_version();
    else
        vk_warn("runtime not reachable yet", "endpoint=%s", endpoint);
    return 0;
}

void rt_close(void)
{
    if (channel)
        vk_channel_close(channel);
    channel = NULL;
}

bool rt_have_version(void)
{
    return atomic_load(&have_version);
}

const char *rt_name(void)
{
    return runtime_name;
}

const char *rt_version(void)
{
    return runtime_version;
}

int rt_call(const char *method, const ProtobufCMessage *req,
            const ProtobufCMessageDescriptor *desc, int timeout_ms,
            void *resp, char *err, size_t errlen)
{
    return call_in(atomic_load(&api), method, req, desc, timeout_ms, resp, err, errlen);
}


int rt_stop_container(const char *id, int64_t grace_s)
{
    Runtime__V1__StopContainerRequest req = RUNTIME__V1__STOP_CONTAINER_REQUEST__INIT;
    Runtime__V1__StopContainerResponse *resp = NULL;
    char err[256];
    req.container_id = (char *)id;
    req.timeout = grace_s;
    /* The runtime waits out the grace period before it kills. */
    int code = rt_call(RT("StopContainer"), &req.base,
                       &runtime__v1__stop_container_response__descriptor,
                       (int)(grace_s * 1000) + RT_QUICK_MS, &resp, err, sizeof err);
    if (code == VK_OK) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
    }
    if (code == VK_NOT_FOUND)
        return 0;
    vk_warn("cannot stop container", "id=%.12s error=\"%s\"", id, err);
    return -1;
}

typedef struct stop_arg {
    const char *id;
    int64_t grace_s;
} stop_arg;

static void *stop_main(void *arg)
{
    stop_arg *a = arg;
    rt_stop_container(a->id, a->grace_s);
    return NULL;
}

void rt_stop_containers(char (*ids)[80], size_t n, int64_t grace_s)
{
    pthread_t t[16];
    stop_arg args[16];
    bool started[16] = {false};
    /* Batches bound the threads of a pod with very many containers. */
    for (size_t base = 0; base < n; base += 16) {
        size_t k = n - base < 16 ? n - base : 16;
        for (size_t i = 0; i < k; i++) {
            args[i] = (stop_arg){ids[base + i], grace_s};
            started[i] = k > 1 && pthread_create(&t[i], NULL, stop_main, &args[i]) == 0;
            if (!started[i])
                stop_main(&args[i]);
        }
        for (size_t i = 0; i < k; i++)
            if (started[i])
                pthread_join(t[i], NULL);
    }
}

int rt_remove_container(const char *id)
{
    Runtime__V1__RemoveContainerRequest req = RUNTIME__V1__REMOVE_CONTAINER_REQUEST__INIT;
    Runtime__V1__RemoveContainerResponse *resp = NULL;
    char err[256];
    req.container_id = (char *)id;
    int code = rt_call(RT("RemoveContainer"), &req.base,
                       &runtime__v1__remove_container_response__descriptor, RT_QUICK_MS,
                       &resp, err, sizeof err);
    if (code == VK_OK) {
        protobuf_c_message_free_unpacked(&resp->base, NULL);
        return 0;
    }
    if (code == VK_NOT_FOUND)
        return 0;
    vk_warn("cannot remove container", "id=%.12s error=\"%s\"", id, err);
    return -1;
}

void rt_stop_sandbox(const char *id)
{
    Runtime__V1__StopPodSandboxRequest stop = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char err[256];
    stop.pod_sandbox_id = (char *)id;
    int code = rt_call(RT("StopPodSandbox"), &stop.base,
                       &runtime__v1__stop_pod_sandbox_response__descriptor, RT_CREATE_MS,
                       &resp, err, sizeof err);
    if (code == VK_OK)
        protobuf_c_message_free_unpacked(resp, NULL);
    else if (code != VK_NOT_FOUND)
        vk_warn("cannot stop sandbox", "id=%.12s error=\"%s\"", id, err);
}

int rt_remove_sandbox(const char *id)
{
    Runtime__V1__RemovePodSandboxRequest rm = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    char err[256];
    rm.pod_sandbox_id = (char *)id;
    rt_stop_sandbox(id);
    int code = rt_call(RT("RemovePodSandbox"), &rm.base,
                       &runtime__v1__remove_pod_sandbox_response__descriptor, RT_CREATE_MS,
                       &resp, err, sizeof err);
    if (code == VK_OK) {
        protobuf_c_message_free_unpacked(resp, NULL);
        return 0;
    }
    if (code == VK_NOT_FOUND)
        return 0;
    vk_warn("cannot remove sandbox", "id=%.12s error=\"%s\"", id, err);
    return -1;
}

Runtime__V1__ListPodSandboxResponse *rt_list_sandboxes(const char *uid, bool mine)
{
    Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__PodSandboxFilter filter = RUNTIME__V1__POD_SANDBOX_FILTER__INIT;
    Runtime__V1__ListPodSandboxResponse *resp = NULL;
    kv_list sel = {.desc = &runtime__v1__pod_sandbox_filter__label_selector_entry__descriptor};
    char err[256];
    if ((mine && kv_add(&sel, LABEL_MANAGED, config.instance) < 0) ||
        (uid && kv_add(&sel, LABEL_POD_UID, uid) < 0)) {
        kv_free(&sel);
        return NULL;
    }
    filter.label_selector = (Runtime__V1__PodSandboxFilter__LabelSelectorEntry **)sel.items;
    filter.n_label_selector = sel.n;
    req.filter = &filter;
    int code = rt_call(RT("ListPodSandbox"), &req.base,
                       &runtime__v1__list_pod_sandbox_response__descriptor, RT_QUICK_MS,
                       &resp, err, sizeof err);
    kv_free(&sel);
    if (code != VK_OK) {
        vk_warn("cannot list sandboxes", "error=\"%s\"", err);
        return NULL;
    }
    return resp;
}

/* ---- map entries ------------------------------------------------------------ */

int kv_add(kv_list *l, const char *key, const char *value)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        void *items = realloc(l->items, cap * sizeof *l->items);
        if (!items)
            return -1;
        l->items = items;
        l->cap = cap;
    }
    ProtobufCMessage *e = malloc(l->desc->sizeof_message);
    char *k = strdup(key), *v = strdup(value ? value : "");
    if (!e || !k || !v) {
        free(e);
        free(k);
        free(v);
        return -1;
    }
    protobuf_c_message_init(l->desc, e);
    /* Fields 1 and 2 of every map entry are key and value. */
    *(char **)((char *)e + l->desc->fields[0].offset) = k;
    *(char **)((char *)e + l->desc->fields[1].offset) = v;
    l->items[l->n++] = e;
    return 0;
}

void kv_free(kv_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        ProtobufCMessage *e = l->items[i];
        free(*(char **)((char *)e + l->desc->fields[0].offset));
        free(*(char **)((char *)e + l->desc->fields[1].offset));
        free(e);
    }
    free(l->items);
    l->items = NULL;
    l->n = l->cap = 0;
}
