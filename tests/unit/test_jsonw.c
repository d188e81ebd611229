/*
 * test_jsonw: responses written field by field are valid JSON that says
 * exactly what was meant; checked by reading them back with cJSON.
 */
#include <cjson/cJSON.h>

#include "jsonw.h"
#include "unit.h"

/* round_trip writes s[0..n) as a JSON string and returns what cJSON reads back. */
static char *round_trip(const char *s, size_t n, kb_buf *b)
{
	static char back[4096];
	cJSON *j;

	kb_buf_free(b);
	kb_jw_strn(b, s, n);
	assert_false(b->oom);
	kb_buf_append(b, "", 1);
	j = cJSON_Parse(b->data);
	if (!cJSON_IsString(j))
		fail_msg("not a JSON string: %s", b->data);
	snprintf(back, sizeof(back), "%s", j->valuestring);
	cJSON_Delete(j);
	return back;
}

static void jsonw_quotes_and_backslashes_are_escaped(void **state)
{
	kb_buf b = { 0 };

	assert_string_equal(round_trip("a\"b\\c", 5, &b), "a\"b\\c");
	assert_string_equal(b.data, "\"a\\\"b\\\\c\"");
	assert_string_equal(round_trip("", 0, &b), "");
	assert_string_equal(b.data, "\"\"");
	assert_string_equal(round_trip("\\\\\"\"", 4, &b), "\\\\\"\"");
	kb_buf_free(&b);
}

static void jsonw_control_characters_are_escaped(void **state)
{
	kb_buf b = { 0 };
	char all[32];

	for (int c = 1; c < 32; c++)
		all[c - 1] = (char)c;
	all[31] = '\0';
	assert_string_equal(round_trip(all, 31, &b), all);
	/* no raw control byte reaches the output */
	for (size_t i = 0; i < b.len; i++)
		assert_true((unsigned char)b.data[i] >= 0x20 || b.data[i] == '\0');
	round_trip("\x01\x1f\x7f", 3, &b);
	assert_string_equal(b.data, "\"\\u0001\\u001f\x7f\"");
	round_trip("a\nb\tc", 5, &b);
	assert_string_equal(b.data, "\"a\\nb\\tc\"");
	/* an embedded NUL is written, not cut */
	round_trip("a\0b", 3, &b);
	assert_string_equal(b.data, "\"a\\u0000b\"");
	kb_buf_free(&b);
}

static void jsonw_utf8_passes_through_unchanged(void **state)
{
	kb_buf b = { 0 };
	const char *s = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91";

	assert_string_equal(round_trip(s, strlen(s), &b), s);
	assert_int_equal(b.len, strlen(s) + 3);
	kb_buf_free(&b);
}

static void jsonw_long_strings_survive_buffer_growth(void **state)
{
	kb_buf b = { 0 };
	char s[3000];

	for (size_t i = 0; i < sizeof(s) - 1; i++)
		s[i] = "ab\"\\\n\x01z"[i % 7];
	s[sizeof(s) - 1] = '\0';
	kb_jw_raw(&b, "[");
	kb_jw_str(&b, s);
	kb_jw_raw(&b, "]");
	kb_buf_append(&b, "", 1);
	{
		cJSON *j = cJSON_Parse(b.data);
		assert_non_null(j);
		assert_string_equal(cJSON_GetArrayItem(j, 0)->valuestring, s);
		cJSON_Delete(j);
	}
	kb_buf_free(&b);
}

static void jsonw_response_parses_with_its_fields(void **state)
{
	kb_buf b = { 0 };
	static const uint8_t dek[5] = { 0, 1, 2, 0xfe, 0xff };
	cJSON *j;

	kb_jw_begin(&b, "\"req-1\"");
	kb_jw_key(&b, "key");
	kb_jw_str(&b, "rsa");
	kb_jw_key(&b, "plaintext");
	kb_jw_b64(&b, dek, sizeof(dek));
	kb_jw_key(&b, "n");
	kb_jw_i64(&b, INT64_MIN);
	kb_jw_end(&b);
	assert_int_equal(b.data[b.len - 1], '\n');
	kb_buf_append(&b, "", 1);
	j = cJSON_Parse(b.data);
	assert_non_null(j);
	assert_string_equal(cJSON_GetObjectItem(j, "id")->valuestring, "req-1");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
	assert_string_equal(cJSON_GetObjectItem(j, "key")->valuestring, "rsa");
	assert_string_equal(cJSON_GetObjectItem(j, "plaintext")->valuestring, "AAEC/v8=");
	assert_non_null(strstr(b.data, "\"n\":-9223372036854775808"));
	cJSON_Delete(j);
	kb_buf_free(&b);
}

static void jsonw_error_response_parses_with_code_and_message(void **state)
{
	kb_buf b = { 0 };
	kb_err err;
	cJSON *j, *e;

	kb_err_set(&err, KB_E_BAD_BLOB, "blob \"%s\" is\tbad\\", "kb1:x");
	kb_jw_error(&b, "42", &err);
	assert_int_equal(b.data[b.len - 1], '\n');
	assert_null(memchr(b.data, '\n', b.len - 1)); /* one line */
	kb_buf_append(&b, "", 1);
	j = cJSON_Parse(b.data);
	assert_non_null(j);
	assert_int_equal(cJSON_GetObjectItem(j, "id")->valueint, 42);
	assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
	e = cJSON_GetObjectItem(j, "error");
	assert_true(cJSON_IsObject(e));
	assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, "bad_blob");
	assert_string_equal(cJSON_GetObjectItem(e, "message")->valuestring, "blob \"kb1:x\" is\tbad\\");
	cJSON_Delete(j);

	/* a null id and every code */
	for (int c = KB_E_BAD_REQUEST; c < KB_CODE_COUNT; c++) {
		kb_buf_free(&b);
		kb_err_set(&err, (kb_code)c, "line one\nline two");
		kb_jw_error(&b, "null", &err);
		kb_buf_append(&b, "", 1);
		j = cJSON_Parse(b.data);
		assert_non_null(j);
		assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "id")));
		e = cJSON_GetObjectItem(j, "error");
		assert_string_equal(cJSON_GetObjectItem(e, "code")->valuestring, kb_code_name((kb_code)c));
		assert_int_equal(kb_code_from_name(cJSON_GetObjectItem(e, "code")->valuestring), c);
		assert_string_equal(cJSON_GetObjectItem(e, "message")->valuestring, "line one\nline two");
		cJSON_Delete(j);
	}
	kb_buf_free(&b);
}

static const struct CMUnitTest tests[] = {
	CASE(jsonw_quotes_and_backslashes_are_escaped, "json - quotes and backslashes are escaped"),
	CASE(jsonw_control_characters_are_escaped, "json - control characters are escaped"),
	CASE(jsonw_utf8_passes_through_unchanged, "json - UTF-8 passes through unchanged"),
	CASE(jsonw_long_strings_survive_buffer_growth, "json - long strings survive buffer growth"),
	CASE(jsonw_response_parses_with_its_fields, "json - response parses with its fields"),
	CASE(jsonw_error_response_parses_with_code_and_message, "json - error response parses with code and message"),
};

CASES_MAIN("jsonw", tests, NULL, NULL)
