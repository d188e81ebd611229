/*
 * server.c: the listening socket, the event loop and the connections.
 *
 * The loop thread runs everything here with epoll: accepting (after checking
 * the peer), reading lines, dispatching them, writing answers, collecting
 * finished jobs from the worker pool, timers and signals. It holds the loop
 * token (looptoken.h) throughout but inside epoll_wait; the kb_io services
 * below are loop state, called by whoever holds the token.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "conn.h"
#include "ndjson.h"
#include "finish.h"
#include "log.h"
#include "schedule.h"
#include "pool.h"
#include "reload.h"
#include "jobs.h"
#include "keys.h"
#include "health.h"
#include "kms_face.h"
#include "listen.h"
#include "opshttp.h"
#include "server.h"
#include "unixsock.h"

/* epoll tags for the fixed sources; connections are tagged with their pointer */
enum { TAG_POOL = 1, TAG_SIGNAL, TAG_TIMER };

#define READ_CHUNK 16384
#define DRAIN_DEADLINE_MS 30000

struct kb_io_watch {
	int fd;
	void (*cb)(void *ctx, int fd, unsigned ready); /* NULL once ended */
	void *ctx;
	struct kb_io_watch *next_dead;
};

struct kb_io_timer {
	struct server *s;
	int64_t at_ms;          /* -1: disarmed */
	void (*cb)(void *ctx);
	void *ctx;
	kb_io_timer *prev, *next;
};

typedef struct server {
	kb_broker *b;
	int epfd;
	int lfd;
	int sigfd;
	int timerfd;
	bool activated;     /* the socket came from systemd */
	char *path;         /* our own copy: a reload frees the config's */
	kb_connset conns;
	uint64_t next_serial;
	bool stopping;
	int64_t stop_deadline_ms;
	int64_t spin_until_us;  /* end of the current polling spell, or 0 */
	int turn_events;        /* events the loop is handling this turn */
	kb_io io;               /* lent to backends that wait on the network */
	kb_io_timer *timers;
	kb_io_watch *dead_watches; /* ended, freed after the current batch of events */
	kb_listener *listener;     /* listen.h: accepts on lfd */
} server;

static kb_io_timer *io_timer_new(void *loop, void (*cb)(void *ctx), void *ctx);
static void io_timer_arm(kb_io_timer *t, int64_t at_ms);
static void io_timer_free(kb_io_timer *t);

/* epoll data of a backend's watch: its pointer with the low bit set (conns are plain pointers) */
#define WATCH_BIT 1u

/* take_conn serves an NDJSON connection the listener admitted: the loop reads it from now on */
static void take_conn(void *ctx, kb_conn *c)
{
	server *s = ctx;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
		kb_conn_close(c);
}

static void read_conn(server *s, kb_conn *c, bool hangup)
{
	size_t max = s->b->cfg->max_request_bytes;
	size_t scanned = c->in.len, start = 0;
	/* what is held is one partial line, at most max (more was refused): read one byte past it at most */
	size_t want = c->in.len < max ? max + 1 - c->in.len : 1;
	ssize_t n;

	if (want > READ_CHUNK)
		want = READ_CHUNK;
	if (!kb_buf_reserve(&c->in, want)) {
		kb_conn_close(c);
		return;
	}
	/* never read further into a line than the limit allows, so the buffer never outgrows it */
	n = recv(c->fd, c->in.data + c->in.len, want, MSG_DONTWAIT);
	if (n == 0 && !hangup && (c->inflight > 0 || c->out.len > 0)) {
		/*
		 * The peer is done sending (shutdown(SHUT_WR), as `echo ... | socat`
		 * does) but still reads: answer what it asked, then close.
		 */
		c->close_after_flush = true;
		kb_buf_consume(&c->in, c->in.len);
		kb_conn_update_events(c);
		return;
	}
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
		/* the peer is gone, or owed nothing: close */
		kb_conn_close(c);
		return;
	}
	if (n < 0)
		return;
	c->in.len += (size_t)n;
	c->last_activity_ms = kb_now_ms();

	c->refs++; /* dispatch may close c; keep it alive until the loop ends */
	for (char *nl = memchr(c->in.data + scanned, '\n', c->in.len - scanned), *next; nl; nl = next) {
		size_t len = (size_t)(nl - (c->in.data + start));

		scanned = (size_t)(nl - c->in.data) + 1;
		/* found once: whether another line waits decides loop calls (schedule.h), then it is the next line */
		next = memchr(c->in.data + scanned, '\n', c->in.len - scanned);
		if (len > max) {
			kb_ndjson_too_large(s->b, c);
			break;
		}
		if (len > 0 && c->in.data[start + len - 1] == '\r')
			len--;
		if (len > 0) {
			kb_loopcall *lc = &s->b->loopcall;

			/* the loop may make a call itself only for a line that is all it has to do (schedule.h) */
			if (lc->last_conn != c) /* the clock only when the speaker changes: not per hit */
				kb_loopcall_note(lc, c, kb_now_us());
			lc->turn_ok = s->turn_events == 1 && next == NULL;
			kb_ndjson_line(s->b, c, c->in.data + start, len);
			lc->turn_ok = false;
		}
		start = scanned;
		if (c->fd < 0 || c->close_after_flush)
			break;
	}
	if (c->fd >= 0 && !c->close_after_flush) {
		kb_buf_consume(&c->in, start);
		if (c->in.len > max)
			kb_ndjson_too_large(s->b, c);
		c->partial_since_ms = c->in.len ? (c->partial_since_ms ? c->partial_since_ms : kb_now_ms()) : 0;
	}
	kb_conn_unref(c);
}

