/*
 * backend.c: kb_azure_backend, the ops table. open learns the service from
 * the host (or the 401 challenge), gets a token and the key; wraps are local
 * for RSA keys (unless local_wrap = no) and on the service for AES keys;
 * unwraps always go to the service, at the blob's version.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "az.h"
#include "azure.h"
#include "log.h"
#include "pem.h"

static kb_code slot_ok(const az_key *k, int slot, kb_err *err)
{
	if (slot < 0 || slot >= k->nslots)
		return kb_err_set(err, KB_E_INTERNAL, "key %s: slot %d out of range [0,%d)", k->name, slot, k->nslots);
	return KB_OK;
}

static kb_code az_wrap(void *state, int slot, const char *version, kb_alg alg, const uint8_t *pt,
		       size_t ptlen, uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
		       kb_alg *alg_out, kb_err *err)
{
	az_key *k = state;
	kb_code rc = slot_ok(k, slot, err);

	return rc != KB_OK ? rc : az_wrap_op(k, slot, version, alg, pt, ptlen, ct, ctlen, version_out, alg_out, err);
}

static kb_code az_unwrap(void *state, int slot, const char *version, kb_alg alg, const uint8_t *ct,
			 size_t ctlen, uint8_t *pt, size_t *ptlen, kb_err *err)
{
	az_key *k = state;
	kb_alg use = alg == KB_ALG_NONE ? k->alg : alg;
	az_keymat m;
	kb_err gone;
	kb_code rc = slot_ok(k, slot, err);

	if (rc == KB_OK)
		rc = az_check_alg(k, k->rsa, use, err);
	if (rc != KB_OK)
		return rc;
	if (version == NULL || *version == '\0')
		return kb_err_set(err, KB_E_BAD_BLOB, "key %s: the blob names no key version", k->name);
	rc = az_service_unwrap(k, slot, version, use, ct, ctlen, pt, ptlen, err);
	/* the first sign that the version wraps use is refused: new wraps ask the service again */
	if (az_refuses_version(rc))
		az_keymat_distrust(k, rc == KB_E_UNKNOWN_KEY ? NULL : version);
	if (rc == KB_E_UNKNOWN_VERSION) {
		/* is the version gone, or the whole key (deleted)? */
		if (az_keymat_fetch(k, slot, NULL, &m, &gone) == KB_E_UNKNOWN_KEY) {
			*err = gone;
			rc = gone.code;
		}
		az_keymat_clear(&m);
	}
	return rc;
}

static kb_code az_describe(void *state, int slot, kb_key_info *info, kb_err *err)
{
	az_key *k = state;
	az_keymat m, keep;
	az_version_item *items = NULL;
	kb_err lerr;
	int n = 0;
	kb_code rc = slot_ok(k, slot, err);
	char listed[64] = "";

	if (rc == KB_OK)
		rc = az_keymat_fetch(k, slot, az_pinned(k), &m, err);
	if (rc != KB_OK)
		return rc;
	memset(info, 0, sizeof(*info));
	info->alg = k->alg;
	snprintf(info->kty, sizeof(info->kty), "%s", m.kty);
	info->bits = m.bits;
	info->enabled = m.enabled;
	snprintf(info->latest, sizeof(info->latest), "%s", m.version);
	snprintf(info->key_ops, sizeof(info->key_ops), "%s", m.ops_text);
	items = calloc(KB_MAX_VERSIONS, sizeof(*items));
	if (items && az_list_versions(k, slot, items, KB_MAX_VERSIONS, &n, &lerr) != KB_OK) {
		/* listing needs the list permission, which a CMK principal often lacks */
		snprintf(listed, sizeof(listed), "; versions not listed (%s)", kb_code_name(lerr.code));
		n = 0;
	}
	for (int i = 0; i < n; i++) {
		kb_version_info *v = &info->versions[info->nversions++];

		snprintf(v->version, sizeof(v->version), "%s", items[i].version);
		v->enabled = items[i].enabled;
		v->created = items[i].created;
		v->not_before = items[i].nbf;
		v->expires = items[i].exp;
	}
	if (info->nversions == 0) {
		kb_version_info *v = &info->versions[info->nversions++];

		snprintf(v->version, sizeof(v->version), "%s", m.version);
		v->enabled = m.enabled;
		v->created = m.created;
		v->not_before = m.nbf;
		v->expires = m.exp;
	}
	free(items);
	snprintf(info->detail, sizeof(info->detail), "%s %.100s (%s), %s wraps, recoveryLevel %.40s%.50s",
		 az_service_name(k->conf.service), k->conf.url.host, k->conf.cloud ? k->conf.cloud : "other host",
		 k->rsa && k->conf.local_wrap ? "local" : "service", m.recovery[0] ? m.recovery : "unknown", listed);
	if (m.pkey && (info->public_pem = kb_public_pem(m.pkey)) == NULL)
		rc = kb_err_set(err, KB_E_INTERNAL, "key %s: cannot write the public key as PEM", k->name);
	if (!az_pinned(k)) {
		keep = m;
		az_keymat_store(k, &keep);
	} else {
		az_keymat_clear(&m);
	}
	return rc;
}

