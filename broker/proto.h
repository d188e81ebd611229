/*
 * proto.h: parses one request line of protocol v1 (docs/protocol.md).
 *
 * The parser checks shape and types only; what a key name or blob means is
 * the dispatcher's business. It never keeps a pointer into the line, and it
 * wipes the base64 plaintext it decoded when the request is released.
 */
#ifndef KB_PROTO_H
#define KB_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "blob.h"
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

typedef struct kb_request {
	kb_op op;
	char id_json[KB_ID_JSON_MAX]; /* "null" when the request has no id */
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
} kb_request;

/* kb_op_name returns the wire name of op. */
const char *kb_op_name(kb_op op);

/*
 * kb_proto_parse parses line[0..n) (no newline) into req. On failure req->id_json
 * still holds the id when one could be read, so the error can echo it.
 * Returns KB_OK, KB_E_BAD_REQUEST, KB_E_UNKNOWN_OP or KB_E_TOO_LARGE.
 */
kb_code kb_proto_parse(const char *line, size_t n, kb_request *req, kb_err *err);

/* kb_request_wipe zeroes the secret parts of req and frees a batch's blobs. */
void kb_request_wipe(kb_request *req);

#endif
