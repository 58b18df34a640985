/* envresolve.h -- a pod's container environment, resolved as the kubelet
 * resolves it before it starts a container.
 *
 * Providers never see API credentials, so they cannot read the ConfigMaps,
 * Secrets and Services an environment refers to: the core resolves them and
 * hands CreatePod a Pod in which, for every container, init container and
 * ephemeral container,
 *
 *   - `env` is a flat list of {name, value}: envFrom entries first, then
 *     env entries (overriding by name, in their order), then the service
 *     link variables no entry overrode;
 *   - `envFrom` is gone;
 *   - `command` and `args` have their $(VAR) references expanded.
 *
 * Everything else in the Pod passes through unchanged, unknown fields
 * included.
 *
 * The kubelet's rules (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables):
 *
 *   - envFrom keys that are not valid variable names (prefix included) are
 *     skipped, with an InvalidEnvironmentVariableNames warning;
 *   - `value` expands $(VAR) from the variables defined before it (envFrom,
 *     earlier env entries) and the service variables; $$ is a literal $;
 *     an undefined $(X) stays as written. Values from valueFrom are never
 *     expanded. command and args expand from the final environment;
 *   - a missing mandatory ConfigMap, Secret or key fails the pod with
 *     CreateContainerConfigError until it appears; a missing optional one
 *     is skipped (the variable is not set) with a warning;
 *   - service links: {SVC}_SERVICE_HOST, {SVC}_SERVICE_PORT,
 *     {SVC}_SERVICE_PORT_{PORTNAME}, {SVC}_PORT, {SVC}_PORT_{port}_{PROTO}
 *     and its _PROTO, _PORT, _ADDR, for the services of the pod's namespace
 *     when spec.enableServiceLinks is true (the default), and for the
 *     `kubernetes` service of namespace `default` always;
 *   - resourceFieldRef falls back to node allocatable for a missing or zero
 *     cpu, memory or ephemeral-storage limit, and rounds up to the divisor.
 *
 * Secret values end up in the resolved Pod (that is its purpose) but never
 * in a log line or a message: messages name objects and keys only.
 */
#ifndef VKC_CORE_ENVRESOLVE_H
#define VKC_CORE_ENVRESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "buf.h"
#include "refs.h"

/* What a ConfigMap or Secret lookup found. */
enum env_lookup {
    ENV_FOUND,
    ENV_NOT_FOUND,     /* the API server says 404 */
    ENV_LOOKUP_FAILED, /* anything else: unreachable, forbidden, timed out */
};

typedef struct env_port {
    const char *name;     /* NULL or "" for an unnamed port */
    int32_t port;
    const char *protocol; /* "TCP", "UDP", "SCTP"; NULL means TCP */
} env_port;

/* A Service as service links need it. */
typedef struct env_service {
    const char *ns, *name;
    const char *cluster_ip; /* "", NULL and "None" (headless) give no variables */
    const env_port *ports;
    size_t n_ports;
} env_service;

typedef struct env_inputs {
    /* The ConfigMap or Secret ns/name as parsed Kubernetes JSON (a Secret's
     * `data` values are base64, as the API serves them). On ENV_FOUND *obj
     * must stay valid until env_resolve returns; each object is asked for
     * once per call. */
    enum env_lookup (*get_configmap)(void *ud, const char *ns, const char *name, yajl_val *obj);
    enum env_lookup (*get_secret)(void *ud, const char *ns, const char *name, yajl_val *obj);
    /* Called once for every object a get_* returned, when the call is done
     * with it. NULL when the objects stay the caller's (a cache). */
    void (*release)(void *ud, yajl_val obj);
    void *ud;

    /* Services to link. Any set will do: those of other namespaces are
     * ignored, and `kubernetes` in `default` is always taken. */
    const env_service *services;
    size_t n_services;

    /* Downward API values the pod JSON does not hold yet. May be empty:
     * status.podIP and status.hostIP are then "". */
    const char *const *pod_ips;
    size_t n_pod_ips;
    const char *const *host_ips;
    size_t n_host_ips;

    /* Node allocatable quantities ("4", "15Gi"), the limit a container
     * without one gets in resourceFieldRef. NULL when unknown: a missing
     * limit then reads as 0. */
    const char *alloc_cpu, *alloc_memory, *alloc_ephemeral_storage;
} env_inputs;

enum env_status {
    ENV_OK,
    ENV_MISSING,     /* a mandatory ConfigMap, Secret or key does not exist:
                        keep the pod Pending, retry when the object appears */
    ENV_UNAVAILABLE, /* a lookup failed: retry later */
    ENV_INVALID,     /* the pod cannot be resolved as written (malformed JSON,
                        unsupported fieldPath, bad quantity): retrying the
                        same pod will not help */
    ENV_NOMEM,
};

/* One problem, fit for an Event on the pod. */
typedef struct env_note {
    const char *reason; /* static: "OptionalConfigMapNotFound", ... */
    const char *kind;   /* static: "ConfigMap", "Secret", or NULL */
    char *ns, *name;    /* the object, NULL when kind is */
    char *message;      /* `configmap "x" not found`, `couldn't find key k in Secret ns/x` */
} env_note;

typedef struct env_result {
    enum env_status status;
    /* ENV_OK: the resolved Pod JSON. Holds secret values: env_result_free
     * clears it. */
    vk_buf pod;
    /* Otherwise, what went wrong. error.reason is the container's waiting
     * reason, "CreateContainerConfigError"; error_event the reason of the
     * Warning event to emit ("MandatorySecretNotFound",
     * "MandatoryConfigMapKeyNotFound", "FailedToReadMandatorySecret", ...;
     * "CreateContainerConfigError" when no object is involved). */
    env_note error;
    const char *error_event;
    /* Warnings, each to become a Warning event: optional objects or keys
     * that are missing ("OptionalConfigMapNotFound",
     * "OptionalSecretKeyNotFound", ...) and skipped envFrom keys
     * ("InvalidEnvironmentVariableNames"). Identical ones appear once. */
    env_note *warnings;
    size_t n_warnings;
} env_result;

/* Resolve the Pod pod_json[0..len) (need not be NUL-terminated). Returns
 * res->status; res is always to be released with env_result_free. */
enum env_status env_resolve(const char *pod_json, size_t len, const env_inputs *in,
                            env_result *res);
/* The same for a Pod already parsed: pod stays the caller's. */
enum env_status env_resolve_tree(yajl_val pod, const env_inputs *in, env_result *res);
void env_result_free(env_result *res);

/* Every Secret, ConfigMap and ServiceAccount pod references, each once:
 * env and envFrom of every container kind, imagePullSecrets, volumes
 * (secret, configMap, projected sources, and the secretRefs of csi,
 * cephfs, cinder, flexVolume, iscsi, rbd, scaleIO, storageos, azureFile),
 * and the pod's service account when a projected serviceAccountToken
 * source asks for its token. Names point into pod (or are static): keep
 * pod alive while using them. 0 with *list malloc'ed (free it; NULL when
 * *n is 0), or -1 when memory ran out. */
int env_pod_refs(yajl_val pod, ref **list, size_t *n);

#endif
