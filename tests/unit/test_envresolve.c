/* test_envresolve.c -- container environments resolved the kubelet's way. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/envresolve.h"
#include "json.h"

/* JSON written with single quotes, for readability: J("{'a':'b'}"); a
 * backquote stands for a single quote. */
static char *J(const char *s)
{
    static char bufs[4][16384];
    static int next;
    char *b = bufs[next++ % 4];
    ck_assert_uint_lt(strlen(s), sizeof bufs[0]);
    for (size_t i = 0;; i++) {
        b[i] = s[i] == '\'' ? '"' : s[i] == '`' ? '\'' : s[i];
        if (!s[i])
            break;
    }
    return b;
}

/* ---- a fake API: named objects as JSON text, parsed on each lookup -------- */

typedef struct fake_object {
    const char *name;
    const char *json; /* NULL: the lookup fails (not a 404) */
} fake_object;

typedef struct fake_api {
    const fake_object *configmaps, *secrets;
    int lookups, found, released;
} fake_api;

static enum env_lookup lookup(fake_api *api, const fake_object *list, const char *ns,
                              const char *name, yajl_val *obj)
{
    ck_assert_str_eq(ns, "team");
    for (; list && list->name; list++) {
        if (strcmp(list->name, name) != 0)
            continue;
        if (!list->json)
            return ENV_LOOKUP_FAILED;
        char err[256];
        *obj = vk_json_parse(list->json, strlen(list->json), err, sizeof err);
        ck_assert_msg(*obj != NULL, "%s", err);
        api->found++;
        return ENV_FOUND;
    }
    return ENV_NOT_FOUND;
}

static enum env_lookup get_configmap(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    fake_api *api = ud;
    api->lookups++;
    return lookup(api, api->configmaps, ns, name, obj);
}

static enum env_lookup get_secret(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    fake_api *api = ud;
    api->lookups++;
    return lookup(api, api->secrets, ns, name, obj);
}

static void release(void *ud, yajl_val obj)
{
    fake_api *api = ud;
    api->released++;
    yajl_tree_free(obj);
}

/* ---- fixtures ------------------------------------------------------------ */

static fake_object configmaps[4];
static fake_object secrets[4];
static fake_api api;
static env_inputs in;
static env_result res;
static yajl_val out; /* the resolved pod, parsed */

static const env_port kube_ports[] = {{"https", 443, "TCP"}};
static const env_port redis_ports[] = {{NULL, 6379, NULL}, {"metrics", 9121, "TCP"}};
static const env_port dns_ports[] = {{"dns", 53, "UDP"}};
static const env_port other_ports[] = {{"http", 80, "TCP"}};
static const env_service services[] = {
    {"default", "kubernetes", "10.96.0.1", kube_ports, 1},
    {"team", "redis-master", "10.0.0.11", redis_ports, 2},
    {"team", "dns6", "fd00::10", dns_ports, 1},
    {"team", "headless", "None", other_ports, 1},
    {"team", "external", "", other_ports, 1},
    {"elsewhere", "other", "10.0.0.99", other_ports, 1},
};

static void setup(void)
{
    memset(configmaps, 0, sizeof configmaps);
    memset(secrets, 0, sizeof secrets);
    configmaps[0] = (fake_object){"cfg", J("{'kind':'ConfigMap','data':{'LEVEL':'debug',"
                                           "'mode':'fast','1BAD':'x','has space':'y',"
                                           "'..dots':'z','ok.dotted-name':'w'}}")};
    configmaps[1] = (fake_object){"flaky", NULL};
    /* "czNjcjN0" is "s3cr3t", "YWRtaW4=" "admin", "PSQo" "=$(". */
    secrets[0] = (fake_object){"db", J("{'kind':'Secret','type':'Opaque','data':{"
                                       "'password':'czNjcjN0','USER':'YWRtaW4=','RAW':'PSQo',"
                                       "'empty':''}}")};
    secrets[1] = (fake_object){"broken", J("{'kind':'Secret','data':{'k':'not base64!'}}")};
    api = (fake_api){configmaps, secrets, 0, 0, 0};
    in = (env_inputs){
        .get_configmap = get_configmap,
        .get_secret = get_secret,
        .release = release,
        .ud = &api,
        .services = services,
        .n_services = sizeof services / sizeof *services,
    };
    memset(&res, 0, sizeof res);
    out = NULL;
}

static void teardown(void)
{
    env_result_free(&res);
    yajl_tree_free(out);
    /* Every object handed out was given back. */
    ck_assert_int_eq(api.released, api.found);
}

/* Resolve a pod whose spec is spec_json (single-quoted), in namespace team. */
static enum env_status resolve_spec(const char *spec_json)
{
    char pod[16384];
    snprintf(pod, sizeof pod,
             "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"web\","
             "\"namespace\":\"team\",\"uid\":\"u-1\",\"labels\":{\"app\":\"web\"},"
             "\"annotations\":{\"a/b\":\"c\"}},\"spec\":%s}", J(spec_json));
    enum env_status st = env_resolve(pod, strlen(pod), &in, &res);
    ck_assert_int_eq(st, res.status);
    if (st == ENV_OK) {
        char err[256];
        out = vk_json_parse(res.pod.data, res.pod.len, err, sizeof err);
        ck_assert_msg(out != NULL, "resolved pod is not JSON: %s", err);
    }
    return st;
}

static yajl_val container(const char *list, size_t i)
{
    yajl_val l = vk_json_get(out, "spec", list, NULL);
    ck_assert(YAJL_IS_ARRAY(l));
    ck_assert_uint_lt(i, l->u.array.len);
    return l->u.array.values[i];
}

