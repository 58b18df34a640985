/* pods.c -- the pod table, its lifecycle callbacks, and the pod directory.
 *
 * Each pod has a directory root_dir/pods/<uid> holding pod.json (the pod as
 * last created or updated), the containers' log files and emptyDir
 * volumes. pod.json is written before anything runs, so a restarted
 * provider finds every pod it had (pods_restore) and no sandbox of its own
 * without a pod; a `deleted` file marks a pod whose teardown was cut short.
 * The directory goes when the teardown is complete.
 */
#include "cri.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

#define DELETE_WAIT_MS 5000 /* DeletePod waits this long for the teardown */
#define SHUTDOWN_WAIT_MS 5000 /* and the provider's exit for busy workers */
#define POD_FILE "pod.json"
#define DELETED_FILE "deleted"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t released = PTHREAD_COND_INITIALIZER; /* a pod was freed */
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;     /* workers reached 0 */
static cri_pod *pods;
static size_t n_live;
static int n_workers;
static uint64_t serials;
static bool stopping;

void cri_lock(void)
{
    pthread_mutex_lock(&lock);
}

void cri_unlock(void)
{
    pthread_mutex_unlock(&lock);
}

bool pods_stopping(void)
{
    return stopping;
}

cri_pod *pods_find(const char *ns, const char *name)
{
    for (cri_pod *p = pods; p; p = p->next)
        if (!p->deleting && strcmp(p->ns, ns) == 0 && strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

cri_pod *pods_next(cri_pod *p)
{
    for (p = p ? p->next : pods; p && p->deleting; p = p->next)
        ;
    return p;
}

cri_pod *pods_by_serial(uint64_t serial)
{
    for (cri_pod *p = pods; p; p = p->next)
        if (p->serial == serial)
            return p->deleting ? NULL : p;
    return NULL;
}

cri_ctr *pod_ctr(cri_pod *p, const char *name)
{
    for (size_t i = 0; i < p->n_ctrs; i++)
        if (strcmp(p->ctrs[i].spec->name, name) == 0)
            return &p->ctrs[i];
    return NULL;
}

void pod_log_path(const cri_pod *p, const char *ctr, uint32_t attempt, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s/%u.log", p->dir, ctr, attempt);
}

void pod_termination_path(const cri_pod *p, const char *ctr, uint32_t attempt, char *buf,
                          size_t n)
{
    snprintf(buf, n, "%s/%s/%u.termination-log", p->dir, ctr, attempt);
}

/* ---- the pod directory ------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    /* The file must survive a crash of the node, not just of the process:
     * it is the only record that the pod's sandbox is ours. */
    int rc = off == len && fsync(fd) == 0 ? 0 : -1;
    close(fd);
    if (rc == 0 && rename(tmp, path) == 0)
        return 0;
    unlink(tmp);
    return -1;
}

static char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    vk_buf b = VK_BUF_INIT;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > max || vk_buf_append(&b, chunk, n) < 0) {
            vk_buf_free(&b);
            fclose(f);
            return NULL;
        }
    }
    fclose(f);
    return vk_buf_steal(&b, len);
}

/* ---- pods ----------------------------------------------------------------------- */

static void pod_free(cri_pod *p)
{
    if (!p)
        return;
    free(p->ns);
    free(p->name);
    free(p->uid);
    free(p->ctrs);
    volumes_free(p);
    free(p->status_json);
    free(p->status_probe);
    if (p->spec)
        yajl_tree_free(p->spec);
    vk_pod_free(p->pod);
    vk_pod_free(p->update);
    pthread_cond_destroy(&p->wake);
    free(p);
}

/* Point the containers at a (new) view; init containers first. */
static int bind_containers(cri_pod *p)
{
    size_t n = p->pod->n_init_containers + p->pod->n_containers;
    if (!p->ctrs) {
        p->ctrs = calloc(n, sizeof *p->ctrs);
        if (!p->ctrs)
            return -1;
        p->n_ctrs = n;
        for (size_t i = 0; i < n; i++)
            p->ctrs[i].prev_attempt = -1;
    }
    for (size_t i = 0; i < n; i++) {
        bool init = i < p->pod->n_init_containers;
        p->ctrs[i].init = init;
        p->ctrs[i].spec = init ? &p->pod->init_containers[i]
                               : &p->pod->containers[i - p->pod->n_init_containers];
        /* Init containers run to completion: the kubelet probes them not. */
        p->ctrs[i].probes = init ? 0 : probes_defined(p, p->ctrs[i].spec->name);
    }
    return 0;
}

