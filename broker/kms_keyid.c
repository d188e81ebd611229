/*
 * kms_keyid.c: key_id and annotation texts (see kms_keyid.h).
 */
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "kms_keyid.h"

void kb_kms_fingerprint(const void *material, size_t n, char fp[KB_KMS_FP_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t d[KB_SHA256_LEN];

	kb_sha256(material, n, d);
	for (int i = 0; i < KB_KMS_FP_LEN / 2; i++) {
		fp[2 * i] = hex[d[i] >> 4];
		fp[2 * i + 1] = hex[d[i] & 15];
	}
	fp[KB_KMS_FP_LEN] = '\0';
}

void kb_kms_key_id_format(const kb_kms_key_id *id, char *out, size_t cap)
{
	snprintf(out, cap, "kb1/%s/%s/%s", id->key, id->version, id->fp);
}

/* part copies the next '/'-ended (or last) field of s into out, if it is a valid name */
static bool part(const char **s, const char *end, bool last, char *out, size_t cap)
{
	const char *slash = memchr(*s, '/', (size_t)(end - *s));
	const char *stop = slash ? slash : end;
	size_t n = (size_t)(stop - *s);

	if ((slash != NULL) == last || n == 0 || n >= cap || !kb_name_valid(*s, n))
		return false;
	memcpy(out, *s, n);
	out[n] = '\0';
	*s = slash ? slash + 1 : end;
	return true;
}

kb_code kb_kms_key_id_parse(const char *s, size_t n, kb_kms_key_id *id, kb_err *err)
{
	const char *end = s + n;

	memset(id, 0, sizeof(*id));
	if (n > KB_KMS_KEY_ID_MAX || n < 4 || memcmp(s, "kb1/", 4) != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the key_id is not one keybroker gave (kb1/KEY/VERSION/FINGERPRINT)");
	s += 4;
	if (!part(&s, end, false, id->key, sizeof(id->key)) ||
	    !part(&s, end, false, id->version, sizeof(id->version)) ||
	    !part(&s, end, true, id->fp, sizeof(id->fp)))
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the key_id's key, version or fingerprint is malformed (kb1/KEY/VERSION/FINGERPRINT)");
	if (strlen(id->fp) != KB_KMS_FP_LEN || strspn(id->fp, "0123456789abcdef") != KB_KMS_FP_LEN)
		return kb_err_set(err, KB_E_BAD_REQUEST, "the key_id's fingerprint is not %d hex digits",
				  KB_KMS_FP_LEN);
	return KB_OK;
}

kb_code kb_kms_annotation_check(const char *key, size_t n, size_t vlen, size_t *total, kb_err *err)
{
	size_t label = 0;
	int dots = 0;

	*total += n + vlen;
	if (*total > KB_KMS_ANNOTATIONS_MAX)
		return kb_err_set(err, KB_E_BAD_REQUEST, "the annotations exceed %d bytes", KB_KMS_ANNOTATIONS_MAX);
	if (n == 0 || n > 253 || memchr(key, '\0', n))
		return kb_err_set(err, KB_E_BAD_REQUEST, "an annotation key is empty or longer than 253 bytes");
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		bool edge = label == 0 || i + 1 == n || key[i + 1] == '.';

		if (c == '.') {
			if (label == 0)
				return kb_err_set(err, KB_E_BAD_REQUEST, "an annotation key has an empty DNS label");
			dots++;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && !edge)) || ++label > 63)
			return kb_err_set(err, KB_E_BAD_REQUEST,
					  "an annotation key is not a fully qualified DNS name (lower case labels)");
	}
	if (dots == 0 || label == 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "an annotation key is not a fully qualified DNS name (two labels or more)");
	return KB_OK;
}
