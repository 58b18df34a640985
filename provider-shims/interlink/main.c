/* main.c -- vkc-provider-interlink: an interLink plugin as a vkc provider.
 *
 * The SDK runs every RPC on a thread of its own; one more thread, the
 * poller, asks the plugin for status. The provider is driven with
 * vk_provider_new/start/wait/free rather than vk_provider_main because the
 * poller calls vk_provider_notify_pod: it must stop after the provider
 * stopped serving and before the provider is freed.
 */
#include "interlink.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

/* Defaults as in interLink's virtual kubelet configuration and plugins:
 * port 4000, 100 CPUs, 128Gi, 100 pods, a status poll every 5 s. The
 * timeout stays below the 10 s the core gives a unary call. */
il_config config = {
    .plugin_url = "http://127.0.0.1:4000",
    .poll_interval_ms = 5000,
    .timeout_ms = 8000,
    .cpu = "100",
    .memory = "128Gi",
    .max_pods = 100,
};
vk_provider *provider;

static const vk_provider_ops ops = {
    .name = "interlink",
    .version = IL_VERSION,
    .create_pod = il_create_pod,
    .update_pod = il_update_pod,
    .delete_pod = il_delete_pod,
    .get_pod = il_get_pod,
    .get_pod_status = il_get_pod_status,
    .get_pods = il_get_pods,
    .get_node = il_get_node,
    .notifies_pod_status = true,
    .notifies_node = true,
    .get_container_logs = il_container_logs,
};

int64_t il_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * MS_PER_S + ts.tv_nsec / 1000000;
}

int64_t il_wall_s(void)
{
    return (int64_t)time(NULL);
}

/* "500ms", "5s", "2m", or seconds without a unit. -1 when malformed or
 * outside [lo, hi] milliseconds. */
static int64_t duration_ms(const char *s, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double scale = strcmp(end, "ms") == 0 ? 1
                   : strcmp(end, "s") == 0 || !*end ? 1000
                   : strcmp(end, "m") == 0 ? 60000 : -1;
    if (errno || end == s || scale < 0 || !(v * scale >= (double)lo && v * scale <= (double)hi))
        return -1;
    return (int64_t)(v * scale);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vkc-provider-interlink --state-dir DIR [options]\n"
        "  --listen ADDR          serve on ADDR (default: $VKC_PROVIDER_LISTEN)\n"
        "  --log-level LEVEL      debug, info, warn or error (default: info)\n"
        "  --plugin-url URL       the interLink plugin (default: http://127.0.0.1:4000;\n"
        "                         unix:///PATH is the same as --plugin-socket PATH)\n"
        "  --plugin-socket PATH   reach the plugin on this unix socket instead\n"
        "  --poll-interval DUR    how often to ask /status (default: 5s)\n"
        "  --timeout DUR          bound of every plugin call but log streams (default: 8s)\n"
        "  --cpu QUANTITY         node cpu capacity (default: 100)\n"
        "  --memory QUANTITY      node memory capacity (default: 128Gi)\n"
        "  --pods N               node pod capacity (default: 100)\n"
        "  --state-dir DIR        where the pod table is kept across restarts\n"
        "                         (default: $VKC_INTERLINK_STATE_DIR)\n"
        "  --disable-projected-volumes  send no projected volumes (service-account\n"
        "                         tokens and the like), as interLink's option of that name\n"
        "  --help                 this text\n"
        "DUR: 500ms, 5s, 2m; seconds without a unit.\n");
}

static int bad_flag(const char *flag, const char *value)
{
    fprintf(stderr, "vkc-provider-interlink: bad value for %s: '%s'\n", flag, value);
    return 2;
}

/* The poller gets neither SIGINT nor SIGTERM: they belong to the SDK's
 * vk_provider_wait, whatever way it waits for them. */
