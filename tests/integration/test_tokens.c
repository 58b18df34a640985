/* test_tokens.c -- the Core service's RequestServiceAccountToken against a
 * real API server.
 *
 * vkc-core runs as a child process with the node's own identity
 * (system:node:NAME, Node authorizer) and the mock provider; this process
 * plays the user (kubectl, admin) and the provider: it calls the Core
 * service on <socket-dir>/core.sock. A pod bound to the node runs as the
 * "default" account of a namespace of the test's own. Its token must come
 * back, authenticate as that account (TokenReview), be served again from
 * the cache, and be refused for another account, another uid, and once the
 * pod is gone. The core must never log a token and must exit cleanly (so
 * under ASan its leak check passes too).
 *
 * Cluster: $VKC_CLUSTER_DIR (a running tests/cluster/up.sh directory),
 * else one brought up here in a temporary directory with the binaries of
 * $VKC_K8S_BIN or /var/cache/vkc/k8s-*, and torn down at the end; without
 * them the test fails. Binaries from $VKC_BIN_DIR (default build/bin). The
 * cases share the core and run in order without fork (gRPC's threads do
 * not survive one). Every wait is bounded.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "log.h"
#include "provider.pb-c.h"
#include "rpc.h"
#include "harness.h"

#define CORE "/vkc.provider.v1.Core/"
#define TOLERATION \
    "{\"key\":\"virtual-kubelet.io/provider\",\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}"

static harness_cluster cluster;
static char kubectl[PATH_MAX];
static char node_kubeconfig[PATH_MAX];
static char ca_cert[PATH_MAX], kubelet_cert[PATH_MAX], kubelet_key[PATH_MAX];
static char node[64];
static char tmp[64];
static char ns[64];
static char core_log[128];

static pid_t core_pid;
static bool core_ready;
static bool node_existed;
static vk_channel *ch;
static char uid[64];        /* of the pod "web" */
static char *first_token;   /* what the first request got */
static int64_t first_expires;

/* ---- processes --------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define WAIT_UNTIL(cond, secs, ...)                 \
    do {                                            \
        double deadline_ = now_s() + (secs);        \
        while (!(cond)) {                           \
            if (now_s() > deadline_)                \
                ck_abort_msg(__VA_ARGS__);          \
            usleep(200000);                         \
        }                                           \
    } while (0)

/* kubectl as admin; arguments NULL-terminated. out is reset first. */
static int kctl(vk_buf *out, ...)
{
    char *argv[32];
    int n = 0;
    argv[n++] = kubectl;
    argv[n++] = "--kubeconfig";
    argv[n++] = cluster.admin_kubeconfig;
    argv[n++] = "--request-timeout=20s";
    va_list ap;
    va_start(ap, out);
    char *a;
    while ((a = va_arg(ap, char *)) && n < 31)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    vk_buf_reset(out);
    return harness_run(argv, out);
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    size_t len = strlen(text);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* kubectl create -f with doc; 0 on success. */
static int kctl_create(const char *doc, vk_buf *out)
{
    char path[128];
    snprintf(path, sizeof path, "%s/object.json", tmp);
    write_file(path, doc);
    int rc = kctl(out, "create", "-f", path, "-o", "json", NULL);
    unlink(path);
    return rc;
}
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* ---- the provider's side: Core service calls ---------------------------------- */

static int token_call_within(int timeout_ms, const char *pod_ns, const char *pod,
                             const char *pod_uid, const char *sa, char **audiences,
                             size_t n_audiences, int64_t seconds, char **token,
                             int64_t *expires, vk_status *st)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)pod_ns;
    ref.name = (char *)pod;
    ref.uid = (char *)pod_uid;
    Vkc__Provider__V1__ServiceAccountTokenRequest req =
        VKC__PROVIDER__V1__SERVICE_ACCOUNT_TOKEN_REQUEST__INIT;
    req.pod = &ref;
    req.service_account_name = (char *)sa;
    req.audiences = audiences;
    req.n_audiences = n_audiences;
    req.expiration_seconds = seconds;
    ProtobufCMessage *m = NULL;
    vk_status_clear(st);
    int code = vk_unary(ch, CORE "RequestServiceAccountToken", &req.base,
                        &vkc__provider__v1__service_account_token_response__descriptor,
                        timeout_ms, &m, st);
    if (token)
        *token = NULL;
    if (code == VK_OK) {
        Vkc__Provider__V1__ServiceAccountTokenResponse *resp =
            (Vkc__Provider__V1__ServiceAccountTokenResponse *)m;
        if (token)
            *token = strdup(resp->token);
        if (expires)
            *expires = resp->expiration_timestamp;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return code;
}

