/* test_mock.c -- vkc-provider-mock as the core sees it: the binary is
 * started on a Unix socket and called over gRPC with rpc.h.
 *
 * The binary comes from $VKC_BIN_DIR (default build/bin). Each case starts
 * its own provider so that faults and flags stay local to it. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "provider.pb-c.h"
#include "rpc.h"
#include "harness.h"

#define P "/vkc.provider.v1.Provider/"
#define T 5000 /* deadline of every unary call, ms */

typedef struct mock {
    pid_t pid;
    char dir[64];
    char faults[128];
    vk_channel *ch;
} mock;

static mock m;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* Start the mock with extra flags (NULL-terminated) and, when faults is not
 * NULL, a fault file with that text. */
static void start(const char *faults, ...)
{
    const char *argv[16];
    int argc = 0;
    char bin[512];
    snprintf(bin, sizeof bin, "%s/vkc-provider-mock", harness_bin_dir());
    argv[argc++] = bin;
    va_list ap;
    va_start(ap, faults);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 12;)
        argv[argc++] = a;
    va_end(ap);

    ck_assert_ptr_nonnull(harness_make_tmpdir(m.dir, sizeof m.dir, "vkc-mock"));
    if (faults) {
        snprintf(m.faults, sizeof m.faults, "%s/faults", m.dir);
        write_file(m.faults, faults);
        argv[argc++] = "--faults";
        argv[argc++] = m.faults;
    }
    argv[argc] = NULL;
    char listen[128];
    snprintf(listen, sizeof listen, "unix:%s/p.sock", m.dir);

    char listen_env[160];
    snprintf(listen_env, sizeof listen_env, "VKC_PROVIDER_LISTEN=%s", listen);
    const char *env[] = {listen_env, NULL};
    const char *unset[] = {"VKC_MOCK_FAULTS", "VKC_MOCK_START_DELAY_MS", NULL};
    m.pid = harness_provider_spawn(argv, env, unset);
    /* Connecting before the socket exists would cost a gRPC reconnect
     * back-off, so wait for it first. */
    char sock[128];
    snprintf(sock, sizeof sock, "%s/p.sock", m.dir);
    ck_assert_msg(harness_wait_socket(&m.pid, sock, 10000, 10),
                  "mock provider exited at start (%s)", bin);
    m.ch = vk_channel_open(listen, 0);
    ck_assert_ptr_nonnull(m.ch);
    ck_assert_msg(vk_channel_wait_ready(m.ch, 10000), "mock provider did not come up (%s)", bin);
}

/* Wait up to ms for the process to end; its wait status, or -1. */
static int reap(int ms)
{
    int status = harness_reap(m.pid, ms, 10);
    if (status != -1)
        m.pid = 0;
    return status;
}

/* SIGTERM, which must end the process with 0 (and leak-free under LSan). */
static void stop(void)
{
    if (m.ch)
        vk_channel_close(m.ch);
    m.ch = NULL;
    harness_assert_stops(&m.pid, 10000, 10, "mock provider");
    if (m.faults[0])
        unlink(m.faults);
    m.faults[0] = '\0';
    char sock[128];
    snprintf(sock, sizeof sock, "%s/p.sock", m.dir);
    unlink(sock);
    rmdir(m.dir);
}

static void setup(void)
{
    vk_rpc_init();
    memset(&m, 0, sizeof m);
}

static void teardown(void)
{
    if (m.pid > 0) {
        kill(m.pid, SIGKILL);
        waitpid(m.pid, NULL, 0);
    }
    if (m.ch)
        vk_channel_close(m.ch);
    vk_rpc_shutdown();
}

/* ---- calls ------------------------------------------------------------- */

