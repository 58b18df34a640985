/* test_interlink.c -- vkc-provider-interlink against a fake interLink plugin.
 *
 * Each case starts tests/interlink/fake_plugin.py (TCP or a unix socket),
 * serves a Core service of its own with rpc.h (GetConfigMap, GetSecret,
 * RequestServiceAccountToken for the names the pods use), starts the shim
 * from $VKC_BIN_DIR (default build/bin) on a unix socket and calls it over
 * gRPC as the core would. What the plugin received it reports on
 * /_fake/requests, which the test reads with libcurl. */
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "provider.pb-c.h"
#include "rpc.h"
#include "harness.h"

#define P "/vkc.provider.v1.Provider/"
#define T 8000 /* deadline of every unary call, ms */

#define UID_WEB "7f3c1a52-0000-4000-8000-000000000001"
#define UID_OTHER "7f3c1a52-0000-4000-8000-000000000002"

typedef struct env {
    char dir[64];
    char target[128];   /* the shim's listen address */
    char core[128];     /* the Core service */
    pid_t plugin, shim;
    int port;           /* the plugin's TCP port, 0 on a socket */
    bool on_socket;
    vk_server *core_server;
    vk_channel *ch;
} env;

static env e;
static atomic_int core_calls;

#define EVENTUALLY(cond, ms) HARNESS_EVENTUALLY(cond, ms, 20)

static void quiet_child(void)
{
    if (!getenv("VKC_TEST_VERBOSE")) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        close(null);
    }
}

static char *path_in(const char *name)
{
    static char buf[4][160];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", e.dir, name);
    return b;
}

/* Wait up to ms for pid to end; its wait status, or -1. */
/* ---- the Core service ------------------------------------------------- */

static const char *const configmap =
    "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"app-config\","
    "\"namespace\":\"default\"},\"data\":{\"settings.yaml\":\"greeting: hello\\n\","
    "\"mode\":\"fast\"}}";
static const char *const secret =
    "{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{\"name\":\"app-secret\","
    "\"namespace\":\"default\"},\"type\":\"Opaque\",\"data\":{\"password\":\"czNjcjN0\"}}";

static void core_get(vk_scall *c, const char *want, const char *doc)
{
    ProtobufCMessage *m = NULL;
    atomic_fetch_add(&core_calls, 1);
    if (vk_scall_recv(c, &vkc__provider__v1__get_object_request__descriptor, &m) != 1) {
        vk_scall_finish(c, VK_INVALID_ARGUMENT, "bad request");
        return;
    }
    Vkc__Provider__V1__GetObjectRequest *req = (Vkc__Provider__V1__GetObjectRequest *)m;
    if (strcmp(req->namespace_, "default") == 0 && strcmp(req->name, want) == 0) {
        Vkc__Provider__V1__GetObjectResponse resp = VKC__PROVIDER__V1__GET_OBJECT_RESPONSE__INIT;
        resp.object_json.data = (uint8_t *)doc;
        resp.object_json.len = strlen(doc);
        vk_scall_reply(c, &resp.base);
    } else {
        char msg[160];
        snprintf(msg, sizeof msg, "%s/%s not found", req->namespace_, req->name);
        vk_scall_finish(c, VK_NOT_FOUND, msg);
    }
    protobuf_c_message_free_unpacked(m, NULL);
}

static void core_configmap(vk_scall *c, void *ud)
{
    (void)ud;
    core_get(c, "app-config", configmap);
}

static void core_secret(vk_scall *c, void *ud)
{
    (void)ud;
    core_get(c, "app-secret", secret);
}

static void core_token(vk_scall *c, void *ud)
{
    (void)ud;
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(c, &vkc__provider__v1__service_account_token_request__descriptor, &m) != 1) {
        vk_scall_finish(c, VK_INVALID_ARGUMENT, "bad request");
        return;
    }
    Vkc__Provider__V1__ServiceAccountTokenRequest *req = (void *)m;
    char token[256];
    snprintf(token, sizeof token, "token:%s/%s:%s:%s", req->pod->namespace_, req->pod->name,
             req->service_account_name, req->n_audiences ? req->audiences[0] : "");
    Vkc__Provider__V1__ServiceAccountTokenResponse resp =
        VKC__PROVIDER__V1__SERVICE_ACCOUNT_TOKEN_RESPONSE__INIT;
    resp.token = token;
    resp.expiration_timestamp = 4102444800;
    vk_scall_reply(c, &resp.base);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void start_core(void)
{
    e.core_server = vk_server_new(e.core, 0, 8);
    ck_assert_ptr_nonnull(e.core_server);
    vk_server_handle(e.core_server, "/vkc.provider.v1.Core/GetConfigMap", core_configmap, NULL);
    vk_server_handle(e.core_server, "/vkc.provider.v1.Core/GetSecret", core_secret, NULL);
    vk_server_handle(e.core_server, "/vkc.provider.v1.Core/RequestServiceAccountToken",
                     core_token, NULL);
    ck_assert_int_eq(vk_server_start(e.core_server), 0);
}

/* ---- the fake plugin ---------------------------------------------------- */

