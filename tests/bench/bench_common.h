/* bench_common.h -- shared pieces of the vkc-bench tool (tests/bench).
 *
 * Everything runs on one libev loop with the core's own API client
 * (core/kube_client.h: HTTP/2 over libcurl, no rate limit here), so the
 * harness measures the API server and vkc, not itself.
 */
#ifndef VKC_BENCH_COMMON_H
#define VKC_BENCH_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <ev.h>
#include <yajl/yajl_tree.h>

#include "../../core/kube_client.h"
#include "../../core/kube_reflector.h"
#include "buf.h"
#include "json.h"

/* Wall clock (CLOCK_REALTIME) in seconds: the mock stamps with it too. */
double bench_now(void);
_Noreturn void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bench_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A client with no client-side rate limit and a deep queue. */
struct kube_client *bench_client(struct ev_loop *loop, const char *kubeconfig);

/* VmRSS / VmHWM of pid in KiB, -1 when unreadable. */
long bench_rss_kb(pid_t pid, const char *field);

/* The value of series (name{labels} as exposed) in the /metrics of the
 * core's --metrics-addr 127.0.0.1:port; -1 when it cannot be read. A
 * blocking GET: for moments when the bench waits anyway. */
double bench_metric(int port, const char *series);

/* "prefix-000123" -> 123, -1 when the name is not one of ours. */
long bench_pod_index(const char *name, const char *prefix);

/* The JSON of bench pod `index`. annotations is a JSON object body
 * ("\"k\":\"v\",...") or NULL; restart_policy NULL for Always. */
int bench_pod_json(vk_buf *out, const char *ns, const char *prefix, long index,
                   const char *node, const char *annotations, const char *restart_policy);

/* PUT .../status for pod (the copy to send from, whose resourceVersion is
 * used) with a Running status whose containers show restart_count. */
int64_t bench_put_running(struct kube_client *c, yajl_val pod, int restart_count,
                          kube_done_fn done, void *ud);

/* RFC 3339 ("2026-01-02T03:04:05Z" or with .fraction) -> seconds since the
 * epoch; -1 on a bad string. */
double bench_parse_time(const char *s);

int bench_cmp_double(const void *a, const void *b);
/* q in [0,1] of sorted v[0..n) (nearest rank); 0 when n == 0. */
double bench_quantile(const double *sorted, size_t n, double q);

/* Subcommands. */
int cmd_churn(int argc, char **argv);
int cmd_kubelet(int argc, char **argv);
int cmd_statuslat(int argc, char **argv);
int cmd_recover(int argc, char **argv);

#endif
