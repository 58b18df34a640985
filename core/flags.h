/* flags.h -- the command line of vkc-core.
 *
 * Names follow virtual-kubelet where it has the flag (--nodename,
 * --provider, --provider-config, --kubeconfig, --log-level, --metrics-addr,
 * --listen-port). Durations are written like Go's: "500ms", "2s", "1m30s".
 * Every problem is one line on stderr and exit status 2.
 */
#ifndef VKC_CORE_FLAGS_H
#define VKC_CORE_FLAGS_H

#include <stdio.h>

typedef struct flags {
    char *node_name;        /* --nodename, default the host name */
    char *kubeconfig;       /* --kubeconfig, unused until the API client */
    char *provider_name;    /* --provider: the name the provider should report */
    char *provider_config;  /* --provider-config, handed to a spawned provider */
    char *log_level;        /* --log-level */
    char *metrics_addr;     /* --metrics-addr, [host]:port; NULL: off */
    int listen_port;        /* --listen-port, kubelet API, 10250 */

    char **provider_argv;   /* --provider-cmd, split (command.h) */
    char *provider_path;    /* provider_argv[0] resolved through PATH */
    char *provider_socket;  /* --provider-socket: a provider already running */
    char *socket_dir;       /* --socket-dir */
    char *user;             /* --user USER[:GROUP], resolved by privdrop_parse */

    /* The Kubernetes side. */
    char *node_labels;      /* --node-labels k=v,k2=v2 (validated) */
    int disable_taint;      /* --disable-taint */
    char *node_ip;          /* --node-ip, default: detected */
    double kube_api_qps;    /* --kube-api-qps (50) */
    int kube_api_burst;     /* --kube-api-burst (100) */
    int pod_sync_workers;   /* --pod-sync-workers (10) */

    /* The kubelet API (port --listen-port). */
    char *tls_cert_file;    /* --tls-cert-file; NULL: self-signed */
    char *tls_key_file;     /* --tls-private-key-file */
    char *client_ca_file;   /* --client-ca-file: x509 client authentication */
    int token_webhook;      /* --authentication-token-webhook: TokenReview */
    int authz_webhook;      /* --authorization-mode=Webhook: SubjectAccessReview */
    int anonymous_auth;     /* --anonymous-auth (false) */
    /* --streaming-connection-idle-timeout (4h, the kubelet's; 0: none):
     * exec, attach and port-forward connections idle that long close. */
    int streaming_idle_timeout_ms;

    int ping_interval_ms;
    int ping_timeout_ms;
    int restart_max_backoff_ms;
    int stop_timeout_ms;
} flags;

enum flags_result {
    FLAGS_RUN,      /* run the core */
    FLAGS_EXIT_OK,  /* --help or --version printed */
    FLAGS_EXIT_BAD, /* error printed; exit 2 */
};

/* Parse argv into f (flags_free it whatever the result). --help and
 * --version print to out, errors go to err. */
enum flags_result flags_parse(flags *f, int argc, char **argv, FILE *out, FILE *err);
void flags_free(flags *f);

/* "1m30s" -> 90000, in Go's syntax (units ns, us, ms, s, m, h); a
 * positive duration under 1 ms is 1 ms. 0; -2 beyond INT_MAX
 * milliseconds (596h); -1 for anything else (no unit, a sign). */
int flags_parse_duration(const char *s, int *ms);

#endif
