/* vkc-provider.h -- write a vkc provider in C.
 *
 * A provider is a table of callbacks and one call:
 *
 *     static const vk_provider_ops ops = {
 *         .name = "hello", .version = "0.1",
 *         .create_pod = hello_create, .delete_pod = hello_delete, ...
 *     };
 *     int main(int argc, char **argv) { return vk_provider_main(&ops, NULL, argc, argv); }
 *
 * The SDK serves the Provider gRPC service of proto/provider.proto, answers
 * Handshake and Ping itself, and calls your functions. Every callback runs on
 * a thread of its own and may block (on your back end, on a stream); the
 * calls of different RPCs run concurrently, so guard shared state. A
 * callback left NULL answers UNIMPLEMENTED, and optional ones are then left
 * out of the handshake capabilities, so the core never calls them.
 *
 * Callbacks return a gRPC status code (VK_OK, VK_NOT_FOUND, ...; see rpc.h);
 * use vk_ctx_error to attach a message: `return vk_ctx_error(ctx,
 * VK_NOT_FOUND, "pod %s not found", name);`. The message reaches users.
 */
#ifndef VKC_PROVIDER_H
#define VKC_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "pod.h"
#include "rpc.h"

typedef struct vk_provider vk_provider; /* a running provider */
typedef struct vk_ctx vk_ctx;           /* one RPC in progress */
typedef struct vk_stream vk_stream;     /* the user side of a stream */
typedef struct vk_node vk_node;         /* a Node document being built */
typedef struct vk_pod_list vk_pod_list; /* GetPods result being built */

/* ---- per-call context ------------------------------------------------ */

