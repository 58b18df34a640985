/* conformance.h -- vkc-conformance: what its files share.
 *
 * The suite plays vkc-core against one provider: it calls every RPC of
 * proto/provider.proto through core/provider_client.h and serves the Core
 * service the provider calls back. Each check ends as one result line.
 * Every call carries a deadline: unary calls the client's, streams a guard
 * (below) that cancels them, so a provider that hangs fails checks instead
 * of stalling the run.
 */
#ifndef VKC_CONFORMANCE_H
#define VKC_CONFORMANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>

#include "../../core/provider_client.h"
#include "buf.h"
#include "json.h"

/* Names of the objects the test pods reference, which the suite's Core
 * service serves; everything else is PERMISSION_DENIED. */
#define CONF_CONFIGMAP "conformance-config"
#define CONF_SECRET "conformance-secret"
#define CONF_CONTAINER "main"

typedef struct conf_options {
    const char *provider_cmd;     /* start this provider ... */
    const char *provider_socket;  /* ... or use the one serving here */
    const char *junit;            /* JUnit XML report path, or NULL */
    const char *namespace_;
    const char *node_name;
    const char *image;
    char **command;               /* the test container's argv (command_split) */
    char **exit_command;          /* a container that exits with code 3 */
    bool host_network;
    bool no_volumes;              /* the main pod references no ConfigMap/Secret */
    int port_forward_port;
    bool echo_server;             /* serve the port-forward echo ourselves */
    bool skip_port_forward;
    int call_timeout_ms;          /* every unary call */
    int start_timeout_ms;         /* a pod reaching Running / its end */
    char **known_failures;        /* --known-failure names, n_known_failures of them */
    size_t n_known_failures;
} conf_options;

/* ---- results (report.c) -------------------------------------------------- */

void report_init(const conf_options *opt);
void check_pass(const char *name);
void check_fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void check_skip(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Pass when ok, else fail with the formatted reason. Returns ok. */
bool check(const char *name, bool ok, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Print the totals; write the JUnit file when asked. Returns the process
 * exit code: 0 when nothing failed. */
int report_finish(void);

/* ---- the Core service (core_service.c) ----------------------------------- */

typedef struct core_service core_service;

/* Serve on addr ("unix:/dir/core.sock"). NULL (printed) when it cannot. */
core_service *core_service_start(const char *addr, const char *ns, const char *node);
void core_service_stop(core_service *cs);
/* What the provider asked for, as one line per problem into problems:
 * the number of object reads, events and bad requests seen. */
typedef struct core_usage {
    size_t reads, events, denied;
    vk_buf problems;     /* "GetSecret ns/name: not referenced\n"... */
    vk_buf bad_events;   /* events with a bad type, reason or pod */
} core_usage;
void core_service_usage(core_service *cs, core_usage *out);
void core_usage_clear(core_usage *u);
/* Pods (by uid) whose events are expected: the suite's own. */
void core_service_add_pod(core_service *cs, const char *uid);

/* ---- helpers (util.c) ---------------------------------------------------- */

long now_ms(void);
void sleep_ms(int ms);

/* Cancels a stream when its time is up, from a thread of its own. */
typedef struct guard {
    pc_stream *stream;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    long deadline_ms;
    bool done, fired;
} guard;

/* Start guarding s for ms milliseconds. 0, or -1 (no thread: the caller
 * must not wait on s). */
int guard_start(guard *g, pc_stream *s, int ms);
/* Stop guarding; true when the guard had cancelled the stream. */
bool guard_stop(guard *g);

/* RFC 3339 with optional fraction and zone, as "2026-11-28T09:00:00.5Z ":
 * the length of the timestamp when text starts with one, else 0. */
size_t rfc3339_prefix(const char *text, size_t len);
/* Unix nanoseconds of an RFC 3339 timestamp of that length; -1 if bad. */
int64_t rfc3339_parse_ns(const char *text, size_t len);
/* Count '\n'-terminated lines (a last unterminated one counts too). */
size_t count_lines(const char *text, size_t len);
/* A JSON document from bytes, NULL (with err) when it does not parse. */
yajl_val parse_json(const void *data, size_t len, char *err, size_t errlen);

/* ---- the run (checks.c, streams.c, node.c) ------------------------------- */

/* A watch on pod status kept open through the run (WatchPodStatus). */
typedef struct watch_log watch_log;

typedef struct suite {
    const conf_options *opt;
    provider_client *pc;
    pc_info info;
    core_service *core;
    char provider_target[200];
    char core_target[200];
    char run_id[32];          /* makes this run's pod names and uids unique */
    char pod_name[64], pod_uid[96];      /* the main test pod */
    bool created, running;               /* ... was created, reached Running */
    watch_log *watch;
} suite;

bool has_cap(const suite *s, unsigned cap);
/* SKIP name unless the provider declared cap; returns whether it did. */
bool need_cap(suite *s, const char *name, unsigned cap, const char *rpc);
/* SKIP name unless the main pod runs. */
bool need_pod(suite *s, const char *name);

void run_handshake_checks(suite *s);
void run_node_checks(suite *s);
void run_pod_checks(suite *s);          /* creates the main pod, ends with it running */
void run_log_checks(suite *s);
void run_exec_checks(suite *s);
void run_port_forward_checks(suite *s);
void run_stats_checks(suite *s);
void run_cancel_checks(suite *s);
void run_delete_checks(suite *s);       /* deletes the main pod */
void run_callback_checks(suite *s);
void suite_cleanup(suite *s);           /* best effort: delete what is left */

#endif
