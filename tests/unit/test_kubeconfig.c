/* test_kubeconfig.c -- kubeconfig files, in-cluster config, load order. */
#include <check.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/kubeconfig.h"
#include "log.h"

static char dir[64];
static char err[1024];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/vkc-kubeconfig-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    err[0] = '\0';
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* Write text to dir/name; returns the full path (static buffer). */
static const char *put(const char *name, const char *text)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static char *load(const char *yaml, const char *context, kube_config *cfg)
{
    static char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", put("config", yaml));
    int r = kube_config_load_file(cfg, path, context, err, sizeof err);
    return r == 0 ? NULL : err;
}

static void expect_error(const char *yaml, const char *context, const char *needle)
{
    kube_config cfg;
    char *e = load(yaml, context, &cfg);
    ck_assert_msg(e != NULL, "expected an error containing \"%s\"", needle);
    ck_assert_msg(strstr(e, needle) != NULL, "error \"%s\" lacks \"%s\"", e, needle);
    ck_assert_msg(strncmp(e, "kubeconfig ", 11) == 0, "error \"%s\" does not name the file", e);
    ck_assert_ptr_null(cfg.server);
}

#define HEAD \
    "apiVersion: v1\n" \
    "kind: Config\n"

/* "Q0EtUEVN" is "CA-PEM", "Q0VSVA==" "CERT", "S0VZ" "KEY". */
static const char *const data_config = HEAD
    "clusters:\n"
    "- name: c1\n"
    "  cluster:\n"
    "    server: https://10.0.0.1:6443\n"
    "    certificate-authority-data: Q0EtUEVN\n"
    "    tls-server-name: api.example\n"
    "users:\n"
    "- name: u1\n"
    "  user:\n"
    "    client-certificate-data: Q0VSVA==\n"
    "    client-key-data: S0VZ\n"
    "contexts:\n"
    "- name: ctx1\n"
    "  context: {cluster: c1, user: u1, namespace: team-a}\n"
    "current-context: ctx1\n";

START_TEST(inline_data)
{
    kube_config cfg;
    ck_assert_ptr_null(load(data_config, NULL, &cfg));
    ck_assert_str_eq(cfg.server, "https://10.0.0.1:6443");
    ck_assert_str_eq(cfg.ca_pem, "CA-PEM");
    ck_assert_uint_eq(cfg.ca_pem_len, 6);
    ck_assert_ptr_null(cfg.ca_file);
    ck_assert_str_eq(cfg.cert_pem, "CERT");
    ck_assert_str_eq(cfg.key_pem, "KEY");
    ck_assert_uint_eq(cfg.key_pem_len, 3);
    ck_assert_str_eq(cfg.tls_server_name, "api.example");
    ck_assert_str_eq(cfg.namespace, "team-a");
    ck_assert(!cfg.insecure);
    ck_assert_ptr_null(cfg.token);
    ck_assert_ptr_null(cfg.token_file);
    ck_assert_ptr_nonnull(strstr(cfg.source, "(context ctx1)"));
    kube_config_free(&cfg);
}
END_TEST

START_TEST(relative_paths)
{
    char want[PATH_MAX];
    put("pki/ca.crt", "CA FILE\n");
    put("pki/client.crt", "CERT FILE\n");
    put("pki/client.key", "KEY FILE\n");
    kube_config cfg;
    ck_assert_ptr_null(load(HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster:\n"
        "    server: https://k:6443\n"
        "    certificate-authority: pki/ca.crt\n"
        "users:\n"
        "- name: u\n"
        "  user:\n"
        "    client-certificate: pki/client.crt\n"
        "    client-key: pki/client.key\n"
        "contexts:\n"
        "- name: x\n"
        "  context: {cluster: c, user: u}\n"
        "current-context: x\n", NULL, &cfg));
    ck_assert_str_eq(cfg.ca_pem, "CA FILE\n");
    ck_assert_str_eq(cfg.cert_pem, "CERT FILE\n");
    ck_assert_str_eq(cfg.key_pem, "KEY FILE\n");
    snprintf(want, sizeof want, "%s/pki/ca.crt", dir);
    ck_assert_str_eq(cfg.ca_file, want);
    snprintf(want, sizeof want, "%s/pki/client.key", dir);
    ck_assert_str_eq(cfg.key_file, want);
    ck_assert_str_eq(cfg.namespace, "default");
    kube_config_free(&cfg);
}
END_TEST

