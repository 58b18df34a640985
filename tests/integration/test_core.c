/* test_core.c -- vkc-core against the mock provider: start-up, restarts,
 * hangs, protocol mismatch, flags, shutdown, the Core service; and every
 * Provider RPC through core/provider_client.c.
 *
 * The core runs as a child process whose stderr the test reads through a
 * pipe: the supervisor logs each provider transition at info level, and
 * the tests wait for those lines. Binaries come from $VKC_BIN_DIR
 * (default build/bin). Every child gets PR_SET_PDEATHSIG, so a test killed
 * on its timeout leaves nothing running.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../core/command.h"
#include "../../core/flags.h"
#include "../../core/metrics.h"
#include "../../core/provider_client.h"
#include "../../core/refs.h"
#include "../log_capture.h"
#include "buf.h"
#include "provider.pb-c.h"
#include "rpc.h"

extern char **environ;

static char tmp[64];
static char sock_dir[128];

/* The path of a binary; a few stay valid at a time (argv holds two). */
static const char *bin(const char *name)
{
    static char paths[4][512];
    static unsigned next;
    char *path = paths[next++ % 4];
    const char *dir = getenv("VKC_BIN_DIR");
    snprintf(path, sizeof paths[0], "%s/%s", dir && *dir ? dir : "build/bin", name);
    return path;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/vkc-core-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
    snprintf(sock_dir, sizeof sock_dir, "%s/s", tmp);
}

static void teardown(void)
{
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- child processes ----------------------------------------------------- */

typedef struct proc {
    pid_t pid;
    int err_fd;        /* the child's stderr, -1 when not captured */
    vk_buf pending;    /* read, not yet split into lines */
    vk_buf seen;       /* everything read, shown when a wait fails */
    int exited;
    int status;
} proc;

/* Start argv with extra environment entries (NULL-terminated, may be
 * NULL); capture stderr when capture is set. Everything is prepared before
 * fork: the test process may run gRPC threads. */
static void proc_start(proc *p, char *const argv[], const char *const *extra, int capture)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    ck_assert_ptr_nonnull(env);
    for (size_t i = 0; i < m; i++)
        env[i] = (char *)extra[i];
    for (size_t i = 0; i < n; i++)
        env[m + i] = environ[i]; /* getenv takes the first match: extras win */

    int fds[2] = {-1, -1};
    if (capture)
        ck_assert_int_eq(pipe2(fds, O_CLOEXEC), 0);
    pid_t parent = getpid();
    memset(p, 0, sizeof *p);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        if (capture)
            dup2(fds[1], STDERR_FILENO);
        execve(argv[0], argv, env);
        _exit(127);
    }
    free(env);
    p->err_fd = fds[0];
    if (capture)
        close(fds[1]);
}

/* Read what the child wrote, waiting up to wait_ms: 1 when something
 * came, 0 when nothing did, -1 at the end (every writer gone). */
static int proc_read(proc *p, int wait_ms)
{
    struct pollfd pfd = {.fd = p->err_fd, .events = POLLIN};
    if (poll(&pfd, 1, wait_ms) <= 0)
        return 0;
    char buf[4096];
    ssize_t n = read(p->err_fd, buf, sizeof buf);
    if (n <= 0)
        return -1;
    vk_buf_append(&p->pending, buf, (size_t)n);
    vk_buf_append(&p->seen, buf, (size_t)n);
    return 1;
}

/* Wait up to timeout_ms for a line holding every one of the needles
 * (NULL-terminated); lines before it are consumed. The line goes to out. */
static int proc_wait_line_all(proc *p, const char *const *needles, int timeout_ms,
                              char *out, size_t cap)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *nl;
        while (p->pending.len && (nl = memchr(p->pending.data, '\n', p->pending.len))) {
            *nl = '\0';
            int match = 1;
            for (const char *const *s = needles; *s && match; s++)
                match = strstr(p->pending.data, *s) != NULL;
            if (match && out)
                snprintf(out, cap, "%s", p->pending.data);
            size_t rest = p->pending.len - (size_t)(nl + 1 - p->pending.data);
            memmove(p->pending.data, nl + 1, rest);
            p->pending.len = rest;
            p->pending.data[rest] = '\0';
            if (match)
                return 1;
        }
        long left = deadline - now_ms();
        if (left <= 0 || proc_read(p, (int)(left < 100 ? left : 100)) < 0) {
            fprintf(stderr, "--- no line with \"%s\" within %d ms; child output:\n%s---\n",
                    needles[0], timeout_ms, p->seen.data ? p->seen.data : "");
            return 0;
        }
    }
}

static int proc_wait_line(proc *p, const char *needle, int timeout_ms, char *out, size_t cap)
{
    const char *needles[] = {needle, NULL};
    return proc_wait_line_all(p, needles, timeout_ms, out, cap);
}

/* Wait up to timeout_ms for the child to exit. 1 when it did. */
static int proc_wait_exit(proc *p, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    while (!p->exited) {
        pid_t r = waitpid(p->pid, &p->status, WNOHANG);
        if (r == p->pid) {
            p->exited = 1;
            break;
        }
        if (now_ms() > deadline)
            return 0;
        if (p->err_fd >= 0)
            proc_read(p, 20);
        else
            usleep(20000);
    }
    while (p->err_fd >= 0 && proc_read(p, 0) > 0)
        ; /* collect what it wrote last */
    return 1;
}

static void proc_end(proc *p)
{
    if (!p->exited && p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, &p->status, 0);
        p->exited = 1;
    }
    if (p->err_fd >= 0)
        close(p->err_fd);
    p->err_fd = -1;
    vk_buf_free(&p->pending);
    vk_buf_free(&p->seen);
}

static int proc_exit_code(const proc *p)
{
    return WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
}

/* The integer after key= in a log line, -1 when absent. */
static long field(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, " %s=", key);
    const char *at = strstr(line, k);
    return at ? strtol(at + strlen(k), NULL, 10) : -1;
}

static int alive(pid_t pid)
{
    return kill(pid, 0) == 0;
}

/* ---- the core ------------------------------------------------------------- */

/* Start vkc-core spawning the mock in the temporary socket dir, with more
 * flags (NULL-terminated, may be NULL) and environment. */
static void core_start(proc *core, const char *const *more, const char *const *env)
{
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)bin("vkc-core");
    argv[n++] = "--nodename";
    argv[n++] = "test-node";
    argv[n++] = "--socket-dir";
    argv[n++] = sock_dir;
    argv[n++] = "--provider-cmd";
    argv[n++] = (char *)bin("vkc-provider-mock");
    for (int i = 0; more && more[i] && n < 31; i++)
        argv[n++] = (char *)more[i];
    argv[n] = NULL;
    proc_start(core, argv, env, 1);
}

