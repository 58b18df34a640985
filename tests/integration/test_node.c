/* test_node.c -- core/node.c and core/lease.c against a real API server.
 *
 * The test runs the loop itself: a kube_client with the node's identity
 * (system:node:NAME, so the Node authorizer and NodeRestriction apply), a
 * supervisor in socket mode connected to a mock provider this test starts
 * and kills at will, and the node module. It checks what it did through a
 * second client with the admin identity.
 *
 * The cluster: $VKC_CLUSTER_DIR (from tests/cluster/up.sh), else one
 * brought up here in a temporary directory and torn down at the end. The
 * Kubernetes binaries must be built already ($VKC_K8S_BIN, or the cache of
 * tests/cluster/build.sh): building them takes half an hour, so their
 * absence fails the test with a message instead of starting a build.
 * Binaries of vkc come from $VKC_BIN_DIR (default build/bin).
 *
 * Every test starts from a cluster without the Node and its Lease.
 */
#include <check.h>
#include <ev.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../core/kube_client.h"
#include "../../core/kubeconfig.h"
#include "../../core/lease.h"
#include "../../core/metrics.h"
#include "../../core/node.h"
#include "../../core/supervisor.h"
#include "buf.h"
#include "json.h"
#include "log.h"
#include "rpc.h"
#include "work.h"

#define LEASES "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/"
#define WAIT_S 30.0

static char cluster_dir[512];
static bool cluster_ours;
/* Each test's files, in a directory of its own under this one: a failed
 * test skips its teardown, main removes them all. */
static char work_dir[32];
static const char *node_name = "vkc-node";

/* Everything one test runs; lives in the forked test process. */
static struct {
    struct ev_loop *loop;
    ev_timer tick;
    char dir[48], sock[64], core_sock[72], faults[64];
    pid_t mock;
    kube_config node_kc, admin_kc;
    struct kube_client *kube, *admin;
    vk_pool *pool;
    metrics *metrics;
    supervisor *sup;
    node *node;
    bool stopped;
    int status_period_ms;   /* 0: the default */
} E;

static const char *bin(const char *name)
{
    static char path[512];
    const char *dir = getenv("VKC_BIN_DIR");
    snprintf(path, sizeof path, "%s/%s", dir && *dir ? dir : "build/bin", name);
    return path;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- the loop ------------------------------------------------------------------ */

/* Keeps EVRUN_ONCE from blocking longer than a tick. */
static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)t;
    (void)revents;
}

static void spin(double seconds)
{
    double end = ev_time() + seconds;
    while (ev_time() < end)
        ev_run(E.loop, EVRUN_ONCE);
}

typedef struct reply {
    bool done;
    long status;
    char *body;
} reply;

static void on_reply(const struct kube_response *resp, void *ud)
{
    reply *r = ud;
    r->done = true;
    r->status = resp->status;
    r->body = strdup(resp->body ? resp->body : "");
}

/* An admin request, waited for on the loop (the node keeps running).
 * The parsed 2xx body goes to *out when out is given. */
static long admin(const char *method, const char *path, const char *ctype, const char *body,
                  yajl_val *out)
{
    reply r = {0};
    int64_t id = kube_request(E.admin, method, path, ctype, body, body ? strlen(body) : 0,
                              10000, on_reply, &r);
    ck_assert_int_gt(id, 0);
    while (!r.done)
        ev_run(E.loop, EVRUN_ONCE);
    if (out)
        *out = r.status / 100 == 2 ? vk_json_parse(r.body, strlen(r.body), NULL, 0) : NULL;
    free(r.body);
    return r.status;
}

static yajl_val get_node(void)
{
    char path[256];
    yajl_val obj = NULL;
    snprintf(path, sizeof path, "/api/v1/nodes/%s", node_name);
    admin("GET", path, NULL, NULL, &obj);
    return obj;
}

static yajl_val get_lease(void)
{
    char path[256];
    yajl_val obj = NULL;
    snprintf(path, sizeof path, LEASES "%s", node_name);
    admin("GET", path, NULL, NULL, &obj);
    return obj;
}

static const char *str_at(yajl_val v, const char *a, const char *b, const char *c)
{
    return vk_json_str(vk_json_get(v, a, b, c, NULL), NULL);
}

