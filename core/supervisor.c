/* supervisor.c -- the provider's lifecycle as a state machine on the loop.
 *
 *   STARTING --handshake ok--> READY --3 missed pings--> (hung)
 *      |  ^                      |   (socket mode: or the
 *      |  |                      |    socket replaced)      |
 *      |  |                   exits                 spawn: SIGKILL, KILLING
 *      |  +---- BACKOFF <--------+------------------ socket: drop channel
 *      +-- fails (no socket, handshake error) --> like hung
 *
 * In socket mode nothing tells the core that the provider it talks to was
 * replaced: gRPC reconnects a channel by itself, so a provider restarted
 * between two pings answers the next one as if nothing happened. The new
 * one would never get a Handshake (so it would not know the node or the
 * Core service), and, without a status stream breaking, no resync of its
 * empty state. So the socket file's identity (device, inode, change time)
 * is recorded before connecting and checked at every ping: a provider that
 * binds again creates a new file, and a different file (or none) ends the
 * incarnation like a hang does.
 *
 * Each incarnation (one process, or one connection in socket mode) has a
 * generation number. Jobs on the pool carry the generation they were
 * started for; a completion of an older generation only frees its job, so
 * a late answer from a dead provider never touches the current one.
 */
#include "supervisor.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "logval.h"
#include "socket_dir.h"
#include "spawn.h"
#include "version.h"

#define BACKOFF_START_MS 100
#define HEALTHY_RESET_S 60.0       /* up this long: back-off starts over */
#define CRASH_LOOP_RESTARTS 5      /* this many restarts ... */
#define CRASH_LOOP_WINDOW_S 60.0   /* ... within this: a crash loop */
#define MISSED_PINGS_HUNG 3
#define STARTUP_TIMEOUT_MS 30000   /* from start to accepting connections */
#define HANDSHAKE_TIMEOUT_MS 5000
#define UNARY_TIMEOUT_MS 10000     /* default deadline of the client */
#define PROBE_INTERVAL_MS 20

enum state {
    ST_IDLE,      /* not started */
    ST_STARTING,  /* spawned or connecting; handshake pending */
    ST_READY,     /* handshook, pinged */
    ST_KILLING,   /* SIGKILL sent after a failure; waiting for the exit */
    ST_BACKOFF,   /* waiting to start again */
    ST_STOPPING,  /* shutdown: SIGTERM sent, waiting for the exit */
    ST_STOPPED,
};

typedef struct connect_job connect_job;

/* Which file a socket path names; a provider binding again makes a new one. */
typedef struct sock_id {
    bool known;
    dev_t dev;
    ino_t ino;
    struct timespec ctim;
} sock_id;

struct supervisor {
    supervisor_config cfg;
    char **env;            /* spawn mode: the provider's environment */
    char *target;          /* "unix:" socket_path */

    enum state state;
    unsigned gen;
    pid_t pid;             /* 0: no process (socket mode, or it exited) */
    provider_client *pc;   /* READY only */
    pc_info info;
    connect_job *connecting;
    ev_tstamp ready_since;
    sock_id sock;          /* socket mode: the file connected to (READY) */

    ev_child child;
    ev_timer ping_timer, backoff_timer, stop_timer;
    int ping_in_flight;
    int missed_pings;

    int backoff_step;
    unsigned restarts;
    ev_tstamp recent[CRASH_LOOP_RESTARTS]; /* ring of restart times */
    unsigned recent_at;
    unsigned seed;         /* jitter */

    supervisor_listener listeners[SUPERVISOR_MAX_LISTENERS];
    int n_listeners;

    void (*stop_done)(void *ud);
    void *stop_ud;
};

/* Connecting and handshaking, on a pool thread. The thread reads the
 * fields up to `cancel` and writes the ones after it, which the loop reads
 * only once the job is done. */
struct connect_job {
    supervisor *s;
    unsigned gen;
    const char *socket_path, *target, *node_name, *core_target;
    metric *rpc_errors;
    atomic_bool cancel;    /* the incarnation ended: give up */

    provider_client *pc;
    pc_info info;
    sock_id sock;          /* the socket file found accepting */
    vk_status st;          /* the outcome */
    const char *step;      /* what failed: "connect" or "handshake" */
};

typedef struct ping_job {
    supervisor *s;
    unsigned gen;
    provider_client *pc;
    int timeout_ms;
    vk_status st;          /* the outcome */
} ping_job;

static void launch(supervisor *s);
static void fail(supervisor *s);

/* ---- logging ------------------------------------------------------------ */

#define WHO_MAX (LOGVAL_MAX + 8)

