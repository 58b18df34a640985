/* node.c -- the Node document: capacity from the flags, conditions with the
 * fault file's overrides, system info from uname(2). */
#include "mock.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

static char arch[sizeof ((struct utsname *)0)->machine] = "unknown";
static char kernel[sizeof ((struct utsname *)0)->release] = "unknown";
static char host_ip[INET_ADDRSTRLEN] = "127.0.0.1";

static const char *const default_conditions[][2] = {
    {"Ready", "True"},
    {"MemoryPressure", "False"},
    {"DiskPressure", "False"},
    {"PIDPressure", "False"},
    {"NetworkUnavailable", "False"},
};

/* Kubernetes names architectures the Go way. */
static const char *go_arch(const char *machine)
{
    if (strcmp(machine, "x86_64") == 0)
        return "amd64";
    if (strcmp(machine, "aarch64") == 0)
        return "arm64";
    if (strncmp(machine, "armv", 4) == 0)
        return "arm";
    if (strcmp(machine, "i686") == 0 || strcmp(machine, "i386") == 0)
        return "386";
    return machine;
}

void node_init(void)
{
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(arch, sizeof arch, "%s", go_arch(u.machine));
        snprintf(kernel, sizeof kernel, "%s", u.release);
    }
    /* Pods report the address a real node would: its first external IPv4. */
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
                (i->ifa_flags & IFF_UP) && !(i->ifa_flags & IFF_LOOPBACK)) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr,
                          host_ip, sizeof host_ip);
                break;
            }
        }
        freeifaddrs(ifs);
    }
}

const char *node_host_ip(void)
{
    return host_ip;
}

int mock_get_node(vk_ctx *ctx, vk_node *n)
{
    (void)ctx;
    char pods[24];
    snprintf(pods, sizeof pods, "%lld", (long long)config.max_pods);
    vk_node_capacity(n, "cpu", config.cpu);
    vk_node_capacity(n, "memory", config.memory);
    vk_node_capacity(n, "pods", pods);

    mock_condition over[32];
    bool used[32] = {false};
    size_t n_over = faults_conditions(over, 32);
    for (size_t i = 0; i < sizeof default_conditions / sizeof default_conditions[0]; i++) {
        const char *type = default_conditions[i][0];
        const char *status = default_conditions[i][1];
        bool overridden = false;
        for (size_t j = 0; j < n_over; j++) {
            if (strcmp(over[j].type, type) == 0) {
                status = over[j].status;
                overridden = used[j] = true;
            }
        }
        vk_node_condition(n, type, status, overridden ? "FaultFile" : "MockProvider",
                          overridden ? "set by the mock provider's fault file" : NULL);
    }
    for (size_t j = 0; j < n_over; j++)
        if (!used[j])
            vk_node_condition(n, over[j].type, over[j].status, "FaultFile",
                              "set by the mock provider's fault file");

    vk_node_os(n, "linux");
    vk_node_info(n, "operatingSystem", "linux");
    vk_node_info(n, "architecture", arch);
    vk_node_info(n, "kernelVersion", kernel);
    vk_node_info(n, "osImage", "vkc mock");
    vk_node_info(n, "containerRuntimeVersion", "mock://" MOCK_VERSION);
    return VK_OK;
}
