/* test_cri.c -- vkc-provider-cri against a real containerd.
 *
 * main() runs tests/cri/setup.sh (which installs, configures and starts a
 * containerd of its own and imports a busybox image) unless
 * VKC_CRI_ENDPOINT names a runtime already. Each case starts the provider
 * on a Unix socket with a root directory of its own, drives it over gRPC as
 * the core would, and checks the runtime's side through CRI itself.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "cri.pb-c.h"
#include "provider.pb-c.h"
#include "rpc.h"

#define P "/vkc.provider.v1.Provider/"
#define T 10000 /* deadline of every unary call, ms */

static char endpoint[256];

typedef struct provider {
    pid_t pid;
    char dir[64];
    vk_channel *ch;     /* the provider */
    vk_channel *rt;     /* the runtime, to check what the provider did */
} provider;

static provider m;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

#define EVENTUALLY(cond, ms)                                            \
    do {                                                                \
        long end_ = now_ms() + (ms);                                    \
        while (!(cond) && now_ms() < end_)                              \
            sleep_ms(100);                                              \
        ck_assert_msg(cond, "timed out waiting for " #cond);           \
    } while (0)

static void start(void)
{
    char bin[512], root[128], listen[128], sock[128];
    const char *dir = getenv("VKC_BIN_DIR");
    snprintf(bin, sizeof bin, "%s/vkc-provider-cri", dir && dir[0] ? dir : "build/bin");
    /* A restart keeps the directory, and with it the pods. */
    if (!m.dir[0]) {
        snprintf(m.dir, sizeof m.dir, "/tmp/vkc-cri-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(m.dir));
    }
    snprintf(root, sizeof root, "%s/root", m.dir);
    snprintf(listen, sizeof listen, "unix:%s/p.sock", m.dir);
    snprintf(sock, sizeof sock, "%s/p.sock", m.dir);

    m.pid = fork();
    ck_assert_int_ge(m.pid, 0);
    if (m.pid == 0) {
        setenv("VKC_PROVIDER_LISTEN", listen, 1);
        if (!getenv("VKC_TEST_VERBOSE")) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2);
        }
        execl(bin, bin, "--runtime-endpoint", endpoint, "--root-dir", root, "--cgroup-root",
              "/vkc-test", (char *)NULL);
        _exit(127);
    }
    for (long end = now_ms() + 15000; access(sock, F_OK) != 0 && now_ms() < end; sleep_ms(20)) {
        if (waitpid(m.pid, NULL, WNOHANG) == m.pid) {
            m.pid = 0;
            ck_abort_msg("provider exited at start (%s)", bin);
        }
    }
    m.ch = vk_channel_open(listen, 0);
    m.rt = vk_channel_open(endpoint, 0);
    ck_assert_msg(vk_channel_wait_ready(m.ch, 10000), "provider did not come up");
    ck_assert_msg(vk_channel_wait_ready(m.rt, 10000), "runtime not reachable at %s", endpoint);
}

static void scrub(void);

/* A failed case skips its teardown: the next setup scrubs what it left. */
static void setup(void)
{
    vk_rpc_init();
    memset(&m, 0, sizeof m);
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
    if (m.pid > 0) {
        int status = -1;
        kill(m.pid, SIGTERM);
        for (long end = now_ms() + 20000; now_ms() < end; sleep_ms(20))
            if (waitpid(m.pid, &status, WNOHANG) == m.pid)
                break;
        if (status == -1) {
            kill(m.pid, SIGKILL);
            waitpid(m.pid, NULL, 0);
        }
        m.pid = 0;
        ck_assert_msg(status != -1, "provider did not stop on SIGTERM");
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "provider ended with status 0x%x on SIGTERM", status);
    }
}

/* Pod uids carry the test process's id, so that two runs sharing one
 * runtime (make test and make test-asan at once) never meet. */
static char uid_prefix[32];
static char uids[16][48];

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
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", m.dir);
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

static char pod_buf[4096];

/* A hostNetwork pod: uid, restart policy, then the containers' JSON. */
static const char *pod_doc(const char *name, const char *uid, const char *restart,
                           const char *init, const char *containers)
{
    snprintf(pod_buf, sizeof pod_buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"default\",\"uid\":\"%s\",\"labels\":{\"app\":\"%s\"}},"
             "\"spec\":{\"hostNetwork\":true,\"restartPolicy\":\"%s\","
             "\"terminationGracePeriodSeconds\":1,"
             "\"volumes\":[{\"name\":\"work\",\"emptyDir\":{}}],"
             "\"initContainers\":[%s],\"containers\":[%s]}}",
             name, uid, name, restart, init ? init : "", containers);
    return pod_buf;
}

