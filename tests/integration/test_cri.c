/* test_cri.c -- vkc-provider-cri against a real containerd.
 *
 * main() runs tests/cri/setup.sh (which installs, configures and starts a
 * containerd of its own and imports a busybox image) unless
 * VKC_CRI_ENDPOINT names a runtime already. Each case starts the provider
 * on a Unix socket with a root directory of its own, drives it over gRPC as
 * the core would, and checks the runtime's side through CRI itself. The
 * test also plays the core's callback service (GetConfigMap, GetSecret,
 * RequestServiceAccountToken, EmitEvent) from objects each case puts there.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <yajl/yajl_tree.h>

#include "buf.h"
#include "cri.pb-c.h"
#include "provider.pb-c.h"
#include "rpc.h"
#include "harness.h"

#define P "/vkc.provider.v1.Provider/"
#define T 10000 /* deadline of every unary call, ms */
#define SYNC_PERIOD "2" /* --volume-sync-period of the provider, s */

static char endpoint[256];

typedef struct provider {
    pid_t pid;
    char dir[64];
    const char *runtime;    /* the provider's runtime: NULL for endpoint */
    const char *cri_api;    /* its --cri-api: NULL for the default */
    vk_channel *ch;     /* the provider */
    vk_channel *rt;     /* the runtime, to check what the provider did */
} provider;

static provider m;

#define EVENTUALLY(cond, ms) HARNESS_EVENTUALLY(cond, ms, 100)

/* ---- the core's callback service, as the test plays it --------------------------- */

#define CORE "/vkc.provider.v1.Core/"
#define MAX_OBJECTS 8

typedef struct fake_object {
    bool secret;
    char name[64];
    char *json;
} fake_object;

static struct {
    vk_server *server;
    pthread_mutex_t mu;     /* guards what follows */
    fake_object objects[MAX_OBJECTS];
    size_t n_objects;
    int tokens;             /* tokens handed out */
    long long token_seconds;
    char token_sa[64], token_pod[64], token_audience[64];
    vk_buf events;          /* "Type Reason: message" lines */
} core;

/* Add or replace an object (NULL json removes it). */
static void core_put(bool secret, const char *name, const char *json)
{
    pthread_mutex_lock(&core.mu);
    fake_object *o = NULL;
    for (size_t i = 0; i < core.n_objects && !o; i++)
        if (core.objects[i].secret == secret && strcmp(core.objects[i].name, name) == 0)
            o = &core.objects[i];
    if (!o && json) {
        ck_assert_uint_lt(core.n_objects, MAX_OBJECTS);
        o = &core.objects[core.n_objects++];
        o->secret = secret;
        snprintf(o->name, sizeof o->name, "%s", name);
    }
    if (o) {
        free(o->json);
        o->json = json ? strdup(json) : NULL;
    }
    pthread_mutex_unlock(&core.mu);
}

static bool core_saw_event(const char *text)
{
    pthread_mutex_lock(&core.mu);
    bool seen = core.events.data && strstr(core.events.data, text);
    pthread_mutex_unlock(&core.mu);
    return seen;
}

static void core_get(vk_scall *call, bool secret)
{
    ProtobufCMessage *msg = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__get_object_request__descriptor, &msg) != 1) {
        vk_scall_finish(call, VK_INVALID_ARGUMENT, "malformed request");
        return;
    }
    Vkc__Provider__V1__GetObjectRequest *req = (Vkc__Provider__V1__GetObjectRequest *)msg;
    char *json = NULL;
    pthread_mutex_lock(&core.mu);
    for (size_t i = 0; i < core.n_objects && !json; i++)
        if (core.objects[i].secret == secret && core.objects[i].json &&
            strcmp(core.objects[i].name, req->name) == 0 && strcmp(req->namespace_, "default") == 0)
            json = strdup(core.objects[i].json);
    pthread_mutex_unlock(&core.mu);
    if (json) {
        Vkc__Provider__V1__GetObjectResponse resp = VKC__PROVIDER__V1__GET_OBJECT_RESPONSE__INIT;
        resp.object_json.data = (uint8_t *)json;
        resp.object_json.len = strlen(json);
        vk_scall_reply(call, &resp.base);
    } else {
        vk_scall_finish(call, VK_NOT_FOUND, "not found");
    }
    free(json);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void core_get_secret(vk_scall *call, void *ud)
{
    (void)ud;
    core_get(call, true);
}

static void core_get_configmap(vk_scall *call, void *ud)
{
    (void)ud;
    core_get(call, false);
}

static void core_token(vk_scall *call, void *ud)
{
    (void)ud;
    ProtobufCMessage *msg = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__service_account_token_request__descriptor,
                      &msg) != 1) {
        vk_scall_finish(call, VK_INVALID_ARGUMENT, "malformed request");
        return;
    }
    Vkc__Provider__V1__ServiceAccountTokenRequest *req =
        (Vkc__Provider__V1__ServiceAccountTokenRequest *)msg;
    char token[64];
    pthread_mutex_lock(&core.mu);
    snprintf(token, sizeof token, "token-%d-for-%s", ++core.tokens, req->service_account_name);
    core.token_seconds = req->expiration_seconds;
    snprintf(core.token_sa, sizeof core.token_sa, "%s", req->service_account_name);
    snprintf(core.token_pod, sizeof core.token_pod, "%s", req->pod ? req->pod->name : "");
    snprintf(core.token_audience, sizeof core.token_audience, "%s",
             req->n_audiences ? req->audiences[0] : "");
    pthread_mutex_unlock(&core.mu);
    Vkc__Provider__V1__ServiceAccountTokenResponse resp =
        VKC__PROVIDER__V1__SERVICE_ACCOUNT_TOKEN_RESPONSE__INIT;
    resp.token = token;
    /* The API server may shorten a token's life; this one does for one
     * service account, so that a renewal comes within a test. */
    resp.expiration_timestamp = time(NULL) + (strcmp(req->service_account_name, "brief") == 0
                                                  ? 5 : req->expiration_seconds);
    vk_scall_reply(call, &resp.base);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void core_event(vk_scall *call, void *ud)
{
    (void)ud;
    ProtobufCMessage *msg = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__emit_event_request__descriptor, &msg) != 1) {
        vk_scall_finish(call, VK_INVALID_ARGUMENT, "malformed request");
        return;
    }
    Vkc__Provider__V1__EmitEventRequest *req = (Vkc__Provider__V1__EmitEventRequest *)msg;
    pthread_mutex_lock(&core.mu);
    if (core.events.len < 65536)
        vk_buf_printf(&core.events, "%s %s: %s\n", req->type, req->reason, req->message);
    pthread_mutex_unlock(&core.mu);
    Vkc__Provider__V1__EmitEventResponse resp = VKC__PROVIDER__V1__EMIT_EVENT_RESPONSE__INIT;
    vk_scall_reply(call, &resp.base);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void core_start(const char *dir)
{
    char addr[128];
    snprintf(addr, sizeof addr, "unix:%s/core.sock", dir);
    pthread_mutex_init(&core.mu, NULL);
    core.server = vk_server_new(addr, 0, 16);
    ck_assert_ptr_nonnull(core.server);
    vk_server_handle(core.server, CORE "GetSecret", core_get_secret, NULL);
    vk_server_handle(core.server, CORE "GetConfigMap", core_get_configmap, NULL);
    vk_server_handle(core.server, CORE "RequestServiceAccountToken", core_token, NULL);
    vk_server_handle(core.server, CORE "EmitEvent", core_event, NULL);
    ck_assert_int_eq(vk_server_start(core.server), 0);
}

static void core_stop(void)
{
    if (!core.server)
        return;
    vk_server_stop(core.server, 0);
    vk_server_free(core.server);
    for (size_t i = 0; i < core.n_objects; i++)
        free(core.objects[i].json);
    vk_buf_free(&core.events);
    pthread_mutex_destroy(&core.mu);
    memset(&core, 0, sizeof core);
}

static void start(void)
{
    char bin[512], root[128], listen[128], sock[128], core_target[128];
    snprintf(bin, sizeof bin, "%s/vkc-provider-cri", harness_bin_dir());
    /* A restart keeps the directory, and with it the pods. */
    if (!m.dir[0])
        ck_assert_ptr_nonnull(harness_make_tmpdir(m.dir, sizeof m.dir, "vkc-cri"));
    snprintf(root, sizeof root, "%s/root", m.dir);
    snprintf(listen, sizeof listen, "unix:%s/p.sock", m.dir);
    snprintf(sock, sizeof sock, "%s/p.sock", m.dir);
    snprintf(core_target, sizeof core_target, "unix:%s/core.sock", m.dir);

    char listen_env[160], core_env[160];
    snprintf(listen_env, sizeof listen_env, "VKC_PROVIDER_LISTEN=%s", listen);
    snprintf(core_env, sizeof core_env, "VKC_CORE_TARGET=%s", core_target);
    const char *vars[] = {listen_env, core_env, NULL};
    const char *runtime = m.runtime ? m.runtime : endpoint;
    const char *argv[] = {bin, "--runtime-endpoint", runtime, "--root-dir", root, "--cgroup-root",
                          "/vkc-test", "--volume-sync-period", SYNC_PERIOD,
                          m.cri_api ? "--cri-api" : NULL, m.cri_api, NULL};
    m.pid = harness_provider_spawn(argv, vars, NULL);
    ck_assert_msg(harness_wait_socket(&m.pid, sock, 15000, 20), "provider exited at start (%s)",
                  bin);
    m.ch = vk_channel_open(listen, 0);
    m.rt = vk_channel_open(runtime, 0);
    ck_assert_msg(vk_channel_wait_ready(m.ch, 10000), "provider did not come up");
    ck_assert_msg(vk_channel_wait_ready(m.rt, 10000), "runtime not reachable at %s", runtime);
}

static void scrub(void);

/* A failed case skips its teardown: the next setup scrubs what it left. */
static void setup(void)
{
    vk_rpc_init();
    memset(&m, 0, sizeof m);
    ck_assert_ptr_nonnull(harness_make_tmpdir(m.dir, sizeof m.dir, "vkc-cri"));
    core_start(m.dir);
    start();
    scrub();
}

/* SIGTERM must end the provider with 0 (and leak-free under LSan). */
static void stop(void)
{
    if (m.ch)
        vk_channel_close(m.ch);
    if (m.rt)
        vk_channel_close(m.rt);
    m.ch = m.rt = NULL;
    harness_assert_stops(&m.pid, 20000, 20, "provider");
}

/* Pod uids carry the test process's id, so that two runs sharing one
 * runtime (make test and make test-asan at once) never meet. */
static char uid_prefix[32];
static char uids[20][48];

static const char *test_uid(int n)
{
    snprintf(uids[n], sizeof uids[n], "%s%012d", uid_prefix, n);
    return uids[n];
}

