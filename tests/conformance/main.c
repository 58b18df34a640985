/* main.c -- vkc-conformance: is this provider what proto/provider.proto
 * says a provider is? Flags, the provider process, the order of the run.
 *
 * The suite needs nothing from the provider but its socket: started with
 * --provider-cmd it gets VKC_PROVIDER_LISTEN and VKC_CORE_TARGET exactly as
 * vkc-core would give them, in a private directory of the suite's.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../core/command.h"
#include "../../core/spawn.h"
#include "conformance.h"
#include "log.h"
#include "rpc.h"

#define SHUTDOWN_MS 10000  /* a provider's SIGTERM to exit */

static const char default_command[] =
    "sh -c 'i=0; while true; do i=$((i+1)); echo \"conformance line $i\"; sleep 1; done'";
static const char default_exit_command[] = "sh -c 'sleep 1; exit 3'";

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vkc-conformance (--provider-cmd CMD | --provider-socket PATH) [flags]\n"
        "\n"
        "Checks a vkc provider against the contract of proto/provider.proto.\n"
        "\n"
        "  --provider-cmd CMD        start the provider (split into words like vkc-core does)\n"
        "                            with VKC_PROVIDER_LISTEN and VKC_CORE_TARGET set\n"
        "  --provider-socket PATH    use a provider already serving on this Unix socket;\n"
        "                            its Handshake names the suite's Core service\n"
        "  --junit FILE              also write the results as JUnit XML\n"
        "  --namespace NS            of the test pods (vkc-conformance)\n"
        "  --node-name NAME          sent in the Handshake (vkc-conformance-node)\n"
        "  --image IMAGE             of the test containers (busybox)\n"
        "  --command CMD             the test container: writes a log line a second and\n"
        "                            keeps running (%s)\n"
        "  --exit-command CMD        a container that exits with code 3 (%s)\n"
        "  --host-network            test pods use the host's network\n"
        "  --no-volumes              the test pod mounts no ConfigMap or Secret (for\n"
        "                            providers that cannot; no callback is then expected)\n"
        "  --port-forward-port N     port to forward to in the test pod (8080)\n"
        "  --echo-server             serve an echo on 127.0.0.1:N ourselves (N 0: any free\n"
        "                            port), for providers whose pods share our network\n"
        "  --skip-port-forward       skip the port-forward checks\n"
        "  --call-timeout MS         deadline of every unary call (10000)\n"
        "  --start-timeout MS        for the provider to serve and a pod to run (60000)\n"
        "  --known-failure CHECK     report CHECK as XFAIL instead of FAIL (repeatable);\n"
        "                            if it passes it is reported XPASS, a failure\n"
        "  --help\n"
        "\n"
        "Exit status: 0 when no check failed, 1 when one did, 2 for bad usage.\n",
        default_command, default_exit_command);
}

static int positive(const char *flag, const char *v, int *out, int min)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || end == v || n < min || n > 3600000) {
        fprintf(stderr, "vkc-conformance: %s: bad number \"%s\"\n", flag, v);
        return -1;
    }
    *out = (int)n;
    return 0;
}

static int split(const char *flag, const char *line, char ***argv)
{
    const char *err = NULL;
    command_free(*argv);
    *argv = NULL;
    if (command_split(line, argv, &err) < 0 || !(*argv)[0]) {
        fprintf(stderr, "vkc-conformance: %s: %s\n", flag, err ? err : "empty command");
        return -1;
    }
    return 0;
}

