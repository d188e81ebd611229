/* test_keyid: the KMS face's key_id and annotation texts (broker/kms_keyid.c). */
#include <stdbool.h>

#include "kms_keyid.h"
#include "../unit/unit.h"

static void key_id_round_trips_key_version_and_fingerprint(void **state)
{
	kb_kms_key_id id = { .key = "orders", .version = "0f3a9e1c2b7d4e5f", .fp = "5b22f36bfadd7a0c" }, back;
	char text[KB_KMS_KEY_ID_MAX + 1];
	kb_err err;

	kb_kms_key_id_format(&id, text, sizeof(text));
	assert_string_equal(text, "kb1/orders/0f3a9e1c2b7d4e5f/5b22f36bfadd7a0c");
	assert_int_equal(kb_kms_key_id_parse(text, strlen(text), &back, &err), KB_OK);
	assert_string_equal(back.key, "orders");
	assert_string_equal(back.version, "0f3a9e1c2b7d4e5f");
	assert_string_equal(back.fp, "5b22f36bfadd7a0c");
}

static void key_id_malformed_is_refused_with_a_message(void **state)
{
	static const char *const bad[] = {
		"", "kb1/", "kb1/orders", "kb1/orders/01", "kb1/orders/01/", "kb1//01/5b22f36bfadd7a0c",
		"kb1/orders//5b22f36bfadd7a0c", "kb1/orders/01/5B22F36BFADD7A0C", "kb1/orders/01/5b22f36bfadd7a0",
		"kb1/orders/01/5b22f36bfadd7a0c0", "kb1/orders/01/5b22f36bfadd7a0c/x", "kb2/orders/01/5b22f36bfadd7a0c",
		"kb1/or:ders/01/5b22f36bfadd7a0c", "kb1/orders/0 1/5b22f36bfadd7a0c", "k8s-key-1",
	};
	kb_kms_key_id id;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		kb_err err = { 0 };
		if (kb_kms_key_id_parse(bad[i], strlen(bad[i]), &id, &err) != KB_E_BAD_REQUEST)
			fail_msg("key_id \"%s\" was accepted", bad[i]);
		assert_true(strstr(err.msg, "key_id") != NULL);
	}
}

static void key_id_with_a_nul_inside_is_refused(void **state)
{
	static const char text[] = "kb1/orders/01/5b22f36b\0dd7a0c";
	kb_kms_key_id id;
	kb_err err;

	assert_int_equal(kb_kms_key_id_parse(text, sizeof(text) - 1, &id, &err), KB_E_BAD_REQUEST);
}

static void fingerprint_differs_with_the_material(void **state)
{
	char a[KB_KMS_FP_LEN + 1], b[KB_KMS_FP_LEN + 1];

	kb_kms_fingerprint("public key one", 14, a);
	kb_kms_fingerprint("public key two", 14, b);
	assert_int_equal(strlen(a), KB_KMS_FP_LEN);
	assert_string_not_equal(a, b);
	kb_kms_fingerprint("public key one", 14, b);
	assert_string_equal(a, b);
}

static void annotation_keys_must_be_dns_names(void **state)
{
	static const char *const good[] = { "format.keybroker.io", "a.b", "x-1.example.com" };
	static const char *const bad[] = { "keybroker.io/format", "Format.keybroker.io", "keybroker", ".a.b",
					   "a..b", "a.b.", "-a.b", "a-.b", "a_b.c", "" };
	size_t total;
	kb_err err;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		total = 0;
		if (kb_kms_annotation_check(good[i], strlen(good[i]), 3, &total, &err) != KB_OK)
			fail_msg("\"%s\" was refused: %s", good[i], err.msg);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		total = 0;
		if (kb_kms_annotation_check(bad[i], strlen(bad[i]), 3, &total, &err) != KB_E_BAD_REQUEST)
			fail_msg("\"%s\" was accepted", bad[i]);
	}
}

static void annotations_over_32_kb_in_all_are_refused(void **state)
{
	size_t total = 0;
	kb_err err;

	assert_int_equal(kb_kms_annotation_check("a.example.com", 13, 16000, &total, &err), KB_OK);
	assert_int_equal(kb_kms_annotation_check("b.example.com", 13, 16000, &total, &err), KB_OK);
	assert_int_equal(kb_kms_annotation_check("c.example.com", 13, 1000, &total, &err), KB_E_BAD_REQUEST);
	assert_true(strstr(err.msg, "32768") != NULL);
}

static const struct CMUnitTest tests[] = {
	CASE(key_id_round_trips_key_version_and_fingerprint, "kms - key_id round trips key, version and fingerprint"),
	CASE(key_id_malformed_is_refused_with_a_message, "kms - a malformed key_id is refused with a message"),
	CASE(key_id_with_a_nul_inside_is_refused, "kms - key_id with a NUL inside is refused"),
	CASE(fingerprint_differs_with_the_material, "kms - fingerprint differs with the material"),
	CASE(annotation_keys_must_be_dns_names, "kms - annotation keys must be DNS names"),
	CASE(annotations_over_32_kb_in_all_are_refused, "kms - annotations over 32 KB in all are refused"),
};

CASES_MAIN("kms_keyid", tests, NULL, NULL)
