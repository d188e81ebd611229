/*
 * keymat.c: what the broker knows of the key's latest (or pinned) version:
 * its type, key_ops, attributes and RSA public key. Local wraps use it only
 * while the service confirmed it less than version_refresh ago, and any
 * refusal of that version drops it at once, so a blob is never wrapped under
 * a version the service was seen to refuse, and new wraps follow a rotation
 * within that interval. RSA wraps are done here, locally, as Azure's
 * SDKs do them, after the same checks the service would make.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>

#include "az.h"

void az_keymat_clear(az_keymat *m)
{
	EVP_PKEY_free(m->pkey);
	memset(m, 0, sizeof(*m));
}

static EVP_PKEY *rsa_pkey(const az_bundle *b)
{
	BIGNUM *n = BN_bin2bn(b->n, (int)b->nlen, NULL), *e = BN_bin2bn(b->e, (int)b->elen, NULL);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	if (n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
	    (params = OSSL_PARAM_BLD_to_param(bld)) != NULL &&
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL &&
	    EVP_PKEY_fromdata_init(ctx) == 1 &&
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	return pkey;
}

static kb_code keymat_from(const az_key *k, const az_bundle *b, az_keymat *m, kb_err *err)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->version, sizeof(m->version), "%s", b->kid.version);
	snprintf(m->kty, sizeof(m->kty), "%s", b->kty);
	snprintf(m->ops_text, sizeof(m->ops_text), "%s", b->ops_text);
	snprintf(m->recovery, sizeof(m->recovery), "%s", b->recovery);
	m->ops = b->ops;
	m->enabled = b->enabled;
	m->nbf = b->nbf;
	m->exp = b->exp;
	m->created = b->created;
	m->recoverable_days = b->recoverable_days;
	m->rsa = strncmp(b->kty, "RSA", 3) == 0;
	if (m->rsa) {
		m->pkey = rsa_pkey(b);
		if (m->pkey == NULL)
			return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					  "key %s: %s sent an RSA public key OpenSSL cannot use", k->name, k->conf.url.host);
		m->bits = EVP_PKEY_get_bits(m->pkey);
	} else if (strncmp(b->kty, "oct", 3) == 0) {
		m->bits = b->key_size;
	} else {
		return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
				  "key %s is a %s key: keybroker wraps with RSA keys, or oct-HSM keys on a Managed HSM",
				  k->name, b->kty);
	}
	return KB_OK;
}

kb_code az_keymat_fetch(az_key *k, int slot, const char *version, az_keymat *m, kb_err *err)
{
	az_what w = { .key = k->name, .op = AZ_OP_GET, .version = version };
	char url[AZ_URL_MAX], why[96];
	az_resp r = { 0 };
	az_bundle *b = NULL;
	kb_code rc;

	memset(m, 0, sizeof(*m));
	az_key_url(k, version, NULL, url, sizeof(url));
	rc = az_call(k, slot, &w, "GET", url, NULL, &r, err);
	if (rc == KB_OK && (b = malloc(sizeof(*b))) == NULL)
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
	if (rc == KB_OK && !az_parse_bundle(az_resp_text(&r), r.body.len, b, why, sizeof(why)))
		rc = kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "key %s: the key from %s is unusable (%s) (request id %s)",
				k->name, k->conf.url.host, why, r.request_id);
	if (rc == KB_OK)
		rc = keymat_from(k, b, m, err);
	if (rc != KB_OK)
		az_keymat_clear(m);
	if (az_refuses_version(rc))
		az_keymat_distrust(k, rc == KB_E_UNKNOWN_KEY ? NULL : version);
	free(b);
	az_resp_free(&r);
	return rc;
}

static void copy_out(const az_keymat *src, az_keymat *dst)
{
	*dst = *src;
	if (dst->pkey)
		EVP_PKEY_up_ref(dst->pkey);
}

void az_keymat_sync_init(az_key *k)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&k->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->fetched, &ca);
	pthread_condattr_destroy(&ca);
}

void az_keymat_sync_destroy(az_key *k)
{
	pthread_cond_destroy(&k->fetched);
	pthread_mutex_destroy(&k->lock);
}

/* usable is true when the cached material may wrap now: confirmed by the service within the bound. */
static bool usable(const az_key *k, int64_t now)
{
	return k->have_latest && now - k->fetched_ms < k->conf.version_refresh_ms;
}

