/*
 * conf.c: the [key:NAME] options of the Azure backend, and what the key's
 * host says about the service, the cloud, the token audience and authority.
 */
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <strings.h>

#include "az.h"
#include "values.h"

#define DEFAULT_IMDS "http://169.254.169.254/metadata/identity/oauth2/token"

static const struct cloud {
	const char *name;
	const char *vault;       /* host suffix and token audience */
	const char *mhsm;
	const char *authority;
} clouds[] = {
	{ "public", "vault.azure.net", "managedhsm.azure.net", "https://login.microsoftonline.com" },
	{ "China", "vault.azure.cn", "managedhsm.azure.cn", "https://login.chinacloudapi.cn" },
	{ "US Gov", "vault.usgovcloudapi.net", "managedhsm.usgovcloudapi.net", "https://login.microsoftonline.us" },
};

/* has_suffix is true when host is NAME.suffix (one or more labels before it). */
static bool has_suffix(const char *host, const char *suffix)
{
	size_t h = strlen(host), s = strlen(suffix);

	return h > s + 1 && host[h - s - 1] == '.' && strcasecmp(host + h - s, suffix) == 0;
}

/* az_cloud_of fills service, cloud, resource and authority from a host Azure owns. */
static void az_cloud_of(az_conf *conf)
{
	for (size_t i = 0; i < sizeof(clouds) / sizeof(clouds[0]); i++) {
		const struct cloud *c = &clouds[i];
		bool mhsm = has_suffix(conf->url.host, c->mhsm);

		if (!mhsm && !has_suffix(conf->url.host, c->vault))
			continue;
		conf->cloud = c->name;
		conf->service = mhsm ? AZ_SVC_MHSM : AZ_SVC_VAULT;
		snprintf(conf->resource, sizeof(conf->resource), "https://%s", mhsm ? c->mhsm : c->vault);
		if (!conf->authority[0]) {
			snprintf(conf->authority, sizeof(conf->authority), "%s", c->authority);
			conf->authority_from_cloud = true;
		}
		return;
	}
}

void az_token_tenant(const az_conf *conf, char *buf, size_t cap)
{
	if (conf->auth == AZ_AUTH_MANAGED_IDENTITY)
		snprintf(buf, cap, "the managed identity's own tenant (tenant_id does not choose it)");
	else if (conf->auth == AZ_AUTH_TOKEN_FILE)
		snprintf(buf, cap, "the tenant of the token in %s (tenant_id does not choose it)", conf->token_file);
	else
		snprintf(buf, cap, "%s (%s)", conf->tenant[0] ? conf->tenant : "unknown",
			 conf->tenant_from_challenge ? "the vault's 401 challenge" :
			 conf->tenant_from_env ? "AZURE_TENANT_ID" : "tenant_id");
}

bool az_tenant_differs(const az_conf *conf, const char *vault_tenant, char *buf, size_t cap)
{
	char used[AZ_ID_MAX + 96];

	if (!conf->tenant[0] || conf->tenant_from_challenge || !vault_tenant[0] ||
	    strcasecmp(conf->tenant, vault_tenant) == 0)
		return false;
	az_token_tenant(conf, used, sizeof(used));
	snprintf(buf, cap,
		 "%s is in tenant %s (its 401 challenge), but this key is configured for tenant %s (%s): a vault used for customer-managed keys must be in the same Entra ID tenant as the service that uses it; tokens come from %s",
		 conf->url.host, vault_tenant, conf->tenant, conf->tenant_from_env ? "AZURE_TENANT_ID" : "tenant_id",
		 used);
	return true;
}

const char *az_auth_name(az_auth a)
{
	switch (a) {
	case AZ_AUTH_CLIENT_SECRET: return "client_secret";
	case AZ_AUTH_WORKLOAD_IDENTITY: return "workload_identity";
	case AZ_AUTH_MANAGED_IDENTITY: return "managed_identity";
	case AZ_AUTH_TOKEN_FILE: return "token_file";
	}
	return "?";
}

const char *az_service_name(az_service s)
{
	return s == AZ_SVC_MHSM ? "Managed HSM" : s == AZ_SVC_VAULT ? "key vault" : "key service";
}

/* opt_or_env is the option's value, else the environment variable's, else NULL. */
static const char *opt_or_env(kb_keyconf *kc, const char *name, const char *env)
{
	const char *v = kb_keyconf_take(kc, name, NULL);
	const char *e = env ? getenv(env) : NULL;

	if (v && *v)
		return v;
	return e && *e ? e : NULL;
}

