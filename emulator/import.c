#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "import.h"
#include "parse.h"
#include "store.h"

/* b64_member decodes one base64url member; NULL (and *n = 0) if absent or bad. */
static uint8_t *b64_member(const cJSON *jwk, const char *name, size_t *n)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(jwk, name);

	*n = 0;
	return cJSON_IsString(f) ? emu_b64url_decode(f->valuestring, n) : NULL;
}

/* modulus_bits counts the bits of a big-endian number, leading zero bytes aside. */
static int modulus_bits(const uint8_t *p, size_t n)
{
	int top = 0;

	while (n && !*p) {
		p++;
		n--;
	}
	if (!n || n > 1 << 20)
		return 0;
	for (uint8_t b = p[0]; b; b >>= 1)
		top++;
	return (int)(n - 1) * 8 + top;
}

static int import_rsa(const cJSON *jwk, struct emu_version *v, char *err, size_t errlen)
{
	static const char *const names[8] = { "n", "e", "d", "p", "q", "dp", "dq", "qi" };
	uint8_t *parts[8] = { 0 };
	size_t lens[8] = { 0 };
	int rc = EMU_IMPORT_BAD_KEY, bits;

	for (int i = 0; i < 8; i++) {
		if (!(parts[i] = b64_member(jwk, names[i], &lens[i])) || !lens[i]) {
			snprintf(err, errlen, "An RSA key to import needs n, e, d, p, q, dp, dq and qi as base64url; '%s' is missing or invalid.",
				 names[i]);
			goto out;
		}
	}
	bits = modulus_bits(parts[0], lens[0]);
	if (bits != 2048 && bits != 3072 && bits != 4096) {
		snprintf(err, errlen, "Key size %d is not supported: import RSA keys of 2048, 3072 or 4096 bits.", bits);
		goto out;
	}
	if (!(v->pkey = emu_rsa_from_parts((const uint8_t *const *)parts, lens))) {
		snprintf(err, errlen, "The RSA key's parts do not make one valid private key.");
		goto out;
	}
	v->bits = bits;
	rc = EMU_IMPORT_OK;
out:
	for (int i = 0; i < 8; i++)
		if (parts[i])
			OPENSSL_clear_free(parts[i], lens[i]);
	return rc;
}

static int import_oct(const cJSON *jwk, struct emu_version *v, char *err, size_t errlen)
{
	size_t n;
	uint8_t *k = b64_member(jwk, "k", &n);
	int rc = EMU_IMPORT_BAD_KEY;

	if (!k || (n != 16 && n != 24 && n != 32))
		snprintf(err, errlen, "An oct key to import needs 'k': 16, 24 or 32 bytes as base64url.");
	else {
		memcpy(v->aes, k, n);
		v->aes_len = n;
		v->bits = (int)n * 8;
		rc = EMU_IMPORT_OK;
	}
	if (k)
		OPENSSL_clear_free(k, n);
	return rc;
}

/* parse_key_ops reads the JWK's key_ops, or the default for kty. -1 if one is unknown. */
static int parse_key_ops(const cJSON *jwk, enum emu_kty kty, unsigned *ops)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(jwk, "key_ops"), *e;

	*ops = emu_kops_default(kty);
	if (!arr || cJSON_IsNull(arr))
		return 0;
	if (!cJSON_IsArray(arr))
		return -1;
	*ops = 0;
	cJSON_ArrayForEach(e, arr) {
		unsigned b = cJSON_IsString(e) ? emu_kop_parse(e->valuestring) : 0;

		if (!b)
			return -1;
		*ops |= b;
	}
	return 0;
}

int emu_import_jwk(const cJSON *jwk, bool mhsm, bool hsm, struct emu_version **out, char *err, size_t errlen)
{
	const cJSON *kty = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
	struct emu_version *v;
	int rc;
	bool rsa, oct;

	*out = NULL;
	if (!cJSON_IsObject(jwk) || !cJSON_IsString(kty)) {
		snprintf(err, errlen, "Property 'key' must be a JSON Web Key with 'kty'.");
		return EMU_IMPORT_BAD_KEY;
	}
	rsa = !strcmp(kty->valuestring, "RSA") || !strcmp(kty->valuestring, "RSA-HSM");
	oct = !strcmp(kty->valuestring, "oct") || !strcmp(kty->valuestring, "oct-HSM");
	if (!(rsa || (oct && mhsm))) {
		snprintf(err, errlen, "Key type %.20s is not supported by this %s.", kty->valuestring,
			 mhsm ? "managed HSM" : "key vault");
		return EMU_IMPORT_BAD_KTY;
	}
	if (cJSON_GetObjectItemCaseSensitive(jwk, "t")) {
		snprintf(err, errlen,
			 "Importing a BYOK transfer blob (key.t) is not supported by akv-emulator: it holds no HSM key exchange key to unwrap it with. Import the key as a plain JWK instead (n, e, d, p, q, dp, dq and qi; or k on a Managed HSM).");
		return EMU_IMPORT_TRANSFER;
	}
	if (!(v = calloc(1, sizeof(*v))) || emu_random_hex(v->id, EMU_VERSION_LEN / 2)) {
		free(v);
		snprintf(err, errlen, "Out of memory.");
		return EMU_IMPORT_BAD_KEY;
	}
	/* a Managed HSM holds only HSM keys; a vault's RSA-HSM comes from kty or the Hsm flag */
	v->kty = oct ? EMU_KTY_OCT_HSM :
		 (mhsm || hsm || !strcmp(kty->valuestring, "RSA-HSM")) ? EMU_KTY_RSA_HSM : EMU_KTY_RSA;
	v->enabled = true;
	rc = oct ? import_oct(jwk, v, err, errlen) : import_rsa(jwk, v, err, errlen);
	if (rc == EMU_IMPORT_OK && parse_key_ops(jwk, v->kty, &v->ops)) {
		snprintf(err, errlen, "Property 'key.key_ops' has an invalid value.");
		rc = EMU_IMPORT_BAD_KEY;
	}
	if (rc != EMU_IMPORT_OK) {
		emu_version_free(v);
		return rc;
	}
	*out = v;
	return EMU_IMPORT_OK;
}
