/* test_pod.c -- the pod model: parsing, quantities, status JSON, splicing,
 * and the yajl helpers underneath. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "pod.h"

/* Fixtures are written with ' for " so they stay readable; no fixture needs
 * a real apostrophe. The result is malloc'd. */
static char *J(const char *s)
{
    char *d = strdup(s);
    ck_assert_ptr_nonnull(d);
    for (char *p = d; *p; p++)
        if (*p == '\'')
            *p = '"';
    return d;
}

static vk_pod *parse_ok(const char *tmpl)
{
    char *doc = J(tmpl);
    char err[256] = "";
    vk_pod *pod = vk_pod_parse(doc, strlen(doc), err, sizeof err);
    free(doc);
    ck_assert_msg(pod != NULL, "parse failed: %s", err);
    return pod;
}

/* Parses text as given (no ' translation) and expects failure; the error
 * message must start with want. */
static void parse_fails(const char *text, size_t len, const char *want)
{
    char err[256] = "";
    vk_pod *pod = vk_pod_parse(text, len, err, sizeof err);
    ck_assert_msg(pod == NULL, "parsed: %.60s", text);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "error \"%s\", want \"%s...\"",
                  err, want);
}

static const char *kv_get(const vk_kv *kv, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

/* ---- a realistic pod -------------------------------------------------------- */

/* As the API server serves it: managedFields, ownerReferences, status and
 * all the fields the view does not hold. */
static const char full_pod[] =
    "{'kind':'Pod','apiVersion':'v1',"
    "'metadata':{'name':'web-1','namespace':'shop',"
    " 'uid':'0c8f6f8e-5b7a-4a53-9d1e-2f1f3c1f0a11','resourceVersion':'12345',"
    " 'creationTimestamp':'2026-11-28T09:00:00Z',"
    " 'deletionTimestamp':'2026-11-28T09:10:00Z','deletionGracePeriodSeconds':30,"
    " 'labels':{'app':'web','tier':'frontend','pod-template-hash':'7d9f'},"
    " 'annotations':{'kubernetes.io/psp':'restricted','note':'caf\\u00e9 \\\"q\\\"'},"
    " 'ownerReferences':[{'apiVersion':'apps/v1','kind':'ReplicaSet','name':'web-7d9f',"
    "   'uid':'1a2b','controller':true,'blockOwnerDeletion':true}],"
    " 'managedFields':[{'manager':'kube-controller-manager','operation':'Update',"
    "   'apiVersion':'v1','time':'2026-11-28T09:00:00Z','fieldsType':'FieldsV1',"
    "   'fieldsV1':{'f:metadata':{'f:labels':{'.':{},'f:app':{}}}}}]},"
    "'spec':{"
    " 'volumes':["
    "  {'name':'cfg','configMap':{'name':'web-config','defaultMode':420}},"
    "  {'name':'creds','secret':{'secretName':'web-creds','optional':true}},"
    "  {'name':'scratch','emptyDir':{'medium':'Memory','sizeLimit':'64Mi'}},"
    "  {'name':'logs','hostPath':{'path':'/var/log','type':'Directory'}},"
    "  {'name':'data','persistentVolumeClaim':{'claimName':'web-data','readOnly':true}},"
    "  {'name':'kube-api-access-x','projected':{'sources':[{'serviceAccountToken':"
    "    {'expirationSeconds':3607,'path':'token'}}],'defaultMode':420}},"
    "  {'name':'podinfo','downwardAPI':{'items':[{'path':'labels',"
    "    'fieldRef':{'fieldPath':'metadata.labels'}}]}}],"
    " 'initContainers':[{'name':'migrate','image':'busybox:1.36',"
    "   'command':['sh','-c','echo migrate'],'resources':{},"
    "   'terminationMessagePath':'/dev/termination-log','imagePullPolicy':'IfNotPresent'}],"
    " 'containers':["
    "  {'name':'app','image':'nginx:1.25','command':['nginx'],'args':['-g','daemon off;'],"
    "   'workingDir':'/srv',"
    "   'ports':[{'name':'http','containerPort':80,'protocol':'TCP'},"
    "            {'containerPort':53,'hostPort':5353,'protocol':'UDP'}],"
    "   'env':[{'name':'MODE','value':'prod'},"
    "          {'name':'PASSWORD','valueFrom':{'secretKeyRef':{'name':'web-creds','key':'pw'}}},"
    "          {'name':'EMPTY'}],"
    "   'resources':{'limits':{'cpu':'1','memory':'256Mi'},"
    "                'requests':{'cpu':'250m','memory':'128Mi'}},"
    "   'volumeMounts':[{'name':'cfg','mountPath':'/etc/web','readOnly':true},"
    "                   {'name':'scratch','mountPath':'/tmp','subPath':'t'}],"
    "   'terminationMessagePolicy':'File','imagePullPolicy':'Always',"
    "   'tty':true,'stdin':true},"
    "  {'name':'sidecar','image':'busybox:1.36','args':['sleep','3600']}],"
    " 'restartPolicy':'OnFailure','terminationGracePeriodSeconds':30,"
    " 'dnsPolicy':'ClusterFirst','serviceAccountName':'web','nodeName':'vk-node-1',"
    " 'hostname':'web-1','hostNetwork':true,"
    " 'imagePullSecrets':[{'name':'regcred'},{'name':'other'}],"
    " 'securityContext':{},'schedulerName':'default-scheduler',"
    " 'tolerations':[{'key':'virtual-kubelet.io/provider','operator':'Exists',"
    "   'effect':'NoSchedule'}],"
    " 'priority':0,'enableServiceLinks':true,'preemptionPolicy':'PreemptLowerPriority'},"
    "'status':{'phase':'Running','hostIP':'10.0.0.1','podIP':'10.1.0.5',"
    " 'startTime':'2026-11-28T09:00:01Z','qosClass':'Burstable'}}";

START_TEST(full_pod_metadata_and_spec)
{
    vk_pod *pod = parse_ok(full_pod);
    ck_assert_str_eq(pod->namespace, "shop");
    ck_assert_str_eq(pod->name, "web-1");
    ck_assert_str_eq(pod->uid, "0c8f6f8e-5b7a-4a53-9d1e-2f1f3c1f0a11");
    ck_assert_str_eq(pod->resource_version, "12345");
    ck_assert_str_eq(pod->node_name, "vk-node-1");
    ck_assert_str_eq(pod->restart_policy, "OnFailure");
    ck_assert_str_eq(pod->service_account_name, "web");
    ck_assert_str_eq(pod->hostname, "web-1");
    ck_assert_str_eq(pod->phase, "Running");
    ck_assert(pod->host_network);
    ck_assert(pod->deleting);
    ck_assert_int_eq(pod->deletion_grace_seconds, 30);

    ck_assert_uint_eq(pod->n_labels, 3);
    ck_assert_str_eq(kv_get(pod->labels, pod->n_labels, "app"), "web");
    ck_assert_str_eq(kv_get(pod->labels, pod->n_labels, "pod-template-hash"), "7d9f");
    ck_assert_uint_eq(pod->n_annotations, 2);
    ck_assert_str_eq(kv_get(pod->annotations, pod->n_annotations, "note"),
                     "caf\xc3\xa9 \"q\"");

    ck_assert_uint_eq(pod->n_image_pull_secrets, 2);
    ck_assert_str_eq(pod->image_pull_secrets[0], "regcred");
    ck_assert_str_eq(pod->image_pull_secrets[1], "other");

    char key[64];
    vk_pod_key(pod, key, sizeof key);
    ck_assert_str_eq(key, "shop/web-1");
    vk_pod_key(pod, key, 5);
    ck_assert_str_eq(key, "shop");

    /* The document itself stays, NUL-terminated, for fields not in the view. */
    char *doc = J(full_pod);
    ck_assert_uint_eq(pod->json_len, strlen(doc));
    ck_assert_str_eq(pod->json, doc);
    free(doc);
    vk_pod_free(pod);
}
END_TEST

START_TEST(full_pod_containers)
{
    vk_pod *pod = parse_ok(full_pod);
    ck_assert_uint_eq(pod->n_containers, 2);
    ck_assert_uint_eq(pod->n_init_containers, 1);

    const vk_container *c = &pod->containers[0];
    ck_assert_str_eq(c->name, "app");
    ck_assert_str_eq(c->image, "nginx:1.25");
    ck_assert_str_eq(c->image_pull_policy, "Always");
    ck_assert_str_eq(c->working_dir, "/srv");
    ck_assert_uint_eq(c->n_command, 1);
    ck_assert_str_eq(c->command[0], "nginx");
    ck_assert_uint_eq(c->n_args, 2);
    ck_assert_str_eq(c->args[1], "daemon off;");
    ck_assert(c->tty);
    ck_assert(c->stdin_open);

    ck_assert_uint_eq(c->n_ports, 2);
    ck_assert_str_eq(c->ports[0].name, "http");
    ck_assert_int_eq(c->ports[0].container_port, 80);
    ck_assert_int_eq(c->ports[0].host_port, 0);
    ck_assert_str_eq(c->ports[0].protocol, "TCP");
    ck_assert_ptr_null(c->ports[1].name);
    ck_assert_int_eq(c->ports[1].container_port, 53);
    ck_assert_int_eq(c->ports[1].host_port, 5353);
    ck_assert_str_eq(c->ports[1].protocol, "UDP");

    ck_assert_uint_eq(c->n_mounts, 2);
    ck_assert_str_eq(c->mounts[0].name, "cfg");
    ck_assert_str_eq(c->mounts[0].mount_path, "/etc/web");
    ck_assert_ptr_null(c->mounts[0].sub_path);
    ck_assert(c->mounts[0].read_only);
    ck_assert_str_eq(c->mounts[1].sub_path, "t");
    ck_assert(!c->mounts[1].read_only);

    ck_assert_str_eq(c->resources.cpu_request, "250m");
    ck_assert_str_eq(c->resources.cpu_limit, "1");
    ck_assert_str_eq(c->resources.memory_request, "128Mi");
    ck_assert_str_eq(c->resources.memory_limit, "256Mi");
    ck_assert_int_eq(c->resources.cpu_request_milli, 250);
    ck_assert_int_eq(c->resources.cpu_limit_milli, 1000);
    ck_assert_int_eq(c->resources.memory_request_bytes, 128 << 20);
    ck_assert_int_eq(c->resources.memory_limit_bytes, 256 << 20);

    const vk_container *side = &pod->containers[1];
    ck_assert_str_eq(side->name, "sidecar");
    ck_assert_uint_eq(side->n_command, 0);
    ck_assert_ptr_null(side->command);
    ck_assert_ptr_null(side->image_pull_policy);
    ck_assert(!side->tty);
    ck_assert_int_eq(side->resources.cpu_request_milli, -1);
    ck_assert_int_eq(side->resources.memory_limit_bytes, -1);
    ck_assert_ptr_null(side->resources.cpu_request);

    const vk_container *init = &pod->init_containers[0];
    ck_assert_str_eq(init->name, "migrate");
    ck_assert_uint_eq(init->n_command, 3);
    ck_assert_str_eq(init->command[2], "echo migrate");

    ck_assert_ptr_eq(vk_pod_container(pod, "sidecar"), side);
    ck_assert_ptr_eq(vk_pod_container(pod, "migrate"), init);
    ck_assert_ptr_null(vk_pod_container(pod, "nope"));
    ck_assert_ptr_null(vk_pod_container(pod, NULL));
    vk_pod_free(pod);
}
END_TEST

START_TEST(env_value_from)
{
    vk_pod *pod = parse_ok(full_pod);
    const vk_container *c = &pod->containers[0];
    ck_assert_uint_eq(c->n_env, 3);
    ck_assert_str_eq(c->env[0].name, "MODE");
    ck_assert_str_eq(c->env[0].value, "prod");
    /* Left for the core to resolve: the provider sees NULL, not a guess. */
    ck_assert_str_eq(c->env[1].name, "PASSWORD");
    ck_assert_ptr_null(c->env[1].value);
    /* Neither value nor valueFrom: Kubernetes sets it empty. */
    ck_assert_str_eq(c->env[2].name, "EMPTY");
    ck_assert_str_eq(c->env[2].value, "");
    vk_pod_free(pod);

    pod = parse_ok("{'metadata':{'name':'p'},'spec':{'containers':[{'name':'c','env':["
                   "{'name':'A','value':'x','valueFrom':{}},{'value':'no name'},"
                   "{'name':'N','value':7},'junk',{'name':'B','value':''}]}]}}");
    c = &pod->containers[0];
    ck_assert_uint_eq(c->n_env, 3);
    ck_assert_str_eq(c->env[0].value, "x");
    ck_assert_str_eq(c->env[1].name, "N");
    ck_assert_str_eq(c->env[1].value, ""); /* not a string: as if absent */
    ck_assert_str_eq(c->env[2].name, "B");
    ck_assert_str_eq(c->env[2].value, "");
    vk_pod_free(pod);
}
END_TEST

START_TEST(volume_types)
{
    vk_pod *pod = parse_ok(full_pod);
    static const struct {
        const char *name, *type, *source;
    } want[] = {
        {"cfg", "configMap", "web-config"},
        {"creds", "secret", "web-creds"},
        {"scratch", "emptyDir", NULL},
        {"logs", "hostPath", "/var/log"},
        {"data", "persistentVolumeClaim", "web-data"},
        {"kube-api-access-x", "projected", NULL},
        {"podinfo", "downwardAPI", NULL},
    };
    ck_assert_uint_eq(pod->n_volumes, sizeof want / sizeof want[0]);
    for (size_t i = 0; i < pod->n_volumes; i++) {
        ck_assert_str_eq(pod->volumes[i].name, want[i].name);
        ck_assert_str_eq(pod->volumes[i].type, want[i].type);
        ck_assert_pstr_eq(pod->volumes[i].source, want[i].source);
    }
    vk_pod_free(pod);

    /* Name first or last, no source, a source that is not an object, a
     * volume without a name, and a future source type. */
    pod = parse_ok("{'metadata':{'name':'p'},'spec':{'containers':[{'name':'c'}],"
                   "'volumes':[{'emptyDir':{},'name':'a'},{'name':'b'},"
                   "{'name':'c','secret':'x','configMap':{'name':'cm'}},"
                   "{'secret':{'secretName':'s'}},{'name':'d','csi':{'driver':'x'}},"
                   "{'name':'e','secret':{'secretName':5}}]}}");
    ck_assert_uint_eq(pod->n_volumes, 5);
    ck_assert_str_eq(pod->volumes[0].name, "a");
    ck_assert_str_eq(pod->volumes[0].type, "emptyDir");
    ck_assert_ptr_null(pod->volumes[1].type);
    ck_assert_str_eq(pod->volumes[2].type, "configMap");
    ck_assert_str_eq(pod->volumes[2].source, "cm");
    ck_assert_str_eq(pod->volumes[3].type, "csi");
    ck_assert_ptr_null(pod->volumes[3].source);
    ck_assert_str_eq(pod->volumes[4].type, "secret");
    ck_assert_ptr_null(pod->volumes[4].source);
    vk_pod_free(pod);
}
END_TEST

START_TEST(defaults)
{
    vk_pod *pod = parse_ok("{'metadata':{'name':'p'},'spec':{'containers':[{'name':'c',"
                           "'ports':[{'containerPort':8080}]}]}}");
    ck_assert_str_eq(pod->namespace, "default");
    ck_assert_str_eq(pod->restart_policy, "Always");
    ck_assert_ptr_null(pod->uid);
    ck_assert_ptr_null(pod->resource_version);
    ck_assert_ptr_null(pod->node_name);
    ck_assert_ptr_null(pod->phase);
    ck_assert(!pod->deleting);
    ck_assert(!pod->host_network);
    ck_assert_int_eq(pod->deletion_grace_seconds, -1);
    ck_assert_uint_eq(pod->n_labels, 0);
    ck_assert_ptr_null(pod->labels);
    ck_assert_uint_eq(pod->n_volumes, 0);
    ck_assert_uint_eq(pod->n_init_containers, 0);
    ck_assert_ptr_null(pod->init_containers);
    ck_assert_uint_eq(pod->n_image_pull_secrets, 0);
    const vk_container *c = &pod->containers[0];
    ck_assert_ptr_null(c->image);
    ck_assert_uint_eq(c->n_env, 0);
    ck_assert_str_eq(c->ports[0].protocol, "TCP");
    ck_assert_int_eq(c->resources.cpu_request_milli, -1);
    ck_assert_int_eq(c->resources.cpu_limit_milli, -1);
    ck_assert_int_eq(c->resources.memory_request_bytes, -1);
    ck_assert_int_eq(c->resources.memory_limit_bytes, -1);
    char key[64];
    vk_pod_key(pod, key, sizeof key);
    ck_assert_str_eq(key, "default/p");
    vk_pod_free(pod);

    /* An explicit null is absent too; an empty namespace is the default. */
    pod = parse_ok("{'metadata':{'name':'p','namespace':'','deletionTimestamp':null,"
                   "'labels':null},'spec':{'containers':[{'name':'c'}],'restartPolicy':null}}");
    ck_assert_str_eq(pod->namespace, "default");
    ck_assert_str_eq(pod->restart_policy, "Always");
    ck_assert(!pod->deleting);
    vk_pod_free(pod);
}
END_TEST

START_TEST(resources_numbers)
{
    vk_pod *pod = parse_ok(
        "{'metadata':{'name':'p'},'spec':{'containers':["
        "{'name':'a','resources':{'requests':{'cpu':'0.5','memory':'1G'},"
        "  'limits':{'cpu':'2','memory':'1.5Gi'}}},"
        "{'name':'b','resources':{'requests':{'cpu':2,'memory':1e3},"
        "  'limits':{'cpu':'lots','memory':{}}}},"
        "{'name':'c','resources':{'requests':{'cpu':'100u','memory':'100m'},'limits':'x'}}]}}");
    const vk_resources *r = &pod->containers[0].resources;
    ck_assert_int_eq(r->cpu_request_milli, 500);
    ck_assert_int_eq(r->cpu_limit_milli, 2000);
    ck_assert_int_eq(r->memory_request_bytes, 1000000000);
    ck_assert_int_eq(r->memory_limit_bytes, 1610612736);

    /* Numbers where strings belong: taken as written. */
    r = &pod->containers[1].resources;
    ck_assert_str_eq(r->cpu_request, "2");
    ck_assert_int_eq(r->cpu_request_milli, 2000);
    ck_assert_str_eq(r->memory_request, "1e3");
    ck_assert_int_eq(r->memory_request_bytes, 1000);
    /* Malformed: kept as text, no number. */
    ck_assert_str_eq(r->cpu_limit, "lots");
    ck_assert_int_eq(r->cpu_limit_milli, -1);
    ck_assert_ptr_null(r->memory_limit);
    ck_assert_int_eq(r->memory_limit_bytes, -1);

    /* Fractions round up: 0.1 millicore is 1, 0.1 byte is 1. */
    r = &pod->containers[2].resources;
    ck_assert_int_eq(r->cpu_request_milli, 1);
    ck_assert_int_eq(r->memory_request_bytes, 1);
    ck_assert_ptr_null(r->cpu_limit);
    vk_pod_free(pod);
}
END_TEST

/* ---- bad input --------------------------------------------------------------- */

START_TEST(malformed_json)
{
    static const char *bad[] = {
        "",
        "   ",
        "{",
        "{'metadata':{'name':'p'},}",
        "{'metadata':{'name':'p'}} trailing",
        "{metadata:{}}",
        "{'a':tru}",
        "{'a':'unterminated}",
        "{'a':'bad escape \\x'}",
        "{'a':01}",
        "{'a':1}{'b':2}",
        "/* comment */ {'metadata':{'name':'p'},'spec':{'containers':[{'name':'c'}]}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *doc = J(bad[i]);
        parse_fails(doc, strlen(doc), "pod JSON: parse error");
        free(doc);
    }
    parse_fails("{\"a\": x}", 8, "pod JSON: parse error at byte 7: invalid char in json text");
    parse_fails("[1,2", 4, "pod JSON: parse error at byte 4: premature EOF");
    /* Invalid UTF-8 inside a string. */
    parse_fails("{\"a\":\"\xff\xfe\"}", 10, "pod JSON: parse error");
    /* A NUL byte inside the given length. */
    static const char nul[] = "{\"metadata\":{\"name\":\"p\"}}\0{}";
    parse_fails(nul, sizeof nul - 1, "pod JSON: parse error at byte 25: NUL byte");
}
END_TEST

START_TEST(not_a_pod)
{
    parse_fails("[]", 2, "pod JSON: not an object");
    parse_fails("null", 4, "pod JSON: not an object");
    parse_fails("\"pod\"", 5, "pod JSON: not an object");
    parse_fails("{}", 2, "pod JSON: metadata.name missing");

    static const struct {
        const char *doc, *err;
    } cases[] = {
        {"{'spec':{'containers':[{'name':'c'}]}}", "pod JSON: metadata.name missing"},
        {"{'metadata':{'name':''},'spec':{'containers':[{'name':'c'}]}}",
         "pod JSON: metadata.name missing"},
        {"{'metadata':{'name':42},'spec':{'containers':[{'name':'c'}]}}",
         "pod JSON: metadata.name missing"},
        {"{'metadata':'p','spec':{'containers':[{'name':'c'}]}}",
         "pod JSON: metadata.name missing"},
        {"{'metadata':{'name':'p'}}", "pod JSON: spec.containers missing"},
        {"{'metadata':{'name':'p'},'spec':[]}", "pod JSON: spec.containers missing"},
        {"{'metadata':{'name':'p'},'spec':{'containers':[]}}",
         "pod JSON: spec.containers is not a non-empty array"},
        {"{'metadata':{'name':'p'},'spec':{'containers':{'name':'c'}}}",
         "pod JSON: spec.containers is not a non-empty array"},
        {"{'metadata':{'name':'p'},'spec':{'containers':[{'name':'c'},{'image':'x'}]}}",
         "pod JSON: spec.containers[1].name missing"},
        {"{'metadata':{'name':'p'},'spec':{'containers':['c']}}",
         "pod JSON: spec.containers[0].name missing"},
        {"{'metadata':{'name':'p'},'spec':{'containers':[{'name':'c'}],"
         "'initContainers':[{'name':''}]}}",
         "pod JSON: spec.initContainers[0].name missing"},
        {"{'metadata':{'name':'p'},'spec':{'containers':[{'name':'c'}],'initContainers':7}}",
         "pod JSON: spec.initContainers is not a non-empty array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *doc = J(cases[i].doc);
        parse_fails(doc, strlen(doc), cases[i].err);
        free(doc);
    }
    /* No room for a message is fine too. */
    ck_assert_ptr_null(vk_pod_parse("{}", 2, NULL, 0));
}
END_TEST

START_TEST(wrong_types)
{
    /* Every optional field with a value of the wrong type: read as absent. */
    vk_pod *pod = parse_ok(
        "{'metadata':{'name':'p','namespace':7,'uid':[],'resourceVersion':12,"
        "  'labels':['a','b'],'annotations':{'ok':'yes','n':1,'o':{},'l':[]},"
        "  'deletionGracePeriodSeconds':'30','deletionTimestamp':'t'},"
        " 'spec':{'nodeName':{},'restartPolicy':1,'serviceAccountName':null,"
        "  'hostname':true,'hostNetwork':'true','volumes':{'name':'v'},"
        "  'imagePullSecrets':['regcred',{'name':1},{'name':'ok'}],"
        "  'containers':[{'name':'c','image':5,'command':'sh -c x',"
        "    'args':['a',1,null,'b',{}],'env':'A=1','ports':[80,{'containerPort':'80'},"
        "    {'containerPort':99999999999},{'containerPort':1.5,'protocol':6}],"
        "    'volumeMounts':[{'name':'v','readOnly':'yes'},'m'],'resources':[],"
        "    'tty':1,'stdin':'true'}]},"
        " 'status':'Running'}");
    ck_assert_str_eq(pod->namespace, "default");
    ck_assert_ptr_null(pod->uid);
    ck_assert_ptr_null(pod->resource_version);
    ck_assert_uint_eq(pod->n_labels, 0);
    ck_assert_uint_eq(pod->n_annotations, 1);
    ck_assert_str_eq(pod->annotations[0].name, "ok");
    ck_assert_int_eq(pod->deletion_grace_seconds, -1);
    ck_assert(pod->deleting);
    ck_assert_ptr_null(pod->node_name);
    ck_assert_str_eq(pod->restart_policy, "Always");
    ck_assert_ptr_null(pod->hostname);
    ck_assert(!pod->host_network);
    ck_assert_uint_eq(pod->n_volumes, 0);
    ck_assert_uint_eq(pod->n_image_pull_secrets, 1);
    ck_assert_str_eq(pod->image_pull_secrets[0], "ok");
    ck_assert_ptr_null(pod->phase);

    const vk_container *c = &pod->containers[0];
    ck_assert_ptr_null(c->image);
    ck_assert_uint_eq(c->n_command, 0);
    ck_assert_uint_eq(c->n_args, 2);
    ck_assert_str_eq(c->args[0], "a");
    ck_assert_str_eq(c->args[1], "b");
    ck_assert_uint_eq(c->n_env, 0);
    ck_assert_uint_eq(c->n_ports, 3);
    ck_assert_int_eq(c->ports[0].container_port, 0);
    ck_assert_int_eq(c->ports[1].container_port, 0); /* out of int32 */
    ck_assert_int_eq(c->ports[2].container_port, 0);
    ck_assert_str_eq(c->ports[2].protocol, "TCP");
    ck_assert_uint_eq(c->n_mounts, 1);
    ck_assert(!c->mounts[0].read_only);
    ck_assert_int_eq(c->resources.cpu_limit_milli, -1);
    ck_assert(!c->tty);
    ck_assert(!c->stdin_open);
    vk_pod_free(pod);
}
END_TEST

START_TEST(odd_inputs)
{
    /* Only len bytes are read: what follows in memory is not part of it. */
    static const char tail[] =
        "{\"metadata\":{\"name\":\"p\"},\"spec\":{\"containers\":[{\"name\":\"c\"}]}}GARBAGE";
    vk_pod *pod = vk_pod_parse(tail, sizeof tail - 1 - 7, NULL, 0);
    ck_assert_ptr_nonnull(pod);
    ck_assert_uint_eq(pod->json_len, sizeof tail - 1 - 7);
    ck_assert_uint_eq(strlen(pod->json), pod->json_len);
    vk_pod_free(pod);

    /* Duplicate keys: the last wins, as the API server's Go decoder does. */
    pod = parse_ok("{'metadata':{'name':'a','name':'b'},'spec':{'containers':[{'name':'c'}]}}");
    ck_assert_str_eq(pod->name, "b");
    vk_pod_free(pod);

    /* Escapes and multibyte text come out decoded. */
    pod = parse_ok("{'metadata':{'name':'p','labels':{'k':'\\u65e5\\u672c \\ud83d\\ude00 \\/\\t'}},"
                   "'spec':{'containers':[{'name':'c'}]}}");
    ck_assert_str_eq(pod->labels[0].value, "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 /\t");
    vk_pod_free(pod);

    /* Deep nesting is refused before it reaches anything recursive. */
    size_t deep = 200000;
    char *doc = malloc(deep * 2 + 1);
    ck_assert_ptr_nonnull(doc);
    memset(doc, '[', deep);
    memset(doc + deep, ']', deep);
    doc[2 * deep] = '\0';
    parse_fails(doc, 2 * deep, "pod JSON: parse error at byte 100: nested too deeply");
    free(doc);

    /* Brackets inside strings are not nesting. */
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(vk_buf_puts(&b, "{\"metadata\":{\"name\":\"p\",\"labels\":{\"x\":\""), 0);
    for (int i = 0; i < 500; i++)
        ck_assert_int_eq(vk_buf_puts(&b, "[{\\\""), 0);
    ck_assert_int_eq(vk_buf_puts(&b, "\"}},\"spec\":{\"containers\":[{\"name\":\"c\"}]}}"), 0);
    pod = vk_pod_parse(b.data, b.len, NULL, 0);
    ck_assert_ptr_nonnull(pod);
    ck_assert_uint_eq(strlen(pod->labels[0].value), 1500);
    vk_pod_free(pod);

    /* Nesting up to the limit in fields the view does not read is fine. */
    vk_buf_reset(&b);
    ck_assert_int_eq(vk_buf_puts(&b, "{\"metadata\":{\"name\":\"p\"},\"x\":"), 0);
    for (int i = 0; i < VK_JSON_MAX_DEPTH - 1; i++)
        ck_assert_int_eq(vk_buf_puts(&b, "["), 0);
    for (int i = 0; i < VK_JSON_MAX_DEPTH - 1; i++)
        ck_assert_int_eq(vk_buf_puts(&b, "]"), 0);
    ck_assert_int_eq(vk_buf_puts(&b, ",\"spec\":{\"containers\":[{\"name\":\"c\"}]}}"), 0);
    pod = vk_pod_parse(b.data, b.len, NULL, 0);
    ck_assert_ptr_nonnull(pod);
    vk_pod_free(pod);
    vk_buf_free(&b);
}
END_TEST

/* Many containers and env vars: the arena grows well past its first chunk. */
START_TEST(huge_pod)
{
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(vk_buf_puts(&b, "{\"metadata\":{\"name\":\"big\",\"labels\":{"), 0);
    for (int i = 0; i < 2000; i++)
        ck_assert_int_eq(vk_buf_printf(&b, "%s\"l%d\":\"v%d\"", i ? "," : "", i, i), 0);
    ck_assert_int_eq(vk_buf_puts(&b, "}},\"spec\":{\"containers\":["), 0);
    for (int c = 0; c < 50; c++) {
        ck_assert_int_eq(vk_buf_printf(&b, "%s{\"name\":\"c%d\",\"env\":[", c ? "," : "", c), 0);
        for (int e = 0; e < 200; e++)
            ck_assert_int_eq(vk_buf_printf(&b, "%s{\"name\":\"E%d\",\"value\":\"%0100d\"}",
                                           e ? "," : "", e, e), 0);
        ck_assert_int_eq(vk_buf_puts(&b, "]}"), 0);
    }
    ck_assert_int_eq(vk_buf_puts(&b, "]}}"), 0);

    char err[256] = "";
    vk_pod *pod = vk_pod_parse(b.data, b.len, err, sizeof err);
    ck_assert_msg(pod != NULL, "%s", err);
    ck_assert_uint_eq(pod->n_labels, 2000);
    ck_assert_str_eq(pod->labels[1999].name, "l1999");
    ck_assert_str_eq(pod->labels[1999].value, "v1999");
    ck_assert_uint_eq(pod->n_containers, 50);
    const vk_container *c = vk_pod_container(pod, "c49");
    ck_assert_ptr_nonnull(c);
    ck_assert_uint_eq(c->n_env, 200);
    ck_assert_str_eq(c->env[199].name, "E199");
    ck_assert_uint_eq(strlen(c->env[199].value), 100);
    ck_assert_str_eq(c->env[199].value + 97, "199");
    vk_pod_free(pod);
    vk_buf_free(&b);
    vk_pod_free(NULL);
}
END_TEST

/* ---- quantities ---------------------------------------------------------------- */

START_TEST(quantities)
{
    static const struct {
        const char *q;
        int rc_milli;
        int64_t milli;
        int rc_value;
        int64_t value;
    } cases[] = {
        {"0", 0, 0, 0, 0},
        {"1", 0, 1000, 0, 1},
        {"100m", 0, 100, 0, 1},
        {"1500m", 0, 1500, 0, 2},
        {"0.5", 0, 500, 0, 1},
        {"1.5", 0, 1500, 0, 2},
        {".5", 0, 500, 0, 1},
        {"5.", 0, 5000, 0, 5},
        {"+2", 0, 2000, 0, 2},
        {"-2", 0, -2000, 0, -2},
        {"-1.5", 0, -1500, 0, -2},  /* away from zero, as Kubernetes */
        {"-0", 0, 0, 0, 0},
        {"007", 0, 7000, 0, 7},
        {"1.000", 0, 1000, 0, 1},
        {"0.0001", 0, 1, 0, 1},
        {"1n", 0, 1, 0, 1},
        {"1000000n", 0, 1, 0, 1},
        {"1000001n", 0, 2, 0, 1},
        {"250u", 0, 1, 0, 1},
        {"1k", 0, 1000000, 0, 1000},
        {"1M", 0, 1000000000, 0, 1000000},
        {"1G", 0, 1000000000000, 0, 1000000000},
        {"2T", 0, 2000000000000000, 0, 2000000000000},
        {"1P", 0, 1000000000000000000, 0, 1000000000000000},
        {"1E", -1, 0, 0, 1000000000000000000},
        {"9E", -1, 0, 0, 9000000000000000000},
        {"10E", -1, 0, -1, 0},
        {"1Ki", 0, 1024000, 0, 1024},
        {"128Mi", 0, 134217728000, 0, 134217728},
        {"1Gi", 0, 1073741824000, 0, 1073741824},
        {"1.5Gi", 0, 1610612736000, 0, 1610612736},
        {"0.1Gi", 0, 107374182400, 0, 107374183},
        {"1Ti", 0, 1099511627776000, 0, 1099511627776},
        {"1Pi", 0, 1125899906842624000, 0, 1125899906842624},
        {"7Ei", -1, 0, 0, 8070450532247928832},
        {"7.99Ei", -1, 0, 0, 9211842821808707339},
        {"8Ei", -1, 0, -1, 0},
        {"1e3", 0, 1000000, 0, 1000},
        {"12E6", 0, 12000000000, 0, 12000000},
        {"1e-3", 0, 1, 0, 1},
        {"1E+2", 0, 100000, 0, 100},
        {"1.5e1", 0, 15000, 0, 15},
        {"1e18", -1, 0, 0, 1000000000000000000},
        {"1e19", -1, 0, -1, 0},
        {"1e-100", 0, 1, 0, 1},
        {"1e999999999999", -1, 0, -1, 0},
        {"0e999999999999", 0, 0, 0, 0},
        {"9223372036854775807", -1, 0, 0, INT64_MAX},
        {"9223372036854775808", -1, 0, -1, 0},
        {"9223372036854775.807", 0, INT64_MAX, 0, 9223372036854776},
        {"9223372036854775.808", -1, 0, 0, 9223372036854776},
        {"0.000000000000000000000000000001Ei", 0, 1, 0, 1},
        {"", -1, 0, -1, 0},
        {"m", -1, 0, -1, 0},
        {".", -1, 0, -1, 0},
        {"-", -1, 0, -1, 0},
        {"1K", -1, 0, -1, 0},
        {"1Mb", -1, 0, -1, 0},
        {"1 ", -1, 0, -1, 0},
        {" 1", -1, 0, -1, 0},
        {"1e", -1, 0, -1, 0},
        {"1e+", -1, 0, -1, 0},
        {"1e3.5", -1, 0, -1, 0},
        {"1ei", -1, 0, -1, 0},
        {"1.2.3", -1, 0, -1, 0},
        {"--1", -1, 0, -1, 0},
        {"0x10", -1, 0, -1, 0},
        {"1Gi ", -1, 0, -1, 0},
        {"1000000000000000000000000000000000000000000000000000000000000000000", -1, 0, -1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = 42;
        int rc = vk_quantity_milli(cases[i].q, &v);
        ck_assert_msg(rc == cases[i].rc_milli, "milli(\"%s\") rc %d", cases[i].q, rc);
        if (rc == 0)
            ck_assert_msg(v == cases[i].milli, "milli(\"%s\") = %lld, want %lld",
                          cases[i].q, (long long)v, (long long)cases[i].milli);
        v = 42;
        rc = vk_quantity_value(cases[i].q, &v);
        ck_assert_msg(rc == cases[i].rc_value, "value(\"%s\") rc %d", cases[i].q, rc);
        if (rc == 0)
            ck_assert_msg(v == cases[i].value, "value(\"%s\") = %lld, want %lld",
                          cases[i].q, (long long)v, (long long)cases[i].value);
    }
}
END_TEST

/* ---- status JSON ----------------------------------------------------------------- */

static yajl_val status_tree(const vk_pod_status *st, int64_t now)
{
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(vk_buf_puts(&out, "prefix:"), 0);
    ck_assert_int_eq(vk_pod_status_json(st, now, &out), 0);
    ck_assert(strncmp(out.data, "prefix:", 7) == 0); /* appended */
    char err[256] = "";
    yajl_val v = vk_json_parse(out.data + 7, out.len - 7, err, sizeof err);
    ck_assert_msg(v != NULL, "%s in %s", err, out.data);
    vk_buf_free(&out);
    return v;
}

static yajl_val condition_of(yajl_val status, const char *type)
{
    yajl_val conds = vk_json_member(status, "conditions");
    ck_assert(YAJL_IS_ARRAY(conds));
    for (size_t i = 0; i < conds->u.array.len; i++)
        if (strcmp(vk_json_str(vk_json_member(conds->u.array.values[i], "type"), ""), type) == 0)
            return conds->u.array.values[i];
    ck_abort_msg("no condition %s", type);
    return NULL;
}

static const char *cond_status(yajl_val status, const char *type)
{
    return vk_json_str(vk_json_member(condition_of(status, type), "status"), NULL);
}

static const char *cond_field(yajl_val status, const char *type, const char *field)
{
    return vk_json_str(vk_json_member(condition_of(status, type), field), NULL);
}

#define T0 1795856400 /* 2026-11-28T09:00:00Z */

START_TEST(status_running)
{
    vk_container_status init[] = {{
        .name = "migrate", .image = "busybox:1.36", .image_id = "sha256:aa",
        .container_id = "mock://migrate", .state = VK_STATE_TERMINATED,
        .reason = "Completed", .exit_code = 0, .started_at = T0, .finished_at = T0 + 5,
    }};
    vk_container_status cs[] = {
        {.name = "app", .image = "nginx:1.25", .image_id = "sha256:bb",
         .container_id = "mock://app", .state = VK_STATE_RUNNING, .started_at = T0 + 6,
         .ready = true, .started = true, .restart_count = 2},
        {.name = "sidecar", .image = "busybox:1.36", .state = VK_STATE_RUNNING,
         .started_at = T0 + 6, .ready = true, .started = true},
    };
    vk_pod_status st = {
        .phase = "Running", .pod_ip = "10.1.0.5", .host_ip = "10.0.0.1",
        .start_time = T0, .init_containers = init, .n_init_containers = 1,
        .containers = cs, .n_containers = 2,
    };
    yajl_val v = status_tree(&st, T0 + 60);
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "phase"), ""), "Running");
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "podIP"), ""), "10.1.0.5");
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "hostIP"), ""), "10.0.0.1");
    yajl_val ips = vk_json_member(v, "podIPs");
    ck_assert(YAJL_IS_ARRAY(ips) && ips->u.array.len == 1);
    ck_assert_str_eq(vk_json_str(vk_json_member(ips->u.array.values[0], "ip"), ""), "10.1.0.5");
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "startTime"), ""), "2026-11-28T09:00:00Z");
    ck_assert_ptr_null(vk_json_member(v, "reason"));
    ck_assert_ptr_null(vk_json_member(v, "message"));

    ck_assert_uint_eq(vk_json_member(v, "conditions")->u.array.len, 4);
    ck_assert_str_eq(cond_status(v, "PodScheduled"), "True");
    ck_assert_str_eq(cond_status(v, "Initialized"), "True");
    ck_assert_str_eq(cond_status(v, "ContainersReady"), "True");
    ck_assert_str_eq(cond_status(v, "Ready"), "True");
    ck_assert_str_eq(cond_field(v, "Ready", "lastTransitionTime"), "2026-11-28T09:01:00Z");
    ck_assert_ptr_null(cond_field(v, "Ready", "reason"));

    yajl_val ics = vk_json_member(v, "initContainerStatuses");
    ck_assert(YAJL_IS_ARRAY(ics) && ics->u.array.len == 1);
    yajl_val term = vk_json_get(ics->u.array.values[0], "state", "terminated", NULL);
    ck_assert_int_eq(vk_json_int(vk_json_member(term, "exitCode"), -1), 0);
    ck_assert_str_eq(vk_json_str(vk_json_member(term, "reason"), ""), "Completed");
    ck_assert_str_eq(vk_json_str(vk_json_member(term, "startedAt"), ""), "2026-11-28T09:00:00Z");
    ck_assert_str_eq(vk_json_str(vk_json_member(term, "finishedAt"), ""), "2026-11-28T09:00:05Z");
    ck_assert_str_eq(vk_json_str(vk_json_member(term, "containerID"), ""), "mock://migrate");

    yajl_val css = vk_json_member(v, "containerStatuses");
    ck_assert(YAJL_IS_ARRAY(css) && css->u.array.len == 2);
    yajl_val app = css->u.array.values[0];
    ck_assert_str_eq(vk_json_str(vk_json_member(app, "name"), ""), "app");
    ck_assert_str_eq(vk_json_str(vk_json_get(app, "state", "running", "startedAt", NULL), ""),
                     "2026-11-28T09:00:06Z");
    ck_assert_uint_eq(vk_json_member(app, "state")->u.object.len, 1);
    ck_assert(vk_json_bool(vk_json_member(app, "ready"), false));
    ck_assert(vk_json_bool(vk_json_member(app, "started"), false));
    ck_assert_int_eq(vk_json_int(vk_json_member(app, "restartCount"), -1), 2);
    ck_assert_str_eq(vk_json_str(vk_json_member(app, "image"), ""), "nginx:1.25");
    ck_assert_str_eq(vk_json_str(vk_json_member(app, "imageID"), ""), "sha256:bb");
    ck_assert_str_eq(vk_json_str(vk_json_member(app, "containerID"), ""), "mock://app");
    /* Required strings are there even when unknown; optional ones are not. */
    yajl_val side = css->u.array.values[1];
    ck_assert_str_eq(vk_json_str(vk_json_member(side, "imageID"), "absent"), "");
    ck_assert_ptr_null(vk_json_member(side, "containerID"));
    yajl_tree_free(v);
}
END_TEST

