/* reconcile.c -- deduplicated, rate-limited work queue and its loop driver.
 *
 * Items live in a chained hash table by key and, depending on their state,
 * in one of two lists: the ready FIFO, or the waiting list sorted by due
 * time (a new due time is nearly always the latest, so the sorted insert
 * walks from the tail). An item exists only while its key is ready,
 * waiting or being processed: a key that succeeded is forgotten, backoff
 * included.
 */
#include "reconcile.h"

#include <ev.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define DEFAULT_MAX_KEYS 100000
#define DEFAULT_WORKERS 8
#define DEFAULT_BACKOFF_INITIAL_S 0.005
#define DEFAULT_BACKOFF_MAX_S 30.0
#define MIN_BUCKETS 64
/* Keys processed synchronously per loop iteration: a long queue of no-op
 * keys must not keep the loop from its watches. */
#define DISPATCH_BUDGET 64

enum state { READY, WAITING, PROCESSING };

typedef struct item {
    struct item *hnext;
    struct item *prev, *next;
    enum state state;
    bool dirty;
    double due;
    struct backoff backoff;
    char key[];
} item;

typedef struct list {
    item *head, *tail;
} list;

struct workq {
    item **buckets;
    size_t n_buckets, n, max;
    list ready, waiting;
    size_t n_ready, n_processing;
    double backoff_initial, backoff_max;
};

/* ---- lists and table ---------------------------------------------------- */

static void list_unlink(list *l, item *it)
{
    if (it->prev)
        it->prev->next = it->next;
    else
        l->head = it->next;
    if (it->next)
        it->next->prev = it->prev;
    else
        l->tail = it->prev;
    it->prev = it->next = NULL;
}

static void list_push(list *l, item *it)
{
    it->next = NULL;
    it->prev = l->tail;
    if (l->tail)
        l->tail->next = it;
    else
        l->head = it;
    l->tail = it;
}

/* Insert before the first item due later, so equal times keep FIFO order. */
static void list_insert_by_due(list *l, item *it)
{
    item *after = l->tail;
    while (after && after->due > it->due)
        after = after->prev;
    it->prev = after;
    it->next = after ? after->next : l->head;
    if (it->next)
        it->next->prev = it;
    else
        l->tail = it;
    if (after)
        after->next = it;
    else
        l->head = it;
}

static size_t hash(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)h;
}

static item **slot_of(workq *q, const char *key)
{
    item **p = &q->buckets[hash(key) & (q->n_buckets - 1)];
    while (*p && strcmp((*p)->key, key) != 0)
        p = &(*p)->hnext;
    return p;
}

