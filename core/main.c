/* main.c -- vkc-core: wire the modules together on the libev default loop.
 *
 * Start order: flags, socket directory, gRPC, metrics and refs, the Core
 * callback service (a provider may call it right after its handshake), the
 * Kubernetes side (API clients, node, pods, kubelet API), then the provider
 * supervisor, whose listeners tell every module when the provider comes and
 * goes. With --user, root is given up (privdrop.h) once the Kubernetes
 * side holds its port and keys, before the Core service and the provider
 * start, so both run as that user. SIGTERM or SIGINT stops in reverse: the
 * node writes its stopped state while the provider is stopped (it may
 * still be calling back), then the pods, the kubelet API, the callback
 * service, the worker pools, and gRPC last. A second signal kills the
 * provider at once.
 *
 * Without --kubeconfig and outside a cluster the core runs the provider
 * alone, with no Kubernetes side: handy for developing a provider.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "buf.h"
#include "callback_objects.h"
#include "callback_server.h"
#include "events.h"
#include "flags.h"
#include "http_server.h"
#include "kube_client.h"
#include "kubeconfig.h"
#include "kubelet_api.h"
#include "kubelet_auth.h"
#include "kubelet_streams.h"
#include "log.h"
#include "logval.h"
#include "metrics.h"
#include "metrics_http.h"
#include "node.h"
#include "objcache.h"
#include "pods.h"
#include "privdrop.h"
#include "procstats.h"
#include "refs.h"
#include "rpc.h"
#include "socket_dir.h"
#include "supervisor.h"
#include "tls.h"
#include "version.h"
#include "work.h"

/* An error message (it may quote names from files) as one logfmt value,
 * escaped and never truncated below the size of the buffers that hold it. */
#define ERRVAL(e) logval((char[512]){0}, 512, (e))

#define POOL_THREADS 4
#define POOL_QUEUE 64
/* The kubelet API's own pool: slow /stats/summary calls must not delay the
 * supervisor's pings and get the provider killed as hung. */
#define API_POOL_THREADS 2
#define API_POOL_QUEUE 16

typedef struct core {
    struct ev_loop *loop;
    vk_pool *pool, *api_pool;
    metrics *metrics;
    procstats *procstats;
    refs *refs;
    callback_server *callbacks;
    supervisor *supervisor;

    /* The Kubernetes side; all NULL in provider-only mode. */
    kube_config kcfg;
    struct kube_client *kube;      /* pods, events, objects, reviews */
    struct kube_client *heartbeat; /* node status and Lease: never rate limited */
    node *node;
    objcache *objcache;
    events *events;
    pods *pods;
    SSL_CTX *tls;
    kubelet_auth *auth;
    kubelet_api *api;
    kubelet_streams *streams;
    http_server *http;
    metrics_http *metrics_http; /* --metrics-addr, NULL without */

    const privdrop_user *user; /* --user, NULL without */

    ev_signal sigterm, sigint;
    int stopping;
    int waiting;   /* stops not yet done: supervisor, node */
    int exit_code;
} core;

static void stop_done(void *ud)
{
    core *c = ud;
    if (--c->waiting == 0)
        ev_break(c->loop, EVBREAK_ALL);
}