/* Sandboxes a failed case left behind would take the names of the next
 * run's: remove every sandbox of a test pod. */
static void scrub(void)
{
    Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__ListPodSandboxResponse *resp = NULL;
    if (!m.rt || vk_unary(m.rt, "/runtime.v1.RuntimeService/ListPodSandbox", &req.base,
                          &runtime__v1__list_pod_sandbox_response__descriptor, T,
                          (ProtobufCMessage **)&resp, NULL) != VK_OK)
        return;
    for (size_t i = 0; i < resp->n_items; i++) {
        if (!resp->items[i]->metadata ||
            strncmp(resp->items[i]->metadata->uid, uid_prefix, strlen(uid_prefix)) != 0)
            continue;
        Runtime__V1__StopPodSandboxRequest stop_req = RUNTIME__V1__STOP_POD_SANDBOX_REQUEST__INIT;
        Runtime__V1__RemovePodSandboxRequest rm = RUNTIME__V1__REMOVE_POD_SANDBOX_REQUEST__INIT;
        ProtobufCMessage *r = NULL;
        stop_req.pod_sandbox_id = rm.pod_sandbox_id = resp->items[i]->id;
        if (vk_unary(m.rt, "/runtime.v1.RuntimeService/StopPodSandbox", &stop_req.base,
                     &runtime__v1__stop_pod_sandbox_response__descriptor, T, &r, NULL) == VK_OK)
            protobuf_c_message_free_unpacked(r, NULL);
        if (vk_unary(m.rt, "/runtime.v1.RuntimeService/RemovePodSandbox", &rm.base,
                     &runtime__v1__remove_pod_sandbox_response__descriptor, T, &r, NULL) == VK_OK)
            protobuf_c_message_free_unpacked(r, NULL);
    }
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void teardown(void)
{
    scrub();
    stop();
    core_stop();
    /* A failed case may leave a pod's tmpfs volumes mounted. */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "grep -o ' %s/[^ ]*' /proc/mounts | xargs -r -n1 umount -l; "
             "rm -rf %s", m.dir, m.dir);
    ck_assert_int_eq(system(cmd), 0);
    vk_rpc_shutdown();
}

/* ---- provider calls ------------------------------------------------------------ */

static int unary(const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *desc, void *resp)
{
    char path[128];
    snprintf(path, sizeof path, P "%s", method);
    ProtobufCMessage *r = NULL;
    int code = vk_unary(m.ch, path, req, desc, T, &r, NULL);
    if (resp)
        *(ProtobufCMessage **)resp = r;
    else if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

static int pod_call(const char *method, const char *json)
{
    Vkc__Provider__V1__CreatePodRequest req = VKC__PROVIDER__V1__CREATE_POD_REQUEST__INIT;
    req.pod_json.data = (uint8_t *)json;
    req.pod_json.len = strlen(json);
    const ProtobufCMessageDescriptor *d =
        strcmp(method, "CreatePod") == 0   ? &vkc__provider__v1__create_pod_response__descriptor
        : strcmp(method, "UpdatePod") == 0 ? &vkc__provider__v1__update_pod_response__descriptor
                                           : &vkc__provider__v1__delete_pod_response__descriptor;
    return unary(method, &req.base, d, NULL);
}

static char pod_buf[8192];

/* A hostNetwork pod: uid, restart policy, more spec members (each ending
 * with a comma, volumes among them), then the containers' JSON. */
static const char *pod_spec(const char *name, const char *uid, const char *restart,
                            const char *spec, const char *init, const char *containers)
{
    int n = snprintf(pod_buf, sizeof pod_buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"default\",\"uid\":\"%s\",\"labels\":{\"app\":\"%s\"}},"
             "\"spec\":{\"hostNetwork\":true,\"restartPolicy\":\"%s\","
             "\"terminationGracePeriodSeconds\":1,%s"
             "\"initContainers\":[%s],\"containers\":[%s]}}",
             name, uid, name, restart, spec, init ? init : "", containers);
    ck_assert_int_lt(n, (int)sizeof pod_buf);
    return pod_buf;
}

static const char *pod_doc(const char *name, const char *uid, const char *restart,
                           const char *init, const char *containers)
{
    return pod_spec(name, uid, restart, "\"volumes\":[{\"name\":\"work\",\"emptyDir\":{}}],",
                    init, containers);
}

static yajl_val status_of(const char *name, int *code)
{
    Vkc__Provider__V1__GetPodStatusRequest req = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref(name);
    Vkc__Provider__V1__GetPodStatusResponse *resp = NULL;
    req.pod = &ref;
    *code = unary("GetPodStatus", &req.base, &vkc__provider__v1__get_pod_status_response__descriptor,
                  &resp);
    if (*code != VK_OK)
        return NULL;
    yajl_val v = harness_json_parse(resp->status_json.data, resp->status_json.len);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return v;
}

static const char *jstr(yajl_val v, ...)
{
    const char *path[8];
    size_t n = 0;
    va_list ap;
    va_start(ap, v);
    for (const char *k; n < 7 && (k = va_arg(ap, const char *)) != NULL;)
        path[n++] = k;
    va_end(ap);
    path[n] = NULL;
    yajl_val s = yajl_tree_get(v, path, yajl_t_any);
    return s && YAJL_IS_STRING(s) ? YAJL_GET_STRING(s) : NULL;
}

static long long jint(yajl_val v, const char *a, const char *b, const char *c)
{
    const char *path[] = {a, b, c, NULL};
    yajl_val s = yajl_tree_get(v, path, yajl_t_number);
    return s && YAJL_IS_INTEGER(s) ? YAJL_GET_INTEGER(s) : -1;
}

/* Container status i of list "containerStatuses"/"initContainerStatuses". */
static yajl_val ctr_status(yajl_val st, const char *list, size_t i)
{
    const char *path[] = {list, NULL};
    yajl_val a = yajl_tree_get(st, path, yajl_t_array);
    return a && i < a->u.array.len ? a->u.array.values[i] : NULL;
}

static bool phase_is(const char *name, const char *phase)
{
    int code;
    yajl_val v = status_of(name, &code);
    const char *p = v ? jstr(v, "phase", NULL) : NULL;
    bool yes = p && strcmp(p, phase) == 0;
    yajl_tree_free(v);
    return yes;
}

static long long restart_count(const char *name)
{
    int code;
    yajl_val v = status_of(name, &code);
    long long n = v ? jint(ctr_status(v, "containerStatuses", 0), "restartCount", NULL, NULL) : -1;
    yajl_tree_free(v);
    return n;
}

/* Read a call's messages of type desc until it ends, their bytes field
 * "data" into out (NUL-terminated, cut at n); then finish and free the
 * call: its final status. */
static int collect(vk_call *c, const ProtobufCMessageDescriptor *desc, char *out, size_t n)
{
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc,
                                                                                        "data");
    ck_assert_ptr_nonnull(f);
    size_t len = 0;
    ProtobufCMessage *msg;
    while (vk_call_recv(c, desc, &msg) == 1) {
        const ProtobufCBinaryData *d = (const ProtobufCBinaryData *)((char *)msg + f->offset);
        size_t k = d->len < n - 1 - len ? d->len : n - 1 - len;
        memcpy(out + len, d->data, k);
        len += k;
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    out[len] = '\0';
    int code = vk_call_finish(c, NULL);
    vk_call_free(c);
    return code;
}

/* Logs of a container into out (NUL-terminated); the final status code. */
typedef struct log_opts {
    long long tail, limit;
    bool timestamps, previous;
    long long since_ns;     /* 0: none */
} log_opts;

static int logs(const char *pod, const char *ctr, log_opts o, char *out, size_t n)
{
    Vkc__Provider__V1__GetContainerLogsRequest req =
        VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref(pod);
    Vkc__Provider__V1__Int64Value tail = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__Int64Value limit = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__Int64Value since = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    req.pod = &ref;
    if (o.since_ns) {
        since.value = o.since_ns;
        req.since_time_unix_nano = &since;
    }
    req.container = (char *)ctr;
    req.timestamps = o.timestamps;
    req.previous = o.previous;
    if (o.tail >= 0) {
        tail.value = o.tail;
        req.tail_lines = &tail;
    }
    if (o.limit >= 0) {
        limit.value = o.limit;
        req.limit_bytes = &limit;
    }
    vk_call *c = vk_call_start(m.ch, P "GetContainerLogs", T);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    vk_call_close_send(c);
    return collect(c, &vkc__provider__v1__log_chunk__descriptor, out, n);
}

static bool logs_contain(const char *pod, const char *ctr, const char *text)
{
    char buf[4096];
    log_opts o = {-1, -1, false, false, 0};
    return logs(pod, ctr, o, buf, sizeof buf) == VK_OK && strstr(buf, text) != NULL;
}

/* Run a command in a container: its exit code (-1 when none came), the
 * final status in *code, stdout into out. With close_stdin, stdin is
 * closed after input. */
static int exec_run(const char *pod, const char *ctr, const char *const *cmd, size_t n_cmd,
                    const char *input, bool close_stdin, bool tty, char *out, size_t n,
                    int *code)
{
    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    Vkc__Provider__V1__ExecStart st = VKC__PROVIDER__V1__EXEC_START__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref(pod);
    st.pod = &ref;
    st.container = (char *)ctr;
    st.command = (char **)cmd;
    st.n_command = n_cmd;
    Vkc__Provider__V1__TerminalSize size = VKC__PROVIDER__V1__TERMINAL_SIZE__INIT;
    st.stdin = input != NULL;
    st.stdout = st.stderr = true;
    st.tty = tty;
    if (tty) {
        size.width = 100;
        size.height = 40;
        st.size = &size;
    }
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = &st;
    vk_call *c = vk_call_start(m.ch, P "ExecInContainer", 20000);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    if (input) {
        Vkc__Provider__V1__ExecInput data = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
        data.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN;
        data.stdin.data = (uint8_t *)input;
        data.stdin.len = strlen(input);
        ck_assert_int_eq(vk_call_send(c, &data.base), 0);
    }
    if (close_stdin) {
        Vkc__Provider__V1__ExecInput eof = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
        eof.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN_CLOSE;
        eof.stdin_close = true;
        ck_assert_int_eq(vk_call_send(c, &eof.base), 0);
    }
    int exit_code = -1;
    size_t len = 0;
    Vkc__Provider__V1__ExecOutput *o;
    while (vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor,
                        (ProtobufCMessage **)&o) == 1) {
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT) {
            size_t k = o->stdout.len < n - 1 - len ? o->stdout.len : n - 1 - len;
            memcpy(out + len, o->stdout.data, k);
            len += k;
        } else if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT) {
            exit_code = o->exit->exit_code;
        }
        protobuf_c_message_free_unpacked(&o->base, NULL);
    }
    out[len] = '\0';
    vk_status st2 = {0, NULL};
    *code = vk_call_finish(c, &st2);
    if (*code != VK_OK && getenv("VKC_TEST_VERBOSE"))
        fprintf(stderr, "exec %s: %s: %s\n", cmd[0], vk_status_code_name(*code),
                st2.message ? st2.message : "");
    vk_status_clear(&st2);
    vk_call_free(c);
    return exit_code;
}

