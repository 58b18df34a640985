/* tokens.h -- service-account tokens for the pods of this node.
 *
 * The Core service's RequestServiceAccountToken: a TokenRequest
 * (POST .../serviceaccounts/SA/token, bound to the pod) through the core's
 * API client, under the node's own identity, which the Node authorizer
 * allows for the service accounts of the node's pods. Whether the pod may
 * have the token is the caller's check (refs_pod_has); this module only
 * fetches and caches.
 *
 * Tokens are cached per (pod uid, service account, audiences, lifetime)
 * until 80% of their lifetime (or a day) has passed, as the kubelet's
 * token manager does, at most TOKENS_MAX of them (the oldest goes first),
 * and forgotten when refs drops their pod. Tokens are never logged and are
 * wiped from memory when freed.
 *
 * Threads: tokens_get is for any thread (gRPC handlers) and blocks; the
 * API client is the loop's, so the request is posted to the loop and the
 * caller waits for the answer with a deadline. tokens_new and tokens_free
 * belong to the loop thread.
 */
#ifndef VKC_CORE_TOKENS_H
#define VKC_CORE_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "refs.h"

struct ev_loop;
struct kube_client;

#define TOKENS_MAX 1024

typedef struct tokens tokens;

typedef struct token_request {
    const char *ns, *pod, *uid;
    const char *service_account;
    char *const *audiences; /* none: the API server's own */
    size_t n_audiences;
    int64_t expiration_seconds; /* 0: an hour; below ten minutes: ten */
} token_request;

/* Requests go through kube, on loop (kube's); kube and r must outlive the
 * result. NULL when memory ran out. */
tokens *tokens_new(struct ev_loop *loop, struct kube_client *kube, refs *r);
/* Once no thread is in tokens_get any more (tokens_close hurries them
 * out): cancel what is on its way to the API server, wipe the cache and
 * free. */
void tokens_free(tokens *t);
/* From any thread: make waiting and later tokens_get calls give up with
 * UNAVAILABLE, so that a stopping server is not held up by them. */
void tokens_close(tokens *t);

/* A token for req, waiting at most wait_ms for the API server. A gRPC
 * status: VK_OK with *token (free it with tokens_wipe) and *expires (Unix
 * seconds); otherwise a sentence for the provider in msg:
 * INVALID_ARGUMENT (lifetime out of range), PERMISSION_DENIED (403, with
 * the API server's reason), NOT_FOUND (no such service account or pod),
 * DEADLINE_EXCEEDED, UNAVAILABLE (anything else). */
int tokens_get(tokens *t, const token_request *req, long wait_ms, char **token,
               int64_t *expires, vk_buf *msg);
void tokens_wipe(char *token);

#endif
