/* payload.c -- the files of a data volume, from the objects it projects:
 * ConfigMap and Secret keys (all, or as `items` select them), and the
 * downward API's pod fields and container resources. The kubelet's
 * MakePayload / CollectData, file for file, message for message where a
 * user sees them.
 *
 * Pure functions of the documents given: fetching them, and writing the
 * result, are the callers' business (volumes.c, atomic_writer.c).
 */
#include "cri.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

static size_t array_len(yajl_val v)
{
    return YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
}

mode_t payload_mode(yajl_val v, mode_t def)
{
    int64_t m = vk_json_int(v, def);
    return m >= 0 && m <= 0777 ? (mode_t)m : def;
}

static int add(vol_payload *pl, const char *path, const void *data, size_t len, mode_t mode,
               char *err, size_t errlen)
{
    if (payload_add(pl, path, data, len, mode) == 0)
        return 0;
    if (!payload_path_ok(path))
        snprintf(err, errlen, "%s is not a usable file name", path);
    else if (len > PAYLOAD_MAX_BYTES - pl->bytes)
        snprintf(err, errlen, "the volume content exceeds %u MiB", PAYLOAD_MAX_BYTES >> 20);
    else
        snprintf(err, errlen, "out of memory");
    return -1;
}

/* The bytes of key in a ConfigMap (data, or binaryData in base64) or a
 * Secret (data, base64), into out. 1 found, 0 absent, -1 malformed. */
static int key_value(yajl_val obj, bool secret, const char *key, vk_buf *out)
{
    const char *s = vk_json_str(vk_json_member(vk_json_member(obj, "data"), key), NULL);
    if (s && !secret)
        return vk_buf_append(out, s, strlen(s)) < 0 ? -1 : 1;
    if (!s && !secret)
        s = vk_json_str(vk_json_member(vk_json_member(obj, "binaryData"), key), NULL);
    if (!s)
        return 0;
    return vk_base64_decode(s, strlen(s), out) < 0 ? -1 : 1;
}

static int add_key(vol_payload *pl, yajl_val obj, bool secret, const char *key, const char *path,
                   mode_t mode, bool optional, char *err, size_t errlen)
{
    vk_buf b = VK_BUF_INIT;
    int found = key_value(obj, secret, key, &b);
    int rc = 0;
    if (found < 0) {
        snprintf(err, errlen, "key %s does not hold valid base64", key);
        rc = -1;
    } else if (!found && !optional) {
        snprintf(err, errlen, secret ? "references non-existent secret key: %s"
                                     : "configmap references non-existent config key: %s",
                 key);
        rc = -1;
    } else if (found) {
        rc = add(pl, path, b.data ? b.data : "", b.len, mode, err, errlen);
    }
    if (b.data)
        explicit_bzero(b.data, b.len);
    vk_buf_free(&b);
    return rc;
}

int payload_keys(vol_payload *pl, yajl_val obj, bool secret, yajl_val items, mode_t mode,
                 bool optional, char *err, size_t errlen)
{
    if (!obj)
        return 0;   /* optional and absent: an empty volume */
    if (array_len(items)) {
        for (size_t i = 0; i < items->u.array.len; i++) {
            yajl_val it = items->u.array.values[i];
            const char *key = vk_json_str(vk_json_member(it, "key"), NULL);
            const char *path = vk_json_str(vk_json_member(it, "path"), key);
            if (!key) {
                snprintf(err, errlen, "item %zu has no key", i);
                return -1;
            }
            if (add_key(pl, obj, secret, key, path, payload_mode(vk_json_member(it, "mode"), mode),
                        optional, err, errlen) < 0)
                return -1;
        }
        return 0;
    }
    static const char *const maps[] = {"data", "binaryData"};
    for (size_t m = 0; m < (secret ? 1 : 2); m++) {
        yajl_val data = vk_json_member(obj, maps[m]);
        for (size_t i = 0; YAJL_IS_OBJECT(data) && i < data->u.object.len; i++) {
            const char *key = data->u.object.keys[i];
            if (add_key(pl, obj, secret, key, key, mode, false, err, errlen) < 0)
                return -1;
        }
    }
    return 0;
}

/* ---- downward API ------------------------------------------------------------------ */

