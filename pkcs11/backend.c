/*
 * backend.c: kb_pkcs11_backend, the ops table. Each op runs through
 * kb_p11_run (call.c) on its slot's session.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "p11.h"
#include "pem.h"
#include "pkcs11.h"

struct wrap_args {
	const char *version;
	const uint8_t *in;
	size_t inlen;
	uint8_t *out;
	size_t *outlen;
	char *version_out;
};

static kb_code wrap_fn(kb_p11_call *c, void *arg, kb_err *err)
{
	struct wrap_args *a = arg;

	return kb_p11_wrap_call(c, a->version, a->in, a->inlen, a->out, a->outlen, a->version_out, err);
}

static kb_code unwrap_fn(kb_p11_call *c, void *arg, kb_err *err)
{
	struct wrap_args *a = arg;

	return kb_p11_unwrap_call(c, a->version, a->in, a->inlen, a->out, a->outlen, err);
}

static kb_code p11_wrap(void *state, int slot, const char *version, kb_alg alg, const uint8_t *pt,
			size_t ptlen, uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
			kb_alg *alg_out, kb_err *err)
{
	kb_p11_key *k = state;
	struct wrap_args a = { version, pt, ptlen, ct, ctlen, version_out };
	kb_alg use = alg == KB_ALG_NONE ? k->alg : alg;
	kb_code rc = kb_p11_run(k, slot, KB_P11_OP_WRAP, use, wrap_fn, &a, err);

	if (rc == KB_OK)
		*alg_out = use;
	return rc;
}

static kb_code p11_unwrap(void *state, int slot, const char *version, kb_alg alg, const uint8_t *ct,
			  size_t ctlen, uint8_t *pt, size_t *ptlen, kb_err *err)
{
	kb_p11_key *k = state;
	struct wrap_args a = { version, ct, ctlen, pt, ptlen, NULL };

	return kb_p11_run(k, slot, KB_P11_OP_UNWRAP, alg == KB_ALG_NONE ? k->alg : alg, unwrap_fn, &a, err);
}

static bool version_enabled(const kb_p11_key *k, const kb_p11_version *v)
{
	return k->kty == CKK_RSA ? v->decrypt : v->unwrap;
}

static void key_ops(const kb_p11_version *v, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s%s%s", v->encrypt ? "encrypt," : "", v->decrypt ? "decrypt," : "",
		 v->wrap ? "wrapKey," : "", v->unwrap ? "unwrapKey," : "");
	if (*buf)
		buf[strlen(buf) - 1] = '\0';
}

static kb_code describe_fn(kb_p11_call *c, void *arg, kb_err *err)
{
	kb_p11_key *k = c->key;
	kb_key_info *info = arg;
	kb_p11_version *v, *latest;
	kb_code rc;
	int n;

	rc = kb_p11_versions_refresh(c, err);
	if (rc == KB_OK)
		rc = kb_p11_versions_copy(k, &v, &n, err);
	if (rc != KB_OK)
		return rc;
	if (n == 0) {
		kb_p11_versions_free(v, n);
		return kb_err_set(err, KB_E_KEY_UNAVAILABLE,
				  "the key service (token %s) no longer has key %s: no object is labelled %s",
				  k->tok->label, k->name, k->conf.label);
	}
	memset(info, 0, sizeof(*info));
	latest = &v[n - 1];
	info->alg = k->alg;
	snprintf(info->kty, sizeof(info->kty), "%s", k->kty == CKK_RSA ? "RSA" : "AES");
	info->bits = latest->bits;
	info->enabled = version_enabled(k, latest);
	snprintf(info->latest, sizeof(info->latest), "%s", latest->name);
	for (int i = 0; i < n && i < KB_MAX_VERSIONS; i++) {
		snprintf(info->versions[i].version, sizeof(info->versions[i].version), "%s", v[i].name);
		info->versions[i].enabled = version_enabled(k, &v[i]);
		info->nversions++;
	}
	/* the wrap side of an RSA key is its public half; report what the token allows */
	if (k->kty == CKK_RSA && latest->pub == CK_INVALID_HANDLE)
		latest->encrypt = latest->wrap = true;
	key_ops(latest, info->key_ops, sizeof(info->key_ops));
	snprintf(info->detail, sizeof(info->detail), "token %s (serial %s, slot %lu), label %s, module %s (%s)",
		 k->tok->label, k->tok->serial, (unsigned long)k->tok->slot_id, k->conf.label,
		 k->conf.module, k->tok->library);
	if (latest->pkey && (info->public_pem = kb_public_pem(latest->pkey)) == NULL)
		rc = kb_err_set(err, KB_E_INTERNAL, "key %s: cannot write the public key as PEM", k->name);
	kb_p11_versions_free(v, n);
	return rc;
}

