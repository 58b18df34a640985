/* privdrop.h -- run vkc-core, and so its provider, as an unprivileged user.
 *
 * Root is needed only to start: to bind a kubelet port below 1024, to read
 * key files only root may read and to create the socket directory under
 * /run. With --user NAME[:GROUP] the core does those first and then gives
 * up root for good, before it serves the Core service or starts the
 * provider, so the provider is spawned as that user too:
 *
 *   main:  privdrop_parse           (right after the flags; exit 2 on error)
 *          privdrop_socket_dir      (instead of socket_dir_prepare)
 *          ... API clients, node, kubelet API (port bound, keys read) ...
 *          privdrop_drop            (before the Core service and the provider)
 *
 * The socket directory is the one thing handed over: it is chowned to the
 * user, who must create provider.sock and core.sock in it and remove them.
 */
#ifndef VKC_CORE_PRIVDROP_H
#define VKC_CORE_PRIVDROP_H

#include <stddef.h>
#include <sys/types.h>

typedef struct privdrop_user {
    char *spec;        /* as given, for logs */
    uid_t uid;
    gid_t gid;
    gid_t *groups;     /* supplementary groups, NULL when none */
    size_t n_groups;
} privdrop_user;

/* Resolve "USER[:GROUP]". USER and GROUP are names from the user and group
 * databases, or numeric ids. Without GROUP the user's primary group and its
 * supplementary groups from the group database apply (what initgroups
 * does); with GROUP, exactly that group and no supplementary ones. A
 * numeric user without a passwd entry needs :GROUP. uid 0 and gid 0 are
 * refused: they would drop nothing. 0, or -1 with a one-line message in err
 * (naming --user); *u is then empty. Free with privdrop_user_free. */
int privdrop_parse(const char *spec, privdrop_user *u, char *err, size_t errlen);
void privdrop_user_free(privdrop_user *u);

/* As root: socket_dir_prepare(dir), then chown dir to the user, and check
 * in a child process already switched to the user that it can create and
 * open sockets there (every ancestor searchable). A dir owned by the user
 * (left by an earlier run) is taken back to root first, so that
 * socket_dir_prepare's ownership rule holds. 0, or -1 (logged). */
int privdrop_socket_dir(const char *dir, const privdrop_user *u);

/* Become the user for good: supplementary groups, gid and uid (real,
 * effective and saved, in every thread), then refuse to continue unless
 * setuid(0) fails. Also marks the process non-dumpable (the provider runs
 * as the same user and must not read the core's memory) and sets
 * no_new_privs (nothing the core starts can regain root through a setuid
 * binary). must_read: NULL-terminated paths the core reads again later
 * (a rotating token file), each checked readable by the user; NULL for
 * none. 0, or -1 (logged): the core must exit. */
int privdrop_drop(const privdrop_user *u, const char *const *must_read);

#endif