static kb_code az_rotate(void *state, int slot, char version_out[KB_VERSION_MAX + 1], kb_err *err)
{
	az_key *k = state;
	az_what w = { .key = k->name, .op = AZ_OP_ROTATE };
	char url[AZ_URL_MAX];
	az_resp r = { 0 };
	az_keymat m;
	kb_code rc = slot_ok(k, slot, err);

	if (rc != KB_OK)
		return rc;
	az_key_url(k, NULL, "rotate", url, sizeof(url));
	rc = az_call(k, slot, &w, "POST", url, NULL, &r, err);
	az_resp_free(&r);
	if (rc != KB_OK)
		return rc;
	/* the answer is the new version's bundle; ask again so the cache has exactly what GET says */
	rc = az_keymat_fetch(k, slot, NULL, &m, err);
	if (rc != KB_OK)
		return rc;
	memcpy(version_out, m.version, sizeof(m.version));
	if (az_pinned(k))
		az_keymat_clear(&m);
	else
		az_keymat_store(k, &m);
	return KB_OK;
}

static kb_code az_doctor_op(void *state, int slot, kb_doctor_emit emit, void *ctx, kb_err *err)
{
	az_key *k = state;
	kb_code rc = slot_ok(k, slot, err);

	return rc != KB_OK ? rc : az_doctor(k, slot, emit, ctx, err);
}

static int az_claim_raw_blob(void *state, const char *kid)
{
	const az_key *k = state;
	az_kid id;

	return az_parse_kid(kid, &id, NULL, 0) && id.version[0] && strcmp(id.host, k->conf.url.host) == 0 &&
	       strcasecmp(id.name, k->conf.url.name) == 0;
}

/*
 * az_identify: a version is its kid URL with the version (the host and key
 * name in lower case, as the service treats them): versions are made by the
 * service, never reused, so the URL names the key material; and it needs no
 * round trip.
 */
static kb_code az_identify(void *state, int slot, const char *version, kb_buf *out, kb_err *err)
{
	const az_key *k = state;
	char kid[AZ_URL_MAX * 2];
	int n;
	(void)slot;

	if (version == NULL || *version == '\0')
		return kb_err_set(err, KB_E_UNKNOWN_VERSION, "key %s: a kid names a version", k->name); /* the core always does */
	n = snprintf(kid, sizeof(kid), "https://%s/keys/%s/%s", k->conf.url.host, k->conf.url.name, version);
	for (int i = 0; i < n; i++)
		if (kid[i] >= 'A' && kid[i] <= 'Z')
			kid[i] = (char)(kid[i] - 'A' + 'a');
	if (n <= 0 || (size_t)n >= sizeof(kid) || !kb_buf_append(out, kid, (size_t)n))
		return kb_err_set(err, KB_E_INTERNAL, "key %s: cannot write its kid", k->name);
	return KB_OK;
}

