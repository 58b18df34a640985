/* lease.h -- the node's heartbeat: the coordination.k8s.io/v1 Lease named
 * after the node in kube-node-lease, as the kubelet keeps it.
 *
 *   holderIdentity NAME, leaseDurationSeconds 40, renewTime now
 *   (MicroTime), ownerReferences [the Node], renewed every 10 s
 *
 * The node lifecycle controller reads renewTime: a Lease older than its
 * duration turns the node's Ready condition Unknown and, minutes later,
 * evicts its pods. So one failed request must not let it lapse: a failure
 * is retried after 200 ms doubling to 7 s (jittered), never more than the
 * renew interval, while the Lease stays valid for 40 s.
 *
 *   GET  when the Lease is not known yet (start, after a conflict)
 *   POST when it does not exist (first start, or the garbage collector
 *        removed it with the Node it belonged to)
 *   PUT  the last Lease read, with renewTime, holder, duration and owner
 *        set and its resourceVersion, so that a concurrent writer is
 *        noticed (409) rather than overwritten; fields this code does
 *        not know are sent back as they came
 *
 * One request at a time; each is bounded by a quarter of the lease
 * duration. Failures are logged once per streak (warn) and once when the
 * streak ends (info).
 *
 * Everything runs on the client's loop. The Lease is left in place on
 * stop: it expires, exactly as a stopped kubelet's does.
 */
#ifndef VKC_CORE_LEASE_H
#define VKC_CORE_LEASE_H

#include "kube_client.h"
#include "metrics.h"

#define LEASE_NAMESPACE "kube-node-lease"
#define LEASE_DEFAULT_DURATION_S 40
#define LEASE_DEFAULT_RENEW_MS 10000

typedef struct lease lease;

typedef struct lease_config {
    struct kube_client *kube;   /* see node.h on which client to use */
    const char *node_name;      /* copied */
    int duration_s;             /* leaseDurationSeconds; 0: 40 */
    int renew_ms;               /* 0: 10000 */
    /* Registers lease_renewals_total{result} and
     * lease_last_renew_timestamp_seconds; may be NULL. */
    metrics *metrics;
} lease_config;

/* NULL when memory ran out or the config is invalid. Nothing is sent
 * before lease_start. */
lease *lease_new(const lease_config *cfg);
/* Renew now and every renew interval from then on. node_uid (copied; NULL
 * to leave the owner as it is) becomes the Lease's ownerReference, so the
 * Lease goes away with its Node. Calling it again while running (the Node
 * was registered again under a new uid) only changes the owner, which the
 * next renewal writes. */
void lease_start(lease *l, const char *node_uid);
/* Stop renewing: the request in flight is cancelled, no callback runs
 * afterwards. lease_start starts again. */
void lease_stop(lease *l);
/* Stops first. NULL is a no-op. Free it before the client. */
void lease_free(lease *l);

#endif
