/* command.h -- turn --provider-cmd into an argv.
 *
 * The command line is split into words the way a POSIX shell splits a
 * simple command, and nothing more: blanks separate words, '...' quotes
 * literally, "..." quotes with \" \\ \$ \` as the only escapes, and a
 * backslash outside quotes takes the next character literally. There is no
 * expansion of any kind, and unquoted shell operators (| & ; < > ( ) $ `)
 * are refused rather than passed on as words: a command that needs a shell
 * says so, `--provider-cmd "sh -c 'exec prov --x \"$Y\"'"`.
 *
 * Exec'ing the words directly (no /bin/sh in between) makes the process the
 * core supervises the provider itself, so the pid it logs, signals and
 * watches is the provider's.
 */
#ifndef VKC_CORE_COMMAND_H
#define VKC_CORE_COMMAND_H

/* 0 with *argv a NULL-terminated array (command_free it), or -1 with
 * *err a static description of the problem. */
int command_split(const char *line, char ***argv, const char **err);
void command_free(char **argv);

/* Find argv0 the way execvp would (PATH when it has no slash). A malloc'ed
 * path of an executable file, or NULL. */
char *command_resolve(const char *argv0);

#endif
