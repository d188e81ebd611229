/*
 * pem.c: a public key as PEM text (see pem.h).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "pem.h"

char *kb_public_pem(EVP_PKEY *pkey)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *pem = NULL, *data;
	long n;

	if (b && PEM_write_bio_PUBKEY(b, pkey) == 1 && (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (pem = malloc((size_t)n + 1)) != NULL) {
		memcpy(pem, data, (size_t)n);
		pem[n] = '\0';
	}
	BIO_free(b);
	return pem;
}