static kb_code p11_describe(void *state, int slot, kb_key_info *info, kb_err *err)
{
	kb_p11_key *k = state;

	return kb_p11_run(k, slot, KB_P11_OP_DESCRIBE, k->alg, describe_fn, info, err);
}

struct identify_args {
	const char *version;
	kb_buf *out;
};

/*
 * identify_fn: an RSA version is its public key (the PEM that describe
 * shows, so the fingerprint is the KMS face's); an AES version is the check
 * value the token computes (CKA_CHECK_VALUE), which names the key material
 * without revealing it: a key made again under the same label and id is
 * another key, the same key copied to another token the same. A token
 * without check values gives where the key lives (serial, label, CKA_ID).
 */
static kb_code identify_fn(kb_p11_call *c, void *arg, kb_err *err)
{
	struct identify_args *a = arg;
	kb_p11_key *k = c->key;
	kb_p11_version v;
	char line[300], *pem;
	CK_BYTE kcv[16];
	CK_ATTRIBUTE attr = { CKA_CHECK_VALUE, kcv, sizeof(kcv) };
	kb_code rc = kb_p11_versions_get(c, a->version, true, &v, err);
	size_t o;

	if (rc != KB_OK)
		return rc;
	if (v.pkey) {
		pem = kb_public_pem(v.pkey);
		if (pem == NULL || !kb_buf_append(a->out, pem, strlen(pem)))
			rc = kb_err_set(err, KB_E_INTERNAL, "key %s: cannot write the public key as PEM", k->name);
		free(pem);
		kb_p11_version_put(&v);
		return rc;
	}
	if (k->f->C_GetAttributeValue(c->h, v.key, &attr, 1) == CKR_OK && attr.ulValueLen != CK_UNAVAILABLE_INFORMATION &&
	    attr.ulValueLen > 0) {
		o = (size_t)snprintf(line, sizeof(line), "pkcs11 check value\n");
		for (CK_ULONG i = 0; i < attr.ulValueLen && o + 3 < sizeof(line); i++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%02x", kcv[i]);
	} else {
		o = (size_t)snprintf(line, sizeof(line), "pkcs11\n%s\n%s\n", k->tok->serial, k->conf.label);
		for (size_t i = 0; i < v.idlen && o + 3 < sizeof(line); i++)
			o += (size_t)snprintf(line + o, sizeof(line) - o, "%02x", v.id[i]);
	}
	if (!kb_buf_append(a->out, line, o))
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
	kb_p11_version_put(&v);
	return rc;
}

static kb_code p11_identify(void *state, int slot, const char *version, kb_buf *out, kb_err *err)
{
	kb_p11_key *k = state;
	struct identify_args a = { version, out };

	return kb_p11_run(k, slot, KB_P11_OP_DESCRIBE, k->alg, identify_fn, &a, err);
}

static kb_code rotate_fn(kb_p11_call *c, void *arg, kb_err *err)
{
	return kb_p11_rotate(c, arg, err);
}

static kb_code p11_rotate(void *state, int slot, char version_out[KB_VERSION_MAX + 1], kb_err *err)
{
	kb_p11_key *k = state;

	return kb_p11_run(k, slot, KB_P11_OP_ROTATE, k->alg, rotate_fn, version_out, err);
}

struct random_args {
	uint8_t *buf;
	size_t n;
};

static kb_code random_fn(kb_p11_call *c, void *arg, kb_err *err)
{
	struct random_args *a = arg;
	CK_RV rv = c->key->f->C_GenerateRandom(c->h, a->buf, a->n);

	return rv == CKR_OK ? KB_OK : kb_p11_fail(c, "C_GenerateRandom", rv, err);
}

static kb_code p11_random(void *state, int slot, uint8_t *buf, size_t n, kb_err *err)
{
	struct random_args a = { buf, n };

	return kb_p11_run(state, slot, KB_P11_OP_RANDOM, KB_ALG_NONE, random_fn, &a, err);
}

static kb_code p11_doctor(void *state, int slot, kb_doctor_emit emit, void *ctx, kb_err *err)
{
	kb_p11_key *k = state;
	kb_p11_call c = { .key = k, .slot = slot, .op = KB_P11_OP_DOCTOR, .alg = k->alg };

	kb_code rc;
	CK_RV present;

	if (slot < 0 || slot >= k->nslots)
		return kb_err_set(err, KB_E_INTERNAL, "key %s: slot %d out of range", k->name, slot);
	kb_p11_token_enter(k->tok);
	present = kb_p11_token_present(k->tok);
	kb_p11_token_leave(k->tok);
	if (present != CKR_OK)
		kb_p11_token_revive(k->tok); /* so that doctor sees a token that came back */
	kb_p11_token_enter(k->tok);
	rc = kb_p11_doctor(&c, emit, ctx, err);
	kb_p11_token_leave(k->tok);
	return rc;
}

static void p11_close(void *state)
{
	kb_p11_key *k = state;

	if (k == NULL)
		return;
	if (k->tok) {
		unsigned gen = atomic_load(&k->tok->gen);

		kb_p11_token_enter(k->tok);
		/* a session of an earlier gen went with the module's last C_Finalize */
		for (int i = 0; k->slots && i < k->nslots; i++)
			if (k->slots[i].h != CK_INVALID_HANDLE && k->slots[i].gen == gen)
				k->f->C_CloseSession(k->slots[i].h);
		kb_p11_token_leave(k->tok);
	}
	kb_p11_versions_free(k->v, k->nv);
	kb_p11_token_release(k->tok);
	kb_p11_conf_free(&k->conf);
	pthread_rwlock_destroy(&k->vlock);
	free(k->slots);
	free(k);
}

/*
 * choose_aes settles an AES key's algorithm against what the token offers:
 * the configured alg if offered, else the first offered. A refusal names the
 * alg line when there is one, else the key's section, and what would work.
 */
static kb_code choose_aes(kb_keyconf *kc, kb_p11_key *k, kb_err *err)
{
	kb_alg offered[KB_P11_AES_ALGS];
	char list[96];
	CK_RV rv;
	int n = kb_p11_aes_offered(k, offered, &rv);

	if (n == 0 && rv != CKR_OK) {
		kb_p11_call c = { .key = k, .op = KB_P11_OP_OPEN };

		return kb_p11_error(&c, "C_GetMechanismList", rv, err);
	}
	kb_p11_aes_describe(offered, n, list, sizeof(list));
	for (int i = 0; i < n; i++)
		if (kc->alg == KB_ALG_NONE || offered[i] == kc->alg) {
			k->alg = offered[i];
			return KB_OK;
		}
	if (kc->alg != KB_ALG_NONE)
		return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
				  "%s:%d: [key:%s] alg = %s: token %s does not offer %s for AES key %s; it offers %s (C_GetMechanismList): %s",
				  kc->file ? kc->file : "config", kc->line, kc->name, kb_alg_name(kc->alg),
				  k->tok->label, kb_p11_aes_ckm(kc->alg), k->conf.label, list,
				  n ? "set alg to one of those" : "use an RSA key on this token, or a token that does AES key wrap or AES-GCM");
	return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
			  "%s:%d: [key:%s]: %s is an AES key, and token %s (%s) offers %s for it (C_GetMechanismList): use an RSA key on this token, or a token that does AES key wrap or AES-GCM",
			  kc->file ? kc->file : "config", kc->line, kc->name, k->conf.label, k->tok->label,
			  k->tok->library, list);
}