static int unary(const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *desc, void *resp, int timeout_ms,
                 vk_status *st)
{
    char path[128];
    snprintf(path, sizeof path, P "%s", method);
    ProtobufCMessage *r = NULL;
    int code = vk_unary(m.ch, path, req, desc, timeout_ms, &r, st);
    if (resp)
        *(ProtobufCMessage **)resp = r;
    else if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

static int ping(int timeout_ms)
{
    Vkc__Provider__V1__PingRequest req = VKC__PROVIDER__V1__PING_REQUEST__INIT;
    return unary("Ping", &req.base, &vkc__provider__v1__ping_response__descriptor, NULL,
                 timeout_ms, NULL);
}

static char pod_buf[2048];

/* A pod with an init container and container "app"; extra is spliced into
 * metadata (e.g. annotations). */
static const char *pod_doc(const char *name, const char *uid, const char *restart,
                           const char *extra)
{
    snprintf(pod_buf, sizeof pod_buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"default\",\"uid\":\"%s\"%s},\"spec\":{\"restartPolicy\":\"%s\","
             "\"initContainers\":[{\"name\":\"setup\",\"image\":\"busybox\"}],"
             "\"containers\":[{\"name\":\"app\",\"image\":\"busybox\","
             "\"env\":[{\"name\":\"GREETING\",\"value\":\"hello\"}]}]}}",
             name, uid, extra ? extra : "", restart ? restart : "Always");
    return pod_buf;
}

static int pod_call(const char *method, const char *json, vk_status *st)
{
    /* Create, Update and Delete requests share one shape. */
    Vkc__Provider__V1__CreatePodRequest req = VKC__PROVIDER__V1__CREATE_POD_REQUEST__INIT;
    req.pod_json.data = (uint8_t *)json;
    req.pod_json.len = strlen(json);
    const ProtobufCMessageDescriptor *d =
        strcmp(method, "CreatePod") == 0 ? &vkc__provider__v1__create_pod_response__descriptor
        : strcmp(method, "UpdatePod") == 0 ? &vkc__provider__v1__update_pod_response__descriptor
                                           : &vkc__provider__v1__delete_pod_response__descriptor;
    return unary(method, &req.base, d, NULL, T, st);
}

static int create(const char *name, const char *uid)
{
    return pod_call("CreatePod", pod_doc(name, uid, NULL, NULL), NULL);
}

/* ---- JSON ---------------------------------------------------------------- */

/* The status of a pod: its JSON tree (free with yajl_tree_free), NULL when
 * the call failed with *code. */
static yajl_val status_of(const char *name, int *code)
{
    Vkc__Provider__V1__GetPodStatusRequest req = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref(name);
    req.pod = &ref;
    Vkc__Provider__V1__GetPodStatusResponse *resp = NULL;
    *code = unary("GetPodStatus", &req.base, &vkc__provider__v1__get_pod_status_response__descriptor,
                  &resp, T, NULL);
    if (*code != VK_OK)
        return NULL;
    yajl_val v = harness_json_parse(resp->status_json.data, resp->status_json.len);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return v;
}

static bool has_phase(const char *name, const char *phase)
{
    int code;
    yajl_val v = status_of(name, &code);
    const char *path[] = {"phase", NULL};
    bool yes = v && harness_jstr(v, path) && strcmp(harness_jstr(v, path), phase) == 0;
    yajl_tree_free(v);
    return yes;
}

#define EVENTUALLY(cond, ms) HARNESS_EVENTUALLY(cond, ms, 10)

static vk_call *watch_pods(void)
{
    vk_call *c = vk_call_start(m.ch, P "WatchPodStatus", 10000);
    ck_assert_ptr_nonnull(c);
    Vkc__Provider__V1__WatchPodStatusRequest req = VKC__PROVIDER__V1__WATCH_POD_STATUS_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    return c;
}

/* Read pod status events until pod uid reaches phase (or, with phase NULL,
 * is deleted); false when the stream ended first. Sequences must grow. */
static bool watch_until(vk_call *c, const char *uid, const char *phase)
{
    Vkc__Provider__V1__PodStatusEvent *ev = NULL;
    uint64_t seq = 0;
    bool reached = false;
    while (!reached && vk_call_recv(c, &vkc__provider__v1__pod_status_event__descriptor,
                                     (ProtobufCMessage **)&ev) == 1) {
        if (strcmp(ev->pod->uid, uid) == 0) {
            ck_assert_uint_gt(ev->sequence, seq);
            seq = ev->sequence;
            if (!phase) {
                reached = ev->deleted;
            } else if (!ev->deleted) {
                yajl_val st = harness_json_parse(ev->status_json.data, ev->status_json.len);
                const char *path[] = {"phase", NULL};
                reached = harness_jstr(st, path) && strcmp(harness_jstr(st, path), phase) == 0;
                yajl_tree_free(st);
            }
        }
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    return reached;
}

static void end_call(vk_call *c)
{
    vk_call_cancel(c);
    vk_call_finish(c, NULL);
    vk_call_free(c);
}

/* ---- lifecycle ------------------------------------------------------------ */

START_TEST(handshake_lists_capabilities)
{
    start(NULL, NULL);
    Vkc__Provider__V1__HandshakeRequest req = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = 1;
    req.node_name = "vkc-test";
    Vkc__Provider__V1__HandshakeResponse *resp = NULL;
    ck_assert_int_eq(unary("Handshake", &req.base, &vkc__provider__v1__handshake_response__descriptor,
                           &resp, T, NULL), VK_OK);
    ck_assert_uint_eq(resp->protocol_version, 1);
    ck_assert_str_eq(resp->provider_name, "mock");
    static const char *const caps[] = {"WatchPodStatus", "WatchNode", "GetContainerLogs",
                                       "ExecInContainer", "AttachToContainer", "PortForward",
                                       "GetStatsSummary", "GetMetricsResource"};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        bool found = false;
        for (size_t j = 0; j < resp->n_capabilities; j++)
            found |= strcmp(resp->capabilities[j], caps[i]) == 0;
        ck_assert_msg(found, "capability %s missing", caps[i]);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    stop();
}
END_TEST

START_TEST(create_runs_pod)
{
    start(NULL, NULL);
    ck_assert_int_eq(create("web", "u1"), VK_OK);
    int code;
    yajl_val st = status_of("web", &code);
    ck_assert_int_eq(code, VK_OK);
    const char *phase[] = {"phase", NULL}, *ip[] = {"podIP", NULL}, *host[] = {"hostIP", NULL};
    ck_assert_str_eq(harness_jstr(st, phase), "Running");
    ck_assert_ptr_nonnull(harness_jstr(st, ip));
    ck_assert_ptr_nonnull(harness_jstr(st, host));
    yajl_val app = harness_jarr(st, "containerStatuses", 0);
    ck_assert_ptr_nonnull(app);
    const char *name[] = {"name", NULL}, *started[] = {"state", "running", "startedAt", NULL};
    const char *ready[] = {"ready", NULL};
    ck_assert_str_eq(harness_jstr(app, name), "app");
    ck_assert_ptr_nonnull(harness_jstr(app, started));
    ck_assert(YAJL_IS_TRUE(yajl_tree_get(app, ready, yajl_t_any)));
    yajl_val init = harness_jarr(st, "initContainerStatuses", 0);
    ck_assert_ptr_nonnull(init);
    const char *reason[] = {"state", "terminated", "reason", NULL};
    ck_assert_str_eq(harness_jstr(init, reason), "Completed");
    yajl_tree_free(st);

    /* Idempotent for the same uid, refused for another. */
    ck_assert_int_eq(create("web", "u1"), VK_OK);
    vk_status s = {0, NULL};
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", "u2", NULL, NULL), &s), VK_ALREADY_EXISTS);
    ck_assert_ptr_nonnull(strstr(s.message, "default/web"));
    vk_status_clear(&s);

    /* GetPods and GetPod show it with its status. */
    Vkc__Provider__V1__GetPodsRequest lreq = VKC__PROVIDER__V1__GET_PODS_REQUEST__INIT;
    Vkc__Provider__V1__GetPodsResponse *list = NULL;
    ck_assert_int_eq(unary("GetPods", &lreq.base, &vkc__provider__v1__get_pods_response__descriptor,
                           &list, T, NULL), VK_OK);
    ck_assert_uint_eq(list->n_pods_json, 1);
    yajl_val pod = harness_json_parse(list->pods_json[0].data, list->pods_json[0].len);
    const char *pname[] = {"metadata", "name", NULL}, *pphase[] = {"status", "phase", NULL};
    ck_assert_str_eq(harness_jstr(pod, pname), "web");
    ck_assert_str_eq(harness_jstr(pod, pphase), "Running");
    yajl_tree_free(pod);
    protobuf_c_message_free_unpacked(&list->base, NULL);

    /* Update replaces the document. */
    ck_assert_int_eq(pod_call("UpdatePod", pod_doc("web", "u1", NULL, ",\"labels\":{\"v\":\"2\"}"), NULL),
                     VK_OK);
    Vkc__Provider__V1__GetPodRequest greq = VKC__PROVIDER__V1__GET_POD_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref("web");
    greq.pod = &ref;
    Vkc__Provider__V1__GetPodResponse *got = NULL;
    ck_assert_int_eq(unary("GetPod", &greq.base, &vkc__provider__v1__get_pod_response__descriptor,
                           &got, T, NULL), VK_OK);
    pod = harness_json_parse(got->pod_json.data, got->pod_json.len);
    const char *label[] = {"metadata", "labels", "v", NULL};
    ck_assert_str_eq(harness_jstr(pod, label), "2");
    yajl_tree_free(pod);
    protobuf_c_message_free_unpacked(&got->base, NULL);
    ck_assert_int_eq(pod_call("UpdatePod", pod_doc("nope", "u9", NULL, NULL), NULL), VK_NOT_FOUND);

    /* Delete: gone afterwards, and a second delete is NOT_FOUND. */
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("web", "u1", NULL, NULL), NULL), VK_OK);
    st = status_of("web", &code);
    ck_assert_ptr_null(st);
    ck_assert_int_eq(code, VK_NOT_FOUND);
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("web", "u1", NULL, NULL), NULL), VK_NOT_FOUND);
    stop();
}
END_TEST

