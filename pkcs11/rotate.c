/*
 * rotate.c: the next version of a key is a new token object (or key pair)
 * with the same label, type and size, and CKA_ID = latest + 1.
 *
 * The templates ask for what the broker needs (decrypt for RSA; encrypt,
 * decrypt, wrap and unwrap for AES, which serve its three algorithms) and,
 * optionally, for hardening the token may refuse: tpm2-pkcs11 answers
 * CKR_GENERAL_ERROR to CKA_SIGN=FALSE/CKA_VERIFY=FALSE. A refused generation
 * is retried once with the required attributes only.
 *
 * Creation is serialized process-wide: SoftHSM's object store misbehaves
 * under concurrent token object creation, and one lock also keeps two
 * rotations from picking the same id.
 */
#include <string.h>

#include "p11.h"

#define ATTRS_MAX 16

static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;

/* A template: the required attributes first, then nopt optional ones. */
typedef struct tmpl {
	CK_ATTRIBUTE a[ATTRS_MAX];
	CK_ULONG n, nopt;
} tmpl;

static void add(tmpl *t, CK_ATTRIBUTE_TYPE type, void *value, CK_ULONG len)
{
	if (t->n < ATTRS_MAX)
		t->a[t->n++] = (CK_ATTRIBUTE){ type, value, len };
}

static void add_opt(tmpl *t, CK_ATTRIBUTE_TYPE type, void *value, CK_ULONG len)
{
	add(t, type, value, len);
	t->nopt++;
}

/* refused_template tells a token's answer that dropping optional attributes may cure. */
static bool refused_template(CK_RV rv)
{
	switch (rv) {
	case CKR_GENERAL_ERROR:
	case CKR_FUNCTION_FAILED:
	case CKR_TEMPLATE_INCONSISTENT:
	case CKR_ATTRIBUTE_TYPE_INVALID:
	case CKR_ATTRIBUTE_VALUE_INVALID:
	case CKR_ATTRIBUTE_READ_ONLY:
		return true;
	default:
		return false;
	}
}

static void add_common(tmpl *t, kb_p11_key *k, const uint8_t *id, size_t idlen)
{
	add(t, CKA_TOKEN, &yes, sizeof(yes));
	add(t, CKA_LABEL, k->conf.label, strlen(k->conf.label));
	add(t, CKA_ID, (void *)id, idlen);
}

static kb_code rotate_rsa(kb_p11_call *c, const kb_p11_version *latest, const uint8_t *id,
			  size_t idlen, kb_err *err)
{
	kb_p11_key *k = c->key;
	CK_ULONG bits = (CK_ULONG)latest->bits;
	uint8_t e[16];
	CK_ATTRIBUTE ea = { CKA_PUBLIC_EXPONENT, e, sizeof(e) };
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hpub, hpriv;
	tmpl pub = { 0 }, priv = { 0 };
	CK_RV rv;

	rv = k->f->C_GetAttributeValue(c->h, latest->key, &ea, 1);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GetAttributeValue", rv, err);
	add_common(&pub, k, id, idlen);
	add(&pub, CKA_ENCRYPT, &yes, sizeof(yes));
	add(&pub, CKA_MODULUS_BITS, &bits, sizeof(bits));
	add(&pub, CKA_PUBLIC_EXPONENT, e, ea.ulValueLen);
	add_opt(&pub, CKA_VERIFY, &no, sizeof(no));
	add_common(&priv, k, id, idlen);
	add(&priv, CKA_PRIVATE, &yes, sizeof(yes));
	add(&priv, CKA_SENSITIVE, &yes, sizeof(yes));
	add(&priv, CKA_DECRYPT, &yes, sizeof(yes));
	add_opt(&priv, CKA_EXTRACTABLE, &no, sizeof(no));
	add_opt(&priv, CKA_SIGN, &no, sizeof(no));
	rv = k->f->C_GenerateKeyPair(c->h, &m, pub.a, pub.n, priv.a, priv.n, &hpub, &hpriv);
	if (refused_template(rv))
		rv = k->f->C_GenerateKeyPair(c->h, &m, pub.a, pub.n - pub.nopt, priv.a, priv.n - priv.nopt,
					     &hpub, &hpriv);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GenerateKeyPair", rv, err);
	return KB_OK;
}

static kb_code rotate_aes(kb_p11_call *c, const kb_p11_version *latest, const uint8_t *id,
			  size_t idlen, kb_err *err)
{
	kb_p11_key *k = c->key;
	CK_ULONG len = (CK_ULONG)latest->bits / 8;
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_OBJECT_HANDLE h;
	tmpl t = { 0 };
	CK_RV rv;

	add_common(&t, k, id, idlen);
	add(&t, CKA_PRIVATE, &yes, sizeof(yes));
	add(&t, CKA_VALUE_LEN, &len, sizeof(len));
	add(&t, CKA_SENSITIVE, &yes, sizeof(yes));
	add(&t, CKA_WRAP, &yes, sizeof(yes));
	add(&t, CKA_UNWRAP, &yes, sizeof(yes));
	add(&t, CKA_ENCRYPT, &yes, sizeof(yes));
	add(&t, CKA_DECRYPT, &yes, sizeof(yes));
	add_opt(&t, CKA_EXTRACTABLE, &no, sizeof(no));
	rv = k->f->C_GenerateKey(c->h, &m, t.a, t.n, &h);
	if (refused_template(rv))
		rv = k->f->C_GenerateKey(c->h, &m, t.a, t.n - t.nopt, &h);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GenerateKey", rv, err);
	return KB_OK;
}
kb_code kb_p11_rotate(kb_p11_call *c, char version_out[KB_VERSION_MAX + 1], kb_err *err)
{
	kb_p11_version latest = { 0 };
	uint8_t id[KB_P11_ID_MAX];
	size_t idlen;
	kb_code rc;

	pthread_mutex_lock(&kb_p11_create_lock);
	rc = kb_p11_versions_refresh(c, err);
	if (rc == KB_OK)
		rc = kb_p11_versions_get(c, NULL, false, &latest, err);
	if (rc != KB_OK)
		goto out;
	c->version = latest.name;
	if (!kb_p11_id_next(latest.id, latest.idlen, id, &idlen)) {
		rc = kb_err_set(err, KB_E_BAD_REQUEST,
				"key %s: the latest CKA_ID %s has no successor of at most %d bytes",
				c->key->name, latest.name, KB_P11_ID_MAX);
		goto out;
	}
	rc = c->key->kty == CKK_RSA ? rotate_rsa(c, &latest, id, idlen, err)
				    : rotate_aes(c, &latest, id, idlen, err);
	if (rc == KB_OK)
		rc = kb_p11_versions_refresh(c, err);
	if (rc == KB_OK)
		kb_p11_id_name(id, idlen, version_out);
out:
	c->version = NULL;
	pthread_mutex_unlock(&kb_p11_create_lock);
	return rc;
}
