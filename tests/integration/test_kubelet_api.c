/* test_kubelet_api.c -- the kubelet API behind a real kube-apiserver.
 *
 * The path under test is the one kubectl takes: kubectl -> kube-apiserver
 * -> (the API server's kubelet client certificate, CN=kube-apiserver-
 * kubelet-client O=system:masters) -> this process's kubelet server ->
 * the mock provider. The server runs here on 127.0.0.1 with an ephemeral
 * port, the cluster's CA as its client CA, its kubelet serving certificate,
 * anonymous access off, the token webhook on and Webhook authorization
 * (reviews go to the API server with the node's own credentials,
 * system:node:NAME, as the core's would). A Node object
 * (admin) points the API server at it: status.addresses InternalIP
 * 127.0.0.1 and daemonEndpoints.kubeletEndpoint.Port; the API server is
 * started with --kubelet-preferred-address-types=InternalIP (up.sh), so
 * that is where it connects.
 *
 * The cluster: $VKC_CLUSTER_DIR when set (a running tests/cluster/up.sh
 * directory), else one brought up here and torn down at the end. Without
 * the Kubernetes binaries the test fails; it does not skip. The node name
 * is unique to the run, so a shared cluster is not disturbed.
 */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "../../core/http_server.h"
#include "../../core/kube_client.h"
#include "../../core/kubeconfig.h"
#include "../../core/kubelet_api.h"
#include "../../core/kubelet_auth.h"
#include "../../core/metrics.h"
#include "../../core/provider_client.h"
#include "../../core/tls.h"
#include "buf.h"
#include "json.h"
#include "log.h"
#include "rpc.h"
#include "work.h"
#include "harness.h"

static harness_cluster cluster;
static char kubectl[PATH_MAX];
static char node_kubeconfig[PATH_MAX];
static char ca_cert[PATH_MAX], kubelet_cert[PATH_MAX], kubelet_key[PATH_MAX];
static char node[64];
static char tmp[64];

/* kubectl --kubeconfig admin ARGS...; NULL-terminated. */
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
    return harness_run(argv, out);
}

/* ---- the server side ------------------------------------------------------------ */

typedef struct world {
    struct ev_loop *loop;
    pthread_t thread;
    ev_async stop;
    pid_t mock;
    char sock[128];
    provider_client *pc;
    vk_pool *pool;
    metrics *metrics;
    kube_config identity;
    struct kube_client *kube;
    kubelet_auth *auth;
    kubelet_api *api;
    SSL_CTX *tls;
    http_server *server;
    int port;
    pthread_mutex_t pods_mu;
    vk_buf pods;  /* the JSON array /pods serves */
} world;

static world W;

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void *loop_main(void *arg)
{
    (void)arg;
    ev_run(W.loop, 0);
    return NULL;
}

/* What main.c gets from the pod cache; here: the list the API server
 * gives for spec.nodeName (set before the loop asks). */
static int pods_hook(void *ud, vk_buf *out)
{
    (void)ud;
    pthread_mutex_lock(&W.pods_mu);
    int rc = W.pods.len ? vk_buf_append(out, W.pods.data, W.pods.len) : -1;
    pthread_mutex_unlock(&W.pods_mu);
    return rc;
}
static void start_mock(void)
{
    char path[PATH_MAX], listen[160];
    snprintf(path, sizeof path, "%s/vkc-provider-mock", harness_bin_dir());
    snprintf(W.sock, sizeof W.sock, "unix:%s/p.sock", tmp);
    snprintf(listen, sizeof listen, "%s", W.sock);
    char *argv[] = {path, "--listen", listen, "--log-interval", "100", NULL};
    W.mock = harness_spawn(argv, NULL, NULL);
    ck_assert_int_gt(W.mock, 0);
    W.pc = pc_new(W.sock, 10000, NULL);
    ck_assert_msg(pc_wait_ready(W.pc, 10000), "the mock provider did not come up");
    pc_info info = {0};
    vk_status st = {0, NULL};
    ck_assert_int_eq(pc_handshake(W.pc, node, "unix:/nonexistent/core.sock", 10000, &info, &st),
                     VK_OK);
    pc_info_clear(&info);
}

