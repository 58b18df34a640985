/* envresolve.c -- container environments resolved the kubelet's way, and
 * the objects a pod references. */
#include "envresolve.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "log.h"
#include "pod.h"

/* ---- variables: insertion order, with a hash index ------------------------ */

typedef struct envvar {
    char *name, *value;
} envvar;

typedef struct vars {
    envvar *v;
    size_t n, cap;
    size_t *index; /* open addressing: position + 1, 0 for an empty slot */
    size_t slots;  /* a power of two, at least twice n */
} vars;

static size_t hash(const char *s)
{
    size_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static size_t *slot_of(const vars *vs, const char *name)
{
    size_t mask = vs->slots - 1;
    for (size_t i = hash(name) & mask;; i = (i + 1) & mask)
        if (!vs->index[i] || strcmp(vs->v[vs->index[i] - 1].name, name) == 0)
            return &vs->index[i];
}

static const char *vars_get(const vars *vs, const char *name)
{
    if (!vs->n)
        return NULL;
    size_t at = *slot_of(vs, name);
    return at ? vs->v[at - 1].value : NULL;
}

static int grow(vars *vs)
{
    size_t cap = vs->cap ? vs->cap * 2 : 16;
    size_t *index = calloc(cap * 2, sizeof *index);
    envvar *v = index ? realloc(vs->v, cap * sizeof *v) : NULL;
    if (!v) {
        free(index);
        return -1;
    }
    free(vs->index);
    vs->v = v;
    vs->cap = cap;
    vs->index = index;
    vs->slots = cap * 2;
    for (size_t i = 0; i < vs->n; i++)
        *slot_of(vs, vs->v[i].name) = i + 1;
    return 0;
}

static void wipe_str(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Set name to value (copied), in place when it exists, else at the end. */
static int vars_set(vars *vs, const char *name, const char *value)
{
    if (vs->n == vs->cap && grow(vs) < 0)
        return -1;
    size_t *slot = slot_of(vs, name);
    char *copy = strdup(value);
    if (!copy)
        return -1;
    if (*slot) {
        wipe_str(vs->v[*slot - 1].value);
        vs->v[*slot - 1].value = copy;
        return 0;
    }
    char *key = strdup(name);
    if (!key) {
        free(copy);
        return -1;
    }
    vs->v[vs->n] = (envvar){key, copy};
    *slot = ++vs->n;
    return 0;
}

static void vars_free(vars *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        free(vs->v[i].name);
        wipe_str(vs->v[i].value);
    }
    free(vs->v);
    free(vs->index);
    memset(vs, 0, sizeof *vs);
}

/* ---- $(VAR) expansion ------------------------------------------------------ */

/* Kubernetes' expansion (third_party/forked/golang/expansion): $(NAME)
 * becomes the first of a, b that defines NAME, or stays as written; $$ is
 * one $; any other $ is literal. */
static int expand(const char *in, const vars *a, const vars *b, vk_buf *out)
{
    vk_buf_reset(out);
    for (const char *p = in; *p;) {
        const char *dollar = strchr(p, '$');
        if (!dollar || !dollar[1])
            return vk_buf_puts(out, p);
        if (vk_buf_append(out, p, (size_t)(dollar - p)) < 0)
            return -1;
        p = dollar + 1;
        if (*p == '$') {
            p++;
            if (vk_buf_puts(out, "$") < 0)
                return -1;
            continue;
        }
        const char *close = *p == '(' ? strchr(p, ')') : NULL;
        if (!close) {
            /* Not a reference: "$x" and an unclosed "$(" stay as they are. */
            if (vk_buf_append(out, dollar, 2) < 0)
                return -1;
            p++;
            continue;
        }
        char *name = strndup(p + 1, (size_t)(close - p - 1));
        if (!name)
            return -1;
        const char *val = vars_get(a, name);
        if (!val && b)
            val = vars_get(b, name);
        free(name);
        if (val ? vk_buf_puts(out, val) : vk_buf_append(out, dollar, (size_t)(close - dollar + 1)))
            return -1;
        p = close + 1;
    }
    return 0;
}

/* ---- the resolver -------------------------------------------------------- */

typedef struct object {
    bool secret;
    const char *name;     /* points into the pod */
    enum env_lookup found;
    yajl_val v;           /* ENV_FOUND */
} object;

typedef struct resolver {
    const env_inputs *in;
    yajl_val pod;
    const char *ns;
    object *objs;
    size_t n_objs;
    vars services;
    env_result *res;
    vk_buf scratch;
} resolver;

static const char *const container_lists[] = {"initContainers", "containers",
                                               "ephemeralContainers"};
#define N_LISTS 3

static char *vfmt(const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    char *s = n < 0 ? NULL : malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static int fill_note(env_note *note, const char *reason, const char *kind, const char *ns,
                     const char *name, const char *fmt, va_list ap)
{
    memset(note, 0, sizeof *note);
    note->reason = reason;
    note->kind = kind;
    note->message = vfmt(fmt, ap);
    if (kind) {
        note->ns = strdup(ns);
        note->name = strdup(name);
    }
    return note->message && (!kind || (note->ns && note->name)) ? 0 : -1;
}

static void free_note(env_note *note)
{
    free(note->ns);
    free(note->name);
    free(note->message);
}

/* Stop with status st; event is the Warning event's reason. Returns -1. */
static int fail(resolver *r, enum env_status st, const char *event, const char *kind,
                const char *name, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(resolver *r, enum env_status st, const char *event, const char *kind,
                const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = fill_note(&r->res->error, "CreateContainerConfigError", kind, r->ns, name, fmt, ap);
    va_end(ap);
    r->res->status = rc < 0 ? ENV_NOMEM : st;
    r->res->error_event = event;
    return -1;
}

static int nomem(resolver *r)
{
    r->res->status = ENV_NOMEM;
    return -1;
}

static int warn(resolver *r, const char *reason, const char *kind, const char *name,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int warn(resolver *r, const char *reason, const char *kind, const char *name,
                const char *fmt, ...)
{
    env_result *res = r->res;
    env_note note;
    va_list ap;
    va_start(ap, fmt);
    int rc = fill_note(&note, reason, kind, r->ns, name, fmt, ap);
    va_end(ap);
    if (rc < 0) {
        free_note(&note);
        return nomem(r);
    }
    /* Two containers reading the same missing object make one event. */
    for (size_t i = 0; i < res->n_warnings; i++) {
        if (!strcmp(res->warnings[i].reason, reason) &&
            !strcmp(res->warnings[i].message, note.message)) {
            free_note(&note);
            return 0;
        }
    }
    env_note *grown = realloc(res->warnings, (res->n_warnings + 1) * sizeof *grown);
    if (!grown) {
        free_note(&note);
        return nomem(r);
    }
    res->warnings = grown;
    res->warnings[res->n_warnings++] = note;
    return 0;
}

/* The ConfigMap or Secret name of the pod's namespace, asked for once. */
static object *fetch(resolver *r, bool secret, const char *name)
{
    for (size_t i = 0; i < r->n_objs; i++)
        if (r->objs[i].secret == secret && !strcmp(r->objs[i].name, name))
            return &r->objs[i];
    object *grown = realloc(r->objs, (r->n_objs + 1) * sizeof *grown);
    if (!grown)
        return NULL;
    r->objs = grown;
    object *o = &r->objs[r->n_objs++];
    *o = (object){.secret = secret, .name = name, .found = ENV_LOOKUP_FAILED};
    if (secret && r->in->get_secret)
        o->found = r->in->get_secret(r->in->ud, r->ns, name, &o->v);
    else if (!secret && r->in->get_configmap)
        o->found = r->in->get_configmap(r->in->ud, r->ns, name, &o->v);
    if (o->found != ENV_FOUND)
        o->v = NULL;
    return o;
}

/* Event reasons and message words for the two kinds of object. */
typedef struct kind_words {
    const char *kind, *lower;
    const char *optional_missing, *optional_key_missing;
    const char *mandatory_missing, *mandatory_key_missing;
    const char *read_failed_optional, *read_failed_mandatory;
} kind_words;

static const kind_words configmap_words = {
    "ConfigMap", "configmap",
    "OptionalConfigMapNotFound", "OptionalConfigMapKeyNotFound",
    "MandatoryConfigMapNotFound", "MandatoryConfigMapKeyNotFound",
    "FailedToReadOptionalConfigMap", "FailedToReadMandatoryConfigMap",
};

static const kind_words secret_words = {
    "Secret", "secret",
    "OptionalSecretNotFound", "OptionalSecretKeyNotFound",
    "MandatorySecretNotFound", "MandatorySecretKeyNotFound",
    "FailedToReadOptionalSecret", "FailedToReadMandatorySecret",
};

/* Fetch the object an env entry (var_name, or NULL for envFrom) refers to.
 * 1 with *out to use, 0 to skip it (optional and missing, warned), -1 to
 * fail. A failed lookup fails even an optional reference, as in the
 * kubelet: only a real 404 means the object is absent. */
static int get_object(resolver *r, bool secret, const char *name, bool optional,
                      const char *var_name, yajl_val *out)
{
    const kind_words *kw = secret ? &secret_words : &configmap_words;
    object *o = fetch(r, secret, name);
    if (!o)
        return nomem(r);
    if (o->found == ENV_FOUND) {
        *out = o->v;
        return 1;
    }
    if (o->found == ENV_LOOKUP_FAILED)
        return fail(r, ENV_UNAVAILABLE,
                    optional ? kw->read_failed_optional : kw->read_failed_mandatory, kw->kind,
                    name, "failed to read %s \"%s\"", kw->lower, name);
    if (!optional)
        return fail(r, ENV_MISSING, kw->mandatory_missing, kw->kind, name,
                    "%s \"%s\" not found", kw->lower, name);
    if (var_name)
        return warn(r, kw->optional_missing, kw->kind, name,
                    "skipping optional envvar \"%s\": %s \"%s\" not found", var_name, kw->lower,
                    name);
    return warn(r, kw->optional_missing, kw->kind, name, "%s \"%s\" not found", kw->lower, name);
}

/* Replace out's contents with what in encodes (see base64.h). */
static int base64_decode(const char *in, vk_buf *out)
{
    vk_buf_reset(out);
    return vk_base64_decode(in, strlen(in), out);
}

/* v, a value of a ConfigMap's data, or of a Secret's decoded into
 * r->scratch. NULL when v is absent (or not a string); *bad is
 * base64_decode's complaint. */
static const char *data_value(resolver *r, bool secret, yajl_val v, int *bad)
{
    const char *s = vk_json_str(v, NULL);
    *bad = 0;
    if (!s || !secret)
        return s;
    *bad = base64_decode(s, &r->scratch);
    return *bad ? NULL : r->scratch.data;
}

/* The kubelet's IsEnvVarName: [-._a-zA-Z][-._a-zA-Z0-9]*, and not ".",
 * ".." or anything starting with "..". */
static bool valid_env_name(const char *s)
{
    static const char first[] = "-._abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    if (!*s || !strchr(first, *s) || !strcmp(s, ".") || !strncmp(s, "..", 2))
        return false;
    for (s++; *s; s++)
        if (!strchr(first, *s) && !(*s >= '0' && *s <= '9'))
            return false;
    return true;
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One envFrom entry into env. */
static int env_from(resolver *r, yajl_val from, vars *env)
{
    const char *prefix = vk_json_str(vk_json_member(from, "prefix"), "");
    yajl_val src = vk_json_member(from, "configMapRef");
    bool secret = false;
    if (!src) {
        src = vk_json_member(from, "secretRef");
        secret = src != NULL;
    }
    if (!src)
        return 0;
    const char *name = vk_json_str(vk_json_member(src, "name"), "");
    bool optional = vk_json_bool(vk_json_member(src, "optional"), false);
    yajl_val obj;
    int rc = get_object(r, secret, name, optional, NULL, &obj);
    if (rc <= 0)
        return rc;

    yajl_val data = vk_json_member(obj, "data");
    char **invalid = NULL;
    size_t n_invalid = 0;
    vk_buf key = VK_BUF_INIT;
    rc = 0;
    for (size_t i = 0; YAJL_IS_OBJECT(data) && i < data->u.object.len && rc == 0; i++) {
        const char *k = data->u.object.keys[i];
        int bad;
        const char *v = data_value(r, secret, data->u.object.values[i], &bad);
        vk_buf_reset(&key);
        if (bad == -2 || vk_buf_printf(&key, "%s%s", prefix, k) < 0) {
            rc = nomem(r);
        } else if (bad) {
            rc = fail(r, ENV_INVALID, "CreateContainerConfigError", "Secret", name,
                      "secret %s/%s: key %s is not valid base64", r->ns, name, k);
        } else if (!valid_env_name(key.data)) {
            char **grown = realloc(invalid, (n_invalid + 1) * sizeof *grown);
            if (!grown)
                rc = nomem(r);
            else
                (invalid = grown)[n_invalid++] = vk_buf_steal(&key, NULL);
        } else if (v && vars_set(env, key.data, v) < 0) {
            rc = nomem(r);
        }
    }
    if (rc == 0 && n_invalid) {
        /* The kubelet's event, word for word. */
        vk_buf_reset(&key);
        qsort(invalid, n_invalid, sizeof *invalid, by_str);
        for (size_t i = 0; i < n_invalid && rc == 0; i++)
            if (vk_buf_printf(&key, "%s%s", i ? ", " : "", invalid[i]) < 0)
                rc = nomem(r);
        if (rc == 0)
            rc = warn(r, "InvalidEnvironmentVariableNames", secret ? "Secret" : "ConfigMap", name,
                      "Keys [%s] from the EnvFrom %s %s/%s were skipped since they are "
                      "considered invalid environment variable names.",
                      key.data, secret ? "secret" : "configMap", r->ns, name);
    }
    for (size_t i = 0; i < n_invalid; i++)
        free(invalid[i]);
    free(invalid);
    vk_buf_free(&key);
    return rc;
}

/* valueFrom.configMapKeyRef / secretKeyRef. 1 with the value in
 * r->scratch, 0 to leave the variable unset, -1 to fail. */
static int key_ref(resolver *r, yajl_val src, bool secret, const char *var_name)
{
    const kind_words *kw = secret ? &secret_words : &configmap_words;
    const char *name = vk_json_str(vk_json_member(src, "name"), "");
    const char *key = vk_json_str(vk_json_member(src, "key"), "");
    bool optional = vk_json_bool(vk_json_member(src, "optional"), false);
    yajl_val obj;
    int bad, rc = get_object(r, secret, name, optional, var_name, &obj);
    if (rc <= 0)
        return rc;
    const char *v = data_value(r, secret, vk_json_get(obj, "data", key, NULL), &bad);
    if (bad == -2)
        return nomem(r);
    if (bad)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", kw->kind, name,
                    "secret %s/%s: key %s is not valid base64", r->ns, name, key);
    if (!v && optional)
        return warn(r, kw->optional_key_missing, kw->kind, name,
                    "skipping optional envvar \"%s\": key \"%s\" does not exist in %s \"%s\"",
                    var_name, key, kw->lower, name);
    if (!v)
        return fail(r, ENV_MISSING, kw->mandatory_key_missing, kw->kind, name,
                    "couldn't find key %s in %s %s/%s", key, kw->kind, r->ns, name);
    if (v != r->scratch.data) {
        vk_buf_reset(&r->scratch);
        if (vk_buf_puts(&r->scratch, v) < 0)
            return nomem(r);
    }
    return 1;
}

static int join(vk_buf *out, const char *const *list, size_t n, size_t max)
{
    vk_buf_reset(out);
    if (vk_buf_puts(out, "") < 0)
        return -1;
    for (size_t i = 0; i < n && i < max; i++)
        if (vk_buf_printf(out, "%s%s", i ? "," : "", list[i]) < 0)
            return -1;
    return 0;
}

/* valueFrom.fieldRef, the downward API, into r->scratch. */
static int field_ref(resolver *r, yajl_val src)
{
    static const struct {
        const char *path;
        const char *members[3];
    } plain[] = {
        {"metadata.name", {"metadata", "name"}},
        {"metadata.namespace", {"metadata", "namespace"}},
        {"metadata.uid", {"metadata", "uid"}},
        {"spec.nodeName", {"spec", "nodeName"}},
        {"spec.serviceAccountName", {"spec", "serviceAccountName"}},
    };
    const char *version = vk_json_str(vk_json_member(src, "apiVersion"), "v1");
    const char *path = vk_json_str(vk_json_member(src, "fieldPath"), "");
    const env_inputs *in = r->in;
    int rc = 0;

    if (strcmp(version, "v1") != 0)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "unsupported pod version: %s", version);
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        if (!strcmp(path, plain[i].path)) {
            yajl_val v = vk_json_get(r->pod, plain[i].members[0], plain[i].members[1], NULL);
            vk_buf_reset(&r->scratch);
            return vk_buf_puts(&r->scratch, vk_json_str(v, "")) < 0 ? nomem(r) : 1;
        }
    }
    if (!strcmp(path, "status.podIP"))
        rc = join(&r->scratch, in->pod_ips, in->n_pod_ips, 1);
    else if (!strcmp(path, "status.podIPs"))
        rc = join(&r->scratch, in->pod_ips, in->n_pod_ips, SIZE_MAX);
    else if (!strcmp(path, "status.hostIP"))
        rc = join(&r->scratch, in->host_ips, in->n_host_ips, 1);
    else if (!strcmp(path, "status.hostIPs"))
        rc = join(&r->scratch, in->host_ips, in->n_host_ips, SIZE_MAX);
    else {
        /* metadata.labels['key'] and metadata.annotations['key']: a
         * missing key reads as "". */
        const char *map = !strncmp(path, "metadata.labels['", 17) ? "labels"
                        : !strncmp(path, "metadata.annotations['", 22) ? "annotations" : NULL;
        size_t len = strlen(path), open = map ? strlen(map) + 11 : 0;
        if (!map || len < open + 2 || strcmp(path + len - 2, "']") != 0)
            return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                        "field label not supported: %s", path);
        char *key = strndup(path + open, len - open - 2);
        if (!key)
            return nomem(r);
        const char *v = vk_json_str(vk_json_get(r->pod, "metadata", map, key, NULL), "");
        free(key);
        vk_buf_reset(&r->scratch);
        rc = vk_buf_puts(&r->scratch, v);
    }
    return rc < 0 ? nomem(r) : 1;
}

static yajl_val find_container(yajl_val spec, const char *name, bool *regular)
{
    for (int l = 0; l < 2; l++) {
        yajl_val list = vk_json_member(spec, container_lists[l]);
        for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++) {
            yajl_val c = list->u.array.values[i];
            if (!strcmp(vk_json_str(vk_json_member(c, "name"), ""), name)) {
                *regular = !strcmp(container_lists[l], "containers");
                return c;
            }
        }
    }
    return NULL;
}

