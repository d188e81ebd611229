/*
 * fuzz_b64: decoding is strict, so whatever decodes re-encodes to the same
 * text (base64url: less its optional padding), and every encoding decodes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "b64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[8192];
static char enc[12000];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	size_t n;

	if (size > 8192)
		return 0;
	for (int v = KB_B64_STD; v <= KB_B64_URL; v++) {
		size_t len = size;

		if (kb_b64_decode(in, size, out, sizeof(out), &n, (kb_b64_variant)v)) {
			kb_b64_encode(out, n, enc, (kb_b64_variant)v);
			if (v == KB_B64_URL)
				while (len > 0 && in[len - 1] == '=')
					len--;
			if (strlen(enc) != len || memcmp(enc, in, len) != 0)
				abort();
		}
		/* and the input taken as bytes round-trips */
		if (kb_b64_encode(data, size, enc, (kb_b64_variant)v) !=
		    kb_b64_encoded_len(size, (kb_b64_variant)v))
			abort();
		if (!kb_b64_decode(enc, strlen(enc), out, sizeof(out), &n, (kb_b64_variant)v) ||
		    n != size || memcmp(out, data, size) != 0)
			abort();
	}
	return 0;
}
