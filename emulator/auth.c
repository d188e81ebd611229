#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "clock.h"
#include "crypto.h"
#include "errors.h"
#include "perms.h"

#define TOKEN_SLOTS 4096
#define TOKEN_BYTES 32

struct token {
	char value[64];
	char principal[EMU_NAME_MAX];
	enum emu_kind kind;
	int64_t exp;
};

static pthread_mutex_t token_lock = PTHREAD_MUTEX_INITIALIZER;
static struct token tokens[TOKEN_SLOTS];

/* emu_login_base writes "https://localhost:PORT" for the port the client used. */
static void emu_login_base(const struct emu_world *w, const struct emu_route *rt, char *out, size_t cap)
{
	if (rt && rt->port[0])
		snprintf(out, cap, "https://localhost:%s", rt->port);
	else
		snprintf(out, cap, "https://localhost:%u", w->port);
}

/* emu_auth_scope_kind maps a scope or resource URL to the audience it names. */
static enum emu_kind emu_auth_scope_kind(const char *scope)
{
	char host[EMU_HOST_MAX];
	size_t n;

	if (strncasecmp(scope, "https://", 8) != 0)
		return EMU_KIND_NONE;
	scope += 8;
	n = strcspn(scope, "/:");
	if (n == 0 || n >= sizeof(host))
		return EMU_KIND_NONE;
	memcpy(host, scope, n);
	host[n] = '\0';
	if (strncasecmp(host, "vault.", 6) == 0)
		return EMU_KIND_VAULT;
	if (strncasecmp(host, "managedhsm.", 11) == 0)
		return EMU_KIND_MHSM;
	return EMU_KIND_NONE;
}

/*
 * issue stores a new token for principal and kind, and names principal as
 * rep's caller; false with 500 set if randomness fails.
 */
static bool issue(struct emu_reply *rep, const char *principal, enum emu_kind kind,
		  unsigned lifetime, char *out, size_t cap)
{
	uint8_t raw[TOKEN_BYTES];
	char *s;
	int64_t now = emu_clock_real();
	struct token *slot = NULL;

	if (emu_random(raw, sizeof(raw)) || !(s = emu_b64url_encode(raw, sizeof(raw)))) {
		emu_oauth_error(rep, 500, "server_error", "no randomness");
		return false;
	}
	snprintf(out, cap, "%s", s);
	free(s);
	pthread_mutex_lock(&token_lock);
	for (size_t i = 0; i < TOKEN_SLOTS; i++) {
		if (!tokens[i].value[0] || tokens[i].exp <= now) {
			slot = &tokens[i];
			break;
		}
		if (!slot || tokens[i].exp < slot->exp)
			slot = &tokens[i];
	}
	snprintf(slot->value, sizeof(slot->value), "%s", out);
	snprintf(slot->principal, sizeof(slot->principal), "%s", principal);
	slot->kind = kind;
	slot->exp = now + lifetime;
	pthread_mutex_unlock(&token_lock);
	snprintf(rep->principal, sizeof(rep->principal), "%s", principal);
	return true;
}

/* lookup copies the token's principal into out; false if unknown or expired. */
static bool lookup(const char *value, enum emu_kind *kind, char *out, size_t cap)
{
	bool ok = false;
	int64_t now = emu_clock_real();
	size_t n = strlen(value);

	if (n == 0 || n >= sizeof(tokens[0].value))
		return false;
	pthread_mutex_lock(&token_lock);
	for (size_t i = 0; i < TOKEN_SLOTS; i++) {
		if (tokens[i].exp > now && strlen(tokens[i].value) == n &&
		    CRYPTO_memcmp(tokens[i].value, value, n) == 0) {
			*kind = tokens[i].kind;
			snprintf(out, cap, "%s", tokens[i].principal);
			ok = true;
			break;
		}
	}
	pthread_mutex_unlock(&token_lock);
	return ok;
}

