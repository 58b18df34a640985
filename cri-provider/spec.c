/* spec.c -- translate a pod into CRI sandbox and container configurations,
 * the way the kubelet's kuberuntime manager does.
 *
 * Everything built here lives in a spec_arena: the configurations are sent
 * once and dropped, so one free of the arena beats freeing message by
 * message. Strings of the pod view are referenced, not copied: the pod
 * outlives every configuration built from it.
 */
#include "cri.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

#define CPU_PERIOD_US 100000
#define MIN_SHARES 2
#define MIN_QUOTA_US 1000
#define DEFAULT_GRACE_S 30

/* ---- arena ------------------------------------------------------------------ */

typedef struct block {
    struct block *next;
    max_align_t data[];
} block;

void spec_arena_free(spec_arena *a)
{
    for (block *b = a->head, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->head = NULL;
}

static void *arena_alloc(spec_arena *a, size_t n)
{
    block *b = calloc(1, sizeof *b + n);
    if (!b)
        return NULL;
    b->next = a->head;
    a->head = b;
    return b->data;
}

static void *arena_msg(spec_arena *a, const ProtobufCMessageDescriptor *d)
{
    void *m = arena_alloc(a, d->sizeof_message);
    if (m)
        protobuf_c_message_init(d, m);
    return m;
}

static char *arena_printf(spec_arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static char *arena_printf(spec_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = n < 0 ? NULL : arena_alloc(a, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A map of the generated entry type d, with room for n entries. */
typedef struct map {
    ProtobufCMessage **items;
    size_t n, cap;
    const ProtobufCMessageDescriptor *desc;
    spec_arena *a;
} map;

static int map_init(map *m, spec_arena *a, const ProtobufCMessageDescriptor *d, size_t cap)
{
    *m = (map){.desc = d, .a = a, .cap = cap};
    m->items = arena_alloc(a, (cap ? cap : 1) * sizeof *m->items);
    return m->items ? 0 : -1;
}

/* Later keys replace earlier ones, as in a Go map literal. */
static int map_put(map *m, const char *key, const char *value)
{
    unsigned ko = m->desc->fields[0].offset, vo = m->desc->fields[1].offset;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(*(char **)((char *)m->items[i] + ko), key) == 0) {
            *(const char **)((char *)m->items[i] + vo) = value ? value : "";
            return 0;
        }
    }
    if (m->n == m->cap)
        return -1;
    ProtobufCMessage *e = arena_msg(m->a, m->desc);
    if (!e)
        return -1;
    *(const char **)((char *)e + ko) = key;
    *(const char **)((char *)e + vo) = value ? value : "";
    m->items[m->n++] = e;
    return 0;
}

/* ---- the pod document --------------------------------------------------------- */

static yajl_val spec_of(const cri_pod *p)
{
    return vk_json_member(p->spec, "spec");
}

static size_t array_len(yajl_val v)
{
    return YAJL_IS_ARRAY(v) ? v->u.array.len : 0;
}

static yajl_val array_at(yajl_val v, size_t i)
{
    return v->u.array.values[i];
}

yajl_val spec_container_json(const cri_pod *p, const char *name)
{
    static const char *const lists[] = {"initContainers", "containers"};
    for (size_t l = 0; l < 2; l++) {
        yajl_val arr = vk_json_member(spec_of(p), lists[l]);
        for (size_t i = 0; i < array_len(arr); i++) {
            const char *n = vk_json_str(vk_json_member(array_at(arr, i), "name"), NULL);
            if (n && strcmp(n, name) == 0)
                return array_at(arr, i);
        }
    }
    return NULL;
}

int64_t spec_grace_seconds(const cri_pod *p)
{
    if (p->pod->deletion_grace_seconds >= 0)
        return p->pod->deletion_grace_seconds;
    int64_t g = vk_json_int(vk_json_member(spec_of(p), "terminationGracePeriodSeconds"),
                            DEFAULT_GRACE_S);
    return g < 0 ? 0 : g;
}

/* An int64 field present in the container's securityContext, else in the
 * pod's: the container's wins, as in the API. */
static yajl_val security_field(yajl_val pod_sc, yajl_val ctr_sc, const char *key)
{
    yajl_val v = vk_json_member(ctr_sc, key);
    return v ? v : vk_json_member(pod_sc, key);
}

static Runtime__V1__Int64Value *int64_value(spec_arena *a, yajl_val v)
{
    if (!YAJL_IS_INTEGER(v))
        return NULL;
    Runtime__V1__Int64Value *iv = arena_msg(a, &runtime__v1__int64_value__descriptor);
    if (iv)
        iv->value = YAJL_GET_INTEGER(v);
    return iv;
}

/* ---- sandbox --------------------------------------------------------------------- */

static int strings(spec_arena *a, yajl_val arr, char ***out, size_t *n)
{
    size_t len = array_len(arr);
    *n = 0;
    if (!len)
        return 0;
    *out = arena_alloc(a, len * sizeof **out);
    if (!*out)
        return -1;
    for (size_t i = 0; i < len; i++) {
        const char *s = vk_json_str(array_at(arr, i), NULL);
        if (s)
            (*out)[(*n)++] = (char *)s;
    }
    return 0;
}

/* The kubelet's DNS rules for the policies it knows, without reading the
 * host's resolv.conf: the runtime falls back to the host's file itself when
 * no DNS config is given. ClusterFirst needs --cluster-dns; without it the
 * pod gets the host's DNS, as a kubelet without clusterDNS does. */
static int dns_config(const cri_pod *p, spec_arena *a, Runtime__V1__DNSConfig **out)
{
    yajl_val spec = spec_of(p);
    const char *policy = vk_json_str(vk_json_member(spec, "dnsPolicy"), "ClusterFirst");
    yajl_val custom = vk_json_member(spec, "dnsConfig");
    bool cluster = config.cluster_dns &&
                   ((strcmp(policy, "ClusterFirst") == 0 && !p->pod->host_network) ||
                    strcmp(policy, "ClusterFirstWithHostNet") == 0);
    *out = NULL;
    if (!cluster && strcmp(policy, "None") != 0)
        return 0;
    Runtime__V1__DNSConfig *d = arena_msg(a, &runtime__v1__dnsconfig__descriptor);
    if (!d)
        return -1;
    yajl_val servers = vk_json_member(custom, "nameservers");
    yajl_val searches = vk_json_member(custom, "searches");
    yajl_val options = vk_json_member(custom, "options");
    size_t ns = array_len(servers), nsearch = array_len(searches), nopt = array_len(options);
    d->servers = arena_alloc(a, (ns + 1) * sizeof *d->servers);
    d->searches = arena_alloc(a, (nsearch + 3) * sizeof *d->searches);
    d->options = arena_alloc(a, (nopt + 1) * sizeof *d->options);
    if (!d->servers || !d->searches || !d->options)
        return -1;
    if (cluster) {
        const char *dom = config.cluster_domain;
        d->servers[d->n_servers++] = (char *)config.cluster_dns;
        d->searches[d->n_searches++] = arena_printf(a, "%s.svc.%s", p->ns, dom);
        d->searches[d->n_searches++] = arena_printf(a, "svc.%s", dom);
        d->searches[d->n_searches++] = (char *)dom;
        d->options[d->n_options++] = "ndots:5";
    }
    for (size_t i = 0; i < ns; i++)
        if (vk_json_str(array_at(servers, i), NULL))
            d->servers[d->n_servers++] = (char *)vk_json_str(array_at(servers, i), NULL);
    for (size_t i = 0; i < nsearch; i++)
        if (vk_json_str(array_at(searches, i), NULL))
            d->searches[d->n_searches++] = (char *)vk_json_str(array_at(searches, i), NULL);
    for (size_t i = 0; i < nopt; i++) {
        yajl_val o = array_at(options, i);
        const char *name = vk_json_str(vk_json_member(o, "name"), NULL);
        const char *value = vk_json_str(vk_json_member(o, "value"), NULL);
        if (!name)
            continue;
        d->options[d->n_options++] = value ? arena_printf(a, "%s:%s", name, value) : (char *)name;
    }
    for (size_t i = 0; i < d->n_searches; i++)
        if (!d->searches[i])
            return -1;
    for (size_t i = 0; i < d->n_options; i++)
        if (!d->options[i])
            return -1;
    *out = d;
    return 0;
}

/* Host ports of the pod's containers; the runtime ignores them for pods on
 * the host network, whose ports are the host's already. */
static int port_mappings(const cri_pod *p, spec_arena *a, Runtime__V1__PodSandboxConfig *cfg)
{
    size_t n = 0;
    for (size_t i = 0; i < p->pod->n_containers; i++)
        n += p->pod->containers[i].n_ports;
    if (!n)
        return 0;
    cfg->port_mappings = arena_alloc(a, n * sizeof *cfg->port_mappings);
    if (!cfg->port_mappings)
        return -1;
    for (size_t i = 0; i < p->pod->n_containers; i++) {
        const vk_container *c = &p->pod->containers[i];
        for (size_t j = 0; j < c->n_ports; j++) {
            if (c->ports[j].host_port <= 0)
                continue;
            Runtime__V1__PortMapping *m = arena_msg(a, &runtime__v1__port_mapping__descriptor);
            if (!m)
                return -1;
            const char *proto = c->ports[j].protocol ? c->ports[j].protocol : "TCP";
            m->protocol = strcmp(proto, "UDP") == 0    ? RUNTIME__V1__PROTOCOL__UDP
                          : strcmp(proto, "SCTP") == 0 ? RUNTIME__V1__PROTOCOL__SCTP
                                                       : RUNTIME__V1__PROTOCOL__TCP;
            m->container_port = c->ports[j].container_port;
            m->host_port = c->ports[j].host_port;
            cfg->port_mappings[cfg->n_port_mappings++] = m;
        }
    }
    return 0;
}

static Runtime__V1__NamespaceOption *namespaces(const cri_pod *p, spec_arena *a)
{
    yajl_val spec = spec_of(p);
    Runtime__V1__NamespaceOption *ns = arena_msg(a, &runtime__v1__namespace_option__descriptor);
    if (!ns)
        return NULL;
    ns->network = p->pod->host_network ? RUNTIME__V1__NAMESPACE_MODE__NODE
                                        : RUNTIME__V1__NAMESPACE_MODE__POD;
    /* A v1 pod shares no PID namespace between its containers unless it
     * asks to: CONTAINER, not the CRI default POD. */
    ns->pid = vk_json_bool(vk_json_member(spec, "hostPID"), false)
                  ? RUNTIME__V1__NAMESPACE_MODE__NODE
              : vk_json_bool(vk_json_member(spec, "shareProcessNamespace"), false)
                  ? RUNTIME__V1__NAMESPACE_MODE__POD
                  : RUNTIME__V1__NAMESPACE_MODE__CONTAINER;
    ns->ipc = vk_json_bool(vk_json_member(spec, "hostIPC"), false)
                  ? RUNTIME__V1__NAMESPACE_MODE__NODE
                  : RUNTIME__V1__NAMESPACE_MODE__POD;
    return ns;
}

static int64_t *int64s(spec_arena *a, yajl_val arr, size_t *n)
{
    size_t len = array_len(arr);
    int64_t *out = arena_alloc(a, (len ? len : 1) * sizeof *out);
    *n = 0;
    for (size_t i = 0; out && i < len; i++)
        if (YAJL_IS_INTEGER(array_at(arr, i)))
            out[(*n)++] = YAJL_GET_INTEGER(array_at(arr, i));
    return out;
}

static bool any_privileged(const cri_pod *p)
{
    for (size_t i = 0; i < p->n_ctrs; i++) {
        yajl_val c = spec_container_json(p, p->ctrs[i].spec->name);
        if (vk_json_bool(vk_json_get(c, "securityContext", "privileged", NULL), false))
            return true;
    }
    return false;
}

static int sandbox_linux(const cri_pod *p, spec_arena *a, Runtime__V1__LinuxPodSandboxConfig **out)
{
    yajl_val psc = vk_json_member(spec_of(p), "securityContext");
    Runtime__V1__LinuxPodSandboxConfig *l =
        arena_msg(a, &runtime__v1__linux_pod_sandbox_config__descriptor);
    Runtime__V1__LinuxSandboxSecurityContext *sc =
        arena_msg(a, &runtime__v1__linux_sandbox_security_context__descriptor);
    if (!l || !sc)
        return -1;
    l->cgroup_parent = arena_printf(a, "%s/pod%s", config.cgroup_root, p->uid);
    l->security_context = sc;
    sc->namespace_options = namespaces(p, a);
    sc->run_as_user = int64_value(a, vk_json_member(psc, "runAsUser"));
    sc->run_as_group = int64_value(a, vk_json_member(psc, "runAsGroup"));
    sc->supplemental_groups = int64s(a, vk_json_member(psc, "supplementalGroups"),
                                     &sc->n_supplemental_groups);
    sc->privileged = any_privileged(p);
    if (!l->cgroup_parent || !sc->namespace_options || !sc->supplemental_groups)
        return -1;
    yajl_val sysctls = vk_json_member(psc, "sysctls");
    map m;
    if (map_init(&m, a, &runtime__v1__linux_pod_sandbox_config__sysctls_entry__descriptor,
                 array_len(sysctls)) < 0)
        return -1;
    for (size_t i = 0; i < array_len(sysctls); i++) {
        const char *name = vk_json_str(vk_json_member(array_at(sysctls, i), "name"), NULL);
        if (name && map_put(&m, name, vk_json_str(vk_json_member(array_at(sysctls, i), "value"),
                                                  "")) < 0)
            return -1;
    }
    l->sysctls = (Runtime__V1__LinuxPodSandboxConfig__SysctlsEntry **)m.items;
    l->n_sysctls = m.n;
    *out = l;
    return 0;
}

/* Pod labels plus the kubelet's own, so runtime tools show which pod a
 * sandbox belongs to; ours mark what this provider manages. */
static int pod_labels(const cri_pod *p, spec_arena *a, const ProtobufCMessageDescriptor *d,
                      size_t extra, map *m)
{
    if (map_init(m, a, d, p->pod->n_labels + 4 + extra) < 0)
        return -1;
    for (size_t i = 0; i < p->pod->n_labels; i++)
        if (map_put(m, p->pod->labels[i].name, p->pod->labels[i].value) < 0)
            return -1;
    if (map_put(m, LABEL_POD_NAME, p->name) < 0 || map_put(m, LABEL_POD_NAMESPACE, p->ns) < 0 ||
        map_put(m, LABEL_POD_UID, p->uid) < 0 ||
        map_put(m, LABEL_MANAGED, config.instance) < 0)
        return -1;
    return 0;
}

int spec_sandbox(const cri_pod *p, Runtime__V1__PodSandboxConfig *cfg, spec_arena *a,
                 char *err, size_t errlen)
{
    runtime__v1__pod_sandbox_config__init(cfg);
    Runtime__V1__PodSandboxMetadata *md = arena_msg(a, &runtime__v1__pod_sandbox_metadata__descriptor);
    map labels, annotations;
    if (!md)
        goto oom;
    md->name = p->name;
    md->namespace_ = p->ns;
    md->uid = p->uid;
    md->attempt = p->sandbox_attempt;
    cfg->metadata = md;
    if (!p->pod->host_network) {
        const char *h = p->pod->hostname ? p->pod->hostname : p->name;
        /* A hostname is a DNS label: at most 63 bytes, as the kubelet cuts it. */
        cfg->hostname = arena_printf(a, "%.63s", h);
        if (!cfg->hostname)
            goto oom;
    }
    cfg->log_directory = (char *)p->dir;
    if (dns_config(p, a, &cfg->dns_config) < 0 || port_mappings(p, a, cfg) < 0 ||
        sandbox_linux(p, a, &cfg->linux) < 0)
        goto oom;
    if (pod_labels(p, a, &runtime__v1__pod_sandbox_config__labels_entry__descriptor, 0, &labels) < 0 ||
        map_init(&annotations, a, &runtime__v1__pod_sandbox_config__annotations_entry__descriptor,
                 p->pod->n_annotations) < 0)
        goto oom;
    for (size_t i = 0; i < p->pod->n_annotations; i++)
        if (map_put(&annotations, p->pod->annotations[i].name, p->pod->annotations[i].value) < 0)
            goto oom;
    cfg->labels = (Runtime__V1__PodSandboxConfig__LabelsEntry **)labels.items;
    cfg->n_labels = labels.n;
    cfg->annotations = (Runtime__V1__PodSandboxConfig__AnnotationsEntry **)annotations.items;
    cfg->n_annotations = annotations.n;
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the sandbox config");
    return -1;
}

/* ---- containers ---------------------------------------------------------------- */

static bool has_requests_or_limits(const vk_resources *r)
{
    return r->cpu_request_milli > 0 || r->cpu_limit_milli > 0 ||
           r->memory_request_bytes > 0 || r->memory_limit_bytes > 0;
}

static bool guaranteed(const vk_resources *r)
{
    return r->cpu_limit_milli > 0 && r->memory_limit_bytes > 0 &&
           r->cpu_request_milli == r->cpu_limit_milli &&
           r->memory_request_bytes == r->memory_limit_bytes;
}

/* The kubelet's oom_score_adj by QoS class (pkg/kubelet/qos): Guaranteed
 * -997, BestEffort 1000, Burstable between by memory request. A runtime with
 * restrict_oom_score_adj raises values below its own, as here. */
static int64_t oom_score_adj(const cri_pod *p, const vk_container *c)
{
    bool best_effort = true, all_guaranteed = true;
    for (size_t i = 0; i < p->n_ctrs; i++) {
        const vk_resources *r = &p->ctrs[i].spec->resources;
        best_effort = best_effort && !has_requests_or_limits(r);
        all_guaranteed = all_guaranteed && guaranteed(r);
    }
    if (best_effort)
        return 1000;
    if (all_guaranteed)
        return -997;
    int64_t mem = node_memory_bytes(), req = c->resources.memory_request_bytes;
    int64_t adj = mem > 0 && req > 0 ? 1000 - (1000 * (req / 1024)) / (mem / 1024) : 1000;
    return adj < 2 ? 2 : adj > 999 ? 999 : adj;
}

static Runtime__V1__LinuxContainerResources *resources(const cri_pod *p, const vk_container *c,
                                                       spec_arena *a)
{
    Runtime__V1__LinuxContainerResources *r =
        arena_msg(a, &runtime__v1__linux_container_resources__descriptor);
    if (!r)
        return NULL;
    const vk_resources *res = &c->resources;
    int64_t shares = res->cpu_request_milli > 0 ? res->cpu_request_milli * 1024 / 1000 : 0;
    r->cpu_shares = shares < MIN_SHARES ? MIN_SHARES : shares;
    if (res->cpu_limit_milli > 0) {
        int64_t quota = res->cpu_limit_milli * CPU_PERIOD_US / 1000;
        r->cpu_period = CPU_PERIOD_US;
        r->cpu_quota = quota < MIN_QUOTA_US ? MIN_QUOTA_US : quota;
    }
    if (res->memory_limit_bytes > 0)
        r->memory_limit_in_bytes = res->memory_limit_bytes;
    r->oom_score_adj = oom_score_adj(p, c);
    return r;
}

static int capabilities(spec_arena *a, yajl_val caps, Runtime__V1__Capability **out)
{
    *out = NULL;
    if (!caps)
        return 0;
    Runtime__V1__Capability *c = arena_msg(a, &runtime__v1__capability__descriptor);
    if (!c || strings(a, vk_json_member(caps, "add"), &c->add_capabilities,
                      &c->n_add_capabilities) < 0 ||
        strings(a, vk_json_member(caps, "drop"), &c->drop_capabilities,
                &c->n_drop_capabilities) < 0)
        return -1;
    *out = c;
    return 0;
}

static Runtime__V1__LinuxContainerSecurityContext *security(const cri_pod *p,
                                                            const vk_container *c,
                                                            spec_arena *a)
{
    yajl_val psc = vk_json_member(spec_of(p), "securityContext");
    yajl_val csc = vk_json_member(spec_container_json(p, c->name), "securityContext");
    Runtime__V1__LinuxContainerSecurityContext *sc =
        arena_msg(a, &runtime__v1__linux_container_security_context__descriptor);
    if (!sc)
        return NULL;
    sc->privileged = vk_json_bool(vk_json_member(csc, "privileged"), false);
    sc->readonly_rootfs = vk_json_bool(vk_json_member(csc, "readOnlyRootFilesystem"), false);
    sc->run_as_user = int64_value(a, security_field(psc, csc, "runAsUser"));
    sc->run_as_group = int64_value(a, security_field(psc, csc, "runAsGroup"));
    sc->supplemental_groups = int64s(a, vk_json_member(psc, "supplementalGroups"),
                                     &sc->n_supplemental_groups);
    /* allowPrivilegeEscalation: false is what sets no_new_privs; unset
     * means allowed, as in the kubelet. */
    yajl_val ape = vk_json_member(csc, "allowPrivilegeEscalation");
    sc->no_new_privs = YAJL_IS_FALSE(ape);
    sc->namespace_options = namespaces(p, a);
    if (!sc->supplemental_groups || !sc->namespace_options ||
        capabilities(a, vk_json_member(csc, "capabilities"), &sc->capabilities) < 0)
        return NULL;
    return sc;
}

static const vk_volume *volume(const cri_pod *p, const char *name)
{
    for (size_t i = 0; i < p->pod->n_volumes; i++)
        if (strcmp(p->pod->volumes[i].name, name) == 0)
            return &p->pod->volumes[i];
    return NULL;
}

static yajl_val volume_json(const cri_pod *p, const char *name)
{
    yajl_val vols = vk_json_member(spec_of(p), "volumes");
    for (size_t i = 0; i < array_len(vols); i++) {
        const char *n = vk_json_str(vk_json_member(array_at(vols, i), "name"), NULL);
        if (n && strcmp(n, name) == 0)
            return array_at(vols, i);
    }
    return NULL;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    return mkdir(buf, mode) < 0 && errno != EEXIST ? -1 : 0;
}

/* The host path behind one volume: emptyDir and the data volumes under
 * the pod directory (volumes.c wrote the latter before this runs),
 * hostPath as given (created for the *OrCreate types). */
static char *volume_path(const cri_pod *p, const vk_volume *v, spec_arena *a, char *err,
                         size_t errlen)
{
    if (strcmp(v->type, "emptyDir") == 0) {
        char *path = arena_printf(a, "%s/volumes/%s", p->dir, v->name);
        /* World-writable whatever the umask, as the kubelet makes it, so a
         * container running as any user can use its scratch space. */
        if (path && (mkdir_p(path, 0777) < 0 || chmod(path, 0777) < 0)) {
            snprintf(err, errlen, "volume %s: cannot create %s: %s", v->name, path,
                     strerror(errno));
            return NULL;
        }
        return path;
    }
    if (volume_is_data(v->type)) {
        char dir[600];
        volume_dir(p, v->name, dir, sizeof dir);
        return arena_printf(a, "%s", dir);
    }
    if (strcmp(v->type, "hostPath") == 0 && v->source) {
        const char *type = vk_json_str(vk_json_get(volume_json(p, v->name), "hostPath", "type",
                                                   NULL), "");
        if (strcmp(type, "DirectoryOrCreate") == 0 && mkdir_p(v->source, 0755) < 0) {
            snprintf(err, errlen, "volume %s: cannot create %s: %s", v->name, v->source,
                     strerror(errno));
            return NULL;
        }
        return (char *)v->source;
    }
    snprintf(err, errlen, "volume %s: %s volumes are not supported by vkc-provider-cri yet",
             v->name, v->type ? v->type : "this kind of");
    return NULL;
}

/* The kubelet's file behind terminationMessagePath: created empty and
 * writable by any user the container runs as, so that its process can
 * leave a message there; read after the exit (termination.c). Added to
 * cfg unless the path is empty. 0, or -1 with err. */
static int termination_mount(const cri_pod *p, const cri_ctr *ctr, uint32_t attempt,
                             spec_arena *a, Runtime__V1__ContainerConfig *cfg, char *err,
                             size_t errlen)
{
    yajl_val cj = spec_container_json(p, ctr->spec->name);
    const char *target = vk_json_str(vk_json_member(cj, "terminationMessagePath"),
                                     "/dev/termination-log");
    char path[600];
    if (!target[0])
        return 0;
    Runtime__V1__Mount *m = arena_msg(a, &runtime__v1__mount__descriptor);
    pod_termination_path(p, ctr->spec->name, attempt, path, sizeof path);
    if (!m || !(m->host_path = arena_printf(a, "%s", path))) {
        snprintf(err, errlen, "out of memory building the container config");
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 || fchmod(fd, 0666) < 0) {
        snprintf(err, errlen, "cannot create the termination message file %s: %s", path,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    m->container_path = (char *)target;
    cfg->mounts[cfg->n_mounts++] = m;
    return 0;
}

static int mounts(const cri_pod *p, const cri_ctr *ctr, uint32_t attempt, spec_arena *a,
                  Runtime__V1__ContainerConfig *cfg, char *err, size_t errlen)
{
    const vk_container *c = ctr->spec;
    cfg->mounts = arena_alloc(a, (c->n_mounts + 1) * sizeof *cfg->mounts);
    if (!cfg->mounts)
        goto oom;
    for (size_t i = 0; i < c->n_mounts; i++) {
        const vk_mount *vm = &c->mounts[i];
        const vk_volume *v = volume(p, vm->name);
        if (!v) {
            snprintf(err, errlen, "volume mount %s: no volume of that name", vm->name);
            return -1;
        }
        char *host = volume_path(p, v, a, err, errlen);
        if (!host)
            return -1;
        if (vm->sub_path && vm->sub_path[0]) {
            if (vm->sub_path[0] == '/' || strstr(vm->sub_path, "..")) {
                snprintf(err, errlen, "volume mount %s: subPath %s must be relative and "
                         "stay inside the volume", vm->name, vm->sub_path);
                return -1;
            }
            host = arena_printf(a, "%s/%s", host, vm->sub_path);
            if (!host)
                goto oom;
            if (strcmp(v->type, "emptyDir") == 0 && mkdir_p(host, 0777) < 0) {
                snprintf(err, errlen, "volume mount %s: cannot create %s: %s", vm->name, host,
                         strerror(errno));
                return -1;
            }
        }
        Runtime__V1__Mount *m = arena_msg(a, &runtime__v1__mount__descriptor);
        if (!m)
            goto oom;
        m->container_path = (char *)vm->mount_path;
        m->host_path = host;
        /* Data volumes are read-only whatever the mount says, as in the
         * kubelet: their content is the API's. */
        m->readonly = vm->read_only || volume_is_data(v->type);
        cfg->mounts[cfg->n_mounts++] = m;
    }
    return termination_mount(p, ctr, attempt, a, cfg, err, errlen);
oom:
    snprintf(err, errlen, "out of memory building the container config");
    return -1;
}

int spec_container(const cri_pod *p, const cri_ctr *ctr, uint32_t attempt,
                   Runtime__V1__ContainerConfig *cfg, spec_arena *a, char *err, size_t errlen)
{
    const vk_container *c = ctr->spec;
    yajl_val cj = spec_container_json(p, c->name);
    runtime__v1__container_config__init(cfg);
    Runtime__V1__ContainerMetadata *md = arena_msg(a, &runtime__v1__container_metadata__descriptor);
    Runtime__V1__ImageSpec *image = arena_msg(a, &runtime__v1__image_spec__descriptor);
    Runtime__V1__LinuxContainerConfig *linux =
        arena_msg(a, &runtime__v1__linux_container_config__descriptor);
    map labels;
    if (!md || !image || !linux)
        goto oom;
    md->name = (char *)c->name;
    md->attempt = attempt;
    image->image = (char *)(c->image ? c->image : "");
    cfg->metadata = md;
    cfg->image = image;
    cfg->command = (char **)c->command;
    cfg->n_command = c->n_command;
    cfg->args = (char **)c->args;
    cfg->n_args = c->n_args;
    if (c->working_dir)
        cfg->working_dir = (char *)c->working_dir;
    if (c->n_env) {
        cfg->envs = arena_alloc(a, c->n_env * sizeof *cfg->envs);
        if (!cfg->envs)
            goto oom;
        for (size_t i = 0; i < c->n_env; i++) {
            Runtime__V1__KeyValue *kv = arena_msg(a, &runtime__v1__key_value__descriptor);
            if (!kv)
                goto oom;
            kv->key = (char *)c->env[i].name;
            kv->value = (char *)(c->env[i].value ? c->env[i].value : "");
            cfg->envs[cfg->n_envs++] = kv;
        }
    }
    if (mounts(p, ctr, attempt, a, cfg, err, errlen) < 0)
        return -1;
    if (pod_labels(p, a, &runtime__v1__container_config__labels_entry__descriptor, 1, &labels) < 0 ||
        map_put(&labels, LABEL_CONTAINER_NAME, c->name) < 0)
        goto oom;
    cfg->labels = (Runtime__V1__ContainerConfig__LabelsEntry **)labels.items;
    cfg->n_labels = labels.n;
    cfg->log_path = arena_printf(a, "%s/%u.log", c->name, attempt);
    cfg->stdin = c->stdin_open;
    cfg->stdin_once = vk_json_bool(vk_json_member(cj, "stdinOnce"), false);
    cfg->tty = c->tty;
    linux->resources = resources(p, c, a);
    linux->security_context = security(p, c, a);
    cfg->linux = linux;
    if (!cfg->log_path || !linux->resources || !linux->security_context)
        goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the container config");
    return -1;
}
