/* volumes.c -- the /create body: interLink's RetrievedPodData.
 *
 *   {"pod": <v1.Pod>,
 *    "container": [{"name": "...", "configMaps": [<v1.ConfigMap>...],
 *                   "projectedvolumemaps": [<v1.ConfigMap>...],
 *                   "secrets": [<v1.Secret>...], "emptyDirs": null}, ...]}
 *
 * with one "container" entry per init container and container, in that
 * order, listing the objects of the volumes it mounts: what interLink's API
 * server builds (getData in pkg/interlink/api/func.go) before it calls a
 * plugin. Empty lists are null, as Go writes them.
 *
 * ConfigMaps and Secrets come from the core. Projected volumes become one
 * ConfigMap per volume, named after it, whose data maps each file path to
 * its content, as interLink's virtual kubelet builds them: configMap
 * sources, serviceAccountToken sources (a token from the core) and
 * downwardAPI fieldRefs. downwardAPI volumes are turned into projected
 * volumes in the pod sent, as interLink's virtual kubelet does, so that
 * plugins find them where they look. Secret sources of projected volumes
 * are left out, as interLink leaves them out, and so are projected volumes
 * altogether with --disable-projected-volumes (interLink's
 * DisableProjectedVolumes).
 */
#include "interlink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* The whole body; a pod's objects are bounded one by one by the core's
 * message size, this bounds their sum. */
#define BODY_MAX (64u << 20)
/* interLink asks for tokens that outlive any job, since a plugin gets the
 * file once and nobody rotates it; the API server caps the lifetime. */
#define TOKEN_SECONDS (100LL * 365 * 24 * 3600)

enum kind { K_OTHER, K_CONFIGMAP, K_SECRET, K_PROJECTED };

struct volume {
    const char *name;
    yajl_val spec;
    enum kind kind;
    yajl_val object; /* the ConfigMap, Secret or projected map; NULL: none */
};

struct build {
    const vk_pod *pod;
    yajl_val tree;
    struct volume *vols;
    size_t n_vols;
    vk_status *st;
};

static const char *str(const char *s) { return s ? s : ""; }

/* A failed core call's code as CreatePod's. UNIMPLEMENTED would read as a
 * provider without CreatePod. */
static int core_code(int code)
{
    return code == VK_UNIMPLEMENTED ? VK_FAILED_PRECONDITION : code;
}

/* ---- objects from the core -------------------------------------------- */

static int fetch(struct build *b, bool secret, const char *name, bool optional,
                 const char *volume, yajl_val *out)
{
    const char *what = secret ? "Secret" : "ConfigMap", *ns = str(b->pod->namespace);
    vk_buf doc = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code = secret ? vk_core_get_secret(provider, ns, name, &doc, &st)
                      : vk_core_get_configmap(provider, ns, name, &doc, &st);
    char err[128];
    if (code == VK_OK && !(*out = vk_json_parse(doc.data ? doc.data : "", doc.len, err,
                                                 sizeof err)))
        vk_status_set(b->st, code = VK_INTERNAL, "the core's %s %s/%s is not JSON: %s", what,
                      ns, name, err);
    else if (code == VK_NOT_FOUND && optional)
        code = VK_OK;
    else if (code == VK_NOT_FOUND)
        /* The core retries on UNAVAILABLE: the object may yet appear, as
         * interLink's virtual kubelet waits for it too. */
        vk_status_set(b->st, code = VK_UNAVAILABLE, "%s %s/%s of volume %s does not exist",
                      what, ns, name, volume);
    else if (code != VK_OK)
        vk_status_set(b->st, code = core_code(code), "cannot get %s %s/%s of volume %s: %s",
                      what, ns, name,
                      volume, str(st.message));
    vk_status_clear(&st);
    vk_buf_free(&doc);
    return code;
}

/* ---- projected volumes -------------------------------------------------- */

static int cmp_kv(const void *a, const void *b)
{
    return strcmp(((const vk_kv *)a)->name, ((const vk_kv *)b)->name);
}

/* Labels or annotations as the kubelet writes them into a file:
 * key="value" lines, sorted by key. */
static int format_map(const vk_kv *kv, size_t n, vk_buf *out)
{
    vk_kv *sorted = n ? malloc(n * sizeof *sorted) : NULL;
    if (n && !sorted)
        return -1;
    if (n)
        memcpy(sorted, kv, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_kv);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = vk_buf_printf(out, "%s=", sorted[i].name);
        rc = rc ? rc : vk_json_quote(out, sorted[i].value, strlen(sorted[i].value));
        rc = rc ? rc : vk_buf_puts(out, "\n");
    }
    free(sorted);
    return rc;
}

