#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "crypto.h"

static const struct {
	const char *name;
	enum emu_alg alg;
} alg_names[] = {
	{ "RSA1_5", EMU_ALG_RSA1_5 },
	{ "RSA-OAEP", EMU_ALG_RSA_OAEP },
	{ "RSA-OAEP-256", EMU_ALG_RSA_OAEP_256 },
	{ "A128KW", EMU_ALG_A128KW },
	{ "A192KW", EMU_ALG_A192KW },
	{ "A256KW", EMU_ALG_A256KW },
	{ "CKM_AES_KEY_WRAP", EMU_ALG_CKM_KW },
	{ "CKM_AES_KEY_WRAP_PAD", EMU_ALG_CKM_KW_PAD },
	{ "A128GCM", EMU_ALG_A128GCM },
	{ "A192GCM", EMU_ALG_A192GCM },
	{ "A256GCM", EMU_ALG_A256GCM },
	{ "A128CBC", EMU_ALG_A128CBC },
	{ "A192CBC", EMU_ALG_A192CBC },
	{ "A256CBC", EMU_ALG_A256CBC },
	{ "A128CBCPAD", EMU_ALG_A128CBCPAD },
	{ "A192CBCPAD", EMU_ALG_A192CBCPAD },
	{ "A256CBCPAD", EMU_ALG_A256CBCPAD },
};

enum emu_alg emu_alg_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(alg_names) / sizeof(alg_names[0]); i++)
		if (strcmp(name, alg_names[i].name) == 0)
			return alg_names[i].alg;
	return EMU_ALG_NONE;
}

static bool is_rsa(enum emu_alg a)
{
	return a >= EMU_ALG_RSA1_5 && a <= EMU_ALG_RSA_OAEP_256;
}

static bool is_kw(enum emu_alg a)
{
	return a >= EMU_ALG_A128KW && a <= EMU_ALG_CKM_KW_PAD;
}

/* aes_bits is the key size an alg demands, 0 for "any". */
static size_t aes_bytes(enum emu_alg a)
{
	switch (a) {
	case EMU_ALG_A128KW: case EMU_ALG_A128GCM: case EMU_ALG_A128CBC: case EMU_ALG_A128CBCPAD:
		return 16;
	case EMU_ALG_A192KW: case EMU_ALG_A192GCM: case EMU_ALG_A192CBC: case EMU_ALG_A192CBCPAD:
		return 24;
	case EMU_ALG_A256KW: case EMU_ALG_A256GCM: case EMU_ALG_A256CBC: case EMU_ALG_A256CBCPAD:
		return 32;
	default:
		return 0;
	}
}

int emu_random(void *p, size_t n)
{
	return RAND_bytes(p, (int)n) == 1 ? 0 : -1;
}

int emu_hmac_sha256(const uint8_t *key, size_t keylen, const uint8_t *data, size_t n, uint8_t mac[32])
{
	unsigned len = 0;

	return HMAC(EVP_sha256(), key, (int)keylen, data, n, mac, &len) && len == 32 ? 0 : -1;
}

int emu_random_hex(char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[64];

	if (n > sizeof(b) || emu_random(b, n))
		return -1;
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * n] = '\0';
	return 0;
}

static int rsa_crypt(EVP_PKEY *k, enum emu_alg alg, bool forward, const uint8_t *in, size_t n,
		     struct emu_cout *out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
	int rc = EMU_CRYPTO_INTERNAL;
	size_t olen = 0;

	if (!ctx)
		return rc;
	if ((forward ? EVP_PKEY_encrypt_init(ctx) : EVP_PKEY_decrypt_init(ctx)) != 1)
		goto out;
	if (alg == EMU_ALG_RSA1_5) {
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1)
			goto out;
	} else {
		const EVP_MD *md = alg == EMU_ALG_RSA_OAEP ? EVP_sha1() : EVP_sha256();

		if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) != 1 ||
		    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1)
			goto out;
	}
	if ((forward ? EVP_PKEY_encrypt(ctx, NULL, &olen, in, n) :
	     EVP_PKEY_decrypt(ctx, NULL, &olen, in, n)) != 1)
		goto out;
	out->out = malloc(olen ? olen : 1);
	if (!out->out)
		goto out;
	rc = EMU_CRYPTO_BAD_INPUT;
	if (!forward && n != (size_t)EVP_PKEY_get_size(k))
		goto out;
	if ((forward ? EVP_PKEY_encrypt(ctx, out->out, &olen, in, n) :
	     EVP_PKEY_decrypt(ctx, out->out, &olen, in, n)) != 1)
		goto out;
	out->n = olen;
	rc = EMU_CRYPTO_OK;
