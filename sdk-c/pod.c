/* pod.c -- parse a Pod JSON document into the vk_pod view.
 *
 * Memory: one block holds the view and the copy of the document; strings
 * and arrays of the view live in a small arena freed at once. The yajl tree
 * is freed as soon as the view is filled: it is several times the size of
 * the text, and a node holding 10,000 pods should not keep 10,000 of them.
 */
#include "pod.h"

#include <stdarg.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define CHUNK_MIN 1024

struct chunk {
    struct chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char mem[];
};

struct pod_impl {
    vk_pod pod; /* first: vk_pod_free gets the vk_pod back */
    struct chunk *arena;
    bool oom;   /* sticky: filling goes on, vk_pod_parse fails at the end */
    char json[];
};

/* Zeroed room for n objects; NULL for none, or when memory ran out. */
static void *arena_alloc(struct pod_impl *p, size_t n, size_t size, size_t align)
{
    if (!n || !size)
        return NULL;
    if (n > SIZE_MAX / size / 2) {
        p->oom = true;
        return NULL;
    }
    size_t bytes = n * size;
    struct chunk *c = p->arena;
    size_t at = c ? (c->used + align - 1) & ~(align - 1) : 0;
    if (!c || at > c->cap || c->cap - at < bytes) {
        /* Doubling keeps the chunk count logarithmic in the pod's size. */
        size_t cap = c ? c->cap * 2 : CHUNK_MIN;
        if (cap < bytes)
            cap = bytes;
        c = malloc(sizeof *c + cap);
        if (!c) {
            p->oom = true;
            return NULL;
        }
        c->next = p->arena;
        c->used = 0;
        c->cap = cap;
        p->arena = c;
        at = 0;
    }
    c->used = at + bytes;
    return memset(c->mem + at, 0, bytes);
}

#define NEW_ARRAY(p, n, type) \
    ((type *)arena_alloc((p), (n), sizeof(type), alignof(type)))

static const char *dup_cstr(struct pod_impl *p, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = arena_alloc(p, n, 1, 1);
    return d ? memcpy(d, s, n) : NULL;
}

/* An arena copy of string v; NULL when v is not a string. */
static const char *dup_str(struct pod_impl *p, yajl_val v)
{
    return dup_cstr(p, vk_json_str(v, NULL));
}

static const char *dup_member(struct pod_impl *p, yajl_val obj, const char *key)
{
    return dup_str(p, vk_json_member(obj, key));
}

static size_t array_len(yajl_val v)
{
    return YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
}

/* ---- pieces -------------------------------------------------------------- */

static const char **str_array(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    const char **out = NEW_ARRAY(p, array_len(arr), const char *);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        const char *s = dup_str(p, arr->u.array.values[i]);
        if (s)
            out[(*n)++] = s;
    }
    return out;
}

/* Labels and annotations: an object of strings; other values are skipped. */
static vk_kv *str_map(struct pod_impl *p, yajl_val obj, size_t *n)
{
    *n = 0;
    if (!YAJL_IS_OBJECT(obj) || !obj->u.object.len)
        return NULL;
    vk_kv *out = NEW_ARRAY(p, obj->u.object.len, vk_kv);
    if (!out)
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++) {
        const char *value = dup_str(p, obj->u.object.values[i]);
        if (!value)
            continue;
        out[*n].name = dup_cstr(p, obj->u.object.keys[i]);
        out[(*n)++].value = value;
    }
    return out;
}

static vk_kv *env_list(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    vk_kv *out = NEW_ARRAY(p, array_len(arr), vk_kv);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        yajl_val e = arr->u.array.values[i];
        const char *name = dup_member(p, e, "name");
        if (!name)
            continue;
        yajl_val value = vk_json_member(e, "value");
        vk_kv *kv = &out[(*n)++];
        kv->name = name;
        /* Kubernetes reads an env var with neither value nor valueFrom
         * as set to the empty string. */
        if (YAJL_IS_STRING(value))
            kv->value = dup_str(p, value);
        else if (!vk_json_member(e, "valueFrom"))
            kv->value = "";
    }
    return out;
}

static int32_t int32_member(yajl_val obj, const char *key)
{
    int64_t v = vk_json_int(vk_json_member(obj, key), 0);
    return v >= INT32_MIN && v <= INT32_MAX ? (int32_t)v : 0;
}

static vk_port *port_list(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    vk_port *out = NEW_ARRAY(p, array_len(arr), vk_port);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        yajl_val v = arr->u.array.values[i];
        if (!YAJL_IS_OBJECT(v))
            continue;
        vk_port *port = &out[(*n)++];
        port->name = dup_member(p, v, "name");
        port->container_port = int32_member(v, "containerPort");
        port->host_port = int32_member(v, "hostPort");
        port->protocol = dup_member(p, v, "protocol");
        if (!port->protocol)
            port->protocol = "TCP";
    }
    return out;
}