/* Wait for "provider ready" and return the provider's pid. */
static pid_t wait_ready(proc *core, int timeout_ms)
{
    char line[2048];
    ck_assert_msg(proc_wait_line(core, "msg=\"provider ready\"", timeout_ms, line, sizeof line),
                  "no provider ready line");
    long pid = field(line, "pid");
    ck_assert_int_gt(pid, 1);
    return (pid_t)pid;
}

static void core_stop(proc *core)
{
    kill(core->pid, SIGTERM);
    ck_assert_msg(proc_wait_exit(core, 15000), "core did not exit on SIGTERM");
}

/* ---- 1. start-up ------------------------------------------------------------- */

START_TEST(test_provider_ready)
{
    proc core;
    core_start(&core, NULL, NULL);
    char line[2048];
    ck_assert(proc_wait_line(&core, "msg=\"provider ready\"", 15000, line, sizeof line));
    ck_assert_ptr_nonnull(strstr(line, " name=mock "));
    ck_assert_ptr_nonnull(strstr(line, " version="));
    ck_assert_ptr_nonnull(strstr(line, "capabilities="));
    ck_assert_ptr_nonnull(strstr(line, "WatchPodStatus"));
    pid_t pid = (pid_t)field(line, "pid");
    ck_assert_int_gt(pid, 1);
    ck_assert(alive(pid));
    core_stop(&core);
    ck_assert_int_eq(proc_exit_code(&core), 0);
    proc_end(&core);
}
END_TEST

/* ---- 2. every RPC through provider_client ------------------------------------ */

static const char pod_json[] =
    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\","
    "\"metadata\":{\"namespace\":\"default\",\"name\":\"p1\",\"uid\":\"uid-1\"},"
    "\"spec\":{\"containers\":[{\"name\":\"c1\",\"image\":\"busybox\"}]}}";

/* Start the mock serving on tmp/p.sock and wait until it accepts. */
static void mock_start(proc *mock, char *target, size_t cap)
{
    char path[80], listen_env[192];
    snprintf(path, sizeof path, "%s/p.sock", tmp);
    snprintf(target, cap, "unix:%s", path);
    snprintf(listen_env, sizeof listen_env, "VKC_PROVIDER_LISTEN=%s", target);
    const char *env[] = {listen_env, NULL};
    char *argv[] = {(char *)bin("vkc-provider-mock"), NULL};
    proc_start(mock, argv, env, 0);

    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    long deadline = now_ms() + 10000;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        close(fd);
        if (ok)
            break;
        ck_assert_msg(now_ms() < deadline, "mock did not listen");
        usleep(20000);
    }
}

/* Read stream messages until one makes pred true; frees the others. */
static ProtobufCMessage *next_until(pc_stream *s, int (*pred)(const ProtobufCMessage *, const void *),
                                    const void *arg)
{
    ProtobufCMessage *m;
    while (pc_stream_next(s, &m) == 1) {
        if (pred(m, arg))
            return m;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return NULL;
}

static int is_pod_event(const ProtobufCMessage *m, const void *name)
{
    const Vkc__Provider__V1__PodStatusEvent *ev = (const Vkc__Provider__V1__PodStatusEvent *)m;
    return ev->pod && strcmp(ev->pod->name, name) == 0;
}

/* Collect exec output until the exit message; returns the exit code. */
static int exec_output(pc_stream *s, vk_buf *out)
{
    ProtobufCMessage *m;
    int code = -1;
    while (code < 0 && pc_stream_next(s, &m) == 1) {
        Vkc__Provider__V1__ExecOutput *o = (Vkc__Provider__V1__ExecOutput *)m;
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT)
            vk_buf_append(out, o->stdout.data, o->stdout.len);
        else if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_EXIT)
            code = o->exit->exit_code;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    return code;
}

static void check_exec(provider_client *pc)
{
    Vkc__Provider__V1__PodRef pod_ref = VKC__PROVIDER__V1__POD_REF__INIT;
    pod_ref.namespace_ = "default";
    pod_ref.name = "p1";
    pod_ref.uid = "uid-1";
    Vkc__Provider__V1__ExecStart start = VKC__PROVIDER__V1__EXEC_START__INIT;
    start.pod = &pod_ref;
    start.container = "c1";
    start.stdout = 1;

    /* A command with output and an exit code. */
    char *echo[] = {"echo", "hello"};
    start.command = echo;
    start.n_command = 2;
    pc_stream *s;
    vk_status st = {0, NULL};
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(pc_exec(pc, &start, &s, &st), VK_OK);
    ck_assert_int_eq(exec_output(s, &out), 0);
    ck_assert_str_eq(out.data, "hello\n");
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_OK);
    pc_stream_free(s);

    /* Input: stdin, a resize, then EOF. */
    char *cat[] = {"cat"};
    start.command = cat;
    start.n_command = 1;
    start.stdin = 1;
    vk_buf_reset(&out);
    ck_assert_int_eq(pc_exec(pc, &start, &s, &st), VK_OK);
    ck_assert_int_eq(pc_stream_stdin(s, "abc", 3), 0);
    ck_assert_int_eq(pc_stream_resize(s, 80, 24), 0);
    ck_assert_int_eq(pc_stream_close_stdin(s), 0);
    ck_assert_int_eq(exec_output(s, &out), 0);
    ck_assert_str_eq(out.data, "abc");
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_OK);
    pc_stream_free(s);

    /* Attach: the main process echoes stdin; the user goes away. */
    start.command = NULL;
    start.n_command = 0;
    vk_buf_reset(&out);
    ck_assert_int_eq(pc_attach(pc, &start, &s, &st), VK_OK);
    ck_assert_int_eq(pc_stream_stdin(s, "xyz", 3), 0);
    ProtobufCMessage *m;
    while (out.len < 3 && pc_stream_next(s, &m) == 1) {
        Vkc__Provider__V1__ExecOutput *o = (Vkc__Provider__V1__ExecOutput *)m;
        if (o->output_case == VKC__PROVIDER__V1__EXEC_OUTPUT__OUTPUT_STDOUT)
            vk_buf_append(&out, o->stdout.data, o->stdout.len);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    ck_assert_str_eq(out.data, "xyz");
    pc_stream_cancel(s);
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_CANCELLED);
    pc_stream_free(s);

    vk_buf_free(&out);
    vk_status_clear(&st);
}