static void check_timeouts(server *s, int64_t now)
{
	const kb_config *cfg = s->b->cfg;
	kb_conn *next;

	for (kb_conn *c = s->conns.list; c; c = next) {
		const char *why = NULL;

		next = c->next;
		if (c->partial_since_ms && now - c->partial_since_ms > cfg->client_timeout_ms)
			why = "sent a partial line for longer than client_timeout";
		else if (c->blocked_since_ms && now - c->blocked_since_ms > cfg->client_timeout_ms)
			why = "left its answers unread for longer than client_timeout";
		/* a KMS connection's idle limit is its face's: gRPC says goodbye first (kms_face.c) */
		else if (cfg->idle_timeout_ms && !c->shared && c->inflight == 0 && c->out.len == 0 &&
			 now - c->last_activity_ms > cfg->idle_timeout_ms)
			why = "was idle for longer than idle_timeout";
		if (why) {
			kb_info("closing the connection of pid %d (uid %u): it %s", (int)c->pid,
				(unsigned)c->uid, why);
			s->b->counters.conns_closed_limit++;
			kb_conn_close(c);
		}
	}
}

static void on_timer(server *s)
{
	uint64_t ticks;
	int64_t now = kb_now_ms();

	if (read(s->timerfd, &ticks, sizeof(ticks)) < 0)
		return;
	kb_cache_sweep(&s->b->cache, now);
	check_timeouts(s, now);
	kb_peers_sweep(&s->conns.peers, now);
}

static void remove_socket(server *s)
{
	kb_listener_stop(s->listener);
	s->listener = NULL;
	if (s->lfd < 0)
		return;
	close(s->lfd);
	s->lfd = -1;
	if (!s->activated)
		unlink(s->path);
}

static void begin_stop(server *s, const char *why)
{
	if (s->stopping)
		return;
	kb_info("%s: no longer accepting; finishing requests in flight", why);
	sd_notify(0, "STOPPING=1\nSTATUS=Stopping: finishing requests in flight");
	s->stopping = true;
	s->conns.stopping = true;
	s->b->draining = true;
	s->stop_deadline_ms = kb_now_ms() + DRAIN_DEADLINE_MS;
	remove_socket(s);
	/* stop reading new requests; answers still owed go out */
	for (kb_conn *c = s->conns.list; c; c = c->next)
		kb_conn_update_events(c);
}

static void on_signal(server *s)
{
	struct signalfd_siginfo si;

	while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			begin_stop(s, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
		else if (si.ssi_signo == SIGHUP)
			kb_reload(s->b);
	}
}

/* drained tells whether every request has been answered and written out. */
static bool drained(server *s)
{
	for (kb_conn *c = s->conns.list; c; c = c->next)
		if (c->inflight > 0 || c->out.len > 0)
			return false;
	return true;
}