static int token_call(const char *pod_ns, const char *pod, const char *pod_uid, const char *sa,
                      char **audiences, size_t n_audiences, int64_t seconds, char **token,
                      int64_t *expires, vk_status *st)
{
    return token_call_within(30000, pod_ns, pod, pod_uid, sa, audiences, n_audiences, seconds,
                             token, expires, st);
}

/* The code of a token request for web as sa, for polling. */
static int token_code(const char *sa)
{
    vk_status st = {0, NULL};
    int code = token_call(ns, "web", uid, sa, NULL, 0, 0, NULL, NULL, &st);
    vk_status_clear(&st);
    return code;
}

/* ---- the user's side ------------------------------------------------------------ */

/* The user a token authenticates as, by TokenReview; "" when it does not
 * authenticate. *pod_name gets the pod the token is bound to. */
static void review(const char *token, char *user, size_t user_len, char *pod_name,
                   size_t pod_len)
{
    vk_buf doc = VK_BUF_INIT, out = VK_BUF_INIT;
    vk_buf_puts(&doc, "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\","
                      "\"spec\":{\"token\":");
    vk_json_quote(&doc, token, strlen(token));
    vk_buf_puts(&doc, "}}");
    int rc = kctl_create(doc.data, &out);
    explicit_bzero(doc.data, doc.len);
    ck_assert_msg(rc == 0, "TokenReview: %s", out.data);
    char err[128];
    yajl_val v = vk_json_parse(out.data, out.len, err, sizeof err);
    ck_assert_msg(v != NULL, "TokenReview answer: %s", err);
    bool ok = vk_json_bool(vk_json_get(v, "status", "authenticated", NULL), false);
    snprintf(user, user_len, "%s",
             ok ? vk_json_str(vk_json_get(v, "status", "user", "username", NULL), "") : "");
    yajl_val names = vk_json_get(v, "status", "user", "extra",
                                 "authentication.kubernetes.io/pod-name", NULL);
    snprintf(pod_name, pod_len, "%s",
             YAJL_IS_ARRAY(names) && names->u.array.len == 1
                 ? vk_json_str(names->u.array.values[0], "") : "");
    yajl_tree_free(v);
    vk_buf_free(&doc);
    vk_buf_free(&out);
}

static bool default_account_ready(void)
{
    vk_buf out = VK_BUF_INIT;
    int rc = kctl(&out, "-n", ns, "get", "serviceaccount", "default", "-o",
                  "jsonpath={.secrets[0].name}", NULL);
    bool ok = rc == 0 && out.len > 0;
    vk_buf_free(&out);
    return ok;
}

/* Create pod name in ns bound to the node, running as sa; retried while
 * 1.20's ServiceAccount admission waits for the account's token Secret. */
static void create_pod(const char *name, const char *sa)
{
    char doc[1024];
    snprintf(doc, sizeof doc,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
             "\"namespace\":\"%s\"},\"spec\":{\"nodeName\":\"%s\","
             "\"serviceAccountName\":\"%s\",\"automountServiceAccountToken\":false,"
             "\"tolerations\":[" TOLERATION "],"
             "\"containers\":[{\"name\":\"app\",\"image\":\"busybox\"}]}}",
             name, ns, node, sa);
    vk_buf out = VK_BUF_INIT;
    WAIT_UNTIL(kctl_create(doc, &out) == 0, 60, "create pod %s: %s", name, out.data);
    vk_buf_free(&out);
}

static void pod_uid(const char *name, char *out_uid, size_t len)
{
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(kctl(&out, "-n", ns, "get", "pod", name, "-o",
                          "jsonpath={.metadata.uid}", NULL), 0);
    ck_assert_int_gt(out.len, 0);
    snprintf(out_uid, len, "%s", out.data);
    vk_buf_free(&out);
}

/* ---- tests ------------------------------------------------------------------------ */

/* The cases after core_starts need what it set up. */
#define NEED_CORE() ck_assert_msg(core_ready, "no core to test (core_starts failed)")

