/*
 * line.h: newline-framed lines on a stream socket, the client side of the
 * broker's protocol. libkeybroker (conn.c) and the bench engine (bench/bench_line.c) both
 * frame with it, so they read, grow and wipe alike. Not installed.
 *
 * A buffer is (buf, len, cap) owned by the caller: bytes read and not yet
 * dropped. It grows by copy, wiping the old block (it may hold plaintexts),
 * never past max + 1 bytes (one maximal line and its newline).
 */
#ifndef KB_LINE_H
#define KB_LINE_H

#include <stddef.h>

typedef enum kb_line_rc {
	KB_LINE_OK = 0,
	KB_LINE_CLOSED,     /* the peer closed or reset the connection */
	KB_LINE_ERRNO,      /* a socket error; errno says which */
	KB_LINE_TOO_LONG,   /* more than max bytes without a newline */
	KB_LINE_NOMEM,      /* the buffer could not grow */
	KB_LINE_STOPPED,    /* wait said stop (a deadline passed); it reported why */
} kb_line_rc;

/*
 * kb_line_wait is called before each send or recv with POLLOUT or POLLIN;
 * nonzero stops the call with KB_LINE_STOPPED. NULL: block in send, and in
 * poll(2) for POLLIN before each recv (a thread blocked in recv on a Unix
 * socket is also woken, for nothing, each time the server reads a request).
 */
typedef int (*kb_line_wait)(void *ctx, short events);

/* kb_line_send writes p[0..n) whole. */
kb_line_rc kb_line_send(int fd, const char *p, size_t n, kb_line_wait wait, void *ctx);

/*
 * kb_line_read reads from fd until *buf holds a whole line and sets *line_len
 * to its length without the newline (which is at (*buf)[*line_len]).
 */
kb_line_rc kb_line_read(int fd, char **buf, size_t *len, size_t *cap, size_t max, size_t *line_len,
			kb_line_wait wait, void *ctx);

/* kb_line_drop consumes the first line_len bytes and the newline, wiping what moved. */
void kb_line_drop(char *buf, size_t *len, size_t line_len);

#endif
