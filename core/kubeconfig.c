/* kubeconfig.c -- kubeconfig files (through libyaml's document API) and the
 * in-cluster service account. */
#include "kubeconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <yaml.h>

#include "base64.h"
#include "buf.h"
#include "log.h"
#include "logval.h"

/* Bounds on what we read: a kubeconfig with a few embedded certificates is
 * a few kilobytes, so these only stop a wrong path (a device, a huge file)
 * from eating memory. */
#define MAX_KUBECONFIG (16u << 20)
#define MAX_PEM        (4u << 20)
#define MAX_TOKEN      (1u << 20)

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* A name quoted by `quoted`: logval's output and the quotes it may lack. */
#define QUOTED_MAX (LOGVAL_MAX + 2)

static int failf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* Read a whole file into a NUL-terminated malloc'ed buffer. 0, or
 * -1 with errno set (EFBIG past max). */
static int slurp(const char *path, size_t max, char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    vk_buf b = VK_BUF_INIT;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        if (b.len + (size_t)n > max) {
            errno = EFBIG;
            goto fail;
        }
        if (vk_buf_append(&b, chunk, (size_t)n) < 0) {
            errno = ENOMEM;
            goto fail;
        }
    }
    close(fd);
    *data = vk_buf_steal(&b, len);
    if (!*data) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
fail:;
    int saved = errno;
    close(fd);
    if (b.data)
        explicit_bzero(b.data, b.cap);
    vk_buf_free(&b);
    errno = saved;
    return -1;
}

/* A name from the file (or --context) for a message, in quotes and escaped
 * as logval escapes: a newline or a quote in the name can neither break
 * the one-line message kubeconfig.h promises nor end the name early. */
static const char *quoted(char *buf, size_t cap, const char *s)
{
    char v[LOGVAL_MAX];
    logval(v, sizeof v, s);
    /* logval quotes only what needs escaping; what it left bare is safe. */
    bool bare = v[0] != '"';
    snprintf(buf, cap, "%s%s%s", bare ? "\"" : "", v, bare ? "\"" : "");
    return buf;
}

static void wipe_free(char *p, size_t len)
{
    if (p)
        explicit_bzero(p, len);
    free(p);
}

/* Strip surrounding whitespace in place (token files end in a newline). */
static void trim(char *s)
{
    size_t n = strlen(s), i = 0;
    while (n > 0 && strchr(" \t\r\n", s[n - 1]))
        s[--n] = '\0';
    while (s[i] && strchr(" \t\r\n", s[i]))
        i++;
    memmove(s, s + i, n - i + 1);
}

/* Replace out's contents with what in encodes (see base64.h). */
static int base64_decode(const char *in, vk_buf *out)
{
    vk_buf_reset(out);
    return vk_base64_decode(in, strlen(in), out);
}

/* ---- kubeconfig files ------------------------------------------------------ */

typedef struct kc {
    const char *path;
    char path_v[LOGVAL_MAX]; /* path escaped, for messages and logs */
    char *dir;            /* directory relative paths resolve against, NULL for cwd */
    yaml_document_t doc;
    char *err;
    size_t errlen;
} kc;

static int fail_at(kc *k, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "kubeconfig PATH: line N: ..." */
static int fail_at(kc *k, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        return failf(k->err, k->errlen, "kubeconfig %s: line %zu: %s", k->path_v,
                     n->start_mark.line + 1, msg);
    return failf(k->err, k->errlen, "kubeconfig %s: %s", k->path_v, msg);
}

static yaml_node_t *node_at(kc *k, int id)
{
    return yaml_document_get_node(&k->doc, id);
}

static bool is_null(const yaml_node_t *n)
{
    if (!n)
        return true;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") ||
           !strcmp(v, "NULL");
}

static bool key_is(kc *k, const yaml_node_pair_t *pair, const char *key)
{
    yaml_node_t *kn = node_at(k, pair->key);
    return kn && kn->type == YAML_SCALAR_NODE &&
           strcmp((const char *)kn->data.scalar.value, key) == 0;
}

/* Member key of mapping map, or NULL; with duplicate keys the last wins, as
 * when kubectl decodes the file. */
static yaml_node_t *map_get(kc *k, yaml_node_t *map, const char *key)
{
    yaml_node_t *found = NULL;
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++)
        if (key_is(k, p, key))
            found = node_at(k, p->value);
    return found;
}