START_TEST(absolute_path_and_data_wins)
{
    char yaml[4096], ca[128];
    snprintf(ca, sizeof ca, "%s", put("abs-ca.crt", "ABS CA"));
    snprintf(yaml, sizeof yaml, HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster:\n"
        "    server: https://k\n"
        "    certificate-authority: %s\n"
        "- name: d\n"
        "  cluster:\n"
        "    server: https://d\n"
        "    certificate-authority: /nonexistent/ca.crt\n"
        "    certificate-authority-data: Q0EtUEVN\n"
        "contexts:\n"
        "- {name: x, context: {cluster: c}}\n"
        "- {name: y, context: {cluster: d}}\n"
        "current-context: x\n", ca);
    kube_config cfg;
    ck_assert_ptr_null(load(yaml, NULL, &cfg));
    ck_assert_str_eq(cfg.ca_pem, "ABS CA");
    ck_assert_str_eq(cfg.ca_file, ca);
    ck_assert_ptr_null(cfg.cert_pem);
    kube_config_free(&cfg);
    /* -data overrides the file, which is then never opened. */
    ck_assert_ptr_null(load(yaml, "y", &cfg));
    ck_assert_str_eq(cfg.ca_pem, "CA-PEM");
    ck_assert_ptr_null(cfg.ca_file);
    kube_config_free(&cfg);
}
END_TEST

static const char *const token_config = HEAD
    "clusters: [{name: c, cluster: {server: 'https://k', insecure-skip-tls-verify: true}}]\n"
    "users:\n"
    "- name: inline\n"
    "  user: {token: abc.def}\n"
    "- name: file\n"
    "  user: {tokenFile: tok}\n"
    "- name: both\n"
    "  user: {token: fallback, tokenFile: tok}\n"
    "contexts:\n"
    "- {name: inline, context: {cluster: c, user: inline}}\n"
    "- {name: file, context: {cluster: c, user: file}}\n"
    "- {name: both, context: {cluster: c, user: both}}\n"
    "current-context: inline\n";

START_TEST(token_inline)
{
    kube_config cfg;
    char *tok;
    ck_assert_ptr_null(load(token_config, NULL, &cfg));
    ck_assert(cfg.insecure);
    ck_assert_str_eq(cfg.token, "abc.def");
    ck_assert_ptr_null(cfg.token_file);
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_str_eq(tok, "abc.def");
    free(tok);
    kube_config_free(&cfg);
}
END_TEST

START_TEST(token_file_rotates)
{
    char want[PATH_MAX];
    kube_config cfg;
    char *tok;
    put("tok", "first\n");
    ck_assert_ptr_null(load(token_config, "file", &cfg));
    ck_assert_ptr_null(cfg.token);
    snprintf(want, sizeof want, "%s/tok", dir);
    ck_assert_str_eq(cfg.token_file, want);
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_str_eq(tok, "first");
    free(tok);
    put("tok", "  second\n");
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_str_eq(tok, "second");
    free(tok);
    /* Gone with no inline token to fall back on: an error naming the file. */
    unlink(want);
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, want));
    kube_config_free(&cfg);
}
END_TEST

START_TEST(token_file_beats_inline)
{
    char path[PATH_MAX];
    kube_config cfg;
    char *tok;
    put("tok", "from-file");
    ck_assert_ptr_null(load(token_config, "both", &cfg));
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_str_eq(tok, "from-file");
    free(tok);
    snprintf(path, sizeof path, "%s/tok", dir);
    unlink(path);
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_str_eq(tok, "fallback");
    free(tok);
    kube_config_free(&cfg);
}
END_TEST

START_TEST(token_file_missing_at_load)
{
    expect_error(token_config, "file", "tokenFile");
}
END_TEST

START_TEST(no_token)
{
    kube_config cfg;
    char *tok = (char *)1;
    ck_assert_ptr_null(load(data_config, NULL, &cfg));
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_ptr_null(tok);
    kube_config_free(&cfg);
}
END_TEST

static const char *const two_contexts = HEAD
    "clusters:\n"
    "- name: prod\n"
    "  cluster: {server: 'https://prod'}\n"
    "- name: dev\n"
    "  cluster: {server: 'https://dev'}\n"
    "users:\n"
    "- name: me\n"
    "  user: {token: t}\n"
    "contexts:\n"
    "- name: p\n"
    "  context: {cluster: prod, user: me, namespace: pns}\n"
    "- name: d\n"
    "  context: {cluster: dev}\n"
    "current-context: p\n";

