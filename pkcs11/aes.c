/*
 * aes.c: the AES algorithms, each done inside the token.
 *
 *   AES-KWP  RFC 5649, CKM_AES_KEY_WRAP_PAD, 1..1024 bytes
 *   AES-KW   RFC 3394, CKM_AES_KEY_WRAP, 16..1024 bytes in multiples of 8
 *   AES-GCM  CKM_AES_GCM with C_Encrypt/C_Decrypt, 1..1024 bytes: a fresh
 *            96-bit IV per wrap, a 128-bit tag, and "KEY:VERSION" as AAD so a
 *            ciphertext moved under another key name or version fails its tag.
 *            The ciphertext is IV || encrypted DEK || tag.
 *
 * Key wraps go through C_WrapKey and C_UnwrapKey (SoftHSM offers them no
 * other way), so the plaintext travels as a short-lived session object: a
 * generic secret, extractable and not sensitive, destroyed right after use.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "p11.h"

#define GCM_IV 12
#define GCM_TAG 16

static const struct aes_mech {
	kb_alg alg;
	CK_MECHANISM_TYPE mech;
	CK_FLAGS need;
	const char *ckm;
} mechs[] = {
	/* the order of preference when a key names no alg */
	{ KB_ALG_AES_KWP, CKM_AES_KEY_WRAP_PAD, CKF_WRAP | CKF_UNWRAP, "CKM_AES_KEY_WRAP_PAD" },
	{ KB_ALG_AES_GCM, CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT, "CKM_AES_GCM" },
	{ KB_ALG_AES_KW, CKM_AES_KEY_WRAP, CKF_WRAP | CKF_UNWRAP, "CKM_AES_KEY_WRAP" },
};
#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

static const struct aes_mech *mech_of(kb_alg alg)
{
	for (size_t i = 0; i < NMECHS; i++)
		if (mechs[i].alg == alg)
			return &mechs[i];
	return NULL;
}

bool kb_p11_is_aes_alg(kb_alg alg)
{
	return mech_of(alg) != NULL;
}

const char *kb_p11_aes_ckm(kb_alg alg)
{
	const struct aes_mech *m = mech_of(alg);

	return m ? m->ckm : "";
}

int kb_p11_aes_offered(kb_p11_key *k, kb_alg out[KB_P11_AES_ALGS], CK_RV *rv)
{
	CK_MECHANISM_TYPE list[512];
	CK_ULONG n = sizeof(list) / sizeof(list[0]);
	CK_MECHANISM_INFO mi;
	int count = 0;

	*rv = k->f->C_GetMechanismList(k->tok->slot_id, list, &n);
	if (*rv != CKR_OK)
		return 0;
	for (size_t i = 0; i < NMECHS; i++)
		for (CK_ULONG j = 0; j < n; j++)
			if (list[j] == mechs[i].mech &&
			    k->f->C_GetMechanismInfo(k->tok->slot_id, list[j], &mi) == CKR_OK &&
			    (mi.flags & mechs[i].need) == mechs[i].need) {
				out[count++] = mechs[i].alg;
				break;
			}
	return count;
}

void kb_p11_aes_describe(const kb_alg *algs, int n, char *buf, size_t cap)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && off < cap; i++)
		off += (size_t)snprintf(buf + off, cap - off, "%s%s", i ? ", " : "", kb_alg_name(algs[i]));
	if (n == 0)
		snprintf(buf, cap, "none of AES-KWP, AES-GCM, AES-KW");
}

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

/* kw_wrap wraps pt under v with mechanism mt through a transient session object. */
static kb_code kw_wrap(kb_p11_call *c, CK_MECHANISM_TYPE mt, const kb_p11_version *v,
		       const uint8_t *pt, size_t ptlen, uint8_t *ct, size_t *ctlen, kb_err *err)
{
	CK_FUNCTION_LIST *f = c->key->f;
	CK_MECHANISM m = { mt, NULL, 0 };
	CK_ATTRIBUTE t[TRANSIENT_MAX];
	CK_OBJECT_HANDLE obj;
	CK_ULONG n = *ctlen;
	CK_RV rv;

	rv = f->C_CreateObject(c->h, t, transient(t, pt, ptlen), &obj);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_CreateObject", rv, err);
	rv = f->C_WrapKey(c->h, &m, v->key, obj, ct, &n);
	f->C_DestroyObject(c->h, obj);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_WrapKey", rv, err);
	*ctlen = n;
	return KB_OK;
}