static Vkc__Provider__V1__PodRef ref_of(const char *name)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = (char *)name;
    return ref;
}

static yajl_val parse(const void *data, size_t len)
{
    char *copy = strndup(data, len);
    char err[128];
    yajl_val v = yajl_tree_parse(copy, err, sizeof err);
    free(copy);
    ck_assert_msg(v != NULL, "bad JSON: %s", err);
    return v;
}

static yajl_val status_of(const char *name, int *code)
{
    Vkc__Provider__V1__GetPodStatusRequest req = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = ref_of(name);
    Vkc__Provider__V1__GetPodStatusResponse *resp = NULL;
    req.pod = &ref;
    *code = unary("GetPodStatus", &req.base, &vkc__provider__v1__get_pod_status_response__descriptor,
                  &resp);
    if (*code != VK_OK)
        return NULL;
    yajl_val v = parse(resp->status_json.data, resp->status_json.len);
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
    Vkc__Provider__V1__PodRef ref = ref_of(pod);
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
    size_t len = 0;
    Vkc__Provider__V1__LogChunk *chunk;
    while (vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor,
                        (ProtobufCMessage **)&chunk) == 1) {
        size_t k = chunk->data.len < n - 1 - len ? chunk->data.len : n - 1 - len;
        memcpy(out + len, chunk->data.data, k);
        len += k;
        protobuf_c_message_free_unpacked(&chunk->base, NULL);
    }
    out[len] = '\0';
    int code = vk_call_finish(c, NULL);
    vk_call_free(c);
    return code;
}

static bool logs_contain(const char *pod, const char *ctr, const char *text)
{
    char buf[4096];
    log_opts o = {-1, -1, false, false, 0};
    return logs(pod, ctr, o, buf, sizeof buf) == VK_OK && strstr(buf, text) != NULL;
}

/* Run a command in a container: its exit code (-1 when none came), the
 * final status in *code, stdout into out. */
static int exec_run(const char *pod, const char *ctr, const char *const *cmd, size_t n_cmd,
                    const char *input, bool tty, char *out, size_t n, int *code)
{
    Vkc__Provider__V1__ExecInput in = VKC__PROVIDER__V1__EXEC_INPUT__INIT;
    Vkc__Provider__V1__ExecStart st = VKC__PROVIDER__V1__EXEC_START__INIT;
    Vkc__Provider__V1__PodRef ref = ref_of(pod);
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
    return exec_run(pod, ctr, cmd, n_cmd, input, false, out, n, code);
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
    ck_assert_int_eq(exec_run("web", "app", term, 3, NULL, true, buf, sizeof buf, &code), 0);
    ck_assert_msg(strstr(buf, "/dev/pts/") && strstr(buf, "40 100"), "tty exec: %s", buf);

    /* Stats name the pod with CPU and memory figures. */
    Vkc__Provider__V1__GetStatsSummaryRequest sreq = VKC__PROVIDER__V1__GET_STATS_SUMMARY_REQUEST__INIT;
    Vkc__Provider__V1__GetStatsSummaryResponse *sresp = NULL;
    ck_assert_int_eq(unary("GetStatsSummary", &sreq.base,
                           &vkc__provider__v1__get_stats_summary_response__descriptor, &sresp),
                     VK_OK);
    yajl_val sum = parse(sresp->summary_json.data, sresp->summary_json.len);
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
            yajl_val v = parse(ev->status_json.data, ev->status_json.len);
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
    for (long end = now_ms() + 15000; !waiting && now_ms() < end; sleep_ms(100)) {
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
    Vkc__Provider__V1__PodRef ref = ref_of("talk");
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
    EVENTUALLY(phase_is("keep", "Running"), 10000);
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
    Vkc__Provider__V1__PodRef ref = ref_of("chat");
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
    sleep_ms(500);
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
    for (long end = now_ms() + 10000; !ready && now_ms() < end; sleep_ms(100)) {
        ck_assert_int_eq(unary("GetNode", &req.base, &vkc__provider__v1__node__descriptor, &node),
                         VK_OK);
        yajl_val conds = parse(node->conditions_json.data, node->conditions_json.len);
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
    yajl_val info = parse(node->node_info_json.data, node->node_info_json.len);
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
