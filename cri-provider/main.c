/* main.c -- vkc-provider-cri: runs the node's pods on a CRI runtime
 * (containerd, CRI-O).
 *
 * The SDK runs every callback on a thread of its own; each pod has a worker
 * thread (worker.c); one more thread watches the runtime's health for the
 * node conditions, and a few run the pods' probes (probes.c). The provider is driven with vk_provider_new/start/wait
 * rather than vk_provider_main because those threads notify the SDK: they
 * stop after the provider stops serving and before it is freed.
 */
#include "cri.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODE_CHECK_MS 10000

cri_config config = {
    .endpoint = "unix:///run/containerd/containerd.sock",
    .root_dir = "/var/lib/vkc-cri",
    .cgroup_root = "/vkc",
    .cluster_domain = "cluster.local",
    .max_pods = 110,
    .volume_sync_s = 60,
};
vk_provider *provider;

static pthread_mutex_t stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stop_cond;
static bool stop_requested;

static const vk_provider_ops ops = {
    .name = "cri",
    .version = CRI_PROVIDER_VERSION,
    .create_pod = cri_create_pod,
    .update_pod = cri_update_pod,
    .delete_pod = cri_delete_pod,
    .get_pod = cri_get_pod,
    .get_pod_status = cri_get_pod_status,
    .get_pods = cri_get_pods,
    .get_node = cri_get_node,
    .notifies_pod_status = true,
    .notifies_node = true,
    .get_container_logs = cri_container_logs,
    .exec = cri_exec,
    .attach = cri_attach,
    .port_forward = cri_port_forward,
    .get_stats_summary = cri_stats_summary,
    .get_metrics_resource = cri_metrics_resource,
};

