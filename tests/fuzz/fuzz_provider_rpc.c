/* fuzz_provider_rpc.c -- what the core does with the provider's protobuf
 * messages: the replies core/provider_client.c interprets (Handshake,
 * GetPod, GetPods, GetNode, stream messages, ...) and the requests
 * core/callback_server.c answers (GetSecret, GetConfigMap,
 * RequestServiceAccountToken, EmitEvent).
 *
 * Both reach gRPC only through sdk-c/rpc.h, so this target links them with
 * a fake of it (below): a unary call or a stream receives the input's
 * bytes, and a served call receives them as its request. The object cache,
 * the events sender and the token source are fakes too; the reference
 * rules (core/refs.c) are the real ones, with one pod in namespace "team"
 * referencing Secret "db", ConfigMap "cfg" and service account "builder".
 *
 * Input: one byte picking the call, one byte picking the gRPC status of a
 * client call (mostly OK), then the message (for streams, messages each
 * prefixed with a 2-byte big-endian length).
 *
 * Checked: requests the core sends are valid messages; handshake results
 * hold strings and only known capabilities; bytes fields come back whole;
 * the Core service answers OK only for objects the node's pods reference,
 * asks for a token only for a pod of the node under its service account,
 * and passes only well-formed events on.
 */
#include <string.h>

#include "callback_objects.h"
#include "callback_server.h"
#include "fuzz.h"
#include "provider_client.h"
#include "refs.h"
#include "tokens.h"

/* ---- a scripted rpc.h ------------------------------------------------------ */

static const uint8_t *reply_data;  /* the next message a call receives */
static size_t reply_len;
static int reply_code;             /* the status of the next unary call */

struct vk_channel {
    int unused;
};

struct vk_call {
    const ProtobufCMessageDescriptor *sent_type;
    bool over;
};

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
    vk_buf msg = VK_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    FUZZ_CHECK(vk_buf_puts(&msg, line) == 0);
    free(st->message);
    st->code = code;
    st->message = vk_buf_steal(&msg, NULL);
}

const char *vk_status_code_name(int code)
{
    return code >= 0 && code <= VK_UNAUTHENTICATED ? "CODE" : "UNKNOWN";
}

vk_channel *vk_channel_open(const char *target, size_t max_message)
{
    (void)target;
    (void)max_message;
    return calloc(1, sizeof(vk_channel));
}

void vk_channel_close(vk_channel *ch)
{
    free(ch);
}

bool vk_channel_wait_ready(vk_channel *ch, int timeout_ms)
{
    (void)ch;
    (void)timeout_ms;
    return true;
}

/* What the core sends must be a valid message of its kind. */
static void check_sent(const ProtobufCMessage *msg)
{
    FUZZ_CHECK(protobuf_c_message_check(msg));
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    FUZZ_CHECK(buf && protobuf_c_message_pack(msg, buf) == len);
    free(buf);
}

int vk_unary(vk_channel *ch, const char *method, const ProtobufCMessage *req,
             const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
             ProtobufCMessage **resp, vk_status *st)
{
    (void)ch;
    (void)timeout_ms;
    FUZZ_CHECK(method && strncmp(method, "/vkc.provider.v1.Provider/", 26) == 0);
    check_sent(req);
    *resp = NULL;
    if (reply_code != VK_OK) {
        /* The provider's own words, whatever bytes they are. */
        char *msg = fuzz_cstr(reply_data, reply_len);
        vk_status_set(st, reply_code, "%s", msg);
        free(msg);
        return reply_code;
    }
    *resp = protobuf_c_message_unpack(resp_desc, NULL, reply_len, reply_data);
    if (!*resp) {
        vk_status_set(st, VK_INTERNAL, "malformed %s message from server", resp_desc->name);
        return VK_INTERNAL;
    }
    return VK_OK;
}

vk_call *vk_call_start(vk_channel *ch, const char *method, int timeout_ms)
{
    (void)ch;
    (void)timeout_ms;
    FUZZ_CHECK(method && strncmp(method, "/vkc.provider.v1.Provider/", 26) == 0);
    return calloc(1, sizeof(vk_call));
}

int vk_call_send(vk_call *c, const ProtobufCMessage *msg)
{
    check_sent(msg);
    c->sent_type = msg->descriptor;
    return c->over ? -1 : 0;
}

int vk_call_close_send(vk_call *c)
{
    return c->over ? -1 : 0;
}