/* The value of name in container i of spec.containers, NULL when unset. */
static const char *env_of(yajl_val c, const char *name)
{
    yajl_val env = vk_json_member(c, "env");
    ck_assert(vk_json_member(c, "envFrom") == NULL);
    const char *found = NULL;
    for (size_t i = 0; YAJL_IS_ARRAY(env) && i < env->u.array.len; i++) {
        yajl_val e = env->u.array.values[i];
        ck_assert_uint_eq(e->u.object.len, 2); /* exactly name and value */
        if (!strcmp(vk_json_str(vk_json_member(e, "name"), ""), name)) {
            ck_assert_msg(!found, "%s is set twice", name);
            found = vk_json_str(vk_json_member(e, "value"), NULL);
            ck_assert_ptr_nonnull(found);
        }
    }
    return found;
}

static const char *env0(const char *name)
{
    return env_of(container("containers", 0), name);
}

/* Position of name in container 0's env. */
static size_t env_index(const char *name)
{
    yajl_val env = vk_json_member(container("containers", 0), "env");
    for (size_t i = 0; i < env->u.array.len; i++)
        if (!strcmp(vk_json_str(vk_json_get(env->u.array.values[i], "name", NULL), ""), name))
            return i;
    ck_abort_msg("%s not set", name);
    return 0;
}

static const char *arg(const char *field, size_t i)
{
    yajl_val a = vk_json_member(container("containers", 0), field);
    ck_assert(YAJL_IS_ARRAY(a) && i < a->u.array.len);
    return vk_json_str(a->u.array.values[i], NULL);
}

static void expect_warning(const char *reason, const char *message)
{
    for (size_t i = 0; i < res.n_warnings; i++)
        if (!strcmp(res.warnings[i].reason, reason) && !strcmp(res.warnings[i].message, message))
            return;
    ck_abort_msg("no warning %s: %s (%zu warnings)", reason, message, res.n_warnings);
}

static void expect_error(enum env_status st, const char *event, const char *kind,
                         const char *name, const char *message)
{
    ck_assert_int_eq(res.status, st);
    ck_assert_ptr_null(res.pod.data);
    ck_assert_str_eq(res.error.reason, "CreateContainerConfigError");
    ck_assert_str_eq(res.error_event, event);
    ck_assert_str_eq(res.error.message, message);
    if (kind) {
        ck_assert_str_eq(res.error.kind, kind);
        ck_assert_str_eq(res.error.ns, "team");
        ck_assert_str_eq(res.error.name, name);
    } else {
        ck_assert_ptr_null(res.error.kind);
    }
}

/* ---- sources -------------------------------------------------------------- */

START_TEST(literal_and_key_refs)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','image':'busybox','env':["
        "{'name':'PLAIN','value':'hello'},"
        "{'name':'EMPTY','value':''},"
        "{'name':'NOTHING'},"
        "{'name':'LEVEL','valueFrom':{'configMapKeyRef':{'name':'cfg','key':'LEVEL'}}},"
        "{'name':'PASSWORD','valueFrom':{'secretKeyRef':{'name':'db','key':'password'}}},"
        "{'name':'BLANK','valueFrom':{'secretKeyRef':{'name':'db','key':'empty'}}},"
        "{'name':'RAW','valueFrom':{'secretKeyRef':{'name':'db','key':'RAW'}}}]}]}"), ENV_OK);
    ck_assert_str_eq(env0("PLAIN"), "hello");
    ck_assert_str_eq(env0("EMPTY"), "");
    ck_assert_str_eq(env0("NOTHING"), "");
    ck_assert_str_eq(env0("LEVEL"), "debug");
    ck_assert_str_eq(env0("PASSWORD"), "s3cr3t");
    ck_assert_str_eq(env0("BLANK"), "");
    ck_assert_str_eq(env0("RAW"), "=$("); /* values from sources are not expanded */
    ck_assert_uint_eq(res.n_warnings, 0);
    /* Each object was asked for once, and given back. */
    ck_assert_int_eq(api.lookups, 2);
    ck_assert_int_eq(api.released, 2);
}
END_TEST

START_TEST(field_refs)
{
    static const char *const pod_ips[] = {"10.1.0.5", "fd00::5"};
    static const char *const host_ips[] = {"192.168.1.10"};
    in.pod_ips = pod_ips;
    in.n_pod_ips = 2;
    in.host_ips = host_ips;
    in.n_host_ips = 1;
    ck_assert_int_eq(resolve_spec(
        "{'nodeName':'vk-node','serviceAccountName':'builder','containers':[{'name':'app','env':["
        "{'name':'N','valueFrom':{'fieldRef':{'fieldPath':'metadata.name'}}},"
        "{'name':'NS','valueFrom':{'fieldRef':{'apiVersion':'v1','fieldPath':'metadata.namespace'}}},"
        "{'name':'UID','valueFrom':{'fieldRef':{'fieldPath':'metadata.uid'}}},"
        "{'name':'APP','valueFrom':{'fieldRef':{'fieldPath':'metadata.labels[`app`]'}}},"
        "{'name':'NOLABEL','valueFrom':{'fieldRef':{'fieldPath':'metadata.labels[`none`]'}}},"
        "{'name':'ANN','valueFrom':{'fieldRef':{'fieldPath':'metadata.annotations[`a/b`]'}}},"
        "{'name':'NODE','valueFrom':{'fieldRef':{'fieldPath':'spec.nodeName'}}},"
        "{'name':'SA','valueFrom':{'fieldRef':{'fieldPath':'spec.serviceAccountName'}}},"
        "{'name':'HOST','valueFrom':{'fieldRef':{'fieldPath':'status.hostIP'}}},"
        "{'name':'HOSTS','valueFrom':{'fieldRef':{'fieldPath':'status.hostIPs'}}},"
        "{'name':'IP','valueFrom':{'fieldRef':{'fieldPath':'status.podIP'}}},"
        "{'name':'IPS','valueFrom':{'fieldRef':{'fieldPath':'status.podIPs'}}}]}]}"), ENV_OK);
    ck_assert_str_eq(env0("N"), "web");
    ck_assert_str_eq(env0("NS"), "team");
    ck_assert_str_eq(env0("UID"), "u-1");
    ck_assert_str_eq(env0("APP"), "web");
    ck_assert_str_eq(env0("NOLABEL"), "");
    ck_assert_str_eq(env0("ANN"), "c");
    ck_assert_str_eq(env0("NODE"), "vk-node");
    ck_assert_str_eq(env0("SA"), "builder");
    ck_assert_str_eq(env0("HOST"), "192.168.1.10");
    ck_assert_str_eq(env0("HOSTS"), "192.168.1.10");
    ck_assert_str_eq(env0("IP"), "10.1.0.5");
    ck_assert_str_eq(env0("IPS"), "10.1.0.5,fd00::5");
}
END_TEST

