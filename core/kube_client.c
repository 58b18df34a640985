/* kube_client.c -- libcurl's multi-socket API on a libev loop.
 *
 * curl tells us which sockets to watch (socket_cb) and when to call it back
 * (timer_cb); libev calls drive() for both. curl invokes our write callback
 * only from inside curl_multi_socket_action, and that callback may run user
 * code (a watch delivering an event) which may submit or cancel requests.
 * curl forbids adding or removing handles from inside its callbacks, so a
 * request past the rate limit waits on the `ready` list until the loop (or
 * after_curl) hands it to curl, and one cancelled while c->in_curl is set is
 * only flagged, then reaped by after_curl once curl_multi_socket_action has
 * returned.
 *
 * A request lives on exactly one list: queue (waiting for a token), ready
 * (has one), running (curl has it).
 */
#include "kube_client.h"

#include <curl/curl.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "json.h"
#include "log.h"
#include "logval.h"
#include "metrics.h"
#include "ratelimit.h"
#include "version.h"

#define DEFAULT_QPS 5.0
#define DEFAULT_BURST 10
#define DEFAULT_QUEUE_MAX 1000
/* Requests (not streams) in flight at once. Without a cap a burst (10,000
 * status writes in a churn) goes out at once, the API server's
 * max-in-flight limit (200 mutating by default) answers thousands of 429s,
 * and each refused request comes back only after its back-off; waiting
 * here costs nothing instead. */
#define DEFAULT_MAX_IN_FLIGHT 100
#define DEFAULT_TIMEOUT_MS 30000L
#define DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define DEFAULT_MAX_BODY ((size_t)64 << 20)
/* A stream's error body is a Status object: small. */
#define MAX_STREAM_ERROR_BODY ((size_t)1 << 20)
/* Status bodies worth parsing for their message. */
#define MAX_STATUS_PARSE ((size_t)1 << 20)
/* Projected service-account tokens rotate in place; stat() notices a new
 * file at once, the periodic re-read catches a rewrite within the same
 * mtime second. */
#define TOKEN_REREAD_S 60.0

/* Dead-peer detection for long-lived connections (see kube_watch.h): an
 * idle connection is probed after 30 s and given up after 3 probes 10 s
 * apart; data left unacknowledged for 60 s also ends it. */
#define KEEPALIVE_IDLE_S 30L
/* The longest Retry-After obeyed, in seconds. */
#define MAX_RETRY_AFTER_S 10.0
#define KEEPALIVE_INTERVAL_S 10L
#define KEEPALIVE_PROBES 3
#define UNACKED_TIMEOUT_MS 60000u

enum req_state { REQ_QUEUED, REQ_READY, REQ_RUNNING };
enum stream_mode { STREAM_UNDECIDED, STREAM_DATA, STREAM_BUFFER };

/* A client certificate and its key. curl reads them in place
 * (CURL_BLOB_NOCOPY) while a request runs, so each request holds a
 * reference and a reload never frees a pair under a running one. */
struct client_cert {
    unsigned refs;
    char *cert, *key;
    size_t cert_len, key_len;
    time_t not_before, not_after;  /* 0 when the certificate does not parse */
};

struct req {
    struct req *prev, *next;
    int64_t id;
    enum req_state state;
    enum kube_verb verb;
    char *path;
    char *body;               /* NULL for none */
    size_t body_len;
    char *content_type;
    double deadline;          /* ev_now() time; 0: none */
    CURL *easy;
    struct curl_slist *headers;
    struct client_cert *cert;  /* the pair this request presents, NULL for none */
    kube_done_fn done;
    kube_data_fn on_data;     /* streams only */
    void *ud;
    enum stream_mode mode;
    size_t max_body;
    vk_buf resp;
    bool cancelled;           /* while curl held it; reaped in after_curl */
    char fail[384];           /* our reason when curl's is not the real one */
    char errbuf[CURL_ERROR_SIZE];
};

struct req_list {
    struct req *head, *tail;
    unsigned len;
};

struct sock {
    struct sock *prev, *next;
    ev_io io;
    struct kube_client *c;
    curl_socket_t fd;
};

struct kube_client {
    struct ev_loop *loop;
    CURLM *multi;
    ev_timer curl_timer;
    ev_timer queue_timer;
    ev_timer kick;            /* starts the `ready` list from the loop */
    int in_curl;
    bool closing;
    int64_t next_id;

    struct req_list queue;    /* waiting for a token, FIFO */
    struct req_list ready;    /* have a token, wait for the loop */
    struct req_list running;  /* handed to curl */
    unsigned n_cancelled;     /* flagged in `running` */
    struct sock *socks;

    struct tokenbucket bucket;
    double hold_until;        /* a 429/503's Retry-After: nothing leaves the queue before */
    struct metric *requests;  /* opts.requests */
    struct metric *waiting, *in_flight, *rejected; /* opts' gauges and counter */
    char *name;
    unsigned queue_max;
    unsigned max_in_flight;
    unsigned busy;            /* requests (not streams) past the queue, not done */
    long timeout_ms;
    long connect_timeout_ms;
    size_t max_body;

    char *base_url;           /* server without a trailing '/' */
    struct curl_slist *connect_to;
    char *ca_pem;
    size_t ca_len;
    bool insecure;

    struct client_cert *cert; /* what new requests present, NULL for none */
    char *cert_file, *key_file; /* re-read when they change; NULL when inline */
    struct stat cert_stat, key_stat;
    bool cert_refused_logged; /* this streak of 401s was explained */

