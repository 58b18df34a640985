/* tokens.c -- the TokenRequest round trip and the token cache.
 *
 * A caller that misses the cache makes a pending request, posts it to the
 * loop (which owns the API client) and waits on the condition variable.
 * The pending request has two holders, the caller and the loop: a caller
 * that gives up (deadline, shutdown) only marks it abandoned and lets go,
 * and whichever side lets go last frees it, so the loop never writes into
 * memory a caller has freed. The answer still goes into the cache, where a
 * retry finds it.
 *
 * The cache is a list, oldest first: at TOKENS_MAX entries a linear search
 * costs less than the TokenRequest it saves, and the order is the eviction
 * order.
 */
#include "tokens.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "kube_client.h"
#include "log.h"
#include "logval.h"
#include "rpc.h"
#include "work.h"

#define DEFAULT_SECONDS 3600
#define MIN_SECONDS 600          /* the API server refuses less ... */
#define MAX_SECONDS (1LL << 32)  /* ... and more */
/* The kubelet renews a token after a day at most, however long it is
 * valid: the API server may have stretched its lifetime. */
#define MAX_AGE (24 * 3600)
#define REQUEST_TIMEOUT_MS 10000
/* Requests handed to the loop and not yet started: the Core service runs
 * at most 16 handlers, so this is never the limit in practice. */
#define MAILBOX_MAX 64

typedef struct entry {
    struct entry *prev, *next;
    char *key;
    size_t key_len;
    char *uid;
    char *token;
    int64_t expires;  /* Unix seconds */
    int64_t refresh;  /* Unix seconds: 80% of the lifetime gone, or a day */
} entry;

typedef struct pending {
    struct tokens *t;
    /* Under t->lock. */
    int holders;      /* the caller and the loop */
    bool done, abandoned;
    int code;
    char *token, *msg;
    int64_t expires;
    /* Set by the caller before posting, then read by the loop only. */
    vk_buf key;
    char *uid, *ns, *pod, *sa;
    vk_buf path, body;
    int64_t sent;     /* Unix seconds */
    /* Loop only: the API request, in t->inflight while it runs. */
    int64_t id;
    struct pending *prev, *next;
} pending;

struct tokens {
    struct kube_client *kube;
    refs *refs;
    vk_mailbox *mailbox;
    pthread_mutex_t lock;
    pthread_cond_t answered; /* some pending request is done, or closing */
    bool closing;
    entry *oldest, *newest;
    size_t n;
    pending *inflight;       /* loop only */
};

static int64_t unix_now(void)
{
    return (int64_t)time(NULL);
}

void tokens_wipe(char *token)
{
    if (!token)
        return;
    explicit_bzero(token, strlen(token));
    free(token);
}

/* ---- the cache ------------------------------------------------------------ */

static void entry_free(entry *e)
{
    tokens_wipe(e->token);
    free(e->key);
    free(e->uid);
    free(e);
}

/* Under t->lock. */
static void unlink_entry(tokens *t, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        t->oldest = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        t->newest = e->prev;
    t->n--;
    entry_free(e);
}

/* Under t->lock. */
static entry *find_entry(tokens *t, const char *key, size_t len)
{
    for (entry *e = t->oldest; e; e = e->next)
        if (e->key_len == len && memcmp(e->key, key, len) == 0)
            return e;
    return NULL;
}

/* A copy of the cached token for key while it is fresh; NULL otherwise
 * (or when memory ran out: the API server is then asked again). */
static char *cache_get(tokens *t, const vk_buf *key, int64_t *expires)
{
    char *token = NULL;
    pthread_mutex_lock(&t->lock);
    entry *e = find_entry(t, key->data, key->len);
    if (e && unix_now() >= e->refresh) {
        unlink_entry(t, e);
    } else if (e) {
        token = strdup(e->token);
        *expires = e->expires;
    }
    pthread_mutex_unlock(&t->lock);
    return token;
}

static void cache_put(tokens *t, const pending *p, const char *token, int64_t expires)
{
    int64_t lifetime = expires - p->sent;
    if (lifetime <= 0)
        return; /* a clock that far off: asking again is all we can do */
    entry *e = calloc(1, sizeof *e);
    if (!e)
        return;
    e->key = malloc(p->key.len);
    e->uid = strdup(p->uid);
    e->token = strdup(token);
    if (!e->key || !e->uid || !e->token) {
        entry_free(e);
        return;
    }
    memcpy(e->key, p->key.data, p->key.len);
    e->key_len = p->key.len;
    e->expires = expires;
    e->refresh = p->sent + (lifetime * 8 / 10 < MAX_AGE ? lifetime * 8 / 10 : MAX_AGE);

    pthread_mutex_lock(&t->lock);
    entry *old = find_entry(t, e->key, e->key_len);
    if (old)
        unlink_entry(t, old);
    while (t->n >= TOKENS_MAX)
        unlink_entry(t, t->oldest);
    e->prev = t->newest;
    if (t->newest)
        t->newest->next = e;
    else
        t->oldest = e;
    t->newest = e;
    t->n++;
    pthread_mutex_unlock(&t->lock);
}

