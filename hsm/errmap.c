/*
 * errmap.c: the one place where an answer from Azure (or no answer) becomes
 * a kb_code and a message. Azure's 403 seldom names the root cause; the
 * message here does: the key, the version, the missing permission, the
 * principal, and the request id to find the call in Azure's logs.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "az.h"

const char *az_perm_name(az_op op)
{
	switch (op) {
	case AZ_OP_WRAP: return "wrapKey";
	case AZ_OP_UNWRAP: return "unwrapKey";
	case AZ_OP_ROTATE: return "rotate";
	default: return "get";
	}
}

const char *az_alg_wire(kb_alg alg)
{
	return alg == KB_ALG_AES_KWP ? "CKM_AES_KEY_WRAP_PAD" : kb_alg_name(alg);
}

static bool has(const char *hay, const char *needle)
{
	return strcasestr(hay, needle) != NULL;
}

/* appid copies the appid=... that Azure's 403 message names, if any. */
static bool appid(const char *msg, char *out, size_t cap)
{
	const char *p = strcasestr(msg, "appid=");
	size_t n;

	if (p == NULL)
		return false;
	p += 6;
	n = strcspn(p, ";' \"");
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

static kb_code forbidden(const az_conf *conf, const az_what *w, const az_resp *r, const char *msg,
			 const char *ver, kb_err *err)
{
	const char *perm = az_perm_name(w->op), *host = conf->url.host;
	char who[160], app[AZ_ID_MAX];
	bool mhsm = conf->service == AZ_SVC_MHSM;

	if (has(msg, "disabled"))
		return kb_err_set(err, KB_E_KEY_DISABLED,
				  "key %s%s is disabled in %s (403 on %s, request id %s): enable it (az keyvault key set-attributes --enabled true) or rewrap under another key",
				  w->key, *ver ? ver : "'s current version", host, perm, r->request_id);
	if (has(msg, "not yet valid") || has(msg, "nbf"))
		return kb_err_set(err, KB_E_KEY_NOT_YET_VALID,
				  "key %s%s is not valid yet in %s: its nbf is in the future (403 on %s, request id %s): wait, or clear nbf",
				  w->key, ver, host, perm, r->request_id);
	if (has(msg, "expired") || has(msg, "exp "))
		return kb_err_set(err, KB_E_KEY_EXPIRED,
				  "key %s%s has expired in %s: its exp has passed (403 on %s, request id %s): extend exp, or rotate and rewrap",
				  w->key, ver, host, perm, r->request_id);
	if (has(msg, "key_ops") || has(msg, "key operation"))
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "key %s%s in %s does not allow %s in its key_ops (403, request id %s): add it (az keyvault key set-attributes --ops wrapKey unwrapKey)",
				  w->key, ver, host, perm, r->request_id);
	az_principal(conf, who, sizeof(who));
	if (conf->auth != AZ_AUTH_CLIENT_SECRET && conf->auth != AZ_AUTH_WORKLOAD_IDENTITY &&
	    appid(msg, app, sizeof(app)))
		snprintf(who, sizeof(who), "principal %s", app);
	if (mhsm)
		return kb_err_set(err, KB_E_PERMISSION_DENIED,
				  "%s lacks the %s permission on key %s of Managed HSM %s (403, request id %s): assign it a role with %s on /keys/%s, e.g. Managed HSM Crypto Service Encryption User",
				  who, perm, w->key, host, r->request_id, perm, conf->url.name);
	return kb_err_set(err, KB_E_PERMISSION_DENIED,
			  "%s lacks the %s permission on key %s of vault %s (403, request id %s): grant keys %s in the vault's access policy, or the Key Vault Crypto Service Encryption User role",
			  who, perm, w->key, host, r->request_id, perm);
}

/*
 * tls_refused maps a TLS verification failure, which no retry mends, to a
 * message naming ca_file; false for any other failure.
 */
static bool tls_refused(const az_conf *conf, const char *who, const char *host, const az_resp *r, kb_err *err)
{
	if (r->status != 0 || (r->cc != CURLE_PEER_FAILED_VERIFICATION && r->cc != CURLE_SSL_CACERT_BADFILE))
		return false;
	if (r->cc == CURLE_SSL_CACERT_BADFILE)
		kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "%s: cannot use ca_file %s: %.120s (request id %s): name a readable PEM file of CA certificates",
			   who, conf->ca_file ? conf->ca_file : "(the system's CAs)", r->neterr, r->request_id);
	else
		kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
			   "%s: TLS verification of %s failed: %.120s (request id %s): if a CA the system does not trust signed its certificate (a private endpoint, the emulator), set ca_file to that CA's PEM file%s",
			   who, host, r->neterr, r->request_id, conf->ca_file ? "; ca_file is set, so check it holds that CA" : "");
	return true;
}

