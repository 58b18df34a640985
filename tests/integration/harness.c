/* harness.c -- what the integration tests share (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- time ------------------------------------------------------------------------ */

long harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void harness_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- JSON ------------------------------------------------------------------------ */

yajl_val harness_json_parse(const void *data, size_t len)
{
    char *copy = strndup(data, len);
    char err[128];
    yajl_val v = yajl_tree_parse(copy, err, sizeof err);
    free(copy);
    ck_assert_msg(v != NULL, "bad JSON: %s", err);
    return v;
}

const char *harness_jstr(yajl_val v, const char **path)
{
    yajl_val s = yajl_tree_get(v, path, yajl_t_string);
    return s ? YAJL_GET_STRING(s) : NULL;
}

yajl_val harness_jarr(yajl_val v, const char *key, size_t i)
{
    const char *path[] = {key, NULL};
    yajl_val a = yajl_tree_get(v, path, yajl_t_array);
    return a && i < a->u.array.len ? a->u.array.values[i] : NULL;
}

Vkc__Provider__V1__PodRef harness_pod_ref(const char *name)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = "default";
    ref.name = (char *)name;
    return ref;
}

/* ---- processes ------------------------------------------------------------------- */

const char *harness_bin_dir(void)
{
    const char *d = getenv("VKC_BIN_DIR");
    return d && *d ? d : "build/bin";
}

pid_t harness_spawn(char *const argv[], const char *out_path, int *fd)
{
    int p[2] = {-1, -1};
    if (fd && pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int out = fd         ? p[1]
                  : out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600)
                             : STDOUT_FILENO;
        if (out < 0)
            _exit(126);
        if (out != STDOUT_FILENO) {
            dup2(out, STDOUT_FILENO);
            dup2(out, STDERR_FILENO);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    if (fd) {
        close(p[1]);
        if (pid < 0)
            close(p[0]);
        else
            *fd = p[0];
    }
    return pid;
}

int harness_run(char *const argv[], vk_buf *out)
{
    int fd;
    pid_t pid = harness_spawn(argv, NULL, &fd);
    if (pid < 0)
        return -1;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        vk_buf_append(out, buf, (size_t)n);
    close(fd);
    int st;
    waitpid(pid, &st, 0);
    if (!out->data)
        vk_buf_puts(out, "");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int harness_run_script(const char *script, const char *arg)
{
    char *argv[] = {(char *)script, (char *)arg, NULL};
    vk_buf out = VK_BUF_INIT;
    int rc = harness_run(argv, &out);
    if (rc != 0)
        fprintf(stderr, "%s %s:\n%s\n", script, arg, out.data);
    vk_buf_free(&out);
    return rc == 0 ? 0 : -1;
}

pid_t harness_provider_spawn(const char *const argv[], const char *const env[],
                             const char *const unset[])
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (size_t i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        for (size_t i = 0; unset && unset[i]; i++)
            unsetenv(unset[i]);
        if (!getenv("VKC_TEST_VERBOSE")) {
            int null = open("/dev/null", O_WRONLY);
            dup2(null, 2);
            close(null);
        }
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

bool harness_wait_socket(pid_t *pid, const char *sock, int ms, int step_ms)
{
    for (long end = harness_now_ms() + ms; access(sock, F_OK) != 0 && harness_now_ms() < end;
         harness_sleep_ms(step_ms)) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = 0;
            return false;
        }
    }
    return true;
}

int harness_reap(pid_t pid, int ms, int step_ms)
{
    int status;
    for (long end = harness_now_ms() + ms; harness_now_ms() < end; harness_sleep_ms(step_ms))
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
    return -1;
}

void harness_assert_stops(pid_t *pid, int ms, int step_ms, const char *what)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    int status = harness_reap(*pid, ms, step_ms);
    if (status == -1) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = 0;
    ck_assert_msg(status != -1, "%s did not stop on SIGTERM", what);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                  "%s ended with status 0x%x on SIGTERM", what, status);
}

/* ---- temporary directories ------------------------------------------------------- */

char *harness_make_tmpdir(char *buf, size_t len, const char *prefix)
{
    if ((size_t)snprintf(buf, len, "/tmp/%s-XXXXXX", prefix) >= len) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    return mkdtemp(buf);
}

