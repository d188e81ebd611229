#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "digest.h"

static EVP_MD *sha256;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

void kb_sha256(const void *p, size_t n, uint8_t out[KB_SHA256_LEN])
{
	pthread_once(&once, fetch);
	/* a missing SHA-256 means a broken OpenSSL install: nothing can be trusted */
	if (sha256 == NULL || EVP_Digest(p, n, out, NULL, sha256, NULL) != 1)
		abort();
}