static yajl_val condition(yajl_val node_obj, const char *type)
{
    yajl_val list = vk_json_get(node_obj, "status", "conditions", NULL);
    for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++)
        if (strcmp(vk_json_str(vk_json_member(list->u.array.values[i], "type"), ""), type) == 0)
            return list->u.array.values[i];
    return NULL;
}

static const char *cond_field(yajl_val node_obj, const char *type, const char *field)
{
    return vk_json_str(vk_json_member(condition(node_obj, type), field), NULL);
}

static bool eq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* ---- waiting for the Node ---------------------------------------------------------- */

typedef struct want_cond {
    const char *type, *status, *reason;
    const char *not_uid;   /* and a uid other than this one */
} want_cond;

static bool cond_matches(yajl_val obj, const want_cond *w)
{
    return eq(cond_field(obj, w->type, "status"), w->status) &&
           (!w->reason || eq(cond_field(obj, w->type, "reason"), w->reason)) &&
           (!w->not_uid || !eq(str_at(obj, "metadata", "uid", NULL), w->not_uid));
}

static void dump_conditions(yajl_val obj)
{
    yajl_val list = vk_json_get(obj, "status", "conditions", NULL);
    fprintf(stderr, "--- node %s conditions:\n", obj ? "present" : "absent");
    for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++) {
        yajl_val c = list->u.array.values[i];
        fprintf(stderr, "    %s=%s reason=%s\n", vk_json_str(vk_json_member(c, "type"), "?"),
                vk_json_str(vk_json_member(c, "status"), "?"),
                vk_json_str(vk_json_member(c, "reason"), ""));
    }
}

/* The Node once the condition holds (caller frees), failing after s seconds. */
static yajl_val wait_cond(const want_cond *w, double s)
{
    double end = ev_time() + s;
    for (;;) {
        yajl_val obj = get_node();
        if (obj && cond_matches(obj, w))
            return obj;
        if (ev_time() > end) {
            dump_conditions(obj);
            yajl_tree_free(obj);
            ck_abort_msg("node condition %s=%s%s%s not seen within %.0f s", w->type, w->status,
                         w->reason ? " reason=" : "", w->reason ? w->reason : "", s);
        }
        yajl_tree_free(obj);
        spin(0.2);
    }
}

static yajl_val wait_ready(const char *status, const char *reason)
{
    want_cond w = {"Ready", status, reason, NULL};
    return wait_cond(&w, WAIT_S);
}

/* How long a write that is due every second may take to show: a loaded
 * machine can hold one back for seconds, so tests poll for it up to
 * this long instead of looking once after a fixed wait. Still far below
 * the Lease's 40 s duration. */
#define RENEW_WAIT_S 15.0

/* The Lease once its renewTime is later than after (MicroTime strings
 * sort by time), or NULL after RENEW_WAIT_S. */
static yajl_val wait_renewed(const char *after)
{
    double end = ev_time() + RENEW_WAIT_S;
    for (;;) {
        yajl_val l = get_lease();
        const char *t = str_at(l, "spec", "renewTime", NULL);
        if (t && strcmp(t, after) > 0)
            return l;
        yajl_tree_free(l);
        if (ev_time() > end)
            return NULL;
        spin(0.2);
    }
}

/* ---- the mock provider --------------------------------------------------------------- */

