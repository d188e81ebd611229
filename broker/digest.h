/*
 * digest.h: the one SHA-256 of the broker (cache keys, blob checks, audit).
 *
 * It allocates nothing (digest.c says how), which matters on the cache-hit
 * path: OpenSSL 3's SHA256() looks the algorithm up by name on every call,
 * and an EVP digest makes a provider context on every init.
 */
#ifndef KB_DIGEST_H
#define KB_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define KB_SHA256_LEN 32

/* kb_sha256 writes the SHA-256 of p[0..n) to out. Thread-safe. */
void kb_sha256(const void *p, size_t n, uint8_t out[KB_SHA256_LEN]);

#endif
