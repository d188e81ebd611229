/*
 * token.c: bearer tokens, got the way Azure's SDKs get them, and cached.
 *
 * One cache entry serves every key with the same identity and audience
 * (method, authority, tenant, client id, resource), so all keys on a vault
 * share one token. A token is refreshed before it expires; while one caller
 * fetches, the others wait for its answer (or keep using the old token while
 * it is still valid), so a burst makes one token request. Tokens, secrets
 * and assertions are wiped as soon as they are sent or replaced.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "az.h"

#define FILE_MAX 16384
#define REFRESH_MARGIN_MS (300 * 1000)

struct az_cred {
	char id[4 * AZ_URL_MAX];
	int refs;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *token;
	unsigned gen;
	int64_t expires_ms, refresh_ms;  /* monotonic; token_file: no expiry */
	bool fetching;
	unsigned fetches;                /* completed fetches, for waiters */
	kb_err last_err;                 /* the last fetch's failure */
	/* token_file: the file as last read, and whether the service refused it */
	struct stat st;
	bool file;
	bool rejected;
	struct az_cred *next;
};

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static az_cred *creds;

void az_secret_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

az_cred *az_cred_acquire(const az_conf *conf, kb_err *err)
{
	char id[sizeof(((az_cred *)0)->id)];
	az_cred *c;

	snprintf(id, sizeof(id), "%s|%s|%s|%s|%s|%s|%s", az_auth_name(conf->auth), conf->authority, conf->tenant,
		 conf->client_id, conf->resource,
		 conf->auth == AZ_AUTH_TOKEN_FILE ? conf->token_file :
		 conf->auth == AZ_AUTH_MANAGED_IDENTITY ? conf->imds : "", conf->app_service ? "app_service" : "");
	pthread_mutex_lock(&reg_lock);
	for (c = creds; c; c = c->next)
		if (strcmp(c->id, id) == 0)
			break;
	if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL) {
		pthread_condattr_t ca;

		strcpy(c->id, id);
		c->file = conf->auth == AZ_AUTH_TOKEN_FILE;
		pthread_mutex_init(&c->lock, NULL);
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&c->cond, &ca);
		pthread_condattr_destroy(&ca);
		c->next = creds;
		creds = c;
	}
	if (c)
		c->refs++;
	pthread_mutex_unlock(&reg_lock);
	if (c == NULL)
		kb_err_set(err, KB_E_INTERNAL, "out of memory");
	return c;
}

void az_cred_release(az_cred *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&reg_lock);
	if (--c->refs == 0) {
		for (az_cred **pp = &creds; *pp; pp = &(*pp)->next) {
			if (*pp == c) {
				*pp = c->next;
				break;
			}
		}
		az_secret_free(c->token);
		pthread_mutex_destroy(&c->lock);
		pthread_cond_destroy(&c->cond);
		OPENSSL_cleanse(c, sizeof(*c));
		free(c);
	}
	pthread_mutex_unlock(&reg_lock);
}

/*
 * read_secret reads a small file into a malloc'd string without its
 * trailing whitespace. st (if not NULL) receives the file's status.
 */
