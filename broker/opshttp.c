/*
 * opshttp.c: /metrics, /healthz and /readyz (see opshttp.h).
 *
 * libmicrohttpd runs without threads of its own (MHD_USE_EPOLL): the loop
 * watches its epoll descriptor and its timeout, and calls MHD_run, so every
 * handler runs on the loop thread and reads the broker's state as the
 * `metrics` operation does.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"
#include "opshttp.h"
#include "report.h"

/* scrapers and probes are few: a burst past this waits in the backlog */
#define CONN_LIMIT 64u

struct kb_opshttp {
	kb_broker *b;
	const kb_io *io;
	kb_health *health;
	struct MHD_Daemon *d;
	int lfd;
	int efd;
	kb_io_watch *watch;
	kb_io_timer *timer;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
			     const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result rc;

	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	rc = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **state)
{
	kb_opshttp *h = cls;
	char why[600], text[640];

	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, 405, "text/plain", "only GET\n", 9);
	if (strcmp(url, "/metrics") == 0) {
		kb_buf t = { 0 };
		enum MHD_Result rc;

		kb_report_prometheus(h->b, &t);
		rc = t.oom ? reply(c, 500, "text/plain", "out of memory\n", 14)
			   : reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", t.data ? t.data : "", t.len);
		kb_buf_free(&t);
		return rc;
	}
	if (strcmp(url, "/healthz") == 0)
		return reply(c, h->b->draining ? 503 : 200, "text/plain", h->b->draining ? "stopping\n" : "ok\n",
			     h->b->draining ? 9 : 3);
	if (strcmp(url, "/readyz") == 0) {
		bool ready = kb_health_ready(h->health, why, sizeof(why));
		int n = snprintf(text, sizeof(text), "%s\n", why);
		return reply(c, ready ? 200 : 503, "text/plain", text, (size_t)n < sizeof(text) ? (size_t)n : sizeof(text) - 1);
	}
	return reply(c, 404, "text/plain", "not found: /metrics, /healthz or /readyz\n", 41);
}

static void arm(kb_opshttp *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	h->io->timer_arm(h->timer, MHD_get_timeout(h->d, &ms) == MHD_YES ? kb_now_ms() + (int64_t)ms : -1);
}

static unsigned open_conns(const kb_opshttp *h)
{
	const union MHD_DaemonInfo *i = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

	return i ? i->num_connections : 0;
}

/*
 * run lets libmicrohttpd work. At CONN_LIMIT it takes its listening socket
 * out of its epoll set and puts it back only at the start of a later run,
 * once a connection has gone: so when this run freed room, run once more.
 * Otherwise a client that waits in the backlog waits for an event that never
 * comes, and /healthz stays dark after a burst of connections has left.
 */
static void run(kb_opshttp *h)
{
	unsigned before = open_conns(h);

	MHD_run(h->d);
	if (before >= CONN_LIMIT && open_conns(h) < CONN_LIMIT)
		MHD_run(h->d);
	arm(h);
}

static void on_ready(void *ctx, int fd, unsigned ready)
{
	run(ctx);
}

static void on_timer(void *ctx)
{
	run(ctx);
}

/* listen_on binds "HOST:PORT" (or "PORT": loopback) */
static kb_code listen_on(kb_opshttp *h, const char *spec, kb_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	const char *colon = strrchr(spec, ':');
	char host[256];
	int one = 1, rc;

	if (colon == NULL)
		snprintf(host, sizeof(host), "127.0.0.1");
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	/* [::1]:9464 */
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if ((rc = getaddrinfo(host, colon ? colon + 1 : spec, &hints, &ai)) != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST, "metrics_listen %s: %s", spec, gai_strerror(rc));
	h->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd >= 0)
		setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	rc = h->lfd >= 0 && bind(h->lfd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(h->lfd, 64) == 0;
	freeaddrinfo(ai);
	if (!rc)
		return kb_err_set(err, KB_E_BAD_REQUEST, "metrics_listen %s: cannot listen: %s", spec, strerror(errno));
	return KB_OK;
}

kb_code kb_opshttp_start(kb_broker *b, const kb_io *io, kb_health *health, kb_opshttp **out,
			 kb_err *err)
{
	kb_opshttp *h;
	const union MHD_DaemonInfo *info;
	kb_code rc;

	*out = NULL;
	if (b->cfg->metrics_listen == NULL)
		return KB_OK;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	h->b = b;
	h->io = io;
	h->health = health;
	h->lfd = -1;
	if ((rc = listen_on(h, b->cfg->metrics_listen, err)) != KB_OK) {
		kb_opshttp_stop(h);
		return rc;
	}
	h->d = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->lfd,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT,
				MHD_OPTION_END);
	info = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	if (info == NULL || (h->timer = io->timer_new(io->loop, on_timer, h)) == NULL ||
	    io->watch(io->loop, &h->watch, info->epoll_fd, KB_IO_IN, on_ready, h) != 0) {
		kb_opshttp_stop(h);
		return kb_err_set(err, KB_E_INTERNAL, "cannot start the metrics endpoint on %s", b->cfg->metrics_listen);
	}
	h->efd = info->epoll_fd;
	kb_info("operator endpoints /metrics, /healthz, /readyz on http://%s", b->cfg->metrics_listen);
	*out = h;
	return KB_OK;
}

void kb_opshttp_stop(kb_opshttp *h)
{
	if (h == NULL)
		return;
	if (h->watch)
		h->io->watch(h->io->loop, &h->watch, h->efd, 0, NULL, NULL);
	if (h->timer)
		h->io->timer_free(h->timer);
	if (h->d)
		MHD_stop_daemon(h->d); /* it closes the listening socket it was given */
	else if (h->lfd >= 0)
		close(h->lfd);
	free(h);
}
