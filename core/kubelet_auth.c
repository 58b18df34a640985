/* kubelet_auth.c -- authentication and authorization of kubelet API calls.
 *
 * Both caches are direct-mapped tables indexed by a salted SHA-256 digest:
 * fixed memory, O(1), and a collision just evicts, which a cache may do.
 */
#include "kubelet_auth.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "buf.h"
#include "json.h"
#include "kube_client.h"
#include "log.h"
#include "logval.h"

#define TOKEN_SLOTS 1024
#define SAR_SLOTS 1024
#define TOKEN_TTL 120.0
#define TOKEN_FAIL_TTL 10.0
#define ALLOW_TTL 300.0
#define DENY_TTL 30.0
#define FAILING_PEERS 64
#define REVIEW_TIMEOUT_MS 10000
/* Users with more groups or extra than this are not cached (they are
 * still served). */
#define MAX_CACHED_USER 4096

#define TOKEN_REVIEW_PATH "/apis/authentication.k8s.io/v1/tokenreviews"
#define SAR_PATH "/apis/authorization.k8s.io/v1/subjectaccessreviews"

typedef struct user {
    char *name;
    char *uid;      /* "" when none */
    char *groups;   /* a JSON array */
    char *extra;    /* a JSON object, "" when none */
} user;

typedef struct token_entry {
    unsigned char key[32];
    double expires;  /* 0: empty */
    bool ok;
    user u;
} token_entry;

typedef struct sar_entry {
    unsigned char key[32];
    double expires;
    bool allowed;
} sar_entry;

struct kubelet_auth {
    char *node_name;
    bool anonymous, token_webhook;
    enum kubelet_authz_mode mode;
    struct kube_client *kube;
    unsigned char salt[32];
    token_entry tokens[TOKEN_SLOTS];
    sar_entry sars[SAR_SLOTS];
    char failing[FAILING_PEERS][INET6_ADDRSTRLEN];
    unsigned next_failing;
    bool reviews_failing;     /* warned that the API server does not answer */
    kubelet_auth_pending *pending;
};

