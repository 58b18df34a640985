/* kube_watch.h -- one watch of a Kubernetes collection.
 *
 *   GET PATH?watch=1&allowWatchBookmarks=true&resourceVersion=RV
 *           &timeoutSeconds=N[&fieldSelector=...][&labelSelector=...]
 *
 * The API server answers with one JSON object per event,
 * {"type":"ADDED","object":{...}}. The body is fed chunk by chunk to yajl's
 * streaming parser, which finds where each event ends; the event's bytes
 * (at most max_event) are then parsed into a tree and handed over. A watch
 * ends once: the server closing it (timeoutSeconds), an ERROR event (410
 * Gone among them), an error status, a transport failure, or a stream cut
 * in the middle of an event. It is not restarted here: that is
 * kube_reflector's job.
 *
 * Dead connections. A watch may rightly see no byte for minutes, so a
 * low-speed limit (CURLOPT_LOW_SPEED_*) would kill healthy watches. And
 * curl 7.88 cannot ask for an HTTP/2 PING on a busy connection and wait for
 * its answer. What detects a dead peer instead is TCP: keepalive probes on
 * the idle connection (30 s idle, 3 probes 10 s apart) and TCP_USER_TIMEOUT
 * (60 s) when data waits for an ACK; both are set on every connection by
 * kube_client. As a last resort the client gives the request a deadline of
 * timeoutSeconds plus a grace period: the server promised to end the watch
 * by then, so a watch still open afterwards is talking to nobody.
 *
 * Watches share the client's HTTP/2 connection and bypass its rate limit.
 */
#ifndef VKC_CORE_KUBE_WATCH_H
#define VKC_CORE_KUBE_WATCH_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

#include "kube_client.h"

enum kube_event_type { KUBE_ADDED, KUBE_MODIFIED, KUBE_DELETED, KUBE_BOOKMARK };

enum kube_watch_end_kind {
    KUBE_WATCH_CLOSED,     /* the server ended it cleanly: watch again */
    KUBE_WATCH_GONE,       /* 410: the resourceVersion is too old; relist */
    KUBE_WATCH_FAILED,     /* anything else; see code and message */
    KUBE_WATCH_CANCELLED,  /* the client is being freed */
};

struct kube_watch_end {
    enum kube_watch_end_kind kind;
    long code;             /* HTTP status or the ERROR event's code; 0: none */
    const char *message;   /* one line */
};

/* The object belongs to the watch and is freed when the callback returns.
 * To keep it, take it: `yajl_val mine = *object; *object = NULL;` and
 * yajl_tree_free it later. */
typedef void (*kube_event_fn)(void *ud, enum kube_event_type type, yajl_val *object);
typedef void (*kube_watch_end_fn)(void *ud, const struct kube_watch_end *end);

struct kube_watch_opts {
    const char *path;              /* collection: "/api/v1/namespaces/ns/configmaps" */
    const char *resource_version;  /* NULL or "": start from the server's choice */
    const char *field_selector;    /* NULL for none */
    const char *label_selector;    /* NULL for none */
    unsigned timeout_s;            /* timeoutSeconds; 0: random in [300, 600) */
    size_t max_event;              /* largest event accepted; 0: 16 MiB */
    kube_event_fn on_event;        /* ADDED, MODIFIED, DELETED, BOOKMARK */
    kube_watch_end_fn on_end;      /* exactly once, unless freed first */
    void *ud;
};

struct kube_watch;

/* NULL when the request cannot be submitted (bad options, no memory, the
 * client closing). Callbacks run from the loop, never from inside this. */
struct kube_watch *kube_watch_start(struct kube_client *c, const struct kube_watch_opts *o);
/* Stop (no more callbacks) and free. Safe from inside on_event and on_end.
 * NULL is a no-op. */
void kube_watch_free(struct kube_watch *w);

const char *kube_event_type_name(enum kube_event_type t);

#endif