static int exec_in(const char *pod, const char *ctr, const char *const *cmd, size_t n_cmd,
                   const char *input, char *out, size_t n, int *code)
{
    return exec_run(pod, ctr, cmd, n_cmd, input, false, false, out, n, code);
}

/* sh -c script in a container: its exit code (-1 when the exec failed),
 * stdout into out. */
static int sh_in(const char *pod, const char *ctr, const char *script, char *out, size_t n)
{
    const char *cmd[] = {"sh", "-c", script};
    char none[64];
    int code;
    int rc = out ? exec_in(pod, ctr, cmd, 3, NULL, out, n, &code)
                 : exec_in(pod, ctr, cmd, 3, NULL, none, sizeof none, &code);
    return code == VK_OK ? rc : -1;
}

static yajl_val ctr_named(yajl_val st, const char *name)
{
    static const char *const lists[] = {"containerStatuses", "initContainerStatuses"};
    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0; ctr_status(st, lists[l], i); i++)
            if (strcmp(jstr(ctr_status(st, lists[l], i), "name", NULL), name) == 0)
                return ctr_status(st, lists[l], i);
    return NULL;
}

static bool jbool(yajl_val v, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val b = yajl_tree_get(v, path, yajl_t_any);
    return b && YAJL_IS_TRUE(b);
}

static bool ctr_ready(const char *pod, const char *ctr)
{
    int code;
    yajl_val st = status_of(pod, &code);
    bool ready = st && jbool(ctr_named(st, ctr), "ready");
    yajl_tree_free(st);
    return ready;
}

static const char *condition(yajl_val st, const char *type)
{
    const char *path[] = {"conditions", NULL};
    yajl_val a = yajl_tree_get(st, path, yajl_t_array);
    for (size_t i = 0; a && i < a->u.array.len; i++)
        if (strcmp(jstr(a->u.array.values[i], "type", NULL), type) == 0)
            return jstr(a->u.array.values[i], "status", NULL);
    return NULL;
}

static bool pod_ready(const char *pod)
{
    int code;
    yajl_val st = status_of(pod, &code);
    const char *c = st ? condition(st, "Ready") : NULL;
    bool ready = c && strcmp(c, "True") == 0;
    yajl_tree_free(st);
    return ready;
}

/* The waiting reason of a container, copied into buf ("" when none). */
static const char *waiting(const char *pod, const char *ctr, char *msg, size_t n)
{
    static char reason[64];
    int code;
    yajl_val st = status_of(pod, &code);
    yajl_val c = st ? ctr_named(st, ctr) : NULL;
    const char *r = c ? jstr(c, "state", "waiting", "reason", NULL) : NULL;
    const char *text = c ? jstr(c, "state", "waiting", "message", NULL) : NULL;
    snprintf(reason, sizeof reason, "%s", r ? r : "");
    if (msg)
        snprintf(msg, n, "%s", text ? text : "");
    yajl_tree_free(st);
    return reason;
}

static long long restarts_of(const char *pod, const char *ctr)
{
    int code;
    yajl_val st = status_of(pod, &code);
    long long n = st ? jint(ctr_named(st, ctr), "restartCount", NULL, NULL) : -1;
    yajl_tree_free(st);
    return n;
}

static bool terminated(const char *pod, const char *ctr)
{
    int code;
    yajl_val st = status_of(pod, &code);
    bool done = st && jint(ctr_named(st, ctr), "state", "terminated", "exitCode") >= 0;
    yajl_tree_free(st);
    return done;
}

static bool sh_says(const char *pod, const char *ctr, const char *script, const char *want)
{
    char out[1024];
    return sh_in(pod, ctr, script, out, sizeof out) == 0 && strcmp(out, want) == 0;
}

/* ---- the runtime's side ---------------------------------------------------------- */

static size_t sandboxes_of(const char *uid)
{
    Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__ListPodSandboxResponse *resp = NULL;
    ck_assert_int_eq(vk_unary(m.rt, "/runtime.v1.RuntimeService/ListPodSandbox", &req.base,
                              &runtime__v1__list_pod_sandbox_response__descriptor, T,
                              (ProtobufCMessage **)&resp, NULL), VK_OK);
    size_t n = 0;
    for (size_t i = 0; i < resp->n_items; i++)
        n += resp->items[i]->metadata && strcmp(resp->items[i]->metadata->uid, uid) == 0;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return n;
}

