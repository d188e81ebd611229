/*
 * parse.c: what the key service and the token endpoints send, read by pure
 * functions. Everything here is untrusted input: every field is type-checked
 * and size-checked before it is copied.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#include "az.h"
#include "b64.h"

static bool fail(char *why, size_t cap, const char *msg)
{
	if (why && cap)
		snprintf(why, cap, "%s", msg);
	return false;
}

static bool version_ok(const char *s, size_t n)
{
	if (n == 0 || n > KB_VERSION_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

static bool name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= AZ_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool host_ok(const char *s, size_t n)
{
	if (n == 0 || n >= AZ_HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != ':')
			return false;
	return s[0] != '.' && s[0] != ':';
}

bool az_parse_kid(const char *url, az_kid *out, char *why, size_t whycap)
{
	const char *p, *slash, *name, *ver;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (url == NULL || strncasecmp(url, "https://", 8) != 0)
		return fail(why, whycap, "not an https:// URL");
	p = url + 8;
	slash = strchr(p, '/');
	if (slash == NULL || !host_ok(p, (size_t)(slash - p)))
		return fail(why, whycap, "no valid host");
	n = (size_t)(slash - p);
	for (size_t i = 0; i < n; i++)
		out->host[i] = (char)tolower((unsigned char)p[i]);
	if (n > 4 && strcmp(out->host + n - 4, ":443") == 0)
		out->host[n - 4] = '\0';
	if (strncasecmp(slash, "/keys/", 6) != 0)
		return fail(why, whycap, "the path must start with /keys/");
	name = slash + 6;
	n = strcspn(name, "/?#");
	if (!name_ok(name, n))
		return fail(why, whycap, "the key name must be 1-127 of [0-9a-zA-Z-]");
	memcpy(out->name, name, n);
	ver = name + n;
	if (*ver == '/')
		ver++;
	n = strcspn(ver, "/?#");
	if (n && !version_ok(ver, n))
		return fail(why, whycap, "the version is not valid");
	memcpy(out->version, ver, n);
	ver += n;
	if (*ver == '/')
		ver++;
	if (*ver != '\0')
		return fail(why, whycap, "unexpected text after the version");
	return true;
}

static const cJSON *field(const cJSON *o, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(o, name);
}

static const char *str(const cJSON *o, const char *name)
{
	const cJSON *f = field(o, name);

	return cJSON_IsString(f) && f->valuestring ? f->valuestring : NULL;
}

/* num reads a JSON number (or a numeric string, as IMDS sends) as int64. */
static bool num(const cJSON *o, const char *name, int64_t *out)
{
	const cJSON *f = field(o, name);
	char *end;
	long long v;

	if (cJSON_IsNumber(f)) {
		if (!(f->valuedouble >= -9e15 && f->valuedouble <= 9e15))
			return false;
		*out = (int64_t)f->valuedouble;
		return true;
	}
	if (cJSON_IsString(f) && f->valuestring && isdigit((unsigned char)f->valuestring[0])) {
		v = strtoll(f->valuestring, &end, 10);
		if (*end == '\0' && v >= 0 && v <= 9000000000000000LL) {
			*out = v;
			return true;
		}
	}
	return false;
}

static unsigned kop_bit(const char *s)
{
	if (strcmp(s, "wrapKey") == 0)
		return AZ_KOP_WRAP;
	if (strcmp(s, "unwrapKey") == 0)
		return AZ_KOP_UNWRAP;
	if (strcmp(s, "encrypt") == 0)
		return AZ_KOP_ENCRYPT;
	if (strcmp(s, "decrypt") == 0)
		return AZ_KOP_DECRYPT;
	return 0;
}

void az_kops_text(unsigned ops, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s%s%s%s", ops & AZ_KOP_ENCRYPT ? "encrypt," : "",
		 ops & AZ_KOP_DECRYPT ? "decrypt," : "", ops & AZ_KOP_WRAP ? "wrapKey," : "",
		 ops & AZ_KOP_UNWRAP ? "unwrapKey," : "");
	if (*buf)
		buf[strlen(buf) - 1] = '\0';
}