/* token_error maps a failed token request. */
static kb_code token_error(const az_conf *conf, const az_resp *r, const char *code, const char *msg,
			   kb_err *err)
{
	char id[300];

	az_identity(conf, id, sizeof(id));
	if (tls_refused(conf, "no token", conf->auth == AZ_AUTH_MANAGED_IDENTITY ? conf->imds : conf->authority, r, err))
		return err->code;
	if (r->status == 0 || r->status == 429 || r->status >= 500)
		return kb_err_set(err, r->status == 429 ? KB_E_THROTTLED : KB_E_BACKEND_UNAVAILABLE,
				  "no token: %s answered %s%ld after %d attempts in %lldms (%s, request id %s)",
				  conf->auth == AZ_AUTH_MANAGED_IDENTITY ? "the managed identity endpoint" : "the authority",
				  r->status ? "" : "nothing, ", r->status, r->attempts, (long long)r->elapsed_ms,
				  r->status ? msg : r->neterr, r->request_id);
	return kb_err_set(err, KB_E_AUTH_FAILED,
			  "no token for %s: %ld %s: %.120s (request id %s): check the tenant, client id and credential",
			  id, r->status, code, msg, r->request_id);
}

kb_code az_error(const az_conf *conf, const az_what *w, const az_resp *r, kb_err *err)
{
	char code[48], inner[48], msg[200], ver[KB_VERSION_MAX + 16] = "", id[300];
	const char *host = conf->url.host, *body = az_resp_text(r);
	az_challenge ch;

	az_parse_error(body, r->body.len, code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
	if (w->op == AZ_OP_TOKEN)
		return token_error(conf, r, code, msg, err);
	if (w->version && *w->version)
		snprintf(ver, sizeof(ver), " version %s", w->version);
	snprintf(id, sizeof(id), "key %s", w->key);
	if (tls_refused(conf, id, host, r, err))
		return err->code;
	if (r->status == 0)
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: no answer from %s after %d attempts in %lldms: %.120s (request id %s): check the network; timeout and max_retries set how long the broker tries",
				  w->key, host, r->attempts, (long long)r->elapsed_ms, r->neterr, r->request_id);
	if (r->status == 429)
		return kb_err_set(err, KB_E_THROTTLED,
				  "key %s: %s throttled the %s request (429) through %d attempts in %lldms%s (request id %s): lower the rate (a longer cache_ttl sends fewer unwraps) or raise timeout",
				  w->key, host, az_perm_name(w->op), r->attempts, (long long)r->elapsed_ms,
				  r->gave_up_early ? ", and asked to wait past the timeout" : "", r->request_id);
	if (r->status >= 500 || r->status == 408)
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: %s answered %ld %s through %d attempts in %lldms (request id %s): the service is failing; try again later",
				  w->key, host, r->status, code, r->attempts, (long long)r->elapsed_ms, r->request_id);
	switch (r->status) {
	case 401:
		az_identity(conf, id, sizeof(id));
		if (r->www_auth[0] && az_parse_challenge(r->www_auth, &ch))
			return kb_err_set(err, KB_E_AUTH_FAILED,
					  "key %s: %s refused the token (401) from %s (request id %s): it wants a token for %s from %s/%s",
					  w->key, host, id, r->request_id, ch.resource, ch.authority, ch.tenant);
		return kb_err_set(err, KB_E_AUTH_FAILED,
				  "key %s: %s refused the token (401: %.80s) from %s (request id %s): check tenant_id, client_id and the token's audience",
				  w->key, host, msg, id, r->request_id);
	case 403:
		return forbidden(conf, w, r, msg, ver, err);
	case 404:
		if (w->version && *w->version)
			return kb_err_set(err, KB_E_UNKNOWN_VERSION,
					  "key %s has no version %s in %s (404 %s, request id %s): the version was purged, or the blob is from another key",
					  w->key, w->version, host, code, r->request_id);
		return kb_err_set(err, KB_E_UNKNOWN_KEY,
				  "key %s: %s has no key %s (404 %s, request id %s): fix url, or recover a soft-deleted key (az keyvault key recover)",
				  w->key, host, conf->url.name, code, r->request_id);
	case 400:
		if (strcasecmp(inner, "KeyTypeNotSupported") == 0 || has(msg, "algorithm"))
			return kb_err_set(err, KB_E_MECHANISM_UNSUPPORTED,
					  "key %s%s: %s cannot do that algorithm (400 %s: %.100s, request id %s)",
					  w->key, ver, host, code, msg, r->request_id);
		if (w->op == AZ_OP_UNWRAP)
			return kb_err_set(err, KB_E_BAD_BLOB,
					  "the ciphertext does not unwrap under key %s%s (400 %s from %s, request id %s): the blob is corrupt, or was not wrapped by this key",
					  w->key, ver, code, host, r->request_id);
		return kb_err_set(err, KB_E_BAD_REQUEST, "key %s%s: %s refused the %s request (400 %s: %.100s, request id %s)",
				  w->key, ver, host, az_perm_name(w->op), code, msg, r->request_id);
	case 409:
		return kb_err_set(err, KB_E_KEY_UNAVAILABLE,
				  "key %s is in a conflicting state in %s (409 %s: %.100s, request id %s)", w->key, host,
				  code, msg, r->request_id);
	default:
		break;
	}
	for (char *p = code; *p; p++)
		if (!isprint((unsigned char)*p))
			*p = '?';
	return kb_err_set(err, KB_E_INTERNAL, "key %s: %s answered %ld %s to %s (request id %s)", w->key, host,
			  r->status, code, az_perm_name(w->op), r->request_id);
}