/*
 * az_keymat_current hands out material the service confirmed (a GET that
 * answered 200, so the version was current and enabled) less than
 * version_refresh ago, never older: a version disabled in the service stops
 * local wraps within that bound, or at once on the first sign (see
 * az_keymat_distrust). One caller refreshes from half the bound on while the
 * others keep wrapping with the still-valid copy, so under load no wrap waits
 * for the GET; past the bound the others wait for it.
 */
kb_code az_keymat_current(az_key *k, int slot, az_keymat *m, kb_err *err)
{
	int64_t deadline = kb_now_ms() + k->conf.timeout_ms, now;
	az_keymat fresh;
	unsigned seen;
	kb_code rc;

	pthread_mutex_lock(&k->lock);
	seen = k->fetches;
	for (;;) {
		now = kb_now_ms();
		if (usable(k, now) && (k->refreshing || now - k->fetched_ms < k->conf.version_refresh_ms / 2)) {
			copy_out(&k->latest, m);
			pthread_mutex_unlock(&k->lock);
			return KB_OK;
		}
		if (k->fetches != seen && k->fetch_err.code != KB_OK) {
			/* the refresh we waited for failed: report it rather than ask again at once */
			*err = k->fetch_err;
			pthread_mutex_unlock(&k->lock);
			return err->code;
		}
		if (!k->refreshing)
			break;
		struct timespec ts = { (time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L };
		if (pthread_cond_timedwait(&k->fetched, &k->lock, &ts) != 0 && kb_now_ms() >= deadline) {
			pthread_mutex_unlock(&k->lock);
			return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					  "key %s: the key's current version was not confirmed within timeout %lldms (another request's get is still running)",
					  k->name, (long long)k->conf.timeout_ms);
		}
	}
	k->refreshing = true;
	for (int tries = 0;; tries++) {
		k->distrusted = false;
		pthread_mutex_unlock(&k->lock);
		rc = az_keymat_fetch(k, slot, k->conf.url.version[0] ? k->conf.url.version : NULL, &fresh, err);
		pthread_mutex_lock(&k->lock);
		/* a refusal of this version came in while the GET was out, which may predate it: ask once more */
		if (rc != KB_OK || !k->distrusted || tries > 0)
			break;
		az_keymat_clear(&fresh);
	}
	if (rc == KB_OK && k->distrusted) {
		az_keymat_clear(&fresh);
		rc = kb_err_set(err, KB_E_KEY_UNAVAILABLE,
				"key %s: the service keeps refusing the key's current version while confirming it; try again",
				k->name);
	}
	k->refreshing = false;
	k->fetches++;
	kb_err_clear(&k->fetch_err);
	if (rc == KB_OK) {
		az_keymat_clear(&k->latest);
		k->latest = fresh;
		k->have_latest = true;
		k->fetched_ms = kb_now_ms();
		copy_out(&k->latest, m);
	} else if ((rc == KB_E_BACKEND_UNAVAILABLE || rc == KB_E_THROTTLED) && usable(k, kb_now_ms())) {
		/* an early refresh that failed for want of an answer: the copy is still within its bound */
		copy_out(&k->latest, m);
		rc = KB_OK;
	} else {
		k->fetch_err = *err;
	}
	pthread_cond_broadcast(&k->fetched);
	pthread_mutex_unlock(&k->lock);
	return rc;
}

void az_keymat_distrust(az_key *k, const char *version)
{
	pthread_mutex_lock(&k->lock);
	if (version == NULL || !*version || (k->have_latest && strcasecmp(version, k->latest.version) == 0)) {
		az_keymat_clear(&k->latest);
		k->have_latest = false;
		k->distrusted = true;
	}
	pthread_mutex_unlock(&k->lock);
}