static void start_plugin(bool on_socket)
{
    char script[512];
    const char *src = getenv("VKC_SOURCE_DIR");
    snprintf(script, sizeof script, "%s/tests/interlink/fake_plugin.py", src ? src : ".");
    e.on_socket = on_socket;
    unlink(path_in("port"));
    e.plugin = fork();
    ck_assert_int_ge(e.plugin, 0);
    if (e.plugin == 0) {
        quiet_child();
        if (on_socket)
            execl("/usr/bin/python3", "python3", script, "--socket", path_in("plugin.sock"),
                  (char *)NULL);
        else
            execl("/usr/bin/python3", "python3", script, "--port-file", path_in("port"),
                  (char *)NULL);
        _exit(127);
    }
    const char *ready = on_socket ? path_in("plugin.sock") : path_in("port");
    for (long end = harness_now_ms() + 10000; access(ready, F_OK) != 0 && harness_now_ms() < end;
         harness_sleep_ms(10))
        ck_assert_msg(waitpid(e.plugin, NULL, WNOHANG) != e.plugin, "fake plugin exited");
    ck_assert_msg(access(ready, F_OK) == 0, "fake plugin did not come up");
    if (!on_socket) {
        FILE *f = fopen(ready, "r");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(fscanf(f, "%d", &e.port), 1);
        fclose(f);
    }
}

static void stop_plugin(void)
{
    if (e.plugin > 0) {
        kill(e.plugin, SIGKILL);
        waitpid(e.plugin, NULL, 0);
    }
    e.plugin = 0;
}

static size_t collect(char *data, size_t size, size_t n, void *ud)
{
    size_t len = size * n;
    char **buf = ud;
    size_t have = *buf ? strlen(*buf) : 0;
    char *grown = realloc(*buf, have + len + 1);
    if (!grown)
        return 0;
    memcpy(grown + have, data, len);
    grown[have + len] = '\0';
    *buf = grown;
    return len;
}

/* A control call to the fake plugin; its answer (free it). */
static char *plugin_http(const char *method, const char *path, const char *body)
{
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", e.port, path);
    if (e.on_socket)
        snprintf(url, sizeof url, "http://localhost%s", path);
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    char *out = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (e.on_socket)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, path_in("plugin.sock"));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    ck_assert_msg(rc == CURLE_OK, "fake plugin control call failed: %s", curl_easy_strerror(rc));
    return out;
}

static void plugin_mode(const char *mode)
{
    free(plugin_http("POST", "/_fake/mode", mode));
}

static size_t jlen(yajl_val v, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val a = yajl_tree_get(v, path, yajl_t_array);
    return a ? a->u.array.len : 0;
}

static bool jnull(yajl_val v, const char *key)
{
    const char *path[] = {key, NULL};
    yajl_val n = yajl_tree_get(v, path, yajl_t_any);
    return n && YAJL_IS_NULL(n);
}

/* The body of the nth request (from 0) of method and path the plugin got,
 * parsed (free it), or NULL. *count (may be NULL) gets how many there were. */
static yajl_val plugin_request(const char *method, const char *path, int nth, int *count)
{
    char *list = plugin_http("GET", "/_fake/requests", NULL);
    yajl_val all = harness_json_parse(list, strlen(list));
    free(list);
    yajl_val found = NULL;
    int seen = 0;
    for (size_t i = 0; i < all->u.array.len; i++) {
        yajl_val r = all->u.array.values[i];
        const char *m[] = {"method", NULL}, *p[] = {"path", NULL}, *b[] = {"body", NULL};
        if (!harness_jstr(r, m) || !harness_jstr(r, p) || strcmp(harness_jstr(r, m), method) != 0 ||
            strcmp(harness_jstr(r, p), path) != 0)
            continue;
        if (seen++ == nth) {
            const char *text = harness_jstr(r, b);
            ck_assert_ptr_nonnull(text);
            found = harness_json_parse(text, strlen(text));
        }
    }
    yajl_tree_free(all);
    if (count)
        *count = seen;
    return found;
}

/* ---- the shim ------------------------------------------------------------ */

/* Start the shim with extra flags (NULL-terminated). */
static void start_shim(const char *first, ...)
{
    const char *argv[24];
    int argc = 0;
    char bin[512], url[64];
    snprintf(bin, sizeof bin, "%s/vkc-provider-interlink", harness_bin_dir());
    argv[argc++] = bin;
    if (e.on_socket) {
        argv[argc++] = "--plugin-socket";
        argv[argc++] = path_in("plugin.sock");
    } else {
        snprintf(url, sizeof url, "http://127.0.0.1:%d/", e.port);
        argv[argc++] = "--plugin-url";
        argv[argc++] = url;
    }
    argv[argc++] = "--poll-interval";
    argv[argc++] = "200ms";
    argv[argc++] = "--timeout";
    argv[argc++] = "3s";
    argv[argc++] = "--state-dir";
    argv[argc++] = path_in("state");
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 22; a = va_arg(ap, const char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    unlink(path_in("p.sock"));
    char listen_env[160], core_env[160];
    snprintf(listen_env, sizeof listen_env, "VKC_PROVIDER_LISTEN=%s", e.target);
    snprintf(core_env, sizeof core_env, "VKC_CORE_TARGET=%s", e.core);
    const char *vars[] = {listen_env, core_env, NULL};
    e.shim = harness_provider_spawn(argv, vars, NULL);
    ck_assert_msg(harness_wait_socket(&e.shim, path_in("p.sock"), 10000, 10),
                  "shim exited at start (%s)", bin);
    e.ch = vk_channel_open(e.target, 0);
    ck_assert_ptr_nonnull(e.ch);
    ck_assert_msg(vk_channel_wait_ready(e.ch, 10000), "shim did not come up (%s)", bin);
}

/* SIGTERM, which must end the shim with 0 (and leak-free under LSan). */
static void stop_shim(void)
{
    if (e.ch)
        vk_channel_close(e.ch);
    e.ch = NULL;
    harness_assert_stops(&e.shim, 15000, 10, "shim");
}

static void setup(void)
{
    vk_rpc_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&e, 0, sizeof e);
    ck_assert_ptr_nonnull(harness_make_tmpdir(e.dir, sizeof e.dir, "vkc-il"));
    snprintf(e.target, sizeof e.target, "unix:%s/p.sock", e.dir);
    snprintf(e.core, sizeof e.core, "unix:%s/core.sock", e.dir);
    start_core();
}