/* A quantity that may be written as a JSON number. */
static const char *quantity_text(yajl_val v)
{
    return YAJL_IS_NUMBER(v) ? v->u.number.r : vk_json_str(v, NULL);
}

/* valueFrom.resourceFieldRef of container self, into r->scratch. */
static int resource_ref(resolver *r, yajl_val src, yajl_val self)
{
    const char *resource = vk_json_str(vk_json_member(src, "resource"), "");
    const char *cname = vk_json_str(vk_json_member(src, "containerName"), "");
    const char *divisor = quantity_text(vk_json_member(src, "divisor"));
    const env_inputs *in = r->in;
    yajl_val target = self;
    /* The kubelet fills missing limits in for the container being started
     * and for the pod's regular containers, not for other init containers. */
    bool defaulted = true;

    if (*cname && !(target = find_container(vk_json_member(r->pod, "spec"), cname, &defaulted)))
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "container %s not found", cname);
    defaulted = defaulted || target == self;

    const char *dot = strchr(resource, '.');
    const char *rname = dot ? dot + 1 : "";
    bool limits = dot && (size_t)(dot - resource) == 6 && !strncmp(resource, "limits", 6);
    bool requests = dot && (size_t)(dot - resource) == 8 && !strncmp(resource, "requests", 8);
    bool cpu = !strcmp(rname, "cpu");
    const char *alloc = cpu ? in->alloc_cpu
                      : !strcmp(rname, "memory") ? in->alloc_memory
                      : !strcmp(rname, "ephemeral-storage") ? in->alloc_ephemeral_storage : NULL;
    bool known = cpu || !strcmp(rname, "memory") || !strcmp(rname, "ephemeral-storage") ||
                 !strncmp(rname, "hugepages-", 10);
    if (!(limits || requests) || !known)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "unsupported container resource: %s", resource);

    const char *q = quantity_text(vk_json_get(target, "resources", limits ? "limits" : "requests",
                                              rname, NULL));
    int64_t value = 0, div = 0;
    if (limits && defaulted && alloc && (!q || (vk_quantity_milli(q, &value) == 0 && value == 0)))
        q = alloc;
    int (*scale)(const char *, int64_t *) = cpu ? vk_quantity_milli : vk_quantity_value;
    value = 0;
    if (q && scale(q, &value) < 0)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "%s: malformed quantity \"%s\"", resource, q);
    if (divisor && scale(divisor, &div) < 0)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "%s: malformed divisor \"%s\"", resource, divisor);
    if (div == 0) /* unset or zero: 1, in millis for CPU */
        div = cpu ? 1000 : 1;
    if (div < 0 || value < 0)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "%s: negative quantity", resource);
    vk_buf_reset(&r->scratch);
    if (vk_buf_printf(&r->scratch, "%lld", (long long)(value / div + (value % div != 0))) < 0)
        return nomem(r);
    return 1;
}

