/* kubelet_api.h -- the kubelet API of vkc-core: routes and handlers.
 *
 *   /healthz, /healthz/{ping,log,syncloop}    "ok"
 *   /pods                                     PodList of the pods bound to this node
 *   /runningpods/                             PodList of what the provider runs (GetPods)
 *   /containerLogs/{ns}/{pod}/{container}     the container's log, streamed (GetContainerLogs)
 *   /stats/summary                            the provider's summary, node name filled in
 *   /metrics/resource                         the provider's resource metrics
 *   /metrics                                  the core's own metrics
 *   /exec/{ns}/{pod}[/{uid}]/{container}      \
 *   /attach/{ns}/{pod}[/{uid}]/{container}     | the upgrade hook
 *   /portForward/{ns}/{pod}[/{uid}]            | (kubelet_api_set_upgrade)
 *   /run/{ns}/{pod}[/{uid}]/{container}       /
 *
 * Every request is authenticated and authorized first (kubelet_auth.h).
 * Errors are Kubernetes Status documents: 400 for a namespace, pod or
 * container name Kubernetes would not allow (".", "..", empty: a DNS-1123
 * label, a subdomain for pods); 404 for an unknown route, pod or
 * container (exec, attach, port-forward and run ask the pod source, and
 * with a uid in the path the pod's must match, before they upgrade;
 * logs ask the provider); 501 for what the provider did not declare; 503 while the
 * provider is down; provider errors by their gRPC code (NOT_FOUND 404,
 * INVALID_ARGUMENT and FAILED_PRECONDITION 400, UNAVAILABLE 503,
 * DEADLINE_EXCEEDED 504, UNIMPLEMENTED 501, anything else 500).
 *
 * Logs: a thread per stream reads the provider's stream and hands chunks to
 * the loop through a small bounded queue. The thread stops reading (and
 * gRPC flow control stops the provider) while the queue is full, and the
 * queue drains only while the client's connection is writable. A client
 * that goes away cancels the provider's stream; a followed log has no
 * deadline. The status line waits up to a second for the provider's first
 * bytes or error, so that an unknown container is a 404; an error after
 * that (or the provider going down) cuts the response short. A log that is
 * not followed gets 10 s for the provider's first chunk (else 504) and
 * then 10 s at most between chunks: a provider that goes quiet without
 * ending the log has its stream cancelled, and the response ends with
 * what arrived (kubelet_api_log_silence_timeouts_total counts both).
 *
 * Everything but the log threads runs on the loop.
 */
#ifndef VKC_CORE_KUBELET_API_H
#define VKC_CORE_KUBELET_API_H

#include <ev.h>

#include "buf.h"
#include "http_server.h"
#include "kubelet_auth.h"
#include "metrics.h"
#include "provider_client.h"
#include "supervisor.h"
#include "work.h"

typedef struct kubelet_api kubelet_api;

/* The pods bound to this node, for /pods: append them to out as a JSON
 * array of Pod objects. 0, or -1 when the list is not known (yet): 503. */
typedef int (*kubelet_pods_fn)(void *ud, vk_buf *out);
/* One of them, to check the target of an exec, attach, port-forward or
 * run: append the Pod ns/name to out. 0; 1 when the node has no such pod;
 * -1 as kubelet_pods_fn. */
typedef int (*kubelet_pod_fn)(void *ud, const char *ns, const char *name, vk_buf *out);

/* What an exec, attach, port-forward or run request names. uid is "" when
 * the path has none; container is "" for port-forward. */
enum kubelet_stream_kind {
    KUBELET_EXEC,
    KUBELET_ATTACH,
    KUBELET_PORT_FORWARD,
    KUBELET_RUN,
};

typedef struct kubelet_stream_target {
    enum kubelet_stream_kind kind;
    const char *ns, *pod, *uid, *container;
} kubelet_stream_target;

/* The hook that serves exec, attach, port-forward and run. It gets the
 * request once authorized, with the provider up and declaring the
 * capability (exec for run), and owns it from then on: it answers, or
 * upgrades (http_upgrade). t is valid during the call; pc is borrowed
 * (pc_ref to keep it). Without a hook these answer 501. */
typedef void (*kubelet_upgrade_fn)(void *ud, http_request *req,
                                   const kubelet_stream_target *t, provider_client *pc);

typedef struct kubelet_api_config {
    struct ev_loop *loop;
    const char *node_name;
    vk_pool *pool;            /* unary provider calls */
    metrics *metrics;         /* served on /metrics; this module's own go there too */
    kubelet_auth *auth;
    kubelet_pods_fn pods;     /* may be NULL: /pods answers 503 */
    kubelet_pod_fn pod;       /* may be NULL: the provider judges targets */
    void *pods_ud;            /* of both */
    int max_log_streams;      /* concurrent; 0: 64 */
} kubelet_api_config;

kubelet_api *kubelet_api_new(const kubelet_api_config *cfg);
/* The http_server handler: http_server_config.handler = kubelet_api_handle,
 * .ud = the kubelet_api. */
void kubelet_api_handle(void *api, http_request *req);
/* Register with supervisor_listen: the provider client comes and goes. */
supervisor_listener kubelet_api_listener(kubelet_api *api);
void kubelet_api_set_upgrade(kubelet_api *api, kubelet_upgrade_fn fn, void *ud);
/* Free after http_server_free (which ends every request) and after
 * vk_pool_free (whose pending completions refer to the API); waits for the
 * log threads, whose streams were cancelled by then. */
void kubelet_api_free(kubelet_api *api);

#endif
