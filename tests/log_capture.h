/* log_capture.h -- a test's view of what was logged.
 *
 * vkc logs to fd 2. log_capture_start points fd 2 at a temporary file,
 * log_capture_end points it back and returns what was written, so a test
 * can count the lines a failure produced. Header-only: shared by test
 * programs that link nothing else in common.
 */
#ifndef VKC_TESTS_LOG_CAPTURE_H
#define VKC_TESTS_LOG_CAPTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"

typedef struct log_capture {
    int saved;
    char path[64];
} log_capture;

static inline void log_capture_start(log_capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/vkc-test-log.XXXXXX");
    int fd = mkstemp(c->path);
    ck_assert_int_ge(fd, 0);
    c->saved = dup(STDERR_FILENO);
    ck_assert_int_ge(c->saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    close(fd);
}

/* Stop capturing; what was logged (the caller frees it). */
static inline char *log_capture_end(log_capture *c)
{
    dup2(c->saved, STDERR_FILENO);
    close(c->saved);
    vk_buf b = VK_BUF_INIT;
    FILE *f = fopen(c->path, "r");
    ck_assert_ptr_nonnull(f);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        vk_buf_append(&b, chunk, n);
    fclose(f);
    unlink(c->path);
    vk_buf_puts(&b, "");
    return b.data;
}

/* Lines of log holding both a and b. */
static inline int lines_with(const char *log, const char *a, const char *b)
{
    int n = 0;
    for (const char *line = log; *line != '\0';) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char *l = strndup(line, len);
        if (strstr(l, a) != NULL && strstr(l, b) != NULL)
            n++;
        free(l);
        line += len + (end != NULL);
    }
    return n;
}

#endif