START_TEST(status_failed_init_is_not_initialized)
{
    vk_container_status init[] = {
        {.name = "fetch", .state = VK_STATE_TERMINATED, .exit_code = 0},
        {.name = "migrate", .state = VK_STATE_TERMINATED, .exit_code = 3,
         .reason = "Error", .message = "boom"},
        {.name = "warm", .state = VK_STATE_WAITING, .reason = "PodInitializing"},
    };
    vk_container_status cs[] = {
        {.name = "app", .state = VK_STATE_WAITING, .reason = "PodInitializing"},
    };
    vk_pod_status st = {
        .phase = "Pending", .init_containers = init, .n_init_containers = 3,
        .containers = cs, .n_containers = 1,
    };
    yajl_val v = status_tree(&st, T0);
    ck_assert_str_eq(cond_status(v, "PodScheduled"), "True");
    ck_assert_str_eq(cond_status(v, "Initialized"), "False");
    ck_assert_str_eq(cond_field(v, "Initialized", "reason"), "ContainersNotInitialized");
    ck_assert_str_eq(cond_field(v, "Initialized", "message"),
                     "containers with incomplete status: [migrate warm]");
    ck_assert_str_eq(cond_status(v, "ContainersReady"), "False");
    ck_assert_str_eq(cond_field(v, "ContainersReady", "reason"), "ContainersNotReady");
    ck_assert_str_eq(cond_field(v, "ContainersReady", "message"),
                     "containers with unready status: [app]");
    ck_assert_str_eq(cond_status(v, "Ready"), "False");
    ck_assert_str_eq(cond_field(v, "Ready", "reason"), "ContainersNotReady");
    ck_assert_str_eq(cond_field(v, "Ready", "lastTransitionTime"), "2026-11-28T09:00:00Z");

    yajl_val ics = vk_json_member(v, "initContainerStatuses");
    yajl_val term = vk_json_get(ics->u.array.values[1], "state", "terminated", NULL);
    ck_assert_int_eq(vk_json_int(vk_json_member(term, "exitCode"), 0), 3);
    ck_assert_str_eq(vk_json_str(vk_json_member(term, "message"), ""), "boom");
    ck_assert_ptr_null(vk_json_member(term, "startedAt"));
    yajl_val wait = vk_json_get(ics->u.array.values[2], "state", "waiting", NULL);
    ck_assert_str_eq(vk_json_str(vk_json_member(wait, "reason"), ""), "PodInitializing");
    ck_assert_ptr_null(vk_json_member(wait, "message"));
    ck_assert_ptr_null(vk_json_member(v, "podIPs"));
    ck_assert_ptr_null(vk_json_member(v, "startTime"));
    yajl_tree_free(v);
}
END_TEST