static void write_faults(const char *text)
{
    FILE *f = fopen(E.faults, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
}

static bool mock_listening(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", E.sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Start the mock and wait until it serves: a mock that cannot start
 * should fail here, not as a node that never turns Ready. */
static void mock_start(void)
{
    char listen[160];
    snprintf(listen, sizeof listen, "unix:%s", E.sock);
    char *argv[] = {(char *)bin("vkc-provider-mock"), "--listen", listen, "--faults", E.faults,
                    "--cpu", "7", "--memory", "3Gi", "--pods", "42", NULL};
    unlink(E.sock);
    pid_t parent = getpid();
    E.mock = fork();
    ck_assert_int_ge(E.mock, 0);
    if (E.mock == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    double end = ev_time() + 10;
    while (!mock_listening()) {
        int status;
        if (waitpid(E.mock, &status, WNOHANG) == E.mock) {
            E.mock = 0;
            ck_abort_msg("%s exited at start with status %d (127: cannot execute)", argv[0],
                         WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
        }
        ck_assert_msg(ev_time() < end, "%s does not listen on %s", argv[0], E.sock);
        usleep(20000);
    }
}

static void mock_kill(void)
{
    if (E.mock > 0) {
        kill(E.mock, SIGKILL);
        waitpid(E.mock, NULL, 0);
    }
    E.mock = 0;
}

/* ---- set-up ---------------------------------------------------------------------------- */

static void on_fatal(void *ud)
{
    (void)ud;
    ck_abort_msg("supervisor: the provider speaks another protocol version");
}

static struct kube_client *client(kube_config *kc, const char *file)
{
    char path[640], err[512];
    snprintf(path, sizeof path, "%s/%s", cluster_dir, file);
    ck_assert_msg(kube_config_load_file(kc, path, NULL, err, sizeof err) == 0, "%s", err);
    /* No client-side rate limit: node.h asks main.c for the same. */
    struct kube_client_opts opts = {.qps = -1};
    struct kube_client *c = kube_client_new(E.loop, kc, &opts, err, sizeof err);
    ck_assert_msg(c != NULL, "%s", err);
    return c;
}

/* No Node, no Lease. */
static void reset_cluster(void)
{
    char path[256];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", node_name);
    long st = admin("DELETE", path, NULL, NULL, NULL);
    ck_assert_msg(st == 200 || st == 404, "DELETE node: %ld", st);
    snprintf(path, sizeof path, LEASES "%s", node_name);
    st = admin("DELETE", path, NULL, NULL, NULL);
    ck_assert_msg(st == 200 || st == 404, "DELETE lease: %ld", st);
    double end = ev_time() + WAIT_S;
    yajl_val obj;
    while ((obj = get_node())) {
        yajl_tree_free(obj);
        ck_assert_msg(ev_time() < end, "the Node does not go away");
        spin(0.2);
    }
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    vk_log_set_component("test");
    memset(&E, 0, sizeof E);
    E.loop = ev_default_loop(0);
    ev_timer_init(&E.tick, on_tick, 0.05, 0.05);
    ev_timer_start(E.loop, &E.tick);
    vk_rpc_init();
    snprintf(E.dir, sizeof E.dir, "%s/XXXXXX", work_dir);
    ck_assert_ptr_nonnull(mkdtemp(E.dir));
    snprintf(E.sock, sizeof E.sock, "%s/p.sock", E.dir);
    snprintf(E.core_sock, sizeof E.core_sock, "unix:%s/core.sock", E.dir);
    snprintf(E.faults, sizeof E.faults, "%s/faults", E.dir);
    char file[256];
    snprintf(file, sizeof file, "node-%s.kubeconfig", node_name);
    E.kube = client(&E.node_kc, file);
    E.admin = client(&E.admin_kc, "admin.kubeconfig");
    E.pool = vk_pool_new(E.loop, 2, 16);
    E.metrics = metrics_new();
    ck_assert(E.pool && E.metrics);
    reset_cluster();
}

static void on_stop_done(void *ud)
{
    *(bool *)ud = true;
}

static void stop_node(void)
{
    bool done = false;
    node_stop(E.node, on_stop_done, &done);
    double end = ev_time() + 5;
    while (!done && ev_time() < end)
        ev_run(E.loop, EVRUN_ONCE);
    ck_assert_msg(done, "node_stop did not finish");
    E.stopped = true;
}

static node_config test_config(void)
{
    node_config nc = {
        .kube = E.kube,
        .pool = E.pool,
        .metrics = E.metrics,
        .name = node_name,
        .labels = "vkc.test/tier=gold,node.kubernetes.io/pool=a",
        .kubelet_port = 10555,
        .node_ip = "10.20.30.40",
        .lease_renew_ms = 1000,
        .poll_ms = 1000,
        .register_wait_ms = 5000,
        .status_period_ms = E.status_period_ms,
    };
    return nc;
}

static node *new_node(void)
{
    char err[512];
    node_config nc = test_config();
    node *n = node_new(&nc, err, sizeof err);
    ck_assert_msg(n != NULL, "node_new: %s", err);
    return n;
}

/* The supervisor (socket mode, to the mock) and the node. */
static void start_stack(void)
{
    supervisor_config sc = {
        .loop = E.loop,
        .pool = E.pool,
        .socket_path = E.sock,
        .core_target = E.core_sock,
        .node_name = node_name,
        .ping_interval_ms = 200,
        .ping_timeout_ms = 500,
        .max_backoff_ms = 300,
        .stop_timeout_ms = 1000,
        .fatal = on_fatal,
    };
    E.sup = supervisor_new(&sc);
    ck_assert_ptr_nonnull(E.sup);
    E.node = new_node();
    E.stopped = false;
    supervisor_listener l = node_listener(E.node);
    ck_assert_int_eq(supervisor_listen(E.sup, &l), 0);
    supervisor_start(E.sup);
    node_start(E.node);
}

/* In the order main.c must follow: the node's stop, the supervisor's,
 * the pool (its completions refer to both), then the two. */
static void stop_stack(void)
{
    if (E.node && !E.stopped)
        stop_node();
    bool done = false;
    if (E.sup)
        supervisor_stop(E.sup, on_stop_done, &done);
    vk_pool_free(E.pool);
    E.pool = NULL;
    node_free(E.node);
    supervisor_free(E.sup);
    E.node = NULL;
    E.sup = NULL;
}

static void start_all(const char *faults)
{
    write_faults(faults);
    mock_start();
    start_stack();
}

static void teardown(void)
{
    stop_stack();
    mock_kill();
    kube_client_free(E.kube);
    kube_client_free(E.admin);
    kube_config_free(&E.node_kc);
    kube_config_free(&E.admin_kc);
    metrics_free(E.metrics);
    ev_timer_stop(E.loop, &E.tick);
    vk_rpc_shutdown();
    ev_loop_destroy(E.loop);
}

/* ---- tests ----------------------------------------------------------------------------- */

START_TEST(test_register)
{
    start_all("");
    yajl_val n = wait_ready("True", "MockProvider");

    yajl_val labels = vk_json_get(n, "metadata", "labels", NULL);
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "type"), ""), "virtual-kubelet");
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "kubernetes.io/hostname"), ""), node_name);
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "kubernetes.io/os"), ""), "linux");
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "beta.kubernetes.io/os"), ""), "linux");
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "kubernetes.io/arch"), ""),
                     str_at(n, "status", "nodeInfo", "architecture"));
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "vkc.test/tier"), ""), "gold");
    ck_assert_str_eq(vk_json_str(vk_json_member(labels, "node.kubernetes.io/pool"), ""), "a");
    /* Forbidden to a node by NodeRestriction: never sent. */
    ck_assert_ptr_null(vk_json_member(labels, "kubernetes.io/role"));

    /* Ours, among those the control plane adds (node.kubernetes.io/not-ready
     * until the first Ready is seen). */
    yajl_val taints = vk_json_get(n, "spec", "taints", NULL), t = NULL;
    for (size_t i = 0; YAJL_IS_ARRAY(taints) && i < taints->u.array.len; i++)
        if (eq(vk_json_str(vk_json_member(taints->u.array.values[i], "key"), NULL),
               "virtual-kubelet.io/provider"))
            t = taints->u.array.values[i];
    ck_assert_msg(t != NULL, "no virtual-kubelet.io/provider taint");
    ck_assert_str_eq(vk_json_str(vk_json_member(t, "value"), ""), "mock");
    ck_assert_str_eq(vk_json_str(vk_json_member(t, "effect"), ""), "NoSchedule");

    ck_assert_str_eq(str_at(n, "status", "capacity", "cpu"), "7");
    ck_assert_str_eq(str_at(n, "status", "capacity", "memory"), "3Gi");
    ck_assert_str_eq(str_at(n, "status", "capacity", "pods"), "42");
    ck_assert_str_eq(str_at(n, "status", "allocatable", "cpu"), "7");
    ck_assert_str_eq(str_at(n, "status", "allocatable", "pods"), "42");

    yajl_val addrs = vk_json_get(n, "status", "addresses", NULL);
    ck_assert(YAJL_IS_ARRAY(addrs) && addrs->u.array.len == 2);
    yajl_val a0 = addrs->u.array.values[0], a1 = addrs->u.array.values[1];
    ck_assert_str_eq(vk_json_str(vk_json_member(a0, "type"), ""), "InternalIP");
    ck_assert_str_eq(vk_json_str(vk_json_member(a0, "address"), ""), "10.20.30.40");
    ck_assert_str_eq(vk_json_str(vk_json_member(a1, "type"), ""), "Hostname");
    ck_assert_str_eq(vk_json_str(vk_json_member(a1, "address"), ""), node_name);

    ck_assert_int_eq(vk_json_int(vk_json_get(n, "status", "daemonEndpoints", "kubeletEndpoint",
                                             "Port", NULL), 0), 10555);
    ck_assert_str_eq(str_at(n, "status", "nodeInfo", "kubeletVersion"), NODE_KUBELET_VERSION);
    ck_assert_str_eq(str_at(n, "status", "nodeInfo", "operatingSystem"), "linux");
    /* The provider's own fields pass through. */
    ck_assert_str_eq(str_at(n, "status", "nodeInfo", "osImage"), "vkc mock");
    ck_assert_ptr_nonnull(strstr(str_at(n, "status", "nodeInfo", "containerRuntimeVersion"),
                                 "mock://"));

    ck_assert_str_eq(cond_field(n, "DiskPressure", "status"), "False");
    ck_assert_str_eq(cond_field(n, "MemoryPressure", "status"), "False");
    ck_assert_ptr_nonnull(cond_field(n, "Ready", "lastHeartbeatTime"));
    ck_assert_ptr_nonnull(cond_field(n, "Ready", "lastTransitionTime"));
    yajl_tree_free(n);
}
END_TEST

