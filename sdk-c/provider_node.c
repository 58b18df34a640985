/* provider_node.c -- the result builders handed to callbacks: vk_node for
 * GetNode/WatchNode and vk_pod_list for GetPods.
 *
 * The builder functions return nothing, so that a get_node callback stays a
 * plain list of calls; running out of memory is remembered instead and
 * turns the whole result into an INTERNAL error.
 */
#include "provider_internal.h"

#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

/* A string map that keeps the last value set for a key. */
struct kvs {
    char **key, **value;
    size_t n, cap;
};

enum { MAP_CAPACITY, MAP_ALLOCATABLE, MAP_LABELS, MAP_COUNT };

struct vk_node {
    struct kvs maps[MAP_COUNT];
    struct kvs info;
    yajl_gen conditions, addresses; /* arrays left open until the end */
    yajl_gen info_json;
    char *os;
    bool failed;
    /* What vk_node_message built, freed with the node. */
    ProtobufCMessage **entry_ptrs[MAP_COUNT];
    void *entries[MAP_COUNT];
};

static int kvs_set(struct kvs *m, const char *key, const char *value)
{
    char *v = strdup(value);
    if (v == NULL)
        return -1;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->key[i], key) == 0) {
            free(m->value[i]);
            m->value[i] = v;
            return 0;
        }
    }
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        char **k = realloc(m->key, cap * sizeof *k);
        if (k == NULL)
            goto fail;
        m->key = k;
        char **vs = realloc(m->value, cap * sizeof *vs);
        if (vs == NULL)
            goto fail;
        m->value = vs;
        m->cap = cap;
    }
    if ((m->key[m->n] = strdup(key)) == NULL)
        goto fail;
    m->value[m->n++] = v;
    return 0;
fail:
    free(v);
    return -1;
}

static void kvs_free(struct kvs *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->key[i]);
        free(m->value[i]);
    }
    free(m->key);
    free(m->value);
}

vk_node *vk_node_new(void)
{
    return calloc(1, sizeof(vk_node));
}

void vk_node_free(vk_node *n)
{
    if (n == NULL)
        return;
    for (int i = 0; i < MAP_COUNT; i++) {
        kvs_free(&n->maps[i]);
        free(n->entry_ptrs[i]);
        free(n->entries[i]);
    }
    kvs_free(&n->info);
    if (n->conditions)
        yajl_gen_free(n->conditions);
    if (n->addresses)
        yajl_gen_free(n->addresses);
    if (n->info_json)
        yajl_gen_free(n->info_json);
    free(n->os);
    free(n);
}

static void set(vk_node *n, int map, const char *key, const char *value)
{
    if (key == NULL || value == NULL || kvs_set(&n->maps[map], key, value) < 0)
        n->failed = true;
}

void vk_node_capacity(vk_node *n, const char *resource, const char *quantity)
{
    set(n, MAP_CAPACITY, resource, quantity);
}

void vk_node_allocatable(vk_node *n, const char *resource, const char *quantity)
{
    set(n, MAP_ALLOCATABLE, resource, quantity);
}

void vk_node_label(vk_node *n, const char *key, const char *value)
{
    set(n, MAP_LABELS, key, value);
}

void vk_node_info(vk_node *n, const char *field, const char *value)
{
    if (field == NULL || value == NULL || kvs_set(&n->info, field, value) < 0)
        n->failed = true;
}

void vk_node_os(vk_node *n, const char *os)
{
    free(n->os);
    if ((n->os = strdup(os ? os : "")) == NULL)
        n->failed = true;
}

static void gen_str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void gen_member(yajl_gen g, const char *key, const char *value)
{
    if (value == NULL)
        return;
    gen_str(g, key);
    gen_str(g, value);
}

/* The array generator *g, opened on first use; NULL when memory ran out. */
static yajl_gen array_gen(vk_node *n, yajl_gen *g)
{
    if (*g == NULL) {
        if ((*g = yajl_gen_alloc(NULL)) == NULL) {
            n->failed = true;
            return NULL;
        }
        yajl_gen_array_open(*g);
    }
    return *g;
}

void vk_node_condition(vk_node *n, const char *type, const char *status,
                       const char *reason, const char *message)
{
    yajl_gen g = array_gen(n, &n->conditions);
    if (g == NULL)
        return;
    yajl_gen_map_open(g);
    gen_member(g, "type", type);
    gen_member(g, "status", status);
    gen_member(g, "reason", reason);
    gen_member(g, "message", message);
    yajl_gen_map_close(g);
}

