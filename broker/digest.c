#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "digest.h"

static EVP_MD *sha256;
static pthread_key_t ctx_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void ctx_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void fetch(void)
{
	sha256 = EVP_MD_fetch(NULL, "SHA2-256", NULL);
	if (pthread_key_create(&ctx_key, ctx_free) != 0)
		abort();
}

/*
 * thread_ctx is this thread's digest context, made once: EVP_Digest would
 * allocate and free one per call, which is most of a hit's digest step.
 */
static EVP_MD_CTX *thread_ctx(void)
{
	EVP_MD_CTX *ctx = pthread_getspecific(ctx_key);

	if (ctx == NULL && ((ctx = EVP_MD_CTX_new()) == NULL || pthread_setspecific(ctx_key, ctx) != 0))
		abort();
	return ctx;
}

void kb_sha256(const void *p, size_t n, uint8_t out[KB_SHA256_LEN])
{
	EVP_MD_CTX *ctx;

	pthread_once(&once, fetch);
	/* a missing SHA-256 means a broken OpenSSL install: nothing can be trusted */
	if (sha256 == NULL)
		abort();
	ctx = thread_ctx();
	if (EVP_DigestInit_ex2(ctx, sha256, NULL) != 1 || EVP_DigestUpdate(ctx, p, n) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, NULL) != 1)
		abort();
}
