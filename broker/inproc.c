/*
 * inproc.c: the broker's own requests to its dispatcher (see inproc.h).
 *
 * The connection is a kb_conn like any client's, so conn.c writes its answers
 * and applies the same output limits; it belongs to a connection set of its
 * own whose epoll instance the loop watches, so an answer that had to wait
 * for room in the socketpair is sent when there is room again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "conn.h"
#include "dispatch.h"
#include "inproc.h"
#include "jsonw.h"
#include "log.h"

typedef struct pending {
	uint64_t id;
	kb_inproc_cb cb;
	void *ctx;
	struct pending *next;
} pending;

struct kb_inproc {
	kb_broker *b;
	const kb_io *io;
	kb_connset set;        /* this connection alone, in its own epoll instance */
	int count;
	kb_conn *conn;         /* the loop's end */
	int rfd;               /* our end: the answers */
	kb_io_watch *rwatch;   /* rfd readable */
	kb_io_watch *ewatch;   /* set.epfd: conn writable again */
	kb_buf in;
	kb_buf line;
	kb_buf now;            /* answers made while kb_inproc_request_now dispatched */
	uint64_t next_id;
	pending *pending;
};

static void fail_all(kb_inproc *p)
{
	while (p->pending) {
		pending *q = p->pending;
		p->pending = q->next;
		q->cb(q->ctx, NULL);
		free(q);
	}
}

/* take_answer hands one answer line to the request it answers. */
static void take_answer(kb_inproc *p, char *text, size_t n)
{
	cJSON *root = cJSON_ParseWithLength(text, n);
	const cJSON *id = root ? cJSON_GetObjectItemCaseSensitive(root, "id") : NULL;
	uint64_t want;
	pending **pp;

	if (!cJSON_IsString(id)) {
		kb_log_err("an in-process answer has no id: dropped");
		cJSON_Delete(root);
		return;
	}
	want = strtoull(id->valuestring, NULL, 10);
	for (pp = &p->pending; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == want) {
			pending *q = *pp;
			*pp = q->next;
			q->cb(q->ctx, root);
			free(q);
			break;
		}
	}
	cJSON_Delete(root); /* cJSON's free hook wipes (main.c) */
}

/*
 * take_now hands the answers captured while request id was dispatched to
 * their callbacks; if the capture ran out of memory, that request fails
 * (its answer is lost), as it would had the connection broken.
 */
static void take_now(kb_inproc *p, uint64_t id)
{
	size_t start = 0;

	if (p->now.oom) {
		for (pending **pp = &p->pending; *pp; pp = &(*pp)->next)
			if ((*pp)->id == id) {
				pending *q = *pp;
				*pp = q->next;
				q->cb(q->ctx, NULL);
				free(q);
				break;
			}
		kb_buf_free(&p->now);
		return;
	}
	/* nothing captured (a miss answers later, through the socketpair): no buffer at all */
	while (start < p->now.len) {
		char *nl = memchr(p->now.data + start, '\n', p->now.len - start);
		if (nl == NULL)
			break;
		take_answer(p, p->now.data + start, (size_t)(nl - (p->now.data + start)));
		start = (size_t)(nl - p->now.data) + 1;
	}
	kb_buf_consume(&p->now, p->now.len); /* wipes the plaintext; a partial line cannot come */
}

static void on_answers(void *ctx, int fd, unsigned ready)
{
	kb_inproc *p = ctx;
	size_t start = 0;

	for (;;) {
		ssize_t n;

		if (!kb_buf_reserve(&p->in, 16384))
			break;
		n = recv(fd, p->in.data + p->in.len, p->in.cap - p->in.len, MSG_DONTWAIT);
		if (n > 0) {
			p->in.len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
			kb_log_err("the in-process connection broke: its requests fail");
			p->io->watch(p->io->loop, &p->rwatch, fd, 0, NULL, NULL);
			fail_all(p);
			return;
		}
		break;
	}
	for (;;) {
		char *nl = memchr(p->in.data + start, '\n', p->in.len - start);
		if (nl == NULL)
			break;
		take_answer(p, p->in.data + start, (size_t)(nl - (p->in.data + start)));
		start = (size_t)(nl - p->in.data) + 1;
	}
	kb_buf_consume(&p->in, start);
}

