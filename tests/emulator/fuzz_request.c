/*
 * libFuzzer harness for the emulator's request parsing: the input is
 * "METHOD\nHOST\nPATH\nBODY"; the harness routes it, reads form fields from
 * the body and parses it as a wrap/unwrap body, as the server would.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parse.h"

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
	emu_key_name_ok(path);
	emu_api_version_ok(host);
	free(method);
	free(host);
	free(path);
	return 0;
}