/* refs dropped the pod uid: its tokens go too. */
static void forget_pod(void *ud, const char *uid)
{
    tokens *t = ud;
    pthread_mutex_lock(&t->lock);
    for (entry *e = t->oldest, *next; e; e = next) {
        next = e->next;
        if (strcmp(e->uid, uid) == 0)
            unlink_entry(t, e);
    }
    pthread_mutex_unlock(&t->lock);
}

/* ---- pending requests ---------------------------------------------------- */

static void pending_free(pending *p)
{
    tokens_wipe(p->token);
    free(p->msg);
    vk_buf_free(&p->key);
    free(p->uid);
    free(p->ns);
    free(p->pod);
    free(p->sa);
    vk_buf_free(&p->path);
    vk_buf_free(&p->body);
    free(p);
}

/* Let go of p; the last holder frees it. */
static void release(pending *p)
{
    tokens *t = p->t;
    pthread_mutex_lock(&t->lock);
    bool last = --p->holders == 0;
    pthread_mutex_unlock(&t->lock);
    if (last)
        pending_free(p);
}

/* The loop's answer to p (token NULL unless code is VK_OK), then the loop
 * lets go of it. */
static void finish(pending *p, int code, const char *token, int64_t expires, const char *msg)
{
    tokens *t = p->t;
    pthread_mutex_lock(&t->lock);
    if (!p->abandoned) {
        p->code = code;
        p->expires = expires;
        p->token = token ? strdup(token) : NULL;
        p->msg = msg ? strdup(msg) : NULL;
        if (token && !p->token)
            p->code = VK_UNAVAILABLE;
    }
    p->done = true;
    pthread_cond_broadcast(&t->answered);
    pthread_mutex_unlock(&t->lock);
    release(p);
}

