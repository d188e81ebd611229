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

/*
 * The flat fast path. Nearly every request on the hit path is one flat
 * object of the members "id", "op" and "blob": strings without escapes and
 * an integer or null id, which is what libkeybroker and the bench send. Such
 * a line is read in one pass, without building a tree or allocating. Every
 * other line (escapes, other members, a repeated member, a batch, anything
 * wrong) goes to cJSON, so what the protocol accepts and every error it
 * answers are still decided in one place: this path only ever takes lines
 * cJSON would read to the same request.
 */
typedef struct flat_span {
	const char *p;
	size_t n;
	bool set;
} flat_span;

static bool flat_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* flat_plain tells whether s[0..n) holds no backslash and no control byte, 8 bytes at a time. */
static bool flat_plain(const char *s, size_t n)
{
	const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
	uint64_t bad = 0, x;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&x, s + i, 8);
		/* a byte below 0x20, or one equal to '\\' (the classic has-zero-byte test) */
		bad |= (x - ones * 0x20) & ~x & highs;
		x ^= ones * '\\';
		bad |= (x - ones) & ~x & highs;
	}
	for (; i < n; i++)
		bad |= ((unsigned char)s[i] < 0x20) | (s[i] == '\\');
	return bad == 0;
}

/* flat_string reads a string without escapes or control bytes at p; returns what follows it, or NULL. */
static const char *flat_string(const char *p, const char *end, flat_span *out)
{
	const char *q;

	if (p >= end || *p != '"' || (q = memchr(p + 1, '"', (size_t)(end - p - 1))) == NULL)
		return NULL;
	if (!flat_plain(p + 1, (size_t)(q - p - 1)))
		return NULL;
	*out = (flat_span){ p + 1, (size_t)(q - p - 1), true };
	return q + 1;
}

/* flat_id renders an id given as null, a short integer or a plain string; returns what follows it, or NULL. */
static const char *flat_id(const char *p, const char *end, char out[KB_ID_JSON_MAX])
{
	flat_span s;
	const char *q = p;
	char digits[20];
	int nd = 0;
	bool neg = false;
	long long v = 0;

	if (end - p >= 4 && memcmp(p, "null", 4) == 0) {
		memcpy(out, "null", 5);
		return p + 4;
	}
	if (p < end && *p == '"') {
		if ((q = flat_string(p, end, &s)) == NULL || s.n > 128)
			return NULL;
		out[0] = '"';
		memcpy(out + 1, s.p, s.n);
		out[s.n + 1] = '"';
		out[s.n + 2] = '\0';
		return q;
	}
	if (q < end && *q == '-') {
		neg = true;
		q++;
	}
	/* at most 15 digits, no leading zero: exact as a double, printed as cJSON's path prints it */
	for (; q < end && *q >= '0' && *q <= '9'; q++) {
		if (nd == 15 || (nd == 1 && v == 0))
			return NULL;
		v = v * 10 + (*q - '0');
		nd++;
	}
	if (nd == 0 || (q < end && !flat_ws(*q) && *q != ',' && *q != '}'))
		return NULL;
	if (neg && v != 0)
		*out++ = '-';
	nd = 0;
	do {
		digits[nd++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (nd)
		*out++ = digits[--nd];
	*out = '\0';
	return q;
}

/* parse_flat fills req from a flat line and returns true, or returns false for cJSON to read it. */
static bool parse_flat(const char *p, size_t n, kb_request *req)
{
	const char *end = p + n;
	flat_span name, op = { 0 }, blob = { 0 };
	bool has_id = false;
	char id[KB_ID_JSON_MAX];

	while (p < end && flat_ws(*p))
		p++;
	if (p >= end || *p++ != '{')
		return false;
	for (;;) {
		while (p < end && flat_ws(*p))
			p++;
		if ((p = flat_string(p, end, &name)) == NULL)
			return false;
		while (p < end && flat_ws(*p))
			p++;
		if (p >= end || *p++ != ':')
			return false;
		while (p < end && flat_ws(*p))
			p++;
		if (name.n == 2 && memcmp(name.p, "id", 2) == 0 && !has_id) {
			p = flat_id(p, end, id);
			has_id = true;
		} else if (name.n == 2 && memcmp(name.p, "op", 2) == 0 && !op.set) {
			p = flat_string(p, end, &op);
		} else if (name.n == 4 && memcmp(name.p, "blob", 4) == 0 && !blob.set) {
			p = flat_string(p, end, &blob);
		} else {
			return false;
		}
		if (p == NULL)
			return false;
		while (p < end && flat_ws(*p))
			p++;
		if (p >= end)
			return false;
		if (*p == '}')
			break;
		if (*p++ != ',')
			return false;
	}
	for (p++; p < end; p++)
		if (!flat_ws(*p))
			return false;
	if (op.set && op.n == 6 && memcmp(op.p, "unwrap", 6) == 0) {
		if (!blob.set || blob.n > KB_BLOB_MAX)
			return false;
		req->op = KB_OP_UNWRAP;
		memcpy(req->blob, blob.p, blob.n);
		req->blob[blob.n] = '\0';
		req->bloblen = blob.n;
	} else if (op.set && op.n == 6 && memcmp(op.p, "status", 6) == 0 && !blob.set) {
		req->op = KB_OP_STATUS;
	} else {
		return false;
	}
	if (has_id)
		memcpy(req->id_json, id, strlen(id) + 1);
	return true;
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

	if (parse_flat(line, n, req))
		return KB_OK;
	root = kb_json_parse_whole(line, n);
	if (root == NULL && kb_json_out_of_memory())
		return kb_err_set(err, KB_E_INTERNAL, "out of memory reading the request: try again");
	if (root == NULL && kb_json_duplicate())
		return kb_err_set(err, KB_E_BAD_REQUEST, "the request gives the field \"%s\" twice: give each field once",
				  kb_json_duplicate());
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

void kb_request_init(kb_request *req, kb_op op)
{
	/* the fixed fields only: the blob and plaintext buffers are written before they are read */
	req->op = op;
	memcpy(req->id_json, "null", 5);
	req->key[0] = '\0';
	req->alg = KB_ALG_NONE;
	req->bits = 0;
	req->bytes = 0;
	req->blob[0] = '\0';
	req->bloblen = 0;
	req->nblobs = -1;
	req->blobs = NULL;
	req->ptlen = 0;
	req->has_plaintext = 0;
	req->conn = NULL;
}

void kb_request_wipe(kb_request *req)
{
	/* only a decoded plaintext is ever written there (parse_plaintext) */
	if (req->has_plaintext)
		OPENSSL_cleanse(req->plaintext, req->ptlen);
	req->has_plaintext = 0;
	req->ptlen = 0;
	for (int i = 0; req->blobs && i < req->nblobs; i++)
		free(req->blobs[i]);
	free(req->blobs);
	req->blobs = NULL;
	req->nblobs = -1;
}
