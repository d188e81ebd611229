/*
 * opshttp.c: /metrics, /healthz and /readyz (see opshttp.h).
 *
 * Two threads share this face, through one mutex (mu) and two eventfds:
 * - The loop owns the broker's state. When the face asks (ask_fd), it renders
 *   a snapshot of what the endpoints answer (the Prometheus text, readiness,
 *   draining) and publishes it under mu, then says so (wake_fd).
 * - The face's own thread owns the listening socket, libmicrohttpd (run from
 *   the thread's epoll, without a listening socket of its own: the thread
 *   accepts and hands each connection over) and the connection table. It
 *   answers from the snapshot while that is at most KB_OPSHTTP_FRESH_MS old;
 *   else it suspends the request, asks the loop once for every request that
 *   waits, and resumes them when the snapshot comes.
 * So a flood of scrapes costs the loop at most one rendering per
 * KB_OPSHTTP_FRESH_MS, and no HTTP client, slow or hostile, holds the loop.
 *
 * The thread keeps a slot for the probe: at most KB_OPSHTTP_CONNS connections
 * (KB_OPSHTTP_PER_ADDR per address), each with KB_OPSHTTP_REQUEST_MS for each
 * whole request. A newcomer past a limit is never refused: the oldest
 * connection of the address that holds the most is shut down instead
 * (shutdown(2), which libmicrohttpd sees as a close), so a probe, the newest
 * connection, is always served.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"
#include "opshttp.h"
#include "report.h"

#define ACCEPT_BATCH 8u                  /* accepts between two runs of libmicrohttpd (< KB_OPSHTTP_PER_ADDR / 2) */
#define TABLE (2u * KB_OPSHTTP_CONNS + ACCEPT_BATCH) /* live, and shut down but not yet closed */

enum { TAG_LISTEN = 1, TAG_WAKE, TAG_MHD };

typedef struct hconn {
	bool used;
	bool dropped;           /* shut down by us; libmicrohttpd has yet to close it */
	bool suspended;         /* waits for a snapshot */
	bool served;            /* a request of it came whole */
	uint64_t run;           /* the run of libmicrohttpd it was accepted before */
	int fd;
	struct MHD_Connection *mc;
	int family;
	unsigned char addr[16];
	int64_t since_ms;       /* accepted, or its last request came whole */
} hconn;

/* what the endpoints answer: rendered by the loop, read by the face's thread, under mu */
typedef struct snapshot {
	kb_buf metrics;
	bool oom;
	bool ready;
	char why[1024];         /* each key not ready, with step and code */
	bool draining;
	int64_t metrics_ms;     /* when the text was rendered (0: never) */
	int64_t state_ms;       /* when readiness and draining were read */
} snapshot;

struct kb_opshttp {
	/* the loop's */
	kb_broker *b;
	const kb_io *io;
	kb_health *health;
	kb_io_watch *watch;

	/* shared, under mu */
	pthread_mutex_t mu;
	snapshot snap;
	bool asking;            /* the loop has been asked for a snapshot */
	bool want_metrics;      /* a /metrics waits for the text */
	bool readyz_asked;      /* a /readyz waits: the loop may start a health check (health.h) */
	bool stop;

	int ask_fd;             /* the face's thread -> the loop */
	int wake_fd;            /* the loop (a snapshot, or stop) -> the face's thread */

	/* the face's thread's */
	pthread_t thread;
	bool started;
	int lfd;
	int epfd;
	struct MHD_Daemon *d;
	hconn conns[TABLE];
	uint64_t runs;          /* runs of libmicrohttpd after accepts */
	bool resting;           /* the listener is out of epoll for want of descriptors */
	int64_t rest_until_ms;
};

static void ping(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		kb_debug("opshttp: eventfd write: %s", strerror(errno));
}

static void drain(int fd)
{
	uint64_t n;

	while (read(fd, &n, sizeof(n)) > 0)
		;
}

/* ---- the loop's side ---- */

