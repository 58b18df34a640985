/* objcache.h -- the Secrets and ConfigMaps that pods of the node reference,
 * kept in memory, each by a watch of its own.
 *
 * The API server's Node authorizer lets a node read a Secret or ConfigMap
 * only by name, and only while a pod bound to it references the object:
 * get, or list+watch with fieldSelector=metadata.name=NAME. So there is no
 * watch of a whole namespace here: each referenced object gets a reflector
 * over /api/v1/namespaces/NS/{secrets,configmaps}?fieldSelector=
 * metadata.name=NAME, started when the first pod references it
 * (objcache_hold) and stopped when the last reference goes
 * (objcache_release). Memory is bounded by the number of references.
 *
 * Reads are served from memory, synchronously: on the loop (env
 * resolution, as a parsed tree) or from any thread (the Core service, as
 * JSON). Until an object's first list completed its state is unknown;
 * afterwards it is found or absent. The listener learns of every change,
 * first list included, so a pod waiting for an object is retried when it
 * appears.
 */
#ifndef VKC_CORE_OBJCACHE_H
#define VKC_CORE_OBJCACHE_H

#include <stddef.h>

#include <yajl/yajl_tree.h>

#include "buf.h"
#include "kube_client.h"
#include "metrics.h"
#include "refs.h"

typedef struct objcache objcache;

enum objcache_state {
    OBJCACHE_UNKNOWN,  /* not held, or its first list has not completed */
    OBJCACHE_FOUND,
    OBJCACHE_ABSENT,   /* the API server has no such object (now) */
};

/* kind is REF_SECRET or REF_CONFIGMAP. Runs on the loop. */
typedef void (*objcache_change_fn)(void *ud, enum ref_kind kind, const char *ns,
                                   const char *name);

/* On the loop thread. metrics may be NULL. NULL when memory ran out. */
objcache *objcache_new(struct kube_client *kube, metrics *m);
/* Set the one listener (before the first hold). */
void objcache_listen(objcache *oc, objcache_change_fn fn, void *ud);
/* Stop every watch and free, on the loop thread, after every reader (the
 * Core service) stopped, before the kube client. */
void objcache_free(objcache *oc);

/* Count one more reference to kind ns/name (REF_SECRET or REF_CONFIGMAP;
 * other kinds are ignored), starting its watch on the first. Loop thread.
 * 0, or -1 when memory ran out. */
int objcache_hold(objcache *oc, enum ref_kind kind, const char *ns, const char *name);
/* Drop one reference; the last stops the watch and forgets the object. */
void objcache_release(objcache *oc, enum ref_kind kind, const char *ns, const char *name);

/* Loop thread: the object as parsed, owned by the cache and valid until
 * control returns to the loop. *obj is NULL unless found. */
enum objcache_state objcache_lookup(objcache *oc, enum ref_kind kind, const char *ns,
                                    const char *name, yajl_val *obj);
/* Any thread: the object's JSON appended to out when found. Memory
 * running out reads as OBJCACHE_UNKNOWN. */
enum objcache_state objcache_get_json(objcache *oc, enum ref_kind kind, const char *ns,
                                      const char *name, vk_buf *out);

#endif
