/* packed.c -- JSON documents kept deflated against a preset dictionary.
 *
 * Raw deflate (no header or checksum: the sizes are kept beside it). Every
 * pod the API server sends spells out the same field names in the same
 * order and mostly the same defaulted values; alone, a pod deflates to
 * ~40 % of its bytes, against this dictionary to ~13 % (a 2 KB pod without
 * managedFields: 824 bytes alone, 254 with it; its status 344 and 147).
 *
 * The dictionary follows the API server's field order (Go's struct order
 * in k8s.io/api/core/v1, which its JSON keeps), and a status as
 * sdk-c/pod_status.c writes it. zlib finds matches anywhere in it but
 * codes near ones shorter, so what nearly every pod has comes last: the
 * skeleton of a pod of one container with its service-account token,
 * Running. Before it, what many pods have: owner references, ports, env,
 * probes, resources, the 1.21+ projected token volume, the default
 * tolerations. Only values every cluster shares are in it, none of a
 * test's or a benchmark's.
 */
#include "packed.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "json.h"

static const char dictionary[] =
    "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\",\"name\":\"\","
    "\"uid\":\"\",\"controller\":true,\"blockOwnerDeletion\":true}],\"annotations\":{"
    "},\"generateName\":\"\",\"pod-template-hash\":\"\",\"app.kubernetes.io/name\":\"\","
    "\"finalizers\":[],\"initContainers\":[],\"args\":[],\"workingDir\":\"\",\"ports\":["
    "{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"}],\"envFrom\":[{\"configMapRef\":{"
    "\"name\":\"\"}},{\"secretRef\":{\"name\":\"\"}}],\"env\":[{\"name\":\"\",\"value\":\"\"},"
    "{\"name\":\"\",\"valueFrom\":{\"fieldRef\":{\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.name\"}}},"
    "{\"name\":\"\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"\",\"key\":\"\"}}}],\"resources\":{"
    "\"limits\":{\"cpu\":\"\",\"memory\":\"Mi\"},\"requests\":{\"cpu\":\"m\",\"memory\":\"Mi\"}},"
    "\"livenessProbe\":{\"httpGet\":{\"path\":\"/\",\"port\":8080,\"scheme\":\"HTTP\"},"
    "\"initialDelaySeconds\":0,\"timeoutSeconds\":1,\"periodSeconds\":10,\"successThreshold\":1,"
    "\"failureThreshold\":3},\"readinessProbe\":{\"tcpSocket\":{\"port\":\"\"},\"exec\":{"
    "\"command\":[]}},\"emptyDir\":{},\"configMap\":{\"name\":\"\",\"items\":[{\"key\":\"\","
    "\"path\":\"\"}],\"defaultMode\":420},\"persistentVolumeClaim\":{\"claimName\":\"\"},"
    "\"hostPath\":{\"path\":\"\",\"type\":\"\"},\"subPath\":\"\",\"imagePullSecrets\":[{\"name\":\"\"}],"
    "\"nodeSelector\":{\"kubernetes.io/os\":\"linux\"},\"affinity\":{},\"priorityClassName\":\"\","
    "\"runtimeClassName\":\"\",\"tolerations\":[{\"key\":\"node.kubernetes.io/not-ready\","
    "\"operator\":\"Exists\",\"effect\":\"NoExecute\",\"tolerationSeconds\":300},{\"key\":\"node.kubernetes.io/unreachable\","
    "\"operator\":\"Exists\",\"effect\":\"NoExecute\",\"tolerationSeconds\":300},{\"key\":\"virtual-kubelet.io/provider\","
    "\"operator\":\"Exists\",\"effect\":\"NoSchedule\"}],\"volumes\":[{\"name\":\"kube-api-access-\","
    "\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"expirationSeconds\":3607,"
    "\"path\":\"token\"}},{\"configMap\":{\"name\":\"kube-root-ca.crt\",\"items\":[{\"key\":\"ca.crt\","
    "\"path\":\"ca.crt\"}]}},{\"downwardAPI\":{\"items\":[{\"path\":\"namespace\",\"fieldRef\":{"
    "\"apiVersion\":\"v1\",\"fieldPath\":\"metadata.namespace\"}}]}}],\"defaultMode\":420}}],"
    "\"message\":\"\",\"reason\":\"ContainerCreating\",\"nominatedNodeName\":\"\",\"initContainerStatuses\":["
    "],\"lastState\":{\"terminated\":{\"exitCode\":0,\"reason\":\"Completed\",\"startedAt\":\"\","
    "\"finishedAt\":\"\",\"containerID\":\"\"}},\"state\":{\"waiting\":{\"reason\":\"ContainerCreating\"}},"
    "\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"True\","
    "\"lastTransitionTime\":\"\"},{\"type\":\"Initialized\",\"status\":\"True\",\"lastTransitionTime\":\"\"},"
    "{\"type\":\"ContainersReady\",\"status\":\"False\",\"lastTransitionTime\":\"\",\"reason\":\"ContainersNotReady\","
    "\"message\":\"containers with unready status: []\"},{\"type\":\"Ready\",\"status\":\"False\","
    "\"lastTransitionTime\":\"\",\"reason\":\"ContainersNotReady\",\"message\":\"\"}],"
    "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"\",\"namespace\":\"default\","
    "\"uid\":\"\",\"resourceVersion\":\"\",\"creationTimestamp\":\"2026-01-01T00:00:00Z\","
    "\"deletionTimestamp\":\"2026-01-01T00:00:00Z\",\"deletionGracePeriodSeconds\":30,"
    "\"labels\":{\"app\":\"\"}},\"spec\":{\"volumes\":[{\"name\":\"default-token-\",\"secret\":{"
    "\"secretName\":\"default-token-\",\"defaultMode\":420}}],\"containers\":[{\"name\":\"\","
    "\"image\":\"\",\"command\":[],\"resources\":{},\"volumeMounts\":[{\"name\":\"default-token-\","
    "\"readOnly\":true,\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"}],"
    "\"terminationMessagePath\":\"/dev/termination-log\",\"terminationMessagePolicy\":\"File\","
    "\"imagePullPolicy\":\"IfNotPresent\"}],\"restartPolicy\":\"Always\",\"terminationGracePeriodSeconds\":30,"
    "\"dnsPolicy\":\"ClusterFirst\",\"serviceAccountName\":\"default\",\"serviceAccount\":\"default\","
    "\"nodeName\":\"\",\"securityContext\":{},\"schedulerName\":\"default-scheduler\","
    "\"tolerations\":[{\"operator\":\"Exists\"}],\"priority\":0,\"enableServiceLinks\":true,"
    "\"preemptionPolicy\":\"PreemptLowerPriority\"},\"status\":{\"phase\":\"Running\","
    "\"conditions\":[{\"type\":\"Initialized\",\"status\":\"True\",\"lastProbeTime\":null,"
    "\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"},{\"type\":\"Ready\",\"status\":\"True\","
    "\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"},{\"type\":\"ContainersReady\","
    "\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"},"
    "{\"type\":\"PodScheduled\",\"status\":\"True\",\"lastProbeTime\":null,\"lastTransitionTime\":\"2026-01-01T00:00:00Z\"}],"
    "\"hostIP\":\"\",\"podIP\":\"\",\"podIPs\":[{\"ip\":\"\"}],\"startTime\":\"2026-01-01T00:00:00Z\","
    "\"containerStatuses\":[{\"name\":\"\",\"state\":{\"running\":{\"startedAt\":\"2026-01-01T00:00:00Z\"}},"
    "\"lastState\":{},\"ready\":true,\"restartCount\":0,\"image\":\"\",\"imageID\":\"\","
    "\"containerID\":\"\",\"started\":true}],\"qosClass\":\"BestEffort\"}}";

