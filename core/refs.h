/* refs.h -- which Secrets, ConfigMaps and service accounts this node may
 * read.
 *
 * The Core callback service answers only for objects that pods bound to
 * this node reference, the rule the API server's Node authorizer applies to
 * a real kubelet. The pod reconciler records each pod's references here
 * when it learns of the pod and drops them when the pod leaves the node; the
 * callback service asks. A pod only references objects of its own
 * namespace, so a reference is a kind and a name.
 *
 * Each object carries a count of the pods referencing it: the object stays
 * readable until the last of them is gone. Thread-safe.
 */
#ifndef VKC_CORE_REFS_H
#define VKC_CORE_REFS_H

#include <stdbool.h>
#include <stddef.h>

enum ref_kind { REF_SECRET, REF_CONFIGMAP, REF_SERVICE_ACCOUNT };

typedef struct ref {
    enum ref_kind kind;
    const char *name;
} ref;

typedef struct refs refs;

refs *refs_new(void);
void refs_free(refs *r);

/* Record everything the pod uid (namespace ns, name pod) references,
 * replacing what was recorded for it before. Duplicates in list count
 * once. 0, or -1 when memory ran out (the previous record stays). */
int refs_set_pod(refs *r, const char *uid, const char *ns, const char *pod,
                 const ref *list, size_t n);
/* The pod left the node. */
void refs_drop_pod(refs *r, const char *uid);
/* Have fn(ud, uid) run each time refs_drop_pod forgets a pod, on the thread
 * that called it and outside the lock, so that what is kept per pod
 * elsewhere (service-account tokens) goes with the pod. One listener; fn
 * NULL removes it. */
void refs_on_drop(refs *r, void (*fn)(void *ud, const char *uid), void *ud);

/* True when some pod of the node references kind ns/name. */
bool refs_allowed(refs *r, enum ref_kind kind, const char *ns, const char *name);
/* True when the pod uid is on the node as ns/pod and references kind name
 * (a token request must come from the pod's own service account). */
bool refs_pod_has(refs *r, const char *uid, const char *ns, const char *pod,
                  enum ref_kind kind, const char *name);

/* True when the pod ns/pod is on the node (as uid, when uid is not
 * empty): a provider may only speak of the node's pods. */
bool refs_pod_known(refs *r, const char *uid, const char *ns, const char *pod);

/* "secret", "configmap", "serviceaccount": for messages. */
const char *ref_kind_name(enum ref_kind kind);

#endif