static void on_writable(void *ctx, int fd, unsigned ready)
{
	kb_inproc *p = ctx;
	struct epoll_event ev[4];
	int n = epoll_wait(fd, ev, 4, 0);

	for (int i = 0; i < n; i++)
		if (p->conn && p->conn->fd >= 0 && (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			kb_conn_send(p->conn);
	kb_connset_bury(&p->set);
}

kb_code kb_inproc_open(kb_broker *b, const kb_io *io, uid_t uid, gid_t gid, pid_t pid,
		       const char *exe, const char *face, kb_inproc **out, kb_err *err)
{
	kb_inproc *p = calloc(1, sizeof(*p));
	struct epoll_event ev = { .events = 0 };
	int sv[2] = { -1, -1 }, big = 4 << 20;

	if (p == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	p->b = b;
	p->io = io;
	p->rfd = -1;
	p->set.count = &p->count;
	p->set.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (p->set.epfd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		goto fail;
	/* answers seldom wait: room for thousands of them in flight */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if ((p->conn = calloc(1, sizeof(*p->conn))) == NULL)
		goto fail;
	p->conn->fd = sv[0];
	p->conn->set = &p->set;
	p->conn->uid = uid;
	p->conn->gid = gid;
	p->conn->pid = pid;
	p->conn->refs = 1;
	p->conn->last_activity_ms = kb_now_ms();
	snprintf(p->conn->exe, sizeof(p->conn->exe), "%s", exe);
	snprintf(p->conn->face, sizeof(p->conn->face), "%s", face);
	ev.data.ptr = p->conn;
	p->rfd = sv[1];
	sv[0] = sv[1] = -1;
	if (epoll_ctl(p->set.epfd, EPOLL_CTL_ADD, p->conn->fd, &ev) != 0)
		goto fail;
	p->set.list = p->conn;
	p->count = 1;
	if (io->watch(io->loop, &p->rwatch, p->rfd, KB_IO_IN, on_answers, p) != 0 ||
	    io->watch(io->loop, &p->ewatch, p->set.epfd, KB_IO_IN, on_writable, p) != 0)
		goto fail;
	*out = p;
	return KB_OK;
fail:
	kb_err_set(err, KB_E_INTERNAL, "cannot make an in-process connection: %s", strerror(errno));
	if (sv[0] >= 0)
		close(sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	kb_inproc_close(p);
	return err->code;
}

static kb_code request(kb_inproc *p, const kb_buf *fields, const char *tag, kb_inproc_cb cb, void *ctx,
		       bool now)
{
	pending *q = calloc(1, sizeof(*q));
	char head[140];

	if (q == NULL || p->conn == NULL || p->conn->fd < 0) {
		free(q);
		return KB_E_INTERNAL;
	}
	q->id = ++p->next_id;
	q->cb = cb;
	q->ctx = ctx;
	q->next = p->pending;
	p->pending = q;
	/* the id is "N tag": N matches the answer, the tag is for the audit log */
	snprintf(head, sizeof(head), "%llu %.100s", (unsigned long long)q->id, tag ? tag : "");
	kb_buf_consume(&p->line, p->line.len);
	kb_jw_raw(&p->line, "{\"id\":");
	kb_jw_str(&p->line, head);
	kb_jw_raw(&p->line, ",");
	kb_buf_append(&p->line, fields->data, fields->len);
	kb_buf_append(&p->line, "}", 1);
	if (p->line.oom) {
		p->pending = q->next;
		free(q);
		return KB_E_INTERNAL;
	}
	p->conn->last_activity_ms = kb_now_ms();
	if (now)
		p->conn->capture = &p->now;
	kb_dispatch(p->b, p->conn, p->line.data, p->line.len);
	p->conn->capture = NULL;
	kb_buf_consume(&p->line, p->line.len); /* wipes the plaintext it may hold */
	if (now)
		take_now(p, q->id);
	return KB_OK;
}

kb_code kb_inproc_request(kb_inproc *p, const kb_buf *fields, const char *tag, kb_inproc_cb cb,
			  void *ctx)
{
	return request(p, fields, tag, cb, ctx, false);
}

kb_code kb_inproc_request_now(kb_inproc *p, const kb_buf *fields, const char *tag, kb_inproc_cb cb,
			      void *ctx)
{
	return request(p, fields, tag, cb, ctx, true);
}

bool kb_inproc_ok(const cJSON *answer, const char **code, const char **msg)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(answer, "error");
	const char *c = kb_inproc_str(e, "code"), *m = kb_inproc_str(e, "message");

	if (answer && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(answer, "ok")))
		return true;
	if (code)
		*code = c ? c : "internal";
	if (msg)
		*msg = m ? m : "the broker stopped before it answered";
	return false;
}

const char *kb_inproc_str(const cJSON *answer, const char *name)
{
	const cJSON *v = answer ? cJSON_GetObjectItemCaseSensitive(answer, name) : NULL;

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

void kb_inproc_set_pid(kb_inproc *p, pid_t pid)
{
	if (p->conn)
		p->conn->pid = pid;
}

void kb_inproc_close(kb_inproc *p)
{
	if (p == NULL)
		return;
	if (p->rwatch)
		p->io->watch(p->io->loop, &p->rwatch, p->rfd, 0, NULL, NULL);
	if (p->ewatch)
		p->io->watch(p->io->loop, &p->ewatch, p->set.epfd, 0, NULL, NULL);
	fail_all(p);
	if (p->conn && p->conn->fd >= 0) {
		/* jobs may still hold it: outside any set, the last of them frees it */
		p->conn->set = NULL;
		kb_conn_close(p->conn);
	}
	kb_connset_bury(&p->set);
	if (p->rfd >= 0)
		close(p->rfd);
	if (p->set.epfd >= 0)
		close(p->set.epfd);
	kb_buf_free(&p->in);
	kb_buf_free(&p->line);
	kb_buf_free(&p->now);
	free(p);
}