static void teardown(void)
{
    if (e.shim > 0) {
        kill(e.shim, SIGKILL);
        waitpid(e.shim, NULL, 0);
    }
    if (e.ch)
        vk_channel_close(e.ch);
    stop_plugin();
    if (e.core_server) {
        vk_server_stop(e.core_server, 0);
        vk_server_free(e.core_server);
    }
    harness_remove_tree(e.dir);
    curl_global_cleanup();
    vk_rpc_shutdown();
}

/* ---- calls ------------------------------------------------------------------ */

static int unary(const char *method, const ProtobufCMessage *req,
                 const ProtobufCMessageDescriptor *desc, void *resp, vk_status *st)
{
    char path[128];
    snprintf(path, sizeof path, P "%s", method);
    ProtobufCMessage *r = NULL;
    int code = vk_unary(e.ch, path, req, desc, T, &r, st);
    if (resp)
        *(ProtobufCMessage **)resp = r;
    else if (r)
        protobuf_c_message_free_unpacked(r, NULL);
    return code;
}

static void handshake(void)
{
    Vkc__Provider__V1__HandshakeRequest req = VKC__PROVIDER__V1__HANDSHAKE_REQUEST__INIT;
    req.protocol_version = 1;
    req.node_name = "vkc-test";
    req.core_target = e.core;
    Vkc__Provider__V1__HandshakeResponse *resp = NULL;
    ck_assert_int_eq(unary("Handshake", &req.base, &vkc__provider__v1__handshake_response__descriptor,
                           &resp, NULL), VK_OK);
    ck_assert_str_eq(resp->provider_name, "interlink");
    bool logs = false, exec = false;
    for (size_t i = 0; i < resp->n_capabilities; i++) {
        logs |= strcmp(resp->capabilities[i], "GetContainerLogs") == 0;
        exec |= strcmp(resp->capabilities[i], "ExecInContainer") == 0;
    }
    ck_assert_msg(logs && !exec, "capabilities: logs yes, exec no");
    protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static char pod_buf[4096];

/* The test pod: an init container, and container app mounting a ConfigMap,
 * a Secret, a projected token and ConfigMap key, a downwardAPI volume and
 * an emptyDir; an optional ConfigMap that does not exist goes unmounted.
 * extra is spliced into metadata. */
static const char *pod_doc(const char *name, const char *uid, const char *extra)
{
    snprintf(pod_buf, sizeof pod_buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"default\",\"uid\":\"%s\"%s},\"spec\":{\"restartPolicy\":\"Never\","
             "\"serviceAccountName\":\"runner\","
             "\"initContainers\":[{\"name\":\"setup\",\"image\":\"busybox\"}],"
             "\"containers\":[{\"name\":\"app\",\"image\":\"busybox\","
             "\"env\":[{\"name\":\"GREETING\",\"value\":\"hello\"}],\"volumeMounts\":["
             "{\"name\":\"config\",\"mountPath\":\"/etc/app\"},"
             "{\"name\":\"config\",\"mountPath\":\"/etc/app2\"},"
             "{\"name\":\"creds\",\"mountPath\":\"/etc/creds\"},"
             "{\"name\":\"token\",\"mountPath\":\"/var/run/secrets/tokens\"},"
             "{\"name\":\"info\",\"mountPath\":\"/etc/podinfo\"},"
             "{\"name\":\"scratch\",\"mountPath\":\"/scratch\"}]}],"
             "\"volumes\":["
             "{\"name\":\"config\",\"configMap\":{\"name\":\"app-config\"}},"
             "{\"name\":\"creds\",\"secret\":{\"secretName\":\"app-secret\"}},"
             "{\"name\":\"maybe\",\"configMap\":{\"name\":\"absent\",\"optional\":true}},"
             "{\"name\":\"token\",\"projected\":{\"sources\":["
             "{\"serviceAccountToken\":{\"path\":\"token\",\"audience\":\"vault\"}},"
             "{\"configMap\":{\"name\":\"app-config\",\"items\":[{\"key\":\"mode\",\"path\":\"mode.txt\"}]}}]}},"
             "{\"name\":\"info\",\"downwardAPI\":{\"items\":[{\"path\":\"name\","
             "\"fieldRef\":{\"fieldPath\":\"metadata.name\"}}]}},"
             "{\"name\":\"scratch\",\"emptyDir\":{}}]}}",
             name, uid, extra ? extra : "");
    return pod_buf;
}

/* A plain pod without volumes. */
static const char *plain_doc(const char *name, const char *uid, const char *extra)
{
    snprintf(pod_buf, sizeof pod_buf,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"default\",\"uid\":\"%s\"%s},\"spec\":{\"restartPolicy\":\"Never\","
             "\"containers\":[{\"name\":\"app\",\"image\":\"busybox\"}]}}",
             name, uid, extra ? extra : "");
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
    return unary(method, &req.base, d, NULL, st);
}

/* The status of a pod (free it), NULL when the call failed with *code. */
static yajl_val status_of(const char *name, int *code)
{
    Vkc__Provider__V1__GetPodStatusRequest req = VKC__PROVIDER__V1__GET_POD_STATUS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = (char *)name;
    req.pod = &ref;
    Vkc__Provider__V1__GetPodStatusResponse *resp = NULL;
    *code = unary("GetPodStatus", &req.base, &vkc__provider__v1__get_pod_status_response__descriptor,
                  &resp, NULL);
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

static vk_call *watch_pods(void)
{
    vk_call *c = vk_call_start(e.ch, P "WatchPodStatus", 15000);
    ck_assert_ptr_nonnull(c);
    Vkc__Provider__V1__WatchPodStatusRequest req = VKC__PROVIDER__V1__WATCH_POD_STATUS_REQUEST__INIT;
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    return c;
}

/* Read events until pod uid reaches phase; false when the stream ended
 * first (its deadline bounds the wait). Sequences must grow. */
static bool watch_until(vk_call *c, const char *uid, const char *phase)
{
    Vkc__Provider__V1__PodStatusEvent *ev = NULL;
    uint64_t seq = 0;
    bool reached = false;
    while (!reached && vk_call_recv(c, &vkc__provider__v1__pod_status_event__descriptor,
                                     (ProtobufCMessage **)&ev) == 1) {
        if (strcmp(ev->pod->uid, uid) == 0 && !ev->deleted) {
            ck_assert_uint_gt(ev->sequence, seq);
            seq = ev->sequence;
            yajl_val st = harness_json_parse(ev->status_json.data, ev->status_json.len);
            const char *path[] = {"phase", NULL};
            reached = harness_jstr(st, path) && strcmp(harness_jstr(st, path), phase) == 0;
            yajl_tree_free(st);
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

/* The node's Ready condition: "True"/"False", its message into msg. */
static bool node_ready(char *msg, size_t n)
{
    Vkc__Provider__V1__GetNodeRequest req = VKC__PROVIDER__V1__GET_NODE_REQUEST__INIT;
    Vkc__Provider__V1__Node *node = NULL;
    ck_assert_int_eq(unary("GetNode", &req.base, &vkc__provider__v1__node__descriptor, &node, NULL),
                     VK_OK);
    yajl_val conds = harness_json_parse(node->conditions_json.data, node->conditions_json.len);
    bool ready = false;
    const char *t[] = {"type", NULL}, *s[] = {"status", NULL}, *m[] = {"message", NULL};
    for (size_t i = 0; i < conds->u.array.len; i++) {
        yajl_val c = conds->u.array.values[i];
        if (strcmp(harness_jstr(c, t), "Ready") != 0)
            continue;
        ready = strcmp(harness_jstr(c, s), "True") == 0;
        snprintf(msg, n, "%s", harness_jstr(c, m) ? harness_jstr(c, m) : "");
    }
    yajl_tree_free(conds);
    protobuf_c_message_free_unpacked(&node->base, NULL);
    return ready;
}

static bool ready_is(bool want, const char *needle)
{
    char msg[512];
    return node_ready(msg, sizeof msg) == want && (!needle || strstr(msg, needle));
}

static void bring_up(bool on_socket)
{
    start_plugin(on_socket);
    start_shim(NULL);
    handshake();
}

/* ---- cases ---------------------------------------------------------------------- */

START_TEST(create_sends_pod_and_objects)
{
    bring_up(false);
    vk_call *w = watch_pods();
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);

    /* One /create with one RetrievedPodData (interLink 0.4+: not a list). */
    int n;
    yajl_val body = plugin_request("POST", "/create", 0, &n);
    ck_assert_int_eq(n, 1);
    ck_assert(YAJL_IS_OBJECT(body));
    const char *uid[] = {"pod", "metadata", "uid", NULL};
    ck_assert_str_eq(harness_jstr(body, uid), UID_WEB);
    /* The downwardAPI volume goes in projected form, as interLink's VK sends it. */
    const char *vols[] = {"pod", "spec", "volumes", NULL};
    yajl_val v = yajl_tree_get(body, vols, yajl_t_array);
    ck_assert_ptr_nonnull(v);
    const char *proj[] = {"projected", "sources", NULL}, *dapi[] = {"downwardAPI", NULL};
    yajl_val info = v->u.array.values[4];
    ck_assert_ptr_nonnull(yajl_tree_get(info, proj, yajl_t_array));
    ck_assert_ptr_null(yajl_tree_get(info, dapi, yajl_t_any));

    ck_assert_uint_eq(jlen(body, "container"), 2);
    yajl_val setup = harness_jarr(body, "container", 0), app = harness_jarr(body, "container", 1);
    const char *name[] = {"name", NULL};
    ck_assert_str_eq(harness_jstr(setup, name), "setup");
    ck_assert(jnull(setup, "configMaps") && jnull(setup, "secrets") &&
              jnull(setup, "projectedvolumemaps") && jnull(setup, "emptyDirs"));
    ck_assert_str_eq(harness_jstr(app, name), "app");
    ck_assert_uint_eq(jlen(app, "configMaps"), 1); /* mounted twice, sent once */
    const char *cm_name[] = {"metadata", "name", NULL}, *cm_data[] = {"data", "settings.yaml", NULL};
    ck_assert_str_eq(harness_jstr(harness_jarr(app, "configMaps", 0), cm_name), "app-config");
    ck_assert_str_eq(harness_jstr(harness_jarr(app, "configMaps", 0), cm_data),
                     "greeting: hello\n");
    ck_assert_uint_eq(jlen(app, "secrets"), 1);
    const char *pw[] = {"data", "password", NULL};
    ck_assert_str_eq(harness_jstr(harness_jarr(app, "secrets", 0), pw), "czNjcjN0");
    ck_assert_uint_eq(jlen(app, "projectedvolumemaps"), 2);
    yajl_val token = harness_jarr(app, "projectedvolumemaps", 0),
             podinfo = harness_jarr(app, "projectedvolumemaps", 1);
    const char *tok[] = {"data", "token", NULL}, *mode[] = {"data", "mode.txt", NULL};
    const char *pname[] = {"data", "name", NULL};
    ck_assert_str_eq(harness_jstr(token, cm_name), "token");
    ck_assert_str_eq(harness_jstr(token, tok), "token:default/web:runner:vault");
    ck_assert_str_eq(harness_jstr(token, mode), "fast");
    ck_assert_str_eq(harness_jstr(podinfo, cm_name), "info");
    ck_assert_str_eq(harness_jstr(podinfo, pname), "web");
    ck_assert(jnull(app, "emptyDirs"));
    yajl_tree_free(body);

    /* Running is pushed once the plugin reports it. */
    ck_assert(watch_until(w, UID_WEB, "Running"));
    end_call(w);
    int code;
    yajl_val st = status_of("web", &code);
    const char *running[] = {"state", "running", "startedAt", NULL}, *ready[] = {"ready", NULL};
    const char *cid[] = {"containerID", NULL}, *init_reason[] = {"state", "terminated", "reason", NULL};
    yajl_val c = harness_jarr(st, "containerStatuses", 0);
    ck_assert_ptr_nonnull(harness_jstr(c, running));
    ck_assert(YAJL_IS_TRUE(yajl_tree_get(c, ready, yajl_t_any)));
    ck_assert_ptr_nonnull(strstr(harness_jstr(c, cid), "fake://"));
    ck_assert_str_eq(harness_jstr(harness_jarr(st, "initContainerStatuses", 0), init_reason),
                     "Completed");
    yajl_tree_free(st);

    /* Idempotent for the same uid (no second /create), refused for another. */
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);
    vk_status s = {0, NULL};
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", UID_OTHER, NULL), &s), VK_ALREADY_EXISTS);
    ck_assert_ptr_nonnull(strstr(s.message, "default/web"));
    vk_status_clear(&s);
    yajl_tree_free(plugin_request("POST", "/create", 0, &n));
    ck_assert_int_eq(n, 1);

    /* GetPods has it, with status. */
    Vkc__Provider__V1__GetPodsRequest lreq = VKC__PROVIDER__V1__GET_PODS_REQUEST__INIT;
    Vkc__Provider__V1__GetPodsResponse *list = NULL;
    ck_assert_int_eq(unary("GetPods", &lreq.base, &vkc__provider__v1__get_pods_response__descriptor,
                           &list, NULL), VK_OK);
    ck_assert_uint_eq(list->n_pods_json, 1);
    yajl_val pod = harness_json_parse(list->pods_json[0].data, list->pods_json[0].len);
    const char *phase[] = {"status", "phase", NULL};
    ck_assert_str_eq(harness_jstr(pod, phase), "Running");
    yajl_tree_free(pod);
    protobuf_c_message_free_unpacked(&list->base, NULL);
    ck_assert(ready_is(true, NULL));

    /* Update keeps the new document (interLink has no update call). */
    ck_assert_int_eq(pod_call("UpdatePod", pod_doc("web", UID_WEB, ",\"labels\":{\"v\":\"2\"}"),
                              NULL), VK_OK);
    Vkc__Provider__V1__GetPodRequest greq = VKC__PROVIDER__V1__GET_POD_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = "web";
    greq.pod = &ref;
    Vkc__Provider__V1__GetPodResponse *got = NULL;
    ck_assert_int_eq(unary("GetPod", &greq.base, &vkc__provider__v1__get_pod_response__descriptor,
                           &got, NULL), VK_OK);
    pod = harness_json_parse(got->pod_json.data, got->pod_json.len);
    const char *label[] = {"metadata", "labels", "v", NULL};
    ck_assert_str_eq(harness_jstr(pod, label), "2");
    ck_assert_str_eq(harness_jstr(pod, phase), "Running");
    yajl_tree_free(pod);
    protobuf_c_message_free_unpacked(&got->base, NULL);
    ck_assert_int_eq(pod_call("UpdatePod", pod_doc("web", UID_OTHER, NULL), NULL), VK_NOT_FOUND);
    stop_shim();
}
END_TEST

START_TEST(missing_configmap_is_retried)
{
    bring_up(false);
    const char *doc =
        "{\"metadata\":{\"name\":\"needy\",\"namespace\":\"default\",\"uid\":\"" UID_OTHER "\"},"
        "\"spec\":{\"containers\":[{\"name\":\"app\",\"image\":\"busybox\",\"volumeMounts\":"
        "[{\"name\":\"cfg\",\"mountPath\":\"/cfg\"}]}],"
        "\"volumes\":[{\"name\":\"cfg\",\"configMap\":{\"name\":\"not-yet\"}}]}}";
    vk_status s = {0, NULL};
    ck_assert_int_eq(pod_call("CreatePod", doc, &s), VK_UNAVAILABLE);
    ck_assert_str_eq(s.message, "ConfigMap default/not-yet of volume cfg does not exist");
    vk_status_clear(&s);
    int n;
    yajl_tree_free(plugin_request("POST", "/create", 0, &n));
    ck_assert_int_eq(n, 0);
    int code;
    ck_assert_ptr_null(status_of("needy", &code));
    ck_assert_int_eq(code, VK_NOT_FOUND);
    stop_shim();
}
END_TEST

typedef struct text {
    char data[16384];
    size_t len;
} text;

static vk_call *logs_call(const char *pod, const char *container, int64_t tail, int64_t limit,
                          bool follow, bool timestamps)
{
    Vkc__Provider__V1__GetContainerLogsRequest req = VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    Vkc__Provider__V1__Int64Value t = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    Vkc__Provider__V1__Int64Value l = VKC__PROVIDER__V1__INT64_VALUE__INIT;
    ref.namespace_ = "default";
    ref.name = (char *)pod;
    req.pod = &ref;
    req.container = (char *)container;
    req.follow = follow;
    req.timestamps = timestamps;
    if (tail >= 0) {
        t.value = tail;
        req.tail_lines = &t;
    }
    if (limit >= 0) {
        l.value = limit;
        req.limit_bytes = &l;
    }
    vk_call *c = vk_call_start(e.ch, P "GetContainerLogs", 15000);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(vk_call_send(c, &req.base), 0);
    ck_assert_int_eq(vk_call_close_send(c), 0);
    return c;
}

/* Receive up to chunks chunks (-1: to the end) into t. */
static void recv_logs(vk_call *c, text *t, int chunks)
{
    Vkc__Provider__V1__LogChunk *m = NULL;
    while (chunks-- != 0 &&
           vk_call_recv(c, &vkc__provider__v1__log_chunk__descriptor, (ProtobufCMessage **)&m) == 1) {
        ck_assert_uint_lt(t->len + m->data.len, sizeof t->data);
        memcpy(t->data + t->len, m->data.data, m->data.len);
        t->len += m->data.len;
        t->data[t->len] = '\0';
        protobuf_c_message_free_unpacked(&m->base, NULL);
    }
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

START_TEST(logs_tail_timestamps_limit_follow)
{
    bring_up(false);
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("chatty", UID_WEB, NULL), NULL), VK_OK);
    EVENTUALLY(has_phase("chatty", "Running"), 10000);
    harness_sleep_ms(500); /* a few lines, one per 100 ms */

    text *t = calloc(1, sizeof *t);
    vk_call *c = logs_call("chatty", "app", 2, -1, false, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    ck_assert_int_eq(count_lines(t->data), 2);
    ck_assert_ptr_nonnull(strstr(t->data, "app line "));
    yajl_val req = plugin_request("GET", "/getLogs", 0, NULL);
    const char *ns[] = {"Namespace", NULL}, *puid[] = {"PodUID", NULL}, *pn[] = {"PodName", NULL};
    const char *cn[] = {"ContainerName", NULL}, *since[] = {"Opts", "SinceTime", NULL};
    const char *tail[] = {"Opts", "Tail", NULL}, *bytes[] = {"Opts", "Bytes", NULL};
    const char *follow[] = {"Opts", "Follow", NULL};
    ck_assert_str_eq(harness_jstr(req, ns), "default");
    ck_assert_str_eq(harness_jstr(req, puid), UID_WEB);
    ck_assert_str_eq(harness_jstr(req, pn), "chatty");
    ck_assert_str_eq(harness_jstr(req, cn), "app");
    ck_assert_int_eq(YAJL_GET_INTEGER(yajl_tree_get(req, tail, yajl_t_number)), 2);
    ck_assert_int_eq(YAJL_GET_INTEGER(yajl_tree_get(req, bytes, yajl_t_number)), 0);
    ck_assert(YAJL_IS_FALSE(yajl_tree_get(req, follow, yajl_t_any)));
    ck_assert_str_eq(harness_jstr(req, since), "0001-01-01T00:00:00Z");
    yajl_tree_free(req);

    /* Timestamps, and a byte limit held to exactly. */
    memset(t, 0, sizeof *t);
    c = logs_call("chatty", "app", 1, -1, false, true);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    ck_assert_msg(strncmp(t->data, "20", 2) == 0 && strstr(t->data, "Z app line "),
                  "no timestamp: %s", t->data);
    memset(t, 0, sizeof *t);
    c = logs_call("chatty", "app", -1, 10, false, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    vk_call_free(c);
    ck_assert_uint_eq(t->len, 10);

    /* Unknown container: NOT_FOUND, without asking the plugin. */
    vk_status s = {0, NULL};
    c = logs_call("chatty", "nosuch", -1, -1, false, false);
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, &s), VK_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(s.message, "nosuch"));
    vk_status_clear(&s);
    vk_call_free(c);

    /* A follow the user leaves ends at once, however quiet the plugin: it
     * would otherwise last as long as the pod. The bound is wide for a
     * loaded machine. */
    c = logs_call("chatty", "app", 1, -1, true, false);
    memset(t, 0, sizeof *t);
    recv_logs(c, t, 1);
    long left = harness_now_ms();
    vk_call_cancel(c);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_CANCELLED);
    vk_call_free(c);
    Vkc__Provider__V1__PingRequest ping = VKC__PROVIDER__V1__PING_REQUEST__INIT;
    ck_assert_int_eq(unary("Ping", &ping.base, &vkc__provider__v1__ping_response__descriptor, NULL,
                           NULL), VK_OK);
    ck_assert_int_lt(harness_now_ms() - left, 10000);

    /* Follow: new lines arrive, and the stream ends when the pod goes. */
    memset(t, 0, sizeof *t);
    c = logs_call("chatty", "app", 1, -1, true, false);
    recv_logs(c, t, 1);
    int before = count_lines(t->data);
    recv_logs(c, t, 1);
    ck_assert_int_gt(count_lines(t->data), before);
    ck_assert_int_eq(pod_call("DeletePod", plain_doc("chatty", UID_WEB, NULL), NULL), VK_OK);
    /* Without the delete the follow would never end; on a loaded machine
     * the plugin and curl's progress check may each take a while. */
    long began = harness_now_ms();
    recv_logs(c, t, -1);
    ck_assert_int_eq(vk_call_finish(c, NULL), VK_OK);
    ck_assert_int_lt(harness_now_ms() - began, 15000);
    vk_call_free(c);
    free(t);
    stop_shim();
}
END_TEST

START_TEST(exit_codes_and_delete)
{
    bring_up(false);
    vk_call *w = watch_pods();
    const char *fail = ",\"annotations\":{\"fake.interlink/exit-code\":\"3\","
                       "\"fake.interlink/run-seconds\":\"0.3\"}";
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("fails", UID_WEB, fail), NULL), VK_OK);
    ck_assert(watch_until(w, UID_WEB, "Failed"));
    end_call(w);
    int code;
    yajl_val st = status_of("fails", &code);
    const char *exit_code[] = {"state", "terminated", "exitCode", NULL};
    const char *reason[] = {"state", "terminated", "reason", NULL};
    yajl_val c = harness_jarr(st, "containerStatuses", 0);
    ck_assert_int_eq(YAJL_GET_INTEGER(yajl_tree_get(c, exit_code, yajl_t_number)), 3);
    ck_assert_str_eq(harness_jstr(c, reason), "Error");
    yajl_tree_free(st);

    const char *ok = ",\"annotations\":{\"fake.interlink/exit-code\":\"0\","
                     "\"fake.interlink/run-seconds\":\"0.3\"}";
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("works", UID_OTHER, ok), NULL), VK_OK);
    EVENTUALLY(has_phase("works", "Succeeded"), 10000);

    /* Delete: the plugin gets the pod; gone afterwards. */
    ck_assert_int_eq(pod_call("DeletePod", plain_doc("fails", UID_WEB, NULL), NULL), VK_OK);
    yajl_val del = plugin_request("POST", "/delete", 0, NULL);
    const char *uid[] = {"metadata", "uid", NULL};
    ck_assert_str_eq(harness_jstr(del, uid), UID_WEB);
    yajl_tree_free(del);
    ck_assert_ptr_null(status_of("fails", &code));
    ck_assert_int_eq(code, VK_NOT_FOUND);
    ck_assert_int_eq(pod_call("DeletePod", plain_doc("fails", UID_WEB, NULL), NULL), VK_NOT_FOUND);
    /* A finished pod is replaced by a new incarnation of its name. */
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("works", UID_WEB, NULL), NULL), VK_OK);
    stop_shim();
}
END_TEST