static bool b64u_field(const cJSON *o, const char *name, uint8_t *out, size_t cap, size_t *len)
{
	const char *s = str(o, name);

	return s && kb_b64_decode(s, strlen(s), out, cap, len, KB_B64_URL) && *len > 0;
}

/* attrs reads a KeyBundle's or list entry's attributes. */
static void attrs(const cJSON *a, bool *enabled, int64_t *nbf, int64_t *exp, int64_t *created,
		  int64_t *updated)
{
	const cJSON *en = field(a, "enabled");

	*enabled = !cJSON_IsBool(en) || cJSON_IsTrue(en);
	if (!num(a, "nbf", nbf))
		*nbf = 0;
	if (!num(a, "exp", exp))
		*exp = 0;
	if (!num(a, "created", created))
		*created = 0;
	if (updated && !num(a, "updated", updated))
		*updated = 0;
}

bool az_parse_bundle(const char *json, size_t n, az_bundle *out, char *why, size_t whycap)
{
	cJSON *root = cJSON_ParseWithLength(json, n);
	const cJSON *key, *a, *ops, *e;
	const char *kid, *kty, *rl;
	bool ok = false;
	int64_t days;

	memset(out, 0, sizeof(*out));
	key = field(root, "key");
	if (!cJSON_IsObject(root) || !cJSON_IsObject(key)) {
		fail(why, whycap, "no key object");
		goto out;
	}
	kid = str(key, "kid");
	if (!kid || !az_parse_kid(kid, &out->kid, why, whycap) || !out->kid.version[0]) {
		if (kid)
			fail(why, whycap, "key.kid does not name a key version");
		else
			fail(why, whycap, "no key.kid");
		goto out;
	}
	kty = str(key, "kty");
	if (!kty || strlen(kty) >= sizeof(out->kty)) {
		fail(why, whycap, "no valid key.kty");
		goto out;
	}
	strcpy(out->kty, kty);
	ops = field(key, "key_ops");
	if (cJSON_IsArray(ops)) {
		cJSON_ArrayForEach(e, ops) {
			if (cJSON_IsString(e) && e->valuestring)
				out->ops |= kop_bit(e->valuestring);
		}
	}
	az_kops_text(out->ops, out->ops_text, sizeof(out->ops_text));
	if (strncmp(kty, "RSA", 3) == 0) {
		if (!b64u_field(key, "n", out->n, sizeof(out->n), &out->nlen) ||
		    !b64u_field(key, "e", out->e, sizeof(out->e), &out->elen)) {
			fail(why, whycap, "an RSA key without a valid n and e");
			goto out;
		}
	}
	if (num(key, "key_size", &days) && days > 0 && days <= 16384)
		out->key_size = (int)days;
	out->enabled = true;
	a = field(root, "attributes");
	if (cJSON_IsObject(a)) {
		attrs(a, &out->enabled, &out->nbf, &out->exp, &out->created, &out->updated);
		rl = str(a, "recoveryLevel");
		if (rl && strlen(rl) < sizeof(out->recovery))
			strcpy(out->recovery, rl);
		if (num(a, "recoverableDays", &days) && days >= 0 && days < 100000)
			out->recoverable_days = (int)days;
	}
	ok = true;
out:
	cJSON_Delete(root);
	return ok;
}

bool az_parse_versions(const char *json, size_t n, az_version_item *items, int cap, int *count,
		       char *next, size_t nextcap, char *why, size_t whycap)
{
	cJSON *root = cJSON_ParseWithLength(json, n);
	const cJSON *value = field(root, "value"), *e, *a;
	const char *nl;
	bool ok = false;
	az_kid kid;

	next[0] = '\0';
	if (!cJSON_IsObject(root) || !cJSON_IsArray(value)) {
		fail(why, whycap, "no value array");
		goto out;
	}
	cJSON_ArrayForEach(e, value) {
		az_version_item *it;
		const char *k = str(e, "kid");

		if (!k || !az_parse_kid(k, &kid, NULL, 0) || !kid.version[0])
			continue;
		if (*count >= cap)
			break;
		it = &items[(*count)++];
		memset(it, 0, sizeof(*it));
		strcpy(it->version, kid.version);
		it->enabled = true;
		a = field(e, "attributes");
		if (cJSON_IsObject(a))
			attrs(a, &it->enabled, &it->nbf, &it->exp, &it->created, NULL);
	}
	nl = str(root, "nextLink");
	if (nl && *nl) {
		if (strlen(nl) >= nextcap || strncasecmp(nl, "https://", 8) != 0) {
			fail(why, whycap, "nextLink is not a usable https URL");
			goto out;
		}
		strcpy(next, nl);
	}
	ok = true;
out:
	cJSON_Delete(root);
	return ok;
}

