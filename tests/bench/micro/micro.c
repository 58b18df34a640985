/* micro.c -- `vkc-micro POD.json`: the per-pod CPU and memory costs of
 * the core's hot paths, one function per step, for callgrind:
 *
 *   valgrind --tool=callgrind --toggle-collect=op_STEP build/bench/vkc-micro POD.json STEP
 *
 * (tests/bench/micro/run.sh does that for every step.)
 * Each op_* runs its step ITER times on a real pod (one the API server
 * returned, managedFields included), so inclusive Ir / ITER is the
 * instruction count per pod: repeatable on a noisy machine, unlike time.
 * Without valgrind it prints ns per op and the heap a parsed pod holds.
 *
 * The steps are those the core runs per pod (see docs/performance.md):
 * a watch event cut by yajl's streaming parser and then parsed into a tree
 * (core/kube_watch.c); hashing (core/podstatus.c json_hash); serialising a
 * tree (pods.c serialize, podstatus.c write_pod); env resolution
 * (core/envresolve.c: parses the pod again); the CreatePod protobuf; and on
 * the provider's side the SDK's pod parse and status JSON.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <yajl/yajl_parse.h>

#include "../../../core/envresolve.h"
#include "../../../core/podstatus.h"
#include "buf.h"
#include "json.h"
#include "pod.h"
#include "provider.pb-c.h"

#define ITER 2000

static const char *pod_text;
static size_t pod_len;
static vk_buf event;        /* {"type":"MODIFIED","object":POD} */
static volatile uint64_t sink;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* kube_watch.c's first pass: yajl only tracking nesting. */
static int depth;
static int cb_start(void *ctx) { (void)ctx; depth++; return 1; }
static int cb_end(void *ctx) { (void)ctx; depth--; return 1; }
static int cb_scalar(void *ctx) { (void)ctx; return 1; }
static int cb_str(void *ctx, const unsigned char *s, size_t l) { (void)ctx; (void)s; (void)l; return 1; }
static int cb_num(void *ctx, const char *s, size_t l) { (void)ctx; (void)s; (void)l; return 1; }
static int cb_bool(void *ctx, int b) { (void)ctx; (void)b; return 1; }
static const yajl_callbacks scan_cbs = {
    .yajl_null = cb_scalar, .yajl_boolean = cb_bool, .yajl_number = cb_num,
    .yajl_string = cb_str, .yajl_start_map = cb_start, .yajl_map_key = cb_str,
    .yajl_end_map = cb_end, .yajl_start_array = cb_start, .yajl_end_array = cb_end,
};

__attribute__((noinline)) static void op_watch_scan(void)
{
    for (int i = 0; i < ITER; i++) {
        yajl_handle h = yajl_alloc(&scan_cbs, NULL, NULL);
        yajl_config(h, yajl_allow_multiple_values, 1);
        yajl_parse(h, (const unsigned char *)event.data, event.len);
        yajl_free(h);
    }
}

__attribute__((noinline)) static void op_watch_tree(void)
{
    for (int i = 0; i < ITER; i++) {
        yajl_val v = vk_json_parse(event.data, event.len, NULL, 0);
        sink += v != NULL;
        yajl_tree_free(v);
    }
}

__attribute__((noinline)) static void op_hash_pod(yajl_val pod)
{
    for (int i = 0; i < ITER; i++)
        sink += json_hash(JSON_HASH_SEED, pod);
}

__attribute__((noinline)) static void op_hash_status(yajl_val pod)
{
    yajl_val st = vk_json_member(pod, "status");
    for (int i = 0; i < ITER; i++)
        sink += json_hash(JSON_HASH_SEED, st);
}

/* The pod cache's copy (core/packed.c): packing on each watch event,
 * unpacking for a provider call or a status write. */
__attribute__((noinline)) static void op_pack_pod(yajl_val pod)
{
    packed_json pk = {0};
    for (int i = 0; i < ITER; i++) {
        packed_set_tree(&pk, pod);
        sink += pk.zlen;
    }
    packed_clear(&pk);
}