/* choose_alg settles the key's default algorithm against its type and the token. */
static kb_code choose_alg(kb_keyconf *kc, kb_p11_key *k, kb_err *err)
{
	bool rsa = k->kty == CKK_RSA;
	kb_code rc = KB_OK;

	if (!rsa) {
		if (kc->alg != KB_ALG_NONE && !kb_p11_is_aes_alg(kc->alg))
			return kb_keyconf_bad(kc, "alg", err, "%s does not fit: %s on token %s is an AES key; use AES-KWP, AES-GCM or AES-KW",
					      kb_alg_name(kc->alg), k->conf.label, k->tok->label);
		rc = choose_aes(kc, k, err);
		if (rc == KB_OK)
			kc->alg = k->alg; /* the core reports the algorithm settled on */
		return rc;
	}
	k->alg = kc->alg == KB_ALG_NONE ? KB_ALG_RSA_OAEP : kc->alg;
	kc->alg = k->alg;
	if (k->alg == KB_ALG_RSA_OAEP || k->alg == KB_ALG_RSA_OAEP_256)
		return KB_OK;
	return kb_keyconf_bad(kc, "alg", err, "%s does not fit: %s on token %s is an RSA key; use RSA-OAEP",
			      kb_alg_name(k->alg), k->conf.label, k->tok->label);
}

