#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "b64.h"
#include "parse.h"

#define MAX_SEGS 8

static const char *const api_versions[] = {
	"7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "7.4-preview.1",
};

bool emu_api_version_ok(const char *v)
{
	if (!v)
		return false;
	for (size_t i = 0; i < sizeof(api_versions) / sizeof(api_versions[0]); i++)
		if (strcmp(v, api_versions[i]) == 0)
			return true;
	return false;
}

bool emu_key_name_ok(const char *name)
{
	size_t n = 0;

	for (; name[n]; n++)
		if (!isalnum((unsigned char)name[n]) && name[n] != '-')
			return false;
	return n >= 1 && n < EMU_NAME_MAX;
}

/* copy_lower copies at most cap - 1 bytes of s[0..n), lower-cased; false if it does not fit. */
static bool copy_lower(char *dst, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		dst[i] = (char)tolower((unsigned char)s[i]);
	dst[n] = '\0';
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static enum emu_route_status parse_host(const char *host, struct emu_route *r)
{
	char name[EMU_HOST_MAX];
	const char *colon;
	size_t hlen;

	if (!host || !*host || !copy_lower(r->host, sizeof(r->host), host, strlen(host)))
		return EMU_ROUTE_BAD_HOST;
	if (r->host[0] == '[') {
		colon = strchr(r->host, ']');
		if (!colon)
			return EMU_ROUTE_BAD_HOST;
		colon = colon[1] == ':' ? colon + 1 : NULL;
	} else {
		colon = strchr(r->host, ':');
	}
	hlen = colon ? (size_t)(colon - r->host) : strlen(r->host);
	if (colon) {
		size_t plen = strlen(colon + 1);

		if (plen == 0 || plen >= sizeof(r->port) || strspn(colon + 1, "0123456789") != plen)
			return EMU_ROUTE_BAD_HOST;
		memcpy(r->port, colon + 1, plen + 1);
	}
	memcpy(name, r->host, hlen);
	name[hlen] = '\0';
	if (strcmp(name, "localhost") == 0 || strcmp(name, "127.0.0.1") == 0 ||
	    strcmp(name, "[::1]") == 0) {
		r->kind = EMU_KIND_LOGIN;
		return EMU_ROUTE_OK;
	}
	if (ends_with(name, ".vault.localhost"))
		r->kind = EMU_KIND_VAULT;
	else if (ends_with(name, ".managedhsm.localhost"))
		r->kind = EMU_KIND_MHSM;
	else
		return EMU_ROUTE_BAD_HOST;
	/* exactly NAME + suffix: the suffix starts right after the first label */
	size_t label = strcspn(name, ".");
	if (label == 0 || label >= sizeof(r->vault))
		return EMU_ROUTE_BAD_HOST;
	if (strcmp(name + label, r->kind == EMU_KIND_VAULT ? ".vault.localhost" :
		   ".managedhsm.localhost") != 0)
		return EMU_ROUTE_BAD_HOST;
	memcpy(r->vault, name, label);
	r->vault[label] = '\0';
	for (size_t i = 0; i < label; i++)
		if (!isalnum((unsigned char)r->vault[i]) && r->vault[i] != '-')
			return EMU_ROUTE_BAD_HOST;
	return EMU_ROUTE_OK;
}

struct segs {
	const char *p[MAX_SEGS];
	size_t n[MAX_SEGS];
	size_t count;
};

/* split_path splits on '/', skipping empty segments; false if over MAX_SEGS. */
static bool split_path(const char *path, struct segs *s)
{
	s->count = 0;
	while (*path) {
		size_t n;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		n = strcspn(path, "/");
		if (s->count == MAX_SEGS)
			return false;
		s->p[s->count] = path;
		s->n[s->count++] = n;
		path += n;
	}
	return true;
}

static bool seg_is(const struct segs *s, size_t i, const char *lit)
{
	return i < s->count && strlen(lit) == s->n[i] && strncasecmp(s->p[i], lit, s->n[i]) == 0;
}

static bool seg_copy(const struct segs *s, size_t i, char *dst, size_t cap)
{
	if (s->n[i] >= cap)
		return false;
	memcpy(dst, s->p[i], s->n[i]);
	dst[s->n[i]] = '\0';
	return true;
}

static enum emu_op crypto_op(const struct segs *s, size_t i)
{
	if (seg_is(s, i, "wrapkey"))
		return EMU_OP_WRAP;
	if (seg_is(s, i, "unwrapkey"))
		return EMU_OP_UNWRAP;
	if (seg_is(s, i, "encrypt"))
		return EMU_OP_ENCRYPT;
	if (seg_is(s, i, "decrypt"))
		return EMU_OP_DECRYPT;
	return EMU_OP_NONE;
}

/*
 * route_adfs matches the AD FS shapes: /adfs/oauth2/token,
 * /adfs/.well-known/openid-configuration and, as az asks it to resolve a
 * tenant name, /adfs/{tenant}/.well-known/openid-configuration. False if s
 * is none of them.
 */
static bool route_adfs(const struct segs *s, struct emu_route *r)
{
	bool disc = s->count >= 3 && seg_is(s, s->count - 2, ".well-known") &&
		    seg_is(s, s->count - 1, "openid-configuration");

	if (s->count == 3 && seg_is(s, 1, "oauth2") && seg_is(s, 2, "token"))
		r->op = EMU_OP_TOKEN;
	else if (disc && (s->count == 3 || s->count == 4))
		r->op = EMU_OP_OPENID;
	else
		return false;
	if (!seg_copy(s, s->count == 4 ? 1 : 0, r->tenant, sizeof(r->tenant)))
		return false;
	r->adfs = true;
	return true;
}

static enum emu_route_status route_login(const char *m, const struct segs *s, struct emu_route *r)
{
	bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;

	if (s->count == 4 && seg_is(s, 0, "metadata") && seg_is(s, 1, "identity") &&
	    seg_is(s, 2, "oauth2") && seg_is(s, 3, "token")) {
		r->op = EMU_OP_IMDS;
		return get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
	}
	if (s->count == 2 && seg_is(s, 0, "msi") && seg_is(s, 1, "token")) {
		r->op = EMU_OP_APP_SERVICE;
		return get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
	}
	if (s->count == 1 && (seg_is(s, 0, "subscriptions") || seg_is(s, 0, "tenants"))) {
		r->op = seg_is(s, 0, "tenants") ? EMU_OP_ARM_TENANTS : EMU_OP_ARM_SUBSCRIPTIONS;
		return get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
	}
	if (seg_is(s, 0, "adfs") && route_adfs(s, r))
		return r->op == EMU_OP_TOKEN ? (post ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD) :
		       (get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD);
	if (s->count < 2 || !seg_copy(s, 0, r->tenant, sizeof(r->tenant)))
		return EMU_ROUTE_NOT_FOUND;
	if ((s->count == 4 && seg_is(s, 1, "oauth2") && seg_is(s, 2, "v2.0") && seg_is(s, 3, "token")) ||
	    (s->count == 3 && seg_is(s, 1, "oauth2") && seg_is(s, 2, "token"))) {
		r->op = EMU_OP_TOKEN;
		return post ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
	}
	if ((s->count == 4 && seg_is(s, 1, "v2.0") && seg_is(s, 2, ".well-known") &&
	     seg_is(s, 3, "openid-configuration")) ||
	    (s->count == 3 && seg_is(s, 1, ".well-known") && seg_is(s, 2, "openid-configuration"))) {
		r->op = EMU_OP_OPENID;
		return get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
	}
	return EMU_ROUTE_NOT_FOUND;
}

/* unsupported_op: the Keys API operations the emulator leaves out (docs/emulator.md) */
static bool unsupported_op(const struct segs *s, size_t i, bool get, bool post)
{
	return (post && (seg_is(s, i, "sign") || seg_is(s, i, "verify") || seg_is(s, i, "release"))) ||
	       (get && seg_is(s, i, "attestation"));
}

static enum emu_route_status route_keys(const char *m, const struct segs *s, struct emu_route *r)
{
	bool get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0;
	bool patch = strcmp(m, "PATCH") == 0, del = strcmp(m, "DELETE") == 0;
	bool put = strcmp(m, "PUT") == 0;
	enum emu_op op;

	if (seg_is(s, 0, "rng") && s->count == 1) {
		r->op = EMU_OP_RNG;
		return post ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
	}
	if (seg_is(s, 0, "keys")) {
		if (s->count == 1) {
			r->op = EMU_OP_LIST_KEYS;
			return get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		/* POST /keys/restore; GET /keys/restore is a key named "restore" */
		if (s->count == 2 && post && seg_is(s, 1, "restore")) {
			r->op = EMU_OP_RESTORE;
			return EMU_ROUTE_OK;
		}
		if (!seg_copy(s, 1, r->key, sizeof(r->key)) || !emu_key_name_ok(r->key))
			return EMU_ROUTE_BAD_NAME;
		if (s->count == 2) {
			r->op = get ? EMU_OP_GET : patch ? EMU_OP_UPDATE : del ? EMU_OP_DELETE :
				put ? EMU_OP_IMPORT : EMU_OP_NONE;
			return r->op ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		if (s->count == 3 && seg_is(s, 2, "rotationpolicy")) {
			r->op = get ? EMU_OP_GET_POLICY : put ? EMU_OP_SET_POLICY : EMU_OP_NONE;
			return r->op ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		if ((s->count == 3 || s->count == 4) && unsupported_op(s, s->count - 1, get, post)) {
			if (s->count == 4 && !seg_copy(s, 2, r->version, sizeof(r->version)))
				return EMU_ROUTE_NOT_FOUND;
			r->op = EMU_OP_UNSUPPORTED;
			return EMU_ROUTE_OK;
		}
		if (s->count == 3 && post) {
			if (seg_is(s, 2, "create"))
				r->op = EMU_OP_CREATE;
			else if (seg_is(s, 2, "rotate"))
				r->op = EMU_OP_ROTATE;
			else if (seg_is(s, 2, "backup"))
				r->op = EMU_OP_BACKUP;
			else
				r->op = crypto_op(s, 2);
			return r->op ? EMU_ROUTE_OK : EMU_ROUTE_NOT_FOUND;
		}
		if (s->count == 3 && get && seg_is(s, 2, "versions")) {
			r->op = EMU_OP_LIST_VERSIONS;
			return EMU_ROUTE_OK;
		}
		if (s->count == 3) {
			if (!seg_copy(s, 2, r->version, sizeof(r->version)))
				return EMU_ROUTE_NOT_FOUND;
			r->op = get ? EMU_OP_GET : patch ? EMU_OP_UPDATE : EMU_OP_NONE;
			return r->op ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		if (s->count == 4 && (op = crypto_op(s, 3)) != EMU_OP_NONE) {
			if (!seg_copy(s, 2, r->version, sizeof(r->version)))
				return EMU_ROUTE_NOT_FOUND;
			r->op = op;
			return post ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		return EMU_ROUTE_NOT_FOUND;
	}
	if (seg_is(s, 0, "deletedkeys")) {
		if (s->count == 1) {
			r->op = EMU_OP_LIST_DELETED;
			return get ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		if (!seg_copy(s, 1, r->key, sizeof(r->key)) || !emu_key_name_ok(r->key))
			return EMU_ROUTE_BAD_NAME;
		if (s->count == 2) {
			r->op = get ? EMU_OP_GET_DELETED : del ? EMU_OP_PURGE : EMU_OP_NONE;
			return r->op ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
		if (s->count == 3 && seg_is(s, 2, "recover")) {
			r->op = EMU_OP_RECOVER;
			return post ? EMU_ROUTE_OK : EMU_ROUTE_BAD_METHOD;
		}
	}
	return EMU_ROUTE_NOT_FOUND;
}

enum emu_route_status emu_route_parse(const char *method, const char *host, const char *path,
				      struct emu_route *r)
{
	struct segs s;
	enum emu_route_status st;

	memset(r, 0, sizeof(*r));
	if (!method || !path)
		return EMU_ROUTE_NOT_FOUND;
	if (!split_path(path, &s))
		return EMU_ROUTE_NOT_FOUND;
	/* IMDS answers on whatever host the client was told to use */
	if (s.count == 4 && seg_is(&s, 0, "metadata")) {
		(void)parse_host(host, r);
		r->kind = EMU_KIND_LOGIN;
		return route_login(method, &s, r);
	}
	st = parse_host(host, r);
	if (st != EMU_ROUTE_OK)
		return st;
	if (r->kind == EMU_KIND_LOGIN)
		return route_login(method, &s, r);
	return route_keys(method, &s, r);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool emu_form_get(const char *body, size_t len, const char *name, char *out, size_t cap)
{
	size_t nlen = strlen(name), i = 0;

	while (i < len) {
		size_t end = i, eq;

		while (end < len && body[end] != '&')
			end++;
		for (eq = i; eq < end && body[eq] != '='; eq++)
			;
		if (eq - i == nlen && memcmp(body + i, name, nlen) == 0 && eq < end) {
			size_t o = 0;

			for (size_t k = eq + 1; k < end; k++) {
				char c = body[k];

				if (c == '+') {
					c = ' ';
				} else if (c == '%') {
					int hi, lo;

					if (k + 2 >= end)
						return false;
					hi = hexval(body[k + 1]);
					lo = hexval(body[k + 2]);
					if (hi < 0 || lo < 0)
						return false;
					c = (char)(hi << 4 | lo);
					k += 2;
				}
				if (c == '\0' || o + 1 >= cap)
					return false;
				out[o++] = c;
			}
			out[o] = '\0';
			return true;
		}
		i = end + 1;
	}
	return false;
}

uint8_t *emu_b64url_decode(const char *s, size_t *n)
{
	size_t len = strlen(s), cap = len / 4 * 3 + 3;
	uint8_t *p = malloc(cap);

	*n = 0;
	if (!p)
		return NULL;
	if (!kb_b64_decode(s, len, p, cap, n, KB_B64_URL)) {
		free(p);
		*n = 0;
		return NULL;
	}
	return p;
}

char *emu_b64url_encode(const uint8_t *p, size_t n)
{
	char *s = malloc(kb_b64_encoded_len(n, KB_B64_URL) + 1);

	if (s)
		kb_b64_encode(p, n, s, KB_B64_URL);
	return s;
}

/* field decodes an optional base64url member; -1 if present and not a valid string. */
static int field(const cJSON *root, const char *name, uint8_t **out, size_t *n)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, name);

	if (!f || cJSON_IsNull(f))
		return 0;
	if (!cJSON_IsString(f))
		return -1;
	*out = emu_b64url_decode(f->valuestring, n);
	return *out ? 0 : -1;
}

int emu_opbody_parse(const char *json, size_t len, struct emu_opbody *b, char *err, size_t errlen)
{
	cJSON *root;
	const cJSON *alg, *value;
	int rc = -1;

	memset(b, 0, sizeof(*b));
	root = cJSON_ParseWithLength(json ? json : "", json ? len : 0);
	if (!root || !cJSON_IsObject(root)) {
		snprintf(err, errlen, "The request body is not a valid JSON object.");
		goto out;
	}
	alg = cJSON_GetObjectItemCaseSensitive(root, "alg");
	value = cJSON_GetObjectItemCaseSensitive(root, "value");
	if (!cJSON_IsString(alg) || strlen(alg->valuestring) >= sizeof(b->alg)) {
		snprintf(err, errlen, "Property 'alg' is missing or invalid.");
		goto out;
	}
	strcpy(b->alg, alg->valuestring);
	if (!cJSON_IsString(value)) {
		snprintf(err, errlen, "Property 'value' is missing or invalid.");
		goto out;
	}
	b->value = emu_b64url_decode(value->valuestring, &b->value_len);
	if (!b->value) {
		snprintf(err, errlen, "Property 'value' is not valid base64url.");
		goto out;
	}
	if (field(root, "iv", &b->iv, &b->iv_len) || field(root, "aad", &b->aad, &b->aad_len) ||
	    field(root, "tag", &b->tag, &b->tag_len)) {
		snprintf(err, errlen, "Property 'iv', 'aad' or 'tag' is not valid base64url.");
		goto out;
	}
	rc = 0;
out:
	cJSON_Delete(root);
	return rc;
}

void emu_opbody_free(struct emu_opbody *b)
{
	free(b->value);
	free(b->iv);
	free(b->aad);
	free(b->tag);
	memset(b, 0, sizeof(*b));
}
