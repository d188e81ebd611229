/*
 * versions.c: a key's versions are the token objects sharing its label,
 * told apart by CKA_ID.
 *
 * The list and its object handles are cached: handles of token objects stay
 * valid across the application's sessions, so the hot path does no search.
 * The list is found again only on rotate, describe, a version that is not in
 * it, or a handle the token no longer knows.
 *
 * Objects are found with raw C_FindObjects: libp11 hides object handles and
 * does not list secret (AES) keys.
 */
#include <stdlib.h>
#include <string.h>

#include "p11.h"

#define FIND_MAX (4 * KB_MAX_VERSIONS)

/* kb_p11_id_cmp orders CKA_IDs as unsigned big-endian integers. */
static int kb_p11_id_cmp(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	while (alen > 0 && *a == 0)
		a++, alen--;
	while (blen > 0 && *b == 0)
		b++, blen--;
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return alen ? memcmp(a, b, alen) : 0;
}

bool kb_p11_id_next(const uint8_t *id, size_t len, uint8_t out[KB_P11_ID_MAX], size_t *outlen)
{
	size_t i;

	if (len == 0) {
		out[0] = 1;
		*outlen = 1;
		return true;
	}
	memcpy(out, id, len);
	for (i = len; i > 0; i--)
		if (++out[i - 1] != 0)
			break;
	if (i > 0) {
		*outlen = len;
		return true;
	}
	/* all 0xff: carry into a new leading byte */
	if (len + 1 > KB_P11_ID_MAX)
		return false;
	memmove(out + 1, out, len);
	out[0] = 1;
	*outlen = len + 1;
	return true;
}

void kb_p11_id_name(const uint8_t *id, size_t len, char name[KB_VERSION_MAX + 1])
{
	static const char hex[] = "0123456789abcdef";

	if (len == 0) {
		strcpy(name, "0");
		return;
	}
	for (size_t i = 0; i < len; i++) {
		name[2 * i] = hex[id[i] >> 4];
		name[2 * i + 1] = hex[id[i] & 15];
	}
	name[2 * len] = '\0';
}

static int version_cmp(const void *a, const void *b)
{
	const kb_p11_version *x = a, *y = b;
	int r = kb_p11_id_cmp(x->id, x->idlen, y->id, y->idlen);

	/* equal values (01, 0001) stay apart, shorter first */
	return r ? r : (x->idlen > y->idlen) - (x->idlen < y->idlen);
}

/* get_bools reads boolean attributes; an attribute the object lacks is false. */
static CK_RV get_bools(kb_p11_call *c, CK_OBJECT_HANDLE obj, const CK_ATTRIBUTE_TYPE *types,
		       bool **out, int n)
{
	CK_BBOOL val[4] = { 0 };
	CK_ATTRIBUTE a[4];
	CK_RV rv;

	for (int i = 0; i < n; i++)
		a[i] = (CK_ATTRIBUTE){ types[i], &val[i], sizeof(val[i]) };
	rv = c->key->f->C_GetAttributeValue(c->h, obj, a, (CK_ULONG)n);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
		return rv;
	for (int i = 0; i < n; i++)
		*out[i] = a[i].ulValueLen == sizeof(CK_BBOOL) && val[i] == CK_TRUE;
	return CKR_OK;
}

static kb_p11_version *version_for(kb_p11_version *v, int *nv, const uint8_t *id, size_t idlen)
{
	for (int i = 0; i < *nv; i++)
		if (v[i].idlen == idlen && memcmp(v[i].id, id, idlen) == 0)
			return &v[i];
	if (*nv == KB_MAX_VERSIONS)
		return NULL;
	v += (*nv)++;
	memset(v, 0, sizeof(*v));
	memcpy(v->id, id, idlen);
	v->idlen = idlen;
	v->key = v->pub = CK_INVALID_HANDLE;
	kb_p11_id_name(id, idlen, v->name);
	return v;
}

/*
 * add_object files obj under its version. Objects that are not a key of the
 * key's type, or whose CKA_ID is too long for a version name, are skipped.
 */
