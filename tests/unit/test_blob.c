/*
 * test_blob: the wrapped-key blob, the string clients keep for ever.
 *
 * The golden lines in tests/golden/blobs.txt freeze formats v1 and v2; the rest shows
 * that whatever is not a blob we wrote (truncated, altered, malformed) is a
 * bad_blob and never something else.
 */
#include <stdbool.h>
#include <stdlib.h>

#include <openssl/sha.h>

#include "b64.h"
#include "blob.h"
#include "unit.h"

static kb_blob make(const char *key, const char *version, kb_alg alg, size_t ctlen)
{
	kb_blob b;

	memset(&b, 0, sizeof(b));
	strcpy(b.key, key);
	strcpy(b.version, version);
	b.alg = alg;
	b.ctlen = ctlen;
	for (size_t i = 0; i < ctlen; i++)
		b.ct[i] = (uint8_t)(i * 151 + 7);
	return b;
}

static void encode(const kb_blob *b, char *out)
{
	kb_err err = { 0 };

	if (kb_blob_encode(b, out, KB_BLOB_MAX + 1, &err) != KB_OK)
		fail_msg("encode: %s", err.msg);
}

static void assert_same_blob(const kb_blob *got, const kb_blob *want)
{
	assert_string_equal(got->key, want->key);
	assert_string_equal(got->version, want->version);
	assert_int_equal(got->alg, want->alg);
	assert_int_equal(got->ctlen, want->ctlen);
	assert_memory_equal(got->ct, want->ct, want->ctlen);
	assert_string_equal(got->kid, "");
}

/* sealed appends the v1 check to body (everything up to the last ':'). */
static void sealed(const char *body, char *out)
{
	uint8_t md[SHA256_DIGEST_LENGTH];
	size_t n = strlen(body);

	SHA256((const uint8_t *)body, n, md);
	memcpy(out, body, n);
	kb_b64_encode(md, 6, out + n, KB_B64_URL);
}

static kb_code decode_str(const char *s, kb_blob *b, kb_err *err)
{
	return kb_blob_decode(s, strlen(s), b, err);
}

static void expect_bad(const char *s)
{
	kb_blob b;
	kb_err err = { 0 };
	kb_code rc = decode_str(s, &b, &err);

	if (rc != KB_E_BAD_BLOB)
		fail_msg("\"%.200s\" decoded to %s, not bad_blob", s, kb_code_name(rc));
	assert_true(strlen(err.msg) > 0);
}

static void blob_round_trips_every_algorithm_and_size(void **state)
{
	static const size_t sizes[] = { 1, 2, 3, 16, 40, 255, 256, 512, 1024, KB_WRAPPED_MAX };
	char s[KB_BLOB_MAX + 1];

	for (int alg = KB_ALG_NONE + 1; alg < KB_ALG_COUNT; alg++) {
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			kb_blob in = make("billing-db", "7f_v-2", (kb_alg)alg, sizes[i]), out;
			kb_err err = { 0 };

			encode(&in, s);
			assert_int_equal(strncmp(s, "kb1:billing-db:7f_v-2:", 22), 0);
			if (kb_blob_decode(s, strlen(s), &out, &err) != KB_OK)
				fail_msg("decode of %s: %s", s, err.msg);
			assert_same_blob(&out, &in);
		}
	}
}

static void blob_encode_refuses_invalid_fields(void **state)
{
	char s[KB_BLOB_MAX + 1];
	kb_err err = { 0 };
	kb_blob b;

	b = make("", "1", KB_ALG_RSA_OAEP, 16);
	assert_int_equal(kb_blob_encode(&b, s, sizeof(s), &err), KB_E_INTERNAL);
	b = make("a:b", "1", KB_ALG_RSA_OAEP, 16);
	assert_int_equal(kb_blob_encode(&b, s, sizeof(s), &err), KB_E_INTERNAL);
	b = make("a", "", KB_ALG_RSA_OAEP, 16);
	assert_int_equal(kb_blob_encode(&b, s, sizeof(s), &err), KB_E_INTERNAL);
	b = make("a", "1", KB_ALG_NONE, 16);
	assert_int_equal(kb_blob_encode(&b, s, sizeof(s), &err), KB_E_INTERNAL);
	b = make("a", "1", KB_ALG_RSA_OAEP, 0);
	assert_int_equal(kb_blob_encode(&b, s, sizeof(s), &err), KB_E_INTERNAL);
	b = make("a", "1", KB_ALG_RSA_OAEP, 16);
	b.ctlen = KB_WRAPPED_MAX + 1;
	assert_int_equal(kb_blob_encode(&b, s, sizeof(s), &err), KB_E_INTERNAL);
	/* an output buffer one byte short is refused, one that fits exactly is not */
	b = make("a", "1", KB_ALG_RSA_OAEP, 16);
	encode(&b, s);
	assert_int_equal(kb_blob_encode(&b, s, strlen(s), &err), KB_E_INTERNAL);
	assert_int_equal(kb_blob_encode(&b, s, strlen(s) + 1, &err), KB_OK);
}

