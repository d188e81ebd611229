/*
 * https.h: the Azure floor of the comparison: one raw unwrapkey request to
 * a Key Vault (the akv-emulator) over a kept-alive TLS connection per
 * client, the request the broker's Azure backend makes for an uncached
 * unwrap, with nothing else around it.
 */
#ifndef KB_BENCH_HTTPS_H
#define KB_BENCH_HTTPS_H

#include "bench.h"

typedef struct https_bench https_bench;

/*
 * https_bench_new aims at key_url (https://HOST:PORT/keys/NAME/VERSION),
 * with the bearer token in token_file and the CA bundle ca_file (NULL: the
 * system's), unwrapping ct[0..ctlen) with alg. NULL with err filled.
 */
https_bench *https_bench_new(const char *key_url, const char *token_file, const char *ca_file,
			     const char *alg, const uint8_t *ct, size_t ctlen, char *err, size_t errlen);
bench_driver *https_bench_driver(https_bench *h);
void https_bench_free(https_bench *h);

#endif