__attribute__((noinline)) static void op_unpack_pod(const packed_json *pk)
{
    vk_buf b = VK_BUF_INIT;
    for (int i = 0; i < ITER; i++) {
        vk_buf_reset(&b);
        packed_get(pk, &b);
        sink += b.len;
    }
    vk_buf_free(&b);
}

__attribute__((noinline)) static void op_serialize_pod(yajl_val pod)
{
    vk_buf b = VK_BUF_INIT;
    for (int i = 0; i < ITER; i++) {
        vk_buf_reset(&b);
        vk_json_writer w;
        vk_jw_begin(&w, &b);
        vk_jw_tree(&w, pod);
        vk_jw_end(&w);
        sink += b.len;
    }
    vk_buf_free(&b);
}

/* podstatus.c merged_hash: write the status, parse it back, hash it. */
__attribute__((noinline)) static void op_merged_hash(yajl_val pod)
{
    yajl_val st = vk_json_member(pod, "status");
    vk_buf b = VK_BUF_INIT;
    for (int i = 0; i < ITER; i++) {
        vk_buf_reset(&b);
        vk_json_writer w;
        vk_jw_begin(&w, &b);
        vk_jw_tree(&w, st);
        vk_jw_end(&w);
        yajl_val m = vk_json_parse(b.data, b.len, NULL, 0);
        sink += json_hash(JSON_HASH_SEED, m);
        yajl_tree_free(m);
    }
    vk_buf_free(&b);
}

static enum env_lookup no_object(void *ud, const char *ns, const char *name, yajl_val *obj)
{
    (void)ud;
    (void)ns;
    (void)name;
    *obj = NULL;
    return ENV_NOT_FOUND;
}

__attribute__((noinline)) static void op_env_resolve(const char *json, size_t len)
{
    const char *ips[1] = {"10.1.0.1"}, *hosts[1] = {"127.0.0.1"};
    env_inputs in = {
        .get_configmap = no_object, .get_secret = no_object,
        .pod_ips = ips, .n_pod_ips = 1, .host_ips = hosts, .n_host_ips = 1,
        .alloc_cpu = "20", .alloc_memory = "100Gi",
    };
    for (int i = 0; i < ITER; i++) {
        env_result res;
        env_resolve(json, len, &in, &res);
        sink += res.status;
        env_result_free(&res);
    }
}

__attribute__((noinline)) static void op_pb_create(const char *json, size_t len)
{
    for (int i = 0; i < ITER; i++) {
        Vkc__Provider__V1__CreatePodRequest req = VKC__PROVIDER__V1__CREATE_POD_REQUEST__INIT;
        req.pod_json.data = (uint8_t *)json;
        req.pod_json.len = len;
        size_t n = vkc__provider__v1__create_pod_request__get_packed_size(&req);
        uint8_t *buf = malloc(n);
        vkc__provider__v1__create_pod_request__pack(&req, buf);
        Vkc__Provider__V1__CreatePodRequest *back =
            vkc__provider__v1__create_pod_request__unpack(NULL, n, buf);
        sink += back->pod_json.len;
        vkc__provider__v1__create_pod_request__free_unpacked(back, NULL);
        free(buf);
    }
}

__attribute__((noinline)) static void op_sdk_pod_parse(const char *json, size_t len)
{
    for (int i = 0; i < ITER; i++) {
        vk_pod *p = vk_pod_parse(json, len, NULL, 0);
        sink += p != NULL;
        vk_pod_free(p);
    }
}

