/* pullcreds.c -- which registry credentials of a pod's imagePullSecrets go
 * with an image pull: the kubelet's BasicDockerKeyring (credentialprovider).
 *
 * Each entry of a docker config is keyed by its registry, scheme and the
 * /v1/ or /v2/ API prefix dropped ("https://index.docker.io/v1/" becomes
 * "index.docker.io"). An image matches a key when the hosts have as many
 * dot-separated labels, each label matches as a glob ("*.example.com"), the
 * ports are equal and the key's path is a prefix of the image's. Keys are
 * tried most specific first (reverse lexical order, so "quay.io/team"
 * before "quay.io"). An image is looked up as the kubelet does, by its
 * normalised repository without tag or digest ("busybox:1" is
 * "docker.io/library/busybox", so an entry for "docker.io" matches it); one
 * that no key matches falls back to Docker Hub's entry when it is Docker
 * Hub's ("docker.io/...": not "localhost/x" nor "host:5000/x").
 */
#include "cri.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define DEFAULT_REGISTRY "index.docker.io"
#define MAX_ENTRIES 256     /* per keyring: pull secrets are a handful */

static char *dup_or_null(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

static void wipe(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void cred_free(pull_cred *c)
{
    free(c->key);
    wipe(c->username);
    wipe(c->password);
    wipe(c->auth);
    wipe(c->identity_token);
    wipe(c->registry_token);
}

void keyring_free(pull_keyring *k)
{
    for (size_t i = 0; i < k->n; i++)
        cred_free(&k->items[i]);
    free(k->items);
    *k = (pull_keyring){0};
}

/* "https://host:port/v1/path/" -> "host:port/path", the keyring's key. */
static char *registry_key(const char *loc)
{
    const char *s = loc;
    if (strncmp(s, "https://", 8) == 0)
        s += 8;
    else if (strncmp(s, "http://", 7) == 0)
        s += 7;
    size_t host = strcspn(s, "/");
    const char *path = s + host;
    if (strncmp(path, "/v1/", 4) == 0 || strncmp(path, "/v2/", 4) == 0)
        path += 3;
    if (strcmp(path, "/") == 0)
        path = "";
    if (!host)
        return NULL;
    size_t n = host + strlen(path);
    char *key = malloc(n + 1);
    if (key)
        snprintf(key, n + 1, "%.*s%s", (int)host, s, path);
    return key;
}

/* One entry: username/password, or "auth" (base64 of user:password),
 * which wins as in the kubelet; and the tokens docker configs may carry. */
static int add_entry(pull_keyring *k, const char *loc, yajl_val e)
{
    if (k->n == MAX_ENTRIES || !YAJL_IS_OBJECT(e))
        return -1;
    if (k->n == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        pull_cred *items = realloc(k->items, cap * sizeof *items);
        if (!items)
            return -1;
        k->items = items;
        k->cap = cap;
    }
    pull_cred c = {.key = registry_key(loc), .seq = k->n};
    const char *auth = vk_json_str(vk_json_member(e, "auth"), NULL);
    c.username = dup_or_null(vk_json_str(vk_json_member(e, "username"), NULL));
    c.password = dup_or_null(vk_json_str(vk_json_member(e, "password"), NULL));
    c.auth = dup_or_null(auth);
    c.identity_token = dup_or_null(vk_json_str(vk_json_member(e, "identitytoken"), NULL));
    c.registry_token = dup_or_null(vk_json_str(vk_json_member(e, "registrytoken"), NULL));
    int rc = c.key ? 0 : -1;
    if (rc == 0 && auth && auth[0]) {
        vk_buf b = VK_BUF_INIT;
        char *colon = NULL;
        if (vk_base64_decode(auth, strlen(auth), &b) == 0 && b.data)
            colon = strchr(b.data, ':');
        if (!colon) {
            rc = -1;
        } else {
            *colon = '\0';
            wipe(c.username);
            wipe(c.password);
            c.username = strdup(b.data);
            c.password = strdup(colon + 1);
        }
        if (b.data)
            explicit_bzero(b.data, b.len);
        vk_buf_free(&b);
    }
    if (rc < 0) {
        cred_free(&c);
        return -1;
    }
    k->items[k->n++] = c;
    return 0;
}

int keyring_add_config(pull_keyring *k, const char *json, size_t len, bool dockercfg)
{
    yajl_val doc = vk_json_parse_bytes(json, len, NULL, 0);
    yajl_val auths = dockercfg ? doc : vk_json_member(doc, "auths");
    int rc = YAJL_IS_OBJECT(auths) ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < auths->u.object.len; i++)
        rc = add_entry(k, auths->u.object.keys[i], auths->u.object.values[i]);
    yajl_tree_free(doc);
    return rc;
}

int keyring_add_secret(pull_keyring *k, const char *secret_json, size_t len)
{
    yajl_val s = vk_json_parse_bytes(secret_json, len, NULL, 0);
    const char *type = vk_json_str(vk_json_member(s, "type"), "");
    bool cfg = strcmp(type, "kubernetes.io/dockercfg") == 0;
    const char *data = NULL;
    if (cfg || strcmp(type, "kubernetes.io/dockerconfigjson") == 0)
        data = vk_json_str(vk_json_get(s, "data", cfg ? ".dockercfg" : ".dockerconfigjson", NULL),
                           NULL);
    vk_buf b = VK_BUF_INIT;
    int rc = -1;
    if (data && vk_base64_decode(data, strlen(data), &b) == 0 && b.len)
        rc = keyring_add_config(k, b.data, b.len, cfg);
    if (b.data)
        explicit_bzero(b.data, b.len);
    vk_buf_free(&b);
    yajl_tree_free(s);
    return rc;
}

/* ---- matching ------------------------------------------------------------------------ */

typedef struct url_parts {
    char host[256];     /* without the port, nor an IPv6 address's brackets */
    char port[16];
    const char *path;   /* from the first '/', "" when none */
} url_parts;

/* "host[:port][/path]" or "[v6][:port][/path]". */
static int split(const char *s, url_parts *u)
{
    size_t hp = strcspn(s, "/");
    const char *host = s, *port = NULL;
    size_t hl = hp, pl = 0;
    if (!hp)
        return -1;
    if (s[0] == '[') {
        const char *end = memchr(s, ']', hp);
        if (!end)
            return -1;
        host = s + 1;
        hl = (size_t)(end - host);
        if (end + 1 < s + hp) {
            if (end[1] != ':')
                return -1;
            port = end + 2;
        }
    } else {
        const char *colon = memchr(s, ':', hp);
        if (colon) {
            hl = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    if (port)
        pl = (size_t)(s + hp - port);
    if (!hl || hl >= sizeof u->host || pl >= sizeof u->port)
        return -1;
    snprintf(u->host, sizeof u->host, "%.*s", (int)hl, host);
    snprintf(u->port, sizeof u->port, "%.*s", (int)pl, port ? port : "");
    u->path = s + hp;
    return 0;
}

static size_t labels(const char *host)
{
    size_t n = 1;
    for (; *host; host++)
        n += *host == '.';
    return n;
}

/* URLsMatch of the kubelet: glob host labels, equal ports, path prefix. */
static bool key_matches(const char *key, const char *image)
{
    url_parts g, t;
    if (split(key, &g) < 0 || split(image, &t) < 0 || strcmp(g.port, t.port) != 0 ||
        labels(g.host) != labels(t.host))
        return false;
    char *gs = g.host, *ts = t.host;
    for (;;) {
        char *gd = strchr(gs, '.'), *td = strchr(ts, '.');
        if (gd)
            *gd = '\0';
        if (td)
            *td = '\0';
        if (fnmatch(gs, ts, 0) != 0)
            return false;
        if (!gd)
            break;
        gs = gd + 1;
        ts = td + 1;
    }
    return strncmp(t.path, g.path, strlen(g.path)) == 0;
}

/* The repository the kubelet looks credentials up for: docker's
 * ParseNormalizedNamed, tag and digest dropped. "busybox:1.36" is
 * "docker.io/library/busybox", "index.docker.io/a/b" "docker.io/a/b"; the
 * first part names a registry only with a '.' or a ':' in it, or as
 * "localhost", or with an upper-case letter. malloc'd, NULL without memory. */
static char *repository(const char *image)
{
    size_t n = strcspn(image, "@");
    const char *last = NULL;
    for (size_t i = 0; i < n; i++)
        if (image[i] == '/')
            last = image + i;
    const char *from = last ? last : image;
    const char *tag = memchr(from, ':', n - (size_t)(from - image));
    if (tag)
        n = (size_t)(tag - image);
    size_t first = strcspn(image, "/");
    const char *domain = "docker.io", *rest = image;
    size_t dlen = 9, rlen = n;
    if (first < n) {
        bool registry = first == 9 && strncmp(image, "localhost", 9) == 0;
        for (size_t i = 0; i < first; i++)
            registry |= image[i] == '.' || image[i] == ':' || (image[i] >= 'A' && image[i] <= 'Z');
        if (registry) {
            domain = image;
            dlen = first;
            rest = image + first + 1;
            rlen = n - first - 1;
        }
    }
    if (dlen == 15 && strncmp(domain, "index.docker.io", 15) == 0) {
        domain = "docker.io";
        dlen = 9;
    }
    bool library = dlen == 9 && strncmp(domain, "docker.io", 9) == 0 && !memchr(rest, '/', rlen);
    size_t len = dlen + rlen + 10;
    char *repo = malloc(len);
    if (repo)
        snprintf(repo, len, "%.*s/%s%.*s", (int)dlen, domain, library ? "library/" : "",
                 (int)rlen, rest);
    return repo;
}

/* isDefaultRegistryMatch of the kubelet, for a normalised repository. */
static bool docker_hub(const char *repo)
{
    size_t first = strcspn(repo, "/");
    if (!first)
        return false;
    if (!repo[first])
        return true;
    if ((first == 9 && strncmp(repo, "docker.io", 9) == 0) ||
        (first == 15 && strncmp(repo, "index.docker.io", 15) == 0))
        return true;
    if (first == 9 && strncmp(repo, "localhost", 9) == 0)
        return false;
    return memchr(repo, '.', first) == NULL && memchr(repo, ':', first) == NULL;
}

/* Most specific key first; entries of one key in the order they came. */
static int by_key_desc(const void *a, const void *b)
{
    const pull_cred *x = *(const pull_cred *const *)a, *y = *(const pull_cred *const *)b;
    int c = strcmp(y->key, x->key);
    return c ? c : (x->seq > y->seq) - (x->seq < y->seq);
}

size_t keyring_lookup(const pull_keyring *k, const char *image, const pull_cred **out,
                      size_t max)
{
    char *repo = repository(image);
    size_t n = 0;
    if (!repo)
        return 0;
    for (size_t i = 0; i < k->n && n < max; i++)
        if (key_matches(k->items[i].key, repo))
            out[n++] = &k->items[i];
    for (size_t i = 0; !n && docker_hub(repo) && i < k->n && n < max; i++)
        if (strcmp(k->items[i].key, DEFAULT_REGISTRY) == 0)
            out[n++] = &k->items[i];
    free(repo);
    qsort(out, n, sizeof *out, by_key_desc);
    return n;
}
