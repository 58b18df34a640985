/* kube_reflector.h -- keep an owner in step with a Kubernetes collection:
 * list, then watch from the list's resourceVersion, forever.
 *
 *   list   GET PATH?limit=500[&continue=TOKEN][&fieldSelector=...]  (paged)
 *   watch  from the list's resourceVersion, then from the newest one seen
 *          in events and BOOKMARKs
 *
 * A watch the server closes (timeoutSeconds) is reopened at once from the
 * newest resourceVersion. 410 Gone, as an HTTP status or as an ERROR event
 * with code 410, means that version is no longer known: list again. Any
 * other failure is retried with capped exponential backoff and jitter
 * (200 ms doubling to 30 s by default), a watch from the last
 * resourceVersion, a list from scratch. A complete list or a watch event
 * resets the backoff. The first failure of a streak is logged as a warning,
 * the rest at debug level.
 *
 * Lists read from etcd (no resourceVersion): consistent, and paging works.
 *
 * Callbacks run from the loop. Objects belong to the reflector and are freed
 * when the callback returns unless taken (see kube_watch.h):
 * `yajl_val mine = items[i]; items[i] = NULL;`.
 */
#ifndef VKC_CORE_KUBE_REFLECTOR_H
#define VKC_CORE_KUBE_REFLECTOR_H

#include <stdbool.h>
#include <stddef.h>

#include "kube_client.h"
#include "kube_watch.h"

/* The whole collection after each complete list. The owner replaces its
 * cache with it: whatever it had that is not in items was deleted. */
typedef void (*kube_replace_fn)(void *ud, yajl_val *items, size_t n);
/* ADDED, MODIFIED or DELETED (BOOKMARKs are the reflector's business). */
typedef void (*kube_object_fn)(void *ud, enum kube_event_type type, yajl_val *object);

struct kube_reflector_config {
    const char *path;             /* collection, e.g. "/api/v1/pods" */
    const char *field_selector;   /* e.g. "spec.nodeName=NAME"; NULL for none */
    const char *label_selector;   /* NULL for none */
    unsigned page_size;           /* list limit; 0: 500 */
    unsigned watch_timeout_s;     /* 0: random in [300, 600) per watch */
    size_t max_items;             /* a bigger list is an error; 0: 100000 */
    double backoff_initial_s;     /* 0: 0.2 */
    double backoff_max_s;         /* 0: 30 */
    kube_replace_fn on_replace;
    kube_object_fn on_event;
    void *ud;
};

struct kube_reflector_stats {
    unsigned long lists;          /* complete lists delivered */
    unsigned long watches;        /* watches started */
    unsigned long gone;           /* 410s, each followed by a list */
    unsigned long failures;       /* failed lists and watches */
};

struct kube_reflector;

/* Starts listing from the loop. cfg's strings are copied. NULL when the
 * config is invalid or memory ran out. */
struct kube_reflector *kube_reflector_start(struct kube_client *c,
                                            const struct kube_reflector_config *cfg);
/* Stop and free; safe from inside its callbacks. Free it before the client.
 * NULL is a no-op. */
void kube_reflector_free(struct kube_reflector *r);

/* A complete list has been delivered. Until then the owner's view is
 * partial: deleting what it does not know about would be wrong. */
bool kube_reflector_synced(const struct kube_reflector *r);
/* The newest resourceVersion seen, "" before the first list. */
const char *kube_reflector_resource_version(const struct kube_reflector *r);
const struct kube_reflector_stats *kube_reflector_stats(const struct kube_reflector *r);

#endif