/* The environment of container c, in env. */
static int resolve_container(resolver *r, yajl_val c, vars *env)
{
    yajl_val from = vk_json_member(c, "envFrom"), list = vk_json_member(c, "env");
    vk_buf expanded = VK_BUF_INIT;
    int rc = 0;

    for (size_t i = 0; YAJL_IS_ARRAY(from) && i < from->u.array.len && rc == 0; i++)
        rc = env_from(r, from->u.array.values[i], env);

    for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len && rc == 0; i++) {
        yajl_val e = list->u.array.values[i];
        const char *name = vk_json_str(vk_json_member(e, "name"), NULL);
        const char *value = vk_json_str(vk_json_member(e, "value"), "");
        yajl_val from_ref = vk_json_member(e, "valueFrom"), src;
        int got = 1;
        if (!name || !*name) {
            rc = fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                      "an env entry of container \"%s\" has no name",
                      vk_json_str(vk_json_member(c, "name"), ""));
            break;
        }
        if (*value || !from_ref) {
            if (expand(value, env, &r->services, &expanded) < 0 ||
                vars_set(env, name, expanded.data ? expanded.data : "") < 0)
                rc = nomem(r);
            continue;
        }
        vk_buf_reset(&r->scratch);
        if ((src = vk_json_member(from_ref, "fieldRef")))
            got = field_ref(r, src);
        else if ((src = vk_json_member(from_ref, "resourceFieldRef")))
            got = resource_ref(r, src, c);
        else if ((src = vk_json_member(from_ref, "configMapKeyRef")))
            got = key_ref(r, src, false, name);
        else if ((src = vk_json_member(from_ref, "secretKeyRef")))
            got = key_ref(r, src, true, name);
        /* else a source this version does not know: "", as in the kubelet */
        if (got < 0)
            rc = -1;
        else if (got > 0 && vars_set(env, name, r->scratch.data ? r->scratch.data : "") < 0)
            rc = nomem(r);
    }
    if (expanded.data)
        explicit_bzero(expanded.data, expanded.cap);
    vk_buf_free(&expanded);
    if (rc < 0)
        return -1;

    /* Service variables come last and never override. */
    for (size_t i = 0; i < r->services.n; i++) {
        envvar *s = &r->services.v[i];
        if (!vars_get(env, s->name) && vars_set(env, s->name, s->value) < 0)
            return nomem(r);
    }
    return 0;
}

