/*
 * test_proto: one request line in, a typed request or a stable error code out.
 */
#include <stdbool.h>

#include "b64.h"
#include "proto.h"
#include "unit.h"

static kb_request req;

static kb_code parse(const char *line, kb_err *err)
{
	kb_err_clear(err);
	return kb_proto_parse(line, strlen(line), &req, err);
}

static void expect_ok(const char *line)
{
	kb_err err;

	if (parse(line, &err) != KB_OK)
		fail_msg("%s: %s", line, err.msg);
}

static void expect_code(const char *line, kb_code want)
{
	kb_err err;
	kb_code rc = parse(line, &err);

	if (rc != want)
		fail_msg("%.300s gave %s (%s), not %s", line, kb_code_name(rc), err.msg, kb_code_name(want));
	assert_int_equal(err.code, want);
	assert_true(strlen(err.msg) > 0);
}

/* expect_codes expects want for each of lines[0..n). */
static void expect_codes(const char *const *lines, size_t n, kb_code want)
{
	for (size_t i = 0; i < n; i++)
		expect_code(lines[i], want);
}

#define EXPECT_CODES(lines, want) expect_codes(lines, sizeof(lines) / sizeof(lines[0]), want)

/* An id as sent and as it is echoed. */
struct id_case {
	const char *line, *echo;
};

/* expect_ids parses each line of cases[0..n) and checks its id's echo. */
static void expect_ids(const struct id_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		expect_ok(cases[i].line);
		assert_string_equal(req.id_json, cases[i].echo);
	}
}

static void proto_every_op_parses_with_valid_fields(void **state)
{
	expect_ok("{\"op\":\"status\"}");
	assert_int_equal(req.op, KB_OP_STATUS);
	expect_ok("{\"op\":\"metrics\"}");
	assert_int_equal(req.op, KB_OP_METRICS);

	expect_ok("{\"op\":\"get\",\"key\":\"rsa\"}");
	assert_int_equal(req.op, KB_OP_GET);
	assert_string_equal(req.key, "rsa");
	expect_ok("{\"op\":\"rotate\",\"key\":\"aes-2_x\"}");
	assert_int_equal(req.op, KB_OP_ROTATE);
	assert_string_equal(req.key, "aes-2_x");
	expect_ok("{\"op\":\"doctor\",\"key\":\"rsa\"}");
	assert_int_equal(req.op, KB_OP_DOCTOR);

	expect_ok("{\"op\":\"flush\"}");
	assert_int_equal(req.op, KB_OP_FLUSH);
	assert_string_equal(req.key, "");
	expect_ok("{\"op\":\"flush\",\"key\":\"aes\"}");
	assert_string_equal(req.key, "aes");

	expect_ok("{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"AAECAw==\"}");
	assert_int_equal(req.op, KB_OP_WRAP);
	assert_string_equal(req.key, "aes");
	assert_int_equal(req.alg, KB_ALG_NONE);
	assert_true(req.has_plaintext);
	assert_int_equal(req.ptlen, 4);
	assert_memory_equal(req.plaintext, "\0\1\2\3", 4);
	expect_ok("{\"op\":\"wrap\",\"key\":\"rsa\",\"plaintext\":\"/w==\",\"alg\":\"RSA-OAEP-256\"}");
	assert_int_equal(req.alg, KB_ALG_RSA_OAEP_256);
	assert_int_equal(req.plaintext[0], 0xff);

	expect_ok("{\"op\":\"unwrap\",\"blob\":\"kb1:a:1:RSA-OAEP:AAEC:xxxxxxxx\"}");
	assert_int_equal(req.op, KB_OP_UNWRAP);
	assert_string_equal(req.blob, "kb1:a:1:RSA-OAEP:AAEC:xxxxxxxx");
	assert_int_equal(req.bloblen, strlen(req.blob));

	expect_ok("{\"op\":\"rewrap\",\"blob\":\"kb1:x\"}");
	assert_int_equal(req.op, KB_OP_REWRAP);
	assert_string_equal(req.key, "");
	expect_ok("{\"op\":\"rewrap\",\"blob\":\"kb1:x\",\"key\":\"other\"}");
	assert_string_equal(req.key, "other");

	expect_ok("{\"op\":\"datakey\",\"key\":\"aes\"}");
	assert_int_equal(req.op, KB_OP_DATAKEY);
	assert_int_equal(req.bits, 256);
	assert_int_equal(req.bytes, 0);
	expect_ok("{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":128,\"bytes\":1048576}");
	assert_int_equal(req.bits, 128);
	assert_int_equal(req.bytes, 1048576);
	expect_ok("{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":8}");
	assert_int_equal(req.bits, 8);
	expect_ok("{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":8192}");
	assert_int_equal(req.bits, 8192);
	/* explicit nulls mean absent */
	expect_ok("{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":null,\"id\":null}");
	assert_int_equal(req.bits, 256);
	assert_string_equal(req.id_json, "null");

	for (int op = KB_OP_STATUS; op < KB_OP_COUNT; op++)
		assert_true(strlen(kb_op_name((kb_op)op)) > 0);
}