START_TEST(core_starts)
{
    char core[PATH_MAX], mock[PATH_MAX], socket_dir[128], port[16];
    snprintf(core, sizeof core, "%s/vkc-core", harness_bin_dir());
    snprintf(mock, sizeof mock, "%s/vkc-provider-mock", harness_bin_dir());
    ck_assert_msg(access(core, X_OK) == 0 && access(mock, X_OK) == 0,
                  "%s or %s missing: build them first", core, mock);

    vk_buf out = VK_BUF_INIT;
    node_existed = kctl(&out, "get", "node", node, NULL) == 0;
    snprintf(ns, sizeof ns, "tokens-%d", (int)getpid());
    ck_assert_msg(kctl(&out, "create", "namespace", ns, NULL) == 0, "create namespace: %s",
                  out.data);
    WAIT_UNTIL(default_account_ready(), 60, "no default service account with a token in %s", ns);

    snprintf(socket_dir, sizeof socket_dir, "%s/run", tmp);
    snprintf(port, sizeof port, "%d", free_port());
    snprintf(core_log, sizeof core_log, "%s/core.log", tmp);
    char *argv[] = {core, "--nodename", node, "--kubeconfig", node_kubeconfig,
                    "--socket-dir", socket_dir, "--listen-port", port,
                    "--node-ip", "127.0.0.1", "--tls-cert-file", kubelet_cert,
                    "--tls-private-key-file", kubelet_key, "--client-ca-file", ca_cert,
                    "--log-level", "debug", "--provider-cmd", mock, NULL};
    core_pid = harness_spawn(argv, core_log, NULL);
    ck_assert_int_gt(core_pid, 0);

    char target[160];
    snprintf(target, sizeof target, "unix:%s/core.sock", socket_dir);
    ch = vk_channel_open(target, 0);
    WAIT_UNTIL(vk_channel_wait_ready(ch, 1000), 60, "the Core service did not come up (%s)",
               core_log);
    core_ready = true;
    vk_buf_free(&out);
}
END_TEST

START_TEST(token_for_own_pod)
{
    NEED_CORE();
    create_pod("web", "default");
    pod_uid("web", uid, sizeof uid);
    /* PERMISSION_DENIED until the core has seen the pod. */
    WAIT_UNTIL(token_code("default") != VK_PERMISSION_DENIED, 30,
               "the core never learned of pod %s/web", ns);

    vk_status st = {0, NULL};
    int code = token_call(ns, "web", uid, "default", NULL, 0, 0, &first_token, &first_expires,
                          &st);
    ck_assert_msg(code == VK_OK, "RequestServiceAccountToken: %s %s",
                  vk_status_code_name(code), st.message);
    ck_assert_int_gt(strlen(first_token), 100);
    /* The default lifetime, an hour. */
    int64_t now = (int64_t)time(NULL);
    ck_assert_msg(first_expires > now + 3000 && first_expires <= now + 3700,
                  "expires %lld, now %lld", (long long)first_expires, (long long)now);

    char user[256], pod_name[128], want[256];
    review(first_token, user, sizeof user, pod_name, sizeof pod_name);
    snprintf(want, sizeof want, "system:serviceaccount:%s:default", ns);
    ck_assert_str_eq(user, want);
    ck_assert_str_eq(pod_name, "web");
    vk_status_clear(&st);
}
END_TEST

START_TEST(same_request_served_from_cache)
{
    NEED_CORE();
    ck_assert_ptr_nonnull(first_token);
    vk_status st = {0, NULL};
    char *token = NULL;
    int64_t expires = 0;
    ck_assert_int_eq(token_call(ns, "web", uid, "default", NULL, 0, 3600, &token, &expires, &st),
                     VK_OK);
    ck_assert_str_eq(token, first_token);
    ck_assert_int_eq(expires, first_expires);
    free(token);

    /* Another audience is another token, bound to the same pod. */
    char *audiences[] = {"vkc-test"};
    ck_assert_int_eq(token_call(ns, "web", uid, "default", audiences, 1, 0, &token, &expires,
                                &st), VK_OK);
    ck_assert_str_ne(token, first_token);
    free(token);

    /* Less than the API's ten minutes is raised to ten minutes. */
    ck_assert_int_eq(token_call(ns, "web", uid, "default", NULL, 0, 60, &token, &expires, &st),
                     VK_OK);
    int64_t now = (int64_t)time(NULL);
    ck_assert_msg(expires > now + 500 && expires <= now + 700, "expires %lld, now %lld",
                  (long long)expires, (long long)now);
    ck_assert_str_ne(token, first_token);
    free(token);
    vk_status_clear(&st);
}
END_TEST

