/* test_packed.c -- packed JSON: exact round trips (pods, empty, large,
 * incompressible), managedFields dropped from pods only, a cut document
 * refused without touching the output, copies, and the preset dictionary
 * earning its keep on pods it was not written from. Cut, overlong or
 * trailing bytes are refused. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "json.h"
#include "../../core/packed.h"

/* A Deployment's pod as a 1.2x API server sends it (its field order), with
 * what the dictionary has only in general form: two containers, ports,
 * env, probes, resources, an owner, the projected token volume. */
static const char deploy_pod[] =
    "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"web-7d9f8b6c5d-x2x7q\","
    "\"generateName\":\"web-7d9f8b6c5d-\",\"namespace\":\"shop\","
    "\"uid\":\"0b7e3c4a-55d1-4c8e-9d3a-1f2e3d4c5b6a\",\"resourceVersion\":\"884213\","
    "\"creationTimestamp\":\"2026-11-02T10:11:12Z\",\"labels\":{\"app\":\"web\","
    "\"pod-template-hash\":\"7d9f8b6c5d\",\"tier\":\"frontend\"},\"annotations\":{"
    "\"prometheus.io/scrape\":\"true\"},\"ownerReferences\":[{\"apiVersion\":\"apps/v1\","
    "\"kind\":\"ReplicaSet\",\"name\":\"web-7d9f8b6c5d\",\"uid\":\"9a8b7c6d-1111-2222-3333-444455556666\","
    "\"controller\":true,\"blockOwnerDeletion\":true}],\"managedFields\":[{\"manager\":"
    "\"kube-controller-manager\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":"
    "\"2026-11-02T10:11:12Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:metadata\":{"
    "\"f:generateName\":{},\"f:labels\":{\".\":{},\"f:app\":{}}}}}]},\"spec\":{\"volumes\":[{"
    "\"name\":\"kube-api-access-8kq2z\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{"
    "\"expirationSeconds\":3607,\"path\":\"token\"}},{\"configMap\":{\"name\":\"kube-root-ca.crt\","
    "\"items\":[{\"key\":\"ca.crt\",\"path\":\"ca.crt\"}]}},{\"downwardAPI\":{\"items\":[{\"path\":"
    "\"namespace\",\"fieldRef\":{\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.namespace\"}}]}}],"
    "\"defaultMode\":420}}],\"containers\":[{\"name\":\"web\",\"image\":\"registry.example/shop/web:2.14.1\","
    "\"ports\":[{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"}],\"env\":[{\"name\":"
    "\"LOG_LEVEL\",\"value\":\"info\"},{\"name\":\"POD_NAME\",\"valueFrom\":{\"fieldRef\":{"
    "\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.name\"}}}],\"resources\":{\"limits\":{"
    "\"cpu\":\"500m\",\"memory\":\"256Mi\"},\"requests\":{\"cpu\":\"100m\",\"memory\":\"128Mi\"}},"
    "\"volumeMounts\":[{\"name\":\"kube-api-access-8kq2z\",\"readOnly\":true,\"mountPath\":"
    "\"/var/run/secrets/kubernetes.io/serviceaccount\"}],\"livenessProbe\":{\"httpGet\":{"
    "\"path\":\"/healthz\",\"port\":8080,\"scheme\":\"HTTP\"},\"initialDelaySeconds\":5,"
    "\"timeoutSeconds\":1,\"periodSeconds\":10,\"successThreshold\":1,\"failureThreshold\":3},"
    "\"terminationMessagePath\":\"/dev/termination-log\",\"terminationMessagePolicy\":\"File\","
    "\"imagePullPolicy\":\"IfNotPresent\"},{\"name\":\"proxy\",\"image\":\"registry.example/envoy:1.28\","
    "\"args\":[\"--config\",\"/etc/envoy/envoy.yaml\"],\"resources\":{},\"volumeMounts\":[{\"name\":"
    "\"kube-api-access-8kq2z\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/kubernetes.io/"
    "serviceaccount\"}],\"terminationMessagePath\":\"/dev/termination-log\","
    "\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"IfNotPresent\"}],"
    "\"restartPolicy\":\"Always\",\"terminationGracePeriodSeconds\":30,\"dnsPolicy\":\"ClusterFirst\","
    "\"serviceAccountName\":\"default\",\"serviceAccount\":\"default\",\"nodeName\":\"vk-east-1\","
    "\"securityContext\":{},\"schedulerName\":\"default-scheduler\",\"tolerations\":[{\"key\":"
    "\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\",\"effect\":\"NoExecute\","
    "\"tolerationSeconds\":300},{\"key\":\"node.kubernetes.io/unreachable\",\"operator\":\"Exists\","
    "\"effect\":\"NoExecute\",\"tolerationSeconds\":300}],\"priority\":0,\"enableServiceLinks\":true,"
    "\"preemptionPolicy\":\"PreemptLowerPriority\"},\"status\":{\"phase\":\"Pending\",\"conditions\":[{"
    "\"type\":\"PodScheduled\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":"
    "\"2026-11-02T10:11:12Z\"}],\"qosClass\":\"Burstable\"}}";