static void wait_lease_holder(void)
{
    double end = ev_time() + WAIT_S;
    for (;;) {
        yajl_val l = get_lease();
        bool ok = eq(str_at(l, "spec", "holderIdentity", NULL), node_name);
        yajl_tree_free(l);
        if (ok)
            return;
        ck_assert_msg(ev_time() < end, "the Lease is not held by %s", node_name);
        spin(0.2);
    }
}

START_TEST(test_lease)
{
    start_all("");
    yajl_val n = wait_ready("True", NULL);
    const char *uid = str_at(n, "metadata", "uid", NULL);
    ck_assert_ptr_nonnull(uid);

    yajl_val l = get_lease();
    double end = ev_time() + WAIT_S;
    while (!l) {
        ck_assert_msg(ev_time() < end, "no Lease");
        spin(0.2);
        l = get_lease();
    }
    ck_assert_str_eq(str_at(l, "spec", "holderIdentity", NULL), node_name);
    ck_assert_int_eq(vk_json_int(vk_json_get(l, "spec", "leaseDurationSeconds", NULL), 0), 40);
    yajl_val owners = vk_json_get(l, "metadata", "ownerReferences", NULL);
    ck_assert(YAJL_IS_ARRAY(owners) && owners->u.array.len == 1);
    ck_assert_str_eq(vk_json_str(vk_json_member(owners->u.array.values[0], "kind"), ""), "Node");
    ck_assert_str_eq(vk_json_str(vk_json_member(owners->u.array.values[0], "uid"), ""), uid);
    /* MicroTime: 2006-01-02T15:04:05.000000Z, so later sorts after. */
    const char *first = str_at(l, "spec", "renewTime", NULL);
    ck_assert_ptr_nonnull(first);
    ck_assert_uint_eq(strlen(first), strlen("2006-01-02T15:04:05.000000Z"));

    /* Renewed every second (lease_renew_ms). */
    yajl_val l2 = wait_renewed(first);
    ck_assert_msg(l2 != NULL, "renewTime did not advance past %s in %.0f s", first,
                  RENEW_WAIT_S);

    /* Someone else writes it (our next PUT conflicts), then deletes it:
     * both are repaired. */
    char path[256];
    snprintf(path, sizeof path, LEASES "%s", node_name);
    ck_assert_int_eq(admin("PATCH", path, "application/merge-patch+json",
                           "{\"spec\":{\"holderIdentity\":\"intruder\"}}", NULL), 200);
    wait_lease_holder();
    ck_assert_int_eq(admin("DELETE", path, NULL, NULL, NULL), 200);
    wait_lease_holder();

    vk_buf text = VK_BUF_INIT;
    ck_assert_int_eq(metrics_render(E.metrics, &text), 0);
    ck_assert_ptr_nonnull(strstr(text.data, "lease_renewals_total{result=\"ok\"}"));
    ck_assert_ptr_nonnull(strstr(text.data, "lease_last_renew_timestamp_seconds"));
    ck_assert_ptr_nonnull(strstr(text.data, "node_status_updates_total"));
    vk_buf_free(&text);
    yajl_tree_free(l2);
    yajl_tree_free(l);
    yajl_tree_free(n);
}
END_TEST

