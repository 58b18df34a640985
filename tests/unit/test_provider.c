/* test_provider.c -- the provider side of the SDK, end to end: a
 * vk_provider with a small callback table on a Unix socket, called through
 * the client half of rpc.h the way vkc-core calls it. */
#include <check.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../log_capture.h"
#include "provider_internal.h"
#include "log.h"

#define P "/vkc.provider.v1.Provider/"

static char dir[64];
static char addr[128];
static char core_addr[128];
static vk_provider *prov;
static vk_channel *ch;
static int userdata = 7;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Poll cond for up to ms milliseconds (at least: each step sleeps 10 ms
 * or more). The waits below are for other threads, which a loaded machine
 * or ASan may hold back for seconds: 10 s, bounding only a failing test. */
#define EVENTUALLY(cond, ms)                                   \
    do {                                                       \
        for (int waited_ = 0; !(cond) && waited_ < (ms); waited_ += 10) \
            sleep_ms(10);                                      \
        ck_assert(cond);                                       \
    } while (0)

static const char pod_web[] =
    "{\"metadata\":{\"name\":\"web\",\"namespace\":\"default\",\"uid\":\"ua\"},"
    "\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"busybox\"}]}}";

/* ---- the provider under test ------------------------------------------ */

static _Atomic(const char *) fail_method; /* before_call fails this one */
static atomic_int pings_seen;
static atomic_int creates;
static atomic_int node_version;
/* What callbacks saw, for the test thread to check. */
static pthread_mutex_t seen_mu = PTHREAD_MUTEX_INITIALIZER;
static char create_method[128];
static bool create_saw_userdata;

static int t_before(vk_ctx *ctx, const char *method)
{
    if (strcmp(method, "Ping") == 0)
        pings_seen++;
    const char *f = atomic_load(&fail_method);
    if (f != NULL && strcmp(f, method) == 0)
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "injected fault in %s", method);
    return VK_OK;
}

static int t_create(vk_ctx *ctx, const vk_pod *pod)
{
    creates++;
    pthread_mutex_lock(&seen_mu);
    snprintf(create_method, sizeof create_method, "%s", vk_ctx_method(ctx));
    create_saw_userdata = vk_ctx_userdata(ctx) == &userdata;
    pthread_mutex_unlock(&seen_mu);
    if (strcmp(pod->name, "fail-me") == 0)
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "back end %s is down", "b1");
    if (strcmp(pod->name, "bad-code") == 0)
        return -1;
    if (strcmp(pod->name, "needs-secret") == 0) {
        vk_buf b = VK_BUF_INIT;
        vk_status st = {0, NULL};
        int code = vk_core_get_secret(vk_ctx_provider(ctx), pod->namespace, "s1", &b, &st);
        if (code != VK_OK)
            code = vk_ctx_error(ctx, code, "secret: %s", st.message ? st.message : "");
        else if (b.data == NULL || strstr(b.data, "\"Secret\"") == NULL)
            code = vk_ctx_error(ctx, VK_INTERNAL, "wrong secret");
        vk_buf_free(&b);
        vk_status_clear(&st);
        return code;
    }
    return VK_OK;
}

static int t_update(vk_ctx *ctx, const vk_pod *pod)
{
    (void)ctx;
    (void)pod;
    return VK_OK;
}

static int t_delete(vk_ctx *ctx, const vk_pod *pod)
{
    (void)pod;
    (void)ctx;
    return VK_OK;
}

static int t_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    (void)out;
    return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
}

/* Answers NOT_FOUND without a message: the SDK must say which pod. */
static int t_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    (void)ctx;
    (void)ns;
    if (strcmp(name, "web") != 0)
        return VK_NOT_FOUND;
    vk_buf_puts(out, "{\"phase\":\"Running\"}");
    return VK_OK;
}

static int t_get_pods(vk_ctx *ctx, vk_pod_list *out)
{
    (void)ctx;
    vk_pod_list_add(out, pod_web, strlen(pod_web));
    vk_pod_list_add(out, "{}", 2);
    return VK_OK;
}

static int t_get_node(vk_ctx *ctx, vk_node *n)
{
    (void)ctx;
    char pods[16];
    snprintf(pods, sizeof pods, "%d", 100 + atomic_load(&node_version));
    vk_node_capacity(n, "cpu", "4");
    vk_node_capacity(n, "pods", pods);
    vk_node_capacity(n, "cpu", "8"); /* the last value wins */
    vk_node_allocatable(n, "cpu", "7");
    vk_node_label(n, "tier", "edge");
    vk_node_condition(n, "Ready", "True", "ProviderReady", NULL);
    vk_node_condition(n, "DiskPressure", "False", NULL, "disk \"ok\"");
    vk_node_address(n, "InternalIP", "10.0.0.1");
    vk_node_os(n, "linux");
    vk_node_info(n, "architecture", "amd64");
    vk_node_info(n, "osImage", "Debian");
    return VK_OK;
}

static atomic_long logs_written;
static atomic_bool logs_done;
static atomic_int logs_write_after_gone;
static vk_log_options logs_opt;

static int t_logs(vk_ctx *ctx, const char *ns, const char *pod, const char *container,
                  const vk_log_options *opt, vk_stream *out)
{
    (void)ns;
    (void)pod;
    if (strcmp(container, "missing") == 0)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "container %s not found", container);
    pthread_mutex_lock(&seen_mu);
    logs_opt = *opt;
    pthread_mutex_unlock(&seen_mu);
    static char block[100 << 10];
    memset(block, 'x', sizeof block);
    while (vk_stream_write(out, block, sizeof block) == 0)
        logs_written += (long)sizeof block;
    /* The user is gone; later writes must keep failing. */
    logs_write_after_gone = vk_stream_write(out, "y", 1);
    logs_done = true;
    return VK_OK;
}

static atomic_bool exec_blocked;
static atomic_bool exec_returned;
static atomic_bool exec_cancel_seen;
static atomic_int exec_after_eof;

