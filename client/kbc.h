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

/* kbc_error records code and a printf-style message in err (may be NULL) and returns code. */
kb_code kbc_error(kb_error *err, kb_code code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* kbc_json_delete zeroes every string in j (plaintexts travel as strings), then frees it. */
void kbc_json_delete(cJSON *j);

#endif
