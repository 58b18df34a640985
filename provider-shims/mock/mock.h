/* mock.h -- the in-memory provider: what its files share.
 *
 * One mutex (pods_lock) guards the pod store. Streams are never written
 * while it is held: callers copy what they need out, unlock, then write.
 */
#ifndef VKC_MOCK_H
#define VKC_MOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "vkc-provider.h"

#define MOCK_VERSION "0.1.0"

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

/* Annotations a pod may carry to script its containers. */
#define MOCK_EXIT_CODE_ANNOTATION "mock.vkc.io/exit-code"
#define MOCK_RUN_MS_ANNOTATION "mock.vkc.io/run-ms"

typedef struct mock_config {
    const char *cpu, *memory;   /* node capacity as given */
    int64_t memory_bytes;
    int64_t max_pods;
    int64_t start_delay_ms;     /* Pending -> Running */
    int64_t log_interval_ms;    /* one synthetic log line per container per interval */
    int64_t started_ns;         /* process start: the node's startTime */
} mock_config;

extern mock_config config;
extern vk_provider *provider;

int64_t mock_now_ns(void);
/* A whole decimal number within [lo, hi]: 0, or -1. */
int mock_parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out);
/* Make the ticker re-plan: a pod got a new deadline. Async-signal-safe. */
void mock_wake(void);

/* ---- pods.c ------------------------------------------------------------ */

typedef struct mock_ctr {
    const vk_container *spec;   /* points into the owning pod's view */
    bool init;
    enum vk_container_state state;
    int32_t exit_code;
    int32_t restarts;
    int64_t started_ns, finished_ns;           /* this instance, 0 = not yet */
    int64_t prev_started_ns, prev_finished_ns; /* the one before a restart */
    char id[32];                               /* containerID */
} mock_ctr;

typedef struct mock_pod {
    struct mock_pod *hash_next;
    struct mock_pod *prev, *next;   /* every pod, in creation order */
    char *ns, *name;
    vk_pod *pod;                    /* owned: spec and JSON as created/updated */
    const char *phase;
    char ip[16];
    int64_t created_ns;
    int64_t due_ns;                 /* next scripted transition, 0 = none */
    int64_t changed_s;              /* last transition, for condition times */
    int exit_code;                  /* MOCK_EXIT_CODE_ANNOTATION, -1 = none */
    int64_t run_ms;
    mock_ctr *ctrs;                 /* init containers first */
    size_t n_ctrs;
} mock_pod;

void pods_lock(void);
void pods_unlock(void);
/* With the lock held: the pod, brought up to date, or NULL. */
mock_pod *pods_find(const char *ns, const char *name);
mock_pod *pods_first(void);
mock_ctr *pod_ctr(mock_pod *mp, const char *name);
const char *pod_uid(const mock_pod *mp); /* "" when the pod has none */
/* Apply the transitions that are due; the earliest future one, or 0. */
int64_t pods_tick(int64_t now_ns);
void pods_free(void);

int mock_create_pod(vk_ctx *ctx, const vk_pod *pod);
int mock_update_pod(vk_ctx *ctx, const vk_pod *pod);
int mock_delete_pod(vk_ctx *ctx, const vk_pod *pod);
int mock_get_pod(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
int mock_get_pod_status(vk_ctx *ctx, const char *ns, const char *name, vk_buf *out);
int mock_get_pods(vk_ctx *ctx, vk_pod_list *out);

/* ---- logs.c, exec.c, stats.c, node.c ------------------------------------ */

int mock_container_logs(vk_ctx *ctx, const char *ns, const char *pod,
                        const char *container, const vk_log_options *opt,
                        vk_stream *out);
int mock_exec(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code);
int mock_attach(vk_ctx *ctx, const vk_exec_request *req, vk_stream *io, int *exit_code);
int mock_port_forward(vk_ctx *ctx, const char *ns, const char *pod, int32_t port,
                      vk_stream *io);
int mock_stats_summary(vk_ctx *ctx, vk_buf *out);
int mock_metrics_resource(vk_ctx *ctx, vk_buf *out);

void node_init(void);
const char *node_host_ip(void);
int mock_get_node(vk_ctx *ctx, vk_node *node);

/* ---- faults.c ------------------------------------------------------------ */

typedef struct mock_condition {
    char type[64];
    char status[8];
} mock_condition;

/* Load the fault file (path NULL: none). 0, or -1 with every error logged
 * by line number. */
int faults_load(const char *path);
/* SIGHUP: load the same file again; a broken file keeps the old rules. */
void faults_reload(void);
void faults_free(void);
/* Copy the node condition overrides out; returns how many. */
size_t faults_conditions(mock_condition *out, size_t max);
int mock_before_call(vk_ctx *ctx, const char *method);
/* log-silence-after: lines a log sends before it goes quiet, -1: none. */
int64_t faults_log_silence_after(void);
/* Block until the caller cancels the call (or its deadline passes). */
void faults_hang(vk_ctx *ctx);

#endif