static kb_code read_secret(const char *path, const char *what, char **out, struct stat *st, kb_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	char *buf;
	ssize_t n;
	size_t len = 0;
	struct stat sb;

	*out = NULL;
	if (fd < 0)
		return kb_err_set(err, KB_E_AUTH_FAILED, "cannot open %s %s: %s", what, path, strerror(errno));
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || sb.st_size > FILE_MAX) {
		close(fd);
		return kb_err_set(err, KB_E_AUTH_FAILED, "%s %s is not a regular file of at most %d bytes", what,
				  path, FILE_MAX);
	}
	buf = malloc(FILE_MAX + 1);
	if (buf == NULL) {
		close(fd);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	while (len < FILE_MAX && (n = read(fd, buf + len, FILE_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	buf[len] = '\0';
	if (len == 0 || strlen(buf) != len) {
		OPENSSL_cleanse(buf, FILE_MAX + 1);
		free(buf);
		return kb_err_set(err, KB_E_AUTH_FAILED, "%s %s is empty or holds a NUL byte", what, path);
	}
	if (st)
		*st = sb;
	*out = buf;
	return KB_OK;
}

/* form_add appends &name=urlencoded(value) to body. */
static bool form_add(char *body, size_t cap, const char *name, const char *value)
{
	size_t n = strlen(body);

	if (n + strlen(name) + 3 > cap)
		return false;
	snprintf(body + n, cap - n, "%s%s=", n ? "&" : "", name);
	return az_urlencode(value, body, cap);
}

static kb_code finish_fetch(const az_conf *conf, az_resp *r, char **token, int64_t *life_s, kb_err *err)
{
	az_what w = { .op = AZ_OP_TOKEN };
	char why[96];

	if (r->status != 200)
		return az_error(conf, &w, r, err);
	if (!az_parse_token(az_resp_text(r), r->body.len, (int64_t)time(NULL), token, life_s, why, sizeof(why)))
		return kb_err_set(err, KB_E_AUTH_FAILED, "the token answer from %s is unusable (%s) (request id %s)",
				  conf->auth == AZ_AUTH_MANAGED_IDENTITY ? conf->imds : conf->authority, why,
				  r->request_id);
	return KB_OK;
}

/* fetch_entra asks Entra ID for a token with a client secret or a federated assertion. */
static kb_code fetch_entra(const az_conf *conf, az_slot *s, char **token, int64_t *life_s, kb_err *err)
{
	char url[AZ_URL_MAX + AZ_ID_MAX + 64], scope[AZ_URL_MAX + 16], *cred = NULL, *body = NULL;
	const char *env;
	size_t cap;
	az_resp r = { 0 };
	az_req rq = { .method = "POST", .content_type = "application/x-www-form-urlencoded", .idempotent = true };
	kb_code rc;
	bool ok;

	if (!conf->tenant[0] || !conf->authority[0])
		return kb_err_set(err, KB_E_AUTH_FAILED,
				  "auth %s needs a tenant and an authority: set tenant_id (or AZURE_TENANT_ID) and authority_host",
				  az_auth_name(conf->auth));
	if (conf->auth == AZ_AUTH_CLIENT_SECRET) {
		if (conf->secret_file) {
			rc = read_secret(conf->secret_file, "client_secret_file", &cred, NULL, err);
		} else if ((env = getenv("AZURE_CLIENT_SECRET")) && *env) {
			cred = strdup(env);
			rc = cred ? KB_OK : kb_err_set(err, KB_E_INTERNAL, "out of memory");
		} else {
			rc = kb_err_set(err, KB_E_AUTH_FAILED, "AZURE_CLIENT_SECRET is no longer set");
		}
	} else {
		rc = read_secret(conf->federated_file, "AZURE_FEDERATED_TOKEN_FILE", &cred, NULL, err);
	}
	if (rc != KB_OK)
		return rc;
	cap = strlen(cred) * 3 + 3 * AZ_URL_MAX;
	body = calloc(1, cap);
	snprintf(scope, sizeof(scope), "%s/.default", conf->resource);
	ok = body && form_add(body, cap, "grant_type", "client_credentials") &&
	     form_add(body, cap, "client_id", conf->client_id) && form_add(body, cap, "scope", scope);
	if (ok && conf->auth == AZ_AUTH_CLIENT_SECRET)
		ok = form_add(body, cap, "client_secret", cred);
	else if (ok)
		ok = form_add(body, cap, "client_assertion_type",
			      "urn:ietf:params:oauth:client-assertion-type:jwt-bearer") &&
		     form_add(body, cap, "client_assertion", cred);
	az_secret_free(cred);
	if (!ok) {
		if (body)
			OPENSSL_cleanse(body, cap);
		free(body);
		return kb_err_set(err, KB_E_INTERNAL, "out of memory building the token request");
	}
	snprintf(url, sizeof(url), "%s/%s/oauth2/v2.0/token", conf->authority, conf->tenant);
	rq.url = url;
	rq.body = body;
	rq.body_len = strlen(body);
	az_http_do(conf, s, &rq, &r);
	OPENSSL_cleanse(body, cap);
	free(body);
	rc = finish_fetch(conf, &r, token, life_s, err);
	az_resp_free(&r);
	return rc;
}

/*
 * fetch_imds asks the managed identity endpoint: IMDS (Metadata: true,
 * api-version 2018-02-01), or App Service's IDENTITY_ENDPOINT
 * (X-IDENTITY-HEADER from IDENTITY_HEADER, read now, api-version 2019-08-01).
 */
static kb_code fetch_imds(const az_conf *conf, az_slot *s, char **token, int64_t *life_s, kb_err *err)
{
	char url[3 * AZ_URL_MAX + 3 * AZ_ID_MAX + 64];
	const char *hdr = NULL;
	az_resp r = { 0 };
	az_req rq = { .method = "GET", .plain_http = true, .idempotent = true };
	kb_code rc;
	bool ok;

	if (conf->app_service) {
		hdr = getenv("IDENTITY_HEADER");
		if (!hdr || !*hdr)
			return kb_err_set(err, KB_E_AUTH_FAILED,
					  "IDENTITY_HEADER is no longer set: App Service's identity endpoint %s needs it",
					  conf->imds);
		rq.identity_header = hdr;
	} else {
		rq.metadata = true;
	}
	snprintf(url, sizeof(url), "%s%sapi-version=%s&resource=", conf->imds, strchr(conf->imds, '?') ? "&" : "?",
		 conf->app_service ? "2019-08-01" : "2018-02-01");
	ok = az_urlencode(conf->resource, url, sizeof(url));
	if (ok && conf->client_id[0]) {
		ok = strlen(url) + sizeof("&client_id=") < sizeof(url);
		if (ok) {
			strcat(url, "&client_id=");
			ok = az_urlencode(conf->client_id, url, sizeof(url));
		}
	}
	if (!ok)
		return kb_err_set(err, KB_E_INTERNAL, "the IMDS request URL is too long");
	rq.url = url;
	az_http_do(conf, s, &rq, &r);
	rc = finish_fetch(conf, &r, token, life_s, err);
	az_resp_free(&r);
	return rc;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* file_token serves auth = token_file: the file is read again whenever it changes. Lock held. */
static kb_code file_token(az_cred *c, const az_conf *conf, char **token, unsigned *gen, bool *fresh,
			  kb_err *err)
{
	struct stat st;
	char *t = NULL;
	kb_code rc;

	*fresh = false;
	if (stat(conf->token_file, &st) != 0)
		return kb_err_set(err, KB_E_AUTH_FAILED, "cannot read token_file %s: %s", conf->token_file,
				  strerror(errno));
	if (c->token == NULL || !same_file(&st, &c->st)) {
		rc = read_secret(conf->token_file, "token_file", &t, &st, err);
		if (rc != KB_OK)
			return rc;
		for (const char *p = t; *p; p++)
			if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f) {
				az_secret_free(t);
				return kb_err_set(err, KB_E_AUTH_FAILED,
						  "token_file %s must hold one bearer token and nothing else", conf->token_file);
			}
		az_secret_free(c->token);
		c->token = t;
		c->st = st;
		c->gen++;
		c->rejected = false;
		*fresh = true;
	}
	/* a refused token is sent once more only to report the service's answer */
	if (c->rejected)
		*fresh = true;
	*token = strdup(c->token);
	*gen = c->gen;
	return *token ? KB_OK : kb_err_set(err, KB_E_INTERNAL, "out of memory");
}

kb_code az_token_get(az_cred *c, const az_conf *conf, az_slot *s, char **token, unsigned *gen,
		     bool *fresh, kb_err *err)
{
	int64_t start, now, life_ms, margin, deadline = kb_now_ms() + conf->timeout_ms;
	char *t = NULL;
	int64_t life_s = 0;
	unsigned seen;
	kb_code rc;

	*token = NULL;
	*fresh = false;
	pthread_mutex_lock(&c->lock);
	if (conf->auth == AZ_AUTH_TOKEN_FILE) {
		rc = file_token(c, conf, token, gen, fresh, err);
		pthread_mutex_unlock(&c->lock);
		return rc;
	}
	seen = c->fetches;
	for (;;) {
		now = kb_now_ms();
		if (c->token && (now < c->refresh_ms || (c->fetching && now < c->expires_ms))) {
			*token = strdup(c->token);
			*gen = c->gen;
			pthread_mutex_unlock(&c->lock);
			return *token ? KB_OK : kb_err_set(err, KB_E_INTERNAL, "out of memory");
		}
		if (c->fetches != seen && c->last_err.code != KB_OK) {
			/* the fetch we waited for failed: report it rather than ask again at once */
			*err = c->last_err;
			pthread_mutex_unlock(&c->lock);
			return err->code;
		}
		if (!c->fetching)
			break;
		struct timespec ts = { (time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L };
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0 && kb_now_ms() >= deadline) {
			pthread_mutex_unlock(&c->lock);
			return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					  "no token within timeout %lldms: the token request of another caller is still running (%s)",
					  (long long)conf->timeout_ms,
					  conf->auth == AZ_AUTH_MANAGED_IDENTITY ? conf->imds : conf->authority);
		}
	}
	c->fetching = true;
	pthread_mutex_unlock(&c->lock);

	start = kb_now_ms();
	if (conf->auth == AZ_AUTH_MANAGED_IDENTITY)
		rc = fetch_imds(conf, s, &t, &life_s, err);
	else
		rc = fetch_entra(conf, s, &t, &life_s, err);

	pthread_mutex_lock(&c->lock);
	c->fetching = false;
	c->fetches++;
	if (rc == KB_OK) {
		life_ms = life_s * 1000;
		margin = life_ms / 4 < REFRESH_MARGIN_MS ? life_ms / 4 : REFRESH_MARGIN_MS;
		az_secret_free(c->token);
		c->token = t;
		c->gen++;
		c->expires_ms = start + life_ms;
		c->refresh_ms = start + life_ms - margin;
		kb_err_clear(&c->last_err);
		*token = strdup(t);
		*gen = c->gen;
		*fresh = true;
		if (*token == NULL)
			rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
	} else {
		c->last_err = *err;
	}
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void az_token_reject(az_cred *c, unsigned gen)
{
	pthread_mutex_lock(&c->lock);
	if (c->gen == gen) {
		if (c->file)
			c->rejected = true; /* token_file: keep it until the file changes */
		else {
			az_secret_free(c->token);
			c->token = NULL;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

kb_code az_token_cached(az_cred *c, const az_conf *conf, char **token, unsigned *gen, bool *fresh,
			kb_err *err)
{
	int64_t now = kb_now_ms();
	kb_code rc = KB_E_BUSY;

	*token = NULL;
	*fresh = false;
	pthread_mutex_lock(&c->lock);
	if (conf->auth == AZ_AUTH_TOKEN_FILE) {
		rc = file_token(c, conf, token, gen, fresh, err);
	} else if (c->token && (now < c->refresh_ms || (c->fetching && now < c->expires_ms))) {
		*token = strdup(c->token);
		*gen = c->gen;
		rc = *token ? KB_OK : kb_err_set(err, KB_E_INTERNAL, "out of memory");
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}