/* A fieldRef's value, appended to out; false for a path not supported. */
static bool field_value(const vk_pod *pod, const char *path, vk_buf *out)
{
    const char *v = NULL;
    if (strcmp(path, "metadata.name") == 0)
        v = pod->name;
    else if (strcmp(path, "metadata.namespace") == 0)
        v = pod->namespace;
    else if (strcmp(path, "metadata.uid") == 0)
        v = pod->uid;
    else if (strcmp(path, "spec.nodeName") == 0)
        v = pod->node_name;
    else if (strcmp(path, "spec.serviceAccountName") == 0)
        v = pod->service_account_name;
    else if (strcmp(path, "metadata.labels") == 0)
        return format_map(pod->labels, pod->n_labels, out) == 0;
    else if (strcmp(path, "metadata.annotations") == 0)
        return format_map(pod->annotations, pod->n_annotations, out) == 0;
    else if (strcmp(path, "status.podIP") != 0 && strcmp(path, "status.hostIP") != 0)
        return false;
    return vk_buf_puts(out, str(v)) == 0;
}

static void downward_items(struct build *b, yajl_val items, vk_json_writer *w)
{
    vk_buf value = VK_BUF_INIT;
    for (size_t i = 0; YAJL_IS_ARRAY(items) && i < items->u.array.len; i++) {
        yajl_val it = items->u.array.values[i];
        const char *path = vk_json_str(vk_json_member(it, "path"), NULL);
        const char *field = vk_json_str(vk_json_get(it, "fieldRef", "fieldPath", NULL), NULL);
        vk_buf_reset(&value);
        if (path && field && field_value(b->pod, field, &value)) {
            vk_jw_kv_str(w, path, value.data ? value.data : "");
        } else {
            vk_warn("downwardAPI item not supported, left out", "pod=%s/%s path=%s",
                    str(b->pod->namespace), str(b->pod->name), str(path));
        }
    }
    vk_buf_free(&value);
}

static int configmap_source(struct build *b, const char *volume, yajl_val src,
                            vk_json_writer *w)
{
    const char *name = vk_json_str(vk_json_member(src, "name"), "");
    bool optional = vk_json_bool(vk_json_member(src, "optional"), false);
    yajl_val cm = NULL;
    int code = fetch(b, false, name, optional, volume, &cm);
    yajl_val data = vk_json_member(cm, "data");
    yajl_val items = vk_json_member(src, "items");
    bool every_key = !YAJL_IS_ARRAY(items) || !items->u.array.len;
    for (size_t i = 0; every_key && YAJL_IS_OBJECT(data) && i < data->u.object.len; i++)
        vk_jw_kv_str(w, data->u.object.keys[i], vk_json_str(data->u.object.values[i], ""));
    for (size_t i = 0; !every_key && cm && code == VK_OK && i < items->u.array.len; i++) {
        yajl_val it = items->u.array.values[i];
        const char *key = vk_json_str(vk_json_member(it, "key"), "");
        const char *value = vk_json_str(vk_json_member(data, key), NULL);
        if (value)
            vk_jw_kv_str(w, vk_json_str(vk_json_member(it, "path"), key), value);
        else if (!optional)
            vk_status_set(b->st, code = VK_UNAVAILABLE,
                          "ConfigMap %s/%s of volume %s has no key %s",
                          str(b->pod->namespace), name, volume, key);
    }
    yajl_tree_free(cm);
    return code;
}

static int token_source(struct build *b, const char *volume, yajl_val src, vk_json_writer *w)
{
    const vk_pod *pod = b->pod;
    const char *audience = vk_json_str(vk_json_member(src, "audience"), NULL);
    const char *sa = pod->service_account_name ? pod->service_account_name : "default";
    vk_buf token = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code = vk_core_service_account_token(provider, str(pod->namespace), pod->name,
                                             pod->uid, sa, &audience, audience ? 1 : 0,
                                             TOKEN_SECONDS, &token, NULL, &st);
    if (code == VK_OK)
        vk_jw_kv_str(w, vk_json_str(vk_json_member(src, "path"), "token"),
                     token.data ? token.data : "");
    else if (code == VK_UNIMPLEMENTED)
        vk_status_set(b->st, code = core_code(code),
                      "the core issues no service-account tokens (%s), which volume %s needs: "
                      "start the shim with --disable-projected-volumes to leave such volumes out",
                      str(st.message), volume);
    else
        vk_status_set(b->st, code, "cannot get a token of service account %s for volume %s: %s",
                      sa, volume, str(st.message));
    vk_status_clear(&st);
    vk_buf_free(&token);
    return code;
}

