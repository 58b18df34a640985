/* node.c -- register the Node, keep its status, follow the provider; see
 * node.h for what is written and why.
 *
 * State lives on the loop. Three request slots, each with at most one
 * request in flight: registration (POST, or GET after a 409), labels
 * (merge patch after adopting an existing Node) and status (strategic
 * merge patch; node_stop's last one takes its place). Status writes are
 * compared by fingerprint -- the patch rendered without heartbeat times --
 * so a provider repeating itself costs nothing and a change is written at
 * once.
 */
#include "node.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "json.h"
#include "kube_reflector.h"
#include "lease.h"
#include "log.h"
#include "logval.h"
#include "pod.h"
#include "provider_client.h"
#include "ratelimit.h"

#define NODES "/api/v1/nodes"
#define TAINT_KEY "virtual-kubelet.io/provider"
#define DEFAULT_OS "linux"
#define REQUEST_TIMEOUT_MS 10000L
#define STOP_TIMEOUT_MS 2000L
#define RETRY_INITIAL_S 0.5
#define RETRY_MAX_S 30.0
#define FEED_RETRY_INITIAL_S 1.0
#define FEED_RETRY_MAX_S 30.0
/* A fresh WatchNode sends the current Node first; one silent this long is
 * treated as failing (GetNode polled) rather than trusted to speak later. */
#define FEED_FIRST_NODE_S 5.0
/* Conditions kept from the provider; the kubelet reports five. */
#define MAX_CONDITIONS 32

#define READY_TRUE_REASON "KubeletReady"
#define READY_TRUE_MESSAGE "vkc-core is posting ready status and the provider is up"
#define PROVIDER_DOWN_REASON "ProviderDown"
#define PROVIDER_DOWN_MESSAGE \
    "the provider is not running or not answering; vkc-core is restarting or reconnecting it"
#define STOPPED_REASON "KubeletStopped"
#define STOPPED_MESSAGE "vkc-core was stopped"

typedef Vkc__Provider__V1__Node pnode_msg;

/* A set of strings, small: condition types, resource names. */
typedef struct names {
    char **v;
    size_t n, cap;
} names;

typedef struct label {
    char *key, *value;
} label;

/* A label as wanted now; the strings belong to the node or the provider
 * message. */
typedef struct kv {
    const char *key, *value;
} kv;

typedef struct cond {
    char *type, *status, *reason, *message;
    char since[32];          /* lastTransitionTime */
} cond;

/* The provider's last Node and the JSON inside it. */
typedef struct pnode {
    pnode_msg *msg;
    yajl_val conditions, addresses, info;
} pnode;

/* The reader of one WatchNode stream, one per provider incarnation. */
typedef struct feed {
    node *n;
    provider_client *pc;
    unsigned gen;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    pc_stream *stream;       /* while open; cancelled under lock */
    /* The stream is down, or has sent no Node since the feed started: the
     * loop polls GetNode meanwhile. */
    atomic_bool failing;
} feed;

enum reg { REG_IDLE, REG_CREATE, REG_GET, REG_DONE };

struct node {
    struct kube_client *kube;
    struct ev_loop *loop;
    vk_pool *pool;
    char *name;
    char *status_path;       /* /api/v1/nodes/NAME/status */
    char *node_path;         /* /api/v1/nodes/NAME */
    char *taint_cfg;         /* --provider */
    char *kubelet_version;
    char node_ip[INET6_ADDRSTRLEN];
    char host_arch[32];
    label *labels;
    size_t n_labels;
    bool taint;
    int port;
    double status_period, poll_period, register_wait;

    lease *lease;
    struct kube_reflector *watch;
    metric *status_updates;

    /* The provider. gen counts incarnations: a result carrying an older
     * one is dropped. */
    provider_client *pc;
    unsigned gen;
    bool provider_up;
    bool provider_answered;  /* a Node from this incarnation arrived */
    char *provider_name;     /* from the last handshake */
    pnode last;              /* the newest Node from any incarnation */
    feed *feed;
    ev_timer poll_timer;
    ev_timer first_node_timer; /* FEED_FIRST_NODE_S after the feed started */
    bool poll_in_flight;
    unsigned provider_failing;
    bool bad_node_warned, bad_label_warned, bad_condition_warned;

    /* The WatchNode reader's hand-over. */
    pthread_mutex_t slot_lock;
    pnode_msg *slot;
    unsigned slot_gen;
    bool slot_posted;
    vk_mailbox *mailbox;

    /* Registration. */
    enum reg reg;
    bool started, stopping, wait_over, registered_once;
    bool taint_warned;
    int64_t reg_req;
    char *uid;
    yajl_val current;        /* the Node as last read */
    ev_timer wait_timer, reg_timer;
    struct backoff reg_backoff;
    unsigned reg_failing;
    int64_t label_req;
    bool label_failing;

    /* Status. */
    cond conds[MAX_CONDITIONS];
    size_t n_conds;
    char ready_logged[96];
    int64_t status_req;
    bool status_again;
    char *sent_fp, *pending_fp;
    /* What the last written status held, to remove what is gone. */
    names sent_conds, sent_res, pending_conds, pending_res;
    ev_timer status_timer;
    struct backoff status_backoff;
    unsigned status_failing;

    /* Stop. */
    int64_t stop_req;
    ev_timer stop_timer;
    void (*stop_done)(void *ud);
    void *stop_ud;
};

static void try_register(node *n);
static void status_send(node *n, bool force);
static void sync_labels(node *n);
static void poll_now(node *n);

/* ---- small helpers --------------------------------------------------------- */

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void rfc3339_now(char *out, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool str_eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static const char *err_text(const struct kube_response *resp)
{
    return resp->error ? resp->error : "unexpected answer";
}

static int names_add(names *s, const char *x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    if (!(s->v[s->n] = strdup(x)))
        return -1;
    s->n++;
    return 0;
}

static bool names_has(const names *s, const char *x)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i], x) == 0)
            return true;
    return false;
}

static void names_clear(names *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    s->n = 0;
}

static void names_free(names *s)
{
    names_clear(s);
    free(s->v);
    s->v = NULL;
    s->cap = 0;
}

static void names_swap(names *a, names *b)
{
    names t = *a;
    *a = *b;
    *b = t;
}

static void restart_timer(node *n, ev_timer *t, double after)
{
    ev_timer_stop(n->loop, t);
    ev_timer_set(t, after, 0.);
    ev_timer_start(n->loop, t);
}

static void cancel(node *n, int64_t *req)
{
    if (*req)
        kube_request_cancel(n->kube, *req);
    *req = 0;
}

/* ---- labels ------------------------------------------------------------------ */

/* The name part of a label key, or a label value: 63 characters at most,
 * alphanumerics with '-', '_' and '.' inside. */
static bool label_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || i == len - 1 || !strchr("-_.", c)))
            return false;
    }
    return true;
}

/* One part of a DNS name (RFC 1123): 1 to 63 lowercase alphanumerics and
 * '-', with no '-' at either end. */
static bool dns_label_ok(const char *s, size_t len)
{
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (c != '-' || i == 0 || i == len - 1))
            return false;
    }
    return true;
}

/* A DNS subdomain, the prefix of a label key: every dot-separated part is
 * checked, since the characters alone let "a..b", "a.-b" and "-.a" through,
 * which the API server refuses (and with them the whole Node). */
static bool dns_subdomain_ok(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    const char *end = s + len;
    for (const char *part = s;;) {
        const char *dot = memchr(part, '.', (size_t)(end - part));
        const char *part_end = dot ? dot : end;
        if (!dns_label_ok(part, (size_t)(part_end - part)))
            return false;
        if (!dot)
            return true;
        part = dot + 1;
    }
}

static bool label_ok(const char *key, const char *value)
{
    const char *slash = strchr(key, '/');
    const char *name = slash ? slash + 1 : key;
    if (slash && !dns_subdomain_ok(key, (size_t)(slash - key)))
        return false;
    return label_name_ok(name, strlen(name)) &&
           (!*value || label_name_ok(value, strlen(value)));
}