out:
	if (rc != EMU_CRYPTO_OK) {
		free(out->out);
		out->out = NULL;
	}
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static const EVP_CIPHER *kw_cipher(size_t keylen, bool pad)
{
	switch (keylen) {
	case 16: return pad ? EVP_aes_128_wrap_pad() : EVP_aes_128_wrap();
	case 24: return pad ? EVP_aes_192_wrap_pad() : EVP_aes_192_wrap();
	case 32: return pad ? EVP_aes_256_wrap_pad() : EVP_aes_256_wrap();
	default: return NULL;
	}
}

int emu_aes_kw(const uint8_t *kek, size_t keklen, bool pad, bool wrap, const uint8_t *in, size_t n,
	       uint8_t **out, size_t *outn)
{
	const EVP_CIPHER *c = kw_cipher(keklen, pad);
	EVP_CIPHER_CTX *ctx;
	int rc = EMU_CRYPTO_BAD_INPUT, l1 = 0, l2 = 0;
	uint8_t *buf;

	*out = NULL;
	*outn = 0;
	if (!c)
		return EMU_CRYPTO_BAD_ALG;
	/* RFC 3394 needs >= 2 semiblocks; RFC 5649 >= 1 byte; unwrap needs whole semiblocks */
	if (n > 1 << 20 || n == 0 || (!pad && (n % 8 || n < 16)) || (!wrap && (n % 8 || n < 16)))
		return EMU_CRYPTO_BAD_INPUT;
	buf = malloc(n + 16);
	ctx = EVP_CIPHER_CTX_new();
	if (!buf || !ctx) {
		rc = EMU_CRYPTO_INTERNAL;
		goto out;
	}
	EVP_CIPHER_CTX_set_flags(ctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
	if (EVP_CipherInit_ex(ctx, c, NULL, kek, NULL, wrap ? 1 : 0) != 1 ||
	    EVP_CipherUpdate(ctx, buf, &l1, in, (int)n) != 1 || l1 <= 0 ||
	    EVP_CipherFinal_ex(ctx, buf + l1, &l2) != 1)
		goto out;
	*out = buf;
	*outn = (size_t)(l1 + l2);
	buf = NULL;
	rc = EMU_CRYPTO_OK;
out:
	free(buf);
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

static const EVP_CIPHER *block_cipher(enum emu_alg a, size_t keylen)
{
	bool gcm = a >= EMU_ALG_A128GCM && a <= EMU_ALG_A256GCM;

	switch (keylen) {
	case 16: return gcm ? EVP_aes_128_gcm() : EVP_aes_128_cbc();
	case 24: return gcm ? EVP_aes_192_gcm() : EVP_aes_192_cbc();
	case 32: return gcm ? EVP_aes_256_gcm() : EVP_aes_256_cbc();
	default: return NULL;
	}
}

static int aes_crypt(const struct emu_keymat *k, const struct emu_cin *in, struct emu_cout *out)
{
	bool gcm = in->alg >= EMU_ALG_A128GCM && in->alg <= EMU_ALG_A256GCM;
	bool pad = in->alg >= EMU_ALG_A128CBCPAD;
	const EVP_CIPHER *c = block_cipher(in->alg, k->aes_len);
	EVP_CIPHER_CTX *ctx = NULL;
	int rc = EMU_CRYPTO_BAD_INPUT, l1 = 0, l2 = 0;

	if (!c)
		return EMU_CRYPTO_BAD_ALG;
	if (in->n > 1 << 20)
		return EMU_CRYPTO_BAD_INPUT;
	if (gcm) {
		out->iv_len = 12;
		if (in->iv && in->iv_len == 12)
			memcpy(out->iv, in->iv, 12);
		else if (in->iv || !in->forward)
			return EMU_CRYPTO_BAD_INPUT;
		else if (emu_random(out->iv, 12))
			return EMU_CRYPTO_INTERNAL;
		if (!in->forward && (!in->tag || in->tag_len != 16))
			return EMU_CRYPTO_BAD_INPUT;
	} else {
		if (!in->iv || in->iv_len != 16 || (!pad && in->n % 16))
			return EMU_CRYPTO_BAD_INPUT;
		memcpy(out->iv, in->iv, 16);
		out->iv_len = 16;
	}
	out->out = malloc(in->n + 32);
	ctx = EVP_CIPHER_CTX_new();
	if (!out->out || !ctx) {
		rc = EMU_CRYPTO_INTERNAL;
		goto out;
	}
	if (EVP_CipherInit_ex(ctx, c, NULL, NULL, NULL, in->forward) != 1 ||
	    (gcm && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1) ||
	    EVP_CipherInit_ex(ctx, NULL, NULL, k->aes, out->iv, in->forward) != 1)
		goto out;
	if (!gcm)
		EVP_CIPHER_CTX_set_padding(ctx, pad);
	if (gcm && in->aad && EVP_CipherUpdate(ctx, NULL, &l1, in->aad, (int)in->aad_len) != 1)
		goto out;
	if (gcm && !in->forward &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, (void *)in->tag) != 1)
		goto out;
	if (EVP_CipherUpdate(ctx, out->out, &l1, in->in, (int)in->n) != 1 ||
	    EVP_CipherFinal_ex(ctx, out->out + l1, &l2) != 1)
		goto out;
	if (gcm && in->forward) {
		if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, out->tag) != 1)
			goto out;
		out->tag_len = 16;
	}
	out->n = (size_t)(l1 + l2);
	rc = EMU_CRYPTO_OK;