START_TEST(contexts_and_override)
{
    kube_config cfg;
    ck_assert_ptr_null(load(two_contexts, NULL, &cfg));
    ck_assert_str_eq(cfg.server, "https://prod");
    ck_assert_str_eq(cfg.namespace, "pns");
    ck_assert_str_eq(cfg.token, "t");
    kube_config_free(&cfg);
    ck_assert_ptr_null(load(two_contexts, "d", &cfg));
    ck_assert_str_eq(cfg.server, "https://dev");
    ck_assert_str_eq(cfg.namespace, "default");
    ck_assert_ptr_null(cfg.token); /* a context without a user is anonymous */
    kube_config_free(&cfg);
    /* An empty override is no override. */
    ck_assert_ptr_null(load(two_contexts, "", &cfg));
    ck_assert_str_eq(cfg.server, "https://prod");
    kube_config_free(&cfg);
}
END_TEST

/* Run load() with stderr (where logs go) captured into out. */
static char *load_logged(const char *yaml, kube_config *cfg, char *out, size_t cap)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/stderr", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    char *e = load(yaml, NULL, cfg);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    ssize_t n = pread(fd, out, cap - 1, 0);
    ck_assert_int_ge(n, 0);
    out[n] = '\0';
    close(fd);
    fputs(out, stderr);
    return e;
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

START_TEST(unknown_fields_ignored)
{
    /* Reported at info, by path, once each (a duplicate key too), never
     * with the value, which may be a secret. */
    vk_log_set_level(VK_LOG_INFO);
    kube_config cfg;
    char log[8192];
    ck_assert_ptr_null(load_logged(HEAD
        "preferences: {colors: true}\n"
        "future-top-level: [1, 2, {a: b}]\n"
        "clusters:\n"
        "- name: c\n"
        "  extra: 1\n"
        "  cluster:\n"
        "    server: https://k\n"
        "    disable-compression: true\n"
        "    extensions:\n"
        "    - name: e\n"
        "      extension: {anything: [goes]}\n"
        "users:\n"
        "- name: other\n"
        "  user: {token: o, not-looked-at: 1}\n"
        "- name: u\n"
        "  user:\n"
        "    token: t\n"
        "    future-field: {x: y}\n"
        "    secret-ish: hunter2-s3cr3t\n"
        "    secret-ish: hunter2-s3cr3t-again\n"
        "    password: hunter2-pw\n"
        "contexts:\n"
        "- name: x\n"
        "  context: {cluster: c, user: u, new-thing: 3}\n"
        "current-context: x\n", &cfg, log, sizeof log));
    ck_assert_str_eq(cfg.server, "https://k");
    ck_assert_str_eq(cfg.token, "t");
    kube_config_free(&cfg);
    static const char *const fields[] = {
        "field=future-top-level ", "field=clusters[0].extra ",
        "field=clusters[0].cluster.disable-compression ", "field=users[1].user.future-field ",
        "field=users[1].user.secret-ish ", "field=contexts[0].context.new-thing ", NULL,
    };
    for (int i = 0; fields[i]; i++)
        ck_assert_msg(count_of(log, fields[i]) == 1, "want %s once in:\n%s", fields[i], log);
    ck_assert_int_eq(count_of(log, "level=info msg=\"kubeconfig field ignored\""), 6);
    /* An unsupported field has its own warning, and only that. */
    ck_assert_int_eq(count_of(log, "field=password"), 1);
    ck_assert_msg(!strstr(log, "hunter2") && !strstr(log, "s3cr3t"), "value logged:\n%s", log);
    /* Only the entries in use are read. */
    ck_assert_ptr_null(strstr(log, "not-looked-at"));
}
END_TEST

START_TEST(anchors_and_nulls)
{
    kube_config cfg;
    ck_assert_ptr_null(load(HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster: &c {server: 'https://k', tls-server-name: ~}\n"
        "- name: c2\n"
        "  cluster: *c\n"
        "users: null\n"
        "contexts:\n"
        "- name: x\n"
        "  context: {cluster: c2, user: '', namespace: null}\n"
        "current-context: x\n", NULL, &cfg));
    ck_assert_str_eq(cfg.server, "https://k");
    ck_assert_ptr_null(cfg.tls_server_name);
    ck_assert_str_eq(cfg.namespace, "default");
    kube_config_free(&cfg);
}
END_TEST