START_TEST(field_refs_without_ips)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':["
        "{'name':'IP','valueFrom':{'fieldRef':{'fieldPath':'status.podIP'}}},"
        "{'name':'HOST','valueFrom':{'fieldRef':{'fieldPath':'status.hostIP'}}}]}]}"), ENV_OK);
    ck_assert_str_eq(env0("IP"), "");
    ck_assert_str_eq(env0("HOST"), "");
}
END_TEST

START_TEST(field_ref_unsupported)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':["
        "{'name':'X','valueFrom':{'fieldRef':{'fieldPath':'spec.hostname'}}}]}]}"), ENV_INVALID);
    expect_error(ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                 "field label not supported: spec.hostname");
    env_result_free(&res);
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':[{'name':'X','valueFrom':{'fieldRef':"
        "{'apiVersion':'v2','fieldPath':'metadata.name'}}}]}]}"), ENV_INVALID);
    expect_error(ENV_INVALID, "CreateContainerConfigError", NULL, NULL, "unsupported pod version: v2");
}
END_TEST

static const char *const resources_spec =
    "{'containers':["
    "{'name':'app','resources':{'limits':{'cpu':'500m','memory':'128Mi'},"
    "                           'requests':{'cpu':'250m','memory':'64Mi'}},'env':["
    "{'name':'CPU_LIMIT','valueFrom':{'resourceFieldRef':{'resource':'limits.cpu'}}},"
    "{'name':'CPU_LIMIT_M','valueFrom':{'resourceFieldRef':{'resource':'limits.cpu','divisor':'1m'}}},"
    "{'name':'CPU_REQ_M','valueFrom':{'resourceFieldRef':{'resource':'requests.cpu','divisor':'1m'}}},"
    "{'name':'MEM','valueFrom':{'resourceFieldRef':{'resource':'limits.memory'}}},"
    "{'name':'MEM_MI','valueFrom':{'resourceFieldRef':{'resource':'limits.memory','divisor':'1Mi'}}},"
    "{'name':'MEM_REQ_MI','valueFrom':{'resourceFieldRef':{'resource':'requests.memory','divisor':'1Mi'}}},"
    "{'name':'MEM_G','valueFrom':{'resourceFieldRef':{'resource':'limits.memory','divisor':'1G'}}},"
    "{'name':'ZERO_DIV','valueFrom':{'resourceFieldRef':{'resource':'limits.cpu','divisor':'0'}}},"
    "{'name':'NUM_DIV','valueFrom':{'resourceFieldRef':{'resource':'limits.memory','divisor':1024}}},"
    "{'name':'EPH','valueFrom':{'resourceFieldRef':{'resource':'limits.ephemeral-storage','divisor':'1Gi'}}},"
    "{'name':'EPH_REQ','valueFrom':{'resourceFieldRef':{'resource':'requests.ephemeral-storage'}}},"
    "{'name':'SIDE_CPU','valueFrom':{'resourceFieldRef':{'containerName':'side','resource':'limits.cpu','divisor':'1m'}}},"
    "{'name':'INIT_MEM','valueFrom':{'resourceFieldRef':{'containerName':'init','resource':'limits.memory'}}},"
    "{'name':'HUGE','valueFrom':{'resourceFieldRef':{'resource':'limits.hugepages-2Mi','divisor':'1Mi'}}}]},"
    "{'name':'side','resources':{'limits':{'cpu':'0'}}}],"
    "'initContainers':[{'name':'init'}]}";

START_TEST(resource_refs)
{
    in.alloc_cpu = "4";
    in.alloc_memory = "8Gi";
    in.alloc_ephemeral_storage = "100Gi";
    ck_assert_int_eq(resolve_spec(resources_spec), ENV_OK);
    ck_assert_str_eq(env0("CPU_LIMIT"), "1");     /* 0.5 cores round up */
    ck_assert_str_eq(env0("CPU_LIMIT_M"), "500");
    ck_assert_str_eq(env0("CPU_REQ_M"), "250");
    ck_assert_str_eq(env0("MEM"), "134217728");
    ck_assert_str_eq(env0("MEM_MI"), "128");
    ck_assert_str_eq(env0("MEM_REQ_MI"), "64");
    ck_assert_str_eq(env0("MEM_G"), "1");         /* 0.134 G rounds up */
    ck_assert_str_eq(env0("ZERO_DIV"), "1");      /* a zero divisor means 1 */
    ck_assert_str_eq(env0("NUM_DIV"), "131072");
    /* No limit: node allocatable. No request: 0. */
    ck_assert_str_eq(env0("EPH"), "100");
    ck_assert_str_eq(env0("EPH_REQ"), "0");
    /* A zero limit also defaults, for another regular container too. */
    ck_assert_str_eq(env0("SIDE_CPU"), "4000");
    /* The kubelet does not default other init containers. */
    ck_assert_str_eq(env0("INIT_MEM"), "0");
    ck_assert_str_eq(env0("HUGE"), "0");
}
END_TEST