START_TEST(restart_keeps_pods)
{
    bring_up(false);
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);
    EVENTUALLY(has_phase("web", "Running"), 10000);
    stop_shim();

    start_shim(NULL);
    handshake();
    /* Known at once, still Running, and never created a second time. */
    ck_assert(has_phase("web", "Running"));
    Vkc__Provider__V1__GetPodsRequest lreq = VKC__PROVIDER__V1__GET_PODS_REQUEST__INIT;
    Vkc__Provider__V1__GetPodsResponse *list = NULL;
    ck_assert_int_eq(unary("GetPods", &lreq.base, &vkc__provider__v1__get_pods_response__descriptor,
                           &list, NULL), VK_OK);
    ck_assert_uint_eq(list->n_pods_json, 1);
    protobuf_c_message_free_unpacked(&list->base, NULL);
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);
    int n;
    yajl_tree_free(plugin_request("POST", "/create", 0, &n));
    ck_assert_int_eq(n, 1);
    /* And it still follows the plugin. */
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);
    stop_shim();

    /* A damaged state file stops the start rather than lose pods. */
    FILE *f = fopen(path_in("state/pods.json"), "w");
    ck_assert_ptr_nonnull(f);
    fputs("{\"version\":1,\"pods\":[{\"pod\":", f);
    fclose(f);
    char cmd[512];
    const char *dir = getenv("VKC_BIN_DIR");
    snprintf(cmd, sizeof cmd,
             "VKC_PROVIDER_LISTEN=unix:%s/x.sock %s/vkc-provider-interlink --state-dir %s/state "
             "2>&1", e.dir, dir && dir[0] ? dir : "build/bin", e.dir);
    FILE *p = popen(cmd, "r");
    char out[4096] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    ck_assert_ptr_nonnull(strstr(out, "the state file is damaged"));
}
END_TEST

