/* faults.c -- scripted faults and node conditions, read from a file.
 *
 * One directive per line; '#' starts a comment:
 *
 *   crash-after N            SIGKILL the process on the Nth call
 *   delay METHOD MS          sleep before the call
 *   error METHOD CODE [MSG]  fail the call (CODE: a gRPC code name or number)
 *   hang METHOD              block until the caller gives up
 *   log-silence-after N      GetContainerLogs sends N lines, then nothing,
 *                            and never ends the log until the caller gives up
 *   condition TYPE STATUS    override a node condition
 *
 * METHOD is a short RPC name ("CreatePod") or '*'. For one call, the
 * matching delays add up, then a hang applies, then the first matching
 * error. Calls are counted for crash-after over every RPC but Handshake,
 * from the moment the file was (re)loaded. SIGKILL, not abort(), so that a
 * crash leaves no core file and no sanitizer report behind, just like an
 * OOM kill.
 */
#include "mock.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_CONDITIONS 32

enum rule_kind { RULE_DELAY, RULE_ERROR, RULE_HANG };

typedef struct rule {
    enum rule_kind kind;
    char method[32];
    int64_t ms;
    int code;
    char *message;
} rule;

typedef struct fault_set {
    rule *rules;
    size_t n_rules;
    int64_t crash_after;
    int64_t log_silence_after; /* -1: none */
    mock_condition conds[MAX_CONDITIONS];
    size_t n_conds;
} fault_set;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static fault_set *current;
static char *path;
static int64_t calls;

static const char *const methods[] = {
    "Handshake", "Ping", "CreatePod", "UpdatePod", "DeletePod", "GetPod",
    "GetPodStatus", "GetPods", "WatchPodStatus", "GetNode", "WatchNode",
    "GetContainerLogs", "ExecInContainer", "AttachToContainer", "PortForward",
    "GetStatsSummary", "GetMetricsResource",
};

static void free_set(fault_set *fs)
{
    if (!fs)
        return;
    for (size_t i = 0; i < fs->n_rules; i++)
        free(fs->rules[i].message);
    free(fs->rules);
    free(fs);
}

/* The next whitespace-separated word of *p, NUL-terminated in place. */
static char *word(char **p)
{
    char *s = *p + strspn(*p, " \t\r\n");
    if (!*s) {
        *p = s;
        return NULL;
    }
    char *e = s + strcspn(s, " \t\r\n");
    if (*e)
        *e++ = '\0';
    *p = e;
    return s;
}

static bool known_method(const char *m)
{
    if (strcmp(m, "*") == 0)
        return true;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(m, methods[i]) == 0)
            return true;
    return false;
}

static int parse_code(const char *s)
{
    int64_t v;
    if (mock_parse_int(s, 1, 16, &v) == 0)
        return (int)v;
    for (int c = 1; c <= 16; c++)
        if (strcasecmp(s, vk_status_code_name(c)) == 0)
            return c;
    return -1;
}

/* Parse one line into fs. NULL, or what is wrong with it. */
static const char *parse_line(fault_set *fs, char *p)
{
    char *d = word(&p);
    if (!d)
        return NULL;
    if (strcmp(d, "condition") == 0) {
        char *type = word(&p), *status = word(&p);
        if (!type || !status || strlen(type) >= sizeof fs->conds[0].type)
            return "usage: condition TYPE STATUS";
        if (strcmp(status, "True") && strcmp(status, "False") && strcmp(status, "Unknown"))
            return "condition status must be True, False or Unknown";
        size_t i = 0;
        while (i < fs->n_conds && strcmp(fs->conds[i].type, type) != 0)
            i++;
        if (i == MAX_CONDITIONS)
            return "too many conditions";
        snprintf(fs->conds[i].type, sizeof fs->conds[i].type, "%s", type);
        snprintf(fs->conds[i].status, sizeof fs->conds[i].status, "%s", status);
        if (i == fs->n_conds)
            fs->n_conds++;
    } else if (strcmp(d, "log-silence-after") == 0) {
        char *n = word(&p);
        if (!n || mock_parse_int(n, 0, INT64_MAX, &fs->log_silence_after) < 0)
            return "usage: log-silence-after N (N >= 0)";
    } else if (strcmp(d, "crash-after") == 0) {
        char *n = word(&p);
        if (!n || mock_parse_int(n, 1, INT64_MAX, &fs->crash_after) < 0)
            return "usage: crash-after N (N >= 1)";
    } else if (strcmp(d, "delay") == 0 || strcmp(d, "error") == 0 || strcmp(d, "hang") == 0) {
        rule r = {.kind = d[0] == 'd' ? RULE_DELAY : d[0] == 'e' ? RULE_ERROR : RULE_HANG};
        char *m = word(&p);
        if (!m)
            return "missing METHOD (a short RPC name such as CreatePod, or '*')";
        if (!known_method(m) || strlen(m) >= sizeof r.method)
            return "unknown METHOD (a short RPC name such as CreatePod, or '*')";
        strcpy(r.method, m);
        if (r.kind == RULE_DELAY) {
            char *ms = word(&p);
            if (!ms || mock_parse_int(ms, 0, 3600000, &r.ms) < 0)
                return "usage: delay METHOD MS (0 to 3600000)";
        } else if (r.kind == RULE_ERROR) {
            char *code = word(&p);
            if (!code || (r.code = parse_code(code)) < 0)
                return "usage: error METHOD CODE [MESSAGE] (CODE: UNAVAILABLE, NOT_FOUND, ... or 1-16)";
            p += strspn(p, " \t");
            size_t len = strcspn(p, "\r\n");
            while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                len--;
            if (len && !(r.message = strndup(p, len)))
                return "out of memory";
            p += len;
        }
        rule *rules = realloc(fs->rules, (fs->n_rules + 1) * sizeof *rules);
        if (!rules) {
            free(r.message);
            return "out of memory";
        }
        fs->rules = rules;
        fs->rules[fs->n_rules++] = r;
    } else {
        return "unknown directive (crash-after, delay, error, hang, log-silence-after, condition)";
    }
    return word(&p) ? "unexpected words at the end of the line" : NULL;
}

