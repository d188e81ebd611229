/* test_wrap.c: wrap and unwrap under RSA-OAEP and AES-KWP. */
#include <string.h>

#include <openssl/rand.h>

#include "fixture.h"
#include "tests.h"

static void round_trip(fx *f, const char *label, kb_alg want)
{
	uint8_t dek[32], ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen = sizeof(ct), ptlen;
	kb_alg used = KB_ALG_NONE;
	kb_err err;
	fx_key k;

	fx_open_ok(f, &k, "kek", label);
	assert_int_equal(RAND_bytes(dek, sizeof(dek)), 1);
	assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, &ctlen,
						version, &used, &err), KB_OK);
	assert_int_equal(used, want);
	assert_string_equal(version, "01");
	ptlen = fx_unwrap(&k, 1, version, used, ct, ctlen, pt);
	assert_int_equal(ptlen, sizeof(dek));
	assert_memory_equal(pt, dek, sizeof(dek));
	fx_close(&k);
}

void test_rsa_round_trip(void **state)
{
	round_trip(*state, "rsa-kek", KB_ALG_RSA_OAEP);
}

void test_aes_round_trip(void **state)
{
	round_trip(*state, "aes-kek", KB_ALG_AES_KWP);
}

/* sizes wraps and unwraps every step-th length to max, then refuses max + 1 naming max. */
static void sizes(fx *f, const char *label, kb_alg alg, size_t step, size_t max)
{
	uint8_t dek[KB_SECRET_MAX + 1], ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1], want[32];
	size_t ctlen;
	kb_alg used;
	kb_err err;
	fx_key k;

	fx_open_ok(f, &k, "kek", label);
	assert_int_equal(RAND_bytes(dek, sizeof(dek)), 1);
	for (size_t n = step; n <= max; n += step) {
		ctlen = fx_wrap(&k, 0, NULL, alg, dek, n, ct, version);
		assert_int_equal(fx_unwrap(&k, 0, version, alg, ct, ctlen, pt), n);
		assert_memory_equal(pt, dek, n);
	}
	ctlen = sizeof(ct);
	assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, alg, dek, max + 1, ct, &ctlen, version,
						&used, &err), KB_E_BAD_REQUEST);
	snprintf(want, sizeof(want), "1 to %zu bytes", max);
	assert_non_null(strstr(err.msg, want));
	ctlen = sizeof(ct);
	assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, alg, dek, 0, ct, &ctlen, version, &used,
						&err), KB_E_BAD_REQUEST);
	fx_close(&k);
}

void test_rsa_sizes(void **state)
{
	sizes(*state, "rsa-kek", KB_ALG_RSA_OAEP, 1, 214);
}

void test_aes_sizes(void **state)
{
	uint8_t dek[12] = { 1 }, ct[KB_WRAPPED_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen = sizeof(ct);
	kb_alg used;
	kb_err err;
	fx_key k;

	sizes(*state, "aes-kek", KB_ALG_AES_KWP, 8, KB_SECRET_MAX);
	/*
	 * SoftHSM 2.6.1 gives unwrapped keys back with their RFC 5649 padding, so
	 * only whole 8-byte blocks come back exactly; the rest are refused.
	 */
	fx_open_ok(*state, &k, "kek", "aes-kek");
	for (size_t n = 1; n < sizeof(dek); n += 3) {
		ctlen = sizeof(ct);
		assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, KB_ALG_NONE, dek, n, ct, &ctlen, version,
							&used, &err), KB_E_BAD_REQUEST);
		assert_non_null(strstr(err.msg, "multiples of 8 bytes, 8 to 1024"));
	}
	fx_close(&k);
}

