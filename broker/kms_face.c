/*
 * kms_face.c: the KMS v2 sockets (see kms_face.h): connections from the
 * listener (listen.h) handed to gRPC, calls from gRPC's thread through an
 * inbox (inbox.h) to the loop, and the bounds gRPC 1.51 does not keep.
 *
 * gRPC owns the descriptor it is given (grpc_server_add_channel_from_fd)
 * and says nothing when it closes it. So the face gives gRPC a duplicate
 * and keeps the accepted descriptor as the connection's own (kb_conn.fd,
 * "shared"): the socket lives while the face holds it, so its inode names
 * the connection without doubt, and a shutdown(2) of it makes gRPC drop the
 * connection at once. A sweep every KMS_SWEEP_MS checks that gRPC's
 * descriptor still refers to that inode; once it does not, gRPC has let go
 * (the peer left, or gRPC's idle limit), and the face closes its own, which
 * ends the peer's socket and gives back its count. The sweep also closes a
 * connection on which no call has come for the idle limit and none is in
 * flight: a call left unfinished never reaches the face, so it does not
 * keep its connection open.
 *
 * Each call is bound to the connection object it came on, found by gRPC's
 * descriptor and that inode as gRPC's thread saw them when the call came,
 * never by the descriptor number alone. A connection whose calls fail
 * unanswerable faster than KMS_FAILED_PER_S (HTTP/2 rapid reset: gRPC's
 * thread counts them, kms_grpc.h) is closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conn.h"
#include "kms_calls.h"
#include "kms_face.h"
#include "kms_grpc.h"
#include "listen.h"
#include "log.h"
#include "ticket.h"
#include "unixsock.h"

#define KMS_SWEEP_MS 50
/*
 * beyond the idle limit, before the sweep closes a quiet connection: gRPC's
 * own idle limit (the same) says goodbye first with a GOAWAY, which its
 * client takes gracefully; the sweep's shutdown is for those gRPC keeps
 * (a call left unfinished is not idle to it)
 */
#define KMS_IDLE_GRACE_MS 2000
/* calls of a connection that may fail unanswerable (reset, unknown method) in one second: kube-apiserver's do not */
#define KMS_FAILED_PER_S 100
#define STR_(x) #x
#define STR(x) STR_(x)
/* calls handed over by gRPC's thread and not yet taken by the loop, per socket */
#define KMS_INBOX_MAX 4096
/* calls open at once on one socket's connections: beyond, a new call is refused busy */
#define KMS_OPEN_MAX 4096
/* the memory gRPC may hold for one KMS socket's connections and calls */
#define KMS_QUOTA_BYTES (64u << 20)
/*
 * the memory gRPC may grow the process by, beyond what it held when the face
 * started, before the quiet KMS connections are closed: gRPC 1.51 keeps
 * about 12 KB for every stream a peer resets before gRPC hands it over,
 * for as long as the connection lives, and never tells (HTTP/2 rapid reset
 * grew 250 MB/s); closing the connection gives it back
 */
#define KMS_MEMORY_BUDGET ((size_t)32 << 20)
/*
 * a peer closed for the memory budget or for resetting calls is refused this
 * long: a rapid-reset client reconnects at once, and gRPC does not give back
 * what the closed connection held before the next one has grown past the
 * budget again (each reconnect added about 33 MB)
 */
#define KMS_BENCH_MS 30000
#define KMS_BENCH_MAX 16
/* header bytes a call may carry (gRPC's default is 8 KiB; kube-apiserver sends a few hundred) */
#define KMS_MAX_METADATA 8192

typedef struct kconn {
	kb_conn *conn;          /* one reference, the face's */
	int gfd;                /* the duplicate gRPC holds */
	uint64_t ino;           /* the socket's */
	struct kconn *next;
} kconn;

typedef struct kms {
	struct kb_kms_face *f;
	char name[KB_KEY_NAME_MAX + 1];
	char key[KB_KEY_NAME_MAX + 1];
	kb_kms_target target;   /* what the calls are answered with */
	kb_tickets tickets;     /* calls waiting on the core */
	char *path;
	int lfd;
	kb_listener *listener;
	kb_kms_grpc *grpc;
	kb_inbox *inbox;
	kconn *conns;
	kconn **byfd;           /* by gRPC's descriptor: the candidate a call's inode is checked against */
	int nbyfd;
	int64_t idle_ms;
	kb_io_timer *sweep;
	bool over;              /* servers[0]'s: this sweep round closes the quiet connections */
} kms;