/* Nothing changes, yet the status is written every status period. */
START_TEST(test_status_heartbeat)
{
    E.status_period_ms = 1000;
    start_all("");
    yajl_val before = wait_ready("True", NULL);
    char beat[64], since[64];
    snprintf(beat, sizeof beat, "%s", cond_field(before, "Ready", "lastHeartbeatTime"));
    snprintf(since, sizeof since, "%s", cond_field(before, "Ready", "lastTransitionTime"));
    yajl_tree_free(before);
    /* A heartbeat is due every second: poll for a later one (times have
     * whole seconds, so it shows within two periods on an idle machine). */
    double end = ev_time() + RENEW_WAIT_S;
    yajl_val n = NULL;
    for (;;) {
        n = get_node();
        ck_assert_ptr_nonnull(n);
        const char *now = cond_field(n, "Ready", "lastHeartbeatTime");
        if (now && strcmp(now, beat) > 0)
            break;
        ck_assert_msg(ev_time() < end, "lastHeartbeatTime stayed %s for %.0f s", beat,
                      RENEW_WAIT_S);
        yajl_tree_free(n);
        spin(0.2);
    }
    ck_assert_str_gt(cond_field(n, "Ready", "lastHeartbeatTime"), beat);
    ck_assert_str_eq(cond_field(n, "Ready", "lastTransitionTime"), since);
    yajl_tree_free(n);
}
END_TEST