static void proto_numeric_id_is_echoed_with_the_same_digits(void **state)
{
	static const struct id_case cases[] = {
		{ "{\"id\":42,\"op\":\"status\"}", "42" },
		{ "{\"id\":0,\"op\":\"status\"}", "0" },
		{ "{\"id\":-7,\"op\":\"status\"}", "-7" },
		{ "{\"id\":9007199254740991,\"op\":\"status\"}", "9007199254740991" },
		{ "{\"id\":1.5,\"op\":\"status\"}", "1.5" },
	};

	expect_ids(cases, sizeof(cases) / sizeof(cases[0]));
}

static void proto_string_id_is_echoed_escaped(void **state)
{
	static const struct id_case cases[] = {
		{ "{\"id\":\"req-1\",\"op\":\"status\"}", "\"req-1\"" },
		{ "{\"id\":\"a\\\"b\\\\c\\nd\\u0001\",\"op\":\"status\"}", "\"a\\\"b\\\\c\\nd\\u0001\"" },
		{ "{\"id\":\"\",\"op\":\"status\"}", "\"\"" },
	};
	char line[512];
	char id[129];

	expect_ids(cases, sizeof(cases) / sizeof(cases[0]));
	/* 128 bytes is the longest id */
	memset(id, 'i', 128);
	id[128] = '\0';
	snprintf(line, sizeof(line), "{\"id\":\"%s\",\"op\":\"status\"}", id);
	expect_ok(line);
	assert_int_equal(strlen(req.id_json), 130);
}

static void proto_absent_id_is_echoed_as_null(void **state)
{
	expect_ok("{\"op\":\"status\"}");
	assert_string_equal(req.id_json, "null");
	/* and a failure before the id is read still says null */
	expect_code("not json", KB_E_BAD_REQUEST);
	assert_string_equal(req.id_json, "null");
}

static void proto_object_or_array_or_bool_id_is_bad_request(void **state)
{
	static const char *const lines[] = {
		"{\"id\":{\"a\":1},\"op\":\"status\"}",
		"{\"id\":[1],\"op\":\"status\"}",
		"{\"id\":true,\"op\":\"status\"}",
	};

	EXPECT_CODES(lines, KB_E_BAD_REQUEST);
}

static void proto_id_of_129_bytes_is_too_large(void **state)
{
	char line[512];
	char id[130];

	memset(id, 'i', 129);
	id[129] = '\0';
	snprintf(line, sizeof(line), "{\"id\":\"%s\",\"op\":\"status\"}", id);
	expect_code(line, KB_E_TOO_LARGE);
	/* 128 bytes that each need escaping do not fit an echo: refused, not cut */
	{
		char *p = line;
		p += sprintf(p, "{\"op\":\"status\",\"id\":\"");
		for (int i = 0; i < 64; i++)
			p += sprintf(p, "\\u0001");
		sprintf(p, "\"}");
		expect_code(line, KB_E_BAD_REQUEST);
	}
}

static void proto_id_is_kept_when_a_later_field_is_wrong(void **state)
{
	expect_code("{\"id\":7,\"op\":\"frobnicate\"}", KB_E_UNKNOWN_OP);
	assert_string_equal(req.id_json, "7");
	expect_code("{\"id\":\"x\",\"op\":\"get\"}", KB_E_BAD_REQUEST);
	assert_string_equal(req.id_json, "\"x\"");
}

