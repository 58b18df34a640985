/* pod.h -- a parsed, read-only view of a Kubernetes Pod JSON document, and
 * helpers to write PodStatus JSON.
 *
 * The view holds what a provider needs to run a pod; everything else stays
 * in the raw document (`json`), which is always there for code that wants
 * more. Strings are NUL-terminated and owned by the view; absent fields are
 * NULL (strings) or 0 (counts). Environment values are final: the core has
 * resolved every valueFrom before the provider sees the pod.
 */
#ifndef VKC_POD_H
#define VKC_POD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct vk_kv {
    const char *name;
    const char *value;
} vk_kv;

typedef struct vk_port {
    const char *name;
    int32_t container_port;
    int32_t host_port;
    const char *protocol; /* "TCP" when absent */
} vk_port;

typedef struct vk_mount {
    const char *name;
    const char *mount_path;
    const char *sub_path;
    bool read_only;
} vk_mount;

/* Requests and limits as written ("500m", "128Mi") and as numbers:
 * CPU in millicores, memory in bytes, -1 when absent or malformed. */
typedef struct vk_resources {
    const char *cpu_request, *cpu_limit, *memory_request, *memory_limit;
    int64_t cpu_request_milli, cpu_limit_milli;
    int64_t memory_request_bytes, memory_limit_bytes;
} vk_resources;

typedef struct vk_container {
    const char *name;
    const char *image;
    const char *image_pull_policy;
    const char *working_dir;
    const char **command;
    size_t n_command;
    const char **args;
    size_t n_args;
    vk_kv *env; /* value NULL when an unresolved valueFrom remained,
                 * "" when the variable has neither value nor valueFrom */
    size_t n_env;
    vk_port *ports;
    size_t n_ports;
    vk_mount *mounts;
    size_t n_mounts;
    vk_resources resources;
    bool tty;
    bool stdin_open;
} vk_container;

typedef struct vk_volume {
    const char *name;
    /* The volume source's key: "emptyDir", "configMap", "secret",
     * "hostPath", "projected", "downwardAPI", "persistentVolumeClaim", ... */
    const char *type;
    /* configMap.name, secret.secretName, hostPath.path,
     * persistentVolumeClaim.claimName; NULL for the others. */
    const char *source;
} vk_volume;

typedef struct vk_pod {
    const char *namespace;
    const char *name;
    const char *uid;
    const char *resource_version;
    const char *node_name;
    const char *restart_policy;      /* "Always" when absent */
    const char *service_account_name;
    const char *hostname;
    const char *phase;               /* status.phase, NULL when absent */
    bool host_network;
    bool deleting;                   /* metadata.deletionTimestamp set */
    int64_t deletion_grace_seconds;  /* -1 when absent */
    vk_kv *labels;
    size_t n_labels;
    vk_kv *annotations;
    size_t n_annotations;
    vk_container *init_containers;
    size_t n_init_containers;
    vk_container *containers;
    size_t n_containers;
    vk_volume *volumes;
    size_t n_volumes;
    const char **image_pull_secrets;
    size_t n_image_pull_secrets;
    /* The document parsed, NUL-terminated. */
    const char *json;
    size_t json_len;
} vk_pod;

/* Parse a Pod. NULL on failure with a message in err (errlen bytes; err
 * may be NULL): invalid JSON, no metadata.name, no non-empty
 * spec.containers, or a container without a name. Optional fields of the
 * wrong type read as absent. */
vk_pod *vk_pod_parse(const char *json, size_t len, char *err, size_t errlen);
void vk_pod_free(vk_pod *pod);
/* The container (or init container) of that name, or NULL. */
const vk_container *vk_pod_container(const vk_pod *pod, const char *name);
/* "default/web-1" style key of namespace and name, into buf of size n. */
void vk_pod_key(const vk_pod *pod, char *buf, size_t n);

/* Kubernetes quantities: "100m", "2", "1.5", "128Mi", "1G", "1e3".
 * vk_quantity_milli gives value*1000 (CPU), vk_quantity_value the value
 * (bytes), both rounded up (away from zero) as Kubernetes does. 0 on
 * success, -1 for a malformed quantity or one past int64. */
int vk_quantity_milli(const char *q, int64_t *out);
int vk_quantity_value(const char *q, int64_t *out);

/* ---- PodStatus JSON -------------------------------------------------- */

enum vk_container_state { VK_STATE_WAITING, VK_STATE_RUNNING, VK_STATE_TERMINATED };

/* How a container ended: lastState.terminated of a restarted container. */
typedef struct vk_terminated {
    int32_t exit_code;
    const char *reason;
    const char *message;
    int64_t started_at;          /* Unix seconds, 0 = absent */
    int64_t finished_at;
    const char *container_id;
} vk_terminated;

typedef struct vk_container_status {
    const char *name;
    const char *image;
    const char *image_id;
    const char *container_id;    /* "mock://..." style */
    enum vk_container_state state;
    const char *reason;          /* waiting/terminated reason */
    const char *message;
    int32_t exit_code;           /* terminated only */
    int64_t started_at;          /* Unix seconds, 0 = absent */
    int64_t finished_at;         /* terminated only */
    int32_t restart_count;
    bool ready;
    bool started;
    /* The previous instance's end, for a restarted container; NULL: none,
     * and lastState is left out. */
    const vk_terminated *last_terminated;
} vk_container_status;

typedef struct vk_pod_status {
    const char *phase;           /* Pending, Running, Succeeded, Failed, Unknown */
    const char *reason;
    const char *message;
    const char *pod_ip;
    const char *host_ip;
    int64_t start_time;          /* Unix seconds, 0 = absent */
    const vk_container_status *init_containers;
    size_t n_init_containers;
    const vk_container_status *containers;
    size_t n_containers;
} vk_pod_status;

/* Write the PodStatus JSON into out (appended). The conditions PodScheduled,
 * Initialized, ContainersReady and Ready are derived from the container
 * states the way the kubelet derives them, with lastTransitionTime `now`
 * (Unix seconds). 0, or -1 (out unchanged) when memory ran out. */
int vk_pod_status_json(const vk_pod_status *st, int64_t now, vk_buf *out);

/* Replace (or add) the "status" member of a Pod JSON document with
 * status_json, appending the result to out; every other member, known or
 * not, is kept as it was. Neither input needs a terminating NUL. 0, or -1
 * (out unchanged) when either is not a JSON object or memory ran out. */
int vk_pod_with_status(const char *pod_json, size_t pod_len,
                       const char *status_json, size_t status_len, vk_buf *out);

/* RFC 3339 "2026-11-28T09:00:00Z" for Unix seconds, into buf (>= 21). */
void vk_rfc3339(int64_t unix_seconds, char *buf, size_t n);

#endif
