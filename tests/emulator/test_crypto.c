/* Unit tests of emulator/crypto.c (RFC 3394 and RFC 5649 vectors, RSA per alg) and token.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../cases.h"

#include "crypto.h"
#include "token.h"

static size_t unhex(const char *s, uint8_t *out)
{
	size_t n = 0;

	for (; s[0] && s[1]; s += 2) {
		if (*s == ' ') {
			s--;
			continue;
		}
		char b[3] = { s[0], s[1], 0 };
		out[n++] = (uint8_t)strtoul(b, NULL, 16);
	}
	return n;
}

struct kw_vector {
	const char *kek, *data, *wrapped;
	bool pad;
};

static const struct kw_vector vectors[] = {
	/* RFC 3394 section 4.1 to 4.6 */
	{ "000102030405060708090A0B0C0D0E0F", "00112233445566778899AABBCCDDEEFF",
	  "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5", false },
	{ "000102030405060708090A0B0C0D0E0F1011121314151617", "00112233445566778899AABBCCDDEEFF",
	  "96778B25AE6CA435F92B5B97C050AED2468AB8A17AD84E5D", false },
	{ "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F", "00112233445566778899AABBCCDDEEFF",
	  "64E8C3F9CE0F5BA263E9777905818A2A93C8191E7D6E8AE7", false },
	{ "000102030405060708090A0B0C0D0E0F1011121314151617", "00112233445566778899AABBCCDDEEFF0001020304050607",
	  "031D33264E15D33268F24EC260743EDCE1C6C7DDEE725A936BA814915C6762D2", false },
	{ "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
	  "00112233445566778899AABBCCDDEEFF0001020304050607",
	  "A8F9BC1612C68B3FF6E6F4FBE30E71E4769C8B80A32CB8958CD5D17D6B254DA1", false },
	{ "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
	  "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F",
	  "28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21", false },
	/* RFC 5649 section 6 */
	{ "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "c37b7e6492584340bed12207808941155068f738",
	  "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a", true },
	{ "5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8", "466f7250617369",
	  "afbeb0f07dfbf5419200f2ccb50bb24f", true },
};

static void check_vectors(bool pad)
{
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		const struct kw_vector *v = &vectors[i];
		uint8_t kek[32], data[64], wrapped[80], *out;
		size_t kl, dl, wl, n;

		if (v->pad != pad)
			continue;
		kl = unhex(v->kek, kek);
		dl = unhex(v->data, data);
		wl = unhex(v->wrapped, wrapped);
		assert_int_equal(emu_aes_kw(kek, kl, pad, true, data, dl, &out, &n), EMU_CRYPTO_OK);
		assert_int_equal(n, wl);
		assert_memory_equal(out, wrapped, wl);
		free(out);
		assert_int_equal(emu_aes_kw(kek, kl, pad, false, wrapped, wl, &out, &n), EMU_CRYPTO_OK);
		assert_int_equal(n, dl);
		assert_memory_equal(out, data, dl);
		free(out);
		/* one flipped bit fails the integrity check */
		wrapped[0] ^= 1;
		assert_int_equal(emu_aes_kw(kek, kl, pad, false, wrapped, wl, &out, &n), EMU_CRYPTO_BAD_INPUT);
	}
}

static void rfc3394_vectors(void **state)
{
	check_vectors(false);
}

static void rfc5649_vectors(void **state)
{
	check_vectors(true);
}

static void rsa_round_trip_per_alg(void **state)
{
	static const enum emu_alg algs[] = { EMU_ALG_RSA1_5, EMU_ALG_RSA_OAEP, EMU_ALG_RSA_OAEP_256 };
	struct emu_keymat k = { 0 };
	uint8_t dek[32];
	struct emu_cout wrapped, plain, other;

	assert_int_equal(emu_rsa_generate(2048, 65537, &k.pkey), 0);
	memset(dek, 0x5a, sizeof(dek));
	for (size_t i = 0; i < 3; i++) {
		struct emu_cin in = { .alg = algs[i], .wrap_op = true, .forward = true, .in = dek, .n = 32 };

		assert_int_equal(emu_crypto_run(&k, &in, &wrapped), EMU_CRYPTO_OK);
		assert_int_equal(wrapped.n, 256);
		in.forward = false;
		in.in = wrapped.out;
		in.n = wrapped.n;
		assert_int_equal(emu_crypto_run(&k, &in, &plain), EMU_CRYPTO_OK);
		assert_int_equal(plain.n, 32);
		assert_memory_equal(plain.out, dek, 32);
		free(plain.out);
		/* OAEP with SHA-1 and with SHA-256 are different algorithms */
		if (algs[i] != EMU_ALG_RSA1_5) {
			in.alg = algs[i] == EMU_ALG_RSA_OAEP ? EMU_ALG_RSA_OAEP_256 : EMU_ALG_RSA_OAEP;
			assert_int_equal(emu_crypto_run(&k, &in, &other), EMU_CRYPTO_BAD_INPUT);
		}
		free(wrapped.out);
	}
	struct emu_cin aes = { .alg = EMU_ALG_A256KW, .wrap_op = true, .forward = true, .in = dek, .n = 32 };
	assert_int_equal(emu_crypto_run(&k, &aes, &other), EMU_CRYPTO_BAD_ALG);
	EVP_PKEY_free(k.pkey);
}