/* kw_unwrap unwraps ct under v with mechanism mt into a transient session object and reads it. */
static kb_code kw_unwrap(kb_p11_call *c, CK_MECHANISM_TYPE mt, const kb_p11_version *v,
			 const uint8_t *ct, size_t ctlen, uint8_t *pt, size_t *ptlen, kb_err *err)
{
	CK_FUNCTION_LIST *f = c->key->f;
	CK_MECHANISM m = { mt, NULL, 0 };
	CK_ATTRIBUTE t[TRANSIENT_MAX];
	CK_ATTRIBUTE val = { CKA_VALUE, pt, *ptlen };
	CK_OBJECT_HANDLE obj;
	CK_RV rv;

	rv = f->C_UnwrapKey(c->h, &m, v->key, (CK_BYTE *)ct, ctlen, t, transient(t, NULL, 0), &obj);
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

/* gcm_params fills p for iv and the AAD "KEY:VERSION" (in aad, capacity cap). */
static void gcm_params(CK_GCM_PARAMS *p, const kb_p11_call *c, const kb_p11_version *v, uint8_t *iv,
		       char *aad, size_t cap)
{
	int n = snprintf(aad, cap, "%s:%s", c->key->name, v->name);

	*p = (CK_GCM_PARAMS){ .pIv = iv, .ulIvLen = GCM_IV, .ulIvBits = GCM_IV * 8,
			      .pAAD = (CK_BYTE *)aad, .ulAADLen = (CK_ULONG)n, .ulTagBits = GCM_TAG * 8 };
}

static kb_code gcm_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err)
{
	char aad[KB_KEY_NAME_MAX + KB_VERSION_MAX + 2];
	CK_GCM_PARAMS p;
	CK_MECHANISM m = { CKM_AES_GCM, &p, sizeof(p) };
	CK_ULONG n = *ctlen - GCM_IV;
	CK_RV rv;

	if (RAND_bytes(ct, GCM_IV) != 1)
		return kb_err_set(err, KB_E_INTERNAL, "key %s: no random bytes from OpenSSL for the GCM IV",
				  c->key->name);
	gcm_params(&p, c, v, ct, aad, sizeof(aad));
	rv = c->key->f->C_EncryptInit(c->h, &m, v->key);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_EncryptInit", rv, err);
	rv = c->key->f->C_Encrypt(c->h, (CK_BYTE *)pt, ptlen, ct + GCM_IV, &n);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_Encrypt", rv, err);
	if (n != ptlen + GCM_TAG)
		return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
				  "token %s returned %lu bytes for an AES-GCM encrypt of %zu with a 128-bit tag: it does not do AES-GCM as PKCS#11 defines it; use another alg",
				  c->key->tok->label, (unsigned long)n, ptlen);
	*ctlen = GCM_IV + n;
	return KB_OK;
}

static kb_code gcm_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err)
{
	char aad[KB_KEY_NAME_MAX + KB_VERSION_MAX + 2];
	uint8_t iv[GCM_IV];
	uint8_t buf[KB_SECRET_MAX + GCM_TAG];
	CK_GCM_PARAMS p;
	CK_MECHANISM m = { CKM_AES_GCM, &p, sizeof(p) };
	CK_ULONG n = sizeof(buf);
	kb_code rc = KB_OK;
	CK_RV rv;

	if (ctlen < GCM_IV + GCM_TAG + 1 || ctlen > GCM_IV + GCM_TAG + KB_SECRET_MAX)
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "the ciphertext is %zu bytes; AES-GCM output is a 12-byte IV, 1 to %d bytes and a 16-byte tag: the blob is corrupt or truncated",
				  ctlen, KB_SECRET_MAX);
	memcpy(iv, ct, GCM_IV);
	gcm_params(&p, c, v, iv, aad, sizeof(aad));
	rv = c->key->f->C_DecryptInit(c->h, &m, v->key);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_DecryptInit", rv, err);
	rv = c->key->f->C_Decrypt(c->h, (CK_BYTE *)ct + GCM_IV, ctlen - GCM_IV, buf, &n);
	rc = kb_p11_decrypted(c, "C_Decrypt", rv, buf, n, pt, ptlen, err);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

/*
 * probe_padding learns whether the token's AES-KWP unwrap strips the RFC 5649
 * padding. SoftHSM 2.6.1 does not: a 5-byte key comes back as 8 bytes, the
 * last 3 zero. Such a token can only give back keys of whole 8-byte blocks.
 */
