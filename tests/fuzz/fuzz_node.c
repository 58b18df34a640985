/* fuzz_node.c -- what core/node.c makes of the provider's Node and
 * handshake: the Node it registers and the status patches it writes.
 *
 * The provider is untrusted: its name becomes the taint's value, its Node
 * message brings labels, resources and three JSON fields (conditions,
 * addresses, nodeInfo). Whatever it sends, every request the core then
 * makes must be one the API server accepts, or the node never registers.
 *
 * node.c talks to the API server through kube_client.h, to the provider
 * through provider_client.h and runs GetNode on a vk_pool: this target links
 * it with fakes of those (below), and of the Lease and the Node watch. The
 * fake API server answers every request at once (from the loop, as the
 * real client does); the fake pool runs a job when the target says so.
 *
 * Input: a byte of options, the provider's name (up to a NUL), then Node
 * messages, each prefixed with a 2-byte big-endian length. The provider
 * comes up and answers GetNode with each message in turn, going down and
 * up again between them; then the node stops.
 *
 * Checked on every request body: it is a JSON object; labels are valid
 * label keys and values (Kubernetes' rules, written out again here) and
 * allowed to a node by NodeRestriction; the taint's value is a valid label
 * value; the status has exactly one Ready condition, every condition a
 * type and a status of True, False or Unknown, addresses as a list and
 * the configured kubeletVersion.
 */
#include <string.h>

#include <ev.h>

#include "fuzz.h"
#include "json.h"
#include "kube_reflector.h"
#include "lease.h"
#include "node.h"
#include "work.h"

/* ---- the fake API server ------------------------------------------------- */

#define MAX_PENDING 16

typedef struct pending {
    int64_t id;
    kube_done_fn done;
    void *ud;
    long status;
    char *body;
} pending;

struct kube_client {
    struct ev_loop *loop;
    pending q[MAX_PENDING];
    int n;
    int64_t next_id;
    int requests;
};

struct ev_loop *kube_client_loop(const struct kube_client *c)
{
    return c->loop;
}

static bool dns_label(const char *s, size_t len)
{
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (c != '-' || i == 0 || i == len - 1))
            return false;
    }
    return true;
}

/* Kubernetes' IsDNS1123Subdomain, for a label key's prefix. */
static bool dns_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!dns_label(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* IsQualifiedName's name part, and a label value when non-empty. */
static bool label_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (!strchr("-_.", c) || i == 0 || i == len - 1))
            return false;
    }
    return true;
}

static bool label_key(const char *key)
{
    const char *slash = strchr(key, '/');
    if (!slash)
        return label_name(key);
    return dns_subdomain(key, (size_t)(slash - key)) && label_name(slash + 1);
}

/* NodeRestriction (1.20): kubernetes.io and k8s.io labels a node may set. */
static bool node_may_set(const char *key)
{
    static const char *const allowed[] = {
        "kubernetes.io/hostname", "kubernetes.io/os", "kubernetes.io/arch",
        "beta.kubernetes.io/os", "beta.kubernetes.io/arch", "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
    };
    const char *slash = strchr(key, '/');
    if (!slash)
        return true;
    char prefix[256];
    snprintf(prefix, sizeof prefix, ".%.*s", (int)(slash - key), key);
    size_t n = strlen(prefix);
    bool k8s = (n >= 14 && strcmp(prefix + n - 14, ".kubernetes.io") == 0) ||
               (n >= 7 && strcmp(prefix + n - 7, ".k8s.io") == 0);
    if (!k8s)
        return true;
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (strcmp(key, allowed[i]) == 0)
            return true;
    return (n >= 22 && strcmp(prefix + n - 22, ".kubelet.kubernetes.io") == 0) ||
           (n >= 19 && strcmp(prefix + n - 19, ".node.kubernetes.io") == 0);
}