static void shut_down(core *c, const char *why)
{
    if (c->stopping) {
        supervisor_stop(c->supervisor, stop_done, c); /* second signal: kill now */
        return;
    }
    vk_info("shutting down", "reason=%s", why);
    c->stopping = 1;
    c->waiting = c->node ? 2 : 1;
    if (c->node)
        node_stop(c->node, stop_done, c);
    supervisor_stop(c->supervisor, stop_done, c);
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

/* Credentials from --kubeconfig, else the pod's service account when
 * running in a cluster. 1 when found, 0 for provider-only mode, -1 on
 * error (logged). */
static int load_kube_config(core *c, const flags *f)
{
    char err[512];
    int rc;
    if (f->kubeconfig)
        rc = kube_config_load_file(&c->kcfg, f->kubeconfig, NULL, err, sizeof err);
    else if (getenv("KUBERNETES_SERVICE_HOST"))
        rc = kube_config_in_cluster(&c->kcfg, NULL, err, sizeof err);
    else
        return 0;
    if (rc < 0) {
        vk_error("cannot load API server credentials", "error=%s", ERRVAL(err));
        return -1;
    }
    return 1;
}

static int start_clients(core *c, const flags *f)
{
    char err[512];
    metric *requests = metrics_counter(c->metrics, "kube_api_requests_total",
        "Finished Kubernetes API requests by client (main: rate limited; heartbeat: node "
        "status and Lease), verb and HTTP code (0: no response).", "client,verb,code");
    metric *waiting = metrics_gauge(c->metrics, "kube_api_requests_waiting",
        "Kubernetes API requests waiting in the client's FIFO (rate limit or in-flight cap).",
        "client");
    metric *in_flight = metrics_gauge(c->metrics, "kube_api_requests_in_flight",
        "Kubernetes API requests (not watches) sent and not answered yet.", "client");
    metric *rejected = metrics_counter(c->metrics, "kube_api_requests_rejected_total",
        "Kubernetes API requests refused at once because the client's FIFO was full.", "client");
    metric *limits = metrics_gauge(c->metrics, "kube_api_request_limit",
        "The bounds of kube_api_requests_waiting and kube_api_requests_in_flight.",
        "client,bound");
    struct kube_client_opts opts = {.qps = f->kube_api_qps, .burst = (unsigned)f->kube_api_burst,
                                    .requests = requests, .name = "main", .waiting = waiting,
                                    .in_flight = in_flight, .rejected = rejected, .limits = limits};
    struct kube_client_opts beat = opts;
    beat.qps = -1;
    beat.burst = 0;
    beat.name = "heartbeat";
    c->kube = kube_client_new(c->loop, &c->kcfg, &opts, err, sizeof err);
    if (c->kube)
        c->heartbeat = kube_client_new(c->loop, &c->kcfg, &beat, err, sizeof err);
    if (!c->kube || !c->heartbeat) {
        vk_error("cannot create the API client", "error=%s", ERRVAL(err));
        return -1;
    }
    return 0;
}

static int start_node(core *c, const flags *f)
{
    char err[512];
    node_config nc = {
        .kube = c->heartbeat,
        .pool = c->pool,
        .metrics = c->metrics,
        .name = f->node_name,
        .labels = f->node_labels,
        .disable_taint = f->disable_taint,
        .provider_name = f->provider_name,
        .kubelet_port = f->listen_port,
        .node_ip = f->node_ip,
    };
    c->node = node_new(&nc, err, sizeof err);
    if (!c->node) {
        vk_error("cannot configure the node", "error=%s", ERRVAL(err));
        return -1;
    }
    supervisor_listener l = node_listener(c->node);
    return supervisor_listen(c->supervisor, &l);
}

static int start_pods(core *c, const flags *f)
{
    events_config ec = {.kube = c->kube, .node_name = f->node_name, .metrics = c->metrics};
    c->objcache = objcache_new(c->kube, c->metrics);
    c->events = events_new(&ec);
    if (!c->objcache || !c->events)
        return -1;
    pods_config pc = {
        .node_name = f->node_name,
        .kube = c->kube,
        .refs = c->refs,
        .objcache = c->objcache,
        .events = c->events,
        .metrics = c->metrics,
        .workers = (unsigned)f->pod_sync_workers,
    };
    c->pods = pods_start(&pc);
    if (!c->pods)
        return -1;
    supervisor_listener l = pods_listener(c->pods);
    return supervisor_listen(c->supervisor, &l);
}

static int start_kubelet_api(core *c, const flags *f)
{
    char err[512];
    const char *hosts[3] = {f->node_name, "127.0.0.1"};
    size_t n_hosts = 2;
    if (f->node_ip)
        hosts[n_hosts++] = f->node_ip;
    tls_config tc = {
        .cert_file = f->tls_cert_file,
        .key_file = f->tls_key_file,
        .client_ca_file = f->client_ca_file,
        .hosts = hosts,
        .n_hosts = n_hosts,
    };
    c->tls = tls_server_context(&tc, err, sizeof err);
    if (!c->tls) {
        vk_error("cannot set up TLS for the kubelet API", "error=%s", ERRVAL(err));
        return -1;
    }
    kubelet_auth_config ac = {
        .node_name = f->node_name,
        .anonymous = f->anonymous_auth,
        .token_webhook = f->token_webhook,
        .mode = f->authz_webhook ? KUBELET_AUTHZ_WEBHOOK : KUBELET_AUTHZ_ALWAYS_ALLOW,
        .kube = c->kube,
    };
    c->auth = kubelet_auth_new(&ac, err, sizeof err);
    if (!c->auth) {
        vk_error("cannot set up kubelet API authentication", "error=%s", ERRVAL(err));
        return -1;
    }
    c->api_pool = vk_pool_new(c->loop, API_POOL_THREADS, API_POOL_QUEUE);
    kubelet_api_config kc = {
        .loop = c->loop,
        .node_name = f->node_name,
        .pool = c->api_pool,
        .metrics = c->metrics,
        .auth = c->auth,
        .pods = pods_list_json,
        .pod = pods_get_json,
        .pods_ud = c->pods,
    };
    c->api = c->api_pool ? kubelet_api_new(&kc) : NULL;
    c->streams = kubelet_streams_new(c->loop);
    if (!c->api || !c->streams)
        return -1;
    kubelet_streams_set_idle_timeout(c->streams, f->streaming_idle_timeout_ms / 1000.0);
    kubelet_streams_set_metrics(c->streams, c->metrics);
    kubelet_api_set_upgrade(c->api, kubelet_streams_upgrade, c->streams);
    supervisor_listener l = kubelet_api_listener(c->api);
    if (supervisor_listen(c->supervisor, &l) < 0)
        return -1;
    http_server_config hc = {
        .loop = c->loop,
        .port = f->listen_port,
        .tls = c->tls,
        .handler = kubelet_api_handle,
        .ud = c->api,
    };
    c->http = http_server_new(&hc, err, sizeof err);
    if (!c->http) {
        vk_error("cannot serve the kubelet API", "port=%d error=%s", f->listen_port, ERRVAL(err));
        return -1;
    }
    return 0;
}

/* Everything the Kubernetes side needs, in dependency order. */
static int start_kubernetes(core *c, const flags *f)
{
    if (start_clients(c, f) < 0 || start_node(c, f) < 0)
        return -1;
    if (start_pods(c, f) < 0) {
        vk_error("cannot start the pod controller", NULL);
        return -1;
    }
    return start_kubelet_api(c, f);
}

static void stop_kubernetes(core *c)
{
    http_server_free(c->http); /* ends every connection */
    kubelet_streams_free(c->streams);
    if (c->pods)
        pods_stop(c->pods);
    if (c->api_pool)
        vk_pool_free(c->api_pool);
    kubelet_api_free(c->api);
    kubelet_auth_free(c->auth);
    if (c->tls)
        SSL_CTX_free(c->tls);
}

static void free_kubernetes(core *c)
{
    node_free(c->node);
    events_free(c->events);
    objcache_free(c->objcache);
    kube_client_free(c->heartbeat);
    kube_client_free(c->kube);
    kube_config_free(&c->kcfg);
}

static int run(core *c, const flags *f)
{
    char *provider_sock = path_in(f->socket_dir, "provider.sock", "");
    char *core_target = path_in(f->socket_dir, "core.sock", "unix:");
    char dir_v[LOGVAL_MAX], src_v[LOGVAL_MAX];
    int kubernetes = 0;
    if (!provider_sock || !core_target) {
        free(provider_sock);
        free(core_target);
        vk_error("out of memory", "step=%s", "paths");
        return 1;
    }

    c->metrics = metrics_new();
    c->procstats = c->metrics ? procstats_new(c->metrics) : NULL;
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
    if (!c->metrics || !c->procstats || !c->refs || !c->pool) {
        vk_error("out of memory", "step=%s", "registries");
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

    kubernetes = load_kube_config(c, f);
    if (kubernetes < 0 || (kubernetes && start_kubernetes(c, f) < 0)) {
        c->exit_code = 1;
        goto out;
    }
    if (!kubernetes)
        vk_warn("no --kubeconfig and not in a cluster: running the provider only", NULL);
    if (f->metrics_addr) {
        char err[512];
        c->metrics_http = metrics_http_new(c->loop, f->metrics_addr, c->metrics, err, sizeof err);
        if (!c->metrics_http) {
            vk_error("cannot serve metrics", "addr=%s error=%s",
                     logval(dir_v, sizeof dir_v, f->metrics_addr), ERRVAL(err));
            c->exit_code = 1;
            goto out;
        }
    }

    /* Root's work is done: the kubelet port is bound, every key file read,
     * the socket directory made. The Core service's socket and the
     * provider are the user's. A token file is read again at each use. */
    const char *must_read[] = {c->kcfg.token_file, NULL};
    if (c->user && privdrop_drop(c->user, must_read) < 0) {
        c->exit_code = 1;
        goto out;
    }

    c->callbacks = callback_server_start(core_target, f->node_name, c->refs, requests);
    if (!c->callbacks) {
        vk_error("cannot serve the Core service", "addr=%s", logval(dir_v, sizeof dir_v, core_target));
        c->exit_code = 1;
        goto out;
    }
    if (kubernetes) {
        callback_server_serve_objects(c->callbacks, c->objcache, c->events);
        if (callback_server_serve_tokens(c->callbacks, c->kube) < 0) {
            vk_error("out of memory", "step=%s", "tokens");
            c->exit_code = 1;
            goto out;
        }
    }

    ev_signal_init(&c->sigterm, on_signal, SIGTERM);
    ev_signal_init(&c->sigint, on_signal, SIGINT);
    c->sigterm.data = c->sigint.data = c;
    ev_signal_start(c->loop, &c->sigterm);
    ev_signal_start(c->loop, &c->sigint);

    vk_info("core started", "version=%s node=%s socket_dir=%s mode=%s kubernetes=%s",
            VKC_CORE_VERSION, f->node_name, logval(dir_v, sizeof dir_v, f->socket_dir),
            f->provider_argv ? "spawn" : "socket", kubernetes ? logval(src_v, sizeof src_v, c->kcfg.source) : "none");
    if (c->node)
        node_start(c->node);
    supervisor_start(c->supervisor);
    ev_run(c->loop, 0);

    ev_signal_stop(c->loop, &c->sigterm);
    ev_signal_stop(c->loop, &c->sigint);
out:
    metrics_http_free(c->metrics_http);
    stop_kubernetes(c);
    callback_server_stop(c->callbacks);
    if (c->pool)
        vk_pool_free(c->pool); /* runs the supervisor's and the node's last completions */
    supervisor_free(c->supervisor);
    free_kubernetes(c);
    refs_free(c->refs);
    metrics_free(c->metrics);
    procstats_free(c->procstats);
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
    privdrop_user user = {0};
    if (f.user) {
        char err[512];
        if (privdrop_parse(f.user, &user, err, sizeof err) < 0) {
            fprintf(stderr, "vkc-core: %s\n", err);
            flags_free(&f);
            return 2;
        }
    } else if (geteuid() == 0) {
        vk_warn("running as root", "hint=\"give --user to drop root once started\"");
    }
    /* A provider or client that closes its socket mid-write must not kill
     * the core (libcurl and OpenSSL write with SIGPIPE unblocked). */
    signal(SIGPIPE, SIG_IGN);
    if ((f.user ? privdrop_socket_dir(f.socket_dir, &user) : socket_dir_prepare(f.socket_dir)) < 0) {
        privdrop_user_free(&user);
        flags_free(&f);
        return 1;
    }

    core c = {.loop = ev_default_loop(0), .user = f.user ? &user : NULL};
    if (!c.loop) {
        vk_error("cannot create the event loop", "backend=%s", "libev");
        privdrop_user_free(&user);
        flags_free(&f);
        return 1;
    }
    vk_rpc_init();
    int rc = run(&c, &f);
    vk_rpc_shutdown();
    ev_loop_destroy(c.loop);
    vk_info("core stopped", "status=%d", rc);
    privdrop_user_free(&user);
    flags_free(&f);
    return rc;
}