START_TEST(resource_refs_no_allocatable)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':["
        "{'name':'CPU','valueFrom':{'resourceFieldRef':{'resource':'limits.cpu','divisor':'1m'}}},"
        "{'name':'MEM','valueFrom':{'resourceFieldRef':{'resource':'limits.memory'}}}]}]}"), ENV_OK);
    ck_assert_str_eq(env0("CPU"), "0");
    ck_assert_str_eq(env0("MEM"), "0");
}
END_TEST

START_TEST(resource_ref_errors)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':["
        "{'name':'X','valueFrom':{'resourceFieldRef':{'resource':'limits.gpu'}}}]}]}"), ENV_INVALID);
    expect_error(ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                 "unsupported container resource: limits.gpu");
    env_result_free(&res);
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','resources':{'limits':{'cpu':'lots'}},'env':["
        "{'name':'X','valueFrom':{'resourceFieldRef':{'resource':'limits.cpu'}}}]}]}"), ENV_INVALID);
    expect_error(ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                 "limits.cpu: malformed quantity \"lots\"");
    env_result_free(&res);
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':[{'name':'X','valueFrom':{'resourceFieldRef':"
        "{'containerName':'ghost','resource':'limits.cpu'}}}]}]}"), ENV_INVALID);
    expect_error(ENV_INVALID, "CreateContainerConfigError", NULL, NULL, "container ghost not found");
}
END_TEST

START_TEST(env_from_with_prefix_and_invalid_keys)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','envFrom':["
        "{'configMapRef':{'name':'cfg'}},"
        "{'prefix':'DB_','secretRef':{'name':'db'}}]}]}"), ENV_OK);
    ck_assert_str_eq(env0("LEVEL"), "debug");
    ck_assert_str_eq(env0("mode"), "fast");
    ck_assert_str_eq(env0("ok.dotted-name"), "w");
    ck_assert_str_eq(env0("DB_password"), "s3cr3t");
    ck_assert_str_eq(env0("DB_USER"), "admin");
    ck_assert_ptr_null(env0("1BAD"));
    ck_assert_ptr_null(env0("has space"));
    ck_assert_ptr_null(env0("..dots"));
    ck_assert_ptr_null(env0("password"));
    ck_assert_uint_eq(res.n_warnings, 1);
    expect_warning("InvalidEnvironmentVariableNames",
                   "Keys [..dots, 1BAD, has space] from the EnvFrom configMap team/cfg were "
                   "skipped since they are considered invalid environment variable names.");
    ck_assert_str_eq(res.warnings[0].kind, "ConfigMap");
    ck_assert_str_eq(res.warnings[0].ns, "team");
    ck_assert_str_eq(res.warnings[0].name, "cfg");
}
END_TEST

START_TEST(prefix_makes_keys_valid)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','envFrom':[{'prefix':'P_','configMapRef':{'name':'cfg'}}]}]}"),
        ENV_OK);
    ck_assert_str_eq(env0("P_1BAD"), "x");
    ck_assert_str_eq(env0("P_..dots"), "z");
    expect_warning("InvalidEnvironmentVariableNames",
                   "Keys [P_has space] from the EnvFrom configMap team/cfg were skipped since "
                   "they are considered invalid environment variable names.");
}
END_TEST

START_TEST(precedence)
{
    static const env_port ports[] = {{NULL, 80, NULL}};
    static const env_service svc[] = {{"team", "level", "10.0.0.7", ports, 1}};
    in.services = svc;
    in.n_services = 1;
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app',"
        "'env':[{'name':'mode','value':'slow'},{'name':'LEVEL_SERVICE_HOST','value':'mine'},"
        "       {'name':'X','value':'1'},{'name':'X','value':'2'}],"
        "'envFrom':[{'configMapRef':{'name':'cfg'}}]}]}"), ENV_OK);
    /* env overrides envFrom in place; service variables come last and
     * never override. */
    ck_assert_str_eq(env0("mode"), "slow");
    ck_assert_uint_lt(env_index("mode"), env_index("X"));
    ck_assert_str_eq(env0("LEVEL_SERVICE_HOST"), "mine");
    ck_assert_str_eq(env0("LEVEL_SERVICE_PORT"), "80");
    ck_assert_uint_gt(env_index("LEVEL_SERVICE_PORT"), env_index("X"));
    ck_assert_str_eq(env0("X"), "2");
    /* Declared order: envFrom keys (data order), then new env names. */
    ck_assert_uint_eq(env_index("LEVEL"), 0);
    ck_assert_uint_eq(env_index("mode"), 1);
    ck_assert_uint_lt(env_index("ok.dotted-name"), env_index("LEVEL_SERVICE_HOST"));
}
END_TEST

/* ---- missing objects -------------------------------------------------------- */