/* ns (len bytes) is domain or one of its subdomains. */
static bool in_domain(const char *ns, size_t len, const char *domain)
{
    size_t dl = strlen(domain);
    return len >= dl && memcmp(ns + len - dl, domain, dl) == 0 &&
           (len == dl || ns[len - dl - 1] == '.');
}

/* What NodeRestriction lets a node set on its own Node (1.20,
 * plugin/pkg/admission/noderestriction: getForbiddenLabels). */
static bool node_may_set(const char *key)
{
    static const char *const kubelet_labels[] = {
        "kubernetes.io/hostname",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    };
    const char *slash = strchr(key, '/');
    if (!slash)
        return true;
    size_t len = (size_t)(slash - key);
    if (!in_domain(key, len, "kubernetes.io") && !in_domain(key, len, "k8s.io"))
        return true;
    for (size_t i = 0; i < sizeof kubelet_labels / sizeof kubelet_labels[0]; i++)
        if (strcmp(key, kubelet_labels[i]) == 0)
            return true;
    return in_domain(key, len, "kubelet.kubernetes.io") ||
           in_domain(key, len, "node.kubernetes.io");
}

static void free_labels(label *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].key);
        free(l[i].value);
    }
    free(l);
}

/* --node-labels: "k=v,k2=v2". */
static int parse_labels(node *n, const char *spec, char *err, size_t errlen)
{
    if (!spec || !*spec)
        return 0;
    size_t max = 1;
    for (const char *p = spec; *p; p++)
        max += *p == ',';
    n->labels = calloc(max, sizeof *n->labels);
    if (!n->labels) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = spec;
    for (;;) {
        size_t len = strcspn(p, ",");
        const char *eq = memchr(p, '=', len);
        if (!eq) {
            snprintf(err, errlen, "--node-labels: \"%.*s\" is not key=value", (int)len, p);
            return -1;
        }
        label *l = &n->labels[n->n_labels];
        l->key = strndup(p, (size_t)(eq - p));
        l->value = strndup(eq + 1, len - (size_t)(eq - p) - 1);
        if (!l->key || !l->value) {
            free(l->key);
            free(l->value);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        n->n_labels++;
        if (!label_ok(l->key, l->value)) {
            snprintf(err, errlen, "--node-labels: \"%.*s\" is not a valid label", (int)len, p);
            return -1;
        }
        if (!node_may_set(l->key)) {
            snprintf(err, errlen, "--node-labels: %s: a node may not set kubernetes.io or k8s.io "
                     "labels on itself (NodeRestriction) except under node.kubernetes.io/, "
                     "kubelet.kubernetes.io/ and the well-known hostname, os, arch, "
                     "instance-type, region and zone labels", l->key);
            return -1;
        }
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* ---- what the Node says -------------------------------------------------------- */

static const char *node_os(const node *n)
{
    const pnode_msg *m = n->last.msg;
    return m && m->operating_system && *m->operating_system ? m->operating_system : DEFAULT_OS;
}

static const char *node_arch(const node *n)
{
    const char *a = vk_json_str(vk_json_member(n->last.info, "architecture"), NULL);
    return a && *a ? a : n->host_arch;
}

static const char *taint_value(const node *n)
{
    return n->taint_cfg ? n->taint_cfg : n->provider_name;
}

static void kv_set(kv *set, size_t *count, const char *key, const char *value)
{
    for (size_t i = 0; i < *count; i++) {
        if (strcmp(set[i].key, key) == 0) {
            set[i].value = value;
            return;
        }
    }
    set[(*count)++] = (kv){key, value};
}

/* The labels wanted now, later sources overriding earlier ones: vkc's,
 * the provider's, --node-labels. NULL when memory ran out. */
static kv *wanted_labels(node *n, size_t *count)
{
    const pnode_msg *m = n->last.msg;
    size_t n_prov = m ? m->n_labels : 0;
    kv *set = calloc(6 + n_prov + n->n_labels, sizeof *set);
    if (!set)
        return NULL;
    *count = 0;
    kv_set(set, count, "type", "virtual-kubelet");
    kv_set(set, count, "kubernetes.io/hostname", n->name);
    /* The provider's words, which a label value may not hold. */
    if (label_ok("os", node_os(n))) {
        kv_set(set, count, "kubernetes.io/os", node_os(n));
        kv_set(set, count, "beta.kubernetes.io/os", node_os(n));
    }
    if (label_ok("arch", node_arch(n))) {
        kv_set(set, count, "kubernetes.io/arch", node_arch(n));
        kv_set(set, count, "beta.kubernetes.io/arch", node_arch(n));
    }
    for (size_t i = 0; i < n_prov; i++) {
        const char *k = m->labels[i]->key, *v = m->labels[i]->value;
        if (label_ok(k, v) && node_may_set(k)) {
            kv_set(set, count, k, v);
        } else if (!n->bad_label_warned) {
            char k_v[LOGVAL_MAX];
            vk_warn("provider label dropped: invalid, or forbidden to a node by NodeRestriction",
                    "node=%s label=%s", n->name, logval(k_v, sizeof k_v, k));
            n->bad_label_warned = true;
        }
    }
    for (size_t i = 0; i < n->n_labels; i++)
        kv_set(set, count, n->labels[i].key, n->labels[i].value);
    return set;
}

/* ---- conditions ------------------------------------------------------------------ */

static void cond_clear(cond *c)
{
    free(c->type);
    free(c->status);
    free(c->reason);
    free(c->message);
    memset(c, 0, sizeof *c);
}

static cond *find_cond(node *n, const char *type)
{
    for (size_t i = 0; i < n->n_conds; i++)
        if (strcmp(n->conds[i].type, type) == 0)
            return &n->conds[i];
    return NULL;
}

static int cond_set(cond *c, const char *type, const char *status, const char *reason,
                    const char *message)
{
    c->type = dup_str(type);
    c->status = dup_str(status);
    c->reason = dup_str(reason);
    c->message = dup_str(message);
    if (!c->type || !c->status || (reason && !c->reason) || (message && !c->message)) {
        cond_clear(c);
        return -1;
    }
    return 0;
}

/* A provider's condition status as the Node carries it. True, False and
 * Unknown are the only values a NodeCondition has, and all that the
 * scheduler and the node lifecycle controller understand; of any other
 * word the core cannot tell what the provider meant, which is Unknown. */
static const char *condition_status(node *n, const char *type, yajl_val status)
{
    const char *s = vk_json_str(status, NULL);
    if (!s)
        return "Unknown";
    if (strcmp(s, "True") == 0 || strcmp(s, "False") == 0 || strcmp(s, "Unknown") == 0)
        return s;
    if (!n->bad_condition_warned) {
        char type_v[LOGVAL_MAX], status_v[LOGVAL_MAX];
        vk_warn("provider condition status is not True, False or Unknown; reporting Unknown",
                "node=%s type=%s status=%s", n->name, logval(type_v, sizeof type_v, type),
                logval(status_v, sizeof status_v, s));
        n->bad_condition_warned = true;
    }
    return "Unknown";
}

static void log_ready(node *n)
{
    const cond *r = find_cond(n, "Ready");
    char now[sizeof n->ready_logged], msg_v[LOGVAL_MAX], reason_v[LOGVAL_MAX];
    /* Before registration the state is news to nobody. */
    if (!r || !n->registered_once)
        return;
    snprintf(now, sizeof now, "%s/%s", r->status, r->reason ? r->reason : "");
    if (strcmp(now, n->ready_logged) == 0)
        return;
    snprintf(n->ready_logged, sizeof n->ready_logged, "%s", now);
    if (strcmp(r->status, "True") == 0)
        vk_info("node ready", "node=%s", n->name);
    else
        vk_info("node not ready", "node=%s status=%s reason=%s message=%s", n->name, r->status,
                logval(reason_v, sizeof reason_v, r->reason ? r->reason : ""),
                logval(msg_v, sizeof msg_v, r->message ? r->message : ""));
}

/* Recompute the conditions from the provider's and our state. A
 * condition keeps its lastTransitionTime while its status stays. */
static void refresh_conditions(node *n)
{
    cond next[MAX_CONDITIONS];
    size_t k = 0;
    const char *rs = "True", *rr = READY_TRUE_REASON, *rm = READY_TRUE_MESSAGE;
    bool own_ready = true, have_ready = false;
    if (n->stopping) {
        rs = "False", rr = STOPPED_REASON, rm = STOPPED_MESSAGE;
    } else if (!n->provider_up || !n->provider_answered) {
        rs = "False", rr = PROVIDER_DOWN_REASON, rm = PROVIDER_DOWN_MESSAGE;
    } else {
        own_ready = false;
    }
    memset(next, 0, sizeof next);
    yajl_val list = n->last.conditions;
    size_t len = YAJL_IS_ARRAY(list) ? list->u.array.len : 0;
    for (size_t i = 0; i < len && k < MAX_CONDITIONS - 1; i++) {
        yajl_val c = list->u.array.values[i];
        const char *type = vk_json_str(vk_json_member(c, "type"), NULL);
        bool dup = false;
        for (size_t j = 0; type && j < k; j++)
            dup |= strcmp(next[j].type, type) == 0;
        if (!type || !*type || dup)
            continue;
        bool ready = strcmp(type, "Ready") == 0;
        have_ready |= ready;
        int rc = ready && own_ready
            ? cond_set(&next[k], type, rs, rr, rm)
            : cond_set(&next[k], type, condition_status(n, type, vk_json_member(c, "status")),
                       vk_json_str(vk_json_member(c, "reason"), NULL),
                       vk_json_str(vk_json_member(c, "message"), NULL));
        if (rc < 0)
            goto oom;
        k++;
    }
    if (!have_ready) {
        if (cond_set(&next[k], "Ready", rs, rr, rm) < 0)
            goto oom;
        k++;
    }
    char now[32];
    rfc3339_now(now, sizeof now);
    for (size_t i = 0; i < k; i++) {
        const cond *old = find_cond(n, next[i].type);
        snprintf(next[i].since, sizeof next[i].since, "%s",
                 old && strcmp(old->status, next[i].status) == 0 ? old->since : now);
    }
    for (size_t i = 0; i < n->n_conds; i++)
        cond_clear(&n->conds[i]);
    memcpy(n->conds, next, sizeof next);
    n->n_conds = k;
    log_ready(n);
    return;
oom:
    for (size_t i = 0; i < k; i++)
        cond_clear(&next[i]);
    vk_error("out of memory", "step=%s", "node conditions");
}

/* Adopting a Node: a condition whose status has not changed since the last
 * run keeps the transition time that run wrote. */
static void seed_transitions(node *n, yajl_val existing)
{
    yajl_val list = vk_json_get(existing, "status", "conditions", NULL);
    size_t len = YAJL_IS_ARRAY(list) ? list->u.array.len : 0;
    for (size_t i = 0; i < len; i++) {
        yajl_val c = list->u.array.values[i];
        const char *type = vk_json_str(vk_json_member(c, "type"), "");
        const char *status = vk_json_str(vk_json_member(c, "status"), "");
        const char *since = vk_json_str(vk_json_member(c, "lastTransitionTime"), NULL);
        cond *mine = find_cond(n, type);
        if (mine && since && strcmp(mine->status, status) == 0 &&
            strlen(since) < sizeof mine->since)
            snprintf(mine->since, sizeof mine->since, "%s", since);
    }
}

/* ---- the documents ---------------------------------------------------------------- */

static bool has_resource(const pnode_msg *m, const char *key)
{
    for (size_t i = 0; m && i < m->n_capacity; i++)
        if (strcmp(m->capacity[i]->key, key) == 0)
            return true;
    for (size_t i = 0; m && i < m->n_allocatable; i++)
        if (strcmp(m->allocatable[i]->key, key) == 0)
            return true;
    return false;
}

/* A quantity the API server decodes: one it cannot would fail the whole
 * write, so it is left out (and reported once, see provider_node). */
static bool quantity_ok(const char *q)
{
    int64_t v;
    return vk_quantity_milli(q, &v) == 0 || vk_quantity_value(q, &v) == 0;
}

/* The two maps have distinct entry types of the same shape. */
#define WRITE_ENTRIES(w, entries, count)                     \
    for (size_t i_ = 0; i_ < (count); i_++) {                \
        if (!quantity_ok((entries)[i_]->value))              \
            continue;                                        \
        vk_jw_str((w), (entries)[i_]->key);                  \
        vk_jw_str((w), (entries)[i_]->value);                \
    }

/* capacity and allocatable; in a patch, resources written before and no
 * longer reported are removed (null). */
static void write_resources(vk_json_writer *w, node *n, bool patch, names *written)
{
    const pnode_msg *m = n->last.msg;
    if (!m)
        return;
    for (int alloc = 0; alloc < 2; alloc++) {
        vk_jw_str(w, alloc ? "allocatable" : "capacity");
        vk_jw_map_open(w);
        if (alloc && m->n_allocatable) {
            WRITE_ENTRIES(w, m->allocatable, m->n_allocatable);
        } else {
            /* Allocatable defaults to capacity. */
            WRITE_ENTRIES(w, m->capacity, m->n_capacity);
        }
        for (size_t i = 0; patch && i < n->sent_res.n; i++) {
            if (!has_resource(m, n->sent_res.v[i])) {
                vk_jw_str(w, n->sent_res.v[i]);
                vk_jw_str(w, NULL);
            }
        }
        vk_jw_map_close(w);
    }
    for (size_t i = 0; written && i < m->n_capacity; i++)
        if (!names_has(written, m->capacity[i]->key) && names_add(written, m->capacity[i]->key) < 0)
            w->failed = true;
    for (size_t i = 0; written && i < m->n_allocatable; i++)
        if (!names_has(written, m->allocatable[i]->key) &&
            names_add(written, m->allocatable[i]->key) < 0)
            w->failed = true;
}

/* now NULL leaves the heartbeat out (the fingerprint). */
static void write_conditions(vk_json_writer *w, node *n, const char *now, bool patch,
                             names *written)
{
    vk_jw_str(w, "conditions");
    vk_jw_array_open(w);
    for (size_t i = 0; i < n->n_conds; i++) {
        const cond *c = &n->conds[i];
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "type", c->type);
        vk_jw_kv_str(w, "status", c->status);
        vk_jw_kv_str(w, "reason", c->reason);
        vk_jw_kv_str(w, "message", c->message);
        vk_jw_kv_str(w, "lastHeartbeatTime", now);
        vk_jw_kv_str(w, "lastTransitionTime", c->since);
        vk_jw_map_close(w);
        if (written && names_add(written, c->type) < 0)
            w->failed = true;
    }
    for (size_t i = 0; patch && i < n->sent_conds.n; i++) {
        if (!find_cond(n, n->sent_conds.v[i])) {
            vk_jw_map_open(w);
            vk_jw_kv_str(w, "$patch", "delete");
            vk_jw_kv_str(w, "type", n->sent_conds.v[i]);
            vk_jw_map_close(w);
        }
    }
    vk_jw_array_close(w);
}

static void write_addresses(vk_json_writer *w, const node *n, bool patch)
{
    yajl_val list = n->last.addresses;
    vk_jw_str(w, "addresses");
    vk_jw_array_open(w);
    /* Merging by type would fold two addresses of one type into one. */
    if (patch) {
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "$patch", "replace");
        vk_jw_map_close(w);
    }
    if (YAJL_IS_ARRAY(list) && list->u.array.len) {
        for (size_t i = 0; i < list->u.array.len; i++)
            vk_jw_tree(w, list->u.array.values[i]);
    } else {
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "type", "InternalIP");
        vk_jw_kv_str(w, "address", n->node_ip);
        vk_jw_map_close(w);
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "type", "Hostname");
        vk_jw_kv_str(w, "address", n->name);
        vk_jw_map_close(w);
    }
    vk_jw_array_close(w);
}

