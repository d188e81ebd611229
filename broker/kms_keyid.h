/*
 * kms_keyid.h: the KMS face's own texts: key_id and annotations.
 *
 * A key_id is "kb1/KEY/VERSION/FINGERPRINT": the configured key, the exact
 * key version, and 16 hex digits of a SHA-256 over the version's key
 * material as the key service shows it (the public key, or what identifies
 * a secret key), so a key deleted and made again under the same name and
 * version never gets the same key_id. kube-apiserver hands both back on every
 * Decrypt; they are untrusted input and parsed here, nowhere else.
 */
#ifndef KB_KMS_KEYID_H
#define KB_KMS_KEYID_H

#include <stddef.h>

#include "blob.h"
#include "error.h"

#define KB_KMS_FP_LEN 16
#define KB_KMS_KEY_ID_MAX (4 + KB_KEY_NAME_MAX + 1 + KB_VERSION_MAX + 1 + KB_KMS_FP_LEN)
#define KB_KMS_ANNOTATIONS_MAX 32768 /* keys and values together, as kube-apiserver allows */

typedef struct kb_kms_key_id {
	char key[KB_KEY_NAME_MAX + 1];
	char version[KB_VERSION_MAX + 1];
	char fp[KB_KMS_FP_LEN + 1];
} kb_kms_key_id;

/* kb_kms_fingerprint writes the fingerprint of material[0..n) (16 hex digits and a NUL) to fp. */
void kb_kms_fingerprint(const void *material, size_t n, char fp[KB_KMS_FP_LEN + 1]);

/* kb_kms_key_id_format writes the key_id of id to out (KB_KMS_KEY_ID_MAX + 1). */
void kb_kms_key_id_format(const kb_kms_key_id *id, char *out, size_t cap);

/*
 * kb_kms_key_id_parse reads s[0..n) into id. Returns KB_OK or KB_E_BAD_REQUEST
 * with a message that says which part is wrong.
 */
kb_code kb_kms_key_id_parse(const char *s, size_t n, kb_kms_key_id *id, kb_err *err);

/*
 * kb_kms_annotation_check checks one more annotation key (NUL-free, n bytes)
 * with a value of vlen bytes; *total carries the running size. kube-apiserver
 * asks for fully qualified DNS names (so "format.keybroker.io", not a path),
 * at most 32 kB in all. Returns KB_OK or KB_E_BAD_REQUEST.
 */
kb_code kb_kms_annotation_check(const char *key, size_t n, size_t vlen, size_t *total, kb_err *err);

#endif
