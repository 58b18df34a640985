/* main.c -- vkc-provider-mock: an in-memory provider with scriptable faults.
 *
 * The SDK runs every callback on a thread of its own. One more thread, the
 * ticker, applies timed pod transitions (and pushes them to the core) and
 * reloads the fault file on SIGHUP; it sleeps in poll() on a pipe that
 * mock_wake() and the SIGHUP handler write to.
 *
 * The provider is driven with vk_provider_new/start/wait/free rather than
 * vk_provider_main because the ticker calls vk_provider_notify_pod: it must
 * be stopped after the provider stops serving and before it is freed.
 */
#include "mock.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

mock_config config = {
    .cpu = "20",
    .memory = "100Gi",
    .max_pods = 10000,
    .start_delay_ms = 0,
    .log_interval_ms = 1000,
};
vk_provider *provider;

static int wake_pipe[2] = {-1, -1};
static volatile sig_atomic_t reload_requested;
static atomic_bool stopping;

static const vk_provider_ops ops = {
    .name = "mock",
    .version = MOCK_VERSION,
    .create_pod = mock_create_pod,
    .update_pod = mock_update_pod,
    .delete_pod = mock_delete_pod,
    .get_pod = mock_get_pod,
    .get_pod_status = mock_get_pod_status,
    .get_pods = mock_get_pods,
    .get_node = mock_get_node,
    .notifies_pod_status = true,
    .notifies_node = true,
    .get_container_logs = mock_container_logs,
    .exec = mock_exec,
    .attach = mock_attach,
    .port_forward = mock_port_forward,
    .get_stats_summary = mock_stats_summary,
    .get_metrics_resource = mock_metrics_resource,
    .before_call = mock_before_call,
};

int64_t mock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

int mock_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

void mock_wake(void)
{
    int saved = errno;
    char c = 0;
    ssize_t n = write(wake_pipe[1], &c, 1); /* a full pipe already wakes */
    (void)n;
    errno = saved;
}

static void on_sighup(int sig)
{
    (void)sig;
    reload_requested = 1;
    mock_wake();
}

static void *ticker_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stopping)) {
        if (reload_requested) {
            reload_requested = 0;
            faults_reload();
        }
        int64_t next = pods_tick(mock_now_ns());
        int timeout = -1;
        if (next) {
            int64_t ms = (next - mock_now_ns() + NS_PER_MS - 1) / NS_PER_MS;
            timeout = ms < 0 ? 0 : ms > INT_MAX ? INT_MAX : (int)ms;
        }
        struct pollfd pfd = {.fd = wake_pipe[0], .events = POLLIN};
        if (poll(&pfd, 1, timeout) > 0) {
            char buf[64];
            while (read(wake_pipe[0], buf, sizeof buf) > 0)
                ;
        }
    }
    return NULL;
}

/* The ticker gets SIGHUP and never SIGINT/SIGTERM, which belong to the SDK's
 * vk_provider_wait whatever way it waits for them. */
static int start_ticker(pthread_t *t)
{
    sigset_t old, set;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    set = old;
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigdelset(&set, SIGHUP);
    pthread_sigmask(SIG_SETMASK, &set, NULL);
    int rc = pthread_create(t, NULL, ticker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vkc-provider-mock [options]\n"
        "  --listen ADDR        serve on ADDR (default: $VKC_PROVIDER_LISTEN)\n"
        "  --log-level LEVEL    debug, info, warn or error (default: info)\n"
        "  --cpu QUANTITY       node cpu capacity (default: 20)\n"
        "  --memory QUANTITY    node memory capacity (default: 100Gi)\n"
        "  --pods N             node pod capacity (default: 10000)\n"
        "  --start-delay MS     Pending -> Running delay (default: $VKC_MOCK_START_DELAY_MS or 0)\n"
        "  --log-interval MS    one log line per container every MS (default: 1000)\n"
        "  --faults FILE        fault file, reloaded on SIGHUP (default: $VKC_MOCK_FAULTS)\n"
        "  --help               this text\n");
}

static int bad_flag(const char *flag, const char *value)
{
    fprintf(stderr, "vkc-provider-mock: bad value for %s: '%s'\n", flag, value);
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"log-level", required_argument, NULL, 'v'},
        {"cpu", required_argument, NULL, 'c'},
        {"memory", required_argument, NULL, 'm'},
        {"pods", required_argument, NULL, 'p'},
        {"start-delay", required_argument, NULL, 'd'},
        {"log-interval", required_argument, NULL, 'i'},
        {"faults", required_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = getenv("VKC_PROVIDER_LISTEN");
    const char *faults = getenv("VKC_MOCK_FAULTS");
    const char *delay = getenv("VKC_MOCK_START_DELAY_MS");
    const char *flag = "VKC_MOCK_START_DELAY_MS";
    int64_t cpu_milli;
    int opt;

    config.started_ns = mock_now_ns();
    vk_log_set_component("mock");
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'l': listen = optarg; break;
        case 'v':
            if (vk_log_set_level_name(optarg) < 0)
                return bad_flag("--log-level", optarg);
            break;
        case 'c': config.cpu = optarg; break;
        case 'm': config.memory = optarg; break;
        case 'p':
            if (mock_parse_int(optarg, 1, INT32_MAX, &config.max_pods) < 0)
                return bad_flag("--pods", optarg);
            break;
        case 'd': delay = optarg; flag = "--start-delay"; break;
        case 'i':
            if (mock_parse_int(optarg, 1, 3600000, &config.log_interval_ms) < 0)
                return bad_flag("--log-interval", optarg);
            break;
        case 'f': faults = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (delay && delay[0] && mock_parse_int(delay, 0, 3600000, &config.start_delay_ms) < 0)
        return bad_flag(flag, delay);
    if (vk_quantity_milli(config.cpu, &cpu_milli) < 0 || cpu_milli <= 0)
        return bad_flag("--cpu", config.cpu);
    if (vk_quantity_value(config.memory, &config.memory_bytes) < 0 || config.memory_bytes <= 0)
        return bad_flag("--memory", config.memory);
    if (!listen || !listen[0]) {
        fprintf(stderr, "vkc-provider-mock: no address: give --listen or set VKC_PROVIDER_LISTEN\n");
        return 2;
    }
    if (faults_load(faults && faults[0] ? faults : NULL) < 0)
        return 2;
    node_init();

    if (pipe2(wake_pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        vk_error("cannot create a pipe", "error=\"%s\"", strerror(errno));
        faults_free();
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sighup;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);

    int rc = 1;
    vk_rpc_init();
    provider = vk_provider_new(&ops, NULL);
    pthread_t ticker;
    if (provider && vk_provider_start(provider, listen) == 0) {
        int err = start_ticker(&ticker);
        if (err) {
            vk_error("cannot start the ticker thread", "error=\"%s\"", strerror(err));
            vk_provider_stop(provider);
            vk_provider_wait(provider);
        } else {
            vk_info("mock provider serving", "listen=%s start_delay_ms=%lld",
                    listen, (long long)config.start_delay_ms);
            vk_provider_wait(provider);
            atomic_store(&stopping, true);
            mock_wake();
            pthread_join(ticker, NULL);
            rc = 0;
        }
    }
    if (provider)
        vk_provider_free(provider);
    provider = NULL;
    pods_free();
    faults_free();
    vk_rpc_shutdown();
    close(wake_pipe[0]);
    close(wake_pipe[1]);
    return rc;
}
