/*
 * fuzz_blob: any string is a blob or a bad_blob, never a crash; and a v1 blob
 * that decodes re-encodes to a blob with the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kb_blob a, b;
static char s[KB_BLOB_MAX + 1];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	kb_err err = { 0 };
	kb_code rc = kb_blob_decode((const char *)data, size, &a, &err);

	if (rc != KB_OK) {
		if (rc != KB_E_BAD_BLOB || err.msg[0] == '\0')
			abort();
		return 0;
	}
	if (a.ctlen == 0 || a.ctlen > KB_WRAPPED_MAX || a.alg == KB_ALG_NONE ||
	    !kb_name_valid(a.version, strlen(a.version)))
		abort();
	if (a.key[0] == '\0') {
		/* the raw Azure form: no key name, but a kid that ends in the version */
		size_t k = strlen(a.kid), v = strlen(a.version);
		if (strncmp(a.kid, "https://", 8) != 0 || k < v || strcmp(a.kid + k - v, a.version) != 0)
			abort();
		return 0;
	}
	if (!kb_name_valid(a.key, strlen(a.key)) || a.kid[0] != '\0')
		abort();
	if (kb_blob_encode(&a, s, sizeof(s), &err) != KB_OK)
		abort();
	if (kb_blob_decode(s, strlen(s), &b, &err) != KB_OK)
		abort();
	if (strcmp(a.key, b.key) || strcmp(a.version, b.version) || a.alg != b.alg ||
	    a.ctlen != b.ctlen || memcmp(a.ct, b.ct, a.ctlen) != 0)
		abort();
	return 0;
}
