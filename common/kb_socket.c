/*
 * kb_socket.c: the default socket path (see kb_socket.h).
 */
#include <stdio.h>
#include <stdlib.h>

#include "kb_socket.h"

int kb_default_socket(char *buf, size_t cap)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;

	if (buf == NULL || cap == 0)
		return -1;
	if (xdg != NULL && xdg[0] != '\0')
		n = snprintf(buf, cap, "%s/keybroker.sock", xdg);
	else
		n = snprintf(buf, cap, "%s", KB_FALLBACK_SOCKET);
	if (n < 0 || (size_t)n >= cap || n > KB_SOCKET_PATH_MAX) {
		buf[0] = '\0';
		return -1;
	}
	return n;
}
