/* cri.h -- vkc-provider-cri: what its files share.
 *
 * Every pod has a worker thread (worker.c) that owns its lifecycle on the
 * runtime: sandbox, images, data volumes, init containers, containers,
 * restarts, and at the end the teardown. One mutex (cri_lock) guards the
 * pod table and what the workers publish about their pods; nothing blocks
 * on the runtime, the core or a stream while holding it: readers copy what
 * they need and unlock. The probe threads (probes.c) take it only to pick
 * due probes and to record results.
 */
#ifndef VKC_CRI_H
#define VKC_CRI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <yajl/yajl_tree.h>

#include "base64.h"
#include "cri.pb-c.h"
#include "log.h"
#include "vkc-provider.h"

#define CRI_PROVIDER_VERSION "0.1.0"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

/* Labels put on every sandbox and container this provider creates. The
 * value of LABEL_MANAGED names the provider instance (config.instance), so
 * that two providers sharing a runtime never take each other's pods for
 * orphans. */
#define LABEL_MANAGED "vkc.io/managed-by"
#define LABEL_POD_NAME "io.kubernetes.pod.name"
#define LABEL_POD_NAMESPACE "io.kubernetes.pod.namespace"
#define LABEL_POD_UID "io.kubernetes.pod.uid"
#define LABEL_CONTAINER_NAME "io.kubernetes.container.name"

/* The CRI API version the runtime is spoken to in (--cri-api). */
enum cri_api { CRI_API_AUTO, CRI_API_V1, CRI_API_V1ALPHA2 };

typedef struct cri_config {
    const char *endpoint;       /* unix:///run/containerd/containerd.sock */
    enum cri_api cri_api;       /* auto: v1, or v1alpha2 when v1 is missing */
    const char *root_dir;       /* /var/lib/vkc-cri */
    const char *sandbox_image;  /* NULL: the runtime's own */
    const char *cgroup_root;    /* parent of pod cgroups, cgroupfs syntax */
    const char *cluster_dns;    /* NULL: none */
    const char *cluster_domain;
    const char *node_ip;        /* NULL: the first non-loopback address */
    char instance[32];          /* "vkc-cri-" and a hash of root_dir */
    int64_t max_pods;
    int64_t volume_sync_s;      /* data volumes are refreshed this often */
    int64_t started_ns;
} cri_config;

extern cri_config config;
extern vk_provider *provider;

int64_t cri_now_ns(void);

/* ---- runtime.c: the CRI client ----------------------------------------- */

/* A method of the runtime's two services, as rt_call takes it: rt_call
 * puts the package of the API version in use in front
 * (/runtime.v1.RuntimeService/Version, /runtime.v1alpha2.ImageService/...).
 * The messages are the same in both versions for every field cri.proto
 * has, so the generated runtime.v1 code serves both. */
#define RT(m) "RuntimeService/" m
#define IMG(m) "ImageService/" m

/* Deadlines of runtime calls, ms. */
#define RT_QUICK_MS 10000       /* status, list, start, remove */
#define RT_CREATE_MS 120000     /* sandbox and container creation */
#define RT_PULL_MS 600000       /* one image pull */

/* 0 or -1 (logged). */
int rt_open(const char *endpoint);
void rt_close(void);
/* Ask the runtime for its name and version, until it once answered. In
 * auto mode this also picks the API version, as the kubelet does: v1, or
 * v1alpha2 when the runtime answers v1 with UNIMPLEMENTED. */
void rt_fetch_version(void);
bool rt_have_version(void);
/* "containerd" and "1.6.20" ("cri" and "unknown" before the runtime
 * answered): never a runtime call, so callers may hold the lock. */
const char *rt_name(void);
const char *rt_version(void);
/* One unary call: the gRPC status code; *resp on VK_OK (free it with
 * protobuf_c_message_free_unpacked); err gets a one-line message. */
int rt_call(const char *method, const ProtobufCMessage *req,
            const ProtobufCMessageDescriptor *desc, int timeout_ms,
            void *resp, char *err, size_t errlen);
/* StopContainer with a grace period, then nothing: 0 or -1. */
int rt_stop_container(const char *id, int64_t grace_s);
/* Stop n containers at once, each with the whole grace period, as the
 * kubelet kills a pod's containers in parallel. */
void rt_stop_containers(char (*ids)[80], size_t n, int64_t grace_s);
int rt_remove_container(const char *id);
/* Stop a sandbox and every container in it. */
void rt_stop_sandbox(const char *id);
/* Stop and remove a sandbox with everything in it. 0 or -1. */
int rt_remove_sandbox(const char *id);
/* Sandboxes of one pod uid (every one when uid is NULL) made by this
 * provider, or by anyone when mine is false; free with
 * protobuf_c_message_free_unpacked. NULL on failure. */
