/* privdrop.c -- --user: resolve the user, hand it the socket directory,
 * switch to it for good. */
#include "privdrop.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "logval.h"
#include "socket_dir.h"

/* getpw*_r and getgr*_r take a caller's buffer of no known size: it grows
 * while they answer ERANGE, up to this (a group with thousands of members
 * needs a lot; beyond this the database is broken). */
#define NSS_BUF_MAX (1 << 22)

static int failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A decimal id. uid_t and gid_t are 32 bits on Linux, and (uid_t)-1 means
 * "unchanged" to the set*id calls, so it is no id. */
static bool parse_id(const char *s, unsigned *id)
{
    if (!*s || strlen(s) > 10 || strspn(s, "0123456789") != strlen(s))
        return false;
    unsigned long v = strtoul(s, NULL, 10);
    if (v >= 0xffffffffUL)
        return false;
    *id = (unsigned)v;
    return true;
}

/* 1 found, 0 no such entry, -1 lookup error (errno). By name when name is
 * set, else by uid. *buf holds the entry's strings; the caller frees it. */
static int get_pw(const char *name, uid_t uid, struct passwd *pw, char **buf)
{
    for (size_t len = 1024; len <= NSS_BUF_MAX; len *= 2) {
        char *b = realloc(*buf, len);
        if (!b)
            return -1;
        *buf = b;
        struct passwd *res = NULL;
        int rc = name ? getpwnam_r(name, pw, b, len, &res) : getpwuid_r(uid, pw, b, len, &res);
        if (rc == ERANGE)
            continue;
        if (rc == ENOENT || rc == ESRCH) /* how some NSS modules say "none" */
            return 0;
        errno = rc;
        return rc ? -1 : res != NULL;
    }
    errno = ERANGE;
    return -1;
}

static int get_gr(const char *name, struct group *gr, char **buf)
{
    for (size_t len = 1024; len <= NSS_BUF_MAX; len *= 2) {
        char *b = realloc(*buf, len);
        if (!b)
            return -1;
        *buf = b;
        struct group *res = NULL;
        int rc = getgrnam_r(name, gr, b, len, &res);
        if (rc == ERANGE)
            continue;
        if (rc == ENOENT || rc == ESRCH) /* how some NSS modules say "none" */
            return 0;
        errno = rc;
        return rc ? -1 : res != NULL;
    }
    errno = ERANGE;
    return -1;
}

/* The groups of user name with primary group gid, from the group database. */
static int list_groups(const char *name, gid_t gid, privdrop_user *u)
{
    int n = 16;
    for (;;) {
        gid_t *g = realloc(u->groups, (size_t)n * sizeof *g);
        if (!g)
            return -1;
        u->groups = g;
        int want = n;
        if (getgrouplist(name, gid, g, &want) >= 0) {
            u->n_groups = (size_t)want;
            return 0;
        }
        if (want <= n) /* no growth asked for: a failure, not a short buffer */
            return -1;
        n = want;
    }
}

/* The user part: a passwd name, else a numeric uid, with its passwd
 * entry when it has one (*has_entry). */
static int resolve_user(const char *name, const char *spec, privdrop_user *u,
                        struct passwd *pw, char **buf, bool *has_entry,
                        char *err, size_t errlen)
{
    unsigned id = 0;
    int found = get_pw(name, 0, pw, buf);
    bool numeric = found == 0 && parse_id(name, &id);
    if (numeric)
        found = get_pw(NULL, (uid_t)id, pw, buf);
    if (found < 0)
        return failf(err, errlen, "--user \"%s\": cannot read the user database: %s", spec,
                     strerror(errno));
    if (found == 0 && !numeric)
        return failf(err, errlen, "--user \"%s\": no such user", spec);
    *has_entry = found == 1;
    u->uid = *has_entry ? pw->pw_uid : (uid_t)id;
    return 0;
}

