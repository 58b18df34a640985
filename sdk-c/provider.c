/* provider.c -- the Provider gRPC service: start and stop, call dispatch,
 * the unary RPCs, and vk_provider_main.
 *
 * Every RPC enters through dispatch(), which builds the call context, runs
 * the before_call hook, answers UNIMPLEMENTED for callbacks left NULL and
 * hands the call to the method's serve function. A serve function ends the
 * call itself. The streaming ones live in provider_stream.c and
 * provider_watch.c.
 */
#include "provider_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "log.h"

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler needs a lock-free int");

/* Concurrent calls; each holds a worker thread while it runs. */
#define MAX_CALLS 256
/* How long running calls get to end when the provider stops. */
#define STOP_GRACE_MS 3000

static void serve_handshake(vk_ctx *ctx);
static void serve_ping(vk_ctx *ctx);
static void serve_create_pod(vk_ctx *ctx);
static void serve_update_pod(vk_ctx *ctx);
static void serve_delete_pod(vk_ctx *ctx);
static void serve_get_pod(vk_ctx *ctx);
static void serve_get_pod_status(vk_ctx *ctx);
static void serve_get_pods(vk_ctx *ctx);
static void serve_get_stats_summary(vk_ctx *ctx);
static void serve_get_metrics_resource(vk_ctx *ctx);

static const struct method {
    const char *name; /* as in the service, also the capability name */
    bool optional;    /* declared in the handshake when implemented */
    void (*serve)(vk_ctx *ctx);
} methods[RPC_COUNT] = {
    [RPC_HANDSHAKE] = {"Handshake", false, serve_handshake},
    [RPC_PING] = {"Ping", false, serve_ping},
    [RPC_CREATE_POD] = {"CreatePod", false, serve_create_pod},
    [RPC_UPDATE_POD] = {"UpdatePod", false, serve_update_pod},
    [RPC_DELETE_POD] = {"DeletePod", false, serve_delete_pod},
    [RPC_GET_POD] = {"GetPod", false, serve_get_pod},
    [RPC_GET_POD_STATUS] = {"GetPodStatus", false, serve_get_pod_status},
    [RPC_GET_PODS] = {"GetPods", false, serve_get_pods},
    [RPC_WATCH_POD_STATUS] = {"WatchPodStatus", true, serve_watch_pod_status},
    [RPC_GET_NODE] = {"GetNode", false, serve_get_node},
    [RPC_WATCH_NODE] = {"WatchNode", true, serve_watch_node},
    [RPC_GET_CONTAINER_LOGS] = {"GetContainerLogs", true, serve_container_logs},
    [RPC_EXEC] = {"ExecInContainer", true, serve_exec},
    [RPC_ATTACH] = {"AttachToContainer", true, serve_attach},
    [RPC_PORT_FORWARD] = {"PortForward", true, serve_port_forward},
    [RPC_GET_STATS_SUMMARY] = {"GetStatsSummary", true, serve_get_stats_summary},
    [RPC_GET_METRICS_RESOURCE] = {"GetMetricsResource", true, serve_get_metrics_resource},
};

static bool implemented(const vk_provider_ops *o, enum vk_rpc rpc)
{
    switch (rpc) {
    case RPC_HANDSHAKE:
    case RPC_PING: return true;
    case RPC_CREATE_POD: return o->create_pod != NULL;
    case RPC_UPDATE_POD: return o->update_pod != NULL;
    case RPC_DELETE_POD: return o->delete_pod != NULL;
    case RPC_GET_POD: return o->get_pod != NULL;
    case RPC_GET_POD_STATUS: return o->get_pod_status != NULL;
    case RPC_GET_PODS: return o->get_pods != NULL;
    case RPC_WATCH_POD_STATUS: return o->notifies_pod_status;
    case RPC_GET_NODE: return o->get_node != NULL;
    case RPC_WATCH_NODE: return o->notifies_node && o->get_node != NULL;
    case RPC_GET_CONTAINER_LOGS: return o->get_container_logs != NULL;
    case RPC_EXEC: return o->exec != NULL;
    case RPC_ATTACH: return o->attach != NULL;
    case RPC_PORT_FORWARD: return o->port_forward != NULL;
    case RPC_GET_STATS_SUMMARY: return o->get_stats_summary != NULL;
    case RPC_GET_METRICS_RESOURCE: return o->get_metrics_resource != NULL;
    case RPC_COUNT: break;
    }
    return false;
}