/* Parse the whole file; every bad line is reported. */
static fault_set *parse_file(const char *file)
{
    FILE *f = fopen(file, "r");
    if (!f) {
        vk_error("cannot open the fault file", "file=%s error=\"%s\"", file, strerror(errno));
        return NULL;
    }
    fault_set *fs = calloc(1, sizeof *fs);
    if (fs)
        fs->log_silence_after = -1;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, errors = fs ? 0 : 1;
    while (fs && getline(&line, &cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "#")] = '\0';
        const char *err = parse_line(fs, line);
        if (err) {
            vk_error("bad line in the fault file", "file=%s line=%d error=\"%s\"", file, lineno, err);
            errors++;
        }
    }
    free(line);
    fclose(f);
    if (errors) {
        free_set(fs);
        return NULL;
    }
    return fs;
}

int faults_load(const char *file)
{
    if (!file)
        return 0;
    current = parse_file(file);
    if (!current)
        return -1;
    path = strdup(file);
    if (!path) {
        faults_free();
        return -1;
    }
    vk_info("fault file loaded", "file=%s rules=%zu", file, current->n_rules);
    return 0;
}

void faults_reload(void)
{
    if (!path) {
        vk_info("no fault file to reload", "signal=HUP");
        return;
    }
    fault_set *fs = parse_file(path);
    if (!fs) {
        vk_warn("fault file not reloaded: the previous rules stay", "file=%s", path);
        return;
    }
    pthread_mutex_lock(&lock);
    fault_set *old = current;
    current = fs;
    calls = 0;
    pthread_mutex_unlock(&lock);
    free_set(old);
    vk_info("fault file reloaded", "file=%s rules=%zu", path, fs->n_rules);
    vk_provider_notify_node(provider);
}

void faults_free(void)
{
    free_set(current);
    current = NULL;
    free(path);
    path = NULL;
}

size_t faults_conditions(mock_condition *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&lock);
    if (current)
        for (; n < current->n_conds && n < max; n++)
            out[n] = current->conds[n];
    pthread_mutex_unlock(&lock);
    return n;
}

/* Sleep ms (-1: without end) unless the call is cancelled first; false
 * when it was. */
static bool pause_call(vk_ctx *ctx, int64_t ms)
{
    int64_t end = mock_now_ns() + ms * NS_PER_MS;
    while (!vk_ctx_cancelled(ctx)) {
        int64_t left = ms < 0 ? 20 : (end - mock_now_ns()) / NS_PER_MS;
        if (left <= 0)
            return true;
        struct timespec ts = {0, (left < 20 ? left : 20) * NS_PER_MS};
        nanosleep(&ts, NULL);
    }
    return false;
}

int64_t faults_log_silence_after(void)
{
    pthread_mutex_lock(&lock);
    int64_t n = current ? current->log_silence_after : -1;
    pthread_mutex_unlock(&lock);
    return n;
}

void faults_hang(vk_ctx *ctx)
{
    pause_call(ctx, -1);
}

int mock_before_call(vk_ctx *ctx, const char *method)
{
    int64_t delay = 0;
    bool hang = false;
    int code = VK_OK;
    char message[256] = "";

    pthread_mutex_lock(&lock);
    fault_set *fs = current;
    if (fs && fs->crash_after && strcmp(method, "Handshake") != 0 && ++calls >= fs->crash_after) {
        vk_warn("crash-after reached: killing the process", "call=%s calls=%lld",
                method, (long long)calls);
        raise(SIGKILL);
    }
    for (size_t i = 0; fs && i < fs->n_rules; i++) {
        const rule *r = &fs->rules[i];
        if (strcmp(r->method, "*") != 0 && strcmp(r->method, method) != 0)
            continue;
        if (r->kind == RULE_DELAY) {
            delay += r->ms;
        } else if (r->kind == RULE_HANG) {
            hang = true;
        } else if (code == VK_OK) {
            code = r->code;
            snprintf(message, sizeof message, "%s", r->message ? r->message : "");
        }
    }
    pthread_mutex_unlock(&lock);

    if (delay && !pause_call(ctx, delay))
        return vk_ctx_error(ctx, VK_CANCELLED, "%s was cancelled during an injected delay", method);
    if (hang && !pause_call(ctx, -1))
        return vk_ctx_error(ctx, VK_CANCELLED, "%s was cancelled during an injected hang", method);
    if (code != VK_OK)
        return vk_ctx_error(ctx, code, "%s", message[0] ? message : "fault injected by the mock provider");
    return VK_OK;
}
