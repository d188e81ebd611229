/*
 * unixsock.h: the one way the broker makes a listening Unix socket, for the
 * NDJSON socket (server.c) and each KMS v2 socket (kms_face.c) alike.
 */
#ifndef KB_UNIXSOCK_H
#define KB_UNIXSOCK_H

#include <sys/types.h>

#include "error.h"

/*
 * kb_unix_listen listens on path (non-blocking, close-on-exec), created
 * under umask 0177 and then given group (NULL: the daemon's own) and mode,
 * so it never exists with a looser mode. It refuses a directory every user
 * may write to, a path that is not a socket, and a socket another process
 * answers on; a stale socket file is replaced. Returns KB_OK with *fd set,
 * or an error (nothing left behind, *fd -1).
 */
kb_code kb_unix_listen(const char *path, mode_t mode, const char *group, int *fd, kb_err *err);

#endif