/* Whether a pair in [from, to) has key: a key given twice is reported once. */
static bool has_key_before(kc *k, yaml_node_pair_t *from, yaml_node_pair_t *to, const char *key)
{
    for (yaml_node_pair_t *p = from; p < to; p++)
        if (key_is(k, p, key))
            return true;
    return false;
}

/* Unknown fields are not errors: kubeconfigs carry extensions, preferences
 * and fields of newer kubectl versions. Say which ones were skipped, each
 * once per load, for whoever wonders why a setting had no effect: by path
 * ("users[0].user.foo"), never by value, which may be a secret. */
static void skip_unknown(kc *k, yaml_node_t *map, const char *where, const char *const *known)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return;
    yaml_node_pair_t *start = map->data.mapping.pairs.start;
    yaml_node_pair_t *end = map->data.mapping.pairs.top;
    for (yaml_node_pair_t *p = start; p < end; p++) {
        yaml_node_t *kn = node_at(k, p->key);
        if (!kn || kn->type != YAML_SCALAR_NODE)
            continue;
        const char *key = (const char *)kn->data.scalar.value;
        const char *const *c = known;
        while (*c && strcmp(*c, key) != 0)
            c++;
        if (*c || has_key_before(k, start, p, key))
            continue;
        char field[LOGVAL_MAX], field_v[LOGVAL_MAX];
        snprintf(field, sizeof field, "%s%s", where, key);
        vk_info("kubeconfig field ignored", "file=%s field=%s line=%zu", k->path_v,
                logval(field_v, sizeof field_v, field), kn->start_mark.line + 1);
    }
}

/* *out is the string value of map[key], NULL when absent or null. */
static int get_str(kc *k, yaml_node_t *map, const char *key, const char **out, yaml_node_t **at)
{
    yaml_node_t *n = map_get(k, map, key);
    *out = NULL;
    if (at)
        *at = n;
    if (is_null(n))
        return 0;
    if (n->type != YAML_SCALAR_NODE)
        return fail_at(k, n, "%s: expected a string", key);
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length)
        return fail_at(k, n, "%s: contains a NUL byte", key);
    *out = (const char *)n->data.scalar.value;
    return 0;
}

/* YAML 1.1 booleans, the set kubectl's YAML decoder accepts. */
static int get_bool(kc *k, yaml_node_t *map, const char *key, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES",
                                      "on", "On", "ON", "y", "Y", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO",
                                     "off", "Off", "OFF", "n", "N", NULL};
    yaml_node_t *n = map_get(k, map, key);
    *out = false;
    if (is_null(n))
        return 0;
    if (n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *v = (const char *)n->data.scalar.value;
        for (int i = 0; yes[i]; i++) {
            if (!strcmp(v, yes[i])) {
                *out = true;
                return 0;
            }
            if (!strcmp(v, no[i]))
                return 0;
        }
    }
    return fail_at(k, n, "%s: expected true or false", key);
}

/* The entry named name in the list under top-level key list ("clusters",
 * ...): its inner mapping (under item, "cluster", ...) in *body, the entry
 * itself in *entry for line numbers and the body's path in where
 * ("clusters[2].cluster.") for logs. 1 found, 0 not, -1 error. */
static int find_named(kc *k, yaml_node_t *root, const char *list, const char *item,
                      const char *name, yaml_node_t **entry, yaml_node_t **body,
                      char *where, size_t wherelen)
{
    static const char *const known[] = {"name", "cluster", "user", "context", "extensions", NULL};
    yaml_node_t *seq = map_get(k, root, list);
    *entry = *body = NULL;
    if (is_null(seq))
        return 0;
    if (seq->type != YAML_SEQUENCE_NODE)
        return fail_at(k, seq, "%s: expected a list", list);
    yaml_node_item_t *start = seq->data.sequence.items.start;
    yaml_node_item_t *end = seq->data.sequence.items.top;
    for (yaml_node_item_t *i = start; i < end; i++) {
        yaml_node_t *e = node_at(k, *i);
        const char *ename;
        if (!e || e->type != YAML_MAPPING_NODE)
            return fail_at(k, e, "%s: each entry must be a mapping", list);
        if (get_str(k, e, "name", &ename, NULL) < 0)
            return -1;
        if (!ename || strcmp(ename, name) != 0)
            continue;
        char name_q[QUOTED_MAX];
        if (*entry)
            return fail_at(k, e, "%s: duplicate name %s", list,
                           quoted(name_q, sizeof name_q, name));
        snprintf(where, wherelen, "%s[%td].", list, i - start);
        skip_unknown(k, e, where, known);
        snprintf(where, wherelen, "%s[%td].%s.", list, i - start, item);
        *entry = e;
        *body = map_get(k, e, item);
        if (!is_null(*body) && (*body)->type != YAML_MAPPING_NODE)
            return fail_at(k, *body, "%s %s: %s: expected a mapping", list,
                           quoted(name_q, sizeof name_q, name), item);
    }
    return *entry != NULL;
}