/* Go's %q of a string: what the kubelet writes for label and annotation
 * values. Valid UTF-8 beyond ASCII passes as it is. */
static int quote(vk_buf *out, const char *s)
{
    int rc = vk_buf_puts(out, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p && rc == 0; p++) {
        static const char esc[] = "\a\b\f\n\r\t\v";
        const char *e = strchr(esc, *p);
        if (*p == '"' || *p == '\\') {
            rc = vk_buf_printf(out, "\\%c", *p);
        } else if (e) {
            rc = vk_buf_printf(out, "\\%c", "abfnrtv"[e - esc]);
        } else if (*p < 0x20 || *p == 0x7f) {
            rc = vk_buf_printf(out, "\\x%02x", *p);
        } else if (*p < 0x80) {
            rc = vk_buf_append(out, p, 1);
        } else {
            size_t n = *p >= 0xf0 && *p < 0xf5 ? 4 : *p >= 0xe0 ? 3 : *p >= 0xc2 ? 2 : 0;
            bool valid = n > 0 && *p < 0xf5;
            for (size_t k = 1; valid && k < n; k++)
                valid = (p[k] & 0xc0) == 0x80;
            if (!valid) {
                rc = vk_buf_printf(out, "\\x%02x", *p);
            } else {
                rc = vk_buf_append(out, p, n);
                p += n - 1;
            }
        }
    }
    return rc < 0 ? -1 : vk_buf_puts(out, "\"");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The kubelet's FormatMap: key="value" lines, sorted, no final newline. */
static int format_map(yajl_val map, vk_buf *out)
{
    size_t n = YAJL_IS_OBJECT(map) ? map->u.object.len : 0;
    if (!n)
        return 0;
    const char **keys = malloc(n * sizeof *keys);
    if (!keys)
        return -1;
    for (size_t i = 0; i < n; i++)
        keys[i] = map->u.object.keys[i];
    qsort(keys, n, sizeof *keys, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i && strcmp(keys[i], keys[i - 1]) == 0)
            continue;   /* a duplicate key: the last value, as vk_json_member gives */
        rc = vk_buf_printf(out, "%s%s=", i ? "\n" : "", keys[i]);
        if (rc == 0)
            rc = quote(out, vk_json_str(vk_json_member(map, keys[i]), ""));
    }
    free(keys);
    return rc;
}

/* metadata.labels['app'] style: the key between the quotes, into buf. */
static const char *subscript(const char *path, const char *map, char *buf, size_t n)
{
    size_t ml = strlen(map), len = strlen(path);
    if (strncmp(path, map, ml) != 0 || len < ml + 5 || strncmp(path + ml, "['", 2) != 0 ||
        strcmp(path + len - 2, "']") != 0)
        return NULL;
    snprintf(buf, n, "%.*s", (int)(len - ml - 4), path + ml + 2);
    return buf;
}

/* The value of a fieldRef; 0, -1 out of memory, -2 with err. */
static int field_value(yajl_val pod, const char *path, vk_buf *out, char *err, size_t errlen)
{
    yajl_val md = vk_json_member(pod, "metadata");
    char key[320];
    const char *k;
    if (strcmp(path, "metadata.name") == 0 || strcmp(path, "metadata.namespace") == 0 ||
        strcmp(path, "metadata.uid") == 0)
        return vk_buf_puts(out, vk_json_str(vk_json_member(md, path + 9), ""));
    if (strcmp(path, "metadata.labels") == 0)
        return format_map(vk_json_member(md, "labels"), out);
    if (strcmp(path, "metadata.annotations") == 0)
        return format_map(vk_json_member(md, "annotations"), out);
    if ((k = subscript(path, "metadata.labels", key, sizeof key)) != NULL)
        return vk_buf_puts(out, vk_json_str(vk_json_get(md, "labels", k, NULL), ""));
    if ((k = subscript(path, "metadata.annotations", key, sizeof key)) != NULL)
        return vk_buf_puts(out, vk_json_str(vk_json_get(md, "annotations", k, NULL), ""));
    snprintf(err, errlen, "unsupported fieldPath: %s", path);
    return -2;
}

