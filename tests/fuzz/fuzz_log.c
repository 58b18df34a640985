/* fuzz_log.c -- log.h for the fuzz targets, in place of sdk-c/log.c.
 *
 * Every level is enabled, so the code that only runs to build a debug line
 * (logval on untrusted names, messages quoting the input) is fuzzed too, and
 * every line is formatted, so that a bad argument shows under the
 * sanitizers. The line is then dropped: writing thousands of lines a second
 * to stderr would slow fuzzing down and bury the crash reports. Set
 * VKC_FUZZ_LOG=1 to see them when replaying one input.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int vk_log_set_level_name(const char *name)
{
    (void)name;
    return 0;
}

void vk_log_set_level(enum vk_log_level level)
{
    (void)level;
}

int vk_log_enabled(enum vk_log_level level)
{
    (void)level;
    return 1;
}

void vk_log_set_component(const char *name)
{
    (void)name;
}

void vk_log(enum vk_log_level level, const char *msg, const char *kv, ...)
{
    char line[2048] = "";
    if (kv) {
        va_list ap;
        va_start(ap, kv);
        vsnprintf(line, sizeof line, kv, ap);
        va_end(ap);
    }
    static int show = -1;
    if (show < 0)
        show = getenv("VKC_FUZZ_LOG") != NULL;
    if (show)
        fprintf(stderr, "level=%d msg=\"%s\" %s\n", (int)level, msg, line);
}