static void aes_alg_must_match_key_size(void **state)
{
	struct emu_keymat k = { .aes_len = 16 };
	uint8_t dek[16] = { 0 };
	struct emu_cin in = { .alg = EMU_ALG_A256KW, .wrap_op = true, .forward = true, .in = dek, .n = 16 };
	struct emu_cout out;

	assert_int_equal(emu_crypto_run(&k, &in, &out), EMU_CRYPTO_BAD_ALG);
	in.alg = EMU_ALG_A128KW;
	assert_int_equal(emu_crypto_run(&k, &in, &out), EMU_CRYPTO_OK);
	assert_int_equal(out.n, 24);
	free(out.out);
	in.alg = EMU_ALG_RSA_OAEP;
	assert_int_equal(emu_crypto_run(&k, &in, &out), EMU_CRYPTO_BAD_ALG);
	assert_int_equal(emu_alg_parse("CKM_AES_KEY_WRAP_PAD"), EMU_ALG_CKM_KW_PAD);
	assert_int_equal(emu_alg_parse("rsa-oaep"), EMU_ALG_NONE);
}

static void token_verifies_only_untouched_under_its_key(void **state)
{
	uint8_t key[EMU_TOKEN_KEY_LEN] = { 1, 2, 3 }, other[EMU_TOKEN_KEY_LEN] = { 9 };
	struct emu_token_claims c = { .principal = "dev-client", .tenant = "dev-tenant",
				      .aud = "https://vault.azure.net", .iat = 1700000000, .exp = 1700003600, .gen = 7 };
	struct emu_token_claims got;
	char *tok = emu_token_mint(key, &c), *dot;

	assert_non_null(tok);
	assert_int_equal(emu_token_verify(key, tok, &got), 0);
	assert_string_equal(got.principal, "dev-client");
	assert_string_equal(got.tenant, "dev-tenant");
	assert_string_equal(got.aud, "https://vault.azure.net");
	assert_int_equal(got.exp, 1700003600);
	assert_int_equal(got.gen, 7);
	assert_int_equal(emu_token_verify(other, tok, &got), -1);
	/* a changed payload byte, a cut signature, an alg:none header: all refused */
	dot = strchr(tok, '.');
	dot[5] ^= 1;
	assert_int_equal(emu_token_verify(key, tok, &got), -1);
	dot[5] ^= 1;
	tok[strlen(tok) - 2] = '\0';
	assert_int_equal(emu_token_verify(key, tok, &got), -1);
	assert_int_equal(emu_token_verify(key, "eyJhbGciOiJub25lIn0.e30.", &got), -1);
	assert_int_equal(emu_token_verify(key, "", &got), -1);
	free(tok);
}

static const struct CMUnitTest tests[] = {
	CASE(rfc3394_vectors, "emulator - AES key wrap matches the RFC 3394 test vectors"),
	CASE(rfc5649_vectors, "emulator - AES key wrap with padding matches the RFC 5649 test vectors"),
	CASE(rsa_round_trip_per_alg, "emulator - RSA wrap and unwrap round trip with RSA1_5, RSA-OAEP and RSA-OAEP-256"),
	CASE(aes_alg_must_match_key_size, "emulator - an AES algorithm must match the key size and type"),
	CASE(token_verifies_only_untouched_under_its_key, "emulator - an access token verifies under its own key only, and a changed byte or header is refused"),
};

CASES_MAIN("emu-crypto", tests, NULL, NULL)