START_TEST(plugin_down_is_unavailable)
{
    bring_up(false);
    EVENTUALLY(ready_is(true, NULL), 10000);
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("early", UID_WEB, NULL), NULL), VK_OK);
    stop_plugin();

    vk_status s = {0, NULL};
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("late", UID_OTHER, NULL), &s), VK_UNAVAILABLE);
    char want[96];
    snprintf(want, sizeof want, "cannot reach the interLink plugin at http://127.0.0.1:%d", e.port);
    ck_assert_msg(strstr(s.message, want), "message: %s", s.message);
    vk_status_clear(&s);
    ck_assert_int_eq(pod_call("DeletePod", plain_doc("early", UID_WEB, NULL), &s), VK_UNAVAILABLE);
    vk_status_clear(&s);
    vk_call *c = logs_call("early", "app", -1, -1, false, false);
    text *t = calloc(1, sizeof *t);
    recv_logs(c, t, -1);
    free(t);
    ck_assert_int_eq(vk_call_finish(c, &s), VK_UNAVAILABLE);
    vk_status_clear(&s);
    vk_call_free(c);
    EVENTUALLY(ready_is(false, "cannot reach the interLink plugin"), 10000);
    /* The pod it had stays, as it was. */
    ck_assert(has_phase("early", "Pending") || has_phase("early", "Running"));
    stop_shim();
}
END_TEST

