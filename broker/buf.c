#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "buf.h"

bool kb_buf_reserve(kb_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->cap - b->len >= n)
		return true;
	cap = b->cap ? b->cap : 512;
	while (cap - b->len < n)
		cap *= 2;
	/* not realloc: the old block must be wiped before it is released */
	p = malloc(cap);
	if (p == NULL) {
		b->oom = true;
		return false;
	}
	if (b->data) {
		memcpy(p, b->data, b->len);
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = p;
	b->cap = cap;
	return true;
}

bool kb_buf_append(kb_buf *b, const void *p, size_t n)
{
	if (!kb_buf_reserve(b, n))
		return false;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return true;
}

bool kb_buf_append_text(kb_buf *b, const void *p, size_t n)
{
	if (n == SIZE_MAX || !kb_buf_reserve(b, n + 1))
		return false;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return true;
}

void kb_buf_consume(kb_buf *b, size_t n)
{
	if (n >= b->len) {
		OPENSSL_cleanse(b->data, b->len);
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	OPENSSL_cleanse(b->data + b->len - n, n);
	b->len -= n;
}

void kb_buf_free(kb_buf *b)
{
	if (b->data) {
		OPENSSL_cleanse(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
	b->oom = false;
}
