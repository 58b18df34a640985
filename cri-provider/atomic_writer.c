/* atomic_writer.c -- give a data volume (configMap, secret, downwardAPI,
 * projected) new content in one step, the way the kubelet's AtomicWriter
 * does, so a container never reads a mix of old and new files:
 *
 *     <dir>/..2026_11_28_09_00_00.ab12cd/   the files, in a fresh directory
 *     <dir>/..data -> ..2026_11_28_09_00_00.ab12cd
 *     <dir>/key -> ..data/key               one per top-level name
 *
 * A new version goes into a new timestamped directory; renaming a new
 * symlink over ..data is the switch; then the old directory goes. Names
 * starting with ".." are ours, which is why no payload path may. Nothing
 * is written when the content and modes are already what the payload
 * says, so a periodic refresh of an unchanged object changes nothing.
 */
#include "cri.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DATA_LINK "..data"
#define DATA_TMP "..data_tmp"
#define MAX_PATH 4096
#define MAX_NAME 255
#define MAX_DEPTH 32    /* directories in a payload path */

/* ---- the payload ---------------------------------------------------------------- */

bool payload_path_ok(const char *path)
{
    size_t len = strlen(path);
    if (!len || len > MAX_PATH || path[0] == '/' || strncmp(path, "..", 2) == 0)
        return false;
    int depth = 0;
    for (const char *s = path; *s; depth++) {
        size_t n = strcspn(s, "/");
        if (n == 0 || n > MAX_NAME || (n == 1 && s[0] == '.') ||
            (n == 2 && s[0] == '.' && s[1] == '.'))
            return false;
        s += n;
        if (*s == '/' && !*++s)
            return false;   /* a trailing slash names no file */
    }
    return depth <= MAX_DEPTH;
}

int payload_add(vol_payload *pl, const char *path, const void *data, size_t len, mode_t mode)
{
    if (!payload_path_ok(path))
        return -1;
    vol_file *f = NULL;
    for (size_t i = 0; i < pl->n && !f; i++)
        if (strcmp(pl->files[i].path, path) == 0)
            f = &pl->files[i];
    if (len > PAYLOAD_MAX_BYTES - (pl->bytes - (f ? f->len : 0)))
        return -1;
    if (!f) {
        if (pl->n == pl->cap) {
            size_t cap = pl->cap ? pl->cap * 2 : 8;
            vol_file *files = realloc(pl->files, cap * sizeof *files);
            if (!files)
                return -1;
            pl->files = files;
            pl->cap = cap;
        }
        f = &pl->files[pl->n];
        *f = (vol_file){.path = strdup(path)};
        if (!f->path)
            return -1;
        pl->n++;
    }
    /* A later source of a projected volume wins a path, as in the kubelet. */
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    pl->bytes -= f->len;
    free(f->data);
    f->data = copy;
    f->len = len;
    f->mode = mode & 0777;
    pl->bytes += len;
    return 0;
}

void payload_free(vol_payload *pl)
{
    for (size_t i = 0; i < pl->n; i++) {
        /* Secret and token bytes do not linger in freed memory. */
        if (pl->files[i].data)
            explicit_bzero(pl->files[i].data, pl->files[i].len);
        free(pl->files[i].path);
        free(pl->files[i].data);
    }
    free(pl->files);
    *pl = (vol_payload){0};
}

/* ---- comparing with what is there ------------------------------------------------ */

/* Files (anything but directories) under dir, counted down to depth. */
static size_t count_files(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[MAX_PATH + 512];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            n += depth > 0 ? count_files(path, depth - 1) : 1;
        else
            n++;
    }
    closedir(d);
    return n;
}

static bool same_file(const char *path, const vol_file *f)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == f->len &&
                (st.st_mode & 07777) == f->mode;
    char buf[8192];
    for (size_t off = 0; same && off < f->len;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0 || (size_t)n > f->len - off || memcmp(buf, f->data + off, (size_t)n) != 0)
            same = false;
        else
            off += (size_t)n;
    }
    close(fd);
    return same;
}

/* true when the data directory ts holds exactly the payload. */
static bool current(const char *ts, const vol_payload *pl)
{
    char path[MAX_PATH + 512];
    for (size_t i = 0; i < pl->n; i++) {
        snprintf(path, sizeof path, "%s/%s", ts, pl->files[i].path);
        if (!same_file(path, &pl->files[i]))
            return false;
    }
    return count_files(ts, MAX_DEPTH) == pl->n;
}