static void proto_malformed_json_is_bad_request(void **state)
{
	static const char *const bad[] = { "", " ", "{", "{\"op\":\"status\"", "{op:status}",
					   "{\"op\":'status'}", "{\"op\":\"status\",}", "\xff\xfe",
					   "{\"op\":\"st\\xtus\"}" };

	EXPECT_CODES(bad, KB_E_BAD_REQUEST);
	/* the length given is what counts, not a NUL further on */
	{
		kb_err err;
		assert_int_equal(kb_proto_parse("{\"op\":\"status\"}", 10, &req, &err), KB_E_BAD_REQUEST);
	}
}

static void proto_line_with_text_after_the_object_is_bad_request(void **state)
{
	/* one object per line: a second value on the line must not be ignored */
	expect_code("{\"op\":\"status\"} {\"op\":\"rotate\",\"key\":\"k\"}", KB_E_BAD_REQUEST);
	expect_code("{\"op\":\"status\"}xyz", KB_E_BAD_REQUEST);
}

static void proto_non_object_is_bad_request(void **state)
{
	static const char *const bad[] = { "[]", "[{\"op\":\"status\"}]", "\"status\"", "42", "null",
					   "true" };

	EXPECT_CODES(bad, KB_E_BAD_REQUEST);
}

static void proto_missing_or_mistyped_op_is_bad_request(void **state)
{
	static const char *const lines[] = {
		"{}",
		"{\"key\":\"aes\"}",
		"{\"op\":1}",
		"{\"op\":null}",
		"{\"op\":[\"status\"]}",
		"{\"OP\":\"status\"}",
	};

	EXPECT_CODES(lines, KB_E_BAD_REQUEST);
}

static void proto_unknown_op_is_unknown_op(void **state)
{
	kb_err err;

	expect_code("{\"op\":\"frobnicate\"}", KB_E_UNKNOWN_OP);
	expect_code("{\"op\":\"\"}", KB_E_UNKNOWN_OP);
	expect_code("{\"op\":\"STATUS\"}", KB_E_UNKNOWN_OP);
	expect_code("{\"op\":\"status \"}", KB_E_UNKNOWN_OP);
	parse("{\"op\":\"frobnicate\"}", &err);
	assert_non_null(strstr(err.msg, "frobnicate"));
	assert_non_null(strstr(err.msg, "unwrap"));
}

static void proto_missing_required_fields_are_bad_request(void **state)
{
	kb_err err;

	expect_code("{\"op\":\"get\"}", KB_E_BAD_REQUEST);
	parse("{\"op\":\"get\"}", &err);
	assert_non_null(strstr(err.msg, "key"));
	expect_code("{\"op\":\"rotate\"}", KB_E_BAD_REQUEST);
	expect_code("{\"op\":\"wrap\",\"plaintext\":\"AAAA\"}", KB_E_BAD_REQUEST);
	expect_code("{\"op\":\"wrap\",\"key\":\"aes\"}", KB_E_BAD_REQUEST);
	expect_code("{\"op\":\"unwrap\"}", KB_E_BAD_REQUEST);
	expect_code("{\"op\":\"rewrap\",\"key\":\"aes\"}", KB_E_BAD_REQUEST);
	expect_code("{\"op\":\"datakey\"}", KB_E_BAD_REQUEST);
}

static void proto_mistyped_fields_are_bad_request(void **state)
{
	static const char *const lines[] = {
		"{\"op\":\"get\",\"key\":1}",
		"{\"op\":\"get\",\"key\":[\"aes\"]}",
		"{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":1234}",
		"{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"AAAA\",\"alg\":1}",
		"{\"op\":\"unwrap\",\"blob\":42}",
		"{\"op\":\"unwrap\",\"blob\":[\"kb1:x\"]}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":\"256\"}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bytes\":\"1\"}",
	};

	EXPECT_CODES(lines, KB_E_BAD_REQUEST);
}

static void proto_bits_must_be_a_multiple_of_8_from_8_to_8192(void **state)
{
	static const char *const lines[] = {
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":12}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":255}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":0}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":-256}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":8200}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":256.5}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bits\":1e300}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bytes\":-1}",
		"{\"op\":\"datakey\",\"key\":\"aes\",\"bytes\":1e300}",
	};

	EXPECT_CODES(lines, KB_E_BAD_REQUEST);
}

