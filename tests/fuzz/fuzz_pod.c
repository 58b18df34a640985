/* fuzz_pod.c -- sdk-c/pod.h: vk_pod_parse, and vk_pod_with_status on what
 * it accepted.
 *
 * Pods come from the API server and, through GetPod/GetPods, from the
 * provider. Checked: what the view promises (a name, a namespace, at least
 * one named container, no NULL where a default is documented, numeric
 * resources consistent with vk_quantity_*), and that a pod written back
 * with a new status by vk_pod_with_status parses again into the same pod
 * with that status.
 */
#include <string.h>

#include "fuzz.h"
#include "json.h"
#include "pod.h"

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_quantity(const char *text, int64_t number, int (*conv)(const char *, int64_t *))
{
    int64_t v = 0;
    if (!text)
        FUZZ_CHECK(number == -1);
    else if (conv(text, &v) == 0)
        FUZZ_CHECK(number == v);
    else
        FUZZ_CHECK(number == -1);
}

static void check_container(const vk_pod *pod, const vk_container *c)
{
    FUZZ_CHECK(c->name && *c->name);
    FUZZ_CHECK(vk_pod_container(pod, c->name) != NULL);
    for (size_t i = 0; i < c->n_command; i++)
        FUZZ_CHECK(c->command[i] != NULL);
    for (size_t i = 0; i < c->n_args; i++)
        FUZZ_CHECK(c->args[i] != NULL);
    for (size_t i = 0; i < c->n_env; i++)
        FUZZ_CHECK(c->env[i].name != NULL);
    for (size_t i = 0; i < c->n_ports; i++)
        FUZZ_CHECK(c->ports[i].protocol != NULL);
    for (size_t i = 0; i < c->n_mounts; i++)
        (void)strlen(c->mounts[i].name ? c->mounts[i].name : "");
    const vk_resources *r = &c->resources;
    check_quantity(r->cpu_request, r->cpu_request_milli, vk_quantity_milli);
    check_quantity(r->cpu_limit, r->cpu_limit_milli, vk_quantity_milli);
    check_quantity(r->memory_request, r->memory_request_bytes, vk_quantity_value);
    check_quantity(r->memory_limit, r->memory_limit_bytes, vk_quantity_value);
}

static void check_view(const vk_pod *pod)
{
    FUZZ_CHECK(pod->name && *pod->name);
    FUZZ_CHECK(pod->namespace && *pod->namespace);
    FUZZ_CHECK(pod->restart_policy != NULL);
    FUZZ_CHECK(pod->n_containers > 0);
    FUZZ_CHECK(pod->json && pod->json[pod->json_len] == '\0');
    for (size_t i = 0; i < pod->n_containers; i++)
        check_container(pod, &pod->containers[i]);
    for (size_t i = 0; i < pod->n_init_containers; i++)
        check_container(pod, &pod->init_containers[i]);
    for (size_t i = 0; i < pod->n_labels; i++)
        FUZZ_CHECK(pod->labels[i].name && pod->labels[i].value);
    for (size_t i = 0; i < pod->n_annotations; i++)
        FUZZ_CHECK(pod->annotations[i].name && pod->annotations[i].value);
    for (size_t i = 0; i < pod->n_volumes; i++)
        FUZZ_CHECK(pod->volumes[i].name != NULL);
    for (size_t i = 0; i < pod->n_image_pull_secrets; i++)
        FUZZ_CHECK(pod->image_pull_secrets[i] != NULL);
    FUZZ_CHECK(vk_pod_container(pod, NULL) == NULL);
    char key[64];
    vk_pod_key(pod, key, sizeof key);
}

/* The status a provider would report for this pod: every string from the
 * pod itself, so whatever it holds has to survive the writer. */