START_TEST(test_condition_change)
{
    start_all("");
    yajl_val before = wait_ready("True", NULL);
    char ready_since[64];
    snprintf(ready_since, sizeof ready_since, "%s",
             cond_field(before, "Ready", "lastTransitionTime"));
    yajl_tree_free(before);

    write_faults("condition DiskPressure True\ncondition ExampleCheck True\n");
    ck_assert_int_eq(kill(E.mock, SIGHUP), 0);
    want_cond w = {"DiskPressure", "True", "FaultFile", NULL};
    yajl_val n = wait_cond(&w, WAIT_S);
    ck_assert_str_eq(cond_field(n, "ExampleCheck", "status"), "True");
    /* Ready did not change: its transition time stays. */
    ck_assert_str_eq(cond_field(n, "Ready", "status"), "True");
    ck_assert_str_eq(cond_field(n, "Ready", "lastTransitionTime"), ready_since);
    yajl_tree_free(n);

    /* Back to normal; the condition type the provider no longer reports
     * is removed from the Node. */
    write_faults("");
    ck_assert_int_eq(kill(E.mock, SIGHUP), 0);
    want_cond back = {"DiskPressure", "False", NULL, NULL};
    n = wait_cond(&back, WAIT_S);
    ck_assert_ptr_null(condition(n, "ExampleCheck"));
    yajl_tree_free(n);
}
END_TEST

START_TEST(test_node_deleted)
{
    start_all("");
    yajl_val n = wait_ready("True", NULL);
    char uid[64];
    snprintf(uid, sizeof uid, "%s", str_at(n, "metadata", "uid", NULL));
    yajl_tree_free(n);

    char path[256];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", node_name);
    ck_assert_int_eq(admin("DELETE", path, NULL, NULL, NULL), 200);
    want_cond w = {"Ready", "True", NULL, uid};
    n = wait_cond(&w, WAIT_S);
    char new_uid[64];
    snprintf(new_uid, sizeof new_uid, "%s", str_at(n, "metadata", "uid", NULL));
    ck_assert_str_ne(new_uid, uid);
    ck_assert_str_eq(str_at(n, "status", "capacity", "cpu"), "7");
    yajl_tree_free(n);

    /* The Lease follows its new owner (or was collected with the old
     * one and created again). */
    double end = ev_time() + WAIT_S;
    for (;;) {
        yajl_val l = get_lease();
        yajl_val owners = vk_json_get(l, "metadata", "ownerReferences", NULL);
        bool ok = YAJL_IS_ARRAY(owners) && owners->u.array.len == 1 &&
                  eq(vk_json_str(vk_json_member(owners->u.array.values[0], "uid"), NULL), new_uid);
        yajl_tree_free(l);
        if (ok)
            break;
        ck_assert_msg(ev_time() < end, "the Lease's owner is not the new Node");
        spin(0.2);
    }
}
END_TEST