static kb_code listen_socket(server *s, kb_err *err)
{
	const kb_config *cfg = s->b->cfg;
	int n = sd_listen_fds(1);

	if (n == 1) {
		s->lfd = SD_LISTEN_FDS_START;
		s->activated = true;
		if (sd_is_socket_unix(s->lfd, SOCK_STREAM, 1, NULL, 0) <= 0)
			return kb_err_set(err, KB_E_BAD_REQUEST, "the socket systemd passed is not a listening Unix stream socket");
		fcntl(s->lfd, F_SETFL, fcntl(s->lfd, F_GETFL) | O_NONBLOCK);
		kb_info("serving on the socket from systemd (socket activation)");
		return KB_OK;
	}
	if (n > 1)
		return kb_err_set(err, KB_E_BAD_REQUEST, "systemd passed %d sockets; keybrokerd takes one", n);
	return kb_unix_listen(s->path, cfg->socket_mode, cfg->socket_group, &s->lfd, err);
}

static void loop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGHUP);
}

void kb_server_block_signals(void)
{
	sigset_t set;

	loop_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static kb_code setup(server *s, kb_err *err)
{
	struct itimerspec tick = { .it_interval = { 1, 0 }, .it_value = { 1, 0 } };
	struct epoll_event ev = { .events = EPOLLIN };
	sigset_t set;
	kb_code rc;

	/* main blocked these before the workers started; only the loop sees them */
	kb_server_block_signals();
	loop_signals(&set);
	s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	s->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->sigfd < 0 || s->timerfd < 0 || s->epfd < 0)
		return kb_err_set(err, KB_E_INTERNAL, "cannot set up the event loop: %s", strerror(errno));
	timerfd_settime(s->timerfd, 0, &tick, NULL);
	if ((rc = listen_socket(s, err)) != KB_OK)
		return rc;
	ev.data.u64 = TAG_POOL;
	epoll_ctl(s->epfd, EPOLL_CTL_ADD, kb_pool_fd(s->b->pool), &ev);
	ev.data.u64 = TAG_SIGNAL;
	epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->sigfd, &ev);
	ev.data.u64 = TAG_TIMER;
	epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->timerfd, &ev);
	return KB_OK;
}

static void teardown(server *s)
{
	kb_fdlimit_close(&s->b->fdlimit);
	while (s->conns.list)
		kb_conn_close(s->conns.list);
	kb_connset_detach(&s->conns);
	s->b->peers = NULL;
	s->b->conns = NULL;
	kb_peers_free(&s->conns.peers);
	remove_socket(s);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->sigfd >= 0)
		close(s->sigfd);
	if (s->timerfd >= 0)
		close(s->timerfd);
	free(s->path);
	s->path = NULL;
}

/* ---- the loop's services to backends (kb_io) ---- */

static int io_watch(void *loop, kb_io_watch **wp, int fd, unsigned events,
		    void (*cb)(void *ctx, int fd, unsigned ready), void *ctx)
{
	server *s = loop;
	kb_io_watch *w = *wp;
	struct epoll_event ev = { .events = ((events & KB_IO_IN) ? EPOLLIN : 0u) |
					    ((events & KB_IO_OUT) ? EPOLLOUT : 0u) };

	kb_loop_assert_owner();
	if (events == 0) {
		if (w) {
			/* epoll may have handed the loop more events for w in this batch */
			epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, NULL);
			w->cb = NULL;
			w->next_dead = s->dead_watches;
			s->dead_watches = w;
			*wp = NULL;
		}
		return 0;
	}
	if (w == NULL) {
		if ((w = calloc(1, sizeof(*w))) == NULL)
			return -1;
		w->fd = fd;
		ev.data.u64 = (uint64_t)(uintptr_t)w | WATCH_BIT;
		if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			free(w);
			return -1;
		}
		*wp = w;
	} else {
		ev.data.u64 = (uint64_t)(uintptr_t)w | WATCH_BIT;
		if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
			return -1;
	}
	w->cb = cb;
	w->ctx = ctx;
	return 0;
}

static void bury_watches(server *s)
{
	while (s->dead_watches) {
		kb_io_watch *w = s->dead_watches;
		s->dead_watches = w->next_dead;
		free(w);
	}
}