struct kb_kms_face {
	kb_broker *b;
	size_t held0;           /* the memory held when the face started (memory_held) */
	size_t act_at;          /* the KMS connections are closed when the memory held reaches this */
	const kb_io *io;
	kb_connset *set;
	kb_health *health;
	kms *servers;
	int n;
	/* peers closed for the memory budget or a rapid reset, refused until then (KMS_BENCH_MS) */
	struct {
		pid_t pid;
		int64_t until_ms;
	} bench[KMS_BENCH_MAX];
};

/* retire forgets kc: its connection is closed (if it was not) and the face's reference given back */
static void retire(kms *k, kconn *kc)
{
	for (kconn **pp = &k->conns; *pp; pp = &(*pp)->next)
		if (*pp == kc) {
			*pp = kc->next;
			break;
		}
	if (kc->gfd < k->nbyfd && k->byfd[kc->gfd] == kc)
		k->byfd[kc->gfd] = NULL;
	kb_conn_close(kc->conn);
	kb_conn_unref(kc->conn);
	free(kc);
}

/* close_conn closes a connection over a limit: its shutdown makes gRPC drop it (the sweep then retires it) */
static void close_conn(kms *k, kconn *kc, const char *why)
{
	kb_conn *c = kc->conn;

	if (c->closed)
		return;
	kb_info("kms %s: closing the connection of pid %d (uid %u): it %s", k->name, (int)c->pid, (unsigned)c->uid, why);
	k->f->b->counters.conns_closed_limit++;
	kb_conn_close(c);
}

/* bench refuses pid's KMS connections for KMS_BENCH_MS, in the slot that ends first */
static void bench(kb_kms_face *f, pid_t pid)
{
	int oldest = 0;

	for (int i = 0; i < KMS_BENCH_MAX; i++) {
		if (f->bench[i].pid == pid) {
			oldest = i;
			break;
		}
		if (f->bench[i].until_ms < f->bench[oldest].until_ms)
			oldest = i;
	}
	f->bench[oldest].pid = pid;
	f->bench[oldest].until_ms = kb_now_ms() + KMS_BENCH_MS;
}

/* benched tells whether pid is refused now */
static bool benched(const kb_kms_face *f, pid_t pid)
{
	int64_t now = kb_now_ms();

	for (int i = 0; i < KMS_BENCH_MAX; i++)
		if (f->bench[i].pid == pid && f->bench[i].until_ms > now)
			return true;
	return false;
}

