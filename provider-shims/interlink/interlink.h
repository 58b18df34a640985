/* interlink.h -- vkc-provider-interlink: what its files share.
 *
 * The shim speaks the interLink plugin REST API (v0.4 and later: /create
 * takes one pod, not a list) to an existing plugin and serves the vkc
 * Provider service on top of it. interLink plugins are polled, so a poller
 * thread turns /status answers into pushed status events.
 *
 * One mutex (pods_lock) guards the pod table. HTTP calls to the plugin are
 * never made with it held: callers copy what they need, unlock, call, and
 * look the pod up again by uid afterwards.
 */
#ifndef VKC_INTERLINK_H
#define VKC_INTERLINK_H

#include <stdbool.h>
#include <stdint.h>

#include <yajl/yajl_tree.h>

#include "log.h"
#include "vkc-provider.h"

#define IL_VERSION "0.1.0"

#define MS_PER_S 1000LL

/* Answers of the plugin held in memory: /status of a batch of pods, error
 * bodies, CreateStruct. Log bodies stream and have no such bound. */
#define IL_RESPONSE_MAX (16u << 20)
/* Pods per /status request, so that no request grows with the node. */
#define IL_STATUS_BATCH 50

typedef struct il_config {
    const char *plugin_url;     /* no trailing '/'; "http://localhost" with a socket */
    const char *plugin_socket;  /* unix socket path, or NULL for TCP */
    int64_t poll_interval_ms;
    int64_t timeout_ms;         /* every plugin call but log streams */
    const char *cpu, *memory;   /* node capacity as given */
    int64_t max_pods;
    const char *state_dir;
    bool no_projected;          /* leave projected volumes out, as interLink can */
} il_config;

extern il_config config;
extern vk_provider *provider;

int64_t il_now_ms(void);      /* CLOCK_MONOTONIC */
int64_t il_wall_s(void);      /* CLOCK_REALTIME */

/* ---- plugin.c: HTTP to the plugin ------------------------------------- */

/* Polled during a call; true aborts it. */
typedef bool (*il_cancel_fn)(void *ud);

/* One request with a JSON body (NULL: none), its whole answer in resp
 * (at most IL_RESPONSE_MAX bytes), within config.timeout_ms. VK_OK for an
 * HTTP 200; otherwise a gRPC code and a message for users in st: NOT_FOUND
 * for 404, UNAVAILABLE when the plugin is unreachable or answers 5xx,
 * DEADLINE_EXCEEDED on timeout, CANCELLED when cancel said so. *unknown
 * (may be NULL) is set when the call failed although the plugin may have
 * acted on it: the request went out and no error answer came back. */
int plugin_call(const char *method, const char *path, const char *body, size_t len,
                vk_buf *resp, vk_status *st, il_cancel_fn cancel, void *ud, bool *unknown);

/* What users read of a plugin's answer: FastAPI's {"detail": ...} or a
 * similar member when it is JSON, else its text without markup, whitespace
 * folded, cut short. Into out (size n). */
void plugin_excerpt(const vk_buf *body, char *out, size_t n);

/* Receives a streamed answer: 0 to go on, 1 to stop early (success), -1 to
 * abort (the reader is gone). */
typedef int (*il_sink_fn)(void *ud, const char *data, size_t len);

/* Like plugin_call, but a 200 answer's body goes to sink as it arrives,
 * for as long as it lasts. Backpressure: a sink that blocks stalls the
 * transfer. idle_timeout: fail when the plugin sends nothing for
 * config.timeout_ms (time spent in the sink does not count). */
int plugin_stream(const char *method, const char *path, const char *body, size_t len,
                  bool idle_timeout, il_sink_fn sink, il_cancel_fn cancel, void *ud,
                  vk_status *st);

/* ---- pods.c: the pod table and the lifecycle callbacks ------------------- */

enum il_phase { IL_PENDING, IL_RUNNING, IL_SUCCEEDED, IL_FAILED };

typedef struct il_pod {
    struct il_pod *next;
    vk_pod *pod;              /* owned: the document as created, or updated */
    char *job_id;             /* the plugin's PodJID; NULL when it gave none */
    char *status;             /* PodStatus JSON last reported to the core */
    enum il_phase phase;
    int64_t created_s;        /* startTime */
    int64_t changed_s;        /* last status change: condition times */
    bool accepted;            /* /create succeeded */
    bool busy;                /* a /create or /delete is in flight */
} il_pod;

void pods_lock(void);
void pods_unlock(void);
/* With the lock held. */
il_pod *pods_first(void);
il_pod *pods_by_uid(const char *uid);
il_pod *pods_by_name(const char *ns, const char *name);
/* Replace p's status with status_json (owned afterwards) and tell the core.
 * With the lock held. */
void pods_set_status(il_pod *p, char *status_json, enum il_phase phase);
/* Take over a pod read from the state file, status set (the table owns it
 * then), and report its status to the core. */
void pods_restore(il_pod *p);
void pods_free(void);

int il_create_pod(vk_ctx *ctx, const vk_pod *pod);
int il_update_pod(vk_ctx *ctx, const vk_pod *pod);
int il_delete_pod(vk_ctx *ctx, const vk_pod *pod);
int il_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
int il_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
int il_get_pods(vk_ctx *ctx, vk_pod_list *out);

/* ---- volumes.c: the /create body ------------------------------------------ */

/* Append the RetrievedPodData document for pod to out: the pod, and per
 * container the ConfigMaps, Secrets and projected volumes it mounts,
 * fetched through the core. A gRPC code; st says why on failure. */
int create_body(const vk_pod *pod, vk_buf *out, vk_status *st);

/* ---- status.c: plugin PodStatus to Kubernetes PodStatus ------------------ */

/* The PodStatus JSON of p from the plugin's PodStatus object (NULL: no
 * report yet), derived the way interLink's virtual kubelet does, into out.
 * *phase gets the phase. Condition times are p->changed_s. 0, or -1 when
 * memory ran out. With the lock held. */
int status_build(const il_pod *p, yajl_val report, vk_buf *out, enum il_phase *phase);
/* Parse an RFC 3339 time; 0 when absent or malformed. */
int64_t status_parse_time(const char *s);

/* ---- poller.c: /status polling and plugin health --------------------------- */

int poller_start(void);
/* Poll soon: a pod was created. */
void poller_kick(void);
void poller_stop(void);
/* Plugin health for the node's Ready condition: true when the last
 * /status call succeeded; message (size n) says why not. */
bool poller_healthy(char *message, size_t n);

/* ---- state.c: the pod table on disk ----------------------------------------- */

/* Create the state directory and load its pods. 0, or -1 (logged). */
int state_load(void);
/* Write the table. Serialised, atomic (rename); failures are logged. */
void state_save(void);

/* ---- logs.c, node.c --------------------------------------------------------- */

int il_container_logs(vk_ctx *ctx, const char *ns, const char *pod,
                      const char *container, const vk_log_options *opt, vk_stream *out);

void node_init(void);
int il_get_node(vk_ctx *ctx, vk_node *node);

#endif