static int t_exec(vk_ctx *ctx, const vk_exec_request *r, vk_stream *io, int *exit_code)
{
    vk_input in;
    if (r->n_command > 0 && strcmp(r->command[0], "block") == 0) {
        exec_blocked = true;
        while (vk_stream_read(io, &in, -1) >= 0)
            ;
        exec_cancel_seen = vk_ctx_cancelled(ctx);
        exec_returned = true;
        return VK_OK;
    }
    char line[160];
    snprintf(line, sizeof line, "start %s/%s/%s %s %ux%u tty=%d in=%d\n", r->namespace, r->pod,
             r->container, r->n_command > 0 ? r->command[0] : "-", r->width, r->height,
             r->tty, r->in);
    vk_stream_write(io, line, strlen(line));
    for (;;) {
        int rc = vk_stream_read(io, &in, 5000);
        if (rc <= 0)
            return vk_ctx_error(ctx, VK_INTERNAL, "read returned %d", rc);
        if (in.kind == VK_INPUT_EOF)
            break;
        if (in.kind == VK_INPUT_RESIZE) {
            snprintf(line, sizeof line, "resize %ux%u\n", in.width, in.height);
            vk_stream_write(io, line, strlen(line));
        } else {
            snprintf(line, sizeof line, "out:%.*s\n", (int)in.len, (const char *)in.data);
            vk_stream_write(io, line, strlen(line));
            snprintf(line, sizeof line, "err:%.*s\n", (int)in.len, (const char *)in.data);
            vk_stream_write_stderr(io, line, strlen(line));
        }
    }
    exec_after_eof = vk_stream_read(io, &in, 50);
    *exit_code = 42;
    return VK_OK;
}

static atomic_int pf_port;

static int t_port_forward(vk_ctx *ctx, const char *ns, const char *pod, int32_t port,
                          vk_stream *io)
{
    (void)ns;
    (void)pod;
    pf_port = port;
    if (port == 1)
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "nothing listens on port %d", port);
    vk_input in;
    for (;;) {
        int rc = vk_stream_read(io, &in, 5000);
        if (rc < 0)
            return VK_CANCELLED;
        if (rc == 0)
            return vk_ctx_error(ctx, VK_INTERNAL, "input timed out");
        if (in.kind == VK_INPUT_EOF)
            return VK_OK;
        if (in.kind == VK_INPUT_DATA && vk_stream_write(io, in.data, in.len) < 0)
            return VK_CANCELLED;
    }
}

static int t_stats(vk_ctx *ctx, vk_buf *out)
{
    (void)ctx;
    vk_buf_puts(out, "{\"node\":{}}");
    return VK_OK;
}

static const vk_provider_ops ops = {
    .name = "testprov",
    .version = "1.2.3",
    .create_pod = t_create,
    .update_pod = t_update,
    .delete_pod = t_delete,
    .get_pod = t_get_pod,
    .get_pod_status = t_get_pod_status,
    .get_pods = t_get_pods,
    .get_node = t_get_node,
    .notifies_pod_status = true,
    .notifies_node = true,
    .get_container_logs = t_logs,
    .exec = t_exec,
    .port_forward = t_port_forward,
    .get_stats_summary = t_stats,
    .before_call = t_before,
};

/* ---- fixture and client helpers --------------------------------------- */

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/vkc-test-provider-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(addr, sizeof addr, "unix:%s/p.sock", dir);
    snprintf(core_addr, sizeof core_addr, "unix:%s/core.sock", dir);
    atomic_store(&fail_method, NULL);
    pings_seen = creates = node_version = pf_port = exec_after_eof = 0;
    logs_written = 0;
    logs_done = exec_blocked = exec_returned = exec_cancel_seen = false;
    unsetenv("VKC_CORE_TARGET");
    prov = vk_provider_new(&ops, &userdata);
    ck_assert_ptr_nonnull(prov);
    ck_assert_int_eq(vk_provider_start(prov, addr), 0);
    ch = vk_channel_open(addr, 0);
    ck_assert_ptr_nonnull(ch);
}