    char *token_inline;
    char *token_file;
    char *token;              /* what we send now */
    double token_read_at;
    struct stat token_stat;
    bool token_warned;

    struct kube_client_stats stats;
};

static const char *const verb_names[KUBE_VERB_COUNT] = {
    "GET", "POST", "PUT", "PATCH", "DELETE", "WATCH",
};

const char *kube_verb_name(enum kube_verb v)
{
    return (unsigned)v < KUBE_VERB_COUNT ? verb_names[v] : "OTHER";
}

/* ---- lists ----------------------------------------------------------------- */

static void list_push(struct req_list *l, struct req *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->len++;
}

static void list_remove(struct req_list *l, struct req *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->len--;
}

static struct req_list *list_of(struct kube_client *c, const struct req *r)
{
    switch (r->state) {
    case REQ_QUEUED:
        return &c->queue;
    case REQ_READY:
        return &c->ready;
    default:
        return &c->running;
    }
}

/* ---- helpers ---------------------------------------------------------------- */

static char *dup_bytes(const char *p, size_t len)
{
    char *d = malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, p, len);
    d[len] = '\0';
    return d;
}

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Bodies both ways may carry secrets: a TokenReview's token going out, a
 * TokenRequest's coming back, Secrets listed. Only the caller knows which
 * do, so every body is wiped before its memory goes back to the heap; the
 * cost is one pass over bytes that were just copied anyway. */
static void wipe_free(char *p, size_t len)
{
    if (p)
        explicit_bzero(p, len);
    free(p);
}

/* Takes cert and key over. times are 0 when the certificate does not
 * parse: curl will say why at the handshake. NULL when memory ran out
 * (either input NULL included). */
