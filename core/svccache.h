/* svccache.h -- the cluster's Services, as service links need them.
 *
 * The kubelet gives every container {SVC}_SERVICE_HOST, {SVC}_PORT, ...
 * variables for the services of its namespace (and `kubernetes` of
 * `default`), so the core keeps a list+watch of /api/v1/services (nodes may
 * read every Service). Only what envresolve needs is kept: namespace, name,
 * cluster IP and ports. Bounded by the reflector's item limit.
 *
 * Like the kubelet, pods are not started before the first list completed:
 * their environment would lack variables it will have on a restart.
 */
#ifndef VKC_CORE_SVCCACHE_H
#define VKC_CORE_SVCCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include "envresolve.h"
#include "kube_client.h"

typedef struct svccache svccache;

/* synced (may be NULL) runs on the loop after each complete list. */
svccache *svccache_start(struct kube_client *kube, void (*synced)(void *ud), void *ud);
void svccache_free(svccache *sc);

bool svccache_synced(const svccache *sc);
/* The services of namespace ns plus default/kubernetes, valid until
 * control returns to the loop. */
const env_service *svccache_for(svccache *sc, const char *ns, size_t *n);

#endif