static void write_node_info(vk_json_writer *w, const node *n)
{
    static const char *const ours[] = {"kubeletVersion", "operatingSystem", "architecture"};
    yajl_val info = n->last.info;
    vk_jw_str(w, "nodeInfo");
    vk_jw_map_open(w);
    for (size_t i = 0; YAJL_IS_OBJECT(info) && i < info->u.object.len; i++) {
        const char *key = info->u.object.keys[i];
        bool skip = false;
        for (size_t j = 0; j < sizeof ours / sizeof ours[0]; j++)
            skip |= strcmp(key, ours[j]) == 0;
        if (!skip) {
            vk_jw_str(w, key);
            vk_jw_tree(w, info->u.object.values[i]);
        }
    }
    vk_jw_kv_str(w, "kubeletVersion", n->kubelet_version);
    vk_jw_kv_str(w, "operatingSystem", node_os(n));
    vk_jw_kv_str(w, "architecture", node_arch(n));
    vk_jw_map_close(w);
}

/* The members of NodeStatus. In a patch: strategic merge directives, and
 * what was written is recorded in pending_conds/pending_res (committed
 * when the write succeeds). */
static void write_status(vk_json_writer *w, node *n, const char *now, bool patch)
{
    names_clear(&n->pending_conds);
    names_clear(&n->pending_res);
    vk_jw_map_open(w);
    write_resources(w, n, patch, &n->pending_res);
    write_conditions(w, n, now, patch, &n->pending_conds);
    write_addresses(w, n, patch);
    vk_jw_str(w, "daemonEndpoints");
    vk_jw_map_open(w);
    vk_jw_str(w, "kubeletEndpoint");
    vk_jw_map_open(w);
    vk_jw_kv_int(w, "Port", n->port);
    vk_jw_map_close(w);
    vk_jw_map_close(w);
    write_node_info(w, n);
    vk_jw_map_close(w);
}

