/* metrics.h -- counters and gauges, rendered as Prometheus text.
 *
 *   metrics *m = metrics_new();
 *   metric *calls = metrics_counter(m, "callback_requests_total",
 *                                   "Core callback requests.", "method,code");
 *   metric_add(calls, (const char *[]){"GetSecret", "OK"}, 1);
 *
 * Thread-safe: RPC handlers count from worker threads. Each family holds at
 * most METRIC_MAX_SERIES label combinations; later ones are not recorded,
 * so a label fed from the outside cannot grow memory without bound.
 */
#ifndef VKC_CORE_METRICS_H
#define VKC_CORE_METRICS_H

#include "buf.h"

#define METRIC_MAX_SERIES 512

typedef struct metrics metrics;
typedef struct metric metric;

metrics *metrics_new(void);
void metrics_free(metrics *m);

/* Register a family. labels is a comma-separated list of label names, or
 * NULL. The family lives as long as the registry. */
metric *metrics_counter(metrics *m, const char *name, const char *help,
                        const char *labels);
metric *metrics_gauge(metrics *m, const char *name, const char *help,
                      const char *labels);

/* values holds one value per label name (NULL for a family without
 * labels). A NULL family is a no-op, so optional metrics need no checks. */
void metric_add(metric *f, const char *const *values, double delta);
void metric_set(metric *f, const char *const *values, double value);
/* Current value, 0 for a series never touched. */
double metric_get(metric *f, const char *const *values);

/* fn(ud) runs at the start of every metrics_render, outside the registry's
 * lock, to set gauges that are read when asked for rather than kept up to
 * date (core/procstats.c). One per registry; ud must outlive m's renders. */
typedef void (*metrics_collect_fn)(void *ud);
void metrics_on_render(metrics *m, metrics_collect_fn fn, void *ud);
/* The response header line of what metrics_render writes. */
#define METRICS_HEADERS "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"

/* Append the text exposition format (version 0.0.4). 0, or -1 when memory
 * ran out. */
int metrics_render(metrics *m, vk_buf *out);

#endif
