/* test_versions.c: versions are objects sharing a label, told apart by CKA_ID. */
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "tests.h"

static void rotate(fx *f, const char *label)
{
	uint8_t dek[32] = { 3 }, ct1[KB_WRAPPED_MAX], ct2[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char v1[KB_VERSION_MAX + 1], v2[KB_VERSION_MAX + 1], rotated[KB_VERSION_MAX + 1];
	size_t n1, n2;
	kb_key_info info;
	kb_err err;
	fx_key k;

	fx_open_ok(f, &k, "kek", label);
	n1 = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct1, v1);
	assert_string_equal(v1, "01");
	assert_int_equal(kb_pkcs11_backend.rotate(k.state, FX_CONTROL, rotated, &err), KB_OK);
	assert_string_equal(rotated, "02");
	n2 = fx_wrap(&k, 1, NULL, KB_ALG_NONE, dek, sizeof(dek), ct2, v2);
	assert_string_equal(v2, "02");
	assert_int_equal(fx_unwrap(&k, 2, "01", KB_ALG_NONE, ct1, n1, pt), sizeof(dek));
	assert_memory_equal(pt, dek, sizeof(dek));
	assert_int_equal(fx_unwrap(&k, 3, "02", KB_ALG_NONE, ct2, n2, pt), sizeof(dek));
	assert_memory_equal(pt, dek, sizeof(dek));

	/* the new version is the same type and size, and fully usable */
	assert_int_equal(kb_pkcs11_backend.describe(k.state, 0, &info, &err), KB_OK);
	assert_int_equal(info.nversions, 2);
	assert_string_equal(info.versions[0].version, "01");
	assert_string_equal(info.versions[1].version, "02");
	assert_string_equal(info.latest, "02");
	assert_int_equal(info.bits, strcmp(label, "rsa-kek") == 0 ? 2048 : 256);
	assert_true(info.enabled);
	free(info.public_pem);

	/* a blob under 02 does not unwrap as 01 */
	size_t ptlen = sizeof(pt);
	assert_int_not_equal(kb_pkcs11_backend.unwrap(k.state, 0, "01", KB_ALG_NONE, ct2, n2, pt, &ptlen, &err),
			     KB_OK);
	fx_close(&k);

	/* a new process (a restart) sees both versions and picks 02 */
	fx_open_ok(f, &k, "kek", label);
	n2 = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct2, v2);
	assert_string_equal(v2, "02");
	fx_close(&k);
}

void test_rotate(void **state)
{
	rotate(*state, "rsa-kek");
	rotate(*state, "aes-kek");
}

void test_odd_id(void **state)
{
	fx *f = *state;
	uint8_t dek[16] = { 9 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char v[KB_VERSION_MAX + 1], rotated[KB_VERSION_MAX + 1];
	size_t n;
	kb_err err;
	fx_key k;

	fx_export_pin(f);
	assert_int_equal(fx_sh(P11TOOL " --keypairgen --key-type rsa:2048 --label odd-kek --id a1b2c3 >/dev/null 2>&1",
			       f->module), 0);
	assert_int_equal(fx_sh(P11TOOL " --keygen --key-type AES:16 --label odd-aes --id ffff >/dev/null 2>&1",
			       f->module), 0);

	fx_open_ok(f, &k, "odd", "odd-kek");
	n = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	assert_string_equal(v, "a1b2c3");
	assert_int_equal(kb_pkcs11_backend.rotate(k.state, 0, rotated, &err), KB_OK);
	assert_string_equal(rotated, "a1b2c4");
	assert_int_equal(fx_unwrap(&k, 1, "a1b2c3", KB_ALG_NONE, ct, n, pt), sizeof(dek));
	n = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	assert_string_equal(v, "a1b2c4");
	fx_close(&k);

	/* ffff + 1 overflows its two bytes: 010000, and AES-128 stays AES-128 */
	fx_open_ok(f, &k, "odd-aes", "odd-aes");
	assert_int_equal(kb_pkcs11_backend.rotate(k.state, 0, rotated, &err), KB_OK);
	assert_string_equal(rotated, "010000");
	n = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	assert_string_equal(v, "010000");
	assert_int_equal(fx_unwrap(&k, 1, v, KB_ALG_NONE, ct, n, pt), sizeof(dek));
	kb_key_info info;
	assert_int_equal(kb_pkcs11_backend.describe(k.state, 0, &info, &err), KB_OK);
	assert_int_equal(info.bits, 128);
	fx_close(&k);
}

void test_unknown_version(void **state)
{
	uint8_t ct[256] = { 0 }, pt[KB_SECRET_MAX];
	size_t ptlen = sizeof(pt);
	kb_err err;
	fx_key k;

	fx_open_ok(*state, &k, "kek", "rsa-kek");
	assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, "7f", KB_ALG_NONE, ct, sizeof(ct), pt, &ptlen,
						  &err), KB_E_UNKNOWN_VERSION);
	assert_non_null(strstr(err.msg, "7f"));
	ptlen = sizeof(pt);
	assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, "not-hex", KB_ALG_NONE, ct, sizeof(ct), pt,
						  &ptlen, &err), KB_E_UNKNOWN_VERSION);
	fx_close(&k);
}

void test_found_on_miss(void **state)
{
	fx *f = *state;
	uint8_t dek[16] = { 4 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char v[KB_VERSION_MAX + 1];
	size_t n;
	fx_key k;

	fx_open_ok(f, &k, "kek", "aes-kek");
	fx_export_pin(f);
	assert_int_equal(fx_sh(P11TOOL " --keygen --key-type AES:32 --label aes-kek --id 05 >/dev/null 2>&1",
			       f->module), 0);
	n = fx_wrap(&k, 0, "05", KB_ALG_NONE, dek, sizeof(dek), ct, v);
	assert_string_equal(v, "05");
	assert_int_equal(fx_unwrap(&k, 1, "05", KB_ALG_NONE, ct, n, pt), sizeof(dek));
	/* and it is now the latest */
	n = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	assert_string_equal(v, "05");
	fx_close(&k);
}

void test_deleted_version(void **state)
{
	fx *f = *state;
	uint8_t dek[16] = { 5 }, ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	char v[KB_VERSION_MAX + 1], rotated[KB_VERSION_MAX + 1];
	size_t n, ptlen = sizeof(pt);
	kb_err err;
	fx_key k;

	fx_open_ok(f, &k, "kek", "aes-kek");
	assert_int_equal(kb_pkcs11_backend.rotate(k.state, 0, rotated, &err), KB_OK);
	n = fx_wrap(&k, 0, "01", KB_ALG_NONE, dek, sizeof(dek), ct, v);
	fx_export_pin(f);
	assert_int_equal(fx_sh(P11TOOL " --delete-object --type secrkey --id 01 >/dev/null 2>&1", f->module), 0);
	assert_int_equal(kb_pkcs11_backend.unwrap(k.state, 0, "01", KB_ALG_NONE, ct, n, pt, &ptlen, &err),
			 KB_E_UNKNOWN_VERSION);
	assert_non_null(strstr(err.msg, "01"));
	/* the other version is untouched */
	n = fx_wrap(&k, 0, NULL, KB_ALG_NONE, dek, sizeof(dek), ct, v);
	assert_string_equal(v, "02");
	assert_int_equal(fx_unwrap(&k, 1, "02", KB_ALG_NONE, ct, n, pt), sizeof(dek));
	fx_close(&k);
}