static void check_labels(yajl_val labels)
{
    for (size_t i = 0; YAJL_IS_OBJECT(labels) && i < labels->u.object.len; i++) {
        const char *key = labels->u.object.keys[i];
        yajl_val v = labels->u.object.values[i];
        if (YAJL_IS_NULL(v))
            continue; /* a merge patch removing it */
        const char *value = vk_json_str(v, NULL);
        if (!label_key(key) || !value || (*value && !label_name(value)) || !node_may_set(key))
            fprintf(stderr, "label refused by the API server: \"%s\": \"%s\"\n", key,
                    value ? value : "(not a string)");
        FUZZ_CHECK(label_key(key));
        FUZZ_CHECK(value && (!*value || label_name(value)));
        FUZZ_CHECK(node_may_set(key));
    }
}

static void check_status(yajl_val status)
{
    FUZZ_CHECK(YAJL_IS_OBJECT(status));
    yajl_val conds = vk_json_member(status, "conditions");
    FUZZ_CHECK(YAJL_IS_ARRAY(conds));
    int ready = 0;
    for (size_t i = 0; i < conds->u.array.len; i++) {
        yajl_val c = conds->u.array.values[i];
        const char *type = vk_json_str(vk_json_member(c, "type"), NULL);
        FUZZ_CHECK(type && *type);
        if (vk_json_member(c, "$patch"))
            continue;
        const char *st = vk_json_str(vk_json_member(c, "status"), "");
        FUZZ_CHECK(!strcmp(st, "True") || !strcmp(st, "False") || !strcmp(st, "Unknown"));
        ready += strcmp(type, "Ready") == 0;
    }
    FUZZ_CHECK(ready == 1);
    FUZZ_CHECK(YAJL_IS_ARRAY(vk_json_member(status, "addresses")));
    const char *version = vk_json_str(vk_json_get(status, "nodeInfo", "kubeletVersion", NULL), "");
    FUZZ_CHECK(strcmp(version, NODE_KUBELET_VERSION) == 0);
}

static void check_request(const char *method, const char *path, const char *body, size_t len)
{
    if (!body)
        return;
    char err[160];
    yajl_val v = vk_json_parse(body, len, err, sizeof err);
    if (!YAJL_IS_OBJECT(v))
        fprintf(stderr, "%s %s: body is not a JSON object (%s): %.*s\n", method, path, err,
                (int)len, body);
    FUZZ_CHECK(YAJL_IS_OBJECT(v));
    check_labels(vk_json_get(v, "metadata", "labels", NULL));
    yajl_val taints = vk_json_get(v, "spec", "taints", NULL);
    for (size_t i = 0; YAJL_IS_ARRAY(taints) && i < taints->u.array.len; i++) {
        const char *value = vk_json_str(vk_json_member(taints->u.array.values[i], "value"), "");
        if (*value && !label_name(value))
            fprintf(stderr, "taint refused by the API server: value \"%s\"\n", value);
        FUZZ_CHECK(!*value || label_name(value));
    }
    if (strcmp(method, "POST") == 0 || vk_json_member(v, "status"))
        check_status(vk_json_member(v, "status"));
    yajl_tree_free(v);
}

int64_t kube_request(struct kube_client *c, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len, long timeout_ms,
                     kube_done_fn done, void *ud)
{
    (void)content_type;
    (void)timeout_ms;
    FUZZ_CHECK(path && path[0] == '/' && done);
    check_request(method, path, body, len);
    c->requests++;
    if (c->n == MAX_PENDING)
        return -1;
    pending *p = &c->q[c->n++];
    p->id = ++c->next_id;
    p->done = done;
    p->ud = ud;
    p->status = strcmp(method, "POST") == 0 ? 201 : 200;
    /* The Node as the API server returns it: registration reads its uid. */
    p->body = strdup("{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"vk\","
                     "\"uid\":\"6f1c0d2e\",\"labels\":{\"keep\":\"me\"}},\"spec\":{\"taints\":[]},"
                     "\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
                     "\"lastTransitionTime\":\"2026-11-28T09:00:00Z\"}]}}");
    FUZZ_CHECK(p->body != NULL);
    return p->id;
}