/* on_ask renders the snapshot for the face's thread: the state always, the text when a scrape waits */
static void on_ask(void *ctx, int fd, unsigned ready)
{
	kb_opshttp *h = ctx;
	kb_buf t = { 0 };
	char why[sizeof(h->snap.why)];
	bool poke, text, ok;

	drain(fd);
	pthread_mutex_lock(&h->mu);
	poke = h->readyz_asked;
	text = h->want_metrics;
	h->readyz_asked = h->want_metrics = false;
	pthread_mutex_unlock(&h->mu);

	if (text)
		kb_report_prometheus(h->b, &t, false);
	ok = kb_health_ready(h->health, poke, why, sizeof(why));

	pthread_mutex_lock(&h->mu);
	if (text) {
		kb_buf_free(&h->snap.metrics);
		h->snap.metrics = t;
		h->snap.oom = t.oom;
		h->snap.metrics_ms = kb_now_ms();
	}
	h->snap.ready = ok;
	memcpy(h->snap.why, why, sizeof(why));
	h->snap.draining = h->b->draining;
	h->snap.state_ms = kb_now_ms();
	h->asking = false;
	pthread_mutex_unlock(&h->mu);
	ping(h->wake_fd);
}

/* ---- the face's thread ---- */

static hconn *slot_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return i ? i->socket_context : NULL;
}

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

static enum MHD_Result reply_text(struct MHD_Connection *c, unsigned status, const char *text)
{
	return reply(c, status, "text/plain", text, strlen(text));
}

/* answer renders url's answer from the snapshot; under mu */
static enum MHD_Result answer(kb_opshttp *h, struct MHD_Connection *c, const char *url)
{
	const snapshot *s = &h->snap;
	char text[sizeof(s->why) + 2];

	if (strcmp(url, "/healthz") == 0)
		return reply_text(c, s->draining ? 503 : 200, s->draining ? "stopping\n" : "ok\n");
	if (strcmp(url, "/readyz") == 0) {
		snprintf(text, sizeof(text), "%s\n", s->why);
		return reply_text(c, s->ready ? 200 : 503, text);
	}
	if (s->oom)
		return reply_text(c, 500, "out of memory\n");
	return reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", s->metrics.data ? s->metrics.data : "",
		     s->metrics.len);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **state)
{
	static int waited; /* *state once a request has waited for a snapshot */
	kb_opshttp *h = cls;
	hconn *k = slot_of(c);
	enum MHD_Result rc;
	int64_t now = kb_now_ms();
	bool metrics, stale;
	int64_t at;

	if (k == NULL || k->dropped)
		return MHD_NO;
	if (*state == NULL) { /* a new request, whole (a GET has no body to wait for) */
		k->since_ms = now;
		k->served = true;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply_text(c, 405, "only GET\n");
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/healthz") != 0 && strcmp(url, "/readyz") != 0)
		return reply_text(c, 404, "not found: /metrics, /healthz or /readyz\n");
	metrics = strcmp(url, "/metrics") == 0;
	pthread_mutex_lock(&h->mu);
	at = metrics ? h->snap.metrics_ms : h->snap.state_ms;
	stale = at == 0 || now - at > KB_OPSHTTP_FRESH_MS;
	if (stale && *state == NULL && !h->stop) {
		if (strcmp(url, "/readyz") == 0)
			h->readyz_asked = true;
		if (metrics)
			h->want_metrics = true;
		if (!h->asking) {
			h->asking = true;
			ping(h->ask_fd);
		}
		pthread_mutex_unlock(&h->mu);
		*state = &waited;
		k->suspended = true;
		MHD_suspend_connection(c);
		return MHD_YES;
	}
	rc = answer(h, c, url);
	pthread_mutex_unlock(&h->mu);
	return rc;
}

static hconn *find_fd(kb_opshttp *h, int fd)
{
	for (unsigned i = 0; i < TABLE; i++)
		if (h->conns[i].used && h->conns[i].fd == fd)
			return &h->conns[i];
	return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	kb_opshttp *h = cls;
	const union MHD_ConnectionInfo *i;
	hconn *k;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if ((k = *socket_context) != NULL)
			memset(k, 0, sizeof(*k));
		*socket_context = NULL;
		return;
	}
	i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (i && (k = find_fd(h, i->connect_fd)) != NULL) {
		k->mc = c;
		*socket_context = k;
	}
}

