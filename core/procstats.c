/* procstats.c -- process_* metrics read when /metrics is asked for. */
#include "procstats.h"

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ASan's allocator stands in for malloc and answers mallinfo2 with zeros:
 * a sanitized core has no heap figures to give. */
#if defined(__SANITIZE_ADDRESS__)
#define HEAP_STATS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HEAP_STATS 0
#endif
#endif
#ifndef HEAP_STATS
#define HEAP_STATS 1
#endif

struct procstats {
    metric *cpu, *rss, *rss_file, *vsize, *fds, *max_fds, *start, *heap;
    /* Opened at start and kept: they must be readable when the process
     * has no descriptor left to open them, the moment process_open_fds
     * matters most. -1 when they could not be opened. */
    int status_fd, fd_dir;
    double heap_read;       /* CLOCK_MONOTONIC of the last mallinfo2; 0: never */
};

/* mallinfo2 walks every free chunk under its arena's lock, so its time
 * grows with fragmentation (39 ms for 200,000 free chunks here). Read at
 * most this often, however often /metrics is scraped. */
#define HEAP_READ_EVERY_S 10.0

/* Fields of /proc/self/status in kB, -1 for each one missing. */
static void read_status(int fd, long long *rss, long long *rss_file, long long *vsize)
{
    *rss = *rss_file = *vsize = -1;
    char buf[8192];
    ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf - 1, 0) : -1;
    if (n <= 0)
        return;
    buf[n] = '\0';
    for (char *line = buf; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        long long v;
        if (sscanf(line, "VmRSS: %lld", &v) == 1)
            *rss = v;
        else if (sscanf(line, "RssFile: %lld", &v) == 1)
            *rss_file = v;
        else if (sscanf(line, "VmSize: %lld", &v) == 1)
            *vsize = v;
    }
}

/* Entries of /proc/self/fd (the two kept here included: they are open);
 * -1 when unreadable. */
static long open_fds(int dir)
{
    if (dir < 0 || lseek(dir, 0, SEEK_SET) < 0)
        return -1;
    char buf[8192];
    long count = 0;
    ssize_t n;
    while ((n = getdents64(dir, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < n;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + off);
            if (e->d_name[0] != '.')
                count++;
            off += e->d_reclen;
        }
    }
    return n < 0 ? -1 : count;
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
    read_status(ps->status_fd, &rss, &rss_file, &vsize);
    if (rss >= 0)
        metric_set(ps->rss, NULL, (double)rss * 1024);
    if (rss_file >= 0)
        metric_set(ps->rss_file, NULL, (double)rss_file * 1024);
    if (vsize >= 0)
        metric_set(ps->vsize, NULL, (double)vsize * 1024);
    long fds = open_fds(ps->fd_dir);
    if (fds >= 0)
        metric_set(ps->fds, NULL, (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        metric_set(ps->max_fds, NULL, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
#if HEAP_STATS
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (ps->heap_read == 0 || now - ps->heap_read >= HEAP_READ_EVERY_S) {
        ps->heap_read = now;
        struct mallinfo2 mi = mallinfo2();
        metric_set(ps->heap, (const char *[]){"in_use"}, (double)(mi.uordblks + mi.hblkhd));
        metric_set(ps->heap, (const char *[]){"free"}, (double)mi.fordblks);
    }
#endif
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
#if HEAP_STATS
    ps->heap = metrics_gauge(m, "process_heap_bytes",
        "The malloc heap: bytes in use, and bytes free but kept by malloc (fragmentation "
        "and room for growth; part of them may not be resident). Read at most every 10 s.",
        "state");
#endif
    if (!ps->cpu || !ps->rss || !ps->rss_file || !ps->vsize || !ps->fds || !ps->max_fds ||
        !ps->start || (HEAP_STATS && !ps->heap)) {
        free(ps);
        return NULL;
    }
    ps->status_fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ps->fd_dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* Made at start, a few milliseconds after exec. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    metric_set(ps->start, NULL, (double)now.tv_sec + (double)now.tv_nsec / 1e9);
    metrics_on_render(m, collect, ps);
    return ps;
}

void procstats_free(procstats *ps)
{
    if (!ps)
        return;
    if (ps->status_fd >= 0)
        close(ps->status_fd);
    if (ps->fd_dir >= 0)
        close(ps->fd_dir);
    free(ps);
}