Runtime__V1__ListPodSandboxResponse *rt_list_sandboxes(const char *uid, bool mine);

/* ---- map helpers for the generated map-entry types ---------------------- */

/* A growable array of map entries of one generated type: every CRI map
 * entry has the layout {base, key, value}, which is what this relies on. */
typedef struct kv_list {
    ProtobufCMessage **items;
    size_t n, cap;
    const ProtobufCMessageDescriptor *desc;
} kv_list;

/* 0, or -1 when memory ran out. Keys and values are copied. */
int kv_add(kv_list *l, const char *key, const char *value);
void kv_free(kv_list *l);

/* ---- pods.c: the pod table and the lifecycle callbacks ---------------- */

enum ctr_phase {
    CTR_NONE,       /* nothing created yet, or waiting to (re)start */
    CTR_CREATED,
    CTR_RUNNING,
    CTR_EXITED,
};

/* ---- probes.c: liveness, readiness and startup probes -------------------- */

enum probe_kind { PROBE_STARTUP, PROBE_LIVENESS, PROBE_READINESS, PROBE_KINDS };
enum probe_result { PROBE_UNKNOWN, PROBE_SUCCESS, PROBE_FAILURE, PROBE_ERROR };

/* One probe of one container, as the scheduler and the results see it
 * (lock held). Results belong to the container ctr_id; a new container
 * starts them over. */
typedef struct probe_state {
    char ctr_id[80];
    enum probe_result result;   /* as reported, after the thresholds */
    enum probe_result last;     /* of the last run */
    int32_t run;                /* runs in a row with that result */
    bool on_hold;               /* failed for good: until a new container */
    bool busy;                  /* queued or running */
    bool refused;               /* a probe this provider cannot run: told once */
    int64_t next_ns;
} probe_state;

/* How a container ended: its lastState once it restarted. */
typedef struct ctr_end {
    char id[80];
    int32_t exit_code;
    int64_t started_ns, finished_ns;
    char reason[48];
    char message[4400];
} ctr_end;

typedef struct cri_ctr {
    const vk_container *spec;   /* into the owning pod's view */
    bool init;
    char id[80];                /* current runtime container, "" none */
    char prev_id[80];           /* the one before the last restart */
    uint32_t attempt;           /* of the last one created: the restart count */
    bool created;               /* one was ever created (attempt is valid) */
    int64_t prev_attempt;       /* of the one before, for its log; -1 none */
    enum ctr_phase phase;
    int64_t started_ns, finished_ns;
    int32_t exit_code;
    char reason[48];            /* the runtime's, or ours while waiting */
    /* The runtime's, and the termination message after an exit (up to
     * 4 KiB, as the kubelet reads it). */
    char message[4400];
    char image_ref[256];
    bool exit_seen;             /* the exit of id was acted upon */
    bool replace;               /* its image changed: start it anew */
    bool has_last;
    ctr_end last;               /* the previous container's end */
    uint32_t failure;           /* hash of the last start failure, logged once */
    /* restart.c */
    int64_t backoff_s;          /* 0 no failure yet, -1 one, else the delay */
    int64_t retry_at_ns;        /* earliest next start, 0: now */
    /* probes.c */
    uint8_t probes;             /* 1 << kind for each probe the spec has */
    probe_state probe[PROBE_KINDS];
    int unhealthy;              /* 1 + the kind of a failed liveness or
                                 * startup probe: the worker kills it */
} cri_ctr;

struct cri_volume;

typedef struct cri_pod {
    struct cri_pod *next;
    uint64_t serial;            /* tells incarnations apart once freed */
    char *ns, *name, *uid;
    vk_pod *pod;                /* owned: spec as created/updated */
    yajl_val spec;              /* pod->json parsed, for what the view lacks */
    vk_pod *update;             /* an UpdatePod the worker has yet to apply */
    char dir[256];              /* root_dir/pods/<uid> */
    char sandbox_id[80];
    uint32_t sandbox_attempt;   /* of the sandbox to create next */
    char pod_ip[64];
    int64_t start_s;
    int64_t sandbox_retry_ns;
    int64_t sandbox_backoff_s;
    const char *phase;          /* sticky once Succeeded or Failed */
    const char *reason;         /* of a phase the pod was put in (deadline) */
    const char *message;
    cri_ctr *ctrs;              /* init containers first */
    size_t n_ctrs;
    struct cri_volume *vols;    /* volumes.c: the worker's alone */
    size_t n_vols;
    /* status.c */
    char *status_json;          /* last reported, NUL-terminated */
    char *status_probe;         /* the same built with no times in it */
    int64_t changed_s;
    /* the worker */
    pthread_cond_t wake;
    bool deleting;              /* DeletePod ran: tear down, then free */
    bool kick;
} cri_pod;

