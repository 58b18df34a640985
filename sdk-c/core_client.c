/* core_client.c -- the provider's calls to the Core callback service.
 *
 * The channel opens on first use, to the target the core named in its last
 * handshake, or to $VKC_CORE_TARGET before any handshake. A handshake that
 * names another target replaces the channel; calls still running on the old
 * one hold a reference and the last of them closes it.
 */
#include "provider_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* The core answers from its caches or fails fast; seconds are plenty. */
#define CORE_TIMEOUT_MS 5000

struct core_conn {
    vk_channel *ch;
    int refs; /* calls in flight, plus one while it is the current channel */
};

int core_init(struct core_client *c)
{
    memset(c, 0, sizeof *c);
    const char *env = getenv("VKC_CORE_TARGET");
    if (env != NULL && env[0] != '\0' && (c->target = strdup(env)) == NULL)
        return -1;
    pthread_mutex_init(&c->mu, NULL);
    return 0;
}

/* Drop one reference; close the channel after the last. Called under mu;
 * returns the channel to close once mu is released, or NULL. */
static vk_channel *unref(struct core_conn *conn)
{
    if (--conn->refs > 0)
        return NULL;
    vk_channel *ch = conn->ch;
    free(conn);
    return ch;
}

void core_destroy(struct core_client *c)
{
    if (c->conn != NULL) {
        vk_channel *ch = unref(c->conn);
        if (ch != NULL)
            vk_channel_close(ch);
    }
    free(c->target);
    pthread_mutex_destroy(&c->mu);
}

int core_set_target(struct core_client *c, const char *target)
{
    vk_channel *old = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->target == NULL || strcmp(c->target, target) != 0) {
        char *copy = strdup(target);
        if (copy == NULL) {
            pthread_mutex_unlock(&c->mu);
            return -1;
        }
        free(c->target);
        c->target = copy;
        if (c->conn != NULL)
            old = unref(c->conn);
        c->conn = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (old != NULL)
        vk_channel_close(old);
    return 0;
}

/* The current channel with a reference taken, opened if need be; NULL with
 * st set when there is none. */
static struct core_conn *acquire(struct core_client *c, vk_status *st)
{
    pthread_mutex_lock(&c->mu);
    if (c->conn == NULL && c->target != NULL) {
        struct core_conn *conn = calloc(1, sizeof *conn);
        if (conn != NULL && (conn->ch = vk_channel_open(c->target, 0)) != NULL) {
            conn->refs = 1;
            c->conn = conn;
        } else {
            free(conn);
            vk_status_set(st, VK_UNAVAILABLE, "cannot open a channel to the core at %s",
                          c->target);
        }
    } else if (c->conn == NULL) {
        vk_status_set(st, VK_UNAVAILABLE,
                      "the core's address is not known yet: no handshake happened");
    }
    struct core_conn *conn = c->conn;
    if (conn != NULL)
        conn->refs++;
    pthread_mutex_unlock(&c->mu);
    return conn;
}

static void release(struct core_client *c, struct core_conn *conn)
{
    pthread_mutex_lock(&c->mu);
    vk_channel *ch = unref(conn);
    pthread_mutex_unlock(&c->mu);
    if (ch != NULL)
        vk_channel_close(ch);
}

static int core_call(vk_provider *p, const char *method, const ProtobufCMessage *req,
                     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                     vk_status *st)
{
    struct core_conn *conn = acquire(&p->core, st);
    if (conn == NULL)
        return VK_UNAVAILABLE;
    char path[64];
    snprintf(path, sizeof path, "/vkc.provider.v1.Core/%s", method);
    int code = vk_unary(conn->ch, path, req, resp_desc, CORE_TIMEOUT_MS, resp, st);
    release(&p->core, conn);
    if (code != VK_OK)
        vk_debug("core call failed", "method=%s code=%s", method, vk_status_code_name(code));
    return code;
}

static int get_object(vk_provider *p, const char *method, const char *ns, const char *name,
                      vk_buf *out, vk_status *st)
{
    Vkc__Provider__V1__GetObjectRequest req = VKC__PROVIDER__V1__GET_OBJECT_REQUEST__INIT;
    req.namespace_ = (char *)ns;
    req.name = (char *)name;
    ProtobufCMessage *m = NULL;
    int code = core_call(p, method, &req.base, &vkc__provider__v1__get_object_response__descriptor,
                         &m, st);
    if (code != VK_OK)
        return code;
    const Vkc__Provider__V1__GetObjectResponse *resp = (const void *)m;
    if (vk_buf_append(out, resp->object_json.data, resp->object_json.len) < 0) {
        vk_status_set(st, VK_INTERNAL, "out of memory");
        code = VK_INTERNAL;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

int vk_core_get_secret(vk_provider *p, const char *ns, const char *name,
                       vk_buf *out, vk_status *st)
{
    return get_object(p, "GetSecret", ns, name, out, st);
}

int vk_core_get_configmap(vk_provider *p, const char *ns, const char *name,
                          vk_buf *out, vk_status *st)
{
    return get_object(p, "GetConfigMap", ns, name, out, st);
}

int vk_core_service_account_token(vk_provider *p, const char *ns, const char *pod,
                                  const char *uid, const char *service_account,
                                  const char *const *audiences, size_t n_audiences,
                                  int64_t expiration_seconds, vk_buf *token,
                                  int64_t *expires_at, vk_status *st)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)ns;
    ref.name = (char *)pod;
    ref.uid = (char *)(uid ? uid : "");
    Vkc__Provider__V1__ServiceAccountTokenRequest req =
        VKC__PROVIDER__V1__SERVICE_ACCOUNT_TOKEN_REQUEST__INIT;
    req.pod = &ref;
    req.service_account_name = (char *)service_account;
    req.n_audiences = n_audiences;
    req.audiences = (char **)audiences;
    req.expiration_seconds = expiration_seconds;
    ProtobufCMessage *m = NULL;
    int code = core_call(p, "RequestServiceAccountToken", &req.base,
                         &vkc__provider__v1__service_account_token_response__descriptor, &m, st);
    if (code != VK_OK)
        return code;
    const Vkc__Provider__V1__ServiceAccountTokenResponse *resp = (const void *)m;
    if (vk_buf_puts(token, resp->token) < 0) {
        vk_status_set(st, VK_INTERNAL, "out of memory");
        code = VK_INTERNAL;
    } else if (expires_at != NULL) {
        *expires_at = resp->expiration_timestamp;
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return code;
}

int vk_core_emit_event(vk_provider *p, const char *ns, const char *pod,
                       const char *uid, const char *type, const char *reason,
                       const char *message)
{
    Vkc__Provider__V1__PodRef ref = VKC__PROVIDER__V1__POD_REF__INIT;
    ref.namespace_ = (char *)ns;
    ref.name = (char *)pod;
    ref.uid = (char *)(uid ? uid : "");
    Vkc__Provider__V1__EmitEventRequest req = VKC__PROVIDER__V1__EMIT_EVENT_REQUEST__INIT;
    req.pod = &ref;
    req.type = (char *)type;
    req.reason = (char *)reason;
    req.message = (char *)(message ? message : "");
    ProtobufCMessage *m = NULL;
    int code = core_call(p, "EmitEvent", &req.base,
                         &vkc__provider__v1__emit_event_response__descriptor, &m, NULL);
    if (code == VK_OK)
        protobuf_c_message_free_unpacked(m, NULL);
    return code;
}
