/* core_service.c -- the Core service as the suite plays it.
 *
 * It knows one ConfigMap and one Secret, the ones the test pods reference,
 * and answers PERMISSION_DENIED for anything else, as vkc-core does for
 * objects no pod of its node references. What the provider asked for is
 * remembered, so the run can check that it asked only for what its pods
 * reference. Memory is bounded: past PROBLEMS_MAX bytes of findings only
 * the counts grow.
 */
#include "conformance.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.pb-c.h"
#include "rpc.h"

#define SERVICE "/vkc.provider.v1.Core/"
#define MAX_WORKERS 8
#define MAX_PODS 16
#define PROBLEMS_MAX 4096

struct core_service {
    vk_server *server;
    char *ns, *node;
    pthread_mutex_t mu; /* guards what follows */
    size_t reads, events, denied;
    vk_buf problems, bad_events;
    char *pods[MAX_PODS];
    size_t n_pods;
};

static void note(vk_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* With the service's mutex held. */
static void note(vk_buf *b, const char *fmt, ...)
{
    if (b->len >= PROBLEMS_MAX)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    vk_buf_printf(b, "%s\n", line);
}

/* The object of that kind and name, as the API server would return it. */
static int object_json(core_service *cs, bool secret, const char *ns, const char *name,
                       vk_buf *out)
{
    if (strcmp(ns, cs->ns) != 0 || strcmp(name, secret ? CONF_SECRET : CONF_CONFIGMAP) != 0)
        return -1;
    vk_json_writer w;
    vk_jw_begin(&w, out);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "apiVersion", "v1");
    vk_jw_kv_str(&w, "kind", secret ? "Secret" : "ConfigMap");
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "namespace", ns);
    vk_jw_kv_str(&w, "name", name);
    vk_jw_kv_str(&w, "uid", secret ? "conformance-secret-uid" : "conformance-config-uid");
    vk_jw_kv_str(&w, "resourceVersion", "1");
    vk_jw_map_close(&w);
    if (secret)
        vk_jw_kv_str(&w, "type", "Opaque");
    vk_jw_str(&w, "data");
    vk_jw_map_open(&w);
    if (secret)
        vk_jw_kv_str(&w, "token", "Y29uZm9ybWFuY2U="); /* "conformance" */
    else
        vk_jw_kv_str(&w, "greeting", "hello from vkc-conformance");
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

static void get_object(vk_scall *call, core_service *cs, bool secret)
{
    const char *method = secret ? "GetSecret" : "GetConfigMap";
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__get_object_request__descriptor, &m) != 1) {
        pthread_mutex_lock(&cs->mu);
        note(&cs->problems, "%s: malformed request", method);
        pthread_mutex_unlock(&cs->mu);
        vk_scall_finish(call, VK_INVALID_ARGUMENT, "missing or malformed request");
        return;
    }
    Vkc__Provider__V1__GetObjectRequest *req = (Vkc__Provider__V1__GetObjectRequest *)m;
    vk_buf json = VK_BUF_INIT;
    bool known = object_json(cs, secret, req->namespace_, req->name, &json) == 0;
    pthread_mutex_lock(&cs->mu);
    cs->reads++;
    if (!known) {
        cs->denied++;
        note(&cs->problems, "%s %s/%s: no test pod references it", method,
             req->namespace_, req->name);
    }
    pthread_mutex_unlock(&cs->mu);
    if (known) {
        Vkc__Provider__V1__GetObjectResponse resp = VKC__PROVIDER__V1__GET_OBJECT_RESPONSE__INIT;
        resp.object_json.data = (uint8_t *)json.data;
        resp.object_json.len = json.len;
        vk_scall_reply(call, &resp.base);
    } else {
        char msg[512];
        snprintf(msg, sizeof msg, "%s %s/%s is not referenced by any pod on node %s",
                 secret ? "secret" : "configmap", req->namespace_, req->name, cs->node);
        vk_scall_finish(call, VK_PERMISSION_DENIED, msg);
    }
    vk_buf_free(&json);
    protobuf_c_message_free_unpacked(m, NULL);
}

static void get_secret(vk_scall *call, void *ud)
{
    get_object(call, ud, true);
}

static void get_configmap(vk_scall *call, void *ud)
{
    get_object(call, ud, false);
}

/* No test pod mounts a service-account token, so every request is one for
 * something unreferenced. */
