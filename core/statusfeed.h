/* statusfeed.h -- pod statuses from one provider incarnation, delivered on
 * the loop.
 *
 * A provider with the WatchPodStatus capability pushes: a thread of the
 * feed reads the stream and posts each event to the loop through a
 * bounded mailbox. When the mailbox is full the thread waits, which stops
 * it reading, which lets gRPC flow control push back on the provider (who
 * coalesces per pod). A stream that ends while the feed runs is opened
 * again, after 1 s doubling to 30 s while it keeps failing, and `reopened`
 * is called before its first event: the provider may have restarted
 * without the supervisor noticing (a sidecar restarted between two pings),
 * so sequences seen so far mean nothing any more and the owner should list
 * the provider's pods again.
 *
 * Otherwise, and once a WatchPodStatus the provider declared answers
 * UNIMPLEMENTED, the feed polls: every interval, one pool job calls
 * GetPodStatus for each pod the list callback names.
 *
 * One feed per provider "up"; statusfeed_stop at its "down".
 */
#ifndef VKC_CORE_STATUSFEED_H
#define VKC_CORE_STATUSFEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "provider_client.h"
#include "work.h"

typedef struct statusfeed_event {
    const char *ns, *name, *uid;
    uint64_t seq;              /* grows per uid; 0 when polled (no order) */
    const char *status_json;   /* PodStatus; NULL when gone */
    size_t len;
    bool gone;                 /* the provider no longer has the pod */
} statusfeed_event;

/* A pod to poll. */
typedef struct statusfeed_pod {
    char *ns, *name, *uid;
} statusfeed_pod;

typedef struct statusfeed_config {
    struct ev_loop *loop;
    provider_client *pc;        /* referenced for the feed's life */
    bool watch;                 /* the provider declared WatchPodStatus */
    vk_pool *pool;              /* runs the polls */
    double poll_interval_s;     /* 0: 5 */
    /* All on the loop. list fills a malloc'ed array (its strings
     * malloc'ed too; the feed frees them) and returns its length.
     * reopened's quiet: the stream failed again since the last reopen,
     * already announced, so the owner need not log it again at info. */
    void (*deliver)(void *ud, const statusfeed_event *ev);
    void (*reopened)(void *ud, bool quiet);
    size_t (*list)(void *ud, statusfeed_pod **pods);
    void *ud;
} statusfeed_config;

typedef struct statusfeed statusfeed;

/* NULL when the thread or memory could not be had (logged). */
statusfeed *statusfeed_start(const statusfeed_config *cfg);
/* No deliveries after this. Cancels the stream and joins its thread; a
 * poll in flight finishes on its own and frees what remains. */
void statusfeed_stop(statusfeed *sf);

#endif