static void teardown(void)
{
    vk_channel_close(ch);
    vk_provider_stop(prov);
    vk_provider_wait(prov);
    vk_provider_free(prov);
    char path[128];
    const char *socks[] = {"p.sock", "core.sock", "main.sock", "empty.sock"};
    for (size_t i = 0; i < sizeof socks / sizeof socks[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, socks[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int call(vk_channel *c, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *d, void *resp, vk_status *st)
{
    char path[128];
    snprintf(path, sizeof path, P "%s", method);
    ProtobufCMessage *m = NULL;
    int code = vk_unary(c, path, req, d, 5000, &m, st);
    if (resp != NULL)
        *(ProtobufCMessage **)resp = m;
    else if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

static int create_pod(const char *json, vk_status *st)
{
    Vkc__Provider__V1__CreatePodRequest req = VKC__PROVIDER__V1__CREATE_POD_REQUEST__INIT;
    req.pod_json.data = (uint8_t *)json;
    req.pod_json.len = strlen(json);
    return call(ch, "CreatePod", &req.base, &vkc__provider__v1__create_pod_response__descriptor,
                NULL, st);
}

static int ping(void)
{
    Vkc__Provider__V1__PingRequest req = VKC__PROVIDER__V1__PING_REQUEST__INIT;
    return call(ch, "Ping", &req.base, &vkc__provider__v1__ping_response__descriptor, NULL, NULL);
}

static Vkc__Provider__V1__HandshakeResponse *handshake(vk_channel *c, const char *core_target)
{
    Vkc__Provider__V1__HandshakeRequest req = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = VKC__PROVIDER__V1__PROTOCOL_VERSION__PROTOCOL_VERSION_CURRENT;
    req.core_version = "test";
    req.node_name = "node-1";
    req.core_target = (char *)core_target;
    Vkc__Provider__V1__HandshakeResponse *resp = NULL;
    ck_assert_int_eq(call(c, "Handshake", &req.base,
                          &vkc__provider__v1__handshake_response__descriptor, &resp, NULL),
                     VK_OK);
    return resp;
}

static bool has_cap(const Vkc__Provider__V1__HandshakeResponse *r, const char *name)
{
    for (size_t i = 0; i < r->n_capabilities; i++)
        if (strcmp(r->capabilities[i], name) == 0)
            return true;
    return false;
}

static vk_call *stream(const char *method)
{
    char path[128];
    snprintf(path, sizeof path, P "%s", method);
    vk_call *c = vk_call_start(ch, path, 10000);
    ck_assert_ptr_nonnull(c);
    return c;
}

static int end_stream(vk_call *c, vk_status *st)
{
    int code = vk_call_finish(c, st);
    vk_call_free(c);
    return code;
}

/* ---- handshake, errors, hooks ------------------------------------------- */

START_TEST(handshake_reports_name_version_and_capabilities)
{
    Vkc__Provider__V1__HandshakeResponse *r = handshake(ch, "");
    ck_assert_uint_eq(r->protocol_version, 1);
    ck_assert_str_eq(r->provider_name, "testprov");
    ck_assert_str_eq(r->provider_version, "1.2.3");
    const char *present[] = {"WatchPodStatus", "WatchNode", "GetContainerLogs",
                             "ExecInContainer", "PortForward", "GetStatsSummary"};
    for (size_t i = 0; i < sizeof present / sizeof present[0]; i++)
        ck_assert_msg(has_cap(r, present[i]), "%s missing", present[i]);
    ck_assert(!has_cap(r, "AttachToContainer"));
    ck_assert(!has_cap(r, "GetMetricsResource"));
    ck_assert_uint_eq(r->n_capabilities, 6);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    ck_assert_int_eq(ping(), VK_OK);
    ck_assert_int_eq(pings_seen, 1);
}
END_TEST

START_TEST(null_callbacks_answer_unimplemented)
{
    vk_status st = {0, NULL};
    Vkc__Provider__V1__GetMetricsResourceRequest req =
        VKC__PROVIDER__V1__GET_METRICS_RESOURCE_REQUEST__INIT;
    ck_assert_int_eq(call(ch, "GetMetricsResource", &req.base,
                          &vkc__provider__v1__get_metrics_resource_response__descriptor, NULL, &st),
                     VK_UNIMPLEMENTED);
    ck_assert_ptr_nonnull(strstr(st.message, "GetMetricsResource"));
    vk_status_clear(&st);

    /* A streaming one. */
    vk_call *c = stream("AttachToContainer");
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, &st), VK_UNIMPLEMENTED);
    vk_status_clear(&st);

    /* A provider with no callbacks at all: required RPCs too, and an empty
     * capability list. */
    static const vk_provider_ops empty = {.name = "empty"};
    char eaddr[128];
    snprintf(eaddr, sizeof eaddr, "unix:%s/empty.sock", dir);
    vk_provider *ep = vk_provider_new(&empty, NULL);
    ck_assert_int_eq(vk_provider_start(ep, eaddr), 0);
    vk_channel *ec = vk_channel_open(eaddr, 0);
    Vkc__Provider__V1__HandshakeResponse *r = handshake(ec, "");
    ck_assert_uint_eq(r->n_capabilities, 0);
    ck_assert_str_eq(r->provider_version, "");
    protobuf_c_message_free_unpacked(&r->base, NULL);
    Vkc__Provider__V1__CreatePodRequest creq = VKC__PROVIDER__V1__CREATE_POD_REQUEST__INIT;
    ck_assert_int_eq(call(ec, "CreatePod", &creq.base,
                          &vkc__provider__v1__create_pod_response__descriptor, NULL, NULL),
                     VK_UNIMPLEMENTED);
    Vkc__Provider__V1__GetNodeRequest nreq = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    ck_assert_int_eq(call(ec, "GetNode", &nreq.base, &vkc__provider__v1__node__descriptor,
                          NULL, NULL),
                     VK_UNIMPLEMENTED);
    vk_channel_close(ec);
    vk_provider_free(ep);
}
END_TEST

START_TEST(malformed_pod_is_invalid_argument)
{
    vk_status st = {0, NULL};
    ck_assert_int_eq(create_pod("{\"metadata\":", &st), VK_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(st.message);
    ck_assert_ptr_nonnull(strstr(st.message, "pod JSON"));
    vk_status_clear(&st);

    ck_assert_int_eq(create_pod("{\"metadata\":{\"name\":\"x\"}}", &st), VK_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(st.message, "containers"));
    vk_status_clear(&st);

    Vkc__Provider__V1__DeletePodRequest dreq = VKC__PROVIDER__V1__DELETE_POD_REQUEST__INIT;
    ck_assert_int_eq(call(ch, "DeletePod", &dreq.base,
                          &vkc__provider__v1__delete_pod_response__descriptor, NULL, &st),
                     VK_INVALID_ARGUMENT);
    vk_status_clear(&st);
    ck_assert_int_eq(creates, 0);

    ck_assert_int_eq(create_pod(pod_web, &st), VK_OK);
    ck_assert_int_eq(creates, 1);
    char method[128];
    pthread_mutex_lock(&seen_mu);
    snprintf(method, sizeof method, "%s", create_method);
    bool saw_userdata = create_saw_userdata;
    pthread_mutex_unlock(&seen_mu);
    ck_assert_str_eq(method, P "CreatePod");
    ck_assert(saw_userdata);
}
END_TEST

START_TEST(callback_errors_reach_the_client)
{
    vk_status st = {0, NULL};
    ck_assert_int_eq(create_pod("{\"metadata\":{\"name\":\"fail-me\"},"
                                "\"spec\":{\"containers\":[{\"name\":\"c\"}]}}", &st),
                     VK_UNAVAILABLE);
    ck_assert_str_eq(st.message, "back end b1 is down");
    vk_status_clear(&st);

    ck_assert_int_eq(create_pod("{\"metadata\":{\"name\":\"bad-code\"},"
                                "\"spec\":{\"containers\":[{\"name\":\"c\"}]}}", &st),
                     VK_INTERNAL);
    ck_assert_ptr_nonnull(strstr(st.message, "invalid status -1"));
    vk_status_clear(&st);

    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = "ghost";
    Vkc__Provider__V1__GetPodRequest req = VKC__PROVIDER__V1__GET_POD_REQUEST__INIT;
    req.pod = &ref;
    ck_assert_int_eq(call(ch, "GetPod", &req.base, &vkc__provider__v1__get_pod_response__descriptor,
                          NULL, &st),
                     VK_NOT_FOUND);
    ck_assert_str_eq(st.message, "pod default/ghost not found");
    vk_status_clear(&st);

    /* No pod reference at all. */
    req.pod = NULL;
    ck_assert_int_eq(call(ch, "GetPod", &req.base, &vkc__provider__v1__get_pod_response__descriptor,
                          NULL, &st),
                     VK_INVALID_ARGUMENT);
    vk_status_clear(&st);

    Vkc__Provider__V1__GetPodStatusRequest sreq = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    ref.name = "web";
    sreq.pod = &ref;
    Vkc__Provider__V1__GetPodStatusResponse *sresp = NULL;
    ck_assert_int_eq(call(ch, "GetPodStatus", &sreq.base,
                          &vkc__provider__v1__get_pod_status_response__descriptor, &sresp, NULL),
                     VK_OK);
    ck_assert_int_eq((int)sresp->status_json.len, 19);
    ck_assert(memcmp(sresp->status_json.data, "{\"phase\":\"Running\"}", 19) == 0);
    protobuf_c_message_free_unpacked(&sresp->base, NULL);
}
END_TEST

/* ---- what bad input logs ------------------------------------------------ */


/* A HandshakeRequest has a varint as field 1 where CreatePodRequest and
 * ExecInput have bytes and a message: it does not decode as either. */
static void send_junk(vk_call *c)
{
    Vkc__Provider__V1__HandshakeRequest junk = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    junk.protocol_version = 1;
    ck_assert_int_eq(vk_call_send(c, &junk.base), 0);
}

START_TEST(bad_input_is_logged_once)
{
    log_capture cap;
    vk_status st = {0, NULL};
    log_capture_start(&cap);

    /* A request that is no CreatePodRequest: one line naming the type. */
    vk_call *c = stream("CreatePod");
    send_junk(c);
    vk_call_close_send(c);
    ck_assert_int_eq(end_stream(c, &st), VK_INVALID_ARGUMENT);
    ck_assert_str_eq(st.message, "malformed vkc.provider.v1.CreatePodRequest message");
    vk_status_clear(&st);

    /* Pod JSON that does not parse: one line with the reason. */
    ck_assert_int_eq(create_pod("{\"metadata\":", &st), VK_INVALID_ARGUMENT);
    vk_status_clear(&st);

    /* An unknown pod: a clear status, and no line (it is routine). */
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = "ghost";
    Vkc__Provider__V1__GetPodStatusRequest sreq = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    sreq.pod = &ref;
    ck_assert_int_eq(call(ch, "GetPodStatus", &sreq.base,
                          &vkc__provider__v1__get_pod_status_response__descriptor, NULL, &st),
                     VK_NOT_FOUND);
    ck_assert_str_eq(st.message, "pod default/ghost not found");
    vk_status_clear(&st);

    /* Junk in the middle of an exec stream: one line, not two. */
    c = stream("ExecInContainer");
    ref.name = "web";
    char *cmd[] = {"block"};
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &ref;
    start.command = cmd;
    start.n_command = 1;
    Vkc__Provider__V1__ExecInput in;
    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = &start;
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    EVENTUALLY(exec_blocked, 10000);
    send_junk(c);
    ck_assert_int_eq(end_stream(c, &st), VK_INVALID_ARGUMENT);
    vk_status_clear(&st);
    EVENTUALLY(exec_returned, 10000);

    char *log = log_capture_end(&cap);
    ck_assert_int_eq(lines_with(log, "malformed request", "method=" P "CreatePod "), 1);
    ck_assert_int_eq(lines_with(log, "message=vkc.provider.v1.CreatePodRequest", "bytes="), 1);
    ck_assert_int_eq(lines_with(log, "method=CreatePod ", "rpc failed"), 1);
    ck_assert_int_eq(lines_with(log, "method=CreatePod ", "reason=\"pod JSON"), 1);
    ck_assert_int_eq(lines_with(log, "GetPodStatus", ""), 0);
    ck_assert_int_eq(lines_with(log, "malformed request", "method=" P "ExecInContainer "), 1);
    ck_assert_int_eq(lines_with(log, "ExecInContainer", ""), 1);
    free(log);
}
END_TEST

START_TEST(before_call_can_fail_a_call)
{
    vk_status st = {0, NULL};
    atomic_store(&fail_method, "CreatePod");
    ck_assert_int_eq(create_pod(pod_web, &st), VK_UNAVAILABLE);
    ck_assert_str_eq(st.message, "injected fault in CreatePod");
    vk_status_clear(&st);
    ck_assert_int_eq(creates, 0);
    ck_assert_int_eq(ping(), VK_OK);

    atomic_store(&fail_method, "Ping");
    ck_assert_int_eq(ping(), VK_UNAVAILABLE);
    ck_assert_int_eq(create_pod(pod_web, NULL), VK_OK);

    /* Streams go through the hook too. */
    atomic_store(&fail_method, "ExecInContainer");
    vk_call *c = stream("ExecInContainer");
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, &st), VK_UNAVAILABLE);
    ck_assert_str_eq(st.message, "injected fault in ExecInContainer");
    vk_status_clear(&st);
}
END_TEST

/* ---- pods, node -------------------------------------------------------- */

static const char *map_get(size_t n, Vkc__Provider__V1__Node__CapacityEntry **e, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i]->key, k) == 0)
            return e[i]->value;
    return NULL;
}

