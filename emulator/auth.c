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
#include "token.h"

#define LEDGER_SLOTS 4096

/*
 * The ledger notes who was issued which token, only so a revocation can say
 * how many live tokens it ended: tokens are checked by their signature
 * (token.h), never looked up here. Owned by ledger_lock.
 */
struct issued {
	char principal[EMU_NAME_MAX];
	uint32_t gen;
	int64_t exp;
};

static pthread_mutex_t ledger_lock = PTHREAD_MUTEX_INITIALIZER;
static struct issued ledger[LEDGER_SLOTS];

/* emu_login_base writes "https://localhost:PORT" for the port the client used. */
static void emu_login_base(const struct emu_world *w, const struct emu_route *rt, char *out, size_t cap)
{
	if (rt && rt->port[0])
		snprintf(out, cap, "https://localhost:%s", rt->port);
	else
		snprintf(out, cap, "https://localhost:%u", w->port);
}

/*
 * tenant_ok: rt names the configured tenant, or is an /adfs/... path, which
 * serves it in the shape of an AD FS authority: MSAL (and so az) trusts
 * that without asking Microsoft's instance discovery first.
 */
static bool tenant_ok(const struct emu_world *w, const struct emu_route *rt)
{
	return strcasecmp(rt->tenant, w->cfg.tenant) == 0 || (rt->adfs && strcasecmp(rt->tenant, "adfs") == 0);
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
	if (strncasecmp(host, "management.", 11) == 0)
		return EMU_KIND_ARM;
	return EMU_KIND_NONE;
}

int emu_auth_init(struct emu_world *w)
{
	if (w->token_key_set)
		return 0;
	if (emu_random(w->token_key, sizeof(w->token_key)))
		return -1;
	w->token_key_set = true;
	return 0;
}

/*
 * issue mints a token of generation gen for principal and audience aud, and
 * names principal as rep's caller; NULL with 500 set if it cannot.
 */
static char *issue(struct emu_world *w, struct emu_reply *rep, const char *principal, uint32_t gen,
		   const char *aud, unsigned lifetime)
{
	struct emu_token_claims c = { .gen = gen };
	int64_t now = emu_clock_real();
	struct issued *slot = NULL;
	char *tok;

	snprintf(c.principal, sizeof(c.principal), "%s", principal);
	snprintf(c.tenant, sizeof(c.tenant), "%s", w->cfg.tenant);
	snprintf(c.aud, sizeof(c.aud), "%s", aud);
	c.iat = now;
	c.exp = now + lifetime;
	if (!(tok = emu_token_mint(w->token_key, &c))) {
		emu_oauth_error(rep, 500, "server_error", "no randomness");
		return NULL;
	}
	pthread_mutex_lock(&ledger_lock);
	for (size_t i = 0; i < LEDGER_SLOTS; i++) {
		if (ledger[i].exp <= now) {
			slot = &ledger[i];
			break;
		}
		if (!slot || ledger[i].exp < slot->exp)
			slot = &ledger[i];
	}
	snprintf(slot->principal, sizeof(slot->principal), "%s", principal);
	slot->gen = gen;
	slot->exp = c.exp;
	pthread_mutex_unlock(&ledger_lock);
	snprintf(rep->principal, sizeof(rep->principal), "%s", principal);
	return tok;
}

/* free_token wipes and frees a minted token. */
static void free_token(char *tok)
{
	if (tok)
		OPENSSL_clear_free(tok, strlen(tok));
}

unsigned emu_auth_revoke(struct emu_world *w, const char *principal)
{
	int64_t now = emu_clock_real();
	unsigned n = 0;

	pthread_mutex_lock(&ledger_lock);
	for (size_t i = 0; i < w->nprincipals; i++) {
		struct emu_principal *p = &w->principals[i];

		if (principal && strcmp(p->id, principal) != 0)
			continue;
		for (size_t j = 0; j < LEDGER_SLOTS; j++)
			if (ledger[j].exp > now && ledger[j].gen == p->token_gen &&
			    strcmp(ledger[j].principal, p->id) == 0)
				n++;
		p->token_gen++;
	}
	pthread_mutex_unlock(&ledger_lock);
	return n;
}