static int status_of(const vk_pod *pod, vk_buf *out)
{
    vk_container_status *cs = calloc(pod->n_containers, sizeof *cs);
    vk_terminated *last = calloc(pod->n_containers, sizeof *last);
    FUZZ_CHECK(cs && last);
    for (size_t i = 0; i < pod->n_containers; i++) {
        const vk_container *c = &pod->containers[i];
        last[i].exit_code = (int32_t)c->n_env - 1;
        last[i].reason = c->image;
        last[i].message = c->n_command ? c->command[0] : NULL;
        last[i].started_at = c->resources.memory_request_bytes;
        last[i].finished_at = c->resources.cpu_limit_milli;
        last[i].container_id = c->name;
        cs[i].last_terminated = i % 2 ? &last[i] : NULL;
        cs[i].name = c->name;
        cs[i].image = c->image;
        cs[i].container_id = c->working_dir;
        cs[i].state = (enum vk_container_state)(i % 3);
        cs[i].reason = c->image_pull_policy;
        cs[i].message = c->n_args ? c->args[0] : NULL;
        cs[i].exit_code = c->ports && c->n_ports ? c->ports[0].container_port : 0;
        cs[i].started_at = c->resources.cpu_request_milli;
        cs[i].finished_at = c->resources.memory_limit_bytes;
        cs[i].restart_count = (int32_t)i;
        cs[i].ready = c->tty;
        cs[i].started = c->stdin_open;
    }
    vk_pod_status st = {
        .phase = pod->phase ? pod->phase : "Pending",
        .reason = pod->restart_policy,
        .message = pod->hostname,
        .pod_ip = pod->uid,
        .host_ip = pod->node_name,
        .start_time = pod->deletion_grace_seconds,
        .containers = cs,
        .n_containers = pod->n_containers,
    };
    int rc = vk_pod_status_json(&st, pod->deletion_grace_seconds, out);
    free(last);
    free(cs);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[160] = "";
    vk_pod *pod = vk_pod_parse((const char *)data, size, err, sizeof err);
    if (!pod) {
        FUZZ_CHECK(err[0] != '\0');
        return 0;
    }
    check_view(pod);

    vk_buf status = VK_BUF_INIT;
    FUZZ_CHECK(status_of(pod, &status) == 0);
    yajl_val st = vk_json_parse(status.data, status.len, err, sizeof err);
    FUZZ_CHECK(YAJL_IS_OBJECT(st));
    yajl_tree_free(st);

    vk_buf out = VK_BUF_INIT;
    FUZZ_CHECK(vk_pod_with_status(pod->json, pod->json_len, status.data, status.len, &out) == 0);
    vk_pod *again = vk_pod_parse(out.data, out.len, err, sizeof err);
    if (!again)
        fprintf(stderr, "pod with status does not parse (%s): %s\n", err, out.data);
    FUZZ_CHECK(again != NULL);
    check_view(again);
    FUZZ_CHECK(same(again->name, pod->name));
    FUZZ_CHECK(same(again->namespace, pod->namespace));
    FUZZ_CHECK(same(again->uid, pod->uid));
    FUZZ_CHECK(same(again->node_name, pod->node_name));
    FUZZ_CHECK(same(again->phase, pod->phase ? pod->phase : "Pending"));
    FUZZ_CHECK(again->deleting == pod->deleting);
    FUZZ_CHECK(again->n_containers == pod->n_containers);
    FUZZ_CHECK(again->n_init_containers == pod->n_init_containers);
    FUZZ_CHECK(again->n_volumes == pod->n_volumes);
    FUZZ_CHECK(again->n_labels == pod->n_labels);
    for (size_t i = 0; i < pod->n_containers; i++) {
        const vk_container *a = &pod->containers[i], *b = &again->containers[i];
        FUZZ_CHECK(same(a->name, b->name) && same(a->image, b->image));
        FUZZ_CHECK(a->n_env == b->n_env && a->n_command == b->n_command);
        FUZZ_CHECK(a->resources.cpu_limit_milli == b->resources.cpu_limit_milli);
    }
    vk_pod_free(again);

    /* A status that is not an object is refused, and out is left alone. */
    size_t len = out.len;
    FUZZ_CHECK(vk_pod_with_status(pod->json, pod->json_len, "[]", 2, &out) == -1);
    FUZZ_CHECK(out.len == len);

    vk_buf_free(&out);
    vk_buf_free(&status);
    vk_pod_free(pod);
    return 0;
}
