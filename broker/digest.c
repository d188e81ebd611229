/*
 * digest.c: SHA-256 without allocation (see digest.h).
 *
 * OpenSSL 3.0's EVP digests make a provider context on every init, even on
 * a reused EVP_MD_CTX: a malloc and a free per cache hit, and a name lookup
 * per call for SHA256(). The SHA256_* functions, deprecated in 3.0 but kept
 * through 3.x, run the same assembly on a context on the stack.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "digest.h"

void kb_sha256(const void *p, size_t n, uint8_t out[KB_SHA256_LEN])
{
	SHA256_CTX ctx;

	SHA256_Init(&ctx);
	SHA256_Update(&ctx, p, n);
	SHA256_Final(out, &ctx);
	OPENSSL_cleanse(&ctx, sizeof(ctx));
}
