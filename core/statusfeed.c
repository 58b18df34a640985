/* statusfeed.c -- the WatchPodStatus reader thread, or the GetPodStatus
 * poller.
 *
 * The reader owns the stream; the loop may only cancel it, under `lock`,
 * which also guards the condition variable the reader sleeps on between
 * attempts, so a stop never waits out a sleep.
 */
#include "statusfeed.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "logval.h"
#include "ratelimit.h"

#define MAILBOX_MAX 256
#define DEFAULT_POLL_S 5.0
/* A failing stream is reopened after 1 s, doubling up to 30 s: a provider
 * that keeps failing WatchPodStatus costs a GetPods (see `reopened`) and a
 * log line per attempt, so they must not come every second. A stream that
 * delivered an event or stayed open REOPEN_HEALTHY_S worked: the next
 * failure starts again from 1 s. */
#define REOPEN_INITIAL_S 1.0
#define REOPEN_MAX_S 30.0
#define REOPEN_HEALTHY_S 30.0
#define FULL_WAIT_MS 5

struct statusfeed {
    struct ev_loop *loop;
    provider_client *pc;
    vk_pool *pool;
    void (*deliver)(void *ud, const statusfeed_event *ev);
    void (*reopened)(void *ud, bool quiet);
    size_t (*list)(void *ud, statusfeed_pod **pods);
    void *ud;
    bool stopping;             /* loop side: no more deliveries */

    /* watch */
    vk_mailbox *mailbox;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pc_stream *stream;         /* the reader's current stream, under lock */
    /* Reader thread only: attempts failed in a row, and the delay before
     * the next one. */
    unsigned failures;
    struct backoff reopen;

    /* poll: from the start, or once WatchPodStatus proved unimplemented */
    double poll_every;
    ev_timer poll;
    bool polling;              /* a poll job is in flight */
};

/* What a letter carries to the loop. */
enum letter_kind {
    LETTER_EVENT,
    LETTER_REOPENED,   /* a stream was opened again */
    LETTER_POLL,       /* WatchPodStatus is not implemented: poll instead */
};

/* One event on its way to the loop, in one allocation; or news of the
 * stream. */
typedef struct letter {
    statusfeed *sf;
    enum letter_kind kind;
    bool quiet;                /* LETTER_REOPENED in a failing streak */
    statusfeed_event ev;
    char data[];
} letter;

static void free_feed(statusfeed *sf)
{
    pthread_cond_destroy(&sf->wake);
    pthread_mutex_destroy(&sf->lock);
    pc_unref(sf->pc);
    free(sf);
}

/* ---- watch: reader thread ------------------------------------------------ */

/* Sleep up to ms unless stopped. */
static void nap(statusfeed *sf, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    ts.tv_sec += ms / 1000 + ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&sf->lock);
    while (!atomic_load(&sf->stop) && pthread_cond_timedwait(&sf->wake, &sf->lock, &ts) != ETIMEDOUT)
        ;
    pthread_mutex_unlock(&sf->lock);
}

static void start_polling(statusfeed *sf, double first);

static void deliver_letter(void *arg)
{
    letter *l = arg;
    statusfeed *sf = l->sf;
    if (!sf->stopping) {
        switch (l->kind) {
        case LETTER_EVENT:
            sf->deliver(sf->ud, &l->ev);
            break;
        case LETTER_REOPENED:
            sf->reopened(sf->ud, l->quiet);
            break;
        case LETTER_POLL:
            /* At once: no status came since the provider came up. */
            start_polling(sf, 0.);
            break;
        }
    }
    free(l);
}

static letter *make_letter(statusfeed *sf, const Vkc__Provider__V1__PodStatusEvent *m)
{
    const Vkc__Provider__V1__PodRef *ref = m->pod;
    const char *ns = ref ? ref->namespace_ : "", *name = ref ? ref->name : "";
    const char *uid = ref ? ref->uid : "";
    size_t lns = strlen(ns), lname = strlen(name), luid = strlen(uid);
    size_t lst = m->status_json.len;
    letter *l = malloc(sizeof *l + lns + lname + luid + lst + 4);
    if (!l)
        return NULL;
    char *p = l->data;
    l->sf = sf;
    l->kind = LETTER_EVENT;
    l->quiet = false;
    l->ev.ns = memcpy(p, ns, lns + 1);
    p += lns + 1;
    l->ev.name = memcpy(p, name, lname + 1);
    p += lname + 1;
    l->ev.uid = memcpy(p, uid, luid + 1);
    p += luid + 1;
    if (lst)
        memcpy(p, m->status_json.data, lst);
    p[lst] = '\0';
    l->ev.status_json = m->deleted ? NULL : p;
    l->ev.len = m->deleted ? 0 : lst;
    l->ev.seq = m->sequence;
    l->ev.gone = m->deleted;
    return l;
}