/* Raw deflate of s at zlib's default level with no dictionary: what a
 * document costs on its own. */
static size_t deflated_alone(const char *s, size_t n)
{
    z_stream z = {0};
    ck_assert_int_eq(deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -13, 6, Z_DEFAULT_STRATEGY), Z_OK);
    unsigned char out[16384];
    z.next_in = (Bytef *)s;
    z.avail_in = (uInt)n;
    z.next_out = out;
    z.avail_out = sizeof out;
    ck_assert_int_eq(deflate(&z, Z_FINISH), Z_STREAM_END);
    size_t len = z.total_out;
    deflateEnd(&z);
    return len;
}

/* pk's document, which must be exactly want[0..n). */
static void assert_holds(const packed_json *pk, const char *want, size_t n)
{
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(packed_get(pk, &b), 0);
    ck_assert_uint_eq(b.len, n);
    ck_assert(n == 0 || memcmp(b.data, want, n) == 0);
    vk_buf_free(&b);
}

START_TEST(round_trip_exact)
{
    packed_json pk = {0};
    ck_assert_int_eq(packed_set(&pk, deploy_pod, strlen(deploy_pod)), 0);
    ck_assert_uint_eq(pk.len, strlen(deploy_pod));
    assert_holds(&pk, deploy_pod, strlen(deploy_pod));
    /* Replacing frees the old document (ASan would tell) and holds the new. */
    ck_assert_int_eq(packed_set(&pk, "{}", 2), 0);
    assert_holds(&pk, "{}", 2);
    /* An empty document is still a document, unlike an empty pk. */
    ck_assert_int_eq(packed_set(&pk, "", 0), 0);
    ck_assert_ptr_nonnull(pk.z);
    assert_holds(&pk, "", 0);
    packed_clear(&pk);
    ck_assert_ptr_null(pk.z);
    vk_buf b = VK_BUF_INIT;
    ck_assert_int_eq(packed_get(&pk, &b), -1);
    ck_assert_ptr_null(packed_tree(&pk));
    vk_buf_free(&b);
}
END_TEST

START_TEST(round_trip_large_and_random)
{
    /* Far beyond the window, and incompressible bytes (deflate's stored
     * blocks): both must come back byte for byte. */
    size_t n = 300 * 1024;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    size_t pod_len = strlen(deploy_pod);
    for (size_t off = 0; off < n; off += pod_len)
        memcpy(big + off, deploy_pod, n - off < pod_len ? n - off : pod_len);
    packed_json pk = {0};
    ck_assert_int_eq(packed_set(&pk, big, n), 0);
    assert_holds(&pk, big, n);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        big[i] = (char)(s >> 16);
    }
    ck_assert_int_eq(packed_set(&pk, big, n), 0);
    assert_holds(&pk, big, n);
    packed_clear(&pk);
    free(big);
}
END_TEST

START_TEST(tree_drops_managed_fields_of_pods_only)
{
    yajl_val pod = vk_json_parse(deploy_pod, strlen(deploy_pod), NULL, 0);
    ck_assert_ptr_nonnull(pod);
    packed_json pk = {0};
    ck_assert_int_eq(packed_set_tree(&pk, pod), 0);
    yajl_val back = packed_tree(&pk);
    ck_assert_ptr_nonnull(back);
    yajl_val md = vk_json_member(back, "metadata");
    ck_assert_ptr_null(vk_json_member(md, "managedFields"));
    ck_assert_str_eq(vk_json_str(vk_json_member(md, "uid"), ""), "0b7e3c4a-55d1-4c8e-9d3a-1f2e3d4c5b6a");
    ck_assert_str_eq(vk_json_str(vk_json_member(vk_json_member(back, "status"), "qosClass"), ""),
                     "Burstable");
    ck_assert_uint_eq(YAJL_GET_ARRAY(vk_json_member(vk_json_member(back, "spec"), "containers"))->len, 2);
    yajl_tree_free(back);
    yajl_tree_free(pod);

    /* A document whose managedFields is not under an object "metadata"
     * keeps it. */
    const char *other = "{\"managedFields\":[1],\"metadata\":\"x\"}";
    yajl_val v = vk_json_parse(other, strlen(other), NULL, 0);
    ck_assert_int_eq(packed_set_tree(&pk, v), 0);
    assert_holds(&pk, other, strlen(other));
    yajl_tree_free(v);
    packed_clear(&pk);
}
END_TEST