bool az_parse_op_result(const char *json, size_t n, uint8_t *out, size_t *outlen,
			char version[KB_VERSION_MAX + 1], char *why, size_t whycap)
{
	cJSON *root = cJSON_ParseWithLength(json, n);
	const cJSON *v = field(root, "value");
	const char *kid = str(root, "kid");
	bool ok = false;
	az_kid k;

	version[0] = '\0';
	if (!cJSON_IsObject(root) || !cJSON_IsString(v) || !v->valuestring) {
		fail(why, whycap, "no value");
		goto out;
	}
	if (!kb_b64_decode(v->valuestring, strlen(v->valuestring), out, *outlen, outlen, KB_B64_URL) ||
	    *outlen == 0) {
		fail(why, whycap, "value is not base64url of a fitting size");
		goto out;
	}
	if (kid && az_parse_kid(kid, &k, NULL, 0))
		strcpy(version, k.version);
	ok = true;
out:
	if (v && cJSON_IsString(v) && v->valuestring)
		OPENSSL_cleanse(v->valuestring, strlen(v->valuestring));
	cJSON_Delete(root);
	return ok;
}

bool az_parse_token(const char *json, size_t n, int64_t now_unix, char **token, int64_t *expires_in_s,
		    char *why, size_t whycap)
{
	cJSON *root = cJSON_ParseWithLength(json, n);
	const cJSON *t = field(root, "access_token");
	int64_t v;
	bool ok = false;

	*token = NULL;
	if (!cJSON_IsObject(root) || !cJSON_IsString(t) || !t->valuestring || !t->valuestring[0] ||
	    strlen(t->valuestring) > 16384) {
		fail(why, whycap, "no access_token");
		goto out;
	}
	for (const char *c = t->valuestring; *c; c++) {
		if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f) {
			fail(why, whycap, "the access_token holds characters a header cannot carry");
			goto out;
		}
	}
	if (num(root, "expires_in", &v) && v > 0)
		*expires_in_s = v;
	else if (num(root, "expires_on", &v) && v > now_unix)
		*expires_in_s = v - now_unix;
	else
		*expires_in_s = 3600; /* Entra ID's usual lifetime when none is given */
	*token = strdup(t->valuestring);
	if (*token == NULL) {
		fail(why, whycap, "out of memory");
		goto out;
	}
	ok = true;
out:
	if (cJSON_IsString(t) && t->valuestring)
		OPENSSL_cleanse(t->valuestring, strlen(t->valuestring));
	cJSON_Delete(root);
	return ok;
}

static void copy_clean(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	if (cap == 0)
		return;
	for (; src && src[i] && i + 1 < cap; i++)
		dst[i] = (src[i] < ' ' || src[i] == 0x7f) ? ' ' : src[i];
	dst[i] = '\0';
}

void az_parse_error(const char *json, size_t n, char *code, size_t codecap, char *inner, size_t innercap,
		    char *message, size_t msgcap)
{
	cJSON *root = json && n ? cJSON_ParseWithLength(json, n) : NULL;
	const cJSON *e = field(root, "error"), *ie;

	copy_clean(code, codecap, "");
	copy_clean(inner, innercap, "");
	copy_clean(message, msgcap, "");
	if (cJSON_IsObject(e)) {
		copy_clean(code, codecap, str(e, "code"));
		copy_clean(message, msgcap, str(e, "message"));
		ie = field(e, "innererror");
		if (cJSON_IsObject(ie))
			copy_clean(inner, innercap, str(ie, "code"));
	} else if (cJSON_IsString(e)) {
		copy_clean(code, codecap, e->valuestring);
		copy_clean(message, msgcap, str(root, "error_description"));
	}
	cJSON_Delete(root);
}