/* golden_open returns the golden file named by KB_GOLDEN_BLOBS. */
static FILE *golden_open(void)
{
	const char *path = getenv("KB_GOLDEN_BLOBS");
	FILE *f;

	if (path == NULL)
		fail_msg("KB_GOLDEN_BLOBS is not set");
	f = fopen(path, "r");
	if (f == NULL)
		fail_msg("cannot open %s", path);
	return f;
}

typedef struct golden {
	char blob[KB_BLOB_MAX + 1];
	char key[80], version[80], fp[40], alg[40];
	char cthex[2 * KB_WRAPPED_MAX + 1];
} golden;

/* golden_next reads the next non-comment line into g; false at the end. */
static bool golden_next(FILE *f, golden *g)
{
	static char line[16384];

	while (fgets(line, sizeof(line), f)) {
		if (line[0] == '#' || line[0] == '\n')
			continue;
		/* a kb2 line has the fingerprint after the version */
		g->fp[0] = '\0';
		if (strncmp(line, "kb2:", 4) == 0 ? sscanf(line, "%4096s %79s %79s %39s %39s %4096s", g->blob, g->key,
							     g->version, g->fp, g->alg, g->cthex) != 6
						  : sscanf(line, "%4096s %79s %79s %39s %4096s", g->blob, g->key,
							     g->version, g->alg, g->cthex) != 5)
			fail_msg("golden line is malformed: %s", line);
		return true;
	}
	return false;
}

static void blob_golden_v1_and_v2_blobs_decode_to_their_recorded_fields(void **state)
{
	FILE *f = golden_open();
	golden g;
	int n = 0, v2 = 0;

	while (golden_next(f, &g)) {
		kb_blob b;
		kb_err err = { 0 };
		char hex[2 * KB_WRAPPED_MAX + 1];

		if (kb_blob_decode(g.blob, strlen(g.blob), &b, &err) != KB_OK)
			fail_msg("golden blob %s no longer decodes: %s", g.blob, err.msg);
		assert_string_equal(b.key, g.key);
		assert_string_equal(b.version, g.version);
		assert_string_equal(kb_alg_name(b.alg), g.alg);
		unit_hex(b.ct, b.ctlen, hex);
		assert_string_equal(hex, g.cthex);
		assert_string_equal(b.kid, "");
		assert_string_equal(b.fp, g.fp);
		v2 += g.fp[0] != '\0';
		n++;
	}
	fclose(f);
	assert_true(n >= 4);
	assert_true(v2 >= 4);
}

static void blob_golden_v1_and_v2_blobs_are_what_the_encoder_still_writes(void **state)
{
	FILE *f = golden_open();
	golden g;

	while (golden_next(f, &g)) {
		kb_blob b;
		char s[KB_BLOB_MAX + 1];

		memset(&b, 0, sizeof(b));
		strcpy(b.key, g.key);
		strcpy(b.version, g.version);
		strcpy(b.fp, g.fp);
		b.alg = kb_alg_parse(g.alg);
		b.ctlen = strlen(g.cthex) / 2;
		for (size_t i = 0; i < b.ctlen; i++) {
			unsigned v;
			sscanf(g.cthex + 2 * i, "%2x", &v);
			b.ct[i] = (uint8_t)v;
		}
		encode(&b, s);
		assert_string_equal(s, g.blob);
	}
	fclose(f);
}

static void blob_every_truncation_is_rejected(void **state)
{
	FILE *f = golden_open();
	golden g;

	while (golden_next(f, &g)) {
		size_t n = strlen(g.blob);

		for (size_t k = 0; k < n; k++) {
			kb_blob b;
			kb_err err = { 0 };
			kb_code rc = kb_blob_decode(g.blob, k, &b, &err);

			if (rc != KB_E_BAD_BLOB)
				fail_msg("the first %zu bytes of %s gave %s", k, g.blob, kb_code_name(rc));
		}
	}
	fclose(f);
}

