/*
 * call.c: authenticated requests to the key's vault or Managed HSM, the 401
 * challenge, and the operations that always go to the service: wrapkey,
 * unwrapkey and list versions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "az.h"
#include "b64.h"
#include "log.h"

void az_key_url(const az_key *k, const char *version, const char *suffix, char *out, size_t cap)
{
	snprintf(out, cap, "%s/keys/%s%s%s%s%s?api-version=" AZ_API_VERSION, k->conf.base, k->conf.url.name,
		 version && *version ? "/" : "", version ? version : "", suffix ? "/" : "", suffix ? suffix : "");
}

kb_code az_call(az_key *k, int slot, const az_what *w, const char *method, const char *url,
		const char *body, az_resp *resp, kb_err *err)
{
	az_req rq = {
		.method = method,
		.url = url,
		.body = body,
		.body_len = body ? strlen(body) : 0,
		.content_type = body ? "application/json" : NULL,
		.idempotent = w->op != AZ_OP_ROTATE,
	};
	char *token;
	unsigned gen;
	bool fresh;
	kb_code rc;

	for (int tries = 0;; tries++) {
		rc = az_token_get(k->cred, &k->conf, &k->slots[slot], &token, &gen, &fresh, err);
		if (rc != KB_OK)
			return rc;
		rq.bearer = token;
		az_http_do(&k->conf, &k->slots[slot], &rq, resp);
		az_secret_free(token);
		kb_debug("azure key %s: %s %s -> %ld in %lldms, %d attempt(s), request id %s", k->name, method,
			 url, resp->status, (long long)resp->elapsed_ms, resp->attempts, resp->request_id);
		if (resp->status == 401 && tries == 0 && !fresh) {
			/* the cached token expired early or was revoked: one refresh, one retry */
			az_token_reject(k->cred, gen);
			continue;
		}
		break;
	}
	if (resp->status >= 200 && resp->status < 300) {
		rc = KB_OK;
	} else {
		if (resp->status == 401)
			az_token_reject(k->cred, gen);
		rc = az_error(&k->conf, w, resp, err);
	}
	/* after az_error, which clears it: the id goes to the audit log either way */
	if (err)
		snprintf(err->request_id, sizeof(err->request_id), "%s", resp->request_id);
	return rc;
}

/* resource_fits checks the challenge's resource against the key's host, as Azure's SDKs do. */
static bool resource_fits(const char *host, const char *resource)
{
	char rh[AZ_HOST_MAX], h[AZ_HOST_MAX];
	size_t hn, rn;

	snprintf(rh, sizeof(rh), "%.*s", (int)strcspn(resource + 8, ":/"), resource + 8);
	snprintf(h, sizeof(h), "%.*s", (int)strcspn(host, ":"), host);
	hn = strlen(h);
	rn = strlen(rh);
	return rn > 0 && hn > rn + 1 && h[hn - rn - 1] == '.' && strcasecmp(h + hn - rn, rh) == 0;
}

kb_code az_challenge_probe(az_key *k, int slot, kb_err *err)
{
	az_conf *c = &k->conf;
	az_resp r = { 0 };
	az_req rq = { .method = "GET", .idempotent = true };
	az_challenge ch;
	char url[AZ_URL_MAX], host[AZ_HOST_MAX];
	az_what w = { .key = k->name, .op = AZ_OP_CHALLENGE };
	kb_code rc;

	az_key_url(k, NULL, NULL, url, sizeof(url));
	rq.url = url;
	az_http_do(c, &k->slots[slot], &rq, &r);
	if (r.status != 401) {
		rc = r.status >= 200 && r.status < 300 ?
		     kb_err_set(err, KB_E_AUTH_FAILED, "key %s: %s answered without asking for a token: it is not Azure Key Vault or Managed HSM",
				k->name, c->url.host) :
		     az_error(c, &w, &r, err);
		az_resp_free(&r);
		return rc;
	}
	if (!az_parse_challenge(r.www_auth, &ch)) {
		rc = kb_err_set(err, KB_E_AUTH_FAILED,
				"key %s: the 401 from %s has no usable Bearer challenge (request id %s): set service, tenant_id and authority_host",
				k->name, c->url.host, r.request_id);
		az_resp_free(&r);
		return rc;
	}
	az_resp_free(&r);
	if (!resource_fits(c->url.host, ch.resource))
		return kb_err_set(err, KB_E_AUTH_FAILED,
				  "key %s: %s asks for tokens for %s, which is not a parent of the host: refusing to send it a token",
				  k->name, c->url.host, ch.resource);
	snprintf(host, sizeof(host), "%.*s", (int)strcspn(ch.resource + 8, ":/"), ch.resource + 8);
	if (c->service == AZ_SVC_UNKNOWN)
		c->service = strncasecmp(host, "managedhsm.", 11) == 0 ? AZ_SVC_MHSM : AZ_SVC_VAULT;
	snprintf(c->resource, sizeof(c->resource), "%s", ch.resource);
	/*
	 * Only the tenant is taken from the challenge, as Azure's SDKs do: the
	 * authority a secret or assertion goes to comes from the configuration
	 * or the cloud (conf.c), never from whoever answered on the key's host.
	 */
	if (!c->tenant[0]) {
		snprintf(c->tenant, sizeof(c->tenant), "%s", ch.tenant);
		c->tenant_from_challenge = true;
	} else {
		char why[AZ_URL_MAX];

		if (az_tenant_differs(c, ch.tenant, why, sizeof(why)))
			kb_log_err("azure key %s: %s", k->name, why);
	}
	if (c->authority[0] && strcasecmp(ch.authority, c->authority) != 0)
		kb_info("azure key %s: %s names the authority %s in its challenge; tokens come from %s, the configured one",
			k->name, c->url.host, ch.authority, c->authority);
	if (c->authority[0])
		kb_info("azure key %s: %s is a %s; tokens for %s from %s/%s", k->name, c->url.host,
			az_service_name(c->service), c->resource, c->authority, c->tenant);
	else
		kb_info("azure key %s: %s is a %s; tokens for %s", k->name, c->url.host, az_service_name(c->service),
			c->resource);
	return KB_OK;
}