unsigned emu_auth_revoke(const char *principal)
{
	unsigned n = 0;

	pthread_mutex_lock(&token_lock);
	for (size_t i = 0; i < TOKEN_SLOTS; i++) {
		if (tokens[i].value[0] && (!principal || strcmp(tokens[i].principal, principal) == 0)) {
			memset(&tokens[i], 0, sizeof(tokens[i]));
			n++;
		}
	}
	pthread_mutex_unlock(&token_lock);
	return n;
}

/* first_scope_kind finds the first space-separated scope naming an audience. */
static enum emu_kind first_scope_kind(const char *scopes)
{
	char one[512];

	while (*scopes) {
		size_t n = strcspn(scopes, " ");

		if (n && n < sizeof(one)) {
			enum emu_kind k;

			memcpy(one, scopes, n);
			one[n] = '\0';
			if ((k = emu_auth_scope_kind(one)) != EMU_KIND_NONE)
				return k;
		}
		scopes += n;
		while (*scopes == ' ')
			scopes++;
	}
	return EMU_KIND_NONE;
}

static bool secret_eq(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && n > 0 && CRYPTO_memcmp(a, b, n) == 0;
}

void emu_auth_token(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		    struct emu_reply *rep)
{
	char grant[64], client[EMU_NAME_MAX], scope[1024], secret[EMU_NAME_MAX], atype[128];
	char *assertion = NULL, token[64];
	const char *body = rq->body ? rq->body : "";
	size_t len = rq->body ? rq->body_len : 0;
	struct emu_principal *p;
	enum emu_kind kind;
	bool ok;
	cJSON *j;

	if (strcasecmp(rt->tenant, w->cfg.tenant) != 0) {
		emu_oauth_error(rep, 400, "invalid_request",
				"AADSTS90002: Tenant not found. This emulator serves one tenant; see its startup lines.");
		return;
	}
	if (!emu_form_get(body, len, "grant_type", grant, sizeof(grant)) ||
	    strcmp(grant, "client_credentials") != 0) {
		emu_oauth_error(rep, 400, "unsupported_grant_type",
				"AADSTS70003: The emulator supports grant_type=client_credentials only.");
		return;
	}
	if (!emu_form_get(body, len, "client_id", client, sizeof(client))) {
		emu_oauth_error(rep, 400, "invalid_request", "AADSTS900144: The request body must contain client_id.");
		return;
	}
	if (!emu_form_get(body, len, "scope", scope, sizeof(scope)) &&
	    !emu_form_get(body, len, "resource", scope, sizeof(scope))) {
		emu_oauth_error(rep, 400, "invalid_request", "AADSTS900144: The request body must contain scope.");
		return;
	}
	kind = first_scope_kind(scope);
	if (kind == EMU_KIND_NONE) {
		emu_oauth_error(rep, 400, "invalid_scope",
				"AADSTS70011: The scope must name a vault (https://vault.*) or a Managed HSM (https://managedhsm.*).");
		return;
	}
	pthread_mutex_lock(&w->lock);
	p = emu_principal_find(w, client);
	if (!p) {
		pthread_mutex_unlock(&w->lock);
		emu_oauth_error(rep, 400, "unauthorized_client",
				"AADSTS700016: Application with identifier was not found in the directory.");
		return;
	}
	if (emu_form_get(body, len, "client_secret", secret, sizeof(secret))) {
		ok = secret_eq(secret, p->secret);
	} else if (emu_form_get(body, len, "client_assertion_type", atype, sizeof(atype)) &&
		   strcmp(atype, "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") == 0 &&
		   (assertion = malloc(len + 1)) &&
		   emu_form_get(body, len, "client_assertion", assertion, len + 1)) {
		ok = p->assertion && secret_eq(assertion, p->assertion);
	} else {
		ok = false;
	}
	if (assertion)
		OPENSSL_cleanse(assertion, strlen(assertion));
	free(assertion);
	OPENSSL_cleanse(secret, sizeof(secret));
	pthread_mutex_unlock(&w->lock);
	if (!ok) {
		emu_oauth_error(rep, 401, "invalid_client",
				"AADSTS7000215: Invalid client secret or client assertion provided.");
		return;
	}
	if (!issue(rep, client, kind, w->cfg.token_lifetime, token, sizeof(token)))
		return;
	j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "token_type", "Bearer");
	cJSON_AddNumberToObject(j, "expires_in", w->cfg.token_lifetime);
	cJSON_AddNumberToObject(j, "ext_expires_in", w->cfg.token_lifetime);
	cJSON_AddStringToObject(j, "access_token", token);
	emu_reply_json(rep, 200, j);
	OPENSSL_cleanse(token, sizeof(token));
}