/* {"status":{...}}; now NULL for the fingerprint. */
static int render_patch(node *n, const char *now, vk_buf *out)
{
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_str(&w, "status");
    write_status(&w, n, now, true);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

static int render_node(node *n, vk_buf *out)
{
    char now[32];
    size_t n_labels = 0;
    kv *labels = wanted_labels(n, &n_labels);
    if (!labels)
        return -1;
    rfc3339_now(now, sizeof now);
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_kv_str(&w, "kind", "Node");
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "name", n->name);
    vk_jw_str(&w, "labels");
    vk_jw_map_open(&w);
    for (size_t i = 0; i < n_labels; i++)
        vk_jw_kv_str(&w, labels[i].key, labels[i].value);
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    if (n->taint) {
        vk_jw_str(&w, "spec");
        vk_jw_map_open(&w);
        vk_jw_str(&w, "taints");
        vk_jw_array_open(&w);
        vk_jw_map_open(&w);
        vk_jw_kv_str(&w, "key", TAINT_KEY);
        vk_jw_kv_str(&w, "value", taint_value(n));
        vk_jw_kv_str(&w, "effect", "NoSchedule");
        vk_jw_map_close(&w);
        vk_jw_array_close(&w);
        vk_jw_map_close(&w);
    }
    vk_jw_str(&w, "status");
    write_status(&w, n, now, false);
    vk_jw_map_close(&w);
    free(labels);
    return vk_jw_end(&w);
}

/* ---- the provider's Node ------------------------------------------------------------ */

static void pnode_clear(pnode *p)
{
    if (p->msg)
        protobuf_c_message_free_unpacked(&p->msg->base, NULL);
    yajl_tree_free(p->conditions);
    yajl_tree_free(p->addresses);
    yajl_tree_free(p->info);
    memset(p, 0, sizeof *p);
}

/* Something of the provider's Node is unusable: reported once until the
 * provider sends a good Node. */
static void provider_bad(node *n, const char *field, const char *why, bool *bad)
{
    char why_v[LOGVAL_MAX];
    *bad = true;
    if (!n->bad_node_warned)
        vk_warn("provider sent a bad Node field; leaving it out", "node=%s field=%s error=%s",
                n->name, field, logval(why_v, sizeof why_v, why));
    n->bad_node_warned = true;
}

/* One of the JSON fields; NULL when empty or not what it should be. */
static yajl_val provider_json(node *n, const ProtobufCBinaryData *b, bool array,
                              const char *field, bool *bad)
{
    if (!b->len)
        return NULL;
    char err[128] = "";
    yajl_val v = vk_json_parse_bytes(b->data, b->len, err, sizeof err);
    if (v && (array ? YAJL_IS_ARRAY(v) : YAJL_IS_OBJECT(v)))
        return v;
    yajl_tree_free(v);
    provider_bad(n, field, err[0] ? err : "wrong JSON type", bad);
    return NULL;
}

/* A Node from the provider (taken). */
static void provider_node(node *n, unsigned gen, pnode_msg *msg)
{
    if (gen != n->gen || !n->provider_up || n->stopping) {
        protobuf_c_message_free_unpacked(&msg->base, NULL);
        return;
    }
    bool bad = false;
    pnode p = {
        .msg = msg,
        .conditions = provider_json(n, &msg->conditions_json, true, "conditions_json", &bad),
        .addresses = provider_json(n, &msg->addresses_json, true, "addresses_json", &bad),
        .info = provider_json(n, &msg->node_info_json, false, "node_info_json", &bad),
    };
    for (size_t i = 0; i < msg->n_capacity; i++)
        if (!quantity_ok(msg->capacity[i]->value))
            provider_bad(n, "capacity", msg->capacity[i]->value, &bad);
    for (size_t i = 0; i < msg->n_allocatable; i++)
        if (!quantity_ok(msg->allocatable[i]->value))
            provider_bad(n, "allocatable", msg->allocatable[i]->value, &bad);
    if (!bad)
        n->bad_node_warned = false;
    pnode_clear(&n->last);
    n->last = p;
    n->provider_answered = true;
    refresh_conditions(n);
    try_register(n);
    status_send(n, false);
    sync_labels(n);
}

/* ---- WatchNode: a reader thread per provider incarnation --------------------------- */

static void take_slot(void *arg)
{
    node *n = arg;
    pthread_mutex_lock(&n->slot_lock);
    pnode_msg *msg = n->slot;
    unsigned gen = n->slot_gen;
    n->slot = NULL;
    n->slot_posted = false;
    pthread_mutex_unlock(&n->slot_lock);
    if (msg)
        provider_node(n, gen, msg);
}

/* Reader thread: only the newest Node matters, so a Node the loop has not
 * taken yet is replaced, and one letter at most is on its way. */
static void hand_over(feed *f, pnode_msg *msg)
{
    node *n = f->n;
    pthread_mutex_lock(&n->slot_lock);
    if (n->slot)
        protobuf_c_message_free_unpacked(&n->slot->base, NULL);
    n->slot = msg;
    n->slot_gen = f->gen;
    if (!n->slot_posted)
        n->slot_posted = vk_post(n->mailbox, take_slot, n) == 0;
    pthread_mutex_unlock(&n->slot_lock);
}

/* Wait up to s seconds or until stopped: true when stopped. */
static bool feed_sleep(feed *f, double s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)((s - (double)(long)s) * 1e9);
    ts.tv_sec += (time_t)s + ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_mutex_lock(&f->lock);
    while (!f->stop && pthread_cond_timedwait(&f->wake, &f->lock, &ts) != ETIMEDOUT)
        ;
    bool stop = f->stop;
    pthread_mutex_unlock(&f->lock);
    return stop;
}

/* Loop side, posted by the reader: poll now if the feed still fails. The
 * letter may outlive the feed that posted it; then n->feed is another feed
 * or NULL, and an extra GetNode is harmless. */
static void poll_failing(void *arg)
{
    node *n = arg;
    if (n->feed && atomic_load(&n->feed->failing))
        poll_now(n);
}