/* An 8 KB window holds the dictionary (4.2 KB) and the first ~3.6 KB of a
 * document; zlib's default level costs no more than its fastest here (the
 * dictionary leaves few literals to code) and packs ~20 % smaller. */
#define PACK_WINDOW_BITS 13
#define PACK_MEM_LEVEL 6
#define PACK_LEVEL 6

int packed_set(packed_json *pk, const char *json, size_t len)
{
    if (len > UINT32_MAX)
        return -1;
    z_stream z = {0};
    if (deflateInit2(&z, PACK_LEVEL, Z_DEFLATED, -PACK_WINDOW_BITS, PACK_MEM_LEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    if (deflateSetDictionary(&z, (const Bytef *)dictionary, sizeof dictionary - 1) != Z_OK) {
        deflateEnd(&z);
        return -1;
    }
    uLong bound = deflateBound(&z, (uLong)len);
    unsigned char *out = malloc(bound);
    int rc = -1;
    if (out) {
        z.next_in = (Bytef *)json;
        z.avail_in = (uInt)len;
        z.next_out = out;
        z.avail_out = (uInt)bound;
        rc = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : -1;
    }
    deflateEnd(&z);
    /* Exactly sized: the bound is larger than the result, and these stay
     * for the pod's lifetime. */
    unsigned char *fit = rc == 0 ? malloc(z.total_out ? z.total_out : 1) : NULL;
    if (fit) {
        memcpy(fit, out, z.total_out);
        packed_clear(pk);
        pk->z = fit;
        pk->zlen = (uint32_t)z.total_out;
        pk->len = (uint32_t)len;
    }
    if (out)
        explicit_bzero(out, bound);
    free(out);
    return fit ? 0 : -1;
}

/* v as JSON; a Pod's metadata without managedFields. */
static int write_packable(vk_buf *out, yajl_val v)
{
    vk_json_writer w;
    vk_jw_begin(&w, out);
    yajl_val md = vk_json_member(v, "metadata");
    if (!YAJL_IS_OBJECT(md) || !vk_json_member(md, "managedFields")) {
        vk_jw_tree(&w, v);
        return vk_jw_end(&w);
    }
    vk_jw_map_open(&w);
    for (size_t i = 0; i < v->u.object.len; i++) {
        vk_jw_str(&w, v->u.object.keys[i]);
        if (v->u.object.values[i] != md) {
            vk_jw_tree(&w, v->u.object.values[i]);
            continue;
        }
        vk_jw_map_open(&w);
        for (size_t j = 0; j < md->u.object.len; j++) {
            if (!strcmp(md->u.object.keys[j], "managedFields"))
                continue;
            vk_jw_str(&w, md->u.object.keys[j]);
            vk_jw_tree(&w, md->u.object.values[j]);
        }
        vk_jw_map_close(&w);
    }
    vk_jw_map_close(&w);
    return vk_jw_end(&w);
}

int packed_set_tree(packed_json *pk, yajl_val v)
{
    vk_buf b = VK_BUF_INIT;
    int rc = write_packable(&b, v) == 0 ? packed_set(pk, b.data, b.len) : -1;
    vk_buf_free(&b);
    return rc;
}

int packed_copy(packed_json *dst, const packed_json *src)
{
    unsigned char *z = src->z ? malloc(src->zlen ? src->zlen : 1) : NULL;
    if (src->z && !z)
        return -1;
    if (z)
        memcpy(z, src->z, src->zlen);
    packed_clear(dst);
    *dst = (packed_json){z, z ? src->zlen : 0, z ? src->len : 0};
    return 0;
}

int packed_get(const packed_json *pk, vk_buf *out)
{
    if (!pk->z)
        return -1;
    size_t start = out->len;
    z_stream z = {0};
    if (inflateInit2(&z, -PACK_WINDOW_BITS) != Z_OK)
        return -1;
    if (inflateSetDictionary(&z, (const Bytef *)dictionary, sizeof dictionary - 1) != Z_OK) {
        inflateEnd(&z);
        return -1;
    }
    z.next_in = pk->z;
    z.avail_in = pk->zlen;
    unsigned char chunk[4096];
    int zr = Z_OK, rc = 0;
    while (rc == 0 && zr == Z_OK) {
        z.next_out = chunk;
        z.avail_out = sizeof chunk;
        zr = inflate(&z, Z_NO_FLUSH);
        if ((zr != Z_OK && zr != Z_STREAM_END) ||
            vk_buf_append(out, chunk, sizeof chunk - z.avail_out) < 0)
            rc = -1;
    }
    explicit_bzero(chunk, sizeof chunk);
    if (rc == 0 && (z.total_out != pk->len || z.avail_in))
        rc = -1;
    inflateEnd(&z);
    if (rc < 0 && out->data) {
        explicit_bzero(out->data + start, out->len - start);
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

yajl_val packed_tree(const packed_json *pk)
{
    vk_buf b = VK_BUF_INIT;
    yajl_val v = packed_get(pk, &b) == 0 ? vk_json_parse(b.data, b.len, NULL, 0) : NULL;
    if (b.data)
        explicit_bzero(b.data, b.len);
    vk_buf_free(&b);
    return v;
}

void packed_clear(packed_json *pk)
{
    if (pk->z)
        explicit_bzero(pk->z, pk->zlen);
    free(pk->z);
    *pk = (packed_json){NULL, 0, 0};
}