START_TEST(error_no_current_context)
{
    expect_error(HEAD "clusters: []\ncontexts: []\n", NULL, "no current-context");
    expect_error(HEAD "clusters: []\ncontexts: []\ncurrent-context: \"\"\n", NULL,
                 "line 5: no current-context");
}
END_TEST

START_TEST(error_unknown_context)
{
    expect_error(two_contexts, "nope", "context \"nope\" not found");
    expect_error(HEAD "current-context: gone\n", NULL, "context \"gone\" not found");
}
END_TEST

START_TEST(error_unknown_cluster_or_user)
{
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "contexts:\n"
        "- name: x\n"
        "  context: {cluster: other}\n"
        "current-context: x\n", NULL, "line 5: context \"x\": cluster \"other\" not found");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "contexts:\n"
        "- name: x\n"
        "  context: {cluster: c, user: ghost}\n"
        "current-context: x\n", NULL, "user \"ghost\" not found");
    expect_error(HEAD
        "contexts:\n"
        "- name: x\n"
        "  context: {user: u}\n"
        "current-context: x\n", NULL, "context \"x\": no cluster");
}
END_TEST

/* Names and paths from the file are escaped in messages, which stay on one
 * line and in which a quote cannot end a name early. */
START_TEST(error_names_escaped)
{
    /* A quote in a name (the line break of a flow scalar spanning lines
     * folds into a space), then a line break in one (an escape). */
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "contexts: [{name: x, context: {cluster: \"d\n\\\"\"}}]\n"
        "current-context: x\n", NULL, "context \"x\": cluster \"d \\\"\" not found");
    ck_assert_ptr_null(strchr(err, '\n'));
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "contexts: [{name: x, context: {cluster: \"d\\n\\\"\"}}]\n"
        "current-context: x\n", NULL, "context \"x\": cluster \"d\\n\\\"\" not found");
    ck_assert_ptr_null(strchr(err, '\n'));
    expect_error(HEAD "contexts: []\n", "a\"b\tc", "context \"a\\\"b\\x09c\" not found");
    expect_error(HEAD
        "clusters:\n"
        "- name: \"c\\r\"\n"
        "  cluster: {server: 'https://k', certificate-authority: \"no\\nca.crt\"}\n"
        "contexts: [{name: x, context: {cluster: \"c\\r\"}}]\n"
        "current-context: x\n", NULL, "cluster \"c\\x0d\": certificate-authority: \"");
    ck_assert_ptr_nonnull(strstr(err, "/no\\nca.crt\": No such file"));
    ck_assert_ptr_null(strchr(err, '\n'));
    ck_assert_ptr_null(strchr(err, '\r'));
}
END_TEST

START_TEST(error_malformed_base64)
{
    expect_error(HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster:\n"
        "    server: https://k\n"
        "    certificate-authority-data: not*base64\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL,
        "line 7: cluster \"c\": certificate-authority-data: malformed base64");
    /* A truncated group, and data after the padding. */
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "users: [{name: u, user: {client-certificate-data: Q0VSVA, client-key-data: S0VZ}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n", NULL, "client-certificate-data: malformed base64");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "users: [{name: u, user: {client-certificate-data: Q0VSVA==S0VZ, client-key-data: S0VZ}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n", NULL, "client-certificate-data: malformed base64");
}
END_TEST

