/* node.h -- this virtual kubelet's Node: registration, status, heartbeat,
 * and a clean stop.
 *
 * The core acts as system:node:NAME under the Node authorizer and the
 * NodeRestriction admission plugin, which shapes what it may write.
 *
 * Registration. POST /api/v1/nodes with labels, the provider taint and the
 * whole status. A node may set only labels outside kubernetes.io and
 * k8s.io, plus kubernetes.io/{hostname,os,arch},
 * beta.kubernetes.io/{os,arch,instance-type},
 * node.kubernetes.io/instance-type, the topology and failure-domain
 * region/zone labels, and anything under [*.]kubelet.kubernetes.io/ or
 * [*.]node.kubernetes.io/. Virtual Kubelet's kubernetes.io/role=agent (like
 * any node-role.kubernetes.io label) is refused with 403, so it is not
 * set; a provider label of that kind is dropped with a warning, and one in
 * --node-labels makes node_new fail, as the kubelet refuses to start with
 * one. 409 AlreadyExists (a restart) adopts the existing Node: our labels
 * are added or corrected with a merge patch (other labels stay, including
 * ones an earlier configuration set) and its status is patched. Taints can
 * only be set at creation -- a node may not change its own taints -- so a
 * Node whose taints differ from the configuration is reported (warn) and
 * left alone; deleting the Node applies the configuration.
 *
 * Registration waits for the provider's first Node (capacity, conditions)
 * for up to register_wait_ms, then registers without it (Ready False
 * ProviderDown), as the kubelet registers while its runtime is down -- but
 * not before the taint value is known (--provider, else the provider's
 * handshake name), since a wrong taint could not be fixed later.
 *
 * Status. PATCH /api/v1/nodes/NAME/status with a strategic merge patch,
 * like the kubelet: conditions merge by type, so conditions that others
 * add (node-problem-detector, NetworkUnavailable) survive, where a JSON
 * merge patch would replace the whole list. Addresses carry
 * {"$patch":"replace"}, since merging them by type would fold two
 * addresses of one type into one. Resources and condition types the
 * provider stopped reporting are removed (null, {"$patch":"delete"}); a
 * quantity the API server could not decode is left out, as one bad entry
 * would fail the whole write. Written when the provider's Node changes
 * (its WatchNode stream, or GetNode every poll_ms without the capability
 * and while the stream fails) and at least every status_period_ms;
 * lastHeartbeatTime is the time of writing, lastTransitionTime changes
 * only with the condition's status (kept from the existing Node on
 * adoption). Without provider addresses: InternalIP node_ip and Hostname
 * the node name.
 *
 * Ready. The provider's conditions, with Ready True "KubeletReady" added
 * when it gives none. While the provider is down (supervisor "down", or no
 * Node from it since it came up), Ready is False "ProviderDown": vkc is
 * alive and renews the Lease, the runtime behind it is not -- what the
 * kubelet reports when its container runtime is down. The scheduler stops
 * placing pods; the other conditions keep their last reported value.
 *
 * Heartbeat. The Lease (lease.h), owned by the Node.
 *
 * Deleted Node. A watch of the Node (fieldSelector metadata.name=NAME,
 * allowed to a node for itself) or a 404 on a status patch: it is
 * registered again, and the Lease's owner follows the new uid.
 *
 * Stop. node_stop writes one status patch, bounded by 2 s: Ready False
 * "KubeletStopped". The Node and the Lease stay, and so do the pods'
 * bindings: the scheduler stops placing pods at once instead of when the
 * Lease lapses 40 s later, and a restart turns Ready True again. Pods not
 * tolerating node.kubernetes.io/not-ready are evicted after their
 * toleration (300 s by default) if no restart comes, as they would be
 * after a lapsed Lease.
 *
 * Client. Lease renewals and status patches must not wait behind other
 * traffic in kube_client's rate-limit queue (5 QPS, FIFO of up to 1000:
 * minutes): give the node a client of its own with qps < 0, as the
 * kubelet does with its heartbeat client. The watch is a stream and
 * bypasses the limit anyway.
 *
 * Threads. Everything runs on the client's loop. GetNode runs on the pool;
 * the WatchNode stream is read by a thread of its own that hands the
 * newest Node to the loop (one slot, at most one letter in flight: a burst
 * of changes collapses into the newest).
 */
#ifndef VKC_CORE_NODE_H
#define VKC_CORE_NODE_H

#include <stdbool.h>
#include <stddef.h>

#include "kube_client.h"
#include "metrics.h"
#include "supervisor.h"
#include "version.h"
#include "work.h"

/* The Kubernetes version whose kubelet API vkc serves, and vkc's own as
 * SemVer build metadata (k3s writes "v1.20.2+k3s1"): components that parse
 * kubeletVersion for version skew rules see a kubelet version they know,
 * and build metadata does not change its precedence, while a user still
 * sees what runs. */
#define NODE_KUBELET_VERSION "v1.20.2+vkc-" VKC_CORE_VERSION

#define NODE_DEFAULT_KUBELET_PORT 10250
#define NODE_DEFAULT_STATUS_PERIOD_MS 60000
#define NODE_DEFAULT_POLL_MS 10000
#define NODE_DEFAULT_REGISTER_WAIT_MS 10000

typedef struct node node;

/* Strings are copied by node_new; 0 / NULL selects the default. */
typedef struct node_config {
    struct kube_client *kube;   /* its loop is the node's */
    vk_pool *pool;              /* for GetNode */
    metrics *metrics;           /* may be NULL */

    const char *name;
    const char *labels;         /* --node-labels "k=v,k2=v2" */
    bool disable_taint;         /* --disable-taint */
    /* --provider: the taint's value; NULL: the provider's handshake name */
    const char *provider_name;
    int kubelet_port;           /* --listen-port: daemonEndpoints; 10250 */
    /* --node-ip; NULL: the first non-loopback IPv4, else 127.0.0.1 */
    const char *node_ip;
    const char *kubelet_version; /* NULL: NODE_KUBELET_VERSION */

    int lease_duration_s;       /* 40 */
    int lease_renew_ms;         /* 10000 */
    int status_period_ms;       /* 60000 */
    int poll_ms;                /* GetNode period without WatchNode; 10000 */
    int register_wait_ms;       /* 10000 */
} node_config;

/* NULL with a one-line message in err: a bad or forbidden label, a bad
 * IP, no memory. */
node *node_new(const node_config *cfg, char *err, size_t errlen);
/* The supervisor listener that feeds the node its provider. */
supervisor_listener node_listener(node *n);
/* Start registering (see above). */
void node_start(node *n);
/* Stop everything and write the stopped state (one request, 2 s at most);
 * done(ud) then runs on the loop, never from inside node_stop. Once: a
 * second call does nothing. */
void node_stop(node *n, void (*done)(void *ud), void *ud);
/* After node_stop's done, or instead of it (nothing more is written);
 * after the pool was freed (its completions refer to the node) and before
 * the client. NULL is a no-op. */
void node_free(node *n);

#endif