/* ---- service links --------------------------------------------------------- */

/* Upper case, '-' to '_', as the kubelet names service variables. */
static int env_name(vk_buf *b, const char *s)
{
    for (; *s; s++) {
        char c = *s == '-' ? '_' : (*s >= 'a' && *s <= 'z') ? (char)(*s - 'a' + 'A') : *s;
        if (vk_buf_append(b, &c, 1) < 0)
            return -1;
    }
    return 0;
}

static int set_fmt(vars *vs, vk_buf *name, size_t keep, const char *suffix, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Set name[0..keep) + suffix to the formatted value. */
static int set_fmt(vars *vs, vk_buf *name, size_t keep, const char *suffix, const char *fmt, ...)
{
    char value[512];
    va_list ap;
    name->len = keep;
    if (vk_buf_puts(name, suffix) < 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    return vars_set(vs, name->data, value);
}

/* Copy s into dst[n], in lower case (to_upper false) or upper case. */
static void set_case(char *dst, size_t n, const char *s, bool to_upper)
{
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) {
        char c = s[i];
        if (to_upper && c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        else if (!to_upper && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        dst[i] = c;
    }
    dst[i] = '\0';
}

/* pkg/kubelet/envvars FromServices, for one service. */
static int link_service(vars *vs, const env_service *svc)
{
    vk_buf name = VK_BUF_INIT;
    char host[128], proto[16];
    int rc = env_name(&name, svc->name);
    size_t base = name.len;
    const char *ip = svc->cluster_ip;
    /* Like net.JoinHostPort: an IPv6 address needs brackets before a port. */
    snprintf(host, sizeof host, strchr(ip, ':') ? "[%s]" : "%s", ip);

    rc = rc < 0 ? -1 : set_fmt(vs, &name, base, "_SERVICE_HOST", "%s", ip);
    if (rc == 0 && svc->n_ports > 0)
        rc = set_fmt(vs, &name, base, "_SERVICE_PORT", "%d", svc->ports[0].port);
    for (size_t i = 0; rc == 0 && i < svc->n_ports; i++) {
        const env_port *p = &svc->ports[i];
        if (!p->name || !*p->name)
            continue;
        name.len = base;
        if (vk_buf_puts(&name, "_SERVICE_PORT_") < 0 || env_name(&name, p->name) < 0)
            rc = -1;
        else
            rc = set_fmt(vs, &name, name.len, "", "%d", p->port);
    }
    /* Docker links: the first port is also {SVC}_PORT. */
    for (size_t i = 0; rc == 0 && i < svc->n_ports; i++) {
        const env_port *p = &svc->ports[i];
        const char *protocol = p->protocol && *p->protocol ? p->protocol : "TCP";
        char upper[16];
        set_case(proto, sizeof proto, protocol, false);
        set_case(upper, sizeof upper, protocol, true);
        if (i == 0)
            rc = set_fmt(vs, &name, base, "_PORT", "%s://%s:%d", proto, host, p->port);
        name.len = base;
        if (rc == 0 && vk_buf_printf(&name, "_PORT_%d_%s", p->port, upper) < 0)
            rc = -1;
        size_t port_base = name.len;
        if (rc == 0)
            rc = set_fmt(vs, &name, port_base, "", "%s://%s:%d", proto, host, p->port);
        if (rc == 0)
            rc = set_fmt(vs, &name, port_base, "_PROTO", "%s", proto);
        if (rc == 0)
            rc = set_fmt(vs, &name, port_base, "_PORT", "%d", p->port);
        if (rc == 0)
            rc = set_fmt(vs, &name, port_base, "_ADDR", "%s", ip);
    }
    vk_buf_free(&name);
    return rc;
}

static bool ip_set(const char *ip)
{
    return ip && *ip && strcmp(ip, "None") != 0;
}

/* The services the kubelet would link for a pod of namespace ns, in
 * r->services. */
static int link_services(resolver *r, bool enable)
{
    const env_service **chosen = calloc(r->in->n_services + 1, sizeof *chosen);
    size_t n = 0;
    int rc = 0;
    if (!chosen)
        return nomem(r);
    for (size_t i = 0; i < r->in->n_services; i++) {
        const env_service *s = &r->in->services[i];
        size_t at = 0;
        bool master = !strcmp(s->ns, "default") && !strcmp(s->name, "kubernetes");
        if (!ip_set(s->cluster_ip) || !(master || (enable && !strcmp(s->ns, r->ns))))
            continue;
        while (at < n && strcmp(chosen[at]->name, s->name) != 0)
            at++;
        /* By name, as the kubelet's map is keyed: the master service never
         * replaces one already there, a service of the pod's namespace does. */
        if (at == n)
            chosen[n++] = s;
        else if (!master)
            chosen[at] = s;
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (link_service(&r->services, chosen[i]) < 0)
            rc = nomem(r);
    free(chosen);
    return rc;
}

/* ---- writing the resolved pod ---------------------------------------------- */

static void emit_expanded(vk_json_writer *w, yajl_val arr, const vars *env, vk_buf *tmp)
{
    if (!YAJL_IS_ARRAY(arr)) {
        vk_jw_tree(w, arr);
        return;
    }
    vk_jw_array_open(w);
    for (size_t i = 0; i < arr->u.array.len; i++) {
        yajl_val v = arr->u.array.values[i];
        if (!YAJL_IS_STRING(v))
            vk_jw_tree(w, v);
        else if (expand(v->u.string, env, NULL, tmp) < 0)
            w->failed = true;
        else
            vk_jw_str(w, tmp->data ? tmp->data : "");
    }
    vk_jw_array_close(w);
}

static void emit_env(vk_json_writer *w, const vars *env)
{
    vk_jw_array_open(w);
    for (size_t i = 0; i < env->n; i++) {
        vk_jw_map_open(w);
        vk_jw_kv_str(w, "name", env->v[i].name);
        vk_jw_kv_str(w, "value", env->v[i].value);
        vk_jw_map_close(w);
    }
    vk_jw_array_close(w);
}

/* c with env flattened, envFrom dropped, command and args expanded. */
static void emit_container(vk_json_writer *w, yajl_val c, const vars *env)
{
    vk_buf tmp = VK_BUF_INIT;
    bool env_done = false;
    vk_jw_map_open(w);
    for (size_t i = 0; i < c->u.object.len; i++) {
        const char *key = c->u.object.keys[i];
        yajl_val v = c->u.object.values[i];
        if (!strcmp(key, "envFrom") || (!strcmp(key, "env") && env_done))
            continue;
        vk_jw_str(w, key);
        if (!strcmp(key, "command") || !strcmp(key, "args")) {
            emit_expanded(w, v, env, &tmp);
        } else if (!strcmp(key, "env")) {
            env_done = true;
            emit_env(w, env);
        } else {
            vk_jw_tree(w, v);
        }
    }
    if (!env_done && env->n) {
        vk_jw_str(w, "env");
        emit_env(w, env);
    }
    vk_jw_map_close(w);
    if (tmp.data)
        explicit_bzero(tmp.data, tmp.cap);
    vk_buf_free(&tmp);
}

static void emit_spec(vk_json_writer *w, yajl_val spec, vars *const envs[N_LISTS])
{
    vk_jw_map_open(w);
    for (size_t i = 0; i < spec->u.object.len; i++) {
        const char *key = spec->u.object.keys[i];
        yajl_val v = spec->u.object.values[i];
        int l = 0;
        /* Only the member lookups resolved (the last of duplicate keys). */
        while (l < N_LISTS && !(strcmp(key, container_lists[l]) == 0 &&
                                v == vk_json_member(spec, key) && YAJL_IS_ARRAY(v)))
            l++;
        vk_jw_str(w, key);
        if (l == N_LISTS) {
            vk_jw_tree(w, v);
            continue;
        }
        vk_jw_array_open(w);
        for (size_t j = 0; j < v->u.array.len; j++)
            emit_container(w, v->u.array.values[j], &envs[l][j]);
        vk_jw_array_close(w);
    }
    vk_jw_map_close(w);
}

static int emit_pod(resolver *r, vars *const envs[N_LISTS])
{
    vk_json_writer w;
    yajl_val spec = vk_json_member(r->pod, "spec");
    if (vk_jw_begin(&w, &r->res->pod) < 0) {
        vk_jw_end(&w);
        return nomem(r);
    }
    vk_jw_map_open(&w);
    for (size_t i = 0; i < r->pod->u.object.len; i++) {
        yajl_val v = r->pod->u.object.values[i];
        vk_jw_str(&w, r->pod->u.object.keys[i]);
        if (v == spec)
            emit_spec(&w, spec, envs);
        else
            vk_jw_tree(&w, v);
    }
    vk_jw_map_close(&w);
    return vk_jw_end(&w) < 0 ? nomem(r) : 0;
}

/* ---- entry points ---------------------------------------------------------- */

/* Check the shape the walk relies on; containers must be objects. */
static int check_pod(resolver *r, yajl_val spec)
{
    if (!YAJL_IS_OBJECT(r->pod) || !YAJL_IS_OBJECT(spec))
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "pod JSON: not an object with a spec");
    if (!*r->ns)
        return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                    "pod JSON: no metadata.namespace");
    for (int l = 0; l < N_LISTS; l++) {
        yajl_val list = vk_json_member(spec, container_lists[l]);
        if (list && !YAJL_IS_ARRAY(list) && !YAJL_IS_NULL(list))
            return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                        "pod JSON: spec.%s is not a list", container_lists[l]);
        for (size_t i = 0; YAJL_IS_ARRAY(list) && i < list->u.array.len; i++)
            if (!YAJL_IS_OBJECT(list->u.array.values[i]))
                return fail(r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL,
                            "pod JSON: spec.%s[%zu] is not an object", container_lists[l], i);
    }
    return 0;
}

enum env_status env_resolve(const char *pod_json, size_t len, const env_inputs *in,
                            env_result *res)
{
    char perr[256];
    yajl_val pod = vk_json_parse_bytes(pod_json, len, perr, sizeof perr);
    if (!pod) {
        resolver r = {.in = in, .res = res};
        memset(res, 0, sizeof *res);
        fail(&r, ENV_INVALID, "CreateContainerConfigError", NULL, NULL, "pod JSON: %s", perr);
        return res->status;
    }
    env_resolve_tree(pod, in, res);
    yajl_tree_free(pod);
    return res->status;
}

enum env_status env_resolve_tree(yajl_val pod, const env_inputs *in, env_result *res)
{
    resolver r = {.in = in, .res = res, .pod = pod};
    vars *envs[N_LISTS] = {NULL, NULL, NULL};
    size_t counts[N_LISTS] = {0, 0, 0};

    memset(res, 0, sizeof *res);
    yajl_val spec = vk_json_member(r.pod, "spec");
    r.ns = vk_json_str(vk_json_get(r.pod, "metadata", "namespace", NULL), "");
    if (check_pod(&r, spec) < 0 ||
        link_services(&r, vk_json_bool(vk_json_member(spec, "enableServiceLinks"), true)) < 0)
        goto out;

    for (int l = 0; l < N_LISTS; l++) {
        yajl_val list = vk_json_member(spec, container_lists[l]);
        counts[l] = YAJL_IS_ARRAY(list) ? list->u.array.len : 0;
        if (!(envs[l] = calloc(counts[l] + 1, sizeof **envs))) {
            nomem(&r);
            goto out;
        }
        for (size_t i = 0; i < counts[l]; i++)
            if (resolve_container(&r, list->u.array.values[i], &envs[l][i]) < 0)
                goto out;
    }
    if (emit_pod(&r, envs) == 0)
        vk_debug("pod environment resolved", "pod=%s/%s warnings=%zu", r.ns,
                 vk_json_str(vk_json_get(r.pod, "metadata", "name", NULL), ""), res->n_warnings);
out:
    if (res->status != ENV_OK && res->pod.data) {
        explicit_bzero(res->pod.data, res->pod.cap);
        vk_buf_free(&res->pod);
    }
    for (int l = 0; l < N_LISTS; l++) {
        for (size_t i = 0; envs[l] && i < counts[l]; i++)
            vars_free(&envs[l][i]);
        free(envs[l]);
    }
    for (size_t i = 0; i < r.n_objs; i++)
        if (r.objs[i].v && in->release)
            in->release(in->ud, r.objs[i].v);
    free(r.objs);
    vars_free(&r.services);
    if (r.scratch.data)
        explicit_bzero(r.scratch.data, r.scratch.cap);
    vk_buf_free(&r.scratch);
    return res->status;
}

void env_result_free(env_result *res)
{
    if (res->pod.data)
        explicit_bzero(res->pod.data, res->pod.cap);
    vk_buf_free(&res->pod);
    free_note(&res->error);
    for (size_t i = 0; i < res->n_warnings; i++)
        free_note(&res->warnings[i]);
    free(res->warnings);
    memset(res, 0, sizeof *res);
}

/* ---- references ------------------------------------------------------------ */

typedef struct ref_list {
    ref *v;
    size_t n;
    bool failed;
} ref_list;

static void add_ref(ref_list *l, enum ref_kind kind, const char *name)
{
    if (!name || !*name || l->failed)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].kind == kind && !strcmp(l->v[i].name, name))
            return;
    ref *grown = realloc(l->v, (l->n + 1) * sizeof *grown);
    if (!grown) {
        l->failed = true;
        return;
    }
    l->v = grown;
    l->v[l->n++] = (ref){kind, name};
}