static kb_code copy_opt(kb_keyconf *kc, const char *name, const char *v, char *dst, size_t cap,
			kb_err *err)
{
	if (v == NULL)
		return KB_OK;
	if (strlen(v) >= cap)
		return kb_keyconf_bad(kc, name, err, "longer than %zu characters", cap - 1);
	strcpy(dst, v);
	return KB_OK;
}

static kb_code dup_opt(const char *v, char **dst, kb_err *err)
{
	if (v == NULL)
		return KB_OK;
	*dst = strdup(v);
	return *dst ? KB_OK : kb_err_set(err, KB_E_INTERNAL, "out of memory");
}

static kb_code take_auth(kb_keyconf *kc, az_conf *conf, kb_err *err)
{
	const char *auth = kb_keyconf_take(kc, "auth", NULL);
	const char *secret_file = kb_keyconf_take(kc, "client_secret_file", NULL);
	const char *imds = kb_keyconf_take(kc, "imds_endpoint", NULL);
	const char *token_file = kb_keyconf_take(kc, "token_file", NULL);
	const char *fed = getenv("AZURE_FEDERATED_TOKEN_FILE");
	const char *env, *hdr;
	kb_code rc;

	if (auth == NULL || strcmp(auth, "client_secret") == 0)
		conf->auth = AZ_AUTH_CLIENT_SECRET;
	else if (strcmp(auth, "workload_identity") == 0)
		conf->auth = AZ_AUTH_WORKLOAD_IDENTITY;
	else if (strcmp(auth, "managed_identity") == 0)
		conf->auth = AZ_AUTH_MANAGED_IDENTITY;
	else if (strcmp(auth, "token_file") == 0)
		conf->auth = AZ_AUTH_TOKEN_FILE;
	else
		return kb_keyconf_bad(kc, "auth", err,
				      "\"%s\" is not an auth method: use client_secret, workload_identity, managed_identity or token_file",
				      auth);
	if ((rc = copy_opt(kc, "tenant_id", opt_or_env(kc, "tenant_id", "AZURE_TENANT_ID"), conf->tenant,
			   sizeof(conf->tenant), err)) != KB_OK)
		return rc;
	env = kb_keyconf_take(kc, "tenant_id", NULL);
	conf->tenant_from_env = conf->tenant[0] && !(env && *env);
	if ((rc = copy_opt(kc, "client_id", opt_or_env(kc, "client_id", "AZURE_CLIENT_ID"), conf->client_id,
			   sizeof(conf->client_id), err)) != KB_OK ||
	    (rc = copy_opt(kc, "authority_host", opt_or_env(kc, "authority_host", "AZURE_AUTHORITY_HOST"),
			   conf->authority, sizeof(conf->authority), err)) != KB_OK)
		return rc;
	if (conf->authority[0]) {
		size_t n = strlen(conf->authority);

		if (strncasecmp(conf->authority, "https://", 8) != 0 || n <= 8)
			return kb_keyconf_bad(kc, "authority_host", err,
					      "\"%s\" is not an https:// URL, e.g. https://login.microsoftonline.com",
					      conf->authority);
		while (n > 8 && conf->authority[n - 1] == '/')
			conf->authority[--n] = '\0';
	}
	switch (conf->auth) {
	case AZ_AUTH_CLIENT_SECRET:
		if (!conf->client_id[0])
			return kb_keyconf_bad(kc, "client_id", err,
					      "auth = client_secret needs the application's client id: set client_id or AZURE_CLIENT_ID");
		if (!secret_file && !getenv("AZURE_CLIENT_SECRET"))
			return kb_keyconf_bad(kc, "client_secret_file", err,
					      "auth = client_secret needs the secret: name a file holding it with client_secret_file, or set AZURE_CLIENT_SECRET");
		if (secret_file && *secret_file == '\0')
			return kb_keyconf_bad(kc, "client_secret_file", err, "empty: name the file holding the client secret");
		break;
	case AZ_AUTH_WORKLOAD_IDENTITY:
		if (!conf->client_id[0])
			return kb_keyconf_bad(kc, "client_id", err,
					      "auth = workload_identity needs the client id: set client_id or AZURE_CLIENT_ID");
		if (!fed || !*fed)
			return kb_keyconf_bad(kc, "auth", err,
					      "workload_identity reads its assertion from the file named by AZURE_FEDERATED_TOKEN_FILE, which is not set");
		break;
	case AZ_AUTH_MANAGED_IDENTITY:
		break;
	case AZ_AUTH_TOKEN_FILE:
		if (!token_file || !*token_file)
			return kb_keyconf_bad(kc, "token_file", err,
					      "auth = token_file needs token_file: a file holding a bearer token for the key's service");
		break;
	}
	if (secret_file && conf->auth != AZ_AUTH_CLIENT_SECRET)
		return kb_keyconf_bad(kc, "client_secret_file", err, "only used with auth = client_secret");
	if (token_file && conf->auth != AZ_AUTH_TOKEN_FILE)
		return kb_keyconf_bad(kc, "token_file", err, "only used with auth = token_file");
	if (imds && conf->auth != AZ_AUTH_MANAGED_IDENTITY)
		return kb_keyconf_bad(kc, "imds_endpoint", err, "only used with auth = managed_identity");
	if (imds && strncasecmp(imds, "https://", 8) != 0 && strncasecmp(imds, "http://", 7) != 0)
		return kb_keyconf_bad(kc, "imds_endpoint", err, "\"%s\" is not an http(s) URL", imds);
	/*
	 * As Azure's SDKs do, IDENTITY_ENDPOINT with IDENTITY_HEADER means App
	 * Service's (and Container Apps', Functions') identity endpoint; an
	 * imds_endpoint in the section still wins, being the more specific.
	 */
	if (conf->auth == AZ_AUTH_MANAGED_IDENTITY && !imds && (env = getenv("IDENTITY_ENDPOINT")) && *env &&
	    (hdr = getenv("IDENTITY_HEADER")) && *hdr) {
		if (strncasecmp(env, "https://", 8) != 0 && strncasecmp(env, "http://", 7) != 0)
			return kb_keyconf_bad(kc, "auth", err, "IDENTITY_ENDPOINT \"%.200s\" is not an http(s) URL", env);
		if (strlen(env) >= sizeof(conf->imds))
			return kb_keyconf_bad(kc, "auth", err, "IDENTITY_ENDPOINT is longer than %zu bytes",
					      sizeof(conf->imds) - 1);
		strcpy(conf->imds, env);
		conf->app_service = true;
	} else if ((rc = copy_opt(kc, "imds_endpoint", imds ? imds : DEFAULT_IMDS, conf->imds,
				  sizeof(conf->imds), err)) != KB_OK) {
		return rc;
	}
	if ((rc = dup_opt(conf->auth == AZ_AUTH_CLIENT_SECRET ? secret_file : NULL, &conf->secret_file, err)) ||
	    (rc = dup_opt(conf->auth == AZ_AUTH_WORKLOAD_IDENTITY ? fed : NULL, &conf->federated_file, err)) ||
	    (rc = dup_opt(conf->auth == AZ_AUTH_TOKEN_FILE ? token_file : NULL, &conf->token_file, err)))
		return rc;
	return KB_OK;
}