static size_t containers_of(const char *uid)
{
    Runtime__V1__ListContainersRequest req = RUNTIME__V1__LIST_CONTAINERS_REQUEST__INIT;
    Runtime__V1__ListContainersResponse *resp = NULL;
    ck_assert_int_eq(vk_unary(m.rt, "/runtime.v1.RuntimeService/ListContainers", &req.base,
                              &runtime__v1__list_containers_response__descriptor, T,
                              (ProtobufCMessage **)&resp, NULL), VK_OK);
    size_t n = 0;
    for (size_t i = 0; i < resp->n_containers; i++)
        for (size_t j = 0; j < resp->containers[i]->n_labels; j++)
            n += strcmp(resp->containers[i]->labels[j]->key, "io.kubernetes.pod.uid") == 0 &&
                 strcmp(resp->containers[i]->labels[j]->value, uid) == 0;
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    return n;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void delete_pod(const char *name, const char *uid)
{
    char json[512], dir[256];
    snprintf(json, sizeof json,
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"default\",\"uid\":\"%s\","
             "\"deletionGracePeriodSeconds\":0},\"spec\":{\"containers\":[{\"name\":\"x\"}]}}",
             name, uid);
    ck_assert_int_eq(pod_call("DeletePod", json), VK_OK);
    snprintf(dir, sizeof dir, "%s/root/pods/%s", m.dir, uid);
    EVENTUALLY(sandboxes_of(uid) == 0 && containers_of(uid) == 0 && !exists(dir), 20000);
    int code;
    ck_assert_ptr_null(status_of(name, &code));
    ck_assert_int_eq(code, VK_NOT_FOUND);
    ck_assert_int_eq(pod_call("DeletePod", json), VK_NOT_FOUND);
}

/* ---- cases --------------------------------------------------------------------------- */

#define IMAGE "\"image\":\"busybox\",\"imagePullPolicy\":\"IfNotPresent\""

START_TEST(test_pod_runs)
{
    const char *uid = test_uid(1);
    const char *init = "{\"name\":\"prepare\"," IMAGE ",\"command\":[\"sh\",\"-c\","
                       "\"echo prepared > /work/marker\"],"
                       "\"volumeMounts\":[{\"name\":\"work\",\"mountPath\":\"/work\"}]}";
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\","
                      "\"echo hello; echo greeting=$GREETING arg=$1; cat /work/marker; "
                      "exec sleep 3600\",\"sh\"],\"args\":[\"first\"],"
                      "\"env\":[{\"name\":\"GREETING\",\"value\":\"bonjour\"}],"
                      "\"resources\":{\"requests\":{\"cpu\":\"100m\",\"memory\":\"16Mi\"},"
                      "\"limits\":{\"cpu\":\"500m\",\"memory\":\"64Mi\"}},"
                      "\"securityContext\":{\"runAsUser\":65534,\"runAsGroup\":65534},"
                      "\"volumeMounts\":[{\"name\":\"work\",\"mountPath\":\"/work\"}]}";
    char doc[4096];
    snprintf(doc, sizeof doc, "%s", pod_doc("web", uid, "Always", init, app));
    ck_assert_int_eq(pod_call("CreatePod", doc), VK_OK);
    ck_assert_int_eq(pod_call("CreatePod", doc), VK_OK); /* idempotent */
    char other[4096];
    snprintf(other, sizeof other, "%s",
             pod_doc("web", test_uid(15), "Always", NULL, app));
    ck_assert_int_eq(pod_call("CreatePod", other), VK_ALREADY_EXISTS);

    EVENTUALLY(phase_is("web", "Running"), 30000);
    int code;
    yajl_val st = status_of("web", &code);
    yajl_val c = ctr_status(st, "containerStatuses", 0);
    yajl_val ic = ctr_status(st, "initContainerStatuses", 0);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_nonnull(ic);
    ck_assert_msg(strncmp(jstr(c, "containerID", NULL), "containerd://", 13) == 0,
                  "containerID %s", jstr(c, "containerID", NULL));
    ck_assert_msg(strlen(jstr(c, "containerID", NULL)) > 13 + 32, "short container id");
    ck_assert_msg(jstr(c, "imageID", NULL) && strstr(jstr(c, "imageID", NULL), "sha256:"),
                  "imageID missing");
    ck_assert_ptr_nonnull(jstr(c, "state", "running", "startedAt", NULL));
    ck_assert_int_eq(jint(ic, "state", "terminated", "exitCode"), 0);
    ck_assert_str_eq(jstr(ic, "state", "terminated", "reason", NULL), "Completed");
    ck_assert_ptr_nonnull(jstr(st, "podIP", NULL));
    yajl_tree_free(st);
    ck_assert_uint_eq(sandboxes_of(uid), 1);

    /* The init container ran first; env and args reached the process. */
    EVENTUALLY(logs_contain("web", "app", "prepared"), 10000);
    char buf[4096];
    log_opts all = {-1, -1, false, false, 0};
    ck_assert_int_eq(logs("web", "app", all, buf, sizeof buf), VK_OK);
    ck_assert_str_eq(buf, "hello\ngreeting=bonjour arg=first\nprepared\n");
    log_opts tail = {1, -1, false, false, 0};
    ck_assert_int_eq(logs("web", "app", tail, buf, sizeof buf), VK_OK);
    ck_assert_str_eq(buf, "prepared\n");
    log_opts stamps = {1, -1, true, false, 0};
    ck_assert_int_eq(logs("web", "app", stamps, buf, sizeof buf), VK_OK);
    ck_assert_msg(strncmp(buf, "20", 2) == 0 && strstr(buf, "T") && strstr(buf, " prepared\n"),
                  "timestamped line: %s", buf);
    log_opts limit = {-1, 3, false, false, 0};
    ck_assert_int_eq(logs("web", "app", limit, buf, sizeof buf), VK_OK);
    ck_assert_str_eq(buf, "hel");
    log_opts old = {-1, -1, false, false, 1000000000LL};
    ck_assert_int_eq(logs("web", "app", old, buf, sizeof buf), VK_OK);
    ck_assert_str_eq(buf, "hello\ngreeting=bonjour arg=first\nprepared\n");
    log_opts future = {-1, -1, false, false, (long long)(time(NULL) + 3600) * 1000000000LL};
    ck_assert_int_eq(logs("web", "app", future, buf, sizeof buf), VK_OK);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(logs("web", "nope", all, buf, sizeof buf), VK_NOT_FOUND);

    /* Exec: output, exit codes, stdin. */
    const char *echo[] = {"echo", "hi"};
    ck_assert_int_eq(exec_in("web", "app", echo, 2, NULL, buf, sizeof buf, &code), 0);
    ck_assert_int_eq(code, VK_OK);
    ck_assert_str_eq(buf, "hi\n");
    const char *fail[] = {"sh", "-c", "exit 3"};
    ck_assert_int_eq(exec_in("web", "app", fail, 3, NULL, buf, sizeof buf, &code), 3);
    const char *head[] = {"head", "-n", "1"};
    ck_assert_int_eq(exec_in("web", "app", head, 3, "ping\n", buf, sizeof buf, &code), 0);
    ck_assert_str_eq(buf, "ping\n");
    /* The end of stdin reaches the command: cat ends, with all it read. */
    const char *cat[] = {"cat"};
    ck_assert_int_eq(exec_run("web", "app", cat, 1, "one\ntwo\n", true, false, buf, sizeof buf,
                              &code), 0);
    ck_assert_int_eq(code, VK_OK);
    ck_assert_str_eq(buf, "one\ntwo\n");
    /* The security context and the limits reached the container. */
    const char *id[] = {"id", "-u"};
    ck_assert_int_eq(exec_in("web", "app", id, 2, NULL, buf, sizeof buf, &code), 0);
    ck_assert_str_eq(buf, "65534\n");
    const char *mem[] = {"sh", "-c", "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
                                     "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"};
    ck_assert_int_eq(exec_in("web", "app", mem, 3, NULL, buf, sizeof buf, &code), 0);
    ck_assert_str_eq(buf, "67108864\n");
    const char *quota[] = {"sh", "-c", "cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
                                       "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us"};
    ck_assert_int_eq(exec_in("web", "app", quota, 3, NULL, buf, sizeof buf, &code), 0);
    ck_assert_msg(strncmp(buf, "50000", 5) == 0, "cpu quota: %s", buf);
    /* A terminal, of the size asked for. */
    /* The runtime applies the size asynchronously: give it a moment. */
    const char *term[] = {"sh", "-c", "tty; sleep 1; stty size"};
    ck_assert_int_eq(exec_run("web", "app", term, 3, NULL, false, true, buf, sizeof buf, &code),
                     0);
    ck_assert_msg(strstr(buf, "/dev/pts/") && strstr(buf, "40 100"), "tty exec: %s", buf);

    /* Stats name the pod with CPU and memory figures. */
    Vkc__Provider__V1__GetStatsSummaryRequest sreq = VKC__PROVIDER__V1__GET_STATS_SUMMARY_REQUEST__INIT;
    Vkc__Provider__V1__GetStatsSummaryResponse *sresp = NULL;
    ck_assert_int_eq(unary("GetStatsSummary", &sreq.base,
                           &vkc__provider__v1__get_stats_summary_response__descriptor, &sresp),
                     VK_OK);
    yajl_val sum = harness_json_parse(sresp->summary_json.data, sresp->summary_json.len);
    protobuf_c_message_free_unpacked(&sresp->base, NULL);
    const char *pods_path[] = {"pods", NULL};
    yajl_val pods = yajl_tree_get(sum, pods_path, yajl_t_array);
    ck_assert_ptr_nonnull(pods);
    bool found = false;
    for (size_t i = 0; i < pods->u.array.len; i++) {
        yajl_val p = pods->u.array.values[i];
        if (strcmp(jstr(p, "podRef", "name", NULL), "web") != 0)
            continue;
        found = true;
        ck_assert_int_gt(jint(p, "cpu", "usageCoreNanoSeconds", NULL), 0);
        ck_assert_int_gt(jint(p, "memory", "workingSetBytes", NULL), 0);
    }
    ck_assert_msg(found, "pod web not in the stats summary");
    yajl_tree_free(sum);
    Vkc__Provider__V1__GetMetricsResourceRequest mreq =
        VKC__PROVIDER__V1__GET_METRICS_RESOURCE_REQUEST__INIT;
    Vkc__Provider__V1__GetMetricsResourceResponse *mresp = NULL;
    ck_assert_int_eq(unary("GetMetricsResource", &mreq.base,
                           &vkc__provider__v1__get_metrics_resource_response__descriptor, &mresp),
                     VK_OK);
    ck_assert_ptr_nonnull(strstr(mresp->text, "container_cpu_usage_seconds_total{container=\"app\","
                                              "namespace=\"default\",pod=\"web\"}"));
    ck_assert_ptr_nonnull(strstr(mresp->text, "pod_memory_working_set_bytes{namespace=\"default\","
                                              "pod=\"web\"}"));
    protobuf_c_message_free_unpacked(&mresp->base, NULL);

    delete_pod("web", uid);
}
END_TEST

START_TEST(test_never_fails)
{
    const char *uid = test_uid(2);
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\",\"exit 1\"]}";
    /* The status arrives through WatchPodStatus too, each change once. */
    vk_call *w = vk_call_start(m.ch, P "WatchPodStatus", 30000);
    Vkc__Provider__V1__WatchPodStatusRequest wreq = VKC__PROVIDER__V1__WATCH_POD_STATUS_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(w, &wreq.base), 0);
    vk_call_close_send(w);
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("once", uid, "Never", NULL, app)), VK_OK);
    Vkc__Provider__V1__PodStatusEvent *ev;
    uint64_t seq = 0;
    int events = 0;
    bool failed = false;
    while (!failed && vk_call_recv(w, &vkc__provider__v1__pod_status_event__descriptor,
                                   (ProtobufCMessage **)&ev) == 1) {
        if (strcmp(ev->pod->uid, uid) == 0 && !ev->deleted) {
            ck_assert_uint_gt(ev->sequence, seq);
            seq = ev->sequence;
            events++;
            yajl_val v = harness_json_parse(ev->status_json.data, ev->status_json.len);
            failed = jstr(v, "phase", NULL) && strcmp(jstr(v, "phase", NULL), "Failed") == 0;
            yajl_tree_free(v);
        }
        protobuf_c_message_free_unpacked(&ev->base, NULL);
    }
    vk_call_cancel(w);
    vk_call_finish(w, NULL);
    vk_call_free(w);
    ck_assert_msg(failed, "no Failed status on the watch");
    /* Pending, running or not, Failed: a handful, not one per relist. */
    ck_assert_int_le(events, 5);
    ck_assert(phase_is("once", "Failed"));
    int code;
    yajl_val st = status_of("once", &code);
    yajl_val c = ctr_status(st, "containerStatuses", 0);
    ck_assert_int_eq(jint(c, "state", "terminated", "exitCode"), 1);
    ck_assert_str_eq(jstr(c, "state", "terminated", "reason", NULL), "Error");
    ck_assert_int_eq(jint(c, "restartCount", NULL, NULL), 0);
    yajl_tree_free(st);
    delete_pod("once", uid);

    /* An image that is not there, with pull policy Never, never runs. */
    const char *missing = "{\"name\":\"app\",\"image\":\"example.invalid/none:1\","
                          "\"imagePullPolicy\":\"Never\"}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("nopull", test_uid(6), "Never",
                                                   NULL, missing)), VK_OK);
    bool waiting = false;
    for (long end = harness_now_ms() + 15000; !waiting && harness_now_ms() < end;
         harness_sleep_ms(100)) {
        st = status_of("nopull", &code);
        const char *r = jstr(ctr_status(st, "containerStatuses", 0), "state", "waiting",
                             "reason", NULL);
        waiting = r && strcmp(r, "ErrImageNeverPull") == 0;
        if (waiting)
            ck_assert_str_eq(jstr(st, "phase", NULL), "Pending");
        yajl_tree_free(st);
    }
    ck_assert_msg(waiting, "no ErrImageNeverPull");
    delete_pod("nopull", test_uid(6));
}
END_TEST

START_TEST(test_on_failure_restarts)
{
    const char *uid = test_uid(3);
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\","
                      "\"echo attempt; exit 2\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("crash", uid, "OnFailure", NULL, app)), VK_OK);
    /* Immediately once, then after the 10 s back-off. */
    EVENTUALLY(restart_count("crash") >= 1, 20000);
    EVENTUALLY(restart_count("crash") >= 2, 25000);
    ck_assert(phase_is("crash", "Running"));
    char buf[256];
    log_opts prev = {-1, -1, false, true, 0};
    ck_assert_int_eq(logs("crash", "app", prev, buf, sizeof buf), VK_OK);
    ck_assert_str_eq(buf, "attempt\n");
    delete_pod("crash", uid);
}
END_TEST

START_TEST(test_follow_logs)
{
    const char *uid = test_uid(4);
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\","
                      "\"echo first; sleep 2; printf 'sec'; sleep 1; echo ond\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("talk", uid, "Never", NULL, app)), VK_OK);
    EVENTUALLY(logs_contain("talk", "app", "first"), 20000);
    /* Follow until the container exits: the stream then ends by itself. */
    Vkc__Provider__V1__GetContainerLogsRequest req =
        VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref("talk");
    req.pod = &ref;
    req.container = "app";
    req.follow = true;
    vk_call *c = vk_call_start(m.ch, P "GetContainerLogs", 20000);
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    vk_call_close_send(c);
    char buf[256] = "";
    size_t len = 0;
    Vkc__Provider__V1__LogChunk *chunk;
    while (vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor,
                        (ProtobufCMessage **)&chunk) == 1) {
        size_t k = chunk->data.len < sizeof buf - 1 - len ? chunk->data.len : sizeof buf - 1 - len;
        memcpy(buf + len, chunk->data.data, k);
        len += k;
        protobuf_c_message_free_unpacked(&chunk->base, NULL);
    }
    buf[len] = '\0';
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    /* The partial "sec" and "ond" make one line. */
    ck_assert_str_eq(buf, "first\nsecond\n");
    EVENTUALLY(phase_is("talk", "Succeeded"), 10000);
    delete_pod("talk", uid);
}
END_TEST

