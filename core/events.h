/* events.h -- Kubernetes Events on the node's pods.
 *
 *   events_emit(ev, "default", "web-1", uid, "Warning", "MandatorySecretNotFound",
 *               "secret \"db\" not found");
 *
 * An event is POSTed to /api/v1/namespaces/NS/events with the pod as its
 * involvedObject and source {component "vkc", host NODE}. Identical events
 * (same pod uid, type, reason and message) within a window (10 minutes, as
 * client-go's correlator) are aggregated: the first is created, later ones
 * raise its count with a merge PATCH, so a retry loop yields one Event with
 * a growing count rather than a flood.
 *
 * Never blocking: events_emit only queues, from any thread (the Core
 * service's EmitEvent handlers call it from gRPC threads); the loop sends.
 * Bounded: at most queue_max events wait to be sent and cache_max are
 * remembered for aggregation (least recently used go first); an event that
 * finds the queue full is dropped and counted in events_dropped_total. A
 * failed send is dropped too, logged once per failure streak.
 */
#ifndef VKC_CORE_EVENTS_H
#define VKC_CORE_EVENTS_H

#include <stddef.h>

#include "kube_client.h"
#include "metrics.h"

typedef struct events events;

typedef struct events_config {
    struct kube_client *kube;
    const char *node_name;
    metrics *metrics;    /* may be NULL */
    size_t queue_max;    /* 0: 256 */
    size_t cache_max;    /* 0: 1024 */
    double window_s;     /* 0: 600 */
} events_config;

/* On the loop thread. NULL when memory ran out. */
events *events_new(const events_config *cfg);
/* Cancel what is in flight and free, on the loop thread, once nobody
 * emits any more (the Core service stopped), before the kube client. */
void events_free(events *e);

/* type "Normal" or "Warning"; reason UpperCamelCase; message a sentence
 * (cut at 1024 bytes). Thread-safe. 0 when queued (or aggregated), -1 when
 * dropped. */
int events_emit(events *e, const char *ns, const char *pod, const char *uid,
                const char *type, const char *reason, const char *message);

#endif