static void request_token(vk_scall *call, void *ud)
{
    core_service *cs = ud;
    ProtobufCMessage *m = NULL;
    int rc = vk_scall_recv(call, &vkc__provider__v1__service_account_token_request__descriptor,
                           &m);
    Vkc__Provider__V1__ServiceAccountTokenRequest *req =
        rc == 1 ? (Vkc__Provider__V1__ServiceAccountTokenRequest *)m : NULL;
    pthread_mutex_lock(&cs->mu);
    cs->reads++;
    cs->denied++;
    note(&cs->problems, "RequestServiceAccountToken %s: no test pod uses a token volume",
         req ? req->service_account_name : "(malformed request)");
    pthread_mutex_unlock(&cs->mu);
    vk_scall_finish(call, VK_PERMISSION_DENIED,
                    "no pod on this node mounts a service-account token");
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
}

static bool upper_camel(const char *s)
{
    if (!(*s >= 'A' && *s <= 'Z'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

static void emit_event(vk_scall *call, void *ud)
{
    core_service *cs = ud;
    ProtobufCMessage *m = NULL;
    if (vk_scall_recv(call, &vkc__provider__v1__emit_event_request__descriptor, &m) != 1) {
        vk_scall_finish(call, VK_INVALID_ARGUMENT, "missing or malformed request");
        return;
    }
    Vkc__Provider__V1__EmitEventRequest *req = (Vkc__Provider__V1__EmitEventRequest *)m;
    const char *uid = req->pod ? req->pod->uid : "";
    pthread_mutex_lock(&cs->mu);
    cs->events++;
    bool ours = false;
    for (size_t i = 0; i < cs->n_pods; i++)
        ours |= strcmp(cs->pods[i], uid) == 0;
    if (strcmp(req->type, "Normal") != 0 && strcmp(req->type, "Warning") != 0)
        note(&cs->bad_events, "event %s: type %s is neither Normal nor Warning",
             req->reason, req->type);
    if (!upper_camel(req->reason))
        note(&cs->bad_events, "event reason \"%s\" is not UpperCamelCase", req->reason);
    if (!ours)
        note(&cs->bad_events, "event %s names pod uid \"%s\", not a pod of this run",
             req->reason, uid);
    pthread_mutex_unlock(&cs->mu);
    Vkc__Provider__V1__EmitEventResponse resp = VKC__PROVIDER__V1__EMIT_EVENT_RESPONSE__INIT;
    vk_scall_reply(call, &resp.base);
    protobuf_c_message_free_unpacked(m, NULL);
}

core_service *core_service_start(const char *addr, const char *ns, const char *node)
{
    core_service *cs = calloc(1, sizeof *cs);
    if (!cs)
        return NULL;
    pthread_mutex_init(&cs->mu, NULL);
    cs->ns = strdup(ns);
    cs->node = strdup(node);
    cs->server = vk_server_new(addr, 0, MAX_WORKERS);
    if (cs->ns && cs->node && cs->server) {
        vk_server_handle(cs->server, SERVICE "GetSecret", get_secret, cs);
        vk_server_handle(cs->server, SERVICE "GetConfigMap", get_configmap, cs);
        vk_server_handle(cs->server, SERVICE "RequestServiceAccountToken", request_token, cs);
        vk_server_handle(cs->server, SERVICE "EmitEvent", emit_event, cs);
        if (vk_server_start(cs->server) == 0)
            return cs;
    }
    fprintf(stderr, "vkc-conformance: cannot serve the Core service on %s\n", addr);
    core_service_stop(cs);
    return NULL;
}

void core_service_stop(core_service *cs)
{
    if (!cs)
        return;
    if (cs->server) {
        vk_server_stop(cs->server, 1000);
        vk_server_free(cs->server);
    }
    for (size_t i = 0; i < cs->n_pods; i++)
        free(cs->pods[i]);
    vk_buf_free(&cs->problems);
    vk_buf_free(&cs->bad_events);
    pthread_mutex_destroy(&cs->mu);
    free(cs->ns);
    free(cs->node);
    free(cs);
}

void core_service_add_pod(core_service *cs, const char *uid)
{
    pthread_mutex_lock(&cs->mu);
    if (cs->n_pods < MAX_PODS) {
        char *copy = strdup(uid);
        if (copy)
            cs->pods[cs->n_pods++] = copy;
    }
    pthread_mutex_unlock(&cs->mu);
}

void core_service_usage(core_service *cs, core_usage *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&cs->mu);
    out->reads = cs->reads;
    out->events = cs->events;
    out->denied = cs->denied;
    if (cs->problems.len)
        vk_buf_append(&out->problems, cs->problems.data, cs->problems.len);
    if (cs->bad_events.len)
        vk_buf_append(&out->bad_events, cs->bad_events.data, cs->bad_events.len);
    pthread_mutex_unlock(&cs->mu);
}

void core_usage_clear(core_usage *u)
{
    vk_buf_free(&u->problems);
    vk_buf_free(&u->bad_events);
}