static kb_io_timer *io_timer_new(void *loop, void (*cb)(void *ctx), void *ctx)
{
	server *s = loop;
	kb_io_timer *t = calloc(1, sizeof(*t));

	kb_loop_assert_owner();
	if (t == NULL)
		return NULL;
	t->s = s;
	t->at_ms = -1;
	t->cb = cb;
	t->ctx = ctx;
	t->next = s->timers;
	if (s->timers)
		s->timers->prev = t;
	s->timers = t;
	return t;
}

static void io_timer_arm(kb_io_timer *t, int64_t at_ms)
{
	kb_loop_assert_owner();
	t->at_ms = at_ms;
}

static void io_timer_free(kb_io_timer *t)
{
	kb_loop_assert_owner();
	if (t == NULL)
		return;
	if (t->prev)
		t->prev->next = t->next;
	else
		t->s->timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
	free(t);
}

static int io_offload(void *loop, void (*work)(void *ctx, int slot), void (*done)(void *ctx), void *ctx)
{
	server *s = loop;
	kb_job *j = kb_job_new(s->b, KB_OP_NONE, NULL);

	kb_loop_assert_owner();
	if (j == NULL)
		return -1;
	j->work = work;
	j->work_done = done;
	j->work_ctx = ctx;
	kb_pool_submit(s->b->pool, j, s->b->uid);
	return 0;
}

/* next_timer_ms is the epoll timeout the backends' timers allow (-1: none armed). */
static int next_timer_ms(const server *s, int64_t now)
{
	int64_t first = -1;

	for (const kb_io_timer *t = s->timers; t; t = t->next)
		if (t->at_ms >= 0 && (first < 0 || t->at_ms < first))
			first = t->at_ms;
	if (first < 0)
		return -1;
	return first <= now ? 0 : (int)(first - now > 60000 ? 60000 : first - now);
}

/* run_timers fires the timers that are due; a callback may arm, disarm or free any timer. */
static void run_timers(server *s)
{
	int64_t now = kb_now_ms();
	bool again = true;

	while (again) {
		again = false;
		for (kb_io_timer *t = s->timers; t; t = t->next) {
			if (t->at_ms >= 0 && t->at_ms <= now) {
				t->at_ms = -1;
				t->cb(t->ctx);
				again = true; /* the list may have changed under us */
				break;
			}
		}
	}
}

/*
 * loop_waits says whether the loop polls for the answer to its one client's
 * job (kb_loopcall_expect): until the job ends or runs late, and only while
 * the loop and the busy workers fit the CPUs.
 */
static bool loop_waits(server *s, int64_t now_us)
{
	kb_loopcall *lc = &s->b->loopcall;

	if (!kb_loopcall_waiting(lc, now_us))
		return false;
	if (lc->wait_pool && kb_pool_idle(s->b->pool)) {
		lc->wait_until_us = 0; /* a worker answered it */
		return false;
	}
	return kb_pool_loop_fits(s->b->pool);
}

static void loop_once(server *s)
{
	struct epoll_event evs[64];
	int timeout = s->stopping ? 100 : -1, tt;
	int64_t now_us = kb_now_us(); /* one clock read a turn: the turn is a cache hit's whole path */
	int n;

	tt = next_timer_ms(s, now_us / 1000);
	if (tt >= 0 && (timeout < 0 || tt < timeout))
		timeout = tt;

	/* poll, not sleep, for a round trip when a job may end or a client come back any moment (schedule.h) */
	if (loop_waits(s, now_us)) {
		timeout = 0;
	} else if (kb_pool_job_may_end_soon(s->b->pool) ||
	    (kb_loopcall_awake(&s->b->loopcall, now_us) && kb_pool_loop_may_poll(s->b->pool))) {
		if (s->spin_until_us == 0)
			s->spin_until_us = now_us + KB_SCHED_ROUND_TRIP_US;
		if (now_us < s->spin_until_us)
			timeout = 0;
	}
	kb_loop_token_sleep(&s->b->token); /* a worker may answer its own job meanwhile (finish.h) */
	n = epoll_wait(s->epfd, evs, 64, timeout);
	kb_loop_token_wake(&s->b->token);
	if (n > 0)
		s->spin_until_us = 0;
	s->turn_events = n;

	for (int i = 0; i < n; i++) {
		uint64_t tag = evs[i].data.u64;

		if (tag == TAG_POOL) {
			kb_job *next;
			for (kb_job *j = kb_pool_take_done(s->b->pool); j; j = next) {
				next = j->next;
				kb_job_finish(s->b, j);
			}
		} else if (tag == TAG_SIGNAL) {
			on_signal(s);
		} else if (tag == TAG_TIMER) {
			on_timer(s);
		} else if (tag & WATCH_BIT) {
			kb_io_watch *w = (kb_io_watch *)(uintptr_t)(tag & ~(uint64_t)WATCH_BIT);
			unsigned ready = ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ? KB_IO_IN : 0u) |
					 ((evs[i].events & (EPOLLOUT | EPOLLERR)) ? KB_IO_OUT : 0u);
			if (w->cb)
				w->cb(w->ctx, w->fd, ready);
		} else {
			kb_conn *c = evs[i].data.ptr;
			if (c->fd >= 0 && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
				kb_conn_send(c);
			if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				read_conn(s, c, (evs[i].events & (EPOLLHUP | EPOLLERR)) != 0);
		}
	}
	run_timers(s);
	kb_connset_bury(&s->conns);
	bury_watches(s);
}

