/*
 * libFuzzer harness for the emulator's request parsing: the input is
 * "METHOD\nHOST\nPATH\nBODY"; the harness routes it, reads form fields from
 * the body and parses it as a wrap/unwrap body, a rotation policy and a key
 * to import, as the server would; PATH also goes through the ISO 8601
 * duration parser, and the body through the access-token verifier.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "import.h"
#include "parse.h"
#include "rotation.h"
#include "store.h"
#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *field(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nl ? n + 1 : n;
	return s;
}

/*
 * fuzz_token verifies the body as a token, then signs it as a token's
 * payload and verifies that, so the claims parser behind the signature
 * check is reached too.
 */
static void fuzz_token(const char *body, size_t blen)
{
	static const uint8_t key[EMU_TOKEN_KEY_LEN];
	struct emu_token_claims claims;
	char *tok = strndup(body, blen), *p64 = emu_b64url_encode((const uint8_t *)body, blen), *s64 = NULL;
	char *signed_tok = NULL;
	uint8_t mac[32];
	size_t n;

	if (tok)
		emu_token_verify(key, tok, &claims);
	if (p64 && (signed_tok = malloc(strlen(p64) + 128))) {
		n = (size_t)sprintf(signed_tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.%s", p64);
		if (!emu_hmac_sha256(key, sizeof(key), (const uint8_t *)signed_tok, n, mac) &&
		    (s64 = emu_b64url_encode(mac, sizeof(mac)))) {
			sprintf(signed_tok + n, ".%s", s64);
			emu_token_verify(key, signed_tok, &claims);
		}
	}
	free(tok);
	free(p64);
	free(s64);
	free(signed_tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *method = field(&p, end), *host = field(&p, end), *path = field(&p, end);
	const char *body = (const char *)p;
	size_t blen = (size_t)(end - p);
	struct emu_route r;
	struct emu_opbody b;
	char out[256], err[128];

	emu_route_parse(method, host, path, &r);
	emu_form_get(body, blen, "client_assertion", out, sizeof(out));
	emu_form_get(body, blen, "scope", out, sizeof(out));
	emu_opbody_parse(body, blen, &b, err, sizeof(err));
	emu_opbody_free(&b);
	cJSON *j = cJSON_ParseWithLength(body, blen);
	if (j) {
		struct emu_policy pol = { 0 };
		struct emu_version *v = NULL;

		emu_policy_parse(j, &pol, err, sizeof(err));
		if (emu_import_jwk(cJSON_GetObjectItemCaseSensitive(j, "key"), r.kind == EMU_KIND_MHSM, false, &v, err,
				   sizeof(err)) == EMU_IMPORT_OK)
			emu_version_free(v);
		cJSON_Delete(j);
	}
	fuzz_token(body, blen);
	int64_t secs;
	emu_duration_parse(path, &secs);
	emu_key_name_ok(path);
	emu_api_version_ok(host);
	free(method);
	free(host);
	free(path);
	return 0;
}