out:
	if (rc != EMU_CRYPTO_OK) {
		free(out->out);
		out->out = NULL;
	}
	EVP_CIPHER_CTX_free(ctx);
	return rc;
}

int emu_crypto_run(const struct emu_keymat *k, const struct emu_cin *in, struct emu_cout *out)
{
	size_t need = aes_bytes(in->alg);

	memset(out, 0, sizeof(*out));
	if (is_rsa(in->alg))
		return k->pkey ? rsa_crypt(k->pkey, in->alg, in->forward, in->in, in->n, out) :
				 EMU_CRYPTO_BAD_ALG;
	if (in->alg == EMU_ALG_NONE || k->pkey || (need && need != k->aes_len))
		return EMU_CRYPTO_BAD_ALG;
	if (is_kw(in->alg) != in->wrap_op)
		return EMU_CRYPTO_BAD_ALG;
	if (is_kw(in->alg))
		return emu_aes_kw(k->aes, k->aes_len, in->alg == EMU_ALG_CKM_KW_PAD, in->forward,
				  in->in, in->n, &out->out, &out->n);
	return aes_crypt(k, in, out);
}

int emu_rsa_generate(int bits, unsigned long e, EVP_PKEY **out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	BIGNUM *bn = BN_new();
	int rc = -1;

	*out = NULL;
	if (!ctx || !bn || !BN_set_word(bn, e) || EVP_PKEY_keygen_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) != 1 ||
	    EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, bn) != 1 || EVP_PKEY_generate(ctx, out) != 1)
		goto out;
	rc = 0;
out:
	BN_free(bn);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static int bn_bytes(EVP_PKEY *k, const char *name, uint8_t **p, size_t *n)
{
	BIGNUM *bn = NULL;
	int len;

	if (EVP_PKEY_get_bn_param(k, name, &bn) != 1)
		return -1;
	len = BN_num_bytes(bn);
	*p = malloc(len ? (size_t)len : 1);
	if (!*p) {
		BN_free(bn);
		return -1;
	}
	*n = (size_t)BN_bn2bin(bn, *p);
	BN_free(bn);
	return 0;
}