/* The projected ConfigMap of a projected or downwardAPI volume. */
static int projected(struct build *b, struct volume *v, yajl_val sources, yajl_val downward)
{
    vk_buf doc = VK_BUF_INIT;
    vk_json_writer w;
    int code = VK_OK;
    vk_jw_begin(&w, &doc);
    vk_jw_map_open(&w);
    vk_jw_str(&w, "metadata");
    vk_jw_map_open(&w);
    vk_jw_kv_str(&w, "name", v->name);
    vk_jw_map_close(&w);
    vk_jw_str(&w, "data");
    vk_jw_map_open(&w);
    downward_items(b, vk_json_member(downward, "items"), &w);
    for (size_t i = 0; YAJL_IS_ARRAY(sources) && i < sources->u.array.len && code == VK_OK;
         i++) {
        yajl_val src = sources->u.array.values[i];
        if (vk_json_member(src, "configMap"))
            code = configmap_source(b, v->name, vk_json_member(src, "configMap"), &w);
        else if (vk_json_member(src, "serviceAccountToken"))
            code = token_source(b, v->name, vk_json_member(src, "serviceAccountToken"), &w);
        else if (vk_json_member(src, "downwardAPI"))
            downward_items(b, vk_json_get(src, "downwardAPI", "items", NULL), &w);
        else
            vk_warn("projected source not supported, left out", "pod=%s/%s volume=%s",
                    str(b->pod->namespace), str(b->pod->name), v->name);
    }
    vk_jw_map_close(&w);
    vk_jw_map_close(&w);
    if (vk_jw_end(&w) < 0 && code == VK_OK)
        vk_status_set(b->st, code = VK_RESOURCE_EXHAUSTED, "out of memory");
    if (code == VK_OK && !(v->object = vk_json_parse(doc.data, doc.len, NULL, 0)))
        vk_status_set(b->st, code = VK_INTERNAL, "cannot build projected volume %s", v->name);
    vk_buf_free(&doc);
    return code;
}

static int gather(struct build *b, struct volume *v)
{
    yajl_val s;
    if ((s = vk_json_member(v->spec, "configMap"))) {
        v->kind = K_CONFIGMAP;
        return fetch(b, false, vk_json_str(vk_json_member(s, "name"), ""),
                     vk_json_bool(vk_json_member(s, "optional"), false), v->name, &v->object);
    }
    if ((s = vk_json_member(v->spec, "secret"))) {
        v->kind = K_SECRET;
        return fetch(b, true, vk_json_str(vk_json_member(s, "secretName"), ""),
                     vk_json_bool(vk_json_member(s, "optional"), false), v->name, &v->object);
    }
    if ((s = vk_json_member(v->spec, "projected")) && !config.no_projected) {
        v->kind = K_PROJECTED;
        return projected(b, v, vk_json_member(s, "sources"), NULL);
    }
    if ((s = vk_json_member(v->spec, "downwardAPI"))) {
        v->kind = K_PROJECTED;
        return projected(b, v, NULL, s);
    }
    return VK_OK;
}

/* ---- writing ---------------------------------------------------------------- */

/* A downwardAPI volume in the projected form interLink's virtual kubelet
 * gives it; every other volume as it is. */
static void write_volume(vk_json_writer *w, yajl_val v)
{
    yajl_val d = vk_json_member(v, "downwardAPI");
    if (!d) {
        vk_jw_tree(w, v);
        return;
    }
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "name", vk_json_str(vk_json_member(v, "name"), ""));
    vk_jw_str(w, "projected");
    vk_jw_map_open(w);
    if (vk_json_member(d, "defaultMode")) {
        vk_jw_str(w, "defaultMode");
        vk_jw_tree(w, vk_json_member(d, "defaultMode"));
    }
    vk_jw_str(w, "sources");
    vk_jw_array_open(w);
    vk_jw_map_open(w);
    vk_jw_str(w, "downwardAPI");
    vk_jw_map_open(w);
    vk_jw_str(w, "items");
    vk_jw_tree(w, vk_json_member(d, "items"));
    vk_jw_map_close(w);
    vk_jw_map_close(w);
    vk_jw_array_close(w);
    vk_jw_map_close(w);
    vk_jw_map_close(w);
}

