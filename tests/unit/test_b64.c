/* test_b64: the one base64 codec, against RFC 4648 and its strictness promise. */
#include <stdbool.h>

#include "b64.h"
#include "unit.h"

static const struct {
	const char *plain, *std, *url;
} rfc4648[] = {
	{ "", "", "" },
	{ "f", "Zg==", "Zg" },
	{ "fo", "Zm8=", "Zm8" },
	{ "foo", "Zm9v", "Zm9v" },
	{ "foob", "Zm9vYg==", "Zm9vYg" },
	{ "fooba", "Zm9vYmE=", "Zm9vYmE" },
	{ "foobar", "Zm9vYmFy", "Zm9vYmFy" },
	/* the two alphabets differ only in 62 and 63 */
	{ "\xfb\xef\xbe", "++++", "----" },
	{ "\xff\xff\xff", "////", "____" },
	{ "\xfb\xff", "+/8=", "-_8" },
};

static void check_decodes(const char *in, kb_b64_variant v, const char *want, size_t wantlen)
{
	uint8_t out[64];
	size_t n = 99;

	if (!kb_b64_decode(in, strlen(in), out, sizeof(out), &n, v))
		fail_msg("\"%s\" (%s) was refused", in, v == KB_B64_STD ? "std" : "url");
	assert_int_equal(n, wantlen);
	assert_memory_equal(out, want, wantlen);
}

static void check_refused(const char *in, size_t len, kb_b64_variant v)
{
	uint8_t out[64];
	size_t n = 0;

	if (kb_b64_decode(in, len, out, sizeof(out), &n, v))
		fail_msg("\"%.*s\" (%s) was accepted", (int)len, in, v == KB_B64_STD ? "std" : "url");
}

/* check_all_refused checks that v refuses each string of in[0..n). */
static void check_all_refused(const char *const *in, size_t n, kb_b64_variant v)
{
	for (size_t i = 0; i < n; i++)
		check_refused(in[i], strlen(in[i]), v);
}

#define CHECK_ALL_REFUSED(in, v) check_all_refused(in, sizeof(in) / sizeof(in[0]), v)

/* check_vectors encodes each RFC 4648 vector in v's alphabet and decodes it back. */
static void check_vectors(kb_b64_variant v)
{
	for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
		const char *p = rfc4648[i].plain;
		const char *want = v == KB_B64_STD ? rfc4648[i].std : rfc4648[i].url;
		char out[64];
		size_t n = kb_b64_encode((const uint8_t *)p, strlen(p), out, v);

		assert_string_equal(out, want);
		assert_int_equal(n, strlen(want));
		assert_int_equal(kb_b64_encoded_len(strlen(p), v), n);
		check_decodes(want, v, p, strlen(p));
	}
}

static void b64_std_matches_rfc4648_vectors(void **state)
{
	check_vectors(KB_B64_STD);
}

static void b64_url_matches_rfc4648_vectors_unpadded(void **state)
{
	check_vectors(KB_B64_URL);
}

static void b64_url_accepts_padded_input(void **state)
{
	static const char *const wrong_padding[] = { "Zg=", "Zm8==", "Zm9v=", "Zm9v==", "Zg===" };

	check_decodes("Zg==", KB_B64_URL, "f", 1);
	check_decodes("Zm8=", KB_B64_URL, "fo", 2);
	check_decodes("Zm9vYg==", KB_B64_URL, "foob", 4);
	check_decodes("-_8=", KB_B64_URL, "\xfb\xff", 2);
	/* but only the right amount of it */
	CHECK_ALL_REFUSED(wrong_padding, KB_B64_URL);
}

static void b64_refuses_characters_outside_its_alphabet(void **state)
{
	static const char *const both[] = { "Zm9*", "Zm9v YmFy", "Zm9v\nYmFy", " Zm9v", "Zm9v ",
					    "Zm.v", "Zm9\x80", "\xc3\xa9Zm9" };
	static const char *const url_only[] = { "-_8=", "ab-d", "ab_d" };
	static const char *const std_only[] = { "+/8", "ab+d", "ab/d" };

	CHECK_ALL_REFUSED(both, KB_B64_STD);
	CHECK_ALL_REFUSED(both, KB_B64_URL);
	/* each alphabet refuses the other's two extra characters */
	CHECK_ALL_REFUSED(url_only, KB_B64_STD);
	CHECK_ALL_REFUSED(std_only, KB_B64_URL);
	/* an embedded NUL is a bad character, not the end */
	check_refused("Zm\0v", 4, KB_B64_STD);
	check_refused("Zm\0v", 4, KB_B64_URL);
}

