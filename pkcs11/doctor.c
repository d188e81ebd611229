/*
 * doctor.c: `keybroker doctor` for a PKCS#11 key. Each check builds on the
 * one before, so the first failure of module, token or login ends the walk.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "p11.h"

#define LINE 512

static void check_pin_file(kb_p11_call *c, kb_doctor_emit emit, void *ctx)
{
	static const char *const result[] = {
		[KB_P11_PIN_FILE_PRIVATE] = "pass", [KB_P11_PIN_FILE_EXPOSED] = "warn",
		[KB_P11_PIN_FILE_MISSING] = "fail",
	};
	char detail[LINE], fix[LINE];
	kb_p11_pin_file r = kb_p11_pin_file_check(&c->key->conf.pin, detail, fix, sizeof(detail));

	if (r != KB_P11_PIN_FILE_NONE)
		emit(ctx, "pin file", result[r], detail, fix[0] ? fix : NULL);
}

static bool check_token(kb_p11_call *c, kb_doctor_emit emit, void *ctx)
{
	kb_p11_key *k = c->key;
	char detail[LINE], fix[LINE];
	CK_TOKEN_INFO ti;
	CK_RV rv;

	snprintf(detail, sizeof(detail), "%s: %s", k->conf.module, k->tok->library);
	emit(ctx, "module loads", "pass", detail, NULL);
	rv = k->f->C_GetTokenInfo(k->tok->slot_id, &ti);
	if (rv != CKR_OK) {
		snprintf(detail, sizeof(detail), "token %s in slot %lu: %s", k->tok->label,
			 (unsigned long)k->tok->slot_id, kb_p11_rv_name(rv) ? kb_p11_rv_name(rv) : "error");
		snprintf(fix, sizeof(fix),
			 "make the token available again (for SoftHSM: check SOFTHSM2_CONF and its token directory); the broker reconnects by itself");
		emit(ctx, "token present", "fail", detail, fix);
		return false;
	}
	snprintf(detail, sizeof(detail), "token %s (serial %s) in slot %lu", k->tok->label, k->tok->serial,
		 (unsigned long)k->tok->slot_id);
	emit(ctx, "token present", "pass", detail, NULL);
	return true;
}

static bool check_login(kb_p11_call *c, kb_doctor_emit emit, void *ctx)
{
	char pin[300], detail[LINE], fix[LINE];
	kb_err e;

	kb_p11_pin_describe(&c->key->conf.pin, pin, sizeof(pin));
	if (kb_p11_session_get(c, &e) != KB_OK) {
		if (e.code == KB_E_AUTH_FAILED)
			snprintf(fix, sizeof(fix), "put the token's user PIN in %s", pin);
		else
			snprintf(fix, sizeof(fix), "make the token available; then retry");
		emit(ctx, "login works", "fail", e.msg, fix);
		return false;
	}
	snprintf(detail, sizeof(detail), "user session open (PIN from %s)", pin);
	emit(ctx, "login works", "pass", detail, NULL);
	check_pin_file(c, emit, ctx);
	return true;
}

static bool check_objects(kb_p11_call *c, kb_p11_version **v, int *n, kb_doctor_emit emit, void *ctx)
{
	kb_p11_key *k = c->key;
	char detail[LINE], fix[LINE];
	size_t off;
	kb_err e;

	*v = NULL;
	*n = 0;
	if (kb_p11_versions_refresh(c, &e) != KB_OK || kb_p11_versions_copy(k, v, n, &e) != KB_OK) {
		emit(ctx, "key objects found", "fail", e.msg, "make the token available; then retry");
		return false;
	}
	if (*n == 0) {
		snprintf(detail, sizeof(detail), "no %s key labelled %s on token %s",
			 k->kty == CKK_RSA ? "RSA" : "AES", k->conf.label, k->tok->label);
		snprintf(fix, sizeof(fix), "restore the key, or create a first version: pkcs11-tool --module %s --token-label %s --login %s --label %s --id 01",
			 k->conf.module, k->tok->label,
			 k->kty == CKK_RSA ? "--keypairgen --key-type rsa:2048" : "--keygen --key-type AES:32",
			 k->conf.label);
		emit(ctx, "key objects found", "fail", detail, fix);
		return false;
	}
	off = (size_t)snprintf(detail, sizeof(detail), "%d version%s of %s-%d label %s:", *n, *n == 1 ? "" : "s",
			       k->kty == CKK_RSA ? "RSA" : "AES", (*v)[*n - 1].bits, k->conf.label);
	for (int i = 0; i < *n && off < sizeof(detail); i++)
		off += (size_t)snprintf(detail + off, sizeof(detail) - off, " %s", (*v)[i].name);
	if (off < sizeof(detail))
		snprintf(detail + off, sizeof(detail) - off, " (latest %s)", (*v)[*n - 1].name);
	emit(ctx, "key objects found", "pass", detail, NULL);
	return true;
}

static void check_attributes(kb_p11_call *c, const kb_p11_version *v, int n, kb_doctor_emit emit,
			     void *ctx)
{
	kb_p11_key *k = c->key;
	const kb_p11_version *l = &v[n - 1];
	bool rsa = k->kty == CKK_RSA;
	char detail[LINE], fix[LINE], old[LINE] = "";
	size_t off = 0;

	snprintf(detail, sizeof(detail), "latest %s: CKA_DECRYPT=%s CKA_UNWRAP=%s CKA_WRAP=%s%s", l->name,
		 l->decrypt ? "yes" : "no", l->unwrap ? "yes" : "no", l->wrap ? "yes" : "no",
		 rsa ? " (RSA wraps use the public key; unwraps need CKA_DECRYPT)" : "");
	if (rsa ? !l->decrypt : !(l->wrap && l->unwrap)) {
		snprintf(fix, sizeof(fix), "set %s on the %s object with id %s, or rotate to a version that has it",
			 rsa ? "CKA_DECRYPT" : "CKA_WRAP and CKA_UNWRAP", rsa ? "private key" : "secret key",
			 l->name);
		emit(ctx, "CKA_WRAP/CKA_UNWRAP/CKA_DECRYPT set", "fail", detail, fix);
		return;
	}
	for (int i = 0; i < n - 1 && off < sizeof(old); i++)
		if (!(rsa ? v[i].decrypt : v[i].unwrap))
			off += (size_t)snprintf(old + off, sizeof(old) - off, " %s", v[i].name);
	if (off > 0) {
		snprintf(fix, sizeof(fix), "blobs under older versions%s no longer unwrap: set %s on them until those blobs are rewrapped",
			 old, rsa ? "CKA_DECRYPT" : "CKA_UNWRAP");
		emit(ctx, "CKA_WRAP/CKA_UNWRAP/CKA_DECRYPT set", "warn", detail, fix);
		return;
	}
	emit(ctx, "CKA_WRAP/CKA_UNWRAP/CKA_DECRYPT set", "pass", detail, NULL);
}

/* probe tries alg on version v; true when the token reverses it. */
static bool probe(kb_p11_call *c, const kb_p11_version *v, kb_alg alg, kb_err *e)
{
	kb_alg saved = c->alg;
	kb_code rc;

	c->alg = alg;
	c->version = v->name;
	rc = c->key->kty == CKK_RSA ? kb_p11_rsa_probe(c, v, e) : kb_p11_aes_probe(c, v, e);
	c->version = NULL;
	c->alg = saved;
	return rc == KB_OK;
}

