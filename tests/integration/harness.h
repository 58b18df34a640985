/* harness.h -- what the integration tests share.
 *
 * Clocks and bounded waits, a few JSON accessors, child processes (run a
 * command for its output, start a provider binary on its socket, stop it
 * with SIGTERM and check that it exits 0), temporary directories, and the
 * test cluster of tests/cluster (found through $VKC_CLUSTER_DIR or brought
 * up here, its env file read, torn down at the end).
 *
 * Linked into every binary of tests/integration (see the Makefile); it is
 * not a test of its own. Helpers whose name says "assert" fail the running
 * check case; the others return an error and print nothing unless said.
 */
#ifndef VKC_TESTS_INTEGRATION_HARNESS_H
#define VKC_TESTS_INTEGRATION_HARNESS_H

#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <yajl/yajl_tree.h>

#include "buf.h"
#include "provider.pb-c.h"

/* ---- time ------------------------------------------------------------------------ */

/* CLOCK_MONOTONIC in milliseconds. */
long harness_now_ms(void);

/* Sleep ms milliseconds. */
void harness_sleep_ms(int ms);

/* Fail the case unless cond holds within ms, checking it every step_ms. */
#define HARNESS_EVENTUALLY(cond, ms, step_ms)                               \
    do {                                                                    \
        long end_ = harness_now_ms() + (ms);                                \
        while (!(cond) && harness_now_ms() < end_)                          \
            harness_sleep_ms(step_ms);                                      \
        ck_assert_msg(cond, "timed out waiting for " #cond);               \
    } while (0)

/* ---- JSON ------------------------------------------------------------------------ */

/* data (len bytes, no NUL needed) as a tree (yajl_tree_free it); fails the
 * case when it is not JSON. */
yajl_val harness_json_parse(const void *data, size_t len);

/* The string at path (NULL-terminated keys) under v, or NULL. */
const char *harness_jstr(yajl_val v, const char **path);

/* Element i of the array v[key], or NULL. */
yajl_val harness_jarr(yajl_val v, const char *key, size_t i);

/* A PodRef of namespace "default" (the strings are borrowed). */
Vkc__Provider__V1__PodRef harness_pod_ref(const char *name);

/* ---- processes ------------------------------------------------------------------- */

/* $VKC_BIN_DIR, default build/bin. */
const char *harness_bin_dir(void);

/* Start argv (argv[0] a path). Its stdout and stderr go into a pipe whose
 * read end is *fd when fd is not NULL, else to the file out_path when that
 * is not NULL, else to ours. The child dies with this process. The pid, or
 * -1. */
pid_t harness_spawn(char *const argv[], const char *out_path, int *fd);

/* Run argv to the end, its output appended to out (never NULL data
 * afterwards). Its exit status, -1 when it did not exit normally. */
int harness_run(char *const argv[], vk_buf *out);

/* Run `script arg`; on failure print its output. 0 when it exited 0. */
int harness_run_script(const char *script, const char *arg);

/* Start a provider binary: argv[0] is its path; env is a NULL-terminated
 * list of NAME=VALUE to set (VKC_PROVIDER_LISTEN among them) and unset one
 * of names to remove (either may be NULL). Its stderr goes to /dev/null
 * unless $VKC_TEST_VERBOSE is set. Fails the case if fork fails. */
pid_t harness_provider_spawn(const char *const argv[], const char *const env[],
                             const char *const unset[]);

/* Wait up to ms (checking every step_ms) for the file sock to exist. false,
 * with *pid reaped and set to 0, if the process ended first; true otherwise
 * (the socket may still be missing after ms: the caller's connect says). */
bool harness_wait_socket(pid_t *pid, const char *sock, int ms, int step_ms);

/* Wait up to ms (checking every step_ms) for pid to end: its wait status,
 * or -1 when it did not. */
int harness_reap(pid_t pid, int ms, int step_ms);

/* SIGTERM *pid (when > 0) and wait up to ms for it (SIGKILL after that),
 * then fail the case unless it exited with 0; what names it in the
 * message. *pid is 0 afterwards. */
void harness_assert_stops(pid_t *pid, int ms, int step_ms, const char *what);

/* ---- temporary directories ------------------------------------------------------- */

/* mkdtemp of /tmp/PREFIX-XXXXXX into buf: buf, or NULL (errno set). */
char *harness_make_tmpdir(char *buf, size_t len, const char *prefix);

/* rm -rf dir. 0 on success. */
int harness_remove_tree(const char *dir);

/* ---- the test cluster ------------------------------------------------------------ */

typedef struct harness_cluster {
    char dir[PATH_MAX];     /* the tests/cluster/up.sh directory */
    char env[PATH_MAX + 8]; /* DIR/env */
    char admin_kubeconfig[PATH_MAX + 32]; /* DIR/admin.kubeconfig */
    bool owned;             /* brought up here: harness_cluster_down tears it down */
} harness_cluster;

/* $VKC_CLUSTER_DIR when set; else a cluster brought up with
 * tests/cluster/up.sh in /tmp/PREFIX-XXXXXX with the Kubernetes binaries
 * of $VKC_K8S_BIN or $VKC_CACHE (default /var/cache/vkc)/k8s-*. -1, with a
 * FAIL line on stderr, when there is none. */
int harness_cluster_up(harness_cluster *c, const char *prefix);

/* VAR's value in the cluster's env file (`export VAR=VALUE` lines, printf
 * %q quoting). 0, or -1 when missing. */
int harness_cluster_env(const harness_cluster *c, const char *var, char *out, size_t outlen);

/* For a cluster brought up here: tests/cluster/down.sh, then remove its
 * directory if that succeeded (else it stays, with the logs). */
void harness_cluster_down(harness_cluster *c);

/* VAR's value in any such env file. 0, or -1 when missing. */
int harness_env_value(const char *file, const char *var, char *out, size_t outlen);

#endif
