/*
 * buf.h: a growable byte buffer that wipes what it held.
 *
 * Request and response buffers carry plaintext DEKs in base64, so every byte
 * that leaves a buffer (consumed, shrunk, freed) is zeroed first.
 */
#ifndef KB_BUF_H
#define KB_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kb_buf {
	char *data;
	size_t len;   /* bytes held, from data[0] */
	size_t cap;
	bool oom;     /* an append failed: the content is incomplete */
} kb_buf;

/* kb_buf_reserve makes room for n more bytes; false on allocation failure. */
bool kb_buf_reserve(kb_buf *b, size_t n);

/* kb_buf_append copies n bytes to the end; false on allocation failure. */
bool kb_buf_append(kb_buf *b, const void *p, size_t n);

/*
 * kb_buf_append_text is kb_buf_append that keeps a NUL after the content (not
 * counted in len), for bodies read by text parsers.
 */
bool kb_buf_append_text(kb_buf *b, const void *p, size_t n);

/* kb_buf_consume drops the first n bytes, wiping the space they leave. */
void kb_buf_consume(kb_buf *b, size_t n);

/* kb_buf_free wipes and frees the storage, leaving an empty buffer. */
void kb_buf_free(kb_buf *b);

#endif
