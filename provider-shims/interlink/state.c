/* state.c -- the pod table on disk, <state-dir>/pods.json.
 *
 *   {"version": 1, "pods": [{"pod": <Pod>, "jobID": "...", "status": <PodStatus>,
 *                            "created": <unix s>, "changed": <unix s>}, ...]}
 *
 * interLink cannot list a plugin's pods, so without this file a restarted
 * shim would report no pods, and the core would create them all again: the
 * plugin would run every job twice. The last status goes with each pod so
 * that a restart does not turn a Running pod back into Pending.
 *
 * The file is rewritten whole (pods are few: --pods bounds them) to a
 * temporary file that is synced and renamed over the old one, so a crash
 * leaves either version, never half of one. It holds pod specs, whose
 * resolved environment may carry secret values: mode 0600 in a 0700
 * directory.
 */
#include "interlink.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define STATE_VERSION 1
/* What --pods pods of the largest size Kubernetes stores could take. */
#define STATE_MAX (512u << 20)

static pthread_mutex_t save_mu = PTHREAD_MUTEX_INITIALIZER;

static int path_of(const char *file, char *buf, size_t n)
{
    if (snprintf(buf, n, "%s/%s", config.state_dir, file) < (int)n)
        return 0;
    buf[0] = '\0';
    return -1;
}

/* ---- loading --------------------------------------------------------- */

static int read_file(const char *path, vk_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    struct stat sb;
    int rc = fstat(fd, &sb);
    if (rc == 0 && (uint64_t)sb.st_size > STATE_MAX) {
        errno = EFBIG;
        rc = -1;
    }
    char chunk[65536];
    ssize_t n;
    while (rc == 0 && (n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || out->len + (size_t)n > STATE_MAX || vk_buf_append(out, chunk, (size_t)n) < 0)
            rc = -1;
    }
    close(fd);
    return rc;
}

static enum il_phase phase_of(yajl_val status)
{
    const char *ph = vk_json_str(vk_json_member(status, "phase"), "");
    return strcmp(ph, "Running") == 0     ? IL_RUNNING
           : strcmp(ph, "Succeeded") == 0 ? IL_SUCCEEDED
           : strcmp(ph, "Failed") == 0    ? IL_FAILED
                                          : IL_PENDING;
}

static char *tree_text(yajl_val v)
{
    vk_buf b = VK_BUF_INIT;
    vk_json_writer w;
    vk_jw_begin(&w, &b);
    vk_jw_tree(&w, v);
    if (vk_jw_end(&w) < 0) {
        vk_buf_free(&b);
        return NULL;
    }
    return vk_buf_steal(&b, NULL);
}

/* One entry of the file made into a table entry; NULL with why in err. */
static il_pod *entry(yajl_val e, char *err, size_t n)
{
    yajl_val status = vk_json_member(e, "status");
    const char *jid = vk_json_str(vk_json_member(e, "jobID"), NULL);
    char *doc = tree_text(vk_json_member(e, "pod"));
    il_pod *p = calloc(1, sizeof *p);
    if (p && doc && YAJL_IS_OBJECT(status) && (p->pod = vk_pod_parse(doc, strlen(doc), err, n)) &&
        p->pod->uid && (p->status = tree_text(status)) && (!jid || (p->job_id = strdup(jid)))) {
        p->phase = phase_of(status);
        p->created_s = vk_json_int(vk_json_member(e, "created"), 0);
        p->changed_s = vk_json_int(vk_json_member(e, "changed"), 0);
        p->accepted = true;
        free(doc);
        return p;
    }
    if (p && p->pod && !p->pod->uid)
        snprintf(err, n, "a pod without uid");
    else if (!YAJL_IS_OBJECT(status))
        snprintf(err, n, "a pod without status");
    if (p) {
        vk_pod_free(p->pod);
        free(p->status);
        free(p->job_id);
    }
    free(p);
    free(doc);
    return NULL;
}

