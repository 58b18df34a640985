/* volumes.c -- the data volumes of a pod: configMap, secret, downwardAPI
 * and projected (configMap, secret, downwardAPI, serviceAccountToken
 * sources), materialised under <pod dir>/volumes/<name> and kept current.
 *
 * The content comes from the core (vk_core_get_configmap, _get_secret,
 * _service_account_token): the provider never sees the API server. A
 * volume is written before the first container that mounts it is created;
 * a volume that cannot be (an object missing, or not readable by this
 * node) keeps that container waiting in CreateContainerConfigError, and
 * the worker tries again. Then, every --volume-sync-period (the kubelet's
 * sync period, 60 s), every written volume is rebuilt from fresh objects
 * and switched atomically (atomic_writer.c) when anything changed, so
 * ConfigMap and Secret updates reach running containers; a token is
 * renewed at 80 % of its lifetime (or after a day), as the kubelet does.
 * A refresh that fails keeps the content the volume had.
 *
 * Secret and projected volumes live on a tmpfs of their own, as the
 * kubelet puts them, so that secrets never reach a disk; where mounting is
 * not allowed they are written to the pod directory, which only root can
 * enter.
 *
 * Everything here runs on the pod's worker thread without the table lock:
 * the worker is the only thread that touches a pod's volume state.
 */
#include "cri.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "json.h"

#define DEFAULT_MODE 0644
#define DEFAULT_TOKEN_SECONDS 3600
#define MIN_TOKEN_SECONDS 600
#define TOKEN_MAX_AGE_S (24 * 3600)
/* Old and new content side by side while switching, and some slack. */
#define TMPFS_OPTIONS "mode=0755,size=34m"

struct sa_token {
    vk_buf token;
    int64_t refresh_ns;     /* when to ask for a new one */
    int64_t expires_s;
};

struct cri_volume {
    char *name;
    bool ready;             /* written once: containers may mount it */
    int64_t next_sync_ns;
    struct sa_token *tokens;    /* by source index of a projected volume */
    size_t n_tokens;
    char failing[256];      /* the last refresh error, logged once */
};

bool volume_is_data(const char *type)
{
    return type && (strcmp(type, "configMap") == 0 || strcmp(type, "secret") == 0 ||
                    strcmp(type, "downwardAPI") == 0 || strcmp(type, "projected") == 0);
}

void volume_dir(const cri_pod *p, const char *name, char *buf, size_t n)
{
    snprintf(buf, n, "%s/volumes/%s", p->dir, name);
}

static void token_clear(struct sa_token *t)
{
    if (t->token.data)
        explicit_bzero(t->token.data, t->token.len);
    vk_buf_free(&t->token);
}

void volumes_free(cri_pod *p)
{
    for (size_t i = 0; i < p->n_vols; i++) {
        for (size_t j = 0; j < p->vols[i].n_tokens; j++)
            token_clear(&p->vols[i].tokens[j]);
        free(p->vols[i].tokens);
        free(p->vols[i].name);
    }
    free(p->vols);
    p->vols = NULL;
    p->n_vols = 0;
}

/* The state of a volume, made on first use. NULL when memory ran out. */
static struct cri_volume *state_of(cri_pod *p, const char *name)
{
    for (size_t i = 0; i < p->n_vols; i++)
        if (strcmp(p->vols[i].name, name) == 0)
            return &p->vols[i];
    struct cri_volume *v = realloc(p->vols, (p->n_vols + 1) * sizeof *v);
    if (!v)
        return NULL;
    p->vols = v;
    v = &p->vols[p->n_vols];
    *v = (struct cri_volume){.name = strdup(name)};
    if (!v->name)
        return NULL;
    p->n_vols++;
    return v;
}

static yajl_val volume_json(const cri_pod *p, const char *name)
{
    yajl_val vols = vk_json_get(p->spec, "spec", "volumes", NULL);
    for (size_t i = 0; YAJL_IS_ARRAY(vols) && i < vols->u.array.len; i++)
        if (strcmp(vk_json_str(vk_json_member(vols->u.array.values[i], "name"), ""), name) == 0)
            return vols->u.array.values[i];
    return NULL;
}

/* ---- objects from the core --------------------------------------------------------- */

/* A ConfigMap or Secret: 1 with *obj, 0 when absent and optional, -1 with
 * err. The message is what the user reads in the container's status. */
