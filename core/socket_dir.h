/* socket_dir.h -- the private directory holding provider.sock and core.sock.
 *
 * Whoever can connect to core.sock can ask for the node's Secrets, so the
 * directory is the access check: mode 0700, owned by the core's user. The
 * sockets inside are 0600 besides, but a socket's mode is only honoured on
 * some systems; the directory's is everywhere.
 */
#ifndef VKC_CORE_SOCKET_DIR_H
#define VKC_CORE_SOCKET_DIR_H

/* Create dir and missing parents (0700), then insist that dir is a real
 * directory owned by us (chmod 0700) in a parent owned by us or root, so no
 * one else can swap it. 0, or -1 (logged). */
int socket_dir_prepare(const char *dir);

/* Does something accept connections on the Unix socket at path? */
int socket_accepts(const char *path);

#endif
