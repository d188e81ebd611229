/*
 * example.c: envelope encryption with libkeybroker, as in docs/libkeybroker.md.
 *
 *   cc example.c $(pkg-config --cflags --libs keybroker) -o example
 *   ./example aes
 *
 * Gets a fresh data key under KEY, keeps only its blob (what an application
 * stores beside its data), then unwraps the blob again and checks that the
 * same key comes back. Exits 0 on success, 1 with "CODE: message" otherwise.
 */
#include <stdio.h>
#include <string.h>

#include <keybroker.h>

static int fail(const char *what, const kb_error *err)
{
	fprintf(stderr, "%s: %s: %s\n", what, kb_code_name(err->code), err->message);
	return 1;
}

int main(int argc, char **argv)
{
	const char *key = argc > 1 ? argv[1] : "aes";
	kb_client *c;
	kb_result dk, back;
	kb_error err;
	int same;

	/* NULL: $KEYBROKER_SOCKET, else the default socket keybrokerd listens on. */
	if (kb_client_connect(NULL, &c, &err) != KB_OK)
		return fail("connect", &err);

	if (kb_datakey(c, key, 256, &dk, &err) != KB_OK) {
		kb_client_close(c);
		return fail("datakey", &err);
	}
	/* ... encrypt data with dk.plaintext (dk.plaintext_len bytes), store dk.blob ... */
	printf("blob: %s (key %s, version %s)\n", dk.blob, dk.key, dk.version);

	if (kb_unwrap(c, dk.blob, &back, &err) != KB_OK) {
		kb_result_clear(&dk);
		kb_client_close(c);
		return fail("unwrap", &err);
	}
	same = back.plaintext_len == dk.plaintext_len &&
	       memcmp(back.plaintext, dk.plaintext, dk.plaintext_len) == 0;
	printf("unwrapped %zu bytes%s: %s\n", back.plaintext_len,
	       back.cached ? " from the cache" : "", same ? "same key" : "MISMATCH");

	kb_result_clear(&back);  /* zeroes the plaintext, frees everything */
	kb_result_clear(&dk);
	kb_client_close(c);
	return same ? 0 : 1;
}