START_TEST(start_delay_shows_pending)
{
    start(NULL, "--start-delay", "2000", NULL); /* long enough for valgrind */
    vk_call *c = watch_pods();
    ck_assert_int_eq(create("slow", "u1"), VK_OK);
    int code;
    yajl_val st = status_of("slow", &code);
    const char *phase[] = {"phase", NULL};
    const char *waiting[] = {"state", "waiting", "reason", NULL};
    ck_assert_str_eq(harness_jstr(st, phase), "Pending");
    ck_assert_str_eq(harness_jstr(harness_jarr(st, "containerStatuses", 0), waiting),
                     "ContainerCreating");
    yajl_tree_free(st);
    ck_assert(watch_until(c, "u1", "Running")); /* pushed, not polled */
    end_call(c);
    stop();
}
END_TEST

START_TEST(capacity_bounds_pods)
{
    start(NULL, "--pods", "1", NULL);
    ck_assert_int_eq(create("a", "u1"), VK_OK);
    ck_assert_int_eq(create("b", "u2"), VK_RESOURCE_EXHAUSTED);
    stop();
}
END_TEST

START_TEST(exit_code_annotation)
{
    start(NULL, "--log-interval", "20", NULL);
    vk_call *c = watch_pods();
    const char *ann = ",\"annotations\":{\"mock.vkc.io/exit-code\":\"3\",\"mock.vkc.io/run-ms\":\"50\"}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("never", "u1", "Never", ann), NULL), VK_OK);
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("always", "u2", "Always", ann), NULL), VK_OK);
    const char *ok = ",\"annotations\":{\"mock.vkc.io/exit-code\":\"0\",\"mock.vkc.io/run-ms\":\"50\"}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("done", "u3", "OnFailure", ok), NULL), VK_OK);
    ck_assert(watch_until(c, "u1", "Failed")); /* pushed, not polled */
    end_call(c);
    EVENTUALLY(has_phase("done", "Succeeded"), 10000);

    int code;
    yajl_val st = status_of("never", &code);
    const char *exit_code[] = {"state", "terminated", "exitCode", NULL};
    yajl_val ec = yajl_tree_get(harness_jarr(st, "containerStatuses", 0), exit_code, yajl_t_number);
    ck_assert_ptr_nonnull(ec);
    ck_assert_int_eq(YAJL_GET_INTEGER(ec), 3);
    yajl_tree_free(st);

    /* Always: it keeps running, restarting. */
    harness_sleep_ms(200);
    st = status_of("always", &code);
    const char *phase[] = {"phase", NULL}, *restarts[] = {"restartCount", NULL};
    ck_assert_str_eq(harness_jstr(st, phase), "Running");
    yajl_val rc = yajl_tree_get(harness_jarr(st, "containerStatuses", 0), restarts, yajl_t_number);
    ck_assert_int_ge(YAJL_GET_INTEGER(rc), 2);
    yajl_tree_free(st);

    vk_status s = {0, NULL};
    const char *bad = ",\"annotations\":{\"mock.vkc.io/exit-code\":\"many\"}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("bad", "u4", NULL, bad), &s), VK_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(s.message, "mock.vkc.io/exit-code"));
    vk_status_clear(&s);
    stop();
}
END_TEST