/* ---- call context ------------------------------------------------------- */

int vk_ctx_error(vk_ctx *ctx, int code, const char *fmt, ...)
{
    char *msg = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    free(ctx->error);
    ctx->error = msg;
    return code;
}

bool vk_ctx_cancelled(vk_ctx *ctx) { return vk_scall_cancelled(ctx->call, 0); }
const char *vk_ctx_method(const vk_ctx *ctx) { return vk_scall_method(ctx->call); }
vk_provider *vk_ctx_provider(vk_ctx *ctx) { return ctx->p; }
void *vk_ctx_userdata(vk_ctx *ctx) { return ctx->p->ud; }

/* Codes that are part of normal operation: the core expects them. NOT_FOUND
 * in particular is how GetPodStatus answers for a pod being created or
 * deleted, many times a minute, so it is logged at debug only; its message
 * (see provider_pod_code) is what tells the core which pod. */
static bool routine_failure(int code)
{
    return code == VK_CANCELLED || code == VK_NOT_FOUND ||
           code == VK_ALREADY_EXISTS || code == VK_UNIMPLEMENTED;
}

/* " reason=\"" and 80 characters of it, the closing quote and NUL. */
#define REASON_MAX 96

/* " reason=\"...\"" for the log line. Only a bad request gets one: what is
 * wrong with it (pod JSON that does not parse, no pod named) is what the
 * operator needs, while other messages may quote pod documents. The text
 * comes from the peer's input, so quotes, backslashes and control
 * characters are blanked and it is cut short: it cannot forge a line. */
static void log_reason(char out[REASON_MAX], const char *msg)
{
    int n = snprintf(out, REASON_MAX - 1, " reason=\"%.80s", msg);
    if (n < 0) {
        out[0] = '\0';
        return;
    }
    for (int i = (int)sizeof " reason=\"" - 1; i < n; i++)
        if (out[i] == '"' || out[i] == '\\' || (unsigned char)out[i] < 0x20)
            out[i] = '_';
    out[n] = '"';
    out[n + 1] = '\0';
}

int provider_finish(vk_ctx *ctx, int code)
{
    if (code < VK_OK || code > VK_UNAUTHENTICATED) {
        /* A callback returned -1 or the like: say so rather than sending a
         * code no client understands. */
        vk_ctx_error(ctx, VK_INTERNAL, "provider returned the invalid status %d", code);
        code = VK_INTERNAL;
    }
    char fallback[128];
    const char *msg = ctx->error;
    if (code != VK_OK && msg == NULL) {
        snprintf(fallback, sizeof fallback, "%s failed: %s", ctx->name,
                 vk_status_code_name(code));
        msg = fallback;
    }
    if (code != VK_OK) {
        /* While stopping, failures are what stopping does. */
        bool quiet = routine_failure(code) || atomic_load(&ctx->p->stopping);
        char reason[REASON_MAX] = "";
        if (code == VK_INVALID_ARGUMENT)
            log_reason(reason, msg);
        vk_log(quiet ? VK_LOG_DEBUG : VK_LOG_WARN, "rpc failed", "method=%s code=%s%s",
               ctx->name, vk_status_code_name(code), reason);
    }
    vk_scall_finish(ctx->call, code, code == VK_OK ? NULL : msg);
    return code;
}

void provider_reply(vk_ctx *ctx, const ProtobufCMessage *msg)
{
    if (vk_scall_reply(ctx->call, msg) < 0)
        vk_debug("reply not delivered", "method=%s", ctx->name);
}