static struct client_cert *cert_new(char *cert, size_t cert_len, char *key, size_t key_len)
{
    struct client_cert *k = cert && key ? calloc(1, sizeof *k) : NULL;
    if (!k) {
        free(cert);
        wipe_free(key, key_len);
        return NULL;
    }
    *k = (struct client_cert){.refs = 1, .cert = cert, .cert_len = cert_len,
                              .key = key, .key_len = key_len};
    BIO *b = BIO_new_mem_buf(cert, (int)cert_len);
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    struct tm tm;
    if (x && ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
        k->not_before = timegm(&tm);
    if (x && ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        k->not_after = timegm(&tm);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    return k;
}

static struct client_cert *cert_ref(struct client_cert *k)
{
    if (k)
        k->refs++;
    return k;
}

static void cert_unref(struct client_cert *k)
{
    if (!k || --k->refs)
        return;
    free(k->cert);
    wipe_free(k->key, k->key_len);
    free(k);
}

/* vk_buf_append for the response body: grown by hand, since realloc would
 * hand the old copy back to the heap unwiped. */
static int resp_append(vk_buf *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *p = malloc(cap);
        if (!p)
            return -1;
        if (b->len)
            memcpy(p, b->data, b->len);
        wipe_free(b->data, b->len);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

static void free_req(struct req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    cert_unref(r->cert);
    /* One of them is "Authorization: Bearer <token>". */
    for (struct curl_slist *h = r->headers; h; h = h->next)
        explicit_bzero(h->data, strlen(h->data));
    curl_slist_free_all(r->headers);
    free(r->path);
    wipe_free(r->body, r->body_len);
    free(r->content_type);
    wipe_free(r->resp.data, r->resp.len);
    free(r);
}

int kube_path_query(vk_buf *path, const char *key, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t mark = path->len;
    const char *sep = path->data && memchr(path->data, '?', path->len) ? "&" : "?";
    if (vk_buf_printf(path, "%s%s=", sep, key) < 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        char enc[3];
        size_t n = 1;
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
            (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            enc[0] = (char)*p;
        } else {
            enc[0] = '%';
            enc[1] = hex[*p >> 4];
            enc[2] = hex[*p & 15];
            n = 3;
        }
        if (vk_buf_append(path, enc, n) < 0) {
            path->len = mark;
            path->data[mark] = '\0';
            return -1;
        }
    }
    return 0;
}

/* The message of a Status body; else "HTTP <code>", with the first line of
 * a short text body (a proxy's "backend down"). */
static void status_message(const struct req *r, long code, char *out, size_t outlen)
{
    const char *msg = NULL;
    yajl_val tree = NULL;
    const char *body = r->resp.data;
    if (r->resp.len && r->resp.len <= MAX_STATUS_PARSE && body[0] == '{') {
        tree = vk_json_parse(body, r->resp.len, NULL, 0);
        msg = vk_json_str(vk_json_get(tree, "message", NULL), NULL);
    }
    if (msg && *msg)
        snprintf(out, outlen, "%s", msg);
    else if (!tree && r->resp.len && r->resp.len <= 200 && body[0] != '{')
        snprintf(out, outlen, "HTTP %ld: %.*s", code, (int)strcspn(body, "\r\n"), body);
    else
        snprintf(out, outlen, "HTTP %ld", code);
    yajl_tree_free(tree);
}

/* ---- bearer token ------------------------------------------------------------- */

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The token to send: 0 with *token (NULL when the config has none), or -1
 * with a message when the token file was never readable. A file that stops
 * being readable (or is empty mid-rotation) keeps the last token in use and
 * is tried again when it changes or a minute later: the server answers 401
 * soon enough if the old token expired. */
static int bearer_token(struct kube_client *c, const char **token, char *err, size_t errlen)
{
    if (!c->token_file) {
        *token = c->token_inline;
        return 0;
    }
    double now = ev_now(c->loop);
    struct stat st;
    bool have_stat = stat(c->token_file, &st) == 0;
    if (c->token && now - c->token_read_at < TOKEN_REREAD_S &&
        (!have_stat || same_file(&st, &c->token_stat))) {
        *token = c->token;
        return 0;
    }
    kube_config tk = {0};
    tk.token = c->token_inline;
    tk.token_file = c->token_file;
    char *fresh = NULL;
    char why[256] = "";
    if (kube_config_token(&tk, &fresh, why, sizeof why) == 0 && (!fresh || !*fresh)) {
        snprintf(why, sizeof why, "token file %s is empty", c->token_file);
        free_secret(fresh);
        fresh = NULL;
    }
    c->token_read_at = now;
    if (have_stat)
        c->token_stat = st;
    if (!fresh) {
        if (!c->token_warned)
            vk_warn("cannot read the bearer token", "error=\"%s\" using=%s", why,
                    c->token ? "previous" : "none");
        c->token_warned = true;
        if (!c->token) {
            snprintf(err, errlen, "bearer token: %s", why);
            return -1;
        }
        *token = c->token;
        return 0;
    }
    if (c->token_warned)
        vk_info("bearer token readable again", "file=%s", c->token_file);
    c->token_warned = false;
    free_secret(c->token);
    c->token = fresh;
    *token = c->token;
    return 0;
}

/* ---- client certificate ------------------------------------------------------- */

/* An encrypted key is not supported: fail rather than prompt on a tty. */
static int no_passphrase(char *buf, int size, int rwflag, void *ud)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)ud;
    return -1;
}

/* Why the pair cannot be used, NULL when it can. A renewal caught between
 * writing the certificate and the key gives "does not match". */
static const char *pair_problem(const struct client_cert *k)
{
    const char *why = NULL;
    BIO *cb = BIO_new_mem_buf(k->cert, (int)k->cert_len);
    BIO *kb = BIO_new_mem_buf(k->key, (int)k->key_len);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
    if (!x)
        why = "the certificate does not parse";
    else if (!pk)
        why = "the key does not parse";
    else if (X509_check_private_key(x, pk) != 1)
        why = "the key does not match the certificate";
    EVP_PKEY_free(pk);
    X509_free(x);
    BIO_free(kb);
    BIO_free(cb);
    ERR_clear_error();
    return why;
}

/* What makes the certificate invalid at now ("client certificate
 * expired"), NULL when nothing does or its dates are unknown. */
static const char *cert_problem(const struct client_cert *k, time_t now)
{
    if (!k || !k->not_after)
        return NULL;
    if (now > k->not_after)
        return "client certificate expired";
    if (now < k->not_before)
        return "client certificate not yet valid";
    return NULL;
}

static void rfc3339(char *buf, size_t cap, time_t t)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The API server answers a certificate outside its validity with a bare
 * 401 "Unauthorized": say what is wrong with it. extra is appended to the
 * key=value tail (" status=401 path=..."). */
static void warn_cert(const struct kube_client *c, const struct client_cert *k,
                      const char *problem, const char *extra)
{
    char nb[32], na[32], file_v[LOGVAL_MAX];
    rfc3339(nb, sizeof nb, k->not_before);
    rfc3339(na, sizeof na, k->not_after);
    vk_warn(problem, "client=%s not_before=%s not_after=%s file=%s%s", c->name, nb, na,
            c->cert_file ? logval(file_v, sizeof file_v, c->cert_file) : "inline", extra);
}

static void check_cert_dates(const struct kube_client *c)
{
    const char *problem = cert_problem(c->cert, time(NULL));
    if (problem)
        warn_cert(c, c->cert, problem, "");
}

/* A 401 while the certificate is out of its validity: say so once per
 * streak of them, not once per request. */
static void explain_unauthorized(struct kube_client *c, const struct req *r)
{
    const char *problem = cert_problem(r->cert, time(NULL));
    if (!problem || c->cert_refused_logged)
        return;
    c->cert_refused_logged = true;
    char extra[LOGVAL_MAX + 32], path_v[LOGVAL_MAX];
    snprintf(extra, sizeof extra, " status=401 path=%s", logval(path_v, sizeof path_v, r->path));
    warn_cert(c, r->cert, problem, extra);
}

/* A renewed certificate takes effect without a restart: when either file
 * changed (a stat of each per request, as for the token file), read both
 * and switch once they parse and belong together. Until then requests
 * present the previous pair; connections opened with it stay in use only
 * by requests started before (curl does not reuse a connection for a
 * different client certificate). */
static void reload_cert(struct kube_client *c)
{
    struct stat cst, kst;
    if (!c->cert_file || stat(c->cert_file, &cst) < 0 || stat(c->key_file, &kst) < 0 ||
        (same_file(&cst, &c->cert_stat) && same_file(&kst, &c->key_stat)))
        return;
    c->cert_stat = cst;
    c->key_stat = kst;
    char *cert = NULL, *key = NULL;
    size_t cert_len = 0, key_len = 0;
    const char *why = NULL;
    struct client_cert *k = NULL;
    if (kube_config_read_pem(c->cert_file, &cert, &cert_len) < 0 ||
        kube_config_read_pem(c->key_file, &key, &key_len) < 0) {
        why = strerror(errno);
        free(cert);
        wipe_free(key, key_len);
    } else if (!(k = cert_new(cert, cert_len, key, key_len))) {
        why = "out of memory";
    } else if ((why = pair_problem(k))) {
        cert_unref(k);
    }
    char file_v[LOGVAL_MAX];
    logval(file_v, sizeof file_v, c->cert_file);
    if (why) {
        vk_warn("client certificate changed but not reloaded; keeping the previous one",
                "client=%s file=%s error=\"%s\"", c->name, file_v, why);
        return;
    }
    cert_unref(c->cert);
    c->cert = k;
    c->cert_refused_logged = false;
    char na[32];
    rfc3339(na, sizeof na, k->not_after);
    vk_info("client certificate reloaded", "client=%s file=%s not_after=%s", c->name, file_v, na);
    check_cert_dates(c);
}

/* ---- curl plumbing ------------------------------------------------------------ */

static int sockopt_cb(void *ud, curl_socket_t fd, curlsocktype purpose)
{
    struct kube_client *c = ud;
    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKOPT_OK;
    c->stats.connections++;
    /* curl 7.88 sets idle and interval but not the probe count; and
     * keepalive does nothing while data waits for an ACK, which
     * TCP_USER_TIMEOUT covers. Failure only loses the early detection. */
    int probes = KEEPALIVE_PROBES;
    unsigned unacked = UNACKED_TIMEOUT_MS;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &unacked, sizeof unacked);
    return CURL_SOCKOPT_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud)
{
    struct req *r = ud;
    size_t len = size * nmemb;
    if (r->cancelled)
        return 0;
    if (r->on_data && r->mode == STREAM_UNDECIDED) {
        long code = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
        r->mode = code >= 200 && code < 300 ? STREAM_DATA : STREAM_BUFFER;
        if (r->mode == STREAM_BUFFER && r->max_body > MAX_STREAM_ERROR_BODY)
            r->max_body = MAX_STREAM_ERROR_BODY;
    }
    if (r->mode == STREAM_DATA) {
        if (r->on_data(data, len, r->ud) < 0) {
            if (!r->cancelled)
                snprintf(r->fail, sizeof r->fail, "stopped by receiver");
            return 0;
        }
        return r->cancelled ? 0 : len;
    }
    if (len > r->max_body - r->resp.len) {
        snprintf(r->fail, sizeof r->fail, "response body exceeds %zu bytes", r->max_body);
        return 0;
    }
    if (resp_append(&r->resp, data, len) < 0) {
        snprintf(r->fail, sizeof r->fail, "out of memory for the response body");
        return 0;
    }
    return len;
}