/* Set the status message of this call; returns code. */
int vk_ctx_error(vk_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* True once the core cancelled the call or its deadline passed. Long
 * callbacks check it; stream callbacks also learn it from -1 returns. */
bool vk_ctx_cancelled(vk_ctx *ctx);
/* "/vkc.provider.v1.Provider/CreatePod" */
const char *vk_ctx_method(const vk_ctx *ctx);
vk_provider *vk_ctx_provider(vk_ctx *ctx);
/* The ud given to vk_provider_new / vk_provider_main. */
void *vk_ctx_userdata(vk_ctx *ctx);

/* ---- streams (logs, exec, attach, port-forward) ----------------------- */

/* Send bytes to the user: log data, exec stdout, port-forward data. Blocks
 * while the user is not reading (backpressure); large buffers are split.
 * Thread-safe. 0, or -1 once the user is gone: stop producing then. */
int vk_stream_write(vk_stream *s, const void *data, size_t len);
/* Exec/attach stderr; -1 on log and port-forward streams, whose bytes are
 * one stream that error text would corrupt. */
int vk_stream_write_stderr(vk_stream *s, const void *data, size_t len);

enum vk_input_kind {
    VK_INPUT_DATA,      /* stdin bytes, or port-forward bytes */
    VK_INPUT_RESIZE,    /* terminal size changed */
    VK_INPUT_EOF,       /* the user closed stdin / its write side */
};

typedef struct vk_input {
    enum vk_input_kind kind;
    const void *data;  /* VK_INPUT_DATA: valid until the next vk_stream_read */
    size_t len;
    uint32_t width, height; /* VK_INPUT_RESIZE */
} vk_input;

/* Next thing from the user, waiting up to timeout_ms (-1: no limit).
 * 1 with *in filled, 0 on timeout, -1 when the user is gone. After
 * VK_INPUT_EOF only -1 or 0 follow. One reading thread at a time. On a log
 * stream nothing ever arrives, which makes it an interruptible sleep.
 * A stream is valid until the callback it was given to returns. */
int vk_stream_read(vk_stream *s, vk_input *in, int timeout_ms);

/* ---- request shapes ---------------------------------------------------- */

typedef struct vk_log_options {
    int64_t tail_lines;     /* -1: all */
    bool follow;
    int64_t since_seconds;  /* 0: no limit */
    int64_t since_time_ns;  /* Unix nanoseconds, 0: no limit */
    bool timestamps;
    int64_t limit_bytes;    /* -1: no limit */
    bool previous;
} vk_log_options;

typedef struct vk_exec_request {
    const char *namespace, *pod, *uid, *container;
    const char *const *command; /* empty for attach */
    size_t n_command;
    bool in, out, err, tty;
    uint32_t width, height;     /* initial terminal size, 0 when unknown */
} vk_exec_request;

/* ---- building results ------------------------------------------------ */

void vk_pod_list_add(vk_pod_list *l, const char *pod_json, size_t len);

void vk_node_capacity(vk_node *n, const char *resource, const char *quantity);
void vk_node_allocatable(vk_node *n, const char *resource, const char *quantity);
void vk_node_label(vk_node *n, const char *key, const char *value);
/* status "True"/"False"/"Unknown"; reason and message may be NULL. */
void vk_node_condition(vk_node *n, const char *type, const char *status,
                       const char *reason, const char *message);
void vk_node_address(vk_node *n, const char *type, const char *address);
void vk_node_os(vk_node *n, const char *os);
/* A NodeSystemInfo field: "architecture", "osImage", "kernelVersion",
 * "containerRuntimeVersion", "operatingSystem", ... */
void vk_node_info(vk_node *n, const char *field, const char *value);

/* ---- the callback table ------------------------------------------------ */

typedef struct vk_provider_ops {
    const char *name;       /* short, used in the node taint */
    const char *version;

    /* Pod lifecycle: see proto/provider.proto for the exact semantics.
     * The pod view is valid for the duration of the call. */
    int (*create_pod)(vk_ctx *ctx, const vk_pod *pod);
    int (*update_pod)(vk_ctx *ctx, const vk_pod *pod);
    int (*delete_pod)(vk_ctx *ctx, const vk_pod *pod);
    /* Append the pod JSON (with status) / the PodStatus JSON to out. */
    int (*get_pod)(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
    int (*get_pod_status)(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
    int (*get_pods)(vk_ctx *ctx, vk_pod_list *out);
    int (*get_node)(vk_ctx *ctx, vk_node *node);

    /* Set when the provider reports pod status changes through
     * vk_provider_notify_pod (declares WatchPodStatus). */
    bool notifies_pod_status;
    /* Set when the provider calls vk_provider_notify_node on node changes
     * (declares WatchNode). */
    bool notifies_node;

    /* Optional streaming and stats RPCs. */
    int (*get_container_logs)(vk_ctx *ctx, const char *ns, const char *pod,
                              const char *container, const vk_log_options *opt,
                              vk_stream *out);
    /* Run the command; stream its output; set *exit_code. Return VK_OK once
     * the command ran (whatever its exit code), an error status when it
     * could not run. */
    int (*exec)(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code);
    int (*attach)(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code);
    int (*port_forward)(vk_ctx *ctx, const char *ns, const char *pod, int32_t port,
                        vk_stream *io);
    /* Append the stats Summary JSON / Prometheus text to out. */
    int (*get_stats_summary)(vk_ctx *ctx, vk_buf *out);
    int (*get_metrics_resource)(vk_ctx *ctx, vk_buf *out);

    /* Optional hook run before every RPC, Handshake and Ping included, with
     * the method name ("Ping"). A non-OK return fails the call with that
     * status. The mock provider injects its faults here. */
    int (*before_call)(vk_ctx *ctx, const char *method);
} vk_provider_ops;

/* ---- running ------------------------------------------------------------ */

/* Call vk_rpc_init first (vk_provider_main does). */
vk_provider *vk_provider_new(const vk_provider_ops *ops, void *ud);
/* Serve on addr ("unix:/path" or "host:port"). 0, or -1 (logged). */
int vk_provider_start(vk_provider *p, const char *addr);
/* Block until SIGINT/SIGTERM or vk_provider_stop, then stop serving
 * (streams are cancelled, callbacks waited for). Returns 0. */
int vk_provider_wait(vk_provider *p);
/* Thread-safe; makes vk_provider_wait return. */
void vk_provider_stop(vk_provider *p);
void vk_provider_free(vk_provider *p);

/* All of the above for a main(): flags --listen ADDR (default: environment
 * VKC_PROVIDER_LISTEN, as set by vkc-core), --log-level LEVEL, --help.
 * Returns the process exit code (2 for bad flags). */
int vk_provider_main(const vk_provider_ops *ops, void *ud, int argc, char **argv);

/* Report the current status of a pod to the core (WatchPodStatus). Call it
 * for every change; the SDK coalesces per pod and keeps nothing beyond the
 * latest status of each pod. status_json NULL reports the pod as deleted;
 * the SDK also does that itself once DeletePod returns OK or NOT_FOUND.
 * Thread-safe, never blocks on the core. 0, or -1 when memory ran out. */
int vk_provider_notify_pod(vk_provider *p, const char *ns, const char *name,
                           const char *uid, const char *status_json, size_t len);
/* The node changed: the SDK calls get_node and sends the result to the
 * core (WatchNode). Thread-safe. */
void vk_provider_notify_node(vk_provider *p);

/* ---- the Core callback service ---------------------------------------- */

/* Fetch a Secret / ConfigMap JSON referenced by one of the node's pods,
 * appended to out. Returns a status code: VK_PERMISSION_DENIED when no pod
 * of the node references it, VK_NOT_FOUND when it does not exist,
 * VK_UNAVAILABLE when the core cannot be reached. st (may be NULL) gets the
 * message. */
int vk_core_get_secret(vk_provider *p, const char *ns, const char *name,
                       vk_buf *out, vk_status *st);
int vk_core_get_configmap(vk_provider *p, const char *ns, const char *name,
                          vk_buf *out, vk_status *st);
/* A service-account token for a pod of the node, appended to token. */
int vk_core_service_account_token(vk_provider *p, const char *ns, const char *pod,
                                  const char *uid, const char *service_account,
                                  const char *const *audiences, size_t n_audiences,
                                  int64_t expiration_seconds, vk_buf *token,
                                  int64_t *expires_at, vk_status *st);
/* Record an Event on a pod ("Normal" or "Warning"). */
int vk_core_emit_event(vk_provider *p, const char *ns, const char *pod,
                       const char *uid, const char *type, const char *reason,
                       const char *message);

#endif
