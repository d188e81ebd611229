/*
 * kms_face.c: the KMS v2 calls, answered on the loop (see kms_face.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "b64.h"
#include "inproc.h"
#include "jsonw.h"
#include "kms_face.h"
#include "kms_grpc.h"
#include "kms_keyid.h"
#include "log.h"
#include "policy.h"
#include "unixsock.h"

#define ANN_FORMAT "format.keybroker.io"
#define ANN_ALG "alg.keybroker.io"

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
	char *path;
	int lfd;
	kb_io_watch *lwatch;
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

/* one Encrypt or Decrypt between its request and its answer */
typedef struct op {
	kms *k;
	kb_kms_call *call;
	char version[KB_VERSION_MAX + 1];
	char alg[32];
	char *blob;
} op;

/* grpc_code maps a broker error code to the gRPC status kube-apiserver sees */
static grpc_status_code grpc_code(const char *code)
{
	static const struct {
		const char *code;
		grpc_status_code status;
	} map[] = {
		{ "unknown_key", GRPC_STATUS_NOT_FOUND },
		{ "unknown_version", GRPC_STATUS_NOT_FOUND },
		{ "bad_blob", GRPC_STATUS_INVALID_ARGUMENT },
		{ "bad_request", GRPC_STATUS_INVALID_ARGUMENT },
		{ "too_large", GRPC_STATUS_INVALID_ARGUMENT },
		{ "permission_denied", GRPC_STATUS_PERMISSION_DENIED },
		{ "key_disabled", GRPC_STATUS_FAILED_PRECONDITION },
		{ "key_expired", GRPC_STATUS_FAILED_PRECONDITION },
		{ "key_not_yet_valid", GRPC_STATUS_FAILED_PRECONDITION },
		{ "key_unavailable", GRPC_STATUS_UNAVAILABLE },
		{ "mechanism_unsupported", GRPC_STATUS_FAILED_PRECONDITION },
		{ "backend_unavailable", GRPC_STATUS_UNAVAILABLE },
		{ "auth_failed", GRPC_STATUS_UNAVAILABLE },
		{ "throttled", GRPC_STATUS_RESOURCE_EXHAUSTED },
		{ "busy", GRPC_STATUS_RESOURCE_EXHAUSTED },
		{ "audit_unavailable", GRPC_STATUS_UNAVAILABLE },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(code, map[i].code) == 0)
			return map[i].status;
	return GRPC_STATUS_INTERNAL;
}

static void fail(kms *k, kb_kms_call *c, grpc_status_code status, const char *code, const char *msg)
{
	char text[KB_ERR_MSG_MAX + 64];

	k->f->b->counters.kms_errors[kb_kms_call_method(c)]++;
	snprintf(text, sizeof(text), "%s: %s", code, msg);
	kb_kms_call_reply(c, status, text, NULL);
}

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
		kb_error("%s", err.msg);
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

static void do_status(kms *k, kb_kms_call *c)
{
	V2__StatusResponse r = V2__STATUS_RESPONSE__INIT;
	const kb_health_state *st = kb_health_get(k->f->health, k->key);
	char key_id[KB_KMS_KEY_ID_MAX + 1] = "";

	kb_health_poke(k->f->health, k->key);
	if (st && st->known)
		kb_kms_key_id_format(&st->latest, key_id, sizeof(key_id));
	r.version = "v2";
	r.healthz = st == NULL ? "the key is not configured" : st->ok ? "ok" : (char *)st->text;
	r.key_id = key_id;
	kb_kms_call_reply(c, GRPC_STATUS_OK, NULL, &r.base);
}

static void op_free(op *o)
{
	free(o->blob);
	free(o);
}

/* encrypt_answer answers an Encrypt whose wrap is done, once the version's fingerprint is known */
static void encrypt_answer(void *ctx)
{
	op *o = ctx;
	V2__EncryptResponse r = V2__ENCRYPT_RESPONSE__INIT;
	V2__EncryptResponse__AnnotationsEntry a[2] = { V2__ENCRYPT_RESPONSE__ANNOTATIONS_ENTRY__INIT,
						       V2__ENCRYPT_RESPONSE__ANNOTATIONS_ENTRY__INIT };
	V2__EncryptResponse__AnnotationsEntry *ap[2] = { &a[0], &a[1] };
	kb_kms_key_id id = { 0 };
	char key_id[KB_KMS_KEY_ID_MAX + 1];

	snprintf(id.key, sizeof(id.key), "%s", o->k->key);
	snprintf(id.version, sizeof(id.version), "%s", o->version);
	if (!kb_health_fingerprint(o->k->f->health, o->k->key, o->version, id.fp)) {
		fail(o->k, o->call, GRPC_STATUS_UNAVAILABLE, "backend_unavailable",
		     "the key service did not describe the version it wrapped with; retry");
		op_free(o);
		return;
	}
	kb_kms_key_id_format(&id, key_id, sizeof(key_id));
	r.ciphertext.data = (uint8_t *)o->blob;
	r.ciphertext.len = strlen(o->blob);
	r.key_id = key_id;
	a[0].key = ANN_FORMAT;
	a[0].value.data = (uint8_t *)"kb1";
	a[0].value.len = 3;
	a[1].key = ANN_ALG;
	a[1].value.data = (uint8_t *)o->alg;
	a[1].value.len = strlen(o->alg);
	r.n_annotations = 2;
	r.annotations = ap;
	kb_kms_call_reply(o->call, GRPC_STATUS_OK, NULL, &r.base);
	op_free(o);
}

