/* provider_client.c -- typed wrappers over rpc.h for the Provider service. */
#include "provider_client.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "version.h"

#define SERVICE "/vkc.provider.v1.Provider/"

struct provider_client {
    vk_channel *ch;
    atomic_int refs;
    atomic_uint caps;
    int unary_timeout_ms;
    metric *errors;
};

struct pc_stream {
    provider_client *pc;
    vk_call *call;
    const char *method; /* short name, for metrics and messages */
    const ProtobufCMessageDescriptor *yields;
    atomic_bool cancelled;
};

static const struct {
    unsigned cap;
    const char *name;
} cap_names[] = {
    {PC_CAP_WATCH_POD_STATUS, "WatchPodStatus"},
    {PC_CAP_WATCH_NODE, "WatchNode"},
    {PC_CAP_GET_CONTAINER_LOGS, "GetContainerLogs"},
    {PC_CAP_EXEC, "ExecInContainer"},
    {PC_CAP_ATTACH, "AttachToContainer"},
    {PC_CAP_PORT_FORWARD, "PortForward"},
    {PC_CAP_GET_STATS_SUMMARY, "GetStatsSummary"},
    {PC_CAP_GET_METRICS_RESOURCE, "GetMetricsResource"},
};
#define N_CAPS (sizeof cap_names / sizeof cap_names[0])

/* The capability named as in HandshakeResponse.capabilities, 0 if unknown. */
static unsigned cap_from_name(const char *name)
{
    for (size_t i = 0; i < N_CAPS; i++)
        if (strcmp(cap_names[i].name, name) == 0)
            return cap_names[i].cap;
    return 0;
}

int pc_caps_format(unsigned caps, vk_buf *b)
{
    int rc = vk_buf_puts(b, "");
    const char *sep = "";
    for (size_t i = 0; i < N_CAPS; i++) {
        if (caps & cap_names[i].cap) {
            rc |= vk_buf_printf(b, "%s%s", sep, cap_names[i].name);
            sep = ",";
        }
    }
    return rc;
}

void pc_info_clear(pc_info *info)
{
    free(info->name);
    free(info->version);
    memset(info, 0, sizeof *info);
}

provider_client *pc_new(const char *target, int unary_timeout_ms, metric *errors)
{
    provider_client *pc = calloc(1, sizeof *pc);
    if (!pc)
        return NULL;
    pc->ch = vk_channel_open(target, 0);
    if (!pc->ch) {
        free(pc);
        return NULL;
    }
    atomic_init(&pc->refs, 1);
    atomic_init(&pc->caps, 0);
    pc->unary_timeout_ms = unary_timeout_ms;
    pc->errors = errors;
    return pc;
}

provider_client *pc_ref(provider_client *pc)
{
    atomic_fetch_add(&pc->refs, 1);
    return pc;
}

void pc_unref(provider_client *pc)
{
    if (!pc || atomic_fetch_sub(&pc->refs, 1) != 1)
        return;
    vk_channel_close(pc->ch);
    free(pc);
}

bool pc_wait_ready(provider_client *pc, int timeout_ms)
{
    return vk_channel_wait_ready(pc->ch, timeout_ms);
}

/* Debug only: every failure is also returned to the caller, which logs it
 * once with the status message (pods.c per failing streak, the supervisor
 * for the handshake, statusfeed for the status stream), and that message
 * already says what was wrong: the limit for a message over it ("exceeds
 * the N byte limit", or gRPC's "larger than max (N vs. M)"), the type for a
 * reply that does not decode. A second line here would log it twice. */
static void count_error(provider_client *pc, const char *method, int code)
{
    metric_add(pc->errors, (const char *[]){method}, 1);
    vk_debug("provider call failed", "method=%s code=%s", method, vk_status_code_name(code));
}

/* One unary call; method is the short name ("Ping"). */
static int unary(provider_client *pc, const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *resp_desc, int timeout_ms,
                 ProtobufCMessage **resp, vk_status *st)
{
    char path[64];
    snprintf(path, sizeof path, SERVICE "%s", method);
    vk_status local = {0, NULL};
    vk_status *out = st ? st : &local;
    int code = vk_unary(pc->ch, path, req, resp_desc,
                        timeout_ms > 0 ? timeout_ms : pc->unary_timeout_ms, resp, out);
    if (code != VK_OK)
        count_error(pc, method, code);
    vk_status_clear(&local);
    return code;
}

int pc_require(provider_client *pc, enum pc_cap cap, vk_status *st)
{
    if (atomic_load(&pc->caps) & cap)
        return VK_OK;
    const char *name = "?";
    for (size_t i = 0; i < N_CAPS; i++)
        if (cap_names[i].cap == (unsigned)cap)
            name = cap_names[i].name;
    if (st)
        vk_status_set(st, VK_UNIMPLEMENTED, "the provider does not implement %s", name);
    return VK_UNIMPLEMENTED;
}