static void after_curl(struct kube_client *c);

static void drive(struct kube_client *c, curl_socket_t fd, int action)
{
    int running;
    c->in_curl++;
    CURLMcode rc = curl_multi_socket_action(c->multi, fd, action, &running);
    c->in_curl--;
    if (rc != CURLM_OK)
        vk_warn("curl_multi_socket_action failed", "error=\"%s\"", curl_multi_strerror(rc));
    after_curl(c);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct sock *s = w->data;
    int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
                 (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
    /* s may be freed inside drive (CURL_POLL_REMOVE). */
    drive(s->c, s->fd, action);
}

static void curl_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    drive(w->data, CURL_SOCKET_TIMEOUT, 0);
}

static void sock_free(struct kube_client *c, struct sock *s)
{
    ev_io_stop(c->loop, &s->io);
    if (s->prev)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    struct kube_client *c = userp;
    struct sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s)
            sock_free(c, s);
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -1;
        s->c = c;
        s->fd = fd;
        s->next = c->socks;
        if (c->socks)
            c->socks->prev = s;
        c->socks = s;
        ev_init(&s->io, io_cb);
        s->io.data = s;
        curl_multi_assign(c->multi, fd, s);
    } else {
        ev_io_stop(c->loop, &s->io);
    }
    int events = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
    ev_io_set(&s->io, fd, events);
    ev_io_start(c->loop, &s->io);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct kube_client *c = userp;
    ev_timer_stop(c->loop, &c->curl_timer);
    if (timeout_ms >= 0) {
        /* 0 means "now": call back from the loop, not from inside curl. */
        ev_timer_set(&c->curl_timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(c->loop, &c->curl_timer);
    }
    return 0;
}

/* ---- request lifecycle ----------------------------------------------------------- */

static int add_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *l = curl_slist_append(*list, line);
    if (!l)
        return -1;
    *list = l;
    return 0;
}

