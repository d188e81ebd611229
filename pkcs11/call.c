/*
 * call.c: the call driver that runs each op on its slot's session and
 * recovers once from a lost session or handle, and the wrap and unwrap
 * calls that the backend's ops and doctor share.
 */
#include <string.h>

#include "p11.h"

/*
 * token_suspect tells whether a failure may mean the token itself is gone:
 * its objects vanished, or its session did.
 */
static bool token_suspect(kb_code rc, CK_RV rv)
{
	return rc == KB_E_UNKNOWN_VERSION || rc == KB_E_KEY_UNAVAILABLE || rc == KB_E_UNKNOWN_KEY ||
	       rc == KB_E_BACKEND_UNAVAILABLE || (rv != CKR_OK && kb_p11_recovery_for(rv) == KB_P11_REOPEN);
}

/*
 * run_entered is kb_p11_run inside kb_p11_token_enter. When the token is
 * gone it returns KB_E_BACKEND_UNAVAILABLE with *gone set, for the caller
 * to revive the module outside and try again.
 */
static kb_code run_entered(kb_p11_call *c, kb_p11_call_fn fn, void *arg, bool *gone, kb_err *err)
{
	kb_p11_key *k = c->key;
	bool reopened = false, refound = false;
	kb_err ignored;
	kb_code rc;
	CK_RV present;

	for (;;) {
		c->rv = CKR_OK;
		rc = kb_p11_session_get(c, err);
		if (rc == KB_OK && atomic_load(&k->epoch) != atomic_load(&k->tok->login_epoch))
			rc = kb_p11_versions_refresh(c, err);
		if (rc == KB_OK)
			rc = fn(c, arg, err);
		if (rc == KB_OK) {
			kb_err_clear(err); /* a retry that worked leaves no error behind */
			return rc;
		}
		/* a token that left is an outage, not a deleted key or version */
		if (token_suspect(rc, c->rv) && (present = kb_p11_token_present(k->tok)) != CKR_OK) {
			*gone = true;
			return kb_p11_absent(c, present, err);
		}
		if (c->rv == CKR_OK)
			return rc;
		switch (kb_p11_recovery_for(c->rv)) {
		case KB_P11_REOPEN:
			kb_p11_session_drop(k, c->slot);
			if (reopened)
				return rc;
			reopened = true;
			break;
		case KB_P11_REFIND:
			if (refound || kb_p11_versions_refresh(c, &ignored) != KB_OK)
				return rc;
			refound = true;
			break;
		case KB_P11_GIVE_UP:
			return rc;
		}
	}
}

kb_code kb_p11_run(kb_p11_key *k, int slot, kb_p11_op op, kb_alg alg, kb_p11_call_fn fn, void *arg,
		   kb_err *err)
{
	kb_p11_call c = { .key = k, .slot = slot, .op = op, .alg = alg };
	bool gone = false;
	kb_code rc;

	if (slot < 0 || slot >= k->nslots)
		return kb_err_set(err, KB_E_INTERNAL, "key %s: slot %d out of range [0,%d)", k->name, slot,
				  k->nslots);
	kb_p11_token_enter(k->tok);
	rc = run_entered(&c, fn, arg, &gone, err);
	kb_p11_token_leave(k->tok);
	/* the token came back only once the module is initialized again (SoftHSM): then try once more */
	if (gone && kb_p11_token_revive(k->tok)) {
		gone = false;
		kb_p11_token_enter(k->tok);
		rc = run_entered(&c, fn, arg, &gone, err);
		kb_p11_token_leave(k->tok);
	}
	return rc;
}

/* check_alg refuses algorithms this key cannot do, before any token call. */
static kb_code check_alg(const kb_p11_call *c, kb_err *err)
{
	const kb_p11_key *k = c->key;

	if (k->kty == CKK_RSA && (c->alg == KB_ALG_RSA_OAEP || c->alg == KB_ALG_RSA_OAEP_256))
		return KB_OK;
	if (k->kty == CKK_AES && kb_p11_is_aes_alg(c->alg))
		return KB_OK;
	return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
			  "key %s is an %s key on PKCS#11 token %s: it does %s, not %s",
			  k->name, k->kty == CKK_RSA ? "RSA" : "AES", k->tok->label,
			  k->kty == CKK_RSA ? "RSA-OAEP (and RSA-OAEP-256 where the token can)"
					    : "AES-KWP, AES-GCM or AES-KW (where the token can)",
			  kb_alg_name(c->alg)[0] ? kb_alg_name(c->alg) : "that algorithm");
}

kb_code kb_p11_wrap_call(kb_p11_call *c, const char *version, const uint8_t *pt, size_t ptlen,
			 uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
			 kb_err *err)
{
	kb_p11_version v;
	kb_code rc = check_alg(c, err);

	if (rc != KB_OK)
		return rc;
	rc = kb_p11_versions_get(c, version, c->key->kty == CKK_RSA, &v, err);
	if (rc != KB_OK)
		return rc;
	c->version = v.name;
	if (c->key->kty == CKK_RSA)
		rc = kb_p11_rsa_wrap(c, &v, pt, ptlen, ct, ctlen, err);
	else
		rc = kb_p11_aes_wrap(c, &v, pt, ptlen, ct, ctlen, err);
	if (rc == KB_OK)
		memcpy(version_out, v.name, sizeof(v.name));
	c->version = NULL;
	kb_p11_version_put(&v);
	return rc;
}

kb_code kb_p11_unwrap_call(kb_p11_call *c, const char *version, const uint8_t *ct, size_t ctlen,
			   uint8_t *pt, size_t *ptlen, kb_err *err)
{
	kb_p11_version v;
	kb_code rc = check_alg(c, err);

	if (rc != KB_OK)
		return rc;
	rc = kb_p11_versions_get(c, version, false, &v, err);
	if (rc != KB_OK)
		return rc;
	c->version = v.name;
	if (c->key->kty == CKK_RSA)
		rc = kb_p11_rsa_unwrap(c, &v, ct, ctlen, pt, ptlen, err);
	else
		rc = kb_p11_aes_unwrap(c, &v, ct, ctlen, pt, ptlen, err);
	c->version = NULL;
	return rc;
}