char *az_op_body(kb_alg alg, const uint8_t *in, size_t n, size_t *cap)
{
	size_t enc = kb_b64_encoded_len(n, KB_B64_URL);
	char *s;

	*cap = enc + 64;
	s = malloc(*cap);
	if (s == NULL)
		return NULL;
	snprintf(s, *cap, "{\"alg\":\"%s\",\"value\":\"", az_alg_wire(alg));
	kb_b64_encode(in, n, s + strlen(s), KB_B64_URL);
	strcat(s, "\"}");
	return s;
}

/* crypto_op sends wrapkey or unwrapkey and parses the result into out. */
static kb_code crypto_op(az_key *k, int slot, az_op op, const char *version, kb_alg alg, const uint8_t *in,
			 size_t inlen, uint8_t *out, size_t *outlen, char version_out[KB_VERSION_MAX + 1],
			 kb_err *err)
{
	az_what w = { .key = k->name, .op = op, .version = version };
	char url[AZ_URL_MAX], why[96], got[KB_VERSION_MAX + 1];
	az_resp r = { 0 };
	size_t cap;
	char *body = az_op_body(alg, in, inlen, &cap);
	kb_code rc;

	if (body == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	az_key_url(k, version, op == AZ_OP_WRAP ? "wrapkey" : "unwrapkey", url, sizeof(url));
	rc = az_call(k, slot, &w, "POST", url, body, &r, err);
	OPENSSL_cleanse(body, cap);
	free(body);
	if (rc == KB_OK && !az_parse_op_result(az_resp_text(&r), r.body.len, out, outlen, got, why, sizeof(why)))
		rc = kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "key %s: the %s answer from %s is unusable (%s) (request id %s)",
				k->name, az_perm_name(op), k->conf.url.host, why, r.request_id);
	if (rc == KB_OK && version_out) {
		if (!got[0])
			rc = kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					"key %s: the wrapKey answer from %s names no key version (request id %s)", k->name,
					k->conf.url.host, r.request_id);
		else
			memcpy(version_out, got, sizeof(got));
	}
	az_resp_free(&r);
	return rc;
}

kb_code az_service_wrap(az_key *k, int slot, const char *version, kb_alg alg, const uint8_t *pt,
			size_t ptlen, uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
			kb_err *err)
{
	return crypto_op(k, slot, AZ_OP_WRAP, version, alg, pt, ptlen, ct, ctlen, version_out, err);
}

kb_code az_service_unwrap(az_key *k, int slot, const char *version, kb_alg alg, const uint8_t *ct,
			  size_t ctlen, uint8_t *pt, size_t *ptlen, kb_err *err)
{
	return crypto_op(k, slot, AZ_OP_UNWRAP, version, alg, ct, ctlen, pt, ptlen, NULL, err);
}

/* sort_by_created orders items oldest first, stably: versions made in one second keep the service's order. */
static void sort_by_created(az_version_item *items, int n)
{
	for (int i = 1; i < n; i++) {
		az_version_item t = items[i];
		int j = i;

		for (; j > 0 && items[j - 1].created > t.created; j--)
			items[j] = items[j - 1];
		items[j] = t;
	}
}

kb_code az_list_versions(az_key *k, int slot, az_version_item *items, int cap, int *n, kb_err *err)
{
	az_what w = { .key = k->name, .op = AZ_OP_VERSIONS };
	char url[AZ_URL_MAX], next[AZ_URL_MAX], why[96];
	az_resp r = { 0 };
	kb_code rc = KB_OK;
	int pages = 0;

	*n = 0;
	snprintf(url, sizeof(url), "%s/keys/%s/versions?api-version=" AZ_API_VERSION "&maxresults=25",
		 k->conf.base, k->conf.url.name);
	while (url[0] && rc == KB_OK) {
		if (++pages > 64) {
			rc = kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "key %s: list versions did not end after 64 pages",
					k->name);
			break;
		}
		rc = az_call(k, slot, &w, "GET", url, NULL, &r, err);
		if (rc == KB_OK && !az_parse_versions(az_resp_text(&r), r.body.len, items, cap, n, next,
						      sizeof(next), why, sizeof(why)))
			rc = kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					"key %s: the list of versions from %s is unusable (%s) (request id %s)", k->name,
					k->conf.url.host, why, r.request_id);
		/* follow nextLink only on the key's own host */
		if (rc == KB_OK && next[0] && strncasecmp(next, k->conf.base, strlen(k->conf.base)) == 0 &&
		    next[strlen(k->conf.base)] == '/' && *n < cap)
			snprintf(url, sizeof(url), "%s", next);
		else
			url[0] = '\0';
		az_resp_free(&r);
	}
	if (rc == KB_OK)
		sort_by_created(items, *n);
	return rc;
}