void test_oaep256_unsupported(void **state)
{
	uint8_t dek[32] = { 1 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
	kb_alg used;
	kb_err err;
	fx_key k;

	fx_open_ok(*state, &k, "kek", "rsa-kek");
	assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, KB_ALG_RSA_OAEP_256, dek, sizeof(dek), ct,
						&ctlen, version, &used, &err), KB_E_MECHANISM_UNSUPPORTED);
	assert_non_null(strstr(err.msg, "only does RSA-OAEP with SHA-1"));
	/* cached: the second refusal says the same without asking again */
	ctlen = sizeof(ct);
	assert_int_equal(kb_pkcs11_backend.wrap(k.state, 1, NULL, KB_ALG_RSA_OAEP_256, dek, sizeof(dek), ct,
						&ctlen, version, &used, &err), KB_E_MECHANISM_UNSUPPORTED);
	assert_non_null(strstr(err.msg, "use RSA-OAEP"));

	/* an OAEP-256 ciphertext (any 256 bytes will do) cannot be unwrapped either */
	ctlen = fx_wrap(&k, 0, NULL, KB_ALG_RSA_OAEP, dek, sizeof(dek), ct, version);
	assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, "01", KB_ALG_RSA_OAEP_256, ct, ctlen, pt, &ptlen,
						  &err), KB_E_MECHANISM_UNSUPPORTED);
	assert_non_null(strstr(err.msg, "only does RSA-OAEP with SHA-1"));
	/* and the session is still good */
	assert_int_equal(fx_unwrap(&k, 0, version, KB_ALG_RSA_OAEP, ct, ctlen, pt), sizeof(dek));
	fx_close(&k);

	/* a key whose default is RSA-OAEP-256 is refused at startup */
	fx_conf(*state, &k, "kek256", "rsa-kek");
	k.kc.alg = KB_ALG_RSA_OAEP_256;
	assert_int_equal(fx_open(&k, &err), KB_E_MECHANISM_UNSUPPORTED);
	assert_non_null(strstr(err.msg, "test.conf:9: [key:kek256] alg = RSA-OAEP-256:"));
	fx_close(&k);
}

static void tamper(fx *f, const char *label)
{
	uint8_t dek[32] = { 7 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen, ptlen;
	kb_err err;
	fx_key k;

	fx_open_ok(f, &k, "kek", label);
	ctlen = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, version);
	for (size_t i = 0; i < ctlen; i += ctlen / 7) {
		ct[i] ^= 0x01;
		ptlen = sizeof(pt);
		assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, version, KB_ALG_NONE, ct, ctlen, pt,
							  &ptlen, &err), KB_E_BAD_BLOB);
		ct[i] ^= 0x01;
	}
	ptlen = sizeof(pt);
	assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, version, KB_ALG_NONE, ct, ctlen - 8, pt, &ptlen,
						  &err), KB_E_BAD_BLOB);
	assert_int_equal(fx_unwrap(&k, 0, version, KB_ALG_NONE, ct, ctlen, pt), sizeof(dek));
	fx_close(&k);
}

void test_tampered_is_bad_blob(void **state)
{
	tamper(*state, "rsa-kek");
	tamper(*state, "aes-kek");
}

void test_alg_mismatch(void **state)
{
	uint8_t dek[32] = { 0 }, ct[KB_WRAPPED_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen = sizeof(ct);
	kb_alg used;
	kb_err err;
	fx_key k;

	fx_conf(*state, &k, "kek", "rsa-kek");
	k.kc.alg = KB_ALG_AES_KWP;
	assert_int_equal(fx_open(&k, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "[key:kek] alg: AES-KWP does not fit"));
	fx_close(&k);

	fx_open_ok(*state, &k, "kek", "aes-kek");
	assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, KB_ALG_RSA_OAEP, dek, sizeof(dek), ct, &ctlen,
						version, &used, &err), KB_E_MECHANISM_UNSUPPORTED);
	assert_non_null(strstr(err.msg, "AES key"));
	fx_close(&k);
}

