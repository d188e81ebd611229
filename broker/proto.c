#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "b64.h"
#include "buf.h"
#include "json.h"
#include "jsonw.h"
#include "proto.h"

static const char *const op_names[KB_OP_COUNT] = {
	[KB_OP_NONE] = "",
	[KB_OP_STATUS] = "status",
	[KB_OP_GET] = "get",
	[KB_OP_WRAP] = "wrap",
	[KB_OP_UNWRAP] = "unwrap",
	[KB_OP_DATAKEY] = "datakey",
	[KB_OP_REWRAP] = "rewrap",
	[KB_OP_ROTATE] = "rotate",
	[KB_OP_FLUSH] = "flush",
	[KB_OP_METRICS] = "metrics",
	[KB_OP_DOCTOR] = "doctor",
};

const char *kb_op_name(kb_op op)
{
	return (unsigned)op < KB_OP_COUNT ? op_names[op] : "";
}

/* render_id writes the id as JSON into req->id_json, or fails if unsuitable. */
static kb_code render_id(const cJSON *id, kb_request *req, kb_err *err)
{
	kb_buf b = { 0 };
	kb_code rc = KB_OK;

	if (id == NULL || cJSON_IsNull(id))
		return KB_OK;
	if (cJSON_IsNumber(id)) {
		double d = id->valuedouble;
		if (!isfinite(d))
			return kb_err_set(err, KB_E_BAD_REQUEST, "id must be a finite number or a string");
		if (fabs(d) < 9007199254740992.0 && d == (double)(long long)d)
			snprintf(req->id_json, sizeof(req->id_json), "%lld", (long long)d);
		else
			snprintf(req->id_json, sizeof(req->id_json), "%.17g", d);
		return KB_OK;
	}
	if (!cJSON_IsString(id))
		return kb_err_set(err, KB_E_BAD_REQUEST, "id must be a string or a number");
	if (strlen(id->valuestring) > 128)
		return kb_err_set(err, KB_E_TOO_LARGE, "id is longer than 128 bytes");
	/* quote and escape it once; 128 bytes escape to at most 770, so bound it */
	kb_jw_str(&b, id->valuestring);
	if (b.oom)
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
	else if (b.len >= sizeof(req->id_json))
		rc = kb_err_set(err, KB_E_BAD_REQUEST, "id holds too many characters that need escaping");
	else {
		memcpy(req->id_json, b.data, b.len);
		req->id_json[b.len] = '\0';
	}
	kb_buf_free(&b);
	return rc;
}

static kb_code get_string(const cJSON *root, const char *name, int required, const char **out,
			  kb_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);

	*out = NULL;
	if (v == NULL || cJSON_IsNull(v)) {
		if (required)
			return kb_err_set(err, KB_E_BAD_REQUEST, "field \"%s\" is missing", name);
		return KB_OK;
	}
	if (!cJSON_IsString(v))
		return kb_err_set(err, KB_E_BAD_REQUEST, "field \"%s\" must be a string", name);
	*out = v->valuestring;
	return KB_OK;
}

static kb_code get_int(const cJSON *root, const char *name, int64_t lo, int64_t hi, int64_t *out,
		       kb_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
	double d;

	if (v == NULL || cJSON_IsNull(v))
		return KB_OK;
	if (!cJSON_IsNumber(v))
		return kb_err_set(err, KB_E_BAD_REQUEST, "field \"%s\" must be a number", name);
	d = v->valuedouble;
	if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d)
		return kb_err_set(err, KB_E_BAD_REQUEST, "field \"%s\" must be an integer from %lld to %lld",
				  name, (long long)lo, (long long)hi);
	*out = (int64_t)d;
	return KB_OK;
}

static kb_code parse_key(const cJSON *root, int required, kb_request *req, kb_err *err)
{
	const char *s;
	kb_code rc = get_string(root, "key", required, &s, err);

	if (rc != KB_OK || s == NULL)
		return rc;
	if (!kb_name_valid(s, strlen(s)))
		return kb_err_set(err, KB_E_UNKNOWN_KEY,
				  "no key is named like that: key names are 1 to 64 characters from A-Z a-z 0-9 - _");
	strcpy(req->key, s);
	return KB_OK;
}

