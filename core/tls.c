/* tls.c -- the TLS server context of the kubelet API. */
#include "tls.h"

#include <stdarg.h>
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "log.h"

/* TLS 1.2 suites: forward secret, authenticated encryption. TLS 1.3 suites
 * are all AEAD; OpenSSL's default list stays. */
#define TLS12_CIPHERS \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS_GROUPS "X25519:P-256:P-384"

#define SELF_SIGNED_DAYS 365

/* err <- "what: OpenSSL's reason", and clear OpenSSL's error queue so the
 * next failure is not blamed on this one. */
static void fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    if (e && n >= 0 && (size_t)n < errlen) {
        char reason[256];
        ERR_error_string_n(e, reason, sizeof reason);
        snprintf(err + n, errlen - (size_t)n, ": %s", reason);
    }
    ERR_clear_error();
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    int ok = ext && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* Each host as an IP address when it parses as one, else as a DNS name.
 * Built as GENERAL_NAMEs rather than a "DNS:a,IP:b" string so that no
 * host can inject another name through a comma. */
static int add_sans(X509 *x, const char *const *hosts, size_t n)
{
    GENERAL_NAMES *names = sk_GENERAL_NAME_new_null();
    int ok = names != NULL;
    for (size_t i = 0; ok && i < n; i++) {
        GENERAL_NAME *gn = GENERAL_NAME_new();
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(hosts[i]);
        if (!gn) {
            ok = 0;
        } else if (ip) {
            GENERAL_NAME_set0_value(gn, GEN_IPADD, ip);
        } else {
            ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
            if (dns && ASN1_STRING_set(dns, hosts[i], -1)) {
                GENERAL_NAME_set0_value(gn, GEN_DNS, dns);
            } else {
                ASN1_IA5STRING_free(dns);
                ok = 0;
            }
        }
        if (ok && !sk_GENERAL_NAME_push(names, gn))
            ok = 0;
        if (!ok)
            GENERAL_NAME_free(gn);
    }
    ok = ok && X509_add1_ext_i2d(x, NID_subject_alt_name, names, 0, 0) == 1;
    GENERAL_NAMES_free(names);
    return ok ? 0 : -1;
}

static int self_signed(SSL_CTX *ctx, const tls_config *cfg, char *err, size_t errlen)
{
    const char *cn = cfg->n_hosts ? cfg->hosts[0] : "vkc";
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIGNUM *serial = BN_new();
    int ok = key && x && serial &&
             X509_set_version(x, X509_VERSION_3) &&
             BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) &&
             /* An hour of slack for clients whose clock runs behind. */
             X509_gmtime_adj(X509_getm_notBefore(x), -3600) &&
             X509_gmtime_adj(X509_getm_notAfter(x), 86400L * SELF_SIGNED_DAYS) &&
             X509_set_pubkey(x, key) &&
             X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                        (const unsigned char *)cn, -1, -1, 0) &&
             X509_set_issuer_name(x, X509_get_subject_name(x)) &&
             add_ext(x, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             add_ext(x, NID_key_usage, "critical,digitalSignature") == 0 &&
             add_ext(x, NID_ext_key_usage, "serverAuth") == 0 &&
             (!cfg->n_hosts || add_sans(x, cfg->hosts, cfg->n_hosts) == 0) &&
             X509_sign(x, key, EVP_sha256()) &&
             SSL_CTX_use_certificate(ctx, x) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, key) == 1;
    if (!ok)
        fail(err, errlen, "cannot make a self-signed certificate");
    BN_free(serial);
    X509_free(x);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

static int load_pair(SSL_CTX *ctx, const tls_config *cfg, char *err, size_t errlen)
{
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
        fail(err, errlen, "--tls-cert-file %s", cfg->cert_file);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key_file, SSL_FILETYPE_PEM) != 1) {
        fail(err, errlen, "--tls-private-key-file %s", cfg->key_file);
        return -1;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        fail(err, errlen, "--tls-private-key-file %s does not match --tls-cert-file %s",
             cfg->key_file, cfg->cert_file);
        return -1;
    }
    return 0;
}

static int load_client_ca(SSL_CTX *ctx, const char *file, char *err, size_t errlen)
{
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(file);
    if (!names || SSL_CTX_load_verify_locations(ctx, file, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        fail(err, errlen, "--client-ca-file %s", file);
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    /* A CA certificate also trusted for other purposes must not make a
     * server certificate pass as a client's. */
    SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    /* Without SSL_VERIFY_FAIL_IF_NO_PEER_CERT: a client without a
     * certificate may still present a bearer token. */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return 0;
}

SSL_CTX *tls_server_context(const tls_config *cfg, char *err, size_t errlen)
{
    if (!cfg->cert_file != !cfg->key_file) {
        snprintf(err, errlen, "--tls-cert-file and --tls-private-key-file go together");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fail(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Idle keep-alive connections then hold no TLS buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
        fail(err, errlen, "cannot configure TLS");
        SSL_CTX_free(ctx);
        return NULL;
    }
    int rc = cfg->cert_file ? load_pair(ctx, cfg, err, errlen)
                            : self_signed(ctx, cfg, err, errlen);
    if (rc == 0 && !cfg->cert_file)
        vk_warn("serving the kubelet API with a self-signed certificate",
                "hint=\"give --tls-cert-file and --tls-private-key-file\"");
    if (rc == 0 && cfg->client_ca_file)
        rc = load_client_ca(ctx, cfg->client_ca_file, err, errlen);
    if (rc < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}