static void bytes_eq(ProtobufCBinaryData b, const char *want)
{
    ck_assert_msg(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0,
                  "got %.*s, want %s", (int)b.len, (const char *)b.data, want);
}

START_TEST(get_pods_and_node)
{
    Vkc__Provider__V1__GetPodsRequest preq = VKC__PROVIDER__V1__GET_PODS_REQUEST__INIT;
    Vkc__Provider__V1__GetPodsResponse *presp = NULL;
    ck_assert_int_eq(call(ch, "GetPods", &preq.base,
                          &vkc__provider__v1__get_pods_response__descriptor, &presp, NULL),
                     VK_OK);
    ck_assert_uint_eq(presp->n_pods_json, 2);
    bytes_eq(presp->pods_json[0], pod_web);
    bytes_eq(presp->pods_json[1], "{}");
    protobuf_c_message_free_unpacked(&presp->base, NULL);

    Vkc__Provider__V1__GetNodeRequest nreq = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    Vkc__Provider__V1__Node *n = NULL;
    ck_assert_int_eq(call(ch, "GetNode", &nreq.base, &vkc__provider__v1__node__descriptor, &n, NULL),
                     VK_OK);
    ck_assert_uint_eq(n->n_capacity, 2);
    ck_assert_str_eq(map_get(n->n_capacity, n->capacity, "cpu"), "8");
    ck_assert_str_eq(map_get(n->n_capacity, n->capacity, "pods"), "100");
    ck_assert_uint_eq(n->n_allocatable, 1);
    ck_assert_str_eq(n->allocatable[0]->key, "cpu");
    ck_assert_str_eq(n->allocatable[0]->value, "7");
    ck_assert_uint_eq(n->n_labels, 1);
    ck_assert_str_eq(n->labels[0]->value, "edge");
    bytes_eq(n->conditions_json,
             "[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"ProviderReady\"},"
             "{\"type\":\"DiskPressure\",\"status\":\"False\",\"message\":\"disk \\\"ok\\\"\"}]");
    bytes_eq(n->addresses_json, "[{\"type\":\"InternalIP\",\"address\":\"10.0.0.1\"}]");
    bytes_eq(n->node_info_json, "{\"architecture\":\"amd64\",\"osImage\":\"Debian\"}");
    ck_assert_str_eq(n->operating_system, "linux");
    protobuf_c_message_free_unpacked(&n->base, NULL);

    Vkc__Provider__V1__GetStatsSummaryRequest sreq = VKC__PROVIDER__V1__GET_STATS_SUMMARY_REQUEST__INIT;
    Vkc__Provider__V1__GetStatsSummaryResponse *sresp = NULL;
    ck_assert_int_eq(call(ch, "GetStatsSummary", &sreq.base,
                          &vkc__provider__v1__get_stats_summary_response__descriptor, &sresp, NULL),
                     VK_OK);
    bytes_eq(sresp->summary_json, "{\"node\":{}}");
    protobuf_c_message_free_unpacked(&sresp->base, NULL);
}
END_TEST