static void check_port_forward(provider_client *pc)
{
    Vkc__Provider__V1__PodRef pod_ref = VKC__PROVIDER__V1__POD_REF__INIT;
    pod_ref.namespace_ = "default";
    pod_ref.name = "p1";
    Vkc__Provider__V1__PortForwardStart start = VKC__PROVIDER__V1__PORT_FORWARD_START__INIT;
    start.pod = &pod_ref;
    start.port = 8080;
    pc_stream *s;
    vk_status st = {0, NULL};
    ck_assert_int_eq(pc_port_forward(pc, &start, &s, &st), VK_OK);
    ck_assert_int_eq(pc_stream_data(s, "ping", 4), 0);
    vk_buf got = VK_BUF_INIT;
    ProtobufCMessage *m;
    while (got.len < 4 && pc_stream_next(s, &m) == 1) {
        Vkc__Provider__V1__PortForwardOutput *o = (Vkc__Provider__V1__PortForwardOutput *)m;
        vk_buf_append(&got, o->data.data, o->data.len);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    ck_assert_str_eq(got.data, "ping");
    ck_assert_int_eq(pc_stream_close_write(s), 0);
    while (pc_stream_next(s, &m) == 1)
        protobuf_c_message_free_unpacked(m, NULL);
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_OK);
    pc_stream_free(s);
    vk_buf_free(&got);
    vk_status_clear(&st);
}

static void check_logs(provider_client *pc)
{
    Vkc__Provider__V1__PodRef pod_ref = VKC__PROVIDER__V1__POD_REF__INIT;
    pod_ref.namespace_ = "default";
    pod_ref.name = "p1";
    Vkc__Provider__V1__GetContainerLogsRequest req = VKC__PROVIDER__V1__GET_CONTAINER_LOGS_REQUEST__INIT;
    req.pod = &pod_ref;
    req.container = "c1";
    pc_stream *s;
    vk_status st = {0, NULL};
    ck_assert_int_eq(pc_get_container_logs(pc, &req, &s, &st), VK_OK);
    vk_buf got = VK_BUF_INIT;
    ProtobufCMessage *m;
    while (pc_stream_next(s, &m) == 1) {
        Vkc__Provider__V1__LogChunk *c = (Vkc__Provider__V1__LogChunk *)m;
        vk_buf_append(&got, c->data.data, c->data.len);
        protobuf_c_message_free_unpacked(m, NULL);
    }
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_OK);
    pc_stream_free(s);
    ck_assert_ptr_nonnull(got.data);
    ck_assert_ptr_nonnull(strstr(got.data, "line 1"));
    vk_buf_free(&got);

    /* An unknown container ends the stream with NOT_FOUND. */
    req.container = "nope";
    ck_assert_int_eq(pc_get_container_logs(pc, &req, &s, &st), VK_OK);
    while (pc_stream_next(s, &m) == 1)
        protobuf_c_message_free_unpacked(m, NULL);
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_NOT_FOUND);
    pc_stream_free(s);
    vk_status_clear(&st);
}

START_TEST(test_client_rpcs)
{
    proc mock;
    char target[160];
    mock_start(&mock, target, sizeof target);
    vk_rpc_init();
    metrics *reg = metrics_new();
    metric *errors = metrics_counter(reg, "provider_rpc_errors_total", "x", "method");
    vk_status st = {0, NULL};

    /* Before the handshake no optional RPC is declared: answered locally. */
    provider_client *fresh = pc_new(target, 5000, errors);
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(pc_get_stats_summary(fresh, &b, &st), VK_UNIMPLEMENTED);
    ck_assert_ptr_nonnull(strstr(st.message, "GetStatsSummary"));
    pc_unref(fresh);

    provider_client *pc = pc_new(target, 5000, errors);
    ck_assert(pc_wait_ready(pc, 5000));
    pc_info info;
    ck_assert_int_eq(pc_handshake(pc, "test-node", "unix:/nonexistent/core.sock", 5000, &info, &st),
                     VK_OK);
    ck_assert_uint_eq(info.protocol_version, 1);
    ck_assert_str_eq(info.name, "mock");
    ck_assert_uint_eq(info.caps, 0xff); /* the mock implements everything */
    pc_info_clear(&info);
    ck_assert_int_eq(pc_ping(pc, 5000, &st), VK_OK);

    /* Pods. */
    ck_assert_int_eq(pc_create_pod(pc, pod_json, strlen(pod_json), &st), VK_OK);
    ck_assert_int_eq(pc_update_pod(pc, pod_json, strlen(pod_json), &st), VK_OK);
    vk_buf_reset(&b);
    ck_assert_int_eq(pc_get_pod(pc, "default", "p1", "uid-1", &b, &st), VK_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "\"p1\""));
    vk_buf_reset(&b);
    ck_assert_int_eq(pc_get_pod_status(pc, "default", "p1", NULL, &b, &st), VK_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "\"phase\""));
    Vkc__Provider__V1__GetPodsResponse *pods;
    ck_assert_int_eq(pc_get_pods(pc, &pods, &st), VK_OK);
    ck_assert_uint_eq(pods->n_pods_json, 1);
    protobuf_c_message_free_unpacked(&pods->base, NULL);

    pc_stream *s;
    ck_assert_int_eq(pc_watch_pod_status(pc, &s, &st), VK_OK);
    ProtobufCMessage *m = next_until(s, is_pod_event, "p1");
    ck_assert_ptr_nonnull(m);
    protobuf_c_message_free_unpacked(m, NULL);
    pc_stream_cancel(s);
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_CANCELLED);
    pc_stream_free(s);

    /* Node. */
    Vkc__Provider__V1__Node *node;
    ck_assert_int_eq(pc_get_node(pc, &node, &st), VK_OK);
    ck_assert_uint_gt(node->n_capacity, 0);
    protobuf_c_message_free_unpacked(&node->base, NULL);
    ck_assert_int_eq(pc_watch_node(pc, &s, &st), VK_OK);
    ck_assert_int_eq(pc_stream_next(s, &m), 1);
    ck_assert_uint_gt(((Vkc__Provider__V1__Node *)m)->n_capacity, 0);
    protobuf_c_message_free_unpacked(m, NULL);
    pc_stream_cancel(s);
    pc_stream_finish(s, &st);
    pc_stream_free(s);

    /* Streams into the pod, and stats. */
    check_logs(pc);
    check_exec(pc);
    check_port_forward(pc);
    vk_buf_reset(&b);
    ck_assert_int_eq(pc_get_stats_summary(pc, &b, &st), VK_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "\"pods\""));
    vk_buf_reset(&b);
    ck_assert_int_eq(pc_get_metrics_resource(pc, &b, &st), VK_OK);
    ck_assert_ptr_nonnull(strstr(b.data, "pod_cpu_usage_seconds_total"));

    /* Delete; then the pod is unknown, and the error is counted. */
    ck_assert_int_eq(pc_delete_pod(pc, pod_json, strlen(pod_json), &st), VK_OK);
    vk_buf_reset(&b);
    ck_assert_int_eq(pc_get_pod(pc, "default", "p1", NULL, &b, &st), VK_NOT_FOUND);
    ck_assert_ptr_nonnull(st.message);
    ck_assert(metric_get(errors, (const char *[]){"GetPod"}) >= 1);

    pc_unref(pc);
    vk_buf_free(&b);
    vk_status_clear(&st);
    metrics_free(reg);
    vk_rpc_shutdown();
    kill(mock.pid, SIGTERM);
    ck_assert(proc_wait_exit(&mock, 10000));
    proc_end(&mock);
}
END_TEST

