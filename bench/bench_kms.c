/*
 * bench_kms.c: the KMS v2 driver (see bench_kms.h). Requests are packed
 * before the window (protobuf-c); a measured request is one unary call:
 * its metadata, message and half-close in one batch, and its answer, status
 * and trailers in the same batch, plucked from the client's own queue.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#include "bench_kms.h"
#include "kms_v2.pb-c.h"

#define POOL 64

struct bench_kms {
	bench_driver d;
	char target[160];
	bool decrypt;
	bool status;             /* kms-status: the floor of a call that the broker answers at once */
	size_t size;
	char key_id[1100];
	grpc_slice *reqs;        /* packed requests: Decrypt of each ciphertext, or one Encrypt */
	size_t nreqs;
	atomic_flag error_seen;
};

typedef struct kms_conn {
	bench_kms *k;
	grpc_channel *ch;
	grpc_completion_queue *cq;
	size_t at;
} kms_conn;

static grpc_slice method(bool decrypt, int status)
{
	return grpc_slice_from_static_string(status ? "/v2.KeyManagementService/Status"
					     : decrypt ? "/v2.KeyManagementService/Decrypt"
						       : "/v2.KeyManagementService/Encrypt");
}

/*
 * call makes one unary call of m with the packed request req; on success
 * *resp holds the answer (the caller unrefs it). Returns the gRPC status,
 * or GRPC_STATUS_UNAVAILABLE if the call could not be made; details gets
 * the status message.
 */
static grpc_status_code call(kms_conn *c, grpc_slice m, grpc_slice req, grpc_slice *resp, char *details,
			     size_t cap)
{
	grpc_metadata_array init_md, trail_md;
	grpc_byte_buffer *out = grpc_raw_byte_buffer_create(&req, 1), *in = NULL; /* takes its own ref */
	grpc_status_code status = GRPC_STATUS_UNAVAILABLE;
	grpc_slice st_details = grpc_empty_slice();
	grpc_op ops[6];
	grpc_call *gc;
	grpc_event ev;

	grpc_slice_unref(req);
	memset(ops, 0, sizeof(ops));
	grpc_metadata_array_init(&init_md);
	grpc_metadata_array_init(&trail_md);
	gc = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, m, NULL,
				      gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(3, GPR_TIMESPAN)),
				      NULL);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = out;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init_md;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &in;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &trail_md;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &st_details;
	if (gc != NULL && grpc_call_start_batch(gc, ops, 6, c, NULL) == GRPC_CALL_OK) {
		ev = grpc_completion_queue_pluck(c->cq, c, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		if (ev.type != GRPC_OP_COMPLETE || !ev.success)
			status = GRPC_STATUS_UNAVAILABLE;
	}
	if (details)
		snprintf(details, cap, "%.*s", (int)GRPC_SLICE_LENGTH(st_details),
			 (const char *)GRPC_SLICE_START_PTR(st_details));
	if (status == GRPC_STATUS_OK && in != NULL && resp != NULL) {
		grpc_byte_buffer_reader r;
		if (grpc_byte_buffer_reader_init(&r, in)) {
			*resp = grpc_byte_buffer_reader_readall(&r);
			grpc_byte_buffer_reader_destroy(&r);
		}
	}
	if (in)
		grpc_byte_buffer_destroy(in);
	grpc_byte_buffer_destroy(out);
	grpc_slice_unref(st_details);
	grpc_metadata_array_destroy(&init_md);
	grpc_metadata_array_destroy(&trail_md);
	if (gc)
		grpc_call_unref(gc);
	return status;
}

static grpc_slice pack(const ProtobufCMessage *m)
{
	grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(m));

	protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
	return s;
}

static int conn_open(bench_kms *k, kms_conn **out)
{
	kms_conn *c = calloc(1, sizeof(*c));
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();

	if (c == NULL)
		return -1;
	c->k = k;
	c->ch = grpc_channel_create(k->target, creds, NULL);
	c->cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_channel_credentials_release(creds);
	*out = c;
	return 0;
}