/* AES-GCM in the token takes any length 1..1024; each wrap has its own IV. */
void test_gcm_sizes(void **state)
{
	uint8_t dek[20] = "twenty bytes of dek.", ct1[KB_WRAPPED_MAX], ct2[KB_WRAPPED_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t n1, n2;
	fx_key k;

	sizes(*state, "aes-kek", KB_ALG_AES_GCM, 1, KB_SECRET_MAX);
	fx_open_ok(*state, &k, "kek", "aes-kek");
	n1 = fx_wrap(&k, 0, NULL, KB_ALG_AES_GCM, dek, sizeof(dek), ct1, version);
	n2 = fx_wrap(&k, 0, NULL, KB_ALG_AES_GCM, dek, sizeof(dek), ct2, version);
	assert_int_equal(n1, 12 + sizeof(dek) + 16);
	assert_int_equal(n2, n1);
	assert_memory_not_equal(ct1, ct2, 12); /* a fresh IV per wrap */
	fx_close(&k);
}

/* The key name and version are AAD: the same ciphertext under another name fails its tag. */
void test_gcm_binds_key_and_version(void **state)
{
	uint8_t dek[32] = { 7 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen, ptlen = sizeof(pt);
	kb_err err;
	fx_key a, b;

	fx_open_ok(*state, &a, "kek", "aes-kek");
	fx_open_ok(*state, &b, "other", "aes-kek"); /* the same token object, another key name */
	ctlen = fx_wrap(&a, 0, NULL, KB_ALG_AES_GCM, dek, sizeof(dek), ct, version);
	assert_int_equal(kb_pkcs11_backend.unwrap(b.state, 0, version, KB_ALG_AES_GCM, ct, ctlen, pt, &ptlen,
						  &err), KB_E_BAD_BLOB);
	ct[ctlen - 1] ^= 1;
	ptlen = sizeof(pt);
	assert_int_equal(kb_pkcs11_backend.unwrap(a.state, 0, version, KB_ALG_AES_GCM, ct, ctlen, pt, &ptlen,
						  &err), KB_E_BAD_BLOB);
	fx_close(&a);
	fx_close(&b);
}

/* AES-KW (RFC 3394) wraps 16..1024 bytes in multiples of 8 and says so for the rest. */
void test_kw_sizes(void **state)
{
	uint8_t dek[KB_SECRET_MAX + 8] = { 3 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen;
	kb_alg used;
	kb_err err;
	fx_key k;

	fx_open_ok(*state, &k, "kek", "aes-kek");
	for (size_t n = 16; n <= KB_SECRET_MAX; n += 8) {
		ctlen = fx_wrap(&k, 0, NULL, KB_ALG_AES_KW, dek, n, ct, version);
		assert_int_equal(ctlen, n + 8);
		assert_int_equal(fx_unwrap(&k, 0, version, KB_ALG_AES_KW, ct, ctlen, pt), n);
		assert_memory_equal(pt, dek, n);
	}
	for (size_t n = 1; n < KB_SECRET_MAX + 8; n += n < 24 ? 1 : 1000) {
		if (n % 8 == 0 && n >= 16 && n <= KB_SECRET_MAX)
			continue;
		ctlen = sizeof(ct);
		assert_int_equal(kb_pkcs11_backend.wrap(k.state, 0, NULL, KB_ALG_AES_KW, dek, n, ct, &ctlen,
							version, &used, &err), KB_E_BAD_REQUEST);
		assert_non_null(strstr(err.msg, "16 to 1024 bytes in multiples of 8"));
	}
	fx_close(&k);
}

/*
 * The version alone is AAD too: two versions of one key that share the same
 * AES bytes (imported twice, ids 01 and 02), so only the version in the AAD
 * tells them apart. AES-KWP, which binds nothing, unwraps across them: the
 * twins are one key, and GCM's refusal is the version's doing.
 */
void test_gcm_binds_the_version_alone(void **state)
{
	fx *f = *state;
	uint8_t dek[32] = { 5 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char version[KB_VERSION_MAX + 1];
	size_t ctlen, ptlen = sizeof(pt);
	kb_err err;
	fx_key k;

	fx_export_pin(f);
	assert_int_equal(fx_sh("head -c 32 /dev/urandom > '%s/twin.bin'", f->dir), 0);
	for (int id = 1; id <= 2; id++)
		assert_int_equal(fx_sh(P11TOOL " --write-object '%s/twin.bin' --type secrkey --key-type AES:32 --label twin-aes --id %02d --usage-decrypt --usage-wrap >/dev/null 2>&1",
				       f->module, f->dir, id), 0);
	fx_open_ok(f, &k, "twin", "twin-aes");

	ctlen = fx_wrap(&k, 0, "01", KB_ALG_AES_KWP, dek, sizeof(dek), ct, version);
	assert_string_equal(version, "01");
	assert_int_equal(fx_unwrap(&k, 0, "02", KB_ALG_AES_KWP, ct, ctlen, pt), sizeof(dek));
	assert_memory_equal(pt, dek, sizeof(dek));

	ctlen = fx_wrap(&k, 0, "01", KB_ALG_AES_GCM, dek, sizeof(dek), ct, version);
	assert_int_equal(fx_unwrap(&k, 0, "01", KB_ALG_AES_GCM, ct, ctlen, pt), sizeof(dek));
	assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, "02", KB_ALG_AES_GCM, ct, ctlen, pt, &ptlen, &err),
			 KB_E_BAD_BLOB);
	fx_close(&k);
}
