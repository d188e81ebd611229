/*
 * ops.c: the operations of protocol v1 as C calls. Each builds its request,
 * lets kbc_roundtrip() carry it, and copies the response's fields out.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"
#include "kbc.h"

/* check_args fails with KB_E_BAD_REQUEST naming fn when a required argument is NULL. */
#define check_args(cond, fn, err)                                                        \
	do {                                                                             \
		if (!(cond))                                                             \
			return kbc_error(err, KB_E_BAD_REQUEST, "%s: a required argument " \
					 "is NULL or empty", fn);                        \
	} while (0)

static cJSON *request(const char *op)
{
	cJSON *r = cJSON_CreateObject();

	if (r != NULL && !cJSON_AddStringToObject(r, "op", op)) {
		cJSON_Delete(r);
		return NULL;
	}
	return r;
}

/* add_str adds name: s unless s is NULL; false only when out of memory. */
static bool add_str(cJSON *r, const char *name, const char *s)
{
	return s == NULL || cJSON_AddStringToObject(r, name, s) != NULL;
}

/* send_request carries req (freed here) and returns the parsed response in *resp. */
static kb_code send_request(kb_client *c, cJSON *req, bool built, cJSON **resp, kb_error *err)
{
	kb_code code;

	*resp = NULL;
	if (req == NULL || !built) {
		kbc_json_delete(req);
		return kbc_error(err, KB_E_IO, "out of memory building a request");
	}
	code = kbc_roundtrip(c, req, resp, err);
	kbc_json_delete(req);
	return code;
}

/* take_str copies the string field name of r to *dst; a missing field is an error only if required. */
static kb_code take_str(const char *op, const cJSON *r, const char *name, bool required,
			char **dst, kb_error *err)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r, name);

	if (!cJSON_IsString(f)) {
		if (f == NULL && !required)
			return KB_OK;
		return kbc_error(err, KB_E_PROTOCOL, "the %s response has no string \"%s\"",
				 op, name);
	}
	*dst = strdup(f->valuestring);
	return *dst ? KB_OK : kbc_error(err, KB_E_IO, "out of memory");
}

static kb_code take_plaintext(const char *op, const cJSON *r, kb_result *out, kb_error *err)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "plaintext");
	size_t n, cap;
	uint8_t *pt;

	if (!cJSON_IsString(f))
		return kbc_error(err, KB_E_PROTOCOL, "the %s response has no string "
				 "\"plaintext\"", op);
	n = strlen(f->valuestring);
	cap = n / 4 * 3 + 3;
	pt = malloc(cap);
	if (pt == NULL)
		return kbc_error(err, KB_E_IO, "out of memory");
	if (!kb_b64_decode(f->valuestring, n, pt, cap, &out->plaintext_len, KB_B64_STD)) {
		explicit_bzero(pt, cap);
		free(pt);
		out->plaintext_len = 0;
		return kbc_error(err, KB_E_PROTOCOL, "the %s response's \"plaintext\" is "
				 "not standard base64", op);
	}
	out->plaintext = pt;
	return KB_OK;
}

static bool take_bool(const cJSON *r, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, name));
}

/*
 * result_from fills out from a successful response r of op. need_blob and
 * need_pt say which fields the operation exists to return; key and version
 * are copied when present (version is required for rotate).
 */
static kb_code result_from(const char *op, const cJSON *r, bool need_blob, bool need_pt,
			   kb_result *out, kb_error *err)
{
	kb_code code = KB_OK;

	if (code == KB_OK)
		code = take_str(op, r, "blob", need_blob, &out->blob, err);
	if (code == KB_OK)
		code = take_str(op, r, "key", false, &out->key, err);
	if (code == KB_OK)
		code = take_str(op, r, "version", !need_blob && !need_pt, &out->version, err);
	if (code == KB_OK && need_pt)
		code = take_plaintext(op, r, out, err);
	out->cached = take_bool(r, "cached");
	out->reused = take_bool(r, "reused");
	if (code != KB_OK)
		kb_result_clear(out);
	return code;
}

/* run_result carries req and fills out; the common tail of the kb_result operations. */
static kb_code run_result(kb_client *c, const char *op, cJSON *req, bool built, bool need_blob,
			  bool need_pt, kb_result *out, kb_error *err)
{
	cJSON *resp;
	kb_code code = send_request(c, req, built, &resp, err);

	if (code == KB_OK)
		code = result_from(op, resp, need_blob, need_pt, out, err);
	kbc_json_delete(resp);
	return code;
}

/* run_json carries req and returns the response line in *json_out. */
static kb_code run_json(kb_client *c, cJSON *req, bool built, char **json_out, kb_error *err)
{
	cJSON *resp;
	kb_code code = send_request(c, req, built, &resp, err);

	kbc_json_delete(resp);
	if (code != KB_OK)
		return code;
	*json_out = strdup(kb_client_last_response(c));
	return *json_out ? KB_OK : kbc_error(err, KB_E_IO, "out of memory");
}