/* param finds name="value" (or name=value) in a challenge; false if absent or too long. */
static bool param(const char *h, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = h;

	while ((p = strcasestr(p, name)) != NULL) {
		bool start = p == h || p[-1] == ' ' || p[-1] == ',';
		const char *v = p + nl;
		size_t n;

		p += nl;
		if (!start || *v != '=')
			continue;
		v++;
		if (*v == '"') {
			v++;
			n = strcspn(v, "\"");
			if (v[n] != '"')
				return false;
		} else {
			n = strcspn(v, ", ");
		}
		if (n == 0 || n >= cap)
			return false;
		memcpy(out, v, n);
		out[n] = '\0';
		return true;
	}
	return false;
}

bool az_parse_challenge(const char *header, az_challenge *out)
{
	char auth[AZ_URL_MAX], res[AZ_URL_MAX];
	char *slash, *end;
	size_t n;

	memset(out, 0, sizeof(*out));
	while (*header == ' ')
		header++;
	if (strncasecmp(header, "Bearer ", 7) != 0)
		return false;
	header += 7;
	if (!param(header, "authorization", auth, sizeof(auth)) &&
	    !param(header, "authorization_uri", auth, sizeof(auth)))
		return false;
	if (!param(header, "resource", res, sizeof(res)) && !param(header, "scope", res, sizeof(res)))
		return false;
	if (strncasecmp(auth, "https://", 8) != 0 || strncasecmp(res, "https://", 8) != 0)
		return false;
	/* authorization = https://HOST/TENANT[/...] */
	slash = strchr(auth + 8, '/');
	if (slash == NULL || slash[1] == '\0')
		return false;
	end = slash + 1 + strcspn(slash + 1, "/?");
	n = (size_t)(end - slash - 1);
	if (n == 0 || n >= sizeof(out->tenant))
		return false;
	memcpy(out->tenant, slash + 1, n);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)out->tenant[i]) && !strchr("-._", out->tenant[i]))
			return false;
	*slash = '\0';
	snprintf(out->authority, sizeof(out->authority), "%s", auth);
	n = strlen(res);
	if (n > 9 && strcmp(res + n - 9, "/.default") == 0)
		res[n - 9] = '\0';
	n = strlen(res);
	while (n > 8 && res[n - 1] == '/')
		res[--n] = '\0';
	n = strcspn(res + 8, "/");
	if (n == 0 || !host_ok(res + 8, n))
		return false;
	snprintf(out->resource, sizeof(out->resource), "%s", res);
	return true;
}

int64_t az_parse_retry_after(const char *name, const char *value, int64_t now_unix)
{
	char *end;
	long long v;
	struct tm tm;
	bool ms;

	while (*value == ' ' || *value == '\t')
		value++;
	if (strcasecmp(name, "retry-after-ms") == 0 || strcasecmp(name, "x-ms-retry-after-ms") == 0)
		ms = true;
	else if (strcasecmp(name, "retry-after") == 0)
		ms = false;
	else
		return -1;
	if (isdigit((unsigned char)*value)) {
		errno = 0;
		v = strtoll(value, &end, 10);
		if (errno)
			return -1;
		while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
			end++;
		if (*end != '\0' || v < 0)
			return -1;
		/* a wait of more than a day is a day: the deadline cuts it far sooner */
		if (!ms)
			v = v > 86400 ? 86400000 : v * 1000;
		return v > 86400000 ? 86400000 : v;
	}
	if (ms)
		return -1;
	/* an HTTP date: Sun, 06 Nov 1994 08:49:37 GMT */
	memset(&tm, 0, sizeof(tm));
	end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end == NULL)
		return -1;
	v = (long long)timegm(&tm) - now_unix;
	return v <= 0 ? 0 : (v > 86400 ? 86400000 : v * 1000);
}