static void world_up(void)
{
    char err[512];
    snprintf(tmp, sizeof tmp, "/tmp/vkc-kubelet-api-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    start_mock();

    W.loop = ev_loop_new(EVFLAG_AUTO);
    ev_async_init(&W.stop, stop_cb);
    ev_async_start(W.loop, &W.stop);
    W.pool = vk_pool_new(W.loop, 2, 16);
    W.metrics = metrics_new();
    pthread_mutex_init(&W.pods_mu, NULL);
    ck_assert_msg(kube_config_load_file(&W.identity, node_kubeconfig, NULL, err,
                                        sizeof err) == 0, "%s", err);
    W.kube = kube_client_new(W.loop, &W.identity, NULL, err, sizeof err);
    ck_assert_msg(W.kube != NULL, "%s", err);

    tls_config tc = {.cert_file = kubelet_cert, .key_file = kubelet_key,
                     .client_ca_file = ca_cert};
    W.tls = tls_server_context(&tc, err, sizeof err);
    ck_assert_msg(W.tls != NULL, "%s", err);
    kubelet_auth_config ac = {.node_name = node, .anonymous = false, .token_webhook = true,
                              .mode = KUBELET_AUTHZ_WEBHOOK, .kube = W.kube};
    W.auth = kubelet_auth_new(&ac, err, sizeof err);
    ck_assert_msg(W.auth != NULL, "%s", err);
    kubelet_api_config kc = {.loop = W.loop, .node_name = node, .pool = W.pool,
                             .metrics = W.metrics, .auth = W.auth, .pods = pods_hook};
    W.api = kubelet_api_new(&kc);
    ck_assert_ptr_nonnull(W.api);
    supervisor_listener l = kubelet_api_listener(W.api);
    l.up(l.ud, W.pc, NULL);
    http_server_config hc = {.loop = W.loop, .address = "127.0.0.1", .port = 0, .tls = W.tls,
                             .handler = kubelet_api_handle, .ud = W.api};
    W.server = http_server_new(&hc, err, sizeof err);
    ck_assert_msg(W.server != NULL, "%s", err);
    W.port = http_server_port(W.server);
    ck_assert_int_eq(pthread_create(&W.thread, NULL, loop_main, NULL), 0);
}

static void world_down(void)
{
    vk_buf out = VK_BUF_INIT;
    kctl(&out, "delete", "node", node, "--ignore-not-found", "--wait=false", NULL);
    vk_buf_reset(&out);
    kctl(&out, "delete", "pod", "-n", "default", "--force", "--grace-period=0",
         "--ignore-not-found", "--wait=false", "web", "other", NULL);

    ev_async_send(W.loop, &W.stop);
    pthread_join(W.thread, NULL);
    http_server_free(W.server);
    supervisor_listener l = kubelet_api_listener(W.api);
    l.down(l.ud);
    vk_pool_free(W.pool);
    kubelet_api_free(W.api);
    kubelet_auth_free(W.auth);
    kube_client_free(W.kube);
    kube_config_free(&W.identity);
    SSL_CTX_free(W.tls);
    metrics_free(W.metrics);
    ev_async_stop(W.loop, &W.stop);
    ev_loop_destroy(W.loop);
    pc_unref(W.pc);
    kill(W.mock, SIGTERM);
    waitpid(W.mock, NULL, 0);
    vk_buf_free(&W.pods);
    pthread_mutex_destroy(&W.pods_mu);
    char *rm[] = {"/bin/rm", "-rf", tmp, NULL};
    vk_buf_reset(&out);
    harness_run(rm, &out);
    vk_buf_free(&out);
}

/* A number from the core's /metrics text, -1 when absent. */
static double metric_value(const char *series)
{
    vk_buf b = VK_BUF_INIT;
    metrics_render(W.metrics, &b);
    double v = -1;
    size_t n = strlen(series);
    for (const char *p = b.data; p && *p;) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            v = strtod(p + n + 1, NULL);
        const char *nl = strchr(p, '\n');
        p = nl ? nl + 1 : NULL;
    }
    vk_buf_free(&b);
    return v;
}

static bool wait_metric(const char *series, double want, long ms)
{
    long end = harness_now_ms() + ms;
    while (metric_value(series) != want && harness_now_ms() < end)
        usleep(50000);
    return metric_value(series) == want;
}