static void *feed_main(void *arg)
{
    feed *f = arg;
    struct backoff b;
    unsigned failing = 0;
    char name_v[LOGVAL_MAX], err_v[LOGVAL_MAX];
    backoff_init(&b, FEED_RETRY_INITIAL_S, FEED_RETRY_MAX_S, 0);
    logval(name_v, sizeof name_v, f->n->name);
    for (;;) {
        vk_status st = {0, NULL};
        pc_stream *s = NULL;
        int code = pc_watch_node(f->pc, &s, &st);
        if (code == VK_OK) {
            pthread_mutex_lock(&f->lock);
            f->stream = s;
            if (f->stop)
                pc_stream_cancel(s);
            pthread_mutex_unlock(&f->lock);
            ProtobufCMessage *m;
            while (pc_stream_next(s, &m) == 1) {
                hand_over(f, (pnode_msg *)m);
                atomic_store(&f->failing, false);
                failing = 0;
                backoff_reset(&b);
            }
            pthread_mutex_lock(&f->lock);
            f->stream = NULL;
            pthread_mutex_unlock(&f->lock);
            code = pc_stream_finish(s, &st);
            pc_stream_free(s);
            if (code == VK_OK)
                vk_status_set(&st, code = VK_UNAVAILABLE, "the provider ended the stream");
        }
        bool stopping;
        pthread_mutex_lock(&f->lock);
        stopping = f->stop;
        pthread_mutex_unlock(&f->lock);
        atomic_store(&f->failing, true);
        if (!stopping && failing++ == 0) {
            vk_warn("provider WatchNode failed; polling GetNode until it works again",
                    "node=%s code=%s error=%s", name_v,
                    vk_status_code_name(code),
                    logval(err_v, sizeof err_v, st.message ? st.message : ""));
            /* A declared but unimplemented WatchNode will not get better:
             * the Node should not wait a whole poll period for its first
             * GetNode. (A full mailbox leaves it to the poll timer.) */
            if (code == VK_UNIMPLEMENTED)
                vk_post(f->n->mailbox, poll_failing, f->n);
        }
        vk_status_clear(&st);
        if (stopping || feed_sleep(f, backoff_next(&b)))
            return NULL;
    }
}

static void feed_start(node *n)
{
    feed *f = calloc(1, sizeof *f);
    pthread_condattr_t ca;
    if (!f)
        goto fail;
    f->n = n;
    f->gen = n->gen;
    f->pc = pc_ref(n->pc);
    atomic_init(&f->failing, false);
    pthread_mutex_init(&f->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&f->thread, NULL, feed_main, f) == 0) {
        n->feed = f;
        ev_timer_set(&n->first_node_timer, FEED_FIRST_NODE_S, 0.);
        ev_timer_start(n->loop, &n->first_node_timer);
        return;
    }
    pthread_cond_destroy(&f->wake);
    pthread_mutex_destroy(&f->lock);
    pc_unref(f->pc);
    free(f);
fail:
    vk_error("cannot start the WatchNode reader; polling GetNode instead", "node=%s", n->name);
    poll_now(n);
}

/* Cancel the stream and wait for the reader: cancellation is local, so the
 * wait is short even when the provider hangs. */
static void feed_stop(node *n)
{
    feed *f = n->feed;
    if (!f)
        return;
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    if (f->stream)
        pc_stream_cancel(f->stream);
    pthread_cond_signal(&f->wake);
    pthread_mutex_unlock(&f->lock);
    ev_timer_stop(n->loop, &n->first_node_timer);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->wake);
    pthread_mutex_destroy(&f->lock);
    pc_unref(f->pc);
    free(f);
    n->feed = NULL;
}

/* ---- GetNode polling, for providers without WatchNode ------------------------------ */

typedef struct poll_job {
    node *n;
    unsigned gen;
    provider_client *pc;
    pnode_msg *msg;
    int code;
    vk_status st;
} poll_job;

static void poll_work(void *arg)
{
    poll_job *job = arg;
    job->code = pc_get_node(job->pc, &job->msg, &job->st);
}

static void poll_done(void *arg)
{
    poll_job *job = arg;
    node *n = job->n;
    if (job->gen == n->gen) {
        n->poll_in_flight = false;
        if (job->code == VK_OK) {
            n->provider_failing = 0;
            provider_node(n, job->gen, job->msg);
            job->msg = NULL;
        } else if (n->provider_failing++ == 0) {
            char err_v[LOGVAL_MAX];
            vk_warn("provider GetNode failed", "node=%s code=%s error=%s", n->name,
                    vk_status_code_name(job->code),
                    logval(err_v, sizeof err_v, job->st.message ? job->st.message : ""));
        }
    }
    if (job->msg)
        protobuf_c_message_free_unpacked(&job->msg->base, NULL);
    pc_unref(job->pc);
    vk_status_clear(&job->st);
    free(job);
}

static void poll_now(node *n)
{
    if (n->poll_in_flight || !n->pc)
        return;
    poll_job *job = calloc(1, sizeof *job);
    if (job) {
        job->n = n;
        job->gen = n->gen;
        job->pc = pc_ref(n->pc);
        if (vk_pool_submit(n->pool, poll_work, poll_done, job) == 0) {
            n->poll_in_flight = true;
            return;
        }
        pc_unref(job->pc);
        free(job);
    }
    /* The next tick asks again. */
    vk_debug("GetNode not submitted: worker queue full", "node=%s", n->name);
}

static void on_poll_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    node *n = t->data;
    (void)loop;
    (void)revents;
    if (!n->feed || atomic_load(&n->feed->failing))
        poll_now(n);
}

/* An open but silent WatchNode would otherwise leave the Node NotReady
 * (ProviderDown) with nothing restarting anything: from now on the poll
 * timer stands in, until the stream sends a Node (the reader then clears
 * failing). */
static void on_first_node_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    node *n = t->data;
    (void)loop;
    (void)revents;
    if (!n->feed || n->provider_answered || atomic_load(&n->feed->failing))
        return;
    atomic_store(&n->feed->failing, true);
    vk_warn("provider WatchNode sent no Node; polling GetNode until it does",
            "node=%s waited_s=%.0f", n->name, FEED_FIRST_NODE_S);
    poll_now(n);
}

/* ---- provider up and down ----------------------------------------------------------- */

/* Forget the current provider incarnation. */
static void provider_gone(node *n)
{
    n->provider_up = false;
    n->provider_answered = false;
    n->gen++;
    feed_stop(n);
    ev_timer_stop(n->loop, &n->poll_timer);
    n->poll_in_flight = false;
    pc_unref(n->pc);
    n->pc = NULL;
}

/* The provider's name as a label value, the taint's value: at most 63 of
 * [A-Za-z0-9._-], alphanumeric at both ends. Anything else is replaced by
 * '-' (and trimmed), so a provider called "my provider" cannot keep the
 * Node from ever registering (the API server refuses an invalid taint). */