/* A restarted provider adopts its pods: same containers, no restart. */
START_TEST(test_restart_adopts)
{
    const char *uid = test_uid(5);
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sleep\",\"3600\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("keep", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(phase_is("keep", "Running"), 30000);
    int code;
    yajl_val st = status_of("keep", &code);
    char id[128];
    snprintf(id, sizeof id, "%s", jstr(ctr_status(st, "containerStatuses", 0), "containerID", NULL));
    yajl_tree_free(st);

    stop();
    start();
    EVENTUALLY(phase_is("keep", "Running"), 30000); /* a new provider, as at first */
    st = status_of("keep", &code);
    ck_assert_str_eq(jstr(ctr_status(st, "containerStatuses", 0), "containerID", NULL), id);
    ck_assert_int_eq(jint(ctr_status(st, "containerStatuses", 0), "restartCount", NULL, NULL), 0);
    yajl_tree_free(st);
    ck_assert_uint_eq(sandboxes_of(uid), 1);

    /* A new image (here the same one under its full name) restarts the
     * container, as the kubelet does on a spec change. */
    const char *moved = "{\"name\":\"app\",\"image\":\"docker.io/library/busybox:latest\","
                        "\"imagePullPolicy\":\"IfNotPresent\",\"command\":[\"sleep\",\"3600\"]}";
    ck_assert_int_eq(pod_call("UpdatePod", pod_doc("keep", uid, "Always", NULL, moved)), VK_OK);
    EVENTUALLY(restart_count("keep") == 1 && phase_is("keep", "Running"), 20000);
    st = status_of("keep", &code);
    ck_assert_str_ne(jstr(ctr_status(st, "containerStatuses", 0), "containerID", NULL), id);
    ck_assert_str_eq(jstr(ctr_status(st, "containerStatuses", 0), "image", NULL),
                     "docker.io/library/busybox:latest");
    yajl_tree_free(st);
    ck_assert_int_eq(pod_call("UpdatePod", pod_doc("nobody", uid, "Always", NULL, moved)),
                     VK_NOT_FOUND);
    delete_pod("keep", uid);
}
END_TEST

/* Attach reaches the container's own stdin and stdout. */
START_TEST(test_attach)
{
    const char *uid = test_uid(7);
    const char *app = "{\"name\":\"app\"," IMAGE ",\"stdin\":true,\"command\":[\"sh\",\"-c\","
                      "\"read x; echo got $x; exec sleep 3600\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("chat", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(phase_is("chat", "Running"), 30000);

    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    Vkc__Provider__V1__ExecStart st = VKC__PROVIDER__V1__EXEC_START__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref("chat");
    st.pod = &ref;
    st.container = "app";
    st.stdin = st.stdout = st.stderr = true;
    in.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_START;
    in.start = &st;
    vk_call *c = vk_call_start(m.ch, P "AttachToContainer", 20000);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    Vkc__Provider__V1__ExecInput data = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    data.input_case = VKC__PROVIDER__V1__EXEC_INPUT__INPUT_STDIN;
    data.stdin.data = (uint8_t *)"hello\n";
    data.stdin.len = 6;
    ck_assert_int_eq(vk_call_send(c, &data.base), 0);
    char buf[256] = "";
    size_t len = 0;
    Vkc__Provider__V1__ExecOutput *o;
    while (!strstr(buf, "got hello\n") &&
           vk_call_recv(c, &vkc__provider__v1__exec_output__descriptor,
                        (ProtobufCMessage **)&o) == 1) {
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT) {
            size_t k = o->stdout.len < sizeof buf - 1 - len ? o->stdout.len : sizeof buf - 1 - len;
            memcpy(buf + len, o->stdout.data, k);
            len += k;
            buf[len] = '\0';
        }
        protobuf_c_message_free_unpacked(&o->base, NULL);
    }
    ck_assert_str_eq(buf, "got hello\n");
    /* The user goes away; the container keeps running. */
    vk_call_cancel(c);
    vk_call_finish(c, NULL);
    vk_call_free(c);
    harness_sleep_ms(500);
    ck_assert(phase_is("chat", "Running"));
    ck_assert_int_eq(restart_count("chat"), 0);
    delete_pod("chat", uid);
}
END_TEST

/* The sandbox dies: the pod gets a new one and its containers start again. */
START_TEST(test_sandbox_recreated)
{
    const char *uid = test_uid(8);
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sleep\",\"3600\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("phoenix", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(phase_is("phoenix", "Running"), 30000);

    Runtime__V1__ListPodSandboxRequest req = RUNTIME__V1__LIST_POD_SANDBOX_REQUEST__INIT;
    Runtime__V1__ListPodSandboxResponse *resp = NULL;
    ck_assert_int_eq(vk_unary(m.rt, "/runtime.v1.RuntimeService/ListPodSandbox", &req.base,
                              &runtime__v1__list_pod_sandbox_response__descriptor, T,
                              (ProtobufCMessage **)&resp, NULL), VK_OK);
    char cmd[512] = "";
    const char *sock = strstr(endpoint, "unix://") ? endpoint + 7 : endpoint;
    for (size_t i = 0; i < resp->n_items; i++)
        if (resp->items[i]->metadata && strcmp(resp->items[i]->metadata->uid, uid) == 0)
            snprintf(cmd, sizeof cmd, "ctr --address %s -n k8s.io tasks kill -s SIGKILL %s",
                     sock, resp->items[i]->id);
    protobuf_c_message_free_unpacked(&resp->base, NULL);
    ck_assert_msg(cmd[0], "no sandbox for the pod");
    ck_assert_int_eq(system(cmd), 0);

    EVENTUALLY(restart_count("phoenix") >= 1 && phase_is("phoenix", "Running"), 30000);
    ck_assert_uint_eq(sandboxes_of(uid), 1);
    delete_pod("phoenix", uid);
}
END_TEST

START_TEST(test_node)
{
    Vkc__Provider__V1__GetNodeRequest req = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    Vkc__Provider__V1__Node *node = NULL;
    bool ready = false;
    /* The first runtime check runs as the provider starts. */
    for (long end = harness_now_ms() + 10000; !ready && harness_now_ms() < end;
         harness_sleep_ms(100)) {
        ck_assert_int_eq(unary("GetNode", &req.base, &vkc__provider__v1__node__descriptor, &node),
                         VK_OK);
        yajl_val conds = harness_json_parse(node->conditions_json.data, node->conditions_json.len);
        for (size_t i = 0; YAJL_IS_ARRAY(conds) && i < conds->u.array.len; i++) {
            yajl_val c = conds->u.array.values[i];
            if (strcmp(jstr(c, "type", NULL), "Ready") == 0)
                ready = strcmp(jstr(c, "status", NULL), "True") == 0;
        }
        yajl_tree_free(conds);
        if (!ready)
            protobuf_c_message_free_unpacked(&node->base, NULL);
    }
    ck_assert_msg(ready, "node never Ready");
    bool pods = false, cpu = false;
    for (size_t i = 0; i < node->n_capacity; i++) {
        pods |= strcmp(node->capacity[i]->key, "pods") == 0 &&
                strcmp(node->capacity[i]->value, "110") == 0;
        cpu |= strcmp(node->capacity[i]->key, "cpu") == 0 && atoi(node->capacity[i]->value) > 0;
    }
    ck_assert(pods && cpu);
    yajl_val info = harness_json_parse(node->node_info_json.data, node->node_info_json.len);
    ck_assert_msg(strncmp(jstr(info, "containerRuntimeVersion", NULL), "containerd://", 13) == 0,
                  "runtime version %s", jstr(info, "containerRuntimeVersion", NULL));
    yajl_tree_free(info);
    protobuf_c_message_free_unpacked(&node->base, NULL);
}
END_TEST

START_TEST(test_unknown_pod)
{
    int code;
    char buf[64];
    log_opts all = {-1, -1, false, false, 0};
    ck_assert_ptr_null(status_of("ghost", &code));
    ck_assert_int_eq(code, VK_NOT_FOUND);
    ck_assert_int_eq(logs("ghost", "app", all, buf, sizeof buf), VK_NOT_FOUND);
    const char *echo[] = {"echo"};
    ck_assert_int_eq(exec_in("ghost", "app", echo, 1, NULL, buf, sizeof buf, &code), -1);
    ck_assert_int_eq(code, VK_NOT_FOUND);
    ck_assert_int_eq(pod_call("DeletePod", "{\"metadata\":{\"name\":\"ghost\",\"namespace\":"
                                           "\"default\",\"uid\":\"u\"},\"spec\":{\"containers\":"
                                           "[{\"name\":\"x\"}]}}"),
                     VK_NOT_FOUND);
}
END_TEST

/* ---- data volumes, probes, termination ------------------------------------------------ */

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define CA_PEM "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"

/* The volumes every pod from an API server has (kube-api-access-*), and
 * the other data volumes, as the container sees them; a ConfigMap update
 * reaches the running container. */
