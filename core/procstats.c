/* procstats.c -- process_* metrics read when /metrics is asked for. */
#include "procstats.h"

#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

struct procstats {
    metric *cpu, *rss, *rss_file, *vsize, *fds, *max_fds, *start, *heap;
};

/* Fields of /proc/self/status in kB, -1 for each one missing. */
static void read_status(long long *rss, long long *rss_file, long long *vsize)
{
    *rss = *rss_file = *vsize = -1;
    FILE *fp = fopen("/proc/self/status", "re");
    if (!fp)
        return;
    char line[256];
    while (fgets(line, sizeof line, fp)) {
        long long v;
        if (sscanf(line, "VmRSS: %lld", &v) == 1)
            *rss = v;
        else if (sscanf(line, "RssFile: %lld", &v) == 1)
            *rss_file = v;
        else if (sscanf(line, "VmSize: %lld", &v) == 1)
            *vsize = v;
    }
    fclose(fp);
}

/* Entries of /proc/self/fd, less the one reading it; -1 when unreadable. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static void collect(void *ud)
{
    procstats *ps = ud;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        metric_set(ps->cpu, NULL,
                   (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                       ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
    long long rss, rss_file, vsize;
    read_status(&rss, &rss_file, &vsize);
    if (rss >= 0)
        metric_set(ps->rss, NULL, (double)rss * 1024);
    if (rss_file >= 0)
        metric_set(ps->rss_file, NULL, (double)rss_file * 1024);
    if (vsize >= 0)
        metric_set(ps->vsize, NULL, (double)vsize * 1024);
    long fds = open_fds();
    if (fds >= 0)
        metric_set(ps->fds, NULL, (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metric_set(ps->max_fds, NULL, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
    /* Walks malloc's free lists under each arena's lock: cheap at a
     * scrape every few seconds, which is why it is not kept current. */
    struct mallinfo2 mi = mallinfo2();
    metric_set(ps->heap, (const char *[]){"in_use"}, (double)(mi.uordblks + mi.hblkhd));
    metric_set(ps->heap, (const char *[]){"free"}, (double)mi.fordblks);
}

procstats *procstats_new(metrics *m)
{
    procstats *ps = calloc(1, sizeof *ps);
    if (!ps)
        return NULL;
    ps->cpu = metrics_counter(m, "process_cpu_seconds_total",
        "User and system CPU time spent, in seconds.", NULL);
    ps->rss = metrics_gauge(m, "process_resident_memory_bytes",
        "Resident memory size in bytes.", NULL);
    ps->rss_file = metrics_gauge(m, "process_resident_memory_file_bytes",
        "Of the resident memory, pages of mapped files: mostly the shared libraries' code, "
        "shared with every process that maps them.", NULL);
    ps->vsize = metrics_gauge(m, "process_virtual_memory_bytes",
        "Virtual memory size in bytes.", NULL);
    ps->fds = metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", NULL);
    ps->max_fds = metrics_gauge(m, "process_max_fds",
        "Maximum number of open file descriptors (-1: unlimited).", NULL);
    ps->start = metrics_gauge(m, "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.", NULL);
    ps->heap = metrics_gauge(m, "process_heap_bytes",
        "The malloc heap: bytes in use, and bytes free but kept by malloc (fragmentation "
        "and room for growth; part of them may not be resident).", "state");
    if (!ps->cpu || !ps->rss || !ps->rss_file || !ps->vsize || !ps->fds || !ps->max_fds ||
        !ps->start || !ps->heap) {
        free(ps);
        return NULL;
    }
    /* Made at start, a few milliseconds after exec. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    metric_set(ps->start, NULL, (double)now.tv_sec + (double)now.tv_nsec / 1e9);
    metrics_on_render(m, collect, ps);
    return ps;
}

void procstats_free(procstats *ps)
{
    free(ps);
}