static char *label_value(const char *name)
{
    char *v = strndup(name ? name : "", 63);
    if (!v)
        return NULL;
    for (char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
            *p = '-';
    size_t start = 0, len = strlen(v);
    while (start < len && !isalnum((unsigned char)v[start]))
        start++;
    while (len > start && !isalnum((unsigned char)v[len - 1]))
        len--;
    memmove(v, v + start, len - start);
    v[len - start] = '\0';
    if (!*v) {
        free(v);
        v = strdup("provider");
    }
    if (v && strcmp(v, name ? name : "") != 0) {
        char name_v[LOGVAL_MAX];
        vk_warn("the provider's name is not a label value; the taint uses a cleaned copy",
                "name=%s taint=%s", logval(name_v, sizeof name_v, name ? name : ""), v);
    }
    return v;
}

static void on_provider_up(void *ud, provider_client *pc, const pc_info *info)
{
    node *n = ud;
    if (n->stopping)
        return;
    if (n->provider_up)
        provider_gone(n);
    char *name = label_value(info->name);
    if (name) {
        free(n->provider_name);
        n->provider_name = name;
    }
    n->gen++;
    n->pc = pc_ref(pc);
    n->provider_up = true;
    n->provider_failing = 0;
    /* The poll timer also stands in while the WatchNode stream fails. */
    if (info->caps & PC_CAP_WATCH_NODE)
        feed_start(n);
    else
        poll_now(n);
    ev_timer_again(n->loop, &n->poll_timer);
    /* The taint value may have been all registration waited for. */
    try_register(n);
}

static void on_provider_down(void *ud)
{
    node *n = ud;
    if (!n->provider_up)
        return;
    provider_gone(n);
    refresh_conditions(n);
    status_send(n, false);
}

supervisor_listener node_listener(node *n)
{
    return (supervisor_listener){on_provider_up, on_provider_down, n};
}

/* ---- registration ------------------------------------------------------------------- */

static const char *obj_uid(yajl_val obj)
{
    return vk_json_str(vk_json_get(obj, "metadata", "uid", NULL), NULL);
}

static void set_current(node *n, yajl_val obj)
{
    yajl_tree_free(n->current);
    n->current = obj;
}

static bool can_register(const node *n)
{
    if (!n->started || n->stopping || n->reg != REG_IDLE || ev_is_active(&n->reg_timer))
        return false;
    if (n->taint && !taint_value(n))
        return false;
    return n->last.msg || n->wait_over;
}

static void reg_failed(node *n, long status, const char *why)
{
    char why_v[LOGVAL_MAX];
    n->reg = REG_IDLE;
    if (n->reg_failing++ == 0)
        vk_warn("cannot register the node", "node=%s status=%ld error=%s", n->name, status,
                logval(why_v, sizeof why_v, why));
    restart_timer(n, &n->reg_timer, backoff_next(&n->reg_backoff));
}

/* NodeRestriction forbids a node to change its taints: say so once. */
static void check_taints(node *n, yajl_val obj)
{
    yajl_val taints = vk_json_get(obj, "spec", "taints", NULL);
    bool found = false;
    for (size_t i = 0; YAJL_IS_ARRAY(taints) && i < taints->u.array.len; i++) {
        yajl_val t = taints->u.array.values[i];
        found |= str_eq(vk_json_str(vk_json_member(t, "key"), NULL), TAINT_KEY) &&
                 str_eq(vk_json_str(vk_json_member(t, "value"), NULL), taint_value(n)) &&
                 str_eq(vk_json_str(vk_json_member(t, "effect"), NULL), "NoSchedule");
    }
    if (found != n->taint && !n->taint_warned) {
        char v[LOGVAL_MAX];
        vk_warn("the existing Node's taints differ from the configuration; a node may not "
                "change its own taints: delete the Node to apply them",
                "node=%s want=%s", n->name,
                n->taint ? logval(v, sizeof v, taint_value(n)) : "none");
        n->taint_warned = true;
    }
}

static void on_node_replace(void *ud, yajl_val *items, size_t count);
static void on_node_event(void *ud, enum kube_event_type type, yajl_val *object);

/* The Node is ours now (obj taken): created by us, or found existing. */
static void adopt(node *n, yajl_val obj, bool created)
{
    const char *uid = obj_uid(obj);
    char *copy = dup_str(uid);
    if (!copy) {
        yajl_tree_free(obj);
        reg_failed(n, 0, uid ? "out of memory" : "the Node has no uid");
        return;
    }
    free(n->uid);
    n->uid = copy;
    set_current(n, obj);
    n->reg = REG_DONE;
    backoff_reset(&n->reg_backoff);
    n->reg_failing = 0;
    if (created)
        vk_info(n->registered_once ? "node recreated" : "node registered", "node=%s uid=%s",
                n->name, n->uid);
    else
        vk_info("node registered", "node=%s uid=%s existing=true", n->name, n->uid);
    n->registered_once = true;
    log_ready(n);
    lease_start(n->lease, n->uid);
    if (!n->watch) {
        char selector[300];
        snprintf(selector, sizeof selector, "metadata.name=%s", n->name);
        struct kube_reflector_config rc = {
            .path = NODES,
            .field_selector = selector,
            .on_replace = on_node_replace,
            .on_event = on_node_event,
            .ud = n,
        };
        n->watch = kube_reflector_start(n->kube, &rc);
        if (!n->watch)
            vk_error("cannot watch the Node; a deletion is noticed by the next status write",
                     "node=%s", n->name);
    }
    if (created) {
        /* The POST carried the status. */
        names_swap(&n->sent_conds, &n->pending_conds);
        names_swap(&n->sent_res, &n->pending_res);
        free(n->sent_fp);
        n->sent_fp = n->pending_fp;
        n->pending_fp = NULL;
        restart_timer(n, &n->status_timer, n->status_period);
    } else {
        seed_transitions(n, obj);
        check_taints(n, obj);
        names_clear(&n->sent_conds);
        names_clear(&n->sent_res);
        free(n->sent_fp);
        n->sent_fp = NULL;
    }
    status_send(n, false);
    sync_labels(n);
}

static void on_get_done(const struct kube_response *resp, void *ud)
{
    node *n = ud;
    n->reg_req = 0;
    if (resp->cancelled)
        return;
    yajl_val obj = resp->status == 200 ? vk_json_parse(resp->body, resp->len, NULL, 0) : NULL;
    if (obj)
        adopt(n, obj, false);
    else
        reg_failed(n, resp->status, resp->status == 200 ? "the Node is not JSON" : err_text(resp));
}

/* Read the Node, then adopt it. */
static void fetch(node *n)
{
    cancel(n, &n->status_req);
    cancel(n, &n->label_req);
    n->status_again = false;
    n->reg = REG_GET;
    n->reg_req = kube_request(n->kube, "GET", n->node_path, NULL, NULL, 0, REQUEST_TIMEOUT_MS,
                              on_get_done, n);
    if (n->reg_req < 0) {
        n->reg_req = 0;
        reg_failed(n, 0, "cannot submit the request");
    }
}

static void on_create_done(const struct kube_response *resp, void *ud)
{
    node *n = ud;
    n->reg_req = 0;
    if (resp->cancelled)
        return;
    if (resp->status == 409) {
        /* A restart: the Node is there already. */
        fetch(n);
        return;
    }
    yajl_val obj = resp->status / 100 == 2 ? vk_json_parse(resp->body, resp->len, NULL, 0) : NULL;
    if (obj)
        adopt(n, obj, true);
    else
        reg_failed(n, resp->status,
                   resp->status / 100 == 2 ? "the Node is not JSON" : err_text(resp));
}

static void try_register(node *n)
{
    if (!can_register(n))
        return;
    vk_buf body = VK_BUF_INIT, fp = VK_BUF_INIT;
    if (render_patch(n, NULL, &fp) < 0 || render_node(n, &body) < 0) {
        vk_buf_free(&body);
        vk_buf_free(&fp);
        reg_failed(n, 0, "out of memory");
        return;
    }
    free(n->pending_fp);
    n->pending_fp = vk_buf_steal(&fp, NULL);
    n->reg = REG_CREATE;
    n->reg_req = kube_request(n->kube, "POST", NODES, NULL, body.data, body.len,
                              REQUEST_TIMEOUT_MS, on_create_done, n);
    vk_buf_free(&body);
    if (n->reg_req < 0) {
        n->reg_req = 0;
        reg_failed(n, 0, "cannot submit the request");
    }
}

static void on_reg_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    try_register(t->data);
}

static void on_wait_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    node *n = t->data;
    (void)loop;
    (void)revents;
    n->wait_over = true;
    if (n->reg == REG_IDLE && !n->last.msg) {
        if (n->taint && !taint_value(n))
            vk_info("node not registered yet: the provider's name (the taint's value) is "
                    "unknown until it starts; --provider sets it", "node=%s", n->name);
        else
            vk_info("registering the node before the provider answered", "node=%s", n->name);
    }
    try_register(n);
}