START_TEST(test_api_volumes)
{
    const char *uid = test_uid(9);
    core_put(false, "kube-root-ca.crt",
             "{\"kind\":\"ConfigMap\",\"data\":{\"ca.crt\":\"" "-----BEGIN CERTIFICATE-----\\n"
             "MIIBtest\\n-----END CERTIFICATE-----\\n" "\"}}");
    core_put(false, "app-config", "{\"kind\":\"ConfigMap\",\"data\":{\"mode\":\"blue\","
                                  "\"other\":\"x\"}}");
    core_put(true, "app-secret", "{\"kind\":\"Secret\",\"type\":\"Opaque\","
                                 "\"data\":{\"password\":\"aHVudGVyMg==\"}}");
    const char *spec =
        "\"serviceAccountName\":\"builder\",\"volumes\":["
        "{\"name\":\"kube-api-access-x7k2p\",\"projected\":{\"defaultMode\":420,\"sources\":["
        "{\"serviceAccountToken\":{\"expirationSeconds\":3607,\"path\":\"token\"}},"
        "{\"configMap\":{\"name\":\"kube-root-ca.crt\",\"items\":[{\"key\":\"ca.crt\","
        "\"path\":\"ca.crt\"}]}},"
        "{\"downwardAPI\":{\"items\":[{\"path\":\"namespace\",\"fieldRef\":{\"apiVersion\":"
        "\"v1\",\"fieldPath\":\"metadata.namespace\"}}]}}]}},"
        "{\"name\":\"cfg\",\"configMap\":{\"name\":\"app-config\"}},"
        "{\"name\":\"creds\",\"secret\":{\"secretName\":\"app-secret\",\"defaultMode\":256}},"
        "{\"name\":\"info\",\"downwardAPI\":{\"items\":["
        "{\"path\":\"labels\",\"fieldRef\":{\"fieldPath\":\"metadata.labels\"}},"
        "{\"path\":\"mem\",\"resourceFieldRef\":{\"containerName\":\"app\","
        "\"resource\":\"limits.memory\",\"divisor\":\"1Mi\"}}]}},"
        "{\"name\":\"maybe\",\"secret\":{\"secretName\":\"absent\",\"optional\":true}}],";
    const char *app =
        "{\"name\":\"app\"," IMAGE ",\"command\":[\"sleep\",\"3600\"],"
        "\"resources\":{\"limits\":{\"memory\":\"32Mi\"}},\"volumeMounts\":["
        "{\"name\":\"kube-api-access-x7k2p\",\"mountPath\":\"" SA_DIR "\",\"readOnly\":true},"
        "{\"name\":\"cfg\",\"mountPath\":\"/etc/cfg\"},"
        "{\"name\":\"creds\",\"mountPath\":\"/etc/creds\"},"
        "{\"name\":\"info\",\"mountPath\":\"/etc/info\"},"
        "{\"name\":\"maybe\",\"mountPath\":\"/etc/maybe\"}]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_spec("api", uid, "Always", spec, NULL, app)),
                     VK_OK);
    EVENTUALLY(phase_is("api", "Running"), 30000);

    ck_assert(sh_says("api", "app", "cat " SA_DIR "/token", "token-1-for-builder"));
    ck_assert(sh_says("api", "app", "cat " SA_DIR "/ca.crt", CA_PEM));
    ck_assert(sh_says("api", "app", "cat " SA_DIR "/namespace", "default"));
    ck_assert(sh_says("api", "app", "stat -L -c %a " SA_DIR "/token " SA_DIR "/ca.crt",
                      "644\n644\n"));
    ck_assert(sh_says("api", "app", "ls " SA_DIR, "ca.crt\nnamespace\ntoken\n"));
    ck_assert(sh_says("api", "app", "cat /etc/creds/password", "hunter2"));
    ck_assert(sh_says("api", "app", "stat -L -c %a /etc/creds/password", "400\n"));
    ck_assert(sh_says("api", "app", "cat /etc/cfg/mode", "blue"));
    ck_assert(sh_says("api", "app", "cat /etc/info/labels", "app=\"api\""));
    ck_assert(sh_says("api", "app", "cat /etc/info/mem", "32"));
    ck_assert(sh_says("api", "app", "ls /etc/maybe | wc -l", "0\n"));
    /* Secrets and tokens are on a tmpfs; data volumes are read-only. */
    ck_assert(sh_says("api", "app",
                      "awk '$2==\"" SA_DIR "\"||$2==\"/etc/creds\"{print $3}' /proc/mounts",
                      "tmpfs\ntmpfs\n"));
    ck_assert_int_ne(sh_in("api", "app", "touch /etc/cfg/new 2>/dev/null", NULL, 0), 0);
    ck_assert_int_ne(sh_in("api", "app", "echo x > " SA_DIR "/token 2>/dev/null", NULL, 0), 0);

    /* An update reaches the running container, switched as one. */
    core_put(false, "app-config", "{\"kind\":\"ConfigMap\",\"data\":{\"mode\":\"green\"}}");
    EVENTUALLY(sh_says("api", "app", "cat /etc/cfg/mode", "green"), 15000);
    ck_assert_int_ne(sh_in("api", "app", "test -e /etc/cfg/other", NULL, 0), 0);
    core_put(true, "app-secret", "{\"kind\":\"Secret\",\"data\":{\"password\":\"c2VjcmV0Mg==\"}}");
    EVENTUALLY(sh_says("api", "app", "cat /etc/creds/password", "secret2"), 15000);

    /* Refreshes did not ask for new tokens: one lasts 80 % of an hour. */
    pthread_mutex_lock(&core.mu);
    ck_assert_int_eq(core.tokens, 1);
    ck_assert_int_eq(core.token_seconds, 3607);
    ck_assert_str_eq(core.token_sa, "builder");
    ck_assert_str_eq(core.token_pod, "api");
    ck_assert_str_eq(core.token_audience, "");     /* the API server's own */
    pthread_mutex_unlock(&core.mu);
    ck_assert(sh_says("api", "app", "cat " SA_DIR "/token", "token-1-for-builder"));

    /* The tmpfs volumes go with the pod. */
    char mounts[256];
    delete_pod("api", uid);
    snprintf(mounts, sizeof mounts, "grep -q '%s' /proc/mounts", uid);
    ck_assert_int_ne(system(mounts), 0);
}
END_TEST

/* A token is renewed at 80 % of its life, the API server's idea of it. */
START_TEST(test_token_refresh)
{
    const char *uid = test_uid(0);
    const char *spec =
        "\"serviceAccountName\":\"brief\",\"volumes\":[{\"name\":\"kube-api-access-q1\","
        "\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"path\":\"token\","
        "\"audience\":\"vault\"}}]}}],";
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sleep\",\"3600\"],"
                      "\"volumeMounts\":[{\"name\":\"kube-api-access-q1\",\"mountPath\":\""
                      SA_DIR "\"}]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_spec("brief", uid, "Always", spec, NULL, app)),
                     VK_OK);
    EVENTUALLY(phase_is("brief", "Running"), 30000);
    ck_assert(sh_says("brief", "app", "cat " SA_DIR "/token", "token-1-for-brief"));
    EVENTUALLY(sh_says("brief", "app", "cat " SA_DIR "/token", "token-2-for-brief"), 15000);
    pthread_mutex_lock(&core.mu);
    ck_assert_int_eq(core.token_seconds, 3600);     /* the default asked for */
    ck_assert_str_eq(core.token_audience, "vault");
    pthread_mutex_unlock(&core.mu);
    delete_pod("brief", uid);
}
END_TEST

/* A volume whose object is missing keeps the container waiting in
 * CreateContainerConfigError; it starts once the object appears. */
START_TEST(test_missing_configmap)
{
    const char *uid = test_uid(10);
    const char *spec = "\"volumes\":[{\"name\":\"late\",\"configMap\":{\"name\":\"late\"}}],";
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sleep\",\"3600\"],"
                      "\"volumeMounts\":[{\"name\":\"late\",\"mountPath\":\"/etc/late\"}]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_spec("late", uid, "Always", spec, NULL, app)),
                     VK_OK);
    char msg[512];
    EVENTUALLY(strcmp(waiting("late", "app", msg, sizeof msg), "CreateContainerConfigError") == 0,
               15000);
    ck_assert_msg(strstr(msg, "configmap \"late\" not found"), "message: %s", msg);
    ck_assert(phase_is("late", "Pending"));
    ck_assert(core_saw_event("configmap \"late\" not found"));

    core_put(false, "late", "{\"kind\":\"ConfigMap\",\"data\":{\"k\":\"v\"}}");
    EVENTUALLY(phase_is("late", "Running"), 20000);
    ck_assert(sh_says("late", "app", "cat /etc/late/k", "v"));
    delete_pod("late", uid);
}
END_TEST

/* A liveness probe that starts failing gets the container killed and
 * restarted; its end shows as lastState, also after a provider restart. */
START_TEST(test_liveness)
{
    const char *uid = test_uid(11);
    const char *app =
        "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\","
        "\"touch /tmp/healthy; exec sleep 3600\"],"
        "\"startupProbe\":{\"exec\":{\"command\":[\"cat\",\"/tmp/healthy\"]},"
        "\"periodSeconds\":1,\"failureThreshold\":30},"
        "\"livenessProbe\":{\"exec\":{\"command\":[\"cat\",\"/tmp/healthy\"]},"
        "\"periodSeconds\":1,\"timeoutSeconds\":2,\"failureThreshold\":2}},"
        /* A probe command that outlives its timeout fails. */
        "{\"name\":\"slow\"," IMAGE ",\"command\":[\"sleep\",\"3600\"],"
        "\"livenessProbe\":{\"exec\":{\"command\":[\"sleep\",\"5\"]},"
        "\"initialDelaySeconds\":2,\"periodSeconds\":1,\"timeoutSeconds\":1,"
        "\"failureThreshold\":1}}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("alive", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(ctr_ready("alive", "app"), 30000);
    int code;
    yajl_val st = status_of("alive", &code);
    char first[128];
    snprintf(first, sizeof first, "%s", jstr(ctr_named(st, "app"), "containerID", NULL));
    ck_assert(jbool(ctr_named(st, "app"), "started"));
    ck_assert_ptr_null(jstr(ctr_named(st, "app"), "lastState", "terminated", "reason", NULL));
    yajl_tree_free(st);
    harness_sleep_ms(3000);
    ck_assert_int_eq(restart_count("alive"), 0);

    ck_assert_int_eq(sh_in("alive", "app", "rm /tmp/healthy", NULL, 0), 0);
    EVENTUALLY(restart_count("alive") >= 1, 20000);
    EVENTUALLY(ctr_ready("alive", "app"), 20000);
    /* Events reach the core by calls of their own: wait for them too. */
    EVENTUALLY(core_saw_event("Warning Unhealthy: Liveness probe failed: cat: can't open "
                              "'/tmp/healthy'"), 10000);
    EVENTUALLY(core_saw_event("Normal Killing: Container app failed liveness probe, will be "
                              "restarted"), 10000);
    EVENTUALLY(core_saw_event("Liveness probe failed: command timed out after 1s"), 10000);
    EVENTUALLY(restarts_of("alive", "slow") >= 1, 15000);

    for (int round = 0; round < 2; round++) {
        st = status_of("alive", &code);
        yajl_val c = ctr_named(st, "app");
        ck_assert_str_ne(jstr(c, "containerID", NULL), first);
        ck_assert_str_eq(jstr(c, "lastState", "terminated", "containerID", NULL), first);
        ck_assert_int_eq(jint(c, "lastState", "terminated", "exitCode"), 137);
        ck_assert_str_eq(jstr(c, "lastState", "terminated", "reason", NULL), "Error");
        ck_assert_ptr_nonnull(jstr(c, "lastState", "terminated", "startedAt", NULL));
        ck_assert_ptr_nonnull(jstr(c, "lastState", "terminated", "finishedAt", NULL));
        ck_assert_ptr_nonnull(jstr(c, "state", "running", "startedAt", NULL));
        yajl_tree_free(st);
        if (round == 0) {
            stop();
            start();
            /* A new provider adopts the pod and probes it again. */
            EVENTUALLY(ctr_ready("alive", "app"), 30000);
        }
    }
    ck_assert_int_eq(restart_count("alive"), 1);
    delete_pod("alive", uid);
}
END_TEST

/* A TCP port nothing uses now on any address, for a server in a pod on
 * the host network (busybox httpd binds every address). The kernel's pick,
 * not one derived from the pid: such a port may be taken by a listener or
 * by one of the many outgoing connections of a busy test machine. The
 * port is free when the pod starts unless something takes it meanwhile. */
static int free_port(int other)
{
    for (;;) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        sa.sin_addr.s_addr = htonl(INADDR_ANY);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
        close(fd);
        if (ntohs(sa.sin_port) != other)
            return ntohs(sa.sin_port);
    }
}

/* Readiness follows an httpGet probe against busybox httpd and a
 * tcpSocket probe; a passing tcpSocket liveness probe restarts nothing. */
