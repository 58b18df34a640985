/* tls.h -- the TLS server context of the kubelet API.
 *
 * TLS 1.2 and 1.3 only; TLS 1.2 limited to ECDHE key exchange with AEAD
 * ciphers (AES-GCM, ChaCha20-Poly1305), the set Go's crypto/tls prefers, so
 * the API server's kubelet client always finds a match. Renegotiation and
 * compression are off.
 *
 * The serving certificate comes from --tls-cert-file/--tls-private-key-file
 * or, without them, is a self-signed ECDSA P-256 certificate made at start
 * for the node's names (a warning says so: clients can only skip
 * verification of it, as the API server does by default for kubelets).
 *
 * With a client CA (--client-ca-file) the server asks every client for a
 * certificate. A client may send none (it may authenticate with a bearer
 * token instead); one that sends a certificate the CA did not sign for
 * client authentication fails the handshake.
 */
#ifndef VKC_CORE_TLS_H
#define VKC_CORE_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

typedef struct tls_config {
    const char *cert_file;       /* PEM chain, leaf first; NULL: self-signed */
    const char *key_file;        /* PEM key of cert_file */
    const char *client_ca_file;  /* PEM bundle; NULL: no client certificates */
    /* Subject alternative names of a self-signed certificate: IP addresses
     * or DNS names. The first is also its common name. */
    const char *const *hosts;
    size_t n_hosts;
} tls_config;

/* NULL on failure with a one-line message in err, naming the file at
 * fault. Free with SSL_CTX_free. */
SSL_CTX *tls_server_context(const tls_config *cfg, char *err, size_t errlen);

#endif