START_TEST(watch_delivers_running)
{
    start(NULL, NULL);
    vk_call *c = watch_pods();
    ck_assert_int_eq(create("watched", "uw"), VK_OK);
    ck_assert(watch_until(c, "uw", "Running"));
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("watched", "uw", NULL, NULL), NULL), VK_OK);
    ck_assert(watch_until(c, "uw", NULL));
    end_call(c);
    stop();
}
END_TEST

/* ---- node ------------------------------------------------------------------ */

static Vkc__Provider__V1__Node *get_node(void)
{
    Vkc__Provider__V1__GetNodeRequest req = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    Vkc__Provider__V1__Node *n = NULL;
    ck_assert_int_eq(unary("GetNode", &req.base, &vkc__provider__v1__node__descriptor, &n, T, NULL),
                     VK_OK);
    return n;
}

static const char *condition(yajl_val conds, const char *type)
{
    const char *t[] = {"type", NULL}, *s[] = {"status", NULL};
    for (size_t i = 0; i < conds->u.array.len; i++)
        if (strcmp(harness_jstr(conds->u.array.values[i], t), type) == 0)
            return harness_jstr(conds->u.array.values[i], s);
    return NULL;
}

START_TEST(node_and_conditions)
{
    start("", "--cpu", "8", "--memory", "32Gi", "--pods", "50", NULL);
    Vkc__Provider__V1__Node *n = get_node();
    const char *want[][2] = {{"cpu", "8"}, {"memory", "32Gi"}, {"pods", "50"}};
    for (size_t i = 0; i < 3; i++) {
        bool found = false;
        for (size_t j = 0; j < n->n_capacity; j++)
            found |= strcmp(n->capacity[j]->key, want[i][0]) == 0 &&
                     strcmp(n->capacity[j]->value, want[i][1]) == 0;
        ck_assert_msg(found, "capacity %s=%s missing", want[i][0], want[i][1]);
    }
    ck_assert_str_eq(n->operating_system, "linux");
    yajl_val info = harness_json_parse(n->node_info_json.data, n->node_info_json.len);
    const char *image[] = {"osImage", NULL}, *rt[] = {"containerRuntimeVersion", NULL};
    const char *kernel[] = {"kernelVersion", NULL};
    ck_assert_str_eq(harness_jstr(info, image), "vkc mock");
    ck_assert_ptr_nonnull(strstr(harness_jstr(info, rt), "mock://"));
    ck_assert_ptr_nonnull(harness_jstr(info, kernel));
    yajl_tree_free(info);
    yajl_val conds = harness_json_parse(n->conditions_json.data, n->conditions_json.len);
    ck_assert_str_eq(condition(conds, "Ready"), "True");
    ck_assert_str_eq(condition(conds, "DiskPressure"), "False");
    ck_assert_str_eq(condition(conds, "PIDPressure"), "False");
    yajl_tree_free(conds);
    protobuf_c_message_free_unpacked(&n->base, NULL);

    /* A condition changed at run time reaches WatchNode. */
    vk_call *c = vk_call_start(m.ch, P "WatchNode", 10000);
    Vkc__Provider__V1__WatchNodeRequest wreq = VKC__PROVIDER__V1__WATCH_NODE_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(c, &wreq.base), 0);
    vk_call_close_send(c);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__node__descriptor, (ProtobufCMessage **)&n), 1);
    protobuf_c_message_free_unpacked(&n->base, NULL);
    write_file(m.faults, "condition DiskPressure True\n");
    kill(m.pid, SIGHUP);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__node__descriptor, (ProtobufCMessage **)&n), 1);
    conds = harness_json_parse(n->conditions_json.data, n->conditions_json.len);
    ck_assert_str_eq(condition(conds, "DiskPressure"), "True");
    ck_assert_str_eq(condition(conds, "Ready"), "True");
    yajl_tree_free(conds);
    protobuf_c_message_free_unpacked(&n->base, NULL);
    end_call(c);
    stop();
}
END_TEST

/* ---- logs ------------------------------------------------------------------ */

typedef struct text {
    char data[65536];
    size_t len;
} text;