static void blob_every_single_bit_flip_is_rejected(void **state)
{
	FILE *f = golden_open();
	golden g;

	while (golden_next(f, &g)) {
		size_t n = strlen(g.blob);

		for (size_t i = 0; i < n; i++) {
			for (int bit = 0; bit < 8; bit++) {
				char s[KB_BLOB_MAX + 1];
				kb_blob b;
				kb_err err = { 0 };
				kb_code rc;

				memcpy(s, g.blob, n + 1);
				s[i] = (char)(s[i] ^ (1 << bit));
				rc = kb_blob_decode(s, n, &b, &err);
				if (rc != KB_E_BAD_BLOB)
					fail_msg("flipping bit %d of byte %zu of %s gave %s", bit, i,
						 g.blob, kb_code_name(rc));
			}
		}
	}
	fclose(f);
}

static void blob_well_sealed_but_malformed_v1_fields_are_rejected(void **state)
{
	/* each has a correct check, so only the field rules can refuse it */
	static const char *const bodies[] = {
		"kb1::1:RSA-OAEP:AAEC:",                  /* empty key */
		"kb1:a.b:1:RSA-OAEP:AAEC:",               /* bad key character */
		"kb1:a:1/2:RSA-OAEP:AAEC:",               /* bad version character */
		"kb1:a::RSA-OAEP:AAEC:",                  /* empty version */
		"kb1:a:1::AAEC:",                         /* empty algorithm */
		"kb1:a:1:rsa-oaep:AAEC:",                 /* not the canonical spelling */
		"kb1:a:1:CKM_AES_KEY_WRAP_PAD:AAEC:",     /* an alias, not the canonical name */
		"kb1:a:1:ROT13:AAEC:",                    /* unknown algorithm */
		"kb1:a:1:RSA-OAEP::",                     /* empty ciphertext */
		"kb1:a:1:RSA-OAEP:AA+/:",                 /* standard alphabet */
		"kb1:a:1:RSA-OAEP:AAF:",                  /* non-zero trailing bits */
		"kb1:a:1:RSA-OAEP:AAEC:AAEC:",            /* one field too many */
		"kb1:a:RSA-OAEP:AAEC:",                   /* one field too few */
		"kb1:a:1:RSA-OAEP:",                      /* no ciphertext field */
		"kb2:a:1:RSA-OAEP:AAEC:",                 /* kb2 without its fingerprint */
		"kb3:a:1:0123456789abcdef:RSA-OAEP:AAEC:", /* a format we do not know */
		"KB1:a:1:RSA-OAEP:AAEC:",
		"kb1:x12345678901234567890123456789012345678901234567890123456789012345:1:RSA-OAEP:AAEC:",
	};
	char s[512];

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		sealed(bodies[i], s);
		expect_bad(s);
	}
	/* and the same construction is accepted when the fields are right */
	sealed("kb1:a:1:RSA-OAEP:AAEC:", s);
	{
		kb_blob b;
		kb_err err = { 0 };
		assert_int_equal(decode_str(s, &b, &err), KB_OK);
		assert_int_equal(b.ctlen, 3);
	}
}

static void blob_well_sealed_but_malformed_v2_fingerprints_are_rejected(void **state)
{
	static const char *const bodies[] = {
		"kb2:a:1::RSA-OAEP:AAEC:",                   /* empty fingerprint */
		"kb2:a:1:0123456789abcde:RSA-OAEP:AAEC:",    /* 15 digits */
		"kb2:a:1:0123456789abcdef0:RSA-OAEP:AAEC:",  /* 17 digits */
		"kb2:a:1:0123456789ABCDEF:RSA-OAEP:AAEC:",   /* upper case */
		"kb2:a:1:0123456789abcdeg:RSA-OAEP:AAEC:",   /* not hex */
		"kb1:a:1:0123456789abcdef:RSA-OAEP:AAEC:",   /* a fingerprint in a kb1 blob */
	};
	char s[512];
	kb_blob b, in = make("a", "1", KB_ALG_RSA_OAEP, 3);
	kb_err err = { 0 };

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		sealed(bodies[i], s);
		expect_bad(s);
	}
	sealed("kb2:a:1:0123456789abcdef:RSA-OAEP:AAEC:", s);
	assert_int_equal(decode_str(s, &b, &err), KB_OK);
	assert_string_equal(b.fp, "0123456789abcdef");
	/* the encoder writes kb2 only with a valid fingerprint */
	strcpy(in.fp, "0123456789ABCDEF");
	assert_int_equal(kb_blob_encode(&in, s, sizeof(s), &err), KB_E_INTERNAL);
}

