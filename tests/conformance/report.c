/* report.c -- one line per check on stdout, totals, and JUnit XML.
 *
 * A check named with --known-failure is reported XFAIL and does not fail
 * the run; should it pass, it is reported XPASS and does, so the list is
 * trimmed as soon as the provider is fixed. The time of a check is the time
 * since the previous result: checks run one after the other.
 */
#include "conformance.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RESULTS 256

enum outcome { PASS, FAIL, SKIP, XFAIL, XPASS };

static const char *const outcome_names[] = {"PASS", "FAIL", "SKIP", "XFAIL", "XPASS"};

typedef struct result {
    char *name;
    enum outcome outcome;
    char *reason;
    long ms;
} result;

static const conf_options *options;
static result results[MAX_RESULTS];
static size_t n_results;
static long last_ms;
static long started_ms;

void report_init(const conf_options *opt)
{
    options = opt;
    started_ms = last_ms = now_ms();
}

static bool known_failure(const char *name)
{
    for (size_t i = 0; i < options->n_known_failures; i++)
        if (strcmp(options->known_failures[i], name) == 0)
            return true;
    return false;
}

/* The reason on one line: a result is one line of output, whatever a
 * provider put in its messages. Control characters become \n, \r or ?. */
static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        return NULL;
    vk_buf b = VK_BUF_INIT;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '\n' || c == '\r')
            vk_buf_puts(&b, c == '\n' ? "\\n" : "\\r");
        else
            vk_buf_append(&b, c < 0x20 || c == 0x7f ? "?" : p, 1);
    }
    free(s);
    return b.data ? b.data : strdup("");
}

/* reason: owned, may be NULL. */
static void record(const char *name, enum outcome o, char *reason)
{
    if (known_failure(name)) {
        if (o == FAIL) {
            o = XFAIL;
        } else if (o == PASS) {
            o = XPASS;
            free(reason);
            reason = strdup("listed with --known-failure but passed: remove it from the list");
        }
    }
    long now = now_ms();
    printf("%-5s %-36s", outcome_names[o], name);
    if (reason)
        printf(" %s", reason);
    printf("\n");
    fflush(stdout);
    if (n_results == MAX_RESULTS) {
        free(reason);
        return;
    }
    results[n_results++] = (result){strdup(name), o, reason, now - last_ms};
    last_ms = now;
}

void check_pass(const char *name)
{
    record(name, PASS, NULL);
}

void check_fail(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(name, FAIL, vformat(fmt, ap));
    va_end(ap);
}

void check_skip(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record(name, SKIP, vformat(fmt, ap));
    va_end(ap);
}

bool check(const char *name, bool ok, const char *fmt, ...)
{
    if (ok) {
        record(name, PASS, NULL);
        return true;
    }
    va_list ap;
    va_start(ap, fmt);
    record(name, FAIL, vformat(fmt, ap));
    va_end(ap);
    return false;
}

static void xml_escaped(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            /* XML 1.0 has no way to carry most control characters. */
            if (c < 0x20 && c != '\n' && c != '\t')
                fputc('?', f);
            else
                fputc(c, f);
        }
    }
}

static int write_junit(const char *path, size_t failures, size_t skipped)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    double total = (double)(now_ms() - started_ms) / 1000.0;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<testsuites tests=\"%zu\" failures=\"%zu\" skipped=\"%zu\" time=\"%.3f\">\n",
            n_results, failures, skipped, total);
    fprintf(f, "  <testsuite name=\"vkc-conformance\" tests=\"%zu\" failures=\"%zu\" "
               "skipped=\"%zu\" time=\"%.3f\">\n", n_results, failures, skipped, total);
    for (size_t i = 0; i < n_results; i++) {
        const result *r = &results[i];
        /* "pod/create" becomes class vkc-conformance.pod, test create. */
        const char *slash = strchr(r->name, '/');
        int group = slash ? (int)(slash - r->name) : 0;
        fprintf(f, "    <testcase classname=\"vkc-conformance%s%.*s\" name=\"",
                group ? "." : "", group, r->name);
        xml_escaped(f, slash ? slash + 1 : r->name);
        fprintf(f, "\" time=\"%.3f\"", (double)r->ms / 1000.0);
        if (r->outcome == PASS) {
            fprintf(f, "/>\n");
            continue;
        }
        const char *tag = r->outcome == FAIL || r->outcome == XPASS ? "failure" : "skipped";
        fprintf(f, ">\n      <%s message=\"", tag);
        if (r->outcome == XFAIL)
            fputs("known failure: ", f);
        xml_escaped(f, r->reason);
        fprintf(f, "\"/>\n    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    return fclose(f) == 0 ? 0 : -1;
}

int report_finish(void)
{
    size_t count[5] = {0};
    for (size_t i = 0; i < n_results; i++)
        count[results[i].outcome]++;
    size_t failures = count[FAIL] + count[XPASS];
    if (count[XFAIL])
        printf("\n%zu known failures (--known-failure): see XFAIL above\n", count[XFAIL]);
    /* The closing line CI tools read. */
    printf("\nconformance: %zu passed, %zu failed, %zu skipped\n", count[PASS], failures,
           count[SKIP] + count[XFAIL]);
    int rc = failures ? 1 : 0;
    if (options->junit && write_junit(options->junit, failures, count[SKIP] + count[XFAIL]) < 0) {
        fprintf(stderr, "vkc-conformance: cannot write %s\n", options->junit);
        rc = 1;
    }
    for (size_t i = 0; i < n_results; i++) {
        free(results[i].name);
        free(results[i].reason);
    }
    n_results = 0;
    return rc;
}