int emu_rsa_public(EVP_PKEY *k, uint8_t **n, size_t *nlen, uint8_t **e, size_t *elen)
{
	*n = *e = NULL;
	if (bn_bytes(k, OSSL_PKEY_PARAM_RSA_N, n, nlen) || bn_bytes(k, OSSL_PKEY_PARAM_RSA_E, e, elen)) {
		free(*n);
		free(*e);
		*n = *e = NULL;
		return -1;
	}
	return 0;
}

int emu_pkey_to_der(EVP_PKEY *k, uint8_t **der, size_t *n)
{
	int len;

	*der = NULL;
	len = i2d_PrivateKey(k, der);
	if (len <= 0)
		return -1;
	*n = (size_t)len;
	return 0;
}

EVP_PKEY *emu_pkey_from_der(const uint8_t *der, size_t n)
{
	const unsigned char *p = der;

	return d2i_AutoPrivateKey(NULL, &p, (long)n);
}

EVP_PKEY *emu_rsa_from_parts(const uint8_t *const parts[8], const size_t lens[8])
{
	static const char *const names[8] = {
		OSSL_PKEY_PARAM_RSA_N, OSSL_PKEY_PARAM_RSA_E, OSSL_PKEY_PARAM_RSA_D,
		OSSL_PKEY_PARAM_RSA_FACTOR1, OSSL_PKEY_PARAM_RSA_FACTOR2, OSSL_PKEY_PARAM_RSA_EXPONENT1,
		OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL, *check = NULL;
	EVP_PKEY *k = NULL;
	BIGNUM *bn[8] = { 0 };
	bool ok = bld != NULL;

	for (int i = 0; ok && i < 8; i++)
		ok = (bn[i] = BN_bin2bn(parts[i], (int)lens[i], NULL)) != NULL &&
		     OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i]);
	ok = ok && (params = OSSL_PARAM_BLD_to_param(bld)) &&
	     (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) && EVP_PKEY_fromdata_init(ctx) > 0 &&
	     EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_KEYPAIR, params) > 0;
	/* the parts must make one key: a typo in d or a p from another key is refused here */
	if (ok && (!(check = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL)) || EVP_PKEY_check(check) != 1)) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	for (int i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	return ok ? k : NULL;
}

int emu_aead_seal(const uint8_t key[32], const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
		  uint8_t **out, size_t *outn)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t *buf = malloc(12 + n + 16);
	int len = 0, fin = 0, ok;

	ok = c && buf && RAND_bytes(buf, 12) == 1 &&
	     EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, buf) == 1 &&
	     EVP_EncryptUpdate(c, NULL, &len, aad, (int)aadlen) == 1 &&
	     EVP_EncryptUpdate(c, buf + 12, &len, in, (int)n) == 1 &&
	     EVP_EncryptFinal_ex(c, buf + 12 + len, &fin) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, buf + 12 + n) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		free(buf);
		return -1;
	}
	*out = buf;
	*outn = 12 + n + 16;
	return 0;
}

int emu_aead_open(const uint8_t key[32], const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t n,
		  uint8_t **out, size_t *outn)
{
	EVP_CIPHER_CTX *c;
	uint8_t *buf;
	int len = 0, fin = 0, ok;

	if (n < 12 + 16)
		return -1;
	c = EVP_CIPHER_CTX_new();
	buf = malloc(n - 28 + 1);
	ok = c && buf && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
	     EVP_DecryptUpdate(c, NULL, &len, aad, (int)aadlen) == 1 &&
	     EVP_DecryptUpdate(c, buf, &len, in + 12, (int)(n - 28)) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(in + n - 16)) == 1 &&
	     EVP_DecryptFinal_ex(c, buf + len, &fin) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		if (buf)
			OPENSSL_clear_free(buf, n - 28 + 1);
		return -1;
	}
	*out = buf;
	*outn = n - 28;
	return 0;
}