void cri_lock(void);
void cri_unlock(void);
/* With the lock held: the live (not deleting) pod of that name, or NULL. */
cri_pod *pods_find(const char *ns, const char *name);
/* Iterate over live pods: p = pods_next(NULL); p; p = pods_next(p). */
cri_pod *pods_next(cri_pod *p);
/* With the lock held: the live pod of that serial, or NULL. */
cri_pod *pods_by_serial(uint64_t serial);
cri_ctr *pod_ctr(cri_pod *p, const char *name);
/* The pod's directory for container logs: dir/<name>/<attempt>.log. */
void pod_log_path(const cri_pod *p, const char *ctr, uint32_t attempt, char *buf, size_t n);
/* Beside it, the host file behind the container's terminationMessagePath. */
void pod_termination_path(const cri_pod *p, const char *ctr, uint32_t attempt, char *buf,
                          size_t n);

/* Adopt the pods this provider ran before a restart. */
void pods_restore(void);
/* Stop every worker (pods keep running on the runtime) and free. false
 * when a worker stuck in a long runtime call (an image pull) did not stop
 * in time: the pods, the provider and the channel must then stay, since
 * that worker still uses them until the process exits. */
bool pods_shutdown(void);

int cri_create_pod(vk_ctx *ctx, const vk_pod *pod);
int cri_update_pod(vk_ctx *ctx, const vk_pod *pod);
int cri_delete_pod(vk_ctx *ctx, const vk_pod *pod);
int cri_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
int cri_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
int cri_get_pods(vk_ctx *ctx, vk_pod_list *out);

/* ---- worker.c: one pod's life on the runtime ------------------------------ */

/* The worker thread; it runs with the lock held except around runtime
 * calls. It returns when the provider stops, or after the teardown of a
 * deleted pod, which it then unlinks and frees (pods_release). */
void *worker_main(void *pod);
/* Fill a pod's containers from the runtime after a provider restart. */
void worker_adopt(cri_pod *p);
/* Remove sandboxes of this provider that no pod directory accounts for. */
void worker_remove_orphans(void);
/* rm -rf, staying on the file system and never following links. */
void worker_remove_tree(const char *path);

/* Lock held: true once pods_shutdown began. */
bool pods_stopping(void);
/* Lock held: wait on a pod's wake-up for at most ms. */
void pods_wait(cri_pod *p, int64_t ms);
/* Lock held: unlink and free a pod whose teardown finished. */
void pods_release(cri_pod *p);
/* Lock held: the calling worker is about to return. */
void pods_worker_done(void);

/* ---- spec.c: pod -> CRI configurations ---------------------------------- */

/* What a built configuration allocated; spec_arena_free releases it all. */
typedef struct spec_arena {
    void *head;
} spec_arena;

void spec_arena_free(spec_arena *a);
/* The sandbox config of a pod, allocated in a. 0, or -1 with err. */
int spec_sandbox(const cri_pod *p, Runtime__V1__PodSandboxConfig *cfg, spec_arena *a,
                 char *err, size_t errlen);
/* The config of attempt `attempt` of container c, allocated in a. 0, or -1
 * with err (CreateContainerConfigError material). */
int spec_container(const cri_pod *p, const cri_ctr *c, uint32_t attempt,
                   Runtime__V1__ContainerConfig *cfg, spec_arena *a,
                   char *err, size_t errlen);
/* Seconds a pod's containers get between SIGTERM and SIGKILL. */
int64_t spec_grace_seconds(const cri_pod *p);
/* The container's JSON object in the pod spec (init or regular), or NULL. */
yajl_val spec_container_json(const cri_pod *p, const char *name);

/* ---- images.c ------------------------------------------------------------ */

/* Make the image of c present as its pull policy says. 0, or -1 with the
 * kubelet's waiting reason (ErrImagePull, ErrImageNeverPull) and a message. */
int images_ensure(const cri_pod *p, const vk_container *c, char *reason, size_t rlen,
                  char *msg, size_t mlen);

/* ---- restart.c ------------------------------------------------------------ */

/* Whether an exited container runs again under the pod's policy. */
bool restart_wanted(const cri_pod *p, const cri_ctr *c);
/* After c exited: set its back-off (the kubelet's 10 s doubling to 5 min,
 * reset after 10 min of running) and when it may start again. */
