/* test_describe.c: describe, doctor, random and recovery of lost sessions. */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <p11-kit/pkcs11.h>

#include "fixture.h"
#include "tests.h"

void test_describe(void **state)
{
	kb_key_info info;
	EVP_PKEY *pkey;
	kb_err err;
	BIO *b;
	fx_key k;

	fx_open_ok(*state, &k, "kek", "rsa-kek");
	assert_int_equal(kb_pkcs11_backend.describe(k.state, 0, &info, &err), KB_OK);
	assert_int_equal(info.alg, KB_ALG_RSA_OAEP);
	assert_string_equal(info.kty, "RSA");
	assert_int_equal(info.bits, 2048);
	assert_true(info.enabled);
	assert_string_equal(info.latest, "01");
	assert_int_equal(info.nversions, 1);
	assert_string_equal(info.versions[0].version, "01");
	assert_true(info.versions[0].enabled);
	assert_non_null(strstr(info.detail, "token keybroker"));
	assert_non_null(strstr(info.detail, "label rsa-kek"));
	assert_non_null(strstr(info.key_ops, "unwrapKey"));
	assert_non_null(info.public_pem);
	b = BIO_new_mem_buf(info.public_pem, -1);
	pkey = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	assert_non_null(pkey);
	assert_int_equal(EVP_PKEY_get_bits(pkey), 2048);
	assert_true(EVP_PKEY_is_a(pkey, "RSA"));
	EVP_PKEY_free(pkey);
	BIO_free(b);
	free(info.public_pem);
	fx_close(&k);

	fx_open_ok(*state, &k, "aes", "aes-kek");
	assert_int_equal(kb_pkcs11_backend.describe(k.state, 1, &info, &err), KB_OK);
	assert_int_equal(info.alg, KB_ALG_AES_KWP);
	assert_string_equal(info.kty, "AES");
	assert_int_equal(info.bits, 256);
	assert_true(info.enabled);
	assert_null(info.public_pem);
	fx_close(&k);
}

struct lines {
	int n, fails, warns;
	char text[4096];
};

static void collect(void *ctx, const char *check, const char *status, const char *detail, const char *fix)
{
	struct lines *l = ctx;
	size_t off = strlen(l->text);

	l->n++;
	l->fails += strcmp(status, "fail") == 0;
	l->warns += strcmp(status, "warn") == 0;
	if (strcmp(status, "pass") == 0)
		assert_null(fix);
	else
		assert_non_null(fix);
	snprintf(l->text + off, sizeof(l->text) - off, "%s|%s|%s|%s\n", check, status, detail, fix ? fix : "");
}

void test_doctor(void **state)
{
	struct lines l = { 0 };
	kb_err err;
	fx_key k;

	fx_open_ok(*state, &k, "kek", "rsa-kek");
	assert_int_equal(kb_pkcs11_backend.doctor(k.state, FX_CONTROL, collect, &l, &err), KB_OK);
	if (l.fails || l.warns)
		fail_msg("doctor:\n%s", l.text);
	assert_non_null(strstr(l.text, "module loads|pass"));
	assert_non_null(strstr(l.text, "token present|pass"));
	assert_non_null(strstr(l.text, "login works|pass"));
	assert_non_null(strstr(l.text, "key objects found|pass|1 version"));
	assert_non_null(strstr(l.text, "CKA_WRAP/CKA_UNWRAP/CKA_DECRYPT set|pass"));
	assert_non_null(strstr(l.text, "mechanism supported|pass"));
	assert_non_null(strstr(l.text, "RSA-OAEP-256 not supported"));
	assert_non_null(strstr(l.text, "wrap/unwrap round trip|pass"));
	fx_close(&k);

	memset(&l, 0, sizeof(l));
	fx_open_ok(*state, &k, "aes", "aes-kek");
	assert_int_equal(kb_pkcs11_backend.doctor(k.state, FX_CONTROL, collect, &l, &err), KB_OK);
	if (l.fails || l.warns)
		fail_msg("doctor:\n%s", l.text);
	assert_non_null(strstr(l.text, "CKM_AES_KEY_WRAP_PAD"));
	fx_close(&k);

	/* a readable PIN file is a warning with its fix */
	memset(&l, 0, sizeof(l));
	fx_open_ok(*state, &k, "aes", "aes-kek");
	assert_int_equal(fx_sh("chmod 644 '%s'", ((fx *)*state)->pin_file), 0);
	assert_int_equal(kb_pkcs11_backend.doctor(k.state, FX_CONTROL, collect, &l, &err), KB_OK);
	assert_int_equal(l.warns, 1);
	assert_non_null(strstr(l.text, "pin file|warn"));
	assert_non_null(strstr(l.text, "chmod 600"));
	fx_sh("chmod 600 '%s'", ((fx *)*state)->pin_file);
	fx_close(&k);
}

void test_random(void **state)
{
	uint8_t a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };
	kb_err err;
	fx_key k;

	fx_open_ok(*state, &k, "kek", "aes-kek");
	assert_non_null(kb_pkcs11_backend.random);
	assert_int_equal(kb_pkcs11_backend.random(k.state, 0, a, sizeof(a), &err), KB_OK);
	assert_int_equal(kb_pkcs11_backend.random(k.state, 0, b, sizeof(b), &err), KB_OK);
	assert_memory_not_equal(a, zero, sizeof(a));
	assert_memory_not_equal(a, b, sizeof(a));
	fx_close(&k);
}

/*
 * close_all_sessions closes every session of this process on the module, as
 * a token reset does: the sessions and the login are gone.
 */
static void close_all_sessions(const char *module)
{
	void *dl = dlopen(module, RTLD_NOW | RTLD_NOLOAD);
	CK_C_GetFunctionList getf;
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slots[16];
	CK_ULONG n = 16;

	assert_non_null(dl);
	getf = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	assert_non_null(getf);
	assert_int_equal(getf(&f), CKR_OK);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	for (CK_ULONG i = 0; i < n; i++)
		f->C_CloseAllSessions(slots[i]);
	dlclose(dl);
}

void test_session_recovery(void **state)
{
	fx *f = *state;
	uint8_t dek[32] = { 8 }, ct[KB_WRAPPED_MAX], act[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char v[KB_VERSION_MAX + 1];
	size_t n, an;
	fx_key rsa, aes;

	fx_open_ok(f, &rsa, "rsa", "rsa-kek");
	fx_open_ok(f, &aes, "aes", "aes-kek");
	n = fx_wrap(&rsa, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	an = fx_wrap(&aes, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), act, v);
	for (int round = 0; round < 2; round++) {
		close_all_sessions(f->module);
		/* every slot comes back on its next call, logged in again */
		for (int slot = 0; slot < FX_NSLOTS; slot++) {
			assert_int_equal(fx_unwrap(&rsa, slot, "01", KB_ALG_NONE, ct, n, pt), sizeof(dek));
			assert_memory_equal(pt, dek, sizeof(dek));
			assert_int_equal(fx_unwrap(&aes, slot, "01", KB_ALG_NONE, act, an, pt), sizeof(dek));
		}
	}
	fx_close(&aes);
	fx_close(&rsa);
}
