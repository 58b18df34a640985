/* objcache.c -- one reflector per referenced Secret or ConfigMap.
 *
 * Entries sit in a hash table by (kind, namespace, name). Only the loop
 * changes the table or an entry's object, and it does so under the mutex;
 * Core service threads read under the mutex, so the loop's own reads need
 * no lock.
 */
#include "objcache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kube_reflector.h"
#include "log.h"

#define BUCKETS 256
/* A pod waits for these objects: retry failed lists sooner than the
 * reflector's default 30 s. */
#define BACKOFF_MAX_S 5.0

typedef struct entry {
    struct entry *next;
    objcache *oc;
    enum ref_kind kind;
    char *ns, *name;
    size_t holds;
    struct kube_reflector *refl;
    enum objcache_state state;
    yajl_val obj;
} entry;

struct objcache {
    struct kube_client *kube;
    pthread_mutex_t lock;
    entry *buckets[BUCKETS];
    size_t n;
    metric *entries;
    objcache_change_fn changed;
    void *ud;
};

static unsigned bucket(enum ref_kind kind, const char *ns, const char *name)
{
    uint32_t h = 2166136261u ^ (uint32_t)kind; /* FNV-1a */
    for (const char *p = ns; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *p = name; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % BUCKETS;
}

static entry **slot_of(objcache *oc, enum ref_kind kind, const char *ns, const char *name)
{
    entry **p = &oc->buckets[bucket(kind, ns, name)];
    while (*p && !((*p)->kind == kind && !strcmp((*p)->ns, ns) && !strcmp((*p)->name, name)))
        p = &(*p)->next;
    return p;
}

static bool cached_kind(enum ref_kind kind)
{
    return kind == REF_SECRET || kind == REF_CONFIGMAP;
}

/* ---- watch callbacks (loop) ------------------------------------------------- */

/* Replace the entry's object with obj (taken; NULL: absent) and tell the
 * listener when anything changed. */
static void set_object(entry *e, yajl_val obj)
{
    objcache *oc = e->oc;
    const char *old_rv = vk_json_str(vk_json_get(e->obj, "metadata", "resourceVersion", NULL), "");
    const char *new_rv = vk_json_str(vk_json_get(obj, "metadata", "resourceVersion", NULL), "");
    enum objcache_state state = obj ? OBJCACHE_FOUND : OBJCACHE_ABSENT;
    bool changed = state != e->state || strcmp(old_rv, new_rv) != 0;

    pthread_mutex_lock(&oc->lock);
    yajl_val old = e->obj;
    e->obj = obj;
    e->state = state;
    pthread_mutex_unlock(&oc->lock);
    yajl_tree_free(old);
    if (changed && oc->changed)
        oc->changed(oc->ud, e->kind, e->ns, e->name);
}

static bool is_ours(const entry *e, yajl_val obj)
{
    return !strcmp(vk_json_str(vk_json_get(obj, "metadata", "name", NULL), ""), e->name);
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    entry *e = ud;
    yajl_val found = NULL;
    for (size_t i = 0; i < n && !found; i++) {
        if (items[i] && is_ours(e, items[i])) {
            found = items[i];
            items[i] = NULL;
        }
    }
    set_object(e, found);
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    entry *e = ud;
    if (!is_ours(e, *object))
        return;
    if (type == KUBE_DELETED) {
        set_object(e, NULL);
    } else {
        yajl_val mine = *object;
        *object = NULL;
        set_object(e, mine);
    }
}

/* ---- holds (loop) --------------------------------------------------------------- */

static void free_entry(entry *e)
{
    kube_reflector_free(e->refl);
    yajl_tree_free(e->obj);
    free(e->ns);
    free(e->name);
    free(e);
}

int objcache_hold(objcache *oc, enum ref_kind kind, const char *ns, const char *name)
{
    if (!cached_kind(kind))
        return 0;
    entry **p = slot_of(oc, kind, ns, name);
    if (*p) {
        (*p)->holds++;
        return 0;
    }
    entry *e = calloc(1, sizeof *e);
    vk_buf path = VK_BUF_INIT, selector = VK_BUF_INIT;
    if (!e || vk_buf_printf(&path, "/api/v1/namespaces/%s/%s", ns,
                            kind == REF_SECRET ? "secrets" : "configmaps") < 0 ||
        vk_buf_printf(&selector, "metadata.name=%s", name) < 0)
        goto fail;
    e->oc = oc;
    e->kind = kind;
    e->holds = 1;
    e->state = OBJCACHE_UNKNOWN;
    e->ns = strdup(ns);
    e->name = strdup(name);
    if (!e->ns || !e->name)
        goto fail;
    struct kube_reflector_config cfg = {
        .path = path.data,
        .field_selector = selector.data,
        .backoff_max_s = BACKOFF_MAX_S,
        .on_replace = on_replace,
        .on_event = on_event,
        .ud = e,
    };
    e->refl = kube_reflector_start(oc->kube, &cfg);
    if (!e->refl)
        goto fail;
    vk_buf_free(&path);
    vk_buf_free(&selector);
    pthread_mutex_lock(&oc->lock);
    *p = e;
    oc->n++;
    pthread_mutex_unlock(&oc->lock);
    metric_set(oc->entries, NULL, (double)oc->n);
    return 0;
fail:
    vk_buf_free(&path);
    vk_buf_free(&selector);
    if (e)
        free_entry(e);
    return -1;
}

void objcache_release(objcache *oc, enum ref_kind kind, const char *ns, const char *name)
{
    if (!cached_kind(kind))
        return;
    entry **p = slot_of(oc, kind, ns, name);
    entry *e = *p;
    if (!e || --e->holds > 0)
        return;
    pthread_mutex_lock(&oc->lock);
    *p = e->next;
    oc->n--;
    pthread_mutex_unlock(&oc->lock);
    metric_set(oc->entries, NULL, (double)oc->n);
    free_entry(e);
}

/* ---- reads -------------------------------------------------------------------------- */

enum objcache_state objcache_lookup(objcache *oc, enum ref_kind kind, const char *ns,
                                    const char *name, yajl_val *obj)
{
    *obj = NULL;
    if (!cached_kind(kind))
        return OBJCACHE_UNKNOWN;
    entry *e = *slot_of(oc, kind, ns, name);
    if (!e)
        return OBJCACHE_UNKNOWN;
    *obj = e->obj;
    return e->state;
}

enum objcache_state objcache_get_json(objcache *oc, enum ref_kind kind, const char *ns,
                                      const char *name, vk_buf *out)
{
    if (!cached_kind(kind))
        return OBJCACHE_UNKNOWN;
    enum objcache_state st = OBJCACHE_UNKNOWN;
    pthread_mutex_lock(&oc->lock);
    entry *e = *slot_of(oc, kind, ns, name);
    if (e) {
        st = e->state;
        if (st == OBJCACHE_FOUND) {
            vk_json_writer w;
            if (vk_jw_begin(&w, out) == 0)
                vk_jw_tree(&w, e->obj);
            if (vk_jw_end(&w) < 0)
                st = OBJCACHE_UNKNOWN;
        }
    }
    pthread_mutex_unlock(&oc->lock);
    return st;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

objcache *objcache_new(struct kube_client *kube, metrics *m)
{
    objcache *oc = calloc(1, sizeof *oc);
    if (!oc)
        return NULL;
    oc->kube = kube;
    pthread_mutex_init(&oc->lock, NULL);
    if (m)
        oc->entries = metrics_gauge(m, "objcache_entries",
            "Secrets and ConfigMaps referenced by the node's pods, each watched.", NULL);
    return oc;
}

void objcache_listen(objcache *oc, objcache_change_fn fn, void *ud)
{
    oc->changed = fn;
    oc->ud = ud;
}

void objcache_free(objcache *oc)
{
    if (!oc)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        while (oc->buckets[i]) {
            entry *e = oc->buckets[i];
            oc->buckets[i] = e->next;
            free_entry(e);
        }
    }
    metric_set(oc->entries, NULL, 0);
    pthread_mutex_destroy(&oc->lock);
    free(oc);
}