static void on_wrapped(void *ctx, const cJSON *a)
{
	op *o = ctx;
	const char *code, *msg, *blob = kb_inproc_str(a, "blob"), *version = kb_inproc_str(a, "version");
	char fp[KB_KMS_FP_LEN + 1];
	kb_blob *decoded;
	kb_err err;

	if (!kb_inproc_ok(a, &code, &msg)) {
		fail(o->k, o->call, a ? grpc_code(code) : GRPC_STATUS_UNAVAILABLE, code, msg);
		op_free(o);
		return;
	}
	if (blob == NULL || version == NULL) {
		fail(o->k, o->call, GRPC_STATUS_INTERNAL, "internal", "the wrap gave no blob");
		op_free(o);
		return;
	}
	snprintf(o->version, sizeof(o->version), "%s", version);
	o->blob = strdup(blob);
	decoded = malloc(sizeof(*decoded));
	if (decoded && kb_blob_decode(blob, strlen(blob), decoded, &err) == KB_OK)
		snprintf(o->alg, sizeof(o->alg), "%s", kb_alg_name(decoded->alg));
	free(decoded);
	if (o->blob == NULL) {
		fail(o->k, o->call, GRPC_STATUS_INTERNAL, "internal", "out of memory");
		op_free(o);
		return;
	}
	/* a version not seen yet (a rotation since the last check): learn it first */
	if (!kb_health_fingerprint(o->k->f->health, o->k->key, o->version, fp) &&
	    kb_health_learn(o->k->f->health, o->k->key, encrypt_answer, o) == KB_OK)
		return;
	encrypt_answer(o);
}

