/* metrics.c -- a small Prometheus registry.
 *
 * Families and series are linked lists searched linearly: the core has a
 * handful of families, each with a few dozen label combinations, and a list
 * keeps the render order stable (registration, then first use).
 */
#include "metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LABELS 4

typedef struct series {
    struct series *next;
    char **values;
    double value;
} series;

struct metric {
    struct metric *next;
    metrics *owner;
    char *name, *help;
    const char *type;
    int n_labels;
    char *labels[MAX_LABELS];
    series *first, **tail;
    size_t n_series;
};

struct metrics {
    pthread_mutex_t lock;
    metric *first, **tail;
    metrics_collect_fn collect;
    void *collect_ud;
};

metrics *metrics_new(void)
{
    metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->tail = &m->first;
    return m;
}

static void free_series(const metric *f, series *s)
{
    for (int i = 0; s->values && i < f->n_labels; i++)
        free(s->values[i]);
    free(s->values);
    free(s);
}

static void free_family(metric *f)
{
    series *s = f->first;
    while (s) {
        series *next = s->next;
        free_series(f, s);
        s = next;
    }
    for (int i = 0; i < f->n_labels; i++)
        free(f->labels[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_free(metrics *m)
{
    if (!m)
        return;
    metric *f = m->first;
    while (f) {
        metric *next = f->next;
        free_family(f);
        f = next;
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int split_labels(metric *f, const char *labels)
{
    while (labels && *labels) {
        size_t len = strcspn(labels, ",");
        if (f->n_labels == MAX_LABELS || len == 0)
            return -1;
        f->labels[f->n_labels] = strndup(labels, len);
        if (!f->labels[f->n_labels])
            return -1;
        f->n_labels++;
        labels += len;
        if (*labels == ',')
            labels++;
    }
    return 0;
}

static metric *add_family(metrics *m, const char *type, const char *name,
                          const char *help, const char *labels)
{
    if (!m)
        return NULL;
    metric *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->owner = m;
    f->type = type;
    f->tail = &f->first;
    f->name = strdup(name);
    f->help = strdup(help);
    if (!f->name || !f->help || split_labels(f, labels) < 0) {
        free_family(f);
        return NULL;
    }
    pthread_mutex_lock(&m->lock);
    *m->tail = f;
    m->tail = &f->next;
    pthread_mutex_unlock(&m->lock);
    return f;
}

metric *metrics_counter(metrics *m, const char *name, const char *help,
                        const char *labels)
{
    return add_family(m, "counter", name, help, labels);
}

metric *metrics_gauge(metrics *m, const char *name, const char *help,
                      const char *labels)
{
    return add_family(m, "gauge", name, help, labels);
}

/* The series for values, created when create is set. Lock held. */
static series *find_series(metric *f, const char *const *values, int create)
{
    for (series *s = f->first; s; s = s->next) {
        int i = 0;
        while (i < f->n_labels && strcmp(s->values[i], values[i]) == 0)
            i++;
        if (i == f->n_labels)
            return s;
    }
    if (!create || f->n_series >= METRIC_MAX_SERIES)
        return NULL;
    series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->values = calloc((size_t)f->n_labels + 1, sizeof *s->values);
    int ok = s->values != NULL;
    for (int i = 0; ok && i < f->n_labels; i++)
        ok = (s->values[i] = strdup(values[i])) != NULL;
    if (!ok) {
        free_series(f, s);
        return NULL;
    }
    *f->tail = s;
    f->tail = &s->next;
    f->n_series++;
    return s;
}

static void update(metric *f, const char *const *values, double v, int add)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->owner->lock);
    series *s = find_series(f, values, 1);
    if (s)
        s->value = add ? s->value + v : v;
    pthread_mutex_unlock(&f->owner->lock);
}

void metric_add(metric *f, const char *const *values, double delta)
{
    update(f, values, delta, 1);
}

void metric_set(metric *f, const char *const *values, double value)
{
    update(f, values, value, 0);
}

double metric_get(metric *f, const char *const *values)
{
    if (!f)
        return 0;
    pthread_mutex_lock(&f->owner->lock);
    series *s = find_series(f, values, 0);
    double v = s ? s->value : 0;
    pthread_mutex_unlock(&f->owner->lock);
    return v;
}

/* Escape \ and newline (help) and also " (label values). */
static int put_escaped(vk_buf *out, const char *s, int quotes)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        if (*s == '\\')
            rc = vk_buf_puts(out, "\\\\");
        else if (*s == '\n')
            rc = vk_buf_puts(out, "\\n");
        else if (*s == '"' && quotes)
            rc = vk_buf_puts(out, "\\\"");
        else
            rc = vk_buf_append(out, s, 1);
    }
    return rc;
}

static int put_value(vk_buf *out, double v)
{
    /* Counters are whole numbers: print them without an exponent. */
    if (v == floor(v) && fabs(v) < 9007199254740992.0)
        return vk_buf_printf(out, " %.0f\n", v);
    return vk_buf_printf(out, " %.17g\n", v);
}

static int render_family(const metric *f, vk_buf *out)
{
    int rc = vk_buf_printf(out, "# HELP %s ", f->name);
    rc |= put_escaped(out, f->help, 0);
    rc |= vk_buf_printf(out, "\n# TYPE %s %s\n", f->name, f->type);
    if (f->n_labels == 0 && !f->first)
        return rc | vk_buf_printf(out, "%s 0\n", f->name);
    for (const series *s = f->first; s; s = s->next) {
        rc |= vk_buf_puts(out, f->name);
        for (int i = 0; i < f->n_labels; i++) {
            rc |= vk_buf_printf(out, "%c%s=\"", i ? ',' : '{', f->labels[i]);
            rc |= put_escaped(out, s->values[i], 1);
            rc |= vk_buf_puts(out, "\"");
        }
        if (f->n_labels)
            rc |= vk_buf_puts(out, "}");
        rc |= put_value(out, s->value);
    }
    return rc;
}

void metrics_on_render(metrics *m, metrics_collect_fn fn, void *ud)
{
    m->collect = fn;
    m->collect_ud = ud;
}

int metrics_render(metrics *m, vk_buf *out)
{
    int rc = 0;
    /* Unlocked: the collector sets gauges, which takes the lock. */
    if (m->collect)
        m->collect(m->collect_ud);
    pthread_mutex_lock(&m->lock);
    for (const metric *f = m->first; f; f = f->next)
        rc |= render_family(f, out);
    pthread_mutex_unlock(&m->lock);
    return rc ? -1 : 0;
}