/*
 * audience finds the first space-separated scope (or the resource) naming
 * an audience, and writes it to aud without a "/.default" or a trailing
 * slash, as Entra ID names a token's aud; EMU_KIND_NONE if none does.
 */
static enum emu_kind audience(const char *scopes, char *aud, size_t cap)
{
	while (*scopes) {
		size_t n = strcspn(scopes, " ");

		if (n && n < cap) {
			enum emu_kind k;

			memcpy(aud, scopes, n);
			aud[n] = '\0';
			if ((k = emu_auth_scope_kind(aud)) != EMU_KIND_NONE) {
				if (n > 9 && strcasecmp(aud + n - 9, "/.default") == 0)
					aud[n -= 9] = '\0';
				while (n > 8 && aud[n - 1] == '/')
					aud[--n] = '\0';
				return k;
			}
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

#define SCOPE_REFUSED "The scope must name a vault (https://vault.*), a Managed HSM (https://managedhsm.*) or Resource Manager (https://management.*)."

void emu_auth_token(struct emu_world *w, const struct emu_req *rq, const struct emu_route *rt,
		    struct emu_reply *rep)
{
	char grant[64], client[EMU_NAME_MAX], scope[1024], secret[EMU_NAME_MAX], atype[128];
	char aud[EMU_TOKEN_AUD_MAX], *assertion = NULL, *token;
	const char *body = rq->body ? rq->body : "";
	size_t len = rq->body ? rq->body_len : 0;
	struct emu_principal *p;
	uint32_t gen;
	bool ok;
	cJSON *j;

	if (!tenant_ok(w, rt)) {
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
	if (audience(scope, aud, sizeof(aud)) == EMU_KIND_NONE) {
		emu_oauth_error(rep, 400, "invalid_scope", "AADSTS70011: " SCOPE_REFUSED);
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
	gen = p->token_gen;
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
	if (!(token = issue(w, rep, client, gen, aud, w->cfg.token_lifetime)))
		return;
	j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "token_type", "Bearer");
	cJSON_AddNumberToObject(j, "expires_in", w->cfg.token_lifetime);
	cJSON_AddNumberToObject(j, "ext_expires_in", w->cfg.token_lifetime);
	cJSON_AddStringToObject(j, "access_token", token);
	emu_reply_json(rep, 200, j);
	free_token(token);
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
	char client[EMU_NAME_MAX], aud[EMU_TOKEN_AUD_MAX], num[32], *token;
	const struct emu_principal *p;
	int64_t now = emu_clock_real();
	uint32_t gen = 0;
	cJSON *j;

	if (!rq->resource) {
		emu_oauth_error(rep, 400, "invalid_request", "Required audience parameter not specified");
		return;
	}
	if (strchr(rq->resource, ' ') || audience(rq->resource, aud, sizeof(aud)) == EMU_KIND_NONE) {
		emu_oauth_error(rep, 400, "invalid_resource", "AADSTS500011: " SCOPE_REFUSED);
		return;
	}
	pthread_mutex_lock(&w->lock);
	if (rq->client_id)
		snprintf(client, sizeof(client), "%s", rq->client_id);
	else if (w->cfg.imds_principal[0])
		snprintf(client, sizeof(client), "%s", w->cfg.imds_principal);
	else
		snprintf(client, sizeof(client), "%s", w->nprincipals ? w->principals[0].id : "");
	if ((p = emu_principal_find(w, client)))
		gen = p->token_gen;
	pthread_mutex_unlock(&w->lock);
	if (!p) {
		emu_oauth_error(rep, 400, "invalid_request", "Identity not found");
		return;
	}
	if (!(token = issue(w, rep, client, gen, aud, w->cfg.token_lifetime)))
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
	free_token(token);
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
	/* an AD FS authority has no tenant in its paths and serves the v1 token endpoint */
	const char *t = rt->adfs ? "adfs" : w->cfg.tenant, *v2 = rt->adfs ? "" : "/v2.0";
	cJSON *j, *a;

	if (!tenant_ok(w, rt)) {
		emu_oauth_error(rep, 400, "invalid_tenant", "AADSTS90002: Tenant not found.");
		return;
	}
	emu_login_base(w, rt, base, sizeof(base));
	j = cJSON_CreateObject();
	snprintf(url, sizeof(url), "%s/%s/oauth2%s/token", base, t, v2);
	cJSON_AddStringToObject(j, "token_endpoint", url);
	snprintf(url, sizeof(url), "%s/%s/oauth2%s/authorize", base, t, v2);
	cJSON_AddStringToObject(j, "authorization_endpoint", url);
	snprintf(url, sizeof(url), "%s/%s%s", base, t, v2);
	cJSON_AddStringToObject(j, "issuer", url);
	snprintf(url, sizeof(url), "%s/%s/discovery%s/keys", base, t, v2);
	cJSON_AddStringToObject(j, "jwks_uri", url);
	a = cJSON_AddArrayToObject(j, "token_endpoint_auth_methods_supported");
	cJSON_AddItemToArray(a, cJSON_CreateString("client_secret_post"));
	cJSON_AddItemToArray(a, cJSON_CreateString("private_key_jwt"));
	a = cJSON_AddArrayToObject(j, "response_types_supported");
	cJSON_AddItemToArray(a, cJSON_CreateString("token"));
	a = cJSON_AddArrayToObject(j, "grant_types_supported");
	cJSON_AddItemToArray(a, cJSON_CreateString("client_credentials"));
	if (!rt->adfs)
		cJSON_AddStringToObject(j, "tenant_region_scope", "WW");
	emu_reply_json(rep, 200, j);
	(void)rq;
}

/* challenge sets rep to 401 with the WWW-Authenticate header for rt's host. */
static void challenge(struct emu_world *w, const struct emu_route *rt, struct emu_reply *rep, const char *why)
{
	char base[128], hdr[512];
	bool mhsm = rt->kind == EMU_KIND_MHSM;

	emu_login_base(w, rt, base, sizeof(base));
	if (rt->kind == EMU_KIND_LOGIN) {
		/* Resource Manager's challenge and error body */
		snprintf(hdr, sizeof(hdr), "Bearer authorization_uri=\"%s/%s\", error=\"invalid_token\"", base,
			 w->cfg.tenant);
		rep->www_authenticate = strdup(hdr);
		emu_error(rep, 401, "AuthenticationFailed", NULL, "%s", why);
		return;
	}
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
	/* on the login host only Resource Manager's lists ask for a token */
	enum emu_kind want = rt->kind == EMU_KIND_LOGIN ? EMU_KIND_ARM : rt->kind;
	const char *h = rq->authorization;
	struct emu_token_claims c;
	const struct emu_principal *p;
	bool live;

	if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
		challenge(w, rt, rep, "AKV10000: Request is missing a Bearer or PoP token.");
		return -1;
	}
	h += 7;
	while (*h == ' ')
		h++;
	if (emu_token_verify(w->token_key, h, &c) || c.exp <= emu_clock_real() ||
	    strcasecmp(c.tenant, w->cfg.tenant) != 0) {
		challenge(w, rt, rep, "AKV10032: Invalid or expired token.");
		return -1;
	}
	pthread_mutex_lock(&w->lock);
	p = emu_principal_find(w, c.principal);
	live = p && p->token_gen == c.gen;
	pthread_mutex_unlock(&w->lock);
	if (!live) {
		challenge(w, rt, rep, "AKV10032: Invalid or expired token: it was revoked.");
		return -1;
	}
	if (emu_auth_scope_kind(c.aud) != want) {
		challenge(w, rt, rep, want == EMU_KIND_MHSM ?
			  "AKV10022: Invalid audience. The token is not for a Managed HSM." :
			  want == EMU_KIND_VAULT ? "AKV10022: Invalid audience. The token is not for a vault." :
			  "InvalidAuthenticationTokenAudience: The access token has an invalid audience: it is not for Resource Manager.");
		return -1;
	}
	snprintf(rep->principal, sizeof(rep->principal), "%s", c.principal);
	return 0;
}