/* path resolved against the kubeconfig's directory; malloc'ed. */
static char *resolve(kc *k, const char *path)
{
    vk_buf b = VK_BUF_INIT;
    if (path[0] == '/' || !k->dir)
        vk_buf_puts(&b, path);
    else
        vk_buf_printf(&b, "%s/%s", k->dir, path);
    return b.data;
}

/* Fill *pem (and *file) from KEY-data (base64, wins, as in kubectl) or
 * KEY (a path). */
static int load_pem(kc *k, yaml_node_t *map, const char *what, const char *key,
                    char **pem, size_t *len, char **file)
{
    char datakey[64];
    const char *data, *path;
    yaml_node_t *data_at, *path_at;
    snprintf(datakey, sizeof datakey, "%s-data", key);
    if (get_str(k, map, datakey, &data, &data_at) < 0 || get_str(k, map, key, &path, &path_at) < 0)
        return -1;
    if (data) {
        if (path)
            vk_debug("kubeconfig: inline data overrides file", "file=%s field=%s", k->path_v, key);
        vk_buf b = VK_BUF_INIT;
        int rc = base64_decode(data, &b);
        if (rc < 0) {
            if (b.data)
                explicit_bzero(b.data, b.cap);
            vk_buf_free(&b);
            return rc == -1 ? fail_at(k, data_at, "%s %s: malformed base64", what, datakey)
                            : fail_at(k, NULL, "out of memory");
        }
        *pem = vk_buf_steal(&b, len);
        return 0;
    }
    if (!path)
        return 0;
    *file = resolve(k, path);
    if (!*file)
        return fail_at(k, NULL, "out of memory");
    if (slurp(*file, MAX_PEM, pem, len) < 0) {
        const char *why = strerror(errno);
        char file_v[LOGVAL_MAX];
        return fail_at(k, path_at, "%s %s: %s: %s", what, key,
                       logval(file_v, sizeof file_v, *file), why);
    }
    return 0;
}

static int dup_into(kc *k, char **dst, const char *src)
{
    if (!src)
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : fail_at(k, NULL, "out of memory");
}

static int load_cluster(kc *k, yaml_node_t *entry, yaml_node_t *c, const char *name,
                        const char *where, kube_config *cfg)
{
    /* proxy-url has its own warning below. */
    static const char *const known[] = {"server", "certificate-authority",
                                        "certificate-authority-data", "insecure-skip-tls-verify",
                                        "tls-server-name", "extensions", "proxy-url", NULL};
    char what[QUOTED_MAX + 16], name_q[QUOTED_MAX], name_v[LOGVAL_MAX];
    const char *server, *sni;
    snprintf(what, sizeof what, "cluster %s:", quoted(name_q, sizeof name_q, name));
    skip_unknown(k, c, where, known);
    if (map_get(k, c, "proxy-url"))
        vk_warn("kubeconfig proxy-url is not supported; connecting directly", "file=%s cluster=%s",
                k->path_v, logval(name_v, sizeof name_v, name));
    if (get_str(k, c, "server", &server, NULL) < 0 ||
        get_str(k, c, "tls-server-name", &sni, NULL) < 0 ||
        get_bool(k, c, "insecure-skip-tls-verify", &cfg->insecure) < 0)
        return -1;
    if (!server)
        return fail_at(k, entry, "%s no server", what);
    if (dup_into(k, &cfg->server, server) < 0 || dup_into(k, &cfg->tls_server_name, sni) < 0 ||
        load_pem(k, c, what, "certificate-authority", &cfg->ca_pem, &cfg->ca_pem_len,
                 &cfg->ca_file) < 0)
        return -1;
    /* client-go refuses this combination rather than guess which one the
     * user meant. */
    if (cfg->insecure && cfg->ca_pem)
        return fail_at(k, entry, "%s certificate-authority together with "
                                 "insecure-skip-tls-verify is not allowed", what);
    return 0;
}

