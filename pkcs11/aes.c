/*
 * aes.c: AES-KWP (RFC 5649, CKM_AES_KEY_WRAP_PAD) wraps and unwraps.
 *
 * SoftHSM offers CKM_AES_KEY_WRAP_PAD only through C_WrapKey and
 * C_UnwrapKey, so the plaintext travels as a short-lived session object: a
 * generic secret, extractable and not sensitive, destroyed right after use.
 * libp11 has no API for any of this.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "p11.h"

static CK_MECHANISM kwp = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };

static CK_OBJECT_CLASS secret_class = CKO_SECRET_KEY;
static CK_KEY_TYPE generic = CKK_GENERIC_SECRET;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

#define TRANSIENT_MAX 6

/*
 * transient fills t with the template of the session object a DEK passes
 * through: a generic secret, not on the token, readable, with value when
 * given (wrap) and without (unwrap, where the token sets it). Returns the count.
 */
static CK_ULONG transient(CK_ATTRIBUTE t[TRANSIENT_MAX], const uint8_t *value, size_t len)
{
	CK_ULONG n = 0;

	t[n++] = (CK_ATTRIBUTE){ CKA_CLASS, &secret_class, sizeof(secret_class) };
	t[n++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &generic, sizeof(generic) };
	t[n++] = (CK_ATTRIBUTE){ CKA_TOKEN, &no, sizeof(no) };
	t[n++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &no, sizeof(no) };
	t[n++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &yes, sizeof(yes) };
	if (value)
		t[n++] = (CK_ATTRIBUTE){ CKA_VALUE, (void *)value, len };
	return n;
}

/* kwp_wrap wraps pt under v through a transient session object. */
static kb_code kwp_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err)
{
	CK_FUNCTION_LIST *f = c->key->f;
	CK_ATTRIBUTE t[TRANSIENT_MAX];
	CK_OBJECT_HANDLE obj;
	CK_ULONG n = *ctlen;
	CK_RV rv;

	rv = f->C_CreateObject(c->h, t, transient(t, pt, ptlen), &obj);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_CreateObject", rv, err);
	rv = f->C_WrapKey(c->h, &kwp, v->key, obj, ct, &n);
	f->C_DestroyObject(c->h, obj);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_WrapKey", rv, err);
	*ctlen = n;
	return KB_OK;
}

/* kwp_unwrap unwraps ct under v into a transient session object and reads it. */
static kb_code kwp_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err)
{
	CK_FUNCTION_LIST *f = c->key->f;
	CK_ATTRIBUTE t[TRANSIENT_MAX];
	CK_ATTRIBUTE val = { CKA_VALUE, pt, *ptlen };
	CK_OBJECT_HANDLE obj;
	CK_RV rv;

	rv = f->C_UnwrapKey(c->h, &kwp, v->key, (CK_BYTE *)ct, ctlen, t, transient(t, NULL, 0), &obj);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_UnwrapKey", rv, err);
	rv = f->C_GetAttributeValue(c->h, obj, &val, 1);
	f->C_DestroyObject(c->h, obj);
	if (rv != CKR_OK) {
		OPENSSL_cleanse(pt, *ptlen);
		return kb_p11_fail(c, "C_GetAttributeValue", rv, err);
	}
	*ptlen = val.ulValueLen;
	return KB_OK;
}

/*
 * probe_padding learns whether the token's unwrap strips the RFC 5649
 * padding. SoftHSM 2.6.1 does not: a 5-byte key comes back as 8 bytes, the
 * last 3 zero. Such a token can only give back keys of whole 8-byte blocks.
 */
static kb_code probe_padding(kb_p11_call *c, const kb_p11_version *v, kb_err *err)
{
	static const uint8_t known[5] = "probe";
	uint8_t ct[32], pt[32];
	size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
	kb_code rc;

	rc = kwp_wrap(c, v, known, sizeof(known), ct, &ctlen, err);
	if (rc == KB_OK)
		rc = kwp_unwrap(c, v, ct, ctlen, pt, &ptlen, err);
	if (rc == KB_OK && (ptlen < sizeof(known) || memcmp(pt, known, sizeof(known)) != 0))
		rc = kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
				"token %s does not reverse its own AES-KWP wrap for key %s version %s: use another token",
				c->key->tok->label, c->key->name, v->name);
	if (rc == KB_OK)
		c->key->kwp_pads = ptlen != sizeof(known);
	return rc;
}

kb_code kb_p11_aes_probe(kb_p11_call *c, const kb_p11_version *v, kb_err *err)
{
	kb_p11_key *k = c->key;
	CK_MECHANISM_INFO mi;
	kb_code rc;
	CK_RV rv;

	switch (atomic_load(&k->probe[KB_ALG_AES_KWP])) {
	case KB_P11_PROBE_OK:
		return KB_OK;
	case KB_P11_PROBE_NO:
		return kb_p11_fail(c, "C_GetMechanismInfo", k->probe_rv[KB_ALG_AES_KWP], err);
	}
	rv = k->f->C_GetMechanismInfo(k->tok->slot_id, CKM_AES_KEY_WRAP_PAD, &mi);
	if (rv == CKR_OK && (mi.flags & (CKF_WRAP | CKF_UNWRAP)) != (CKF_WRAP | CKF_UNWRAP))
		rv = CKR_MECHANISM_INVALID;
	if (rv == CKR_MECHANISM_INVALID) {
		k->probe_rv[KB_ALG_AES_KWP] = rv;
		atomic_store(&k->probe[KB_ALG_AES_KWP], KB_P11_PROBE_NO);
	}
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GetMechanismInfo", rv, err);
	rc = probe_padding(c, v, err);
	if (rc == KB_OK)
		atomic_store(&k->probe[KB_ALG_AES_KWP], KB_P11_PROBE_OK);
	return rc;
}

kb_code kb_p11_aes_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err)
{
	size_t max = kb_p11_max_plaintext(KB_ALG_AES_KWP, v->bits);
	kb_code rc;

	if (ptlen == 0 || ptlen > max)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the plaintext is %zu bytes; AES-KWP under key %s wraps 1 to %zu bytes",
				  ptlen, c->key->name, max);
	if (*ctlen < (ptlen + 7) / 8 * 8 + 8)
		return kb_err_set(err, KB_E_INTERNAL, "wrap output buffer of %zu bytes is too small", *ctlen);
	if (!v->unwrap)
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "the token refused: key %s version %s may not unwrap (CKA_UNWRAP is false on token %s), so the broker does not wrap under it: set CKA_UNWRAP or rotate",
				  c->key->name, v->name, c->key->tok->label);
	rc = kb_p11_aes_probe(c, v, err);
	if (rc != KB_OK)
		return rc;
	if (c->key->kwp_pads && ptlen % 8 != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the plaintext is %zu bytes; token %s gives AES-KWP keys back with their RFC 5649 padding (a SoftHSM 2.6.1 bug), so key %s wraps multiples of 8 bytes, 8 to %zu",
				  ptlen, c->key->tok->label, c->key->name, max);
	return kwp_wrap(c, v, pt, ptlen, ct, ctlen, err);
}

kb_code kb_p11_aes_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err)
{
	/* RFC 5649: one or more 64-bit blocks after the 64-bit integrity block */
	if (ctlen < 16 || ctlen % 8 != 0)
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "the ciphertext is %zu bytes; AES-KWP output is a multiple of 8, at least 16: the blob is corrupt or truncated",
				  ctlen);
	return kwp_unwrap(c, v, ct, ctlen, pt, ptlen, err);
}