/* "pid=42" in spawn mode, "socket=/path" in socket mode, for log lines. */
static const char *who(const supervisor *s, char *buf, size_t cap)
{
    char v[LOGVAL_MAX];
    if (s->cfg.argv)
        snprintf(buf, cap, "pid=%d", (int)s->pid);
    else
        snprintf(buf, cap, "socket=%s", logval(v, sizeof v, s->cfg.socket_path));
    return buf;
}

static const char *status_text(const vk_status *st)
{
    return st->message && st->message[0] ? st->message : vk_status_code_name(st->code);
}

/* ---- listeners ---------------------------------------------------------- */

int supervisor_listen(supervisor *s, const supervisor_listener *l)
{
    if (s->n_listeners == SUPERVISOR_MAX_LISTENERS)
        return -1;
    s->listeners[s->n_listeners++] = *l;
    return 0;
}

static void notify_up(supervisor *s)
{
    for (int i = 0; i < s->n_listeners; i++)
        if (s->listeners[i].up)
            s->listeners[i].up(s->listeners[i].ud, s->pc, &s->info);
}

static void notify_down(supervisor *s)
{
    for (int i = 0; i < s->n_listeners; i++)
        if (s->listeners[i].down)
            s->listeners[i].down(s->listeners[i].ud);
}

/* ---- connecting (pool thread) ------------------------------------------ */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static sock_id sock_identify(const char *path)
{
    sock_id id = {0};
    struct stat sb;
    if (stat(path, &sb) == 0) {
        id.known = true;
        id.dev = sb.st_dev;
        id.ino = sb.st_ino;
        id.ctim = sb.st_ctim;
    }
    return id;
}

static bool sock_same(const sock_id *a, const sock_id *b)
{
    return a->known && b->known && a->dev == b->dev && a->ino == b->ino &&
           a->ctim.tv_sec == b->ctim.tv_sec && a->ctim.tv_nsec == b->ctim.tv_nsec;
}

static void connect_work(void *arg)
{
    connect_job *job = arg;
    long deadline = now_ms() + STARTUP_TIMEOUT_MS;

    /* Wait for the socket ourselves rather than let gRPC try: its
     * reconnect back-off (a second and more) would delay every start. */
    job->step = "connect";
    while (!socket_accepts(job->socket_path)) {
        if (atomic_load(&job->cancel) || now_ms() > deadline) {
            vk_status_set(&job->st, VK_UNAVAILABLE, "nothing accepts connections on %s",
                          job->socket_path);
            return;
        }
        usleep(PROBE_INTERVAL_MS * 1000);
    }
    /* Before the channel connects: a provider replaced from here on shows
     * as a different file at the next ping, at worst one reconnect early. */
    job->sock = sock_identify(job->socket_path);
    job->pc = pc_new(job->target, UNARY_TIMEOUT_MS, job->rpc_errors);
    if (!job->pc) {
        vk_status_set(&job->st, VK_RESOURCE_EXHAUSTED, "cannot create a channel");
        return;
    }
    while (!pc_wait_ready(job->pc, 100)) {
        if (atomic_load(&job->cancel) || now_ms() > deadline) {
            vk_status_set(&job->st, VK_UNAVAILABLE, "the gRPC channel did not become ready");
            return;
        }
    }
    job->step = "handshake";
    job->st.code = pc_handshake(job->pc, job->node_name, job->core_target,
                                HANDSHAKE_TIMEOUT_MS, &job->info, &job->st);
}

static void free_connect_job(connect_job *job)
{
    pc_unref(job->pc);
    pc_info_clear(&job->info);
    vk_status_clear(&job->st);
    free(job);
}

static void become_ready(supervisor *s, connect_job *job)
{
    char w[WHO_MAX], name_v[LOGVAL_MAX], version_v[LOGVAL_MAX], expected_v[LOGVAL_MAX];
    vk_buf caps = VK_BUF_INIT;

    s->pc = job->pc;
    s->info = job->info;
    s->sock = job->sock;
    job->pc = NULL;
    memset(&job->info, 0, sizeof job->info);
    s->state = ST_READY;
    s->ready_since = ev_now(s->cfg.loop);
    s->missed_pings = 0;

    pc_caps_format(s->info.caps, &caps);
    vk_info("provider ready", "name=%s version=%s %s capabilities=%s",
            logval(name_v, sizeof name_v, s->info.name),
            logval(version_v, sizeof version_v, s->info.version),
            who(s, w, sizeof w), caps.data ? caps.data : "");
    vk_buf_free(&caps);
    if (s->cfg.expected_name && strcmp(s->cfg.expected_name, s->info.name) != 0)
        vk_warn("provider name differs from --provider", "expected=%s got=%s",
                logval(expected_v, sizeof expected_v, s->cfg.expected_name),
                logval(name_v, sizeof name_v, s->info.name));
    metric_set(s->cfg.up, NULL, 1);
    ev_timer_again(s->cfg.loop, &s->ping_timer);
    notify_up(s);
}

