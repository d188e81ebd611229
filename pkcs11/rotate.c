/*
 * rotate.c: the next version of a key is a new token object (or key pair)
 * with the same label, type and size, and CKA_ID = latest + 1.
 *
 * Creation is serialized process-wide: SoftHSM's object store misbehaves
 * under concurrent token object creation, and one lock also keeps two
 * rotations from picking the same id.
 */
#include <string.h>

#include "p11.h"

static kb_code rotate_rsa(kb_p11_call *c, const kb_p11_version *latest, const uint8_t *id,
			  size_t idlen, kb_err *err)
{
	kb_p11_key *k = c->key;
	CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = CKK_RSA;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = (CK_ULONG)latest->bits;
	uint8_t e[16];
	CK_ATTRIBUTE ea = { CKA_PUBLIC_EXPONENT, e, sizeof(e) };
	char *label = k->conf.label;
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_RV rv;

	rv = k->f->C_GetAttributeValue(c->h, latest->key, &ea, 1);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GetAttributeValue", rv, err);
	CK_ATTRIBUTE pub[] = {
		{ CKA_CLASS, &pubc, sizeof(pubc) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_LABEL, label, strlen(label) },
		{ CKA_ID, (void *)id, idlen },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_WRAP, &yes, sizeof(yes) },
		{ CKA_VERIFY, &no, sizeof(no) },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, ea.ulValueLen },
	};
	CK_ATTRIBUTE priv[] = {
		{ CKA_CLASS, &privc, sizeof(privc) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_LABEL, label, strlen(label) },
		{ CKA_ID, (void *)id, idlen },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_UNWRAP, &yes, sizeof(yes) },
		{ CKA_SIGN, &no, sizeof(no) },
	};
	rv = k->f->C_GenerateKeyPair(c->h, &m, pub, sizeof(pub) / sizeof(pub[0]), priv,
				     sizeof(priv) / sizeof(priv[0]), &hpub, &hpriv);
	if (rv != CKR_OK)
		return kb_p11_fail(c, "C_GenerateKeyPair", rv, err);
	return KB_OK;
}

static kb_code rotate_aes(kb_p11_call *c, const kb_p11_version *latest, const uint8_t *id,
			  size_t idlen, kb_err *err)
{
	kb_p11_key *k = c->key;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG len = (CK_ULONG)latest->bits / 8;
	char *label = k->conf.label;
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_LABEL, label, strlen(label) },
		{ CKA_ID, (void *)id, idlen },
		{ CKA_VALUE_LEN, &len, sizeof(len) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_WRAP, &yes, sizeof(yes) },
		{ CKA_UNWRAP, &yes, sizeof(yes) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
	};
	CK_OBJECT_HANDLE h;
	CK_RV rv;

	rv = k->f->C_GenerateKey(c->h, &m, t, sizeof(t) / sizeof(t[0]), &h);
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