START_TEST(plugin_garbage_is_a_clear_error)
{
    bring_up(false);
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("steady", UID_WEB, NULL), NULL), VK_OK);
    EVENTUALLY(has_phase("steady", "Running"), 10000);

    plugin_mode("{\"create\":\"fail\"}");
    vk_status s = {0, NULL};
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("doomed", UID_OTHER, NULL), &s),
                     VK_UNAVAILABLE);
    ck_assert_str_eq(s.message, "the interLink plugin answered POST /create with HTTP 500: "
                                "Internal Server Error sbatch: error: Batch job submission failed");
    vk_status_clear(&s);
    int code;
    ck_assert_ptr_null(status_of("doomed", &code));

    plugin_mode("{\"status\":\"garbage\"}");
    EVENTUALLY(ready_is(false, "answer to GET /status is not a list of PodStatus"), 10000);
    Vkc__Provider__V1__PingRequest ping = VKC__PROVIDER__V1__PING_REQUEST__INIT;
    ck_assert_int_eq(unary("Ping", &ping.base, &vkc__provider__v1__ping_response__descriptor, NULL,
                           NULL), VK_OK);
    ck_assert(has_phase("steady", "Running"));

    plugin_mode("{\"status\":\"ok\",\"create\":\"ok\"}");
    EVENTUALLY(ready_is(true, NULL), 10000);
    ck_assert_int_eq(pod_call("CreatePod", plain_doc("doomed", UID_OTHER, NULL), NULL), VK_OK);
    stop_shim();
}
END_TEST