struct kubelet_auth_pending {
    kubelet_auth *a;
    kubelet_auth_pending *prev, *next;
    int64_t id;                  /* the review in flight */
    unsigned char token_key[32];
    user u;
    const char *verb, *subresource;
    char peer[INET6_ADDRSTRLEN];
    kubelet_auth_done done;
    void *ud;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void user_free(user *u)
{
    free(u->name);
    free(u->uid);
    free(u->groups);
    free(u->extra);
    memset(u, 0, sizeof *u);
}

static int user_copy(user *to, const user *from)
{
    to->name = strdup(from->name);
    to->uid = strdup(from->uid);
    to->groups = strdup(from->groups);
    to->extra = strdup(from->extra);
    if (to->name && to->uid && to->groups && to->extra)
        return 0;
    user_free(to);
    return -1;
}

/* key = SHA-256(salt || data). */
static void digest(const kubelet_auth *a, unsigned char key[32], const void *data, size_t len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned n = 32;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(ctx, a->salt, sizeof a->salt) &&
              EVP_DigestUpdate(ctx, data, len) && EVP_DigestFinal_ex(ctx, key, &n);
    EVP_MD_CTX_free(ctx);
    if (!ok) /* an all-zero key, which no lookup or store trusts */
        memset(key, 0, 32);
}

static bool key_valid(const unsigned char key[32])
{
    static const unsigned char zero[32];
    return memcmp(key, zero, 32) != 0;
}

static unsigned slot_of(const unsigned char key[32], unsigned slots)
{
    uint32_t v;
    memcpy(&v, key, sizeof v);
    return v % slots;
}

/* ---- logging refusals once per streak ------------------------------------------ */

static int failing_index(const kubelet_auth *a, const char *peer)
{
    for (int i = 0; i < FAILING_PEERS; i++)
        if (a->failing[i][0] && strcmp(a->failing[i], peer) == 0)
            return i;
    return -1;
}

static void note_refusal(kubelet_auth *a, const char *peer, const kubelet_auth_result *res)
{
    char msg[LOGVAL_MAX];
    logval(msg, sizeof msg, res->message);
    if (failing_index(a, peer) >= 0) {
        vk_debug("kubelet API request refused", "peer=%s status=%d reason=%s",
                 peer, res->status, msg);
        return;
    }
    snprintf(a->failing[a->next_failing++ % FAILING_PEERS], INET6_ADDRSTRLEN, "%s", peer);
    vk_warn("kubelet API request refused", "peer=%s status=%d reason=%s "
            "note=\"further refusals of this client are logged at debug level\"",
            peer, res->status, msg);
}

static void note_result(kubelet_auth *a, const char *peer, const kubelet_auth_result *res)
{
    if (res->status) {
        note_refusal(a, peer, res);
        return;
    }
    int i = failing_index(a, peer);
    if (i >= 0)
        a->failing[i][0] = '\0';
}

/* ---- request attributes --------------------------------------------------------- */

/* The kubelet's isSubpath: path is prefix itself or below it. */
static bool is_subpath(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(path, prefix, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

const char *kubelet_auth_subresource(const char *path)
{
    if (is_subpath(path, "/stats"))
        return "stats";
    if (is_subpath(path, "/metrics"))
        return "metrics";
    if (is_subpath(path, "/logs"))
        return "log";
    if (is_subpath(path, "/spec"))
        return "spec";
    return "proxy";
}

const char *kubelet_auth_verb(const char *method)
{
    static const char *const verbs[][2] = {
        {"GET", "get"}, {"HEAD", "get"}, {"POST", "create"},
        {"PUT", "update"}, {"PATCH", "patch"}, {"DELETE", "delete"},
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(method, verbs[i][0]) == 0)
            return verbs[i][1];
    return "";
}

int kubelet_authz_mode_parse(const char *name, enum kubelet_authz_mode *mode)
{
    if (strcmp(name, "AlwaysAllow") == 0)
        *mode = KUBELET_AUTHZ_ALWAYS_ALLOW;
    else if (strcmp(name, "Webhook") == 0)
        *mode = KUBELET_AUTHZ_WEBHOOK;
    else
        return -1;
    return 0;
}

/* ---- results ---------------------------------------------------------------- */

static void set_result(kubelet_auth_result *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_result(kubelet_auth_result *res, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    res->status = status;
    vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
}

static void unauthorized(kubelet_auth_result *res)
{
    set_result(res, 401, "Unauthorized");
}

static void decided(kubelet_auth_result *res, int status, const user *u,
                    const char *verb, const char *sub)
{
    if (status == 0)
        set_result(res, 0, "allowed");
    else
        set_result(res, status, "%s (user=%s, verb=%s, resource=nodes, subresource=%s)",
                   status == 403 ? "Forbidden" : "Authorization error", u->name, verb, sub);
}

/* ---- authentication ------------------------------------------------------------- */

static char *utf8_of(const X509_NAME_ENTRY *e)
{
    unsigned char *s = NULL;
    int n = ASN1_STRING_to_UTF8(&s, X509_NAME_ENTRY_get_data(e));
    if (n < 0)
        return NULL;
    char *out = strndup((const char *)s, (size_t)n);
    OPENSSL_free(s);
    return out;
}

/* user = CN (the last one, as Go's pkix.Name has it), groups = O + the
 * group every authenticated user has. 0, 1 when the certificate names no
 * user, -1 when memory ran out. */
static int user_from_cert(X509 *cert, user *u)
{
    const X509_NAME *name = X509_get_subject_name(cert);
    vk_buf groups = VK_BUF_INIT;
    vk_json_writer w;
    int rc = vk_jw_begin(&w, &groups);
    vk_jw_array_open(&w);
    for (int i = 0; rc == 0 && i < X509_NAME_entry_count(name); i++) {
        const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
        int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
        if (nid != NID_commonName && nid != NID_organizationName)
            continue;
        char *v = utf8_of(e);
        if (!v) {
            rc = -1;
        } else if (nid == NID_commonName) {
            free(u->name);
            u->name = v;
        } else {
            vk_jw_str(&w, v);
            free(v);
        }
    }
    vk_jw_str(&w, "system:authenticated");
    vk_jw_array_close(&w);
    if (vk_jw_end(&w) < 0)
        rc = -1;
    if (rc == 0 && (!u->name || !u->name[0]))
        rc = 1;
    if (rc == 0) {
        u->groups = vk_buf_steal(&groups, NULL);
        u->uid = strdup("");
        u->extra = strdup("");
        if (!u->groups || !u->uid || !u->extra)
            rc = -1;
    }
    vk_buf_free(&groups);
    if (rc != 0)
        user_free(u);
    return rc;
}

static int anonymous_user(user *u)
{
    user anon = {"system:anonymous", "", "[\"system:unauthenticated\"]", ""};
    return user_copy(u, &anon);
}

/* The token of "Authorization: Bearer TOKEN", or NULL. */
static const char *bearer_token(const char *header, size_t *len)
{
    if (!header)
        return NULL;
    header += strspn(header, " \t");
    if (strncasecmp(header, "bearer ", 7) != 0)
        return NULL;
    const char *t = header + 7;
    *len = strcspn(t, " \t");
    return *len ? t : NULL;
}

static token_entry *token_lookup(kubelet_auth *a, const unsigned char key[32])
{
    token_entry *e = &a->tokens[slot_of(key, TOKEN_SLOTS)];
    if (key_valid(key) && e->expires > now() && memcmp(e->key, key, 32) == 0)
        return e;
    return NULL;
}

static void token_store(kubelet_auth *a, const unsigned char key[32], bool ok, const user *u)
{
    if (!key_valid(key))
        return;
    if (ok && strlen(u->groups) + strlen(u->extra) > MAX_CACHED_USER)
        return;
    token_entry *e = &a->tokens[slot_of(key, TOKEN_SLOTS)];
    user_free(&e->u);
    e->expires = 0;
    if (ok && user_copy(&e->u, u) < 0)
        return;
    memcpy(e->key, key, 32);
    e->ok = ok;
    e->expires = now() + (ok ? TOKEN_TTL : TOKEN_FAIL_TTL);
}

/* ---- pending checks ------------------------------------------------------------ */

static void pending_unlink(kubelet_auth_pending *p)
{
    kubelet_auth *a = p->a;
    if (p->prev)
        p->prev->next = p->next;
    else
        a->pending = p->next;
    if (p->next)
        p->next->prev = p->prev;
}

static void pending_free(kubelet_auth_pending *p)
{
    OPENSSL_cleanse(p->token_key, sizeof p->token_key);
    user_free(&p->u);
    free(p);
}

static void finish(kubelet_auth_pending *p, const kubelet_auth_result *res)
{
    pending_unlink(p);
    note_result(p->a, p->peer, res);
    p->done(p->ud, res);
    pending_free(p);
}

void kubelet_auth_cancel(kubelet_auth_pending *p)
{
    if (p->id > 0)
        kube_request_cancel(p->a->kube, p->id);
    pending_unlink(p);
    pending_free(p);
}

/* ---- authorization ------------------------------------------------------------------ */

static void sar_key(const kubelet_auth *a, const user *u, const char *verb, const char *sub,
                    unsigned char key[32])
{
    /* NUL-separated, so that ("ab", "c") and ("a", "bc") differ. */
    vk_buf b = VK_BUF_INIT;
    const char *parts[] = {u->name, u->uid, u->groups, u->extra, verb, sub};
    int rc = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        rc |= vk_buf_append(&b, parts[i], strlen(parts[i]) + 1);
    if (rc == 0)
        digest(a, key, b.data, b.len);
    else
        memset(key, 0, 32);
    vk_buf_free(&b);
}

static void sar_done(const struct kube_response *resp, void *ud);

/* A review that failed (err set: no usable answer) is logged at warn level
 * once until reviews work again, so an API server outage does not log a
 * line per request. */
static void review_outcome(kubelet_auth *a, const char *what, const struct kube_response *resp,
                           const char *err)
{
    if (!err) {
        if (a->reviews_failing)
            vk_info("API server reviews work again", "review=%s", what);
        a->reviews_failing = false;
        return;
    }
    char why[LOGVAL_MAX];
    logval(why, sizeof why, resp->error ? resp->error : err);
    if (a->reviews_failing) {
        vk_debug("review failed", "review=%s status=%ld error=%s", what, resp->status, why);
        return;
    }
    a->reviews_failing = true;
    vk_warn("review failed; kubelet API requests that need one are refused", "review=%s "
            "status=%ld error=%s", what, resp->status, why);
}

/* The review body. The user fields were re-emitted by us (JSON already). */
static int sar_body(const kubelet_auth *a, const kubelet_auth_pending *p, vk_buf *b)
{
    int rc = vk_buf_puts(b, "{\"apiVersion\":\"authorization.k8s.io/v1\","
                            "\"kind\":\"SubjectAccessReview\",\"spec\":{"
                            "\"resourceAttributes\":{\"verb\":");
    rc |= vk_json_quote(b, p->verb, strlen(p->verb));
    rc |= vk_buf_puts(b, ",\"version\":\"v1\",\"resource\":\"nodes\",\"subresource\":");
    rc |= vk_json_quote(b, p->subresource, strlen(p->subresource));
    rc |= vk_buf_puts(b, ",\"name\":");
    rc |= vk_json_quote(b, a->node_name, strlen(a->node_name));
    rc |= vk_buf_puts(b, "},\"user\":");
    rc |= vk_json_quote(b, p->u.name, strlen(p->u.name));
    if (p->u.uid[0]) {
        rc |= vk_buf_puts(b, ",\"uid\":");
        rc |= vk_json_quote(b, p->u.uid, strlen(p->u.uid));
    }
    rc |= vk_buf_printf(b, ",\"groups\":%s", p->u.groups);
    if (p->u.extra[0])
        rc |= vk_buf_printf(b, ",\"extra\":%s", p->u.extra);
    rc |= vk_buf_puts(b, "}}");
    return rc ? -1 : 0;
}

/* Decide now (0, res filled) or start a review (1). */
static int authorize(kubelet_auth_pending *p, kubelet_auth_result *res)
{
    kubelet_auth *a = p->a;
    if (a->mode == KUBELET_AUTHZ_ALWAYS_ALLOW) {
        decided(res, 0, &p->u, p->verb, p->subresource);
        return 0;
    }
    unsigned char key[32];
    sar_key(a, &p->u, p->verb, p->subresource, key);
    sar_entry *e = &a->sars[slot_of(key, SAR_SLOTS)];
    if (key_valid(key) && e->expires > now() && memcmp(e->key, key, 32) == 0) {
        decided(res, e->allowed ? 0 : 403, &p->u, p->verb, p->subresource);
        return 0;
    }
    vk_buf body = VK_BUF_INIT;
    p->id = -1;
    if (sar_body(a, p, &body) == 0)
        p->id = kube_request(a->kube, "POST", SAR_PATH, NULL, body.data, body.len,
                             REVIEW_TIMEOUT_MS, sar_done, p);
    vk_buf_free(&body);
    if (p->id < 0) {
        decided(res, 500, &p->u, p->verb, p->subresource);
        return 0;
    }
    return 1;
}

static void sar_done(const struct kube_response *resp, void *ud)
{
    kubelet_auth_pending *p = ud;
    kubelet_auth *a = p->a;
    kubelet_auth_result res;
    p->id = 0;
    char err[128] = "";
    yajl_val doc = resp->status / 100 == 2 ? vk_json_parse(resp->body, resp->len, err, sizeof err)
                                           : NULL;
    review_outcome(a, "SubjectAccessReview", resp, doc ? NULL : err);
    if (!doc) {
        decided(&res, 500, &p->u, p->verb, p->subresource);
    } else {
        bool allowed = vk_json_bool(vk_json_get(doc, "status", "allowed", NULL), false);
        unsigned char key[32];
        sar_key(a, &p->u, p->verb, p->subresource, key);
        if (key_valid(key)) {
            sar_entry *e = &a->sars[slot_of(key, SAR_SLOTS)];
            memcpy(e->key, key, 32);
            e->allowed = allowed;
            e->expires = now() + (allowed ? ALLOW_TTL : DENY_TTL);
        }
        decided(&res, allowed ? 0 : 403, &p->u, p->verb, p->subresource);
        yajl_tree_free(doc);
    }
    finish(p, &res);
}

/* ---- token reviews ---------------------------------------------------------------- */

/* The user of a TokenReview's status, re-emitted as our JSON. 0, or -1 when
 * it names none. */
static int user_from_review(yajl_val status, user *u)
{
    yajl_val ru = vk_json_member(status, "user");
    const char *name = vk_json_str(vk_json_member(ru, "username"), "");
    if (!name[0])
        return -1;
    vk_buf groups = VK_BUF_INIT, extra = VK_BUF_INIT;
    vk_json_writer w;
    int rc = vk_jw_begin(&w, &groups);
    vk_jw_array_open(&w);
    yajl_val gs = vk_json_member(ru, "groups");
    for (size_t i = 0; YAJL_IS_ARRAY(gs) && i < gs->u.array.len; i++)
        if (YAJL_IS_STRING(gs->u.array.values[i]))
            vk_jw_str(&w, gs->u.array.values[i]->u.string);
    vk_jw_array_close(&w);
    rc |= vk_jw_end(&w);
    yajl_val ex = vk_json_member(ru, "extra");
    if (rc == 0 && YAJL_IS_OBJECT(ex) && ex->u.object.len) {
        rc |= vk_jw_begin(&w, &extra);
        vk_jw_tree(&w, ex);
        rc |= vk_jw_end(&w);
    }
    u->name = strdup(name);
    u->uid = strdup(vk_json_str(vk_json_member(ru, "uid"), ""));
    u->groups = vk_buf_steal(&groups, NULL);
    u->extra = extra.data ? vk_buf_steal(&extra, NULL) : strdup("");
    vk_buf_free(&groups);
    vk_buf_free(&extra);
    if (rc || !u->name || !u->uid || !u->groups || !u->extra) {
        user_free(u);
        return -1;
    }
    return 0;
}

static void token_done(const struct kube_response *resp, void *ud)
{
    kubelet_auth_pending *p = ud;
    kubelet_auth *a = p->a;
    kubelet_auth_result res;
    p->id = 0;
    char err[128] = "";
    yajl_val doc = resp->status / 100 == 2 ? vk_json_parse(resp->body, resp->len, err, sizeof err)
                                           : NULL;
    review_outcome(a, "TokenReview", resp, doc ? NULL : err);
    if (!doc) {
        /* Not cached: the next request asks again. */
        unauthorized(&res);
        finish(p, &res);
        return;
    }
    yajl_val status = vk_json_member(doc, "status");
    bool ok = vk_json_bool(vk_json_member(status, "authenticated"), false) &&
              user_from_review(status, &p->u) == 0;
    yajl_tree_free(doc);
    token_store(a, p->token_key, ok, &p->u);
    if (!ok) {
        unauthorized(&res);
        finish(p, &res);
    } else if (authorize(p, &res) == 0) {
        finish(p, &res);
    }
}

static int start_token_review(kubelet_auth_pending *p, const char *token, size_t len)
{
    vk_buf body = VK_BUF_INIT;
    int rc = vk_buf_puts(&body, "{\"apiVersion\":\"authentication.k8s.io/v1\","
                                "\"kind\":\"TokenReview\",\"spec\":{\"token\":");
    rc |= vk_json_quote(&body, token, len);
    rc |= vk_buf_puts(&body, "}}");
    p->id = rc ? -1 : kube_request(p->a->kube, "POST", TOKEN_REVIEW_PATH, NULL, body.data,
                                   body.len, REVIEW_TIMEOUT_MS, token_done, p);
    if (body.data)
        OPENSSL_cleanse(body.data, body.len);
    vk_buf_free(&body);
    return p->id > 0 ? 0 : -1;
}

/* ---- the check -------------------------------------------------------------------- */

kubelet_auth_pending *kubelet_auth_check(kubelet_auth *a, const kubelet_auth_request *req,
                                         kubelet_auth_result *res,
                                         kubelet_auth_done done, void *ud)
{
    kubelet_auth_pending *p = calloc(1, sizeof *p);
    if (!p) {
        set_result(res, 500, "out of memory");
        return NULL;
    }
    p->a = a;
    p->verb = kubelet_auth_verb(req->method);
    p->subresource = kubelet_auth_subresource(req->path);
    p->done = done;
    p->ud = ud;
    snprintf(p->peer, sizeof p->peer, "%s", req->peer);

    size_t token_len = 0;
    const char *token = a->token_webhook ? bearer_token(req->authorization, &token_len) : NULL;
    int rc = req->cert ? user_from_cert(req->cert, &p->u) : 1;
    if (rc == 1 && token) {
        digest(a, p->token_key, token, token_len);
        token_entry *e = token_lookup(a, p->token_key);
        if (e && e->ok) {
            rc = user_copy(&p->u, &e->u);
        } else if (e) {
            unauthorized(res);
            rc = -2;
        } else if (start_token_review(p, token, token_len) == 0) {
            p->next = a->pending;
            if (a->pending)
                a->pending->prev = p;
            a->pending = p;
            return p;
        } else {
            unauthorized(res);
            rc = -2;
        }
    } else if (rc == 1) {
        if (a->anonymous) {
            rc = anonymous_user(&p->u);
        } else {
            unauthorized(res);
            rc = -2;
        }
    }
    if (rc == -1)
        set_result(res, 500, "out of memory");
    if (rc == 0 && authorize(p, res) == 1) {
        p->next = a->pending;
        if (a->pending)
            a->pending->prev = p;
        a->pending = p;
        return p;
    }
    note_result(a, p->peer, res);
    pending_free(p);
    return NULL;
}

kubelet_auth *kubelet_auth_new(const kubelet_auth_config *cfg, char *err, size_t errlen)
{
    if ((cfg->token_webhook || cfg->mode == KUBELET_AUTHZ_WEBHOOK) && !cfg->kube) {
        snprintf(err, errlen, "the token webhook and Webhook authorization need the API server");
        return NULL;
    }
    kubelet_auth *a = calloc(1, sizeof *a);
    if (!a || !(a->node_name = strdup(cfg->node_name)) ||
        RAND_bytes(a->salt, sizeof a->salt) != 1) {
        snprintf(err, errlen, "cannot set up kubelet API authentication");
        if (a)
            free(a->node_name);
        free(a);
        return NULL;
    }
    a->anonymous = cfg->anonymous;
    a->token_webhook = cfg->token_webhook;
    a->mode = cfg->mode;
    a->kube = cfg->kube;
    return a;
}

void kubelet_auth_free(kubelet_auth *a)
{
    if (!a)
        return;
    while (a->pending)
        kubelet_auth_cancel(a->pending);
    for (size_t i = 0; i < TOKEN_SLOTS; i++)
        user_free(&a->tokens[i].u);
    OPENSSL_cleanse(a->salt, sizeof a->salt);
    free(a->node_name);
    free(a);
}