/* ---- the objects --------------------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void create_objects(void)
{
    char path[128], doc[2048];
    vk_buf out = VK_BUF_INIT;
    /* Status is accepted on create for nodes: no separate status write. */
    snprintf(doc, sizeof doc,
             "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"%s\"},"
             "\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"127.0.0.1\"},"
             "{\"type\":\"Hostname\",\"address\":\"%s\"}],"
             "\"daemonEndpoints\":{\"kubeletEndpoint\":{\"Port\":%d}}}}",
             node, node, W.port);
    snprintf(path, sizeof path, "%s/node.json", tmp);
    write_file(path, doc);
    ck_assert_msg(kctl(&out, "create", "-f", path, NULL) == 0, "create node: %s", out.data);
    vk_buf_reset(&out);

    const char *pods[][2] = {{"web", node}, {"other", "some-other-node"}};
    for (size_t i = 0; i < 2; i++) {
        snprintf(doc, sizeof doc,
                 "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"%s\","
                 "\"namespace\":\"default\"},\"spec\":{\"nodeName\":\"%s\","
                 "\"automountServiceAccountToken\":false,"
                 "\"containers\":[{\"name\":\"app\",\"image\":\"busybox\"}]}}",
                 pods[i][0], pods[i][1]);
        snprintf(path, sizeof path, "%s/pod-%zu.json", tmp, i);
        write_file(path, doc);
        ck_assert_msg(kctl(&out, "create", "-f", path, NULL) == 0, "create pod: %s", out.data);
        vk_buf_reset(&out);
    }

    /* The provider runs the pod the API server has (its uid included). */
    ck_assert_int_eq(kctl(&out, "get", "pod", "-n", "default", "web", "-o", "json", NULL), 0);
    vk_status st = {0, NULL};
    ck_assert_msg(pc_create_pod(W.pc, out.data, out.len, &st) == VK_OK, "CreatePod: %s",
                  st.message);
    vk_status_clear(&st);
    vk_buf_reset(&out);

    /* /pods serves what the API server binds to the node. */
    char selector[128];
    snprintf(selector, sizeof selector, "spec.nodeName=%s", node);
    ck_assert_int_eq(kctl(&out, "get", "pods", "-A", "--field-selector", selector,
                          "-o", "json", NULL), 0);
    char err[128];
    yajl_val list = vk_json_parse(out.data, out.len, err, sizeof err);
    ck_assert_ptr_nonnull(list);
    vk_buf items = VK_BUF_INIT;
    vk_json_writer w;
    vk_jw_begin(&w, &items);
    vk_jw_tree(&w, vk_json_member(list, "items"));
    ck_assert_int_eq(vk_jw_end(&w), 0);
    yajl_tree_free(list);
    pthread_mutex_lock(&W.pods_mu);
    vk_buf_free(&W.pods);
    W.pods = items;
    pthread_mutex_unlock(&W.pods_mu);
    vk_buf_free(&out);
}

static void fixture_up(void)
{
    world_up();
    create_objects();
}

/* ---- tests ------------------------------------------------------------------------- */

START_TEST(kubectl_logs_through_the_api_server)
{
    vk_buf out = VK_BUF_INIT;
    /* Give the mock a moment to write a few lines (one per 100 ms). */
    usleep(500000);
    int rc = kctl(&out, "logs", "-n", "default", "web", "-c", "app", "--tail=3", NULL);
    ck_assert_msg(rc == 0, "kubectl logs: %s", out.data);
    ck_assert_msg(strstr(out.data, "web/app line "), "no mock log lines: %s", out.data);
    int lines = 0;
    for (const char *p = out.data; (p = strchr(p, '\n')); p++)
        lines++;
    ck_assert_int_eq(lines, 3);
    vk_buf_free(&out);
}
END_TEST

