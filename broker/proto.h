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

#include "error.h"

#include "request.h"

/* kb_op_name returns the wire name of op. */
const char *kb_op_name(kb_op op);

/*
 * kb_proto_parse parses line[0..n) (no newline) into req. On failure req->id_json
 * still holds the id when one could be read, so the error can echo it.
 * Returns KB_OK, KB_E_BAD_REQUEST, KB_E_UNKNOWN_OP or KB_E_TOO_LARGE.
 */
kb_code kb_proto_parse(const char *line, size_t n, kb_request *req, kb_err *err);

/* kb_request_init makes *req an empty request for op: no id ("null"), no key, not a batch, no connection. */
void kb_request_init(kb_request *req, kb_op op);

/* kb_request_wipe zeroes the secret parts of req and frees a batch's blobs. */
void kb_request_wipe(kb_request *req);

#endif