static yajl_val container_json(yajl_val pod, const char *name)
{
    static const char *const lists[] = {"containers", "initContainers"};
    for (size_t l = 0; l < 2; l++) {
        yajl_val arr = vk_json_get(pod, "spec", lists[l], NULL);
        for (size_t i = 0; i < array_len(arr); i++)
            if (strcmp(vk_json_str(vk_json_member(arr->u.array.values[i], "name"), ""), name) == 0)
                return arr->u.array.values[i];
    }
    return NULL;
}

/* Kubernetes' ExtractContainerResourceValue: the quantity in units of the
 * divisor, rounded up; a limit the container does not set is the node's
 * allocatable amount, a request it does not set is 0. Returns as
 * field_value does. */
static int resource_value(yajl_val pod, yajl_val ref, const downward_node *node, vk_buf *out,
                          char *err, size_t errlen)
{
    const char *name = vk_json_str(vk_json_member(ref, "containerName"), NULL);
    const char *res = vk_json_str(vk_json_member(ref, "resource"), "");
    const char *divisor = vk_json_str(vk_json_member(ref, "divisor"), "1");
    yajl_val c = name ? container_json(pod, name) : NULL;
    if (!c) {
        snprintf(err, errlen, "resourceFieldRef names no container of the pod (%s)",
                 name ? name : "containerName is required in volumes");
        return -2;
    }
    const char *dot = strchr(res, '.');
    bool limit = strncmp(res, "limits.", 7) == 0;
    if (!dot || (!limit && strncmp(res, "requests.", 9) != 0)) {
        snprintf(err, errlen, "unsupported resource: %s", res);
        return -2;
    }
    const char *kind = dot + 1;
    const char *q = vk_json_str(vk_json_get(c, "resources", limit ? "limits" : "requests", kind,
                                            NULL), NULL);
    bool cpu = strcmp(kind, "cpu") == 0;
    int64_t fallback = !limit ? 0
                       : cpu ? node->cpu_milli
                       : strcmp(kind, "memory") == 0 ? node->memory_bytes
                       : strcmp(kind, "ephemeral-storage") == 0 ? node->storage_bytes
                                                                : -1;
    if (fallback < 0 || (!cpu && strcmp(kind, "memory") && strcmp(kind, "ephemeral-storage"))) {
        snprintf(err, errlen, "unsupported resource: %s", res);
        return -2;
    }
    int64_t v = fallback, d = 0;
    int (*parse)(const char *, int64_t *) = cpu ? vk_quantity_milli : vk_quantity_value;
    if ((q && parse(q, &v) < 0) || parse(divisor, &d) < 0 || d <= 0) {
        snprintf(err, errlen, "malformed quantity in resourceFieldRef %s of %s", res, name);
        return -2;
    }
    int64_t value = v <= 0 ? 0 : (v - 1) / d + 1;
    return vk_buf_printf(out, "%lld", (long long)value);
}

int payload_downward(vol_payload *pl, yajl_val items, mode_t mode, yajl_val pod,
                     const downward_node *node, char *err, size_t errlen)
{
    vk_buf b = VK_BUF_INIT;
    int rc = 0;
    for (size_t i = 0; i < array_len(items) && rc == 0; i++) {
        yajl_val it = items->u.array.values[i];
        const char *path = vk_json_str(vk_json_member(it, "path"), NULL);
        yajl_val field = vk_json_member(it, "fieldRef");
        yajl_val ref = vk_json_member(it, "resourceFieldRef");
        vk_buf_reset(&b);
        rc = -2;
        if (!path)
            snprintf(err, errlen, "item %zu has no path", i);
        else if (field)
            rc = field_value(pod, vk_json_str(vk_json_member(field, "fieldPath"), ""), &b, err,
                             errlen);
        else if (ref)
            rc = resource_value(pod, ref, node, &b, err, errlen);
        else
            snprintf(err, errlen, "item %s has neither fieldRef nor resourceFieldRef", path);
        if (rc == -1)
            snprintf(err, errlen, "out of memory");
        if (rc == 0)
            rc = add(pl, path, b.data ? b.data : "", b.len,
                     payload_mode(vk_json_member(it, "mode"), mode), err, errlen);
    }
    vk_buf_free(&b);
    return rc < 0 ? -1 : 0;
}