static void blob_empty_or_foreign_strings_are_rejected(void **state)
{
	kb_blob b;
	kb_err err = { 0 };

	assert_int_equal(kb_blob_decode("", 0, &b, &err), KB_E_BAD_BLOB);
	expect_bad("kb1");
	expect_bad("kb1:");
	expect_bad("hello");
	expect_bad("eyJhbGciOiJSU0EtT0FFUCJ9");
	expect_bad("null");
	expect_bad("[1,2]");
}

static void blob_over_4096_bytes_is_rejected(void **state)
{
	static char s[KB_BLOB_MAX + 2];
	kb_blob in = make("a", "1", KB_ALG_RSA_OAEP, 16), b;
	kb_err err = { 0 };
	size_t n;

	/* a valid blob followed by padding, to 4097 bytes: length is checked first */
	encode(&in, s);
	n = strlen(s);
	memset(s + n, 'A', sizeof(s) - 1 - n);
	s[sizeof(s) - 1] = '\0';
	assert_int_equal(kb_blob_decode(s, KB_BLOB_MAX + 1, &b, &err), KB_E_BAD_BLOB);
	assert_non_null(strstr(err.msg, "4096"));
	/* a sealed v1 blob whose ciphertext is over KB_WRAPPED_MAX is refused */
	{
		static char body[KB_BLOB_MAX + 1], big[KB_BLOB_MAX + 16];
		uint8_t ct[KB_WRAPPED_MAX + 3] = { 0 };
		size_t o = (size_t)sprintf(body, "kb1:a:1:RSA-OAEP:");

		o += kb_b64_encode(ct, sizeof(ct), body + o, KB_B64_URL);
		body[o++] = ':';
		body[o] = '\0';
		sealed(body, big);
		assert_true(strlen(big) <= KB_BLOB_MAX);
		expect_bad(big);
	}
}

