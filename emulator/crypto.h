/*
 * crypto.h: the emulator's cryptography, all through OpenSSL 3: RSA key
 * generation and RSA1_5 / RSA-OAEP / RSA-OAEP-256, AES key wrap (RFC 3394)
 * and key wrap with padding (RFC 5649) via the EVP wrap ciphers, AES-GCM and
 * AES-CBC for encrypt/decrypt.
 */
#ifndef EMU_CRYPTO_H
#define EMU_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

enum emu_alg {
	EMU_ALG_NONE,
	EMU_ALG_RSA1_5,
	EMU_ALG_RSA_OAEP,
	EMU_ALG_RSA_OAEP_256,
	EMU_ALG_A128KW,
	EMU_ALG_A192KW,
	EMU_ALG_A256KW,
	EMU_ALG_CKM_KW,      /* CKM_AES_KEY_WRAP, RFC 3394, any AES key size */
	EMU_ALG_CKM_KW_PAD,  /* CKM_AES_KEY_WRAP_PAD, RFC 5649 */
	EMU_ALG_A128GCM,
	EMU_ALG_A192GCM,
	EMU_ALG_A256GCM,
	EMU_ALG_A128CBC,
	EMU_ALG_A192CBC,
	EMU_ALG_A256CBC,
	EMU_ALG_A128CBCPAD,
	EMU_ALG_A192CBCPAD,
	EMU_ALG_A256CBCPAD,
};

enum emu_crypto_rc {
	EMU_CRYPTO_OK,
	EMU_CRYPTO_BAD_ALG,    /* the algorithm does not fit the key or the operation */
	EMU_CRYPTO_BAD_INPUT,  /* wrong length, missing iv/tag, or decryption failed */
	EMU_CRYPTO_INTERNAL,
};

/* Key material, as a crypto call borrows it (pkey holds its own reference). */
struct emu_keymat {
	EVP_PKEY *pkey;
	uint8_t aes[32];
	size_t aes_len;
};

struct emu_cin {
	enum emu_alg alg;
	bool wrap_op;      /* wrapkey/unwrapkey rather than encrypt/decrypt */
	bool forward;      /* wrap or encrypt */
	const uint8_t *in, *iv, *aad, *tag;
	size_t n, iv_len, aad_len, tag_len;
};

struct emu_cout {
	uint8_t *out;      /* malloc'd */
	size_t n;
	uint8_t iv[16], tag[16];
	size_t iv_len, tag_len;
};

/* emu_alg_parse returns the algorithm named name (exact JWA name), or EMU_ALG_NONE. */
enum emu_alg emu_alg_parse(const char *name);

/*
 * emu_crypto_run applies in->alg with key k. Returns an enum emu_crypto_rc;
 * on EMU_CRYPTO_OK out->out holds out->n bytes (free it).
 */
int emu_crypto_run(const struct emu_keymat *k, const struct emu_cin *in, struct emu_cout *out);

/* emu_aes_kw wraps (or unwraps) in with kek, RFC 3394 or, with pad, RFC 5649. */
int emu_aes_kw(const uint8_t *kek, size_t keklen, bool pad, bool wrap, const uint8_t *in, size_t n,
	       uint8_t **out, size_t *outn);

/* emu_rsa_generate makes an RSA key of bits with public exponent e. 0 or -1. */
int emu_rsa_generate(int bits, unsigned long e, EVP_PKEY **out);

/*
 * emu_rsa_from_parts builds a private RSA key from the big-endian JWK
 * members, in the order n, e, d, p, q, dp, dq, qi (parts[i], lens[i]), and
 * checks that they belong together. NULL if they do not.
 */
EVP_PKEY *emu_rsa_from_parts(const uint8_t *const parts[8], const size_t lens[8]);

/* emu_rsa_public returns fresh big-endian copies of n and e. 0 or -1. */
int emu_rsa_public(EVP_PKEY *k, uint8_t **n, size_t *nlen, uint8_t **e, size_t *elen);

/* emu_pkey_to_der / emu_pkey_from_der: private key as PKCS#8 DER, for --state. */
int emu_pkey_to_der(EVP_PKEY *k, uint8_t **der, size_t *n);
EVP_PKEY *emu_pkey_from_der(const uint8_t *der, size_t n);

/*
 * emu_aead_seal / emu_aead_open: AES-256-GCM with a random 12-byte nonce, as
 * nonce || ciphertext || 16-byte tag. 0 or -1 (open: also when the tag fails).
 */
int emu_aead_seal(const uint8_t key[32], const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
		  uint8_t **out, size_t *outn);
int emu_aead_open(const uint8_t key[32], const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
		  uint8_t **out, size_t *outn);

/* emu_hmac_sha256 writes HMAC-SHA256 of data under key to mac; 0 or -1. */
int emu_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t n, uint8_t mac[32]);

/* emu_random fills p with n random bytes; 0 or -1. */
int emu_random(void *p, size_t n);

/* emu_random_hex writes 2 * n random hex digits and a NUL to out. */
int emu_random_hex(char *out, size_t n);

#endif