/*
 * managed_token answers a managed identity token request whose caller checks
 * passed: the token is for client_id, else imds_principal, else the first
 * principal. IMDS adds expires_in; App Service (2019-08-01) names only
 * expires_on.
 */
static void managed_token(struct emu_world *w, const struct emu_req *rq, struct emu_reply *rep,
			  bool app_service)
{
	char client[EMU_NAME_MAX], token[64], num[32];
	enum emu_kind kind;
	int64_t now = emu_clock_real();
	cJSON *j;

	if (!rq->resource) {
		emu_oauth_error(rep, 400, "invalid_request", "Required audience parameter not specified");
		return;
	}
	kind = emu_auth_scope_kind(rq->resource);
	if (kind == EMU_KIND_NONE) {
		emu_oauth_error(rep, 400, "invalid_resource",
				"AADSTS500011: The resource must name a vault (https://vault.*) or a Managed HSM (https://managedhsm.*).");
		return;
	}
	pthread_mutex_lock(&w->lock);
	if (rq->client_id)
		snprintf(client, sizeof(client), "%s", rq->client_id);
	else if (w->cfg.imds_principal[0])
		snprintf(client, sizeof(client), "%s", w->cfg.imds_principal);
	else
		snprintf(client, sizeof(client), "%s", w->nprincipals ? w->principals[0].id : "");
	bool known = emu_principal_find(w, client) != NULL;
	pthread_mutex_unlock(&w->lock);
	if (!known) {
		emu_oauth_error(rep, 400, "invalid_request", "Identity not found");
		return;
	}
	if (!issue(rep, client, kind, w->cfg.token_lifetime, token, sizeof(token)))
		return;
	j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "access_token", token);
	cJSON_AddStringToObject(j, "client_id", client);
	snprintf(num, sizeof(num), "%u", w->cfg.token_lifetime);
	if (!app_service) {
		cJSON_AddStringToObject(j, "expires_in", num);
		cJSON_AddStringToObject(j, "ext_expires_in", num);
	}
	snprintf(num, sizeof(num), "%lld", (long long)(now + w->cfg.token_lifetime));
	cJSON_AddStringToObject(j, "expires_on", num);
	snprintf(num, sizeof(num), "%lld", (long long)now);
	cJSON_AddStringToObject(j, "not_before", num);
	cJSON_AddStringToObject(j, "resource", rq->resource);
	cJSON_AddStringToObject(j, "token_type", "Bearer");
	emu_reply_json(rep, 200, j);
	OPENSSL_cleanse(token, sizeof(token));
}

void emu_auth_imds(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		   struct emu_reply *rep)
{
	if (!rq->metadata || strcasecmp(rq->metadata, "true") != 0) {
		emu_oauth_error(rep, 400, "invalid_request", "Required metadata header not specified");
		return;
	}
	managed_token(w, rq, rep, false);
	(void)rt;
}

void emu_auth_app_service(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
			  struct emu_reply *rep)
{
	if (!rq->identity_header) {
		emu_oauth_error(rep, 400, "invalid_request",
				"Required X-IDENTITY-HEADER header not specified: send the value of IDENTITY_HEADER");
		return;
	}
	if (!secret_eq(rq->identity_header, w->cfg.identity_header)) {
		emu_oauth_error(rep, 401, "unauthorized_client",
				"The X-IDENTITY-HEADER value is not this endpoint's IDENTITY_HEADER");
		return;
	}
	if (!rq->api_version || strcmp(rq->api_version, "2019-08-01") != 0) {
		emu_oauth_error(rep, 400, "invalid_request",
				"The App Service identity endpoint takes api-version=2019-08-01");
		return;
	}
	managed_token(w, rq, rep, true);
	(void)rt;
}

