/*
 * line.c: newline-framed lines on a stream socket (see line.h).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "line.h"

#define LINE_INITIAL 4096

kb_line_rc kb_line_send(int fd, const char *p, size_t n, kb_line_wait wait, void *ctx)
{
	ssize_t w;

	while (n > 0) {
		if (wait && wait(ctx, POLLOUT) != 0)
			return KB_LINE_STOPPED;
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == EPIPE || errno == ECONNRESET ? KB_LINE_CLOSED : KB_LINE_ERRNO;
		}
		p += w;
		n -= (size_t)w;
	}
	return KB_LINE_OK;
}

/* grow doubles the buffer, never past max + 1 bytes. */
static kb_line_rc grow(char **buf, size_t len, size_t *cap, size_t max)
{
	size_t ncap = *cap ? *cap * 2 : LINE_INITIAL;
	char *nb;

	if (ncap > max + 1)
		ncap = max + 1;
	nb = malloc(ncap);
	if (nb == NULL)
		return KB_LINE_NOMEM;
	if (*buf != NULL) {
		memcpy(nb, *buf, len);
		explicit_bzero(*buf, *cap);
		free(*buf);
	}
	*buf = nb;
	*cap = ncap;
	return KB_LINE_OK;
}

/*
 * readable blocks until fd can be read. A poll for POLLIN is not woken when
 * the peer reads what this side sent and frees its send buffer, as a thread
 * blocked in recv is: one context switch fewer per request.
 */
static int readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -1;
	return 0;
}

kb_line_rc kb_line_read(int fd, char **buf, size_t *len, size_t *cap, size_t max, size_t *line_len,
			kb_line_wait wait, void *ctx)
{
	size_t scanned = 0;
	char *nl;
	ssize_t r;

	for (;;) {
		nl = *len > scanned ? memchr(*buf + scanned, '\n', *len - scanned) : NULL;
		if (nl != NULL) {
			*line_len = (size_t)(nl - *buf);
			return KB_LINE_OK;
		}
		scanned = *len;
		if (*len > max)
			return KB_LINE_TOO_LONG;
		if (*len == *cap && grow(buf, *len, cap, max) != KB_LINE_OK)
			return KB_LINE_NOMEM;
		if (wait ? wait(ctx, POLLIN) != 0 : readable(fd) != 0)
			return wait ? KB_LINE_STOPPED : KB_LINE_ERRNO;
		r = recv(fd, *buf + *len, *cap - *len, 0);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? KB_LINE_CLOSED : KB_LINE_ERRNO;
		}
		if (r == 0)
			return KB_LINE_CLOSED;
		*len += (size_t)r;
	}
}

void kb_line_drop(char *buf, size_t *len, size_t line_len)
{
	size_t rest = *len > line_len ? *len - line_len - 1 : 0;

	if (rest > 0)
		memmove(buf, buf + line_len + 1, rest);
	if (buf != NULL)
		explicit_bzero(buf + rest, *len - rest);
	*len = rest;
}
