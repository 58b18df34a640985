/* main.c -- vkc-core: wire the modules together on the libev default loop.
 *
 * Start order: flags, socket directory, gRPC, metrics and refs, the Core
 * callback service (a provider may call it right after its handshake), then
 * the provider supervisor. SIGTERM or SIGINT stops in reverse: the provider
 * first (it may still be calling back), then the callback service, the
 * worker pool, and gRPC last. A second signal kills the provider at once.
 *
 * The Kubernetes side (API client, node registration, pod reconciler,
 * kubelet API) joins here in a later milestone, each as a module that
 * registers a supervisor listener.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ev.h>

#include "buf.h"
#include "callback_server.h"
#include "flags.h"
#include "log.h"
#include "logval.h"
#include "metrics.h"
#include "refs.h"
#include "rpc.h"
#include "socket_dir.h"
#include "supervisor.h"
#include "version.h"
#include "work.h"

#define POOL_THREADS 4
#define POOL_QUEUE 64

typedef struct core {
    struct ev_loop *loop;
    vk_pool *pool;
    metrics *metrics;
    refs *refs;
    callback_server *callbacks;
    supervisor *supervisor;
    ev_signal sigterm, sigint;
    int stopping;
    int exit_code;
} core;

static void provider_gone(void *ud)
{
    core *c = ud;
    ev_break(c->loop, EVBREAK_ALL);
}

static void shut_down(core *c, const char *why)
{
    if (!c->stopping)
        vk_info("shutting down", "reason=%s", why);
    c->stopping = 1;
    supervisor_stop(c->supervisor, provider_gone, c);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop;
    (void)revents;
    shut_down(w->data, sigabbrev_np(w->signum));
}

static void on_fatal(void *ud)
{
    core *c = ud;
    c->exit_code = 1;
    shut_down(c, "provider-incompatible");
}

static char *path_in(const char *dir, const char *name, const char *prefix)
{
    vk_buf b = VK_BUF_INIT;
    if (vk_buf_printf(&b, "%s%s/%s", prefix, dir, name) < 0) {
        vk_buf_free(&b);
        return NULL;
    }
    return vk_buf_steal(&b, NULL);
}

static int run(core *c, const flags *f)
{
    char *provider_sock = path_in(f->socket_dir, "provider.sock", "");
    char *core_target = path_in(f->socket_dir, "core.sock", "unix:");
    char dir_v[LOGVAL_MAX];
    if (!provider_sock || !core_target) {
        free(provider_sock);
        free(core_target);
        vk_error("out of memory", "step=%s", "paths");
        return 1;
    }

    c->metrics = metrics_new();
    metric *restarts = metrics_counter(c->metrics, "provider_restarts_total",
        "Times the provider was restarted (or, with --provider-socket, reconnected).", NULL);
    metric *up = metrics_gauge(c->metrics, "provider_up",
        "1 while the provider is handshaken and answering pings.", NULL);
    metric *rpc_errors = metrics_counter(c->metrics, "provider_rpc_errors_total",
        "Provider calls that ended with an error status.", "method");
    metric *requests = metrics_counter(c->metrics, "callback_requests_total",
        "Core service requests from the provider, by result.", "method,code");
    c->refs = refs_new();
    c->pool = vk_pool_new(c->loop, POOL_THREADS, POOL_QUEUE);
    if (!c->metrics || !c->refs || !c->pool) {
        vk_error("out of memory", "step=%s", "registries");
        c->exit_code = 1;
        goto out;
    }

    c->callbacks = callback_server_start(core_target, f->node_name, c->refs, requests);
    if (!c->callbacks) {
        vk_error("cannot serve the Core service", "addr=%s", logval(dir_v, sizeof dir_v, core_target));
        c->exit_code = 1;
        goto out;
    }

    supervisor_config cfg = {
        .loop = c->loop,
        .pool = c->pool,
        .argv = f->provider_argv,
        .path = f->provider_path,
        .provider_config = f->provider_config,
        .socket_path = f->provider_socket ? f->provider_socket : provider_sock,
        .core_target = core_target,
        .node_name = f->node_name,
        .expected_name = f->provider_name,
        .ping_interval_ms = f->ping_interval_ms,
        .ping_timeout_ms = f->ping_timeout_ms,
        .max_backoff_ms = f->restart_max_backoff_ms,
        .stop_timeout_ms = f->stop_timeout_ms,
        .restarts = restarts,
        .up = up,
        .rpc_errors = rpc_errors,
        .fatal = on_fatal,
        .fatal_ud = c,
    };
    c->supervisor = supervisor_new(&cfg);
    if (!c->supervisor) {
        vk_error("out of memory", "step=%s", "supervisor");
        c->exit_code = 1;
        goto out;
    }

    ev_signal_init(&c->sigterm, on_signal, SIGTERM);
    ev_signal_init(&c->sigint, on_signal, SIGINT);
    c->sigterm.data = c->sigint.data = c;
    ev_signal_start(c->loop, &c->sigterm);
    ev_signal_start(c->loop, &c->sigint);

    vk_info("core started", "version=%s node=%s socket_dir=%s mode=%s", VKC_CORE_VERSION,
            f->node_name, logval(dir_v, sizeof dir_v, f->socket_dir),
            f->provider_argv ? "spawn" : "socket");
    supervisor_start(c->supervisor);
    ev_run(c->loop, 0);

    ev_signal_stop(c->loop, &c->sigterm);
    ev_signal_stop(c->loop, &c->sigint);
out:
    callback_server_stop(c->callbacks);
    if (c->pool)
        vk_pool_free(c->pool); /* runs the supervisor's last completions */
    supervisor_free(c->supervisor);
    refs_free(c->refs);
    metrics_free(c->metrics);
    free(provider_sock);
    free(core_target);
    return c->exit_code;
}

int main(int argc, char **argv)
{
    flags f;
    enum flags_result fr = flags_parse(&f, argc, argv, stdout, stderr);
    if (fr != FLAGS_RUN) {
        flags_free(&f);
        return fr == FLAGS_EXIT_OK ? 0 : 2;
    }
    vk_log_set_component("core");
    /* A provider that closes its socket mid-write must not kill the core. */
    signal(SIGPIPE, SIG_IGN);
    if (socket_dir_prepare(f.socket_dir) < 0) {
        flags_free(&f);
        return 1;
    }

    core c = {.loop = ev_default_loop(0)};
    if (!c.loop) {
        vk_error("cannot create the event loop", "backend=%s", "libev");
        flags_free(&f);
        return 1;
    }
    vk_rpc_init();
    int rc = run(&c, &f);
    vk_rpc_shutdown();
    ev_loop_destroy(c.loop);
    vk_info("core stopped", "status=%d", rc);
    flags_free(&f);
    return rc;
}