static void connect_done(void *arg)
{
    connect_job *job = arg;
    supervisor *s = job->s;
    char w[WHO_MAX], err_v[LOGVAL_MAX];

    if (s->connecting == job)
        s->connecting = NULL;
    if (job->gen != s->gen || s->state != ST_STARTING) {
        free_connect_job(job);
        return;
    }
    if (job->st.code != VK_OK) {
        vk_warn("provider not ready", "%s step=%s code=%s err=%s", who(s, w, sizeof w),
                job->step, vk_status_code_name(job->st.code),
                logval(err_v, sizeof err_v, status_text(&job->st)));
        free_connect_job(job);
        fail(s);
        return;
    }
    if (job->info.protocol_version != VKC_PROTOCOL_VERSION) {
        /* Restarting does not change what the provider speaks. */
        char msg[128];
        snprintf(msg, sizeof msg, "provider speaks protocol version %u, this core speaks %u",
                 job->info.protocol_version, VKC_PROTOCOL_VERSION);
        vk_error(msg, "%s name=%s", who(s, w, sizeof w),
                 logval(err_v, sizeof err_v, job->info.name));
        free_connect_job(job);
        s->cfg.fatal(s->cfg.fatal_ud);
        return;
    }
    become_ready(s, job);
    free(job);
}

/* ---- pings ---------------------------------------------------------------- */

static void ping_work(void *arg)
{
    ping_job *job = arg;
    job->st.code = pc_ping(job->pc, job->timeout_ms, &job->st);
}

/* The outcome of one ping of the current provider. */
static void ping_result(supervisor *s, const vk_status *st)
{
    char w[WHO_MAX], err_v[LOGVAL_MAX];
    if (st->code == VK_OK) {
        s->missed_pings = 0;
    } else if (++s->missed_pings < MISSED_PINGS_HUNG) {
        vk_warn("provider missed a ping", "%s missed=%d code=%s err=%s",
                who(s, w, sizeof w), s->missed_pings, vk_status_code_name(st->code),
                logval(err_v, sizeof err_v, status_text(st)));
    } else {
        vk_error("provider hung", "%s missed=%d code=%s", who(s, w, sizeof w),
                 s->missed_pings, vk_status_code_name(st->code));
        fail(s);
    }
}

static void ping_done(void *arg)
{
    ping_job *job = arg;
    supervisor *s = job->s;
    if (job->gen == s->gen && s->state == ST_READY) {
        s->ping_in_flight = 0;
        ping_result(s, &job->st);
    }
    pc_unref(job->pc);
    vk_status_clear(&job->st);
    free(job);
}

static void on_ping_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    supervisor *s = t->data;
    (void)loop;
    (void)revents;
    if (!s->cfg.argv && s->sock.known) {
        sock_id now = sock_identify(s->cfg.socket_path);
        if (!sock_same(&s->sock, &now)) {
            char w[WHO_MAX];
            vk_warn("provider socket replaced: the provider restarted, reconnecting",
                    "%s socket_exists=%s", who(s, w, sizeof w), now.known ? "true" : "false");
            fail(s);
            return;
        }
    }
    if (s->ping_in_flight) /* the last one is still within its deadline */
        return;
    ping_job *job = calloc(1, sizeof *job);
    if (job) {
        job->s = s;
        job->gen = s->gen;
        job->pc = pc_ref(s->pc);
        job->timeout_ms = s->cfg.ping_timeout_ms;
        if (vk_pool_submit(s->cfg.pool, ping_work, ping_done, job) == 0) {
            s->ping_in_flight = 1;
            return;
        }
        pc_unref(job->pc);
        free(job);
    }
    /* Not even able to ask counts as a miss: a core this overloaded cannot
     * tell a hung provider from a healthy one anyway. */
    vk_status st = {VK_RESOURCE_EXHAUSTED, NULL};
    ping_result(s, &st);
}

/* ---- incarnations ------------------------------------------------------ */

/* Forget the current provider: stop pinging, abandon a pending connect,
 * drop the client, tell listeners. The process, if any, is left alone. */