static void do_encrypt(kms *k, kb_kms_call *c, kb_inproc *conn)
{
	const V2__EncryptRequest *rq = kb_kms_call_encrypt(c);
	op *o;
	kb_buf fl = { 0 };

	if (rq->plaintext.len == 0 || rq->plaintext.len > KB_SECRET_MAX) {
		fail(k, c, GRPC_STATUS_INVALID_ARGUMENT, "bad_request",
		     rq->plaintext.len ? "the plaintext is longer than 1024 bytes" : "the plaintext is empty");
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		fail(k, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		return;
	}
	o->k = k;
	o->call = c;
	kb_jw_raw(&fl, "\"op\":\"wrap\",\"key\":");
	kb_jw_str(&fl, k->key);
	kb_jw_raw(&fl, ",\"plaintext\":");
	kb_jw_b64(&fl, rq->plaintext.data, rq->plaintext.len);
	if (fl.oom || kb_inproc_request(conn, &fl, rq->uid, on_wrapped, o) != KB_OK) {
		fail(k, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		op_free(o);
	}
	kb_buf_free(&fl); /* wipes the plaintext */
}

static void on_unwrapped(void *ctx, const cJSON *a)
{
	op *o = ctx;
	V2__DecryptResponse r = V2__DECRYPT_RESPONSE__INIT;
	const char *code, *msg, *pt = kb_inproc_str(a, "plaintext");
	uint8_t dek[KB_SECRET_MAX];
	size_t n = 0;

	if (!kb_inproc_ok(a, &code, &msg)) {
		fail(o->k, o->call, a ? grpc_code(code) : GRPC_STATUS_UNAVAILABLE, code, msg);
	} else if (pt == NULL || !kb_b64_decode(pt, strlen(pt), dek, sizeof(dek), &n, KB_B64_STD)) {
		fail(o->k, o->call, GRPC_STATUS_INTERNAL, "internal", "the unwrap gave no plaintext");
	} else {
		r.plaintext.data = dek;
		r.plaintext.len = n;
		kb_kms_call_reply(o->call, GRPC_STATUS_OK, NULL, &r.base);
	}
	OPENSSL_cleanse(dek, sizeof(dek));
	op_free(o);
}

/*
 * check_decrypt checks what kube-apiserver stored beside the ciphertext: the
 * annotations, and that the key_id names the key and version inside the
 * ciphertext (and, when this broker has seen that version, its material).
 */
static kb_code check_decrypt(kms *k, const V2__DecryptRequest *rq, kb_blob *blob, kb_err *err)
{
	kb_kms_key_id id;
	char fp[KB_KMS_FP_LEN + 1];
	size_t total = 0;
	kb_code rc;

	if (rq->ciphertext.len == 0 || rq->ciphertext.len > KB_BLOB_MAX)
		return kb_err_set(err, KB_E_BAD_BLOB, "the ciphertext is empty or longer than %d bytes", KB_BLOB_MAX);
	for (size_t i = 0; i < rq->n_annotations; i++)
		if ((rc = kb_kms_annotation_check(rq->annotations[i]->key, strlen(rq->annotations[i]->key),
						  rq->annotations[i]->value.len, &total, err)) != KB_OK)
			return rc;
	if ((rc = kb_kms_key_id_parse(rq->key_id, strlen(rq->key_id), &id, err)) != KB_OK)
		return rc;
	if ((rc = kb_blob_decode((const char *)rq->ciphertext.data, rq->ciphertext.len, blob, err)) != KB_OK)
		return rc; /* bad_blob, saying what is wrong with it */
	if (strcmp(id.key, blob->key) != 0 || strcmp(id.version, blob->version) != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the key_id names key %s version %s, but the ciphertext was made by key %s version %s",
				  id.key, id.version, blob->key, blob->version);
	if (strcmp(id.key, k->key) == 0 && kb_health_fingerprint(k->f->health, id.key, id.version, fp) &&
	    strcmp(fp, id.fp) != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the key_id's fingerprint %s is not that of key %s version %s (%s): the key was made anew",
				  id.fp, id.key, id.version, fp);
	return KB_OK;
}

static void do_decrypt(kms *k, kb_kms_call *c, kb_inproc *conn)
{
	const V2__DecryptRequest *rq = kb_kms_call_decrypt(c);
	kb_blob *blob = malloc(sizeof(*blob));
	kb_buf fl = { 0 };
	op *o = NULL;
	kb_err err;

	if (blob == NULL || (o = calloc(1, sizeof(*o))) == NULL) {
		fail(k, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		goto out;
	}
	if (check_decrypt(k, rq, blob, &err) != KB_OK) {
		fail(k, c, grpc_code(kb_code_name(err.code)), kb_code_name(err.code), err.msg);
		free(o);
		goto out;
	}
	o->k = k;
	o->call = c;
	kb_jw_raw(&fl, "\"op\":\"unwrap\",\"blob\":");
	kb_jw_strn(&fl, (const char *)rq->ciphertext.data, rq->ciphertext.len);
	if (fl.oom || kb_inproc_request(conn, &fl, rq->uid, on_unwrapped, o) != KB_OK) {
		fail(k, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		op_free(o);
	}
out:
	kb_buf_free(&fl);
	free(blob);
}

static void handle(kms *k, kb_kms_call *c)
{
	kb_kms_method m = kb_kms_call_method(c);
	kb_inproc *conn;

	k->f->b->counters.kms_calls[m]++;
	if (m == KB_KMS_STATUS) {
		do_status(k, c);
		return;
	}
	if ((conn = conn_for(k, c)) == NULL) {
		fail(k, c, GRPC_STATUS_UNAVAILABLE, "internal", "the broker cannot serve this connection");
		return;
	}
	if (m == KB_KMS_ENCRYPT)
		do_encrypt(k, c, conn);
	else
		do_decrypt(k, c, conn);
}

/* post runs on the gRPC thread: the call waits in the inbox for the loop */
static void post(void *ctx, kb_kms_call *c)
{
	kms *k = ctx;
	uint64_t one = 1;
	bool stopping;

	pthread_mutex_lock(&k->mu);
	stopping = k->stopping;
	if (!stopping) {
		*kb_kms_call_next(c) = k->inbox;
		k->inbox = c;
	}
	pthread_mutex_unlock(&k->mu);
	if (stopping)
		kb_kms_call_reply(c, GRPC_STATUS_UNAVAILABLE, "the broker is shutting down", NULL);
	else if (write(k->efd, &one, sizeof(one)) < 0)
		kb_debug("eventfd: %s", strerror(errno)); /* it is already readable */
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

static void on_accept(void *ctx, int lfd, unsigned ready)
{
	kms *k = ctx;
	kb_broker *b = k->f->b;

	for (int i = 0; i < 64; i++) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		char why[256];
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0)
			return;
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
	char msg[sizeof(err->msg)];
	kb_code rc;

	k->f = f;
	k->lfd = k->efd = -1;
	pthread_mutex_init(&k->mu, NULL);
	snprintf(k->name, sizeof(k->name), "%s", kc->name);
	snprintf(k->key, sizeof(k->key), "%s", kc->key);
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
	if ((rc = kb_kms_grpc_start(f->b->cfg->max_request_bytes, post, k, &k->grpc, err)) != KB_OK)
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
	/* answers every call still waiting on the broker with UNAVAILABLE */
	while (f->clients) {
		client *cl = f->clients;
		f->clients = cl->next;
		kb_inproc_close(cl->conn);
		free(cl);
	}
	for (int i = 0; i < f->n; i++) {
		kms *k = &f->servers[i];
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