START_TEST(stats_summary_names_the_node)
{
    vk_buf out = VK_BUF_INIT;
    char path[256];
    snprintf(path, sizeof path, "/api/v1/nodes/%s/proxy/stats/summary", node);
    ck_assert_msg(kctl(&out, "get", "--raw", path, NULL) == 0, "%s", out.data);
    char err[128];
    yajl_val doc = vk_json_parse(out.data, out.len, err, sizeof err);
    ck_assert_msg(doc != NULL, "not JSON: %s", out.data);
    ck_assert_str_eq(vk_json_str(vk_json_get(doc, "node", "nodeName", NULL), ""), node);
    yajl_val pods = vk_json_member(doc, "pods");
    ck_assert(YAJL_IS_ARRAY(pods) && pods->u.array.len == 1);
    ck_assert_str_eq(vk_json_str(vk_json_get(pods->u.array.values[0], "podRef", "name", NULL),
                                 ""), "web");
    yajl_tree_free(doc);
    vk_buf_free(&out);
}
END_TEST

START_TEST(metrics_resource_and_pods)
{
    vk_buf out = VK_BUF_INIT;
    char path[256];
    snprintf(path, sizeof path, "/api/v1/nodes/%s/proxy/metrics/resource", node);
    ck_assert_msg(kctl(&out, "get", "--raw", path, NULL) == 0, "%s", out.data);
    ck_assert_msg(strstr(out.data, "pod_cpu_usage_seconds_total{"), "%s", out.data);
    ck_assert_msg(strstr(out.data, "container_cpu_usage_seconds_total{"), "%s", out.data);
    vk_buf_reset(&out);

    snprintf(path, sizeof path, "/api/v1/nodes/%s/proxy/pods", node);
    ck_assert_msg(kctl(&out, "get", "--raw", path, NULL) == 0, "%s", out.data);
    char err[128];
    yajl_val doc = vk_json_parse(out.data, out.len, err, sizeof err);
    ck_assert_msg(doc != NULL, "not JSON: %s", out.data);
    ck_assert_str_eq(vk_json_str(vk_json_member(doc, "kind"), ""), "PodList");
    yajl_val items = vk_json_member(doc, "items");
    ck_assert(YAJL_IS_ARRAY(items));
    ck_assert_int_eq(items->u.array.len, 1);
    ck_assert_str_eq(vk_json_str(vk_json_get(items->u.array.values[0], "metadata", "name",
                                             NULL), ""), "web");
    yajl_tree_free(doc);
    vk_buf_reset(&out);

    /* An unknown container of a known pod: the provider's 404 comes back
     * through the API server. */
    snprintf(path, sizeof path, "/api/v1/nodes/%s/proxy/containerLogs/default/web/nope", node);
    ck_assert_int_ne(kctl(&out, "get", "--raw", path, NULL), 0);
    ck_assert_msg(strstr(out.data, "NotFound") || strstr(out.data, "not found"), "%s", out.data);
    vk_buf_free(&out);
}
END_TEST

START_TEST(follow_cancelled_when_kubectl_dies)
{
    /* The earlier tests' streams are counted down once they end. */
    ck_assert(wait_metric("kubelet_api_log_streams", 0, 15000));
    char *argv[] = {kubectl, "--kubeconfig", cluster.admin_kubeconfig, "logs", "-f", "-n",
                    "default", "web", "-c", "app", "--tail=1", NULL};
    int fd;
    pid_t pid = harness_spawn(argv, NULL, &fd);
    ck_assert_int_gt(pid, 0);
    /* Lines keep coming: the follow is live, well past any request timeout
     * of the server's (none applies to a stream). */
    vk_buf got = VK_BUF_INIT;
    long end = harness_now_ms() + 15000;
    int seen = 0;
    while (seen < 20 && harness_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 500) <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        vk_buf_append(&got, buf, (size_t)n);
        seen = 0;
        for (const char *q = got.data; (q = strstr(q, "web/app line ")); q++)
            seen++;
    }
    ck_assert_msg(seen >= 20, "follow gave %d lines: %s", seen, got.data ? got.data : "");
    ck_assert(metric_value("kubelet_api_log_streams") == 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fd);
    vk_buf_free(&got);
    /* The API server drops its connection to us; we cancel the provider's
     * stream, whose thread ends and is counted down. */
    ck_assert_msg(wait_metric("kubelet_api_log_streams", 0, 15000),
                  "the provider log stream was not cancelled after kubectl died");
}
END_TEST