static int load_user(kc *k, yaml_node_t *entry, yaml_node_t *u, const char *name,
                     const char *where, kube_config *cfg)
{
    /* The unsupported ones too: each has its own warning below. */
    static const char *const known[] = {"client-certificate", "client-certificate-data",
                                        "client-key", "client-key-data", "token", "tokenFile",
                                        "extensions", "exec", "auth-provider", "username",
                                        "password", "as", "as-uid", "as-groups", "as-user-extra",
                                        NULL};
    static const char *const unsupported[] = {"exec", "auth-provider", "username", "password",
                                              "as", "as-uid", "as-groups", "as-user-extra", NULL};
    char what[QUOTED_MAX + 16], name_q[QUOTED_MAX], name_v[LOGVAL_MAX];
    const char *token, *token_file;
    yaml_node_t *token_file_at;
    snprintf(what, sizeof what, "user %s:", quoted(name_q, sizeof name_q, name));
    skip_unknown(k, u, where, known);
    for (int i = 0; unsupported[i]; i++)
        if (map_get(k, u, unsupported[i]))
            vk_warn("kubeconfig user field is not supported; ignored", "file=%s user=%s field=%s",
                    k->path_v, logval(name_v, sizeof name_v, name), unsupported[i]);
    if (load_pem(k, u, what, "client-certificate", &cfg->cert_pem, &cfg->cert_pem_len,
                 &cfg->cert_file) < 0 ||
        load_pem(k, u, what, "client-key", &cfg->key_pem, &cfg->key_pem_len, &cfg->key_file) < 0)
        return -1;
    if (!cfg->cert_pem != !cfg->key_pem)
        return fail_at(k, entry, "%s %s without %s", what,
                       cfg->cert_pem ? "client certificate" : "client key",
                       cfg->cert_pem ? "client key" : "client certificate");
    if (get_str(k, u, "token", &token, NULL) < 0 ||
        get_str(k, u, "tokenFile", &token_file, &token_file_at) < 0 ||
        dup_into(k, &cfg->token, token) < 0)
        return -1;
    if (!token_file)
        return 0;
    cfg->token_file = resolve(k, token_file);
    if (!cfg->token_file)
        return fail_at(k, NULL, "out of memory");
    /* Not kept (it is re-read at each use), but a missing file should fail
     * now rather than at the first request. */
    if (!cfg->token) {
        char *t;
        size_t len;
        if (slurp(cfg->token_file, MAX_TOKEN, &t, &len) < 0) {
            const char *why = strerror(errno);
            char file_v[LOGVAL_MAX];
            return fail_at(k, token_file_at, "%s tokenFile: %s: %s", what,
                           logval(file_v, sizeof file_v, cfg->token_file), why);
        }
        wipe_free(t, len);
    }
    return 0;
}

static int parse_error(kc *k, yaml_parser_t *p)
{
    char ctx[200] = "";
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s)", p->context);
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        return fail_at(k, NULL, "out of memory");
    case YAML_READER_ERROR:
        return failf(k->err, k->errlen, "kubeconfig %s: byte %zu: %s", k->path_v,
                     p->problem_offset, p->problem ? p->problem : "unreadable");
    default:
        return failf(k->err, k->errlen, "kubeconfig %s: line %zu: %s%s", k->path_v,
                     p->problem_mark.line + 1, p->problem ? p->problem : "invalid YAML", ctx);
    }
}