static void blob_azure_raw_form_decodes_kid_version_and_alg(void **state)
{
	const char *s = "{\"kid\":\"https://x.vault.azure.net/keys/k/0123abcd\",\"alg\":\"RSA-OAEP-256\","
			"\"value\":\"AAECAwQF_-8\"}";
	static const uint8_t want[] = { 0, 1, 2, 3, 4, 5, 0xff, 0xef };
	kb_blob b;
	kb_err err = { 0 };

	if (decode_str(s, &b, &err) != KB_OK)
		fail_msg("%s", err.msg);
	assert_string_equal(b.key, "");
	assert_string_equal(b.kid, "https://x.vault.azure.net/keys/k/0123abcd");
	assert_string_equal(b.version, "0123abcd");
	assert_int_equal(b.alg, KB_ALG_RSA_OAEP_256);
	assert_int_equal(b.ctlen, sizeof(want));
	assert_memory_equal(b.ct, want, sizeof(want));

	/* Managed HSM's alias of AES-KWP, padded base64url and other field orders too */
	s = "{ \"value\" : \"AAECAw==\", \"alg\":\"CKM_AES_KEY_WRAP_PAD\","
	    " \"kid\":\"https://h.managedhsm.azure.net/keys/aes/9f8e7d\" }";
	if (decode_str(s, &b, &err) != KB_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(b.alg, KB_ALG_AES_KWP);
	assert_string_equal(b.version, "9f8e7d");
	assert_int_equal(b.ctlen, 4);
}

static void blob_bad_azure_raw_forms_are_rejected(void **state)
{
	static const char *const bad[] = {
		"{",
		"{}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"value\":\"AAEC\"}",
		"{\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}",
		"{\"kid\":1,\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":null,\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\",\"value\":[1]}",
		"{\"kid\":\"http://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/secrets/k/1\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/a.b\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"ROT13\",\"value\":\"AAEC\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\",\"value\":\"\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\",\"value\":\"AA+/\"}",
		"{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\",\"value\":\"AAF\"}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad(bad[i]);
}

static void blob_raw_kid_over_512_bytes_is_rejected(void **state)
{
	char kid[KB_KID_MAX + 2], s[KB_KID_MAX + 128];
	size_t n = (size_t)sprintf(kid, "https://x.vault.azure.net/keys/k/");

	memset(kid + n, 'v', sizeof(kid) - 1 - n);
	kid[sizeof(kid) - 1] = '\0';
	/* the last segment is a version: too long for one, and the kid too long */
	sprintf(s, "{\"kid\":\"%s\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}", kid);
	expect_bad(s);
}

static void blob_v1_ciphertext_with_padding_is_rejected(void **state)
{
	char s[128];

	/* v1 says unpadded: "AAE" is the only spelling of 00 01, so "AAE=" is not a blob */
	sealed("kb1:a:1:RSA-OAEP:AAE=:", s);
	expect_bad(s);
}

static void blob_raw_kid_without_a_version_is_rejected(void **state)
{
	/* a versionless kid names "latest", which a stored blob must never do */
	expect_bad("{\"kid\":\"https://x.vault.azure.net/keys/k\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}");
	expect_bad("{\"kid\":\"https://x.vault.azure.net/keys/\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}");
}

static void blob_raw_form_with_text_after_the_object_is_rejected(void **state)
{
	expect_bad("{\"kid\":\"https://x.vault.azure.net/keys/k/1\",\"alg\":\"RSA-OAEP\",\"value\":\"AAEC\"}xyz");
}

static void blob_name_valid_accepts_1_to_64_of_a_z_digits_dash_underscore(void **state)
{
	char s[80];

	assert_false(kb_name_valid("", 0));
	assert_true(kb_name_valid("a", 1));
	assert_true(kb_name_valid("-", 1));
	assert_true(kb_name_valid("_", 1));
	assert_true(kb_name_valid("AZaz09-_", 8));
	memset(s, 'k', sizeof(s));
	assert_true(kb_name_valid(s, 64));
	assert_false(kb_name_valid(s, 65));
	for (const char *bad = ".:/ \t\n@+=~%\"\\"; *bad; bad++) {
		char one[3] = { 'a', *bad, 0 };
		if (kb_name_valid(one, 2))
			fail_msg("\"%s\" was taken for a name", one);
	}
	assert_false(kb_name_valid("caf\xc3\xa9", 5));
	assert_false(kb_name_valid("a\0b", 3));
	/* only n bytes are looked at */
	assert_true(kb_name_valid("ab.c", 2));
}

static const struct CMUnitTest tests[] = {
	CASE(blob_round_trips_every_algorithm_and_size, "blob - round trips every algorithm and size"),
	CASE(blob_encode_refuses_invalid_fields, "blob - encode refuses invalid fields"),
	CASE(blob_golden_v1_and_v2_blobs_decode_to_their_recorded_fields, "blob - golden v1 and v2 blobs decode to their recorded fields"),
	CASE(blob_golden_v1_and_v2_blobs_are_what_the_encoder_still_writes, "blob - golden v1 and v2 blobs are what the encoder still writes"),
	CASE(blob_every_truncation_is_rejected, "blob - every truncation is rejected"),
	CASE(blob_every_single_bit_flip_is_rejected, "blob - every single bit flip is rejected"),
	CASE(blob_well_sealed_but_malformed_v1_fields_are_rejected, "blob - well-sealed but malformed v1 fields are rejected"),
	CASE(blob_well_sealed_but_malformed_v2_fingerprints_are_rejected, "blob - well-sealed but malformed v2 fingerprints are rejected"),
	CASE(blob_empty_or_foreign_strings_are_rejected, "blob - empty or foreign strings are rejected"),
	CASE(blob_over_4096_bytes_is_rejected, "blob - over 4096 bytes is rejected"),
	CASE(blob_azure_raw_form_decodes_kid_version_and_alg, "blob - the Azure raw form decodes kid, version and alg"),
	CASE(blob_bad_azure_raw_forms_are_rejected, "blob - bad Azure raw forms are rejected"),
	CASE(blob_raw_kid_over_512_bytes_is_rejected, "blob - raw kid over 512 bytes is rejected"),
	CASE(blob_v1_ciphertext_with_padding_is_rejected, "blob - v1 ciphertext with padding is rejected"),
	CASE(blob_raw_kid_without_a_version_is_rejected, "blob - raw kid without a version is rejected"),
	CASE(blob_raw_form_with_text_after_the_object_is_rejected, "blob - raw form with text after the object is rejected"),
	CASE(blob_name_valid_accepts_1_to_64_of_a_z_digits_dash_underscore, "blob - a key name of 1 to 64 of a-z, digits, dash and underscore is valid"),
};

CASES_MAIN("blob", tests, NULL, NULL)