int64_t cri_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void *node_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&stop_lock);
    while (!stop_requested) {
        pthread_mutex_unlock(&stop_lock);
        node_check();
        pthread_mutex_lock(&stop_lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += NODE_CHECK_MS / 1000;
        while (!stop_requested &&
               pthread_cond_timedwait(&stop_cond, &stop_lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&stop_lock);
    return NULL;
}

/* The node thread never takes SIGINT/SIGTERM: they belong to
 * vk_provider_wait. */
static int start_node_thread(pthread_t *t)
{
    sigset_t old, set;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    set = old;
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    int rc = pthread_create(t, NULL, node_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vkc-provider-cri [options]\n"
        "  --listen ADDR            serve on ADDR (default: $VKC_PROVIDER_LISTEN)\n"
        "  --runtime-endpoint URL   CRI socket (default: unix:///run/containerd/containerd.sock)\n"
        "  --cri-api VERSION        v1, v1alpha2, or auto: v1 unless the runtime lacks it\n"
        "                           (default: auto)\n"
        "  --root-dir DIR           pod directories and logs (default: /var/lib/vkc-cri)\n"
        "  --sandbox-image IMAGE    pulled before the first pod, as the runtime's sandbox\n"
        "                           image must be present (default: the runtime's own)\n"
        "  --cgroup-root PATH       parent of the pod cgroups (default: /vkc)\n"
        "  --cluster-dns IP         nameserver for ClusterFirst pods (default: none)\n"
        "  --cluster-domain DOMAIN  (default: cluster.local)\n"
        "  --node-ip IP             the node's address (default: the first non-loopback)\n"
        "  --max-pods N             (default: 110)\n"
        "  --volume-sync-period S   seconds between refreshes of configMap, secret and\n"
        "                           projected volumes (default: 60, the kubelet's)\n"
        "  --log-level LEVEL        debug, info, warn or error (default: info)\n"
        "  --help                   this text\n");
}

static int bad_flag(const char *flag, const char *value)
{
    fprintf(stderr, "vkc-provider-cri: bad value for %s: '%s'\n", flag, value);
    return 2;
}

/* Pull the sandbox image so the first pod does not fail on it when the
 * runtime cannot pull (no registry, as in tests). */
static void prepare_sandbox_image(void)
{
    char reason[48], msg[512];
    static const vk_container c = {.name = "sandbox", .image_pull_policy = "IfNotPresent"};
    vk_container sc = c;
    cri_pod p = {.ns = "", .name = "", .uid = ""};
    if (!config.sandbox_image)
        return;
    sc.image = config.sandbox_image;
    if (images_ensure(&p, &sc, reason, sizeof reason, msg, sizeof msg) < 0)
        vk_warn("sandbox image not available", "image=%s error=\"%s\"", config.sandbox_image,
                msg);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"runtime-endpoint", required_argument, NULL, 'r'},
        {"cri-api", required_argument, NULL, 'a'},
        {"root-dir", required_argument, NULL, 'd'},
        {"sandbox-image", required_argument, NULL, 's'},
        {"cgroup-root", required_argument, NULL, 'c'},
        {"cluster-dns", required_argument, NULL, 'n'},
        {"cluster-domain", required_argument, NULL, 'D'},
        {"node-ip", required_argument, NULL, 'i'},
        {"max-pods", required_argument, NULL, 'p'},
        {"volume-sync-period", required_argument, NULL, 'y'},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = getenv("VKC_PROVIDER_LISTEN");
    char *end;
    int opt;

    config.started_ns = cri_now_ns();
    vk_log_set_component("cri");
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen = optarg; break;
        case 'r': config.endpoint = optarg; break;
        case 'a':
            if (strcmp(optarg, "auto") == 0)
                config.cri_api = CRI_API_AUTO;
            else if (strcmp(optarg, "v1") == 0)
                config.cri_api = CRI_API_V1;
            else if (strcmp(optarg, "v1alpha2") == 0)
                config.cri_api = CRI_API_V1ALPHA2;
            else
                return bad_flag("--cri-api", optarg);
            break;
        case 'd': config.root_dir = optarg; break;
        case 's': config.sandbox_image = optarg; break;
        case 'c': config.cgroup_root = optarg; break;
        case 'n': config.cluster_dns = optarg; break;
        case 'D': config.cluster_domain = optarg; break;
        case 'i': config.node_ip = optarg; break;
        case 'p':
            errno = 0;
            config.max_pods = strtoll(optarg, &end, 10);
            if (errno || *end || config.max_pods < 1 || config.max_pods > 100000)
                return bad_flag("--max-pods", optarg);
            break;
        case 'y':
            errno = 0;
            config.volume_sync_s = strtoll(optarg, &end, 10);
            if (errno || *end || config.volume_sync_s < 1 || config.volume_sync_s > 86400)
                return bad_flag("--volume-sync-period", optarg);
            break;
        case 'v':
            if (vk_log_set_level_name(optarg) < 0)
                return bad_flag("--log-level", optarg);
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (!listen || !listen[0]) {
        fprintf(stderr, "vkc-provider-cri: no address: give --listen or set VKC_PROVIDER_LISTEN\n");
        return 2;
    }
    if (config.root_dir[0] != '/' || strlen(config.root_dir) > 128)
        return bad_flag("--root-dir", config.root_dir);
    if (config.cgroup_root[0] != '/' || strlen(config.cgroup_root) > 128)
        return bad_flag("--cgroup-root", config.cgroup_root);

    uint32_t hash = 2166136261u;    /* FNV-1a */
    for (const char *c = config.root_dir; *c; c++)
        hash = (hash ^ (unsigned char)*c) * 16777619u;
    snprintf(config.instance, sizeof config.instance, "vkc-cri-%08x", hash);

    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&stop_cond, &attr);
    pthread_condattr_destroy(&attr);

    int rc = 1;
    vk_rpc_init();
    node_init();
    if (rt_open(config.endpoint) < 0)
        goto out;
    provider = vk_provider_new(&ops, NULL);
    if (!provider)
        goto out;
    prepare_sandbox_image();
    pods_restore();
    pthread_t node_thread;
    bool probing = false;
    if (vk_provider_start(provider, listen) == 0) {
        int err = start_node_thread(&node_thread);
        probing = !err && probes_start() == 0;
        if (err) {
            vk_error("cannot start the node thread", "error=\"%s\"", strerror(err));
            vk_provider_stop(provider);
            vk_provider_wait(provider);
        } else if (!probing) {
            vk_provider_stop(provider);
            vk_provider_wait(provider);
            pthread_mutex_lock(&stop_lock);
            stop_requested = true;
            pthread_cond_signal(&stop_cond);
            pthread_mutex_unlock(&stop_lock);
            pthread_join(node_thread, NULL);
        } else {
            vk_info("cri provider serving", "listen=%s runtime=%s root=%s", listen,
                    config.endpoint, config.root_dir);
            vk_provider_wait(provider);
            pthread_mutex_lock(&stop_lock);
            stop_requested = true;
            pthread_cond_signal(&stop_cond);
            pthread_mutex_unlock(&stop_lock);
            pthread_join(node_thread, NULL);
            rc = 0;
        }
    }
    /* The probe runners use pods, the runtime and the provider: they stop
     * first, and whatever is still busy keeps all of it until the exit. */
    if ((probing && !probes_stop()) || !pods_shutdown())
        return rc;
    vk_provider_free(provider);
    provider = NULL;
out:
    rt_close();
    vk_rpc_shutdown();
    pthread_cond_destroy(&stop_cond);
    return rc;
}