/* ---- writing ---------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 8, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* Create the directories leading to file path under base. */
static int make_parents(const char *base, const char *path)
{
    char buf[MAX_PATH + 512];
    int n = snprintf(buf, sizeof buf, "%s/%s", base, path);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -1;
    for (char *s = buf + strlen(base) + 1; (s = strchr(s, '/')) != NULL; s++) {
        *s = '\0';
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return 0;
}

static int write_one(const char *base, const vol_file *f)
{
    char path[MAX_PATH + 512];
    snprintf(path, sizeof path, "%s/%s", base, f->path);
    if (make_parents(base, f->path) < 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < f->len) {
        ssize_t w = write(fd, f->data + off, f->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    /* fchmod, not the open mode: the umask must not bite. */
    int rc = off == f->len && fchmod(fd, f->mode) == 0 ? 0 : -1;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* The top-level name of a payload path, into buf. */
static const char *top_name(const char *path, char *buf, size_t n)
{
    snprintf(buf, n, "%.*s", (int)strcspn(path, "/"), path);
    return buf;
}

static bool in_payload(const vol_payload *pl, const char *name)
{
    char top[MAX_NAME + 1];
    for (size_t i = 0; i < pl->n; i++)
        if (strcmp(top_name(pl->files[i].path, top, sizeof top), name) == 0)
            return true;
    return false;
}

/* Links for the payload's top-level names; links of names it lost go, as
 * do data directories other than the current one (an older version, or
 * debris of a write cut short). */
static void tidy(const char *dir, const vol_payload *pl, const char *keep)
{
    char path[MAX_PATH + 512], target[MAX_NAME + 16], top[MAX_NAME + 1];
    for (size_t i = 0; i < pl->n; i++) {
        top_name(pl->files[i].path, top, sizeof top);
        snprintf(path, sizeof path, "%s/%s", dir, top);
        snprintf(target, sizeof target, DATA_LINK "/%s", top);
        struct stat st;
        if (lstat(path, &st) < 0 && errno == ENOENT && symlink(target, path) < 0)
            vk_warn("cannot link a volume file", "path=%s error=\"%s\"", path, strerror(errno));
    }
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            strcmp(e->d_name, DATA_LINK) == 0 || strcmp(e->d_name, keep) == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (strncmp(e->d_name, "..", 2) == 0) {
            remove_tree(path);
            continue;
        }
        struct stat st;
        if (!in_payload(pl, e->d_name) && lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
            unlink(path);
    }
    closedir(d);
}

bool aw_written(const char *dir)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/" DATA_LINK, dir);
    return lstat(path, &st) == 0 && S_ISLNK(st.st_mode);
}

int aw_write(const char *dir, const vol_payload *pl, char *err, size_t errlen)
{
    char link[512], old[MAX_NAME + 1] = "", ts[512], tmp[512];
    snprintf(link, sizeof link, "%s/" DATA_LINK, dir);
    ssize_t n = readlink(link, old, sizeof old - 1);
    if (n > 0) {
        old[n] = '\0';
        snprintf(ts, sizeof ts, "%s/%s", dir, old);
        if (strchr(old, '/') == NULL && current(ts, pl)) {
            tidy(dir, pl, old);
            return 0;
        }
    } else {
        old[0] = '\0';
    }

    struct tm tm;
    time_t now = time(NULL);
    char stamp[64];
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "..%Y_%m_%d_%H_%M_%S.XXXXXX", &tm);
    snprintf(ts, sizeof ts, "%s/%s", dir, stamp);
    if (!mkdtemp(ts) || chmod(ts, 0755) < 0) {
        snprintf(err, errlen, "cannot create a data directory in %s: %s", dir, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < pl->n; i++) {
        if (write_one(ts, &pl->files[i]) < 0) {
            snprintf(err, errlen, "cannot write %s: %s", pl->files[i].path, strerror(errno));
            remove_tree(ts);
            return -1;
        }
    }
    const char *name = strrchr(ts, '/') + 1;
    snprintf(tmp, sizeof tmp, "%s/" DATA_TMP, dir);
    unlink(tmp);
    if (symlink(name, tmp) < 0 || rename(tmp, link) < 0) {
        snprintf(err, errlen, "cannot switch %s to the new data: %s", dir, strerror(errno));
        unlink(tmp);
        remove_tree(ts);
        return -1;
    }
    tidy(dir, pl, name);
    return 1;
}