/* probe_default refuses at startup a default algorithm the token cannot reverse. */
static kb_code probe_default(kb_keyconf *kc, bool configured, kb_p11_call *c, kb_err *err)
{
	kb_p11_version v;
	kb_code rc;

	c->alg = c->key->alg;
	rc = kb_p11_versions_get(c, NULL, true, &v, err);
	if (rc != KB_OK)
		return rc;
	c->version = v.name;
	rc = c->key->kty == CKK_RSA ? kb_p11_rsa_probe(c, &v, err) : kb_p11_aes_probe(c, &v, err);
	c->version = NULL;
	kb_p11_version_put(&v);
	if (rc == KB_E_MECHANISM_UNSUPPORTED) {
		char why[KB_ERR_MSG_MAX];

		snprintf(why, sizeof(why), "%s", err->msg);
		if (configured)
			return kb_err_set(err, rc, "%s:%d: [key:%s] alg = %s: %s", kc->file ? kc->file : "config",
					  kc->line, kc->name, kb_alg_name(c->key->alg), why);
		return kb_err_set(err, rc, "%s:%d: [key:%s] (no alg, so the default %s): %s",
				  kc->file ? kc->file : "config", kc->line, kc->name, kb_alg_name(c->key->alg), why);
	}
	return KB_OK; /* anything else is for the first wrap to report */
}

/* open_entered checks the token's key (entered, see p11.h): its versions, its type and the default algorithm. */
static kb_code open_entered(kb_keyconf *kc, kb_p11_key *k, kb_p11_call *c, kb_err *err)
{
	bool configured;
	kb_code rc = kb_p11_session_get(c, err);

	if (rc == KB_OK)
		rc = kb_p11_pin_verify(c, err);
	if (rc == KB_OK)
		rc = kb_p11_versions_refresh(c, err);
	if (rc != KB_OK)
		return rc;
	if (k->nv == 0) {
		rc = kb_err_set(err, KB_E_UNKNOWN_KEY,
				"%s:%d: [key:%s] uri: token %s has no key labelled %s: fix object= in uri, or create it, e.g. pkcs11-tool --module %s --token-label %s --login --keypairgen --key-type rsa:2048 --label %s --id 01",
				kc->file ? kc->file : "config", kc->line, k->name, k->tok->label, k->conf.label,
				k->conf.module, k->tok->label, k->conf.label);
		return rc;
	}
	configured = kc->alg != KB_ALG_NONE;
	rc = choose_alg(kc, k, err);
	if (rc == KB_OK)
		rc = probe_default(kc, configured, c, err);
	/* RSA: the modulus of the largest version; AES: room for a 32-byte DEK under any AES wrap */
	kc->wrap_bytes = k->kty == CKK_RSA ? 0 : 64;
	for (int i = 0; k->kty == CKK_RSA && i < k->nv; i++)
		if ((k->v[i].bits + 7) / 8 > kc->wrap_bytes)
			kc->wrap_bytes = (k->v[i].bits + 7) / 8;
	return rc;
}


static kb_code p11_open(kb_keyconf *kc, int nslots, void **state, kb_err *err)
{
	kb_p11_key *k = calloc(1, sizeof(*k));
	kb_p11_call c = { .key = k, .slot = nslots - 1, .op = KB_P11_OP_OPEN };
	kb_code rc;

	*state = NULL;
	if (k == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	snprintf(k->name, sizeof(k->name), "%s", kc->name);
	pthread_rwlock_init(&k->vlock, NULL);
	rc = kb_p11_conf_take(kc, &k->conf, err);
	if (rc != KB_OK)
		goto fail;
	if (nslots < 1) {
		rc = kb_err_set(err, KB_E_INTERNAL, "key %s: nslots %d < 1", k->name, nslots);
		goto fail;
	}
	k->nslots = nslots;
	k->slots = calloc((size_t)nslots, sizeof(*k->slots));
	if (k->slots == NULL) {
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	rc = kb_p11_token_acquire(&k->conf, k->name, &k->tok, err);
	if (rc != KB_OK)
		goto fail;
	k->f = k->tok->f;
	for (int i = 0; i < nslots; i++)
		k->slots[i] = (kb_p11_slot){ .h = CK_INVALID_HANDLE, .stale = true, .gen = atomic_load(&k->tok->gen) };
	kb_p11_token_enter(k->tok);
	rc = open_entered(kc, k, &c, err);
	kb_p11_token_leave(k->tok);
	if (rc != KB_OK)
		goto fail;
	*state = k;
	return KB_OK;
fail:
	p11_close(k);
	return rc;
}
const kb_backend_ops kb_pkcs11_backend = {
	.name = "pkcs11",
	.open = p11_open,
	.close = p11_close,
	.describe = p11_describe,
	.wrap = p11_wrap,
	.unwrap = p11_unwrap,
	.rotate = p11_rotate,
	.random = p11_random,
	.doctor = p11_doctor,
	.identify = p11_identify,
};