static void b64_refuses_misplaced_or_missing_padding(void **state)
{
	static const char *const std_bad[] = { "Zg", "Zm8", "Zg=", "Zg===", "=Zg=", "Z===", "====",
					       "Zg==Zg==", "Zm8=Zm8=", "Zm=8", "Zm9v=", "Zm9vYg=",
					       "Z", "Zm9vY", "Zm9vYmFy=" };
	static const char *const url_bad[] = { "=Zg", "Zg==Zg", "Zm=8", "Z", "Zm9vY", "Z===",
					       "====", "Zm9vY===" };

	CHECK_ALL_REFUSED(std_bad, KB_B64_STD);
	CHECK_ALL_REFUSED(url_bad, KB_B64_URL);
}

static void b64_refuses_nonzero_trailing_bits(void **state)
{
	/* "Zg==" is 'f'; "Zh==" .. "Zv==" carry set bits past the last byte */
	static const char *const std_bad[] = { "Zh==", "Zv==", "Zm9=", "Zm/=" };
	static const char *const url_bad[] = { "Zh", "Zm9", "Zm9vYh", "Zh==" };

	CHECK_ALL_REFUSED(std_bad, KB_B64_STD);
	CHECK_ALL_REFUSED(url_bad, KB_B64_URL);
}

static void b64_refuses_output_that_does_not_fit(void **state)
{
	uint8_t out[6];
	size_t n = 0;

	assert_false(kb_b64_decode("Zm9vYmFy", 8, out, 5, &n, KB_B64_STD));
	assert_true(kb_b64_decode("Zm9vYmFy", 8, out, 6, &n, KB_B64_STD));
	assert_int_equal(n, 6);
	assert_false(kb_b64_decode("Zm9vYmE", 7, out, 4, &n, KB_B64_URL));
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint8_t rng_byte(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint8_t)(rng_state >> 24);
}

static void b64_round_trips_every_length_up_to_300(void **state)
{
	for (int v = KB_B64_STD; v <= KB_B64_URL; v++) {
		for (size_t len = 0; len <= 300; len++) {
			uint8_t in[300], back[300];
			char enc[410];
			size_t n, got = 9999;

			for (size_t i = 0; i < len; i++)
				in[i] = rng_byte();
			n = kb_b64_encode(in, len, enc, (kb_b64_variant)v);
			assert_int_equal(n, kb_b64_encoded_len(len, (kb_b64_variant)v));
			assert_int_equal(strlen(enc), n);
			assert_true(kb_b64_decode(enc, n, back, sizeof(back), &got, (kb_b64_variant)v));
			assert_int_equal(got, len);
			if (len)
				assert_memory_equal(in, back, len);
		}
	}
}

static const struct CMUnitTest tests[] = {
	CASE(b64_std_matches_rfc4648_vectors, "base64 - the standard alphabet matches the RFC 4648 vectors"),
	CASE(b64_url_matches_rfc4648_vectors_unpadded, "base64 - the url-safe alphabet matches the RFC 4648 vectors, unpadded"),
	CASE(b64_url_accepts_padded_input, "base64 - url-safe decoding accepts padded input"),
	CASE(b64_refuses_characters_outside_its_alphabet, "base64 - refuses characters outside its alphabet"),
	CASE(b64_refuses_misplaced_or_missing_padding, "base64 - refuses misplaced or missing padding"),
	CASE(b64_refuses_nonzero_trailing_bits, "base64 - refuses nonzero trailing bits"),
	CASE(b64_refuses_output_that_does_not_fit, "base64 - refuses output that does not fit"),
	CASE(b64_round_trips_every_length_up_to_300, "base64 - round trips every length up to 300"),
};

CASES_MAIN("b64", tests, NULL, NULL)
