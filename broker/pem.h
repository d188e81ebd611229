/*
 * pem.h: a public key as PEM text, for describe's public_pem.
 *
 * Both backends report the RSA public key of a key this way; one function
 * writes it.
 */
#ifndef KB_PEM_H
#define KB_PEM_H

#include <openssl/evp.h>

/*
 * kb_public_pem returns pkey's SubjectPublicKeyInfo as a NUL-terminated PEM
 * string (malloc'd; the caller frees it), or NULL when out of memory.
 */
char *kb_public_pem(EVP_PKEY *pkey);

#endif