/* Messages of a stream: each prefixed with its length, 2 bytes. */
int vk_call_recv(vk_call *c, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    *out = NULL;
    if (c->over || reply_len < 2) {
        c->over = true;
        return 0;
    }
    size_t len = (size_t)reply_data[0] << 8 | reply_data[1];
    if (len > reply_len - 2)
        len = reply_len - 2;
    *out = protobuf_c_message_unpack(desc, NULL, len, reply_data + 2);
    reply_data += 2 + len;
    reply_len -= 2 + len;
    if (!*out) {
        c->over = true;
        return -1;
    }
    return 1;
}

void vk_call_cancel(vk_call *c)
{
    c->over = true;
}

int vk_call_finish(vk_call *c, vk_status *st)
{
    c->over = true;
    vk_status_set(st, VK_CANCELLED, "stream over");
    return VK_CANCELLED;
}

void vk_call_free(vk_call *c)
{
    free(c);
}

/* The served side: one server, its handlers kept to be called directly. */
#define MAX_HANDLERS 8

struct vk_server {
    struct {
        const char *method;
        vk_handler fn;
        void *ud;
    } handlers[MAX_HANDLERS];
    int n;
};

struct vk_scall {
    bool received, over;
    int code;
};

/* The one server callback_server_start creates. */
static vk_server *served;

vk_server *vk_server_new(const char *addr, size_t max_message, int max_workers)
{
    (void)addr;
    (void)max_message;
    (void)max_workers;
    FUZZ_CHECK(!served);
    served = calloc(1, sizeof(vk_server));
    return served;
}

void vk_server_handle(vk_server *s, const char *method, vk_handler fn, void *ud)
{
    FUZZ_CHECK(s->n < MAX_HANDLERS);
    s->handlers[s->n].method = method;
    s->handlers[s->n].fn = fn;
    s->handlers[s->n].ud = ud;
    s->n++;
}

int vk_server_start(vk_server *s)
{
    (void)s;
    return 0;
}

void vk_server_stop(vk_server *s, int grace_ms)
{
    (void)s;
    (void)grace_ms;
}

void vk_server_free(vk_server *s)
{
    if (s == served)
        served = NULL;
    free(s);
}

long vk_scall_deadline_left_ms(const vk_scall *c)
{
    (void)c;
    return 5000;
}

int vk_scall_recv(vk_scall *c, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
    FUZZ_CHECK(!c->received);
    c->received = true;
    *out = protobuf_c_message_unpack(desc, NULL, reply_len, reply_data);
    return *out ? 1 : -1;
}

int vk_scall_reply(vk_scall *c, const ProtobufCMessage *msg)
{
    FUZZ_CHECK(!c->over);
    check_sent(msg);
    c->over = true;
    c->code = VK_OK;
    return 0;
}

int vk_scall_finish(vk_scall *c, int code, const char *message)
{
    FUZZ_CHECK(!c->over);
    FUZZ_CHECK(code != VK_OK && message && *message);
    c->over = true;
    c->code = code;
    return 0;
}

/* ---- the object cache and the events sender -------------------------------- */

/* Whatever is allowed is there: the only gate is the reference rules. */
enum objcache_state objcache_get_json(objcache *oc, enum ref_kind kind, const char *ns,
                                      const char *name, vk_buf *out)
{
    (void)oc;
    (void)kind;
    if (strcmp(name, "gone") == 0)
        return OBJCACHE_ABSENT;
    return vk_buf_printf(out, "{\"metadata\":{\"namespace\":\"%s\"}}", ns) < 0
               ? OBJCACHE_UNKNOWN
               : OBJCACHE_FOUND;
}

static int events_emitted;

int events_emit(events *e, const char *ns, const char *pod, const char *uid,
                const char *type, const char *reason, const char *message)
{
    (void)e;
    FUZZ_CHECK(ns && *ns && pod && *pod && uid && reason && *reason && message);
    FUZZ_CHECK(strcmp(type, "Normal") == 0 || strcmp(type, "Warning") == 0);
    events_emitted++;
    return 0;
}

/* The token source: asked only for a pod of the node under its service
 * account, it always has one. */
struct kube_client {
    int unused;
};

struct ev_loop *kube_client_loop(const struct kube_client *c)
{
    (void)c;
    return NULL;
}

struct tokens {
    int unused;
};

static int tokens_given;

tokens *tokens_new(struct ev_loop *loop, struct kube_client *kube, refs *r)
{
    (void)loop;
    (void)kube;
    FUZZ_CHECK(r != NULL);
    return calloc(1, sizeof(tokens));
}

void tokens_close(tokens *t)
{
    (void)t;
}

void tokens_free(tokens *t)
{
    free(t);
}