void *provider_recv(vk_ctx *ctx, const ProtobufCMessageDescriptor *desc)
{
    ProtobufCMessage *msg = NULL;
    int rc = vk_scall_recv(ctx->call, desc, &msg);
    if (rc == 1)
        return msg;
    if (rc == 0 && vk_scall_cancelled(ctx->call, 0))
        provider_finish(ctx, VK_CANCELLED);
    else if (rc == 0)
        provider_finish(ctx, vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                                          "%s request missing", ctx->name));
    /* rc < 0: vk_scall_recv ended the call with INVALID_ARGUMENT and logged
     * which message did not decode; finishing here would log it again. */
    return NULL;
}

int provider_pod_code(vk_ctx *ctx, int code, const char *ns, const char *name)
{
    if (code == VK_NOT_FOUND && ctx->error == NULL)
        vk_ctx_error(ctx, code, "pod %s/%s not found", ns, name);
    return code;
}

int provider_check_ref(vk_ctx *ctx, const Vkc__Provider__V1__PodRef *ref)
{
    if (ref != NULL && ref->name[0] != '\0')
        return 0;
    provider_finish(ctx, vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                                      "%s request names no pod", ctx->name));
    return -1;
}

static void dispatch(vk_scall *call, void *ud)
{
    const struct vk_route *r = ud;
    const struct method *m = &methods[r->rpc];
    vk_ctx ctx = {.p = r->p, .call = call, .name = m->name};
    const vk_provider_ops *ops = ctx.p->ops;
    int code = VK_OK;

    if (ops->before_call != NULL)
        code = ops->before_call(&ctx, m->name);
    if (code == VK_OK) {
        free(ctx.error); /* a message without a failure means nothing */
        ctx.error = NULL;
        if (!implemented(ops, r->rpc))
            code = vk_ctx_error(&ctx, VK_UNIMPLEMENTED,
                                "provider %s does not implement %s",
                                ops->name ? ops->name : "", m->name);
    }
    if (code == VK_OK)
        m->serve(&ctx);
    else
        provider_finish(&ctx, code);
    free(ctx.error);
}

/* ---- unary RPCs --------------------------------------------------------- */

static void serve_handshake(vk_ctx *ctx)
{
    Vkc__Provider__V1__HandshakeRequest *req =
        provider_recv(ctx, &vkc__provider__v1__handshake_request__descriptor);
    if (req == NULL)
        return;
    vk_provider *p = ctx->p;
    if (req->protocol_version != VKC__PROVIDER__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT)
        vk_warn("core speaks another protocol version", "core=%u provider=%d",
                req->protocol_version,
                VKC__PROVIDER__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT);
    if (req->core_target[0] != '\0' && core_set_target(&p->core, req->core_target) < 0) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "out of memory"));
        goto out;
    }
    vk_info("handshake", "node=%s core_version=%s", req->node_name, req->core_version);

    Vkc__Provider__V1__HandshakeResponse resp = VKC__PROVIDER__V1__HANDSHAKE_RESPONSE__INIT;
    resp.protocol_version = VKC__PROVIDER__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    resp.provider_name = (char *)(p->ops->name ? p->ops->name : "");
    resp.provider_version = (char *)(p->ops->version ? p->ops->version : "");
    resp.n_capabilities = p->n_caps;
    resp.capabilities = (char **)p->caps;
    provider_reply(ctx, &resp.base);