/* Bad input through the core's provider client: each failure comes back
 * with a status that says what was wrong, promptly, and the client itself
 * logs nothing at the default level, since its callers log the status
 * (a second line would say it twice). */
START_TEST(test_client_bad_input)
{
    proc mock;
    char target[160];
    mock_start(&mock, target, sizeof target);
    vk_rpc_init();
    metrics *reg = metrics_new();
    metric *errors = metrics_counter(reg, "provider_rpc_errors_total", "x", "method");
    vk_status st = {0, NULL};
    provider_client *pc = pc_new(target, 5000, errors);
    ck_assert(pc_wait_ready(pc, 5000));
    pc_info info;
    ck_assert_int_eq(pc_handshake(pc, "test-node", "", 5000, &info, &st), VK_OK);
    pc_info_clear(&info);

    log_capture cap;
    log_capture_start(&cap);

    size_t big = VK_RPC_MAX_MESSAGE + 1;
    char *json = malloc(big);
    ck_assert_ptr_nonnull(json);
    memset(json, ' ', big);
    ck_assert_int_eq(pc_create_pod(pc, json, big, &st), VK_RESOURCE_EXHAUSTED);
    ck_assert_ptr_nonnull(strstr(st.message, "exceeds the 16777216 byte limit"));
    free(json);

    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(pc_get_pod_status(pc, "default", "ghost", "", &b, &st), VK_NOT_FOUND);
    ck_assert_str_eq(st.message, "pod default/ghost not found");
    vk_buf_free(&b);

    /* A watch whose provider dies ends UNAVAILABLE as soon as the
     * connection drops, not when some keepalive gives up: the bound is
     * wide for a loaded machine and still far below any such timer. */
    pc_stream *s = NULL;
    ck_assert_int_eq(pc_watch_pod_status(pc, &s, &st), VK_OK);
    ck_assert_int_eq(kill(mock.pid, SIGKILL), 0);
    long t0 = now_ms();
    ProtobufCMessage *m;
    while (pc_stream_next(s, &m) == 1)
        protobuf_c_message_free_unpacked(m, NULL);
    ck_assert_int_eq(pc_stream_finish(s, &st), VK_UNAVAILABLE);
    ck_assert_int_lt(now_ms() - t0, 10000);
    pc_stream_free(s);

    char *log = log_capture_end(&cap);
    ck_assert_int_eq(lines_with(log, "CreatePod", ""), 0);
    ck_assert_int_eq(lines_with(log, "GetPodStatus", ""), 0);
    ck_assert_int_eq(lines_with(log, "WatchPodStatus", ""), 0);
    free(log);
    pc_unref(pc);
    vk_status_clear(&st);
    metrics_free(reg);
    vk_rpc_shutdown();
    ck_assert(proc_wait_exit(&mock, 10000));
    proc_end(&mock);
}
END_TEST

/* ---- 3. a killed provider is restarted ----------------------------------------- */

START_TEST(test_restart_after_kill)
{
    proc core;
    core_start(&core, NULL, NULL);
    pid_t first = wait_ready(&core, 15000);
    ck_assert_int_eq(kill(first, SIGKILL), 0);
    /* The first restart waits only the initial back-off (about 100 ms),
     * then the mock starts and handshakes. That can take a few seconds on
     * a loaded machine; 10 s still tells it from the back-off cap (30 s). */
    long t0 = now_ms();
    pid_t second = wait_ready(&core, 10000);
    ck_assert_int_lt(now_ms() - t0, 10000);
    ck_assert_int_ne(first, second);
    ck_assert(alive(second));
    core_stop(&core);
    ck_assert_int_eq(proc_exit_code(&core), 0);
    proc_end(&core);
}
END_TEST

/* ---- 4. a hung provider is killed and restarted --------------------------------- */

START_TEST(test_hung_provider)
{
    char faults[128], faults_env[160];
    snprintf(faults, sizeof faults, "%s/faults", tmp);
    FILE *f = fopen(faults, "w");
    ck_assert_ptr_nonnull(f);
    fputs("hang Ping\n", f);
    fclose(f);
    snprintf(faults_env, sizeof faults_env, "VKC_MOCK_FAULTS=%s", faults);
    const char *env[] = {faults_env, NULL};
    const char *more[] = {"--provider-ping-interval", "200ms", "--provider-ping-timeout", "200ms",
                          NULL};

    proc core;
    core_start(&core, more, env);
    pid_t first = wait_ready(&core, 15000);
    char line[2048], pid_kv[32];
    ck_assert(proc_wait_line(&core, "msg=\"provider hung\"", 10000, line, sizeof line));
    ck_assert_int_eq(field(line, "pid"), first);
    snprintf(pid_kv, sizeof pid_kv, "pid=%d ", (int)first);
    const char *exited[] = {"msg=\"provider exited\"", pid_kv, "signal=KILL", NULL};
    ck_assert(proc_wait_line_all(&core, exited, 10000, line, sizeof line));
    ck_assert(!alive(first));
    pid_t second = wait_ready(&core, 15000); /* a new mock starting, as at first */
    ck_assert_int_ne(first, second);
    core_stop(&core);
    ck_assert_int_eq(proc_exit_code(&core), 0);
    proc_end(&core);
}
END_TEST

/* ---- 5. a provider of another protocol version ----------------------------------- */