/* ---- direct clients: bearer tokens, anonymous ------------------------------------------ */

static size_t collect(char *p, size_t size, size_t n, void *ud)
{
    vk_buf_append(ud, p, size * n);
    return size * n;
}

static long direct(const char *path, const char *token, vk_buf *body)
{
    CURL *h = curl_easy_init();
    char url[256], auth[4096];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", W.port, path);
    struct curl_slist *hdrs = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca_cert);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
    long status = 0;
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (!body->data)
        vk_buf_puts(body, "");
    return status;
}

START_TEST(tokens_and_anonymous)
{
    vk_buf body = VK_BUF_INIT;
    /* The serving certificate verifies against the cluster CA. */
    ck_assert_int_eq(direct("/healthz", NULL, &body), 401);
    ck_assert_ptr_nonnull(strstr(body.data, "\"reason\":\"Unauthorized\""));
    vk_buf_reset(&body);
    ck_assert_int_eq(direct("/healthz", "not-a-token", &body), 401);
    vk_buf_reset(&body);

    /* A service account's token: authenticated by TokenReview, then
     * refused by SubjectAccessReview (no RBAC grants it nodes/proxy). */
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(kctl(&out, "-n", "default", "get", "serviceaccount", "default", "-o",
                          "jsonpath={.secrets[0].name}", NULL), 0);
    char secret[256];
    snprintf(secret, sizeof secret, "%s", out.data);
    vk_buf_reset(&out);
    ck_assert_int_eq(kctl(&out, "-n", "default", "get", "secret", secret, "-o",
                          "jsonpath={.data.token}", NULL), 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "printf %%s '%s' | base64 -d", out.data);
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    char token[4096] = "";
    size_t n = fread(token, 1, sizeof token - 1, f);
    token[n] = '\0';
    pclose(f);
    ck_assert_int_gt(n, 20);
    ck_assert_int_eq(direct("/stats/summary", token, &body), 403);
    ck_assert_msg(strstr(body.data, "user=system:serviceaccount:default:default") &&
                  strstr(body.data, "subresource=stats"), "%s", body.data);
    vk_buf_free(&body);
    vk_buf_free(&out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("kubelet_api");
    TCase *tc = tcase_create("apiserver");
    tcase_add_unchecked_fixture(tc, fixture_up, world_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, kubectl_logs_through_the_api_server);
    tcase_add_test(tc, stats_summary_names_the_node);
    tcase_add_test(tc, metrics_resource_and_pods);
    tcase_add_test(tc, follow_cancelled_when_kubectl_dies);
    tcase_add_test(tc, tokens_and_anonymous);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    vk_log_set_component("test");
    const char *level = getenv("VKC_LOG_LEVEL");
    vk_log_set_level_name(level && *level ? level : "info");

    if (harness_cluster_up(&cluster, "vkc-kubelet-cluster") < 0)
        return EXIT_FAILURE;
    int rc = EXIT_FAILURE;
    if (harness_cluster_env(&cluster, "VKC_KUBECTL", kubectl, sizeof kubectl) < 0 ||
        harness_cluster_env(&cluster, "VKC_CA_CERT", ca_cert, sizeof ca_cert) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBECONFIG", node_kubeconfig,
                            sizeof node_kubeconfig) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBELET_CERT", kubelet_cert,
                            sizeof kubelet_cert) < 0 ||
        harness_cluster_env(&cluster, "VKC_NODE_KUBELET_KEY", kubelet_key,
                            sizeof kubelet_key) < 0) {
        fprintf(stderr, "FAIL: %s lacks VKC_KUBECTL, VKC_CA_CERT, the node kubeconfig or "
                        "the kubelet cert\n", cluster.env);
    } else {
        snprintf(node, sizeof node, "vkc-kapi-%ld", (long)getpid());
        curl_global_init(CURL_GLOBAL_DEFAULT);
        vk_rpc_init();
        SRunner *sr = srunner_create(suite());
        /* gRPC's threads do not survive fork(): one process, one world. */
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_NORMAL);
        rc = srunner_ntests_failed(sr) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        srunner_free(sr);
        vk_rpc_shutdown();
        curl_global_cleanup();
    }
    harness_cluster_down(&cluster);
    return rc;
}