/* Build the easy handle and hand it to curl. -1 with r->fail set. */
static int start_req(struct kube_client *c, struct req *r)
{
    const char *token = NULL;
    vk_buf line = VK_BUF_INIT;
    CURL *e = NULL;
    CURLcode rc = CURLE_OK;
    if (bearer_token(c, &token, r->fail, sizeof r->fail) < 0)
        goto fail;
    e = curl_easy_init();
    if (!e)
        goto oom;
    r->easy = e;
    if (add_header(&r->headers, "Accept: application/json") < 0 ||
        add_header(&r->headers, "Expect:") < 0)
        goto oom;
    if (r->body) {
        vk_buf_reset(&line);
        if (vk_buf_printf(&line, "Content-Type: %s",
                          r->content_type ? r->content_type : "application/json") < 0 ||
            add_header(&r->headers, line.data) < 0)
            goto oom;
    }
    if (token) {
        vk_buf_reset(&line);
        bool bad = vk_buf_printf(&line, "Authorization: Bearer %s", token) < 0 ||
                   add_header(&r->headers, line.data) < 0;
        if (line.data)
            explicit_bzero(line.data, line.len);
        if (bad)
            goto oom;
    }
    vk_buf_reset(&line);
    if (vk_buf_printf(&line, "%s%s", c->base_url, r->path) < 0)
        goto oom;

#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, line.data);
    SET(CURLOPT_PROTOCOLS_STR, "https,http");
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for the connection being set up to offer HTTP/2 instead of
     * opening one more per request. */
    SET(CURLOPT_PIPEWAIT, 1L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PRIVATE, r);
    SET(CURLOPT_ERRORBUFFER, r->errbuf);
    SET(CURLOPT_WRITEFUNCTION, write_cb);
    SET(CURLOPT_WRITEDATA, r);
    SET(CURLOPT_HTTPHEADER, r->headers);
    SET(CURLOPT_USERAGENT, "vkc/" VKC_CORE_VERSION);
    SET(CURLOPT_ACCEPT_ENCODING, "");
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
    SET(CURLOPT_TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S);
    SET(CURLOPT_SOCKOPTFUNCTION, sockopt_cb);
    SET(CURLOPT_SOCKOPTDATA, c);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_body);
    if (c->connect_to)
        SET(CURLOPT_CONNECT_TO, c->connect_to);
    if (c->ca_pem) {
        struct curl_blob ca = {c->ca_pem, c->ca_len, CURL_BLOB_NOCOPY};
        SET(CURLOPT_CAINFO_BLOB, &ca);
        /* Trust this CA alone, as client-go does, not the system store. */
        SET(CURLOPT_CAINFO, (char *)NULL);
        SET(CURLOPT_CAPATH, (char *)NULL);
    }
    reload_cert(c);
    if (c->cert) {
        r->cert = cert_ref(c->cert);
        struct curl_blob cert = {r->cert->cert, r->cert->cert_len, CURL_BLOB_NOCOPY};
        struct curl_blob key = {r->cert->key, r->cert->key_len, CURL_BLOB_NOCOPY};
        SET(CURLOPT_SSLCERT_BLOB, &cert);
        SET(CURLOPT_SSLCERTTYPE, "PEM");
        SET(CURLOPT_SSLKEY_BLOB, &key);
        SET(CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (c->insecure) {
        SET(CURLOPT_SSL_VERIFYPEER, 0L);
        SET(CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (r->deadline > 0) {
        double left = (r->deadline - ev_now(c->loop)) * 1000.0;
        SET(CURLOPT_TIMEOUT_MS, left < 1 ? 1L : (long)left);
    }
    if (r->verb != KUBE_VERB_GET && r->verb != KUBE_VERB_WATCH)
        SET(CURLOPT_CUSTOMREQUEST, verb_names[r->verb]);
    if (r->body) {
        SET(CURLOPT_POSTFIELDS, r->body);
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        /* curl gives every upload a buffer of its own, 64 KiB by default:
         * with bodies of a few KiB and a hundred writes in flight, 6 MiB of
         * mostly empty buffers (massif), freed and taken again through a
         * churn. 16 KiB is curl's smallest. */
        SET(CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    }
#undef SET
    vk_buf_free(&line);
    if (rc != CURLE_OK) {
        snprintf(r->fail, sizeof r->fail, "curl_easy_setopt: %s", curl_easy_strerror(rc));
        return -1;
    }
    CURLMcode mrc = curl_multi_add_handle(c->multi, e);
    if (mrc != CURLM_OK) {
        snprintf(r->fail, sizeof r->fail, "curl_multi_add_handle: %s", curl_multi_strerror(mrc));
        return -1;
    }
    r->state = REQ_RUNNING;
    list_push(&c->running, r);
    return 0;

oom:
    snprintf(r->fail, sizeof r->fail, "out of memory");
fail:
    vk_buf_free(&line);
    return -1;
}

/* Hand r's outcome to its owner and free it. r is on no list. */
static void complete(struct kube_client *c, struct req *r, long status, const char *error)
{
    struct kube_response resp = {
        .status = status,
        .body = r->resp.data ? r->resp.data : "",
        .len = r->resp.len,
        .error = error,
        .cancelled = c->closing,
    };
    r->done(&resp, r->ud);
    free_req(r);
}

/* A request that never reached curl. */
static void count(struct kube_client *c, struct req *r, long code)
{
    char code_s[16];
    c->stats.requests[r->verb][code > 0 && code < KUBE_CODE_SLOTS ? code : 0]++;
    if (!c->requests)
        return;
    snprintf(code_s, sizeof code_s, "%ld", code);
    metric_add(c->requests, (const char *[]){c->name, verb_names[r->verb], code_s}, 1);
}

static void fail_req(struct kube_client *c, struct req *r, const char *error)
{
    count(c, r, 0);
    vk_debug("kube request failed", "method=%s path=%s error=\"%s\"",
             verb_names[r->verb], r->path, error);
    complete(c, r, 0, error);
}

/* An overloaded API server (max-in-flight 429s, a 503 while starting)
 * says when to come back. Every request of this client then waits in the
 * queue until that time, as client-go's per-request wait would make it,
 * so one refusal does not turn into a storm of retries. Capped so that a
 * bogus header cannot stall the node for long. */
static void hold_for_retry_after(struct kube_client *c, struct req *r)
{
    curl_off_t secs = 0;
    if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &secs) != CURLE_OK || secs <= 0)
        return;
    double until = ev_now(c->loop) + (secs < MAX_RETRY_AFTER_S ? (double)secs : MAX_RETRY_AFTER_S);
    if (until <= c->hold_until)
        return;
    c->hold_until = until;
    c->stats.retry_after_holds++;
    vk_debug("kube API server asked to wait", "path=%s retry_after_s=%ld", r->path, (long)secs);
}

/* The occupancy gauges, after every change of the FIFO or the wire. */
static void publish(struct kube_client *c)
{
    metric_set(c->waiting, (const char *[]){c->name}, c->stats.queued);
    metric_set(c->in_flight, (const char *[]){c->name}, c->busy);
}

/* r, launched, is done (or dropped): a place in flight is free again. */
static void landed(struct kube_client *c, struct req *r)
{
    c->stats.in_flight--;
    if (r->on_data)
        return;
    if (c->busy-- == c->max_in_flight && c->queue.head) {
        ev_timer_stop(c->loop, &c->queue_timer);
        ev_timer_set(&c->queue_timer, 0., 0.);
        ev_timer_start(c->loop, &c->queue_timer);
    }
    publish(c);
}

static void finish(struct kube_client *c, struct req *r, CURLcode res)
{
    list_remove(&c->running, r);
    curl_multi_remove_handle(c->multi, r->easy);
    landed(c, r);
    if (r->cancelled) {
        c->n_cancelled--;
        free_req(r);
        return;
    }
    long code = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    char msg[512];
    const char *error = NULL;
    if (res != CURLE_OK) {
        code = 0;
        if (res == CURLE_FILESIZE_EXCEEDED && !r->fail[0])
            snprintf(r->fail, sizeof r->fail, "response body exceeds %zu bytes", r->max_body);
        if (r->fail[0])
            error = r->fail;
        else
            error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
    } else if (code < 200 || code > 299) {
        status_message(r, code, msg, sizeof msg);
        error = msg;
    }
    count(c, r, code);
    if (code == 429 || code == 503)
        hold_for_retry_after(c, r);
    if (code == 401)
        explain_unauthorized(c, r);
    else if (code >= 200 && code <= 299)
        c->cert_refused_logged = false;
    curl_off_t us = 0;
    curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
    if (r->verb != KUBE_VERB_WATCH) {
        c->stats.latency_sum[r->verb] += (double)us / 1e6;
        c->stats.latency_count[r->verb]++;
    }
    vk_debug("kube request", "method=%s path=%s status=%ld ms=%.1f%s%s%s",
             verb_names[r->verb], r->path, code, (double)us / 1e3,
             error ? " error=\"" : "", error ? error : "", error ? "\"" : "");
    complete(c, r, code, error);
}

static void reap_cancelled(struct kube_client *c)
{
    struct req *r = c->running.head;
    while (c->n_cancelled && r) {
        struct req *next = r->next;
        if (r->cancelled) {
            list_remove(&c->running, r);
            curl_multi_remove_handle(c->multi, r->easy);
            landed(c, r);
            c->n_cancelled--;
            free_req(r);
        }
        r = next;
    }
}

static void start_ready(struct kube_client *c)
{
    struct req *r;
    while (!c->in_curl && (r = c->ready.head)) {
        list_remove(&c->ready, r);
        if (start_req(c, r) < 0) {
            landed(c, r);
            fail_req(c, r, r->fail);
        }
    }
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    start_ready(w->data);
}

static void after_curl(struct kube_client *c)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURLcode res = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        finish(c, (struct req *)priv, res);
    }
    reap_cancelled(c);
    start_ready(c);
}