START_TEST(optional_missing)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app',"
        "'envFrom':[{'configMapRef':{'name':'nocm','optional':true}},"
        "           {'secretRef':{'name':'nosecret','optional':true}}],"
        "'env':[{'name':'A','valueFrom':{'configMapKeyRef':{'name':'nocm','key':'k','optional':true}}},"
        "       {'name':'B','valueFrom':{'configMapKeyRef':{'name':'cfg','key':'nokey','optional':true}}},"
        "       {'name':'C','valueFrom':{'secretKeyRef':{'name':'nosecret','key':'k','optional':true}}},"
        "       {'name':'D','valueFrom':{'secretKeyRef':{'name':'db','key':'nokey','optional':true}}},"
        "       {'name':'E','value':'set'}]},"
        "{'name':'second','envFrom':[{'configMapRef':{'name':'nocm','optional':true}}]}]}"), ENV_OK);
    ck_assert_ptr_null(env0("A"));
    ck_assert_ptr_null(env0("B"));
    ck_assert_ptr_null(env0("C"));
    ck_assert_ptr_null(env0("D"));
    ck_assert_str_eq(env0("E"), "set");
    expect_warning("OptionalConfigMapNotFound", "configmap \"nocm\" not found");
    expect_warning("OptionalSecretNotFound", "secret \"nosecret\" not found");
    expect_warning("OptionalConfigMapNotFound",
                   "skipping optional envvar \"A\": configmap \"nocm\" not found");
    expect_warning("OptionalConfigMapKeyNotFound",
                   "skipping optional envvar \"B\": key \"nokey\" does not exist in configmap \"cfg\"");
    expect_warning("OptionalSecretNotFound",
                   "skipping optional envvar \"C\": secret \"nosecret\" not found");
    expect_warning("OptionalSecretKeyNotFound",
                   "skipping optional envvar \"D\": key \"nokey\" does not exist in secret \"db\"");
    /* The second container's identical warning is not repeated. */
    ck_assert_uint_eq(res.n_warnings, 6);
    /* Missing objects are asked for once per call. */
    ck_assert_int_eq(api.lookups, 4);
}
END_TEST

START_TEST(mandatory_missing_configmap)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','envFrom':[{'configMapRef':{'name':'nocm'}}]}]}"),
        ENV_MISSING);
    expect_error(ENV_MISSING, "MandatoryConfigMapNotFound", "ConfigMap", "nocm",
                 "configmap \"nocm\" not found");
}
END_TEST

START_TEST(mandatory_missing_secret)
{
    ck_assert_int_eq(resolve_spec(
        "{'initContainers':[{'name':'init','env':[{'name':'P','valueFrom':{'secretKeyRef':"
        "{'name':'nosecret','key':'k','optional':false}}}]}],'containers':[{'name':'app'}]}"),
        ENV_MISSING);
    expect_error(ENV_MISSING, "MandatorySecretNotFound", "Secret", "nosecret",
                 "secret \"nosecret\" not found");
}
END_TEST

START_TEST(mandatory_missing_keys)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':[{'name':'P','valueFrom':{'secretKeyRef':"
        "{'name':'db','key':'token'}}}]}]}"), ENV_MISSING);
    expect_error(ENV_MISSING, "MandatorySecretKeyNotFound", "Secret", "db",
                 "couldn't find key token in Secret team/db");
    env_result_free(&res);
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':[{'name':'P','valueFrom':{'configMapKeyRef':"
        "{'name':'cfg','key':'nokey'}}}]}]}"), ENV_MISSING);
    expect_error(ENV_MISSING, "MandatoryConfigMapKeyNotFound", "ConfigMap", "cfg",
                 "couldn't find key nokey in ConfigMap team/cfg");
}
END_TEST

START_TEST(lookup_failure_is_retried_even_when_optional)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','envFrom':[{'configMapRef':{'name':'flaky','optional':true}}]}]}"),
        ENV_UNAVAILABLE);
    expect_error(ENV_UNAVAILABLE, "FailedToReadOptionalConfigMap", "ConfigMap", "flaky",
                 "failed to read configmap \"flaky\"");
    env_result_free(&res);
    /* No callback at all counts as a failed lookup. */
    in.get_secret = NULL;
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','env':[{'name':'P','valueFrom':{'secretKeyRef':"
        "{'name':'db','key':'password'}}}]}]}"), ENV_UNAVAILABLE);
    expect_error(ENV_UNAVAILABLE, "FailedToReadMandatorySecret", "Secret", "db",
                 "failed to read secret \"db\"");
}
END_TEST

START_TEST(bad_secret_base64)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app','envFrom':[{'secretRef':{'name':'broken'}}]}]}"), ENV_INVALID);
    expect_error(ENV_INVALID, "CreateContainerConfigError", "Secret", "broken",
                 "secret team/broken: key k is not valid base64");
    /* The message names the key, never the value. */
    ck_assert_ptr_null(strstr(res.error.message, "not base64!"));
}
END_TEST

/* ---- $(VAR) expansion ------------------------------------------------------ */