/* A pod record for a parsed view, which it takes over. */
static cri_pod *pod_new(vk_pod *view, char *err, size_t errlen)
{
    cri_pod *p = calloc(1, sizeof *p);
    if (!p) {
        vk_pod_free(view);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Workers wait on the monotonic clock: a jump of the wall clock must
     * neither stall nor spin them. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->wake, &attr);
    pthread_condattr_destroy(&attr);
    p->pod = view;
    p->ns = strdup(view->namespace ? view->namespace : "default");
    p->name = strdup(view->name);
    p->uid = strdup(view->uid ? view->uid : "");
    p->spec = vk_json_parse(view->json, view->json_len, err, errlen);
    if (!p->ns || !p->name || !p->uid || !p->spec || bind_containers(p) < 0) {
        if (p->spec)
            snprintf(err, errlen, "out of memory");
        pod_free(p);
        return NULL;
    }
    snprintf(p->dir, sizeof p->dir, "%s/pods/%s", config.root_dir, p->uid);
    p->start_s = cri_now_ns() / NS_PER_S;
    p->serial = ++serials;
    return p;
}

/* The uid names a directory: refuse anything that could escape it. */
static bool uid_ok(const char *uid)
{
    if (!uid || !uid[0] || strlen(uid) > 128)
        return false;
    for (const char *s = uid; *s; s++)
        if (!(*s == '-' || (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
              (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

/* Start the worker of a linked pod (lock held). 0 or -1. */
static int start_worker(cri_pod *p)
{
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, worker_main, p);
    pthread_attr_destroy(&attr);
    if (rc == 0)
        n_workers++;
    return rc == 0 ? 0 : -1;
}

static void link_pod(cri_pod *p)
{
    p->next = pods;
    pods = p;
    if (!p->deleting)
        n_live++;
}

void pods_release(cri_pod *p)
{
    for (cri_pod **pp = &pods; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    pod_free(p);
    pthread_cond_broadcast(&released);
}

void pods_worker_done(void)
{
    if (--n_workers == 0)
        pthread_cond_broadcast(&idle);
}

void pods_wait(cri_pod *p, int64_t ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * NS_PER_MS;
    if (until.tv_nsec >= NS_PER_S) {
        until.tv_sec++;
        until.tv_nsec -= NS_PER_S;
    }
    pthread_cond_timedwait(&p->wake, &lock, &until);
}

int cri_create_pod(vk_ctx *ctx, const vk_pod *pod)
{
    char err[256];
    if (!uid_ok(pod->uid))
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                            "pod %s has no usable metadata.uid", pod->name);
    cri_lock();
    cri_pod *old = pods_find(pod->namespace ? pod->namespace : "default", pod->name);
    if (old) {
        int same = strcmp(old->uid, pod->uid) == 0;
        cri_unlock();
        if (same)
            return VK_OK;
        return vk_ctx_error(ctx, VK_ALREADY_EXISTS,
                            "pod %s/%s still runs with another uid", old->ns, old->name);
    }
    if ((int64_t)n_live >= config.max_pods) {
        cri_unlock();
        return vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "node runs %lld pods already",
                            (long long)config.max_pods);
    }
    cri_unlock();

    vk_pod *view = vk_pod_parse(pod->json, pod->json_len, err, sizeof err);
    if (!view)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "pod %s: %s", pod->name, err);
    cri_pod *p = pod_new(view, err, sizeof err);
    if (!p)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "pod %s: %s", pod->name, err);
    if ((mkdir(p->dir, 0700) < 0 && errno != EEXIST) ||
        write_file(p->dir, POD_FILE, p->pod->json, p->pod->json_len) < 0) {
        int e = errno;
        pod_free(p);
        return vk_ctx_error(ctx, VK_UNAVAILABLE, "cannot write the pod directory: %s",
                            strerror(e));
    }

    cri_lock();
    /* Another CreatePod of the same pod may have won the race meanwhile. */
    cri_pod *raced = pods_find(p->ns, p->name);
    if (raced || stopping) {
        int same = raced && strcmp(raced->uid, p->uid) == 0;
        cri_unlock();
        pod_free(p);
        if (!raced)
            return vk_ctx_error(ctx, VK_UNAVAILABLE, "provider is stopping");
        return same ? VK_OK
                    : vk_ctx_error(ctx, VK_ALREADY_EXISTS, "pod %s/%s still runs with another uid",
                                   pod->namespace, pod->name);
    }
    link_pod(p);
    status_update(p);
    if (start_worker(p) < 0) {
        n_live--;
        pods_release(p);
        cri_unlock();
        return vk_ctx_error(ctx, VK_RESOURCE_EXHAUSTED, "cannot start a pod worker");
    }
    cri_unlock();
    vk_info("pod created", "pod=%s/%s uid=%s", pod->namespace, pod->name, pod->uid);
    return VK_OK;
}

int cri_update_pod(vk_ctx *ctx, const vk_pod *pod)
{
    char err[256];
    vk_pod *view = vk_pod_parse(pod->json, pod->json_len, err, sizeof err);
    if (!view)
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT, "pod %s: %s", pod->name, err);
    cri_lock();
    cri_pod *p = pods_find(view->namespace ? view->namespace : "default", view->name);
    if (!p || (view->uid && strcmp(p->uid, view->uid) != 0)) {
        cri_unlock();
        vk_pod_free(view);
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s not found", pod->name);
    }
    if (view->n_containers != p->pod->n_containers ||
        view->n_init_containers != p->pod->n_init_containers) {
        cri_unlock();
        vk_pod_free(view);
        return vk_ctx_error(ctx, VK_INVALID_ARGUMENT,
                            "pod %s: containers cannot be added or removed", pod->name);
    }
    if (write_file(p->dir, POD_FILE, view->json, view->json_len) < 0)
        vk_warn("cannot save the updated pod", "pod=%s/%s error=\"%s\"", p->ns, p->name,
                strerror(errno));
    vk_pod_free(p->update);
    p->update = view;
    p->kick = true;
    pthread_cond_signal(&p->wake);
    cri_unlock();
    return VK_OK;
}