/* Hand l to the loop, waiting while the mailbox is full. false when
 * stopped first (l is then freed). */
static bool post(statusfeed *sf, letter *l)
{
    while (vk_post(sf->mailbox, deliver_letter, l) < 0) {
        if (atomic_load(&sf->stop)) {
            free(l);
            return false;
        }
        nap(sf, FULL_WAIT_MS);
    }
    return true;
}

/* The stream works: a failing streak, if any, is over. */
static void stream_healthy(statusfeed *sf)
{
    if (sf->failures)
        vk_info("pod status stream recovered", "failures=%u", sf->failures);
    sf->failures = 0;
    backoff_reset(&sf->reopen);
}

static void read_stream(statusfeed *sf, pc_stream *s)
{
    ProtobufCMessage *msg;
    bool delivered = false;
    while (!atomic_load(&sf->stop) && pc_stream_next(s, &msg) == 1) {
        if (!delivered) {
            delivered = true;
            stream_healthy(sf);
        }
        letter *l = make_letter(sf, (Vkc__Provider__V1__PodStatusEvent *)msg);
        protobuf_c_message_free_unpacked(msg, NULL);
        if (!l) {
            vk_warn("pod status event lost", "reason=%s", "out-of-memory");
            continue;
        }
        if (!post(sf, l))
            return;
    }
}

/* Tell the loop, in order with the events, that a new stream begins or
 * that there will be none. */
static bool post_news(statusfeed *sf, enum letter_kind kind)
{
    letter *l = calloc(1, sizeof *l);
    if (!l)
        return false;
    l->sf = sf;
    l->kind = kind;
    l->quiet = sf->failures > 1; /* the owner said it at the streak's first reopen */
    return post(sf, l);
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *reader_main(void *arg)
{
    statusfeed *sf = arg;
    unsigned opened = 0;
    while (!atomic_load(&sf->stop)) {
        pc_stream *s = NULL;
        vk_status st = {0, NULL};
        int code = pc_watch_pod_status(sf->pc, &s, &st);
        if (code == VK_OK) {
            double since = mono_now();
            pthread_mutex_lock(&sf->lock);
            sf->stream = s;
            bool stopped = atomic_load(&sf->stop);
            pthread_mutex_unlock(&sf->lock);
            if (!stopped && (!opened++ || post_news(sf, LETTER_REOPENED)))
                read_stream(sf, s);
            pthread_mutex_lock(&sf->lock);
            sf->stream = NULL;
            pthread_mutex_unlock(&sf->lock);
            code = pc_stream_finish(s, &st);
            pc_stream_free(s);
            if (mono_now() - since >= REOPEN_HEALTHY_S)
                stream_healthy(sf);
        }
        if (atomic_load(&sf->stop)) {
            vk_status_clear(&st);
            break;
        }
        char msg_v[LOGVAL_MAX];
        if (code == VK_UNIMPLEMENTED) {
            /* Declared but not served: reopening cannot help, and without
             * statuses new pods would stay Pending. Polling GetPodStatus
             * works with any provider; this one gets it until it restarts. */
            vk_warn("provider WatchPodStatus is not implemented; polling GetPodStatus", "code=%s error=%s",
                    vk_status_code_name(code), logval(msg_v, sizeof msg_v, st.message ? st.message : ""));
            vk_status_clear(&st);
            if (!post_news(sf, LETTER_POLL) && !atomic_load(&sf->stop))
                vk_error("cannot switch to polling pod statuses", "reason=%s", "out-of-memory");
            break;
        }
        /* A streak is said once at warn; its further attempts at debug. */
        enum vk_log_level level = sf->failures++ ? VK_LOG_DEBUG : VK_LOG_WARN;
        double delay = backoff_next(&sf->reopen);
        if (vk_log_enabled(level))
            vk_log(level, "pod status stream ended; reopening", "code=%s error=%s failures=%u in=%.0fms",
                   vk_status_code_name(code), logval(msg_v, sizeof msg_v, st.message ? st.message : ""),
                   sf->failures, delay * 1000);
        vk_status_clear(&st);
        nap(sf, (int)(delay * 1000));
    }
    return NULL;
}

/* ---- poll: pool job ----------------------------------------------------------- */

typedef struct poll_job {
    statusfeed *sf;
    statusfeed_pod *pods;
    size_t n;
    int *codes;
    vk_buf *statuses;
} poll_job;

static void poll_work(void *arg)
{
    poll_job *j = arg;
    for (size_t i = 0; i < j->n; i++) {
        /* A stop makes the rest pointless; the provider may be hung. */
        if (atomic_load(&j->sf->stop)) {
            j->codes[i] = VK_CANCELLED;
            continue;
        }
        j->codes[i] = pc_get_pod_status(j->sf->pc, j->pods[i].ns, j->pods[i].name, j->pods[i].uid,
                                        &j->statuses[i], NULL);
    }
}

static void free_pods(statusfeed_pod *pods, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(pods[i].ns);
        free(pods[i].name);
        free(pods[i].uid);
    }
    free(pods);
}

