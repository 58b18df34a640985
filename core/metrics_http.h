/* metrics_http.h -- vkc's Prometheus metrics over plain HTTP
 * (--metrics-addr).
 *
 * The kubelet API serves the same /metrics behind TLS, client
 * authentication and authorization, which is how the API server's proxy
 * and a cluster's Prometheus reach a kubelet. This listener is for the
 * operator who scrapes the node's host directly, as virtual-kubelet's
 * --metrics-addr allows: GET /metrics and /healthz only, no credentials,
 * nothing secret (the families carry no pod or object names). Off unless
 * the flag is given.
 */
#ifndef VKC_CORE_METRICS_HTTP_H
#define VKC_CORE_METRICS_HTTP_H

#include <stddef.h>

#include "metrics.h"

struct ev_loop;
typedef struct metrics_http metrics_http;

/* Listen on addr ("[host]:port", host empty for every interface). NULL on
 * failure with a one-line message in err. */
metrics_http *metrics_http_new(struct ev_loop *loop, const char *addr, metrics *m, char *err,
                               size_t errlen);
/* The bound port (addr may ask for port 0). */
int metrics_http_port(const metrics_http *mh);
void metrics_http_free(metrics_http *mh);

#endif