/*
 * need_authority refuses a client secret or assertion with nowhere trusted to
 * send it. As Azure's SDKs do, the authority comes from the configuration or
 * the key's cloud, never from a 401 challenge: whoever answers on a host that
 * is not Azure's (a private-endpoint name, a DNS or CA compromise) would
 * otherwise receive the long-lived credential itself.
 */
static kb_code need_authority(kb_keyconf *kc, const az_conf *conf, kb_err *err)
{
	if (conf->authority[0] || (conf->auth != AZ_AUTH_CLIENT_SECRET && conf->auth != AZ_AUTH_WORKLOAD_IDENTITY))
		return KB_OK;
	return kb_keyconf_bad(kc, "authority_host", err,
			      "missing: %s is no Azure cloud's host, so auth = %s needs a trusted authority for its %s, never the one a 401 challenge names: set authority_host or AZURE_AUTHORITY_HOST, e.g. https://login.microsoftonline.com",
			      conf->url.host, az_auth_name(conf->auth),
			      conf->auth == AZ_AUTH_CLIENT_SECRET ? "secret" : "assertion");
}

static kb_code take_duration(kb_keyconf *kc, const char *name, int64_t def, int64_t min, int64_t *out,
			     kb_err *err)
{
	const char *v = kb_keyconf_take(kc, name, NULL);

	*out = def;
	if (v == NULL)
		return KB_OK;
	if (!kb_parse_duration(v, out) || *out < min)
		return kb_keyconf_bad(kc, name, err, "\"%s\" is not a duration of at least %lldms, such as 500ms, 10s or 1m",
				      v, (long long)min);
	return KB_OK;
}

