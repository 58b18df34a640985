/* work.h -- the bridge between a libev loop and blocking code.
 *
 * The core is event driven (libev) while gRPC calls block (rpc.h). A
 * vk_pool runs blocking jobs on a fixed set of threads and runs each job's
 * completion callback back on the loop thread, so loop-side state is only
 * ever touched by the loop. vk_post lets any thread (a stream reader, say)
 * hand a function to the loop. Both are bounded: a full queue says so
 * instead of growing. Neither keeps ev_run going by itself: the loop must
 * have watchers of its own while it waits for completions.
 */
#ifndef VKC_WORK_H
#define VKC_WORK_H

#include <ev.h>

typedef struct vk_pool vk_pool;

/* work runs on a pool thread, done then runs on the loop thread; either may
 * be NULL. */
typedef void (*vk_work_fn)(void *arg);

/* threads >= 1, queue_max >= 1: jobs waiting beyond the running ones. */
vk_pool *vk_pool_new(struct ev_loop *loop, int threads, int queue_max);
/* Queue a job, from any thread. 0, or -1 when the queue is full or the pool
 * is stopping (so a done callback run by vk_pool_free gets -1). */
int vk_pool_submit(vk_pool *p, vk_work_fn work, vk_work_fn done, void *arg);
/* Jobs queued and running right now (for metrics). */
int vk_pool_pending(vk_pool *p);
/* Wait for queued and running jobs, run their done callbacks, join the
 * threads and free. Call on the loop thread. */
void vk_pool_free(vk_pool *p);

/* The loop's mailbox. Create one per loop, on the loop thread. */
typedef struct vk_mailbox vk_mailbox;
vk_mailbox *vk_mailbox_new(struct ev_loop *loop, int max);
/* From any thread: run fn(arg) on the loop thread soon. 0, or -1 when the
 * mailbox holds `max` undelivered items already. */
int vk_post(vk_mailbox *m, vk_work_fn fn, void *arg);
/* Deliver what is left, then free. Loop thread only, not from inside a
 * posted function, and after every other thread has stopped posting. */
void vk_mailbox_free(vk_mailbox *m);

#endif
