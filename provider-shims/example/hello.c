/* hello.c -- the smallest useful vkc provider, shown whole in README.md. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkc-provider.h"

#define MAX_PODS 256
static struct {
    vk_pod *pod;  /* as created or updated, with status; NULL: a free slot */
    char *status; /* PodStatus JSON, fixed at creation */
} pods[MAX_PODS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

/* The slot of pod namespace/name, or -1; ns NULL: the first free slot. A
 * uid (NULL: any) names one incarnation: another uid is another pod. */
static int find(const char *ns, const char *name, const char *uid)
{
    for (int i = 0; i < MAX_PODS; i++) {
        const vk_pod *p = pods[i].pod;
        if (!p ? !ns : ns && strcmp(p->namespace, ns) == 0 && strcmp(p->name, name) == 0)
            return p && uid && strcmp(p->uid, uid) != 0 ? -1 : i;
    }
    return -1;
}

/* Pods "run" by being remembered: every container running since now, for ever. */
static char *running_status(const vk_pod *pod)
{
    vk_container_status cs[16];
    size_t n = pod->n_containers < 16 ? pod->n_containers : 16;
    for (size_t i = 0; i < n; i++)
        cs[i] = (vk_container_status){.name = pod->containers[i].name, .ready = true,
                                      .image = pod->containers[i].image, .started = true,
                                      .state = VK_STATE_RUNNING, .started_at = time(NULL)};
    vk_pod_status st = {.phase = "Running", .pod_ip = "10.1.0.1", .host_ip = "10.1.0.1",
                        .start_time = time(NULL), .containers = cs, .n_containers = n};
    vk_buf out = VK_BUF_INIT;
    vk_pod_status_json(&st, time(NULL), &out);
    return vk_buf_steal(&out, NULL);
}

/* Keep pod, with the status of slot i, in slot i. */
static void keep(int i, const vk_pod *pod)
{
    vk_buf json = VK_BUF_INIT;
    vk_pod_with_status(pod->json, pod->json_len, pods[i].status, strlen(pods[i].status), &json);
    vk_pod_free(pods[i].pod);
    pods[i].pod = vk_pod_parse(json.data, json.len, NULL, 0);
    vk_buf_free(&json);
}

static int hello_create(vk_ctx *ctx, const vk_pod *pod)
{
    if (!pod->uid)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "pod %s has no uid", pod->name);
    pthread_mutex_lock(&lock);
    int i = find(pod->namespace, pod->name, NULL), code = VK_OK;
    if (i >= 0 && strcmp(pods[i].pod->uid, pod->uid) != 0)
        code = vk_ctx_error(ctx, VK_ALREADY_EXISTS, "pod %s runs with another uid", pod->name);
    else if (i < 0 && (i = find(NULL, NULL, NULL)) < 0)
        code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "node is full");
    else if (!pods[i].pod) { /* new: the same uid again changes nothing */
        pods[i].status = running_status(pod);
        keep(i, pod);
        vk_provider_notify_pod(vk_ctx_provider(ctx), pod->namespace, pod->name, pod->uid,
                               pods[i].status, strlen(pods[i].status));
    }
    pthread_mutex_unlock(&lock);
    return code;
}

static int hello_update(vk_ctx *ctx, const vk_pod *pod)
{
    pthread_mutex_lock(&lock);
    int i = pod->uid ? find(pod->namespace, pod->name, pod->uid) : -1;
    if (i >= 0)
        keep(i, pod); /* new labels or images: nothing runs, nothing else changes */
    pthread_mutex_unlock(&lock);
    return i >= 0 ? VK_OK : vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s not found", pod->name);
}

static int hello_delete(vk_ctx *ctx, const vk_pod *pod)
{
    pthread_mutex_lock(&lock);
    int i = find(pod->namespace, pod->name, pod->uid);
    if (i >= 0) { /* on OK the SDK reports the deletion to WatchPodStatus */
        vk_pod_free(pods[i].pod);
        free(pods[i].status);
        pods[i].pod = NULL;
    }
    pthread_mutex_unlock(&lock);
    return i >= 0 ? VK_OK : vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s not found", pod->name);
}

/* The SDK checks that the uid the core asks for is the one in our pod JSON. */
static int hello_get(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    pthread_mutex_lock(&lock);
    int i = find(ns, name, NULL);
    if (i >= 0)
        vk_buf_puts(out, pods[i].pod->json);
    pthread_mutex_unlock(&lock);
    return i >= 0 ? VK_OK : vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s not found", name);
}

static int hello_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    pthread_mutex_lock(&lock);
    int i = find(ns, name, NULL);
    if (i >= 0)
        vk_buf_puts(out, pods[i].status);
    pthread_mutex_unlock(&lock);
    return i >= 0 ? VK_OK : vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s not found", name);
}

static int hello_get_pods(vk_ctx *ctx, vk_pod_list *out)
{
    (void)ctx;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_PODS; i++)
        if (pods[i].pod)
            vk_pod_list_add(out, pods[i].pod->json, pods[i].pod->json_len);
    pthread_mutex_unlock(&lock);
    return VK_OK;
}

static int hello_node(vk_ctx *ctx, vk_node *node)
{
    (void)ctx;
    vk_node_capacity(node, "cpu", "4");
    vk_node_capacity(node, "memory", "8Gi");
    vk_node_capacity(node, "pods", "256");
    vk_node_condition(node, "Ready", "True", "HelloReady", "hello provider is up");
    vk_node_os(node, "linux");
    return VK_OK;
}

static const vk_provider_ops hello_ops = {
    .name = "hello", .version = "0.2.0", .get_node = hello_node, .notifies_pod_status = true,
    .create_pod = hello_create, .update_pod = hello_update, .delete_pod = hello_delete,
    .get_pod = hello_get, .get_pod_status = hello_status, .get_pods = hello_get_pods,
};

int main(int argc, char **argv)
{
    return vk_provider_main(&hello_ops, NULL, argc, argv);
}
