/*
 * request.h: the one request value every face hands the core, and the one
 * answer value the core hands back.
 *
 * A face (the NDJSON socket, the KMS v2 gRPC face, the health checks, and
 * next the EKM and XKS faces) turns its wire format into a kb_request,
 * names the connection object it came on (req->conn: the peer's uid, gid,
 * pid, executable and face name, and its share of the limits), and submits
 * it with kb_core_submit (dispatch.h) on the loop thread. The answer comes
 * back as a kb_answer through the kb_reply the face gave, exactly once,
 * on the loop thread: at once (a hit, a refusal) or later (a job). Every
 * pointer in a kb_answer lives only during the callback; a plaintext in it
 * is wiped by its owner after the callback returns, so a face that copies
 * it wipes its copy. No face writes another face's wire format to reach the
 * core.
 */
#ifndef KB_REQUEST_H
#define KB_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "blob.h"
#include "buf.h"
#include "error.h"

#define KB_ID_JSON_MAX 136  /* rendered id: a 128-byte string, quoted and escaped, fits */

typedef enum kb_op {
	KB_OP_NONE = 0,
	KB_OP_STATUS,
	KB_OP_GET,
	KB_OP_WRAP,
	KB_OP_UNWRAP,
	KB_OP_DATAKEY,
	KB_OP_REWRAP,
	KB_OP_ROTATE,
	KB_OP_FLUSH,
	KB_OP_METRICS,
	KB_OP_DOCTOR,
	KB_OP_COUNT
} kb_op;

struct kb_conn;
struct kb_broker;

typedef struct kb_request {
	kb_op op;
	/*
	 * The request's id as JSON ("null" when it has none): the NDJSON face's
	 * "id", or a face's own request id (KMS: the call's uid), which the audit
	 * log records for a face's connection.
	 */
	char id_json[KB_ID_JSON_MAX];
	char key[KB_KEY_NAME_MAX + 1];/* "" when absent */
	kb_alg alg;                   /* KB_ALG_NONE when absent */
	int bits;                     /* datakey; 0 when absent */
	int64_t bytes;                /* datakey: bytes the caller will protect */
	char blob[KB_BLOB_MAX + 1];   /* unwrap, rewrap */
	size_t bloblen;
	/* a batch: "blobs" instead of "blob" (malloc'd; kb_request_wipe frees them) */
	int nblobs;                   /* -1: not a batch */
	char **blobs;                 /* each a copy, or NULL when that item is not a blob */
	uint8_t plaintext[KB_SECRET_MAX];
	size_t ptlen;
	int has_plaintext;
	/* the connection object it came on (the face's; never a descriptor number) */
	struct kb_conn *conn;
} kb_request;

/*
 * The answer to one request, or to one item of a batch. Fields a given op
 * does not produce are NULL, -1 or 0 as noted.
 */
typedef struct kb_answer {
	kb_op op;
	kb_code code;                 /* KB_OK, or the error's code */
	const kb_err *err;            /* the error when code != KB_OK, else NULL */
	int item;                     /* the blob's index in a batch; -1 for a whole request */
	const char *id_json;          /* the request's id_json */
	const char *key;              /* the key that answered, or NULL */
	const char *version;          /* or NULL */
	const char *blob;             /* a wrap, datakey or rewrap's new blob, or NULL */
	const char *request_id;       /* the key service's request id, or NULL */
	const uint8_t *plaintext;     /* unwrap, datakey; NULL otherwise */
	size_t ptlen;
	int cache;                    /* unwrap: 0 miss, 1 hit, 2 stale; -1 otherwise */
	int reused;                   /* datakey: 0 or 1; -1 otherwise */
	int64_t flushed;              /* flush: entries dropped; -1 otherwise */
	const char *backend;          /* get: the backend's name */
	const kb_key_info *info;      /* get: what the key service says of the key */
	const kb_buf *checks;         /* doctor: the rendered checks (JSON objects, comma-separated) */
	const char *result;           /* doctor: "pass", "warn" or "fail" */
	struct kb_broker *report;     /* status, metrics: the broker to report on */
} kb_answer;

/* Where an answer goes: fn(ctx, answer), on the loop thread, once per request (and per batch item). */
typedef struct kb_reply {
	void (*fn)(void *ctx, const kb_answer *a);
	void *ctx;
} kb_reply;

#endif
