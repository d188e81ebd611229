#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "parse.h"
#include "token.h"

/* base64url of {"alg":"HS256","typ":"JWT"}: the one header minted and accepted */
#define HEADER "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
#define SIG_LEN 32

/* sign writes the MAC of data[0..n) under key to sig; 0 or -1. */
static int sign(const uint8_t *key, const char *data, size_t n, uint8_t sig[SIG_LEN])
{
	return emu_hmac_sha256(key, EMU_TOKEN_KEY_LEN, (const uint8_t *)data, n, sig);
}

char *emu_token_mint(const uint8_t key[EMU_TOKEN_KEY_LEN], const struct emu_token_claims *c)
{
	char jti[33], *payload = NULL, *p64 = NULL, *s64 = NULL, *out = NULL;
	uint8_t sig[SIG_LEN];
	size_t n;
	cJSON *j;

	if (emu_random_hex(jti, 16) || !(j = cJSON_CreateObject()))
		return NULL;
	cJSON_AddStringToObject(j, "aud", c->aud);
	cJSON_AddStringToObject(j, "iss", "akv-emulator");
	cJSON_AddNumberToObject(j, "iat", (double)c->iat);
	cJSON_AddNumberToObject(j, "nbf", (double)c->iat);
	cJSON_AddNumberToObject(j, "exp", (double)c->exp);
	cJSON_AddStringToObject(j, "appid", c->principal);
	cJSON_AddStringToObject(j, "sub", c->principal);
	cJSON_AddStringToObject(j, "tid", c->tenant);
	cJSON_AddNumberToObject(j, "gen", c->gen);
	cJSON_AddStringToObject(j, "jti", jti);
	payload = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!payload || !(p64 = emu_b64url_encode((const uint8_t *)payload, strlen(payload))))
		goto out;
	n = strlen(HEADER) + 1 + strlen(p64);
	if (!(out = malloc(n + 1 + (SIG_LEN * 4 + 2) / 3 + 1)))
		goto out;
	snprintf(out, n + 1, "%s.%s", HEADER, p64);
	if (sign(key, out, n, sig) || !(s64 = emu_b64url_encode(sig, SIG_LEN))) {
		free(out);
		out = NULL;
		goto out;
	}
	out[n] = '.';
	strcpy(out + n + 1, s64);
out:
	free(payload);
	free(p64);
	free(s64);
	return out;
}

/* copy_str copies member name of o into out; false if absent, not a string or too long. */
static bool copy_str(const cJSON *o, const char *name, char *out, size_t cap)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsString(f) || strlen(f->valuestring) >= cap)
		return false;
	strcpy(out, f->valuestring);
	return true;
}

static bool get_num(const cJSON *o, const char *name, double lo, double hi, double *out)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(o, name);

	if (!cJSON_IsNumber(f) || f->valuedouble < lo || f->valuedouble > hi)
		return false;
	*out = f->valuedouble;
	return true;
}

int emu_token_verify(const uint8_t key[EMU_TOKEN_KEY_LEN], const char *token, struct emu_token_claims *c)
{
	size_t len = strnlen(token, EMU_TOKEN_MAX + 1), hl = strlen(HEADER);
	const char *payload, *dot;
	uint8_t want[SIG_LEN], *got = NULL, *json = NULL;
	size_t gotn = 0, jn = 0;
	char *p64 = NULL;
	double iat, exp, gen;
	cJSON *j = NULL;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	if (len > EMU_TOKEN_MAX || len <= hl + 1 || memcmp(token, HEADER, hl) != 0 || token[hl] != '.')
		return -1;
	payload = token + hl + 1;
	if (!(dot = strchr(payload, '.')) || strchr(dot + 1, '.'))
		return -1;
	if (sign(key, token, (size_t)(dot - token), want) || !(got = emu_b64url_decode(dot + 1, &gotn)) ||
	    gotn != SIG_LEN || CRYPTO_memcmp(want, got, SIG_LEN) != 0)
		goto out;
	if (!(p64 = strndup(payload, (size_t)(dot - payload))) || !(json = emu_b64url_decode(p64, &jn)) ||
	    !(j = cJSON_ParseWithLength((const char *)json, jn)))
		goto out;
	if (!copy_str(j, "appid", c->principal, sizeof(c->principal)) ||
	    !copy_str(j, "tid", c->tenant, sizeof(c->tenant)) || !copy_str(j, "aud", c->aud, sizeof(c->aud)) ||
	    !get_num(j, "iat", 0, 1e12, &iat) || !get_num(j, "exp", 0, 1e12, &exp) ||
	    !get_num(j, "gen", 0, UINT32_MAX, &gen))
		goto out;
	c->iat = (int64_t)iat;
	c->exp = (int64_t)exp;
	c->gen = (uint32_t)gen;
	rc = 0;
out:
	cJSON_Delete(j);
	free(json);
	free(p64);
	free(got);
	return rc;
}
