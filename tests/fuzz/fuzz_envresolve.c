/* fuzz_envresolve.c -- env_resolve and env_pod_refs on any pod and any
 * ConfigMaps and Secrets.
 *
 * Input: the pod JSON, then any number of objects, each part separated by
 * a NUL byte (which JSON text never holds). An object answers lookups of its
 * kind ("kind": "ConfigMap" or "Secret") for its metadata.name, or for every
 * name when it has none; the name "flaky" fails to load (not a 404); other
 * names are 404s. Services, pod IPs and node allocatable are fixed.
 *
 * Checked, besides memory safety: each object is asked for once per call
 * and every object handed over is released; a resolved pod is a JSON
 * object whose containers carry no envFrom and only {name, value} string
 * env entries, and resolves again (nothing is left to look up); a failure
 * comes with a reason, an event and a message; env_pod_refs names every
 * reference.
 */
#include <string.h>

#include "envresolve.h"
#include "fuzz.h"
#include "json.h"

#define MAX_OBJECTS 8
#define MAX_LOOKUPS 64

typedef struct fake_api {
    const uint8_t *objects[MAX_OBJECTS];
    size_t lens[MAX_OBJECTS];
    size_t n_objects;
    /* "C/name" or "S/name" of every lookup, to check each is asked once. */
    char *asked[MAX_LOOKUPS];
    size_t n_asked;
    int handed, released;
} fake_api;

static void note_lookup(fake_api *api, char kind, const char *name)
{
    size_t len = strlen(name) + 3;
    char *key = malloc(len);
    FUZZ_CHECK(key != NULL);
    snprintf(key, len, "%c/%s", kind, name);
    for (size_t i = 0; i < api->n_asked; i++)
        FUZZ_CHECK(strcmp(api->asked[i], key) != 0);
    if (api->n_asked < MAX_LOOKUPS)
        api->asked[api->n_asked++] = key;
    else
        free(key);
}

static enum env_lookup lookup(fake_api *api, const char *kind, const char *ns,
                              const char *name, yajl_val *obj)
{
    FUZZ_CHECK(ns && *ns && name);
    note_lookup(api, kind[0], name);
    if (strcmp(name, "flaky") == 0)
        return ENV_LOOKUP_FAILED;
    for (size_t i = 0; i < api->n_objects; i++) {
        yajl_val v = vk_json_parse_bytes(api->objects[i], api->lens[i], NULL, 0);
        const char *k = vk_json_str(vk_json_member(v, "kind"), "");
        const char *n = vk_json_str(vk_json_get(v, "metadata", "name", NULL), NULL);
        if (YAJL_IS_OBJECT(v) && strcmp(k, kind) == 0 && (!n || strcmp(n, name) == 0)) {
            *obj = v;
            api->handed++;
            return ENV_FOUND;
        }
        yajl_tree_free(v);
    }
    return ENV_NOT_FOUND;
}

static enum env_lookup get_configmap(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    return lookup(ud, "ConfigMap", ns, name, obj);
}

static enum env_lookup get_secret(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    return lookup(ud, "Secret", ns, name, obj);
}

static void release(void *ud, yajl_val obj)
{
    fake_api *api = ud;
    api->released++;
    yajl_tree_free(obj);
}

static void forget_lookups(fake_api *api)
{
    for (size_t i = 0; i < api->n_asked; i++)
        free(api->asked[i]);
    api->n_asked = 0;
}

static const env_port kube_ports[] = {{"https", 443, "TCP"}};
static const env_port redis_ports[] = {{NULL, 6379, NULL}, {"metrics", 9121, "TCP"}};
static const env_port dns_ports[] = {{"dns", 53, "UDP"}, {"dns-tcp", 53, "TCP"}};
static const env_port web_ports[] = {{"http", 80, "TCP"}};
static const env_service services[] = {
    {"default", "kubernetes", "10.96.0.1", kube_ports, 1},
    {"default", "redis-master", "10.0.0.11", redis_ports, 2},
    {"team", "dns6", "fd00::10", dns_ports, 2},
    {"team", "headless", "None", web_ports, 1},
    {"team", "web", "10.0.0.80", web_ports, 1},
};
static const char *const pod_ips[] = {"10.244.0.5", "fd00::5"};
static const char *const host_ips[] = {"192.168.1.10"};

static void check_note(const env_note *note)
{
    FUZZ_CHECK(note->reason && *note->reason);
    FUZZ_CHECK(note->message);
    FUZZ_CHECK(!note->kind == !note->name);
}