START_TEST(provider_gives_up_first)
{
    NEED_CORE();
    /* A deadline shorter than the round trip: the handler gives up while
     * the TokenRequest is on the wire, and the loop finishes it later
     * (under ASan: without touching freed memory). The answer is cached,
     * so the retry gets it at once. */
    char *audiences[] = {"vkc-impatient"};
    vk_status st = {0, NULL};
    int code = token_call_within(5, ns, "web", uid, "default", audiences, 1, 0, NULL, NULL, &st);
    ck_assert_msg(code == VK_DEADLINE_EXCEEDED || code == VK_OK, "%s %s",
                  vk_status_code_name(code), st.message);
    usleep(500000);
    /* Usually served from the cache by now; on a loaded machine the first
     * TokenRequest may still be out, so the retry's deadline leaves it
     * time to land instead of racing it. */
    char *token = NULL;
    code = token_call_within(15000, ns, "web", uid, "default", audiences, 1, 0, &token, NULL, &st);
    ck_assert_msg(code == VK_OK, "%s %s", vk_status_code_name(code), st.message);
    free(token);
    vk_status_clear(&st);
}
END_TEST

START_TEST(refused_for_others)
{
    NEED_CORE();
    vk_status st = {0, NULL};
    ck_assert_int_eq(token_call(ns, "web", uid, "admin", NULL, 0, 0, NULL, NULL, &st),
                     VK_PERMISSION_DENIED);
    ck_assert_msg(strstr(st.message, "service account admin"), "%s", st.message);
    ck_assert_int_eq(token_call(ns, "web", "00000000-0000-0000-0000-000000000000", "default",
                                NULL, 0, 0, NULL, NULL, &st), VK_PERMISSION_DENIED);
    ck_assert_int_eq(token_call(ns, "other", uid, "default", NULL, 0, 0, NULL, NULL, &st),
                     VK_PERMISSION_DENIED);
    ck_assert_int_eq(token_call("default", "web", uid, "default", NULL, 0, 0, NULL, NULL, &st),
                     VK_PERMISSION_DENIED);
    ck_assert_int_eq(token_call(ns, "web", uid, "", NULL, 0, 0, NULL, NULL, &st),
                     VK_INVALID_ARGUMENT);
    ck_assert_int_eq(token_call(ns, "web", uid, "default", NULL, 0, -5, NULL, NULL, &st),
                     VK_INVALID_ARGUMENT);

    /* The same rule for Secrets: one no pod references is not served. */
    Vkc__Provider__V1__GetObjectRequest req = VKC__PROVIDER__V1__GET_OBJECT_REQUEST__INIT;
    req.namespace_ = ns;
    req.name = "default-token-x";
    ProtobufCMessage *m = NULL;
    ck_assert_int_eq(vk_unary(ch, CORE "GetSecret", &req.base,
                              &vkc__provider__v1__get_object_response__descriptor, 30000, &m,
                              &st), VK_PERMISSION_DENIED);
    vk_status_clear(&st);
}
END_TEST

START_TEST(account_deleted_is_not_found)
{
    NEED_CORE();
    char sa[64], sa_uid[64], doc[256];
    vk_buf out = VK_BUF_INIT;
    snprintf(sa, sizeof sa, "gone-%d", (int)getpid());
    snprintf(doc, sizeof doc, "{\"apiVersion\":\"v1\",\"kind\":\"ServiceAccount\","
             "\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\"}}", sa, ns);
    ck_assert_msg(kctl_create(doc, &out) == 0, "create service account: %s", out.data);
    create_pod("orphan", sa);
    pod_uid("orphan", sa_uid, sizeof sa_uid);
    ck_assert_msg(kctl(&out, "-n", ns, "delete", "serviceaccount", sa, NULL) == 0,
                  "delete service account: %s", out.data);

    /* The pod still runs as the account, so the core asks; the API server
     * has no such account. */
    vk_status st = {0, NULL};
    int code;
    WAIT_UNTIL((code = token_call(ns, "orphan", sa_uid, sa, NULL, 0, 0, NULL, NULL, &st)) !=
                   VK_PERMISSION_DENIED,
               30, "the core never learned of pod %s/orphan", ns);
    ck_assert_msg(code == VK_NOT_FOUND, "%s %s", vk_status_code_name(code), st.message);
    ck_assert_msg(strstr(st.message, "not found"), "%s", st.message);
    vk_status_clear(&st);
    vk_buf_free(&out);
}
END_TEST

START_TEST(refused_after_pod_deleted)
{
    NEED_CORE();
    vk_buf out = VK_BUF_INIT;
    ck_assert_msg(kctl(&out, "-n", ns, "delete", "pod", "web", "orphan", "--wait=false",
                       NULL) == 0, "delete pods: %s", out.data);
    /* The core stops the pod in the provider, deletes it for good and
     * forgets it: from then on the token is refused. */
    WAIT_UNTIL(token_code("default") == VK_PERMISSION_DENIED, 60,
               "token still served after pod %s/web was deleted", ns);
    ck_assert_int_ne(kctl(&out, "-n", ns, "get", "pod", "web", NULL), 0);
    WAIT_UNTIL(kctl(&out, "-n", ns, "get", "pod", "orphan", NULL) != 0, 60,
               "pod %s/orphan not deleted", ns);
    vk_buf_free(&out);
}
END_TEST

