/* pods.h -- the node's pods: watched in the API, run by the provider.
 *
 * A reflector keeps every pod bound to the node (/api/v1/pods?fieldSelector=
 * spec.nodeName=NAME) in memory; a reconcile queue (reconcile.h) brings
 * the provider in line with it, calling the provider from a pool of its
 * own so that slow pod calls never delay the supervisor's pings:
 *
 *   - a pod new to the provider: its environment is resolved (envresolve.h,
 *     ConfigMaps and Secrets from objcache.h, service links from
 *     svccache.h), then CreatePod. A missing mandatory ConfigMap or Secret
 *     keeps it from the provider: status Pending with
 *     CreateContainerConfigError, a Mandatory*NotFound Warning event, and a
 *     retry when the object appears. Missing optional ones only warn
 *     (Optional*NotFound);
 *   - labels, annotations, images, activeDeadlineSeconds or tolerations
 *     changed: UpdatePod (status-only changes call nothing);
 *   - deletionTimestamp set: DeletePod, then DELETE of the pod with grace
 *     period 0 and its uid as precondition; a pod gone from the API:
 *     DeletePod;
 *   - after every provider handshake, once the pod cache is complete
 *     (never before: it would delete live pods it has not seen yet), a
 *     resync: GetPods; pods the provider lost are created again, except
 *     started restartPolicy Never pods, which are marked Failed
 *     (ProviderLost); pods the API no longer has are deleted.
 *
 * While the provider is down, keys queue up (one per pod) and nothing is
 * called. Statuses come from WatchPodStatus or polling (statusfeed.h) and
 * are written back by podstatus.h. Failures become Warning events on the
 * pod (ProviderCreateFailed, ProviderUpdateFailed, ProviderDeleteFailed),
 * once per failure streak. The Core service's registry (refs.h) is kept
 * up to date with what each pod references.
 *
 * Metrics: pods_known, reconcile_queue_depth, reconcile_total{op,result},
 * plus those of podstatus.h, events.h and objcache.h.
 */
#ifndef VKC_CORE_PODS_H
#define VKC_CORE_PODS_H

#include "buf.h"
#include "events.h"
#include "kube_client.h"
#include "metrics.h"
#include "objcache.h"
#include "refs.h"
#include "supervisor.h"

typedef struct pods_config {
    const char *node_name;
    struct kube_client *kube;   /* with the node's identity; its loop is used */
    refs *refs;                 /* shared with the Core service */
    objcache *objcache;         /* shared with the Core service */
    events *events;
    metrics *metrics;           /* may be NULL */
    unsigned workers;           /* provider calls at once; 0: 8 */
    double status_poll_s;       /* providers without WatchPodStatus; 0: 5 */
} pods_config;

typedef struct pods pods;

/* Start watching pods and services. The pointers must outlive the module.
 * NULL (logged) when memory or threads ran out. */
pods *pods_start(const pods_config *cfg);
/* Register before supervisor_start. */
supervisor_listener pods_listener(pods *p);
/* The kubelet API's /pods: append the node's pods as the API has them, a
 * JSON array of Pod objects, to out. -1 until the first list arrived (the
 * view would be partial) or when memory ran out. Loop thread. */
int pods_list_json(void *p, vk_buf *out);
/* One of them, ns/name, appended to out: 0, 1 when the node has no such
 * pod, -1 as pods_list_json. Loop thread. */
int pods_get_json(void *p, const char *ns, const char *name, vk_buf *out);

/* Once the supervisor stopped (its last "down" came) or before it ever
 * started: stop the watches and the status feed, cancel API requests, wait
 * for provider calls in flight, drop every reference and free. On the loop
 * thread, before objcache_free, events_free and the kube client. */
void pods_stop(pods *p);

#endif
