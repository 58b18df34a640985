/* podkey.c -- "ns/name\0ns\0name\0" in one block. */
#include "podkey.h"

#include <stdlib.h>
#include <string.h>

static char *build(const char *ns, size_t nl, const char *name, const char **ns_out,
                   const char **name_out)
{
    size_t ml = strlen(name);
    char *b = malloc(2 * (nl + ml) + 4); /* "ns/name" NUL, ns NUL, name NUL */
    if (!b)
        return NULL;
    char *p = b;
    memcpy(p, ns, nl);
    p[nl] = '/';
    memcpy(p + nl + 1, name, ml + 1);
    p += nl + ml + 2;
    memcpy(p, ns, nl);
    p[nl] = '\0';
    *ns_out = p;
    p += nl + 1;
    memcpy(p, name, ml + 1);
    *name_out = p;
    return b;
}

char *podkey_new(const char *ns, const char *name, const char **ns_out, const char **name_out)
{
    return build(ns, strlen(ns), name, ns_out, name_out);
}

char *podkey_split(const char *key, const char **ns_out, const char **name_out)
{
    const char *slash = strchr(key, '/');
    return slash ? build(key, (size_t)(slash - key), slash + 1, ns_out, name_out) : NULL;
}