/* drop shuts k down; libmicrohttpd closes it on its next run */
static void drop(hconn *k)
{
	if (k->dropped)
		return;
	k->dropped = true;
	shutdown(k->fd, SHUT_RDWR);
	if (k->suspended && k->mc) {
		/* a suspended connection is not watched: resumed, its request ends it (on_request) */
		k->suspended = false;
		MHD_resume_connection(k->mc);
	}
}

static bool same_addr(const hconn *a, const hconn *b)
{
	return a->family == b->family && memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/*
 * by_address_rank orders connections by address, then the first to go first:
 * one that has not sent a whole request before one that has, one that had a
 * run of libmicrohttpd to send it (so not one whose request waits unread
 * since its accept) before one that has not, then the oldest.
 */
static int by_address_rank(const void *pa, const void *pb, void *runs)
{
	const hconn *a = *(const hconn *const *)pa, *b = *(const hconn *const *)pb;
	uint64_t fresh_run = *(const uint64_t *)runs;
	int d = a->family - b->family;

	if (d == 0)
		d = memcmp(a->addr, b->addr, sizeof(a->addr));
	if (d == 0)
		d = (int)a->served - (int)b->served;
	if (d == 0)
		d = (int)(a->run == fresh_run) - (int)(b->run == fresh_run);
	return d ? d : (a->since_ms > b->since_ms) - (a->since_ms < b->since_ms);
}

/*
 * make_room drops a connection when a newcomer from k's address would pass a
 * limit: that address's first to go (by_address_rank) at KB_OPSHTTP_PER_ADDR,
 * else at KB_OPSHTTP_CONNS the first to go of the address holding the most.
 * Sorting the (at most TABLE) live ones keeps each accept cheap under a
 * flood of them.
 */
static void make_room(kb_opshttp *h, const hconn *k)
{
	hconn *live[TABLE], *victim = NULL;
	unsigned n = 0, mine = 0, most = 0;

	for (unsigned i = 0; i < TABLE; i++)
		if (h->conns[i].used && !h->conns[i].dropped) {
			live[n++] = &h->conns[i];
			mine += same_addr(&h->conns[i], k);
		}
	if (n < KB_OPSHTTP_CONNS && mine < KB_OPSHTTP_PER_ADDR)
		return;
	qsort_r(live, n, sizeof(live[0]), by_address_rank, &h->runs);
	for (unsigned i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && same_addr(live[j], live[i]); j++)
			;
		/* live[i] is the first to go of an address that holds j - i */
		if (mine >= KB_OPSHTTP_PER_ADDR && same_addr(live[i], k)) {
			drop(live[i]);
			return;
		}
		if (j - i > most) {
			most = j - i;
			victim = live[i];
		}
	}
	if (victim)
		drop(victim);
}

static void listen_watch(kb_opshttp *h, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };

	epoll_ctl(h->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, h->lfd, &ev);
}

static void accept_some(kb_opshttp *h)
{
	for (unsigned n = 0; n < ACCEPT_BATCH; n++) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		hconn *k = NULL;
		int fd = accept4(h->lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* rest rather than spin on a listener we cannot take from */
				listen_watch(h, false);
				h->resting = true;
				h->rest_until_ms = kb_now_ms() + 100;
			}
			return;
		}
		for (unsigned i = 0; i < TABLE && k == NULL; i++)
			if (!h->conns[i].used)
				k = &h->conns[i];
		if (k == NULL) { /* every slot is shut down, not yet closed: cannot happen between runs */
			close(fd);
			continue;
		}
		*k = (hconn){ .fd = fd, .family = sa.ss_family, .since_ms = kb_now_ms(), .run = h->runs };
		if (sa.ss_family == AF_INET)
			memcpy(k->addr, &((struct sockaddr_in *)&sa)->sin_addr, 4);
		else if (sa.ss_family == AF_INET6)
			memcpy(k->addr, &((struct sockaddr_in6 *)&sa)->sin6_addr, 16);
		make_room(h, k);
		k->used = true;
		if (MHD_add_connection(h->d, fd, (struct sockaddr *)&sa, len) != MHD_YES && k->used && k->fd == fd &&
		    k->mc == NULL)
			memset(k, 0, sizeof(*k)); /* libmicrohttpd closed it */
	}
}

