/* node.c -- GetNode, WatchNode, GetStatsSummary and GetMetricsResource. */
#include "conformance.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pod.h"

/* A member of a protobuf map<string,string>, or NULL. */
static const char *capacity_of(const Vkc__Provider__V1__Node *n, const char *key)
{
    for (size_t i = 0; i < n->n_capacity; i++)
        if (strcmp(n->capacity[i]->key, key) == 0)
            return n->capacity[i]->value;
    return NULL;
}

/* Append to bad why each member of the JSON array doc (if not empty) that
 * lacks the string members k1 and k2. */
static void array_of_objects(const ProtobufCBinaryData *d, const char *what, const char *k1,
                             const char *k2, vk_buf *bad)
{
    if (d->len == 0)
        return;
    char err[160];
    yajl_val v = parse_json(d->data, d->len, err, sizeof err);
    if (!YAJL_IS_ARRAY(v)) {
        vk_buf_printf(bad, " %s is not a JSON array%s%s;", what, v ? "" : ": ", v ? "" : err);
    } else {
        for (size_t i = 0; i < v->u.array.len; i++) {
            yajl_val e = v->u.array.values[i];
            if (!vk_json_str(vk_json_member(e, k1), NULL) ||
                !vk_json_str(vk_json_member(e, k2), NULL))
                vk_buf_printf(bad, " %s[%zu] lacks %s or %s;", what, i, k1, k2);
        }
    }
    yajl_tree_free(v);
}

static void shape_checks(const Vkc__Provider__V1__Node *n)
{
    vk_buf bad = VK_BUF_INIT;
    const char *keys[] = {"cpu", "memory", "pods"};
    for (size_t i = 0; i < 3; i++) {
        const char *q = capacity_of(n, keys[i]);
        int64_t v;
        if (!q)
            vk_buf_printf(&bad, " no %s;", keys[i]);
        else if (vk_quantity_value(q, &v) < 0 || v <= 0)
            vk_buf_printf(&bad, " %s \"%s\" is not a positive quantity;", keys[i], q);
    }
    for (size_t i = 0; i < n->n_allocatable; i++) {
        int64_t v;
        if (vk_quantity_value(n->allocatable[i]->value, &v) < 0)
            vk_buf_printf(&bad, " allocatable %s \"%s\" is not a quantity;",
                          n->allocatable[i]->key, n->allocatable[i]->value);
    }
    check("node/capacity", bad.len == 0, "capacity:%s", bad.data);
    vk_buf_reset(&bad);

    array_of_objects(&n->conditions_json, "conditions_json", "type", "status", &bad);
    if (n->conditions_json.len && !bad.len) {
        char err[160];
        yajl_val v = parse_json(n->conditions_json.data, n->conditions_json.len, err, sizeof err);
        for (size_t i = 0; i < v->u.array.len; i++) {
            const char *st = vk_json_str(vk_json_member(v->u.array.values[i], "status"), "");
            if (strcmp(st, "True") && strcmp(st, "False") && strcmp(st, "Unknown"))
                vk_buf_printf(&bad, " condition %zu has status \"%s\";", i, st);
        }
        yajl_tree_free(v);
    }
    check("node/conditions", bad.len == 0, "%s", bad.data);
    vk_buf_reset(&bad);

    array_of_objects(&n->addresses_json, "addresses_json", "type", "address", &bad);
    if (n->node_info_json.len) {
        char err[160];
        yajl_val v = parse_json(n->node_info_json.data, n->node_info_json.len, err, sizeof err);
        if (!YAJL_IS_OBJECT(v))
            vk_buf_printf(&bad, " node_info_json is not a JSON object%s%s;", v ? "" : ": ",
                          v ? "" : err);
        yajl_tree_free(v);
    }
    const char *os = n->operating_system;
    if (os[0] && strcmp(os, "linux") && strcmp(os, "windows"))
        vk_buf_printf(&bad, " operating_system \"%s\" is neither linux nor windows;", os);
    check("node/info", bad.len == 0, "%s", bad.data);
    vk_buf_free(&bad);
}

