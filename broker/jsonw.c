#include <string.h>

#include "b64.h"
#include "jsonw.h"

void kb_jw_raw(kb_buf *b, const char *s)
{
	kb_buf_append(b, s, strlen(s));
}

void kb_jw_strn(kb_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;

	if (!kb_buf_reserve(b, n + 2))
		return;
	kb_buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[6];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		kb_buf_append(b, s + run, i - run);
		run = i + 1;
		switch (c) {
		case '"': kb_buf_append(b, "\\\"", 2); break;
		case '\\': kb_buf_append(b, "\\\\", 2); break;
		case '\n': kb_buf_append(b, "\\n", 2); break;
		case '\t': kb_buf_append(b, "\\t", 2); break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			kb_buf_append(b, esc, 6);
		}
	}
	kb_buf_append(b, s + run, n - run);
	kb_buf_append(b, "\"", 1);
}

void kb_jw_str(kb_buf *b, const char *s)
{
	kb_jw_strn(b, s, strlen(s));
}

void kb_jw_b64(kb_buf *b, const uint8_t *p, size_t n)
{
	size_t len = kb_b64_encoded_len(n, KB_B64_STD);

	if (!kb_buf_reserve(b, len + 3))
		return;
	b->data[b->len++] = '"';
	b->len += kb_b64_encode(p, n, b->data + b->len, KB_B64_STD);
	b->data[b->len++] = '"';
}

void kb_jw_i64(kb_buf *b, int64_t v)
{
	/* digits from the right, without the printf machinery (the hit path's counters and ids) */
	char tmp[24];
	char *p = tmp + sizeof(tmp);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		*--p = '-';
	kb_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void kb_jw_key(kb_buf *b, const char *name)
{
	kb_buf_append(b, ",\"", 2);
	kb_jw_raw(b, name);
	kb_buf_append(b, "\":", 2);
}

void kb_jw_begin(kb_buf *b, const char *id_json)
{
	kb_jw_raw(b, "{\"id\":");
	kb_jw_raw(b, id_json);
	kb_jw_raw(b, ",\"ok\":true");
}

void kb_jw_end(kb_buf *b)
{
	kb_buf_append(b, "}\n", 2);
}

/* error_tail writes "ok":false,"error":{...}} : the end of an error object. */
static void error_tail(kb_buf *b, const kb_err *err)
{
	kb_jw_raw(b, "\"ok\":false,\"error\":{\"code\":");
	kb_jw_str(b, kb_code_name(err->code));
	kb_jw_raw(b, ",\"message\":");
	kb_jw_str(b, err->msg);
	kb_jw_raw(b, "}}");
}

void kb_jw_error(kb_buf *b, const char *id_json, const kb_err *err)
{
	kb_jw_raw(b, "{\"id\":");
	kb_jw_raw(b, id_json);
	kb_jw_raw(b, ",");
	error_tail(b, err);
	kb_buf_append(b, "\n", 1);
}

void kb_jw_item_error(kb_buf *b, const kb_err *err)
{
	kb_jw_raw(b, "{");
	error_tail(b, err);
}