void restart_schedule(cri_ctr *c, int64_t now_ns);
/* After a failed start (image, create): back off the same way. */
void restart_failed_start(cri_ctr *c, int64_t now_ns);
/* After a CreateContainerConfigError (a volume's object is missing): try
 * again soon, whatever the back-off, as the kubelet's pod sync does. */
void restart_config_retry(cri_ctr *c, int64_t now_ns);

/* ---- status.c -------------------------------------------------------------- */

/* With the lock held: rebuild the pod's PodStatus and, when it changed,
 * remember it and push it to the core. */
void status_update(cri_pod *p);
/* The pod's phase as the kubelet computes it (lock held). */
const char *status_phase(const cri_pod *p);

/* ---- termination.c: how a container ended --------------------------------- */

/* The container's termination message (the file behind
 * terminationMessagePath, or with FallbackToLogsOnError the end of its log
 * after a failure), at most 4 KiB, appended to msg as the kubelet does
 * ("runtime message: file content"). Lock held: local files only. */
void termination_message(const cri_pod *p, const char *ctr, uint32_t attempt,
                         int32_t exit_code, const char *reason, char *msg, size_t n);
/* true once the pod ran longer than its activeDeadlineSeconds. */
bool termination_deadline_passed(const cri_pod *p, int64_t now_ns);

/* ---- probes.c ---------------------------------------------------------------- */

/* The scheduler and its runners; probes_stop is false when a runner stuck
 * in a probe did not end in time (see pods_shutdown). */
int probes_start(void);
bool probes_stop(void);
/* Which probes a container's spec has (1 << kind each). */
uint8_t probes_defined(const cri_pod *p, const char *ctr);
/* Lock held: what the probes say of a running container. */
bool probes_started(const cri_ctr *c);
bool probes_ready(const cri_ctr *c);
/* The grace period of a kill for a failed probe of that kind. */
int64_t probes_grace_seconds(const cri_pod *p, const cri_ctr *c, int kind);

/* ---- probe_run.c: one probe run ------------------------------------------------- */

typedef struct probe_spec {
    enum { PROBE_EXEC, PROBE_HTTP, PROBE_TCP } how;
    char **command;             /* exec */
    size_t n_command;
    char *host;                 /* http, tcp: "" the pod's IP */
    int32_t port;
    char *path;                 /* http */
    bool https;                 /* http: scheme HTTPS */
    vk_kv *headers;
    size_t n_headers;
    int64_t initial_delay_s, period_s, timeout_s;
    int32_t success_threshold, failure_threshold;
} probe_spec;

/* Read a probe of a container's JSON. 0, or -1 with err for a probe this
 * provider cannot run (gRPC, a port name the container lacks). */
int probe_parse(yajl_val probe, const vk_container *c, probe_spec *out, char *err, size_t errlen);
void probe_spec_free(probe_spec *s);
/* Run it against container ctr_id of a pod at pod_ip; out gets what a
 * failure says (the kubelet's wording). PROBE_SUCCESS, PROBE_FAILURE, or
 * PROBE_ERROR when the probe could not run (its result is dropped). */
enum probe_result probe_run(const probe_spec *s, const char *ctr_id, const char *pod_ip,
                            char *out, size_t n);

/* ---- atomic_writer.c, payload.c: data volume content --------------- */


#define PAYLOAD_MAX_BYTES (16u << 20)   /* per volume */

typedef struct vol_file {
    char *path;                 /* relative, '/'-separated */
    char *data;
    size_t len;
    mode_t mode;
} vol_file;

typedef struct vol_payload {
    vol_file *files;
    size_t n, cap;
    size_t bytes;
} vol_payload;

/* A path a volume file may have: relative, no "." or ".." parts, not
 * starting with ".." (the writer's own names). */
bool payload_path_ok(const char *path);
/* Add (or replace) a file; data is copied. 0, or -1 for a bad path, too
 * much content or no memory. */
int payload_add(vol_payload *pl, const char *path, const void *data, size_t len, mode_t mode);
/* Free, wiping the content first. */
void payload_free(vol_payload *pl);
/* A file mode field (decimal in JSON, 0644 is 420), def when absent. */
mode_t payload_mode(yajl_val v, mode_t def);
/* The keys of a ConfigMap or Secret obj (NULL: absent and optional), all or
 * as items select them, with mode unless an item says otherwise. 0, or -1
 * with the kubelet's message in err. */
int payload_keys(vol_payload *pl, yajl_val obj, bool secret, yajl_val items, mode_t mode,
                 bool optional, char *err, size_t errlen);