START_TEST(status_partly_ready_succeeded_and_empty)
{
    vk_container_status cs[] = {
        {.name = "a", .state = VK_STATE_RUNNING, .ready = true},
        {.name = "b", .state = VK_STATE_RUNNING, .ready = false},
    };
    vk_pod_status st = {.phase = "Running", .containers = cs, .n_containers = 2};
    yajl_val v = status_tree(&st, T0);
    ck_assert_str_eq(cond_status(v, "Initialized"), "True"); /* no init containers */
    ck_assert_str_eq(cond_status(v, "ContainersReady"), "False");
    ck_assert_str_eq(cond_field(v, "Ready", "message"), "containers with unready status: [b]");
    ck_assert_ptr_null(vk_json_member(v, "initContainerStatuses"));
    yajl_tree_free(v);

    vk_container_status done[] = {
        {.name = "job", .state = VK_STATE_TERMINATED, .exit_code = 0, .reason = "Completed"},
    };
    vk_pod_status ok = {.phase = "Succeeded", .containers = done, .n_containers = 1};
    v = status_tree(&ok, T0);
    ck_assert_str_eq(cond_status(v, "Initialized"), "True");
    ck_assert_str_eq(cond_field(v, "Initialized", "reason"), "PodCompleted");
    ck_assert_str_eq(cond_status(v, "Ready"), "False");
    ck_assert_str_eq(cond_field(v, "Ready", "reason"), "PodCompleted");
    ck_assert_str_eq(cond_field(v, "ContainersReady", "reason"), "PodCompleted");
    yajl_tree_free(v);

    /* Nothing known yet: not ready, and says why. Text is escaped. */
    vk_pod_status empty = {.phase = "Pending", .reason = "Provider\"Down\"",
                           .message = "line1\nline2 \xff"};
    v = status_tree(&empty, T0);
    ck_assert_str_eq(cond_status(v, "Ready"), "False");
    ck_assert_str_eq(cond_field(v, "Ready", "reason"), "UnknownContainerStatuses");
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "reason"), ""), "Provider\"Down\"");
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "message"), ""), "line1\nline2 \xef\xbf\xbd");
    ck_assert_ptr_null(vk_json_member(v, "containerStatuses"));
    yajl_tree_free(v);
}
END_TEST