static void poll_done(void *arg)
{
    poll_job *j = arg;
    statusfeed *sf = j->sf;
    sf->polling = false;
    for (size_t i = 0; i < j->n && !sf->stopping; i++) {
        statusfeed_event ev = {
            .ns = j->pods[i].ns, .name = j->pods[i].name, .uid = j->pods[i].uid,
        };
        if (j->codes[i] == VK_OK) {
            ev.status_json = j->statuses[i].data ? j->statuses[i].data : "";
            ev.len = j->statuses[i].len;
        } else if (j->codes[i] == VK_NOT_FOUND) {
            ev.gone = true;
        } else {
            continue;
        }
        sf->deliver(sf->ud, &ev);
    }
    for (size_t i = 0; i < j->n; i++)
        vk_buf_free(&j->statuses[i]);
    free(j->statuses);
    free(j->codes);
    free_pods(j->pods, j->n);
    free(j);
    if (sf->stopping)
        free_feed(sf);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents);

/* Poll every interval, the first time after `first` seconds. */
static void start_polling(statusfeed *sf, double first)
{
    ev_timer_init(&sf->poll, poll_cb, first, sf->poll_every);
    sf->poll.data = sf;
    ev_timer_start(sf->loop, &sf->poll);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    statusfeed *sf = w->data;
    if (sf->polling)
        return; /* a slow provider: skip a round rather than pile up */
    poll_job *j = calloc(1, sizeof *j);
    if (!j)
        return;
    j->sf = sf;
    j->n = sf->list(sf->ud, &j->pods);
    j->codes = calloc(j->n ? j->n : 1, sizeof *j->codes);
    j->statuses = calloc(j->n ? j->n : 1, sizeof *j->statuses);
    if (!j->codes || !j->statuses || !j->n || vk_pool_submit(sf->pool, poll_work, poll_done, j) < 0) {
        free(j->codes);
        free(j->statuses);
        free_pods(j->pods, j->n);
        free(j);
        return;
    }
    sf->polling = true;
}

/* ---- public --------------------------------------------------------------------- */

statusfeed *statusfeed_start(const statusfeed_config *cfg)
{
    statusfeed *sf = calloc(1, sizeof *sf);
    if (!sf)
        return NULL;
    sf->loop = cfg->loop;
    sf->pc = pc_ref(cfg->pc);
    sf->pool = cfg->pool;
    sf->deliver = cfg->deliver;
    sf->reopened = cfg->reopened;
    sf->list = cfg->list;
    sf->ud = cfg->ud;
    pthread_mutex_init(&sf->lock, NULL);
    pthread_cond_init(&sf->wake, NULL);
    sf->poll_every = cfg->poll_interval_s > 0 ? cfg->poll_interval_s : DEFAULT_POLL_S;
    if (!cfg->watch) {
        start_polling(sf, sf->poll_every);
        return sf;
    }
    backoff_init(&sf->reopen, REOPEN_INITIAL_S, REOPEN_MAX_S, 0);
    sf->mailbox = vk_mailbox_new(sf->loop, MAILBOX_MAX);
    if (!sf->mailbox || pthread_create(&sf->thread, NULL, reader_main, sf) != 0) {
        vk_error("cannot start the pod status reader", "reason=%s", "resources");
        vk_mailbox_free(sf->mailbox);
        free_feed(sf);
        return NULL;
    }
    sf->thread_started = true;
    return sf;
}

void statusfeed_stop(statusfeed *sf)
{
    if (!sf)
        return;
    sf->stopping = true;
    ev_timer_stop(sf->loop, &sf->poll);
    pthread_mutex_lock(&sf->lock);
    atomic_store(&sf->stop, true);
    if (sf->stream)
        pc_stream_cancel(sf->stream);
    pthread_cond_broadcast(&sf->wake);
    pthread_mutex_unlock(&sf->lock);
    if (sf->thread_started)
        pthread_join(sf->thread, NULL);
    vk_mailbox_free(sf->mailbox); /* letters left are dropped: stopping */
    if (!sf->polling)
        free_feed(sf);
}
