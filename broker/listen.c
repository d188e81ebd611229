/*
 * listen.c: accept, check, count, then hand over (see listen.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "jsonw.h"
#include "listen.h"
#include "log.h"
#include "policy.h"

#define ACCEPTS_PER_TURN 64

struct kb_listener {
	kb_broker *b;
	const kb_io *io;
	kb_connset *set;
	int lfd;
	kb_listen_face face;
	kb_io_watch *watch;
	kb_io_timer *rest;     /* watches lfd again after it rested (fdlimit.h) */
	uint64_t next_serial;
};

/* refuse closes a connection we will not serve, telling an NDJSON peer why in one error line. */
static void refuse(kb_listener *l, int fd, kb_code code, const char *msg)
{
	kb_buf o = { 0 };
	kb_err err;

	l->b->counters.conns_refused++;
	if (l->face.tell) {
		kb_err_set(&err, code, "%s", msg);
		kb_jw_error(&o, "null", &err);
		if (o.data && send(fd, o.data, o.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			kb_debug("could not tell a refused peer why: %s", strerror(errno));
		kb_buf_free(&o);
	}
	close(fd);
}

/* peer_exe names the peer's executable for the audit log ("" if it cannot be read). */
static void peer_exe(pid_t pid, char *out, size_t cap)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
	n = readlink(link, out, cap - 1);
	out[n > 0 ? n : 0] = '\0';
}

static void on_accept(void *ctx, int lfd, unsigned ready);

static void listen_again(void *ctx)
{
	kb_listener *l = ctx;

	if (l->watch == NULL && l->io->watch(l->io->loop, &l->watch, l->lfd, KB_IO_IN, on_accept, l) != 0)
		kb_log_err("cannot watch the %s socket again", l->face.name[0] ? l->face.name : "main");
}

/* refuse_short_of_fds refuses a connection taken while descriptors ran short (fd -1: none taken), logged once a minute. */
static void refuse_short_of_fds(kb_listener *l, int fd, const char *why)
{
	kb_fdlimit_refusal(&l->b->fdlimit, l->face.name, why);
	if (fd >= 0)
		refuse(l, fd, KB_E_BUSY, "the broker has no file descriptor left for another connection: try again later");
	else
		l->b->counters.conns_refused++;
}

/*
 * out_of_fds takes the connection accept could not, and refuses it, or rests
 * the listener when not even that is possible: never a listener readable
 * forever under a spinning loop (fdlimit.h).
 */
static void out_of_fds(kb_listener *l, int why)
{
	int fd = kb_fdlimit_accept(&l->b->fdlimit, l->lfd);
	char what[128];

	snprintf(what, sizeof(what), "out of file descriptors (%s)", strerror(why));
	refuse_short_of_fds(l, fd, what);
	if (fd >= 0) {
		kb_fdlimit_restore(&l->b->fdlimit);
		return;
	}
	if (l->rest != NULL && l->watch != NULL) {
		l->io->watch(l->io->loop, &l->watch, l->lfd, 0, NULL, NULL);
		l->io->timer_arm(l->rest, kb_now_ms() + KB_FDLIMIT_REST_MS);
	}
}

/* admit checks and counts the peer on fd; returns its connection in the set, or NULL (fd refused) */
static kb_conn *admit(kb_listener *l, int fd)
{
	kb_broker *b = l->b;
	kb_connset *s = l->set;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	char why[256];
	kb_peer *peer;
	kb_err err;
	kb_conn *c;

	if (kb_fdlimit_over(fd)) {
		refuse_short_of_fds(l, fd, KB_FDLIMIT_MARGIN_WHY);
		return NULL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		kb_warn("cannot read the peer's credentials: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	if (!kb_policy_peer_allowed(b, cred.uid, cred.gid, why, sizeof(why))) {
		kb_warn("%s%srefused a connection from uid %u gid %u pid %d: %s", l->face.name,
			l->face.name[0] ? ": " : "", (unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid, why);
		refuse(l, fd, KB_E_PERMISSION_DENIED, why);
		return NULL;
	}
	if (s->stopping) {
		refuse(l, fd, KB_E_BUSY, "the broker is shutting down");
		return NULL;
	}
	/* the peer's share: refused busy, counted and logged per peer (peer.h) */
	peer = kb_peer_admit(&s->peers, b->cfg, *s->count, cred.uid, cred.pid, kb_now_ms(), &err);
	if (peer == NULL) {
		refuse(l, fd, err.code, err.msg);
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		kb_peer_release(&s->peers, peer);
		close(fd);
		return NULL;
	}
	c->peer = peer;
	c->fd = fd;
	c->set = s;
	c->serial = ++l->next_serial;
	c->pid = cred.pid;
	c->uid = cred.uid;
	c->gid = cred.gid;
	c->refs = 1;
	c->last_activity_ms = kb_now_ms();
	snprintf(c->face, sizeof(c->face), "%s", l->face.face);
	peer_exe(cred.pid, c->exe, sizeof(c->exe));
	c->next = s->list;
	if (s->list)
		s->list->prev = c;
	s->list = c;
	(*s->count)++;
	b->counters.conns_accepted++;
	return c;
}

static void on_accept(void *ctx, int lfd, unsigned ready)
{
	kb_listener *l = ctx;

	(void)ready;
	for (int i = 0; i < ACCEPTS_PER_TURN && l->watch; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		kb_conn *c;

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				out_of_fds(l, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				kb_warn("accept: %s", strerror(errno));
			return;
		}
		if ((c = admit(l, fd)) != NULL)
			l->face.take(l->face.ctx, c);
	}
}

kb_code kb_listener_start(kb_broker *b, const kb_io *io, kb_connset *set, int lfd, const kb_listen_face *face,
			  kb_listener **out, kb_err *err)
{
	kb_listener *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	l->b = b;
	l->io = io;
	l->set = set;
	l->lfd = lfd;
	l->face = *face;
	if ((l->rest = io->timer_new(io->loop, listen_again, l)) == NULL ||
	    io->watch(io->loop, &l->watch, lfd, KB_IO_IN, on_accept, l) != 0) {
		kb_listener_stop(l);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	*out = l;
	return KB_OK;
}

void kb_listener_stop(kb_listener *l)
{
	if (l == NULL)
		return;
	if (l->watch)
		l->io->watch(l->io->loop, &l->watch, l->lfd, 0, NULL, NULL);
	if (l->rest)
		l->io->timer_free(l->rest);
	free(l);
}