static void unlink_inflight(tokens *t, pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        t->inflight = p->next;
    if (p->next)
        p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

/* metav1.Time as the API server writes it: RFC 3339 in UTC, whole seconds
 * ("2024-05-01T10:00:00Z"). -1 for anything else. */
static int64_t parse_time(const char *s)
{
    struct tm tm = {0};
    const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
    if (!end || *end)
        return -1;
    return (int64_t)timegm(&tm);
}

static void on_response(const struct kube_response *resp, void *ud)
{
    pending *p = ud;
    tokens *t = p->t;
    char ns_v[LOGVAL_MAX], sa_v[LOGVAL_MAX], err_v[LOGVAL_MAX];
    unlink_inflight(t, p);

    if (resp->status != 200 && resp->status != 201) {
        int code = resp->status == 403 ? VK_PERMISSION_DENIED
                   : resp->status == 404 ? VK_NOT_FOUND : VK_UNAVAILABLE;
        const char *why = resp->error ? resp->error : "no answer";
        vk_buf msg = VK_BUF_INIT;
        if (code == VK_UNAVAILABLE && resp->status)
            vk_buf_printf(&msg, "TokenRequest for service account %s/%s failed (HTTP %ld): %s",
                          p->ns, p->sa, resp->status, why);
        else
            vk_buf_printf(&msg, "TokenRequest for service account %s/%s: %s", p->ns, p->sa,
                          why);
        vk_warn("token request failed", "namespace=%s serviceaccount=%s status=%ld error=%s",
                logval(ns_v, sizeof ns_v, p->ns), logval(sa_v, sizeof sa_v, p->sa),
                resp->status, logval(err_v, sizeof err_v, why));
        finish(p, code, NULL, 0, msg.data ? msg.data : why);
        vk_buf_free(&msg);
        return;
    }

    char err[128];
    yajl_val doc = vk_json_parse(resp->body, resp->len, err, sizeof err);
    yajl_val token = vk_json_get(doc, "status", "token", NULL);
    int64_t expires = parse_time(vk_json_str(vk_json_get(doc, "status",
                                                         "expirationTimestamp", NULL), NULL));
    if (!YAJL_IS_STRING(token) || !*token->u.string || expires < 0) {
        vk_warn("token request answered without a token", "namespace=%s serviceaccount=%s",
                logval(ns_v, sizeof ns_v, p->ns), logval(sa_v, sizeof sa_v, p->sa));
        finish(p, VK_UNAVAILABLE, NULL, 0,
               "the API server answered the TokenRequest without a token");
    } else {
        /* Cached only while the pod is still here: when it left in the
         * meantime, the drop that would have cleared the entry is past. */
        if (refs_pod_has(t->refs, p->uid, p->ns, p->pod, REF_SERVICE_ACCOUNT, p->sa))
            cache_put(t, p, token->u.string, expires);
        vk_debug("token issued", "namespace=%s serviceaccount=%s expires=%lld",
                 logval(ns_v, sizeof ns_v, p->ns), logval(sa_v, sizeof sa_v, p->sa),
                 (long long)expires);
        finish(p, VK_OK, token->u.string, expires, NULL);
    }
    if (YAJL_IS_STRING(token))
        explicit_bzero(token->u.string, strlen(token->u.string));
    yajl_tree_free(doc);
}

/* On the loop: send p's TokenRequest, unless nobody waits for it any more. */
static void start_request(void *arg)
{
    pending *p = arg;
    tokens *t = p->t;
    pthread_mutex_lock(&t->lock);
    bool skip = t->closing || p->abandoned;
    pthread_mutex_unlock(&t->lock);
    if (skip) { /* nobody reads this answer */
        finish(p, VK_UNAVAILABLE, NULL, 0, "the core is shutting down");
        return;
    }
    p->id = kube_request(t->kube, "POST", p->path.data, NULL, p->body.data, p->body.len,
                         REQUEST_TIMEOUT_MS, on_response, p);
    if (p->id < 0) {
        finish(p, VK_UNAVAILABLE, NULL, 0,
               "the core's API client has too many requests queued; retry later");
        return;
    }
    p->next = t->inflight;
    if (t->inflight)
        t->inflight->prev = p;
    t->inflight = p;
}

/* ---- the caller's side --------------------------------------------------- */

/* What tells tokens apart: the pod incarnation, the account, the lifetime
 * and the audiences in order, each NUL-terminated so that no two lists
 * run together. */
static int make_key(const token_request *req, int64_t seconds, vk_buf *key)
{
    char num[24];
    int len = snprintf(num, sizeof num, "%lld", (long long)seconds);
    if (vk_buf_append(key, req->uid, strlen(req->uid) + 1) < 0 ||
        vk_buf_append(key, req->service_account, strlen(req->service_account) + 1) < 0 ||
        vk_buf_append(key, num, (size_t)len + 1) < 0)
        return -1;
    for (size_t i = 0; i < req->n_audiences; i++)
        if (vk_buf_append(key, req->audiences[i], strlen(req->audiences[i]) + 1) < 0)
            return -1;
    return 0;
}

static int make_body(const token_request *req, int64_t seconds, vk_buf *body)
{
    vk_json_writer w;
    if (vk_jw_begin(&w, body) < 0)
        return -1;
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "apiVersion", "authentication.k8s.io/v1");
    vk_jw_kv_str(&w, "kind", "TokenRequest");
    vk_jw_str(&w, "spec");
    vk_jw_map_open(&w);
    if (req->n_audiences) {
        vk_jw_str(&w, "audiences");
        vk_jw_array_open(&w);
        for (size_t i = 0; i < req->n_audiences; i++)
            vk_jw_str(&w, req->audiences[i]);
        vk_jw_array_close(&w);
    }
    vk_jw_kv_int(&w, "expirationSeconds", seconds);
    vk_jw_str(&w, "boundObjectRef");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "kind", "Pod");
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_kv_str(&w, "name", req->pod);
    vk_jw_kv_str(&w, "uid", req->uid);
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

/* A pending request for req, held by the caller and the loop; NULL when
 * memory ran out. The names were checked against the pods of the node
 * (refs), so they are valid Kubernetes names and go into the path as
 * they are. */
static pending *pending_new(tokens *t, const token_request *req, int64_t seconds,
                            vk_buf *key)
{
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->t = t;
    p->holders = 2;
    p->key = *key;
    *key = (vk_buf)VK_BUF_INIT;
    p->uid = strdup(req->uid);
    p->ns = strdup(req->ns);
    p->pod = strdup(req->pod);
    p->sa = strdup(req->service_account);
    p->sent = unix_now();
    if (!p->uid || !p->ns || !p->pod || !p->sa ||
        vk_buf_printf(&p->path, "/api/v1/namespaces/%s/serviceaccounts/%s/token", req->ns,
                      req->service_account) < 0 ||
        make_body(req, seconds, &p->body) < 0) {
        pending_free(p);
        return NULL;
    }
    return p;
}