int tokens_get(tokens *t, const token_request *req, long wait_ms, char **token,
               int64_t *expires, vk_buf *msg)
{
    (void)t;
    (void)msg;
    FUZZ_CHECK(wait_ms >= 0);
    FUZZ_CHECK(strcmp(req->ns, "team") == 0 && strcmp(req->pod, "web-1") == 0 &&
               strcmp(req->uid, "u1") == 0 && strcmp(req->service_account, "builder") == 0);
    for (size_t i = 0; i < req->n_audiences; i++)
        FUZZ_CHECK(req->audiences[i] != NULL);
    *token = strdup("eyJhbGciOiJSUzI1NiJ9.token");
    *expires = 1700000000;
    tokens_given++;
    return *token ? VK_OK : VK_RESOURCE_EXHAUSTED;
}

void tokens_wipe(char *token)
{
    free(token);
}

/* ---- the target ----------------------------------------------------------------- */

static provider_client *pc;
static callback_server *cs;
static refs *pod_refs;

static void stop_all(void)
{
    callback_server_stop(cs);
    refs_free(pod_refs);
    pc_unref(pc);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    pc = pc_new("unix:/nonexistent", 1000, NULL);
    pod_refs = refs_new();
    static const ref list[] = {
        {REF_SECRET, "db"}, {REF_SECRET, "gone"}, {REF_CONFIGMAP, "cfg"},
        {REF_SERVICE_ACCOUNT, "builder"},
    };
    FUZZ_CHECK(pc && pod_refs);
    FUZZ_CHECK(refs_set_pod(pod_refs, "u1", "team", "web-1", list,
                            sizeof list / sizeof list[0]) == 0);
    cs = callback_server_start("fuzz", "vk", pod_refs, NULL);
    FUZZ_CHECK(cs && served);
    /* Non-NULL so that reads go to the cache and events are sent; the
     * fakes above never look at them. */
    callback_server_serve_objects(cs, (objcache *)pod_refs, (events *)pod_refs);
    static struct kube_client kube;
    FUZZ_CHECK(callback_server_serve_tokens(cs, &kube) == 0);
    atexit(stop_all);
    return 0;
}

/* Run the Core service's handler for method with the input as request;
 * the status it answered. */
static int serve(const char *method)
{
    for (int i = 0; i < served->n; i++) {
        if (strcmp(served->handlers[i].method, method) == 0) {
            vk_scall call = {false, false, -1};
            served->handlers[i].fn(&call, served->handlers[i].ud);
            FUZZ_CHECK(call.received && call.over);
            return call.code;
        }
    }
    FUZZ_CHECK(!"handler registered");
    return -1;
}

/* The request as the handler saw it, to judge its answer. */
static ProtobufCMessage *request(const ProtobufCMessageDescriptor *d)
{
    return protobuf_c_message_unpack(d, NULL, reply_len, reply_data);
}