static kb_code take_bool(kb_keyconf *kc, const char *name, bool def, bool *out, kb_err *err)
{
	const char *v = kb_keyconf_take(kc, name, NULL);

	*out = def;
	if (v == NULL)
		return KB_OK;
	if (!kb_parse_bool(v, out))
		return kb_keyconf_bad(kc, name, err, "\"%s\" is not yes or no", v);
	return KB_OK;
}

/* take_count reads a whole number from min to max (value NULL: def). */
static kb_code take_count(const char *name, const char *value, int def, long min, long max, int *out,
			  kb_keyconf *kc, kb_err *err)
{
	char *end;
	long v;

	*out = def;
	if (value == NULL)
		return KB_OK;
	v = strtol(value, &end, 10);
	if (*value < '0' || *value > '9' || *end || v < min || v > max)
		return kb_keyconf_bad(kc, name, err, "\"%s\" is not a number from %ld to %ld", value, min, max);
	*out = (int)v;
	return KB_OK;
}

/*
 * key_url gives the key identifier: url, or the triplet key_vault_uri,
 * key_name and key_version (optional: latest) that Azure's own tools name a
 * CMK by (az ... --managed-services-key-*, ARM keyVaultUri/keyName/keyVersion).
 * One form or the other: both would leave two answers to which key is meant.
 */
static kb_code key_url(kb_keyconf *kc, char *out, size_t cap, const char **opt, kb_err *err)
{
	const char *url = kb_keyconf_take(kc, "url", NULL);
	const char *uri = kb_keyconf_take(kc, "key_vault_uri", NULL);
	const char *name = kb_keyconf_take(kc, "key_name", NULL);
	const char *version = kb_keyconf_take(kc, "key_version", NULL);
	const char *first = uri ? "key_vault_uri" : name ? "key_name" : version ? "key_version" : NULL;
	size_t n;

	*opt = "url";
	if (url && first)
		return kb_keyconf_bad(kc, first, err,
				      "the key is named twice, by url and by key_vault_uri/key_name/key_version: keep url, or keep the three key_* options and remove url");
	if (first == NULL) {
		if (url == NULL || *url == '\0')
			return kb_keyconf_bad(kc, "url", err,
					      "missing: set it to the key identifier, e.g. https://myvault.vault.azure.net/keys/mykey, or set key_vault_uri and key_name");
		if (strlen(url) >= cap)
			return kb_keyconf_bad(kc, "url", err, "longer than %zu characters", cap - 1);
		strcpy(out, url);
		return KB_OK;
	}
	*opt = "key_vault_uri";
	if (uri == NULL || *uri == '\0')
		return kb_keyconf_bad(kc, "key_vault_uri", err,
				      "missing: key_name needs the vault's URI, e.g. https://myvault.vault.azure.net/");
	if (name == NULL || *name == '\0')
		return kb_keyconf_bad(kc, "key_name", err, "missing: key_vault_uri needs the key's name in that vault");
	n = strncasecmp(uri, "https://", 8) == 0 ? strcspn(uri + 8, "/") : 0;
	/* https://HOST, with nothing after the host but the slashes the portal shows */
	if (n == 0 || uri[8 + n + strspn(uri + 8 + n, "/")] != '\0')
		return kb_keyconf_bad(kc, "key_vault_uri", err,
				      "\"%.200s\" is not a vault URI: use https://HOST/, e.g. https://myvault.vault.azure.net/ (the key goes in key_name)",
				      uri);
	if (strchr(name, '/') || (version && strchr(version, '/')))
		return kb_keyconf_bad(kc, strchr(name, '/') ? "key_name" : "key_version", err,
				      "\"%.200s\" holds a '/': give only the name (key_name) or the 32-hex version (key_version)",
				      strchr(name, '/') ? name : version);
	if ((size_t)snprintf(out, cap, "https://%.*s/keys/%s%s%s", (int)n, uri + 8, name, version && *version ? "/" : "",
			     version ? version : "") >= cap)
		return kb_keyconf_bad(kc, "key_vault_uri", err, "the key identifier is longer than %zu characters", cap - 1);
	return KB_OK;
}