static kb_code probe_padding(kb_p11_call *c, const kb_p11_version *v, kb_err *err)
{
	static const uint8_t known[5] = "probe";
	uint8_t ct[32], pt[32];
	size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
	kb_code rc;

	rc = kw_wrap(c, CKM_AES_KEY_WRAP_PAD, v, known, sizeof(known), ct, &ctlen, err);
	if (rc == KB_OK)
		rc = kw_unwrap(c, CKM_AES_KEY_WRAP_PAD, v, ct, ctlen, pt, &ptlen, err);
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
	const struct aes_mech *am = mech_of(c->alg);
	CK_MECHANISM_INFO mi;
	kb_code rc = KB_OK;
	CK_RV rv;

	if (am == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "key %s: %s is not an AES algorithm", k->name,
				  kb_alg_name(c->alg));
	switch (atomic_load(&k->probe[c->alg])) {
	case KB_P11_PROBE_OK:
		return KB_OK;
	case KB_P11_PROBE_NO:
		return kb_p11_fail(c, "C_GetMechanismInfo", k->probe_rv[c->alg], err);
	}
	rv = k->f->C_GetMechanismInfo(k->tok->slot_id, am->mech, &mi);
	if (rv == CKR_OK && (mi.flags & am->need) != am->need)
		rv = CKR_MECHANISM_INVALID;
	if (rv == CKR_MECHANISM_INVALID) {
		k->probe_rv[c->alg] = rv;
		atomic_store(&k->probe[c->alg], KB_P11_PROBE_NO);
	}
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GetMechanismInfo", rv, err);
	if (c->alg == KB_ALG_AES_KWP)
		rc = probe_padding(c, v, err);
	if (rc == KB_OK)
		atomic_store(&k->probe[c->alg], KB_P11_PROBE_OK);
	return rc;
}

/* check_length refuses a plaintext length alg cannot carry, naming the range. */
static kb_code check_length(const kb_p11_call *c, size_t ptlen, kb_err *err)
{
	const kb_p11_key *k = c->key;
	size_t max = kb_p11_max_plaintext(c->alg, 256);

	if (c->alg == KB_ALG_AES_KW && (ptlen < 16 || ptlen > max || ptlen % 8 != 0))
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the plaintext is %zu bytes; AES-KW (RFC 3394) under key %s wraps 16 to %zu bytes in multiples of 8 (AES-GCM or AES-KWP take any length)",
				  ptlen, k->name, max);
	if (ptlen == 0 || ptlen > max)
		return kb_err_set(err, KB_E_BAD_REQUEST, "the plaintext is %zu bytes; %s under key %s wraps 1 to %zu bytes",
				  ptlen, kb_alg_name(c->alg), k->name, max);
	if (c->alg == KB_ALG_AES_KWP && k->kwp_pads && ptlen % 8 != 0)
		return kb_err_set(err, KB_E_BAD_REQUEST,
				  "the plaintext is %zu bytes; token %s gives AES-KWP keys back with their RFC 5649 padding (a SoftHSM 2.6.1 bug), so key %s wraps multiples of 8 bytes, 8 to %zu (AES-GCM takes any length)",
				  ptlen, k->tok->label, k->name, max);
	return KB_OK;
}

kb_code kb_p11_aes_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err)
{
	bool gcm = c->alg == KB_ALG_AES_GCM;
	bool may = gcm ? v->decrypt : v->unwrap;
	kb_code rc;

	if (*ctlen < KB_SECRET_MAX + GCM_IV + GCM_TAG)
		return kb_err_set(err, KB_E_INTERNAL, "wrap output buffer of %zu bytes is too small", *ctlen);
	if (!may)
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "the token refused: key %s version %s may not unwrap (%s is false on token %s), so the broker does not wrap under it: set it or rotate",
				  c->key->name, v->name, gcm ? "CKA_DECRYPT" : "CKA_UNWRAP", c->key->tok->label);
	rc = kb_p11_aes_probe(c, v, err);
	if (rc == KB_OK)
		rc = check_length(c, ptlen, err);
	if (rc != KB_OK)
		return rc;
	if (gcm)
		return gcm_wrap(c, v, pt, ptlen, ct, ctlen, err);
	return kw_wrap(c, mech_of(c->alg)->mech, v, pt, ptlen, ct, ctlen, err);
}

kb_code kb_p11_aes_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err)
{
	if (c->alg == KB_ALG_AES_GCM)
		return gcm_unwrap(c, v, ct, ctlen, pt, ptlen, err);
	/* RFC 3394 and 5649: one or more 64-bit blocks after the 64-bit integrity block */
	if (ctlen < (c->alg == KB_ALG_AES_KW ? 24u : 16u) || ctlen % 8 != 0)
		return kb_err_set(err, KB_E_BAD_BLOB,
				  "the ciphertext is %zu bytes; %s output is a multiple of 8, at least %d: the blob is corrupt or truncated",
				  ctlen, kb_alg_name(c->alg), c->alg == KB_ALG_AES_KW ? 24 : 16);
	return kw_unwrap(c, mech_of(c->alg)->mech, v, ct, ctlen, pt, ptlen, err);
}
