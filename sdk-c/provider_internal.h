/* provider_internal.h -- what the files of the provider side share
 * (provider.c, provider_stream.c, provider_watch.c, provider_node.c,
 * core_client.c). Not part of the SDK's interface. */
#ifndef VKC_PROVIDER_INTERNAL_H
#define VKC_PROVIDER_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "provider.pb-c.h"
#include "vkc-provider.h"

/* The Provider RPCs, in the order of the service in provider.proto. */
enum vk_rpc {
    RPC_HANDSHAKE, RPC_PING, RPC_CREATE_POD, RPC_UPDATE_POD, RPC_DELETE_POD,
    RPC_GET_POD, RPC_GET_POD_STATUS, RPC_GET_PODS, RPC_WATCH_POD_STATUS,
    RPC_GET_NODE, RPC_WATCH_NODE, RPC_GET_CONTAINER_LOGS, RPC_EXEC,
    RPC_ATTACH, RPC_PORT_FORWARD, RPC_GET_STATS_SUMMARY,
    RPC_GET_METRICS_RESOURCE, RPC_COUNT
};

struct vk_ctx {
    vk_provider *p;
    vk_scall *call;
    const char *name; /* short method name, "CreatePod" */
    char *error;      /* from vk_ctx_error, owned */
};

/* What a registered handler gets as its user data. */
struct vk_route {
    vk_provider *p;
    enum vk_rpc rpc;
};

struct pod_entry;
struct pod_watcher;

/* The latest status of each pod for WatchPodStatus, and the node generation
 * for WatchNode. One mutex; `changed` is broadcast on every change. */
struct watch_table {
    pthread_mutex_t mu;
    pthread_cond_t changed;
    struct pod_entry **buckets; /* by uid */
    size_t n_buckets, n_entries, n_tombstones;
    struct pod_entry *oldest, *newest; /* ordered by sequence */
    uint64_t seq;    /* last sequence handed out */
    uint64_t pruned; /* no tombstone at or below this sequence is left */
    struct pod_watcher *watchers;
    uint64_t node_gen;
};

struct core_conn;

/* The channel to the Core service, opened on first use. */
struct core_client {
    pthread_mutex_t mu;
    char *target;
    struct core_conn *conn;
};

struct vk_provider {
    const vk_provider_ops *ops;
    void *ud;
    const char *caps[RPC_COUNT]; /* capability names of the optional RPCs served */
    size_t n_caps;
    struct vk_route routes[RPC_COUNT];
    vk_server *server;
    int wake[2]; /* self-pipe written by signals and vk_provider_stop */
    /* SIGINT/SIGTERM handlers as they were before vk_provider_start. */
    struct sigaction old_int, old_term;
    bool handlers_set;
    atomic_bool stopping;
    struct watch_table watch;
    struct core_client core;
};

/* ---- provider.c ---- */

/* End the call with code and the context's message (a generic one when the
 * callback gave none), logging the failure. Returns code. */
int provider_finish(vk_ctx *ctx, int code);
/* A callback's code for the pod ns/name: a NOT_FOUND it gave no message
 * for says which pod, rather than the generic "GetPod failed". */
int provider_pod_code(vk_ctx *ctx, int code, const char *ns, const char *name);
/* Send the unary reply. */
void provider_reply(vk_ctx *ctx, const ProtobufCMessage *msg);
/* Receive the request message; on failure the call is ended and NULL
 * returned. Free the result with protobuf_c_message_free_unpacked. */
void *provider_recv(vk_ctx *ctx, const ProtobufCMessageDescriptor *desc);
/* Fail the call with INVALID_ARGUMENT unless ref names a pod. 0 or -1. */
int provider_check_ref(vk_ctx *ctx, const Vkc__Provider__V1__PodRef *ref);

/* ---- provider_stream.c ---- */

void serve_container_logs(vk_ctx *ctx);
void serve_exec(vk_ctx *ctx);
void serve_attach(vk_ctx *ctx);
void serve_port_forward(vk_ctx *ctx);

/* ---- provider_watch.c ---- */

int watch_init(struct watch_table *w);
void watch_destroy(struct watch_table *w);
/* Wake every watcher, so that they notice the provider is stopping. */
void watch_wake(struct watch_table *w);
/* Report the pod of that uid deleted, if the table holds it. */
void watch_forget(struct watch_table *w, const char *uid);
void serve_watch_pod_status(vk_ctx *ctx);
void serve_get_node(vk_ctx *ctx);
void serve_watch_node(vk_ctx *ctx);

/* ---- provider_node.c ---- */

vk_node *vk_node_new(void);
void vk_node_free(vk_node *n);
/* Fill msg from the node; msg points into n and lives as long as it.
 * 0, or -1 when memory ran out (now or while the node was built). */
int vk_node_message(vk_node *n, Vkc__Provider__V1__Node *msg);

vk_pod_list *vk_pod_list_new(void);
void vk_pod_list_free(vk_pod_list *l);
/* Point resp at the list's entries. 0, or -1 when memory ran out. */
int vk_pod_list_message(vk_pod_list *l, Vkc__Provider__V1__GetPodsResponse *resp);

/* ---- core_client.c ---- */

int core_init(struct core_client *c);
void core_destroy(struct core_client *c);
/* The core told us where it listens (HandshakeRequest.core_target). */
int core_set_target(struct core_client *c, const char *target);

#endif