out:
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void serve_ping(vk_ctx *ctx)
{
    Vkc__Provider__V1__PingRequest *req =
        provider_recv(ctx, &vkc__provider__v1__ping_request__descriptor);
    if (req == NULL)
        return;
    Vkc__Provider__V1__PingResponse resp = VKC__PROVIDER__V1__PING_RESPONSE__INIT;
    provider_reply(ctx, &resp.base);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Parse the pod JSON and run cb on it. Ends the call with an error, or
 * returns VK_OK leaving the reply to the caller. */
static int run_pod_callback(vk_ctx *ctx, int (*cb)(vk_ctx *, const vk_pod *),
                            const ProtobufCBinaryData *json, char *uid, size_t uid_len)
{
    char err[256];
    vk_pod *pod = vk_pod_parse(json->data ? (const char *)json->data : "", json->len,
                               err, sizeof err);
    if (pod == NULL)
        return provider_finish(ctx, vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "%s", err));
    int code = provider_pod_code(ctx, cb(ctx, pod), pod->namespace ? pod->namespace : "",
                        pod->name ? pod->name : "");
    if (uid != NULL)
        snprintf(uid, uid_len, "%s", pod->uid ? pod->uid : "");
    vk_pod_free(pod);
    return code == VK_OK ? VK_OK : provider_finish(ctx, code);
}