int pc_handshake(provider_client *pc, const char *node_name, const char *core_target,
                 int timeout_ms, pc_info *info, vk_status *st)
{
    Vkc__Provider__V1__HandshakeRequest req = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = VKC_PROTOCOL_VERSION;
    req.core_version = (char *)VKC_CORE_VERSION;
    req.node_name = (char *)node_name;
    req.core_target = (char *)core_target;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, "Handshake", &req.base,
                     &vkc__provider__v1__handshake_response__descriptor, timeout_ms, &m, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__HandshakeResponse *resp = (Vkc__Provider__V1__HandshakeResponse *)m;
    memset(info, 0, sizeof *info);
    info->protocol_version = resp->protocol_version;
    info->name = strdup(resp->provider_name);
    info->version = strdup(resp->provider_version);
    for (size_t i = 0; i < resp->n_capabilities; i++)
        info->caps |= cap_from_name(resp->capabilities[i]);
    protobuf_c_message_free_unpacked(m, NULL);
    if (!info->name || !info->version) {
        pc_info_clear(info);
        if (st)
            vk_status_set(st, VK_RESOURCE_EXHAUSTED, "out of memory");
        return VK_RESOURCE_EXHAUSTED;
    }
    atomic_store(&pc->caps, info->caps);
    return VK_OK;
}

int pc_ping(provider_client *pc, int timeout_ms, vk_status *st)
{
    Vkc__Provider__V1__PingRequest req = VKC__PROVIDER__V1__PING_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, "Ping", &req.base, &vkc__provider__v1__ping_response__descriptor,
                     timeout_ms, &m, st);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

/* CreatePod, UpdatePod and DeletePod differ only in name and types: their
 * requests are laid out alike (base, then bytes pod_json), so one struct
 * serves with the right descriptor. */
_Static_assert(offsetof(Vkc__Provider__V1__UpdatePodRequest, pod_json) ==
               offsetof(Vkc__Provider__V1__CreatePodRequest, pod_json), "layout");
_Static_assert(offsetof(Vkc__Provider__V1__DeletePodRequest, pod_json) ==
               offsetof(Vkc__Provider__V1__CreatePodRequest, pod_json), "layout");

static int pod_call(provider_client *pc, const char *method, const char *json, size_t len,
                    const ProtobufCMessageDescriptor *req_desc,
                    const ProtobufCMessageDescriptor *resp_desc, vk_status *st)
{
    Vkc__Provider__V1__CreatePodRequest req = VKC__PROVIDER__V1__CREATE_POD_REQUEST__INIT;
    req.base.descriptor = req_desc;
    req.pod_json.data = (uint8_t *)json;
    req.pod_json.len = len;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, method, &req.base, resp_desc, 0, &m, st);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

int pc_create_pod(provider_client *pc, const char *pod_json, size_t len, vk_status *st)
{
    return pod_call(pc, "CreatePod", pod_json, len,
                    &vkc__provider__v1__create_pod_request__descriptor,
                    &vkc__provider__v1__create_pod_response__descriptor, st);
}

int pc_update_pod(provider_client *pc, const char *pod_json, size_t len, vk_status *st)
{
    return pod_call(pc, "UpdatePod", pod_json, len,
                    &vkc__provider__v1__update_pod_request__descriptor,
                    &vkc__provider__v1__update_pod_response__descriptor, st);
}

int pc_delete_pod(provider_client *pc, const char *pod_json, size_t len, vk_status *st)
{
    return pod_call(pc, "DeletePod", pod_json, len,
                    &vkc__provider__v1__delete_pod_request__descriptor,
                    &vkc__provider__v1__delete_pod_response__descriptor, st);
}

static int append_bytes(vk_buf *out, const ProtobufCBinaryData *d, vk_status *st)
{
    if (vk_buf_append(out, d->data, d->len) == 0)
        return VK_OK;
    if (st)
        vk_status_set(st, VK_RESOURCE_EXHAUSTED, "out of memory");
    return VK_RESOURCE_EXHAUSTED;
}

int pc_get_pod(provider_client *pc, const char *ns, const char *name, const char *uid,
               vk_buf *out, vk_status *st)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)ns;
    ref.name = (char *)name;
    ref.uid = (char *)(uid ? uid : "");
    Vkc__Provider__V1__GetPodRequest req = VKC__PROVIDER__V1__GET_POD_REQUEST__INIT;
    req.pod = &ref;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, "GetPod", &req.base, &vkc__provider__v1__get_pod_response__descriptor,
                     0, &m, st);
    if (code == VK_OK)
        code = append_bytes(out, &((Vkc__Provider__V1__GetPodResponse *)m)->pod_json, st);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

