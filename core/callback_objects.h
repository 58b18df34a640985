/* callback_objects.h -- let the Core service answer from the object cache.
 *
 * Once given an objcache, GetSecret and GetConfigMap answer for referenced
 * objects from memory: the object (OK), NOT_FOUND when the API server has
 * none, UNAVAILABLE while its first list is still on the way. Once given
 * an events sender, EmitEvent records the provider's events on its pods.
 * Once given an API client, RequestServiceAccountToken asks the API server
 * for tokens of the node's pods (tokens.h).
 *
 * Implemented in callback_server.c; declared apart because
 * callback_server.h belongs to another module (move it there at will).
 */
#ifndef VKC_CORE_CALLBACK_OBJECTS_H
#define VKC_CORE_CALLBACK_OBJECTS_H

#include "callback_server.h"
#include "events.h"
#include "objcache.h"

/* Call right after callback_server_start, before the provider starts; both
 * must outlive the server (stop it before freeing them). */
void callback_server_serve_objects(callback_server *cs, objcache *oc, events *ev);

struct kube_client;
/* Call on the client's loop thread, like callback_server_serve_objects;
 * kube must outlive the server, whose stop frees what this made (on the
 * loop thread too). 0, or -1 when memory ran out. */
int callback_server_serve_tokens(callback_server *cs, struct kube_client *kube);

#endif