int kube_request_cancel(struct kube_client *c, int64_t id)
{
    for (int i = 0; i < c->n; i++) {
        if (c->q[i].id == id) {
            free(c->q[i].body);
            c->q[i] = c->q[--c->n];
            return 0;
        }
    }
    return -1;
}

/* Answer the oldest request; false when none waits. */
static bool answer_one(struct kube_client *c)
{
    if (!c->n)
        return false;
    pending p = c->q[0];
    memmove(&c->q[0], &c->q[1], (size_t)(c->n - 1) * sizeof c->q[0]);
    c->n--;
    struct kube_response resp = {p.status, p.body, strlen(p.body), NULL, false};
    p.done(&resp, p.ud);
    free(p.body);
    return true;
}

/* The Node watch and the Lease are not what this target is about. */
struct kube_reflector {
    int unused;
};

struct kube_reflector *kube_reflector_start(struct kube_client *c,
                                            const struct kube_reflector_config *cfg)
{
    (void)c;
    FUZZ_CHECK(cfg->on_replace && cfg->on_event);
    return calloc(1, sizeof(struct kube_reflector));
}

void kube_reflector_free(struct kube_reflector *r)
{
    free(r);
}

struct lease {
    int unused;
};

lease *lease_new(const lease_config *cfg)
{
    FUZZ_CHECK(cfg->node_name);
    return calloc(1, sizeof(lease));
}

void lease_start(lease *l, const char *node_uid)
{
    (void)l;
    FUZZ_CHECK(node_uid && *node_uid);
}

void lease_stop(lease *l)
{
    (void)l;
}

void lease_free(lease *l)
{
    free(l);
}

/* ---- the fake provider and pool ---------------------------------------------------- */

struct provider_client {
    int refs;
};

static struct {
    const uint8_t *node; /* the Node GetNode answers, packed */
    size_t len;
    bool have;
} provider;

provider_client *pc_ref(provider_client *pc)
{
    pc->refs++;
    return pc;
}

void pc_unref(provider_client *pc)
{
    if (pc) {
        FUZZ_CHECK(pc->refs > 0);
        pc->refs--;
    }
}

int pc_get_node(provider_client *pc, Vkc__Provider__V1__Node **out, vk_status *st)
{
    (void)pc;
    *out = NULL;
    if (!provider.have) {
        vk_status_set(st, VK_UNAVAILABLE, "no Node");
        return VK_UNAVAILABLE;
    }
    *out = vkc__provider__v1__node__unpack(NULL, provider.len, provider.node);
    if (!*out) {
        vk_status_set(st, VK_INTERNAL, "malformed Node");
        return VK_INTERNAL;
    }
    return VK_OK;
}

/* Never declared: the target's providers have no WatchNode. */
int pc_watch_node(provider_client *pc, pc_stream **out, vk_status *st)
{
    (void)pc;
    (void)st;
    *out = NULL;
    FUZZ_CHECK(!"WatchNode was not declared");
    return VK_UNIMPLEMENTED;
}

int pc_stream_next(pc_stream *s, ProtobufCMessage **msg)
{
    (void)s;
    *msg = NULL;
    return 0;
}

void pc_stream_cancel(pc_stream *s)
{
    (void)s;
}

int pc_stream_finish(pc_stream *s, vk_status *st)
{
    (void)s;
    (void)st;
    return VK_CANCELLED;
}

void pc_stream_free(pc_stream *s)
{
    (void)s;
}

void vk_status_clear(vk_status *st)
{
    if (!st)
        return;
    free(st->message);
    st->code = VK_OK;
    st->message = NULL;
}

void vk_status_set(vk_status *st, int code, const char *fmt, ...)
{
    if (!st)
        return;
    free(st->message);
    st->code = code;
    st->message = strdup(fmt);
}

const char *vk_status_code_name(int code)
{
    return code == VK_OK ? "OK" : "ERROR";
}

#define MAX_JOBS 8

struct vk_pool {
    struct {
        vk_work_fn work, done;
        void *arg;
    } jobs[MAX_JOBS];
    int n;
};