START_TEST(expansion)
{
    ck_assert_int_eq(resolve_spec(
        "{'containers':[{'name':'app',"
        "'envFrom':[{'configMapRef':{'name':'cfg'}}],"
        "'env':[{'name':'A','value':'a'},"
        "       {'name':'B','value':'$(A)-$(LEVEL)-$(LATER)-$(NOPE)'},"
        "       {'name':'ESC','value':'$$(A) $$$$ $x $ $(A'},"
        "       {'name':'SVC','value':'$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)'},"
        "       {'name':'EMPTY','value':'$()'},"
        "       {'name':'END','value':'cost: 5$'},"
        "       {'name':'SELF','value':'$(SELF)x'},"
        "       {'name':'LATER','value':'late'}],"
        "'command':['/bin/$(A)','$(LATER)','$$(A)',7],"
        "'args':['--level=$(LEVEL)','$(KUBERNETES_PORT)','$(UNKNOWN)']}]}"), ENV_OK);
    ck_assert_str_eq(env0("B"), "a-debug-$(LATER)-$(NOPE)");
    ck_assert_str_eq(env0("ESC"), "$(A) $$ $x $ $(A");
    ck_assert_str_eq(env0("SVC"), "10.96.0.1:443");
    ck_assert_str_eq(env0("EMPTY"), "$()");
    ck_assert_str_eq(env0("END"), "cost: 5$");
    ck_assert_str_eq(env0("SELF"), "$(SELF)x");
    /* command and args see the final environment, later entries included. */
    ck_assert_str_eq(arg("command", 0), "/bin/a");
    ck_assert_str_eq(arg("command", 1), "late");
    ck_assert_str_eq(arg("command", 2), "$(A)");
    ck_assert_int_eq(vk_json_int(vk_json_member(container("containers", 0), "command")
                                     ->u.array.values[3], 0), 7);
    ck_assert_str_eq(arg("args", 0), "--level=debug");
    ck_assert_str_eq(arg("args", 1), "tcp://10.96.0.1:443");
    ck_assert_str_eq(arg("args", 2), "$(UNKNOWN)");
}
END_TEST

/* ---- service links ----------------------------------------------------------- */

START_TEST(service_links_on)
{
    ck_assert_int_eq(resolve_spec("{'containers':[{'name':'app'}]}"), ENV_OK);
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_HOST"), "10.96.0.1");
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_PORT"), "443");
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_PORT_HTTPS"), "443");
    ck_assert_str_eq(env0("KUBERNETES_PORT"), "tcp://10.96.0.1:443");
    ck_assert_str_eq(env0("KUBERNETES_PORT_443_TCP"), "tcp://10.96.0.1:443");
    ck_assert_str_eq(env0("KUBERNETES_PORT_443_TCP_PROTO"), "tcp");
    ck_assert_str_eq(env0("KUBERNETES_PORT_443_TCP_PORT"), "443");
    ck_assert_str_eq(env0("KUBERNETES_PORT_443_TCP_ADDR"), "10.96.0.1");

    ck_assert_str_eq(env0("REDIS_MASTER_SERVICE_HOST"), "10.0.0.11");
    ck_assert_str_eq(env0("REDIS_MASTER_SERVICE_PORT"), "6379");
    ck_assert_str_eq(env0("REDIS_MASTER_SERVICE_PORT_METRICS"), "9121");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT"), "tcp://10.0.0.11:6379");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT_6379_TCP"), "tcp://10.0.0.11:6379");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT_6379_TCP_PROTO"), "tcp");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT_6379_TCP_PORT"), "6379");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT_6379_TCP_ADDR"), "10.0.0.11");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT_9121_TCP"), "tcp://10.0.0.11:9121");
    ck_assert_str_eq(env0("REDIS_MASTER_PORT_9121_TCP_ADDR"), "10.0.0.11");

    /* IPv6 is bracketed in URLs; protocol lower case in values, upper in names. */
    ck_assert_str_eq(env0("DNS6_SERVICE_HOST"), "fd00::10");
    ck_assert_str_eq(env0("DNS6_SERVICE_PORT_DNS"), "53");
    ck_assert_str_eq(env0("DNS6_PORT"), "udp://[fd00::10]:53");
    ck_assert_str_eq(env0("DNS6_PORT_53_UDP"), "udp://[fd00::10]:53");
    ck_assert_str_eq(env0("DNS6_PORT_53_UDP_PROTO"), "udp");
    ck_assert_str_eq(env0("DNS6_PORT_53_UDP_ADDR"), "fd00::10");

    /* Headless, ExternalName-like and other namespaces' services: nothing. */
    ck_assert_ptr_null(env0("HEADLESS_SERVICE_HOST"));
    ck_assert_ptr_null(env0("EXTERNAL_SERVICE_HOST"));
    ck_assert_ptr_null(env0("OTHER_SERVICE_HOST"));
    /* 8 for kubernetes, 3 + 2 * 4 + 1 + 1 for redis-master, 2 + 1 + 4 for dns6. */
    ck_assert_uint_eq(vk_json_member(container("containers", 0), "env")->u.array.len, 8 + 13 + 7);
}
END_TEST

START_TEST(service_links_off)
{
    ck_assert_int_eq(resolve_spec("{'enableServiceLinks':false,'containers':[{'name':'app'}]}"),
                     ENV_OK);
    /* The master service is always there; the namespace's are not. */
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_HOST"), "10.96.0.1");
    ck_assert_str_eq(env0("KUBERNETES_PORT_443_TCP_ADDR"), "10.96.0.1");
    ck_assert_ptr_null(env0("REDIS_MASTER_SERVICE_HOST"));
    ck_assert_ptr_null(env0("DNS6_PORT"));
    ck_assert_uint_eq(vk_json_member(container("containers", 0), "env")->u.array.len, 8);
}
END_TEST