/* What limits a container that sets none gets: the node's. */
typedef struct downward_node {
    int64_t cpu_milli, memory_bytes, storage_bytes;
} downward_node;

/* Downward API items (fieldRef, resourceFieldRef) of Pod document pod. */
int payload_downward(vol_payload *pl, yajl_val items, mode_t mode, yajl_val pod,
                     const downward_node *node, char *err, size_t errlen);

/* Make dir hold exactly the payload, switched atomically. 1 written, 0 it
 * already did, -1 with err. */
int aw_write(const char *dir, const vol_payload *pl, char *err, size_t errlen);
/* true when aw_write wrote dir before. */
bool aw_written(const char *dir);

/* ---- volumes.c: the pod's data volumes, on the worker thread, unlocked ------- */

/* configMap, secret, downwardAPI or projected. */
bool volume_is_data(const char *type);
/* Where a volume of the pod lives on the host. */
void volume_dir(const cri_pod *p, const char *name, char *buf, size_t n);
/* Write the data volumes c mounts that are not written yet. 0, or -1 with
 * a message for CreateContainerConfigError. */
int volumes_setup(cri_pod *p, const vk_container *c, char *err, size_t errlen);
/* Refresh the written volumes whose time came. */
void volumes_sync(cri_pod *p);
void volumes_free(cri_pod *p);
/* Unmount the tmpfs volumes of a pod directory before it is removed. */
void volumes_unmount(const char *pod_dir);

/* ---- pullcreds.c: imagePullSecrets -------------------------------------------- */

typedef struct pull_cred {
    char *key;                  /* registry[:port][/path], normalised */
    char *username, *password, *auth, *identity_token, *registry_token;
    size_t seq;                 /* order of addition */
} pull_cred;

typedef struct pull_keyring {
    pull_cred *items;
    size_t n, cap;
} pull_keyring;

/* The entries of a docker config: {"auths": {...}} (.dockerconfigjson), or
 * the bare map when dockercfg (.dockercfg). 0, or -1 when malformed. */
int keyring_add_config(pull_keyring *k, const char *json, size_t len, bool dockercfg);
/* The same from a Secret of type kubernetes.io/dockerconfigjson or
 * kubernetes.io/dockercfg. -1 for other types. */
int keyring_add_secret(pull_keyring *k, const char *secret_json, size_t len);
/* The credentials to try for image, most specific first, at most max. */
size_t keyring_lookup(const pull_keyring *k, const char *image, const pull_cred **out,
                      size_t max);
/* Free, wiping the secrets. */
void keyring_free(pull_keyring *k);

/* ---- logs.c, exec.c, stats.c, node.c -------------------------------------- */

int cri_container_logs(vk_ctx *ctx, const char *ns, const char *pod,
                       const char *container, const vk_log_options *opt, vk_stream *out);
/* The content of the last lines of a CRI log file, at most max_lines lines
 * and max_bytes bytes, into out. */
void logs_tail(const char *path, size_t max_lines, size_t max_bytes, vk_buf *out);
int cri_exec(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code);
int cri_attach(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code);
int cri_port_forward(vk_ctx *ctx, const char *ns, const char *pod, int32_t port,
                     vk_stream *io);
int cri_stats_summary(vk_ctx *ctx, vk_buf *out);
int cri_metrics_resource(vk_ctx *ctx, vk_buf *out);

void node_init(void);
const char *node_ip(void);
int64_t node_memory_bytes(void);
int64_t node_cpus(void);
int cri_get_node(vk_ctx *ctx, vk_node *node);
/* Ask the runtime for its conditions; notify the core when they changed. */
void node_check(void);

/* ---- stream.c: the runtime's streaming server, as a SPDY client ---------- */

/* The channels of a session: exactly those of the CRI request that gave
 * its URL, which the runtime's server waits for. */
typedef struct stream_opts {
    bool in, out, err, tty;
    uint32_t width, height; /* initial terminal size; 0: none */
} stream_opts;

/* Run one exec/attach session at url between the runtime and io. *exit_code
 * gets the command's exit code, or -1 when the runtime did not say.
 * VK_OK, or an error status (message through ctx). */
int stream_session(vk_ctx *ctx, const char *url, const stream_opts *o, vk_stream *io,
                   int *exit_code);
/* Forward one connection to port through the port-forward server at url
 * (of CRI PortForward) between the pod and io, until either side ends it.
 * VK_OK, UNAVAILABLE when the runtime could not connect to the port, or
 * another error status (message through ctx). */
int stream_port_forward(vk_ctx *ctx, const char *url, int32_t port, vk_stream *io);

#endif