static void key_free(az_key *k)
{
	az_slots_free(k->slots, k->nslots);
	az_cred_release(k->cred);
	az_keymat_clear(&k->latest);
	az_conf_free(&k->conf);
	az_keymat_sync_destroy(k);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

static void az_close(void *state)
{
	az_key *k = state;
	az_engine *e;

	if (k == NULL)
		return;
	e = k->engine;
	k->engine = NULL;
	if (az_engine_free(e, key_free))
		return; /* a worker still uses k: the engine frees it after */
	key_free(k);
}

static void az_attach(void *state, const kb_io *io)
{
	az_key *k = state;

	if (k->engine) {
		az_engine_free(k->engine, NULL);
		k->engine = NULL;
	}
	if (io && (k->engine = az_engine_new(k, io)) == NULL)
		kb_warn("azure key %s: out of memory for its request engine: its unwraps go to workers", k->name);
}

static kb_code az_unwrap_start(void *state, kb_async *a)
{
	az_key *k = state;
	kb_alg use = a->alg == KB_ALG_NONE ? k->alg : a->alg;
	kb_code rc;

	if (k->engine == NULL)
		return kb_err_set(a->err, KB_E_INTERNAL, "key %s: no request engine", k->name);
	if ((rc = az_check_alg(k, k->rsa, use, a->err)) != KB_OK)
		return rc;
	a->alg = use;
	return az_engine_unwrap(k->engine, a);
}

/* where prefixes err's message with the config location. */
static kb_code where(const kb_keyconf *kc, kb_err *err)
{
	char msg[KB_ERR_MSG_MAX];

	snprintf(msg, sizeof(msg), "%s", err->msg);
	return kb_err_set(err, err->code, "%s:%d: [key:%s] %s", kc->file ? kc->file : "config", kc->line, kc->name,
			  msg);
}

static kb_code refuse_aes_on_vault(kb_keyconf *kc, const az_key *k, kb_err *err)
{
	if (k->conf.service != AZ_SVC_VAULT || kc->alg == KB_ALG_NONE || kb_alg_is_rsa(kc->alg))
		return KB_OK;
	return kb_keyconf_bad(kc, "alg", err,
			      "%s needs an oct-HSM key on a Managed HSM; %s is a key vault, whose keys are RSA: use RSA-OAEP-256 (the default) or RSA-OAEP",
			      az_alg_wire(kc->alg), k->conf.url.host);
}

static kb_code az_open(kb_keyconf *kc, int nslots, void **state, kb_err *err)
{
	az_key *k = calloc(1, sizeof(*k));
	az_keymat m = { 0 };
	bool entra;
	kb_code rc;
	int ctl = nslots - 1;

	*state = NULL;
	if (k == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	snprintf(k->name, sizeof(k->name), "%s", kc->name);
	az_keymat_sync_init(k);
	rc = az_conf_take(kc, &k->conf, err);
	if (rc == KB_OK)
		rc = refuse_aes_on_vault(kc, k, err);
	if (rc != KB_OK)
		goto fail;
	if (nslots < 1) {
		rc = kb_err_set(err, KB_E_INTERNAL, "key %s: nslots %d < 1", k->name, nslots);
		goto fail;
	}
	k->nslots = nslots;
	if ((k->slots = az_slots_new(nslots)) == NULL) {
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory (curl handles)");
		goto fail;
	}
	entra = k->conf.auth == AZ_AUTH_CLIENT_SECRET || k->conf.auth == AZ_AUTH_WORKLOAD_IDENTITY;
	/* a configured tenant is checked against the vault's: a CMK vault must be in the service's tenant */
	if (!k->conf.resource[0] || entra || k->conf.tenant[0]) {
		rc = az_challenge_probe(k, ctl, err);
		if (rc != KB_OK)
			goto fail_where;
		/* kb_keyconf_bad names the location itself */
		if ((rc = refuse_aes_on_vault(kc, k, err)) != KB_OK)
			goto fail;
	}
	if ((k->cred = az_cred_acquire(&k->conf, err)) == NULL) {
		rc = err->code;
		goto fail;
	}
	rc = az_keymat_fetch(k, ctl, az_pinned(k), &m, err);
	if (rc != KB_OK)
		goto fail_where;
	k->rsa = m.rsa;
	k->alg = kc->alg != KB_ALG_NONE ? kc->alg : m.rsa ? KB_ALG_RSA_OAEP_256 : KB_ALG_AES_KWP;
	kc->alg = k->alg; /* the core reports the algorithm settled on */
	kc->wrap_bytes = !k->rsa ? 64 : m.bits > 0 ? (m.bits + 7) / 8 : 0; /* room for a 32-byte DEK; RSA: the modulus */
	if (az_check_alg(k, k->rsa, k->alg, err) != KB_OK) {
		char why[KB_ERR_MSG_MAX];

		snprintf(why, sizeof(why), "%s", err->msg);
		rc = kb_keyconf_bad(kc, "alg", err, "%s", why);
		goto fail;
	}
	kb_info("azure key %s: %s %s version %s (%s, %d bits%s), alg %s, %s wraps", k->name,
		az_service_name(k->conf.service), k->conf.url.host, m.version, m.kty, m.bits,
		m.bits ? "" : ": size unknown", az_alg_wire(k->alg),
		k->rsa && k->conf.local_wrap ? "local" : "service");
	az_keymat_store(k, &m);
	*state = k;
	return KB_OK;
fail_where:
	rc = where(kc, err);
fail:
	az_keymat_clear(&m);
	az_close(k);
	return rc;
}

const kb_backend_ops kb_azure_backend = {
	.name = "azure",
	.open = az_open,
	.close = az_close,
	.describe = az_describe,
	.wrap = az_wrap,
	.unwrap = az_unwrap,
	.rotate = az_rotate,
	.random = NULL,
	.doctor = az_doctor_op,
	.claim_raw_blob = az_claim_raw_blob,
	.identify = az_identify,
	.attach = az_attach,
	.unwrap_start = az_unwrap_start,
};