START_TEST(watch_node_sends_a_node_per_change)
{
    vk_call *c = stream("WatchNode");
    Vkc__Provider__V1__WatchNodeRequest req = VKC__PROVIDER__V1__WATCH_NODE_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);

    Vkc__Provider__V1__Node *n = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__node__descriptor, (ProtobufCMessage **)&n), 1);
    ck_assert_str_eq(map_get(n->n_capacity, n->capacity, "pods"), "100");
    protobuf_c_message_free_unpacked(&n->base, NULL);

    node_version = 5;
    vk_provider_notify_node(prov);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__node__descriptor, (ProtobufCMessage **)&n), 1);
    ck_assert_str_eq(map_get(n->n_capacity, n->capacity, "pods"), "105");
    protobuf_c_message_free_unpacked(&n->base, NULL);

    vk_call_cancel(c);
    ck_assert_int_eq(end_stream(c, NULL), VK_CANCELLED);
}
END_TEST

/* ---- WatchPodStatus ---------------------------------------------------- */

static Vkc__Provider__V1__PodStatusEvent *next_event(vk_call *c)
{
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__pod_status_event__descriptor, &m), 1);
    return (Vkc__Provider__V1__PodStatusEvent *)m;
}

static bool status_is(const Vkc__Provider__V1__PodStatusEvent *e, const char *s)
{
    return e->status_json.len == strlen(s) && memcmp(e->status_json.data, s, e->status_json.len) == 0;
}

static size_t table_entries(void)
{
    pthread_mutex_lock(&prov->watch.mu);
    size_t n = prov->watch.n_entries;
    pthread_mutex_unlock(&prov->watch.mu);
    return n;
}

static size_t table_tombstones(void)
{
    pthread_mutex_lock(&prov->watch.mu);
    size_t n = prov->watch.n_tombstones;
    pthread_mutex_unlock(&prov->watch.mu);
    return n;
}

START_TEST(watch_pod_status_initial_then_coalesced)
{
    /* With no watcher, a deletion has nobody to tell: nothing is kept. */
    ck_assert_int_eq(vk_provider_notify_pod(prov, "default", "gone", "ug", "{\"a\":1}", 7), 0);
    ck_assert_int_eq(vk_provider_notify_pod(prov, "default", "gone", "ug", NULL, 0), 0);
    ck_assert_uint_eq(table_entries(), 0);

    /* Two changes before anyone watches: only the latest is sent. */
    ck_assert_int_eq(vk_provider_notify_pod(prov, "default", "web", "ua", "s1", 2), 0);
    ck_assert_int_eq(vk_provider_notify_pod(prov, "default", "web", "ua", "s2", 2), 0);
    ck_assert_int_eq(vk_provider_notify_pod(prov, "default", "db", "ub", "b1", 2), 0);

    vk_call *c = stream("WatchPodStatus");
    Vkc__Provider__V1__WatchPodStatusRequest req = VKC__PROVIDER__V1__WATCH_POD_STATUS_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);

    Vkc__Provider__V1__PodStatusEvent *e = next_event(c);
    ck_assert_str_eq(e->pod->uid, "ua");
    ck_assert_str_eq(e->pod->name, "web");
    ck_assert_str_eq(e->pod->namespace_, "default");
    ck_assert(status_is(e, "s2"));
    ck_assert(!e->deleted);
    uint64_t seq_a = e->sequence;
    protobuf_c_message_free_unpacked(&e->base, NULL);
    e = next_event(c);
    ck_assert_str_eq(e->pod->uid, "ub");
    ck_assert(status_is(e, "b1"));
    uint64_t seq = e->sequence;
    ck_assert_uint_gt(seq, seq_a);
    protobuf_c_message_free_unpacked(&e->base, NULL);

    /* A burst: at most one event each, the last one always arrives. */
    vk_provider_notify_pod(prov, "default", "web", "ua", "s3", 2);
    vk_provider_notify_pod(prov, "default", "web", "ua", "s4", 2);
    vk_provider_notify_pod(prov, "default", "web", "ua", "s5", 2);
    vk_provider_notify_pod(prov, "default", "web", "ua", "s5", 2); /* no change */
    int events = 0;
    for (;;) {
        e = next_event(c);
        events++;
        ck_assert_str_eq(e->pod->uid, "ua");
        ck_assert_uint_gt(e->sequence, seq);
        seq = e->sequence;
        bool last = status_is(e, "s5");
        protobuf_c_message_free_unpacked(&e->base, NULL);
        if (last)
            break;
    }
    ck_assert_int_le(events, 3);

    /* The provider reports a deletion; DeletePod reports one by itself. */
    vk_provider_notify_pod(prov, "default", "db", "ub", NULL, 0);
    e = next_event(c);
    ck_assert_str_eq(e->pod->uid, "ub");
    ck_assert(e->deleted);
    ck_assert_uint_eq(e->status_json.len, 0);
    ck_assert_uint_gt(e->sequence, seq);
    seq = e->sequence;
    protobuf_c_message_free_unpacked(&e->base, NULL);

    Vkc__Provider__V1__DeletePodRequest dreq = VKC__PROVIDER__V1__DELETE_POD_REQUEST__INIT;
    dreq.pod_json.data = (uint8_t *)pod_web;
    dreq.pod_json.len = strlen(pod_web);
    ck_assert_int_eq(call(ch, "DeletePod", &dreq.base,
                          &vkc__provider__v1__delete_pod_response__descriptor, NULL, NULL),
                     VK_OK);
    e = next_event(c);
    ck_assert_str_eq(e->pod->uid, "ua");
    ck_assert(e->deleted);
    ck_assert_uint_gt(e->sequence, seq);
    protobuf_c_message_free_unpacked(&e->base, NULL);

    /* Sent to the only watcher, so the tombstones go. */
    EVENTUALLY(table_tombstones() == 0, 10000);
    ck_assert_uint_eq(table_entries(), 0);

    vk_call_cancel(c);
    ck_assert_int_eq(end_stream(c, NULL), VK_CANCELLED);
}
END_TEST