/* 0, 1 after --help, or -1 (printed). */
static int parse_flags(int argc, char **argv, conf_options *o)
{
    enum { PROVIDER_CMD = 256, PROVIDER_SOCKET, JUNIT, NAMESPACE, NODE_NAME, IMAGE, COMMAND,
           EXIT_COMMAND, HOST_NETWORK, NO_VOLUMES, PF_PORT, ECHO_SERVER, SKIP_PF, CALL_TIMEOUT,
           START_TIMEOUT, KNOWN_FAILURE, HELP };
    static const struct option flags[] = {
        {"provider-cmd", required_argument, NULL, PROVIDER_CMD},
        {"provider-socket", required_argument, NULL, PROVIDER_SOCKET},
        {"junit", required_argument, NULL, JUNIT},
        {"namespace", required_argument, NULL, NAMESPACE},
        {"node-name", required_argument, NULL, NODE_NAME},
        {"image", required_argument, NULL, IMAGE},
        {"command", required_argument, NULL, COMMAND},
        {"exit-command", required_argument, NULL, EXIT_COMMAND},
        {"host-network", no_argument, NULL, HOST_NETWORK},
        {"no-volumes", no_argument, NULL, NO_VOLUMES},
        {"port-forward-port", required_argument, NULL, PF_PORT},
        {"echo-server", no_argument, NULL, ECHO_SERVER},
        {"skip-port-forward", no_argument, NULL, SKIP_PF},
        {"call-timeout", required_argument, NULL, CALL_TIMEOUT},
        {"start-timeout", required_argument, NULL, START_TIMEOUT},
        {"known-failure", required_argument, NULL, KNOWN_FAILURE},
        {"help", no_argument, NULL, HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (conf_options){.namespace_ = "vkc-conformance", .node_name = "vkc-conformance-node",
                        .image = "busybox", .port_forward_port = 8080,
                        .call_timeout_ms = 10000, .start_timeout_ms = 60000};
    o->known_failures = calloc((size_t)argc, sizeof *o->known_failures);
    if (!o->known_failures || split("--command", default_command, &o->command) < 0 ||
        split("--exit-command", default_exit_command, &o->exit_command) < 0)
        return -1;
    int c;
    int rc = 0;
    opterr = 1;
    while (rc == 0 && (c = getopt_long(argc, argv, "", flags, NULL)) != -1) {
        switch (c) {
        case PROVIDER_CMD: o->provider_cmd = optarg; break;
        case PROVIDER_SOCKET: o->provider_socket = optarg; break;
        case JUNIT: o->junit = optarg; break;
        case NAMESPACE: o->namespace_ = optarg; break;
        case NODE_NAME: o->node_name = optarg; break;
        case IMAGE: o->image = optarg; break;
        case COMMAND: rc = split("--command", optarg, &o->command); break;
        case EXIT_COMMAND: rc = split("--exit-command", optarg, &o->exit_command); break;
        case HOST_NETWORK: o->host_network = true; break;
        case NO_VOLUMES: o->no_volumes = true; break;
        case PF_PORT: rc = positive("--port-forward-port", optarg, &o->port_forward_port, 0); break;
        case ECHO_SERVER: o->echo_server = true; break;
        case SKIP_PF: o->skip_port_forward = true; break;
        case CALL_TIMEOUT: rc = positive("--call-timeout", optarg, &o->call_timeout_ms, 100); break;
        case START_TIMEOUT:
            rc = positive("--start-timeout", optarg, &o->start_timeout_ms, 100);
            break;
        case KNOWN_FAILURE: o->known_failures[o->n_known_failures++] = optarg; break;
        case HELP: usage(stdout); return 1;
        default: return -1;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "vkc-conformance: unexpected argument \"%s\"\n", argv[optind]);
        rc = -1;
    }
    if (rc == 0 && !o->provider_cmd == !o->provider_socket) {
        fprintf(stderr, "vkc-conformance: give one of --provider-cmd and --provider-socket\n");
        rc = -1;
    }
    if (rc == 0 && o->port_forward_port > 65535) {
        fprintf(stderr, "vkc-conformance: --port-forward-port: not a TCP port\n");
        rc = -1;
    }
    if (rc == 0 && o->port_forward_port == 0 && !o->echo_server) {
        fprintf(stderr, "vkc-conformance: --port-forward-port 0 needs --echo-server\n");
        rc = -1;
    }
    return rc;
}

static void free_options(conf_options *o)
{
    command_free(o->command);
    command_free(o->exit_command);
    free(o->known_failures);
}

/* ---- the provider process ----------------------------------------------------- */

/* Start the provider; its pid, or -1 (printed). */
static pid_t start_provider(const conf_options *o, const char *listen, const char *core)
{
    char **argv = NULL;
    const char *err = NULL;
    if (command_split(o->provider_cmd, &argv, &err) < 0 || !argv[0]) {
        fprintf(stderr, "vkc-conformance: --provider-cmd: %s\n", err ? err : "empty command");
        command_free(argv);
        return -1;
    }
    char *path = command_resolve(argv[0]);
    char set_listen[256], set_core[256];
    snprintf(set_listen, sizeof set_listen, "VKC_PROVIDER_LISTEN=%s", listen);
    snprintf(set_core, sizeof set_core, "VKC_CORE_TARGET=%s", core);
    char **env = spawn_env((const char *[]){set_listen, set_core, NULL});
    pid_t pid = -1;
    if (!path)
        fprintf(stderr, "vkc-conformance: --provider-cmd: %s: no such executable\n", argv[0]);
    else if (env)
        pid = spawn_process(path, argv, env);
    spawn_env_free(env);
    free(path);
    command_free(argv);
    return pid;
}

/* Wait up to ms for pid to exit; its wait status, or -1 when it still runs. */
static int reap(pid_t pid, int ms)
{
    int status;
    for (long end = now_ms() + ms;; sleep_ms(20)) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        if (now_ms() >= end)
            return -1;
    }
}

/* Has the provider's socket appeared? Give up when the process exits
 * (*pid is then set to -1: it is reaped). */
static bool wait_socket(const char *path, pid_t *pid, int ms, char *why, size_t whylen)
{
    for (long end = now_ms() + ms; now_ms() < end; sleep_ms(20)) {
        if (access(path, F_OK) == 0)
            return true;
        int status;
        if (*pid > 0 && waitpid(*pid, &status, WNOHANG) == *pid) {
            *pid = -1;
            snprintf(why, whylen, "the provider exited (%s %d) before serving",
                     WIFEXITED(status) ? "status" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
            return false;
        }
    }
    snprintf(why, whylen, "nothing serves on %s after %d s", path, ms / 1000);
    return false;
}

static void stop_provider(pid_t pid)
{
    long start = now_ms();
    kill(pid, SIGTERM);
    int status = reap(pid, SHUTDOWN_MS);
    long took = now_ms() - start;
    if (status == -1) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        reap(pid, SHUTDOWN_MS);
    }
    /* The group may hold what the provider started and left behind. */
    kill(-pid, SIGKILL);
    check("provider/shutdown", status != -1, "the provider still ran %d s after SIGTERM",
          SHUTDOWN_MS / 1000);
    if (status != -1)
        printf("      provider exited in %ld ms with %s %d\n", took,
               WIFEXITED(status) ? "status" : "signal",
               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
}

/* ---- the run ------------------------------------------------------------------ */

static void run(suite *s)
{
    run_handshake_checks(s);
    if (!s->info.name) /* no handshake, nothing else can be asked */
        return;
    run_node_checks(s);
    run_pod_checks(s);
    run_log_checks(s);
    run_exec_checks(s);
    run_port_forward_checks(s);
    run_stats_checks(s);
    run_cancel_checks(s);
    run_delete_checks(s);
}

int main(int argc, char **argv)
{
    conf_options o;
    int rc = parse_flags(argc, argv, &o);
    if (rc != 0) {
        if (rc < 0)
            usage(stderr);
        free_options(&o);
        return rc < 0 ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    vk_log_set_component("conformance");
    vk_log_set_level(VK_LOG_ERROR);
    vk_rpc_init();
    report_init(&o);

    char dir[] = "/tmp/vkc-conformance-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("vkc-conformance: mkdtemp");
        free_options(&o);
        return 2;
    }
    suite s = {.opt = &o};
    char listen_path[128], core_path[128];
    snprintf(listen_path, sizeof listen_path, "%s/provider.sock", dir);
    snprintf(core_path, sizeof core_path, "%s/core.sock", dir);
    snprintf(s.core_target, sizeof s.core_target, "unix:%s", core_path);
    snprintf(s.provider_target, sizeof s.provider_target, "unix:%s",
             o.provider_socket ? o.provider_socket : listen_path);
    snprintf(s.run_id, sizeof s.run_id, "%lx%lx", (unsigned long)getpid() & 0xfffff,
             (unsigned long)time(NULL) & 0xfffff);

    s.core = core_service_start(s.core_target, o.namespace_, o.node_name);
    pid_t pid = -1;
    char why[256] = "";
    bool up = false;
    if (s.core && o.provider_cmd) {
        pid = start_provider(&o, s.provider_target, s.core_target);
        up = pid > 0 && wait_socket(listen_path, &pid, o.start_timeout_ms, why, sizeof why);
    } else if (s.core) {
        pid_t none = -1;
        up = wait_socket(o.provider_socket, &none, o.start_timeout_ms, why, sizeof why);
    } else {
        snprintf(why, sizeof why, "the suite cannot serve the Core service");
    }
    if (up) {
        s.pc = pc_new(s.provider_target, o.call_timeout_ms, NULL);
        up = s.pc && pc_wait_ready(s.pc, o.start_timeout_ms);
        if (!up)
            snprintf(why, sizeof why, "cannot connect to %s", s.provider_target);
    }
    if (check("provider/start", up, "%s", why[0] ? why : "the provider did not start")) {
        run(&s);
        suite_cleanup(&s);
    }
    pc_unref(s.pc);
    if (pid > 0)
        stop_provider(pid);
    /* After the provider: it may call back while it stops. */
    if (s.core)
        run_callback_checks(&s);
    core_service_stop(s.core);
    pc_info_clear(&s.info);
    unlink(listen_path);
    unlink(core_path);
    rmdir(dir);
    vk_rpc_shutdown();
    rc = report_finish();
    free_options(&o);
    return rc;
}