START_TEST(base64_line_breaks)
{
    kube_config cfg;
    ck_assert_ptr_null(load(HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster:\n"
        "    server: https://k\n"
        "    certificate-authority-data: \"Q0Et\\nUEVN\\r\\n\"\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, &cfg));
    ck_assert_str_eq(cfg.ca_pem, "CA-PEM");
    kube_config_free(&cfg);
}
END_TEST

START_TEST(error_unreadable_file)
{
    kube_config cfg;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/missing", dir);
    ck_assert_int_eq(kube_config_load_file(&cfg, path, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, path));
    ck_assert_ptr_nonnull(strstr(err, "No such file"));
    /* A directory is not a kubeconfig either. */
    ck_assert_int_eq(kube_config_load_file(&cfg, dir, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, dir));
}
END_TEST

START_TEST(error_referenced_file_missing)
{
    expect_error(HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster:\n"
        "    server: https://k\n"
        "    certificate-authority: nope/ca.crt\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "line 7: cluster \"c\": certificate-authority: ");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "users: [{name: u, user: {client-certificate-data: Q0VSVA==, client-key: k.pem}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n", NULL, "/k.pem: No such file");
}
END_TEST

START_TEST(error_no_server)
{
    expect_error(HEAD
        "clusters:\n"
        "- name: c\n"
        "  cluster: {insecure-skip-tls-verify: true}\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "line 4: cluster \"c\": no server");
}
END_TEST

START_TEST(error_inconsistent)
{
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k'}}]\n"
        "users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n", NULL, "client certificate without client key");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k', insecure-skip-tls-verify: true, "
        "certificate-authority-data: Q0EtUEVN}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "insecure-skip-tls-verify is not allowed");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: 'https://k', insecure-skip-tls-verify: maybe}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "line 3: insecure-skip-tls-verify: expected true or false");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: [https://k]}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "server: expected a string");
    expect_error(HEAD
        "clusters:\n"
        "- {name: c, cluster: {server: 'https://a'}}\n"
        "- {name: c, cluster: {server: 'https://b'}}\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "line 5: clusters: duplicate name \"c\"");
    expect_error(HEAD
        "clusters: {name: c}\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "line 3: clusters: expected a list");
    expect_error(HEAD
        "clusters: [{name: c, cluster: {server: \"https://k\\0\"}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n"
        "current-context: x\n", NULL, "NUL byte");
}
END_TEST

START_TEST(malformed_yaml)
{
    expect_error(HEAD "clusters:\n\t- name: c\n", NULL, "line 4: ");
    expect_error(HEAD "current-context: \"unterminated\n", NULL, "line ");
    expect_error(HEAD "contexts: [a, b\n", NULL, "line ");
    expect_error("- just\n- a list\n", NULL, "line 1: expected a mapping at the top level");
    expect_error("plain scalar\n", NULL, "expected a mapping");
}
END_TEST

START_TEST(binary_garbage)
{
    static const unsigned char junk[] = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0xff, 0xfe, 0x80,
                                         0x00, 0x13, 0x37, 0xc3, 0x28, 0};
    kube_config cfg;
    char *e = load((const char *)junk, NULL, &cfg);
    ck_assert_ptr_nonnull(e);
    ck_assert_msg(strstr(e, "byte ") || strstr(e, "line "), "%s", e);
}
END_TEST

START_TEST(empty_file)
{
    expect_error("", NULL, "empty");
    expect_error("# only a comment\n\n", NULL, "empty");
    expect_error("---\n", NULL, "empty");
}
END_TEST

/* ---- in-cluster ------------------------------------------------------------ */

START_TEST(in_cluster)
{
    char sa[128], want[PATH_MAX];
    kube_config cfg;
    char *tok;
    snprintf(sa, sizeof sa, "%s/sa", dir);
    put("sa/token", "eyJ.token\n");
    put("sa/ca.crt", "CLUSTER CA");
    put("sa/namespace", "vkc-system\n");
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    ck_assert_int_eq(kube_config_in_cluster(&cfg, sa, err, sizeof err), 0);
    ck_assert_str_eq(cfg.server, "https://10.96.0.1:443");
    ck_assert_str_eq(cfg.ca_pem, "CLUSTER CA");
    snprintf(want, sizeof want, "%s/ca.crt", sa);
    ck_assert_str_eq(cfg.ca_file, want);
    snprintf(want, sizeof want, "%s/token", sa);
    ck_assert_str_eq(cfg.token_file, want);
    ck_assert_ptr_null(cfg.token);
    ck_assert_str_eq(cfg.namespace, "vkc-system");
    ck_assert_str_eq(cfg.source, "in-cluster");
    ck_assert_int_eq(kube_config_token(&cfg, &tok, err, sizeof err), 0);
    ck_assert_str_eq(tok, "eyJ.token");
    free(tok);
    kube_config_free(&cfg);

    setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    snprintf(want, sizeof want, "%s/namespace", sa);
    unlink(want);
    ck_assert_int_eq(kube_config_in_cluster(&cfg, sa, err, sizeof err), 0);
    ck_assert_str_eq(cfg.server, "https://[fd00:10:96::1]:6443");
    ck_assert_str_eq(cfg.namespace, "default");
    kube_config_free(&cfg);
}
END_TEST