START_TEST(watch_pod_status_second_watcher_starts_from_current_state)
{
    vk_provider_notify_pod(prov, "ns", "a", "u1", "x1", 2);
    vk_call *c1 = stream("WatchPodStatus");
    Vkc__Provider__V1__WatchPodStatusRequest req = VKC__PROVIDER__V1__WATCH_POD_STATUS_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(c1, &req.base), 0);
    Vkc__Provider__V1__PodStatusEvent *e = next_event(c1);
    ck_assert(status_is(e, "x1"));
    protobuf_c_message_free_unpacked(&e->base, NULL);

    vk_provider_notify_pod(prov, "ns", "a", "u1", "x2", 2);
    vk_call *c2 = stream("WatchPodStatus");
    ck_assert_int_eq(vk_call_send(c2, &req.base), 0);
    e = next_event(c2);
    ck_assert(status_is(e, "x2"));
    protobuf_c_message_free_unpacked(&e->base, NULL);
    e = next_event(c1);
    ck_assert(status_is(e, "x2"));
    protobuf_c_message_free_unpacked(&e->base, NULL);

    vk_call_cancel(c1);
    vk_call_cancel(c2);
    end_stream(c1, NULL);
    end_stream(c2, NULL);
}
END_TEST

/* ---- logs, exec, port-forward ----------------------------------------- */

START_TEST(logs_stream_backpressure_and_cancel)
{
    vk_status st = {0, NULL};
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = "web";
    Vkc__Provider__V1__Int64Value tail = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    tail.value = 10;
    Vkc__Provider__V1__GetContainerLogsRequest req =
        VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    req.pod = &ref;
    req.container = "missing";
    req.tail_lines = &tail;
    req.follow = true;

    vk_call *c = stream("GetContainerLogs");
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, &st), VK_NOT_FOUND);
    ck_assert_str_eq(st.message, "container missing not found");
    vk_status_clear(&st);

    req.container = "c";
    c = stream("GetContainerLogs");
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    /* 100 KiB writes arrive as 64 KiB chunks. */
    Vkc__Provider__V1__LogChunk *chunk = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor,
                                  (ProtobufCMessage **)&chunk), 1);
    ck_assert_uint_eq(chunk->data.len, 64 << 10);
    protobuf_c_message_free_unpacked(&chunk->base, NULL);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor,
                                  (ProtobufCMessage **)&chunk), 1);
    ck_assert_uint_eq(chunk->data.len, (100 << 10) - (64 << 10));
    protobuf_c_message_free_unpacked(&chunk->base, NULL);
    pthread_mutex_lock(&seen_mu);
    vk_log_options opt = logs_opt;
    pthread_mutex_unlock(&seen_mu);
    ck_assert_int_eq(opt.tail_lines, 10);
    ck_assert(opt.follow);
    ck_assert_int_eq(opt.limit_bytes, -1);
    ck_assert_int_eq(opt.since_seconds, 0);

    /* Not reading: the writer must come to a halt, not buffer. */
    long w1 = 0, w2 = -1;
    for (int i = 0; i < 50 && w1 != w2; i++) {
        w1 = logs_written;
        sleep_ms(200);
        w2 = logs_written;
    }
    ck_assert_int_eq(w1, w2);
    ck_assert_int_lt(w2, 32L << 20);
    ck_assert(!logs_done);

    vk_call_cancel(c);
    EVENTUALLY(logs_done, 10000);
    ck_assert_int_eq(logs_write_after_gone, -1);
    ck_assert_int_eq(end_stream(c, NULL), VK_CANCELLED);
}
END_TEST

static void send_exec(vk_call *c, Vkc__Provider__V1__ExecInput *in)
{
    ck_assert_int_eq(vk_call_send(c, &in->base), 0);
}

START_TEST(exec_round_trip)
{
    vk_call *c = stream("ExecInContainer");
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = "web";
    ref.uid = "ua";
    Vkc__Provider__V1__TerminalSize size = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    size.width = 80;
    size.height = 24;
    char *cmd[] = {"sh", "-c", "cat"};
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &ref;
    start.container = "c";
    start.command = cmd;
    start.n_command = 3;
    start.stdin = start.stdout = start.stderr = start.tty = true;
    start.size = &size;

    Vkc__Provider__V1__ExecInput in;
    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = &start;
    send_exec(c, &in);

    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN;
    in.stdin.data = (uint8_t *)"hello";
    in.stdin.len = 5;
    send_exec(c, &in);

    Vkc__Provider__V1__TerminalSize big = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    big.width = 100;
    big.height = 50;
    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_RESIZE;
    in.resize = &big;
    send_exec(c, &in);

    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN_CLOSE;
    in.stdin_close = true;
    send_exec(c, &in);

    vk_buf out = VK_BUF_INIT, err = VK_BUF_INIT;
    int exit_code = -1, exits = 0;
    ProtobufCMessage *m = NULL;
    while (vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor, &m) == 1) {
        Vkc__Provider__V1__ExecOutput *o = (Vkc__Provider__V1__ExecOutput *)m;
        ck_assert_int_eq(exits, 0); /* nothing after the exit */
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT)
            vk_buf_append(&out, o->stdout.data, o->stdout.len);
        else if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDERR)
            vk_buf_append(&err, o->stderr.data, o->stderr.len);
        else if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT) {
            exit_code = o->exit->exit_code;
            exits++;
        }
        protobuf_c_message_free_unpacked(m, NULL);
    }
    ck_assert_int_eq(end_stream(c, NULL), VK_OK);
    ck_assert_int_eq(exits, 1);
    ck_assert_int_eq(exit_code, 42);
    ck_assert_str_eq(out.data, "start default/web/c sh 80x24 tty=1 in=1\nout:hello\nresize 100x50\n");
    ck_assert_str_eq(err.data, "err:hello\n");
    ck_assert_int_eq(exec_after_eof, 0);
    vk_buf_free(&out);
    vk_buf_free(&err);
}
END_TEST