int pc_get_pod_status(provider_client *pc, const char *ns, const char *name,
                      const char *uid, vk_buf *out, vk_status *st)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)ns;
    ref.name = (char *)name;
    ref.uid = (char *)(uid ? uid : "");
    Vkc__Provider__V1__GetPodStatusRequest req = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    req.pod = &ref;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, "GetPodStatus", &req.base,
                     &vkc__provider__v1__get_pod_status_response__descriptor, 0, &m, st);
    if (code == VK_OK)
        code = append_bytes(out, &((Vkc__Provider__V1__GetPodStatusResponse *)m)->status_json, st);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

int pc_get_pods(provider_client *pc, Vkc__Provider__V1__GetPodsResponse **out, vk_status *st)
{
    Vkc__Provider__V1__GetPodsRequest req = VKC__PROVIDER__V1__GET_PODS_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, "GetPods", &req.base, &vkc__provider__v1__get_pods_response__descriptor,
                     0, &m, st);
    *out = (Vkc__Provider__V1__GetPodsResponse *)m;
    return code;
}

int pc_get_node(provider_client *pc, Vkc__Provider__V1__Node **out, vk_status *st)
{
    Vkc__Provider__V1__GetNodeRequest req = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    int code = unary(pc, "GetNode", &req.base, &vkc__provider__v1__node__descriptor, 0, &m, st);
    *out = (Vkc__Provider__V1__Node *)m;
    return code;
}