int vk_pool_submit(vk_pool *p, vk_work_fn work, vk_work_fn done, void *arg)
{
    if (p->n == MAX_JOBS)
        return -1;
    p->jobs[p->n].work = work;
    p->jobs[p->n].done = done;
    p->jobs[p->n].arg = arg;
    p->n++;
    return 0;
}

static bool run_one(vk_pool *p)
{
    if (!p->n)
        return false;
    vk_work_fn work = p->jobs[0].work, done = p->jobs[0].done;
    void *arg = p->jobs[0].arg;
    memmove(&p->jobs[0], &p->jobs[1], (size_t)(p->n - 1) * sizeof p->jobs[0]);
    p->n--;
    if (work)
        work(arg);
    if (done)
        done(arg);
    return true;
}

/* The mailbox only carries what the WatchNode reader posts. */
struct vk_mailbox {
    int unused;
};

vk_mailbox *vk_mailbox_new(struct ev_loop *loop, int max)
{
    (void)loop;
    (void)max;
    return calloc(1, sizeof(vk_mailbox));
}

void vk_mailbox_free(vk_mailbox *m)
{
    free(m);
}

int vk_post(vk_mailbox *m, vk_work_fn fn, void *arg)
{
    (void)m;
    (void)fn;
    (void)arg;
    FUZZ_CHECK(!"WatchNode was not declared");
    return -1;
}

/* ---- the target ---------------------------------------------------------------------- */

static void settle(struct kube_client *kube, vk_pool *pool)
{
    for (int i = 0; i < 64 && (answer_one(kube) || run_one(pool)); i++)
        ev_run(kube->loop, EVRUN_NOWAIT);
}

static void stopped(void *ud)
{
    *(bool *)ud = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t opts = fuzz_byte(&in);
    const uint8_t *name_bytes;
    size_t name_len;
    fuzz_part(&in, 0, &name_bytes, &name_len);
    char *provider_name = fuzz_cstr(name_bytes, name_len);

    struct kube_client kube = {.loop = ev_default_loop(0)};
    vk_pool pool = {.n = 0};
    provider_client pc = {.refs = 1};
    FUZZ_CHECK(kube.loop != NULL);
    node_config cfg = {
        .kube = &kube,
        .pool = &pool,
        .name = "vk",
        .labels = (opts & 1) ? "team=a,node.kubernetes.io/pool=x" : NULL,
        .disable_taint = opts & 2,
        .provider_name = (opts & 4) ? "cfg-provider" : NULL,
        .node_ip = "10.0.0.7",
    };
    char err[256];
    node *n = node_new(&cfg, err, sizeof err);
    FUZZ_CHECK(n != NULL);
    supervisor_listener l = node_listener(n);
    node_start(n);

    pc_info info = {.protocol_version = 1, .name = provider_name, .version = "1", .caps = 0};
    for (int round = 0; round < 4 && in.size >= 2; round++) {
        size_t len = (size_t)in.data[0] << 8 | in.data[1];
        in.data += 2;
        in.size -= 2;
        if (len > in.size)
            len = in.size;
        provider.node = in.data;
        provider.len = len;
        provider.have = true;
        in.data += len;
        in.size -= len;
        l.up(l.ud, &pc, &info);
        settle(&kube, &pool);
        if (opts & 8) {
            l.down(l.ud);
            settle(&kube, &pool);
        }
    }
    bool done = false;
    node_stop(n, stopped, &done);
    settle(&kube, &pool);
    for (int i = 0; i < 16 && !done; i++)
        ev_run(kube.loop, EVRUN_NOWAIT);
    FUZZ_CHECK(done);
    node_free(n);
    while (kube.n)
        kube_request_cancel(&kube, kube.q[0].id);
    FUZZ_CHECK(pc.refs == 1);
    FUZZ_CHECK(pool.n == 0);
    /* The loop lives on, with nothing left running: ev_run counts what is. */
    FUZZ_CHECK(ev_run(kube.loop, EVRUN_NOWAIT) == 0);
    provider.have = false;
    free(provider_name);
    return 0;
}
