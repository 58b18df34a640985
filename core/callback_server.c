/* callback_server.c -- GetSecret, GetConfigMap, RequestServiceAccountToken
 * and EmitEvent on vk_server.
 *
 * What refs allows is read from the object cache (callback_objects.h),
 * tokens come from tokens.h, and events go to the events sender; without
 * them (nothing wired yet) an allowed read or token request answers
 * UNAVAILABLE (the contract's "retry later") and events are dropped. Names
 * are logged, contents never.
 */
#include "callback_server.h"
#include "callback_objects.h"
#include "kube_client.h"
#include "tokens.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "logval.h"
#include "provider.pb-c.h"
#include "rpc.h"
#include "socket_dir.h"

#define SERVICE "/vkc.provider.v1.Core/"
#define MAX_WORKERS 16
#define STOP_GRACE_MS 1000
/* How long a token request waits for the API server, unless the
 * provider's deadline is sooner. */
#define TOKEN_WAIT_MS 10000

struct callback_server {
    vk_server *server;
    char *path;
    char *node_name;
    refs *refs;
    metric *requests;
    /* Set once after the start, read by handler threads. */
    _Atomic(objcache *) objects;
    _Atomic(events *) events;
    _Atomic(tokens *) tokens;
};

/* End the call with code (and msg) and count it. */
static void answer(callback_server *cs, vk_scall *call, const char *method, int code,
                   const char *msg, const ProtobufCMessage *reply)
{
    if (code == VK_OK)
        vk_scall_reply(call, reply);
    else
        vk_scall_finish(call, code, msg);
    metric_add(cs->requests, (const char *[]){method, vk_status_code_name(code)}, 1);
}

