/* work.c -- thread pool and mailbox that report back to a libev loop.
 *
 * Both wake the loop with an ev_async. The watcher is unreferenced: a pool
 * or a mailbox alone does not keep ev_run going, so a loop ends when its
 * real work ends rather than waiting for a pool nobody uses any more.
 */
#include "work.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- pool --------------------------------------------------------------- */

struct job {
    vk_work_fn work, done;
    void *arg;
    struct job *next;
};

struct job_list {
    struct job *head, *tail;
};

struct vk_pool {
    struct ev_loop *loop;
    ev_async async;
    pthread_mutex_t lock;
    pthread_cond_t wake;         /* a job was queued, or stopping */
    struct job_list queue;       /* waiting to run */
    int queued, queue_max;
    int running;
    struct job_list completed;   /* ran; done still to be called */
    bool stopping;
    int nthreads;
    pthread_t threads[];
};

static void list_push(struct job_list *l, struct job *j)
{
    j->next = NULL;
    if (l->tail != NULL)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct job *list_pop(struct job_list *l)
{
    struct job *j = l->head;
    if (j != NULL) {
        l->head = j->next;
        if (l->head == NULL)
            l->tail = NULL;
    }
    return j;
}

static void *worker_main(void *arg)
{
    vk_pool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->queue.head == NULL && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        struct job *j = list_pop(&p->queue);
        if (j == NULL) /* stopping and nothing left */
            break;
        p->queued--;
        p->running++;
        pthread_mutex_unlock(&p->lock);

        if (j->work != NULL)
            j->work(j->arg);

        pthread_mutex_lock(&p->lock);
        p->running--;
        if (j->done != NULL) {
            list_push(&p->completed, j);
            ev_async_send(p->loop, &p->async);
        } else {
            free(j);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Loop thread: call the done callbacks of every finished job. */
static void deliver_done(vk_pool *p)
{
    pthread_mutex_lock(&p->lock);
    struct job *j = p->completed.head;
    p->completed.head = p->completed.tail = NULL;
    pthread_mutex_unlock(&p->lock);
    while (j != NULL) {
        struct job *next = j->next;
        j->done(j->arg);
        free(j);
        j = next;
    }
}

static void pool_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    deliver_done(w->data);
}

vk_pool *vk_pool_new(struct ev_loop *loop, int threads, int queue_max)
{
    if (threads < 1 || queue_max < 1)
        return NULL;
    vk_pool *p = calloc(1, sizeof(*p) + (size_t)threads * sizeof(pthread_t));
    if (p == NULL)
        return NULL;
    p->loop = loop;
    p->queue_max = queue_max;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    ev_async_init(&p->async, pool_async_cb);
    p->async.data = p;
    ev_async_start(loop, &p->async);
    ev_unref(loop);

    for (; p->nthreads < threads; p->nthreads++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker_main, p)
            != 0) {
            vk_error("cannot start pool thread", "started=%d", p->nthreads);
            vk_pool_free(p);
            return NULL;
        }
    }
    return p;
}

int vk_pool_submit(vk_pool *p, vk_work_fn work, vk_work_fn done, void *arg)
{
    struct job *j = malloc(sizeof(*j));
    if (j == NULL)
        return -1;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&p->lock);
    if (p->stopping || p->queued >= p->queue_max) {
        pthread_mutex_unlock(&p->lock);
        free(j);
        return -1;
    }
    list_push(&p->queue, j);
    p->queued++;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int vk_pool_pending(vk_pool *p)
{
    pthread_mutex_lock(&p->lock);
    int n = p->queued + p->running;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void vk_pool_free(vk_pool *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    /* Workers leave only once the queue is empty. */
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    deliver_done(p);

    ev_ref(p->loop);
    ev_async_stop(p->loop, &p->async);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* ---- mailbox ------------------------------------------------------------ */

struct letter {
    vk_work_fn fn;
    void *arg;
};

struct vk_mailbox {
    struct ev_loop *loop;
    ev_async async;
    pthread_mutex_t lock;
    bool closing;
    int head, count, max;        /* ring of max letters */
    struct letter ring[];
};

/* Take the oldest letter; false when there is none. */
static bool take(vk_mailbox *m, struct letter *out)
{
    pthread_mutex_lock(&m->lock);
    bool any = m->count > 0;
    if (any) {
        *out = m->ring[m->head];
        m->head = (m->head + 1) % m->max;
        m->count--;
    }
    pthread_mutex_unlock(&m->lock);
    return any;
}

static void mailbox_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop;
    (void)revents;
    vk_mailbox *m = w->data;
    /* Only what is here now: a letter that posts another must not keep
     * the loop in this callback for ever. The new one raised the async
     * again and is delivered on the next iteration. */
    pthread_mutex_lock(&m->lock);
    int n = m->count;
    pthread_mutex_unlock(&m->lock);
    struct letter l;
    while (n-- > 0 && take(m, &l))
        l.fn(l.arg);
}

vk_mailbox *vk_mailbox_new(struct ev_loop *loop, int max)
{
    if (max < 1)
        return NULL;
    vk_mailbox *m = calloc(1, sizeof(*m) + (size_t)max * sizeof(struct letter));
    if (m == NULL)
        return NULL;
    m->loop = loop;
    m->max = max;
    pthread_mutex_init(&m->lock, NULL);
    ev_async_init(&m->async, mailbox_async_cb);
    m->async.data = m;
    ev_async_start(loop, &m->async);
    ev_unref(loop);
    return m;
}

int vk_post(vk_mailbox *m, vk_work_fn fn, void *arg)
{
    pthread_mutex_lock(&m->lock);
    if (m->closing || m->count >= m->max) {
        pthread_mutex_unlock(&m->lock);
        return -1;
    }
    m->ring[(m->head + m->count) % m->max] = (struct letter){fn, arg};
    m->count++;
    /* Under the lock, so vk_mailbox_free (which takes it) cannot free the
     * watcher between the letter going in and the wake-up. */
    ev_async_send(m->loop, &m->async);
    pthread_mutex_unlock(&m->lock);
    return 0;
}

void vk_mailbox_free(vk_mailbox *m)
{
    if (m == NULL)
        return;
    pthread_mutex_lock(&m->lock);
    m->closing = true;
    pthread_mutex_unlock(&m->lock);
    struct letter l;
    while (take(m, &l))
        l.fn(l.arg);
    ev_ref(m->loop);
    ev_async_stop(m->loop, &m->async);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