static int fetch(const cri_pod *p, bool secret, const char *name, bool optional, yajl_val *obj,
                 char *err, size_t errlen)
{
    const char *kind = secret ? "secret" : "configmap";
    vk_buf b = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code;
    *obj = NULL;
    if (!name || !name[0]) {
        snprintf(err, errlen, "a %s source without a name", kind);
        return -1;
    }
    code = secret ? vk_core_get_secret(provider, p->ns, name, &b, &st)
                  : vk_core_get_configmap(provider, p->ns, name, &b, &st);
    const char *why = st.message ? st.message : vk_status_code_name(code);
    int rc = -1;
    if (code == VK_OK) {
        char perr[128];
        *obj = vk_json_parse(b.data ? b.data : "", b.len, perr, sizeof perr);
        if (*obj)
            rc = 1;
        else
            snprintf(err, errlen, "%s \"%s\" from the core is not valid JSON: %s", kind, name,
                     perr);
    } else if (code == VK_NOT_FOUND && optional) {
        rc = 0;
    } else if (code == VK_NOT_FOUND) {
        snprintf(err, errlen, "%s \"%s\" not found", kind, name);
    } else if (code == VK_PERMISSION_DENIED) {
        snprintf(err, errlen, "%s \"%s\" is not readable by this node: %s", kind, name, why);
    } else {
        snprintf(err, errlen, "cannot get %s \"%s\": %s", kind, name, why);
    }
    if (b.data)
        explicit_bzero(b.data, b.len);
    vk_buf_free(&b);
    vk_status_clear(&st);
    return rc;
}

/* The keys of a configMap or secret source into the payload. */
static int keys(const cri_pod *p, yajl_val src, bool secret, mode_t mode, vol_payload *pl,
                char *err, size_t errlen)
{
    const char *name = vk_json_str(vk_json_member(src, secret ? "secretName" : "name"), NULL);
    if (!name)
        name = vk_json_str(vk_json_member(src, "name"), NULL);
    bool optional = vk_json_bool(vk_json_member(src, "optional"), false);
    yajl_val obj;
    int rc = fetch(p, secret, name, optional, &obj, err, errlen);
    if (rc < 0)
        return -1;
    char kerr[256];
    rc = payload_keys(pl, obj, secret, vk_json_member(src, "items"), mode, optional, kerr,
                      sizeof kerr);
    if (rc < 0)
        snprintf(err, errlen, "%s \"%s\": %s", secret ? "secret" : "configmap", name, kerr);
    yajl_tree_free(obj);
    return rc;
}

static downward_node node_amounts(void)
{
    struct statvfs fs;
    downward_node n = {.cpu_milli = node_cpus() * 1000, .memory_bytes = node_memory_bytes()};
    if (statvfs(config.root_dir, &fs) == 0)
        n.storage_bytes = (int64_t)fs.f_blocks * (int64_t)fs.f_frsize;
    return n;
}

/* A serviceAccountToken source: the token kept from before while it is
 * fresh, a new one otherwise. A renewal that fails keeps the old token
 * while it is still valid. */
static int token(const cri_pod *p, struct sa_token *t, yajl_val src, mode_t mode,
                 vol_payload *pl, char *err, size_t errlen)
{
    const char *path = vk_json_str(vk_json_member(src, "path"), NULL);
    const char *audience = vk_json_str(vk_json_member(src, "audience"), "");
    int64_t seconds = vk_json_int(vk_json_member(src, "expirationSeconds"), DEFAULT_TOKEN_SECONDS);
    int64_t now = cri_now_ns();
    if (!path) {
        snprintf(err, errlen, "a serviceAccountToken source without a path");
        return -1;
    }
    if (seconds < MIN_TOKEN_SECONDS)
        seconds = MIN_TOKEN_SECONDS;
    if (!t->token.len || now >= t->refresh_ns) {
        vk_buf fresh = VK_BUF_INIT;
        vk_status st = {0, NULL};
        int64_t expires = 0;
        const char *sa = p->pod->service_account_name ? p->pod->service_account_name : "default";
        int code = vk_core_service_account_token(provider, p->ns, p->name, p->uid, sa,
                                                 audience[0] ? &audience : NULL,
                                                 audience[0] ? 1 : 0, seconds, &fresh, &expires,
                                                 &st);
        if (code == VK_OK && fresh.len) {
            int64_t now_s = now / NS_PER_S;
            int64_t life = expires > now_s ? expires - now_s : seconds;
            if (life > TOKEN_MAX_AGE_S * 5 / 4)
                life = TOKEN_MAX_AGE_S * 5 / 4;
            token_clear(t);
            t->token = fresh;
            t->expires_s = expires > now_s ? expires : now_s + seconds;
            t->refresh_ns = now + life * 4 / 5 * NS_PER_S;
        } else {
            if (fresh.data)
                explicit_bzero(fresh.data, fresh.len);
            vk_buf_free(&fresh);
            bool usable = t->token.len && t->expires_s > now / NS_PER_S;
            if (!usable)
                snprintf(err, errlen, "cannot get a token for service account \"%s\": %s", sa,
                         st.message ? st.message : vk_status_code_name(code));
            vk_status_clear(&st);
            if (!usable)
                return -1;
        }
    }
    if (payload_add(pl, path, t->token.data, t->token.len, mode) < 0) {
        snprintf(err, errlen, "serviceAccountToken path %s is not usable", path);
        return -1;
    }
    return 0;
}