/* Someone deleted the Node: register it again. uid NULL: whatever it was. */
static void node_gone(node *n, const char *uid)
{
    if (n->reg != REG_DONE || (uid && !str_eq(uid, n->uid)))
        return;
    vk_info("node deleted; registering it again", "node=%s uid=%s", n->name, n->uid);
    free(n->uid);
    n->uid = NULL;
    set_current(n, NULL);
    cancel(n, &n->status_req);
    cancel(n, &n->label_req);
    ev_timer_stop(n->loop, &n->status_timer);
    n->status_again = false;
    n->reg = REG_IDLE;
    try_register(n);
}

/* The Node as the watch sees it (obj taken). */
static void node_seen(node *n, yajl_val obj)
{
    if (n->reg != REG_DONE) {
        yajl_tree_free(obj);
        return;
    }
    if (!str_eq(obj_uid(obj), n->uid)) {
        /* Deleted and created again by someone else, or a late event of
         * the Node we replaced: only the server knows which is current. */
        vk_info("node uid changed; reading the node again", "node=%s", n->name);
        yajl_tree_free(obj);
        fetch(n);
        return;
    }
    set_current(n, obj);
}

static bool is_mine(const node *n, yajl_val obj)
{
    return str_eq(vk_json_str(vk_json_get(obj, "metadata", "name", NULL), NULL), n->name);
}

static void on_node_replace(void *ud, yajl_val *items, size_t count)
{
    node *n = ud;
    for (size_t i = 0; i < count; i++) {
        if (is_mine(n, items[i])) {
            yajl_val obj = items[i];
            items[i] = NULL;
            node_seen(n, obj);
            return;
        }
    }
    node_gone(n, NULL);
}

static void on_node_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    node *n = ud;
    if (!is_mine(n, *object))
        return;
    if (type == KUBE_DELETED) {
        node_gone(n, obj_uid(*object));
    } else {
        yajl_val obj = *object;
        *object = NULL;
        node_seen(n, obj);
    }
}

/* ---- labels of an existing Node ------------------------------------------------------- */

static void on_labels_done(const struct kube_response *resp, void *ud)
{
    node *n = ud;
    char why_v[LOGVAL_MAX];
    n->label_req = 0;
    if (resp->cancelled)
        return;
    yajl_val obj = resp->status == 200 ? vk_json_parse(resp->body, resp->len, NULL, 0) : NULL;
    if (obj) {
        n->label_failing = false;
        node_seen(n, obj);
        return;
    }
    /* Tried again with the next status heartbeat. */
    if (!n->label_failing)
        vk_warn("cannot update the node's labels", "node=%s status=%ld error=%s", n->name,
                resp->status, logval(why_v, sizeof why_v, err_text(resp)));
    n->label_failing = true;
}

/* Add or correct our labels on the Node; labels others set stay. */
static void sync_labels(node *n)
{
    if (n->reg != REG_DONE || n->label_req || n->stopping || !n->current)
        return;
    size_t count = 0;
    kv *want = wanted_labels(n, &count);
    if (!want)
        return;
    yajl_val have = vk_json_get(n->current, "metadata", "labels", NULL);
    vk_buf body = VK_BUF_INIT;
    vk_json_writer w;
    size_t changed = 0;
    vk_jw_begin(&w, &body);
    vk_jw_map_open(&w);
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_str(&w, "labels");
    vk_jw_map_open(&w);
    for (size_t i = 0; i < count; i++) {
        if (!str_eq(vk_json_str(vk_json_member(have, want[i].key), NULL), want[i].value)) {
            vk_jw_kv_str(&w, want[i].key, want[i].value);
            changed++;
        }
    }
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    free(want);
    if (vk_jw_end(&w) == 0 && changed) {
        n->label_req = kube_request(n->kube, "PATCH", n->node_path, "application/merge-patch+json",
                                    body.data, body.len, REQUEST_TIMEOUT_MS, on_labels_done, n);
        if (n->label_req < 0)
            n->label_req = 0;
    }
    vk_buf_free(&body);
}

/* ---- status --------------------------------------------------------------------------- */

static void status_failed(node *n, long status, const char *why)
{
    char why_v[LOGVAL_MAX];
    metric_add(n->status_updates, (const char *[]){"error"}, 1);
    if (n->status_failing++ == 0)
        vk_warn("cannot update the node status", "node=%s status=%ld error=%s", n->name, status,
                logval(why_v, sizeof why_v, why));
    restart_timer(n, &n->status_timer, backoff_next(&n->status_backoff));
}

static void on_status_done(const struct kube_response *resp, void *ud)
{
    node *n = ud;
    n->status_req = 0;
    if (resp->cancelled)
        return;
    if (resp->status / 100 != 2) {
        if (resp->status == 404) {
            node_gone(n, NULL);
            return;
        }
        status_failed(n, resp->status, err_text(resp));
        return;
    }
    metric_add(n->status_updates, (const char *[]){"ok"}, 1);
    if (n->status_failing)
        vk_info("node status updated again", "node=%s failures=%u", n->name, n->status_failing);
    n->status_failing = 0;
    backoff_reset(&n->status_backoff);
    names_swap(&n->sent_conds, &n->pending_conds);
    names_swap(&n->sent_res, &n->pending_res);
    free(n->sent_fp);
    n->sent_fp = n->pending_fp;
    n->pending_fp = NULL;
    restart_timer(n, &n->status_timer, n->status_period);
    if (n->status_again) {
        n->status_again = false;
        status_send(n, false);
    }
}

/* Write the status if it changed, or anyway (force: heartbeat, retry). */
static void status_send(node *n, bool force)
{
    if (n->reg != REG_DONE || n->stopping)
        return;
    if (n->status_req) {
        n->status_again = true;
        return;
    }
    char now[32];
    vk_buf fp = VK_BUF_INIT, body = VK_BUF_INIT;
    rfc3339_now(now, sizeof now);
    if (render_patch(n, NULL, &fp) < 0 || render_patch(n, now, &body) < 0) {
        vk_buf_free(&fp);
        vk_buf_free(&body);
        status_failed(n, 0, "out of memory");
        return;
    }
    if (!force && str_eq(fp.data, n->sent_fp)) {
        vk_buf_free(&fp);
        vk_buf_free(&body);
        return;
    }
    n->status_req = kube_request(n->kube, "PATCH", n->status_path,
                                 "application/strategic-merge-patch+json", body.data, body.len,
                                 REQUEST_TIMEOUT_MS, on_status_done, n);
    vk_buf_free(&body);
    if (n->status_req < 0) {
        n->status_req = 0;
        vk_buf_free(&fp);
        status_failed(n, 0, "cannot submit the request");
        return;
    }
    free(n->pending_fp);
    n->pending_fp = vk_buf_steal(&fp, NULL);
}

static void on_status_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    node *n = t->data;
    (void)loop;
    (void)revents;
    status_send(n, true);
    sync_labels(n);
}

/* ---- start and stop ----------------------------------------------------------------------- */

static void finish_stop(node *n)
{
    ev_timer_stop(n->loop, &n->stop_timer);
    void (*done)(void *) = n->stop_done;
    n->stop_done = NULL;
    if (done)
        done(n->stop_ud);
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    finish_stop(t->data);
}

static void on_stopped(const struct kube_response *resp, void *ud)
{
    node *n = ud;
    char why_v[LOGVAL_MAX];
    n->stop_req = 0;
    if (resp->cancelled)
        return;
    if (resp->status / 100 == 2) {
        metric_add(n->status_updates, (const char *[]){"ok"}, 1);
    } else {
        metric_add(n->status_updates, (const char *[]){"error"}, 1);
        vk_warn("cannot mark the node stopped", "node=%s status=%ld error=%s", n->name,
                resp->status, logval(why_v, sizeof why_v, err_text(resp)));
    }
    finish_stop(n);
}

void node_start(node *n)
{
    if (n->started)
        return;
    n->started = true;
    restart_timer(n, &n->wait_timer, n->register_wait);
    try_register(n);
}

/* Everything but the final write stops here. */
static void halt(node *n)
{
    n->stopping = true;
    ev_timer_stop(n->loop, &n->wait_timer);
    ev_timer_stop(n->loop, &n->reg_timer);
    ev_timer_stop(n->loop, &n->status_timer);
    if (n->provider_up)
        provider_gone(n);
    if (n->lease)
        lease_stop(n->lease);
    kube_reflector_free(n->watch);
    n->watch = NULL;
    cancel(n, &n->reg_req);
    cancel(n, &n->label_req);
    cancel(n, &n->status_req);
}