void kb_result_clear(kb_result *r)
{
	if (r == NULL)
		return;
	if (r->plaintext != NULL) {
		explicit_bzero(r->plaintext, r->plaintext_len);
		free(r->plaintext);
	}
	free(r->blob);
	free(r->key);
	free(r->version);
	memset(r, 0, sizeof(*r));
}

kb_code kb_status(kb_client *c, char **json_out, kb_error *err)
{
	if (json_out != NULL)
		*json_out = NULL;
	check_args(c && json_out, "kb_status", err);
	return run_json(c, request("status"), true, json_out, err);
}

kb_code kb_get(kb_client *c, const char *key, char **json_out, kb_error *err)
{
	cJSON *req;

	if (json_out != NULL)
		*json_out = NULL;
	check_args(c && key && *key && json_out, "kb_get", err);
	req = request("get");
	return run_json(c, req, req && add_str(req, "key", key), json_out, err);
}

kb_code kb_wrap(kb_client *c, const char *key, const char *alg, const uint8_t *pt, size_t n,
		kb_result *out, kb_error *err)
{
	cJSON *req;
	char *b64;
	bool built;
	kb_code code;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	check_args(c && key && *key && (pt || n == 0) && out, "kb_wrap", err);
	if (n > KB_MAX_RESPONSE)
		return kbc_error(err, KB_E_TOO_LARGE, "kb_wrap: %zu bytes is over any "
				 "plaintext the broker takes", n);
	b64 = malloc(kb_b64_encoded_len(n, KB_B64_STD) + 1);
	if (b64 == NULL)
		return kbc_error(err, KB_E_IO, "out of memory");
	kb_b64_encode(pt, n, b64, KB_B64_STD);
	req = request("wrap");
	/* A reference, so the base64 plaintext exists once, in b64, which we wipe. */
	built = req && add_str(req, "key", key) && add_str(req, "alg", alg) &&
		cJSON_AddItemToObject(req, "plaintext", cJSON_CreateStringReference(b64));
	code = run_result(c, "wrap", req, built, true, false, out, err);
	explicit_bzero(b64, strlen(b64));
	free(b64);
	return code;
}

kb_code kb_unwrap(kb_client *c, const char *blob, kb_result *out, kb_error *err)
{
	cJSON *req;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	check_args(c && blob && *blob && out, "kb_unwrap", err);
	req = request("unwrap");
	return run_result(c, "unwrap", req, req && add_str(req, "blob", blob), false, true, out,
			  err);
}

/*
 * run_many carries one batch request of op for blobs[0..n) and fills out[i]
 * and codes[i] from item i of its results.
 */
static kb_code run_many(kb_client *c, const char *op, const char *key, const char *const *blobs, size_t n,
			bool need_blob, bool need_pt, kb_result *out, kb_code *codes, kb_error *err)
{
	cJSON *req = request(op), *arr, *resp;
	const cJSON *results, *item;
	bool built = req && add_str(req, "key", key) && (arr = cJSON_AddArrayToObject(req, "blobs")) != NULL;
	kb_code code;
	size_t i = 0;

	for (size_t k = 0; built && k < n; k++) {
		cJSON *s = cJSON_CreateString(blobs[k]);
		built = s != NULL && cJSON_AddItemToArray(arr, s);
	}
	code = send_request(c, req, built, &resp, err);
	if (code != KB_OK)
		return code;
	results = cJSON_GetObjectItemCaseSensitive(resp, "results");
	if (!cJSON_IsArray(results) || (size_t)cJSON_GetArraySize(results) != n) {
		kbc_json_delete(resp);
		return kbc_error(err, KB_E_PROTOCOL, "the %s response has no \"results\" with one item per blob", op);
	}
	cJSON_ArrayForEach(item, results) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(item, "error");
		const cJSON *name = e ? cJSON_GetObjectItemCaseSensitive(e, "code") : NULL;

		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "ok")))
			codes[i] = result_from(op, item, need_blob, need_pt, &out[i], NULL);
		else
			codes[i] = cJSON_IsString(name) ? kb_code_from_name(name->valuestring) : KB_E_PROTOCOL;
		i++;
	}
	kbc_json_delete(resp);
	return KB_OK;
}

/* json_len bounds the length of s printed as a JSON string by cJSON, quotes included. */
static size_t json_len(const char *s)
{
	size_t n = 2;

	for (; *s; s++)
		n += (unsigned char)*s < 0x20 ? 6 : (*s == '"' || *s == '\\') ? 2 : 1;
	return n;
}

/*
 * run_split carries a batch of n blobs in as many requests as the broker's
 * limits need (kbc.h): each takes as many blobs as fit, at least one. A
 * request refused too_large is split further; a blob refused too_large alone
 * fails alone. On a failure of a request as a whole, every item gets its code.
 */