int harness_remove_tree(const char *dir)
{
    char *argv[] = {"/bin/rm", "-rf", (char *)dir, NULL};
    vk_buf out = VK_BUF_INIT;
    int rc = harness_run(argv, &out);
    if (rc != 0)
        fprintf(stderr, "cannot remove %s: %s\n", dir, out.data);
    vk_buf_free(&out);
    return rc == 0 ? 0 : -1;
}

/* ---- the test cluster ------------------------------------------------------------ */

int harness_env_value(const char *file, const char *var, char *out, size_t outlen)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return -1;
    char line[4096];
    size_t vlen = strlen(var);
    int rc = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = line;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        if (strncmp(p, var, vlen) != 0 || p[vlen] != '=')
            continue;
        p += vlen + 1;
        size_t n = 0;
        for (; *p && *p != '\n' && n + 1 < outlen; p++) {
            if (*p == '\\' && p[1])
                p++;
            out[n++] = *p;
        }
        out[n] = '\0';
        rc = 0;
    }
    fclose(f);
    return rc;
}

/* The directory with kube-apiserver & co. that up.sh would use. */
static int find_k8s_bin(char *out, size_t outlen)
{
    const char *bin = getenv("VKC_K8S_BIN");
    char probe[PATH_MAX];
    if (bin && *bin) {
        snprintf(probe, sizeof probe, "%s/kube-apiserver", bin);
        if (access(probe, X_OK) != 0)
            return -1;
        snprintf(out, outlen, "%s", bin);
        return 0;
    }
    const char *cache = getenv("VKC_CACHE");
    snprintf(probe, sizeof probe, "%s/k8s-*/bin/kube-apiserver",
             cache && *cache ? cache : "/var/cache/vkc");
    glob_t g;
    if (glob(probe, 0, NULL, &g) != 0)
        return -1;
    int rc = -1;
    for (size_t i = g.gl_pathc; i-- > 0 && rc < 0;) {
        if (access(g.gl_pathv[i], X_OK) == 0) {
            snprintf(out, outlen, "%s", g.gl_pathv[i]);
            *strrchr(out, '/') = '\0';
            rc = 0;
        }
    }
    globfree(&g);
    return rc;
}

int harness_cluster_up(harness_cluster *c, const char *prefix)
{
    memset(c, 0, sizeof *c);
    const char *dir = getenv("VKC_CLUSTER_DIR");
    if (dir && *dir) {
        snprintf(c->dir, sizeof c->dir, "%s", dir);
    } else {
        char bin[PATH_MAX];
        if (find_k8s_bin(bin, sizeof bin) < 0) {
            fprintf(stderr, "FAIL: no Kubernetes binaries (set VKC_CLUSTER_DIR to a running "
                            "cluster, or build them: tests/cluster/build.sh, ~15-30 min)\n");
            return -1;
        }
        if (!harness_make_tmpdir(c->dir, sizeof c->dir, prefix)) {
            perror("mkdtemp");
            return -1;
        }
        setenv("VKC_K8S_BIN", bin, 1);
        c->owned = true;
        fprintf(stderr, "bringing up a cluster in %s\n", c->dir);
        if (harness_run_script("tests/cluster/up.sh", c->dir) != 0) {
            fprintf(stderr, "FAIL: tests/cluster/up.sh %s failed (logs in %s/logs)\n", c->dir,
                    c->dir);
            harness_run_script("tests/cluster/down.sh", c->dir);
            return -1;
        }
    }
    snprintf(c->env, sizeof c->env, "%s/env", c->dir);
    snprintf(c->admin_kubeconfig, sizeof c->admin_kubeconfig, "%s/admin.kubeconfig", c->dir);
    return 0;
}

int harness_cluster_env(const harness_cluster *c, const char *var, char *out, size_t outlen)
{
    return harness_env_value(c->env, var, out, outlen);
}

void harness_cluster_down(harness_cluster *c)
{
    if (c->owned && harness_run_script("tests/cluster/down.sh", c->dir) == 0)
        harness_remove_tree(c->dir);
    c->owned = false;
}