/* v.a.b as a string (v.a when b is NULL), or NULL. */
static const char *str_at(yajl_val v, const char *a, const char *b)
{
    return vk_json_str(vk_json_get(v, a, b, NULL), NULL);
}

int env_pod_refs(yajl_val pod, ref **list, size_t *n)
{
    /* Volume sources whose secretRef.name names a Secret, as in the API
     * server's Node authorizer graph (podutil.VisitPodSecretNames). */
    static const char *const secret_ref_volumes[] = {"cephfs", "cinder", "flexVolume", "iscsi",
                                                     "rbd", "scaleIO", "storageos"};
    yajl_val spec = vk_json_member(pod, "spec");
    yajl_val pulls = vk_json_member(spec, "imagePullSecrets");
    yajl_val volumes = vk_json_member(spec, "volumes");
    ref_list l = {NULL, 0, false};

    for (size_t i = 0; YAJL_IS_ARRAY(pulls) && i < pulls->u.array.len; i++)
        add_ref(&l, REF_SECRET, str_at(pulls->u.array.values[i], "name", NULL));

    for (int k = 0; k < N_LISTS; k++) {
        yajl_val cs = vk_json_member(spec, container_lists[k]);
        for (size_t i = 0; YAJL_IS_ARRAY(cs) && i < cs->u.array.len; i++) {
            yajl_val env = vk_json_member(cs->u.array.values[i], "env");
            yajl_val from = vk_json_member(cs->u.array.values[i], "envFrom");
            for (size_t j = 0; YAJL_IS_ARRAY(env) && j < env->u.array.len; j++) {
                yajl_val vf = vk_json_member(env->u.array.values[j], "valueFrom");
                add_ref(&l, REF_CONFIGMAP, str_at(vf, "configMapKeyRef", "name"));
                add_ref(&l, REF_SECRET, str_at(vf, "secretKeyRef", "name"));
            }
            for (size_t j = 0; YAJL_IS_ARRAY(from) && j < from->u.array.len; j++) {
                add_ref(&l, REF_CONFIGMAP, str_at(from->u.array.values[j], "configMapRef", "name"));
                add_ref(&l, REF_SECRET, str_at(from->u.array.values[j], "secretRef", "name"));
            }
        }
    }

    for (size_t i = 0; YAJL_IS_ARRAY(volumes) && i < volumes->u.array.len; i++) {
        yajl_val v = volumes->u.array.values[i];
        yajl_val sources = vk_json_get(v, "projected", "sources", NULL);
        add_ref(&l, REF_CONFIGMAP, str_at(v, "configMap", "name"));
        add_ref(&l, REF_SECRET, str_at(v, "secret", "secretName"));
        add_ref(&l, REF_SECRET, str_at(v, "azureFile", "secretName"));
        add_ref(&l, REF_SECRET, vk_json_str(vk_json_get(v, "csi", "nodePublishSecretRef", "name",
                                                        NULL), NULL));
        for (size_t k = 0; k < sizeof secret_ref_volumes / sizeof *secret_ref_volumes; k++)
            add_ref(&l, REF_SECRET, vk_json_str(vk_json_get(v, secret_ref_volumes[k], "secretRef",
                                                            "name", NULL), NULL));
        for (size_t j = 0; YAJL_IS_ARRAY(sources) && j < sources->u.array.len; j++) {
            yajl_val s = sources->u.array.values[j];
            add_ref(&l, REF_CONFIGMAP, str_at(s, "configMap", "name"));
            add_ref(&l, REF_SECRET, str_at(s, "secret", "name"));
            if (vk_json_member(s, "serviceAccountToken"))
                add_ref(&l, REF_SERVICE_ACCOUNT,
                        vk_json_str(vk_json_member(spec, "serviceAccountName"), "default"));
        }
    }

    if (l.failed) {
        free(l.v);
        *list = NULL;
        *n = 0;
        return -1;
    }
    *list = l.v;
    *n = l.n;
    return 0;
}