static void write_pod(vk_json_writer *w, yajl_val pod)
{
    vk_jw_map_open(w);
    for (size_t i = 0; i < pod->u.object.len; i++) {
        const char *key = pod->u.object.keys[i];
        yajl_val spec = pod->u.object.values[i];
        vk_jw_str(w, key);
        if (strcmp(key, "spec") != 0 || !YAJL_IS_OBJECT(spec)) {
            vk_jw_tree(w, spec);
            continue;
        }
        vk_jw_map_open(w);
        for (size_t j = 0; j < spec->u.object.len; j++) {
            yajl_val vols = spec->u.object.values[j];
            vk_jw_str(w, spec->u.object.keys[j]);
            if (strcmp(spec->u.object.keys[j], "volumes") != 0 || !YAJL_IS_ARRAY(vols)) {
                vk_jw_tree(w, vols);
                continue;
            }
            vk_jw_array_open(w);
            for (size_t k = 0; k < vols->u.array.len; k++)
                write_volume(w, vols->u.array.values[k]);
            vk_jw_array_close(w);
        }
        vk_jw_map_close(w);
    }
    vk_jw_map_close(w);
}

static struct volume *volume_named(struct build *b, const char *name)
{
    for (size_t i = 0; i < b->n_vols; i++)
        if (strcmp(b->vols[i].name, name) == 0)
            return &b->vols[i];
    return NULL;
}

/* The objects of kind that c mounts, each once, or null. */
static void write_objects(vk_json_writer *w, struct build *b, const vk_container *c,
                          enum kind kind)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_mounts; i++) {
        struct volume *v = volume_named(b, c->mounts[i].name);
        bool first = true;
        for (size_t j = 0; j < i && first; j++)
            first = strcmp(c->mounts[j].name, c->mounts[i].name) != 0;
        if (!v || v->kind != kind || !v->object || !first)
            continue;
        if (n++ == 0)
            vk_jw_array_open(w);
        vk_jw_tree(w, v->object);
    }
    if (n)
        vk_jw_array_close(w);
    else
        vk_jw_check(w, yajl_gen_null(w->g));
}

static void write_container(vk_json_writer *w, struct build *b, const vk_container *c)
{
    vk_jw_map_open(w);
    vk_jw_kv_str(w, "name", c->name);
    vk_jw_str(w, "configMaps");
    write_objects(w, b, c, K_CONFIGMAP);
    vk_jw_str(w, "projectedvolumemaps");
    write_objects(w, b, c, K_PROJECTED);
    vk_jw_str(w, "secrets");
    write_objects(w, b, c, K_SECRET);
    /* Deprecated by interLink, which sends null: plugins make their own. */
    vk_jw_str(w, "emptyDirs");
    vk_jw_check(w, yajl_gen_null(w->g));
    vk_jw_map_close(w);
}

int create_body(const vk_pod *pod, vk_buf *out, vk_status *st)
{
    char err[128];
    struct build b = {.pod = pod, .st = st};
    b.tree = vk_json_parse(pod->json, pod->json_len, err, sizeof err);
    if (!b.tree) {
        vk_status_set(st, VK_INVALID_ARGUMENT, "pod %s/%s: %s", str(pod->namespace),
                      str(pod->name), err);
        return st->code;
    }
    yajl_val vols = vk_json_get(b.tree, "spec", "volumes", NULL);
    size_t n = YAJL_IS_ARRAY(vols) ? vols->u.array.len : 0;
    int code = VK_OK;
    if (n && !(b.vols = calloc(n, sizeof *b.vols)))
        vk_status_set(st, code = VK_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < n && code == VK_OK; i++) {
        struct volume *v = &b.vols[b.n_vols++];
        v->spec = vols->u.array.values[i];
        v->name = vk_json_str(vk_json_member(v->spec, "name"), "");
        code = gather(&b, v);
    }

    if (code == VK_OK) {
        size_t start = out->len;
        vk_json_writer w;
        vk_jw_begin(&w, out);
        vk_jw_map_open(&w);
        vk_jw_str(&w, "pod");
        write_pod(&w, b.tree);
        vk_jw_str(&w, "container");
        vk_jw_array_open(&w);
        for (size_t i = 0; i < pod->n_init_containers; i++)
            write_container(&w, &b, &pod->init_containers[i]);
        for (size_t i = 0; i < pod->n_containers; i++)
            write_container(&w, &b, &pod->containers[i]);
        vk_jw_array_close(&w);
        vk_jw_map_close(&w);
        if (vk_jw_end(&w) < 0)
            vk_status_set(st, code = VK_RESOURCE_EXHAUSTED, "out of memory");
        else if (out->len - start > BODY_MAX)
            vk_status_set(st, code = VK_RESOURCE_EXHAUSTED,
                          "pod %s/%s with its ConfigMaps and Secrets exceeds %u MiB",
                          str(pod->namespace), str(pod->name), BODY_MAX >> 20);
    }
    for (size_t i = 0; i < b.n_vols; i++)
        yajl_tree_free(b.vols[i].object);
    free(b.vols);
    yajl_tree_free(b.tree);
    return code;
}