void node_stop(node *n, void (*done)(void *ud), void *ud)
{
    if (n->stopping)
        return;
    halt(n);
    n->stop_done = done;
    n->stop_ud = ud;
    if (n->reg == REG_DONE) {
        char now[32];
        vk_buf body = VK_BUF_INIT;
        refresh_conditions(n);
        rfc3339_now(now, sizeof now);
        if (render_patch(n, now, &body) == 0)
            n->stop_req = kube_request(n->kube, "PATCH", n->status_path,
                                       "application/strategic-merge-patch+json", body.data,
                                       body.len, STOP_TIMEOUT_MS, on_stopped, n);
        vk_buf_free(&body);
        if (n->stop_req > 0)
            return;
        n->stop_req = 0;
        vk_warn("cannot mark the node stopped", "node=%s error=\"%s\"", n->name,
                "cannot submit the request");
    }
    restart_timer(n, &n->stop_timer, 0.);
}

/* The first non-loopback IPv4 address of the host, as the kubelet picks
 * one when --node-ip is absent. */
static void default_ip(char *out, size_t cap)
{
    struct ifaddrs *ifs;
    snprintf(out, cap, "127.0.0.1");
    if (getifaddrs(&ifs) < 0)
        return;
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET && (i->ifa_flags & IFF_UP) &&
            !(i->ifa_flags & IFF_LOOPBACK)) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, out,
                      (socklen_t)cap);
            break;
        }
    }
    freeifaddrs(ifs);
}

/* Kubernetes names architectures as Go does. */
static void host_arch(char *out, size_t cap)
{
    static const char *const names_map[][2] = {
        {"x86_64", "amd64"}, {"aarch64", "arm64"}, {"i686", "386"}, {"i386", "386"},
        {"ppc64le", "ppc64le"}, {"s390x", "s390x"}, {"riscv64", "riscv64"},
    };
    struct utsname u;
    snprintf(out, cap, "amd64");
    if (uname(&u) < 0)
        return;
    snprintf(out, cap, "%.31s", strncmp(u.machine, "armv", 4) == 0 ? "arm" : u.machine);
    for (size_t i = 0; i < sizeof names_map / sizeof names_map[0]; i++)
        if (strcmp(u.machine, names_map[i][0]) == 0)
            snprintf(out, cap, "%s", names_map[i][1]);
}

static double ms_or(int ms, int def)
{
    return (ms > 0 ? ms : def) / 1000.0;
}

node *node_new(const node_config *cfg, char *err, size_t errlen)
{
    if (!cfg->kube || !cfg->pool || !cfg->name || !*cfg->name) {
        snprintf(err, errlen, "node: missing client, pool or name");
        return NULL;
    }
    node *n = calloc(1, sizeof *n);
    if (!n) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    n->kube = cfg->kube;
    n->loop = kube_client_loop(cfg->kube);
    n->pool = cfg->pool;
    n->taint = !cfg->disable_taint;
    n->port = cfg->kubelet_port > 0 ? cfg->kubelet_port : NODE_DEFAULT_KUBELET_PORT;
    n->status_period = ms_or(cfg->status_period_ms, NODE_DEFAULT_STATUS_PERIOD_MS);
    n->poll_period = ms_or(cfg->poll_ms, NODE_DEFAULT_POLL_MS);
    n->register_wait = ms_or(cfg->register_wait_ms, NODE_DEFAULT_REGISTER_WAIT_MS);
    pthread_mutex_init(&n->slot_lock, NULL);
    ev_init(&n->poll_timer, on_poll_timer);
    n->poll_timer.repeat = n->poll_period;
    ev_init(&n->first_node_timer, on_first_node_timer);
    n->first_node_timer.data = n;
    ev_init(&n->wait_timer, on_wait_timer);
    ev_init(&n->reg_timer, on_reg_timer);
    ev_init(&n->status_timer, on_status_timer);
    ev_init(&n->stop_timer, on_stop_timer);
    n->poll_timer.data = n->wait_timer.data = n->reg_timer.data = n;
    n->status_timer.data = n->stop_timer.data = n;
    backoff_init(&n->reg_backoff, RETRY_INITIAL_S, RETRY_MAX_S, 0);
    backoff_init(&n->status_backoff, RETRY_INITIAL_S, RETRY_MAX_S, 0);
    host_arch(n->host_arch, sizeof n->host_arch);

    vk_buf status_path = VK_BUF_INIT, node_path = VK_BUF_INIT;
    n->name = strdup(cfg->name);
    n->taint_cfg = dup_str(cfg->provider_name && *cfg->provider_name ? cfg->provider_name : NULL);
    n->kubelet_version = strdup(cfg->kubelet_version ? cfg->kubelet_version : NODE_KUBELET_VERSION);
    if (!n->name || !n->kubelet_version ||
        (cfg->provider_name && *cfg->provider_name && !n->taint_cfg) ||
        vk_buf_printf(&node_path, NODES "/%s", cfg->name) < 0 ||
        vk_buf_printf(&status_path, NODES "/%s/status", cfg->name) < 0) {
        vk_buf_free(&status_path);
        vk_buf_free(&node_path);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    n->node_path = vk_buf_steal(&node_path, NULL);
    n->status_path = vk_buf_steal(&status_path, NULL);

    if (cfg->node_ip && *cfg->node_ip) {
        unsigned char addr[sizeof(struct in6_addr)];
        if (inet_pton(AF_INET, cfg->node_ip, addr) != 1 &&
            inet_pton(AF_INET6, cfg->node_ip, addr) != 1) {
            snprintf(err, errlen, "--node-ip: \"%s\" is not an IP address", cfg->node_ip);
            goto fail;
        }
        snprintf(n->node_ip, sizeof n->node_ip, "%s", cfg->node_ip);
    } else {
        default_ip(n->node_ip, sizeof n->node_ip);
    }
    if (parse_labels(n, cfg->labels, err, errlen) < 0)
        goto fail;

    /* One Node hand-over and one poll_failing letter at most. */
    n->mailbox = vk_mailbox_new(n->loop, 2);
    lease_config lc = {
        .kube = cfg->kube,
        .node_name = cfg->name,
        .duration_s = cfg->lease_duration_s,
        .renew_ms = cfg->lease_renew_ms,
        .metrics = cfg->metrics,
    };
    n->lease = lease_new(&lc);
    if (!n->mailbox || !n->lease) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (cfg->metrics)
        n->status_updates = metrics_counter(cfg->metrics, "node_status_updates_total",
            "Node status writes, by result.", "result");
    refresh_conditions(n);
    return n;
fail:
    node_free(n);
    return NULL;
}

void node_free(node *n)
{
    if (!n)
        return;
    halt(n);
    cancel(n, &n->stop_req);
    ev_timer_stop(n->loop, &n->stop_timer);
    /* Delivers a Node left in the mailbox: dropped, as we are stopping; a
     * poll_failing letter finds no feed. */
    vk_mailbox_free(n->mailbox);
    if (n->slot)
        protobuf_c_message_free_unpacked(&n->slot->base, NULL);
    pthread_mutex_destroy(&n->slot_lock);
    lease_free(n->lease);
    pnode_clear(&n->last);
    for (size_t i = 0; i < n->n_conds; i++)
        cond_clear(&n->conds[i]);
    names_free(&n->sent_conds);
    names_free(&n->sent_res);
    names_free(&n->pending_conds);
    names_free(&n->pending_res);
    yajl_tree_free(n->current);
    free_labels(n->labels, n->n_labels);
    free(n->uid);
    free(n->sent_fp);
    free(n->pending_fp);
    free(n->provider_name);
    free(n->taint_cfg);
    free(n->kubelet_version);
    free(n->node_path);
    free(n->status_path);
    free(n->name);
    free(n);
}