static void proto_invalid_key_name_is_unknown_key(void **state)
{
	expect_code("{\"op\":\"get\",\"key\":\"\"}", KB_E_UNKNOWN_KEY);
	expect_code("{\"op\":\"get\",\"key\":\"../etc\"}", KB_E_UNKNOWN_KEY);
	expect_code("{\"op\":\"get\",\"key\":\"k12345678901234567890123456789012345678901234567890123456789012345\"}",
		    KB_E_UNKNOWN_KEY);
}

static void proto_unknown_alg_is_mechanism_unsupported(void **state)
{
	expect_code("{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"AAAA\",\"alg\":\"ROT13\"}",
		    KB_E_MECHANISM_UNSUPPORTED);
}

static void proto_bad_base64_plaintext_is_bad_request(void **state)
{
	static const char *const bad[] = { "AAA", "AA=A", "A===", "AA-_", "AAAA\\n", "AAAA ", "Zh==",
					   "*" };
	char line[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(line, sizeof(line), "{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"%s\"}", bad[i]);
		expect_code(line, KB_E_BAD_REQUEST);
	}
}

static void proto_empty_plaintext_is_bad_request(void **state)
{
	kb_err err;

	expect_code("{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"\"}", KB_E_BAD_REQUEST);
	parse("{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"\"}", &err);
	assert_non_null(strstr(err.msg, "empty"));
}

/* wrap_line returns a wrap request whose plaintext is n bytes of 0xa5. */
static char *wrap_line(size_t n)
{
	static char line[4096];
	uint8_t pt[2048];
	int o;

	memset(pt, 0xa5, n);
	o = sprintf(line, "{\"op\":\"wrap\",\"key\":\"aes\",\"plaintext\":\"");
	o += (int)kb_b64_encode(pt, n, line + o, KB_B64_STD);
	sprintf(line + o, "\"}");
	return line;
}

static void proto_plaintext_of_1024_bytes_is_accepted(void **state)
{
	expect_ok(wrap_line(1024));
	assert_int_equal(req.ptlen, 1024);
	assert_int_equal(req.plaintext[1023], 0xa5);
	expect_ok(wrap_line(1));
	assert_int_equal(req.ptlen, 1);
}

static void proto_plaintext_over_1024_bytes_is_too_large(void **state)
{
	expect_code(wrap_line(1027), KB_E_TOO_LARGE);
	expect_code(wrap_line(2000), KB_E_TOO_LARGE);
}

static void proto_plaintext_of_1025_or_1026_bytes_is_too_large(void **state)
{
	/* their base64 is exactly as long as 1024 bytes' (1368 characters) */
	expect_code(wrap_line(1025), KB_E_TOO_LARGE);
	expect_code(wrap_line(1026), KB_E_TOO_LARGE);
}

static void proto_blob_as_a_json_object_is_taken_as_the_raw_azure_form(void **state)
{
	kb_blob b;
	kb_err err;

	expect_ok("{\"op\":\"unwrap\",\"blob\":{\"kid\":\"https://x.vault.azure.net/keys/k/0123abcd\","
		  "\"alg\":\"RSA-OAEP-256\",\"value\":\"AAECAw\"}}");
	assert_int_equal(req.op, KB_OP_UNWRAP);
	assert_int_equal(req.blob[0], '{');
	assert_int_equal(req.bloblen, strlen(req.blob));
	/* what the parser kept is what the blob codec reads */
	if (kb_blob_decode(req.blob, req.bloblen, &b, &err) != KB_OK)
		fail_msg("%s: %s", req.blob, err.msg);
	assert_string_equal(b.version, "0123abcd");
	assert_int_equal(b.alg, KB_ALG_RSA_OAEP_256);
	assert_int_equal(b.ctlen, 4);
}