void run_node_checks(suite *s)
{
    Vkc__Provider__V1__Node *n = NULL;
    vk_status st = {0, NULL};
    int code = pc_get_node(s->pc, &n, &st);
    if (check("node/get", code == VK_OK, "GetNode: %s %s", vk_status_code_name(code),
              st.message ? st.message : ""))
        shape_checks(n);
    else
        for (size_t i = 0; i < 3; i++)
            check_skip((const char *[]){"node/capacity", "node/conditions", "node/info"}[i],
                       "GetNode failed");
    if (n)
        protobuf_c_message_free_unpacked(&n->base, NULL);
    vk_status_clear(&st);

    if (!need_cap(s, "node/watch", PC_CAP_WATCH_NODE, "WatchNode"))
        return;
    pc_stream *ws = NULL;
    code = pc_watch_node(s->pc, &ws, &st);
    if (code != VK_OK) {
        check_fail("node/watch", "WatchNode: %s %s", vk_status_code_name(code),
                   st.message ? st.message : "");
        vk_status_clear(&st);
        return;
    }
    /* The first document is the current state: it comes at once. */
    guard g;
    bool guarded = guard_start(&g, ws, 5000) == 0;
    if (!guarded)
        pc_stream_cancel(ws);
    ProtobufCMessage *m = NULL;
    int rc = pc_stream_next(ws, &m);
    bool fired = guarded && guard_stop(&g);
    /* A stream that ended at once (e.g. UNIMPLEMENTED) did not fire the
     * guard either: only rc tells that a Node came. */
    int first = rc;
    if (m)
        protobuf_c_message_free_unpacked(m, NULL);
    long start = now_ms();
    pc_stream_cancel(ws);
    while (rc == 1 && (rc = pc_stream_next(ws, &m)) == 1)
        protobuf_c_message_free_unpacked(m, NULL);
    long took = now_ms() - start;
    code = pc_stream_finish(ws, &st);
    pc_stream_free(ws);
    check("node/watch", !fired && first == 1 && took < 2000 && code == VK_CANCELLED,
          "WatchNode: %s; it ended with %s %s, %ld ms after the cancel",
          fired        ? "no first Node within 5 s"
          : first == 1 ? "a first Node came"
          : first == 0 ? "the stream ended with no Node"
                       : "the first Node did not decode",
          vk_status_code_name(code), st.message ? st.message : "", took);
    vk_status_clear(&st);
}

/* ---- stats and metrics ------------------------------------------------------ */

static void summary_check(suite *s)
{
    vk_buf out = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code = pc_get_stats_summary(s->pc, &out, &st);
    char err[160] = "";
    yajl_val doc = code == VK_OK ? parse_json(out.data, out.len, err, sizeof err) : NULL;
    vk_buf bad = VK_BUF_INIT;
    if (code != VK_OK)
        vk_buf_printf(&bad, "GetStatsSummary: %s %s", vk_status_code_name(code),
                      st.message ? st.message : "");
    else if (!doc)
        vk_buf_printf(&bad, "the summary is not JSON: %s", err);
    yajl_val pods = vk_json_member(doc, "pods");
    yajl_val node = vk_json_member(doc, "node");
    if (doc && !YAJL_IS_OBJECT(node))
        vk_buf_puts(&bad, "no \"node\" object; ");
    if (doc && !YAJL_IS_ARRAY(pods))
        vk_buf_puts(&bad, "no \"pods\" array; ");
    yajl_val mine = NULL;
    for (size_t i = 0; YAJL_IS_ARRAY(pods) && i < pods->u.array.len; i++) {
        yajl_val ref = vk_json_member(pods->u.array.values[i], "podRef");
        if (strcmp(vk_json_str(vk_json_member(ref, "name"), ""), s->pod_name) == 0 &&
            strcmp(vk_json_str(vk_json_member(ref, "namespace"), ""), s->opt->namespace_) == 0)
            mine = pods->u.array.values[i];
    }
    if (YAJL_IS_ARRAY(pods) && !mine)
        vk_buf_printf(&bad, "no pods[].podRef names %s/%s; ", s->opt->namespace_, s->pod_name);
    if (mine) {
        const char *uid = vk_json_str(vk_json_get(mine, "podRef", "uid", NULL), "");
        if (strcmp(uid, s->pod_uid) != 0)
            vk_buf_printf(&bad, "podRef.uid is \"%s\", want %s; ", uid, s->pod_uid);
        yajl_val ctrs = vk_json_member(mine, "containers");
        bool found = false;
        for (size_t i = 0; YAJL_IS_ARRAY(ctrs) && i < ctrs->u.array.len; i++)
            found |= strcmp(vk_json_str(vk_json_member(ctrs->u.array.values[i], "name"), ""),
                            CONF_CONTAINER) == 0;
        if (!found)
            vk_buf_printf(&bad, "the pod's containers[] has no %s; ", CONF_CONTAINER);
    }
    check("stats/summary", bad.len == 0, "%s", bad.data);
    vk_buf_free(&bad);
    yajl_tree_free(doc);
    vk_buf_free(&out);
    vk_status_clear(&st);
}

