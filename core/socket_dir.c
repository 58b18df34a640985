/* socket_dir.c -- mkdir -p with ownership checks, and socket probes. */
#include "socket_dir.h"

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

static int fail(const char *what, const char *path, const char *why)
{
    vk_error("cannot prepare the socket directory", "step=%s path=\"%s\" err=\"%s\"",
             what, path, why);
    return -1;
}

static int mkdirs(char *path)
{
    for (char *s = path + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        int rc = mkdir(path, 0700);
        int err = errno;
        if (rc < 0 && err != EEXIST) {
            fail("mkdir", path, strerror(err));
            *s = saved;
            return -1;
        }
        *s = saved;
        if (!saved)
            return 0;
    }
}

int socket_dir_prepare(const char *dir)
{
    char *copy = strdup(dir);
    if (!copy)
        return fail("mkdir", dir, strerror(ENOMEM));
    int rc = mkdirs(copy);
    free(copy);
    if (rc < 0)
        return -1;

    struct stat st;
    uid_t me = geteuid();
    if (lstat(dir, &st) < 0)
        return fail("lstat", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return fail("check", dir, "not a directory (a symbolic link is not accepted)");
    if (st.st_uid != me)
        return fail("check", dir, "owned by another user");
    if ((st.st_mode & 07777) != 0700 && chmod(dir, 0700) < 0)
        return fail("chmod", dir, strerror(errno));

    char *parent_copy = strdup(dir);
    if (!parent_copy)
        return fail("check", dir, strerror(ENOMEM));
    const char *parent = dirname(parent_copy);
    rc = stat(parent, &st);
    int err = errno;
    if (rc < 0)
        fail("stat", parent, strerror(err));
    else if (st.st_uid != me && st.st_uid != 0)
        rc = fail("check", parent, "owned by another user, who could replace the directory");
    free(parent_copy);
    return rc < 0 ? -1 : 0;
}

int socket_accepts(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path) >= (int)sizeof sa.sun_path)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int ok = connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}