static void serve_create_pod(vk_ctx *ctx)
{
    Vkc__Provider__V1__CreatePodRequest *req =
        provider_recv(ctx, &vkc__provider__v1__create_pod_request__descriptor);
    if (req == NULL)
        return;
    if (run_pod_callback(ctx, ctx->p->ops->create_pod, &req->pod_json, NULL, 0) == VK_OK) {
        Vkc__Provider__V1__CreatePodResponse resp = VKC__PROVIDER__V1__CREATE_POD_RESPONSE__INIT;
        provider_reply(ctx, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void serve_update_pod(vk_ctx *ctx)
{
    Vkc__Provider__V1__UpdatePodRequest *req =
        provider_recv(ctx, &vkc__provider__v1__update_pod_request__descriptor);
    if (req == NULL)
        return;
    if (run_pod_callback(ctx, ctx->p->ops->update_pod, &req->pod_json, NULL, 0) == VK_OK) {
        Vkc__Provider__V1__UpdatePodResponse resp = VKC__PROVIDER__V1__UPDATE_POD_RESPONSE__INIT;
        provider_reply(ctx, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void serve_delete_pod(vk_ctx *ctx)
{
    Vkc__Provider__V1__DeletePodRequest *req =
        provider_recv(ctx, &vkc__provider__v1__delete_pod_request__descriptor);
    if (req == NULL)
        return;
    char uid[128] = "";
    int code = run_pod_callback(ctx, ctx->p->ops->delete_pod, &req->pod_json, uid, sizeof uid);
    /* The pod is gone now (the contract says so), so its watch entry would
     * only linger: report the deletion for providers that forget to. */
    if (code == VK_OK || code == VK_NOT_FOUND)
        watch_forget(&ctx->p->watch, uid);
    if (code == VK_OK) {
        Vkc__Provider__V1__DeletePodResponse resp = VKC__PROVIDER__V1__DELETE_POD_RESPONSE__INIT;
        provider_reply(ctx, &resp.base);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* The pod the provider runs under that name belongs to the incarnation
 * the request names: a provider keeps pods by namespace/name, so without
 * this check it would answer for a pod that was deleted and created again
 * under the same name. VK_OK when the request names no uid. pod_json, when
 * not NULL, is the provider's GetPod answer; otherwise GetPod is asked. */
static int same_incarnation(vk_ctx *ctx, const Vkc__Provider__V1__PodRef *ref,
                            const vk_buf *pod_json)
{
    if (ref->uid == NULL || ref->uid[0] == '\0')
        return VK_OK;
    vk_buf fetched = VK_BUF_INIT;
    if (pod_json == NULL) {
        if (ctx->p->ops->get_pod == NULL)
            return VK_OK; /* nothing to compare with */
        int code = provider_pod_code(ctx, ctx->p->ops->get_pod(ctx, ref->namespace_, ref->name,
                                                      &fetched),
                            ref->namespace_, ref->name);
        if (code != VK_OK) {
            vk_buf_free(&fetched);
            return code;
        }
        pod_json = &fetched;
    }
    yajl_val pod = pod_json->data ? vk_json_parse(pod_json->data, pod_json->len, NULL, 0) : NULL;
    const char *uid = vk_json_str(vk_json_get(pod, "metadata", "uid", NULL), NULL);
    int code = uid == NULL || strcmp(uid, ref->uid) == 0
                   ? VK_OK
                   : vk_ctx_error(ctx, VK_NOT_FOUND,
                                  "pod %s/%s with uid %s not found (the provider runs uid %s)",
                                  ref->namespace_, ref->name, ref->uid, uid);
    yajl_tree_free(pod);
    vk_buf_free(&fetched);
    return code;
}

static void serve_get_pod(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetPodRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_pod_request__descriptor);
    if (req == NULL)
        return;
    if (provider_check_ref(ctx, req->pod) == 0) {
        vk_buf out = VK_BUF_INIT;
        int code = provider_pod_code(ctx, ctx->p->ops->get_pod(ctx, req->pod->namespace_,
                                                      req->pod->name, &out),
                            req->pod->namespace_, req->pod->name);
        if (code == VK_OK)
            code = same_incarnation(ctx, req->pod, &out);
        if (code == VK_OK) {
            Vkc__Provider__V1__GetPodResponse resp = VKC__PROVIDER__V1__GET_POD_RESPONSE__INIT;
            resp.pod_json.data = (uint8_t *)out.data;
            resp.pod_json.len = out.len;
            provider_reply(ctx, &resp.base);
        } else {
            provider_finish(ctx, code);
        }
        vk_buf_free(&out);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void serve_get_pod_status(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetPodStatusRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_pod_status_request__descriptor);
    if (req == NULL)
        return;
    if (provider_check_ref(ctx, req->pod) == 0) {
        vk_buf out = VK_BUF_INIT;
        int code = same_incarnation(ctx, req->pod, NULL);
        if (code == VK_OK)
            code = provider_pod_code(ctx, ctx->p->ops->get_pod_status(ctx, req->pod->namespace_,
                                                             req->pod->name, &out),
                            req->pod->namespace_, req->pod->name);
        if (code == VK_OK) {
            Vkc__Provider__V1__GetPodStatusResponse resp =
                VKC__PROVIDER__V1__GET_POD_STATUS_RESPONSE__INIT;
            resp.status_json.data = (uint8_t *)out.data;
            resp.status_json.len = out.len;
            provider_reply(ctx, &resp.base);
        } else {
            provider_finish(ctx, code);
        }
        vk_buf_free(&out);
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void serve_get_pods(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetPodsRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_pods_request__descriptor);
    if (req == NULL)
        return;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    vk_pod_list *list = vk_pod_list_new();
    if (list == NULL) {
        provider_finish(ctx, vk_ctx_error(ctx, VK_INTERNAL, "out of memory"));
        return;
    }
    int code = ctx->p->ops->get_pods(ctx, list);
    Vkc__Provider__V1__GetPodsResponse resp = VKC__PROVIDER__V1__GET_PODS_RESPONSE__INIT;
    if (code == VK_OK && vk_pod_list_message(list, &resp) < 0)
        code = vk_ctx_error(ctx, VK_INTERNAL, "out of memory listing pods");
    if (code == VK_OK)
        provider_reply(ctx, &resp.base);
    else
        provider_finish(ctx, code);
    vk_pod_list_free(list);
}

static void serve_get_stats_summary(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetStatsSummaryRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_stats_summary_request__descriptor);
    if (req == NULL)
        return;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    vk_buf out = VK_BUF_INIT;
    int code = ctx->p->ops->get_stats_summary(ctx, &out);
    if (code == VK_OK) {
        Vkc__Provider__V1__GetStatsSummaryResponse resp =
            VKC__PROVIDER__V1__GET_STATS_SUMMARY_RESPONSE__INIT;
        resp.summary_json.data = (uint8_t *)out.data;
        resp.summary_json.len = out.len;
        provider_reply(ctx, &resp.base);
    } else {
        provider_finish(ctx, code);
    }
    vk_buf_free(&out);
}

static void serve_get_metrics_resource(vk_ctx *ctx)
{
    Vkc__Provider__V1__GetMetricsResourceRequest *req =
        provider_recv(ctx, &vkc__provider__v1__get_metrics_resource_request__descriptor);
    if (req == NULL)
        return;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    vk_buf out = VK_BUF_INIT;
    int code = ctx->p->ops->get_metrics_resource(ctx, &out);
    if (code == VK_OK) {
        Vkc__Provider__V1__GetMetricsResourceResponse resp =
            VKC__PROVIDER__V1__GET_METRICS_RESOURCE_RESPONSE__INIT;
        resp.text = out.data ? out.data : "";
        provider_reply(ctx, &resp.base);
    } else {
        provider_finish(ctx, code);
    }
    vk_buf_free(&out);
}

/* ---- running ------------------------------------------------------------ */

vk_provider *vk_provider_new(const vk_provider_ops *ops, void *ud)
{
    vk_provider *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->ops = ops;
    p->ud = ud;
    p->wake[0] = p->wake[1] = -1;
    atomic_init(&p->stopping, false);
    for (int i = 0; i < RPC_COUNT; i++) {
        p->routes[i].p = p;
        p->routes[i].rpc = (enum vk_rpc)i;
        if (methods[i].optional && implemented(ops, (enum vk_rpc)i))
            p->caps[p->n_caps++] = methods[i].name;
    }
    if (watch_init(&p->watch) < 0) {
        free(p);
        return NULL;
    }
    if (core_init(&p->core) < 0) {
        watch_destroy(&p->watch);
        free(p);
        return NULL;
    }
    /* The write end never blocks: a signal handler writes to it. */
    if (pipe2(p->wake, O_CLOEXEC) < 0 ||
        fcntl(p->wake[1], F_SETFL, O_NONBLOCK) < 0) {
        vk_error("cannot create the stop pipe", "errno=%d", errno);
        vk_provider_free(p);
        return NULL;
    }
    return p;
}

static void catch_signals(vk_provider *p);

int vk_provider_start(vk_provider *p, const char *addr)
{
    if (p->server != NULL) {
        vk_error("provider already started", "listen=%s", addr);
        return -1;
    }
    vk_server *s = vk_server_new(addr, 0, MAX_CALLS);
    if (s == NULL) {
        vk_error("cannot create the gRPC server", "listen=%s", addr);
        return -1;
    }
    for (int i = 0; i < RPC_COUNT; i++) {
        char path[64];
        snprintf(path, sizeof path, "/vkc.provider.v1.Provider/%s", methods[i].name);
        vk_server_handle(s, path, dispatch, &p->routes[i]);
    }
    if (vk_server_start(s) < 0) {
        vk_error("cannot listen", "listen=%s", addr);
        vk_server_free(s);
        return -1;
    }
    p->server = s;
    catch_signals(p);
    return 0;
}

/* The write end of the pipe of the provider inside vk_provider_wait, for the
 * signal handler. The handler may run on any thread, so a volatile
 * sig_atomic_t is not enough; a lock-free atomic is async-signal-safe. */
static atomic_int signal_fd = -1;

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    int fd = atomic_load(&signal_fd);
    if (fd >= 0 && write(fd, &b, 1) < 0) {
        /* The pipe is full, so a wake-up is pending anyway. */
    }
    errno = saved;
}

static void stop_server(vk_provider *p)
{
    if (p->server == NULL)
        return;
    atomic_store(&p->stopping, true);
    watch_wake(&p->watch);
    vk_server_stop(p->server, STOP_GRACE_MS);
    vk_server_free(p->server);
    p->server = NULL;
}

/* Installed at start, not at wait: a SIGTERM that arrives between the two
 * must stop the provider, not kill it. */
static void catch_signals(vk_provider *p)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* the signal may land on any of gRPC's threads */
    sigemptyset(&sa.sa_mask);
    atomic_store(&signal_fd, p->wake[1]);
    sigaction(SIGINT, &sa, &p->old_int);
    sigaction(SIGTERM, &sa, &p->old_term);
    p->handlers_set = true;
}

static void release_signals(vk_provider *p)
{
    if (!p->handlers_set)
        return;
    sigaction(SIGINT, &p->old_int, NULL);
    sigaction(SIGTERM, &p->old_term, NULL);
    atomic_store(&signal_fd, -1);
    p->handlers_set = false;
}

int vk_provider_wait(vk_provider *p)
{
    unsigned char b = 0;
    while (read(p->wake[0], &b, 1) < 0 && errno == EINTR)
        ;
    release_signals(p);
    vk_info("provider stopping", "cause=%s",
            b == SIGTERM ? "SIGTERM" : b == SIGINT ? "SIGINT" : "vk_provider_stop");
    stop_server(p);
    return 0;
}

void vk_provider_stop(vk_provider *p)
{
    unsigned char b = 0;
    if (write(p->wake[1], &b, 1) < 0) {
        /* The pipe is full, so a wake-up is pending anyway. */
    }
}

void vk_provider_free(vk_provider *p)
{
    if (p == NULL)
        return;
    release_signals(p);
    stop_server(p);
    core_destroy(&p->core);
    watch_destroy(&p->watch);
    if (p->wake[0] >= 0)
        close(p->wake[0]);
    if (p->wake[1] >= 0)
        close(p->wake[1]);
    free(p);
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [--listen ADDR] [--log-level LEVEL]\n"
            "\n"
            "Serve the vkc Provider gRPC service.\n"
            "\n"
            "  --listen ADDR       unix:/path or host:port (default: $VKC_PROVIDER_LISTEN)\n"
            "  --log-level LEVEL   debug, info, warn or error (default: info)\n"
            "  --help              show this text\n",
            prog);
}

/* "--name VALUE" or "--name=VALUE" at argv[*i]: the value, or NULL when
 * argv[*i] is another flag. Sets *missing when the value is absent. */
static const char *flag_value(int argc, char **argv, int *i, const char *name,
                              bool *missing)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

int vk_provider_main(const vk_provider_ops *ops, void *ud, int argc, char **argv)
{
    const char *prog = argc > 0 ? argv[0] : "provider";
    const char *listen = getenv("VKC_PROVIDER_LISTEN");
    for (int i = 1; i < argc; i++) {
        bool missing = false;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout, prog);
            return 0;
        } else if ((v = flag_value(argc, argv, &i, "--listen", &missing)) != NULL) {
            listen = v;
        } else if ((v = flag_value(argc, argv, &i, "--log-level", &missing)) != NULL) {
            if (vk_log_set_level_name(v) < 0) {
                fprintf(stderr, "%s: unknown log level '%s' (debug, info, warn, error)\n",
                        prog, v);
                return 2;
            }
        } else if (missing) {
            fprintf(stderr, "%s: %s needs a value\n", prog, argv[i]);
            return 2;
        } else {
            fprintf(stderr, "%s: unknown flag '%s'; see --help\n", prog, argv[i]);
            return 2;
        }
    }
    if (listen == NULL || listen[0] == '\0') {
        fprintf(stderr, "%s: no address to listen on: pass --listen ADDR or set "
                        "VKC_PROVIDER_LISTEN\n", prog);
        return 2;
    }
    if (ops->name != NULL)
        vk_log_set_component(ops->name);

    vk_rpc_init();
    int rc = 1;
    vk_provider *p = vk_provider_new(ops, ud);
    if (p != NULL && vk_provider_start(p, listen) == 0) {
        vk_info("provider started", "listen=%s version=%s", listen,
                ops->version ? ops->version : "");
        vk_provider_wait(p);
        rc = 0;
    }
    vk_provider_free(p);
    vk_rpc_shutdown();
    return rc;
}