static void end_incarnation(supervisor *s)
{
    int was_ready = s->state == ST_READY;
    s->gen++;
    ev_timer_stop(s->cfg.loop, &s->ping_timer);
    s->ping_in_flight = 0;
    s->missed_pings = 0;
    if (s->connecting) {
        atomic_store(&s->connecting->cancel, true);
        s->connecting = NULL;
    }
    pc_unref(s->pc);
    s->pc = NULL;
    pc_info_clear(&s->info);
    s->sock.known = false;
    if (was_ready) {
        if (ev_now(s->cfg.loop) - s->ready_since >= HEALTHY_RESET_S)
            s->backoff_step = 0;
        metric_set(s->cfg.up, NULL, 0);
        notify_down(s);
    }
}

static int backoff_ms(supervisor *s)
{
    double ms = BACKOFF_START_MS;
    for (int i = 0; i < s->backoff_step && ms < s->cfg.max_backoff_ms; i++)
        ms *= 2;
    if (ms < s->cfg.max_backoff_ms)
        s->backoff_step++;
    else
        ms = s->cfg.max_backoff_ms;
    double jitter = 0.8 + 0.4 * ((double)rand_r(&s->seed) / RAND_MAX);
    return (int)(ms * jitter);
}

static void schedule_restart(supervisor *s)
{
    ev_tstamp now = ev_now(s->cfg.loop);
    int delay = backoff_ms(s);

    s->restarts++;
    metric_add(s->cfg.restarts, NULL, 1);
    /* The ring holds the last CRASH_LOOP_RESTARTS restarts, this one
     * included; the slot after it is the oldest. */
    s->recent[s->recent_at] = now;
    s->recent_at = (s->recent_at + 1) % CRASH_LOOP_RESTARTS;
    ev_tstamp oldest = s->recent[s->recent_at];
    if (s->restarts >= CRASH_LOOP_RESTARTS && now - oldest <= CRASH_LOOP_WINDOW_S)
        vk_warn("provider crash loop", "restarts=%u recent=%d window=%.0fs",
                s->restarts, CRASH_LOOP_RESTARTS, CRASH_LOOP_WINDOW_S);
    vk_info("provider restarting", "in=%dms restarts=%u", delay, s->restarts);
    s->state = ST_BACKOFF;
    ev_timer_set(&s->backoff_timer, delay / 1000.0, 0);
    ev_timer_start(s->cfg.loop, &s->backoff_timer);
}

/* The incarnation failed (hung, never ready): get rid of it, start over. */
static void fail(supervisor *s)
{
    end_incarnation(s);
    if (s->pid > 0) {
        /* Restart only once it is gone, or two would share the socket. */
        kill(-s->pid, SIGKILL);
        s->state = ST_KILLING;
    } else {
        schedule_restart(s);
    }
}

static void on_backoff(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    launch(t->data);
}

static int spawn(supervisor *s)
{
    char path_v[LOGVAL_MAX];
    /* A socket left by an earlier provider would look ready at once. */
    if (unlink(s->cfg.socket_path) < 0 && errno != ENOENT)
        vk_warn("cannot remove the old provider socket", "path=%s err=\"%s\"",
                logval(path_v, sizeof path_v, s->cfg.socket_path), strerror(errno));
    pid_t pid = spawn_process(s->cfg.path, s->cfg.argv, s->env);
    if (pid < 0)
        return -1;
    s->pid = pid;
    ev_child_set(&s->child, pid, 0);
    ev_child_start(s->cfg.loop, &s->child);
    vk_info("provider started", "pid=%d path=%s", (int)pid,
            logval(path_v, sizeof path_v, s->cfg.path));
    return 0;
}

static void launch(supervisor *s)
{
    s->state = ST_STARTING;
    if (s->cfg.argv && spawn(s) < 0) {
        schedule_restart(s);
        return;
    }
    connect_job *job = calloc(1, sizeof *job);
    if (job) {
        job->s = s;
        job->gen = s->gen;
        job->socket_path = s->cfg.socket_path;
        job->target = s->target;
        job->node_name = s->cfg.node_name;
        job->core_target = s->cfg.core_target;
        job->rpc_errors = s->cfg.rpc_errors;
        atomic_init(&job->cancel, false);
        if (vk_pool_submit(s->cfg.pool, connect_work, connect_done, job) == 0) {
            s->connecting = job;
            return;
        }
        free(job);
    }
    vk_error("cannot connect to the provider", "err=\"worker queue full\"");
    fail(s);
}