START_TEST(test_readiness)
{
    const char *uid = test_uid(12);
    int port = free_port(0), side_port = free_port(port);
    char pod[4096], web[1024], side[1024];
    snprintf(web, sizeof web,
             "{\"name\":\"web\"," IMAGE ",\"command\":[\"sh\",\"-c\","
             "\"mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p %d -h /www\"],"
             "\"ports\":[{\"name\":\"http\",\"containerPort\":%d}],"
             "\"readinessProbe\":{\"httpGet\":{\"path\":\"/index.html\",\"port\":\"http\","
             "\"httpHeaders\":[{\"name\":\"X-Probe\",\"value\":\"yes\"}]},"
             "\"periodSeconds\":1,\"failureThreshold\":1},"
             "\"livenessProbe\":{\"tcpSocket\":{\"port\":\"http\"},\"periodSeconds\":1}}",
             port, port);
    snprintf(side, sizeof side,
             "{\"name\":\"side\"," IMAGE ",\"command\":[\"sh\",\"-c\","
             "\"while [ ! -f /tmp/go ]; do sleep 0.2; done; exec httpd -f -p %d -h /tmp\"],"
             "\"readinessProbe\":{\"tcpSocket\":{\"port\":%d},\"periodSeconds\":1,"
             "\"failureThreshold\":1}}",
             side_port, side_port);
    char both[2100];
    snprintf(both, sizeof both, "%s,%s", web, side);
    snprintf(pod, sizeof pod, "%s", pod_doc("ready", uid, "Always", NULL, both));
    ck_assert_int_eq(pod_call("CreatePod", pod), VK_OK);

    EVENTUALLY(ctr_ready("ready", "web") && phase_is("ready", "Running"), 30000);
    ck_assert(!ctr_ready("ready", "side"));
    ck_assert(!pod_ready("ready"));

    ck_assert_int_eq(sh_in("ready", "side", "touch /tmp/go", NULL, 0), 0);
    EVENTUALLY(pod_ready("ready"), 10000);

    ck_assert_int_eq(sh_in("ready", "web", "rm /www/index.html", NULL, 0), 0);
    EVENTUALLY(!ctr_ready("ready", "web") && !pod_ready("ready"), 10000);
    /* The event reaches the core by a call of its own, which may land
     * after the status changed. */
    EVENTUALLY(core_saw_event("Readiness probe failed: HTTP probe failed with statuscode: 404"),
               10000);
    ck_assert(ctr_ready("ready", "side"));

    ck_assert_int_eq(sh_in("ready", "web", "echo ok > /www/index.html", NULL, 0), 0);
    EVENTUALLY(pod_ready("ready"), 10000);

    int code;
    yajl_val st = status_of("ready", &code);
    ck_assert_int_eq(jint(ctr_named(st, "web"), "restartCount", NULL, NULL), 0);
    ck_assert_int_eq(jint(ctr_named(st, "side"), "restartCount", NULL, NULL), 0);
    yajl_tree_free(st);
    delete_pod("ready", uid);
}
END_TEST

/* A socket listening on a free port of 127.0.0.1, that port in *port. */
static int listen_loopback(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof sa;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(listen(fd, 8), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* One port-forward through the provider: send input (then close our side
 * when close_write), collect what comes back into out until the provider
 * ends the stream; its final status. */
static int port_forward(const char *pod, int port, const char *input, bool close_write, char *out,
                        size_t n)
{
    Vkc__Provider__V1__PortForwardInput in = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
    Vkc__Provider__V1__PortForwardStart st = VKC__PROVIDER__V1__PORT_FORWARD_START__INIT;
    Vkc__Provider__V1__PodRef ref = harness_pod_ref(pod);
    st.pod = &ref;
    st.port = port;
    in.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_START;
    in.start = &st;
    vk_call *c = vk_call_start(m.ch, P "PortForward", 20000);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &in.base), 0);
    Vkc__Provider__V1__PortForwardInput data = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
    data.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_DATA;
    data.data.data = (uint8_t *)input;
    data.data.len = strlen(input);
    /* A forward the provider refuses at once (no such pod, nothing
     * listening) may have ended before our data goes out: the send then
     * fails, and the call's status, which the callers check, says why. */
    bool open = vk_call_send(c, &data.base) == 0;
    if (open && close_write) {
        Vkc__Provider__V1__PortForwardInput eof = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INIT;
        eof.input_case = VKC__PROVIDER__V1__PORT_FORWARD_INPUT__INPUT_CLOSE_WRITE;
        eof.close_write = true;
        vk_call_send(c, &eof.base);
    }
    return collect(c, &vkc__provider__v1__port_forward_output__descriptor, out, n);
}

/* Port-forward goes through CRI PortForward and the runtime's
 * port-forward server, as the kubelet's does. Without CNI here every pod
 * is on the host network, where the runtime connects in the node's
 * namespace: the same protocol as for a pod network. */
START_TEST(test_port_forward)
{
    const char *uid = test_uid(15);
    int port = free_port(0);
    char app[512], out[1024];
    snprintf(app, sizeof app,
             "{\"name\":\"web\"," IMAGE ",\"command\":[\"sh\",\"-c\","
             "\"mkdir -p /www && echo forwarded > /www/index.html && "
             "exec httpd -f -p %d -h /www\"],"
             "\"readinessProbe\":{\"tcpSocket\":{\"port\":%d},\"periodSeconds\":1}}",
             port, port);
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("fwd", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(ctr_ready("fwd", "web"), 30000);

    /* httpd ends the connection after its answer... */
    const char *req = "GET /index.html HTTP/1.0\r\n\r\n";
    ck_assert_int_eq(port_forward("fwd", port, req, false, out, sizeof out), VK_OK);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200 OK\r\n", 17) == 0, "got '%s'", out);
    ck_assert_msg(strstr(out, "\r\n\r\nforwarded\n") != NULL, "got '%s'", out);
    /* ...also when we closed our side first. */
    ck_assert_int_eq(port_forward("fwd", port, req, true, out, sizeof out), VK_OK);
    ck_assert_msg(strstr(out, "\r\n\r\nforwarded\n") != NULL, "got '%s'", out);
    /* Nothing listens there. */
    int closed;
    close(listen_loopback(&closed));
    ck_assert_int_eq(port_forward("fwd", closed, "x", false, out, sizeof out), VK_UNAVAILABLE);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(port_forward("nosuch", port, "x", false, out, sizeof out), VK_NOT_FOUND);
    delete_pod("fwd", uid);
}
END_TEST

/* ---- an HTTPS server for probes --------------------------------------------------- */

/* Answers every request with status, remembering the last request's
 * head; on a free port of 127.0.0.1 with a self-signed certificate. */
static struct {
    int fd;
    SSL_CTX *ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    int status;
    char request[2048];
    bool stop;
} tls;

static void tls_serve_one(int fd)
{
    SSL *ssl = SSL_new(tls.ctx);
    char req[sizeof tls.request];
    size_t len = 0;
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1) {
        while (len < sizeof req - 1) {
            int k = SSL_read(ssl, req + len, (int)(sizeof req - 1 - len));
            if (k <= 0)
                break;
            len += (size_t)k;
            req[len] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[len] = '\0';
        char answer[128];
        pthread_mutex_lock(&tls.mu);
        snprintf(tls.request, sizeof tls.request, "%s", req);
        int n = snprintf(answer, sizeof answer,
                         "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                         tls.status);
        pthread_mutex_unlock(&tls.mu);
        SSL_write(ssl, answer, n);
        SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    close(fd);
}

static void *tls_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&tls.mu);
        bool stop = tls.stop;
        pthread_mutex_unlock(&tls.mu);
        if (stop)
            return NULL;
        struct pollfd pfd = {.fd = tls.fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) == 1) {
            int fd = accept(tls.fd, NULL, NULL);
            if (fd >= 0)
                tls_serve_one(fd);
        }
    }
}

/* Start the server; its port. */
static int tls_start(void)
{
    char cmd[512], cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/cert.pem", m.dir);
    snprintf(key, sizeof key, "%s/key.pem", m.dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
             "-subj /CN=probe -days 1 -keyout %s -out %s 2>/dev/null", key, cert);
    ck_assert_int_eq(system(cmd), 0);
    tls.ctx = SSL_CTX_new(TLS_server_method());
    ck_assert_ptr_nonnull(tls.ctx);
    ck_assert_int_eq(SSL_CTX_use_certificate_file(tls.ctx, cert, SSL_FILETYPE_PEM), 1);
    ck_assert_int_eq(SSL_CTX_use_PrivateKey_file(tls.ctx, key, SSL_FILETYPE_PEM), 1);
    int port;
    tls.fd = listen_loopback(&port);
    pthread_mutex_init(&tls.mu, NULL);
    tls.status = 200;
    ck_assert_int_eq(pthread_create(&tls.thread, NULL, tls_main, NULL), 0);
    return port;
}

static void tls_stop(void)
{
    pthread_mutex_lock(&tls.mu);
    tls.stop = true;
    pthread_mutex_unlock(&tls.mu);
    pthread_join(tls.thread, NULL);
    close(tls.fd);
    SSL_CTX_free(tls.ctx);
    pthread_mutex_destroy(&tls.mu);
}

static void tls_set_status(int status)
{
    pthread_mutex_lock(&tls.mu);
    tls.status = status;
    pthread_mutex_unlock(&tls.mu);
}

static bool tls_request_has(const char *text)
{
    pthread_mutex_lock(&tls.mu);
    bool yes = strstr(tls.request, text) != NULL;
    pthread_mutex_unlock(&tls.mu);
    return yes;
}

/* An HTTPS httpGet probe, unverified as the kubelet's, with its host and
 * httpHeaders (a Host header among them) honoured. */
