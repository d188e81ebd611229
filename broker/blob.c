#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include "digest.h"

#include "b64.h"
#include "blob.h"
#include "json.h"

#define CHECK_BYTES 6
#define CHECK_CHARS 8 /* base64url of 6 bytes */

int kb_name_valid(const char *s, size_t n)
{
	if (n == 0 || n > KB_KEY_NAME_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

static void check_of(const char *s, size_t n, char out[CHECK_CHARS + 1])
{
	uint8_t md[KB_SHA256_LEN];

	kb_sha256(s, n, md);
	kb_b64_encode(md, CHECK_BYTES, out, KB_B64_URL);
}

/* fp_valid is true if s[0..n) is a fingerprint: KB_BLOB_FP_LEN lowercase hex digits */
static int fp_valid(const char *s, size_t n)
{
	if (n != KB_BLOB_FP_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

kb_code kb_blob_encode(const kb_blob *b, char *out, size_t cap, kb_err *err)
{
	const char *alg = kb_alg_name(b->alg);
	int v2 = b->fp[0] != '\0';
	size_t need, o;

	if ((v2 && !fp_valid(b->fp, strlen(b->fp))) || !kb_name_valid(b->key, strlen(b->key)) ||
	    !kb_name_valid(b->version, strlen(b->version)) || *alg == '\0' || b->ctlen == 0 ||
	    b->ctlen > KB_WRAPPED_MAX)
		return kb_err_set(err, KB_E_INTERNAL, "cannot encode blob: invalid field");
	need = 4 + strlen(b->key) + 1 + strlen(b->version) + 1 + (v2 ? KB_BLOB_FP_LEN + 1 : 0) + strlen(alg) + 1 +
	       kb_b64_encoded_len(b->ctlen, KB_B64_URL) + 1 + CHECK_CHARS;
	if (need + 1 > cap)
		return kb_err_set(err, KB_E_INTERNAL, "cannot encode blob: %zu bytes needed", need);
	if (v2)
		o = (size_t)snprintf(out, cap, "kb2:%s:%s:%s:%s:", b->key, b->version, b->fp, alg);
	else
		o = (size_t)snprintf(out, cap, "kb1:%s:%s:%s:", b->key, b->version, alg);
	o += kb_b64_encode(b->ct, b->ctlen, out + o, KB_B64_URL);
	out[o++] = ':';
	check_of(out, o, out + o);
	return KB_OK;
}

size_t kb_blob_len_max(size_t keylen, size_t ctlen)
{
	return 4 + keylen + 1 + KB_VERSION_MAX + 1 + KB_BLOB_FP_LEN + 1 + 24 /* the longest alg name, with room */ + 1 +
	       kb_b64_encoded_len(ctlen, KB_B64_URL) + 1 + CHECK_CHARS;
}

/* next_field returns the length of the field at s (up to ':' or end). */
static size_t next_field(const char *s, size_t n)
{
	const char *c = memchr(s, ':', n);
	return c ? (size_t)(c - s) : n;
}

/* decode_kb reads format 1, or 2 (v2: a fingerprint follows the version) */
static kb_code decode_kb(const char *s, size_t n, int v2, kb_blob *b, kb_err *err)
{
	const char *p = s + 4, *end = s + n;
	char check[CHECK_CHARS + 1];
	char algname[32];
	size_t f;

	if (n < 4 + CHECK_CHARS + 1 || s[n - CHECK_CHARS - 1] != ':')
		return kb_err_set(err, KB_E_BAD_BLOB, "blob is truncated: its check field is missing");
	check_of(s, n - CHECK_CHARS, check);
	if (memcmp(check, s + n - CHECK_CHARS, CHECK_CHARS) != 0)
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "blob check does not match: the blob was altered or truncated");
	end -= CHECK_CHARS + 1;

	f = next_field(p, (size_t)(end - p));
	if (!kb_name_valid(p, f) || p + f >= end)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob key name is invalid");
	memcpy(b->key, p, f);
	b->key[f] = '\0';
	p += f + 1;

	f = next_field(p, (size_t)(end - p));
	if (!kb_name_valid(p, f) || p + f >= end)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob key version is invalid");
	memcpy(b->version, p, f);
	b->version[f] = '\0';
	p += f + 1;

	if (v2) {
		f = next_field(p, (size_t)(end - p));
		if (!fp_valid(p, f) || p + f >= end)
			return kb_err_set(err, KB_E_BAD_BLOB, "blob key fingerprint is invalid: it must be %d lowercase hex digits",
					  KB_BLOB_FP_LEN);
		memcpy(b->fp, p, f);
		b->fp[f] = '\0';
		p += f + 1;
	}

	f = next_field(p, (size_t)(end - p));
	if (f == 0 || f >= sizeof(algname) || p + f >= end)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob algorithm is invalid");
	memcpy(algname, p, f);
	algname[f] = '\0';
	b->alg = kb_alg_parse(algname);
	if (b->alg == KB_ALG_NONE || strcmp(kb_alg_name(b->alg), algname) != 0)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob algorithm is unknown");
	p += f + 1;

	f = (size_t)(end - p);
	if (f == 0 || memchr(p, ':', f) || memchr(p, '=', f) ||
	    !kb_b64_decode(p, f, b->ct, sizeof(b->ct), &b->ctlen, KB_B64_URL) || b->ctlen == 0)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob ciphertext is not valid base64url");
	return KB_OK;
}

/*
 * kid_version returns the VERSION of "https://HOST/keys/NAME/VERSION", or NULL
 * if kid is not exactly that shape (a versionless kid names no version).
 */
static const char *kid_version(const char *kid)
{
	const char *host = kid + 8, *path = strchr(host, '/'), *name, *ver;

	if (path == NULL || path == host || strncmp(path, "/keys/", 6) != 0)
		return NULL;
	name = path + 6;
	ver = strchr(name, '/');
	if (ver == NULL || !kb_name_valid(name, (size_t)(ver - name)))
		return NULL;
	ver++;
	return kb_name_valid(ver, strlen(ver)) ? ver : NULL;
}

/* decode_raw reads Azure's {kid, alg, value} form. */
static kb_code decode_raw(const char *s, size_t n, kb_blob *b, kb_err *err)
{
	cJSON *j = kb_json_parse_whole(s, n);
	const cJSON *kid, *alg, *value;
	const char *ver;
	kb_code rc = KB_E_BAD_BLOB;

	if (j == NULL || !cJSON_IsObject(j)) {
		kb_err_set(err, rc, "raw blob is not a JSON object");
		goto out;
	}
	kid = cJSON_GetObjectItemCaseSensitive(j, "kid");
	alg = cJSON_GetObjectItemCaseSensitive(j, "alg");
	value = cJSON_GetObjectItemCaseSensitive(j, "value");
	if (!cJSON_IsString(kid) || !cJSON_IsString(alg) || !cJSON_IsString(value)) {
		kb_err_set(err, rc, "raw blob needs string fields kid, alg and value");
		goto out;
	}
	if (strlen(kid->valuestring) > KB_KID_MAX || strncmp(kid->valuestring, "https://", 8) != 0) {
		kb_err_set(err, rc, "raw blob kid is not an https key identifier");
		goto out;
	}
	ver = kid_version(kid->valuestring);
	if (ver == NULL) {
		kb_err_set(err, rc, "raw blob kid must name a key version: https://HOST/keys/NAME/VERSION");
		goto out;
	}
	b->alg = kb_alg_parse(alg->valuestring);
	if (b->alg == KB_ALG_NONE) {
		kb_err_set(err, rc, "raw blob algorithm is unknown");
		goto out;
	}
	if (!kb_b64_decode(value->valuestring, strlen(value->valuestring), b->ct, sizeof(b->ct),
			   &b->ctlen, KB_B64_URL) ||
	    b->ctlen == 0) {
		kb_err_set(err, rc, "raw blob value is not valid base64url");
		goto out;
	}
	b->key[0] = '\0';
	strcpy(b->version, ver);
	strcpy(b->kid, kid->valuestring);
	rc = KB_OK;
out:
	cJSON_Delete(j);
	return rc;
}

kb_code kb_blob_decode(const char *s, size_t n, kb_blob *b, kb_err *err)
{
	memset(b, 0, sizeof(*b));
	if (n == 0)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob is empty");
	if (n > KB_BLOB_MAX)
		return kb_err_set(err, KB_E_BAD_BLOB, "blob is longer than %d bytes", KB_BLOB_MAX);
	if (s[0] == '{')
		return decode_raw(s, n, b, err);
	if (n < 4 || (memcmp(s, "kb1:", 4) != 0 && memcmp(s, "kb2:", 4) != 0))
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "not a keybroker blob: it must start with \"kb2:\" or \"kb1:\" (or be Azure's raw {kid,alg,value} JSON)");
	return decode_kb(s, n, s[2] == '2', b, err);
}