static vk_mount *mount_list(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    vk_mount *out = NEW_ARRAY(p, array_len(arr), vk_mount);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        yajl_val v = arr->u.array.values[i];
        if (!YAJL_IS_OBJECT(v))
            continue;
        vk_mount *m = &out[(*n)++];
        m->name = dup_member(p, v, "name");
        m->mount_path = dup_member(p, v, "mountPath");
        m->sub_path = dup_member(p, v, "subPath");
        m->read_only = vk_json_bool(vk_json_member(v, "readOnly"), false);
    }
    return out;
}

/* A quantity as written. The API server always writes strings, but a
 * hand-written pod may say `"cpu": 2`: take the number's text then. */
static const char *quantity_text(struct pod_impl *p, yajl_val v)
{
    return YAJL_IS_NUMBER(v) ? dup_cstr(p, v->u.number.r) : dup_str(p, v);
}

static int64_t quantity_number(const char *q, int (*conv)(const char *, int64_t *))
{
    int64_t v;
    return q && conv(q, &v) == 0 ? v : -1;
}

static void resources(struct pod_impl *p, vk_resources *r, yajl_val res)
{
    yajl_val req = vk_json_member(res, "requests");
    yajl_val lim = vk_json_member(res, "limits");
    r->cpu_request = quantity_text(p, vk_json_member(req, "cpu"));
    r->cpu_limit = quantity_text(p, vk_json_member(lim, "cpu"));
    r->memory_request = quantity_text(p, vk_json_member(req, "memory"));
    r->memory_limit = quantity_text(p, vk_json_member(lim, "memory"));
    r->cpu_request_milli = quantity_number(r->cpu_request, vk_quantity_milli);
    r->cpu_limit_milli = quantity_number(r->cpu_limit, vk_quantity_milli);
    r->memory_request_bytes = quantity_number(r->memory_request, vk_quantity_value);
    r->memory_limit_bytes = quantity_number(r->memory_limit, vk_quantity_value);
}

static void container(struct pod_impl *p, vk_container *c, yajl_val v)
{
    c->name = dup_member(p, v, "name");
    c->image = dup_member(p, v, "image");
    c->image_pull_policy = dup_member(p, v, "imagePullPolicy");
    c->working_dir = dup_member(p, v, "workingDir");
    c->command = str_array(p, vk_json_member(v, "command"), &c->n_command);
    c->args = str_array(p, vk_json_member(v, "args"), &c->n_args);
    c->env = env_list(p, vk_json_member(v, "env"), &c->n_env);
    c->ports = port_list(p, vk_json_member(v, "ports"), &c->n_ports);
    c->mounts = mount_list(p, vk_json_member(v, "volumeMounts"), &c->n_mounts);
    resources(p, &c->resources, vk_json_member(v, "resources"));
    c->tty = vk_json_bool(vk_json_member(v, "tty"), false);
    c->stdin_open = vk_json_bool(vk_json_member(v, "stdin"), false);
}

/* Containers were checked by validate(): an array of objects with names. */
static vk_container *container_list(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    vk_container *out = NEW_ARRAY(p, array_len(arr), vk_container);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++)
        container(p, &out[i], arr->u.array.values[i]);
    *n = arr->u.array.len;
    return out;
}

