/*
 * jsonw.h: writes the broker's responses straight into a kb_buf.
 *
 * Responses are flat and few, so they are written field by field rather than
 * built as a cJSON tree: no allocation on the cache-hit path beyond the
 * connection's own buffer. A write that runs out of memory sets buf->oom.
 */
#ifndef KB_JSONW_H
#define KB_JSONW_H

#include <stdint.h>

#include "buf.h"
#include "error.h"

/* kb_jw_str appends s as a JSON string (quoted, escaped). */
void kb_jw_str(kb_buf *b, const char *s);

/* kb_jw_strn appends s[0..n) as a JSON string. */
void kb_jw_strn(kb_buf *b, const char *s, size_t n);

/* kb_jw_raw appends s verbatim. */
void kb_jw_raw(kb_buf *b, const char *s);

/* kb_jw_b64 appends p[0..n) as a quoted standard-base64 string. */
void kb_jw_b64(kb_buf *b, const uint8_t *p, size_t n);

/* kb_jw_i64 appends v as a JSON number. */
void kb_jw_i64(kb_buf *b, int64_t v);

/* kb_jw_key appends ,"name": (every response field follows the id). */
void kb_jw_key(kb_buf *b, const char *name);

/* kb_jw_begin appends {"id":ID,"ok":true where id_json is the rendered id. */
void kb_jw_begin(kb_buf *b, const char *id_json);

/* kb_jw_end closes the response object and the line. */
void kb_jw_end(kb_buf *b);

/* kb_jw_error appends a whole failure response for err. */
void kb_jw_error(kb_buf *b, const char *id_json, const kb_err *err);

/* kb_jw_item_error appends a batch item's failure object (no id, no newline). */
void kb_jw_item_error(kb_buf *b, const kb_err *err);

#endif