START_TEST(test_https_probe)
{
    const char *uid = test_uid(16);
    char app[1024];
    int port = tls_start();
    snprintf(app, sizeof app,
             "{\"name\":\"app\"," IMAGE ",\"command\":[\"sleep\",\"3600\"],"
             "\"readinessProbe\":{\"httpGet\":{\"scheme\":\"HTTPS\",\"host\":\"127.0.0.1\","
             "\"port\":%d,\"path\":\"/healthz\",\"httpHeaders\":["
             "{\"name\":\"Host\",\"value\":\"probe.example\"},"
             "{\"name\":\"X-Probe\",\"value\":\"tls\"}]},"
             "\"periodSeconds\":1,\"failureThreshold\":1}}",
             port);
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("secure", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(ctr_ready("secure", "app"), 30000);
    ck_assert(tls_request_has("GET /healthz HTTP/1.1\r\n"));
    ck_assert(tls_request_has("\r\nHost: probe.example\r\n"));
    ck_assert(tls_request_has("\r\nX-Probe: tls\r\n"));
    ck_assert(tls_request_has("\r\nUser-Agent: kube-probe/"));

    tls_set_status(503);
    EVENTUALLY(!ctr_ready("secure", "app"), 10000);
    ck_assert(core_saw_event("Readiness probe failed: HTTP probe failed with statuscode: 503"));
    tls_set_status(200);
    EVENTUALLY(ctr_ready("secure", "app"), 10000);
    delete_pod("secure", uid);
    tls_stop();
}
END_TEST

/* ---- CRI API versions -------------------------------------------------------------- */

/* A pod's life on runtime.v1alpha2, which containerd 1.6 serves beside
 * runtime.v1: sandbox, container, logs, exec, teardown. */
START_TEST(test_cri_v1alpha2)
{
    const char *uid = test_uid(17);
    stop();
    m.cri_api = "v1alpha2";
    start();
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\","
                      "\"echo on v1alpha2; exec sleep 3600\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("alpha", uid, "Always", NULL, app)), VK_OK);
    EVENTUALLY(phase_is("alpha", "Running"), 30000);
    EVENTUALLY(logs_contain("alpha", "app", "on v1alpha2"), 10000);
    ck_assert(sh_says("alpha", "app", "echo exec works", "exec works\n"));
    ck_assert_uint_eq(sandboxes_of(uid), 1);
    delete_pod("alpha", uid);
}
END_TEST

/* A runtime that serves runtime.v1alpha2 alone, answering Version and
 * Status, and remembering what was asked. */
static struct {
    vk_server *server;
    pthread_mutex_t mu;
    char asked[1024];
} fake;

static void fake_asked(vk_scall *call, const ProtobufCMessageDescriptor *req_desc)
{
    ProtobufCMessage *msg = NULL;
    if (vk_scall_recv(call, req_desc, &msg) == 1)
        protobuf_c_message_free_unpacked(msg, NULL);
    pthread_mutex_lock(&fake.mu);
    size_t len = strlen(fake.asked);
    snprintf(fake.asked + len, sizeof fake.asked - len, "%s\n", vk_scall_method(call));
    pthread_mutex_unlock(&fake.mu);
}

static void fake_version(vk_scall *call, void *ud)
{
    (void)ud;
    fake_asked(call, &runtime__v1__version_request__descriptor);
    Runtime__V1__VersionResponse resp = RUNTIME__V1__VERSION_RESPONSE__INIT;
    resp.runtime_name = "fakecri";
    resp.runtime_version = "0.1";
    vk_scall_reply(call, &resp.base);
}

static void fake_status(vk_scall *call, void *ud)
{
    (void)ud;
    fake_asked(call, &runtime__v1__status_request__descriptor);
    Runtime__V1__StatusResponse resp = RUNTIME__V1__STATUS_RESPONSE__INIT;
    vk_scall_reply(call, &resp.base);
}

static bool fake_was_asked(const char *method)
{
    pthread_mutex_lock(&fake.mu);
    bool yes = strstr(fake.asked, method) != NULL;
    pthread_mutex_unlock(&fake.mu);
    return yes;
}

/* The runtime version the provider reports for its node. */
static char *node_runtime(char *buf, size_t n)
{
    Vkc__Provider__V1__GetNodeRequest req = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    Vkc__Provider__V1__Node *node = NULL;
    ck_assert_int_eq(unary("GetNode", &req.base, &vkc__provider__v1__node__descriptor, &node),
                     VK_OK);
    yajl_val info = harness_json_parse(node->node_info_json.data, node->node_info_json.len);
    snprintf(buf, n, "%s", jstr(info, "containerRuntimeVersion", NULL));
    yajl_tree_free(info);
    protobuf_c_message_free_unpacked(&node->base, NULL);
    return buf;
}

/* Against a runtime without runtime.v1, auto falls back to v1alpha2 for
 * every call; --cri-api v1 does not. */
START_TEST(test_cri_fallback)
{
    char addr[128], version[128];
    snprintf(addr, sizeof addr, "unix:%s/fake.sock", m.dir);
    pthread_mutex_init(&fake.mu, NULL);
    fake.server = vk_server_new(addr, 0, 4);
    ck_assert_ptr_nonnull(fake.server);
    vk_server_handle(fake.server, "/runtime.v1alpha2.RuntimeService/Version", fake_version, NULL);
    vk_server_handle(fake.server, "/runtime.v1alpha2.RuntimeService/Status", fake_status, NULL);
    ck_assert_int_eq(vk_server_start(fake.server), 0);

    stop();
    m.runtime = addr;
    start();
    ck_assert_str_eq(node_runtime(version, sizeof version), "fakecri://0.1");
    /* The node's first runtime check runs as the provider starts. */
    EVENTUALLY(fake_was_asked("/runtime.v1alpha2.RuntimeService/Status"), 10000);

    stop();
    m.cri_api = "v1";
    start();
    ck_assert_str_eq(node_runtime(version, sizeof version), "cri://unknown");

    stop();
    vk_server_stop(fake.server, 0);
    vk_server_free(fake.server);
    pthread_mutex_destroy(&fake.mu);
    m.runtime = m.cri_api = NULL;
    start();
}
END_TEST

/* Termination messages (file, custom path, fallback to the log), and a
 * pod past its activeDeadlineSeconds, stopped with its grace period. */
START_TEST(test_termination)
{
    const char *uid = test_uid(13);
    const char *ctrs =
        "{\"name\":\"note\"," IMAGE ",\"command\":[\"sh\",\"-c\","
        "\"printf 'bye from app' > /dev/termination-log; exit 3\"]},"
        "{\"name\":\"custom\"," IMAGE ",\"terminationMessagePath\":\"/tmp/custom-msg\","
        "\"command\":[\"sh\",\"-c\",\"printf custom > /tmp/custom-msg\"]},"
        "{\"name\":\"fallback\"," IMAGE ",\"terminationMessagePolicy\":\"FallbackToLogsOnError\","
        "\"command\":[\"sh\",\"-c\",\"echo first words; echo last words; exit 4\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("ends", uid, "Never", NULL, ctrs)), VK_OK);
    EVENTUALLY(phase_is("ends", "Failed"), 30000);
    int code;
    yajl_val st = status_of("ends", &code);
    yajl_val note = ctr_named(st, "note"), custom = ctr_named(st, "custom");
    yajl_val fallback = ctr_named(st, "fallback");
    ck_assert_int_eq(jint(note, "state", "terminated", "exitCode"), 3);
    ck_assert_str_eq(jstr(note, "state", "terminated", "message", NULL), "bye from app");
    ck_assert_int_eq(jint(custom, "state", "terminated", "exitCode"), 0);
    ck_assert_str_eq(jstr(custom, "state", "terminated", "message", NULL), "custom");
    ck_assert_int_eq(jint(fallback, "state", "terminated", "exitCode"), 4);
    ck_assert_str_eq(jstr(fallback, "state", "terminated", "message", NULL),
                     "first words\nlast words\n");
    yajl_tree_free(st);
    delete_pod("ends", uid);

    const char *luid = test_uid(14);
    const char *spec = "\"activeDeadlineSeconds\":3,";
    const char *app = "{\"name\":\"app\"," IMAGE ",\"command\":[\"sh\",\"-c\","
                      "\"trap 'printf graceful > /dev/termination-log; exit 0' TERM; "
                      "while :; do sleep 0.2; done\"]}";
    ck_assert_int_eq(pod_call("CreatePod", pod_spec("limited", luid, "Always", spec, NULL, app)),
                     VK_OK);
    EVENTUALLY(phase_is("limited", "Running"), 30000);
    EVENTUALLY(phase_is("limited", "Failed"), 15000);
    st = status_of("limited", &code);
    ck_assert_str_eq(jstr(st, "reason", NULL), "DeadlineExceeded");
    ck_assert_str_eq(jstr(st, "message", NULL),
                     "Pod was active on the node longer than the specified deadline");
    yajl_tree_free(st);
    /* Stopped with SIGTERM first: the container's trap ran. */
    EVENTUALLY(terminated("limited", "app"), 10000);
    st = status_of("limited", &code);
    yajl_val c = ctr_named(st, "app");
    ck_assert_int_eq(jint(c, "state", "terminated", "exitCode"), 0);
    ck_assert_str_eq(jstr(c, "state", "terminated", "message", NULL), "graceful");
    yajl_tree_free(st);
    ck_assert(core_saw_event("DeadlineExceeded"));
    harness_sleep_ms(2000);
    ck_assert(phase_is("limited", "Failed"));
    ck_assert_int_eq(restart_count("limited"), 0);
    delete_pod("limited", luid);
}
END_TEST

/* ---- main ------------------------------------------------------------------------------ */

/* The runtime to test against: $VKC_CRI_ENDPOINT, or what setup.sh starts. */
static int find_endpoint(void)
{
    const char *env = getenv("VKC_CRI_ENDPOINT");
    if (env && env[0]) {
        snprintf(endpoint, sizeof endpoint, "%s", env);
        return 0;
    }
    FILE *f = popen("tests/cri/setup.sh", "r");
    char line[256];
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VKC_CRI_ENDPOINT=", 17) == 0)
            snprintf(endpoint, sizeof endpoint, "%.*s", (int)strcspn(line + 17, "\n"), line + 17);
    return pclose(f) == 0 && endpoint[0] ? 0 : -1;
}

int main(void)
{
    snprintf(uid_prefix, sizeof uid_prefix, "%08x-0000-4000-8000-", (unsigned)getpid());
    if (find_endpoint() < 0) {
        fprintf(stderr, "test_cri: no CRI runtime (tests/cri/setup.sh failed)\n");
        return 1;
    }
    Suite *s = suite_create("cri provider");
    struct {
        const char *name;
        const TTest *test;
        int timeout;
    } cases[] = {
        {"pod_runs", test_pod_runs, 120},
        {"never_fails", test_never_fails, 60},
        {"on_failure_restarts", test_on_failure_restarts, 90},
        {"follow_logs", test_follow_logs, 60},
        {"restart_adopts", test_restart_adopts, 90},
        {"attach", test_attach, 60},
        {"sandbox_recreated", test_sandbox_recreated, 60},
        {"node", test_node, 30},
        {"unknown_pod", test_unknown_pod, 30},
        {"api_volumes", test_api_volumes, 90},
        {"missing_configmap", test_missing_configmap, 60},
        {"token_refresh", test_token_refresh, 60},
        {"liveness", test_liveness, 90},
        {"readiness", test_readiness, 90},
        {"termination", test_termination, 90},
        {"port_forward", test_port_forward, 60},
        {"https_probe", test_https_probe, 60},
        {"cri_v1alpha2", test_cri_v1alpha2, 90},
        {"cri_fallback", test_cri_fallback, 60},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, cases[i].timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
