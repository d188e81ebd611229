/*
 * libkb_roundtrip SOCKET: drives a real keybrokerd through libkeybroker and
 * checks every call's result. Exit 0 when all hold.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keybroker.h"

static int failures;

#define EXPECT(cond, ...)                                    \
	do {                                                 \
		if (!(cond)) {                               \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);        \
			fputc('\n', stderr);                 \
			failures++;                          \
		}                                            \
	} while (0)

static void round_trip(kb_client *c, const char *key)
{
	uint8_t pt[32];
	kb_result w = { 0 }, u = { 0 }, d = { 0 }, r = { 0 }, x = { 0 };
	kb_error err;

	for (size_t i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(i * 7 + 1);
	EXPECT(kb_wrap(c, key, NULL, pt, sizeof(pt), &w, &err) == KB_OK, "wrap %s: %s", key, err.message);
	EXPECT(w.blob && strncmp(w.blob, "kb2:", 4) == 0, "wrap gives a kb2 blob");
	EXPECT(w.key && strcmp(w.key, key) == 0, "wrap names the key");
	EXPECT(kb_unwrap(c, w.blob, &u, &err) == KB_OK, "unwrap %s: %s", key, err.message);
	EXPECT(u.plaintext_len == sizeof(pt) && memcmp(u.plaintext, pt, sizeof(pt)) == 0,
	       "unwrap gives back the plaintext");

	EXPECT(kb_datakey(c, key, 128, &d, &err) == KB_OK, "datakey %s: %s", key, err.message);
	EXPECT(d.plaintext_len == 16, "datakey of 128 bits has 16 bytes");
	EXPECT(kb_flush(c, key, NULL, &err) == KB_OK, "flush: %s", err.message);
	EXPECT(kb_unwrap(c, d.blob, &x, &err) == KB_OK, "unwrap datakey blob: %s", err.message);
	EXPECT(x.plaintext_len == 16 && memcmp(x.plaintext, d.plaintext, 16) == 0 && !x.cached,
	       "datakey blob unwraps to its DEK from the token");
	kb_result_clear(&x);

	EXPECT(kb_rotate(c, key, &r, &err) == KB_OK, "rotate: %s", err.message);
	EXPECT(r.version && strcmp(r.version, "02") == 0, "rotate makes version 02");
	kb_result_clear(&r);
	EXPECT(kb_rewrap(c, w.blob, NULL, &r, &err) == KB_OK, "rewrap: %s", err.message);
	EXPECT(r.version && strcmp(r.version, "02") == 0 && r.plaintext == NULL,
	       "rewrap moves to 02 without handing out the DEK");
	EXPECT(kb_unwrap(c, r.blob, &x, &err) == KB_OK && x.plaintext_len == sizeof(pt) &&
		       memcmp(x.plaintext, pt, sizeof(pt)) == 0,
	       "rewrapped blob unwraps");
	kb_result_clear(&w);
	kb_result_clear(&u);
	kb_result_clear(&d);
	kb_result_clear(&r);
	kb_result_clear(&x);
}

/* batch: kb_unwrap_many and kb_rewrap_many answer per item, in order, on the PKCS#11 worker path */
static void batch(kb_client *c)
{
	kb_result d[2] = { 0 }, out[3], rw[3];
	kb_code codes[3];
	kb_error err;
	const char *blobs[3];

	EXPECT(kb_datakey(c, "aes", 256, &d[0], &err) == KB_OK && kb_datakey(c, "rsa", 256, &d[1], &err) == KB_OK,
	       "two data keys: %s", err.message);
	EXPECT(kb_flush(c, NULL, NULL, &err) == KB_OK, "flush: %s", err.message);
	blobs[0] = d[0].blob;
	blobs[1] = "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz";
	blobs[2] = d[1].blob;
	EXPECT(kb_unwrap_many(c, blobs, 3, out, codes, &err) == KB_OK, "unwrap_many: %s", err.message);
	EXPECT(codes[0] == KB_OK && out[0].plaintext_len == 32 && memcmp(out[0].plaintext, d[0].plaintext, 32) == 0,
	       "item 0 unwraps to its DEK");
	EXPECT(codes[1] == KB_E_BAD_BLOB && out[1].plaintext == NULL, "item 1 is bad_blob");
	EXPECT(codes[2] == KB_OK && out[2].plaintext_len == 32 && memcmp(out[2].plaintext, d[1].plaintext, 32) == 0,
	       "item 2 unwraps to its DEK");
	EXPECT(kb_rewrap_many(c, blobs, 3, NULL, rw, codes, &err) == KB_OK, "rewrap_many: %s", err.message);
	EXPECT(codes[0] == KB_OK && rw[0].blob && rw[0].plaintext == NULL && codes[1] == KB_E_BAD_BLOB &&
		       codes[2] == KB_OK && rw[2].blob,
	       "rewrap_many moves the good items and hands out no DEK");
	EXPECT(kb_unwrap_many(c, blobs, 0, out, codes, &err) == KB_OK, "an empty batch is answered");
	for (int i = 0; i < 3; i++) {
		kb_result_clear(&out[i]);
		kb_result_clear(&rw[i]);
	}
	kb_result_clear(&d[0]);
	kb_result_clear(&d[1]);
}

int main(int argc, char **argv)
{
	kb_client *c = NULL;
	kb_result res = { 0 };
	kb_error err;
	char *json = NULL;

	if (argc != 2) {
		fprintf(stderr, "usage: libkb_roundtrip SOCKET\n");
		return 2;
	}
	if (kb_client_connect(argv[1], &c, &err) != KB_OK) {
		fprintf(stderr, "connect: %s\n", err.message);
		return 1;
	}
	EXPECT(kb_status(c, &json, &err) == KB_OK && strstr(json, "\"keys\""), "status: %s", err.message);
	kb_free(json);
	EXPECT(kb_get(c, "rsa", &json, &err) == KB_OK && strstr(json, "BEGIN PUBLIC KEY"), "get rsa has a PEM");
	kb_free(json);
	round_trip(c, "rsa");
	round_trip(c, "aes");
	batch(c);

	EXPECT(kb_unwrap(c, "kb1:aes:01:AES-KWP:AAAA:zzzzzzzz", &res, &err) == KB_E_BAD_BLOB,
	       "a broken blob gives KB_E_BAD_BLOB");
	EXPECT(strlen(err.message) > 10, "with a message");
	EXPECT(kb_wrap(c, "missing", NULL, (const uint8_t *)"x", 1, &res, &err) == KB_E_UNKNOWN_KEY,
	       "an unknown key gives KB_E_UNKNOWN_KEY");
	/* a broker error leaves the connection usable */
	EXPECT(kb_status(c, &json, &err) == KB_OK, "usable after an error");
	kb_free(json);
	kb_client_close(c);

	EXPECT(kb_client_connect("/nonexistent/kb.sock", &c, &err) == KB_E_IO && c == NULL,
	       "connecting to a missing socket gives KB_E_IO");
	if (failures == 0)
		printf("libkeybroker: all checks passed\n");
	return failures ? 1 : 0;
}