void emu_auth_openid(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		     struct emu_reply *rep)
{
	char base[128], url[512];
	cJSON *j, *a;

	if (strcasecmp(rt->tenant, w->cfg.tenant) != 0) {
		emu_oauth_error(rep, 400, "invalid_tenant", "AADSTS90002: Tenant not found.");
		return;
	}
	emu_login_base(w, rt, base, sizeof(base));
	j = cJSON_CreateObject();
	snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", base, w->cfg.tenant);
	cJSON_AddStringToObject(j, "token_endpoint", url);
	snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/authorize", base, w->cfg.tenant);
	cJSON_AddStringToObject(j, "authorization_endpoint", url);
	snprintf(url, sizeof(url), "%s/%s/v2.0", base, w->cfg.tenant);
	cJSON_AddStringToObject(j, "issuer", url);
	snprintf(url, sizeof(url), "%s/%s/discovery/v2.0/keys", base, w->cfg.tenant);
	cJSON_AddStringToObject(j, "jwks_uri", url);
	a = cJSON_AddArrayToObject(j, "token_endpoint_auth_methods_supported");
	cJSON_AddItemToArray(a, cJSON_CreateString("client_secret_post"));
	cJSON_AddItemToArray(a, cJSON_CreateString("private_key_jwt"));
	a = cJSON_AddArrayToObject(j, "response_types_supported");
	cJSON_AddItemToArray(a, cJSON_CreateString("token"));
	a = cJSON_AddArrayToObject(j, "grant_types_supported");
	cJSON_AddItemToArray(a, cJSON_CreateString("client_credentials"));
	cJSON_AddStringToObject(j, "tenant_region_scope", "WW");
	emu_reply_json(rep, 200, j);
	(void)rq;
}

/* challenge sets rep to 401 with the WWW-Authenticate header for rt's host. */
static void challenge(struct emu_world *w, const struct emu_route *rt, struct emu_reply *rep,
		      const char *why)
{
	char base[128], hdr[512];
	bool mhsm = rt->kind == EMU_KIND_MHSM;

	emu_login_base(w, rt, base, sizeof(base));
	snprintf(hdr, sizeof(hdr), "Bearer authorization=\"%s/%s\", resource=\"https://%s.localhost%s%s\"",
		 base, w->cfg.tenant, mhsm ? "managedhsm" : "vault", rt->port[0] ? ":" : "", rt->port);
	rep->www_authenticate = strdup(hdr);
	if (mhsm) {
		rep->status = 401;
		free(rep->body);
		rep->body = NULL;
		return;
	}
	emu_error(rep, 401, "Unauthorized", NULL, "%s", why);
}

int emu_auth_check(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		   struct emu_reply *rep)
{
	const char *h = rq->authorization;
	char principal[EMU_NAME_MAX];
	enum emu_kind kind;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		challenge(w, rt, rep, "AKV10000: Request is missing a Bearer or PoP token.");
		return -1;
	}
	h += 7;
	while (*h == ' ')
		h++;
	if (!lookup(h, &kind, principal, sizeof(principal))) {
		challenge(w, rt, rep, "AKV10032: Invalid or expired token.");
		return -1;
	}
	if (kind != rt->kind) {
		challenge(w, rt, rep, rt->kind == EMU_KIND_MHSM ?
			  "AKV10022: Invalid audience. The token is for a vault, not a Managed HSM." :
			  "AKV10022: Invalid audience. The token is for a Managed HSM, not a vault.");
		return -1;
	}
	snprintf(rep->principal, sizeof(rep->principal), "%s", principal);
	return 0;
}