START_TEST(plugin_on_unix_socket)
{
    start_plugin(true);
    start_shim("--disable-projected-volumes", NULL);
    handshake();
    vk_call *w = watch_pods();
    ck_assert_int_eq(pod_call("CreatePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);
    ck_assert(watch_until(w, UID_WEB, "Running"));
    end_call(w);
    /* Without projected volumes only the downwardAPI one is left. */
    yajl_val body = plugin_request("POST", "/create", 0, NULL);
    yajl_val app = harness_jarr(body, "container", 1);
    const char *name[] = {"metadata", "name", NULL};
    ck_assert_uint_eq(jlen(app, "projectedvolumemaps"), 1);
    ck_assert_str_eq(harness_jstr(harness_jarr(app, "projectedvolumemaps", 0), name), "info");
    yajl_tree_free(body);
    ck_assert_int_gt(atomic_load(&core_calls), 0);
    ck_assert(ready_is(true, NULL));
    ck_assert_int_eq(pod_call("DeletePod", pod_doc("web", UID_WEB, NULL), NULL), VK_OK);
    stop_shim();
}
END_TEST

static int run_shim(const char *flags)
{
    char cmd[512];
    const char *dir = getenv("VKC_BIN_DIR");
    snprintf(cmd, sizeof cmd, "VKC_PROVIDER_LISTEN=unix:%s/x.sock %s/vkc-provider-interlink %s "
             ">/dev/null 2>&1", e.dir, dir && dir[0] ? dir : "build/bin", flags);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(bad_flags_exit_2)
{
    ck_assert_int_eq(run_shim(""), 2); /* no --state-dir */
    ck_assert_int_eq(run_shim("--state-dir /tmp --poll-interval soon"), 2);
    ck_assert_int_eq(run_shim("--state-dir /tmp --plugin-url ftp://x"), 2);
    ck_assert_int_eq(run_shim("--state-dir /tmp --pods 0"), 2);
    ck_assert_int_eq(run_shim("--help"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("interLink shim");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"create", create_sends_pod_and_objects},
        {"missing configmap", missing_configmap_is_retried},
        {"logs", logs_tail_timestamps_limit_follow},
        {"exit codes and delete", exit_codes_and_delete},
        {"restart", restart_keeps_pods},
        {"plugin down", plugin_down_is_unavailable},
        {"plugin garbage", plugin_garbage_is_a_clear_error},
        {"unix socket", plugin_on_unix_socket},
        {"bad flags", bad_flags_exit_2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? 1 : 0;
}
