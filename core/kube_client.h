/* kube_client.h -- asynchronous HTTPS requests to the Kubernetes API server.
 *
 *   struct kube_client *c = kube_client_new(loop, &cfg, NULL, err, sizeof err);
 *   int64_t id = kube_request(c, "GET", "/version", NULL, NULL, 0, 0, done, ud);
 *
 * libcurl's multi-socket API runs on the caller's libev loop: one HTTP/2
 * connection (TLS verified, ALPN h2) multiplexes every request and watch.
 * Everything happens on the loop's thread; nothing here is thread-safe.
 *
 * Requests other than streams pass a client-side token bucket (client-go's
 * QPS/burst) and a cap on how many are out at once (max_in_flight). Those
 * that find either exhausted wait in a bounded FIFO; a full FIFO refuses
 * new ones. Every request has a deadline that covers its time in
 * the FIFO and on the wire.
 *
 * Callbacks: `done` runs exactly once per accepted request, from the loop,
 * never from inside kube_request, unless the request is cancelled with
 * kube_request_cancel (then it never runs: the caller knows). When the
 * client is freed, pending callbacks run with status 0, `cancelled` set and
 * error "cancelled". Callbacks may submit and cancel requests, but must not
 * free the client.
 *
 * Client certificate: one given as files (cfg's cert_file and key_file) is
 * re-read when either file changes (a stat of each per request), so a
 * renewal takes effect without a restart; a pair that does not parse or
 * match (a renewal half written) is not taken. A certificate outside its
 * validity is logged at start, and again on the first 401 of each streak:
 * the API server's answer, a bare "Unauthorized", does not say why.
 *
 * SIGPIPE: the client sets CURLOPT_NOSIGNAL (curl's signal juggling is not
 * thread-safe), so the process must ignore SIGPIPE, as daemons do.
 */
#ifndef VKC_CORE_KUBE_CLIENT_H
#define VKC_CORE_KUBE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "kubeconfig.h"

struct ev_loop;
struct kube_client;

struct kube_client_opts {
    double qps;               /* tokens per second; 0: 5, < 0: unlimited */
    unsigned burst;           /* bucket size; 0: 10 */
    unsigned queue_max;       /* requests waiting for a token; 0: 1000 */
    unsigned max_in_flight;   /* requests (not streams) out at once; 0: 100 */
    long timeout_ms;          /* default request deadline; 0: 30000 */
    long connect_timeout_ms;  /* TCP + TLS handshake; 0: 10000 */
    size_t max_body;          /* largest response accepted; 0: 64 MiB */
    /* When set, every finished request is counted there (metrics.h; labels
     * client,verb,code; code 0: no response) with `name` as the client. */
    struct metric *requests;
    const char *name;
    /* Optional, label client: the FIFO's and the wire's occupancy now
     * (gauges), requests the full FIFO refused (counter), and the two
     * bounds (gauge, labels client,bound: "waiting", "in_flight"), so an
     * operator sees how close the client runs to its limits. */
    struct metric *waiting, *in_flight, *rejected, *limits;
};

struct kube_response {
    /* HTTP status of a complete response; 0 when there is none: transport
     * error, timeout, size limit, cancellation. */
    long status;
    /* The body, NUL-terminated ("" when empty). Valid during the callback. */
    const char *body;
    size_t len;
    /* NULL for 2xx. Otherwise one line: the Status message of an error
     * response ("configmaps \"x\" already exists"), or why there is no
     * response (curl's words, "SSL certificate problem: unable to get local
     * issuer certificate", "Operation timed out after 500 milliseconds ...";
     * or "response body exceeds 67108864 bytes", "cancelled"). A stream
     * that failed after its 2xx header has status 0 too. */
    const char *error;
    bool cancelled;           /* the client is being freed */
};

typedef void (*kube_done_fn)(const struct kube_response *resp, void *ud);

/* cfg is copied: it may be freed after the call. opts may be NULL for the
 * defaults. NULL on failure with a one-line message in err. */
struct kube_client *kube_client_new(struct ev_loop *loop, const kube_config *cfg,
                                    const struct kube_client_opts *opts,
                                    char *err, size_t errlen);
/* Cancels everything (see "Callbacks" above) and closes the connections.
 * Free watches and reflectors first. NULL is a no-op. */
void kube_client_free(struct kube_client *c);
struct ev_loop *kube_client_loop(const struct kube_client *c);

/* Submit method ("GET", "POST", "PUT", "PATCH", "DELETE") on path (starting
 * with '/', query included, already escaped; see kube_path_query). body is
 * copied (a GET has none); content_type defaults to application/json when
 * there is a body (a PATCH names its patch type). timeout_ms 0 takes the
 * client's default. Returns the request's id (> 0), or -1 when the arguments are bad, memory
 * ran out, the client is closing, or the rate-limit queue is full; any
 * later failure (no token, no connection) comes through `done`. */
int64_t kube_request(struct kube_client *c, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len,
                     long timeout_ms, kube_done_fn done, void *ud);

/* A long-running GET whose 2xx body is handed over as it arrives, for
 * watches and log follows. Not rate limited. on_data returns 0 to go on or
 * -1 to stop; stopping ends the request and `done` then runs with status 0
 * and the error "stopped by receiver". A non-2xx body is not streamed:
 * `done` gets it whole, as for kube_request. timeout_ms 0 means no
 * deadline. Returns the id, or -1. */
typedef int (*kube_data_fn)(const char *data, size_t len, void *ud);
int64_t kube_stream(struct kube_client *c, const char *path, long timeout_ms,
                    kube_data_fn on_data, kube_done_fn done, void *ud);

/* Cancel a request that has not completed: its callbacks will not run.
 * 0, or -1 when no such request is pending (it completed already). Safe
 * from any callback, including the request's own on_data. */
int kube_request_cancel(struct kube_client *c, int64_t id);

/* Append "?key=value" or "&key=value" to a path, value percent-encoded.
 * 0, or -1 when memory ran out. */
int kube_path_query(vk_buf *path, const char *key, const char *value);

/* Counters for the core's /metrics. Watches and streams are counted under
 * KUBE_VERB_WATCH when they end and are left out of the latency sums. */
enum kube_verb {
    KUBE_VERB_GET,
    KUBE_VERB_POST,
    KUBE_VERB_PUT,
    KUBE_VERB_PATCH,
    KUBE_VERB_DELETE,
    KUBE_VERB_WATCH,
    KUBE_VERB_COUNT
};
#define KUBE_CODE_SLOTS 600   /* HTTP status 0..599; 0: no response */

struct kube_client_stats {
    uint64_t requests[KUBE_VERB_COUNT][KUBE_CODE_SLOTS];
    double latency_sum[KUBE_VERB_COUNT];   /* seconds, on the wire */
    uint64_t latency_count[KUBE_VERB_COUNT];
    uint64_t rejected;                     /* refused: queue full */
    uint64_t retry_after_holds;            /* queue held for a Retry-After */
    uint64_t connections;                  /* TCP connections opened */
    unsigned queued;                       /* waiting for a token now */
    unsigned in_flight;                    /* past the limit, not done; streams too */
};

const struct kube_client_stats *kube_client_stats(const struct kube_client *c);
const char *kube_verb_name(enum kube_verb v);   /* "GET", ..., "WATCH" */

#endif