/* The group part: a group name, else a numeric gid. */
static int resolve_group(const char *name, const char *spec, gid_t *gid, char *err,
                         size_t errlen)
{
    struct group gr;
    char *buf = NULL;
    unsigned id;
    int found = get_gr(name, &gr, &buf);
    int saved = errno;
    if (found == 1)
        *gid = gr.gr_gid;
    free(buf);
    if (found < 0)
        return failf(err, errlen, "--user \"%s\": cannot read the group database: %s", spec,
                     strerror(saved));
    if (found == 1)
        return 0;
    if (!parse_id(name, &id))
        return failf(err, errlen, "--user \"%s\": no such group \"%s\"", spec, name);
    *gid = (gid_t)id;
    return 0;
}

static int parse(const char *spec, privdrop_user *u, char *err, size_t errlen)
{
    const char *colon = strchr(spec, ':');
    if (!*spec || colon == spec || (colon && (!colon[1] || strchr(colon + 1, ':'))))
        return failf(err, errlen, "--user \"%s\": want USER or USER:GROUP", spec);
    char *name = colon ? strndup(spec, (size_t)(colon - spec)) : strdup(spec);
    if (!name)
        return failf(err, errlen, "out of memory");

    struct passwd pw;
    char *buf = NULL;
    bool has_entry = false;
    int rc = resolve_user(name, spec, u, &pw, &buf, &has_entry, err, errlen);
    if (rc == 0 && colon) {
        rc = resolve_group(colon + 1, spec, &u->gid, err, errlen);
    } else if (rc == 0 && !has_entry) {
        rc = failf(err, errlen, "--user \"%s\": uid %u has no passwd entry, so no group: "
                   "give --user %s:GROUP", spec, (unsigned)u->uid, spec);
    } else if (rc == 0) {
        u->gid = pw.pw_gid;
        if (list_groups(pw.pw_name, u->gid, u) < 0)
            rc = failf(err, errlen, "--user \"%s\": cannot list the groups of %s", spec,
                       pw.pw_name);
    }
    free(buf);
    free(name);
    if (rc < 0)
        return -1;

    if (u->uid == 0)
        return failf(err, errlen, "--user \"%s\": uid 0 is root: that drops nothing", spec);
    if (u->gid == 0)
        return failf(err, errlen, "--user \"%s\": gid 0 keeps root's group access; "
                     "give another group", spec);
    for (size_t i = 0; i < u->n_groups; i++)
        if (u->groups[i] == 0)
            return failf(err, errlen, "--user \"%s\": the user is in group 0 (root), which "
                         "keeps root's group access; give USER:GROUP", spec);
    if (!(u->spec = strdup(spec)))
        return failf(err, errlen, "out of memory");
    return 0;
}

int privdrop_parse(const char *spec, privdrop_user *u, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    if (parse(spec, u, err, errlen) == 0)
        return 0;
    privdrop_user_free(u);
    return -1;
}

void privdrop_user_free(privdrop_user *u)
{
    free(u->spec);
    free(u->groups);
    memset(u, 0, sizeof *u);
}

/* Groups, then gid, then uid: each later step needs the privilege the
 * previous one keeps. glibc applies each call to every thread of the
 * process, not only the calling one. NULL, or the step that failed (errno
 * set). System calls only: privdrop_socket_dir runs it in a forked child. */
static const char *become(const privdrop_user *u)
{
    if (setgroups(u->n_groups, u->groups) < 0)
        return "setgroups";
    if (setresgid(u->gid, u->gid, u->gid) < 0)
        return "setresgid";
    if (setresuid(u->uid, u->uid, u->uid) < 0)
        return "setresuid";
    return NULL;
}

/* chown dir through a descriptor opened without following a symbolic
 * link: always, or with only_from only when *only_from owns it. */
static int chown_dir(const char *dir, const uid_t *only_from, uid_t uid, gid_t gid)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0 && (!only_from || st.st_uid == *only_from))
        rc = fchown(fd, uid, gid);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Can the user create sockets in dir and reach them? Asked of the kernel
 * by a child that became the user, so every ancestor's mode and ACL
 * counts. Exit status: 0 yes, 1 cannot become the user, 2 no. */
