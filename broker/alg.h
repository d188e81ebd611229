/*
 * alg.h: the wrapping algorithms, by one canonical name each.
 *
 * The canonical name is what a blob records and what `get` reports. Aliases
 * (e.g. Azure's CKM_AES_KEY_WRAP_PAD for AES-KWP) are accepted on input only.
 */
#ifndef KB_ALG_H
#define KB_ALG_H

#include <stdbool.h>

typedef enum kb_alg {
	KB_ALG_NONE = 0,
	KB_ALG_RSA_OAEP,      /* RSA-OAEP, SHA-1 and MGF1-SHA-1 */
	KB_ALG_RSA_OAEP_256,  /* RSA-OAEP, SHA-256 and MGF1-SHA-256 */
	KB_ALG_RSA1_5,        /* RSAES-PKCS1-v1_5 (legacy, Azure only) */
	KB_ALG_AES_KWP,       /* RFC 5649 AES key wrap with padding */
	KB_ALG_A128KW,        /* RFC 3394 AES key wrap, 128-bit KEK */
	KB_ALG_A192KW,
	KB_ALG_A256KW,
	KB_ALG_AES_GCM,       /* AES-GCM in a PKCS#11 token: 96-bit IV || ct || 128-bit tag */
	KB_ALG_AES_KW,        /* RFC 3394 AES key wrap in a PKCS#11 token, any KEK size */
	KB_ALG_COUNT
} kb_alg;

/* kb_alg_name returns the canonical name of alg ("" for KB_ALG_NONE). */
const char *kb_alg_name(kb_alg alg);

/* kb_alg_parse returns the algorithm named by name or an alias, or KB_ALG_NONE. */
kb_alg kb_alg_parse(const char *name);

/* kb_alg_is_rsa is true for the RSA algorithms. */
bool kb_alg_is_rsa(kb_alg alg);

#endif