static void check_mechanism(kb_p11_call *c, const kb_p11_version *l, kb_doctor_emit emit, void *ctx)
{
	kb_p11_key *k = c->key;
	char detail[LINE], fix[LINE];
	bool ok;
	kb_err e;

	if (k->kty == CKK_AES) {
		kb_alg offered[KB_P11_AES_ALGS];
		char list[96];
		CK_RV rv;
		int n = kb_p11_aes_offered(k, offered, &rv);

		kb_p11_aes_describe(offered, n, list, sizeof(list));
		ok = probe(c, l, k->alg, &e);
		snprintf(detail, sizeof(detail), "token offers %s; alg %s (%s): %s%s", list, kb_alg_name(k->alg),
			 kb_p11_aes_ckm(k->alg), ok ? "supported" : e.msg,
			 ok && k->alg == KB_ALG_AES_KWP && k->kwp_pads ? " (note: the token's unwrap keeps the RFC 5649 padding, as SoftHSM 2.6.1 does, so AES-KWP wraps take multiples of 8 bytes; AES-GCM takes any length)" : "");
		if (!ok)
			snprintf(fix, sizeof(fix), n ? "set alg = %s for this key" : "use an RSA key on this token, or a token that does AES key wrap or AES-GCM",
				 n ? kb_alg_name(offered[0]) : "");
		emit(ctx, "mechanism supported", ok ? "pass" : "fail", detail, ok ? NULL : fix);
		return;
	}
	bool sha1 = probe(c, l, KB_ALG_RSA_OAEP, &e);
	bool sha256 = probe(c, l, KB_ALG_RSA_OAEP_256, &e);

	snprintf(detail, sizeof(detail),
		 "CKM_RSA_PKCS_OAEP: RSA-OAEP (SHA-1) %s; RSA-OAEP-256 %s; default alg %s%s",
		 sha1 ? "supported" : "not supported", sha256 ? "supported" : "not supported",
		 kb_alg_name(k->alg),
		 sha256 ? "" : " (note: SoftHSM 2.6.1 does OAEP with SHA-1 only and answers CKR_ARGUMENTS_BAD to SHA-256)");
	ok = k->alg == KB_ALG_RSA_OAEP ? sha1 : sha256;
	if (ok) {
		emit(ctx, "mechanism supported", "pass", detail, NULL);
		return;
	}
	snprintf(fix, sizeof(fix), "%s", sha1 ? "set alg = RSA-OAEP for this key"
					      : "use a token that does CKM_RSA_PKCS_OAEP decryption");
	emit(ctx, "mechanism supported", "fail", detail, fix);
}