static int user_can_use(const char *dir, const privdrop_user *u)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0)
        _exit(become(u) ? 1 : access(dir, W_OK | X_OK) == 0 ? 0 : 2);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int privdrop_socket_dir(const char *dir, const privdrop_user *u)
{
    char dir_v[LOGVAL_MAX], user_v[LOGVAL_MAX];
    logval(dir_v, sizeof dir_v, dir);
    logval(user_v, sizeof user_v, u->spec);
    if (geteuid() != 0) {
        vk_error("--user needs root", "user=%s euid=%u", user_v, (unsigned)geteuid());
        return -1;
    }
    /* Left to the user by an earlier run: root's again, or
     * socket_dir_prepare refuses it as another user's. A missing dir is
     * socket_dir_prepare's to make and report on. */
    if (chown_dir(dir, &u->uid, 0, 0) < 0 && errno != ENOENT) {
        vk_error("cannot take back the socket directory", "path=%s err=\"%s\"", dir_v,
                 strerror(errno));
        return -1;
    }
    if (socket_dir_prepare(dir) < 0)
        return -1;
    if (chown_dir(dir, NULL, u->uid, u->gid) < 0) {
        vk_error("cannot give the socket directory to --user", "path=%s user=%s err=\"%s\"",
                 dir_v, user_v, strerror(errno));
        return -1;
    }
    int can = user_can_use(dir, u);
    if (can == 0)
        return 0;
    if (can == 2)
        vk_error("--user cannot use the socket directory",
                 "path=%s user=%s hint=\"every parent directory must be searchable by the "
                 "user; choose another --socket-dir\"", dir_v, user_v);
    else
        vk_error("cannot switch to --user", "user=%s step=%s", user_v,
                 can == 1 ? "set-ids" : "fork");
    return -1;
}

int privdrop_drop(const privdrop_user *u, const char *const *must_read)
{
    char user_v[LOGVAL_MAX], path_v[LOGVAL_MAX];
    logval(user_v, sizeof user_v, u->spec);
    const char *step = become(u);
    if (step) {
        vk_error("cannot drop privileges", "user=%s step=%s err=\"%s\"", user_v, step,
                 strerror(errno));
        return -1;
    }
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 ||
        ru != u->uid || eu != u->uid || su != u->uid ||
        rg != u->gid || eg != u->gid || sg != u->gid) {
        vk_error("cannot drop privileges", "user=%s step=verify-ids", user_v);
        return -1;
    }
    /* The proof: with any root id or CAP_SETUID left (a kept capability,
     * say), this would succeed. */
    if (setuid(0) == 0 || seteuid(0) == 0) {
        vk_error("cannot drop privileges", "user=%s step=verify err=\"root regained\"", user_v);
        return -1;
    }
    /* The kernel clears "dumpable" on the id change only when
     * fs.suid_dumpable is 0; set it here whatever the sysctl says, so the
     * provider, the same user now, can neither ptrace the core nor read its
     * /proc/PID/mem and so the node's credentials. no_new_privs: neither
     * the provider nor anything it runs gains root through a setuid file. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        vk_error("cannot drop privileges", "user=%s step=prctl err=\"%s\"", user_v,
                 strerror(errno));
        return -1;
    }
    for (const char *const *p = must_read; p && *p; p++) {
        if (access(*p, R_OK) == 0)
            continue;
        vk_error("--user cannot read a file the core reads again later",
                 "path=%s user=%s err=\"%s\"", logval(path_v, sizeof path_v, *p), user_v,
                 strerror(errno));
        return -1;
    }
    vk_info("dropped root privileges", "user=%s uid=%u gid=%u groups=%zu", user_v,
            (unsigned)u->uid, (unsigned)u->gid, u->n_groups);
    return 0;
}