/* r passed the rate limit: start it from the loop, where a failure to
 * start (an unreadable token file, say) can be reported through its
 * callback, and where curl is not busy calling us. */
static void launch(struct kube_client *c, struct req *r)
{
    r->state = REQ_READY;
    list_push(&c->ready, r);
    c->stats.in_flight++;
    if (!r->on_data)
        c->busy++;
    publish(c);
    if (!c->in_curl && !ev_is_active(&c->kick)) {
        ev_timer_set(&c->kick, 0., 0.);
        ev_timer_start(c->loop, &c->kick);
    }
}

/* ---- the rate-limit queue ----------------------------------------------------------- */

static void pump_queue(struct kube_client *c)
{
    double now = ev_now(c->loop);
    /* Expired requests leave first; their callbacks may submit more, which
     * then queue behind the ones still waiting. */
    struct req *r = c->queue.head;
    while (r) {
        struct req *next = r->next;
        if (r->deadline <= now) {
            list_remove(&c->queue, r);
            c->stats.queued--;
            char msg[96];
            snprintf(msg, sizeof msg, "timed out waiting for the client-side rate limit");
            fail_req(c, r, msg);
            /* The callback may have cancelled `next`: start over. */
            next = c->queue.head;
        }
        r = next;
    }
    double wait = c->hold_until - now;
    while (wait <= 0 && (r = c->queue.head)) {
        if (c->busy >= c->max_in_flight) {
            wait = 1e9; /* landed() pumps again; only deadlines until then */
            break;
        }
        wait = tokenbucket_take(&c->bucket, now);
        if (wait > 0)
            break;
        list_remove(&c->queue, r);
        c->stats.queued--;
        launch(c, r);
    }
    ev_timer_stop(c->loop, &c->queue_timer);
    publish(c);
    if (!c->queue.head)
        return;
    for (r = c->queue.head; r; r = r->next)
        if (r->deadline - now < wait)
            wait = r->deadline - now;
    ev_timer_set(&c->queue_timer, wait > 0 ? wait : 0, 0.);
    ev_timer_start(c->loop, &c->queue_timer);
}

static void queue_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    pump_queue(w->data);
}

/* ---- public API -------------------------------------------------------------------- */

static int verb_of(const char *method, enum kube_verb *v)
{
    for (int i = 0; i < KUBE_VERB_WATCH; i++) {
        if (strcmp(method, verb_names[i]) == 0) {
            *v = (enum kube_verb)i;
            return 0;
        }
    }
    return -1;
}

