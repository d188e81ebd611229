/*
 * fuzz_proto: any line is a request or an error, never a crash; and the id it
 * echoes is always valid JSON, so the error response itself is readable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "buf.h"
#include "jsonw.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kb_request req;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kb_err err = { 0 };
	kb_buf b = { 0 };
	kb_code rc = kb_proto_parse((const char *)data, size, &req, &err);
	cJSON *j;

	if (rc != KB_OK && rc != KB_E_BAD_REQUEST && rc != KB_E_UNKNOWN_OP && rc != KB_E_TOO_LARGE &&
	    rc != KB_E_UNKNOWN_KEY && rc != KB_E_BAD_BLOB && rc != KB_E_MECHANISM_UNSUPPORTED)
		abort();
	if (rc == KB_OK && (req.op <= KB_OP_NONE || req.op >= KB_OP_COUNT))
		abort();
	if (rc == KB_OK && req.has_plaintext && (req.ptlen == 0 || req.ptlen > KB_SECRET_MAX))
		abort();
	if (rc != KB_OK)
		kb_jw_error(&b, req.id_json, &err);
	else {
		kb_jw_begin(&b, req.id_json);
		kb_jw_end(&b);
	}
	kb_buf_append(&b, "", 1);
	if (b.oom)
		abort();
	j = cJSON_Parse(b.data);
	if (j == NULL)
		abort(); /* the response we would send is not JSON */
	cJSON_Delete(j);
	kb_buf_free(&b);
	kb_request_wipe(&req);
	return 0;
}