int pc_get_stats_summary(provider_client *pc, vk_buf *out, vk_status *st)
{
    int code = pc_require(pc, PC_CAP_GET_STATS_SUMMARY, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__GetStatsSummaryRequest req = VKC__PROVIDER__V1__GET_STATS_SUMMARY_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    code = unary(pc, "GetStatsSummary", &req.base,
                 &vkc__provider__v1__get_stats_summary_response__descriptor, 0, &m, st);
    if (code == VK_OK)
        code = append_bytes(out, &((Vkc__Provider__V1__GetStatsSummaryResponse *)m)->summary_json, st);
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

int pc_get_metrics_resource(provider_client *pc, vk_buf *out, vk_status *st)
{
    int code = pc_require(pc, PC_CAP_GET_METRICS_RESOURCE, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__GetMetricsResourceRequest req = VKC__PROVIDER__V1__GET_METRICS_RESOURCE_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    code = unary(pc, "GetMetricsResource", &req.base,
                 &vkc__provider__v1__get_metrics_resource_response__descriptor, 0, &m, st);
    if (code == VK_OK) {
        const char *text = ((Vkc__Provider__V1__GetMetricsResourceResponse *)m)->text;
        ProtobufCBinaryData d = {strlen(text), (uint8_t *)text};
        code = append_bytes(out, &d, st);
    }
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

/* ---- streams ----------------------------------------------------------- */

/* Start method and send its first message; half-close for server streams. */
static int stream_start(provider_client *pc, const char *method, const ProtobufCMessage *first,
                        bool half_close, const ProtobufCMessageDescriptor *yields,
                        pc_stream **out, vk_status *st)
{
    char path[64];
    snprintf(path, sizeof path, SERVICE "%s", method);
    *out = NULL;
    pc_stream *s = calloc(1, sizeof *s);
    if (!s) {
        if (st)
            vk_status_set(st, VK_RESOURCE_EXHAUSTED, "out of memory");
        return VK_RESOURCE_EXHAUSTED;
    }
    s->method = method;
    s->yields = yields;
    s->call = vk_call_start(pc->ch, path, 0);
    if (!s->call) {
        free(s);
        if (st)
            vk_status_set(st, VK_UNAVAILABLE, "cannot start %s on the provider", method);
        count_error(pc, method, VK_UNAVAILABLE);
        return VK_UNAVAILABLE;
    }
    s->pc = pc_ref(pc);
    if (vk_call_send(s->call, first) < 0 || (half_close && vk_call_close_send(s->call) < 0)) {
        vk_status local = {0, NULL};
        int code = vk_call_finish(s->call, st ? st : &local);
        vk_status_clear(&local);
        if (code == VK_OK) /* the provider ended the call before reading */
            code = VK_INTERNAL;
        count_error(pc, method, code);
        pc_stream_free(s);
        return code;
    }
    *out = s;
    return VK_OK;
}

int pc_watch_pod_status(provider_client *pc, pc_stream **out, vk_status *st)
{
    *out = NULL;
    int code = pc_require(pc, PC_CAP_WATCH_POD_STATUS, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__WatchPodStatusRequest req = VKC__PROVIDER__V1__WATCH_POD_STATUS_REQUEST__INIT;
    return stream_start(pc, "WatchPodStatus", &req.base, true,
                        &vkc__provider__v1__pod_status_event__descriptor, out, st);
}

int pc_watch_node(provider_client *pc, pc_stream **out, vk_status *st)
{
    *out = NULL;
    int code = pc_require(pc, PC_CAP_WATCH_NODE, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__WatchNodeRequest req = VKC__PROVIDER__V1__WATCH_NODE_REQUEST__INIT;
    return stream_start(pc, "WatchNode", &req.base, true, &vkc__provider__v1__node__descriptor,
                        out, st);
}

int pc_get_container_logs(provider_client *pc,
                          const Vkc__Provider__V1__GetContainerLogsRequest *req,
                          pc_stream **out, vk_status *st)
{
    *out = NULL;
    int code = pc_require(pc, PC_CAP_GET_CONTAINER_LOGS, st);
    if (code != VK_OK)
        return code;
    return stream_start(pc, "GetContainerLogs", &req->base, true,
                        &vkc__provider__v1__log_chunk__descriptor, out, st);
}

static int exec_like(provider_client *pc, const char *method, enum pc_cap cap,
                     const Vkc__Provider__V1__ExecStart *start, pc_stream **out,
                     vk_status *st)
{
    *out = NULL;
    int code = pc_require(pc, cap, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = (Vkc__Provider__V1__ExecStart *)start;
    return stream_start(pc, method, &in.base, false,
                        &vkc__provider__v1__exec_output__descriptor, out, st);
}

int pc_exec(provider_client *pc, const Vkc__Provider__V1__ExecStart *start,
            pc_stream **out, vk_status *st)
{
    return exec_like(pc, "ExecInContainer", PC_CAP_EXEC, start, out, st);
}

int pc_attach(provider_client *pc, const Vkc__Provider__V1__ExecStart *start,
              pc_stream **out, vk_status *st)
{
    return exec_like(pc, "AttachToContainer", PC_CAP_ATTACH, start, out, st);
}

int pc_port_forward(provider_client *pc, const Vkc__Provider__V1__PortForwardStart *start,
                    pc_stream **out, vk_status *st)
{
    *out = NULL;
    int code = pc_require(pc, PC_CAP_PORT_FORWARD, st);
    if (code != VK_OK)
        return code;
    Vkc__Provider__V1__PortForwardInput in = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_START;
    in.start = (Vkc__Provider__V1__PortForwardStart *)start;
    return stream_start(pc, "PortForward", &in.base, false,
                        &vkc__provider__v1__port_forward_output__descriptor, out, st);
}

int pc_stream_next(pc_stream *s, ProtobufCMessage **msg)
{
    return vk_call_recv(s->call, s->yields, msg);
}

static int send_exec_input(pc_stream *s, Vkc__Provider__V1__ExecInput *in)
{
    return vk_call_send(s->call, &in->base);
}

int pc_stream_stdin(pc_stream *s, const void *data, size_t len)
{
    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN;
    in.stdin.data = (uint8_t *)data;
    in.stdin.len = len;
    return send_exec_input(s, &in);
}

int pc_stream_resize(pc_stream *s, uint32_t width, uint32_t height)
{
    Vkc__Provider__V1__TerminalSize size = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    size.width = width;
    size.height = height;
    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_RESIZE;
    in.resize = &size;
    return send_exec_input(s, &in);
}

int pc_stream_close_stdin(pc_stream *s)
{
    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN_CLOSE;
    in.stdin_close = 1;
    return send_exec_input(s, &in);
}

int pc_stream_data(pc_stream *s, const void *data, size_t len)
{
    Vkc__Provider__V1__PortForwardInput in = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_DATA;
    in.data.data = (uint8_t *)data;
    in.data.len = len;
    return vk_call_send(s->call, &in.base);
}

int pc_stream_close_write(pc_stream *s)
{
    Vkc__Provider__V1__PortForwardInput in = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_CLOSE_WRITE;
    in.close_write = 1;
    return vk_call_send(s->call, &in.base);
}

void pc_stream_cancel(pc_stream *s)
{
    atomic_store(&s->cancelled, true);
    vk_call_cancel(s->call);
}

int pc_stream_finish(pc_stream *s, vk_status *st)
{
    vk_status local = {0, NULL};
    int code = vk_call_finish(s->call, st ? st : &local);
    vk_status_clear(&local);
    /* Our own cancel is not the provider's failure. */
    if (code != VK_OK && !(code == VK_CANCELLED && atomic_load(&s->cancelled)))
        count_error(s->pc, s->method, code);
    return code;
}

void pc_stream_free(pc_stream *s)
{
    if (!s)
        return;
    vk_call_free(s->call);
    pc_unref(s->pc);
    free(s);
}
