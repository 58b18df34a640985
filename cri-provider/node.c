/* node.c -- the node as this machine and the runtime show it: capacity
 * from the host, conditions from the runtime's Status.
 *
 * Ready follows the runtime's RuntimeReady. NetworkReady (a CNI network
 * for pods) becomes NetworkUnavailable instead of NotReady: pods on the
 * host network run without it, and a node that refused them would be
 * useless on a machine without CNI.
 */
#include "cri.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

typedef struct runtime_conditions {
    bool known;             /* the runtime answered Status */
    bool runtime_ready, network_ready;
    char runtime_message[256];
    char network_message[256];
} runtime_conditions;

static pthread_mutex_t node_lock = PTHREAD_MUTEX_INITIALIZER;
static runtime_conditions current;
static char ip[INET6_ADDRSTRLEN] = "127.0.0.1";
static char hostname[256] = "localhost";
static char kernel[128] = "";
static char os_image[256] = "Linux";
static char arch[72] = "amd64";
static int64_t memory_bytes;
static long cpus = 1;

const char *node_ip(void)
{
    return ip;
}

int64_t node_memory_bytes(void)
{
    return memory_bytes;
}

int64_t node_cpus(void)
{
    return cpus;
}

static void find_ip(void)
{
    struct ifaddrs *ifs, *i;
    if (config.node_ip) {
        snprintf(ip, sizeof ip, "%s", config.node_ip);
        return;
    }
    if (getifaddrs(&ifs) < 0)
        return;
    for (i = ifs; i; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK) ||
            !(i->ifa_flags & IFF_UP))
            continue;
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof ip);
        break;
    }
    freeifaddrs(ifs);
}

static void read_os_release(void)
{
    FILE *f = fopen("/etc/os-release", "re");
    char line[256];
    if (!f)
        return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "PRETTY_NAME=", 12) != 0)
            continue;
        char *v = line + 12;
        v[strcspn(v, "\n")] = '\0';
        if (*v == '"') {
            v++;
            v[strcspn(v, "\"")] = '\0';
        }
        snprintf(os_image, sizeof os_image, "%s", v);
    }
    fclose(f);
}

void node_init(void)
{
    struct utsname u;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    memory_bytes = pages > 0 && page > 0 ? (int64_t)pages * page : 0;
    cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (uname(&u) == 0) {
        snprintf(kernel, sizeof kernel, "%s", u.release);
        snprintf(hostname, sizeof hostname, "%s", u.nodename);
        snprintf(arch, sizeof arch, "%s",
                 strcmp(u.machine, "x86_64") == 0 ? "amd64"
                 : strcmp(u.machine, "aarch64") == 0 ? "arm64" : u.machine);
    }
    read_os_release();
    find_ip();
}

static void runtime_status(runtime_conditions *rc)
{
    Runtime__V1__StatusRequest req = RUNTIME__V1__STATUS_REQUEST__INIT;
    Runtime__V1__StatusResponse *resp = NULL;
    char err[256];
    memset(rc, 0, sizeof *rc);
    if (rt_call(RT("Status"), &req.base, &runtime__v1__status_response__descriptor, RT_QUICK_MS,
                &resp, err, sizeof err) != VK_OK) {
        snprintf(rc->runtime_message, sizeof rc->runtime_message,
                 "container runtime is down: %.200s", err);
        return;
    }
    rc->known = true;
    for (size_t i = 0; resp->status && i < resp->status->n_conditions; i++) {
        Runtime__V1__RuntimeCondition *c = resp->status->conditions[i];
        bool runtime = strcmp(c->type, "RuntimeReady") == 0;
        if (!runtime && strcmp(c->type, "NetworkReady") != 0)
            continue;
        *(runtime ? &rc->runtime_ready : &rc->network_ready) = c->status;
        if (!c->status)
            snprintf(runtime ? rc->runtime_message : rc->network_message,
                     sizeof rc->runtime_message, "%s: %s", c->reason, c->message);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

void node_check(void)
{
    runtime_conditions rc;
    bool had_version = rt_have_version();
    rt_fetch_version();
    runtime_status(&rc);
    pthread_mutex_lock(&node_lock);
    bool changed = memcmp(&rc, &current, sizeof rc) != 0 || had_version != rt_have_version();
    current = rc;
    pthread_mutex_unlock(&node_lock);
    if (changed && provider)
        vk_provider_notify_node(provider);
}

int cri_get_node(vk_ctx *ctx, vk_node *node)
{
    char buf[128];
    runtime_conditions rc;
    (void)ctx;
    pthread_mutex_lock(&node_lock);
    rc = current;
    pthread_mutex_unlock(&node_lock);

    snprintf(buf, sizeof buf, "%ld", cpus);
    vk_node_capacity(node, "cpu", buf);
    snprintf(buf, sizeof buf, "%lldKi", (long long)(memory_bytes / 1024));
    vk_node_capacity(node, "memory", buf);
    snprintf(buf, sizeof buf, "%lld", (long long)config.max_pods);
    vk_node_capacity(node, "pods", buf);
    struct statvfs fs;
    if (statvfs(config.root_dir, &fs) == 0) {
        snprintf(buf, sizeof buf, "%lluKi",
                 (unsigned long long)fs.f_blocks * fs.f_frsize / 1024);
        vk_node_capacity(node, "ephemeral-storage", buf);
    }

    if (!rc.known)
        vk_node_condition(node, "Ready", "False", "ContainerRuntimeDown",
                          rc.runtime_message[0] ? rc.runtime_message
                                                : "container runtime not checked yet");
    else if (!rc.runtime_ready)
        vk_node_condition(node, "Ready", "False", "ContainerRuntimeNotReady", rc.runtime_message);
    else
        vk_node_condition(node, "Ready", "True", "KubeletReady", "container runtime is ready");
    if (rc.known)
        vk_node_condition(node, "NetworkUnavailable", rc.network_ready ? "False" : "True",
                          rc.network_ready ? "NetworkReady" : "NetworkPluginNotReady",
                          rc.network_ready ? "pod network is ready"
                                           : rc.network_message);

    vk_node_address(node, "InternalIP", ip);
    vk_node_address(node, "Hostname", hostname);
    vk_node_os(node, "linux");
    vk_node_info(node, "architecture", arch);
    vk_node_info(node, "operatingSystem", "linux");
    vk_node_info(node, "kernelVersion", kernel);
    vk_node_info(node, "osImage", os_image);
    snprintf(buf, sizeof buf, "%s://%s", rt_name(), rt_version());
    vk_node_info(node, "containerRuntimeVersion", buf);
    return VK_OK;
}
