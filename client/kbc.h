/*
 * kbc.h: what the two halves of libkeybroker share. conn.c owns the
 * connection, the framing and the matching of responses to requests; ops.c
 * turns each operation into a request and its response into a kb_result.
 * Not installed.
 */
#ifndef KB_KBC_H
#define KB_KBC_H

#include <cjson/cJSON.h>

#include "keybroker.h"

/*
 * kbc_roundtrip sets the "id" of req to the next id of c, sends it, and reads
 * lines until the response with that id. Returns KB_OK with *resp (the parsed
 * response, for kbc_json_delete) if it says "ok":true; else a broker code
 * with err filled, or KB_E_IO / KB_E_PROTOCOL, and *resp NULL. The raw line
 * stays readable through kb_client_last_response().
 */
kb_code kbc_roundtrip(kb_client *c, cJSON *req, cJSON **resp, kb_error *err);

/*
 * Batches (kb_unwrap_many, kb_rewrap_many) are split into requests within
 * limits that each kb_client keeps: at first the broker's default max_batch
 * and max_request_bytes, halved on each too_large answer to a request of
 * more than one blob, so a broker configured lower is learnt once per
 * connection. The protocol does not announce the limits.
 */
#define KBC_BATCH_ITEMS 1024
#define KBC_BATCH_BYTES 65536

/* kbc_batch_limits sets the blobs and the request line bytes (newline excluded) one request of c may carry. */
void kbc_batch_limits(const kb_client *c, size_t *items, size_t *bytes);

/*
 * kbc_batch_refused lowers c's limits after a batch of items blobs was
 * refused too_large: the byte limit when the broker refused the line itself
 * (the answer had no id), else the number of blobs.
 */
void kbc_batch_refused(kb_client *c, size_t items);

/* kbc_error records code and a printf-style message in err (may be NULL) and returns code. */
kb_code kbc_error(kb_error *err, kb_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* kbc_json_delete zeroes every string in j (plaintexts travel as strings), then frees it. */
void kbc_json_delete(cJSON *j);

#endif
