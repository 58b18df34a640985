/* util.c -- clocks, the stream guard, timestamps and small text helpers. */
#include "conformance.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- guard ----------------------------------------------------------------- */

static void *guard_main(void *arg)
{
    guard *g = arg;
    struct timespec at = {g->deadline_ms / 1000, (g->deadline_ms % 1000) * 1000000L};
    pthread_mutex_lock(&g->mu);
    while (!g->done) {
        if (pthread_cond_timedwait(&g->cv, &g->mu, &at) == ETIMEDOUT && !g->done) {
            g->fired = true;
            pc_stream_cancel(g->stream);
            break;
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

int guard_start(guard *g, pc_stream *s, int ms)
{
    memset(g, 0, sizeof *g);
    g->stream = s;
    g->deadline_ms = now_ms() + ms;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    /* Deadlines are on the monotonic clock, as now_ms is. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&g->mu, NULL);
    if (pthread_create(&g->thread, NULL, guard_main, g) != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        return -1;
    }
    return 0;
}

bool guard_stop(guard *g)
{
    pthread_mutex_lock(&g->mu);
    g->done = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    return g->fired;
}

/* ---- text ------------------------------------------------------------------ */

/* n digits at p (within len)? */
static bool digits(const char *p, size_t len, size_t at, size_t n)
{
    if (at + n > len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)p[at + i]))
            return false;
    return true;
}

static bool is_at(const char *p, size_t len, size_t at, char c)
{
    return at < len && p[at] == c;
}

size_t rfc3339_prefix(const char *t, size_t len)
{
    /* 2006-01-02T15:04:05 */
    if (!(digits(t, len, 0, 4) && is_at(t, len, 4, '-') && digits(t, len, 5, 2) &&
          is_at(t, len, 7, '-') && digits(t, len, 8, 2) && is_at(t, len, 10, 'T') &&
          digits(t, len, 11, 2) && is_at(t, len, 13, ':') && digits(t, len, 14, 2) &&
          is_at(t, len, 16, ':') && digits(t, len, 17, 2)))
        return 0;
    size_t at = 19;
    if (is_at(t, len, at, '.')) {
        size_t n = 0;
        while (n < 9 && digits(t, len, at + 1 + n, 1))
            n++;
        if (n == 0)
            return 0;
        at += 1 + n;
    }
    if (is_at(t, len, at, 'Z'))
        return at + 1;
    if ((is_at(t, len, at, '+') || is_at(t, len, at, '-')) && digits(t, len, at + 1, 2) &&
        is_at(t, len, at + 3, ':') && digits(t, len, at + 4, 2))
        return at + 6;
    return 0;
}

static int num(const char *p, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (p[i] - '0');
    return v;
}

int64_t rfc3339_parse_ns(const char *t, size_t len)
{
    if (len == 0 || rfc3339_prefix(t, len) != len)
        return -1;
    struct tm tm = {0};
    tm.tm_year = num(t, 4) - 1900;
    tm.tm_mon = num(t + 5, 2) - 1;
    tm.tm_mday = num(t + 8, 2);
    tm.tm_hour = num(t + 11, 2);
    tm.tm_min = num(t + 14, 2);
    tm.tm_sec = num(t + 17, 2);
    int64_t ns = (int64_t)timegm(&tm) * 1000000000LL;
    size_t at = 19;
    if (t[at] == '.') {
        int64_t scale = 100000000LL;
        for (at++; isdigit((unsigned char)t[at]); at++, scale /= 10)
            ns += (t[at] - '0') * scale;
    }
    if (t[at] == '+' || t[at] == '-') {
        int64_t off = (int64_t)(num(t + at + 1, 2) * 3600 + num(t + at + 4, 2) * 60);
        ns -= (t[at] == '+' ? off : -off) * 1000000000LL;
    }
    return ns;
}

size_t count_lines(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            n++;
    return n + (len > 0 && text[len - 1] != '\n');
}

yajl_val parse_json(const void *data, size_t len, char *err, size_t errlen)
{
    if (len == 0) {
        snprintf(err, errlen, "empty document");
        return NULL;
    }
    return vk_json_parse_bytes(data, len, err, errlen);
}