/* take serves a connection the listener admitted: gRPC gets a duplicate, the face keeps the original */
static void take(void *ctx, kb_conn *c)
{
	kms *k = ctx;
	struct stat st;
	kconn *kc;
	int gfd = -1;

	if (benched(k->f, c->pid)) {
		kb_info("kms %s: refusing a connection of pid %d (uid %u): it was closed for the memory budget or "
			"resetting calls less than %d s ago", k->name, (int)c->pid, (unsigned)c->uid, KMS_BENCH_MS / 1000);
		k->f->b->counters.conns_refused++;
		kb_conn_close(c);
		return;
	}
	kc = calloc(1, sizeof(*kc));
	if (kc == NULL || fstat(c->fd, &st) != 0 || (gfd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
	    kb_fdlimit_over(gfd)) {
		if (gfd >= 0)
			close(gfd);
		free(kc);
		kb_warn("kms %s: no descriptor left to serve a connection: it is closed", k->name);
		kb_conn_close(c);
		return;
	}
	if (gfd >= k->nbyfd) {
		int n = gfd + 64;
		kconn **grown = realloc(k->byfd, (size_t)n * sizeof(*grown));
		if (grown == NULL) {
			close(gfd);
			free(kc);
			kb_conn_close(c);
			return;
		}
		memset(grown + k->nbyfd, 0, (size_t)(n - k->nbyfd) * sizeof(*grown));
		k->byfd = grown;
		k->nbyfd = n;
	}
	/* gRPC let go of this number before the sweep saw it: that connection is over */
	if (k->byfd[gfd])
		retire(k, k->byfd[gfd]);
	c->shared = true;
	c->refs++;
	kc->conn = c;
	kc->gfd = gfd;
	kc->ino = (uint64_t)st.st_ino;
	kc->next = k->conns;
	k->conns = kc;
	k->byfd[gfd] = kc;
	kb_kms_grpc_add_fd(k->grpc, gfd);
}

/* the sanitizers' allocator answers this; their shadow memory would swamp the resident size */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/*
 * memory_held is the memory the process holds now: its resident size. Not
 * glibc's mallinfo2, which counts the main arena only, while gRPC's threads
 * allocate from arenas of their own (a rapid reset grew the resident size by
 * 235 MB while mallinfo2 saw less than the budget).
 */
static size_t memory_held(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f;

	if (__sanitizer_get_current_allocated_bytes)
		return __sanitizer_get_current_allocated_bytes();
	if ((f = fopen("/proc/self/statm", "re")) == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/*
 * over_budget tells whether the memory held reached f->act_at: KMS_MEMORY_BUDGET past
 * what it was when the face started, or, while an episode lasts (the memory
 * has not come back under that), KMS_MEMORY_BUDGET past where it was when the
 * KMS connections were last closed: so one episode closes them once, and
 * a new connection is not closed before its first call because the memory
 * has not come down yet.
 */
static bool over_budget(kb_kms_face *f)
{
	size_t now = memory_held();

	if (now < f->held0 + KMS_MEMORY_BUDGET) {
		f->act_at = f->held0 + KMS_MEMORY_BUDGET; /* no episode, or it is over */
		return false;
	}
	if (now < f->act_at)
		return false;
	kb_warn("kms: the memory held grew by %zu MiB (more than %zu): closing every KMS connection, calls in flight too; "
		"gRPC gives back what a connection held when it closes (a peer resetting streams, HTTP/2 rapid reset, "
		"grows it)",
		(now - f->held0) >> 20, KMS_MEMORY_BUDGET >> 20);
	f->act_at = now + KMS_MEMORY_BUDGET;
	return true;
}

static void sweep(void *ctx)
{
	kms *k = ctx;
	int64_t now = kb_now_ms();
	bool over = k == &k->f->servers[0] ? over_budget(k->f) : k->f->servers[0].over;
	kconn *next;

	for (kconn *kc = k->conns; kc; kc = next) {
		kb_conn *c = kc->conn;
		struct stat st;

		next = kc->next;
		if (fstat(kc->gfd, &st) != 0 || (uint64_t)st.st_ino != kc->ino)
			retire(k, kc); /* gRPC let go */
		else if (!c->closed && over) {
			close_conn(k, kc, "was open while gRPC held more memory than its budget");
			bench(k->f, c->pid);
		}
		else if (!c->closed && c->inflight == 0 && now - c->last_activity_ms > k->idle_ms + KMS_IDLE_GRACE_MS)
			close_conn(k, kc, k->f->b->cfg->idle_timeout_ms ? "had no call answered for longer than idle_timeout"
								 : "had no call answered for longer than client_timeout");
	}
	k->over = over;
	k->f->io->timer_arm(k->sweep, now + KMS_SWEEP_MS);
}

/* find returns the connection a call came on, or NULL when it is gone */
static kconn *find(kms *k, kb_kms_call *c)
{
	int fd;
	uint64_t ino;
	kconn *kc;

	kb_kms_call_peer(c, &fd, &ino);
	if (fd < 0 || fd >= k->nbyfd || ino == 0 || (kc = k->byfd[fd]) == NULL || kc->ino != ino)
		return NULL;
	return kc;
}

/* on_call takes a call posted by gRPC's thread, on the loop thread */
static void on_call(void *ctx, kb_inbox_item *it)
{
	kms *k = ctx;
	kb_kms_call *c = kb_kms_call_of(it);
	kconn *kc = find(k, c);
	const char *msg;
	grpc_status_code failed = kb_kms_call_failed(c, &msg);
	int64_t now = kb_now_ms();

	if (kc == NULL || kc->conn->closed) {
		kb_kms_call_reply(c, GRPC_STATUS_UNAVAILABLE, "the connection it came on is closed", NULL);
		return;
	}
	if (kb_kms_call_over(c)) {
		close_conn(k, kc, failed == GRPC_STATUS_RESOURCE_EXHAUSTED
					  ? "opened more calls at once than max_inflight (it ignores SETTINGS_MAX_CONCURRENT_STREAMS)"
					  : "failed more than " STR(KMS_FAILED_PER_S) " calls in a second (HTTP/2 rapid reset)");
		bench(k->f, kc->conn->pid);
	}
	if (failed != GRPC_STATUS_OK) {
		kb_kms_call_reply(c, failed, msg, NULL);
		return;
	}
	kc->conn->last_activity_ms = now;
	kb_kms_answer(&k->target, c, kc->conn);
}

/* post runs on gRPC's thread: the call goes to the loop, or is answered here when it cannot */
static void post(void *ctx, kb_kms_call *c)
{
	kms *k = ctx;

	switch (kb_inbox_post(k->inbox, kb_kms_call_item(c))) {
	case KB_INBOX_POSTED:
		break;
	case KB_INBOX_FULL:
		kb_kms_call_reply(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
				  "busy: the broker has too many KMS calls waiting; retry", NULL);
		break;
	case KB_INBOX_CLOSED:
		kb_kms_call_reply(c, GRPC_STATUS_UNAVAILABLE, "the broker is shutting down", NULL);
		break;
	}
}

static kb_code start_one(kb_kms_face *f, kms *k, const kb_kmsconf *kc, kb_err *err)
{
	const kb_io *io = f->io;
	const kb_config *cfg = f->b->cfg;
	char msg[sizeof(err->msg)];
	kb_listen_face face = { .take = take, .ctx = k };
	kb_kms_limits lim;
	kb_code rc;

	k->f = f;
	k->lfd = -1;
	snprintf(k->name, sizeof(k->name), "%s", kc->name);
	snprintf(k->key, sizeof(k->key), "%s", kc->key);
	k->target = (kb_kms_target){ .b = f->b, .health = f->health, .key = k->key, .tickets = &k->tickets };
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
	/* a connection that does nothing is closed after idle_timeout, or client_timeout without one */
	k->idle_ms = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : cfg->client_timeout_ms;
	lim = (kb_kms_limits){ .max_msg = cfg->max_request_bytes, .max_streams = cfg->max_inflight,
			       .idle_ms = k->idle_ms, .max_metadata = KMS_MAX_METADATA,
			       .quota_bytes = KMS_QUOTA_BYTES, .max_failed_per_s = KMS_FAILED_PER_S,
			       .max_open = KMS_OPEN_MAX };
	if ((rc = kb_inbox_new(io, KMS_INBOX_MAX, on_call, k, &k->inbox, err)) != KB_OK ||
	    (rc = kb_kms_grpc_start(&lim, post, k, &k->grpc, err)) != KB_OK)
		return rc;
	if ((k->sweep = io->timer_new(io->loop, sweep, k)) == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	io->timer_arm(k->sweep, kb_now_ms() + KMS_SWEEP_MS);
	snprintf(face.name, sizeof(face.name), "kms %s", k->name);
	snprintf(face.face, sizeof(face.face), "kms:%s", k->name);
	if ((rc = kb_listener_start(f->b, io, f->set, k->lfd, &face, &k->listener, err)) != KB_OK)
		return rc;
	kb_info("kms %s: serving key %s over KMS v2 on %s", k->name, k->key, k->path);
	return KB_OK;
}

kb_code kb_kms_face_start(kb_broker *b, const kb_io *io, kb_connset *set, kb_health *health, kb_kms_face **out,
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
	f->set = set;
	f->held0 = memory_held();
	f->act_at = f->held0 + KMS_MEMORY_BUDGET;
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

		kb_listener_stop(k->listener);
		k->listener = NULL;
		/* from now gRPC's thread answers new calls itself */
		for (kb_inbox_item *it = k->inbox ? kb_inbox_close(k->inbox) : NULL, *next; it; it = next) {
			next = it->next;
			kb_kms_call_reply(kb_kms_call_of(it), GRPC_STATUS_UNAVAILABLE, "the broker is shutting down", NULL);
		}
		/* calls still waiting on the broker are answered UNAVAILABLE now */
		kb_tickets_orphan(&k->tickets);
	}
	kb_health_end_learners(f->health);
	for (int i = 0; i < f->n; i++) {
		kms *k = &f->servers[i];

		while (k->conns)
			retire(k, k->conns);
		if (k->sweep)
			f->io->timer_free(k->sweep);
		kb_kms_grpc_stop(k->grpc);
		kb_inbox_free(k->inbox);
		if (k->lfd >= 0) {
			close(k->lfd);
			unlink(k->path);
		}
		free(k->byfd);
		free(k->path);
	}
	free(f->servers);
	free(f);
}