static CK_RV add_object(kb_p11_call *c, CK_OBJECT_HANDLE obj, kb_p11_version *v, int *nv,
			CK_KEY_TYPE *seen)
{
	static const CK_ATTRIBUTE_TYPE usage[] = { CKA_DECRYPT, CKA_UNWRAP, CKA_ENCRYPT, CKA_WRAP };
	CK_OBJECT_CLASS cls;
	CK_KEY_TYPE kt;
	CK_ULONG vlen = 0;
	uint8_t id[KB_P11_ID_MAX];
	CK_ATTRIBUTE a[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_ID, id, sizeof(id) },
	};
	kb_p11_version *e;
	CK_RV rv;

	rv = c->key->f->C_GetAttributeValue(c->h, obj, a, 3);
	if (rv != CKR_OK)
		return kb_p11_recovery_for(rv) == KB_P11_REOPEN ? rv : CKR_OK;
	if (!((kt == CKK_RSA && (cls == CKO_PRIVATE_KEY || cls == CKO_PUBLIC_KEY)) ||
	      (kt == CKK_AES && cls == CKO_SECRET_KEY)))
		return CKR_OK;
	if (cls != CKO_PUBLIC_KEY)
		*seen |= kt == CKK_RSA ? 1 : 2;
	if (c->key->kty_known && kt != c->key->kty)
		return CKR_OK;
	e = version_for(v, nv, id, a[2].ulValueLen);
	if (e == NULL)
		return CKR_OK;
	if (cls == CKO_PUBLIC_KEY) {
		e->pub = obj;
		return get_bools(c, obj, usage + 2, (bool *[]){ &e->encrypt, &e->wrap }, 2);
	}
	e->key = obj;
	if (kt == CKK_AES) {
		CK_ATTRIBUTE l = { CKA_VALUE_LEN, &vlen, sizeof(vlen) };

		if (c->key->f->C_GetAttributeValue(c->h, obj, &l, 1) == CKR_OK)
			e->bits = (int)vlen * 8;
		return get_bools(c, obj, usage, (bool *[]){ &e->decrypt, &e->unwrap, &e->encrypt, &e->wrap }, 4);
	}
	return get_bools(c, obj, usage, (bool *[]){ &e->decrypt, &e->unwrap }, 2);
}

static CK_RV find_objects(kb_p11_call *c, CK_OBJECT_HANDLE *objs, CK_ULONG *n)
{
	CK_FUNCTION_LIST *f = c->key->f;
	const char *label = c->key->conf.label;
	CK_ATTRIBUTE q = { CKA_LABEL, (void *)label, strlen(label) };
	CK_ULONG got;
	CK_RV rv;

	*n = 0;
	rv = f->C_FindObjectsInit(c->h, &q, 1);
	if (rv != CKR_OK)
		return rv;
	do {
		rv = f->C_FindObjects(c->h, objs + *n, FIND_MAX - *n, &got);
		*n += got;
	} while (rv == CKR_OK && got > 0 && *n < FIND_MAX);
	f->C_FindObjectsFinal(c->h);
	return rv;
}

kb_code kb_p11_versions_refresh(kb_p11_call *c, kb_err *err)
{
	kb_p11_key *k = c->key;
	CK_OBJECT_HANDLE *objs = calloc(FIND_MAX, sizeof(*objs));
	kb_p11_version *v = calloc(KB_MAX_VERSIONS, sizeof(*v)), *old;
	CK_KEY_TYPE seen = 0;
	CK_ULONG nobj;
	unsigned epoch;
	int nv = 0, n, nold;
	kb_code rc = KB_OK;
	CK_RV rv;

	if (objs == NULL || v == NULL) {
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
		goto out;
	}
	epoch = atomic_load(&k->tok->login_epoch);
	rv = find_objects(c, objs, &nobj);
	if (rv != CKR_OK) {
		rc = kb_p11_fail(c, "C_FindObjects", rv, err);
		goto out;
	}
	if (!k->kty_known) {
		/* at open: learn the key type from the objects; it must be one */
		for (CK_ULONG i = 0; i < nobj; i++)
			if ((rv = add_object(c, objs[i], v, &nv, &seen)) != CKR_OK) {
				rc = kb_p11_fail(c, "C_GetAttributeValue", rv, err);
				goto out;
			}
		if (seen == 3) {
			rc = kb_err_set(err, KB_E_KEY_UNAVAILABLE,
					"key %s: label %s on token %s names both RSA and AES keys: give each KEK its own label",
					k->name, k->conf.label, k->tok->label);
			goto out;
		}
		k->kty = seen == 1 ? CKK_RSA : CKK_AES;
		k->kty_known = seen != 0;
		nv = 0;
	}
	for (CK_ULONG i = 0; i < nobj && k->kty_known; i++)
		if ((rv = add_object(c, objs[i], v, &nv, &seen)) != CKR_OK) {
			rc = kb_p11_fail(c, "C_GetAttributeValue", rv, err);
			goto out;
		}
	/* a version is its private or secret key; a lone public key is not one */
	n = 0;
	for (int i = 0; i < nv; i++) {
		if (v[i].key == CK_INVALID_HANDLE)
			continue;
		if (k->kty == CKK_RSA) {
			kb_err ignored;

			if (kb_p11_rsa_pkey(c, v[i].key, &v[i].pkey, &ignored) != KB_OK &&
			    (v[i].pub == CK_INVALID_HANDLE ||
			     kb_p11_rsa_pkey(c, v[i].pub, &v[i].pkey, err) != KB_OK))
				continue;
			v[i].bits = EVP_PKEY_get_bits(v[i].pkey);
		}
		v[n++] = v[i];
	}
	qsort(v, (size_t)n, sizeof(*v), version_cmp);

	pthread_rwlock_wrlock(&k->vlock);
	old = k->v;
	nold = k->nv;
	k->v = v;
	k->nv = n;
	atomic_store(&k->epoch, epoch);
	pthread_rwlock_unlock(&k->vlock);
	v = old;
	nv = nold;
out:
	if (v)
		kb_p11_versions_free(v, nv);
	free(objs);
	return rc;
}

