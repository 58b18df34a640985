/* procstats.h -- the core's own resources in /metrics.
 *
 * The process_* families every Prometheus client library exports (CPU
 * time, resident and virtual memory, open and allowed file descriptors,
 * start time), so the dashboards made for them work on vkc-core, plus two
 * that explain its memory: the resident pages that are mapped files (the
 * shared libraries' code, shared with every process that maps them) and
 * the malloc heap split into bytes in use and bytes malloc keeps free,
 * which tells live data from fragmentation when RSS grows.
 *
 * Read from /proc/self, getrusage and mallinfo2 when /metrics is asked
 * for, never in between.
 */
#ifndef VKC_CORE_PROCSTATS_H
#define VKC_CORE_PROCSTATS_H

#include "metrics.h"

typedef struct procstats procstats;

/* Register the families in m and read them on each of its renders; NULL
 * when memory ran out. Free after m's last render. */
procstats *procstats_new(metrics *m);
void procstats_free(procstats *ps);

#endif
