/*
 * kms_face.c: the KMS v2 sockets (see kms_face.h): accepting and checking
 * peers, answering calls on gRPC's thread holding the loop token while the
 * loop sleeps or else handing them to the loop (an inbox and an eventfd),
 * and one in-process connection per peer uid and gid, through which
 * kms_calls.c answers them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "inproc.h"
#include "kms_calls.h"
#include "kms_face.h"
#include "kms_grpc.h"
#include "log.h"
#include "policy.h"
#include "unixsock.h"

typedef struct peer {
	bool set;
	uid_t uid;
	gid_t gid;
	pid_t pid;
} peer;

typedef struct client {
	struct kms *k;
	uid_t uid;
	gid_t gid;
	kb_inproc *conn;
	struct client *next;
} client;

typedef struct kms {
	struct kb_kms_face *f;
	char name[KB_KEY_NAME_MAX + 1];
	char key[KB_KEY_NAME_MAX + 1];
	kb_kms_target target;  /* what the calls are answered with */
	char *path;
	int lfd;
	kb_io_watch *lwatch;
	kb_io_timer *lrest;     /* watches lfd again after it rested (fdlimit.h) */
	kb_kms_grpc *grpc;
	/* calls posted by the gRPC thread */
	pthread_mutex_t mu;
	kb_kms_call *inbox;
	bool stopping;
	int efd;
	kb_io_watch *ewatch;
	/* who is on each accepted connection, by fd */
	peer *peers;
	int npeers;

} kms;

struct kb_kms_face {
	kb_broker *b;
	const kb_io *io;
	kb_health *health;
	kms *servers;
	int n;
	client *clients;
};

