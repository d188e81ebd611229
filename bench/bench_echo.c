/*
 * bench_echo.c: floor A's client. It sends a line of the broker request's
 * size whose first field asks bench/echo for a reply of the broker
 * response's size, through the same bench_line code as the broker driver.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

struct bench_echo {
	bench_driver d;
	char path[108];
	char *req;
	size_t req_len;
};

typedef struct echo_conn {
	bench_echo *e;
	bench_line l;
} echo_conn;

static int echo_open(void *arg, int client, void **conn, char *err, size_t errlen)
{
	echo_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -1;
	c->e = arg;
	if (bench_line_open(&c->l, c->e->path, err, errlen) != 0) {
		free(c);
		return -1;
	}
	*conn = c;
	return 0;
}

static int echo_op(void *conn)
{
	echo_conn *c = conn;

	return bench_line_call(&c->l, c->e->req, c->e->req_len) == 0 ? BENCH_OK : BENCH_ERR;
}

static void echo_close(void *conn)
{
	echo_conn *c = conn;

	bench_line_close(&c->l);
	free(c);
}

bench_echo *bench_echo_new(const char *socket, size_t req, size_t resp)
{
	bench_echo *e = calloc(1, sizeof(*e));
	int head;

	if (e == NULL || strlen(socket) >= sizeof(e->path) || req < 16 || (e->req = malloc(req)) == NULL) {
		free(e);
		return NULL;
	}
	snprintf(e->path, sizeof(e->path), "%s", socket);
	head = snprintf(e->req, req, "%zu ", resp);
	memset(e->req + head, 'x', req - (size_t)head - 1);
	e->req[req - 1] = '\n';
	e->req_len = req;
	e->d = (bench_driver){ .arg = e, .open = echo_open, .op = echo_op, .close = echo_close };
	return e;
}

void bench_echo_free(bench_echo *e)
{
	if (e != NULL)
		free(e->req);
	free(e);
}

bench_driver *bench_echo_driver(bench_echo *e)
{
	return &e->d;
}