/* A restarted container carries its previous end as lastState.terminated;
 * one without a previous end has no lastState at all. */
START_TEST(status_last_state)
{
    vk_terminated last = {
        .exit_code = 137, .reason = "Error", .message = "killed\n",
        .started_at = T0, .finished_at = T0 + 30, .container_id = "mock://app-0",
    };
    vk_container_status cs[] = {
        {.name = "app", .container_id = "mock://app-1", .state = VK_STATE_RUNNING,
         .started_at = T0 + 31, .restart_count = 1, .last_terminated = &last},
        {.name = "fresh", .state = VK_STATE_RUNNING, .started_at = T0},
    };
    vk_pod_status st = {.phase = "Running", .containers = cs, .n_containers = 2};
    yajl_val v = status_tree(&st, T0);
    yajl_val css = vk_json_member(v, "containerStatuses");
    yajl_val app = css->u.array.values[0];
    yajl_val lt = vk_json_get(app, "lastState", "terminated", NULL);
    ck_assert_ptr_nonnull(lt);
    ck_assert_uint_eq(vk_json_member(app, "lastState")->u.object.len, 1);
    ck_assert_int_eq(vk_json_int(vk_json_member(lt, "exitCode"), -1), 137);
    ck_assert_str_eq(vk_json_str(vk_json_member(lt, "reason"), ""), "Error");
    ck_assert_str_eq(vk_json_str(vk_json_member(lt, "message"), ""), "killed\n");
    ck_assert_str_eq(vk_json_str(vk_json_member(lt, "startedAt"), ""), "2026-11-28T09:00:00Z");
    ck_assert_str_eq(vk_json_str(vk_json_member(lt, "finishedAt"), ""), "2026-11-28T09:00:30Z");
    ck_assert_str_eq(vk_json_str(vk_json_member(lt, "containerID"), ""), "mock://app-0");
    /* The current state is untouched by the last one. */
    ck_assert_str_eq(vk_json_str(vk_json_get(app, "state", "running", "startedAt", NULL), ""),
                     "2026-11-28T09:00:31Z");
    ck_assert_str_eq(vk_json_str(vk_json_member(app, "containerID"), ""), "mock://app-1");
    ck_assert_ptr_null(vk_json_member(css->u.array.values[1], "lastState"));
    yajl_tree_free(v);
}
END_TEST