static void check_round_trip(kb_p11_call *c, kb_doctor_emit emit, void *ctx)
{
	uint8_t dek[32], ct[KB_WRAPPED_MAX], pt[KB_SECRET_MAX];
	size_t ctlen = sizeof(ct), ptlen = sizeof(pt);
	char version[KB_VERSION_MAX + 1], detail[LINE];
	kb_err e = { .code = KB_OK };
	bool ok = false;

	if (RAND_bytes(dek, sizeof(dek)) != 1) {
		emit(ctx, "wrap/unwrap round trip", "fail", "no random bytes from OpenSSL", "check the OpenSSL installation");
		return;
	}
	c->op = KB_P11_OP_WRAP;
	if (kb_p11_wrap_call(c, NULL, dek, sizeof(dek), ct, &ctlen, version, &e) == KB_OK) {
		c->op = KB_P11_OP_UNWRAP;
		if (kb_p11_unwrap_call(c, version, ct, ctlen, pt, &ptlen, &e) == KB_OK) {
			ok = ptlen == sizeof(dek) && memcmp(pt, dek, ptlen) == 0;
			if (!ok)
				snprintf(e.msg, sizeof(e.msg), "the unwrapped key differs from the wrapped one");
		}
	}
	c->op = KB_P11_OP_DOCTOR;
	OPENSSL_cleanse(dek, sizeof(dek));
	OPENSSL_cleanse(pt, sizeof(pt));
	if (!ok) {
		emit(ctx, "wrap/unwrap round trip", "fail", e.msg, "fix the failures above; then retry");
		return;
	}
	snprintf(detail, sizeof(detail), "%s with version %s: a 32-byte key came back intact",
		 kb_alg_name(c->alg), version);
	emit(ctx, "wrap/unwrap round trip", "pass", detail, NULL);
}

kb_code kb_p11_doctor(kb_p11_call *c, kb_doctor_emit emit, void *ctx, kb_err *err)
{
	kb_p11_version *v = NULL;
	int n = 0;

	if (check_token(c, emit, ctx) && check_login(c, emit, ctx) && check_objects(c, &v, &n, emit, ctx)) {
		check_attributes(c, v, n, emit, ctx);
		check_mechanism(c, &v[n - 1], emit, ctx);
		check_round_trip(c, emit, ctx);
	}
	kb_p11_versions_free(v, n);
	if (kb_p11_recovery_for(c->rv) == KB_P11_REOPEN)
		kb_p11_session_drop(c->key, c->slot);
	return KB_OK;
}