static void check_get_object(const char *method, enum ref_kind kind)
{
    int code = serve(method);
    Vkc__Provider__V1__GetObjectRequest *req =
        (Vkc__Provider__V1__GetObjectRequest *)request(&vkc__provider__v1__get_object_request__descriptor);
    if (!req) {
        FUZZ_CHECK(code == VK_INVALID_ARGUMENT);
        return;
    }
    bool allowed = strcmp(req->namespace_, "team") == 0 &&
                   strcmp(req->name, kind == REF_SECRET ? "db" : "cfg") == 0;
    bool gone = kind == REF_SECRET && strcmp(req->namespace_, "team") == 0 &&
                strcmp(req->name, "gone") == 0;
    if (allowed)
        FUZZ_CHECK(code == VK_OK);
    else if (gone)
        FUZZ_CHECK(code == VK_NOT_FOUND);
    else
        FUZZ_CHECK(code == VK_PERMISSION_DENIED || code == VK_INVALID_ARGUMENT);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void check_token(void)
{
    int before = tokens_given;
    int code = serve("/vkc.provider.v1.Core/RequestServiceAccountToken");
    FUZZ_CHECK(code != VK_OK || tokens_given == before + 1);
    Vkc__Provider__V1__ServiceAccountTokenRequest *req =
        (Vkc__Provider__V1__ServiceAccountTokenRequest *)request(
            &vkc__provider__v1__service_account_token_request__descriptor);
    if (!req) {
        FUZZ_CHECK(code == VK_INVALID_ARGUMENT);
        return;
    }
    const Vkc__Provider__V1__PodRef *pod = req->pod;
    bool ours = pod && strcmp(pod->uid, "u1") == 0 && strcmp(pod->namespace_, "team") == 0 &&
                strcmp(pod->name, "web-1") == 0 &&
                strcmp(req->service_account_name, "builder") == 0;
    FUZZ_CHECK(ours ? code == VK_OK : code == VK_PERMISSION_DENIED || code == VK_INVALID_ARGUMENT);
    protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void check_event(void)
{
    int before = events_emitted;
    int code = serve("/vkc.provider.v1.Core/EmitEvent");
    FUZZ_CHECK(code == VK_OK || code == VK_INVALID_ARGUMENT);
    FUZZ_CHECK(events_emitted == before + (code == VK_OK));
}

static void check_handshake(void)
{
    pc_info info;
    vk_status st = {0, NULL};
    int code = pc_handshake(pc, "vk", "unix:/core.sock", 1000, &info, &st);
    if (code != VK_OK) {
        FUZZ_CHECK(st.code == code && st.message);
        vk_status_clear(&st);
        return;
    }
    FUZZ_CHECK(info.name && info.version);
    unsigned all = PC_CAP_WATCH_POD_STATUS | PC_CAP_WATCH_NODE | PC_CAP_GET_CONTAINER_LOGS |
                   PC_CAP_EXEC | PC_CAP_ATTACH | PC_CAP_PORT_FORWARD |
                   PC_CAP_GET_STATS_SUMMARY | PC_CAP_GET_METRICS_RESOURCE;
    FUZZ_CHECK((info.caps & ~all) == 0);
    for (unsigned cap = 1; cap & all; cap <<= 1)
        FUZZ_CHECK((pc_require(pc, (enum pc_cap)cap, NULL) == VK_OK) == !!(info.caps & cap));
    vk_buf names = VK_BUF_INIT;
    FUZZ_CHECK(pc_caps_format(info.caps, &names) == 0);
    vk_buf_free(&names);
    pc_info_clear(&info);
}

/* A reply carrying a bytes field the core hands on as it is. */
static void check_bytes_reply(int (*call)(provider_client *, vk_buf *, vk_status *),
                              const ProtobufCMessageDescriptor *d, unsigned field)
{
    vk_buf out = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code = call(pc, &out, &st);
    if (code == VK_OK) {
        ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, reply_len, reply_data);
        FUZZ_CHECK(m != NULL);
        const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(d, field);
        FUZZ_CHECK(f != NULL);
        if (f->type == PROTOBUF_C_TYPE_BYTES) {
            const ProtobufCBinaryData *b =
                (const ProtobufCBinaryData *)((const char *)m + f->offset);
            FUZZ_CHECK(out.len == b->len && (!b->len || memcmp(out.data, b->data, b->len) == 0));
        } else {
            const char *text = *(char *const *)((const char *)m + f->offset);
            FUZZ_CHECK(out.len == strlen(text));
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    vk_status_clear(&st);
    vk_buf_free(&out);
}

static int get_pod(provider_client *p, vk_buf *out, vk_status *st)
{
    return pc_get_pod(p, "team", "web-1", NULL, out, st);
}

static int get_pod_status(provider_client *p, vk_buf *out, vk_status *st)
{
    return pc_get_pod_status(p, "team", "web-1", "u1", out, st);
}

/* Give the client every capability, as a handshake would. */
static void declare_everything(void)
{
    static char *names[] = {"WatchPodStatus", "WatchNode", "GetContainerLogs",
                            "ExecInContainer", "AttachToContainer", "PortForward",
                            "GetStatsSummary", "GetMetricsResource"};
    Vkc__Provider__V1__HandshakeResponse resp = VKC__PROVIDER__V1__HANDSHAKE_RESPONSE__INIT;
    resp.protocol_version = 1;
    resp.provider_name = "fuzz";
    resp.provider_version = "1";
    resp.capabilities = names;
    resp.n_capabilities = sizeof names / sizeof names[0];
    uint8_t packed[256];
    FUZZ_CHECK(protobuf_c_message_get_packed_size(&resp.base) <= sizeof packed);
    size_t len = protobuf_c_message_pack(&resp.base, packed);

    const uint8_t *saved = reply_data;
    size_t saved_len = reply_len;
    int saved_code = reply_code;
    reply_data = packed;
    reply_len = len;
    reply_code = VK_OK;
    pc_info info;
    FUZZ_CHECK(pc_handshake(pc, "vk", "unix:/core.sock", 1000, &info, NULL) == VK_OK);
    FUZZ_CHECK(info.caps == (PC_CAP_WATCH_POD_STATUS | PC_CAP_WATCH_NODE |
                             PC_CAP_GET_CONTAINER_LOGS | PC_CAP_EXEC | PC_CAP_ATTACH |
                             PC_CAP_PORT_FORWARD | PC_CAP_GET_STATS_SUMMARY |
                             PC_CAP_GET_METRICS_RESOURCE));
    pc_info_clear(&info);
    reply_data = saved;
    reply_len = saved_len;
    reply_code = saved_code;
}

/* Read a whole stream: every message decoded is of the type the call
 * yields, and the stream ends. */
static void check_stream(int which)
{
    pc_stream *s = NULL;
    vk_status st = {0, NULL};
    int code;
    const ProtobufCMessageDescriptor *yields;
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    static char *cmd[] = {"sh", "-c", "echo hi"};
    start.pod = NULL;
    start.container = "main";
    start.command = cmd;
    start.n_command = 3;
    start.stdin = 1;
    start.tty = 1;
    switch (which) {
    case 0:
        code = pc_watch_pod_status(pc, &s, &st);
        yields = &vkc__provider__v1__pod_status_event__descriptor;
        break;
    case 1:
        code = pc_watch_node(pc, &s, &st);
        yields = &vkc__provider__v1__node__descriptor;
        break;
    default:
        code = pc_exec(pc, &start, &s, &st);
        yields = &vkc__provider__v1__exec_output__descriptor;
        break;
    }
    FUZZ_CHECK(code == VK_OK && s);
    ProtobufCMessage *m;
    int rc;
    int n = 0;
    while ((rc = pc_stream_next(s, &m)) == 1) {
        FUZZ_CHECK(m && m->descriptor == yields && protobuf_c_message_check(m));
        protobuf_c_message_free_unpacked(m, NULL);
        if (which == 2 && n++ == 0) {
            FUZZ_CHECK(pc_stream_stdin(s, "ls\n", 3) == 0);
            FUZZ_CHECK(pc_stream_resize(s, 80, 24) == 0);
            FUZZ_CHECK(pc_stream_close_stdin(s) == 0);
        }
    }
    FUZZ_CHECK(rc == 0 || rc == -1);
    pc_stream_finish(s, &st);
    vk_status_clear(&st);
    pc_stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    uint8_t which = fuzz_byte(&in);
    uint8_t status = fuzz_byte(&in);
    reply_code = status < 240 ? VK_OK : status % (VK_UNAUTHENTICATED + 1);
    reply_data = in.data;
    reply_len = in.size;

    vk_status st = {0, NULL};
    switch (which % 16) {
    case 0:
        check_handshake();
        break;
    case 1:
        check_bytes_reply(get_pod, &vkc__provider__v1__get_pod_response__descriptor, 1);
        break;
    case 2:
        check_bytes_reply(get_pod_status, &vkc__provider__v1__get_pod_status_response__descriptor, 1);
        break;
    case 3:
        declare_everything();
        check_bytes_reply(pc_get_stats_summary,
                          &vkc__provider__v1__get_stats_summary_response__descriptor, 1);
        break;
    case 4:
        declare_everything();
        check_bytes_reply(pc_get_metrics_resource,
                          &vkc__provider__v1__get_metrics_resource_response__descriptor, 1);
        break;
    case 5: {
        Vkc__Provider__V1__GetPodsResponse *pods = NULL;
        if (pc_get_pods(pc, &pods, &st) == VK_OK) {
            FUZZ_CHECK(pods && protobuf_c_message_check(&pods->base));
            protobuf_c_message_free_unpacked(&pods->base, NULL);
        } else {
            FUZZ_CHECK(pods == NULL);
        }
        break;
    }
    case 6: {
        Vkc__Provider__V1__Node *node = NULL;
        if (pc_get_node(pc, &node, &st) == VK_OK) {
            FUZZ_CHECK(node && protobuf_c_message_check(&node->base));
            protobuf_c_message_free_unpacked(&node->base, NULL);
        } else {
            FUZZ_CHECK(node == NULL);
        }
        break;
    }
    case 7:
        pc_ping(pc, 1000, &st);
        break;
    case 8:
        pc_create_pod(pc, (const char *)in.data, in.size, &st);
        break;
    case 9:
    case 10:
    case 11:
        declare_everything();
        check_stream(which % 16 - 9);
        break;
    case 12:
        check_get_object("/vkc.provider.v1.Core/GetSecret", REF_SECRET);
        break;
    case 13:
        check_get_object("/vkc.provider.v1.Core/GetConfigMap", REF_CONFIGMAP);
        break;
    case 14:
        check_token();
        break;
    default:
        check_event();
        break;
    }
    vk_status_clear(&st);
    return 0;
}
