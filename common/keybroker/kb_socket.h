/*
 * kb_socket.h: where keybrokerd listens and its clients connect by default.
 *
 * Shared by the daemon and libkeybroker (keybroker.h includes it, installed as
 * <keybroker/kb_socket.h>), so the two meet by default without the daemon
 * linking client code.
 */
#ifndef KB_SOCKET_H
#define KB_SOCKET_H

/* What libkeybroker exports (as kb_codes.h defines it). */
#ifndef KB_API
#define KB_API __attribute__((visibility("default")))
#endif

#include <stddef.h>

/*
 * The default socket path, as a pattern: kb_default_socket() expands it at
 * run time. When XDG_RUNTIME_DIR is unset or empty, KB_FALLBACK_SOCKET is used.
 */
#define KB_DEFAULT_SOCKET "$XDG_RUNTIME_DIR/keybroker.sock"
#define KB_FALLBACK_SOCKET "/run/keybroker/keybroker.sock"

/* The longest socket path a Unix socket address can hold, NUL excluded. */
#define KB_SOCKET_PATH_MAX 107

/*
 * kb_default_socket writes the default socket path and a NUL to buf (capacity
 * cap): "$XDG_RUNTIME_DIR/keybroker.sock", or KB_FALLBACK_SOCKET when
 * XDG_RUNTIME_DIR is unset or empty. Returns the path's length, or -1 if it
 * does not fit in cap bytes or is over KB_SOCKET_PATH_MAX (buf is then "").
 */
KB_API int kb_default_socket(char *buf, size_t cap);

#endif
