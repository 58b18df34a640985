/* kubelet_auth.h -- who calls the kubelet API, and may they.
 *
 * The kubelet's rules (--anonymous-auth, --authentication-token-webhook,
 * --client-ca-file, --authorization-mode):
 *
 * Authentication, first that applies:
 *   1. a client certificate verified against the client CA (tls.h): user
 *      = its common name, groups = its organizations + system:authenticated;
 *   2. a bearer token, when the token webhook is on: a TokenReview
 *      (authentication.k8s.io/v1) tells the user. A token the review
 *      refuses is 401, even with anonymous access on;
 *   3. anonymous (system:anonymous, group system:unauthenticated) when
 *      allowed, else 401.
 *
 * Authorization: AlwaysAllow, or Webhook: a SubjectAccessReview
 * (authorization.k8s.io/v1) on resource "nodes", name = the node, with a
 * subresource by path (under /stats: stats, /metrics: metrics, /logs: log,
 * /spec: spec; everything else: proxy) and a verb by method (GET and HEAD
 * get, POST create, PUT update, PATCH patch, DELETE delete). Refused is 403.
 *
 * Reviews are cached: tokens for 2 minutes (refusals 10 s, so a token just
 * created is not refused for long), decisions for 5 minutes (denials
 * 30 s), each cache 1024 entries. Tokens are kept only as salted SHA-256
 * digests and are never logged.
 *
 * A refused request is logged at warn level once per client address until
 * one of its requests succeeds again; the rest of the streak at debug.
 *
 * Everything runs on the loop of the kube_client.
 */
#ifndef VKC_CORE_KUBELET_AUTH_H
#define VKC_CORE_KUBELET_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

struct kube_client;

enum kubelet_authz_mode {
    KUBELET_AUTHZ_ALWAYS_ALLOW,
    KUBELET_AUTHZ_WEBHOOK,
};

/* "AlwaysAllow" or "Webhook". 0, or -1 for anything else. */
int kubelet_authz_mode_parse(const char *name, enum kubelet_authz_mode *mode);

typedef struct kubelet_auth_config {
    const char *node_name;
    bool anonymous;                 /* --anonymous-auth */
    bool token_webhook;             /* --authentication-token-webhook */
    enum kubelet_authz_mode mode;   /* --authorization-mode */
    /* The API server, for reviews; needed by token_webhook and Webhook.
     * Free the kubelet_auth first. */
    struct kube_client *kube;
} kubelet_auth_config;

typedef struct kubelet_auth kubelet_auth;

/* NULL with a message in err when the configuration cannot work. */
kubelet_auth *kubelet_auth_new(const kubelet_auth_config *cfg, char *err, size_t errlen);
/* Cancels pending checks; their callbacks do not run. */
void kubelet_auth_free(kubelet_auth *a);

typedef struct kubelet_auth_request {
    const char *method;          /* "GET" */
    const char *path;
    const char *authorization;   /* the Authorization header, or NULL */
    X509 *cert;                  /* the verified client certificate, or NULL */
    const char *peer;            /* the client's address, for logs */
} kubelet_auth_request;

typedef struct kubelet_auth_result {
    /* 0: allowed. 401, 403, or 500 when a SubjectAccessReview failed. */
    int status;
    char message[256];           /* for the response's Status */
} kubelet_auth_result;

typedef void (*kubelet_auth_done)(void *ud, const kubelet_auth_result *res);
typedef struct kubelet_auth_pending kubelet_auth_pending;

/* Decide about a request. When the answer is known now (a certificate with
 * AlwaysAllow, a cached review, ...), fill *res and return NULL. Otherwise
 * a review is under way: done(ud, res) runs later from the loop, exactly
 * once, unless the returned handle is cancelled first. */
kubelet_auth_pending *kubelet_auth_check(kubelet_auth *a, const kubelet_auth_request *req,
                                         kubelet_auth_result *res,
                                         kubelet_auth_done done, void *ud);
void kubelet_auth_cancel(kubelet_auth_pending *p);

/* The SubjectAccessReview attributes of a request. */
const char *kubelet_auth_subresource(const char *path);
const char *kubelet_auth_verb(const char *method);

#endif
