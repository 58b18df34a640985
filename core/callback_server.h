/* callback_server.h -- the Core service, which providers call back.
 *
 * Served on a Unix socket in the socket directory. A provider asks for a
 * Secret, a ConfigMap or a service-account token and gets it only when a
 * pod bound to this node references it (refs.h); it reports Events. Every
 * request is counted in callback_requests_total{method,code}.
 */
#ifndef VKC_CORE_CALLBACK_SERVER_H
#define VKC_CORE_CALLBACK_SERVER_H

#include "metrics.h"
#include "refs.h"

typedef struct callback_server callback_server;

/* Serve on addr ("unix:/dir/core.sock"; a stale socket file is removed
 * first). refs and requests must outlive the server. NULL (logged) when
 * the address cannot be bound, or when another core answers on it: two
 * cores for one node would fight over the provider. */
callback_server *callback_server_start(const char *addr, const char *node_name,
                                       refs *r, metric *requests);
/* Stop serving (calls in progress get a moment to finish), remove the
 * socket and free. */
void callback_server_stop(callback_server *cs);

#endif