/* Double the table when it gets crowded; a failure only costs speed. */
static void grow(workq *q)
{
    if (q->n < q->n_buckets * 2)
        return;
    size_t nb = q->n_buckets * 2;
    item **b = calloc(nb, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < q->n_buckets; i++) {
        item *it = q->buckets[i];
        while (it) {
            item *next = it->hnext;
            size_t h = hash(it->key) & (nb - 1);
            it->hnext = b[h];
            b[h] = it;
            it = next;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->n_buckets = nb;
}

static void make_ready(workq *q, item *it)
{
    it->state = READY;
    list_push(&q->ready, it);
    q->n_ready++;
}

/* ---- workq -------------------------------------------------------------- */

workq *workq_new(size_t max_keys, double backoff_initial_s, double backoff_max_s)
{
    workq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->n_buckets = MIN_BUCKETS;
    q->buckets = calloc(q->n_buckets, sizeof *q->buckets);
    if (!q->buckets) {
        free(q);
        return NULL;
    }
    q->max = max_keys;
    q->backoff_initial = backoff_initial_s;
    q->backoff_max = backoff_max_s;
    return q;
}

void workq_free(workq *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n_buckets; i++) {
        item *it = q->buckets[i];
        while (it) {
            item *next = it->hnext;
            free(it);
            it = next;
        }
    }
    free(q->buckets);
    free(q);
}

int workq_add(workq *q, const char *key)
{
    item **p = slot_of(q, key);
    item *it = *p;
    if (!it) {
        if (q->n >= q->max)
            return -1;
        size_t len = strlen(key);
        it = calloc(1, sizeof *it + len + 1);
        if (!it)
            return -1;
        memcpy(it->key, key, len + 1);
        backoff_init(&it->backoff, q->backoff_initial, q->backoff_max, 0);
        *p = it;
        q->n++;
        make_ready(q, it);
        grow(q);
        return 0;
    }
    switch (it->state) {
    case READY:
        break;
    case WAITING:
        list_unlink(&q->waiting, it);
        make_ready(q, it);
        break;
    case PROCESSING:
        it->dirty = true;
        break;
    }
    return 0;
}

const char *workq_get(workq *q, double now)
{
    while (q->waiting.head && q->waiting.head->due <= now) {
        item *it = q->waiting.head;
        list_unlink(&q->waiting, it);
        make_ready(q, it);
    }
    item *it = q->ready.head;
    if (!it)
        return NULL;
    list_unlink(&q->ready, it);
    q->n_ready--;
    it->state = PROCESSING;
    q->n_processing++;
    return it->key;
}

bool workq_done(workq *q, const char *key, bool retry, double now)
{
    item **p = slot_of(q, key);
    item *it = *p;
    if (!it || it->state != PROCESSING)
        return false;
    q->n_processing--;
    if (retry) {
        double delay = backoff_next(&it->backoff);
        if (it->dirty) {
            it->dirty = false;
            make_ready(q, it);
        } else {
            it->state = WAITING;
            it->due = now + delay;
            list_insert_by_due(&q->waiting, it);
        }
        return true;
    }
    backoff_reset(&it->backoff);
    if (it->dirty) {
        it->dirty = false;
        make_ready(q, it);
        return true;
    }
    *p = it->hnext;
    q->n--;
    free(it);
    return true;
}

size_t workq_len(const workq *q)
{
    return q->n;
}

size_t workq_ready(const workq *q)
{
    return q->n_ready;
}

size_t workq_processing(const workq *q)
{
    return q->n_processing;
}

double workq_next_due(workq *q)
{
    return q->waiting.head ? q->waiting.head->due : -1;
}

/* ---- reconciler ------------------------------------------------------------ */

struct reconciler {
    struct ev_loop *loop;
    workq *q;
    unsigned workers, busy;
    bool paused;
    reconcile_fn process;
    void *ud;
    metric *depth;
    ev_timer timer;
};

static void schedule(reconciler *r)
{
    metric_set(r->depth, NULL, (double)workq_len(r->q));
    ev_timer_stop(r->loop, &r->timer);
    if (r->paused || r->busy >= r->workers)
        return; /* resume or the next done schedules again */
    double delay;
    if (workq_ready(r->q)) {
        delay = 0;
    } else {
        double due = workq_next_due(r->q);
        if (due < 0)
            return;
        delay = due - ev_now(r->loop);
        if (delay < 0)
            delay = 0;
    }
    ev_timer_set(&r->timer, delay, 0.);
    ev_timer_start(r->loop, &r->timer);
}

static void dispatch(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    reconciler *r = w->data;
    const char *key;
    for (int budget = DISPATCH_BUDGET; budget > 0 && !r->paused && r->busy < r->workers &&
         (key = workq_get(r->q, ev_now(loop))) != NULL; budget--) {
        r->busy++;
        enum reconcile_result res = r->process(r->ud, key);
        if (res != RECONCILE_ASYNC && workq_done(r->q, key, res == RECONCILE_RETRY, ev_now(loop)))
            r->busy--;
    }
    schedule(r);
}

reconciler *reconciler_new(const reconciler_config *cfg)
{
    reconciler *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->q = workq_new(cfg->max_keys ? cfg->max_keys : DEFAULT_MAX_KEYS,
                     cfg->backoff_initial_s > 0 ? cfg->backoff_initial_s : DEFAULT_BACKOFF_INITIAL_S,
                     cfg->backoff_max_s > 0 ? cfg->backoff_max_s : DEFAULT_BACKOFF_MAX_S);
    if (!r->q) {
        free(r);
        return NULL;
    }
    r->loop = cfg->loop;
    r->workers = cfg->workers ? cfg->workers : DEFAULT_WORKERS;
    r->paused = true;
    r->process = cfg->process;
    r->ud = cfg->ud;
    r->depth = cfg->depth;
    ev_init(&r->timer, dispatch);
    r->timer.data = r;
    return r;
}

void reconciler_free(reconciler *r)
{
    if (!r)
        return;
    ev_timer_stop(r->loop, &r->timer);
    workq_free(r->q);
    free(r);
}

int reconciler_add(reconciler *r, const char *key)
{
    int rc = workq_add(r->q, key);
    schedule(r);
    return rc;
}

void reconciler_done(reconciler *r, const char *key, bool retry)
{
    if (workq_done(r->q, key, retry, ev_now(r->loop)))
        r->busy--;
    schedule(r);
}

void reconciler_pause(reconciler *r)
{
    r->paused = true;
    schedule(r);
}

void reconciler_resume(reconciler *r)
{
    r->paused = false;
    schedule(r);
}

size_t reconciler_depth(const reconciler *r)
{
    return workq_len(r->q);
}