START_TEST(service_named_kubernetes_in_namespace)
{
    static const env_port p1[] = {{NULL, 8080, NULL}};
    static const env_service svc[] = {
        {"default", "kubernetes", "10.96.0.1", kube_ports, 1},
        {"team", "kubernetes", "10.0.0.50", p1, 1},
    };
    in.services = svc;
    in.n_services = 2;
    ck_assert_int_eq(resolve_spec("{'containers':[{'name':'app'}]}"), ENV_OK);
    /* As in the kubelet, the namespace's own service wins the name. */
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_HOST"), "10.0.0.50");
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_PORT"), "8080");
    ck_assert_ptr_null(env0("KUBERNETES_SERVICE_PORT_HTTPS"));
    env_result_free(&res);
    yajl_tree_free(out);
    out = NULL;
    ck_assert_int_eq(resolve_spec("{'enableServiceLinks':false,'containers':[{'name':'app'}]}"),
                     ENV_OK);
    ck_assert_str_eq(env0("KUBERNETES_SERVICE_HOST"), "10.96.0.1");
}
END_TEST

START_TEST(no_services_no_env)
{
    in.services = NULL;
    in.n_services = 0;
    ck_assert_int_eq(resolve_spec("{'containers':[{'name':'app','image':'x'}]}"), ENV_OK);
    ck_assert_ptr_null(vk_json_member(container("containers", 0), "env"));
    ck_assert_str_eq(res.pod.data,
                     J("{'apiVersion':'v1','kind':'Pod','metadata':{'name':'web','namespace':'team',"
                       "'uid':'u-1','labels':{'app':'web'},'annotations':{'a/b':'c'}},"
                       "'spec':{'containers':[{'name':'app','image':'x'}]}}"));
}
END_TEST

/* ---- the rest of the pod -------------------------------------------------------- */

START_TEST(every_container_kind)
{
    ck_assert_int_eq(resolve_spec(
        "{'enableServiceLinks':false,"
        "'initContainers':[{'name':'init','env':[{'name':'I','value':'$(KUBERNETES_SERVICE_PORT)'}],"
        "                   'envFrom':[{'configMapRef':{'name':'cfg'}}]}],"
        "'containers':[{'name':'a','env':[]},{'name':'b','envFrom':[{'secretRef':{'name':'db'}}]}],"
        "'ephemeralContainers':[{'name':'debug','envFrom':[{'configMapRef':{'name':'cfg'}}]}]}"),
        ENV_OK);
    ck_assert_str_eq(env_of(container("initContainers", 0), "I"), "443");
    ck_assert_str_eq(env_of(container("initContainers", 0), "LEVEL"), "debug");
    ck_assert_str_eq(env_of(container("containers", 0), "KUBERNETES_SERVICE_HOST"), "10.96.0.1");
    ck_assert_str_eq(env_of(container("containers", 1), "USER"), "admin");
    ck_assert_str_eq(env_of(container("ephemeralContainers", 0), "mode"), "fast");
    ck_assert_int_eq(api.lookups, 2);
}
END_TEST

START_TEST(unknown_fields_preserved)
{
    const char *pod = J(
        "{'kind':'Pod','apiVersion':'v1','futureTop':{'deep':[1,2.50,-0.0e1,null,true,false,'\\u00e9']},"
        "'metadata':{'name':'web','namespace':'team','managedFields':[{'x':{}}]},"
        "'spec':{'enableServiceLinks':false,'unknownSpec':'\\u2603',"
        "'containers':[{'name':'app','futureContainer':{'a':[{}]},'env':[{'name':'A','value':'1'}],"
        "'envFrom':[],'ports':[{'containerPort':80}],'resources':{}}],"
        "'volumes':[{'name':'v','emptyDir':{}}]},"
        "'status':{'phase':'Pending','futureStatus':[[]]}}");
    in.services = NULL;
    in.n_services = 0;
    ck_assert_int_eq(env_resolve(pod, strlen(pod), &in, &res), ENV_OK);
    ck_assert_str_eq(res.pod.data, J(
        "{'kind':'Pod','apiVersion':'v1','futureTop':{'deep':[1,2.50,-0.0e1,null,true,false,'\xc3\xa9']},"
        "'metadata':{'name':'web','namespace':'team','managedFields':[{'x':{}}]},"
        "'spec':{'enableServiceLinks':false,'unknownSpec':'\xe2\x98\x83',"
        "'containers':[{'name':'app','futureContainer':{'a':[{}]},'env':[{'name':'A','value':'1'}],"
        "'ports':[{'containerPort':80}],'resources':{}}],"
        "'volumes':[{'name':'v','emptyDir':{}}]},"
        "'status':{'phase':'Pending','futureStatus':[[]]}}"));
}
END_TEST