START_TEST(test_provider_down)
{
    start_all("");
    yajl_tree_free(wait_ready("True", NULL));

    mock_kill();
    yajl_val n = wait_ready("False", "ProviderDown");
    ck_assert_ptr_nonnull(strstr(cond_field(n, "Ready", "message"), "provider"));
    yajl_tree_free(n);

    /* vkc itself is alive: the Lease goes on. */
    yajl_val l = get_lease();
    ck_assert_ptr_nonnull(l);
    char first[64];
    snprintf(first, sizeof first, "%s", str_at(l, "spec", "renewTime", NULL));
    yajl_tree_free(l);
    l = wait_renewed(first);
    ck_assert_msg(l != NULL, "the Lease was not renewed past %s in %.0f s with the provider down",
                  first, RENEW_WAIT_S);
    ck_assert_str_gt(str_at(l, "spec", "renewTime", NULL), first);
    yajl_tree_free(l);

    mock_start();
    yajl_tree_free(wait_ready("True", "MockProvider"));
}
END_TEST

START_TEST(test_stop_and_restart)
{
    start_all("");
    yajl_tree_free(wait_ready("True", NULL));

    /* node_stop bounds its one status write by 2 s (node.h); the extra
     * time is for a loaded machine that runs the loop late, and stays
     * below stop_node's own 5 s. */
    double t0 = ev_time();
    stop_node();
    ck_assert_msg(ev_time() - t0 < 4.0, "node_stop took %.1f s", ev_time() - t0);
    yajl_val n = get_node();
    ck_assert_ptr_nonnull(n);   /* not deleted */
    ck_assert_str_eq(cond_field(n, "Ready", "status"), "False");
    ck_assert_str_eq(cond_field(n, "Ready", "reason"), "KubeletStopped");
    char uid[64];
    snprintf(uid, sizeof uid, "%s", str_at(n, "metadata", "uid", NULL));
    yajl_tree_free(n);

    /* Meanwhile someone edits the labels. */
    char path[256];
    snprintf(path, sizeof path, "/api/v1/nodes/%s", node_name);
    ck_assert_int_eq(admin("PATCH", path, "application/merge-patch+json",
                           "{\"metadata\":{\"labels\":{\"vkc.test/tier\":\"silver\","
                           "\"team\":\"blue\"}}}", NULL), 200);

    /* A restart finds its Node (409) and takes it over. */
    stop_stack();
    E.pool = vk_pool_new(E.loop, 2, 16);
    ck_assert_ptr_nonnull(E.pool);
    start_stack();
    n = wait_ready("True", "MockProvider");
    ck_assert_str_eq(str_at(n, "metadata", "uid", NULL), uid);
    yajl_tree_free(n);
    /* Ours corrected, theirs kept. */
    double end = ev_time() + WAIT_S;
    for (;;) {
        n = get_node();
        bool ok = eq(str_at(n, "metadata", "labels", "vkc.test/tier"), "gold");
        if (ok)
            ck_assert_str_eq(str_at(n, "metadata", "labels", "team"), "blue");
        yajl_tree_free(n);
        if (ok)
            break;
        ck_assert_msg(ev_time() < end, "the label was not corrected");
        spin(0.2);
    }
}
END_TEST

START_TEST(test_watch_node_failing)
{
    /* The stream never works; GetNode does. */
    start_all("error WatchNode UNAVAILABLE stream broken on purpose\n");
    yajl_val n = wait_ready("True", "MockProvider");
    ck_assert_str_eq(str_at(n, "status", "capacity", "cpu"), "7");
    yajl_tree_free(n);
}
END_TEST

START_TEST(test_bad_labels)
{
    node_config nc = test_config();
    char err[512];
    nc.labels = "kubernetes.io/role=agent";
    ck_assert_ptr_null(node_new(&nc, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "NodeRestriction"));
    nc.labels = "a=b,novalue";
    ck_assert_ptr_null(node_new(&nc, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "novalue"));
    nc.labels = "bad key=x";
    ck_assert_ptr_null(node_new(&nc, err, sizeof err));
    nc.labels = "node-role.kubernetes.io/agent=";
    ck_assert_ptr_null(node_new(&nc, err, sizeof err));
    nc.labels = "kubelet.kubernetes.io/x=y,topology.kubernetes.io/zone=z1,example.com/a=";
    nc.node_ip = "not-an-ip";
    ck_assert_ptr_null(node_new(&nc, err, sizeof err));
    nc.node_ip = NULL;
    node *n = node_new(&nc, err, sizeof err);
    ck_assert_msg(n != NULL, "%s", err);
    node_free(n);
}
END_TEST