int cri_delete_pod(vk_ctx *ctx, const vk_pod *pod)
{
    cri_lock();
    cri_pod *p = pods_find(pod->namespace ? pod->namespace : "default", pod->name);
    if (!p || (pod->uid && pod->uid[0] && strcmp(p->uid, pod->uid) != 0)) {
        cri_unlock();
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s not found", pod->name);
    }
    /* The grace period of this deletion is the one the teardown uses. */
    p->pod->deletion_grace_seconds = pod->deletion_grace_seconds;
    p->deleting = true;
    n_live--;
    pthread_cond_signal(&p->wake);
    if (write_file(p->dir, DELETED_FILE, "", 0) < 0)
        vk_warn("cannot mark the pod deleted", "pod=%s/%s error=\"%s\"", p->ns, p->name,
                strerror(errno));
    vk_info("pod deleted", "pod=%s/%s uid=%s", p->ns, p->name, p->uid);

    /* Wait a little for the teardown so that a quick one is done when the
     * call returns; a long grace period goes on in the background. */
    uint64_t serial = p->serial;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += DELETE_WAIT_MS / 1000;
    for (;;) {
        bool there = false;
        for (cri_pod *q = pods; q && !there; q = q->next)
            there = q->serial == serial;
        if (!there || vk_ctx_cancelled(ctx) ||
            pthread_cond_timedwait(&released, &lock, &until) == ETIMEDOUT)
            break;
    }
    cri_unlock();
    return VK_OK;
}

static int pod_json(cri_pod *p, vk_buf *out)
{
    const char *st = p->status_json ? p->status_json : "{}";
    return vk_pod_with_status(p->pod->json, p->pod->json_len, st, strlen(st), out);
}