static vk_call *logs_call(const char *pod, const char *ctr, long tail, long limit, bool follow)
{
    Vkc__Provider__V1__GetContainerLogsRequest req =
        VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref(pod);
    Vkc__Provider__V1__Int64Value t = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__Int64Value l = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    req.pod = &ref;
    req.container = (char *)ctr;
    req.follow = follow;
    if (tail >= 0) {
        t.value = tail;
        req.tail_lines = &t;
    }
    if (limit >= 0) {
        l.value = limit;
        req.limit_bytes = &l;
    }
    vk_call *c = vk_call_start(m.ch, P "GetContainerLogs", 10000);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    vk_call_close_send(c);
    return c;
}

/* Receive log chunks until the stream ends or `lines` lines arrived. */
static void recv_logs(vk_call *c, text *t, int lines)
{
    Vkc__Provider__V1__LogChunk *chunk = NULL;
    int seen = 0;
    while ((lines < 0 || seen < lines) &&
           vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor, (ProtobufCMessage **)&chunk) == 1) {
        ck_assert_uint_lt(t->len + chunk->data.len, sizeof t->data);
        memcpy(t->data + t->len, chunk->data.data, chunk->data.len);
        t->len += chunk->data.len;
        t->data[t->len] = '\0';
        for (size_t i = 0; i < chunk->data.len; i++)
            seen += chunk->data.data[i] == '\n';
        protobuf_c_message_free_unpacked(&chunk->base, NULL);
    }
}

static int count_lines(const text *t)
{
    int n = 0;
    for (size_t i = 0; i < t->len; i++)
        n += t->data[i] == '\n';
    return n;
}

START_TEST(logs_tail_limit_follow)
{
    start(NULL, "--log-interval", "50", NULL);
    ck_assert_int_eq(create("chatty", "u1"), VK_OK);
    harness_sleep_ms(400);

    text *t = calloc(1, sizeof *t);
    vk_call *c = logs_call("chatty", "app", 2, -1, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    ck_assert_int_eq(count_lines(t), 2);
    ck_assert_ptr_nonnull(strstr(t->data, " chatty/app line "));

    memset(t, 0, sizeof *t);
    c = logs_call("chatty", "app", -1, 10, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    ck_assert_uint_eq(t->len, 10);

    /* Follow: new lines keep coming until the reader cancels. Three lines
     * take 150 ms; the bound only shows they are streamed, not held back,
     * and leaves a loaded machine room for the call's set-up. */
    memset(t, 0, sizeof *t);
    c = logs_call("chatty", "app", 0, -1, true);
    long began = harness_now_ms();
    recv_logs(c, t, 3);
    /* At least three: a follower that fell behind sends the lines it
     * missed together, so the last chunk may hold more. */
    ck_assert_int_ge(count_lines(t), 3);
    ck_assert_int_lt(harness_now_ms() - began, 10000);
    vk_call_cancel(c);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_CANCELLED);
    vk_call_free(c);
    ck_assert_int_eq(ping(T), VK_OK);

    /* Follow ends when the pod goes. */
    memset(t, 0, sizeof *t);
    c = logs_call("chatty", "app", 0, -1, true);
    recv_logs(c, t, 1);
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("chatty", "u1", NULL, NULL), NULL), VK_OK);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);

    /* Unknown pod or container, and previous logs of a container that never restarted. */
    ck_assert_int_eq(create("quiet", "u2"), VK_OK);
    vk_status s = {0, NULL};
    c = logs_call("quiet", "nosuch", -1, -1, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, &s), VK_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(s.message, "nosuch"));
    vk_status_clear(&s);
    vk_call_free(c);
    c = logs_call("ghost", "app", -1, -1, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_NOT_FOUND);
    vk_call_free(c);
    free(t);
    stop();
}
END_TEST

/* ---- exec, attach, port-forward --------------------------------------------- */

typedef struct exec_result {
    text out, err;
    int exit_code;
    bool exited;
    int code;
} exec_result;

static vk_call *exec_start(const char *method, const char *const *cmd, size_t n, bool in, bool tty)
{
    Vkc__Provider__V1__ExecStart st = VKC__PROVIDER__V1__EXEC_START__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref("box");
    Vkc__Provider__V1__TerminalSize size = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    st.pod = &ref;
    st.container = "app";
    st.command = (char **)cmd;
    st.n_command = n;
    st.stdin = in;
    st.stdout = st.stderr = true;
    st.tty = tty;
    if (tty) {
        size.width = 80;
        size.height = 24;
        st.size = &size;
    }
    Vkc__Provider__V1__ExecInput msg = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    msg.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    msg.start = &st;
    char path[64];
    snprintf(path, sizeof path, P "%s", method);
    vk_call *c = vk_call_start(m.ch, path, 10000);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &msg.base), 0);
    return c;
}

static void exec_stdin(vk_call *c, const char *data)
{
    Vkc__Provider__V1__ExecInput msg = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    if (data) {
        msg.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN;
        msg.stdin.data = (uint8_t *)data;
        msg.stdin.len = strlen(data);
    } else {
        msg.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN_CLOSE;
        msg.stdin_close = true;
    }
    ck_assert_int_eq(vk_call_send(c, &msg.base), 0);
}

static void exec_resize(vk_call *c, uint32_t w, uint32_t h)
{
    Vkc__Provider__V1__TerminalSize size = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    size.width = w;
    size.height = h;
    Vkc__Provider__V1__ExecInput msg = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    msg.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_RESIZE;
    msg.resize = &size;
    ck_assert_int_eq(vk_call_send(c, &msg.base), 0);
}

static void append(text *t, const ProtobufCBinaryData *d)
{
    ck_assert_uint_lt(t->len + d->len, sizeof t->data);
    memcpy(t->data + t->len, d->data, d->len);
    t->len += d->len;
    t->data[t->len] = '\0';
}