START_TEST(core_stops_cleanly)
{
    NEED_CORE();
    vk_channel_close(ch);
    ch = NULL;
    core_ready = false;
    ck_assert_int_eq(kill(core_pid, SIGTERM), 0);
    int st = 0;
    pid_t got = 0;
    WAIT_UNTIL((got = waitpid(core_pid, &st, WNOHANG)) != 0, 60, "the core did not stop");
    core_pid = 0;
    ck_assert_msg(got > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "the core ended with status 0x%x (see %s)", st, core_log);

    /* Debug level logs every callback: never the token. */
    FILE *f = fopen(core_log, "r");
    ck_assert_ptr_nonnull(f);
    vk_buf text = VK_BUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        vk_buf_append(&text, buf, n);
    fclose(f);
    ck_assert_ptr_nonnull(text.data);
    ck_assert_ptr_nonnull(strstr(text.data, "RequestServiceAccountToken"));
    ck_assert_msg(!first_token || !strstr(text.data, first_token), "the core logged a token");
    vk_buf_free(&text);
}
END_TEST
/* Whatever the cases left: the core, the namespace, the node it made. */
static void clean_up(bool failed)
{
    if (ch)
        vk_channel_close(ch);
    if (core_pid > 0) {
        kill(core_pid, SIGKILL);
        waitpid(core_pid, NULL, 0);
    }
    if (failed && core_log[0]) {
        char *tail[] = {"/usr/bin/tail", "-n", "60", core_log, NULL};
        vk_buf out = VK_BUF_INIT;
        harness_run(tail, &out);
        fprintf(stderr, "---- last lines of %s ----\n%s\n", core_log, out.data);
        vk_buf_free(&out);
    }
    vk_buf out = VK_BUF_INIT;
    if (ns[0])
        kctl(&out, "delete", "namespace", ns, "--wait=false", "--ignore-not-found", NULL);
    if (!node_existed && kubectl[0]) {
        kctl(&out, "delete", "node", node, "--ignore-not-found", NULL);
        kctl(&out, "-n", "kube-node-lease", "delete", "lease", node, "--ignore-not-found", NULL);
    }
    char *rm[] = {"/bin/rm", "-rf", tmp, NULL};
    harness_run(rm, &out);
    vk_buf_free(&out);
    free(first_token);
}

static Suite *suite(void)
{
    Suite *s = suite_create("tokens");
    TCase *tc = tcase_create("apiserver");
    tcase_add_test(tc, core_starts);
    tcase_add_test(tc, token_for_own_pod);
    tcase_add_test(tc, same_request_served_from_cache);
    tcase_add_test(tc, provider_gives_up_first);
    tcase_add_test(tc, refused_for_others);
    tcase_add_test(tc, account_deleted_is_not_found);
    tcase_add_test(tc, refused_after_pod_deleted);
    tcase_add_test(tc, core_stops_cleanly);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    vk_log_set_component("test");

    if (harness_cluster_up(&cluster, "vkc-tokens-cluster") < 0)
        return EXIT_FAILURE;
    snprintf(tmp, sizeof tmp, "/tmp/vkc-tokens-XXXXXX");
    int rc = EXIT_FAILURE;
    if (harness_cluster_env(&cluster, "VKC_KUBECTL", kubectl, sizeof kubectl) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_NAME", node, sizeof node) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBECONFIG", node_kubeconfig,
                            sizeof node_kubeconfig) < 0 ||
        harness_cluster_env(&cluster, "VKC_CA_CERT", ca_cert, sizeof ca_cert) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBELET_CERT", kubelet_cert,
                            sizeof kubelet_cert) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBELET_KEY", kubelet_key,
                            sizeof kubelet_key) < 0) {
        fprintf(stderr, "FAIL: %s lacks VKC_KUBECTL, VKC_NODE_NAME, the node kubeconfig or "
                        "the kubelet cert\n", cluster.env);
    } else if (!mkdtemp(tmp)) {
        perror("mkdtemp");
    } else {
        vk_rpc_init();
        SRunner *sr = srunner_create(suite());
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_NORMAL);
        rc = srunner_ntests_failed(sr) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        srunner_free(sr);
        clean_up(rc != EXIT_SUCCESS);
        vk_rpc_shutdown();
    }
    harness_cluster_down(&cluster);
    return rc;
}