int state_load(void)
{
    char path[4096], err[256] = "out of memory";
    if (mkdir(config.state_dir, 0700) < 0 && errno != EEXIST) {
        vk_error("cannot create the state directory", "dir=%s error=\"%s\"", config.state_dir,
                 strerror(errno));
        return -1;
    }
    if (path_of("pods.json", path, sizeof path) < 0) {
        vk_error("state directory path too long", "dir=%s", config.state_dir);
        return -1;
    }
    vk_buf text = VK_BUF_INIT;
    if (read_file(path, &text) < 0) {
        vk_error("cannot read the state file", "path=%s error=\"%s\"", path, strerror(errno));
        vk_buf_free(&text);
        return -1;
    }
    if (!text.len) {
        vk_buf_free(&text);
        return 0;
    }
    yajl_val v = vk_json_parse(text.data, text.len, err, sizeof err);
    vk_buf_free(&text);
    yajl_val pods = vk_json_member(v, "pods");
    int rc = 0;
    if (!v || vk_json_int(vk_json_member(v, "version"), 0) != STATE_VERSION ||
        !YAJL_IS_ARRAY(pods)) {
        if (v)
            snprintf(err, sizeof err, "not a version %d state file", STATE_VERSION);
        rc = -1;
    }
    size_t loaded = 0;
    for (size_t i = 0; rc == 0 && i < pods->u.array.len; i++) {
        il_pod *p = entry(pods->u.array.values[i], err, sizeof err);
        if (p) {
            pods_restore(p);
            loaded++;
        } else {
            rc = -1;
        }
    }
    yajl_tree_free(v);
    /* Starting without the pods it names would run their jobs twice. */
    if (rc < 0)
        vk_error("the state file is damaged: repair or remove it", "path=%s error=\"%s\"",
                 path, err);
    else
        vk_info("pods restored from the state file", "path=%s pods=%zu", path, loaded);
    return rc;
}

/* ---- saving ------------------------------------------------------------ */

/* The document, from the texts the table holds (all valid JSON). */
static int serialize(vk_buf *out)
{
    int rc = vk_buf_printf(out, "{\"version\":%d,\"pods\":[", STATE_VERSION);
    bool first = true;
    pods_lock();
    for (il_pod *p = pods_first(); p && rc == 0; p = p->next) {
        if (!p->accepted || !p->status)
            continue;
        rc = vk_buf_printf(out, "%s\n{\"pod\":", first ? "" : ",");
        rc = rc ? rc : vk_buf_append(out, p->pod->json, p->pod->json_len);
        if (rc == 0 && p->job_id) {
            rc = vk_buf_puts(out, ",\"jobID\":");
            rc = rc ? rc : vk_json_quote(out, p->job_id, strlen(p->job_id));
        }
        rc = rc ? rc : vk_buf_printf(out, ",\"status\":%s,\"created\":%lld,\"changed\":%lld}",
                                     p->status, (long long)p->created_s,
                                     (long long)p->changed_s);
        first = false;
    }
    pods_unlock();
    return rc ? rc : vk_buf_puts(out, "]}\n");
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_file(const char *path, const vk_buf *doc)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, doc->data, doc->len) == 0 && fsync(fd) == 0 ? 0 : -1;
    int saved = errno;
    if (close(fd) < 0 && rc == 0)
        return -1;
    errno = saved;
    return rc;
}

/* The rename is durable once the directory is. */
static int sync_dir(void)
{
    int fd = open(config.state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

void state_save(void)
{
    char path[4096] = "", tmp[4096] = "";
    vk_buf doc = VK_BUF_INIT;
    /* One writer at a time, each writing the table as it is when it takes
     * its turn: the last file written is the newest table. */
    pthread_mutex_lock(&save_mu);
    int rc = path_of("pods.json", path, sizeof path) < 0 ||
             path_of("pods.json.tmp", tmp, sizeof tmp) < 0 ? -1 : 0;
    if (rc < 0)
        errno = ENAMETOOLONG;
    if (rc == 0 && serialize(&doc) < 0) {
        errno = ENOMEM;
        rc = -1;
    }
    if (rc == 0)
        rc = write_file(tmp, &doc);
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc == 0)
        rc = sync_dir();
    if (rc < 0) {
        /* The pods live on in memory; only a restart would lose them. */
        vk_error("cannot save the pod table", "dir=%s error=\"%s\"", config.state_dir,
                 strerror(errno));
        if (tmp[0])
            unlink(tmp);
    }
    pthread_mutex_unlock(&save_mu);
    vk_buf_free(&doc);
}