/* Wait for the loop's answer to p until wait_ms passed or tokens closed,
 * then let go of p. */
static int wait_answer(tokens *t, pending *p, long wait_ms, char **token, int64_t *expires,
                       vk_buf *msg)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += wait_ms / 1000;
    deadline.tv_nsec += (wait_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int code;
    pthread_mutex_lock(&t->lock);
    int rc = 0;
    while (!p->done && !t->closing && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&t->answered, &t->lock, &deadline);
    if (p->done) {
        code = p->code;
        *token = p->token;
        *expires = p->expires;
        p->token = NULL;
        if (code != VK_OK)
            vk_buf_puts(msg, p->msg ? p->msg : "out of memory");
    } else {
        p->abandoned = true;
        code = t->closing ? VK_UNAVAILABLE : VK_DEADLINE_EXCEEDED;
        if (t->closing)
            vk_buf_puts(msg, "the core is shutting down");
        else
            vk_buf_printf(msg, "no answer from the API server within %ld ms", wait_ms);
    }
    pthread_mutex_unlock(&t->lock);
    release(p);
    return code;
}

int tokens_get(tokens *t, const token_request *req, long wait_ms, char **token,
               int64_t *expires, vk_buf *msg)
{
    char ns_v[LOGVAL_MAX], sa_v[LOGVAL_MAX];
    *token = NULL;
    *expires = 0;
    int64_t seconds = req->expiration_seconds ? req->expiration_seconds : DEFAULT_SECONDS;
    if (seconds < 0 || seconds > MAX_SECONDS) {
        vk_buf_printf(msg, "expiration_seconds must be between 0 and %lld",
                      (long long)MAX_SECONDS);
        return VK_INVALID_ARGUMENT;
    }
    bool raised = seconds < MIN_SECONDS;
    if (raised)
        seconds = MIN_SECONDS;

    vk_buf key = VK_BUF_INIT;
    if (make_key(req, seconds, &key) < 0) {
        vk_buf_free(&key);
        vk_buf_puts(msg, "out of memory");
        return VK_UNAVAILABLE;
    }
    *token = cache_get(t, &key, expires);
    if (*token) {
        vk_buf_free(&key);
        return VK_OK;
    }

    pthread_mutex_lock(&t->lock);
    bool closing = t->closing;
    pthread_mutex_unlock(&t->lock);
    pending *p = closing ? NULL : pending_new(t, req, seconds, &key);
    vk_buf_free(&key);
    if (!p) {
        vk_buf_puts(msg, closing ? "the core is shutting down" : "out of memory");
        return VK_UNAVAILABLE;
    }
    if (raised)
        vk_info("token lifetime raised to the API server's minimum",
                "namespace=%s serviceaccount=%s requested=%lld seconds=%d",
                logval(ns_v, sizeof ns_v, req->ns),
                logval(sa_v, sizeof sa_v, req->service_account),
                (long long)req->expiration_seconds, MIN_SECONDS);
    if (vk_post(t->mailbox, start_request, p) < 0) {
        pending_free(p);
        vk_buf_puts(msg, "too many token requests waiting for the API server; retry later");
        return VK_UNAVAILABLE;
    }
    return wait_answer(t, p, wait_ms, token, expires, msg);
}

/* ---- life cycle ----------------------------------------------------------- */

tokens *tokens_new(struct ev_loop *loop, struct kube_client *kube, refs *r)
{
    tokens *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->kube = kube;
    t->refs = r;
    t->mailbox = vk_mailbox_new(loop, MAILBOX_MAX);
    if (!t->mailbox) {
        free(t);
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&t->answered, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&t->lock, NULL);
    refs_on_drop(r, forget_pod, t);
    return t;
}

void tokens_close(tokens *t)
{
    pthread_mutex_lock(&t->lock);
    t->closing = true;
    pthread_cond_broadcast(&t->answered);
    pthread_mutex_unlock(&t->lock);
}

void tokens_free(tokens *t)
{
    if (!t)
        return;
    refs_on_drop(t->refs, NULL, NULL);
    tokens_close(t);
    vk_mailbox_free(t->mailbox); /* what is left in it finishes, unsent */
    while (t->inflight) {
        pending *p = t->inflight;
        unlink_inflight(t, p);
        kube_request_cancel(t->kube, p->id);
        finish(p, VK_UNAVAILABLE, NULL, 0, "the core is shutting down");
    }
    while (t->oldest)
        unlink_entry(t, t->oldest);
    pthread_cond_destroy(&t->answered);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
