/* kubeconfig.h -- where the API server is and how to prove who we are.
 *
 * The core finds its credentials the way kubectl and client-go do:
 *
 *   1. --kubeconfig PATH when given;
 *   2. else $KUBECONFIG: only the first file of a colon-separated list is
 *      read (kubectl merges them all; vkc does not);
 *   3. else the in-cluster service account, when KUBERNETES_SERVICE_HOST is
 *      set (the core runs in a pod);
 *   4. else ~/.kube/config.
 *
 * From a kubeconfig file the current context (or --context) picks a cluster
 * and a user. Relative file paths in it resolve against the directory of
 * the file, as kubectl resolves them. Unknown fields are ignored, each
 * logged once (at info, by its path, never its value). Every
 * error names the file and, where it is known, the line:
 *
 *   kubeconfig /etc/vkc/kubeconfig: line 7: cluster "prod": no server
 *
 * Certificates and keys are read when the config is loaded, whether given
 * inline (*-data, base64) or as files. A token file is only checked then:
 * tokens rotate in place (projected service-account tokens do every hour),
 * so kube_config_token re-reads it each time a request needs one.
 */
#ifndef VKC_CORE_KUBECONFIG_H
#define VKC_CORE_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct kube_config {
    char *server;          /* "https://10.0.0.1:6443" */
    /* PEM bytes (NUL-terminated; len excludes the NUL), NULL when absent.
     * The *_file members name the file they came from, NULL when given
     * inline, so a caller can reload a rotated client certificate. */
    char *ca_pem;
    size_t ca_pem_len;
    char *ca_file;
    char *cert_pem;
    size_t cert_pem_len;
    char *cert_file;
    char *key_pem;
    size_t key_pem_len;
    char *key_file;
    char *token;           /* inline bearer token, NULL when none */
    char *token_file;      /* read at each use, NULL when none */
    bool insecure;         /* insecure-skip-tls-verify */
    char *tls_server_name; /* name to verify instead of the server's host */
    char *namespace;       /* the context's namespace, "default" if unset */
    char *source;          /* for logs: "kubeconfig PATH (context C)" or "in-cluster" */
} kube_config;

/* Each loader fills *cfg and returns 0, or returns -1 with a one-line
 * message in err (and *cfg zeroed). Release with kube_config_free. */

/* The usual order above. path is --kubeconfig (NULL when not given),
 * context is --context (NULL or "" for the file's current-context; ignored
 * in-cluster). */
int kube_config_load(kube_config *cfg, const char *path, const char *context,
                     char *err, size_t errlen);
/* One kubeconfig file. */
int kube_config_load_file(kube_config *cfg, const char *path, const char *context,
                          char *err, size_t errlen);
/* The pod's service account: KUBERNETES_SERVICE_HOST/_PORT and
 * token, ca.crt, namespace in dir (NULL for
 * /var/run/secrets/kubernetes.io/serviceaccount). */
int kube_config_in_cluster(kube_config *cfg, const char *dir, char *err, size_t errlen);

/* Clears key and token material before freeing. cfg may be all-zero. */
void kube_config_free(kube_config *cfg);

/* The bearer token to send now: token_file's current content (trimmed)
 * when there is one, falling back to the inline token if the file cannot
 * be read; else the inline token. 0 with *token malloc'ed (or NULL when the
 * config has no token), or -1 with a message in err. */
int kube_config_token(const kube_config *cfg, char **token, char *err, size_t errlen);

/* A certificate or key file's current content, for reloading cert_file and
 * key_file: 0 with *pem malloc'ed (NUL-terminated, *len without the NUL),
 * or -1 with errno set. */
int kube_config_read_pem(const char *path, char **pem, size_t *len);

#endif
