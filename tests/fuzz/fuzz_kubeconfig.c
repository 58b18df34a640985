/* fuzz_kubeconfig.c -- kube_config_load_file on any file content.
 *
 * kubeconfig.h reads files only, so each input is written to a file in a
 * private directory that also holds a CA certificate and a token, so that
 * relative paths in the input (certificate-authority: ca.crt, tokenFile:
 * token) resolve as they would next to a real kubeconfig. Each input is
 * loaded with the file's current-context and with --context "dev".
 *
 * Checked: success gives a server, a namespace and a source, PEM buffers
 * NUL-terminated at their length, and an inline token that kube_config_token
 * hands back as it is; failure gives a one-line message naming the file and leaves the
 * config all zero.
 */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "kubeconfig.h"

static char dir[64];
static char path[96];

static void write_file(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    FUZZ_CHECK(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void remove_dir(void)
{
    static const char *const names[] = {"config", "ca.crt", "token", "client.crt", "client.key"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/vkc-fuzz-kubeconfig-XXXXXX");
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/config", dir);
    write_file("ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    write_file("client.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n");
    write_file("client.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
    write_file("token", "  eyJhbGciOiJSUzI1NiJ9.token\n");
    atexit(remove_dir);
    return 0;
}

static bool all_zero(const kube_config *cfg)
{
    static const kube_config zero;
    return memcmp(cfg, &zero, sizeof zero) == 0;
}

static void check_pem(const char *pem, size_t len)
{
    if (pem)
        FUZZ_CHECK(pem[len] == '\0');
    else
        FUZZ_CHECK(len == 0);
}

static void load(const char *context)
{
    kube_config cfg;
    char err[512] = "";
    if (kube_config_load_file(&cfg, path, context, err, sizeof err) < 0) {
        FUZZ_CHECK(all_zero(&cfg));
        FUZZ_CHECK(strncmp(err, "kubeconfig ", 11) == 0);
        FUZZ_CHECK(strchr(err, '\n') == NULL);
        return;
    }
    FUZZ_CHECK(cfg.server != NULL);
    FUZZ_CHECK(cfg.namespace && *cfg.namespace);
    FUZZ_CHECK(cfg.source != NULL);
    check_pem(cfg.ca_pem, cfg.ca_pem_len);
    check_pem(cfg.cert_pem, cfg.cert_pem_len);
    check_pem(cfg.key_pem, cfg.key_pem_len);
    FUZZ_CHECK(!cfg.cert_pem == !cfg.key_pem);
    FUZZ_CHECK(!(cfg.insecure && cfg.ca_pem));
    char *token = NULL;
    if (kube_config_token(&cfg, &token, err, sizeof err) == 0) {
        if (!cfg.token_file)
            FUZZ_CHECK(cfg.token ? token && strcmp(token, cfg.token) == 0 : !token);
    }
    free(token);
    kube_config_free(&cfg);
    FUZZ_CHECK(all_zero(&cfg));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
    close(fd);
    load(NULL);
    load("dev");
    return 0;
}
