/*
 * rsa.c: RSA-OAEP wraps and unwraps.
 *
 * A wrap needs only the public key, so it is done locally with OpenSSL (no
 * token round trip); the unwrap is C_Decrypt with CKM_RSA_PKCS_OAEP and
 * explicit hash parameters, which libp11 cannot pass. Because the public
 * half works for any hash, each key first proves once, with a test decrypt
 * on the token, that the token can reverse the algorithm.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "p11.h"

size_t kb_p11_max_plaintext(kb_alg alg, int bits)
{
	size_t k = ((size_t)bits + 7) / 8, max;

	switch (alg) {
	case KB_ALG_RSA_OAEP:
		max = k > 42 ? k - 42 : 0;      /* k - 2*SHA1_LEN - 2 */
		break;
	case KB_ALG_RSA_OAEP_256:
		max = k > 66 ? k - 66 : 0;      /* k - 2*SHA256_LEN - 2 */
		break;
	case KB_ALG_AES_KWP:
	case KB_ALG_AES_KW:
	case KB_ALG_AES_GCM:
		max = KB_SECRET_MAX;
		break;
	default:
		return 0;
	}
	return max < KB_SECRET_MAX ? max : KB_SECRET_MAX;
}

kb_code kb_p11_rsa_pkey(kb_p11_call *c, CK_OBJECT_HANDLE obj, EVP_PKEY **pkey, kb_err *err)
{
	uint8_t n[KB_WRAPPED_MAX], e[16];
	CK_ATTRIBUTE a[] = {
		{ CKA_MODULUS, n, sizeof(n) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
	};
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pc = NULL;
	kb_code rc = KB_OK;
	CK_RV rv;

	*pkey = NULL;
	rv = c->key->f->C_GetAttributeValue(c->h, obj, a, 2);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GetAttributeValue", rv, err);
	bn = BN_bin2bn(n, (int)a[0].ulValueLen, NULL);
	be = BN_bin2bn(e, (int)a[1].ulValueLen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn == NULL || be == NULL || bld == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pc) <= 0 ||
	    EVP_PKEY_fromdata(pc, pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		rc = kb_err_set(err, KB_E_INTERNAL, "key %s: OpenSSL cannot read the RSA public key on token %s",
				c->key->name, c->key->tok->label);
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	return rc;
}

static kb_code oaep_encrypt(kb_p11_call *c, EVP_PKEY *pkey, const uint8_t *pt, size_t ptlen,
			    uint8_t *ct, size_t *ctlen, kb_err *err)
{
	const EVP_MD *md = c->alg == KB_ALG_RSA_OAEP_256 ? EVP_sha256() : EVP_sha1();
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	kb_code rc = KB_OK;

	if (ctx == NULL || EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0 ||
	    EVP_PKEY_encrypt(ctx, ct, ctlen, pt, ptlen) <= 0)
		rc = kb_err_set(err, KB_E_INTERNAL, "key %s: OpenSSL could not %s-encrypt under version %s",
				c->key->name, kb_alg_name(c->alg), c->version);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* oaep_decrypt runs the token's decrypt; *fn names the call that failed. */
static CK_RV oaep_decrypt(kb_p11_call *c, CK_OBJECT_HANDLE key, const uint8_t *ct, size_t ctlen,
			  uint8_t *out, CK_ULONG *outlen, const char **fn)
{
	int sha256 = c->alg == KB_ALG_RSA_OAEP_256;
	CK_RSA_PKCS_OAEP_PARAMS p = {
		.hashAlg = sha256 ? CKM_SHA256 : CKM_SHA_1,
		.mgf = sha256 ? CKG_MGF1_SHA256 : CKG_MGF1_SHA1,
		.source = CKZ_DATA_SPECIFIED,
	};
	CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &p, sizeof(p) };
	CK_RV rv;

	*fn = "C_DecryptInit";
	rv = c->key->f->C_DecryptInit(c->h, &m, key);
	if (rv != CKR_OK)
		return rv;
	*fn = "C_Decrypt";
	return c->key->f->C_Decrypt(c->h, (CK_BYTE *)ct, ctlen, out, outlen);
}

kb_code kb_p11_rsa_probe(kb_p11_call *c, const kb_p11_version *v, kb_err *err)
{
	static const uint8_t known[16] = "keybroker probe";
	kb_p11_key *k = c->key;
	uint8_t ct[KB_WRAPPED_MAX], out[KB_WRAPPED_MAX];
	size_t ctlen = sizeof(ct);
	CK_ULONG outlen = sizeof(out);
	const char *fn;
	kb_code rc;
	CK_RV rv;

	switch (atomic_load(&k->probe[c->alg])) {
	case KB_P11_PROBE_OK:
		return KB_OK;
	case KB_P11_PROBE_NO:
		return kb_p11_fail(c, "C_DecryptInit", k->probe_rv[c->alg], err);
	}
	rc = oaep_encrypt(c, v->pkey, known, sizeof(known), ct, &ctlen, err);
	if (rc != KB_OK)
		return rc;
	rv = oaep_decrypt(c, v->key, ct, ctlen, out, &outlen, &fn);
	if (rv == CKR_OK && (outlen != sizeof(known) || memcmp(out, known, outlen) != 0)) {
		fn = "C_Decrypt";
		rv = CKR_MECHANISM_PARAM_INVALID; /* the token does not reverse it faithfully */
	}
	if (rv == CKR_OK) {
		atomic_store(&k->probe[c->alg], KB_P11_PROBE_OK);
		return KB_OK;
	}
	rc = kb_p11_fail(c, fn, rv, err);
	if (rc == KB_E_MECHANISM_UNSUPPORTED) {
		k->probe_rv[c->alg] = rv;
		atomic_store(&k->probe[c->alg], KB_P11_PROBE_NO);
	}
	return rc;
}

kb_code kb_p11_rsa_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err)
{
	size_t max = kb_p11_max_plaintext(c->alg, v->bits);
	kb_code rc;

	if (ptlen == 0 || ptlen > max)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the plaintext is %zu bytes; %s under key %s (RSA-%d) wraps 1 to %zu bytes",
				  ptlen, kb_alg_name(c->alg), c->key->name, v->bits, max);
	if (*ctlen < (size_t)EVP_PKEY_get_size(v->pkey))
		return kb_err_set(err, KB_E_INTERNAL, "wrap output buffer of %zu bytes is too small", *ctlen);
	if (!v->decrypt)
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "the token refused: key %s version %s may not unwrap (CKA_DECRYPT is false on token %s), so the broker does not wrap under it: set CKA_DECRYPT or rotate",
				  c->key->name, v->name, c->key->tok->label);
	rc = kb_p11_rsa_probe(c, v, err);
	if (rc != KB_OK)
		return rc;
	return oaep_encrypt(c, v->pkey, pt, ptlen, ct, ctlen, err);
}

kb_code kb_p11_rsa_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err)
{
	size_t k = ((size_t)v->bits + 7) / 8;
	uint8_t buf[KB_WRAPPED_MAX];
	CK_ULONG n = sizeof(buf);
	const char *fn;
	kb_code rc = KB_OK;
	CK_RV rv;

	if (ctlen != k)
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "the ciphertext is %zu bytes; key %s version %s (RSA-%d) takes %zu: the blob is corrupt or truncated",
				  ctlen, c->key->name, v->name, v->bits, k);
	rv = oaep_decrypt(c, v->key, ct, ctlen, buf, &n, &fn);
	rc = kb_p11_decrypted(c, fn, rv, buf, n, pt, ptlen, err);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}