static void proto_blob_over_4096_bytes_is_bad_blob(void **state)
{
	static char line[KB_BLOB_MAX + 64];
	int o = sprintf(line, "{\"op\":\"unwrap\",\"blob\":\"");

	memset(line + o, 'A', KB_BLOB_MAX + 1);
	sprintf(line + o + KB_BLOB_MAX + 1, "\"}");
	expect_code(line, KB_E_BAD_BLOB);
	/* exactly 4096 is the parser's business no more: it passes */
	sprintf(line + o + KB_BLOB_MAX, "\"}");
	expect_ok(line);
	assert_int_equal(req.bloblen, KB_BLOB_MAX);
}

static void proto_request_wipe_zeroes_the_plaintext(void **state)
{
	static const uint8_t zero[KB_SECRET_MAX];

	expect_ok(wrap_line(1024));
	assert_int_equal(req.ptlen, 1024);
	kb_request_wipe(&req);
	assert_int_equal(req.ptlen, 0);
	assert_memory_equal(req.plaintext, zero, sizeof(zero));
}

/*
 * proto_flat_lines_read_as_cjson_reads_them: the one-pass path for flat lines
 * (id, op, blob) gives what cJSON's path gives. An extra member sends the same
 * line through cJSON; both must agree on the code, op, id and blob.
 */
static void proto_field_given_twice_is_bad_request_naming_it(void **state)
{
	static const struct {
		const char *line, *name;
	} cases[] = {
		{ "{\"op\":\"status\",\"op\":\"rotate\"}", "\"op\"" },
		{ "{\"op\":\"status\",\"o\\u0070\":\"rotate\"}", "\"op\"" },
		{ "{\"id\":1,\"op\":\"unwrap\",\"blob\":\"x\",\"id\":2}", "\"id\"" },
		{ "{\"op\":\"unwrap\",\"blobs\":[{\"kid\":\"a\",\"kid\":\"b\"}]}", "\"kid\"" },
	};
	kb_err err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		expect_code(cases[i].line, KB_E_BAD_REQUEST);
		parse(cases[i].line, &err);
		if (strstr(err.msg, cases[i].name) == NULL || strstr(err.msg, "twice") == NULL)
			fail_msg("%s: %s does not name %s", cases[i].line, err.msg, cases[i].name);
	}
	/* names that differ only in case are two names */
	expect_ok("{\"op\":\"status\",\"Op\":\"rotate\"}");
	assert_int_equal(req.op, KB_OP_STATUS);
}

static void proto_flat_lines_read_as_cjson_reads_them(void **state)
{
	static char big[4200], line[4400], slow[4400];
	const char *const lines[] = {
		"{\"op\":\"status\"}",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":\"kb1:rsa:01:RSA-OAEP:AAAA\"}",
		" { \"blob\" : \"x\" ,\t\"op\" : \"unwrap\" , \"id\" : -42 }\r\n",
		"{\"id\":-0,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":0,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":007,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":123456789012345,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":1234567890123456,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":1.5,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":1e3,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":null,\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":\"r\xc3\xa9q-7\",\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":\"a\\\"b\",\"op\":\"unwrap\",\"blob\":\"x\"}",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":\"\"}",
		"{\"id\":1,\"op\":\"unwrap\"}",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":null}",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":7}",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":\"x\",\"op\":\"status\"}",
		"{\"id\":1,\"op\":\"status\",\"blob\":\"x\"}",
		"{\"id\":1,\"op\":\"unwarp\",\"blob\":\"x\"}",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":\"x\"} x",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":\"x\"",
		"{\"id\":1,\"op\":\"unwrap\",\"blob\":\"x\"}}",
		"{\"id\":1,,\"op\":\"unwrap\",\"blob\":\"x\"}",
		big,
	};
	kb_request a;

	/* a blob one byte over KB_BLOB_MAX */
	memcpy(big, "{\"id\":2,\"op\":\"unwrap\",\"blob\":\"", 30);
	memset(big + 30, 'A', KB_BLOB_MAX + 1);
	memcpy(big + 30 + KB_BLOB_MAX + 1, "\"}", 3);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const char *close;
		kb_err e1, e2;
		kb_code r1, r2;

		snprintf(line, sizeof(line), "%s", lines[i]);
		close = strrchr(line, '}');
		if (close == NULL)
			continue;
		/* the same line with one member more, which only cJSON's path reads */
		snprintf(slow, sizeof(slow), "%.*s,\"zz\":0%s", (int)(close - line), line, close);
		kb_err_clear(&e1);
		kb_err_clear(&e2);
		r1 = kb_proto_parse(line, strlen(line), &req, &e1);
		a = req;
		kb_request_wipe(&req);
		r2 = kb_proto_parse(slow, strlen(slow), &req, &e2);
		if (r1 != r2 || (r1 != KB_OK && strcmp(e1.msg, e2.msg) != 0))
			fail_msg("%.200s: %s (%s) but through cJSON %s (%s)", line, kb_code_name(r1), e1.msg,
				 kb_code_name(r2), e2.msg);
		assert_int_equal(a.op, req.op);
		assert_string_equal(a.id_json, req.id_json);
		assert_int_equal(a.bloblen, req.bloblen);
		assert_string_equal(a.blob, req.blob);
		kb_request_wipe(&req);
	}
}