/* Receive output until stdout holds needle (NULL: until the stream ends). */
static void exec_recv(vk_call *c, exec_result *r, const char *needle)
{
    Vkc__Provider__V1__ExecOutput *o = NULL;
    while (!(needle && strstr(r->out.data, needle)) &&
           vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor, (ProtobufCMessage **)&o) == 1) {
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT)
            append(&r->out, &o->stdout);
        else if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDERR)
            append(&r->err, &o->stderr);
        else if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT) {
            r->exited = true;
            r->exit_code = o->exit->exit_code;
        }
        protobuf_c_message_free_unpacked(&o->base, NULL);
    }
    if (!needle)
        r->code = vk_call_finish(c, NULL);
}

/* The mock's thread count: each bidirectional call has a reader thread
 * there, so a call that ends shows as one thread less. */
static int mock_threads(void)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)m.pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    int n = 0;
    while (fgets(line, sizeof line, f) && sscanf(line, "Threads: %d", &n) != 1)
        ;
    fclose(f);
    return n;
}

/* Run a command to its end, with stdin when in is not NULL. */
static exec_result *run(const char *const *cmd, size_t n, const char *in)
{
    exec_result *r = calloc(1, sizeof *r);
    vk_call *c = exec_start("ExecInContainer", cmd, n, in != NULL, false);
    if (in) {
        exec_stdin(c, in);
        exec_stdin(c, NULL);
    }
    vk_call_close_send(c);
    exec_recv(c, r, NULL);
    vk_call_free(c);
    return r;
}

START_TEST(exec_builtins)
{
    start(NULL, NULL);
    ck_assert_int_eq(create("box", "ub"), VK_OK);

    const char *echo[] = {"echo", "hello", "world"};
    exec_result *r = run(echo, 3, NULL);
    ck_assert_int_eq(r->code, VK_OK);
    ck_assert(r->exited);
    ck_assert_str_eq(r->out.data, "hello world\n");
    ck_assert_int_eq(r->exit_code, 0);
    free(r);

    const char *exit3[] = {"sh", "-c", "exit 3"};
    r = run(exit3, 3, NULL);
    ck_assert(r->exited);
    ck_assert_int_eq(r->exit_code, 3);
    free(r);

    const char *cat[] = {"cat"};
    r = run(cat, 1, "from stdin");
    ck_assert_str_eq(r->out.data, "from stdin");
    ck_assert_int_eq(r->exit_code, 0);
    free(r);

    const char *env[] = {"env"};
    r = run(env, 1, NULL);
    ck_assert_ptr_nonnull(strstr(r->out.data, "GREETING=hello\n"));
    free(r);

    const char *unknown[] = {"nosuchcmd", "x"};
    r = run(unknown, 2, NULL);
    ck_assert_int_eq(r->exit_code, 127);
    ck_assert_ptr_nonnull(strstr(r->err.data, "nosuchcmd"));
    free(r);

    const char *pipe_[] = {"sh", "-c", "echo hi | cat"};
    r = run(pipe_, 3, NULL);
    ck_assert_int_eq(r->exit_code, 127);
    ck_assert_str_eq(r->err.data, "mock: unsupported command\n");
    free(r);

    /* A sleeping command ends when the user goes away: well before its
     * 30 s (the bound is wide for a loaded machine). */
    const char *sleep_[] = {"sleep", "30"};
    vk_call *c = exec_start("ExecInContainer", sleep_, 2, false, false);
    vk_call_close_send(c);
    harness_sleep_ms(100);
    long began = harness_now_ms();
    vk_call_cancel(c);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_CANCELLED);
    vk_call_free(c);
    ck_assert_int_lt(harness_now_ms() - began, 10000);

    /* yes writes its words without end, whole lines per message, and
     * stops when the user goes away: the call's thread in the mock ends. */
    const char *yes[] = {"yes", "ok", "go"};
    r = calloc(1, sizeof *r);
    c = exec_start("ExecInContainer", yes, 3, false, false);
    vk_call_close_send(c);
    exec_recv(c, r, "ok go\nok go\nok go\n");
    ck_assert_uint_eq(r->out.len % 6, 0);
    for (size_t i = 0; i < r->out.len; i += 6)
        ck_assert(memcmp(r->out.data + i, "ok go\n", 6) == 0);
    int running = mock_threads();
    vk_call_cancel(c);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_CANCELLED);
    vk_call_free(c);
    ck_assert(!r->exited);
    free(r);
    /* The thread ends once the mock has seen the cancel: poll for it, with
     * room for a loaded machine. */
    for (long end = harness_now_ms() + 10000; mock_threads() >= running && harness_now_ms() < end;)
        harness_sleep_ms(10);
    ck_assert_int_lt(mock_threads(), running);

    /* Unknown pod: an error status, no exit. */
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("box", "ub", NULL, NULL), NULL), VK_OK);
    r = run(echo, 3, NULL);
    ck_assert_int_eq(r->code, VK_NOT_FOUND);
    ck_assert(!r->exited);
    free(r);
    stop();
}
END_TEST

