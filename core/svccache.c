/* svccache.c -- Services in a flat array, searched linearly: service links
 * are computed once per pod start, and a node's cluster has a few hundred
 * services, not millions. */
#include "svccache.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kube_reflector.h"

typedef struct svc {
    env_service view;   /* points into the strings below */
    char *ns, *name, *ip;
    env_port *ports;
    char **port_strs;   /* name and protocol of each port */
} svc;

struct svccache {
    struct kube_reflector *refl;
    svc *items;
    size_t n, cap;
    env_service *scratch;
    size_t scratch_cap;
    bool synced;
    void (*on_synced)(void *ud);
    void *ud;
};

static void svc_clear(svc *s)
{
    for (size_t i = 0; s->port_strs && i < 2 * s->view.n_ports; i++)
        free(s->port_strs[i]);
    free(s->port_strs);
    free(s->ports);
    free(s->ns);
    free(s->name);
    free(s->ip);
    memset(s, 0, sizeof *s);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Fill s from a Service object. -1 when memory ran out or it has no name. */
static int svc_parse(svc *s, yajl_val obj)
{
    memset(s, 0, sizeof *s);
    const char *ns = vk_json_str(vk_json_get(obj, "metadata", "namespace", NULL), NULL);
    const char *name = vk_json_str(vk_json_get(obj, "metadata", "name", NULL), NULL);
    if (!ns || !name)
        return -1;
    s->ns = strdup(ns);
    s->name = strdup(name);
    s->ip = dup_or_null(vk_json_str(vk_json_get(obj, "spec", "clusterIP", NULL), NULL));
    yajl_val ports = vk_json_get(obj, "spec", "ports", NULL);
    size_t n = YAJL_IS_ARRAY(ports) ? ports->u.array.len : 0;
    if (n) {
        s->ports = calloc(n, sizeof *s->ports);
        s->port_strs = calloc(2 * n, sizeof *s->port_strs);
        if (!s->ports || !s->port_strs) {
            svc_clear(s);
            return -1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        yajl_val p = ports->u.array.values[i];
        s->port_strs[2 * i] = dup_or_null(vk_json_str(vk_json_member(p, "name"), NULL));
        s->port_strs[2 * i + 1] = dup_or_null(vk_json_str(vk_json_member(p, "protocol"), NULL));
        s->ports[i].name = s->port_strs[2 * i];
        s->ports[i].protocol = s->port_strs[2 * i + 1];
        s->ports[i].port = (int32_t)vk_json_int(vk_json_member(p, "port"), 0);
    }
    s->view = (env_service){
        .ns = s->ns, .name = s->name, .cluster_ip = s->ip, .ports = s->ports, .n_ports = n,
    };
    if (!s->ns || !s->name) {
        svc_clear(s);
        return -1;
    }
    return 0;
}

static svc *find(svccache *sc, const char *ns, const char *name)
{
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->items[i].ns, ns) && !strcmp(sc->items[i].name, name))
            return &sc->items[i];
    return NULL;
}

static void put(svccache *sc, yajl_val obj)
{
    svc s;
    if (svc_parse(&s, obj) < 0)
        return;
    svc *old = find(sc, s.ns, s.name);
    if (old) {
        svc_clear(old);
        *old = s;
        return;
    }
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        svc *p = realloc(sc->items, cap * sizeof *p);
        if (!p) {
            svc_clear(&s);
            return;
        }
        sc->items = p;
        sc->cap = cap;
    }
    sc->items[sc->n++] = s;
}

static void on_replace(void *ud, yajl_val *items, size_t n)
{
    svccache *sc = ud;
    for (size_t i = 0; i < sc->n; i++)
        svc_clear(&sc->items[i]);
    sc->n = 0;
    for (size_t i = 0; i < n; i++)
        put(sc, items[i]);
    sc->synced = true;
    if (sc->on_synced)
        sc->on_synced(sc->ud);
}

static void on_event(void *ud, enum kube_event_type type, yajl_val *object)
{
    svccache *sc = ud;
    if (type != KUBE_DELETED) {
        put(sc, *object);
        return;
    }
    svc *s = find(sc, vk_json_str(vk_json_get(*object, "metadata", "namespace", NULL), ""),
                  vk_json_str(vk_json_get(*object, "metadata", "name", NULL), ""));
    if (s) {
        svc_clear(s);
        *s = sc->items[--sc->n];
    }
}

svccache *svccache_start(struct kube_client *kube, void (*synced)(void *ud), void *ud)
{
    svccache *sc = calloc(1, sizeof *sc);
    if (!sc)
        return NULL;
    sc->on_synced = synced;
    sc->ud = ud;
    struct kube_reflector_config cfg = {
        .path = "/api/v1/services",
        .on_replace = on_replace,
        .on_event = on_event,
        .ud = sc,
    };
    sc->refl = kube_reflector_start(kube, &cfg);
    if (!sc->refl) {
        free(sc);
        return NULL;
    }
    return sc;
}

void svccache_free(svccache *sc)
{
    if (!sc)
        return;
    kube_reflector_free(sc->refl);
    for (size_t i = 0; i < sc->n; i++)
        svc_clear(&sc->items[i]);
    free(sc->items);
    free(sc->scratch);
    free(sc);
}

bool svccache_synced(const svccache *sc)
{
    return sc->synced;
}

const env_service *svccache_for(svccache *sc, const char *ns, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < sc->n; i++) {
        const svc *s = &sc->items[i];
        if (strcmp(s->ns, ns) != 0 && !(!strcmp(s->ns, "default") && !strcmp(s->name, "kubernetes")))
            continue;
        if (*n == sc->scratch_cap) {
            size_t cap = sc->scratch_cap ? sc->scratch_cap * 2 : 16;
            env_service *p = realloc(sc->scratch, cap * sizeof *p);
            if (!p)
                break; /* fewer links rather than none */
            sc->scratch = p;
            sc->scratch_cap = cap;
        }
        sc->scratch[(*n)++] = s->view;
    }
    return sc->scratch;
}
