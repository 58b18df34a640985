/* supervisor.h -- keep one provider alive and connected.
 *
 * Two modes. Spawn mode starts the provider command itself, in a process
 * group of its own, with VKC_PROVIDER_LISTEN and VKC_CORE_TARGET in its
 * environment; socket mode connects to a provider started by someone else
 * (a sidecar). Either way the supervisor connects, handshakes, then pings.
 * When the provider exits, or misses three pings in a row (hung: its
 * process group is killed, or in socket mode the connection dropped), it is
 * started or connected again after a back-off of 100 ms doubling up to the
 * configured cap, with +-20% jitter; the back-off starts over once a
 * provider stayed up for 60 s. A provider that speaks another protocol
 * version is never retried: that is fatal.
 *
 * Everything here runs on the libev loop; the blocking parts (connecting,
 * handshake, pings) run on a vk_pool. Transitions are logged at info level
 * ("provider ready", "provider exited", "provider hung", ...).
 */
#ifndef VKC_CORE_SUPERVISOR_H
#define VKC_CORE_SUPERVISOR_H

#include <ev.h>

#include "metrics.h"
#include "provider_client.h"
#include "work.h"

typedef struct supervisor supervisor;

/* How other modules learn that the provider came and went; both run on
 * the loop. up: the provider handshook, pc answers (pc_ref it to keep it
 * past the call; info is valid during the call only); a module resyncs its
 * state with the provider here. down: the provider is gone or hung; stop
 * issuing calls, cancel streams, drop references once calls returned. Every
 * up is followed by exactly one down, at the latest on shutdown. */
typedef struct supervisor_listener {
    void (*up)(void *ud, provider_client *pc, const pc_info *info);
    void (*down)(void *ud);
    void *ud;
} supervisor_listener;

#define SUPERVISOR_MAX_LISTENERS 8

/* Every pointer must outlive the supervisor. */
typedef struct supervisor_config {
    struct ev_loop *loop;   /* the default loop: child watchers need it */
    vk_pool *pool;

    /* Spawn mode: the command (argv[0] as the user wrote it) and the
     * executable it resolved to. NULL in socket mode. */
    char *const *argv;
    const char *path;
    const char *provider_config; /* VKC_PROVIDER_CONFIG, may be NULL */

    const char *socket_path;    /* where the provider serves */
    const char *core_target;    /* the Core service, told in the handshake */
    const char *node_name;
    const char *expected_name;  /* --provider, may be NULL */

    int ping_interval_ms, ping_timeout_ms;
    int max_backoff_ms, stop_timeout_ms;

    metric *restarts, *up, *rpc_errors; /* each may be NULL */

    /* The provider can never work with this core (another protocol
     * version): the core should exit with status 1. */
    void (*fatal)(void *ud);
    void *fatal_ud;
} supervisor_config;

supervisor *supervisor_new(const supervisor_config *cfg);
/* Add a listener (before supervisor_start). 0, or -1 when full. */
int supervisor_listen(supervisor *s, const supervisor_listener *l);
void supervisor_start(supervisor *s);
/* Stop pinging, tell listeners the provider is down, and in spawn mode
 * send SIGTERM to the provider's process group and SIGKILL once the stop
 * timeout passed. done(ud) runs on the loop when the provider is gone (at
 * once in socket mode). Called again while stopping: SIGKILL now. */
void supervisor_stop(supervisor *s, void (*done)(void *ud), void *ud);
/* Free a stopped supervisor, after the pool was freed (its completions
 * refer to the supervisor). */
void supervisor_free(supervisor *s);

#endif