START_TEST(malformed_pods)
{
    static const char *const bad[][2] = {
        {"{'metadata':", "pod JSON: parse error"},
        {"[1,2]", "pod JSON: not an object with a spec"},
        {"{'metadata':{'namespace':'team'}}", "pod JSON: not an object with a spec"},
        {"{'metadata':{'name':'x'},'spec':{'containers':[]}}", "pod JSON: no metadata.namespace"},
        {"{'metadata':{'namespace':'team'},'spec':{'containers':{}}}",
         "pod JSON: spec.containers is not a list"},
        {"{'metadata':{'namespace':'team'},'spec':{'containers':[{'name':'a'},'b']}}",
         "pod JSON: spec.containers[1] is not an object"},
        {"{'metadata':{'namespace':'team'},'spec':{'containers':[{'name':'a','env':[{'value':'v'}]}]}}",
         "an env entry of container \"a\" has no name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *pod = J(bad[i][0]);
        ck_assert_int_eq(env_resolve(pod, strlen(pod), &in, &res), ENV_INVALID);
        ck_assert_msg(strstr(res.error.message, bad[i][1]) != NULL, "%s: %s", bad[i][0],
                      res.error.message);
        ck_assert_str_eq(res.error.reason, "CreateContainerConfigError");
        ck_assert_ptr_null(res.pod.data);
        env_result_free(&res);
    }
    /* Not NUL-terminated bytes are fine; binary garbage is not JSON. */
    static const char garbage[] = {'\x00', '\xff', '{', '\x13'};
    ck_assert_int_eq(env_resolve(garbage, sizeof garbage, &in, &res), ENV_INVALID);
}
END_TEST

/* ---- references ------------------------------------------------------------- */

static bool has_ref(const ref *list, size_t n, enum ref_kind kind, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (list[i].kind == kind && !strcmp(list[i].name, name))
            return true;
    return false;
}

START_TEST(references)
{
    char err[256];
    const char *text = J(
        "{'metadata':{'name':'p','namespace':'team'},'spec':{'serviceAccountName':'builder',"
        "'imagePullSecrets':[{'name':'pull'},{'name':''}],"
        "'initContainers':[{'name':'i','env':[{'name':'A','valueFrom':{'secretKeyRef':{'name':'s-init','key':'k'}}}]}],"
        "'containers':[{'name':'c','env':[{'name':'B','valueFrom':{'configMapKeyRef':{'name':'cm-env','key':'k'}}},"
        "                                  {'name':'C','valueFrom':{'secretKeyRef':{'name':'pull','key':'k'}}},"
        "                                  {'name':'D','value':'x'}],"
        "               'envFrom':[{'configMapRef':{'name':'cm-from'}},{'secretRef':{'name':'s-from'}}]}],"
        "'ephemeralContainers':[{'name':'e','envFrom':[{'secretRef':{'name':'s-eph'}}]}],"
        "'volumes':[{'name':'v1','configMap':{'name':'cm-vol'}},"
        "           {'name':'v2','secret':{'secretName':'s-vol'}},"
        "           {'name':'v3','projected':{'sources':[{'configMap':{'name':'cm-proj'}},"
        "                {'secret':{'name':'s-proj'}},{'serviceAccountToken':{'path':'token'}},"
        "                {'downwardAPI':{}}]}},"
        "           {'name':'v4','csi':{'driver':'d','nodePublishSecretRef':{'name':'s-csi'}}},"
        "           {'name':'v5','rbd':{'secretRef':{'name':'s-rbd'}}},"
        "           {'name':'v6','azureFile':{'secretName':'s-az'}},"
        "           {'name':'v7','emptyDir':{}}]}}");
    yajl_val pod = vk_json_parse(text, strlen(text), err, sizeof err);
    ck_assert_ptr_nonnull(pod);
    ref *list;
    size_t n;
    ck_assert_int_eq(env_pod_refs(pod, &list, &n), 0);
    ck_assert(has_ref(list, n, REF_SECRET, "pull"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-init"));
    ck_assert(has_ref(list, n, REF_CONFIGMAP, "cm-env"));
    ck_assert(has_ref(list, n, REF_CONFIGMAP, "cm-from"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-from"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-eph"));
    ck_assert(has_ref(list, n, REF_CONFIGMAP, "cm-vol"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-vol"));
    ck_assert(has_ref(list, n, REF_CONFIGMAP, "cm-proj"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-proj"));
    ck_assert(has_ref(list, n, REF_SERVICE_ACCOUNT, "builder"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-csi"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-rbd"));
    ck_assert(has_ref(list, n, REF_SECRET, "s-az"));
    /* "pull" twice and the empty name once: each counted once, or not at all. */
    ck_assert_uint_eq(n, 14);
    free(list);
    yajl_tree_free(pod);

    /* Without a token projection the service account is not referenced;
     * with one and no name, it is "default". */
    text = J("{'spec':{'serviceAccountName':'builder','containers':[{'name':'c'}]}}");
    pod = vk_json_parse(text, strlen(text), err, sizeof err);
    ck_assert_int_eq(env_pod_refs(pod, &list, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(list);
    yajl_tree_free(pod);
    text = J("{'spec':{'volumes':[{'name':'t','projected':{'sources':[{'serviceAccountToken':{}}]}}]}}");
    pod = vk_json_parse(text, strlen(text), err, sizeof err);
    ck_assert_int_eq(env_pod_refs(pod, &list, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert(has_ref(list, n, REF_SERVICE_ACCOUNT, "default"));
    free(list);
    yajl_tree_free(pod);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("envresolve");
    TCase *tc = tcase_create("envresolve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, literal_and_key_refs);
    tcase_add_test(tc, field_refs);
    tcase_add_test(tc, field_refs_without_ips);
    tcase_add_test(tc, field_ref_unsupported);
    tcase_add_test(tc, resource_refs);
    tcase_add_test(tc, resource_refs_no_allocatable);
    tcase_add_test(tc, resource_ref_errors);
    tcase_add_test(tc, env_from_with_prefix_and_invalid_keys);
    tcase_add_test(tc, prefix_makes_keys_valid);
    tcase_add_test(tc, precedence);
    tcase_add_test(tc, optional_missing);
    tcase_add_test(tc, mandatory_missing_configmap);
    tcase_add_test(tc, mandatory_missing_secret);
    tcase_add_test(tc, mandatory_missing_keys);
    tcase_add_test(tc, lookup_failure_is_retried_even_when_optional);
    tcase_add_test(tc, bad_secret_base64);
    tcase_add_test(tc, expansion);
    tcase_add_test(tc, service_links_on);
    tcase_add_test(tc, service_links_off);
    tcase_add_test(tc, service_named_kubernetes_in_namespace);
    tcase_add_test(tc, no_services_no_env);
    tcase_add_test(tc, every_container_kind);
    tcase_add_test(tc, unknown_fields_preserved);
    tcase_add_test(tc, malformed_pods);
    tcase_add_test(tc, references);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