static const struct CMUnitTest tests[] = {
	CASE(proto_every_op_parses_with_valid_fields, "protocol - every op parses with valid fields"),
	CASE(proto_numeric_id_is_echoed_with_the_same_digits, "protocol - numeric id is echoed with the same digits"),
	CASE(proto_string_id_is_echoed_escaped, "protocol - string id is echoed escaped"),
	CASE(proto_absent_id_is_echoed_as_null, "protocol - absent id is echoed as null"),
	CASE(proto_object_or_array_or_bool_id_is_bad_request, "protocol - object or array or bool id is bad_request"),
	CASE(proto_id_of_129_bytes_is_too_large, "protocol - id of 129 bytes is too_large"),
	CASE(proto_id_is_kept_when_a_later_field_is_wrong, "protocol - id is kept when a later field is wrong"),
	CASE(proto_malformed_json_is_bad_request, "protocol - malformed JSON is bad_request"),
	CASE(proto_line_with_text_after_the_object_is_bad_request, "protocol - line with text after the object is bad_request"),
	CASE(proto_non_object_is_bad_request, "protocol - a line that is not an object is bad_request"),
	CASE(proto_missing_or_mistyped_op_is_bad_request, "protocol - missing or mistyped op is bad_request"),
	CASE(proto_unknown_op_is_unknown_op, "protocol - an unknown op is unknown_op"),
	CASE(proto_missing_required_fields_are_bad_request, "protocol - missing required fields are bad_request"),
	CASE(proto_mistyped_fields_are_bad_request, "protocol - mistyped fields are bad_request"),
	CASE(proto_bits_must_be_a_multiple_of_8_from_8_to_8192, "protocol - bits must be a multiple of 8 from 8 to 8192"),
	CASE(proto_invalid_key_name_is_unknown_key, "protocol - invalid key name is unknown_key"),
	CASE(proto_unknown_alg_is_mechanism_unsupported, "protocol - unknown alg is mechanism_unsupported"),
	CASE(proto_bad_base64_plaintext_is_bad_request, "protocol - bad base64 plaintext is bad_request"),
	CASE(proto_empty_plaintext_is_bad_request, "protocol - empty plaintext is bad_request"),
	CASE(proto_plaintext_of_1024_bytes_is_accepted, "protocol - plaintext of 1024 bytes is accepted"),
	CASE(proto_plaintext_over_1024_bytes_is_too_large, "protocol - plaintext over 1024 bytes is too_large"),
	CASE(proto_plaintext_of_1025_or_1026_bytes_is_too_large, "protocol - plaintext of 1025 or 1026 bytes is too_large"),
	CASE(proto_blob_as_a_json_object_is_taken_as_the_raw_azure_form, "protocol - blob as a JSON object is taken as the raw Azure form"),
	CASE(proto_blob_over_4096_bytes_is_bad_blob, "protocol - blob over 4096 bytes is bad_blob"),
	CASE(proto_request_wipe_zeroes_the_plaintext, "protocol - request wipe zeroes the plaintext"),
	CASE(proto_flat_lines_read_as_cjson_reads_them, "protocol - flat lines are read as cJSON reads them"),
	CASE(proto_field_given_twice_is_bad_request_naming_it, "protocol - a field given twice is bad_request naming it"),
};

CASES_MAIN("proto", tests, NULL, NULL)