static kb_code run_split(kb_client *c, const char *op, const char *key, const char *const *blobs, size_t n,
			 bool need_blob, bool need_pt, kb_result *out, kb_code *codes, kb_error *err)
{
	/* {"op":"OP","key":KEY,"blobs":[],"id":N}: the fields around the blobs, and room for the id */
	size_t head = 32 + strlen(op) + (key ? json_len(key) + 8 : 0) + 32;
	kb_code code;

	if (n == 0) /* asked all the same: the broker answers an empty batch, and a dead connection shows */
		return run_many(c, op, key, blobs, 0, need_blob, need_pt, out, codes, err);
	for (size_t i = 0, m; i < n; i += m) {
		size_t items, bytes, len = head;

		kbc_batch_limits(c, &items, &bytes);
		for (m = 0; i + m < n && m < items; m++) {
			size_t b = json_len(blobs[i + m]) + 1;

			if (m > 0 && len + b > bytes)
				break;
			len += b;
		}
		code = run_many(c, op, key, blobs + i, m, need_blob, need_pt, out + i, codes + i, err);
		if (code == KB_E_TOO_LARGE && m > 1) {
			kbc_batch_refused(c, m);
			m = 0;
		} else if (code == KB_E_TOO_LARGE) {
			codes[i] = code;
		} else if (code != KB_OK) {
			for (size_t k = 0; k < n; k++) {
				kb_result_clear(&out[k]);
				codes[k] = code;
			}
			return code;
		}
	}
	return kbc_error(err, KB_OK, "%s", "");
}

kb_code kb_unwrap_many(kb_client *c, const char *const *blobs, size_t n, kb_result *out, kb_code *codes,
		       kb_error *err)
{
	check_args(c && (n == 0 || (blobs && out && codes)), "kb_unwrap_many", err);
	if (out != NULL)
		memset(out, 0, sizeof(*out) * n);
	for (size_t i = 0; i < n; i++)
		check_args(blobs[i] && *blobs[i], "kb_unwrap_many", err);
	return run_split(c, "unwrap", NULL, blobs, n, false, true, out, codes, err);
}

kb_code kb_rewrap_many(kb_client *c, const char *const *blobs, size_t n, const char *key, kb_result *out,
		       kb_code *codes, kb_error *err)
{
	check_args(c && (n == 0 || (blobs && out && codes)), "kb_rewrap_many", err);
	if (out != NULL)
		memset(out, 0, sizeof(*out) * n);
	for (size_t i = 0; i < n; i++)
		check_args(blobs[i] && *blobs[i], "kb_rewrap_many", err);
	return run_split(c, "rewrap", key, blobs, n, true, false, out, codes, err);
}

kb_code kb_datakey(kb_client *c, const char *key, unsigned bits, kb_result *out, kb_error *err)
{
	cJSON *req;
	bool built;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	check_args(c && key && *key && out, "kb_datakey", err);
	req = request("datakey");
	built = req && add_str(req, "key", key) &&
		(bits == 0 || cJSON_AddNumberToObject(req, "bits", bits));
	return run_result(c, "datakey", req, built, true, true, out, err);
}

kb_code kb_rewrap(kb_client *c, const char *blob, const char *key, kb_result *out,
		  kb_error *err)
{
	cJSON *req;
	bool built;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	check_args(c && blob && *blob && out, "kb_rewrap", err);
	req = request("rewrap");
	built = req && add_str(req, "blob", blob) && add_str(req, "key", key);
	return run_result(c, "rewrap", req, built, true, false, out, err);
}

kb_code kb_rotate(kb_client *c, const char *key, kb_result *out, kb_error *err)
{
	cJSON *req;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	check_args(c && key && *key && out, "kb_rotate", err);
	req = request("rotate");
	return run_result(c, "rotate", req, req && add_str(req, "key", key), false, false, out,
			  err);
}

kb_code kb_flush(kb_client *c, const char *key, unsigned *flushed, kb_error *err)
{
	cJSON *req, *resp;
	const cJSON *f;
	kb_code code;

	if (flushed != NULL)
		*flushed = 0;
	check_args(c, "kb_flush", err);
	req = request("flush");
	code = send_request(c, req, req && add_str(req, "key", key), &resp, err);
	if (code != KB_OK)
		return code;
	f = cJSON_GetObjectItemCaseSensitive(resp, "flushed");
	if (!cJSON_IsNumber(f) || f->valuedouble < 0)
		code = kbc_error(err, KB_E_PROTOCOL, "the flush response has no count "
				 "\"flushed\"");
	else if (flushed != NULL)
		*flushed = f->valuedouble > (double)UINT_MAX ? UINT_MAX : (unsigned)f->valuedouble;
	kbc_json_delete(resp);
	return code;
}

kb_code kb_metrics(kb_client *c, char **text, kb_error *err)
{
	cJSON *resp;
	kb_code code;

	if (text != NULL)
		*text = NULL;
	check_args(c && text, "kb_metrics", err);
	code = send_request(c, request("metrics"), true, &resp, err);
	if (code == KB_OK)
		code = take_str("metrics", resp, "text", true, text, err);
	kbc_json_delete(resp);
	return code;
}