START_TEST(rfc3339)
{
    char buf[32];
    vk_rfc3339(0, buf, sizeof buf);
    ck_assert_str_eq(buf, "1970-01-01T00:00:00Z");
    vk_rfc3339(T0, buf, sizeof buf);
    ck_assert_str_eq(buf, "2026-11-28T09:00:00Z");
    vk_rfc3339(951782400, buf, sizeof buf); /* leap day */
    ck_assert_str_eq(buf, "2000-02-29T00:00:00Z");
    vk_rfc3339(-1, buf, sizeof buf);
    ck_assert_str_eq(buf, "1969-12-31T23:59:59Z");
    vk_rfc3339(INT64_MAX, buf, sizeof buf);
    ck_assert_str_eq(buf, "9999-12-31T23:59:59Z");
    vk_rfc3339(INT64_MIN, buf, sizeof buf);
    ck_assert_str_eq(buf, "0001-01-01T00:00:00Z");
    vk_rfc3339(T0, buf, 21); /* the documented minimum */
    ck_assert_str_eq(buf, "2026-11-28T09:00:00Z");
    vk_rfc3339(T0, buf, 5);
    ck_assert_str_eq(buf, "2026");
}
END_TEST

/* ---- splicing status into a pod ------------------------------------------------ */

START_TEST(with_status_keeps_unknown_fields)
{
    char *pod = J("{'apiVersion':'v1','kind':'Pod',"
                  "'metadata':{'name':'p','x-future':{'deep':[1,2.50,-3e2,true,false,null,'s']}},"
                  "'status':{'phase':'Pending','conditions':[{'type':'Old'}]},"
                  "'spec':{'containers':[{'name':'c'}],'newField':{'a':{'b':{}}},'empty':[]},"
                  "'text':'caf\\u00e9 \\\"q\\\" \\\\ \\n'}");
    char *status = J("{'phase':'Running','podIP':'10.1.0.5','extra':[{}]}");
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(vk_pod_with_status(pod, strlen(pod), status, strlen(status), &out), 0);

    /* Numbers come through as written; member order is kept. */
    ck_assert_ptr_nonnull(strstr(out.data, "[1,2.50,-3e2,true,false,null,\"s\"]"));
    ck_assert_ptr_nonnull(strstr(out.data, "\"kind\":\"Pod\",\"metadata\""));
    ck_assert_ptr_nonnull(strstr(out.data, "}},\"status\":{\"phase\":\"Running\""));
    ck_assert_ptr_null(strstr(out.data, "Pending"));
    ck_assert_ptr_null(strstr(out.data, "Old"));

    yajl_val v = vk_json_parse(out.data, out.len, NULL, 0);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(v->u.object.len, 6);
    ck_assert_str_eq(vk_json_str(vk_json_get(v, "status", "phase", NULL), ""), "Running");
    ck_assert_str_eq(vk_json_str(vk_json_get(v, "status", "podIP", NULL), ""), "10.1.0.5");
    ck_assert_ptr_null(vk_json_get(v, "status", "conditions", NULL));
    ck_assert(YAJL_IS_OBJECT(vk_json_get(v, "spec", "newField", "a", "b", NULL)));
    ck_assert(YAJL_IS_ARRAY(vk_json_get(v, "spec", "empty", NULL)));
    ck_assert_str_eq(vk_json_str(vk_json_member(v, "text"), ""), "caf\xc3\xa9 \"q\" \\ \n");
    yajl_tree_free(v);

    /* Splicing the result again changes nothing. */
    vk_buf again = VK_BUF_INIT;
    ck_assert_int_eq(vk_pod_with_status(out.data, out.len, status, strlen(status), &again), 0);
    ck_assert_str_eq(again.data, out.data);
    vk_buf_free(&again);
    vk_buf_free(&out);
    free(pod);
    free(status);
}
END_TEST