static kb_code parse_blob(const cJSON *root, kb_request *req, kb_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "blob");
	char *raw = NULL;
	const char *s;
	size_t n;

	if (v == NULL || cJSON_IsNull(v))
		return kb_err_set(err, KB_E_BAD_REQUEST, "field \"blob\" is missing");
	if (cJSON_IsObject(v)) {
		/* Azure's raw {kid, alg, value} given as an object: keep its text */
		raw = cJSON_PrintUnformatted(v);
		if (raw == NULL)
			return kb_err_set(err, KB_E_INTERNAL, "out of memory");
		s = raw;
	} else if (cJSON_IsString(v)) {
		s = v->valuestring;
	} else {
		return kb_err_set(err, KB_E_BAD_REQUEST, "field \"blob\" must be a string");
	}
	n = strlen(s);
	if (n > KB_BLOB_MAX) {
		free(raw);
		return kb_err_set(err, KB_E_BAD_BLOB, "blob is longer than %d bytes", KB_BLOB_MAX);
	}
	memcpy(req->blob, s, n + 1);
	req->bloblen = n;
	free(raw);
	return KB_OK;
}

/* blob_text copies one blob (a string, or Azure's raw form as an object) into a malloc'd string. */
static char *blob_text(const cJSON *v)
{
	if (cJSON_IsObject(v))
		return cJSON_PrintUnformatted(v);
	if (cJSON_IsString(v) && strlen(v->valuestring) <= KB_BLOB_MAX)
		return strdup(v->valuestring);
	return NULL;
}

/*
 * parse_blobs reads a batch: "blobs" is an array of blobs. An item that is
 * not a blob is left NULL, to fail on its own; the request stands.
 */
static kb_code parse_blobs(const cJSON *arr, kb_request *req, kb_err *err)
{
	int n = cJSON_GetArraySize(arr), i = 0;
	const cJSON *v;

	req->blobs = calloc((size_t)(n ? n : 1), sizeof(*req->blobs));
	if (req->blobs == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	req->nblobs = n;
	cJSON_ArrayForEach(v, arr)
		req->blobs[i++] = blob_text(v);
	return KB_OK;
}

static kb_code parse_blob_or_blobs(const cJSON *root, kb_request *req, kb_err *err)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "blobs");

	if (arr == NULL)
		return parse_blob(root, req, err);
	if (cJSON_GetObjectItemCaseSensitive(root, "blob"))
		return kb_err_set(err, KB_E_BAD_REQUEST, "give \"blob\" or \"blobs\", not both");
	if (!cJSON_IsArray(arr))
		return kb_err_set(err, KB_E_BAD_REQUEST, "field \"blobs\" must be an array of blobs");
	return parse_blobs(arr, req, err);
}

static kb_code parse_plaintext(const cJSON *root, kb_request *req, kb_err *err)
{
	const char *s;
	kb_code rc = get_string(root, "plaintext", 1, &s, err);
	size_t n;

	if (rc != KB_OK)
		return rc;
	n = strlen(s);
	if (n == 0)
		return kb_err_set(err, KB_E_BAD_REQUEST, "plaintext is empty: there is nothing to wrap");
	if (n > kb_b64_encoded_len(KB_SECRET_MAX, KB_B64_STD))
		return kb_err_set(err, KB_E_TOO_LARGE, "plaintext is longer than %d bytes", KB_SECRET_MAX);
	/* room for two bytes more than the limit, whose base64 is as long as the limit's */
	uint8_t tmp[KB_SECRET_MAX + 2];
	size_t len;
	kb_code rc2 = KB_OK;

	if (!kb_b64_decode(s, n, tmp, sizeof(tmp), &len, KB_B64_STD))
		rc2 = kb_err_set(err, KB_E_BAD_REQUEST, "plaintext is not valid standard base64");
	else if (len > KB_SECRET_MAX)
		rc2 = kb_err_set(err, KB_E_TOO_LARGE, "plaintext is longer than %d bytes", KB_SECRET_MAX);
	else {
		memcpy(req->plaintext, tmp, len);
		req->ptlen = len;
		req->has_plaintext = 1;
	}
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return rc2;
}

static kb_code parse_alg(const cJSON *root, kb_request *req, kb_err *err)
{
	const char *s;
	kb_code rc = get_string(root, "alg", 0, &s, err);

	if (rc != KB_OK || s == NULL)
		return rc;
	req->alg = kb_alg_parse(s);
	if (req->alg == KB_ALG_NONE)
		return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
				  "alg \"%.40s\" is not one of RSA-OAEP, RSA-OAEP-256, RSA1_5, AES-KWP, A128KW, A192KW, A256KW", s);
	return KB_OK;
}