static int start_poller(void)
{
    sigset_t old, set;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    set = old;
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    int rc = poller_start();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"log-level", required_argument, NULL, 'v'},
        {"plugin-url", required_argument, NULL, 'u'},
        {"plugin-socket", required_argument, NULL, 's'},
        {"poll-interval", required_argument, NULL, 'i'},
        {"timeout", required_argument, NULL, 't'},
        {"cpu", required_argument, NULL, 'c'},
        {"memory", required_argument, NULL, 'm'},
        {"pods", required_argument, NULL, 'p'},
        {"state-dir", required_argument, NULL, 'd'},
        {"disable-projected-volumes", no_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = getenv("VKC_PROVIDER_LISTEN");
    const char *url = NULL;
    static char url_buf[2048];
    int64_t v;
    int opt;

    config.state_dir = getenv("VKC_INTERLINK_STATE_DIR");
    vk_log_set_component("interlink");
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen = optarg; break;
        case 'v':
            if (vk_log_set_level_name(optarg) < 0)
                return bad_flag("--log-level", optarg);
            break;
        case 'u': url = optarg; break;
        case 's': config.plugin_socket = optarg; break;
        case 'i':
            if ((v = duration_ms(optarg, 100, 3600 * MS_PER_S)) < 0)
                return bad_flag("--poll-interval", optarg);
            config.poll_interval_ms = v;
            break;
        case 't':
            if ((v = duration_ms(optarg, 100, 600 * MS_PER_S)) < 0)
                return bad_flag("--timeout", optarg);
            config.timeout_ms = v;
            break;
        case 'c': config.cpu = optarg; break;
        case 'm': config.memory = optarg; break;
        case 'p': {
            char *end;
            errno = 0;
            long long n = strtoll(optarg, &end, 10);
            if (errno || end == optarg || *end || n < 1 || n > 100000)
                return bad_flag("--pods", optarg);
            config.max_pods = n;
            break;
        }
        case 'd': config.state_dir = optarg; break;
        case 'P': config.no_projected = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    /* interLink names a socket plugin "unix:///path" in its SidecarURL. */
    if (url && strncmp(url, "unix://", 7) == 0) {
        config.plugin_socket = url + 7;
        url = NULL;
    }
    if (!url)
        url = config.plugin_socket ? "http://localhost" : config.plugin_url;
    size_t len = strlen(url);
    while (len && url[len - 1] == '/')
        len--;
    if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
        len >= sizeof url_buf)
        return bad_flag("--plugin-url", url);
    memcpy(url_buf, url, len);
    config.plugin_url = url_buf;
    if (config.plugin_socket && !config.plugin_socket[0])
        return bad_flag("--plugin-socket", config.plugin_socket);
    int64_t q;
    if (vk_quantity_milli(config.cpu, &q) < 0 || q <= 0)
        return bad_flag("--cpu", config.cpu);
    if (vk_quantity_value(config.memory, &q) < 0 || q <= 0)
        return bad_flag("--memory", config.memory);
    if (!config.state_dir || !config.state_dir[0]) {
        fprintf(stderr, "vkc-provider-interlink: give --state-dir: interLink cannot list a "
                        "plugin's pods, so the shim keeps them there across restarts\n");
        return 2;
    }
    if (!listen || !listen[0]) {
        fprintf(stderr, "vkc-provider-interlink: no address: give --listen or set "
                        "VKC_PROVIDER_LISTEN\n");
        return 2;
    }

    /* Before any thread: curl's global set-up is not thread-safe. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        vk_error("cannot initialise libcurl", NULL);
        return 1;
    }
    node_init();
    vk_rpc_init();
    int rc = 1;
    provider = vk_provider_new(&ops, NULL);
    if (provider && state_load() == 0 && vk_provider_start(provider, listen) == 0) {
        int err = start_poller();
        if (err) {
            vk_error("cannot start the poller thread", "error=\"%s\"", strerror(err));
            vk_provider_stop(provider);
            vk_provider_wait(provider);
        } else {
            vk_info("interLink shim serving", "listen=%s plugin=%s%s%s", listen,
                    config.plugin_url, config.plugin_socket ? " socket=" : "",
                    config.plugin_socket ? config.plugin_socket : "");
            vk_provider_wait(provider);
            poller_stop();
            rc = 0;
        }
    }
    if (provider)
        vk_provider_free(provider);
    provider = NULL;
    pods_free();
    vk_rpc_shutdown();
    curl_global_cleanup();
    return rc;
}