/* The member of a Volume naming where its data comes from. */
static const char *volume_source(const char *type, yajl_val src)
{
    static const struct {
        const char *type, *field;
    } fields[] = {
        {"configMap", "name"},
        {"secret", "secretName"},
        {"hostPath", "path"},
        {"persistentVolumeClaim", "claimName"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (strcmp(type, fields[i].type) == 0)
            return vk_json_str(vk_json_member(src, fields[i].field), NULL);
    return NULL;
}

static vk_volume *volume_list(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    vk_volume *out = NEW_ARRAY(p, array_len(arr), vk_volume);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        yajl_val v = arr->u.array.values[i];
        const char *name = dup_member(p, v, "name");
        if (!name)
            continue;
        vk_volume *vol = &out[(*n)++];
        vol->name = name;
        /* A Volume is its name plus exactly one source member. */
        for (size_t k = 0; k < v->u.object.len; k++) {
            const char *key = v->u.object.keys[k];
            yajl_val src = v->u.object.values[k];
            if (strcmp(key, "name") == 0 || !YAJL_IS_OBJECT(src))
                continue;
            vol->type = dup_cstr(p, key);
            vol->source = dup_cstr(p, volume_source(key, src));
            break;
        }
    }
    return out;
}

static const char **pull_secrets(struct pod_impl *p, yajl_val arr, size_t *n)
{
    *n = 0;
    const char **out = NEW_ARRAY(p, array_len(arr), const char *);
    if (!out)
        return NULL;
    for (size_t i = 0; i < arr->u.array.len; i++) {
        const char *name = dup_member(p, arr->u.array.values[i], "name");
        if (name)
            out[(*n)++] = name;
    }
    return out;
}

/* ---- the pod ------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int validate_containers(yajl_val arr, const char *field, bool required,
                               char *err, size_t errlen)
{
    if (!arr && !required)
        return 0;
    if (!YAJL_IS_ARRAY(arr) || (required && !arr->u.array.len)) {
        set_err(err, errlen, "pod JSON: spec.%s %s", field,
                arr ? "is not a non-empty array" : "missing");
        return -1;
    }
    for (size_t i = 0; i < arr->u.array.len; i++) {
        const char *name = vk_json_str(vk_json_member(arr->u.array.values[i], "name"), "");
        if (!*name) {
            set_err(err, errlen, "pod JSON: spec.%s[%zu].name missing", field, i);
            return -1;
        }
    }
    return 0;
}

/* What the view cannot do without; everything else is optional and read
 * leniently (a value of the wrong type counts as absent). */
static int validate(yajl_val root, char *err, size_t errlen)
{
    if (!YAJL_IS_OBJECT(root)) {
        set_err(err, errlen, "pod JSON: not an object");
        return -1;
    }
    if (!*vk_json_str(vk_json_get(root, "metadata", "name", NULL), "")) {
        set_err(err, errlen, "pod JSON: metadata.name missing");
        return -1;
    }
    yajl_val spec = vk_json_member(root, "spec");
    if (validate_containers(vk_json_member(spec, "containers"), "containers", true,
                            err, errlen) < 0 ||
        validate_containers(vk_json_member(spec, "initContainers"), "initContainers",
                            false, err, errlen) < 0)
        return -1;
    return 0;
}

static void fill(struct pod_impl *p, yajl_val root)
{
    vk_pod *pod = &p->pod;
    yajl_val meta = vk_json_member(root, "metadata");
    yajl_val spec = vk_json_member(root, "spec");

    pod->namespace = dup_member(p, meta, "namespace");
    if (!pod->namespace || !*pod->namespace)
        pod->namespace = "default";
    pod->name = dup_member(p, meta, "name");
    pod->uid = dup_member(p, meta, "uid");
    pod->resource_version = dup_member(p, meta, "resourceVersion");
    pod->labels = str_map(p, vk_json_member(meta, "labels"), &pod->n_labels);
    pod->annotations = str_map(p, vk_json_member(meta, "annotations"), &pod->n_annotations);
    yajl_val deletion = vk_json_member(meta, "deletionTimestamp");
    pod->deleting = deletion && !YAJL_IS_NULL(deletion);
    pod->deletion_grace_seconds =
        vk_json_int(vk_json_member(meta, "deletionGracePeriodSeconds"), -1);

    pod->node_name = dup_member(p, spec, "nodeName");
    pod->restart_policy = dup_member(p, spec, "restartPolicy");
    if (!pod->restart_policy)
        pod->restart_policy = "Always";
    pod->service_account_name = dup_member(p, spec, "serviceAccountName");
    pod->hostname = dup_member(p, spec, "hostname");
    pod->host_network = vk_json_bool(vk_json_member(spec, "hostNetwork"), false);
    pod->containers = container_list(p, vk_json_member(spec, "containers"),
                                     &pod->n_containers);
    pod->init_containers = container_list(p, vk_json_member(spec, "initContainers"),
                                          &pod->n_init_containers);
    pod->volumes = volume_list(p, vk_json_member(spec, "volumes"), &pod->n_volumes);
    pod->image_pull_secrets = pull_secrets(p, vk_json_member(spec, "imagePullSecrets"),
                                           &pod->n_image_pull_secrets);

    pod->phase = dup_str(p, vk_json_get(root, "status", "phase", NULL));
}

vk_pod *vk_pod_parse(const char *json, size_t len, char *err, size_t errlen)
{
    struct pod_impl *p = NULL;
    if (len < SIZE_MAX - sizeof *p)
        p = calloc(1, sizeof *p + len + 1);
    if (!p) {
        set_err(err, errlen, "pod JSON: out of memory");
        return NULL;
    }
    if (len)
        memcpy(p->json, json, len);
    p->pod.json = p->json;
    p->pod.json_len = len;

    char why[160];
    yajl_val root = vk_json_parse(p->json, len, why, sizeof why);
    if (!root) {
        set_err(err, errlen, "pod JSON: %s", why);
        vk_pod_free(&p->pod);
        return NULL;
    }
    int rc = validate(root, err, errlen);
    if (rc == 0) {
        fill(p, root);
        if (p->oom) {
            set_err(err, errlen, "pod JSON: out of memory");
            rc = -1;
        }
    }
    yajl_tree_free(root);
    if (rc < 0) {
        vk_pod_free(&p->pod);
        return NULL;
    }
    return &p->pod;
}

void vk_pod_free(vk_pod *pod)
{
    if (!pod)
        return;
    struct pod_impl *p = (struct pod_impl *)pod;
    while (p->arena) {
        struct chunk *next = p->arena->next;
        free(p->arena);
        p->arena = next;
    }
    free(p);
}

const vk_container *vk_pod_container(const vk_pod *pod, const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < pod->n_containers; i++)
        if (strcmp(pod->containers[i].name, name) == 0)
            return &pod->containers[i];
    for (size_t i = 0; i < pod->n_init_containers; i++)
        if (strcmp(pod->init_containers[i].name, name) == 0)
            return &pod->init_containers[i];
    return NULL;
}

void vk_pod_key(const vk_pod *pod, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", pod->namespace, pod->name);
}