static struct req *new_req(struct kube_client *c, enum kube_verb verb, const char *path,
                           long timeout_ms, kube_done_fn done, void *ud)
{
    if (c->closing || !path || path[0] != '/' || !done)
        return NULL;
    struct req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->path = strdup(path);
    if (!r->path) {
        free(r);
        return NULL;
    }
    r->verb = verb;
    r->done = done;
    r->ud = ud;
    r->max_body = c->max_body;
    if (timeout_ms > 0)
        r->deadline = ev_now(c->loop) + (double)timeout_ms / 1000.0;
    return r;
}

int64_t kube_request(struct kube_client *c, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len,
                     long timeout_ms, kube_done_fn done, void *ud)
{
    enum kube_verb verb;
    if (!c || !method || verb_of(method, &verb) < 0 || (len && !body) ||
        (verb == KUBE_VERB_GET && body))
        return -1;
    struct req *r = new_req(c, verb, path, timeout_ms > 0 ? timeout_ms : c->timeout_ms, done, ud);
    if (!r)
        return -1;
    if (body || verb == KUBE_VERB_POST || verb == KUBE_VERB_PUT || verb == KUBE_VERB_PATCH) {
        r->body = dup_bytes(body ? body : "", len);
        r->body_len = len;
        if (!r->body || (content_type && !(r->content_type = strdup(content_type)))) {
            free_req(r);
            return -1;
        }
    }
    r->id = ++c->next_id;
    if (!c->queue.head && c->hold_until <= ev_now(c->loop) && c->busy < c->max_in_flight &&
        tokenbucket_take(&c->bucket, ev_now(c->loop)) == 0) {
        launch(c, r);
    } else if (c->queue.len >= c->queue_max) {
        c->stats.rejected++;
        metric_add(c->rejected, (const char *[]){c->name}, 1);
        free_req(r);
        return -1;
    } else {
        r->state = REQ_QUEUED;
        list_push(&c->queue, r);
        c->stats.queued++;
        publish(c);
        /* The queue is pumped from the loop, never from here: callbacks do
         * not run inside kube_request. */
        if (!ev_is_active(&c->queue_timer) ||
            ev_timer_remaining(c->loop, &c->queue_timer) > r->deadline - ev_now(c->loop)) {
            ev_timer_stop(c->loop, &c->queue_timer);
            ev_timer_set(&c->queue_timer, 0., 0.);
            ev_timer_start(c->loop, &c->queue_timer);
        }
    }
    return r->id;
}

int64_t kube_stream(struct kube_client *c, const char *path, long timeout_ms,
                    kube_data_fn on_data, kube_done_fn done, void *ud)
{
    if (!c || !on_data)
        return -1;
    struct req *r = new_req(c, KUBE_VERB_WATCH, path, timeout_ms, done, ud);
    if (!r)
        return -1;
    r->on_data = on_data;
    r->id = ++c->next_id;
    launch(c, r);
    return r->id;
}

static struct req *find(struct kube_client *c, int64_t id)
{
    struct req_list *lists[] = {&c->running, &c->ready, &c->queue};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
        for (struct req *r = lists[i]->head; r; r = r->next)
            if (r->id == id && !r->cancelled)
                return r;
    return NULL;
}

int kube_request_cancel(struct kube_client *c, int64_t id)
{
    struct req *r = c && id > 0 ? find(c, id) : NULL;
    if (!r)
        return -1;
    if (r->state == REQ_RUNNING && c->in_curl) {
        r->cancelled = true;
        c->n_cancelled++;
        return 0;
    }
    list_remove(list_of(c, r), r);
    if (r->state == REQ_QUEUED) {
        c->stats.queued--;
        publish(c);
    } else {
        landed(c, r);
    }
    if (r->state == REQ_RUNNING)
        curl_multi_remove_handle(c->multi, r->easy);
    free_req(r);
    return 0;
}

const struct kube_client_stats *kube_client_stats(const struct kube_client *c)
{
    return &c->stats;
}

struct ev_loop *kube_client_loop(const struct kube_client *c)
{
    return c->loop;
}

/* ---- construction ---------------------------------------------------------------- */

/* With tls-server-name the URL names that host (so curl sends it as SNI and
 * verifies the certificate against it) and CONNECT_TO sends the connection
 * to the real address. */
static int set_server(struct kube_client *c, const kube_config *cfg, char *err, size_t errlen)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL, *url = NULL, *scheme = NULL;
    int rc = -1;
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, cfg->server, 0);
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (uc != CURLUE_OK) {
        snprintf(err, errlen, "server %s: %s", cfg->server, curl_url_strerror(uc));
        goto out;
    }
    if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0) {
        snprintf(err, errlen, "server %s: scheme must be https or http", cfg->server);
        goto out;
    }
    if (cfg->tls_server_name && *cfg->tls_server_name) {
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
            curl_url_set(u, CURLUPART_HOST, cfg->tls_server_name, 0) != CURLUE_OK) {
            snprintf(err, errlen, "server %s: cannot apply tls-server-name %s", cfg->server,
                     cfg->tls_server_name);
            goto out;
        }
        vk_buf map = VK_BUF_INIT;
        if (vk_buf_printf(&map, "%s:%s:%s:%s", cfg->tls_server_name, port, host, port) < 0 ||
            !(c->connect_to = curl_slist_append(NULL, map.data))) {
            vk_buf_free(&map);
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        vk_buf_free(&map);
    }
    if (curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
        snprintf(err, errlen, "server %s: cannot rebuild the URL", cfg->server);
        goto out;
    }
    size_t n = strlen(url);
    while (n && url[n - 1] == '/')
        n--;
    if (!(c->base_url = dup_bytes(url, n))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(url);
    curl_url_cleanup(u);
    return rc;
}