static void conn_close(void *conn)
{
	kms_conn *c = conn;

	grpc_channel_destroy(c->ch);
	grpc_completion_queue_shutdown(c->cq);
	while (grpc_completion_queue_pluck(c->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(c->cq);
	free(c);
}

static void note_error(bench_kms *k, grpc_status_code st, const char *details)
{
	if (atomic_flag_test_and_set(&k->error_seen))
		return;
	snprintf(k->d.first_code, sizeof(k->d.first_code), "grpc_%d", (int)st);
	snprintf(k->d.first_error, sizeof(k->d.first_error), "%s", details);
}

/*
 * prepare packs the requests: an Encrypt of a random seed, or, for
 * kms-decrypt, a Decrypt of each of POOL ciphertexts that Encrypt made,
 * each decrypted once so its DEK is in the cache.
 */
static int kms_prepare(void *arg, int clients, double seconds, uint64_t requests, char *err, size_t errlen)
{
	bench_kms *k = arg;
	uint8_t seed[1024];
	V2__EncryptRequest er = V2__ENCRYPT_REQUEST__INIT;
	kms_conn *c;
	char details[400];
	int rc = 0;

	if (conn_open(k, &c) != 0)
		return -1;
	k->nreqs = k->decrypt ? POOL : 1;
	if (k->status) {
		V2__StatusRequest sr = V2__STATUS_REQUEST__INIT;

		conn_close(c);
		k->reqs = calloc(1, sizeof(*k->reqs));
		if (k->reqs == NULL)
			return -1;
		k->reqs[0] = pack(&sr.base);
		return 0;
	}
	k->reqs = calloc(k->nreqs, sizeof(*k->reqs));
	for (size_t i = 0; k->reqs && i < k->nreqs && rc == 0; i++) {
		grpc_slice resp = grpc_empty_slice();
		V2__EncryptResponse *r;
		V2__DecryptRequest dr = V2__DECRYPT_REQUEST__INIT;
		V2__DecryptRequest__AnnotationsEntry *ann = NULL, **annp = NULL;

		if (getrandom(seed, k->size, 0) != (ssize_t)k->size) {
			rc = -1;
			break;
		}
		er.plaintext.data = seed;
		er.plaintext.len = k->size;
		er.uid = "keybroker-bench";
		if (!k->decrypt) {
			k->reqs[i] = pack(&er.base);
			break;
		}
		if (call(c, method(false, 0), pack(&er.base), &resp, details, sizeof(details)) != GRPC_STATUS_OK ||
		    (r = v2__encrypt_response__unpack(NULL, GRPC_SLICE_LENGTH(resp), GRPC_SLICE_START_PTR(resp))) == NULL) {
			snprintf(err, errlen, "Encrypt failed while preparing: %s", details);
			grpc_slice_unref(resp);
			rc = -1;
			break;
		}
		grpc_slice_unref(resp);
		/* what kube-apiserver stored beside the ciphertext goes back with it */
		ann = calloc(r->n_annotations + 1, sizeof(*ann));
		annp = calloc(r->n_annotations + 1, sizeof(*annp));
		for (size_t a = 0; ann && annp && a < r->n_annotations; a++) {
			v2__decrypt_request__annotations_entry__init(&ann[a]);
			ann[a].key = r->annotations[a]->key;
			ann[a].value = r->annotations[a]->value;
			annp[a] = &ann[a];
		}
		dr.ciphertext = r->ciphertext;
		dr.key_id = r->key_id;
		dr.uid = "keybroker-bench";
		dr.n_annotations = ann && annp ? r->n_annotations : 0;
		dr.annotations = annp;
		k->reqs[i] = pack(&dr.base);
		free(ann);
		free(annp);
		v2__encrypt_response__free_unpacked(r, NULL);
		resp = grpc_empty_slice();
		if (call(c, method(true, 0), grpc_slice_ref(k->reqs[i]), &resp, details, sizeof(details)) != GRPC_STATUS_OK) {
			snprintf(err, errlen, "Decrypt failed while preparing: %s", details);
			rc = -1;
		}
		grpc_slice_unref(resp);
	}
	explicit_bzero(seed, sizeof(seed));
	conn_close(c);
	if (k->reqs == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return rc;
}

static int kms_open(void *arg, int client, void **conn, char *err, size_t errlen)
{
	bench_kms *k = arg;
	kms_conn *c;

	if (conn_open(k, &c) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->at = (size_t)client * 7919 % k->nreqs;
	*conn = c;
	return 0;
}

static int kms_op(void *conn)
{
	kms_conn *c = conn;
	bench_kms *k = c->k;
	grpc_slice resp = grpc_empty_slice();
	char details[400];
	grpc_status_code st;

	st = call(c, method(k->decrypt, k->status), grpc_slice_ref(k->reqs[c->at]), &resp, details, sizeof(details));
	c->at = c->at + 1 == k->nreqs ? 0 : c->at + 1;
	grpc_slice_unref(resp);
	if (st != GRPC_STATUS_OK) {
		note_error(k, st, details);
		return BENCH_ERR;
	}
	return BENCH_OK;
}

bench_kms *bench_kms_new(const char *socket, const char *op, size_t size, char *err, size_t errlen)
{
	bench_kms *k = calloc(1, sizeof(*k));
	V2__StatusRequest sr = V2__STATUS_REQUEST__INIT;
	grpc_slice resp = grpc_empty_slice();
	V2__StatusResponse *r = NULL;
	char details[400] = "";
	kms_conn *c;

	if (k == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	grpc_init();
	atomic_flag_clear(&k->error_seen);
	snprintf(k->target, sizeof(k->target), "unix:%s", socket);
	k->decrypt = strcmp(op, "kms-decrypt") == 0;
	k->status = strcmp(op, "kms-status") == 0;
	k->size = size;
	if (conn_open(k, &c) != 0) {
		free(k);
		grpc_shutdown();
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (call(c, method(false, 1), pack(&sr.base), &resp, details, sizeof(details)) == GRPC_STATUS_OK)
		r = v2__status_response__unpack(NULL, GRPC_SLICE_LENGTH(resp), GRPC_SLICE_START_PTR(resp));
	grpc_slice_unref(resp);
	conn_close(c);
	if (r == NULL || strcmp(r->healthz, "ok") != 0) {
		snprintf(err, errlen, "the KMS socket %s: %s", socket,
			 r ? r->healthz : details[0] ? details : "no answer to Status");
		if (r)
			v2__status_response__free_unpacked(r, NULL);
		bench_kms_free(k);
		return NULL;
	}
	snprintf(k->key_id, sizeof(k->key_id), "%s", r->key_id);
	v2__status_response__free_unpacked(r, NULL);
	k->d = (bench_driver){ .arg = k, .prepare = kms_prepare, .open = kms_open, .op = kms_op,
			       .close = conn_close };
	return k;
}

bench_driver *bench_kms_driver(bench_kms *k)
{
	return &k->d;
}

const char *bench_kms_key_id(const bench_kms *k)
{
	return k->key_id;
}

void bench_kms_free(bench_kms *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; k->reqs && i < k->nreqs; i++)
		grpc_slice_unref(k->reqs[i]);
	free(k->reqs);
	free(k);
	grpc_shutdown();
}
