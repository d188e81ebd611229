/*
 * fuzz_kms: what kube-apiserver hands back on a KMS v2 Decrypt besides the
 * ciphertext (the key_id, the annotations) is parsed or refused with a
 * message, never a crash; a key_id that parses formats back to itself.
 * The first byte picks the parser; for annotations the input is a list of
 * key NUL value NUL pairs.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kms_keyid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void key_id(const char *s, size_t n)
{
	char back[KB_KMS_KEY_ID_MAX + 1];
	kb_kms_key_id id;
	kb_err err = { 0 };

	if (kb_kms_key_id_parse(s, n, &id, &err) != KB_OK) {
		if (err.code != KB_E_BAD_REQUEST || err.msg[0] == '\0')
			abort();
		return;
	}
	kb_kms_key_id_format(&id, back, sizeof(back));
	if (strlen(back) != n || memcmp(back, s, n) != 0)
		abort();
}

static void annotations(const char *s, size_t n)
{
	size_t total = 0, at = 0;

	while (at < n) {
		const char *k = s + at, *kend = memchr(k, '\0', n - at);
		size_t klen = kend ? (size_t)(kend - k) : n - at, vlen;
		const char *v, *vend;
		kb_err err = { 0 };

		at += klen + 1;
		v = s + (at < n ? at : n);
		vend = at < n ? memchr(v, '\0', n - at) : NULL;
		vlen = at < n ? (vend ? (size_t)(vend - v) : n - at) : 0;
		at += vlen + 1;
		if (kb_kms_annotation_check(k, klen, vlen, &total, &err) != KB_OK) {
			if (err.code != KB_E_BAD_REQUEST || err.msg[0] == '\0')
				abort();
			return;
		}
		if (total > KB_KMS_ANNOTATIONS_MAX || klen == 0 || klen > 253 || memchr(k, '/', klen))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		key_id((const char *)data + 1, size - 1);
	else
		annotations((const char *)data + 1, size - 1);
	return 0;
}
