/* log.c -- logfmt lines on stderr. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum vk_log_level min_level = VK_LOG_INFO;
static const char *component;

static const char *const names[] = {"debug", "info", "warn", "error"};

int vk_log_set_level_name(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            min_level = (enum vk_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        min_level = VK_LOG_WARN;
        return 0;
    }
    return -1;
}

void vk_log_set_level(enum vk_log_level level) { min_level = level; }
int vk_log_enabled(enum vk_log_level level) { return level >= min_level; }
void vk_log_set_component(const char *name) { component = name; }

/* Append s to line, quoted when it holds spaces, quotes or '='. */
static size_t put_value(char *line, size_t at, size_t cap, const char *s)
{
    int quote = s[0] == '\0' || strpbrk(s, " \"=\t\n") != NULL;
    if (quote && at < cap)
        line[at++] = '"';
    for (; *s && at + 2 < cap; s++) {
        if (*s == '"' || *s == '\\') {
            line[at++] = '\\';
            line[at++] = *s;
        } else if (*s == '\n') {
            line[at++] = '\\';
            line[at++] = 'n';
        } else {
            line[at++] = *s;
        }
    }
    if (quote && at < cap)
        line[at++] = '"';
    return at;
}

void vk_log(enum vk_log_level level, const char *msg, const char *kv, ...)
{
    if (level < min_level)
        return;
    char line[2048];
    const size_t cap = sizeof line - 1; /* room for the newline */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t at = strftime(line, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    at += (size_t)snprintf(line + at, cap - at, ".%03ldZ level=%s", (long)(tv.tv_usec / 1000), names[level]);
    if (component)
        at += (size_t)snprintf(line + at, cap - at, " component=%s", component);
    at += (size_t)snprintf(line + at, cap - at, " msg=");
    at = put_value(line, at, cap, msg);
    if (kv && kv[0] && at + 1 < cap) {
        line[at++] = ' ';
        va_list ap;
        va_start(ap, kv);
        int n = vsnprintf(line + at, cap - at, kv, ap);
        va_end(ap);
        if (n > 0)
            at += (size_t)n < cap - at ? (size_t)n : cap - at - 1;
    }
    line[at++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, at);
    (void)w;
}