/* ---- the cluster ------------------------------------------------------------------------ */

static int run_script(const char *script, const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "tests/cluster/%s '%s' >/dev/null", script, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

static void stop_cluster(void)
{
    if (!cluster_ours)
        return;
    run_script("down.sh", cluster_dir);
    nftw(cluster_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    cluster_ours = false;
}

static void on_signal(int sig)
{
    /* fork/exec/wait are async-signal-safe; the control plane was started
     * with setsid and would outlive us. */
    if (cluster_ours) {
        pid_t pid = fork();
        if (pid == 0) {
            char *argv[] = {"tests/cluster/down.sh", cluster_dir, NULL};
            execv(argv[0], argv);
            _exit(127);
        }
        if (pid > 0)
            waitpid(pid, NULL, 0);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static int start_cluster(void)
{
    char bindir[512];
    const char *env = getenv("VKC_K8S_BIN");
    if (env && *env) {
        snprintf(bindir, sizeof bindir, "%s", env);
    } else {
        const char *cache = getenv("VKC_CACHE");
        const char *version = getenv("VKC_K8S_VERSION");
        snprintf(bindir, sizeof bindir, "%s/k8s-%s/bin", cache && *cache ? cache : "/var/cache/vkc",
                 version && *version ? version : "1.20.2");
    }
    char apiserver[600];
    snprintf(apiserver, sizeof apiserver, "%s/kube-apiserver", bindir);
    if (access(apiserver, X_OK) != 0) {
        fprintf(stderr, "FAIL: no Kubernetes binaries in %s. Build them once with "
                "tests/cluster/build.sh (about 30 min), or set VKC_K8S_BIN, or point "
                "VKC_CLUSTER_DIR at a cluster from tests/cluster/up.sh.\n", bindir);
        return -1;
    }
    if (access("tests/cluster/up.sh", X_OK) != 0) {
        fprintf(stderr, "FAIL: tests/cluster/up.sh not found: run from the repository root\n");
        return -1;
    }
    snprintf(cluster_dir, sizeof cluster_dir, "/tmp/vkc-node-cluster-XXXXXX");
    if (!mkdtemp(cluster_dir)) {
        perror("mkdtemp");
        return -1;
    }
    setenv("VKC_K8S_BIN", bindir, 1);
    cluster_ours = true;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fprintf(stderr, "starting a control plane in %s\n", cluster_dir);
    if (run_script("up.sh", cluster_dir) != 0) {
        fprintf(stderr, "FAIL: tests/cluster/up.sh %s failed (logs in %s/logs)\n", cluster_dir,
                cluster_dir);
        cluster_ours = false;
        return -1;
    }
    return 0;
}

int main(void)
{
    const char *dir = getenv("VKC_CLUSTER_DIR");
    const char *name = getenv("VKC_NODE_NAME");
    if (name && *name)
        node_name = name;
    if (dir && *dir)
        snprintf(cluster_dir, sizeof cluster_dir, "%s", dir);
    else if (start_cluster() < 0)
        return 1;
    char kc[700];
    snprintf(kc, sizeof kc, "%s/node-%s.kubeconfig", cluster_dir, node_name);
    if (access(kc, R_OK) != 0) {
        fprintf(stderr, "FAIL: %s is missing: not a cluster from tests/cluster/up.sh?\n", kc);
        stop_cluster();
        return 1;
    }

    snprintf(work_dir, sizeof work_dir, "/tmp/vkc-node-test-XXXXXX");
    if (!mkdtemp(work_dir)) {
        perror("mkdtemp");
        stop_cluster();
        return 1;
    }

    Suite *s = suite_create("node");
    TCase *tc = tcase_create("api-server");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_bad_labels);
    tcase_add_test(tc, test_register);
    tcase_add_test(tc, test_lease);
    tcase_add_test(tc, test_status_heartbeat);
    tcase_add_test(tc, test_condition_change);
    tcase_add_test(tc, test_node_deleted);
    tcase_add_test(tc, test_provider_down);
    tcase_add_test(tc, test_stop_and_restart);
    tcase_add_test(tc, test_watch_node_failing);
    suite_add_tcase(s, tc);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nftw(work_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    stop_cluster();
    return failed ? 1 : 0;
}