START_TEST(exec_without_start_is_invalid_argument)
{
    vk_status st = {0, NULL};
    vk_call *c = stream("ExecInContainer");
    Vkc__Provider__V1__ExecInput in;
    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN;
    in.stdin.data = (uint8_t *)"x";
    in.stdin.len = 1;
    send_exec(c, &in);
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, &st), VK_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(st.message, "must be start"));
    vk_status_clear(&st);
}
END_TEST

START_TEST(exec_sees_the_user_go_away)
{
    vk_call *c = stream("ExecInContainer");
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.name = "web";
    char *cmd[] = {"block"};
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &ref;
    start.command = cmd;
    start.n_command = 1;
    Vkc__Provider__V1__ExecInput in;
    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = &start;
    send_exec(c, &in);
    EVENTUALLY(exec_blocked, 10000);
    sleep_ms(50);
    vk_call_cancel(c);
    EVENTUALLY(exec_cancel_seen, 10000);
    ck_assert_int_eq(end_stream(c, NULL), VK_CANCELLED);
}
END_TEST

START_TEST(exec_malformed_input_is_invalid_argument)
{
    vk_call *c = stream("ExecInContainer");
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.name = "web";
    char *cmd[] = {"block"};
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &ref;
    start.command = cmd;
    start.n_command = 1;
    Vkc__Provider__V1__ExecInput in;
    vkc__provider__v1__exec_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = &start;
    send_exec(c, &in);
    EVENTUALLY(exec_blocked, 10000);
    /* Field 1 as a varint, where ExecInput has a message: does not decode. */
    Vkc__Provider__V1__HandshakeRequest junk = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    junk.protocol_version = 1;
    ck_assert_int_eq(vk_call_send(c, &junk.base), 0);
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor, &m), 0);
    vk_status st = {0, NULL};
    ck_assert_int_eq(end_stream(c, &st), VK_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(st.message, "malformed"));
    vk_status_clear(&st);
    EVENTUALLY(exec_returned, 10000); /* its reads returned -1 */
}
END_TEST

static vk_call *start_port_forward(int32_t port)
{
    vk_call *c = stream("PortForward");
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = "web";
    Vkc__Provider__V1__PortForwardStart start = VKC__PROVIDER__V1__PORT_FORWARD_START__INIT;
    start.pod = &ref;
    start.port = port;
    Vkc__Provider__V1__PortForwardInput in;
    vkc__provider__v1__port_forward_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_START;
    in.start = &start;
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    return c;
}

START_TEST(port_forward_echo)
{
    vk_call *c = start_port_forward(8080);
    const char *words[] = {"ping", "pong"};
    for (int i = 0; i < 2; i++) {
        Vkc__Provider__V1__PortForwardInput in;
        vkc__provider__v1__port_forward_input__init(&in);
        in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_DATA;
        in.data.data = (uint8_t *)words[i];
        in.data.len = 4;
        ck_assert_int_eq(vk_call_send(c, &in.base), 0);
        Vkc__Provider__V1__PortForwardOutput *o = NULL;
        ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__port_forward_output__descriptor,
                                      (ProtobufCMessage **)&o), 1);
        bytes_eq(o->data, words[i]);
        protobuf_c_message_free_unpacked(&o->base, NULL);
    }
    Vkc__Provider__V1__PortForwardInput in;
    vkc__provider__v1__port_forward_input__init(&in);
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_CLOSE_WRITE;
    in.close_write = true;
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__port_forward_output__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, NULL), VK_OK);
    ck_assert_int_eq(pf_port, 8080);

    /* Half-closing without close_write also ends the input. */
    c = start_port_forward(8081);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__port_forward_output__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, NULL), VK_OK);
    ck_assert_int_eq(pf_port, 8081);

    /* An error before any data ends the stream with that status. */
    vk_status st = {0, NULL};
    c = start_port_forward(1);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__port_forward_output__descriptor, &m), 0);
    ck_assert_int_eq(end_stream(c, &st), VK_UNAVAILABLE);
    ck_assert_str_eq(st.message, "nothing listens on port 1");
    vk_status_clear(&st);
}
END_TEST

/* ---- the Core callback service ---------------------------------------- */

