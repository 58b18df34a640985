/* podstatus.h -- writing pod status back to the API server.
 *
 * The pod module sets, per pod, the status the pod should have: the
 * provider's truth, or one the core decided (CreateContainerConfigError,
 * ProviderLost). This module makes the API show it:
 *
 *   PUT /api/v1/namespaces/NS/pods/NAME/status
 *
 * with the whole Pod and the resourceVersion of the newest copy known (the
 * watch cache, or the answer to our own last write), never "" or "0". A
 * PUT replaces the status, so fields the provider dropped (a reason, a
 * message) do not linger as they would with a merge patch; its
 * optimistic concurrency is handled: a 409 re-reads the pod and retries.
 *
 * Rules:
 *   - at most one write in flight per pod; a newer status replaces an
 *     unsent older one;
 *   - at most max_writes requests out in all; pods beyond wait their turn,
 *     first come first served, and then write their newest status;
 *   - nothing is written when the API already shows the status, ignoring
 *     conditions' lastTransitionTime/lastProbeTime and empty fields;
 *   - never backwards: a terminal phase (Succeeded, Failed) is final, and
 *     Running never goes back to Pending;
 *   - what the API server made of the last write is remembered: when a
 *     watch event shows something else (another controller changed the
 *     status), the status is written again;
 *   - conditions of types the status does not set (PodScheduled from the
 *     scheduler, readiness gates), qosClass and startTime are kept from
 *     the API when the status has none.
 *
 * Counted in status_writes_total{result="ok|conflict|not_found|error"};
 * status_writes_pending{state="out|waiting"} shows the line.
 */
#ifndef VKC_CORE_PODSTATUS_H
#define VKC_CORE_PODSTATUS_H

#include <stdbool.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "buf.h"
#include "kube_client.h"
#include "metrics.h"
#include "packed.h"

typedef struct podstatus podstatus;

/* What is read of a copy of the pod on every watch event to decide
 * whether its status needs a write: no tree needed. */
typedef struct podstatus_view {
    const char *uid;            /* metadata.uid, NULL when none */
    long long rv;               /* metadata.resourceVersion; -1: not a number */
    uint64_t status_hash;       /* json_hash of its status */
} podstatus_view;

/* The watch cache's copy of the pod "namespace/name", or NULL. The tree is
 * the callee's and need only stay valid until the next call. */
typedef yajl_val (*podstatus_lookup_fn)(void *ud, const char *key);
/* The same copy's view, without building its tree; false when the cache
 * has no such pod. */
typedef bool (*podstatus_peek_fn)(void *ud, const char *key, podstatus_view *out);

typedef struct podstatus_config {
    struct kube_client *kube;
    metrics *metrics;           /* may be NULL */
    podstatus_lookup_fn lookup;
    /* May be NULL: the view is then taken from lookup's tree. With it,
     * lookup is called only when a write is being considered. */
    podstatus_peek_fn peek;
    void *ud;
    /* Requests out at once; a slot that wants to write beyond waits for
     * its turn and then writes its newest status. 0: 150. */
    unsigned max_writes;
} podstatus_config;

podstatus *podstatus_new(const podstatus_config *cfg);
/* Cancel writes in flight and free. */
void podstatus_free(podstatus *ps);

/* The status pod key (incarnation uid) should have, a PodStatus object
 * (taken, also on failure). 0, or -1 when memory ran out. */
int podstatus_set(podstatus *ps, const char *key, const char *uid, yajl_val status);
/* The watch cache's copy of the pod changed. */
void podstatus_api_changed(podstatus *ps, const char *key);
/* The pod left the node: cancel its write and forget it. */
void podstatus_forget(podstatus *ps, const char *key);

/* Statuses the core decides itself, for pod (the API's copy), as PodStatus
 * trees; NULL when memory ran out. */
/* Pending, every container waiting with reason CreateContainerConfigError
 * and message: the kubelet's words for a missing ConfigMap or Secret. */
yajl_val podstatus_config_error(yajl_val pod, const char *message);
/* Failed with reason ProviderLost and message: the provider lost a started
 * pod that must not run again (restartPolicy Never). Its containers end
 * terminated with exit code 137, as if killed. */
yajl_val podstatus_lost(yajl_val pod, const char *message);

/* A hash of v that ignores object key order, empty values (null, "", [],
 * {}) and lastTransitionTime/lastProbeTime members: equal for documents
 * the API server would consider the same. Chains from seed. */
uint64_t json_hash(uint64_t seed, yajl_val v);
#define JSON_HASH_SEED 14695981039346656037u

/* The view of pod (a Pod tree); uid points into pod. */
podstatus_view podstatus_view_of(yajl_val pod);

#endif
