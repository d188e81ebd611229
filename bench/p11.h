/*
 * p11.h: the PKCS#11 driver of the comparison. It makes the call the
 * broker's backend makes for one uncached unwrap, on a session of its own
 * per client: C_DecryptInit + C_Decrypt (RSA-OAEP, SHA-1) or C_UnwrapKey
 * (CKM_AES_KEY_WRAP_PAD) + C_GetAttributeValue + C_DestroyObject. Loaded
 * with SoftHSM's module it is floor B (in-process); loaded with
 * p11-kit-client.so it is the p11-kit server peer.
 */
#ifndef KB_BENCH_P11_H
#define KB_BENCH_P11_H

#include "bench.h"

typedef struct p11_bench p11_bench;

typedef enum p11_kind { P11_RSA_OAEP, P11_AES_KWP } p11_kind;

/*
 * p11_bench_new loads module, finds the token labelled token, logs in with
 * pin and finds the key labelled label; every op unwraps ct[0..ctlen), a
 * ciphertext the broker made. Returns NULL with err filled.
 */
p11_bench *p11_bench_new(const char *module, const char *token, const char *pin, const char *label,
			 p11_kind kind, const uint8_t *ct, size_t ctlen, char *err, size_t errlen);
bench_driver *p11_bench_driver(p11_bench *p);
void p11_bench_free(p11_bench *p);

#endif