START_TEST(with_status_adds_and_rejects)
{
    vk_buf out = VK_BUF_INIT;
    ck_assert_int_eq(vk_buf_puts(&out, "kept"), 0);
    const char *pod = "{\"metadata\":{\"name\":\"p\"}}";
    const char *status = "{\"phase\":\"Failed\"}";
    ck_assert_int_eq(vk_pod_with_status(pod, strlen(pod), status, strlen(status), &out), 0);
    ck_assert_str_eq(out.data, "kept{\"metadata\":{\"name\":\"p\"},\"status\":{\"phase\":\"Failed\"}}");

    /* Failures leave out as it was. */
    vk_buf_reset(&out);
    ck_assert_int_eq(vk_buf_puts(&out, "kept"), 0);
    static const struct {
        const char *pod, *status;
    } bad[] = {
        {"{\"metadata\":", "{}"},
        {"{}", "{\"phase\":"},
        {"[]", "{}"},
        {"{}", "[]"},
        {"{}", "null"},
        {"", "{}"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(vk_pod_with_status(bad[i].pod, strlen(bad[i].pod), bad[i].status,
                                            strlen(bad[i].status), &out), -1);
        ck_assert_str_eq(out.data, "kept");
    }

    /* Inputs need not be NUL-terminated: only the given lengths count. */
    const char *p2 = "{\"a\":1}XXXX", *s2 = "{\"b\":2}YYYY";
    vk_buf_reset(&out);
    ck_assert_int_eq(vk_pod_with_status(p2, 7, s2, 7, &out), 0);
    ck_assert_str_eq(out.data, "{\"a\":1,\"status\":{\"b\":2}}");

    /* Two status members: the result has one. */
    const char *dup = "{\"status\":{},\"x\":1,\"status\":{}}";
    vk_buf_reset(&out);
    ck_assert_int_eq(vk_pod_with_status(dup, strlen(dup), status, strlen(status), &out), 0);
    ck_assert_str_eq(out.data, "{\"status\":{\"phase\":\"Failed\"},\"x\":1}");
    vk_buf_free(&out);
}
END_TEST

/* A status nested to the parse limit still fits one level down in a pod. */
START_TEST(with_status_deepest)
{
    vk_buf st = VK_BUF_INIT, out = VK_BUF_INIT;
    for (int i = 0; i < VK_JSON_MAX_DEPTH; i++)
        ck_assert_int_eq(vk_buf_puts(&st, "{\"a\":"), 0);
    ck_assert_int_eq(vk_buf_puts(&st, "1"), 0);
    for (int i = 0; i < VK_JSON_MAX_DEPTH; i++)
        ck_assert_int_eq(vk_buf_puts(&st, "}"), 0);
    ck_assert_int_eq(vk_pod_with_status("{}", 2, st.data, st.len, &out), 0);
    ck_assert_uint_eq(out.len, st.len + strlen("{\"status\":}"));
    vk_buf_free(&st);
    vk_buf_free(&out);
}
END_TEST

/* ---- json helpers ------------------------------------------------------------------ */

START_TEST(json_lookups)
{
    const char *doc = "{\"a\":{\"b\":{\"c\":\"x\"},\"n\":-42,\"f\":1.5,\"big\":99999999999999999999,"
                      "\"t\":true,\"z\":null}}";
    yajl_val v = vk_json_parse(doc, strlen(doc), NULL, 0);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(vk_json_str(vk_json_get(v, "a", "b", "c", NULL), NULL), "x");
    ck_assert_ptr_eq(vk_json_get(v, NULL), v);
    ck_assert_ptr_null(vk_json_get(v, "a", "b", "c", "d", NULL));
    ck_assert_ptr_null(vk_json_get(v, "nope", "b", NULL));
    ck_assert_ptr_null(vk_json_get(NULL, "a", NULL));
    ck_assert_str_eq(vk_json_str(vk_json_get(v, "a", "n", NULL), "def"), "def");
    ck_assert_int_eq(vk_json_int(vk_json_get(v, "a", "n", NULL), 0), -42);
    ck_assert_int_eq(vk_json_int(vk_json_get(v, "a", "f", NULL), 7), 7);
    ck_assert_int_eq(vk_json_int(vk_json_get(v, "a", "big", NULL), 7), 7);
    ck_assert_int_eq(vk_json_int(vk_json_get(v, "a", "b", NULL), 7), 7);
    ck_assert(vk_json_bool(vk_json_get(v, "a", "t", NULL), false));
    ck_assert(vk_json_bool(vk_json_get(v, "a", "z", NULL), true));
    ck_assert(!vk_json_bool(NULL, false));
    yajl_tree_free(v);

    char err[128];
    ck_assert_ptr_null(vk_json_parse_bytes("{\"a\"", 4, err, sizeof err));
    ck_assert_str_eq(err, "parse error at byte 4: premature EOF");
    v = vk_json_parse_bytes("[1]xyz", 3, err, sizeof err);
    ck_assert(YAJL_IS_ARRAY(v));
    yajl_tree_free(v);
    char tiny[8];
    ck_assert_ptr_null(vk_json_parse("{", 1, tiny, sizeof tiny));
    ck_assert_str_eq(tiny, "parse e");
}
END_TEST

START_TEST(json_quote)
{
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(vk_json_quote(&b, "", 0), 0);
    ck_assert_str_eq(b.data, "\"\"");
    vk_buf_reset(&b);
    const char s[] = "a\"b\\c\n\r\t\b\f\x01\x1f/\x7f caf\xc3\xa9 \xf0\x9f\x98\x80";
    ck_assert_int_eq(vk_json_quote(&b, s, sizeof s - 1), 0);
    ck_assert_str_eq(b.data, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f/\x7f caf\xc3\xa9 "
                             "\xf0\x9f\x98\x80\"");
    /* Bytes that are not UTF-8, one U+FFFD each: a lone continuation byte,
     * a truncated sequence, an overlong form, a surrogate, past U+10FFFF. */
    vk_buf_reset(&b);
    const char bad[] = "\x80|\xe2\x82|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|x";
    ck_assert_int_eq(vk_json_quote(&b, bad, sizeof bad - 1), 0);
    ck_assert_str_eq(b.data, "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                             "\\ufffd\\ufffd\\ufffd\\ufffd|x\"");
    /* Embedded NUL: within len, escaped. And the output parses back. */
    vk_buf_reset(&b);
    ck_assert_int_eq(vk_json_quote(&b, "a\0b", 3), 0);
    ck_assert_str_eq(b.data, "\"a\\u0000b\"");
    vk_buf_reset(&b);
    ck_assert_int_eq(vk_json_quote(&b, s, sizeof s - 1), 0);
    yajl_val v = vk_json_parse(b.data, b.len, NULL, 0);
    ck_assert(YAJL_IS_STRING(v));
    ck_assert_str_eq(v->u.string, s);
    yajl_tree_free(v);
    vk_buf_free(&b);
}
END_TEST

START_TEST(json_writer)
{
    vk_buf b = VK_BUF_INIT;
    vk_json_writer w;
    ck_assert_int_eq(vk_jw_begin(&w, &b), 0);
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "s", "x\xff");
    vk_jw_kv_str(&w, "skipped", NULL);
    vk_jw_kv_int(&w, "i", INT64_MIN);
    vk_jw_kv_bool(&w, "b", false);
    vk_jw_str(&w, "n");
    vk_jw_str(&w, NULL);
    vk_jw_str(&w, "a");
    vk_jw_array_open(&w);
    vk_jw_tree(&w, NULL);
    vk_jw_array_close(&w);
    vk_jw_map_close(&w);
    ck_assert_int_eq(vk_jw_end(&w), 0);
    ck_assert_str_eq(b.data, "{\"s\":\"x\xef\xbf\xbd\",\"i\":-9223372036854775808,"
                             "\"b\":false,\"n\":null,\"a\":[null]}");

    /* A misuse (a number as a key) fails the document and cuts it away. */
    vk_buf_reset(&b);
    ck_assert_int_eq(vk_buf_puts(&b, "before"), 0);
    ck_assert_int_eq(vk_jw_begin(&w, &b), 0);
    vk_jw_map_open(&w);
    vk_jw_int(&w, 1);
    vk_jw_str(&w, "v");
    vk_jw_map_close(&w);
    ck_assert_int_eq(vk_jw_end(&w), -1);
    ck_assert_str_eq(b.data, "before");

    /* Deeper than yajl_gen goes: an error, not a crash. */
    vk_buf_reset(&b);
    ck_assert_int_eq(vk_jw_begin(&w, &b), 0);
    for (int i = 0; i < 200; i++)
        vk_jw_array_open(&w);
    ck_assert_int_eq(vk_jw_end(&w), -1);
    ck_assert_uint_eq(b.len, 0);
    vk_buf_free(&b);
}
END_TEST

