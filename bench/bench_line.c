/*
 * bench_line.c: the client side of a line protocol with one request in
 * flight: write the request, read to the newline. The broker driver and the
 * echo floor both use it, so they pay the same client cost per request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "bench.h"
#include "line.h"

#define LINE_INITIAL 8192
#define LINE_MAX_BYTES (1024 * 1024)

int bench_line_open(bench_line *l, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path %s is too long", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	l->buf = malloc(LINE_INITIAL);
	l->cap = LINE_INITIAL;
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l->buf == NULL || l->fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		bench_line_close(l);
		return -1;
	}
	/* a full listen backlog (EAGAIN) is momentary: wait, as any client would */
	for (int tries = 0; connect(l->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0; tries++) {
		if ((errno != EAGAIN && errno != EINTR) || tries > 500) {
			snprintf(err, errlen, "cannot connect to %s: %s", path, strerror(errno));
			bench_line_close(l);
			return -1;
		}
		usleep(10000);
	}
	return 0;
}

int bench_line_call(bench_line *l, const char *req, size_t n)
{
	/* drop the previous response; a pipelining-free client has nothing else buffered */
	if (l->line_len > 0 || l->len > 0)
		kb_line_drop(l->buf, &l->len, l->line_len);
	l->line_len = 0;
	if (kb_line_send(l->fd, req, n, NULL, NULL) != KB_LINE_OK ||
	    kb_line_read(l->fd, &l->buf, &l->len, &l->cap, LINE_MAX_BYTES, &l->line_len, NULL, NULL) != KB_LINE_OK)
		return -1;
	l->buf[l->line_len] = '\0';
	return 0;
}

void bench_line_close(bench_line *l)
{
	if (l->fd >= 0)
		close(l->fd);
	if (l->buf != NULL) {
		explicit_bzero(l->buf, l->cap);
		free(l->buf);
	}
	memset(l, 0, sizeof(*l));
	l->fd = -1;
}