static void core_get_secret(vk_scall *c, void *ud)
{
    (void)ud;
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(c, &vkc__provider__v1__get_object_request__descriptor, &m) != 1) {
        vk_scall_finish(c, VK_INVALID_ARGUMENT, "bad request");
        return;
    }
    Vkc__Provider__V1__GetObjectRequest *req = (Vkc__Provider__V1__GetObjectRequest *)m;
    if (strcmp(req->namespace_, "default") == 0 && strcmp(req->name, "s1") == 0) {
        static const char secret[] = "{\"kind\":\"Secret\",\"data\":{\"k\":\"dg==\"}}";
        Vkc__Provider__V1__GetObjectResponse resp = VKC__PROVIDER__V1__GET_OBJECT_RESPONSE__INIT;
        resp.object_json.data = (uint8_t *)secret;
        resp.object_json.len = sizeof secret - 1;
        vk_scall_reply(c, &resp.base);
    } else {
        char msg[128];
        snprintf(msg, sizeof msg, "secret %s/%s not found", req->namespace_, req->name);
        vk_scall_finish(c, VK_NOT_FOUND, msg);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

START_TEST(core_callback_round_trip)
{
    vk_buf b = VK_BUF_INIT;
    vk_status st = {0, NULL};
    /* No handshake yet and no VKC_CORE_TARGET: nowhere to call. */
    ck_assert_int_eq(vk_core_get_secret(prov, "default", "s1", &b, &st), VK_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(st.message, "handshake"));
    vk_status_clear(&st);

    vk_server *core = vk_server_new(core_addr, 0, 4);
    vk_server_handle(core, "/vkc.provider.v1.Core/GetSecret", core_get_secret, NULL);
    ck_assert_int_eq(vk_server_start(core), 0);

    Vkc__Provider__V1__HandshakeResponse *r = handshake(ch, core_addr);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* From inside a callback, as a provider does. */
    ck_assert_int_eq(create_pod("{\"metadata\":{\"name\":\"needs-secret\",\"namespace\":\"default\"},"
                                "\"spec\":{\"containers\":[{\"name\":\"c\"}]}}", &st),
                     VK_OK);
    vk_status_clear(&st);

    ck_assert_int_eq(vk_core_get_secret(prov, "default", "s1", &b, &st), VK_OK);
    ck_assert_str_eq(b.data, "{\"kind\":\"Secret\",\"data\":{\"k\":\"dg==\"}}");
    ck_assert_int_eq(vk_core_get_secret(prov, "default", "nope", &b, &st), VK_NOT_FOUND);
    ck_assert_str_eq(st.message, "secret default/nope not found");
    vk_status_clear(&st);
    ck_assert_int_eq(vk_core_get_configmap(prov, "default", "cm", &b, &st), VK_UNIMPLEMENTED);
    vk_status_clear(&st);
    vk_buf_free(&b);

    /* Before any handshake, VKC_CORE_TARGET says where the core is. */
    setenv("VKC_CORE_TARGET", core_addr, 1);
    vk_provider *p2 = vk_provider_new(&ops, NULL);
    unsetenv("VKC_CORE_TARGET");
    ck_assert_int_eq(vk_core_get_secret(p2, "default", "s1", &b, NULL), VK_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "Secret"));
    vk_buf_free(&b);
    vk_provider_free(p2);

    vk_server_stop(core, 0);
    vk_server_free(core);
}
END_TEST

/* ---- vk_provider_main --------------------------------------------------- */

static void ignore_signal(int sig) { (void)sig; }

struct main_run {
    int argc;
    char **argv;
    atomic_int rc;
    atomic_bool done;
};

static void *main_thread(void *arg)
{
    struct main_run *r = arg;
    r->rc = vk_provider_main(&ops, NULL, r->argc, r->argv);
    r->done = true;
    return NULL;
}

START_TEST(provider_main_flags_and_signals)
{
    unsetenv("VKC_PROVIDER_LISTEN");
    char *bad[] = {"prov", "--bogus"};
    ck_assert_int_eq(vk_provider_main(&ops, NULL, 2, bad), 2);
    char *none[] = {"prov", "--log-level", "warn"};
    ck_assert_int_eq(vk_provider_main(&ops, NULL, 3, none), 2);
    char *noval[] = {"prov", "--listen"};
    ck_assert_int_eq(vk_provider_main(&ops, NULL, 2, noval), 2);
    char *level[] = {"prov", "--listen=unix:/nonexistent/x", "--log-level", "loud"};
    ck_assert_int_eq(vk_provider_main(&ops, NULL, 4, level), 2);

    /* A real run from the environment's address, stopped by SIGTERM. The
     * test's own handler absorbs a signal that comes too early. */
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = ignore_signal;
    sigaction(SIGTERM, &sa, &old);
    char maddr[128];
    snprintf(maddr, sizeof maddr, "unix:%s/main.sock", dir);
    setenv("VKC_PROVIDER_LISTEN", maddr, 1);
    char *args[] = {"prov", "--log-level=warn"};
    struct main_run r = {.argc = 2, .argv = args};
    pthread_t t;
    pthread_create(&t, NULL, main_thread, &r);
    vk_channel *mc = vk_channel_open(maddr, 0);
    ck_assert(vk_channel_wait_ready(mc, 5000));
    Vkc__Provider__V1__HandshakeResponse *hr = handshake(mc, "");
    ck_assert_str_eq(hr->provider_name, "testprov");
    protobuf_c_message_free_unpacked(&hr->base, NULL);
    vk_channel_close(mc);
    for (int i = 0; i < 100 && !r.done; i++) {
        kill(getpid(), SIGTERM);
        sleep_ms(50);
    }
    pthread_join(t, NULL);
    ck_assert_int_eq(r.rc, 0);
    unsetenv("VKC_PROVIDER_LISTEN");
    sigaction(SIGTERM, &old, NULL);
    vk_log_set_level(VK_LOG_INFO);
    vk_log_set_component(NULL);
}
END_TEST

static Suite *provider_suite(void)
{
    Suite *s = suite_create("provider");
    TCase *tc = tcase_create("rpc");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, handshake_reports_name_version_and_capabilities);
    tcase_add_test(tc, null_callbacks_answer_unimplemented);
    tcase_add_test(tc, malformed_pod_is_invalid_argument);
    tcase_add_test(tc, callback_errors_reach_the_client);
    tcase_add_test(tc, before_call_can_fail_a_call);
    tcase_add_test(tc, get_pods_and_node);
    tcase_add_test(tc, watch_node_sends_a_node_per_change);
    tcase_add_test(tc, watch_pod_status_initial_then_coalesced);
    tcase_add_test(tc, watch_pod_status_second_watcher_starts_from_current_state);
    tcase_add_test(tc, logs_stream_backpressure_and_cancel);
    tcase_add_test(tc, exec_round_trip);
    tcase_add_test(tc, exec_without_start_is_invalid_argument);
    tcase_add_test(tc, exec_sees_the_user_go_away);
    tcase_add_test(tc, exec_malformed_input_is_invalid_argument);
    tcase_add_test(tc, bad_input_is_logged_once);
    tcase_add_test(tc, port_forward_echo);
    tcase_add_test(tc, core_callback_round_trip);
    tcase_add_test(tc, provider_main_flags_and_signals);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    vk_rpc_init();
    SRunner *sr = srunner_create(provider_suite());
    /* gRPC's threads do not survive fork(): run the tests in this process. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    vk_rpc_shutdown();
    return failed == 0 ? 0 : 1;
}