static Suite *pod_suite(void)
{
    Suite *s = suite_create("pod");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, full_pod_metadata_and_spec);
    tcase_add_test(tc, full_pod_containers);
    tcase_add_test(tc, env_value_from);
    tcase_add_test(tc, volume_types);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, resources_numbers);
    tcase_add_test(tc, malformed_json);
    tcase_add_test(tc, not_a_pod);
    tcase_add_test(tc, wrong_types);
    tcase_add_test(tc, odd_inputs);
    tcase_add_test(tc, huge_pod);
    /* huge_pod takes about a second on a busy machine: more room than
     * check's default 4 s, which only a hang should reach. */
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("quantity");
    tcase_add_test(tc, quantities);
    suite_add_tcase(s, tc);

    tc = tcase_create("status");
    tcase_add_test(tc, status_running);
    tcase_add_test(tc, status_failed_init_is_not_initialized);
    tcase_add_test(tc, status_partly_ready_succeeded_and_empty);
    tcase_add_test(tc, status_last_state);
    tcase_add_test(tc, rfc3339);
    tcase_add_test(tc, with_status_keeps_unknown_fields);
    tcase_add_test(tc, with_status_adds_and_rejects);
    tcase_add_test(tc, with_status_deepest);
    suite_add_tcase(s, tc);

    tc = tcase_create("json");
    tcase_add_test(tc, json_lookups);
    tcase_add_test(tc, json_quote);
    tcase_add_test(tc, json_writer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pod_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
