/*
 * fuzz_azure: every parser of what Azure sends (hsm/parse.c) takes any input
 * without a crash, and what it accepts is within its documented bounds. The
 * first byte picks the parser; the rest is the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "az.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void bounded(const char *s, size_t cap)
{
	if (strnlen(s, cap) >= cap)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static az_bundle b;
	static az_version_item items[8];
	static uint8_t out[KB_WRAPPED_MAX];
	char *s, why[96], next[AZ_URL_MAX], ver[KB_VERSION_MAX + 1], code[48], inner[48], msg[200];
	char *token = NULL;
	az_challenge ch;
	az_kid kid;
	size_t outlen = sizeof(out);
	int64_t life, ms;
	int n = 0;

	if (size == 0)
		return 0;
	s = malloc(size);
	if (s == NULL)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	switch (data[0] % 8) {
	case 0:
		if (az_parse_kid(s, &kid, why, sizeof(why)))
			bounded(kid.version, sizeof(kid.version));
		break;
	case 1:
		if (az_parse_bundle(s, size - 1, &b, why, sizeof(why)) &&
		    (b.nlen > sizeof(b.n) || b.elen > sizeof(b.e) || !b.kid.version[0]))
			abort();
		break;
	case 2:
		if (az_parse_versions(s, size - 1, items, 8, &n, next, sizeof(next), why, sizeof(why)) && n > 8)
			abort();
		break;
	case 3:
		if (az_parse_op_result(s, size - 1, out, &outlen, ver, why, sizeof(why)) && outlen > sizeof(out))
			abort();
		break;
	case 4:
		if (az_parse_token(s, size - 1, 1700000000, &token, &life, why, sizeof(why)) && (!token || life <= 0))
			abort();
		if (token) {
			OPENSSL_cleanse(token, strlen(token));
			free(token);
		}
		break;
	case 5:
		az_parse_error(s, size - 1, code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
		break;
	case 6:
		if (az_parse_challenge(s, &ch) && (!ch.tenant[0] || strncasecmp(ch.resource, "https://", 8) != 0))
			abort();
		break;
	default:
		ms = az_parse_retry_after(data[0] & 8 ? "Retry-After" : "x-ms-retry-after-ms", s, 1700000000);
		if (ms < -1 || ms > 86400000)
			abort();
		break;
	}
	free(s);
	return 0;
}