static int load_doc(kc *k, yaml_node_t *root, const char *context, kube_config *cfg)
{
    static const char *const known[] = {"apiVersion", "kind", "clusters", "users", "contexts",
                                        "current-context", "preferences", "extensions", NULL};
    static const char *const ctx_known[] = {"cluster", "user", "namespace", "extensions", NULL};
    const char *cluster, *user, *ns;
    yaml_node_t *entry, *body, *cur_at;
    char ctx_q[QUOTED_MAX], name_q[QUOTED_MAX], where[64];
    int r;

    if (root->type != YAML_MAPPING_NODE)
        return fail_at(k, root, "expected a mapping at the top level");
    skip_unknown(k, root, "", known);
    if (!context || !*context) {
        if (get_str(k, root, "current-context", &context, &cur_at) < 0)
            return -1;
        if (!context || !*context)
            return fail_at(k, cur_at, "no current-context is set (and no context was given)");
    }
    quoted(ctx_q, sizeof ctx_q, context);
    r = find_named(k, root, "contexts", "context", context, &entry, &body, where, sizeof where);
    if (r <= 0)
        return r < 0 ? -1 : fail_at(k, NULL, "context %s not found", ctx_q);
    skip_unknown(k, body, where, ctx_known);
    if (get_str(k, body, "cluster", &cluster, NULL) < 0 ||
        get_str(k, body, "user", &user, NULL) < 0 ||
        get_str(k, body, "namespace", &ns, NULL) < 0)
        return -1;
    if (!cluster || !*cluster)
        return fail_at(k, entry, "context %s: no cluster", ctx_q);
    if (dup_into(k, &cfg->namespace, ns && *ns ? ns : "default") < 0)
        return -1;

    yaml_node_t *ctx_entry = entry;
    r = find_named(k, root, "clusters", "cluster", cluster, &entry, &body, where, sizeof where);
    if (r <= 0)
        return r < 0 ? -1 : fail_at(k, ctx_entry, "context %s: cluster %s not found", ctx_q,
                                    quoted(name_q, sizeof name_q, cluster));
    if (load_cluster(k, entry, body, cluster, where, cfg) < 0)
        return -1;

    /* A context without a user is anonymous access, which kubectl allows. */
    if (user && *user) {
        r = find_named(k, root, "users", "user", user, &entry, &body, where, sizeof where);
        if (r <= 0)
            return r < 0 ? -1 : fail_at(k, ctx_entry, "context %s: user %s not found", ctx_q,
                                        quoted(name_q, sizeof name_q, user));
        if (load_user(k, entry, body, user, where, cfg) < 0)
            return -1;
    }

    vk_buf src = VK_BUF_INIT;
    if (vk_buf_printf(&src, "kubeconfig %s (context %s)", k->path, context) < 0)
        return fail_at(k, NULL, "out of memory");
    cfg->source = src.data;
    return 0;
}

int kube_config_load_file(kube_config *cfg, const char *path, const char *context,
                          char *err, size_t errlen)
{
    kc k = {.path = path, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    char *text;
    size_t len;
    int r = -1;

    memset(cfg, 0, sizeof *cfg);
    logval(k.path_v, sizeof k.path_v, path);
    if (slurp(path, MAX_KUBECONFIG, &text, &len) < 0)
        return failf(err, errlen, "kubeconfig %s: %s", k.path_v, strerror(errno));
    const char *slash = strrchr(path, '/');
    if (slash) {
        k.dir = slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
        if (!k.dir) {
            wipe_free(text, len);
            return failf(err, errlen, "kubeconfig %s: out of memory", k.path_v);
        }
    }
    if (!yaml_parser_initialize(&parser)) {
        failf(err, errlen, "kubeconfig %s: out of memory", k.path_v);
        goto out_text;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &k.doc)) {
        parse_error(&k, &parser);
        goto out_parser;
    }
    yaml_node_t *root = yaml_document_get_root_node(&k.doc);
    if (!root || is_null(root))
        fail_at(&k, NULL, "the file is empty");
    else
        r = load_doc(&k, root, context, cfg);
    yaml_document_delete(&k.doc);
out_parser:
    yaml_parser_delete(&parser);
out_text:
    wipe_free(text, len);
    free(k.dir);
    if (r < 0)
        kube_config_free(cfg);
    return r;
}

/* ---- in-cluster ------------------------------------------------------------ */

int kube_config_in_cluster(kube_config *cfg, const char *dir, char *err, size_t errlen)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    vk_buf b = VK_BUF_INIT;
    char *text = NULL;
    size_t len;

    memset(cfg, 0, sizeof *cfg);
    if (!dir)
        dir = SA_DIR;
    if (!host || !*host || !port || !*port)
        return failf(err, errlen, "in-cluster config: KUBERNETES_SERVICE_HOST and "
                                  "KUBERNETES_SERVICE_PORT must be set");
    /* An IPv6 address needs brackets in a URL. */
    if (vk_buf_printf(&b, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0)
        goto nomem;
    cfg->server = vk_buf_steal(&b, NULL);

    if (vk_buf_printf(&b, "%s/token", dir) < 0)
        goto nomem;
    cfg->token_file = vk_buf_steal(&b, NULL);
    if (slurp(cfg->token_file, MAX_TOKEN, &text, &len) < 0) {
        failf(err, errlen, "in-cluster config: %s: %s", cfg->token_file, strerror(errno));
        goto fail;
    }
    wipe_free(text, len);

    if (vk_buf_printf(&b, "%s/ca.crt", dir) < 0)
        goto nomem;
    cfg->ca_file = vk_buf_steal(&b, NULL);
    if (slurp(cfg->ca_file, MAX_PEM, &cfg->ca_pem, &cfg->ca_pem_len) < 0) {
        failf(err, errlen, "in-cluster config: %s: %s", cfg->ca_file, strerror(errno));
        goto fail;
    }

    /* The namespace file is written by the kubelet for every pod; without
     * it, client-go assumes "default". */
    if (vk_buf_printf(&b, "%s/namespace", dir) < 0)
        goto nomem;
    if (slurp(b.data, 4096, &text, &len) == 0) {
        trim(text);
        if (*text)
            cfg->namespace = text;
        else
            free(text);
    }
    vk_buf_free(&b);
    if (!cfg->namespace && !(cfg->namespace = strdup("default")))
        goto nomem;
    if (!(cfg->source = strdup("in-cluster")))
        goto nomem;
    return 0;
nomem:
    failf(err, errlen, "in-cluster config: out of memory");
fail:
    vk_buf_free(&b);
    kube_config_free(cfg);
    return -1;
}

