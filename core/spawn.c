/* spawn.c -- fork/exec with a process group, a clean signal state and an
 * exec error reported back through a close-on-exec pipe (read returns 0
 * when exec succeeded, errno when it failed). */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"
#include "logval.h"

extern char **environ;

void spawn_env_free(char **env)
{
    if (!env)
        return;
    for (char **e = env; *e; e++)
        free(*e);
    free(env);
}

static int replaced(const char *entry, const char *const *set)
{
    for (const char *const *s = set; *s; s++) {
        size_t key = strcspn(*s, "=") + 1;
        if (strncmp(entry, *s, key) == 0)
            return 1;
    }
    return 0;
}

char **spawn_env(const char *const *set)
{
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    while (set[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    if (!env)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < n + m; i++) {
        const char *e = i < n ? environ[i] : set[i - n];
        if (i < n && replaced(e, set))
            continue;
        if (!(env[at++] = strdup(e))) {
            spawn_env_free(env);
            return NULL;
        }
    }
    return env;
}

/* In the child, between fork and exec: async-signal-safe calls only. */
static void child(const char *path, char *const argv[], char *const env[],
                  pid_t parent, int devnull, int report)
{
    setpgid(0, 0);
    /* Tied to the forking thread, the loop's, which lives as long as the
     * core does. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) /* the core died before prctl took effect */
        _exit(127);
    /* The core's signal state is no business of the provider's: the
     * loop's blocked and ignored signals would be inherited through exec. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    dup2(devnull, STDIN_FILENO);
    /* Descriptors gRPC or libraries opened without O_CLOEXEC. */
    close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
    execve(path, argv, env);
    int err = errno;
    ssize_t w = write(report, &err, sizeof err);
    (void)w;
    _exit(127);
}

pid_t spawn_process(const char *path, char *const argv[], char *const env[])
{
    char path_v[LOGVAL_MAX];
    int report[2];
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || pipe2(report, O_CLOEXEC) < 0) {
        vk_error("cannot start the provider", "err=\"%s\"", strerror(errno));
        if (devnull >= 0)
            close(devnull);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0)
        child(path, argv, env, parent, devnull, report[1]);
    int fork_err = errno;
    close(report[1]);
    close(devnull);
    if (pid < 0) {
        close(report[0]);
        vk_error("cannot start the provider", "step=fork err=\"%s\"", strerror(fork_err));
        return -1;
    }
    /* Also here, so the group exists whichever of the two runs first. */
    setpgid(pid, pid);
    int err;
    ssize_t n;
    do
        n = read(report[0], &err, sizeof err);
    while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof err)
        vk_error("cannot start the provider", "step=exec path=%s err=\"%s\"",
                 logval(path_v, sizeof path_v, path), strerror(err));
    return pid;
}
