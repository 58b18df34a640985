/* spawn.h -- start the provider process.
 *
 * fork/exec from a threaded process: everything the child needs (path,
 * argv, environment, /dev/null) is prepared before fork, so the child only
 * makes system calls until exec.
 */
#ifndef VKC_CORE_SPAWN_H
#define VKC_CORE_SPAWN_H

#include <sys/types.h>

/* The process environment with each "KEY=value" of set (NULL-terminated)
 * replacing any KEY already there. NULL when memory ran out. */
char **spawn_env(const char *const *set);
void spawn_env_free(char **env);

/* Run path with argv and env as the leader of a new process group, stdin
 * from /dev/null, stdout and stderr shared with the core. The child gets
 * SIGTERM should the core die first, so a crashed core leaves no provider
 * behind. Returns the pid, or -1 (logged) when no process could be made.
 * A failed exec is logged too, but the pid is returned: that child exits
 * with status 127 and is reaped like any provider that exited. */
pid_t spawn_process(const char *path, char *const argv[], char *const env[]);

#endif
