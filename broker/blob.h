/*
 * blob.h: the wrapped-key blob, the one string a client stores beside its data.
 *
 * Format version 1 (documented in docs/protocol.md, frozen by the golden blobs
 * in tests/golden/):
 *
 *     kb1:<key>:<version>:<alg>:<ciphertext>:<check>
 *
 *   key         logical key name, [A-Za-z0-9_-]{1,64}
 *   version     key version, [A-Za-z0-9_-]{1,64}
 *   alg         canonical algorithm name (alg.h)
 *   ciphertext  base64url, unpadded, of the wrapped DEK
 *   check       base64url of the first 6 bytes of SHA-256 over everything
 *               before it, including the last ':'
 *
 * Format version 2 (written by every wrap since; version 1 still decodes):
 *
 *     kb2:<key>:<version>:<fp>:<alg>:<ciphertext>:<check>
 *
 *   fp          the wrapping key version's fingerprint: 16 lowercase hex
 *               digits, the first 8 bytes of SHA-256 over what identifies
 *               the version (keyprint.h), so a blob names the exact key that
 *               wrapped it and is routed by it, not by its names alone
 *
 * The check makes every truncation and every single-bit flip a bad_blob at
 * decode time, before any key service sees the blob.
 *
 * The decoder also reads the raw form that Azure's SDKs produce, a JSON object
 * {"kid":"https://HOST/keys/NAME/VERSION","alg":"RSA-OAEP","value":"<b64url>"};
 * then key is empty and kid holds the URL, for the core to match against the
 * configured keys.
 */
#ifndef KB_BLOB_H
#define KB_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "error.h"

#define KB_BLOB_MAX 4096 /* longest blob string, NUL excluded */
#define KB_KID_MAX 512
#define KB_BLOB_FP_LEN 16 /* hex digits of a kb2 fingerprint (as the KMS face's key_id) */

typedef struct kb_blob {
	char key[KB_KEY_NAME_MAX + 1];
	char version[KB_VERSION_MAX + 1];
	char fp[KB_BLOB_FP_LEN + 1]; /* kb2: the wrapping version's fingerprint; kb1, raw: "" */
	kb_alg alg;
	uint8_t ct[KB_WRAPPED_MAX];
	size_t ctlen;
	char kid[KB_KID_MAX + 1]; /* raw form only, else "" */
} kb_blob;

/*
 * kb_blob_encode writes the string of b and a NUL to out (capacity cap): v2
 * when b->fp is set, else v1 (key, version, alg, ct). Returns KB_OK, or KB_E_INTERNAL if a field is invalid
 * or the result does not fit.
 */
kb_code kb_blob_encode(const kb_blob *b, char *out, size_t cap, kb_err *err);

/*
 * kb_blob_len_max is the longest blob (v2, the longer) a key with a keylen-byte name makes when its
 * ciphertexts are ctlen bytes (any version name, any algorithm).
 */
size_t kb_blob_len_max(size_t keylen, size_t ctlen);

/*
 * kb_blob_decode parses s[0..n) (either form) into b. Returns KB_OK or
 * KB_E_BAD_BLOB with a message that says which part is wrong.
 */
kb_code kb_blob_decode(const char *s, size_t n, kb_blob *b, kb_err *err);

/* kb_name_valid is true if s is a valid key name or version: [A-Za-z0-9_-]{1,64}. */
int kb_name_valid(const char *s, size_t n);

#endif