static void fake_handshake(vk_scall *call, void *ud)
{
    (void)ud;
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__handshake_request__descriptor, &m) == 1)
        protobuf_c_message_free_unpacked(m, NULL);
    Vkc__Provider__V1__HandshakeResponse r = VKC__PROVIDER__V1__HANDSHAKE_RESPONSE__INIT;
    r.protocol_version = 2;
    r.provider_name = "future";
    r.provider_version = "9.0";
    vk_scall_reply(call, &r.base);
}

START_TEST(test_protocol_mismatch)
{
    char path[128], addr[160];
    snprintf(path, sizeof path, "%s/fake.sock", tmp);
    snprintf(addr, sizeof addr, "unix:%s", path);
    vk_rpc_init();
    vk_server *srv = vk_server_new(addr, 0, 4);
    vk_server_handle(srv, "/vkc.provider.v1.Provider/Handshake", fake_handshake, NULL);
    ck_assert_int_eq(vk_server_start(srv), 0);

    char *argv[] = {(char *)bin("vkc-core"), "--nodename", "test-node", "--socket-dir", sock_dir,
                    "--provider-socket", path, NULL};
    proc core;
    proc_start(&core, argv, NULL, 1);
    ck_assert_msg(proc_wait_exit(&core, 15000), "core did not exit");
    ck_assert_int_eq(proc_exit_code(&core), 1);
    ck_assert_ptr_nonnull(core.seen.data);
    ck_assert_ptr_nonnull(strstr(core.seen.data,
                                 "provider speaks protocol version 2, this core speaks 1"));
    proc_end(&core);
    vk_server_stop(srv, 0);
    vk_server_free(srv);
    vk_rpc_shutdown();
}
END_TEST

/* ---- 6. bad flags ---------------------------------------------------------------- */

static void expect_bad_flags(const char *const *args, const char *says)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)bin("vkc-core");
    for (int i = 0; args[i]; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    proc core;
    proc_start(&core, argv, NULL, 1);
    ck_assert(proc_wait_exit(&core, 15000));
    ck_assert_int_eq(proc_exit_code(&core), 2);
    const char *out = core.seen.data ? core.seen.data : "";
    ck_assert_msg(strncmp(out, "vkc-core: ", 10) == 0, "got: %s", out);
    ck_assert_msg(strchr(out, '\n') == out + strlen(out) - 1, "not one line: %s", out);
    ck_assert_msg(strstr(out, says) != NULL, "\"%s\" not in: %s", says, out);
    proc_end(&core);
}

START_TEST(test_bad_flags)
{
    char mock_copy[512];
    snprintf(mock_copy, sizeof mock_copy, "%s", bin("vkc-provider-mock"));
    expect_bad_flags((const char *[]){"--bogus", NULL}, "--bogus");
    expect_bad_flags((const char *[]){NULL}, "exactly one of");
    expect_bad_flags((const char *[]){"--provider-cmd", mock_copy, "--provider-socket", "/x.sock",
                                      NULL}, "exactly one of");
    expect_bad_flags((const char *[]){"--provider-cmd", mock_copy, "--provider-ping-interval",
                                      "soon", NULL}, "--provider-ping-interval");
    expect_bad_flags((const char *[]){"--provider-cmd", mock_copy, "--listen-port", "0", NULL},
                     "--listen-port");
    expect_bad_flags((const char *[]){"--provider-cmd", mock_copy, "--nodename", "Bad_Name", NULL},
                     "--nodename");
    expect_bad_flags((const char *[]){"--provider-cmd", mock_copy, "--log-level", "loud", NULL},
                     "--log-level");
    expect_bad_flags((const char *[]){"--provider-cmd", "/nonexistent/provider", NULL},
                     "not found");
    expect_bad_flags((const char *[]){"--provider-cmd", "prov 'unclosed", NULL}, "quote");
    expect_bad_flags((const char *[]){"--provider-socket", "/x.sock", "--nodename", NULL},
                     "needs a value");
    expect_bad_flags((const char *[]){"--provider-socket", "/x.sock", "extra", NULL},
                     "unexpected argument");
    expect_bad_flags((const char *[]){"--provider-socket", "/x.sock", "--metrics-addr", "10255",
                                      NULL}, "--metrics-addr");
}
END_TEST

/* ---- 6b. --metrics-addr: /metrics over plain HTTP ------------------------------------- */

/* One HTTP/1.1 request to 127.0.0.1:port; the whole answer, or "" when the
 * connection failed. */