void vk_node_address(vk_node *n, const char *type, const char *address)
{
    yajl_gen g = array_gen(n, &n->addresses);
    if (g == NULL)
        return;
    yajl_gen_map_open(g);
    gen_member(g, "type", type);
    gen_member(g, "address", address);
    yajl_gen_map_close(g);
}

/* The bytes of a generator, or nothing when it was never used. */
static ProtobufCBinaryData gen_bytes(yajl_gen g)
{
    ProtobufCBinaryData b = {0, NULL};
    const unsigned char *buf;
    size_t len;
    if (g != NULL && yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok) {
        b.data = (uint8_t *)buf;
        b.len = len;
    }
    return b;
}

/* The three maps of Node are repeated {key, value} entry messages of three
 * types; build them through the descriptor rather than thrice by hand. */
static int map_entries(vk_node *n, int map, const ProtobufCMessageDescriptor *desc,
                       size_t *count, void *out)
{
    const struct kvs *m = &n->maps[map];
    *count = m->n;
    if (m->n == 0)
        return 0;
    char *block = calloc(m->n, desc->sizeof_message);
    ProtobufCMessage **ptrs = calloc(m->n, sizeof *ptrs);
    if (block == NULL || ptrs == NULL) {
        free(block);
        free(ptrs);
        return -1;
    }
    for (size_t i = 0; i < m->n; i++) {
        ProtobufCMessage *e = (ProtobufCMessage *)(block + i * desc->sizeof_message);
        protobuf_c_message_init(desc, e);
        *(char **)((char *)e + desc->fields[0].offset) = m->key[i];
        *(char **)((char *)e + desc->fields[1].offset) = m->value[i];
        ptrs[i] = e;
    }
    n->entries[map] = block;
    n->entry_ptrs[map] = ptrs;
    memcpy(out, &ptrs, sizeof ptrs);
    return 0;
}

int vk_node_message(vk_node *n, Vkc__Provider__V1__Node *msg)
{
    *msg = (Vkc__Provider__V1__Node)VKC__PROVIDER__V1__NODE__INIT;
    if (n->failed ||
        map_entries(n, MAP_CAPACITY, &vkc__provider__v1__node__capacity_entry__descriptor,
                    &msg->n_capacity, &msg->capacity) < 0 ||
        map_entries(n, MAP_ALLOCATABLE, &vkc__provider__v1__node__allocatable_entry__descriptor,
                    &msg->n_allocatable, &msg->allocatable) < 0 ||
        map_entries(n, MAP_LABELS, &vkc__provider__v1__node__labels_entry__descriptor,
                    &msg->n_labels, &msg->labels) < 0)
        return -1;

    if (n->conditions != NULL)
        yajl_gen_array_close(n->conditions);
    if (n->addresses != NULL)
        yajl_gen_array_close(n->addresses);
    if (n->info.n > 0) {
        if ((n->info_json = yajl_gen_alloc(NULL)) == NULL)
            return -1;
        yajl_gen_map_open(n->info_json);
        for (size_t i = 0; i < n->info.n; i++)
            gen_member(n->info_json, n->info.key[i], n->info.value[i]);
        yajl_gen_map_close(n->info_json);
    }
    msg->conditions_json = gen_bytes(n->conditions);
    msg->addresses_json = gen_bytes(n->addresses);
    msg->node_info_json = gen_bytes(n->info_json);
    msg->operating_system = n->os ? n->os : "";
    return 0;
}

/* ---- GetPods ------------------------------------------------------------ */

struct vk_pod_list {
    ProtobufCBinaryData *items;
    size_t n, cap;
    bool failed;
};

vk_pod_list *vk_pod_list_new(void)
{
    return calloc(1, sizeof(vk_pod_list));
}

void vk_pod_list_free(vk_pod_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].data);
    free(l->items);
    free(l);
}

void vk_pod_list_add(vk_pod_list *l, const char *pod_json, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        ProtobufCBinaryData *items = realloc(l->items, cap * sizeof *items);
        if (items == NULL) {
            l->failed = true;
            return;
        }
        l->items = items;
        l->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) {
        l->failed = true;
        return;
    }
    if (len > 0)
        memcpy(copy, pod_json, len);
    l->items[l->n].data = copy;
    l->items[l->n].len = len;
    l->n++;
}

int vk_pod_list_message(vk_pod_list *l, Vkc__Provider__V1__GetPodsResponse *resp)
{
    if (l->failed)
        return -1;
    resp->n_pods_json = l->n;
    resp->pods_json = l->items;
    return 0;
}