START_TEST(exec_tty_shell)
{
    start(NULL, NULL);
    ck_assert_int_eq(create("box", "ub"), VK_OK);
    const char *sh[] = {"sh"};
    exec_result *r = calloc(1, sizeof *r);
    vk_call *c = exec_start("ExecInContainer", sh, 1, true, true);
    exec_recv(c, r, "$ ");
    exec_stdin(c, "stty size\r");
    exec_recv(c, r, "24 80\r\n");
    exec_resize(c, 100, 30);
    exec_stdin(c, "stty size\r");
    exec_recv(c, r, "30 100\r\n");
    exec_stdin(c, "echo typed\r");
    exec_recv(c, r, "echo typed\r\ntyped\r\n"); /* the echo of the input, then the output */
    exec_stdin(c, "exit 4\r");
    vk_call_close_send(c);
    exec_recv(c, r, NULL);
    vk_call_free(c);
    ck_assert_int_eq(r->code, VK_OK);
    ck_assert(r->exited);
    ck_assert_int_eq(r->exit_code, 4);
    free(r);
    stop();
}
END_TEST

START_TEST(attach_and_port_forward)
{
    start(NULL, NULL);
    ck_assert_int_eq(create("box", "ub"), VK_OK);

    exec_result *r = calloc(1, sizeof *r);
    vk_call *c = exec_start("AttachToContainer", NULL, 0, true, false);
    exec_stdin(c, "to main\n");
    exec_recv(c, r, "to main\n");
    exec_stdin(c, NULL);
    vk_call_close_send(c);
    exec_recv(c, r, NULL);
    vk_call_free(c);
    ck_assert_int_eq(r->code, VK_OK);
    ck_assert(r->exited);
    ck_assert_int_eq(r->exit_code, 0);
    free(r);

    c = vk_call_start(m.ch, P "PortForward", 10000);
    Vkc__Provider__V1__PortForwardStart st = VKC__PROVIDER__V1__PORT_FORWARD_START__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref("box");
    st.pod = &ref;
    st.port = 8080;
    Vkc__Provider__V1__PortForwardInput in = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_START;
    in.start = &st;
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_DATA;
    in.data.data = (uint8_t *)"ping";
    in.data.len = 4;
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    Vkc__Provider__V1__PortForwardOutput *out = NULL;
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__port_forward_output__descriptor,
                                  (ProtobufCMessage **)&out), 1);
    ck_assert_uint_eq(out->data.len, 4);
    ck_assert(memcmp(out->data.data, "ping", 4) == 0);
    protobuf_c_message_free_unpacked(&out->base, NULL);
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_CLOSE_WRITE;
    in.close_write = true;
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    vk_call_close_send(c);
    ck_assert_int_eq(vk_call_recv(c, &vkc__provider__v1__port_forward_output__descriptor,
                                  (ProtobufCMessage **)&out), 0);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    stop();
}
END_TEST

/* ---- stats -------------------------------------------------------------------- */

START_TEST(stats_and_metrics)
{
    start(NULL, NULL);
    ck_assert_int_eq(create("busy", "uid-busy"), VK_OK);

    Vkc__Provider__V1__GetStatsSummaryRequest sreq = VKC__PROVIDER__V1__GET_STATS_SUMMARY_REQUEST__INIT;
    Vkc__Provider__V1__GetStatsSummaryResponse *s = NULL;
    ck_assert_int_eq(unary("GetStatsSummary", &sreq.base,
                           &vkc__provider__v1__get_stats_summary_response__descriptor, &s, T, NULL),
                     VK_OK);
    yajl_val sum = harness_json_parse(s->summary_json.data, s->summary_json.len);
    const char *mem[] = {"node", "memory", "workingSetBytes", NULL};
    ck_assert_ptr_nonnull(yajl_tree_get(sum, mem, yajl_t_number));
    yajl_val pod = harness_jarr(sum, "pods", 0);
    ck_assert_ptr_nonnull(pod);
    const char *name[] = {"podRef", "name", NULL}, *uid[] = {"podRef", "uid", NULL};
    const char *cpu[] = {"cpu", "usageNanoCores", NULL}, *cname[] = {"name", NULL};
    ck_assert_str_eq(harness_jstr(pod, name), "busy");
    ck_assert_str_eq(harness_jstr(pod, uid), "uid-busy");
    ck_assert_ptr_nonnull(yajl_tree_get(pod, cpu, yajl_t_number));
    ck_assert_str_eq(harness_jstr(harness_jarr(pod, "containers", 0), cname), "app");
    yajl_tree_free(sum);
    protobuf_c_message_free_unpacked(&s->base, NULL);

    Vkc__Provider__V1__GetMetricsResourceRequest mreq = VKC__PROVIDER__V1__GET_METRICS_RESOURCE_REQUEST__INIT;
    Vkc__Provider__V1__GetMetricsResourceResponse *mr = NULL;
    ck_assert_int_eq(unary("GetMetricsResource", &mreq.base,
                           &vkc__provider__v1__get_metrics_resource_response__descriptor, &mr, T, NULL),
                     VK_OK);
    ck_assert_ptr_nonnull(strstr(mr->text, "# TYPE pod_cpu_usage_seconds_total counter\n"));
    ck_assert_ptr_nonnull(strstr(mr->text, "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"busy\"} "));
    ck_assert_ptr_nonnull(strstr(mr->text,
        "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"busy\"} "));
    ck_assert_ptr_nonnull(strstr(mr->text, "\nnode_memory_working_set_bytes "));
    protobuf_c_message_free_unpacked(&mr->base, NULL);
    stop();
}
END_TEST

/* ---- faults -------------------------------------------------------------------- */