/* ---- the usual order ---------------------------------------------------- */

int kube_config_load(kube_config *cfg, const char *path, const char *context,
                     char *err, size_t errlen)
{
    if (path && *path)
        return kube_config_load_file(cfg, path, context, err, errlen);

    const char *env = getenv("KUBECONFIG");
    if (env && *env) {
        /* kubectl merges every file of the list; the first is enough for a
         * node agent, and a merge would hide which file a setting came from. */
        size_t skip = strspn(env, ":"), n = strcspn(env + skip, ":");
        if (n > 0) {
            char *first = strndup(env + skip, n);
            if (!first)
                return failf(err, errlen, "kubeconfig: out of memory");
            if (env[skip + n] && env[skip + n + 1 + strspn(env + skip + n + 1, ":")]) {
                char first_v[LOGVAL_MAX];
                vk_info("KUBECONFIG lists several files; reading only the first", "file=%s",
                        logval(first_v, sizeof first_v, first));
            }
            int r = kube_config_load_file(cfg, first, context, err, errlen);
            free(first);
            return r;
        }
    }

    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host && *host)
        return kube_config_in_cluster(cfg, NULL, err, errlen);

    const char *home = getenv("HOME");
    if (home && *home) {
        vk_buf b = VK_BUF_INIT;
        if (vk_buf_printf(&b, "%s/.kube/config", home) < 0)
            return failf(err, errlen, "kubeconfig: out of memory");
        int r;
        if (access(b.data, F_OK) == 0)
            r = kube_config_load_file(cfg, b.data, context, err, errlen);
        else
            r = failf(err, errlen, "no kubeconfig: pass --kubeconfig, set KUBECONFIG, run in a "
                                   "pod, or create %s", b.data);
        vk_buf_free(&b);
        return r;
    }
    memset(cfg, 0, sizeof *cfg);
    return failf(err, errlen, "no kubeconfig: pass --kubeconfig, set KUBECONFIG or HOME, "
                              "or run in a pod");
}

void kube_config_free(kube_config *cfg)
{
    free(cfg->server);
    free(cfg->ca_pem);
    free(cfg->ca_file);
    free(cfg->cert_pem);
    free(cfg->cert_file);
    wipe_free(cfg->key_pem, cfg->key_pem_len);
    free(cfg->key_file);
    wipe_free(cfg->token, cfg->token ? strlen(cfg->token) : 0);
    free(cfg->token_file);
    free(cfg->tls_server_name);
    free(cfg->namespace);
    free(cfg->source);
    memset(cfg, 0, sizeof *cfg);
}

int kube_config_token(const kube_config *cfg, char **token, char *err, size_t errlen)
{
    *token = NULL;
    if (cfg->token_file) {
        char *t;
        size_t len;
        if (slurp(cfg->token_file, MAX_TOKEN, &t, &len) == 0) {
            trim(t);
            *token = t;
            return 0;
        }
        const char *why = strerror(errno);
        /* The path may come from a kubeconfig's tokenFile. */
        char file_v[LOGVAL_MAX];
        logval(file_v, sizeof file_v, cfg->token_file);
        if (!cfg->token)
            return failf(err, errlen, "token file %s: %s", file_v, why);
        vk_warn("token file unreadable; using the inline token", "file=%s error=\"%s\"",
                file_v, why);
    }
    if (cfg->token && !(*token = strdup(cfg->token)))
        return failf(err, errlen, "out of memory");
    return 0;
}

int kube_config_read_pem(const char *path, char **pem, size_t *len)
{
    return slurp(path, MAX_PEM, pem, len);
}