/* expire drops each connection whose request has not come whole in time; returns the next deadline */
static int64_t expire(kb_opshttp *h, int64_t now)
{
	int64_t next = -1;

	for (unsigned i = 0; i < TABLE; i++) {
		hconn *k = &h->conns[i];
		int64_t due = k->since_ms + KB_OPSHTTP_REQUEST_MS;
		if (!k->used || k->dropped)
			continue;
		if (due <= now)
			drop(k);
		else if (next < 0 || due < next)
			next = due;
	}
	return next;
}

static void resume_all(kb_opshttp *h)
{
	for (unsigned i = 0; i < TABLE; i++)
		if (h->conns[i].used && h->conns[i].suspended && h->conns[i].mc) {
			h->conns[i].suspended = false;
			MHD_resume_connection(h->conns[i].mc);
		}
}

static void *serve(void *arg)
{
	kb_opshttp *h = arg;

	for (;;) {
		struct epoll_event evs[8];
		MHD_UNSIGNED_LONG_LONG mhd_ms;
		int64_t now = kb_now_ms(), next = expire(h, now), wait;
		bool stop;
		int n;

		MHD_run(h->d); /* what expire dropped closes now */
		if (h->resting && (next < 0 || h->rest_until_ms < next))
			next = h->rest_until_ms;
		wait = next < 0 ? -1 : next - now;
		if (MHD_get_timeout(h->d, &mhd_ms) == MHD_YES && (wait < 0 || (int64_t)mhd_ms < wait))
			wait = (int64_t)mhd_ms;
		n = epoll_wait(h->epfd, evs, 8, wait < 0 ? -1 : (int)(wait > 60000 ? 60000 : wait));
		pthread_mutex_lock(&h->mu);
		stop = h->stop;
		pthread_mutex_unlock(&h->mu);
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 == TAG_WAKE) {
				drain(h->wake_fd);
				resume_all(h);
			}
		}
		if (stop)
			break;
		if (h->resting && kb_now_ms() >= h->rest_until_ms) {
			h->resting = false;
			listen_watch(h, true);
		}
		for (int i = 0; i < n; i++)
			if (evs[i].data.u64 == TAG_LISTEN && !h->resting) {
				accept_some(h);
				MHD_run(h->d);
				h->runs++;
			}
	}
	resume_all(h); /* they answer from the last snapshot */
	MHD_run(h->d);
	return NULL;
}

/* ---- start and stop (the loop) ---- */