static int projected(const cri_pod *p, struct cri_volume *v, yajl_val proj, vol_payload *pl,
                     char *err, size_t errlen)
{
    mode_t mode = payload_mode(vk_json_member(proj, "defaultMode"), DEFAULT_MODE);
    yajl_val sources = vk_json_member(proj, "sources");
    size_t n = YAJL_IS_ARRAY(sources) ? sources->u.array.len : 0;
    if (n > v->n_tokens) {
        struct sa_token *t = realloc(v->tokens, n * sizeof *t);
        if (!t) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        memset(t + v->n_tokens, 0, (n - v->n_tokens) * sizeof *t);
        v->tokens = t;
        v->n_tokens = n;
    }
    for (size_t i = 0; i < n; i++) {
        yajl_val s = sources->u.array.values[i], x;
        int rc = 0;
        if ((x = vk_json_member(s, "configMap")) != NULL)
            rc = keys(p, x, false, mode, pl, err, errlen);
        else if ((x = vk_json_member(s, "secret")) != NULL)
            rc = keys(p, x, true, mode, pl, err, errlen);
        else if ((x = vk_json_member(s, "downwardAPI")) != NULL) {
            downward_node node = node_amounts();
            rc = payload_downward(pl, vk_json_member(x, "items"), mode, p->spec, &node, err,
                                  errlen);
        } else if ((x = vk_json_member(s, "serviceAccountToken")) != NULL)
            rc = token(p, &v->tokens[i], x, mode, pl, err, errlen);
        else if ((x = vk_json_member(s, "clusterTrustBundle")) != NULL) {
            snprintf(err, errlen, "clusterTrustBundle sources are not supported");
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* The payload of a data volume as its objects are now. */
static int build(const cri_pod *p, struct cri_volume *v, const char *type, vol_payload *pl,
                 char *err, size_t errlen)
{
    yajl_val vj = volume_json(p, v->name);
    yajl_val src = vk_json_member(vj, type);
    mode_t mode = payload_mode(vk_json_member(src, "defaultMode"), DEFAULT_MODE);
    if (strcmp(type, "configMap") == 0)
        return keys(p, src, false, mode, pl, err, errlen);
    if (strcmp(type, "secret") == 0)
        return keys(p, src, true, mode, pl, err, errlen);
    if (strcmp(type, "downwardAPI") == 0) {
        downward_node node = node_amounts();
        return payload_downward(pl, vk_json_member(src, "items"), mode, p->spec, &node, err,
                                errlen);
    }
    return projected(p, v, src, pl, err, errlen);
}

/* ---- the directory ------------------------------------------------------------------- */

static bool mounted(const char *path)
{
    char parent[600];
    struct stat a, b;
    snprintf(parent, sizeof parent, "%s/..", path);
    return stat(path, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

/* The volume's directory, on a tmpfs when it holds secrets. */
static int make_dir(const char *dir, bool memory, char *err, size_t errlen)
{
    static bool no_tmpfs;   /* told once: the provider may not mount */
    char parent[600];
    snprintf(parent, sizeof parent, "%.*s", (int)(strrchr(dir, '/') - dir), dir);
    if ((mkdir(parent, 0755) < 0 && errno != EEXIST) || (mkdir(dir, 0755) < 0 && errno != EEXIST)) {
        snprintf(err, errlen, "cannot create %.400s: %s", dir, strerror(errno));
        return -1;
    }
    if (!memory || mounted(dir) || __atomic_load_n(&no_tmpfs, __ATOMIC_RELAXED))
        return 0;
    if (mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, TMPFS_OPTIONS) < 0) {
        if (!__atomic_exchange_n(&no_tmpfs, true, __ATOMIC_RELAXED))
            vk_info("cannot mount a tmpfs for secret volumes; writing them to the pod directory",
                    "error=\"%s\"", strerror(errno));
    }
    return 0;
}

static bool in_memory(const char *type)
{
    return strcmp(type, "secret") == 0 || strcmp(type, "projected") == 0;
}

/* Build and write one volume. 1 changed, 0 unchanged, -1 err. */
static int write_volume(cri_pod *p, struct cri_volume *v, const char *type, char *err,
                        size_t errlen)
{
    char dir[600];
    vol_payload pl = {0};
    volume_dir(p, v->name, dir, sizeof dir);
    int rc = build(p, v, type, &pl, err, errlen);
    if (rc == 0 && !v->ready)
        rc = make_dir(dir, in_memory(type), err, errlen);
    if (rc == 0)
        rc = aw_write(dir, &pl, err, errlen);
    payload_free(&pl);
    return rc;
}

int volumes_setup(cri_pod *p, const vk_container *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < c->n_mounts; i++) {
        const vk_volume *vol = NULL;
        for (size_t j = 0; j < p->pod->n_volumes && !vol; j++)
            if (strcmp(p->pod->volumes[j].name, c->mounts[i].name) == 0)
                vol = &p->pod->volumes[j];
        if (!vol || !volume_is_data(vol->type))
            continue;
        struct cri_volume *v = state_of(p, vol->name);
        char why[512];
        if (!v) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (v->ready)
            continue;
        if (write_volume(p, v, vol->type, why, sizeof why) < 0) {
            snprintf(err, errlen, "volume \"%s\": %s", vol->name, why);
            return -1;
        }
        v->ready = true;
        v->next_sync_ns = cri_now_ns() + config.volume_sync_s * NS_PER_S;
    }
    return 0;
}

static bool token_due(const struct cri_volume *v, int64_t now)
{
    for (size_t i = 0; i < v->n_tokens; i++)
        if (v->tokens[i].token.len && now >= v->tokens[i].refresh_ns)
            return true;
    return false;
}

void volumes_sync(cri_pod *p)
{
    int64_t now = cri_now_ns();
    for (size_t i = 0; i < p->pod->n_volumes; i++) {
        const vk_volume *vol = &p->pod->volumes[i];
        if (!volume_is_data(vol->type))
            continue;
        struct cri_volume *v = state_of(p, vol->name);
        char dir[600], err[512];
        if (!v)
            return;
        if (!v->ready) {
            /* Written by this provider before a restart: keep it current. */
            volume_dir(p, vol->name, dir, sizeof dir);
            if (!aw_written(dir))
                continue;
            v->ready = true;
        }
        if (now < v->next_sync_ns && !token_due(v, now))
            continue;
        v->next_sync_ns = now + config.volume_sync_s * NS_PER_S;
        int rc = write_volume(p, v, vol->type, err, sizeof err);
        if (rc < 0 && strncmp(err, v->failing, sizeof v->failing - 1) != 0) {
            vk_warn("cannot refresh a volume; it keeps its content", "pod=%s/%s volume=%s "
                    "error=\"%s\"", p->ns, p->name, vol->name, err);
            snprintf(v->failing, sizeof v->failing, "%.255s", err);
        } else if (rc >= 0) {
            v->failing[0] = '\0';
            if (rc > 0)
                vk_debug("volume updated", "pod=%s/%s volume=%s", p->ns, p->name, vol->name);
        }
    }
}

void volumes_unmount(const char *pod_dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/volumes", pod_dir);
    DIR *d = opendir(path);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/volumes/%s", pod_dir, e->d_name);
        if (mounted(path) && umount2(path, 0) < 0 && umount2(path, MNT_DETACH) < 0)
            vk_warn("cannot unmount a volume", "path=%s error=\"%s\"", path, strerror(errno));
    }
    closedir(d);
}