static void http_get(int port, const char *method, const char *path, vk_buf *out)
{
    vk_buf_reset(out);
    vk_buf_append(out, "", 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    char req[256], buf[4096];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     method, path);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t got;
    while ((got = read(fd, buf, sizeof buf)) > 0)
        vk_buf_append(out, buf, (size_t)got);
    close(fd);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* The value of the unlabelled series name in a /metrics answer; -1 when
 * it is missing. */
static double metric_value(const char *text, const char *name)
{
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(text, key);
    return at ? strtod(at + strlen(key), NULL) : -1;
}

/* Field (kB) of /proc/PID/status in bytes, -1 when missing. */
static double proc_status_bytes(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *fp = fopen(path, "r");
    double v = -1;
    size_t n = strlen(field);
    while (fp && fgets(line, sizeof line, fp))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = strtod(line + n + 1, NULL) * 1024;
    if (fp)
        fclose(fp);
    return v;
}

START_TEST(test_metrics_addr)
{
    int port = free_port();
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    const char *more[] = {"--metrics-addr", addr, NULL};
    proc core;
    core_start(&core, more, NULL);
    wait_ready(&core, 15000);
    vk_buf b = VK_BUF_INIT;
    http_get(port, "GET", "/metrics", &b);
    ck_assert_msg(strncmp(b.data, "HTTP/1.1 200", 12) == 0, "got: %s", b.data);
    ck_assert_msg(strstr(b.data, "text/plain; version=0.0.4"), "got: %s", b.data);
    ck_assert_msg(strstr(b.data, "\nprovider_up 1"), "got: %s", b.data);
    /* The process' own figures agree with what the kernel says of it. */
    double rss = metric_value(b.data, "process_resident_memory_bytes");
    double kernel_rss = proc_status_bytes(core.pid, "VmRSS");
    ck_assert_msg(rss > 1e6 && kernel_rss > 0 && rss > kernel_rss * 0.8 && rss < kernel_rss * 1.25,
                  "process_resident_memory_bytes %.0f, VmRSS %.0f", rss, kernel_rss);
    double file = metric_value(b.data, "process_resident_memory_file_bytes");
    ck_assert_msg(file > 0 && file < rss, "file pages %.0f of %.0f", file, rss);
    ck_assert_msg(metric_value(b.data, "process_virtual_memory_bytes") > rss, "got: %s", b.data);
    double fds = metric_value(b.data, "process_open_fds");
    ck_assert_msg(fds >= 4 && fds < 200, "open fds %.0f", fds);
    ck_assert_msg(metric_value(b.data, "process_max_fds") >= fds, "got: %s", b.data);
    double started = metric_value(b.data, "process_start_time_seconds");
    ck_assert_msg(started > (double)time(NULL) - 120 && started <= (double)time(NULL) + 1,
                  "start time %.3f, now %lld", started, (long long)time(NULL));
    double cpu = metric_value(b.data, "process_cpu_seconds_total");
    ck_assert_msg(cpu > 0 && cpu < 120, "cpu %.3f", cpu);
    const char *heap = strstr(b.data, "\nprocess_heap_bytes{state=\"in_use\"} ");
#if defined(__SANITIZE_ADDRESS__)
    /* Built like this test: ASan's allocator has no mallinfo2 figures. */
    ck_assert_msg(!heap, "got: %s", b.data);
#else
    ck_assert_msg(heap && strtod(heap + strlen("\nprocess_heap_bytes{state=\"in_use\"} "), NULL) > 1e5,
                  "got: %s", b.data);
    ck_assert_msg(strstr(b.data, "\nprocess_heap_bytes{state=\"free\"} "), "got: %s", b.data);
#endif
    http_get(port, "GET", "/healthz", &b);
    ck_assert_msg(strncmp(b.data, "HTTP/1.1 200", 12) == 0 && strstr(b.data, "\r\n\r\nok"),
                  "got: %s", b.data);
    http_get(port, "GET", "/pods", &b);
    ck_assert_msg(strncmp(b.data, "HTTP/1.1 404", 12) == 0, "got: %s", b.data);
    http_get(port, "POST", "/metrics", &b);
    ck_assert_msg(strncmp(b.data, "HTTP/1.1 405", 12) == 0, "got: %s", b.data);
    /* A second core cannot take the port: a clear error, exit 1. */
    char other_dir[160];
    snprintf(other_dir, sizeof other_dir, "%s/other", tmp);
    char *argv[] = {(char *)bin("vkc-core"), "--nodename", "other-node", "--socket-dir",
                    other_dir, "--provider-socket", "/nonexistent.sock",
                    "--metrics-addr", addr, NULL};
    proc second;
    proc_start(&second, argv, NULL, 1);
    char line[2048];
    ck_assert(proc_wait_line(&second, "msg=\"cannot serve metrics\"", 10000, line, sizeof line));
    ck_assert(proc_wait_exit(&second, 10000));
    ck_assert_int_eq(proc_exit_code(&second), 1);
    proc_end(&second);
    core_stop(&core);
    ck_assert_int_eq(proc_exit_code(&core), 0);
    proc_end(&core);
    /* Gone with the core. */
    http_get(port, "GET", "/metrics", &b);
    ck_assert_str_eq(b.data, "");
    vk_buf_free(&b);
}
END_TEST

/* ---- 7. SIGTERM stops the provider ------------------------------------------------- */

START_TEST(test_sigterm)
{
    proc core;
    core_start(&core, NULL, NULL);
    pid_t provider = wait_ready(&core, 15000);
    kill(core.pid, SIGTERM);
    ck_assert(proc_wait_exit(&core, 15000));
    ck_assert_int_eq(proc_exit_code(&core), 0);
    ck_assert(!alive(provider));
    ck_assert_int_eq(errno, ESRCH);
    ck_assert_ptr_nonnull(strstr(core.seen.data, "msg=\"provider stopped\""));
    ck_assert_ptr_nonnull(strstr(core.seen.data, "msg=\"core stopped\""));
    proc_end(&core);
}
END_TEST

/* A provider that ignores SIGTERM is killed after --provider-stop-timeout,
 * and the core still exits promptly. The provider is a shell that ignores
 * TERM and runs the mock (which stops on it, having its own handler) and a
 * loop of sleeps (which inherit the ignore): the shell, the process the
 * core waits for, outlives the SIGTERM. */
START_TEST(test_stop_timeout_kills)
{
    char script[128], mock[PATH_MAX];
    snprintf(script, sizeof script, "%s/stubborn.sh", tmp);
    ck_assert_ptr_nonnull(realpath(bin("vkc-provider-mock"), mock));
    FILE *f = fopen(script, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "#!/bin/sh\ntrap '' TERM\n'%s' &\nwhile :; do sleep 1; done\n", mock);
    fclose(f);
    ck_assert_int_eq(chmod(script, 0700), 0);
    const char *more[] = {"--provider-cmd", script, "--provider-stop-timeout", "1s", NULL};

    proc core;
    core_start(&core, more, NULL);
    pid_t provider = wait_ready(&core, 15000);
    long t0 = now_ms();
    kill(core.pid, SIGTERM);
    char line[2048];
    /* The total is what tells --provider-stop-timeout (1 s) from the
     * default (10 s); each wait alone may take most of it. */
    ck_assert(proc_wait_line(&core, "msg=\"provider did not stop in time, killing it\"", 10000,
                             line, sizeof line));
    ck_assert_int_eq(field(line, "pid"), provider);
    ck_assert(proc_wait_exit(&core, 10000));
    long took = now_ms() - t0;
    ck_assert_int_ge(took, 1000);
    ck_assert_int_lt(took, 1000 + 9000); /* generous: a loaded machine */
    ck_assert_int_eq(proc_exit_code(&core), 0);
    ck_assert(!alive(provider));
    proc_end(&core);
}
END_TEST

/* A second core for the same socket directory would fight over the
 * provider: it refuses to start. */
START_TEST(test_second_core_refused)
{
    proc core, second;
    core_start(&core, NULL, NULL);
    pid_t provider = wait_ready(&core, 15000);
    core_start(&second, NULL, NULL);
    ck_assert(proc_wait_exit(&second, 10000));
    ck_assert_int_eq(proc_exit_code(&second), 1);
    ck_assert_ptr_nonnull(strstr(second.seen.data, "another core serves"));
    proc_end(&second);
    ck_assert(alive(provider));
    core_stop(&core);
    ck_assert_int_eq(proc_exit_code(&core), 0);
    proc_end(&core);
}
END_TEST

/* ---- 8. the Core service refuses what no pod references ----------------------------- */

START_TEST(test_callback_denied)
{
    proc core;
    core_start(&core, NULL, NULL);
    wait_ready(&core, 15000);

    char core_sock[192], target[200], provider_sock[192];
    snprintf(core_sock, sizeof core_sock, "%s/core.sock", sock_dir);
    snprintf(provider_sock, sizeof provider_sock, "%s/provider.sock", sock_dir);
    snprintf(target, sizeof target, "unix:%s", core_sock);
    struct stat st_dir, st_core, st_prov;
    ck_assert_int_eq(stat(sock_dir, &st_dir), 0);
    ck_assert_int_eq(stat(core_sock, &st_core), 0);
    ck_assert_int_eq(stat(provider_sock, &st_prov), 0);
    ck_assert_int_eq(st_dir.st_mode & 07777, 0700);
    ck_assert(S_ISSOCK(st_core.st_mode));
    ck_assert_int_eq(st_core.st_mode & 07777, 0600);
    ck_assert_int_eq(st_prov.st_mode & 07777, 0600);

    vk_rpc_init();
    vk_channel *ch = vk_channel_open(target, 0);
    vk_status st = {0, NULL};
    ProtobufCMessage *resp = NULL;

    Vkc__Provider__V1__GetObjectRequest get = VKC__PROVIDER__V1__GET_OBJECT_REQUEST__INIT;
    get.namespace_ = "default";
    get.name = "x";
    ck_assert_int_eq(vk_unary(ch, "/vkc.provider.v1.Core/GetSecret", &get.base,
                              &vkc__provider__v1__get_object_response__descriptor, 5000, &resp, &st),
                     VK_PERMISSION_DENIED);
    ck_assert_str_eq(st.message, "secret default/x is not referenced by any pod on node test-node");
    ck_assert_int_eq(vk_unary(ch, "/vkc.provider.v1.Core/GetConfigMap", &get.base,
                              &vkc__provider__v1__get_object_response__descriptor, 5000, &resp, &st),
                     VK_PERMISSION_DENIED);
    ck_assert_ptr_nonnull(strstr(st.message, "configmap default/x"));

    Vkc__Provider__V1__PodRef pod_ref = VKC__PROVIDER__V1__POD_REF__INIT;
    pod_ref.namespace_ = "default";
    pod_ref.name = "p";
    pod_ref.uid = "u";
    Vkc__Provider__V1__ServiceAccountTokenRequest tok =
        VKC__PROVIDER__V1__SERVICE_ACCOUNT_TOKEN_REQUEST__INIT;
    tok.pod = &pod_ref;
    tok.service_account_name = "default";
    ck_assert_int_eq(vk_unary(ch, "/vkc.provider.v1.Core/RequestServiceAccountToken", &tok.base,
                              &vkc__provider__v1__service_account_token_response__descriptor, 5000,
                              &resp, &st),
                     VK_PERMISSION_DENIED);

    Vkc__Provider__V1__EmitEventRequest ev = VKC__PROVIDER__V1__EMIT_EVENT_REQUEST__INIT;
    ev.pod = &pod_ref;
    ev.type = "Normal";
    ev.reason = "Tested";
    ev.message = "hello";
    ck_assert_int_eq(vk_unary(ch, "/vkc.provider.v1.Core/EmitEvent", &ev.base,
                              &vkc__provider__v1__emit_event_response__descriptor, 5000, &resp, &st),
                     VK_PERMISSION_DENIED);
    ck_assert_ptr_nonnull(strstr(st.message, "pod default/p is not on this node"));

    vk_status_clear(&st);
    vk_channel_close(ch);
    vk_rpc_shutdown();
    core_stop(&core);
    ck_assert_int_eq(proc_exit_code(&core), 0);
    proc_end(&core);
}
END_TEST

/* ---- the building blocks, in process ------------------------------------------------ */

START_TEST(test_durations)
{
    int ms;
    ck_assert_int_eq(flags_parse_duration("500ms", &ms), 0);
    ck_assert_int_eq(ms, 500);
    ck_assert_int_eq(flags_parse_duration("2s", &ms), 0);
    ck_assert_int_eq(ms, 2000);
    ck_assert_int_eq(flags_parse_duration("1m30s", &ms), 0);
    ck_assert_int_eq(ms, 90000);
    ck_assert_int_eq(flags_parse_duration("1.5s", &ms), 0);
    ck_assert_int_eq(ms, 1500);
    ck_assert_int_eq(flags_parse_duration("1h", &ms), 0);
    ck_assert_int_eq(ms, 3600000);
    ck_assert_int_eq(flags_parse_duration("0", &ms), 0);
    ck_assert_int_eq(ms, 0);
    /* Go's units below a millisecond; a positive duration is never 0. */
    ck_assert_int_eq(flags_parse_duration("1500us", &ms), 0);
    ck_assert_int_eq(ms, 1);
    ck_assert_int_eq(flags_parse_duration("1us", &ms), 0);
    ck_assert_int_eq(ms, 1);
    ck_assert_int_eq(flags_parse_duration("2000000ns", &ms), 0);
    ck_assert_int_eq(ms, 2);
    ck_assert_int_eq(flags_parse_duration("9999999h", &ms), -2);
    const char *bad[] = {"", "5", "s", "-1s", "+1s", "1x", "1s ", "1y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(flags_parse_duration(bad[i], &ms) == -1, "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(test_command_split)
{
    char **argv;
    const char *err;
    ck_assert_int_eq(command_split(" prov  --a 'b c' \"d \\\"e\\\"\" f\\ g '' ", &argv, &err), 0);
    const char *want[] = {"prov", "--a", "b c", "d \"e\"", "f g", ""};
    for (size_t i = 0; i < 6; i++)
        ck_assert_str_eq(argv[i], want[i]);
    ck_assert_ptr_null(argv[6]);
    command_free(argv);

    ck_assert_int_eq(command_split("sh -c 'a | b; $X'", &argv, &err), 0);
    ck_assert_str_eq(argv[2], "a | b; $X");
    command_free(argv);

    ck_assert_int_lt(command_split("a | b", &argv, &err), 0);
    ck_assert_ptr_nonnull(strstr(err, "sh -c"));
    ck_assert_int_lt(command_split("echo $HOME", &argv, &err), 0);
    ck_assert_int_lt(command_split("'open", &argv, &err), 0);
    ck_assert_int_lt(command_split("   ", &argv, &err), 0);
    ck_assert_str_eq(err, "empty command");

    char *sh = command_resolve("sh");
    ck_assert_ptr_nonnull(sh);
    ck_assert(sh[0] == '/' || sh[0] == '.');
    free(sh);
    ck_assert_ptr_null(command_resolve("/nonexistent/x"));
}
END_TEST

START_TEST(test_flags_defaults)
{
    FILE *devnull = fopen("/dev/null", "w");
    flags f;
    char *argv[] = {"vkc-core", "--provider-cmd", "sh -c 'exec true'", "--nodename", "n1", NULL};
    ck_assert_int_eq(flags_parse(&f, 5, argv, devnull, devnull), FLAGS_RUN);
    ck_assert_str_eq(f.provider_argv[2], "exec true");
    ck_assert_int_eq(f.listen_port, 10250);
    ck_assert_int_eq(f.ping_interval_ms, 2000);
    ck_assert_int_eq(f.ping_timeout_ms, 1000);
    ck_assert_int_eq(f.restart_max_backoff_ms, 30000);
    ck_assert_int_eq(f.stop_timeout_ms, 10000);
    ck_assert_ptr_nonnull(strstr(f.socket_dir, "/n1"));
    flags_free(&f);

    char *argv2[] = {"vkc-core", "--provider-socket=unix:///run/p.sock", "--nodename=n1",
                     "--socket-dir=/tmp/d/", NULL};
    ck_assert_int_eq(flags_parse(&f, 4, argv2, devnull, devnull), FLAGS_RUN);
    ck_assert_str_eq(f.provider_socket, "/run/p.sock");
    ck_assert_str_eq(f.socket_dir, "/tmp/d");
    flags_free(&f);

    char *argv3[] = {"vkc-core", "--help", NULL};
    ck_assert_int_eq(flags_parse(&f, 2, argv3, devnull, devnull), FLAGS_EXIT_OK);
    flags_free(&f);
    fclose(devnull);
}
END_TEST

START_TEST(test_metrics_render)
{
    metrics *m = metrics_new();
    metric *restarts = metrics_counter(m, "provider_restarts_total", "Restarts.", NULL);
    metric *up = metrics_gauge(m, "provider_up", "Up.", NULL);
    metric *calls = metrics_counter(m, "callback_requests_total", "Calls.", "method,code");
    metric_add(restarts, NULL, 2);
    metric_set(up, NULL, 1);
    metric_add(calls, (const char *[]){"GetSecret", "PERMISSION_DENIED"}, 1);
    metric_add(calls, (const char *[]){"GetSecret", "PERMISSION_DENIED"}, 1);
    metric_add(calls, (const char *[]){"Emit\"Event", "OK"}, 1);
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(metrics_render(m, &out), 0);
    ck_assert_str_eq(out.data,
                     "# HELP provider_restarts_total Restarts.\n"
                     "# TYPE provider_restarts_total counter\n"
                     "provider_restarts_total 2\n"
                     "# HELP provider_up Up.\n"
                     "# TYPE provider_up gauge\n"
                     "provider_up 1\n"
                     "# HELP callback_requests_total Calls.\n"
                     "# TYPE callback_requests_total counter\n"
                     "callback_requests_total{method=\"GetSecret\",code=\"PERMISSION_DENIED\"} 2\n"
                     "callback_requests_total{method=\"Emit\\\"Event\",code=\"OK\"} 1\n");
    ck_assert(metric_get(calls, (const char *[]){"GetSecret", "PERMISSION_DENIED"}) == 2);
    vk_buf_free(&out);
    metrics_free(m);
}
END_TEST

START_TEST(test_refs)
{
    refs *r = refs_new();
    ref a[] = {{REF_SECRET, "s1"}, {REF_CONFIGMAP, "c1"}, {REF_SECRET, "s1"},
               {REF_SERVICE_ACCOUNT, "sa"}};
    ref b[] = {{REF_SECRET, "s1"}};
    ck_assert(!refs_allowed(r, REF_SECRET, "ns", "s1"));
    ck_assert_int_eq(refs_set_pod(r, "u1", "ns", "p1", a, 4), 0);
    ck_assert_int_eq(refs_set_pod(r, "u2", "ns", "p2", b, 1), 0);
    ck_assert(refs_allowed(r, REF_SECRET, "ns", "s1"));
    ck_assert(!refs_allowed(r, REF_SECRET, "other", "s1"));
    ck_assert(!refs_allowed(r, REF_CONFIGMAP, "ns", "s1"));
    ck_assert(refs_pod_has(r, "u1", "ns", "p1", REF_SERVICE_ACCOUNT, "sa"));
    ck_assert(!refs_pod_has(r, "u1", "ns", "p2", REF_SERVICE_ACCOUNT, "sa"));
    ck_assert(!refs_pod_has(r, "u2", "ns", "p2", REF_SERVICE_ACCOUNT, "sa"));

    refs_drop_pod(r, "u1"); /* s1 is still held by p2 */
    ck_assert(refs_allowed(r, REF_SECRET, "ns", "s1"));
    ck_assert(!refs_allowed(r, REF_CONFIGMAP, "ns", "c1"));
    ck_assert_int_eq(refs_set_pod(r, "u2", "ns", "p2", NULL, 0), 0);
    ck_assert(!refs_allowed(r, REF_SECRET, "ns", "s1"));
    refs_drop_pod(r, "u2");
    refs_drop_pod(r, "unknown");
    ck_assert_int_eq(refs_set_pod(r, "u3", "ns", "p3", b, 1), 0);
    refs_free(r); /* frees what is still recorded */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("core");

    TCase *units = tcase_create("units");
    tcase_add_test(units, test_durations);
    tcase_add_test(units, test_command_split);
    tcase_add_test(units, test_flags_defaults);
    tcase_add_test(units, test_metrics_render);
    tcase_add_test(units, test_refs);
    suite_add_tcase(s, units);

    TCase *procs = tcase_create("processes");
    tcase_add_checked_fixture(procs, setup, teardown);
    tcase_set_timeout(procs, 60);
    tcase_add_test(procs, test_provider_ready);
    tcase_add_test(procs, test_client_rpcs);
    tcase_add_test(procs, test_client_bad_input);
    tcase_add_test(procs, test_restart_after_kill);
    tcase_add_test(procs, test_hung_provider);
    tcase_add_test(procs, test_protocol_mismatch);
    tcase_add_test(procs, test_bad_flags);
    tcase_add_test(procs, test_metrics_addr);
    tcase_add_test(procs, test_sigterm);
    tcase_add_test(procs, test_stop_timeout_kills);
    tcase_add_test(procs, test_second_core_refused);
    tcase_add_test(procs, test_callback_denied);
    suite_add_tcase(s, procs);

    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