static int version_index(const kb_p11_key *k, const char *name)
{
	if (name == NULL)
		return k->nv - 1;
	for (int i = 0; i < k->nv; i++)
		if (strcmp(k->v[i].name, name) == 0)
			return i;
	return -1;
}

/* name_plausible: could name be a version of ours? If not, do not search. */
static bool name_plausible(const char *name)
{
	size_t n = strlen(name);

	if (strcmp(name, "0") == 0)
		return true;
	if (n == 0 || n % 2 || n > KB_VERSION_MAX)
		return false;
	return strspn(name, "0123456789abcdef") == n;
}

kb_code kb_p11_versions_get(kb_p11_call *c, const char *name, bool want_pkey,
			    kb_p11_version *out, kb_err *err)
{
	kb_p11_key *k = c->key;
	kb_code rc;
	int i;

	for (int pass = 0; pass < 2; pass++) {
		pthread_rwlock_rdlock(&k->vlock);
		i = version_index(k, name);
		if (i >= 0) {
			*out = k->v[i];
			if (want_pkey && out->pkey)
				EVP_PKEY_up_ref(out->pkey);
			else
				out->pkey = NULL;
			pthread_rwlock_unlock(&k->vlock);
			return KB_OK;
		}
		pthread_rwlock_unlock(&k->vlock);
		if (pass > 0 || (name && !name_plausible(name)))
			break;
		rc = kb_p11_versions_refresh(c, err);
		if (rc != KB_OK)
			return rc;
	}
	if (name == NULL)
		return kb_err_set(err, KB_E_KEY_UNAVAILABLE,
				  "the key service (token %s) no longer has key %s: no object is labelled %s; restore it or fix object= in uri",
				  k->tok->label, k->name, k->conf.label);
	return kb_err_set(err, KB_E_UNKNOWN_VERSION,
			  "key %s has no version %s on token %s (versions are the lowercase hex CKA_IDs of objects labelled %s)",
			  k->name, name, k->tok->label, k->conf.label);
}

void kb_p11_version_put(kb_p11_version *v)
{
	EVP_PKEY_free(v->pkey);
	v->pkey = NULL;
}

kb_code kb_p11_versions_copy(kb_p11_key *k, kb_p11_version **v, int *n, kb_err *err)
{
	pthread_rwlock_rdlock(&k->vlock);
	*n = k->nv;
	*v = calloc((size_t)k->nv + 1, sizeof(**v));
	if (*v == NULL) {
		pthread_rwlock_unlock(&k->vlock);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	for (int i = 0; i < k->nv; i++) {
		(*v)[i] = k->v[i];
		if ((*v)[i].pkey)
			EVP_PKEY_up_ref((*v)[i].pkey);
	}
	pthread_rwlock_unlock(&k->vlock);
	return KB_OK;
}

void kb_p11_versions_free(kb_p11_version *v, int n)
{
	for (int i = 0; v && i < n; i++)
		EVP_PKEY_free(v[i].pkey);
	free(v);
}