static void get_object(vk_scall *call, callback_server *cs, enum ref_kind kind,
                       const char *method)
{
    ProtobufCMessage *m = NULL;
    char ns_v[LOGVAL_MAX], name_v[LOGVAL_MAX];
    if (vk_scall_recv(call, &vkc__provider__v1__get_object_request__descriptor, &m) != 1) {
        answer(cs, call, method, VK_INVALID_ARGUMENT, "missing or malformed request", NULL);
        return;
    }
    Vkc__Provider__V1__GetObjectRequest *req = (Vkc__Provider__V1__GetObjectRequest *)m;

    vk_buf msg = VK_BUF_INIT, json = VK_BUF_INIT;
    Vkc__Provider__V1__GetObjectResponse resp = VKC__PROVIDER__V1__GET_OBJECT_RESPONSE__INIT;
    int code = VK_UNAVAILABLE;
    if (!req->namespace_[0] || !req->name[0]) {
        code = VK_INVALID_ARGUMENT;
        vk_buf_puts(&msg, "namespace and name are required");
    } else if (!refs_allowed(cs->refs, kind, req->namespace_, req->name)) {
        code = VK_PERMISSION_DENIED;
        vk_buf_printf(&msg, "%s %s/%s is not referenced by any pod on node %s",
                      ref_kind_name(kind), req->namespace_, req->name, cs->node_name);
    } else {
        objcache *oc = atomic_load(&cs->objects);
        switch (oc ? objcache_get_json(oc, kind, req->namespace_, req->name, &json)
                   : OBJCACHE_UNKNOWN) {
        case OBJCACHE_FOUND:
            code = VK_OK;
            resp.object_json.data = (uint8_t *)json.data;
            resp.object_json.len = json.len;
            break;
        case OBJCACHE_ABSENT:
            code = VK_NOT_FOUND;
            vk_buf_printf(&msg, "%s %s/%s not found", ref_kind_name(kind), req->namespace_,
                          req->name);
            break;
        case OBJCACHE_UNKNOWN:
            code = VK_UNAVAILABLE;
            vk_buf_printf(&msg, "the core has not read %s %s/%s from the API server yet",
                          ref_kind_name(kind), req->namespace_, req->name);
            break;
        }
    }
    answer(cs, call, method, code, msg.data, &resp.base);
    vk_debug("callback", "method=%s namespace=%s name=%s code=%s", method,
             logval(ns_v, sizeof ns_v, req->namespace_),
             logval(name_v, sizeof name_v, req->name), vk_status_code_name(code));
    vk_buf_free(&msg);
    if (json.data) /* a Secret's values: leave nothing behind */
        explicit_bzero(json.data, json.len);
    vk_buf_free(&json);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void get_secret(vk_scall *call, void *ud)
{
    get_object(call, ud, REF_SECRET, "GetSecret");
}

static void get_configmap(vk_scall *call, void *ud)
{
    get_object(call, ud, REF_CONFIGMAP, "GetConfigMap");
}

static void request_token(vk_scall *call, void *ud)
{
    callback_server *cs = ud;
    const char *method = "RequestServiceAccountToken";
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__service_account_token_request__descriptor,
                      &m) != 1) {
        answer(cs, call, method, VK_INVALID_ARGUMENT, "missing or malformed request", NULL);
        return;
    }
    Vkc__Provider__V1__ServiceAccountTokenRequest *req =
        (Vkc__Provider__V1__ServiceAccountTokenRequest *)m;
    const Vkc__Provider__V1__PodRef *pod = req->pod;

    vk_buf msg = VK_BUF_INIT;
    Vkc__Provider__V1__ServiceAccountTokenResponse resp =
        VKC__PROVIDER__V1__SERVICE_ACCOUNT_TOKEN_RESPONSE__INIT;
    char *token = NULL;
    tokens *t = atomic_load(&cs->tokens);
    int code;
    if (!pod || !pod->namespace_[0] || !pod->name[0] || !pod->uid[0] ||
        !req->service_account_name[0]) {
        code = VK_INVALID_ARGUMENT;
        vk_buf_puts(&msg, "pod namespace, name, uid and the service account are required");
    } else if (!refs_pod_has(cs->refs, pod->uid, pod->namespace_, pod->name,
                             REF_SERVICE_ACCOUNT, req->service_account_name)) {
        code = VK_PERMISSION_DENIED;
        vk_buf_printf(&msg, "pod %s/%s (uid %s) does not run on node %s under service account %s",
                      pod->namespace_, pod->name, pod->uid, cs->node_name,
                      req->service_account_name);
    } else if (!t) {
        code = VK_UNAVAILABLE;
        vk_buf_printf(&msg, "the core cannot reach the API server to request a token for "
                      "service account %s/%s", pod->namespace_, req->service_account_name);
    } else {
        token_request tr = {
            .ns = pod->namespace_,
            .pod = pod->name,
            .uid = pod->uid,
            .service_account = req->service_account_name,
            .audiences = req->audiences,
            .n_audiences = req->n_audiences,
            .expiration_seconds = req->expiration_seconds,
        };
        long left = vk_scall_deadline_left_ms(call);
        long wait = left >= 0 && left < TOKEN_WAIT_MS ? left : TOKEN_WAIT_MS;
        code = tokens_get(t, &tr, wait, &token, &resp.expiration_timestamp, &msg);
        resp.token = token;
    }
    answer(cs, call, method, code, msg.data, &resp.base);
    if (vk_log_enabled(VK_LOG_DEBUG)) {
        char ns_v[LOGVAL_MAX], pod_v[LOGVAL_MAX], sa_v[LOGVAL_MAX];
        vk_debug("callback", "method=%s namespace=%s pod=%s serviceaccount=%s code=%s", method,
                 logval(ns_v, sizeof ns_v, pod ? pod->namespace_ : ""),
                 logval(pod_v, sizeof pod_v, pod ? pod->name : ""),
                 logval(sa_v, sizeof sa_v, req->service_account_name),
                 vk_status_code_name(code));
    }
    tokens_wipe(token);
    vk_buf_free(&msg);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void emit_event(vk_scall *call, void *ud)
{
    callback_server *cs = ud;
    const char *method = "EmitEvent";
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__emit_event_request__descriptor, &m) != 1) {
        answer(cs, call, method, VK_INVALID_ARGUMENT, "missing or malformed request", NULL);
        return;
    }
    Vkc__Provider__V1__EmitEventRequest *req = (Vkc__Provider__V1__EmitEventRequest *)m;
    const Vkc__Provider__V1__PodRef *pod = req->pod;
    if (!pod || !pod->namespace_[0] || !pod->name[0] || !req->reason[0] ||
        (strcmp(req->type, "Normal") != 0 && strcmp(req->type, "Warning") != 0)) {
        answer(cs, call, method, VK_INVALID_ARGUMENT,
               "pod namespace and name, a reason and type Normal or Warning are required", NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    /* A provider speaks only of the node's pods, as the Node authorizer
     * lets a kubelet create events only about its own: otherwise a
     * compromised provider could write events on any pod of the cluster. */
    if (!refs_pod_known(cs->refs, pod->uid, pod->namespace_, pod->name)) {
        char ns_v[LOGVAL_MAX], pod_v[LOGVAL_MAX], msg[2 * LOGVAL_MAX + 64];
        snprintf(msg, sizeof msg, "pod %s/%s is not on this node",
                 logval(ns_v, sizeof ns_v, pod->namespace_), logval(pod_v, sizeof pod_v, pod->name));
        answer(cs, call, method, VK_PERMISSION_DENIED, msg, NULL);
        protobuf_c_message_free_unpacked(m, NULL);
        return;
    }
    events *ev = atomic_load(&cs->events);
    /* Queued or aggregated, or dropped and counted: never an error to the
     * provider, whose work does not depend on it. */
    if (ev)
        events_emit(ev, pod->namespace_, pod->name, pod->uid, req->type, req->reason,
                    req->message);
    if (vk_log_enabled(VK_LOG_DEBUG)) {
        char ns_v[LOGVAL_MAX], pod_v[LOGVAL_MAX], reason_v[LOGVAL_MAX];
        vk_debug(ev ? "event queued" : "event dropped", "namespace=%s pod=%s type=%s reason=%s",
                 logval(ns_v, sizeof ns_v, pod->namespace_), logval(pod_v, sizeof pod_v, pod->name),
                 req->type, logval(reason_v, sizeof reason_v, req->reason));
    }
    Vkc__Provider__V1__EmitEventResponse resp = VKC__PROVIDER__V1__EMIT_EVENT_RESPONSE__INIT;
    answer(cs, call, method, VK_OK, NULL, &resp.base);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void free_server(callback_server *cs)
{
    if (cs->server)
        vk_server_free(cs->server);
    free(cs->path);
    free(cs->node_name);
    free(cs);
}

callback_server *callback_server_start(const char *addr, const char *node_name,
                                       refs *r, metric *requests)
{
    char path_v[LOGVAL_MAX];
    callback_server *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    cs->refs = r;
    cs->requests = requests;
    cs->node_name = strdup(node_name);
    if (strncmp(addr, "unix:", 5) == 0)
        cs->path = strdup(addr + 5);
    cs->server = vk_server_new(addr, 0, MAX_WORKERS);
    if (!cs->node_name || !cs->server) {
        free_server(cs);
        return NULL;
    }
    if (cs->path && socket_accepts(cs->path)) {
        vk_error("another core serves this socket directory", "path=%s",
                 logval(path_v, sizeof path_v, cs->path));
        free_server(cs);
        return NULL;
    }
    if (cs->path)
        unlink(cs->path); /* left by a core that did not stop cleanly */
    vk_server_handle(cs->server, SERVICE "GetSecret", get_secret, cs);
    vk_server_handle(cs->server, SERVICE "GetConfigMap", get_configmap, cs);
    vk_server_handle(cs->server, SERVICE "RequestServiceAccountToken", request_token, cs);
    vk_server_handle(cs->server, SERVICE "EmitEvent", emit_event, cs);
    if (vk_server_start(cs->server) < 0) {
        free_server(cs);
        return NULL;
    }
    return cs;
}

void callback_server_serve_objects(callback_server *cs, objcache *oc, events *ev)
{
    atomic_store(&cs->objects, oc);
    atomic_store(&cs->events, ev);
}

int callback_server_serve_tokens(callback_server *cs, struct kube_client *kube)
{
    tokens *t = tokens_new(kube_client_loop(kube), kube, cs->refs);
    if (!t)
        return -1;
    atomic_store(&cs->tokens, t);
    return 0;
}

void callback_server_stop(callback_server *cs)
{
    if (!cs)
        return;
    tokens *t = atomic_load(&cs->tokens);
    /* A handler waiting for a token would hold the stop up until its
     * deadline: the loop that answers it may be gone already. */
    if (t)
        tokens_close(t);
    vk_server_stop(cs->server, STOP_GRACE_MS);
    tokens_free(t);
    if (cs->path)
        unlink(cs->path);
    free_server(cs);
}
