/*
 * doctor.c: `keybroker doctor` for an Azure key. It walks what CMK support
 * tickets start from, in order: the service and its cloud, a token, the get
 * permission, the key's state and type, its key_ops, a real wrap and a real
 * unwrap, soft delete and purge protection, and the versions rotation needs.
 * Every line that is not a pass carries its fix.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "az.h"

#define DAY 86400
#define MIN_OLD_VERSION_S DAY /* Azure asks old versions to stay usable this long */

typedef struct doc {
	az_key *k;
	int slot;
	kb_doctor_emit emit;
	void *ctx;
} doc;

static void say(doc *d, const char *check, const char *status, const char *fix, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void say(doc *d, const char *check, const char *status, const char *fix, const char *fmt, ...)
{
	char detail[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	d->emit(d->ctx, check, status, detail, strcmp(status, "pass") == 0 ? NULL : fix);
}

/* grant_fix writes how to grant perm to the key's principal. */
static void grant_fix(const az_key *k, const char *perm, char *buf, size_t cap)
{
	char who[160];
	size_t vn = strcspn(k->conf.url.host, ".");

	if (vn > 60)
		vn = 60;

	az_principal(&k->conf, who, sizeof(who));
	if (k->conf.service == AZ_SVC_MHSM)
		snprintf(buf, cap,
			 "give %.80s a role with %s on /keys/%.60s: az keyvault role assignment create --hsm-name %.*s --role \"Managed HSM Crypto Service Encryption User\" --assignee ID --scope /keys/%.60s",
			 who, perm, k->conf.url.name, (int)vn, k->conf.url.host, k->conf.url.name);
	else
		snprintf(buf, cap,
			 "grant %.80s the keys permission %s: az keyvault set-policy --name %.*s --spn ID --key-permissions get wrapKey unwrapKey (or the Key Vault Crypto Service Encryption User role)",
			 who, perm, (int)vn, k->conf.url.host);
}

static void check_service(doc *d)
{
	const az_conf *c = &d->k->conf;

	say(d, "service", "pass", NULL, "%s %s (%s), tokens for %s", az_service_name(c->service), c->url.host,
	    c->cloud ? c->cloud : "not an Azure-owned host: service from the config or the 401 challenge",
	    c->resource);
	if (c->auth != AZ_AUTH_CLIENT_SECRET && c->auth != AZ_AUTH_WORKLOAD_IDENTITY)
		return;
	/* conf.c refuses a key with no trusted authority, so one is always set here */
	say(d, "authority", "pass", NULL, "the %s goes only to %s (%s), tenant %s (%s); never to an authority a 401 challenge names",
	    c->auth == AZ_AUTH_CLIENT_SECRET ? "client secret" : "federated assertion", c->authority,
	    c->authority_from_cloud ? "the cloud's" : "authority_host", c->tenant,
	    c->tenant_from_challenge ? "from the 401 challenge" : "tenant_id");
}

/*
 * check_tenant asks the vault for its 401 challenge (a request without a
 * token), whose authorization URI names the vault's tenant, and compares it
 * with the tenant this key is configured for: Azure refuses CMK on a vault
 * in another Entra ID tenant than the service's, and a token from the wrong
 * tenant gets a bare 401 that names neither.
 */
static void check_tenant(doc *d)
{
	az_key *k = d->k;
	az_req rq = { .method = "GET", .idempotent = true };
	az_resp r = { 0 };
	az_challenge ch;
	char url[AZ_URL_MAX], why[AZ_URL_MAX], used[AZ_ID_MAX + 96];

	az_key_url(k, NULL, NULL, url, sizeof(url));
	rq.url = url;
	az_http_do(&k->conf, &k->slots[d->slot], &rq, &r);
	az_token_tenant(&k->conf, used, sizeof(used));
	if (r.status != 401 || !az_parse_challenge(r.www_auth, &ch))
		say(d, "tenant", "warn", "check that the vault is in the service's Entra ID tenant in the portal",
		    "%s sent no 401 challenge naming its tenant (status %ld); tokens come from %s", k->conf.url.host,
		    r.status, used);
	else if (az_tenant_differs(&k->conf, ch.tenant, why, sizeof(why)))
		say(d, "tenant", "fail",
		    "use a vault in the service's tenant, or set tenant_id (or AZURE_TENANT_ID) to the tenant the service runs in",
		    "%s", why);
	else
		say(d, "tenant", "pass", NULL, "%s is in tenant %s, %s; tokens come from %s", k->conf.url.host, ch.tenant,
		    !k->conf.tenant[0] ? "and no tenant_id is set to compare it with" :
		    k->conf.tenant_from_challenge ? "taken as this key's" : "the one this key is configured for", used);
	az_resp_free(&r);
}

static bool check_token(doc *d)
{
	az_key *k = d->k;
	char id[300], *token = NULL;
	unsigned gen;
	bool fresh;
	kb_err err;
	kb_code rc = az_token_get(k->cred, &k->conf, &k->slots[d->slot], &token, &gen, &fresh, &err);

	az_secret_free(token);
	az_identity(&k->conf, id, sizeof(id));
	if (rc == KB_OK) {
		say(d, "token", "pass", NULL, "%s token with %s", fresh ? "got a" : "a cached", id);
		return true;
	}
	say(d, "token", "fail",
	    k->conf.auth == AZ_AUTH_TOKEN_FILE ? "write a valid bearer token for the key's service to token_file" :
	    "check tenant_id, client_id and the credential; docs/azure.md lists what each auth method reads",
	    "no token with %s: %s", id, err.msg);
	return false;
}

static bool check_get(doc *d, az_keymat *m)
{
	char fix[400];
	kb_err err;
	kb_code rc = az_keymat_fetch(d->k, d->slot, d->k->conf.url.version[0] ? d->k->conf.url.version : NULL, m, &err);

	if (rc == KB_OK) {
		say(d, "get permission", "pass", NULL, "got key %s version %s", d->k->conf.url.name, m->version);
		return true;
	}
	if (rc == KB_E_PERMISSION_DENIED) {
		grant_fix(d->k, "get", fix, sizeof(fix));
		say(d, "get permission", "fail", fix, "%s", err.msg);
	} else if (rc == KB_E_KEY_DISABLED) {
		say(d, "key enabled", "fail", "enable the key (az keyvault key set-attributes --enabled true)", "%s", err.msg);
	} else {
		say(d, "key exists", "fail", "fix url, or recover the key if it was deleted (az keyvault key recover)",
		    "%s", err.msg);
	}
	return false;
}

static void check_state(doc *d, const az_keymat *m)
{
	int64_t now = (int64_t)time(NULL);

	if (!m->enabled)
		say(d, "key enabled", "fail", "enable it: az keyvault key set-attributes --enabled true",
		    "version %s is disabled", m->version);
	else if (m->nbf && now < m->nbf)
		say(d, "key enabled", "fail", "wait for nbf, or clear it", "version %s is not valid for %lld s more (nbf)",
		    m->version, (long long)(m->nbf - now));
	else if (m->exp && now >= m->exp)
		say(d, "key enabled", "fail", "extend exp, or rotate and rewrap", "version %s expired %lld s ago (exp)",
		    m->version, (long long)(now - m->exp));
	else if (m->exp && m->exp - now < 30 * DAY)
		say(d, "key enabled", "warn", "extend exp, or rotate before it passes",
		    "version %s is enabled but expires in %lld days", m->version, (long long)((m->exp - now) / DAY));
	else
		say(d, "key enabled", "pass", NULL, "version %s is enabled%s%s", m->version,
		    m->nbf ? ", past its nbf" : "", m->exp ? ", before its exp" : ", with no exp");
}

static void check_type(doc *d, const az_keymat *m)
{
	az_key *k = d->k;
	kb_err err;

	if (az_check_alg(k, m->rsa, k->alg, &err) != KB_OK)
		say(d, "key type", "fail", "set alg to one the key type does", "%s", err.msg);
	else if (m->rsa && m->bits < 2048)
		say(d, "key type", "fail", "rotate to an RSA key of 2048 bits or more", "%s of %d bits is too small",
		    m->kty, m->bits);
	else if (m->rsa)
		say(d, "key type", "pass", NULL, "%s %d bits, alg %s", m->kty, m->bits, az_alg_wire(k->alg));
	else if (m->bits)
		say(d, "key type", "pass", NULL, "%s AES-%d, alg %s", m->kty, m->bits, az_alg_wire(k->alg));
	else
		say(d, "key type", "pass", NULL, "%s (AES, size unknown: the service did not send key_size), alg %s", m->kty,
		    az_alg_wire(k->alg));
}

static void check_ops(doc *d, const az_keymat *m)
{
	bool w = m->ops & AZ_KOP_WRAP, u = m->ops & AZ_KOP_UNWRAP;

	if (w && u)
		say(d, "key_ops", "pass", NULL, "%s", m->ops_text);
	else
		say(d, "key_ops", "fail", "az keyvault key set-attributes --ops wrapKey unwrapKey (keep the others it needs)",
		    "key_ops (%s) lack %s%s%s", m->ops_text[0] ? m->ops_text : "none", w ? "" : "wrapKey",
		    !w && !u ? " and " : "", u ? "" : "unwrapKey");
}

/*
 * fix_for says what to do about rc from a perm call (need is its AZ_KOP_ bit).
 * A refusal is the key's key_ops when they lack need (as the key was read),
 * else the principal's permission.
 */
static const char *fix_for(const az_key *k, kb_code rc, unsigned ops, unsigned need, const char *perm, char *buf,
			   size_t cap)
{
	if (rc == KB_E_PERMISSION_DENIED && !(ops & need))
		return "az keyvault key set-attributes --ops wrapKey unwrapKey (keep the others it needs)";
	if (rc == KB_E_PERMISSION_DENIED) {
		grant_fix(k, perm, buf, cap);
		return buf;
	}
	if (rc == KB_E_KEY_DISABLED)
		return "enable the key (az keyvault key set-attributes --enabled true)";
	if (rc == KB_E_THROTTLED || rc == KB_E_BACKEND_UNAVAILABLE)
		return "the service is unreachable or throttling: check the network, or raise timeout";
	return "see the detail";
}

/* check_wrap_unwrap does a real round trip: the broker's own wrap, then the service's unwrap. */
static void check_wrap_unwrap(doc *d, const az_keymat *m)
{
	az_key *k = d->k;
	uint8_t pt[32], ct[KB_WRAPPED_MAX], back[KB_SECRET_MAX], sct[KB_WRAPPED_MAX];
	size_t ctlen = sizeof(ct), backlen = sizeof(back), sctlen = sizeof(sct);
	char ver[KB_VERSION_MAX + 1], sver[KB_VERSION_MAX + 1], fix[400];
	kb_alg alg;
	kb_err err;
	kb_code rc;

	if (RAND_bytes(pt, sizeof(pt)) != 1) {
		say(d, "wrap", "fail", "see the detail", "no random bytes for a test DEK");
		return;
	}
	rc = az_wrap_op(k, d->slot, NULL, KB_ALG_NONE, pt, sizeof(pt), ct, &ctlen, ver, &alg, &err);
	if (rc != KB_OK) {
		snprintf(fix, sizeof(fix), "%s", err.msg);
		say(d, "wrap", "fail", fix_for(k, rc, m->ops, AZ_KOP_WRAP, "wrapKey", fix, sizeof(fix)), "%s", err.msg);
		say(d, "unwrap", "fail", "fix the wrap first", "not tried: the wrap failed");
		return;
	}
	if (k->rsa && k->conf.local_wrap) {
		/* local wraps need no wrapKey permission; say whether the service would allow it too */
		rc = az_service_wrap(k, d->slot, ver, alg, pt, sizeof(pt), sct, &sctlen, sver, &err);
		if (rc == KB_OK)
			say(d, "wrap", "pass", NULL, "wrapped a test DEK locally under version %s with %s; the service allows wrapKey too",
			    ver, az_alg_wire(alg));
		else {
			snprintf(fix, sizeof(fix), "%s", err.msg);
			say(d, "wrap", "warn", fix_for(k, rc, m->ops, AZ_KOP_WRAP, "wrapKey", fix, sizeof(fix)),
			    "wrapped locally under version %s, but the service refuses wrapKey (local_wrap = no would fail): %s",
			    ver, err.msg);
		}
	} else {
		say(d, "wrap", "pass", NULL, "the service wrapped a test DEK under version %s with %s", ver, az_alg_wire(alg));
	}
	rc = az_service_unwrap(k, d->slot, ver, alg, ct, ctlen, back, &backlen, &err);
	if (rc != KB_OK) {
		snprintf(fix, sizeof(fix), "%s", err.msg);
		say(d, "unwrap", "fail", fix_for(k, rc, m->ops, AZ_KOP_UNWRAP, "unwrapKey", fix, sizeof(fix)), "%s", err.msg);
	} else if (backlen != sizeof(pt) || CRYPTO_memcmp(back, pt, sizeof(pt)) != 0) {
		say(d, "unwrap", "fail", "report this: the service returned other bytes",
		    "the service unwrapped the test DEK to different bytes");
	} else {
		say(d, "unwrap", "pass", NULL, "the service unwrapped the test DEK (version %s)", ver);
	}
	OPENSSL_cleanse(pt, sizeof(pt));
	OPENSSL_cleanse(back, sizeof(back));
}

/* purge_fix writes the command that turns purge protection on for the key's vault or Managed HSM. */
static void purge_fix(const az_key *k, const char *what, char *buf, size_t cap)
{
	int vn = (int)strcspn(k->conf.url.host, ".");

	if (vn > 60)
		vn = 60;
	if (k->conf.service == AZ_SVC_MHSM)
		snprintf(buf, cap, "turn on %s: az keyvault update-hsm --hsm-name %.*s --enable-purge-protection true", what,
			 vn, k->conf.url.host);
	else
		snprintf(buf, cap, "turn on %s: az keyvault update --name %.*s --enable-purge-protection true", what, vn,
			 k->conf.url.host);
}

static void check_recovery(doc *d, const az_keymat *m)
{
	const char *rl = m->recovery;
	char fix[200];

	if (!rl[0]) {
		say(d, "soft delete", "warn", "check the vault's soft-delete and purge protection in the portal",
		    "the service did not report recoveryLevel");
	} else if (strcasecmp(rl, "Purgeable") == 0) {
		purge_fix(d->k, "soft delete and purge protection", fix, sizeof(fix));
		say(d, "soft delete", "fail", fix,
		    "recoveryLevel %s: a deleted key is gone at once, and every DEK it wrapped with it", rl);
	} else if (strcasestr(rl, "Purgeable")) {
		purge_fix(d->k, "purge protection", fix, sizeof(fix));
		say(d, "soft delete", "warn", fix,
		    "recoveryLevel %s (%d days): soft delete is on but purge protection is off, so a purged key makes its data unrecoverable",
		    rl, m->recoverable_days);
	} else {
		say(d, "soft delete", "pass", NULL, "recoveryLevel %s (%d days): soft delete and purge protection are on",
		    rl, m->recoverable_days);
	}
}

/*
 * check_versions looks at every version but the one in use (m, what get
 * answered), by name: the list's order is the service's, and the newest
 * listed one need not be the one the broker wraps under.
 */
static void check_versions(doc *d, const az_keymat *m)
{
	az_version_item items[KB_MAX_VERSIONS];
	int n = 0, disabled = 0;
	int64_t now = (int64_t)time(NULL), age;
	char list[200] = "";
	bool listed = false;
	kb_err err;
	kb_code rc = az_list_versions(d->k, d->slot, items, KB_MAX_VERSIONS, &n, &err);

	if (rc != KB_OK) {
		say(d, "versions", "warn", "grant the list permission to see versions, or ignore this line",
		    "cannot list versions: %s", err.msg);
		return;
	}
	age = m->created ? now - m->created : -1;
	for (int i = 0; i < n; i++) {
		size_t l = strlen(list);

		if (strcasecmp(items[i].version, m->version) == 0) {
			listed = true;
			continue;
		}
		if (items[i].enabled)
			continue;
		disabled++;
		if (l + 40 < sizeof(list))
			snprintf(list + l, sizeof(list) - l, "%s%.36s", l ? ", " : "", items[i].version);
	}
	if (!listed) {
		say(d, "versions", "warn", "run doctor again; if it persists, check the key's versions in the portal",
		    "%d versions listed, but not %s, the one get answered: the key changed while doctor ran", n, m->version);
		return;
	}
	if (disabled) {
		say(d, "versions", "warn",
		    "re-enable old versions until every blob under them is rewrapped (keybroker rewrap); Azure asks for at least 24 hours",
		    "%d versions; the one in use, %s, is %lld h old; %d others are disabled, and blobs under them no longer unwrap: %s",
		    n, m->version, (long long)(age / 3600), disabled, list);
		return;
	}
	if (n > 1 && age >= 0 && age < MIN_OLD_VERSION_S)
		say(d, "versions", "pass", NULL,
		    "%d versions, all others enabled; the one in use, %s, is %lld min old: keep the others enabled for at least 24 hours",
		    n, m->version, (long long)(age / 60));
	else
		say(d, "versions", "pass", NULL, "%d version%s, all enabled; the one in use, %s, is %lld days old", n,
		    n == 1 ? "" : "s", m->version, (long long)(age >= 0 ? age / DAY : 0));
}

/* ago writes an age in s as "N min" or "N h M min". */
static void ago(int64_t s, char *buf, size_t cap)
{
	if (s < 3600)
		snprintf(buf, cap, "%lld min", (long long)(s / 60));
	else
		snprintf(buf, cap, "%lld h %lld min", (long long)(s / 3600), (long long)(s % 3600 / 60));
}

/*
 * check_rotation_window holds a rotation to Azure's 24-hour rule: for a day
 * after a new version supersedes the previous one, blobs (and services that
 * cached the old version) still unwrap under it, so it must stay enabled,
 * present and allowed unwrapKey. Only the version the one in use replaced
 * is held to it; older ones are check_versions' business.
 */
static void check_rotation_window(doc *d, const az_keymat *m)
{
	az_version_item items[KB_MAX_VERSIONS];
	const az_version_item *prev = NULL;
	int64_t now = (int64_t)time(NULL), age = m->created ? now - m->created : -1;
	int n = 0;
	char when[48], fix[400];
	az_keymat pm = { 0 };
	kb_err err;
	kb_code rc;

	if (age < 0 || age >= MIN_OLD_VERSION_S)
		return;
	if (az_list_versions(d->k, d->slot, items, KB_MAX_VERSIONS, &n, &err) != KB_OK)
		return; /* check_versions says why */
	for (int i = 0; i < n; i++)
		if (strcasecmp(items[i].version, m->version) != 0 && items[i].created <= m->created &&
		    (!prev || items[i].created >= prev->created))
			prev = &items[i];
	if (prev == NULL)
		return; /* the first version: nothing was superseded */
	ago(age, when, sizeof(when));
	snprintf(fix, sizeof(fix),
		 "keep version %s enabled with unwrapKey for 24 hours after the rotation (az keyvault key set-attributes --version %s --enabled true --ops wrapKey unwrapKey), then rewrap its blobs (keybroker rewrap --to-version %s)",
		 prev->version, prev->version, m->version);
	if (!prev->enabled) {
		say(d, "24-hour rule", "fail", fix,
		    "version %s was superseded by %s %s ago, less than 24 hours, and is disabled: blobs under it no longer unwrap",
		    prev->version, m->version, when);
		return;
	}
	rc = az_keymat_fetch(d->k, d->slot, prev->version, &pm, &err);
	if (rc == KB_E_UNKNOWN_VERSION || rc == KB_E_UNKNOWN_KEY)
		say(d, "24-hour rule", "fail", fix,
		    "version %s was superseded by %s %s ago, less than 24 hours, and is deleted: blobs under it no longer unwrap",
		    prev->version, m->version, when);
	else if (rc == KB_OK && !(pm.ops & AZ_KOP_UNWRAP))
		say(d, "24-hour rule", "fail", fix,
		    "version %s was superseded by %s %s ago, less than 24 hours, and its key_ops (%s) lack unwrapKey: blobs under it no longer unwrap",
		    prev->version, m->version, when, pm.ops_text[0] ? pm.ops_text : "none");
	else if (rc != KB_OK)
		say(d, "24-hour rule", "fail", fix, "version %s was superseded by %s %s ago, less than 24 hours, and %s",
		    prev->version, m->version, when, err.msg);
	else
		say(d, "24-hour rule", "pass", NULL,
		    "version %s was superseded by %s %s ago and still unwraps: keep it so for at least 24 hours", prev->version,
		    m->version, when);
	az_keymat_clear(&pm);
}

kb_code az_doctor(az_key *k, int slot, kb_doctor_emit emit, void *ctx, kb_err *err)
{
	doc d = { k, slot, emit, ctx };
	az_keymat m;

	(void)err;
	check_service(&d);
	check_tenant(&d);
	if (!check_token(&d))
		return KB_OK;
	if (!check_get(&d, &m))
		return KB_OK;
	check_state(&d, &m);
	check_type(&d, &m);
	check_ops(&d, &m);
	check_wrap_unwrap(&d, &m);
	check_recovery(&d, &m);
	check_versions(&d, &m);
	check_rotation_window(&d, &m);
	az_keymat_clear(&m);
	return KB_OK;
}