bool az_refuses_version(kb_code rc)
{
	return rc == KB_E_KEY_DISABLED || rc == KB_E_KEY_EXPIRED || rc == KB_E_KEY_NOT_YET_VALID ||
	       rc == KB_E_UNKNOWN_VERSION || rc == KB_E_UNKNOWN_KEY;
}

void az_keymat_store(az_key *k, az_keymat *m)
{
	pthread_mutex_lock(&k->lock);
	az_keymat_clear(&k->latest);
	k->latest = *m;
	k->have_latest = true;
	k->fetched_ms = kb_now_ms();
	pthread_mutex_unlock(&k->lock);
	memset(m, 0, sizeof(*m));
}

kb_code az_check_alg(const az_key *k, bool rsa, kb_alg alg, kb_err *err)
{
	if (rsa ? kb_alg_is_rsa(alg) : (alg == KB_ALG_AES_KWP || alg == KB_ALG_A128KW ||
					alg == KB_ALG_A192KW || alg == KB_ALG_A256KW))
		return KB_OK;
	return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
			  "key %s is an %s key: it does %s, not %s", k->name, rsa ? "RSA" : "AES (oct-HSM)",
			  rsa ? "RSA-OAEP-256, RSA-OAEP or RSA1_5" : "A128KW, A192KW, A256KW or CKM_AES_KEY_WRAP_PAD",
			  az_alg_wire(alg)[0] ? az_alg_wire(alg) : "that algorithm");
}

kb_code az_local_wrap(const az_key *k, const az_keymat *m, kb_alg alg, const uint8_t *pt,
		      size_t ptlen, uint8_t *ct, size_t *ctlen, kb_err *err)
{
	int64_t now = (int64_t)time(NULL);
	size_t bytes = (size_t)(m->bits + 7) / 8, over, max;
	EVP_PKEY_CTX *ctx;
	bool ok;

	if (!(m->ops & AZ_KOP_WRAP))
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "key %s version %s does not allow wrapKey in its key_ops (%s): add it (az keyvault key set-attributes --ops wrapKey unwrapKey)",
				  k->name, m->version, m->ops_text[0] ? m->ops_text : "none");
	if (!m->enabled)
		return kb_err_set(err, KB_E_KEY_DISABLED,
				  "key %s version %s is disabled in %s: enable it, or rotate to a new version",
				  k->name, m->version, k->conf.url.host);
	if (m->nbf && now < m->nbf)
		return kb_err_set(err, KB_E_KEY_NOT_YET_VALID, "key %s version %s is not valid until its nbf, %lld s from now",
				  k->name, m->version, (long long)(m->nbf - now));
	if (m->exp && now >= m->exp)
		return kb_err_set(err, KB_E_KEY_EXPIRED, "key %s version %s expired %lld s ago (exp): extend exp, or rotate",
				  k->name, m->version, (long long)(now - m->exp));
	over = alg == KB_ALG_RSA_OAEP ? 42 : alg == KB_ALG_RSA_OAEP_256 ? 66 : 11;
	max = bytes > over ? bytes - over : 0;
	if (ptlen == 0 || ptlen > max)
		return kb_err_set(err, KB_E_BAD_REQUEST, "key %s wraps 1 to %zu bytes under %s with an RSA-%d key, not %zu",
				  k->name, max, kb_alg_name(alg), m->bits, ptlen);
	if (*ctlen < bytes)
		return kb_err_set(err, KB_E_INTERNAL, "key %s: no room for a %zu-byte ciphertext", k->name, bytes);
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, m->pkey, NULL);
	ok = ctx && EVP_PKEY_encrypt_init(ctx) == 1;
	if (ok && alg == KB_ALG_RSA1_5)
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
	else if (ok)
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, alg == KB_ALG_RSA_OAEP ? "SHA1" : "SHA256", NULL) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, alg == KB_ALG_RSA_OAEP ? "SHA1" : "SHA256", NULL) == 1;
	ok = ok && EVP_PKEY_encrypt(ctx, ct, ctlen, pt, ptlen) == 1;
	EVP_PKEY_CTX_free(ctx);
	return ok ? KB_OK : kb_err_set(err, KB_E_INTERNAL, "key %s: OpenSSL could not wrap under %s", k->name,
				       kb_alg_name(alg));
}
