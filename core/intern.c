/* intern.c -- a refcounted set of strings, chained hash table. */
#include "intern.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct istr {
    struct istr *next;
    size_t refs;
    char s[];
} istr;

/* The table exists while a string does: with none left it is freed, so a
 * daemon that released everything ends with nothing allocated here. */
static struct {
    pthread_mutex_t lock;
    istr **buckets;
    size_t n_buckets, count;
} table = {.lock = PTHREAD_MUTEX_INITIALIZER};

#define MIN_BUCKETS 256

static size_t hash(const char *s)
{
    uint64_t h = 14695981039346656037u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (size_t)h;
}

/* Double the table when it is full; a failure only makes chains longer. */
static void grow(void)
{
    size_t n = table.n_buckets ? table.n_buckets * 2 : MIN_BUCKETS;
    istr **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < table.n_buckets; i++) {
        for (istr *e = table.buckets[i], *next; e; e = next) {
            next = e->next;
            istr **head = &b[hash(e->s) & (n - 1)];
            e->next = *head;
            *head = e;
        }
    }
    free(table.buckets);
    table.buckets = b;
    table.n_buckets = n;
}

const char *intern(const char *s)
{
    const char *out = NULL;
    pthread_mutex_lock(&table.lock);
    if (table.count >= table.n_buckets)
        grow();
    if (!table.buckets)
        goto done;
    istr **head = &table.buckets[hash(s) & (table.n_buckets - 1)];
    for (istr *e = *head; e; e = e->next) {
        if (!strcmp(e->s, s)) {
            e->refs++;
            out = e->s;
            goto done;
        }
    }
    size_t len = strlen(s);
    istr *e = malloc(offsetof(istr, s) + len + 1);
    if (!e)
        goto done;
    memcpy(e->s, s, len + 1);
    e->refs = 1;
    e->next = *head;
    *head = e;
    table.count++;
    out = e->s;
done:
    pthread_mutex_unlock(&table.lock);
    return out;
}

void unintern(const char *s)
{
    if (!s)
        return;
    istr *me = (istr *)(void *)((char *)(uintptr_t)s - offsetof(istr, s));
    pthread_mutex_lock(&table.lock);
    if (--me->refs == 0) {
        istr **pp = &table.buckets[hash(s) & (table.n_buckets - 1)];
        while (*pp != me)
            pp = &(*pp)->next;
        *pp = me->next;
        free(me);
        if (--table.count == 0) {
            free(table.buckets);
            table.buckets = NULL;
            table.n_buckets = 0;
        }
    }
    pthread_mutex_unlock(&table.lock);
}