START_TEST(cut_document_refused)
{
    packed_json pk = {0};
    ck_assert_int_eq(packed_set(&pk, deploy_pod, strlen(deploy_pod)), 0);
    vk_buf b = VK_BUF_INIT;
    vk_buf_append(&b, "kept", 4);
    uint32_t whole = pk.zlen;
    pk.zlen = whole / 2;
    ck_assert_int_eq(packed_get(&pk, &b), -1);
    /* What the buffer held before is intact, nothing half-inflated after. */
    ck_assert_uint_eq(b.len, 4);
    ck_assert_str_eq(b.data, "kept");
    ck_assert_ptr_null(packed_tree(&pk));
    pk.zlen = whole;
    /* A length that the bytes do not inflate to is refused too. */
    pk.len++;
    ck_assert_int_eq(packed_get(&pk, &b), -1);
    ck_assert_uint_eq(b.len, 4);
    pk.len--;
    /* Bytes after the end of the deflated stream: not this document. */
    unsigned char *longer = malloc(whole + 1);
    ck_assert_ptr_nonnull(longer);
    memcpy(longer, pk.z, whole);
    longer[whole] = 0x5a;
    packed_json extra = {longer, whole + 1, pk.len};
    ck_assert_int_eq(packed_get(&extra, &b), -1);
    ck_assert_uint_eq(b.len, 4);
    packed_clear(&extra);
    assert_holds(&pk, deploy_pod, strlen(deploy_pod));
    vk_buf_free(&b);
    packed_clear(&pk);
}
END_TEST

START_TEST(copies_are_independent)
{
    packed_json a = {0}, c = {0};
    ck_assert_int_eq(packed_set(&a, deploy_pod, strlen(deploy_pod)), 0);
    ck_assert_int_eq(packed_copy(&c, &a), 0);
    ck_assert_ptr_ne(c.z, a.z);
    packed_clear(&a);
    assert_holds(&c, deploy_pod, strlen(deploy_pod));
    /* Copying an empty document empties the destination. */
    ck_assert_int_eq(packed_copy(&c, &a), 0);
    ck_assert_ptr_null(c.z);
    ck_assert_uint_eq(c.len, 0);
}
END_TEST

START_TEST(dictionary_pays_on_a_pod_it_was_not_written_from)
{
    /* The pod as the cache keeps it: without managedFields. */
    yajl_val pod = vk_json_parse(deploy_pod, strlen(deploy_pod), NULL, 0);
    packed_json pk = {0};
    ck_assert_int_eq(packed_set_tree(&pk, pod), 0);
    vk_buf plain = VK_BUF_INIT;
    ck_assert_int_eq(packed_get(&pk, &plain), 0);
    size_t alone = deflated_alone(plain.data, plain.len);
    /* Measured: 2,754 bytes of JSON, 1,174 deflated alone, 404 packed;
     * packed without the dictionary, 1,174 too. */
    ck_assert_msg(pk.zlen * 10 < alone * 7, "packed %u bytes, alone %zu: the dictionary does not help",
                  pk.zlen, alone);
    /* The status alone, as the desired status is kept: 132 bytes alone,
     * 34 packed. */
    yajl_val st = vk_json_member(pod, "status");
    packed_json ps = {0};
    ck_assert_int_eq(packed_set_tree(&ps, st), 0);
    vk_buf sb = VK_BUF_INIT;
    ck_assert_int_eq(packed_get(&ps, &sb), 0);
    ck_assert_msg(ps.zlen * 10 < deflated_alone(sb.data, sb.len) * 7, "status packed %u bytes", ps.zlen);
    vk_buf_free(&sb);
    vk_buf_free(&plain);
    packed_clear(&ps);
    packed_clear(&pk);
    yajl_tree_free(pod);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("packed");
    TCase *tc = tcase_create("packed");
    tcase_add_test(tc, round_trip_exact);
    tcase_add_test(tc, round_trip_large_and_random);
    tcase_add_test(tc, tree_drops_managed_fields_of_pods_only);
    tcase_add_test(tc, cut_document_refused);
    tcase_add_test(tc, copies_are_independent);
    tcase_add_test(tc, dictionary_pays_on_a_pod_it_was_not_written_from);
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
