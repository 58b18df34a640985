/* refs.c -- reference counts per object, reference lists per pod.
 *
 * Objects live in a chained hash table keyed by (kind, namespace, name);
 * each pod keeps pointers to the objects it holds a count on, so dropping a
 * pod needs no lookups. A node runs about a hundred pods, so the pod list
 * is searched linearly.
 */
#include "refs.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"

#define BUCKETS 256
#define POD_BUCKETS 1024

typedef struct object {
    struct object *next;
    enum ref_kind kind;
    char *ns, *name;
    size_t count;
} object;

typedef struct pod {
    struct pod *next;
    const char *uid;        /* interned */
    char *ns, *name;
    object **objects;
    size_t n;
} pod;

struct refs {
    pthread_mutex_t lock;
    object *buckets[BUCKETS];
    pod *pods[POD_BUCKETS]; /* by uid: a node may hold thousands */
    void (*on_drop)(void *ud, const char *uid);
    void *on_drop_ud;
};

static const char *const kind_names[] = {"secret", "configmap", "serviceaccount"};

const char *ref_kind_name(enum ref_kind kind)
{
    return kind_names[kind];
}

refs *refs_new(void)
{
    refs *r = calloc(1, sizeof *r);
    if (r)
        pthread_mutex_init(&r->lock, NULL);
    return r;
}

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

static object *find(refs *r, enum ref_kind kind, const char *ns, const char *name)
{
    for (object *o = r->buckets[bucket(kind, ns, name)]; o; o = o->next)
        if (o->kind == kind && strcmp(o->ns, ns) == 0 && strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

/* Take a count on kind ns/name, creating it at 1. NULL when out of memory. */
static object *hold(refs *r, enum ref_kind kind, const char *ns, const char *name)
{
    object *o = find(r, kind, ns, name);
    if (o) {
        o->count++;
        return o;
    }
    o = calloc(1, sizeof *o);
    if (!o)
        return NULL;
    o->kind = kind;
    o->ns = strdup(ns);
    o->name = strdup(name);
    if (!o->ns || !o->name) {
        free(o->ns);
        free(o->name);
        free(o);
        return NULL;
    }
    o->count = 1;
    object **head = &r->buckets[bucket(kind, ns, name)];
    o->next = *head;
    *head = o;
    return o;
}

static void release(refs *r, object *o)
{
    if (--o->count > 0)
        return;
    object **at = &r->buckets[bucket(o->kind, o->ns, o->name)];
    while (*at != o)
        at = &(*at)->next;
    *at = o->next;
    free(o->ns);
    free(o->name);
    free(o);
}

static void release_all(refs *r, object **objects, size_t n)
{
    for (size_t i = 0; i < n; i++)
        release(r, objects[i]);
    free(objects);
}

static pod **find_pod(refs *r, const char *uid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *c = uid; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    pod **at = &r->pods[h % POD_BUCKETS];
    while (*at && strcmp((*at)->uid, uid) != 0)
        at = &(*at)->next;
    return at;
}

static void free_pod(refs *r, pod *p)
{
    release_all(r, p->objects, p->n);
    unintern(p->uid);
    free(p->ns);
    free(p->name);
    free(p);
}

/* Counts for list, one per distinct object; *out and *n_out on success. */
static int hold_list(refs *r, const char *ns, const ref *list, size_t n,
                     object ***out, size_t *n_out)
{
    object **objects = calloc(n ? n : 1, sizeof *objects);
    if (!objects)
        return -1;
    size_t held = 0;
    for (size_t i = 0; i < n; i++) {
        object *o = find(r, list[i].kind, ns, list[i].name);
        size_t j = 0;
        while (o && j < held && objects[j] != o)
            j++;
        if (o && j < held)
            continue; /* listed twice by this pod */
        o = hold(r, list[i].kind, ns, list[i].name);
        if (!o) {
            release_all(r, objects, held);
            return -1;
        }
        objects[held++] = o;
    }
    *out = objects;
    *n_out = held;
    return 0;
}

int refs_set_pod(refs *r, const char *uid, const char *ns, const char *name,
                 const ref *list, size_t n)
{
    pthread_mutex_lock(&r->lock);
    object **objects;
    size_t held;
    int rc = hold_list(r, ns, list, n, &objects, &held);
    if (rc < 0)
        goto out;
    pod **at = find_pod(r, uid);
    pod *p = *at;
    if (p) {
        /* Counts on the new list were taken first, so an object the pod
         * keeps referencing never drops to zero in between. */
        release_all(r, p->objects, p->n);
    } else {
        p = calloc(1, sizeof *p);
        if (p) {
            p->uid = intern(uid);
            p->ns = strdup(ns);
            p->name = strdup(name);
        }
        if (!p || !p->uid || !p->ns || !p->name) {
            if (p)
                free_pod(r, p);
            release_all(r, objects, held);
            rc = -1;
            goto out;
        }
        *at = p;
    }
    p->objects = objects;
    p->n = held;
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

void refs_drop_pod(refs *r, const char *uid)
{
    pthread_mutex_lock(&r->lock);
    pod **at = find_pod(r, uid);
    pod *p = *at;
    if (p) {
        *at = p->next;
        free_pod(r, p);
    }
    void (*fn)(void *, const char *) = p ? r->on_drop : NULL;
    void *ud = r->on_drop_ud;
    pthread_mutex_unlock(&r->lock);
    if (fn)
        fn(ud, uid);
}

void refs_on_drop(refs *r, void (*fn)(void *ud, const char *uid), void *ud)
{
    pthread_mutex_lock(&r->lock);
    r->on_drop = fn;
    r->on_drop_ud = ud;
    pthread_mutex_unlock(&r->lock);
}

bool refs_allowed(refs *r, enum ref_kind kind, const char *ns, const char *name)
{
    pthread_mutex_lock(&r->lock);
    bool found = find(r, kind, ns, name) != NULL;
    pthread_mutex_unlock(&r->lock);
    return found;
}

bool refs_pod_has(refs *r, const char *uid, const char *ns, const char *name,
                  enum ref_kind kind, const char *object_name)
{
    bool found = false;
    pthread_mutex_lock(&r->lock);
    pod *p = *find_pod(r, uid);
    if (p && strcmp(p->ns, ns) == 0 && strcmp(p->name, name) == 0) {
        for (size_t i = 0; i < p->n && !found; i++)
            found = p->objects[i]->kind == kind &&
                    strcmp(p->objects[i]->name, object_name) == 0;
    }
    pthread_mutex_unlock(&r->lock);
    return found;
}

bool refs_pod_known(refs *r, const char *uid, const char *ns, const char *name)
{
    bool found = false;
    pthread_mutex_lock(&r->lock);
    if (*uid) {
        pod *p = *find_pod(r, uid);
        found = p && strcmp(p->ns, ns) == 0 && strcmp(p->name, name) == 0;
    }
    /* Without a uid, by name: rare (the SDK always sends it). */
    for (size_t b = 0; !*uid && b < POD_BUCKETS && !found; b++)
        for (pod *p = r->pods[b]; p && !found; p = p->next)
            found = strcmp(p->ns, ns) == 0 && strcmp(p->name, name) == 0;
    pthread_mutex_unlock(&r->lock);
    return found;
}

void refs_free(refs *r)
{
    if (!r)
        return;
    for (size_t b = 0; b < POD_BUCKETS; b++) {
        while (r->pods[b]) {
            pod *p = r->pods[b];
            r->pods[b] = p->next;
            free_pod(r, p);
        }
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}
