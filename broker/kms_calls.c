/*
 * kms_calls.c: Status, Encrypt and Decrypt, answered through the broker's
 * own request path (see kms_calls.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "jsonw.h"
#include "kms_calls.h"
#include "kms_keyid.h"
#include "dispatch.h"
#include "ticket.h"

#define ANN_FORMAT "format.keybroker.io"
#define ANN_ALG "alg.keybroker.io"
#define ANN_REQUEST_ID "request-id.keybroker.io"

/* one Encrypt or Decrypt between its request and its answer */
typedef struct op {
	const kb_kms_target *t;
	kb_kms_call *call;
	char version[KB_VERSION_MAX + 1];
	char alg[32];
	char request_id[sizeof(((kb_err *)0)->request_id)]; /* the key service's, "" if none */
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

static void fail(const kb_kms_target *t, kb_kms_call *c, grpc_status_code status, const char *code, const char *msg)
{
	char text[KB_ERR_MSG_MAX + 64];

	t->b->counters.kms_errors[kb_kms_call_method(c)]++;
	snprintf(text, sizeof(text), "%s: %s", code, msg);
	kb_kms_call_reply(c, status, text, NULL);
}

static void do_status(const kb_kms_target *t, kb_kms_call *c)
{
	V2__StatusResponse r = V2__STATUS_RESPONSE__INIT;
	const kb_health_state *st = kb_health_get(t->health, t->key);
	char key_id[KB_KMS_KEY_ID_MAX + 1] = "";

	kb_health_poke(t->health, t->key);
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
	V2__EncryptResponse__AnnotationsEntry a[3] = { V2__ENCRYPT_RESPONSE__ANNOTATIONS_ENTRY__INIT,
						       V2__ENCRYPT_RESPONSE__ANNOTATIONS_ENTRY__INIT,
						       V2__ENCRYPT_RESPONSE__ANNOTATIONS_ENTRY__INIT };
	V2__EncryptResponse__AnnotationsEntry *ap[3] = { &a[0], &a[1], &a[2] };
	kb_kms_key_id id = { 0 };
	char key_id[KB_KMS_KEY_ID_MAX + 1];

	snprintf(id.key, sizeof(id.key), "%s", o->t->key);
	snprintf(id.version, sizeof(id.version), "%s", o->version);
	if (!kb_health_fingerprint(o->t->health, o->t->key, o->version, id.fp)) {
		fail(o->t, o->call, GRPC_STATUS_UNAVAILABLE, "backend_unavailable",
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
	if (o->request_id[0]) {
		/* Azure's x-ms-client-request-id of the wrap: what Microsoft support asks for */
		a[2].key = ANN_REQUEST_ID;
		a[2].value.data = (uint8_t *)o->request_id;
		a[2].value.len = strlen(o->request_id);
		r.n_annotations = 3;
	}
	r.annotations = ap;
	kb_kms_call_reply(o->call, GRPC_STATUS_OK, NULL, &r.base);
	op_free(o);
}

/* answer_failed answers o's call with a's error (a NULL: the face stopped first) and says so */
static bool answer_failed(op *o, const kb_answer *a)
{
	if (a == NULL) {
		fail(o->t, o->call, GRPC_STATUS_UNAVAILABLE, "internal", "the broker is shutting down");
		return true;
	}
	if (a->code == KB_OK)
		return false;
	fail(o->t, o->call, grpc_code(kb_code_name(a->code)), kb_code_name(a->code), a->err->msg);
	return true;
}

static void on_wrapped(void *ctx, const kb_answer *a)
{
	op *o = ctx;
	char fp[KB_KMS_FP_LEN + 1];
	kb_blob *decoded;
	kb_err err;

	if (answer_failed(o, a)) {
		op_free(o);
		return;
	}
	if (a->blob == NULL || a->version == NULL) {
		fail(o->t, o->call, GRPC_STATUS_INTERNAL, "internal", "the wrap gave no blob");
		op_free(o);
		return;
	}
	snprintf(o->version, sizeof(o->version), "%s", a->version);
	snprintf(o->request_id, sizeof(o->request_id), "%s", a->request_id ? a->request_id : "");
	o->blob = strdup(a->blob);
	decoded = malloc(sizeof(*decoded));
	if (decoded && kb_blob_decode(a->blob, strlen(a->blob), decoded, &err) == KB_OK)
		snprintf(o->alg, sizeof(o->alg), "%s", kb_alg_name(decoded->alg));
	free(decoded);
	if (o->blob == NULL) {
		fail(o->t, o->call, GRPC_STATUS_INTERNAL, "internal", "out of memory");
		op_free(o);
		return;
	}
	/* a version not seen yet (a rotation since the last check): learn it first */
	if (!kb_health_fingerprint(o->t->health, o->t->key, o->version, fp) &&
	    kb_health_learn(o->t->health, o->t->key, encrypt_answer, o) == KB_OK)
		return;
	encrypt_answer(o);
}

/*
 * submit makes rq (for o's call) a request of conn, its id the call's uid
 * (the audit log's "request": kube-apiserver's own request id).
 */
static void submit(const kb_kms_target *t, op *o, kb_request *rq, const char *uid, kb_conn *conn,
		   void (*fn)(void *ctx, const kb_answer *a))
{
	kb_buf id = { 0 };
	kb_reply r;

	kb_jw_strn(&id, uid, strnlen(uid, 100));
	if (!id.oom && id.len < sizeof(rq->id_json)) {
		memcpy(rq->id_json, id.data, id.len);
		rq->id_json[id.len] = '\0';
	}
	kb_buf_free(&id);
	if (!kb_ticket_new(t->tickets, fn, o, &r)) {
		fail(t, o->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		op_free(o);
		return;
	}
	rq->conn = conn;
	kb_core_submit(t->b, rq, r);
}

static void do_encrypt(const kb_kms_target *t, kb_kms_call *c, kb_conn *conn)
{
	const V2__EncryptRequest *rq = kb_kms_call_encrypt(c);
	kb_request req;
	op *o;

	if (rq->plaintext.len == 0 || rq->plaintext.len > KB_SECRET_MAX) {
		fail(t, c, GRPC_STATUS_INVALID_ARGUMENT, "bad_request",
		     rq->plaintext.len ? "the plaintext is longer than 1024 bytes" : "the plaintext is empty");
		return;
	}
	if ((o = calloc(1, sizeof(*o))) == NULL) {
		fail(t, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		return;
	}
	o->t = t;
	o->call = c;
	kb_request_init(&req, KB_OP_WRAP);
	snprintf(req.key, sizeof(req.key), "%s", t->key);
	memcpy(req.plaintext, rq->plaintext.data, rq->plaintext.len);
	req.ptlen = rq->plaintext.len;
	req.has_plaintext = 1;
	submit(t, o, &req, rq->uid, conn, on_wrapped);
	kb_request_wipe(&req);
}

static void on_unwrapped(void *ctx, const kb_answer *a)
{
	op *o = ctx;
	V2__DecryptResponse r = V2__DECRYPT_RESPONSE__INIT;

	if (answer_failed(o, a)) {
		op_free(o);
		return;
	}
	if (a->plaintext == NULL) {
		fail(o->t, o->call, GRPC_STATUS_INTERNAL, "internal", "the unwrap gave no plaintext");
	} else {
		/* packed into gRPC's buffer at once, and wiped there once sent (kms_grpc.c) */
		r.plaintext.data = (uint8_t *)a->plaintext;
		r.plaintext.len = a->ptlen;
		kb_kms_call_reply(o->call, GRPC_STATUS_OK, NULL, &r.base);
	}
	op_free(o);
}

/*
 * check_decrypt checks what kube-apiserver stored beside the ciphertext: the
 * annotations, and that the key_id names the key and version inside the
 * ciphertext (and, when this broker has seen that version, its material).
 */
static kb_code check_decrypt(const kb_kms_target *t, const V2__DecryptRequest *rq, kb_blob *blob, kb_err *err)
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
	if (strcmp(id.key, t->key) == 0 && kb_health_fingerprint(t->health, id.key, id.version, fp) &&
	    strcmp(fp, id.fp) != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the key_id's fingerprint %s is not that of key %s version %s (%s): the key was made anew",
				  id.fp, id.key, id.version, fp);
	return KB_OK;
}

static void do_decrypt(const kb_kms_target *t, kb_kms_call *c, kb_conn *conn)
{
	const V2__DecryptRequest *rq = kb_kms_call_decrypt(c);
	kb_blob *blob = malloc(sizeof(*blob));
	kb_request req;
	op *o = NULL;
	kb_err err;

	if (blob == NULL || (o = calloc(1, sizeof(*o))) == NULL) {
		fail(t, c, GRPC_STATUS_RESOURCE_EXHAUSTED, "internal", "out of memory");
		free(blob);
		return;
	}
	if (check_decrypt(t, rq, blob, &err) != KB_OK) {
		fail(t, c, grpc_code(kb_code_name(err.code)), kb_code_name(err.code), err.msg);
		free(o);
		free(blob);
		return;
	}
	free(blob);
	o->t = t;
	o->call = c;
	kb_request_init(&req, KB_OP_UNWRAP);
	memcpy(req.blob, rq->ciphertext.data, rq->ciphertext.len); /* check_decrypt bounds it */
	req.blob[rq->ciphertext.len] = '\0';
	req.bloblen = rq->ciphertext.len;
	submit(t, o, &req, rq->uid, conn, on_unwrapped);
}

void kb_kms_answer(const kb_kms_target *t, kb_kms_call *c, kb_conn *conn)
{
	kb_kms_method m = kb_kms_call_method(c);

	t->b->counters.kms_calls[m]++;
	if (m == KB_KMS_STATUS)
		do_status(t, c);
	else if (conn == NULL)
		fail(t, c, GRPC_STATUS_UNAVAILABLE, "internal", "the broker cannot serve this connection");
	else if (m == KB_KMS_ENCRYPT)
		do_encrypt(t, c, conn);
	else
		do_decrypt(t, c, conn);
}
