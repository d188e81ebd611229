/*
 * b64.h: the one base64 codec of the project (RFC 4648).
 *
 * Standard base64 (with padding) is what the socket protocol uses for bytes;
 * base64url is what blobs and the Azure REST API use (sent unpadded, padding
 * accepted on input). Decoding is strict: any character outside the alphabet,
 * misplaced padding or non-zero trailing bits is an error, so one string has
 * exactly one meaning.
 */
#ifndef KB_B64_H
#define KB_B64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum kb_b64_variant {
	KB_B64_STD,  /* + / with = padding */
	KB_B64_URL,  /* - _ without padding */
} kb_b64_variant;

/* kb_b64_encoded_len returns the encoded length of n bytes, without the NUL. */
size_t kb_b64_encoded_len(size_t n, kb_b64_variant v);

/*
 * kb_b64_encode writes the encoding of in[0..n) and a NUL to out, which must
 * hold kb_b64_encoded_len(n, v) + 1 bytes. Returns the length written.
 */
size_t kb_b64_encode(const uint8_t *in, size_t n, char *out, kb_b64_variant v);

/*
 * kb_b64_decode decodes in[0..n) into out (capacity cap). Returns true and the
 * decoded length in *outlen, or false if the input is not valid base64 of the
 * variant or does not fit. KB_B64_URL also accepts '=' padding.
 */
bool kb_b64_decode(const char *in, size_t n, uint8_t *out, size_t cap, size_t *outlen,
		   kb_b64_variant v);

#endif