/* One sample line of the text format: name, optional {labels}, value,
 * optional timestamp. */
static bool sample_line(const char *p, size_t len)
{
    size_t i = 0;
    if (i == len || !(isalpha((unsigned char)p[i]) || p[i] == '_' || p[i] == ':'))
        return false;
    while (i < len && (isalnum((unsigned char)p[i]) || p[i] == '_' || p[i] == ':'))
        i++;
    if (i < len && p[i] == '{') {
        bool quoted = false;
        for (i++; i < len && (quoted || p[i] != '}'); i++) {
            if (quoted && p[i] == '\\')
                i++;
            else if (p[i] == '"')
                quoted = !quoted;
        }
        if (i == len)
            return false;
        i++;
    }
    if (i == len || p[i] != ' ')
        return false;
    char value[64];
    size_t n = 0;
    for (i++; i < len && p[i] != ' ' && n < sizeof value - 1; i++)
        value[n++] = p[i];
    value[n] = '\0';
    char *end;
    strtod(value, &end);
    if (n == 0 || *end)
        return false;
    if (i < len) {
        strtoll(p + i + 1, &end, 10);
        return end == p + len && i + 1 < len;
    }
    return true;
}

static void metrics_check(suite *s)
{
    vk_buf out = VK_BUF_INIT;
    vk_status st = {0, NULL};
    int code = pc_get_metrics_resource(s->pc, &out, &st);
    if (!check("metrics/resource", code == VK_OK, "GetMetricsResource: %s %s",
               vk_status_code_name(code), st.message ? st.message : "")) {
        check_skip("metrics/pod-series", "GetMetricsResource failed");
        check_skip("metrics/format", "GetMetricsResource failed");
        vk_status_clear(&st);
        return;
    }
    char pod_label[128];
    snprintf(pod_label, sizeof pod_label, "pod=\"%s\"", s->pod_name);
    bool pod_cpu = false, ctr_cpu = false;
    size_t bad_line = 0, line = 0;
    const char *first_bad = "";
    int first_bad_len = 0;
    for (size_t at = 0; at < out.len;) {
        const char *p = out.data + at;
        const char *nl = memchr(p, '\n', out.len - at);
        size_t len = nl ? (size_t)(nl - p) : out.len - at;
        line++;
        if (len && p[0] != '#') {
            if (!sample_line(p, len) && !bad_line) {
                bad_line = line;
                first_bad = p;
                first_bad_len = (int)(len < 80 ? len : 80);
            }
            bool ours = memmem(p, len, pod_label, strlen(pod_label)) != NULL;
            if (ours && len > 28 && strncmp(p, "pod_cpu_usage_seconds_total", 27) == 0)
                pod_cpu = true;
            if (ours && len > 34 && strncmp(p, "container_cpu_usage_seconds_total", 33) == 0)
                ctr_cpu = true;
        }
        at += len + 1;
    }
    check("metrics/pod-series", pod_cpu && ctr_cpu,
          "want pod_cpu_usage_seconds_total and container_cpu_usage_seconds_total samples "
          "with %s; found%s%s", pod_label, pod_cpu ? " the pod's" : " no pod sample",
          ctr_cpu ? ", the container's" : ", no container sample");
    check("metrics/format", bad_line == 0, "line %zu is not a sample of the text format: "
          "\"%.*s\"", bad_line, first_bad_len, first_bad);
    vk_buf_free(&out);
    vk_status_clear(&st);
}

void run_stats_checks(suite *s)
{
    if (need_cap(s, "stats/summary", PC_CAP_GET_STATS_SUMMARY, "GetStatsSummary") &&
        need_pod(s, "stats/summary"))
        summary_check(s);
    if (need_cap(s, "metrics/resource", PC_CAP_GET_METRICS_RESOURCE, "GetMetricsResource") &&
        need_pod(s, "metrics/resource")) {
        metrics_check(s);
    } else {
        check_skip("metrics/pod-series", "see metrics/resource");
        check_skip("metrics/format", "see metrics/resource");
    }
}