START_TEST(in_cluster_errors)
{
    char sa[128], path[PATH_MAX];
    kube_config cfg;
    snprintf(sa, sizeof sa, "%s/sa", dir);
    put("sa/ca.crt", "CLUSTER CA");
    ck_assert_int_eq(kube_config_in_cluster(&cfg, sa, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    ck_assert_int_eq(kube_config_in_cluster(&cfg, sa, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "KUBERNETES_SERVICE_PORT"));
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    ck_assert_int_eq(kube_config_in_cluster(&cfg, sa, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/sa/token"));
    put("sa/token", "t");
    snprintf(path, sizeof path, "%s/ca.crt", sa);
    unlink(path);
    ck_assert_int_eq(kube_config_in_cluster(&cfg, sa, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/sa/ca.crt"));
    ck_assert_ptr_null(cfg.server);
}
END_TEST

/* ---- load order ------------------------------------------------------------ */

START_TEST(order_explicit_then_env)
{
    char a[PATH_MAX], b[PATH_MAX], list[3 * PATH_MAX];
    kube_config cfg;
    snprintf(a, sizeof a, "%s", put("a", two_contexts));
    snprintf(b, sizeof b, "%s", put("b", data_config));
    snprintf(list, sizeof list, "::%s:%s", b, a);
    setenv("KUBECONFIG", list, 1);
    /* An explicit path beats $KUBECONFIG. */
    ck_assert_int_eq(kube_config_load(&cfg, a, "d", err, sizeof err), 0);
    ck_assert_str_eq(cfg.server, "https://dev");
    kube_config_free(&cfg);
    /* $KUBECONFIG: the first file only. */
    ck_assert_int_eq(kube_config_load(&cfg, NULL, NULL, err, sizeof err), 0);
    ck_assert_str_eq(cfg.server, "https://10.0.0.1:6443");
    kube_config_free(&cfg);
    /* $KUBECONFIG beats in-cluster. */
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    ck_assert_int_eq(kube_config_load(&cfg, NULL, NULL, err, sizeof err), 0);
    ck_assert_str_eq(cfg.server, "https://10.0.0.1:6443");
    kube_config_free(&cfg);
}
END_TEST

START_TEST(order_in_cluster_then_home)
{
    kube_config cfg;
    setenv("HOME", dir, 1);
    put(".kube/config", two_contexts);
    /* In a pod (the real service-account directory is absent here, which
     * the error shows), in-cluster comes before ~/.kube/config. */
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    ck_assert_int_eq(kube_config_load(&cfg, NULL, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "in-cluster config: /var/run/secrets/kubernetes.io/"));
    unsetenv("KUBERNETES_SERVICE_HOST");
    setenv("KUBECONFIG", "", 1);
    ck_assert_int_eq(kube_config_load(&cfg, NULL, "d", err, sizeof err), 0);
    ck_assert_str_eq(cfg.server, "https://dev");
    kube_config_free(&cfg);
}
END_TEST

START_TEST(order_nothing_found)
{
    kube_config cfg;
    setenv("HOME", dir, 1);
    ck_assert_int_eq(kube_config_load(&cfg, NULL, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no kubeconfig"));
    unsetenv("HOME");
    ck_assert_int_eq(kube_config_load(&cfg, NULL, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no kubeconfig"));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("kubeconfig");
    TCase *tc = tcase_create("kubeconfig");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, inline_data);
    tcase_add_test(tc, relative_paths);
    tcase_add_test(tc, absolute_path_and_data_wins);
    tcase_add_test(tc, token_inline);
    tcase_add_test(tc, token_file_rotates);
    tcase_add_test(tc, token_file_beats_inline);
    tcase_add_test(tc, token_file_missing_at_load);
    tcase_add_test(tc, no_token);
    tcase_add_test(tc, contexts_and_override);
    tcase_add_test(tc, unknown_fields_ignored);
    tcase_add_test(tc, anchors_and_nulls);
    tcase_add_test(tc, error_no_current_context);
    tcase_add_test(tc, error_unknown_context);
    tcase_add_test(tc, error_unknown_cluster_or_user);
    tcase_add_test(tc, error_names_escaped);
    tcase_add_test(tc, error_malformed_base64);
    tcase_add_test(tc, base64_line_breaks);
    tcase_add_test(tc, error_unreadable_file);
    tcase_add_test(tc, error_referenced_file_missing);
    tcase_add_test(tc, error_no_server);
    tcase_add_test(tc, error_inconsistent);
    tcase_add_test(tc, malformed_yaml);
    tcase_add_test(tc, binary_garbage);
    tcase_add_test(tc, empty_file);
    tcase_add_test(tc, in_cluster);
    tcase_add_test(tc, in_cluster_errors);
    tcase_add_test(tc, order_explicit_then_env);
    tcase_add_test(tc, order_in_cluster_then_home);
    tcase_add_test(tc, order_nothing_found);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