static void check_container_list(yajl_val list)
{
    for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++) {
        yajl_val c = list->u.array.values[i];
        FUZZ_CHECK(YAJL_IS_OBJECT(c));
        FUZZ_CHECK(vk_json_member(c, "envFrom") == NULL);
        yajl_val env = vk_json_member(c, "env");
        for (size_t j = 0; YAJL_IS_ARRAY(env) && j < env->u.array.len; j++) {
            yajl_val e = env->u.array.values[j];
            FUZZ_CHECK(YAJL_IS_STRING(vk_json_member(e, "name")));
            FUZZ_CHECK(YAJL_IS_STRING(vk_json_member(e, "value")));
            FUZZ_CHECK(vk_json_member(e, "valueFrom") == NULL);
        }
    }
}

static void check_resolved(const vk_buf *pod)
{
    char err[160];
    yajl_val v = vk_json_parse(pod->data, pod->len, err, sizeof err);
    FUZZ_CHECK(YAJL_IS_OBJECT(v));
    yajl_val spec = vk_json_member(v, "spec");
    check_container_list(vk_json_member(spec, "initContainers"));
    check_container_list(vk_json_member(spec, "containers"));
    check_container_list(vk_json_member(spec, "ephemeralContainers"));
    yajl_tree_free(v);
}

static void check_refs(const uint8_t *pod_json, size_t len)
{
    yajl_val pod = vk_json_parse_bytes(pod_json, len, NULL, 0);
    if (!pod)
        return;
    ref *list = NULL;
    size_t n = 0;
    FUZZ_CHECK(env_pod_refs(pod, &list, &n) == 0);
    FUZZ_CHECK(!n == !list);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK(list[i].name != NULL);
        FUZZ_CHECK(list[i].kind == REF_SECRET || list[i].kind == REF_CONFIGMAP ||
                   list[i].kind == REF_SERVICE_ACCOUNT);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(list[j].kind != list[i].kind || strcmp(list[j].name, list[i].name) != 0);
    }
    free(list);
    yajl_tree_free(pod);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_input in = {data, size};
    const uint8_t *pod;
    size_t pod_len;
    fake_api api = {.n_objects = 0};
    fuzz_part(&in, 0, &pod, &pod_len);
    while (api.n_objects < MAX_OBJECTS &&
           fuzz_part(&in, 0, &api.objects[api.n_objects], &api.lens[api.n_objects]))
        api.n_objects++;

    env_inputs inputs = {
        .get_configmap = get_configmap,
        .get_secret = get_secret,
        .release = release,
        .ud = &api,
        .services = services,
        .n_services = sizeof services / sizeof services[0],
        .pod_ips = pod_ips,
        .n_pod_ips = 2,
        .host_ips = host_ips,
        .n_host_ips = 1,
        .alloc_cpu = "4",
        .alloc_memory = "15Gi",
        .alloc_ephemeral_storage = "100Gi",
    };
    env_result res;
    enum env_status st = env_resolve((const char *)pod, pod_len, &inputs, &res);
    FUZZ_CHECK(st == res.status);
    FUZZ_CHECK(api.handed == api.released);
    forget_lookups(&api);
    for (size_t i = 0; i < res.n_warnings; i++)
        check_note(&res.warnings[i]);
    if (st == ENV_OK) {
        FUZZ_CHECK(res.pod.data != NULL);
        check_resolved(&res.pod);
        /* Everything was looked up: the result resolves with no lookups. */
        env_inputs none = inputs;
        none.get_configmap = NULL;
        none.get_secret = NULL;
        env_result again;
        enum env_status st2 = env_resolve(res.pod.data, res.pod.len, &none, &again);
        if (st2 != ENV_OK)
            fprintf(stderr, "resolved pod does not resolve again: %d %s: %s\n", st2,
                    again.error.reason ? again.error.reason : "",
                    again.error.message ? again.error.message : "");
        FUZZ_CHECK(st2 == ENV_OK);
        check_resolved(&again.pod);
        env_result_free(&again);
    } else {
        FUZZ_CHECK(st == ENV_MISSING || st == ENV_UNAVAILABLE || st == ENV_INVALID);
        FUZZ_CHECK(res.pod.data == NULL);
        check_note(&res.error);
        FUZZ_CHECK(res.error_event && *res.error_event);
    }
    env_result_free(&res);
    check_refs(pod, pod_len);
    return 0;
}
