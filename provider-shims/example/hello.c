/* hello.c -- the smallest useful vkc provider, shown whole in README.md.
 * Pods "run" by being remembered: Running at once, one greeting as log. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vkc-provider.h"

#define MAX_PODS 256

static struct {
    char *key; /* namespace/name */
    char *json;
} pods[MAX_PODS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int find(const char *ns, const char *name)
{
    char key[512];
    snprintf(key, sizeof key, "%s/%s", ns, name);
    for (int i = 0; i < MAX_PODS; i++)
        if (pods[i].key && strcmp(pods[i].key, key) == 0)
            return i;
    return -1;
}

/* Every container running and ready since `now`. */
static void running_status(const vk_pod *pod, vk_buf *out)
{
    vk_container_status cs[16];
    size_t n = pod->n_containers < 16 ? pod->n_containers : 16;
    for (size_t i = 0; i < n; i++)
        cs[i] = (vk_container_status){.name = pod->containers[i].name,
                                      .image = pod->containers[i].image,
                                      .state = VK_STATE_RUNNING,
                                      .started_at = time(NULL),
                                      .ready = true, .started = true};
    vk_pod_status st = {.phase = "Running", .pod_ip = "10.1.0.1", .host_ip = "10.1.0.1",
                        .start_time = time(NULL), .containers = cs, .n_containers = n};
    vk_pod_status_json(&st, time(NULL), out);
}

static int hello_create(vk_ctx *ctx, const vk_pod *pod)
{
    vk_buf status = VK_BUF_INIT;
    running_status(pod, &status);
    pthread_mutex_lock(&lock);
    int i = find(pod->namespace, pod->name), code = VK_OK;
    if (i < 0) {
        for (i = 0; i < MAX_PODS && pods[i].key; i++)
            ;
        if (i == MAX_PODS) {
            code = vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "node is full");
        } else {
            vk_buf key = VK_BUF_INIT;
            vk_buf_printf(&key, "%s/%s", pod->namespace, pod->name);
            pods[i].key = vk_buf_steal(&key, NULL);
            pods[i].json = strdup(pod->json);
        }
    }
    pthread_mutex_unlock(&lock);
    if (code == VK_OK)
        vk_provider_notify_pod(vk_ctx_provider(ctx), pod->namespace, pod->name, pod->uid,
                               status.data, status.len);
    vk_buf_free(&status);
    return code;
}

static int hello_delete(vk_ctx *ctx, const vk_pod *pod)
{
    pthread_mutex_lock(&lock);
    int i = find(pod->namespace, pod->name);
    if (i >= 0) {
        free(pods[i].key);
        free(pods[i].json);
        pods[i].key = NULL;
    }
    pthread_mutex_unlock(&lock);
    if (i < 0)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", pod->namespace, pod->name);
    vk_provider_notify_pod(vk_ctx_provider(ctx), pod->namespace, pod->name, pod->uid, NULL, 0);
    return VK_OK;
}

static int hello_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    pthread_mutex_lock(&lock);
    int i = find(ns, name);
    vk_pod *pod = i >= 0 ? vk_pod_parse(pods[i].json, strlen(pods[i].json), NULL, 0) : NULL;
    pthread_mutex_unlock(&lock);
    if (!pod)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
    running_status(pod, out);
    vk_pod_free(pod);
    return VK_OK;
}

static int hello_get_pods(vk_ctx *ctx, vk_pod_list *out)
{
    (void)ctx;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_PODS; i++)
        if (pods[i].key)
            vk_pod_list_add(out, pods[i].json, strlen(pods[i].json));
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

static int hello_logs(vk_ctx *ctx, const char *ns, const char *pod, const char *container,
                      const vk_log_options *opt, vk_stream *out)
{
    (void)opt; /* one line: every option gives the same answer */
    pthread_mutex_lock(&lock);
    int i = find(ns, pod);
    pthread_mutex_unlock(&lock);
    if (i < 0)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, pod);
    vk_buf line = VK_BUF_INIT;
    vk_buf_printf(&line, "hello from %s/%s\n", pod, container);
    vk_stream_write(out, line.data, line.len);
    vk_buf_free(&line);
    return VK_OK;
}

static const vk_provider_ops hello_ops = {
    .name = "hello", .version = "0.1.0",
    .create_pod = hello_create, .delete_pod = hello_delete,
    .get_pod_status = hello_status,
    .get_pods = hello_get_pods, .get_node = hello_node,
    .get_container_logs = hello_logs, .notifies_pod_status = true,
};

int main(int argc, char **argv)
{
    return vk_provider_main(&hello_ops, NULL, argc, argv);
}