START_TEST(fault_error_and_reload)
{
    start("# comment\nerror CreatePod UNAVAILABLE the back end is down\n", NULL);
    vk_status s = {0, NULL};
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("a", "u1", NULL, NULL), &s), VK_UNAVAILABLE);
    ck_assert_str_eq(s.message, "the back end is down");
    vk_status_clear(&s);
    ck_assert_int_eq(ping(T), VK_OK);

    /* SIGHUP swaps the rules; a broken file keeps the old ones. */
    write_file(m.faults, "error * 5\n");
    kill(m.pid, SIGHUP);
    EVENTUALLY(ping(T) == VK_NOT_FOUND, 10000);
    write_file(m.faults, "error Ping BOGUS\n");
    kill(m.pid, SIGHUP);
    harness_sleep_ms(200);
    ck_assert_int_eq(ping(T), VK_NOT_FOUND);
    write_file(m.faults, "");
    kill(m.pid, SIGHUP);
    EVENTUALLY(create("a", "u1") == VK_OK, 10000);
    stop();
}
END_TEST

START_TEST(fault_delay)
{
    /* Only GetNode is delayed. The delay is long enough that an undelayed
     * Ping stays well below it on a loaded machine (300 ms left it little
     * room). */
    start("delay GetNode 2000\n", NULL);
    long began = harness_now_ms();
    Vkc__Provider__V1__Node *n = get_node();
    ck_assert_int_ge(harness_now_ms() - began, 2000);
    protobuf_c_message_free_unpacked(&n->base, NULL);
    began = harness_now_ms();
    ck_assert_int_eq(ping(T), VK_OK);
    ck_assert_int_lt(harness_now_ms() - began, 2000);
    stop();
}
END_TEST

START_TEST(fault_hang)
{
    start("hang Ping\n", NULL);
    /* The caller's deadline ends the hung call: DEADLINE_EXCEEDED, and
     * long before the case's time limit (wide for a loaded machine). */
    long began = harness_now_ms();
    ck_assert_int_eq(ping(300), VK_DEADLINE_EXCEEDED);
    ck_assert_int_lt(harness_now_ms() - began, 10000);
    ck_assert_int_eq(create("a", "u1"), VK_OK);
    stop(); /* and it still stops cleanly */
}
END_TEST

START_TEST(fault_crash_after)
{
    start("crash-after 3\n", NULL);
    Vkc__Provider__V1__HandshakeRequest req = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = 1;
    ck_assert_int_eq(unary("Handshake", &req.base, &vkc__provider__v1__handshake_response__descriptor,
                           NULL, T, NULL), VK_OK); /* not counted */
    ck_assert_int_eq(ping(T), VK_OK);
    ck_assert_int_eq(ping(T), VK_OK);
    ck_assert_int_eq(ping(T), VK_UNAVAILABLE);
    int status = reap(10000);
    ck_assert_msg(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "expected death by SIGKILL, status 0x%x", status);
    stop();
}
END_TEST

START_TEST(bad_fault_file_fails_startup)
{
    char dir[] = "/tmp/vkc-mock-XXXXXX", file[64], bin[512];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/faults", dir);
    write_file(file, "delay Ping 10\nexplode now\n");
    const char *bindir = getenv("VKC_BIN_DIR");
    snprintf(bin, sizeof bin, "%s/vkc-provider-mock", bindir && bindir[0] ? bindir : "build/bin");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "VKC_PROVIDER_LISTEN=unix:%s/p.sock %s --faults %s 2>&1", dir, bin, file);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[4096] = "";
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 2);
    ck_assert_ptr_nonnull(strstr(out, "line=2"));
    unlink(file);
    rmdir(dir);
}
END_TEST

START_TEST(sigterm_with_open_streams)
{
    start(NULL, "--log-interval", "50", NULL);
    ck_assert_int_eq(create("box", "ub"), VK_OK);
    vk_call *logs = logs_call("box", "app", 0, -1, true);
    const char *cat[] = {"cat"};
    vk_call *ex = exec_start("ExecInContainer", cat, 1, true, false);
    harness_sleep_ms(200);
    /* The follow and the cat never end on their own: the SDK gives running
     * calls its stop grace (STOP_GRACE_MS, 3 s) and then cancels them. So
     * a stop takes about 3 s here; the bound shows the open streams do not
     * hold it up beyond that, with room for a loaded machine (a 5 s bound
     * left only 2 s of slack). stop() itself gives up at 10 s. */
    long began = harness_now_ms();
    stop();
    ck_assert_int_lt(harness_now_ms() - began, 9000);
    end_call(logs);
    end_call(ex);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mock provider");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"handshake", handshake_lists_capabilities},
        {"lifecycle", create_runs_pod},
        {"start delay", start_delay_shows_pending},
        {"capacity", capacity_bounds_pods},
        {"exit code", exit_code_annotation},
        {"watch", watch_delivers_running},
        {"node", node_and_conditions},
        {"logs", logs_tail_limit_follow},
        {"exec", exec_builtins},
        {"tty", exec_tty_shell},
        {"attach and port-forward", attach_and_port_forward},
        {"stats", stats_and_metrics},
        {"fault error", fault_error_and_reload},
        {"fault delay", fault_delay},
        {"fault hang", fault_hang},
        {"fault crash", fault_crash_after},
        {"bad fault file", bad_fault_file_fails_startup},
        {"sigterm", sigterm_with_open_streams},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 30);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