int cri_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    cri_lock();
    cri_pod *p = pods_find(ns, name);
    int rc = !p ? -2 : pod_json(p, out);
    cri_unlock();
    if (rc == -2)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
    return rc < 0 ? vk_ctx_error(ctx, VK_INTERNAL, "out of memory") : VK_OK;
}

int cri_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out)
{
    cri_lock();
    cri_pod *p = pods_find(ns, name);
    int rc = !p ? -2 : vk_buf_puts(out, p->status_json ? p->status_json : "{}");
    cri_unlock();
    if (rc == -2)
        return vk_ctx_error(ctx, VK_NOT_FOUND, "pod %s/%s not found", ns, name);
    return rc < 0 ? vk_ctx_error(ctx, VK_INTERNAL, "out of memory") : VK_OK;
}

int cri_get_pods(vk_ctx *ctx, vk_pod_list *out)
{
    vk_buf b = VK_BUF_INIT;
    int rc = 0;
    cri_lock();
    for (cri_pod *p = pods_next(NULL); p && rc == 0; p = pods_next(p)) {
        vk_buf_reset(&b);
        rc = pod_json(p, &b);
        if (rc == 0)
            vk_pod_list_add(out, b.data, b.len);
    }
    cri_unlock();
    vk_buf_free(&b);
    return rc < 0 ? vk_ctx_error(ctx, VK_INTERNAL, "out of memory") : VK_OK;
}

/* ---- restart and shutdown ------------------------------------------------------- */

/* A directory under pods/ without a readable pod.json is debris of a crash
 * between mkdir and the first write: nothing ran from it. */
static void restore_one(const char *uid)
{
    char dir[512], path[600], err[256];
    size_t len;
    snprintf(dir, sizeof dir, "%s/pods/%s", config.root_dir, uid);
    snprintf(path, sizeof path, "%s/" POD_FILE, dir);
    char *json = read_file(path, VK_RPC_MAX_MESSAGE, &len);
    vk_pod *view = json ? vk_pod_parse(json, len, err, sizeof err) : NULL;
    free(json);
    if (!view || !view->uid || strcmp(view->uid, uid) != 0) {
        vk_warn("dropping a pod directory without a usable pod.json", "dir=%s", dir);
        vk_pod_free(view);
        worker_remove_tree(dir);
        return;
    }
    cri_pod *p = pod_new(view, err, sizeof err);
    if (!p)
        return;
    snprintf(path, sizeof path, "%s/" DELETED_FILE, dir);
    p->deleting = access(path, F_OK) == 0;
    worker_adopt(p);
    cri_lock();
    link_pod(p);
    if (!p->deleting)
        status_update(p);
    if (start_worker(p) < 0) {
        if (!p->deleting)
            n_live--;
        pods_release(p);
    }
    cri_unlock();
}

void pods_restore(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/pods", config.root_dir);
    if (mkdir(config.root_dir, 0700) < 0 && errno != EEXIST)
        vk_warn("cannot create the root directory", "dir=%s error=\"%s\"", config.root_dir,
                strerror(errno));
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        vk_warn("cannot create the pods directory", "dir=%s error=\"%s\"", path,
                strerror(errno));
    DIR *d = opendir(path);
    if (!d)
        return;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.' || !uid_ok(e->d_name))
            continue;
        restore_one(e->d_name);
        n++;
    }
    closedir(d);
    worker_remove_orphans();
    if (n)
        vk_info("pods restored", "count=%zu", n);
}

bool pods_shutdown(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += SHUTDOWN_WAIT_MS / 1000;
    cri_lock();
    stopping = true;
    for (cri_pod *p = pods; p; p = p->next)
        pthread_cond_signal(&p->wake);
    while (n_workers > 0 && pthread_cond_timedwait(&idle, &lock, &until) != ETIMEDOUT)
        ;
    if (n_workers > 0) {
        vk_warn("pod workers still busy with the runtime; exiting without them",
                "workers=%d", n_workers);
        cri_unlock();
        return false;
    }
    while (pods) {
        cri_pod *p = pods;
        pods = p->next;
        pod_free(p);
    }
    cri_unlock();
    return true;
}