kb_code az_conf_take(kb_keyconf *kc, az_conf *conf, kb_err *err)
{
	char url[AZ_URL_MAX];
	const char *url_opt;
	const char *service = kb_keyconf_take(kc, "service", NULL);
	const char *ca = kb_keyconf_take(kc, "ca_file", NULL);
	const char *retries = kb_keyconf_take(kc, "max_retries", NULL);
	char why[128];
	kb_code rc;

	memset(conf, 0, sizeof(*conf));
	if ((rc = key_url(kc, url, sizeof(url), &url_opt, err)) != KB_OK)
		return rc;
	if (!az_parse_kid(url, &conf->url, why, sizeof(why)))
		return kb_keyconf_bad(kc, url_opt, err,
				      "\"%.200s\" is not a key identifier (%s): use https://HOST/keys/NAME or https://HOST/keys/NAME/VERSION",
				      url, why);
	snprintf(conf->base, sizeof(conf->base), "https://%s", conf->url.host);
	if ((rc = take_auth(kc, conf, err)) != KB_OK)
		return rc;
	az_cloud_of(conf);
	if ((rc = need_authority(kc, conf, err)) != KB_OK)
		return rc;
	if (service) {
		az_service s = !strcmp(service, "vault") ? AZ_SVC_VAULT :
			       !strcmp(service, "managedhsm") ? AZ_SVC_MHSM : AZ_SVC_UNKNOWN;

		if (s == AZ_SVC_UNKNOWN)
			return kb_keyconf_bad(kc, "service", err, "\"%s\" is not vault or managedhsm", service);
		if (conf->cloud && s != conf->service)
			return kb_keyconf_bad(kc, "service", err,
					      "%s is a %s host of the %s cloud; remove service, or fix url",
					      conf->url.host, az_service_name(conf->service), conf->cloud);
		conf->service = s;
	}
	if (ca && *ca == '\0')
		return kb_keyconf_bad(kc, "ca_file", err, "empty: name a PEM file of CA certificates, or remove it");
	/* an unreadable file is for a person to fix: refused now, not retried as an outage */
	if (ca && access(ca, R_OK) != 0)
		return kb_keyconf_bad(kc, "ca_file", err, "cannot read %s: %s", ca, strerror(errno));
	if ((rc = dup_opt(ca, &conf->ca_file, err)) != KB_OK)
		return rc;
	if ((rc = take_duration(kc, "timeout", 15000, 100, &conf->timeout_ms, err)) != KB_OK ||
	    (rc = take_duration(kc, "version_refresh", 2000, 0, &conf->version_refresh_ms, err)) != KB_OK ||
	    (rc = take_bool(kc, "local_wrap", true, &conf->local_wrap, err)) != KB_OK)
		return rc;
	if ((rc = take_count("max_retries", retries, 5, 0, 50, &conf->max_retries, kc, err)) != KB_OK ||
	    (rc = take_count("max_in_flight", kb_keyconf_take(kc, "max_in_flight", NULL), 256, 1, 100000,
			     &conf->max_in_flight, kc, err)) != KB_OK ||
	    (rc = take_count("http_connections", kb_keyconf_take(kc, "http_connections", NULL), 256, 1, 1024,
			     &conf->http_connections, kc, err)) != KB_OK)
		return rc;
	return KB_OK;
}

void az_conf_free(az_conf *conf)
{
	free(conf->secret_file);
	free(conf->federated_file);
	free(conf->token_file);
	free(conf->ca_file);
	conf->secret_file = conf->federated_file = conf->token_file = conf->ca_file = NULL;
}

void az_identity(const az_conf *conf, char *buf, size_t cap)
{
	switch (conf->auth) {
	case AZ_AUTH_CLIENT_SECRET:
	case AZ_AUTH_WORKLOAD_IDENTITY:
		snprintf(buf, cap, "auth %s as client %s in tenant %s via %s", az_auth_name(conf->auth),
			 conf->client_id, conf->tenant[0] ? conf->tenant : "(unknown)",
			 conf->authority[0] ? conf->authority : "(unknown authority)");
		break;
	case AZ_AUTH_MANAGED_IDENTITY:
		snprintf(buf, cap, "auth managed_identity (%s%s%s) via %s", conf->app_service ? "App Service, " : "",
			 conf->client_id[0] ? "client " : "system-assigned", conf->client_id, conf->imds);
		break;
	case AZ_AUTH_TOKEN_FILE:
		snprintf(buf, cap, "auth token_file %s", conf->token_file);
		break;
	}
}

void az_principal(const az_conf *conf, char *buf, size_t cap)
{
	if (conf->auth == AZ_AUTH_TOKEN_FILE)
		snprintf(buf, cap, "the principal of the token in %s", conf->token_file);
	else if (conf->auth == AZ_AUTH_MANAGED_IDENTITY && !conf->client_id[0])
		snprintf(buf, cap, "the system-assigned managed identity");
	else
		snprintf(buf, cap, "%s %s", conf->auth == AZ_AUTH_MANAGED_IDENTITY ? "managed identity" : "client",
			 conf->client_id);
}