static kb_code parse_fields(const cJSON *root, kb_request *req, kb_err *err)
{
	int64_t v = 0;
	kb_code rc;

	switch (req->op) {
	case KB_OP_STATUS:
	case KB_OP_METRICS:
		return KB_OK;
	case KB_OP_GET:
	case KB_OP_ROTATE:
	case KB_OP_DOCTOR:
		return parse_key(root, 1, req, err);
	case KB_OP_FLUSH:
		return parse_key(root, 0, req, err);
	case KB_OP_WRAP:
		if ((rc = parse_key(root, 1, req, err)) != KB_OK || (rc = parse_alg(root, req, err)) != KB_OK)
			return rc;
		return parse_plaintext(root, req, err);
	case KB_OP_UNWRAP:
		return parse_blob_or_blobs(root, req, err);
	case KB_OP_REWRAP:
		if ((rc = parse_blob_or_blobs(root, req, err)) != KB_OK)
			return rc;
		return parse_key(root, 0, req, err);
	case KB_OP_DATAKEY:
		if ((rc = parse_key(root, 1, req, err)) != KB_OK)
			return rc;
		v = 256;
		if ((rc = get_int(root, "bits", 8, KB_SECRET_MAX * 8, &v, err)) != KB_OK)
			return rc;
		if (v % 8)
			return kb_err_set(err, KB_E_BAD_REQUEST, "bits must be a multiple of 8");
		req->bits = (int)v;
		v = 0;
		if ((rc = get_int(root, "bytes", 0, INT64_C(1) << 53, &v, err)) != KB_OK)
			return rc;
		req->bytes = v;
		return KB_OK;
	default:
		return kb_err_set(err, KB_E_INTERNAL, "no parser for op");
	}
}

kb_code kb_proto_parse(const char *line, size_t n, kb_request *req, kb_err *err)
{
	cJSON *root;
	const cJSON *op;
	kb_code rc;

	req->op = KB_OP_NONE;
	strcpy(req->id_json, "null");
	req->key[0] = '\0';
	req->alg = KB_ALG_NONE;
	req->bits = 0;
	req->bytes = 0;
	req->bloblen = 0;
	req->blob[0] = '\0';
	req->ptlen = 0;
	req->has_plaintext = 0;
	req->nblobs = -1;
	req->blobs = NULL;

	root = kb_json_parse_whole(line, n);
	if (root == NULL && kb_json_out_of_memory())
		return kb_err_set(err, KB_E_INTERNAL, "out of memory reading the request: try again");
	if (root == NULL)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the request is not valid JSON: send one JSON object per line");
	if (!cJSON_IsObject(root)) {
		rc = kb_err_set(err, KB_E_BAD_REQUEST, "the request must be a JSON object");
		goto out;
	}
	if ((rc = render_id(cJSON_GetObjectItemCaseSensitive(root, "id"), req, err)) != KB_OK)
		goto out;
	op = cJSON_GetObjectItemCaseSensitive(root, "op");
	if (!cJSON_IsString(op)) {
		rc = kb_err_set(err, KB_E_BAD_REQUEST, "field \"op\" is missing or not a string");
		goto out;
	}
	for (int i = 1; i < KB_OP_COUNT; i++)
		if (!strcmp(op->valuestring, op_names[i]))
			req->op = (kb_op)i;
	if (req->op == KB_OP_NONE) {
		rc = kb_err_set(err, KB_E_UNKNOWN_OP,
				"op \"%.40s\" is unknown: use status, get, wrap, unwrap, datakey, rewrap, rotate, flush, metrics or doctor",
				op->valuestring);
		goto out;
	}
	rc = parse_fields(root, req, err);
out:
	cJSON_Delete(root);
	return rc;
}

void kb_request_wipe(kb_request *req)
{
	OPENSSL_cleanse(req->plaintext, sizeof(req->plaintext));
	req->ptlen = 0;
	for (int i = 0; req->blobs && i < req->nblobs; i++)
		free(req->blobs[i]);
	free(req->blobs);
	req->blobs = NULL;
	req->nblobs = -1;
}
