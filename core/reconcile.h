/* reconcile.h -- the work queue that drives pod reconciliation.
 *
 * Two layers. `workq` is the queue itself, client-go's rate-limited
 * workqueue without a clock of its own (callers pass the time), so its
 * rules are tested without a loop:
 *
 *   - keys ("namespace/name") are deduplicated: a key is held at most once,
 *     whatever the number of adds, so the queue never holds more than one
 *     entry per pod;
 *   - a key is handed out to one worker at a time; adding it while it is
 *     being processed marks it dirty, and it is queued again when done;
 *   - a key that failed waits before it is handed out again: 5 ms doubling
 *     up to a cap (30 s by default, with jitter in [d/2, d]). client-go
 *     caps at 1000 s; here a provider that was down comes back through a
 *     resync that queues every key anyway, and a wrong pod costs one cheap
 *     call per cap, so a short cap only makes recovery quicker. An add
 *     (new information about the pod) hands it out at once; success resets
 *     its backoff;
 *   - bounded: at most max_keys distinct keys; a new key beyond that is
 *     refused.
 *
 * `reconciler` runs a workq on a libev loop: it hands ready keys to a
 * process callback, at most `workers` at a time, and can be paused (the
 * provider is down: keys queue up, none is handed out).
 */
#ifndef VKC_CORE_RECONCILE_H
#define VKC_CORE_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

struct ev_loop;

/* ---- the queue ---------------------------------------------------------- */

typedef struct workq workq;

workq *workq_new(size_t max_keys, double backoff_initial_s, double backoff_max_s);
void workq_free(workq *q);

/* Hand key out as soon as possible. 0, or -1 when the queue is full or
 * memory ran out. */
int workq_add(workq *q, const char *key);
/* The oldest ready key, now being processed; NULL when none is ready at
 * time now. The string stays valid until workq_done for it. */
const char *workq_get(workq *q, double now);
/* Processing of key ended. retry: it failed, hand it out again after its
 * backoff (at once when it was added meanwhile). Otherwise its backoff is
 * reset, and it is dropped unless it was added meanwhile. false when key
 * was not being processed (nothing changes). */
bool workq_done(workq *q, const char *key, bool retry, double now);

/* Keys held: ready, waiting for their backoff, or being processed. */
size_t workq_len(const workq *q);
size_t workq_ready(const workq *q);
size_t workq_processing(const workq *q);
/* When the first waiting key becomes ready; < 0 when none waits. */
double workq_next_due(workq *q);

/* ---- the driver ----------------------------------------------------------- */

enum reconcile_result {
    RECONCILE_DONE,   /* nothing (more) to do */
    RECONCILE_RETRY,  /* failed: try again after the key's backoff */
    RECONCILE_ASYNC,  /* started; reconciler_done tells the outcome */
};

typedef enum reconcile_result (*reconcile_fn)(void *ud, const char *key);

typedef struct reconciler_config {
    struct ev_loop *loop;
    size_t max_keys;            /* 0: 100000 */
    unsigned workers;           /* keys processed at once; 0: 8 */
    double backoff_initial_s;   /* 0: 0.005 */
    double backoff_max_s;       /* 0: 30 */
    reconcile_fn process;       /* runs on the loop, never from inside an add */
    void *ud;
    metric *depth;              /* gauge of workq_len; may be NULL */
} reconciler_config;

typedef struct reconciler reconciler;

/* Starts paused. NULL when memory ran out. */
reconciler *reconciler_new(const reconciler_config *cfg);
/* Stops the timer and frees; keys still processing are forgotten. */
void reconciler_free(reconciler *r);

/* 0, or -1 when the key cannot be held (full, out of memory). */
int reconciler_add(reconciler *r, const char *key);
/* The end of a RECONCILE_ASYNC. */
void reconciler_done(reconciler *r, const char *key, bool retry);
void reconciler_pause(reconciler *r);
void reconciler_resume(reconciler *r);
size_t reconciler_depth(const reconciler *r);

#endif