__attribute__((noinline)) static void op_sdk_status_json(void)
{
    vk_container_status cs = {
        .name = "main", .image = "busybox:bench", .image_id = "busybox:bench",
        .container_id = "mock://0000000000000001", .state = VK_STATE_RUNNING,
        .ready = true, .started = true, .started_at = 1795860000,
    };
    vk_pod_status st = {
        .phase = "Running", .pod_ip = "10.1.0.1", .host_ip = "127.0.0.1",
        .start_time = 1795860000, .containers = &cs, .n_containers = 1,
    };
    vk_buf b = VK_BUF_INIT;
    for (int i = 0; i < ITER; i++) {
        vk_buf_reset(&b);
        vk_pod_status_json(&st, 1795860000, &b);
        sink += b.len;
    }
    vk_buf_free(&b);
}

static size_t heap_used(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks;
}

static const char *only;

#define TIME(label, call)                                                          \
    do {                                                                           \
        if (only && strcmp(only, label) != 0)                                      \
            break;                                                                 \
        double t0 = now();                                                         \
        call;                                                                      \
        printf("%-18s %9.0f ns/op\n", label, (now() - t0) / ITER);                 \
    } while (0)

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: vkc-micro POD.json [STEP]\n");
        return 2;
    }
    only = argc == 3 ? argv[2] : NULL;
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    vk_buf file = VK_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        vk_buf_append(&file, chunk, n);
    fclose(f);
    yajl_val pod = vk_json_parse(file.data, file.len, NULL, 0);
    if (!YAJL_IS_OBJECT(pod)) {
        fprintf(stderr, "%s: not a JSON object\n", argv[1]);
        return 1;
    }
    /* Compact, as it comes over the wire. */
    vk_buf compact = VK_BUF_INIT;
    vk_json_writer w;
    vk_jw_begin(&w, &compact);
    vk_jw_tree(&w, pod);
    vk_jw_end(&w);
    pod_text = compact.data;
    pod_len = compact.len;
    vk_buf_printf(&event, "{\"type\":\"MODIFIED\",\"object\":%s}", pod_text);

    size_t before = heap_used();
    yajl_val probe = vk_json_parse(pod_text, pod_len, NULL, 0);
    size_t tree = heap_used() - before;
    yajl_tree_free(probe);
    /* Without managedFields: what the pod cache keeps (podstatus.h). */
    packed_json pk = {0};
    vk_buf stripped = VK_BUF_INIT;
    if (packed_set_tree(&pk, pod) < 0 || packed_get(&pk, &stripped) < 0) {
        fprintf(stderr, "micro: cannot pack the pod\n");
        return 1;
    }
    before = heap_used();
    probe = vk_json_parse(stripped.data, stripped.len, NULL, 0);
    size_t tree_stripped = heap_used() - before;
    yajl_tree_free(probe);

    printf("pod JSON           %9zu bytes (compact)\n", pod_len);
    printf("pod tree           %9zu bytes of heap in use (malloc chunk overhead excluded)\n", tree);
    printf("no managedFields   %9zu bytes JSON, %zu bytes tree\n", stripped.len, tree_stripped);
    printf("packed             %9u bytes (the pod cache's copy)\n", pk.zlen);
    TIME("watch_scan", op_watch_scan());
    TIME("watch_tree", op_watch_tree());
    TIME("hash_pod", op_hash_pod(pod));
    TIME("hash_status", op_hash_status(pod));
    TIME("serialize_pod", op_serialize_pod(pod));
    TIME("pack_pod", op_pack_pod(pod));
    TIME("unpack_pod", op_unpack_pod(&pk));
    TIME("merged_hash", op_merged_hash(pod));
    TIME("env_resolve", op_env_resolve(pod_text, pod_len));
    TIME("pb_create", op_pb_create(pod_text, pod_len));
    TIME("sdk_pod_parse", op_sdk_pod_parse(pod_text, pod_len));
    TIME("sdk_status_json", op_sdk_status_json());
    packed_clear(&pk);
    yajl_tree_free(pod);
    vk_buf_free(&file);
    vk_buf_free(&compact);
    vk_buf_free(&stripped);
    vk_buf_free(&event);
    return (int)(sink & 0);
}