/* conn_for returns the in-process connection of the peer on the call's connection */
static kb_inproc *conn_for(kms *k, kb_kms_call *c)
{
	struct kb_kms_face *f = k->f;
	int fd = kb_kms_call_fd(c);
	const peer *p = fd >= 0 && fd < k->npeers && k->peers[fd].set ? &k->peers[fd] : NULL;
	char exe[256], link[64], face[sizeof(((kb_conn *)0)->face)];
	client *cl;
	ssize_t n;
	kb_err err;

	if (p == NULL)
		return NULL;
	for (cl = f->clients; cl; cl = cl->next)
		if (cl->uid == p->uid && cl->gid == p->gid && cl->k == k) {
			kb_inproc_set_pid(cl->conn, p->pid);
			return cl->conn;
		}
	snprintf(link, sizeof(link), "/proc/%d/exe", (int)p->pid);
	n = readlink(link, exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	if ((cl = calloc(1, sizeof(*cl))) == NULL)
		return NULL;
	snprintf(face, sizeof(face), "kms:%s", k->name);
	if (kb_inproc_open(f->b, f->io, p->uid, p->gid, p->pid, exe, face, &cl->conn, &err) != KB_OK) {
		kb_log_err("%s", err.msg);
		free(cl);
		return NULL;
	}
	cl->uid = p->uid;
	cl->gid = p->gid;
	cl->k = k;
	cl->next = f->clients;
	f->clients = cl;
	return cl->conn;
}

static void handle(kms *k, kb_kms_call *c)
{
	kb_kms_answer(&k->target, c, kb_kms_call_method(c) == KB_KMS_STATUS ? NULL : conn_for(k, c));
}

static void wake_loop(kms *k)
{
	uint64_t one = 1;

	if (write(k->efd, &one, sizeof(one)) < 0)
		kb_debug("eventfd: %s", strerror(errno)); /* it is already readable */
}

/*
 * run_here answers c on the gRPC thread while the loop waits for events: it
 * takes the loop token, as a worker that ends its own job does (finish.h),
 * and makes the call's request just as the loop would, so a cache hit is
 * answered with no hand-off at all. A call that is not answered before the
 * token is given back has started a job (or a check); the loop is then woken, as
 * it may have timers to take up that only it reads. Status runs here only
 * while its key is healthy: otherwise it may start a check. false: the loop
 * is busy (or stopping), and c goes to it.
 */
static bool run_here(kms *k, kb_kms_call *c)
{
	kb_broker *b = k->f->b;
	const kb_health_state *st;
	bool stopping, answered;
	uint64_t before;

	if (!kb_loop_token_try(&b->token))
		return false;
	pthread_mutex_lock(&k->mu);
	stopping = k->stopping;
	pthread_mutex_unlock(&k->mu);
	st = kb_kms_call_method(c) == KB_KMS_STATUS ? kb_health_get(k->f->health, k->key) : NULL;
	if (stopping || (kb_kms_call_method(c) == KB_KMS_STATUS && (st == NULL || !st->ok))) {
		kb_loop_token_give(&b->token);
		return false;
	}
	before = kb_kms_grpc_replies(k->grpc);
	handle(k, c);
	answered = kb_kms_grpc_replies(k->grpc) != before;
	kb_loop_token_give(&b->token);
	if (!answered)
		wake_loop(k);
	return true;
}

/* post runs on the gRPC thread: the call is answered here, or waits in the inbox for the loop */
static void post(void *ctx, kb_kms_call *c)
{
	kms *k = ctx;
	bool stopping;

	if (run_here(k, c))
		return;

	pthread_mutex_lock(&k->mu);
	stopping = k->stopping;
	if (!stopping) {
		*kb_kms_call_next(c) = k->inbox;
		k->inbox = c;
	}
	pthread_mutex_unlock(&k->mu);
	if (stopping)
		kb_kms_call_reply(c, GRPC_STATUS_UNAVAILABLE, "the broker is shutting down", NULL);
	else
		wake_loop(k);
}

/* take_inbox returns the posted calls, oldest first */
static kb_kms_call *take_inbox(kms *k)
{
	kb_kms_call *list, *rev = NULL;

	pthread_mutex_lock(&k->mu);
	list = k->inbox;
	k->inbox = NULL;
	pthread_mutex_unlock(&k->mu);
	while (list) {
		kb_kms_call *next = *kb_kms_call_next(list);
		*kb_kms_call_next(list) = rev;
		rev = list;
		list = next;
	}
	return rev;
}

static void on_inbox(void *ctx, int fd, unsigned ready)
{
	kms *k = ctx;
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		kb_debug("eventfd: %s", strerror(errno));
	for (kb_kms_call *c = take_inbox(k), *next; c; c = next) {
		next = *kb_kms_call_next(c);
		handle(k, c);
	}
}

static void on_accept(void *ctx, int lfd, unsigned ready);

static void listen_again(void *ctx)
{
	kms *k = ctx;
	const kb_io *io = k->f->io;

	if (k->lwatch == NULL && io->watch(io->loop, &k->lwatch, k->lfd, KB_IO_IN, on_accept, k) != 0)
		kb_log_err("kms %s: cannot watch its socket again", k->name);
}

/* refuse_short_of_fds closes a connection taken while descriptors ran short (a gRPC client connects again). */
static void refuse_short_of_fds(kms *k, int fd, const char *why)
{
	char face[KB_KEY_NAME_MAX + 8];

	k->f->b->counters.conns_refused++;
	snprintf(face, sizeof(face), "kms %s", k->name);
	kb_fdlimit_refusal(&k->f->b->fdlimit, face, why);
	if (fd >= 0)
		close(fd);
}

/*
 * out_of_fds takes the connection accept could not, and closes it, or rests
 * the listener when not even that is possible: never a listener readable
 * forever under a spinning loop (fdlimit.h).
 */
static void out_of_fds(kms *k, int lfd, int why)
{
	kb_broker *b = k->f->b;
	const kb_io *io = k->f->io;
	int fd = kb_fdlimit_accept(&b->fdlimit, lfd);
	char what[128];

	snprintf(what, sizeof(what), "out of file descriptors (%s)", strerror(why));
	refuse_short_of_fds(k, fd, what);
	if (fd >= 0) {
		kb_fdlimit_restore(&b->fdlimit);
		return;
	}
	if (k->lrest == NULL)
		k->lrest = io->timer_new(io->loop, listen_again, k);
	if (k->lrest != NULL && k->lwatch != NULL) {
		io->watch(io->loop, &k->lwatch, lfd, 0, NULL, NULL);
		io->timer_arm(k->lrest, kb_now_ms() + KB_FDLIMIT_REST_MS);
	}
}

static void on_accept(void *ctx, int lfd, unsigned ready)
{
	kms *k = ctx;
	kb_broker *b = k->f->b;

	for (int i = 0; i < 64; i++) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		char why[256];
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE)
				out_of_fds(k, lfd, errno);
			return;
		}
		if (kb_fdlimit_over(fd)) {
			refuse_short_of_fds(k, fd, KB_FDLIMIT_MARGIN_WHY);
			continue;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
			close(fd);
			continue;
		}
		if (!kb_policy_peer_allowed(b, cred.uid, cred.gid, why, sizeof(why))) {
			b->counters.conns_refused++;
			kb_warn("kms %s: refused a connection from uid %u gid %u pid %d: %s", k->name,
				(unsigned)cred.uid, (unsigned)cred.gid, (int)cred.pid, why);
			close(fd);
			continue;
		}
		if (fd >= k->npeers) {
			int n = fd + 64;
			peer *grown = realloc(k->peers, (size_t)n * sizeof(*grown));
			if (grown == NULL) {
				close(fd);
				continue;
			}
			memset(grown + k->npeers, 0, (size_t)(n - k->npeers) * sizeof(*grown));
			k->peers = grown;
			k->npeers = n;
		}
		k->peers[fd] = (peer){ .set = true, .uid = cred.uid, .gid = cred.gid, .pid = cred.pid };
		b->counters.conns_accepted++;
		kb_kms_grpc_add_fd(k->grpc, fd);
	}
}