struct kube_client *kube_client_new(struct ev_loop *loop, const kube_config *cfg,
                                    const struct kube_client_opts *opts,
                                    char *err, size_t errlen)
{
    static const struct kube_client_opts defaults;
    if (!opts)
        opts = &defaults;
    if (!cfg || !cfg->server || !*cfg->server) {
        snprintf(err, errlen, "no API server address");
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "curl_global_init failed");
        return NULL;
    }
    struct kube_client *c = calloc(1, sizeof *c);
    if (!c) {
        curl_global_cleanup();
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->loop = loop;
    ev_init(&c->curl_timer, curl_timer_cb);
    c->curl_timer.data = c;
    ev_init(&c->queue_timer, queue_timer_cb);
    c->queue_timer.data = c;
    ev_init(&c->kick, kick_cb);
    c->kick.data = c;
    tokenbucket_init(&c->bucket, opts->qps == 0 ? DEFAULT_QPS : opts->qps,
                     opts->burst ? opts->burst : DEFAULT_BURST, ev_now(loop));
    c->queue_max = opts->queue_max ? opts->queue_max : DEFAULT_QUEUE_MAX;
    c->max_in_flight = opts->max_in_flight ? opts->max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                         : DEFAULT_CONNECT_TIMEOUT_MS;
    c->max_body = opts->max_body ? opts->max_body : DEFAULT_MAX_BODY;
    c->requests = opts->requests;
    c->waiting = opts->waiting;
    c->in_flight = opts->in_flight;
    c->rejected = opts->rejected;
    c->insecure = cfg->insecure;
    c->ca_len = cfg->ca_pem_len;

    if (set_server(c, cfg, err, errlen) < 0)
        goto fail;
    if (!cfg->cert_pem != !cfg->key_pem) {
        snprintf(err, errlen, "a client certificate needs its key and the reverse");
        goto fail;
    }
    /* Only a pair of files can be renewed in place. */
    bool cert_files = cfg->cert_pem && cfg->cert_file && cfg->key_file;
    if ((cfg->ca_pem && !(c->ca_pem = dup_bytes(cfg->ca_pem, cfg->ca_pem_len))) ||
        (cfg->cert_pem &&
         !(c->cert = cert_new(dup_bytes(cfg->cert_pem, cfg->cert_pem_len), cfg->cert_pem_len,
                              dup_bytes(cfg->key_pem, cfg->key_pem_len), cfg->key_pem_len))) ||
        (cert_files && (!(c->cert_file = strdup(cfg->cert_file)) ||
                        !(c->key_file = strdup(cfg->key_file)))) ||
        (cfg->token && !(c->token_inline = strdup(cfg->token))) ||
        (cfg->token_file && !(c->token_file = strdup(cfg->token_file))) ||
        !(c->name = strdup(opts->name ? opts->name : "kube"))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    /* What the files hold now is what cfg read from them, or newer: a
     * later change is a renewal. */
    if (cert_files && (stat(c->cert_file, &c->cert_stat) < 0 ||
                       stat(c->key_file, &c->key_stat) < 0))
        memset(&c->cert_stat, 0, sizeof c->cert_stat);
    check_cert_dates(c);
    metric_set(opts->limits, (const char *[]){c->name, "waiting"}, c->queue_max);
    metric_set(opts->limits, (const char *[]){c->name, "in_flight"}, c->max_in_flight);
    publish(c);
    c->multi = curl_multi_init();
    if (!c->multi) {
        snprintf(err, errlen, "curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    if (c->insecure)
        vk_warn("TLS verification of the API server is off (insecure-skip-tls-verify)",
                "server=%s", c->base_url);
    return c;

fail:
    kube_client_free(c);
    return NULL;
}

void kube_client_free(struct kube_client *c)
{
    if (!c)
        return;
    if (c->in_curl) {
        vk_error("kube_client_free called from inside a curl callback", "client=%p", (void *)c);
        abort();
    }
    c->closing = true;
    ev_timer_stop(c->loop, &c->queue_timer);
    ev_timer_stop(c->loop, &c->curl_timer);
    ev_timer_stop(c->loop, &c->kick);
    /* One at a time from the head: a callback may cancel any other. */
    struct req *r;
    while ((r = c->queue.head)) {
        list_remove(&c->queue, r);
        c->stats.queued--;
        complete(c, r, 0, "cancelled");
    }
    publish(c);
    while ((r = c->ready.head)) {
        list_remove(&c->ready, r);
        landed(c, r);
        complete(c, r, 0, "cancelled");
    }
    while ((r = c->running.head)) {
        list_remove(&c->running, r);
        curl_multi_remove_handle(c->multi, r->easy);
        landed(c, r);
        if (r->cancelled)
            free_req(r);
        else
            complete(c, r, 0, "cancelled");
    }
    if (c->multi)
        curl_multi_cleanup(c->multi);
    while (c->socks)
        sock_free(c, c->socks);
    curl_slist_free_all(c->connect_to);
    free(c->base_url);
    free(c->name);
    free(c->ca_pem);
    cert_unref(c->cert);
    free(c->cert_file);
    free(c->key_file);
    free_secret(c->token_inline);
    free_secret(c->token);
    free(c->token_file);
    free(c);
    curl_global_cleanup();
}
