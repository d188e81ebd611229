/*
 * conn.c: a connection's output and lifetime (see conn.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"

void kb_conn_update_events(kb_conn *c)
{
	kb_connset *s = c->set;
	struct epoll_event ev = { .data.ptr = c };

	kb_loop_assert_owner();
	if (s == NULL || c->fd < 0)
		return;
	ev.events = c->want_write ? EPOLLOUT : 0;
	/* reading pauses while a client leaves its answers unread, or while stopping */
	if (!c->close_after_flush && !s->stopping && c->out.len < KB_CONN_OUT_HIGH_WATER)
		ev.events |= EPOLLIN;
	epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

kb_conn *kb_conn_own(uid_t uid, gid_t gid, pid_t pid, const char *exe, const char *face)
{
	kb_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->fd = -1;
	c->uid = uid;
	c->gid = gid;
	c->pid = pid;
	c->refs = 1;
	c->last_activity_ms = kb_now_ms();
	snprintf(c->exe, sizeof(c->exe), "%s", exe);
	snprintf(c->face, sizeof(c->face), "%s", face);
	return c;
}

static void conn_free(kb_conn *c)
{
	kb_buf_free(&c->in);
	kb_buf_free(&c->out);
	free(c);
}

void kb_conn_close(kb_conn *c)
{
	kb_connset *s = c->set;

	kb_loop_assert_owner();
	if (c->closed)
		return;
	c->closed = true;
	if (c->fd < 0) {
		kb_conn_unref(c); /* a face's own connection object, without a socket */
		return;
	}
	if (s) {
		epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
		if (c->prev)
			c->prev->next = c->next;
		else
			s->list = c->next;
		if (c->next)
			c->next->prev = c->prev;
		(*s->count)--;
		kb_peer_release(&s->peers, c->peer);
		c->peer = NULL;
	}
	if (c->shared)
		shutdown(c->fd, SHUT_RDWR); /* the face's library sees the end and lets go of its descriptor */
	close(c->fd);
	c->fd = -1;
	kb_buf_free(&c->in);
	kb_buf_free(&c->out);
	if (s && c->refs > 1) {
		/* requests of it are still in flight: the set keeps it in sight until they end */
		c->prev = NULL;
		c->next = s->closed;
		if (s->closed)
			s->closed->prev = c;
		s->closed = c;
		c->on_closed = true;
	}
	kb_conn_unref(c);
}

void kb_conn_unref(kb_conn *c)
{
	kb_loop_assert_owner();
	if (--c->refs > 0)
		return;
	if (c->set && c->on_closed) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->set->closed = c->next;
		if (c->next)
			c->next->prev = c->prev;
		c->on_closed = false;
	}
	if (c->set) {
		c->next = c->set->dead;
		c->set->dead = c;
	} else {
		conn_free(c);
	}
}

void kb_connset_detach(kb_connset *s)
{
	while (s->closed) {
		kb_conn *c = s->closed;

		s->closed = c->next;
		c->on_closed = false;
		c->set = NULL; /* its last reference frees it */
	}
}

void kb_connset_bury(kb_connset *s)
{
	while (s->dead) {
		kb_conn *c = s->dead;
		s->dead = c->next;
		conn_free(c);
	}
}

void kb_conn_send(kb_conn *c)
{
	bool was = c->want_write;

	kb_loop_assert_owner();
	if (c->fd < 0) {
		kb_buf_consume(&c->out, c->out.len);
		return;
	}
	if (c->out.oom) {
		kb_log_err("out of memory writing to a client; closing its connection");
		kb_conn_close(c);
		return;
	}
	while (c->out.len > 0) {
		ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0) {
			kb_buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		kb_conn_close(c); /* the peer went away; its answers have nowhere to go */
		return;
	}
	c->want_write = c->out.len > 0;
	if (c->want_write && !was)
		c->blocked_since_ms = kb_now_ms();
	else if (!c->want_write)
		c->blocked_since_ms = 0;
	if (c->want_write != was || c->out.len >= KB_CONN_OUT_HIGH_WATER)
		kb_conn_update_events(c);
	if (!c->want_write && c->close_after_flush && c->inflight == 0)
		kb_conn_close(c);
}