static kb_code start_one(kb_kms_face *f, kms *k, const kb_kmsconf *kc, kb_err *err)
{
	const kb_io *io = f->io;
	const kb_config *cfg = f->b->cfg;
	char msg[sizeof(err->msg)];
	kb_kms_limits lim;
	kb_code rc;

	k->f = f;
	k->lfd = k->efd = -1;
	pthread_mutex_init(&k->mu, NULL);
	snprintf(k->name, sizeof(k->name), "%s", kc->name);
	snprintf(k->key, sizeof(k->key), "%s", kc->key);
	k->target = (kb_kms_target){ .b = f->b, .health = f->health, .key = k->key };
	if (kc->socket == NULL || kc->key[0] == '\0')
		return kb_err_set(err, KB_E_BAD_REQUEST, "[kms:%s] needs socket and key", kc->name);
	if (kb_key_find(f->b, kc->key) == NULL)
		return kb_err_set(err, KB_E_UNKNOWN_KEY, "[kms:%s] key %s: there is no [key:%s] section", kc->name,
				  kc->key, kc->key);
	if ((k->path = strdup(kc->socket)) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	/* made as the main socket is: private directory, mode, group */
	if ((rc = kb_unix_listen(k->path, f->b->cfg->socket_mode, f->b->cfg->socket_group, &k->lfd, err)) != KB_OK) {
		snprintf(msg, sizeof(msg), "%s", err->msg);
		return kb_err_set(err, rc, "[kms:%s] %s", k->name, msg);
	}
	if ((k->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		return kb_err_set(err, KB_E_INTERNAL, "eventfd: %s", strerror(errno));
	/* a connection that does nothing is closed after idle_timeout, or client_timeout without one */
	lim = (kb_kms_limits){ .max_msg = cfg->max_request_bytes, .max_streams = cfg->max_inflight,
			       .idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : cfg->client_timeout_ms };
	if ((rc = kb_kms_grpc_start(&lim, post, k, &k->grpc, err)) != KB_OK)
		return rc;
	if (io->watch(io->loop, &k->ewatch, k->efd, KB_IO_IN, on_inbox, k) != 0 ||
	    io->watch(io->loop, &k->lwatch, k->lfd, KB_IO_IN, on_accept, k) != 0)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	kb_info("kms %s: serving key %s over KMS v2 on %s", k->name, k->key, k->path);
	return KB_OK;
}

kb_code kb_kms_face_start(kb_broker *b, const kb_io *io, kb_health *health, kb_kms_face **out,
			  kb_err *err)
{
	kb_kms_face *f;
	kb_code rc;

	*out = NULL;
	if (b->cfg->nkms == 0)
		return KB_OK;
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->servers = calloc((size_t)b->cfg->nkms, sizeof(*f->servers))) == NULL) {
		free(f);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	f->b = b;
	f->io = io;
	f->health = health;
	for (int i = 0; i < b->cfg->nkms; i++) {
		f->n = i + 1;
		if ((rc = start_one(f, &f->servers[i], &b->cfg->kms[i], err)) != KB_OK) {
			kb_kms_face_stop(f);
			return rc;
		}
	}
	*out = f;
	return KB_OK;
}

void kb_kms_face_stop(kb_kms_face *f)
{
	if (f == NULL)
		return;
	for (int i = 0; i < f->n; i++) {
		kms *k = &f->servers[i];
		pthread_mutex_lock(&k->mu);
		k->stopping = true; /* from now the gRPC thread answers new calls itself */
		pthread_mutex_unlock(&k->mu);
		for (kb_kms_call *c = take_inbox(k), *next; c; c = next) {
			next = *kb_kms_call_next(c);
			kb_kms_call_reply(c, GRPC_STATUS_UNAVAILABLE, "the broker is shutting down", NULL);
		}
	}
	/* answers every call still waiting on the broker with UNAVAILABLE, or as it can */
	kb_health_end_learners(f->health);
	while (f->clients) {
		client *cl = f->clients;
		f->clients = cl->next;
		kb_inproc_close(cl->conn);
		free(cl);
	}
	for (int i = 0; i < f->n; i++) {
		kms *k = &f->servers[i];
		if (k->lrest)
			f->io->timer_free(k->lrest);
		if (k->lwatch)
			f->io->watch(f->io->loop, &k->lwatch, k->lfd, 0, NULL, NULL);
		if (k->ewatch)
			f->io->watch(f->io->loop, &k->ewatch, k->efd, 0, NULL, NULL);
		kb_kms_grpc_stop(k->grpc);
		if (k->lfd >= 0) {
			close(k->lfd);
			unlink(k->path);
		}
		if (k->efd >= 0)
			close(k->efd);
		pthread_mutex_destroy(&k->mu);
		free(k->peers);
		free(k->path);
	}
	free(f->servers);
	free(f);
}
