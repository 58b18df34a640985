/* node.c -- the Node document: capacity from the flags, as interLink's
 * virtual kubelet takes it from its configuration, and a Ready condition
 * that follows the plugin's health as the poller sees it. */
#include "interlink.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

static char arch[sizeof ((struct utsname *)0)->machine] = "amd64";

/* Kubernetes names architectures the Go way. */
static const char *go_arch(const char *machine)
{
    if (strcmp(machine, "x86_64") == 0)
        return "amd64";
    if (strcmp(machine, "aarch64") == 0)
        return "arm64";
    if (strcmp(machine, "i686") == 0 || strcmp(machine, "i386") == 0)
        return "386";
    return machine;
}

void node_init(void)
{
    struct utsname u;
    if (uname(&u) == 0)
        snprintf(arch, sizeof arch, "%s", go_arch(u.machine));
}

int il_get_node(vk_ctx *ctx, vk_node *node)
{
    (void)ctx;
    char pods[24], message[512];
    snprintf(pods, sizeof pods, "%lld", (long long)config.max_pods);
    vk_node_capacity(node, "cpu", config.cpu);
    vk_node_capacity(node, "memory", config.memory);
    vk_node_capacity(node, "pods", pods);

    bool ok = poller_healthy(message, sizeof message);
    vk_node_condition(node, "Ready", ok ? "True" : "False",
                      ok ? "PluginReady" : "PluginNotReady", message);
    static const char *const calm[] = {"MemoryPressure", "DiskPressure", "PIDPressure",
                                       "NetworkUnavailable"};
    for (size_t i = 0; i < sizeof calm / sizeof calm[0]; i++)
        vk_node_condition(node, calm[i], "False", NULL, NULL);

    vk_node_os(node, "linux");
    vk_node_info(node, "operatingSystem", "linux");
    vk_node_info(node, "architecture", arch);
    vk_node_info(node, "osImage", "interLink");
    vk_node_info(node, "containerRuntimeVersion", "interlink://" IL_VERSION);
    return VK_OK;
}