/* listen_on binds "HOST:PORT" (or "PORT": loopback), saying which port it got and warning of every interface */
static kb_code listen_on(kb_opshttp *h, const char *spec, kb_err *err)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *ai = NULL;
	struct sockaddr_storage sa;
	socklen_t salen = sizeof(sa);
	char host[256], port[8], bound[64] = "";
	unsigned p;
	int one = 1, rc;

	if (!kb_parse_hostport(spec, "127.0.0.1", host, sizeof(host), &p))
		return kb_err_set(err, KB_E_BAD_REQUEST, "metrics_listen %s: not HOST:PORT with a port up to 65535", spec);
	snprintf(port, sizeof(port), "%u", p);
	if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST, "metrics_listen %s: %s", spec, gai_strerror(rc));
	h->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd >= 0)
		setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* a deep backlog: a burst waits for an accept (and an eviction), not for a SYN retry a second later */
	rc = h->lfd >= 0 && bind(h->lfd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(h->lfd, SOMAXCONN) == 0;
	freeaddrinfo(ai);
	if (!rc)
		return kb_err_set(err, KB_E_BAD_REQUEST, "metrics_listen %s: cannot listen: %s", spec, strerror(errno));
	if (getsockname(h->lfd, (struct sockaddr *)&sa, &salen) == 0)
		getnameinfo((struct sockaddr *)&sa, salen, bound, sizeof(bound), port, sizeof(port),
			    NI_NUMERICHOST | NI_NUMERICSERV);
	kb_info("operator endpoints /metrics, /healthz, /readyz on http://%s%s%s:%s", strchr(bound, ':') ? "[" : "",
		bound, strchr(bound, ':') ? "]" : "", port);
	if (kb_host_is_any(host))
		kb_warn("metrics_listen %s listens on every interface: anyone who reaches port %s of this host reads "
			"/metrics, /healthz and /readyz; prefer 127.0.0.1, or firewall the port", spec, port);
	return KB_OK;
}

static kb_code face_start(kb_opshttp *h, kb_err *err)
{
	const union MHD_DaemonInfo *info;
	struct epoll_event ev = { .events = EPOLLIN };

	h->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
				on_request, h, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(KB_OPSHTTP_REQUEST_MS / 1000),
				MHD_OPTION_CONNECTION_LIMIT, TABLE, MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
				MHD_OPTION_END);
	info = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	if (info == NULL || (h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return kb_err_set(err, KB_E_INTERNAL, "cannot start libmicrohttpd");
	ev.data.u64 = TAG_MHD;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev);
	ev.data.u64 = TAG_WAKE;
	epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->wake_fd, &ev);
	listen_watch(h, true);
	if (pthread_create(&h->thread, NULL, serve, h) != 0)
		return kb_err_set(err, KB_E_INTERNAL, "cannot start the operator endpoints' thread");
	h->started = true;
	return KB_OK;
}

kb_code kb_opshttp_start(kb_broker *b, const kb_io *io, kb_health *health, kb_opshttp **out,
			 kb_err *err)
{
	kb_opshttp *h;
	kb_code rc;

	*out = NULL;
	if (b->cfg->metrics_listen == NULL)
		return KB_OK;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	h->b = b;
	h->io = io;
	h->health = health;
	h->lfd = h->epfd = -1;
	pthread_mutex_init(&h->mu, NULL);
	h->ask_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->ask_fd < 0 || h->wake_fd < 0 || io->watch(io->loop, &h->watch, h->ask_fd, KB_IO_IN, on_ask, h) != 0) {
		kb_opshttp_stop(h);
		return kb_err_set(err, KB_E_INTERNAL, "cannot start the metrics endpoint: %s", strerror(errno));
	}
	h->want_metrics = true;
	on_ask(h, h->ask_fd, KB_IO_IN); /* the first snapshot, before anyone asks */
	if ((rc = listen_on(h, b->cfg->metrics_listen, err)) != KB_OK || (rc = face_start(h, err)) != KB_OK) {
		kb_opshttp_stop(h);
		return rc;
	}
	*out = h;
	return KB_OK;
}

void kb_opshttp_stop(kb_opshttp *h)
{
	if (h == NULL)
		return;
	if (h->started) {
		pthread_mutex_lock(&h->mu);
		h->stop = true;
		pthread_mutex_unlock(&h->mu);
		ping(h->wake_fd);
		pthread_join(h->thread, NULL);
	}
	if (h->watch)
		h->io->watch(h->io->loop, &h->watch, h->ask_fd, 0, NULL, NULL);
	if (h->d)
		MHD_stop_daemon(h->d);
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->epfd >= 0)
		close(h->epfd);
	if (h->ask_fd >= 0)
		close(h->ask_fd);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	kb_buf_free(&h->snap.metrics);
	pthread_mutex_destroy(&h->mu);
	free(h);
}