static void on_child(struct ev_loop *loop, ev_child *c, int revents)
{
    supervisor *s = c->data;
    int status = c->rstatus;
    (void)revents;
    ev_child_stop(loop, c);

    char how[48];
    if (WIFSIGNALED(status))
        snprintf(how, sizeof how, "signal=%s", sigabbrev_np(WTERMSIG(status)) ?
                 sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(how, sizeof how, "status=%d", WEXITSTATUS(status));

    if (s->state == ST_STOPPING)
        vk_info("provider stopped", "pid=%d %s", c->rpid, how);
    else
        vk_warn("provider exited", "pid=%d %s", c->rpid, how);
    s->pid = 0;

    switch (s->state) {
    case ST_STOPPING:
        ev_timer_stop(loop, &s->stop_timer);
        s->state = ST_STOPPED;
        s->stop_done(s->stop_ud);
        break;
    case ST_STARTING:
    case ST_READY:
        end_incarnation(s);
        schedule_restart(s);
        break;
    case ST_KILLING:
        schedule_restart(s);
        break;
    default:
        break;
    }
}

/* ---- start and stop ----------------------------------------------------- */

static void on_stop_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    supervisor *s = t->data;
    (void)loop;
    (void)revents;
    vk_warn("provider did not stop in time, killing it", "pid=%d", (int)s->pid);
    kill(-s->pid, SIGKILL);
}

supervisor *supervisor_new(const supervisor_config *cfg)
{
    supervisor *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cfg = *cfg;
    s->seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    vk_buf target = VK_BUF_INIT;
    if (vk_buf_printf(&target, "unix:%s", cfg->socket_path) < 0) {
        free(s);
        return NULL;
    }
    s->target = vk_buf_steal(&target, NULL);

    if (cfg->argv) {
        vk_buf listen = VK_BUF_INIT, core = VK_BUF_INIT, conf = VK_BUF_INIT;
        int rc = vk_buf_printf(&listen, "VKC_PROVIDER_LISTEN=%s", s->target);
        rc |= vk_buf_printf(&core, "VKC_CORE_TARGET=%s", cfg->core_target);
        if (cfg->provider_config)
            rc |= vk_buf_printf(&conf, "VKC_PROVIDER_CONFIG=%s", cfg->provider_config);
        const char *set[] = {listen.data, core.data, conf.data, NULL};
        if (rc == 0)
            s->env = spawn_env(set);
        vk_buf_free(&listen);
        vk_buf_free(&core);
        vk_buf_free(&conf);
        if (!s->env) {
            free(s->target);
            free(s);
            return NULL;
        }
    }

    ev_child_init(&s->child, on_child, 0, 0);
    s->child.data = s;
    ev_init(&s->ping_timer, on_ping_timer);
    s->ping_timer.repeat = cfg->ping_interval_ms / 1000.0;
    s->ping_timer.data = s;
    ev_init(&s->backoff_timer, on_backoff);
    s->backoff_timer.data = s;
    ev_init(&s->stop_timer, on_stop_timeout);
    s->stop_timer.data = s;
    metric_set(cfg->up, NULL, 0);
    return s;
}

void supervisor_start(supervisor *s)
{
    if (s->state == ST_IDLE)
        launch(s);
}

void supervisor_stop(supervisor *s, void (*done)(void *ud), void *ud)
{
    if (s->state == ST_STOPPING) {
        if (s->pid > 0) {
            vk_warn("killing the provider now", "pid=%d", (int)s->pid);
            kill(-s->pid, SIGKILL);
        }
        return;
    }
    if (s->state == ST_STOPPED)
        return;
    end_incarnation(s);
    ev_timer_stop(s->cfg.loop, &s->backoff_timer);
    s->state = ST_STOPPING;
    s->stop_done = done;
    s->stop_ud = ud;
    if (s->pid > 0) {
        vk_info("stopping the provider", "pid=%d timeout=%dms", (int)s->pid,
                s->cfg.stop_timeout_ms);
        kill(-s->pid, SIGTERM);
        ev_timer_set(&s->stop_timer, s->cfg.stop_timeout_ms / 1000.0, 0);
        ev_timer_start(s->cfg.loop, &s->stop_timer);
        return;
    }
    s->state = ST_STOPPED;
    done(ud);
}

void supervisor_free(supervisor *s)
{
    if (!s)
        return;
    ev_child_stop(s->cfg.loop, &s->child);
    ev_timer_stop(s->cfg.loop, &s->ping_timer);
    ev_timer_stop(s->cfg.loop, &s->backoff_timer);
    ev_timer_stop(s->cfg.loop, &s->stop_timer);
    pc_unref(s->pc);
    pc_info_clear(&s->info);
    spawn_env_free(s->env);
    free(s->target);
    free(s);
}