kb_code kb_server_run(kb_broker *b, kb_err *err)
{
	server s = { .b = b, .epfd = -1, .lfd = -1, .sigfd = -1, .timerfd = -1 };
	kb_opshttp *ops = NULL;
	kb_code rc;

	kb_loop_token_enter(&b->token);
	s.conns.count = &b->nconns;
	s.io = (kb_io){ .loop = &s, .watch = io_watch, .timer_new = io_timer_new,
			.timer_arm = io_timer_arm, .timer_free = io_timer_free, .offload = io_offload };
	if ((s.path = strdup(b->cfg->socket)) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	if ((rc = setup(&s, err)) != KB_OK) {
		teardown(&s);
		free(s.path);
		kb_loop_token_leave(&b->token);
		return rc;
	}
	s.conns.epfd = s.epfd;
	kb_fdlimit_init(&b->fdlimit);
	if ((rc = kb_listener_start(b, &s.io, &s.conns, s.lfd, &(kb_listen_face){ .tell = true, .take = take_conn, .ctx = &s },
				    &s.listener, err)) != KB_OK) {
		teardown(&s);
		free(s.path);
		kb_loop_token_leave(&b->token);
		return rc;
	}
	b->peers = &s.conns.peers;
	b->conns = &s.conns;
	kb_broker_attach_io(b, &s.io);
	/* the health checks (for whoever reads them), the KMS v2 sockets and /metrics ride on this loop */
	if (((b->cfg->nkms > 0 || b->cfg->metrics_listen) &&
	     (rc = kb_health_start(b, &s.io, &b->health, err)) != KB_OK) ||
	    (rc = kb_kms_face_start(b, &s.io, &s.conns, b->health, &b->kms, err)) != KB_OK ||
	    (rc = kb_opshttp_start(b, &s.io, b->health, &ops, err)) != KB_OK) {
		kb_kms_face_stop(b->kms);
		b->kms = NULL;
		kb_health_stop(b->health);
		b->health = NULL;
		kb_broker_attach_io(b, NULL);
		teardown(&s);
		kb_loop_token_leave(&b->token);
		return rc;
	}
	kb_info("listening on %s with %d worker%s and a CPU budget of %d (schedule.h)",
		s.activated ? "the systemd socket" : s.path, b->cfg->workers, b->cfg->workers == 1 ? "" : "s",
		kb_pool_cpus(b->pool));
	sd_notifyf(0, "READY=1\nSTATUS=Serving %d key%s on %s", b->nkeys, b->nkeys == 1 ? "" : "s",
		   s.activated ? "the systemd socket" : s.path);
	while (!s.stopping || (!drained(&s) && kb_now_ms() < s.stop_deadline_ms))
		loop_once(&s);
	if (!drained(&s))
		kb_warn("gave up waiting for requests in flight after %d s", DRAIN_DEADLINE_MS / 1000);
	kb_opshttp_stop(ops);
	kb_kms_face_stop(b->kms);
	kb_health_stop(b->health);
	b->kms = NULL;
	b->health = NULL;
	/* backends let go of the loop before it goes */
	kb_broker_attach_io(b, NULL);
	teardown(&s);
	kb_connset_bury(&s.conns);
	bury_watches(&s);
	free(s.path);
	kb_loop_token_leave(&b->token);
	return KB_OK;
}
