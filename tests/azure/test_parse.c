/*
 * test_parse.c: cmocka tests of hsm/parse.c, the pure parsers of what Key
 * Vault, Managed HSM and the token endpoints send. Each parser gets what the
 * service really sends, then the malformed, oversized and hostile variants
 * a broken or hostile peer could send instead.
 *
 * Run as: test_azure_parse NAME (one meson test() per NAME).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../cases.h"

#include "az.h"
#include "b64.h"

#define NOW 1700000000 /* a fixed "now" for expiry and date arithmetic */

/* J turns single quotes into double quotes, so JSON reads cleanly in C. */
static char *J(const char *s)
{
	static char buf[8][8192];
	static int next;
	char *out = buf[next++ % 8];
	size_t i;

	for (i = 0; s[i] && i + 1 < sizeof(buf[0]); i++)
		out[i] = s[i] == '\'' ? '"' : s[i];
	out[i] = '\0';
	return out;
}

/* ---- key identifiers ---- */

static void kid_valid_forms(void **state)
{
	az_kid k;
	char why[128];

	assert_true(az_parse_kid("https://myvault.vault.azure.net/keys/kek", &k, why, sizeof(why)));
	assert_string_equal(k.host, "myvault.vault.azure.net");
	assert_string_equal(k.name, "kek");
	assert_string_equal(k.version, "");

	assert_true(az_parse_kid("https://MyVault.Vault.Azure.NET:443/keys/kek-2/0123456789abcdef0123456789abcdef/",
				 &k, why, sizeof(why)));
	assert_string_equal(k.host, "myvault.vault.azure.net");
	assert_string_equal(k.name, "kek-2");
	assert_string_equal(k.version, "0123456789abcdef0123456789abcdef");

	assert_true(az_parse_kid("HTTPS://kv.vault.localhost:8443/KEYS/rsa/", &k, why, sizeof(why)));
	assert_string_equal(k.host, "kv.vault.localhost:8443");
	assert_string_equal(k.name, "rsa");
	assert_string_equal(k.version, "");
}

static void kid_rejects_malformed(void **state)
{
	static const char *const bad[] = {
		"http://kv.vault.azure.net/keys/k",          /* not https */
		"https://kv.vault.azure.net",                 /* no path */
		"https:///keys/k",                            /* no host */
		"https://.vault.azure.net/keys/k",            /* host starts with a dot */
		"https://kv.vault.azure.net/secrets/k",       /* not a key */
		"https://kv.vault.azure.net/keys/",           /* no name */
		"https://kv.vault.azure.net/keys/bad_name",   /* '_' is not in a key name */
		"https://kv.vault.azure.net/keys/k/v1/wrapkey", /* an operation, not a key */
		"https://kv.vault.azure.net/keys/k/v.1",      /* '.' is not in a version */
		"https://kv.vault.azure.net/keys/k?api-version=7.4",
		"https://kv.vault.azure.net/keys/k#frag",
		"https://kv vault/keys/k",                    /* space in the host */
		"https://user@kv.vault.azure.net/keys/k",     /* userinfo */
		"",
	};
	char why[128];
	az_kid k;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		why[0] = '\0';
		if (az_parse_kid(bad[i], &k, why, sizeof(why)))
			fail_msg("accepted %s", bad[i]);
		assert_true(why[0] != '\0');
	}
	assert_false(az_parse_kid(NULL, &k, why, sizeof(why)));
	/* why may be NULL */
	assert_false(az_parse_kid("ftp://x/keys/k", &k, NULL, 0));
}

static void kid_bounds_name_and_version(void **state)
{
	char url[512], name[200], ver[100];
	az_kid k;

	memset(name, 'a', 127);
	name[127] = '\0';
	snprintf(url, sizeof(url), "https://kv.vault.azure.net/keys/%s", name);
	assert_true(az_parse_kid(url, &k, NULL, 0));
	assert_int_equal(strlen(k.name), 127);
	memset(name, 'a', 128);
	name[128] = '\0';
	snprintf(url, sizeof(url), "https://kv.vault.azure.net/keys/%s", name);
	assert_false(az_parse_kid(url, &k, NULL, 0));

	memset(ver, 'f', KB_VERSION_MAX);
	ver[KB_VERSION_MAX] = '\0';
	snprintf(url, sizeof(url), "https://kv.vault.azure.net/keys/k/%s", ver);
	assert_true(az_parse_kid(url, &k, NULL, 0));
	assert_int_equal(strlen(k.version), KB_VERSION_MAX);
	ver[KB_VERSION_MAX] = 'f';
	ver[KB_VERSION_MAX + 1] = '\0';
	snprintf(url, sizeof(url), "https://kv.vault.azure.net/keys/k/%s", ver);
	assert_false(az_parse_kid(url, &k, NULL, 0));

	/* a host of 255 characters fits, 256 does not */
	char host[300];
	memset(host, 'h', sizeof(host));
	host[AZ_HOST_MAX - 1] = '\0';
	snprintf(url, sizeof(url), "https://%s/keys/k", host);
	assert_true(az_parse_kid(url, &k, NULL, 0));
	host[AZ_HOST_MAX - 1] = 'h';
	host[AZ_HOST_MAX] = '\0';
	snprintf(url, sizeof(url), "https://%s/keys/k", host);
	assert_false(az_parse_kid(url, &k, NULL, 0));
}

/* ---- KeyBundle ---- */

/* n of a toy modulus: 0x01 0x02 ... base64url'd, e = AQAB */
#define RSA_KEY "'kid':'https://kv.vault.azure.net/keys/rsa/0123456789abcdef0123456789abcdef','kty':'RSA'," \
		"'n':'AQIDBAUGBwg','e':'AQAB'"

static void bundle_rsa(void **state)
{
	az_bundle b;
	char why[128] = "";
	const char *j = J("{'key':{" RSA_KEY ",'key_ops':['encrypt','wrapKey','unwrapKey','sign']},"
			  "'attributes':{'enabled':true,'nbf':1600000000,'exp':1900000000,'created':1650000000,"
			  "'updated':1660000000,'recoveryLevel':'Recoverable','recoverableDays':90},'tags':{}}");

	assert_true(az_parse_bundle(j, strlen(j), &b, why, sizeof(why)));
	assert_string_equal(b.kid.name, "rsa");
	assert_string_equal(b.kid.version, "0123456789abcdef0123456789abcdef");
	assert_string_equal(b.kty, "RSA");
	assert_int_equal(b.ops, AZ_KOP_ENCRYPT | AZ_KOP_WRAP | AZ_KOP_UNWRAP);
	assert_string_equal(b.ops_text, "encrypt,wrapKey,unwrapKey");
	assert_int_equal(b.nlen, 8);
	assert_memory_equal(b.n, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
	assert_int_equal(b.elen, 3);
	assert_memory_equal(b.e, "\x01\x00\x01", 3);
	assert_true(b.enabled);
	assert_int_equal(b.nbf, 1600000000);
	assert_int_equal(b.exp, 1900000000);
	assert_int_equal(b.created, 1650000000);
	assert_int_equal(b.updated, 1660000000);
	assert_string_equal(b.recovery, "Recoverable");
	assert_int_equal(b.recoverable_days, 90);
}

static void bundle_oct_and_defaults(void **state)
{
	az_bundle b;
	const char *j;

	/* an oct-HSM key has no n or e; no attributes: enabled, nothing else known */
	j = J("{'key':{'kid':'https://h.managedhsm.azure.net/keys/aes/abc','kty':'oct-HSM','key_ops':['wrapKey']}}");
	assert_true(az_parse_bundle(j, strlen(j), &b, NULL, 0));
	assert_string_equal(b.kty, "oct-HSM");
	assert_int_equal(b.nlen, 0);
	assert_true(b.enabled);
	assert_int_equal(b.ops, AZ_KOP_WRAP);
	assert_string_equal(b.recovery, "");
	assert_int_equal(b.nbf, 0);
	assert_int_equal(b.key_size, 0);

	/* Managed HSM's key_size gives an oct-HSM key's size; an absurd one is ignored */
	j = J("{'key':{'kid':'https://h.managedhsm.azure.net/keys/aes/abc','kty':'oct-HSM','key_size':256}}");
	assert_true(az_parse_bundle(j, strlen(j), &b, NULL, 0));
	assert_int_equal(b.key_size, 256);
	j = J("{'key':{'kid':'https://h.managedhsm.azure.net/keys/aes/abc','kty':'oct-HSM','key_size':-8}}");
	assert_true(az_parse_bundle(j, strlen(j), &b, NULL, 0));
	assert_int_equal(b.key_size, 0);

	/* enabled false, numbers as strings, unknown ops and a non-string op ignored */
	j = J("{'key':{'kid':'https://h.managedhsm.azure.net/keys/aes/abc','kty':'oct-HSM',"
	      "'key_ops':['import',7,null,'unwrapKey']},"
	      "'attributes':{'enabled':false,'nbf':'1600000000','recoveryLevel':"
	      "'CustomizedRecoverable+Purgeable','recoverableDays':7}}");
	assert_true(az_parse_bundle(j, strlen(j), &b, NULL, 0));
	assert_false(b.enabled);
	assert_int_equal(b.nbf, 1600000000);
	assert_int_equal(b.ops, AZ_KOP_UNWRAP);
	assert_string_equal(b.recovery, "CustomizedRecoverable+Purgeable");
	assert_int_equal(b.recoverable_days, 7);

	/* a recoveryLevel too long to hold, a negative or absurd recoverableDays: absent */
	j = J("{'key':{'kid':'https://h/keys/k/v','kty':'oct-HSM'},'attributes':{'recoveryLevel':"
	      "'Recoverable+Purgeable+Recoverable+Purgeable+Recoverable+Purgeable','recoverableDays':-3}}");
	assert_true(az_parse_bundle(j, strlen(j), &b, NULL, 0));
	assert_string_equal(b.recovery, "");
	assert_int_equal(b.recoverable_days, 0);
	j = J("{'key':{'kid':'https://h/keys/k/v','kty':'oct-HSM'},'attributes':{'recoverableDays':1e300,"
	      "'nbf':1e300,'enabled':'no'}}");
	assert_true(az_parse_bundle(j, strlen(j), &b, NULL, 0));
	assert_int_equal(b.recoverable_days, 0);
	assert_int_equal(b.nbf, 0);
	assert_true(b.enabled); /* only a JSON false disables */
}

static void bundle_rejects_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{}",
		"{'key':'x'}",
		"{'key':{'kty':'RSA','n':'AQ','e':'AQAB'}}",                        /* no kid */
		"{'key':{'kid':'https://h/keys/k','kty':'RSA','n':'AQ','e':'AQAB'}}", /* kid without version */
		"{'key':{'kid':'http://h/keys/k/v','kty':'RSA','n':'AQ','e':'AQAB'}}",
		"{'key':{'kid':'https://h/keys/k/v','n':'AQ','e':'AQAB'}}",           /* no kty */
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA-HSM-WITH-A-VERY-LONG-NAME'}}",
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA','e':'AQAB'}}",         /* RSA without n */
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA-HSM','n':'AQ'}}",       /* without e */
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA','n':'a+b/','e':'AQAB'}}", /* not base64url */
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA','n':'','e':'AQAB'}}",  /* empty n */
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA','n':7,'e':'AQAB'}}",
		"{'key':{'kid':'https://h/keys/k/v','kty':'RSA','n':'AQ','e':'AQABAQABAQABAQABAQABAQAB'}}",
	};
	char why[128];
	az_bundle b;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *j = J(bad[i]);

		why[0] = '\0';
		if (az_parse_bundle(j, strlen(j), &b, why, sizeof(why)))
			fail_msg("accepted %s", j);
		assert_true(why[0] != '\0');
	}
}

static void bundle_bounds_modulus(void **state)
{
	/* RSA-8192's 1024-byte modulus fits; one byte more does not */
	uint8_t raw[AZ_RSA_N_MAX + 1];
	char n64[2 * AZ_RSA_N_MAX], *json = malloc(4 * AZ_RSA_N_MAX);
	az_bundle b;

	assert_non_null(json);
	memset(raw, 0xa5, sizeof(raw));
	kb_b64_encode(raw, AZ_RSA_N_MAX, n64, KB_B64_URL);
	snprintf(json, 4 * AZ_RSA_N_MAX, "{\"key\":{\"kid\":\"https://h/keys/k/v\",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}}",
		 n64);
	assert_true(az_parse_bundle(json, strlen(json), &b, NULL, 0));
	assert_int_equal(b.nlen, AZ_RSA_N_MAX);
	kb_b64_encode(raw, AZ_RSA_N_MAX + 1, n64, KB_B64_URL);
	snprintf(json, 4 * AZ_RSA_N_MAX, "{\"key\":{\"kid\":\"https://h/keys/k/v\",\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"AQAB\"}}",
		 n64);
	assert_false(az_parse_bundle(json, strlen(json), &b, NULL, 0));
	/* the length given is honoured: a valid bundle cut short is not valid */
	assert_false(az_parse_bundle(json, 40, &b, NULL, 0));
	free(json);
}

/* ---- list versions ---- */

static void versions_pages_with_next_link(void **state)
{
	az_version_item items[4];
	char next[AZ_URL_MAX], why[128];
	int n = 0;
	const char *p1 = J("{'value':[{'kid':'https://kv.vault.azure.net/keys/k/v1','attributes':"
			   "{'enabled':true,'created':100,'nbf':50,'exp':900}},"
			   "{'kid':'https://kv.vault.azure.net/keys/k/v2','attributes':{'enabled':false,'created':200}}],"
			   "'nextLink':'https://kv.vault.azure.net/keys/k/versions?api-version=7.4&$skiptoken=abc&maxresults=2'}");
	const char *p2 = J("{'value':[{'kid':'https://kv.vault.azure.net/keys/k/v3'}],'nextLink':null}");

	assert_true(az_parse_versions(p1, strlen(p1), items, 4, &n, next, sizeof(next), why, sizeof(why)));
	assert_int_equal(n, 2);
	assert_string_equal(items[0].version, "v1");
	assert_true(items[0].enabled);
	assert_int_equal(items[0].created, 100);
	assert_int_equal(items[0].nbf, 50);
	assert_int_equal(items[0].exp, 900);
	assert_string_equal(items[1].version, "v2");
	assert_false(items[1].enabled);
	assert_string_equal(next, "https://kv.vault.azure.net/keys/k/versions?api-version=7.4&$skiptoken=abc&maxresults=2");
	/* the next page appends; a null nextLink ends the walk */
	assert_true(az_parse_versions(p2, strlen(p2), items, 4, &n, next, sizeof(next), why, sizeof(why)));
	assert_int_equal(n, 3);
	assert_string_equal(items[2].version, "v3");
	assert_true(items[2].enabled);
	assert_string_equal(next, "");
}

static void versions_skip_bad_entries_and_stop_at_cap(void **state)
{
	az_version_item items[2];
	char next[AZ_URL_MAX];
	int n = 0;
	const char *j = J("{'value':[7,{'kid':'https://h/keys/k'},{'kid':'nonsense'},{},"
			  "{'kid':'https://h/keys/k/a'},{'kid':'https://h/keys/k/b'},{'kid':'https://h/keys/k/c'}],"
			  "'nextLink':''}");

	assert_true(az_parse_versions(j, strlen(j), items, 2, &n, next, sizeof(next), NULL, 0));
	assert_int_equal(n, 2);
	assert_string_equal(items[0].version, "a");
	assert_string_equal(items[1].version, "b");
	assert_string_equal(next, "");
	/* a full list takes no more */
	assert_true(az_parse_versions(j, strlen(j), items, 2, &n, next, sizeof(next), NULL, 0));
	assert_int_equal(n, 2);
}

static void versions_reject_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"{",
		"{}",
		"{'value':{}}",
		"[{'kid':'https://h/keys/k/a'}]",
		"{'value':[],'nextLink':'http://h/keys/k/versions'}",   /* not https */
		"{'value':[],'nextLink':'file:///etc/passwd'}",
	};
	az_version_item items[2];
	char next[AZ_URL_MAX], small[32], why[128];
	int n;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *j = J(bad[i]);

		n = 0;
		why[0] = '\0';
		if (az_parse_versions(j, strlen(j), items, 2, &n, next, sizeof(next), why, sizeof(why)))
			fail_msg("accepted %s", j);
		assert_true(why[0] != '\0');
		assert_string_equal(next, "");
	}
	/* a nextLink longer than the caller's buffer is refused, not cut */
	const char *j = J("{'value':[],'nextLink':'https://kv.vault.azure.net/keys/k/versions?x=1'}");
	n = 0;
	assert_false(az_parse_versions(j, strlen(j), items, 2, &n, small, sizeof(small), NULL, 0));
}

/* ---- wrapkey / unwrapkey results ---- */

static void op_result_values(void **state)
{
	uint8_t out[64];
	size_t len = sizeof(out);
	char ver[KB_VERSION_MAX + 1], why[128];
	const char *j = J("{'kid':'https://kv.vault.azure.net/keys/k/0123abcd','value':'AAECAwQFBgcICQoLDA0ODw'}");

	assert_true(az_parse_op_result(j, strlen(j), out, &len, ver, why, sizeof(why)));
	assert_int_equal(len, 16);
	for (int i = 0; i < 16; i++)
		assert_int_equal(out[i], i);
	assert_string_equal(ver, "0123abcd");

	/* padded base64url is accepted; a kid that is no key leaves the version empty */
	j = J("{'kid':'https://kv.vault.azure.net/keys/k','value':'AAECAw=='}");
	len = sizeof(out);
	assert_true(az_parse_op_result(j, strlen(j), out, &len, ver, NULL, 0));
	assert_int_equal(len, 4);
	assert_string_equal(ver, "");
	j = J("{'value':'AAECAw'}");
	len = sizeof(out);
	assert_true(az_parse_op_result(j, strlen(j), out, &len, ver, NULL, 0));
	assert_string_equal(ver, "");
}

static void op_result_rejects_malformed(void **state)
{
	static const char *const bad[] = {
		"", "null", "{}", "{'value':null}", "{'value':12}", "{'value':''}", "{'value':'a+b/'}",
		"{'value':'!!!!'}", "{'kid':'https://h/keys/k/v'}",
	};
	uint8_t out[8];
	size_t len;
	char ver[KB_VERSION_MAX + 1], why[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *j = J(bad[i]);

		len = sizeof(out);
		why[0] = '\0';
		if (az_parse_op_result(j, strlen(j), out, &len, ver, why, sizeof(why)))
			fail_msg("accepted %s", j);
		assert_true(why[0] != '\0');
	}
	/* 9 bytes do not fit in 8 */
	const char *j = J("{'value':'AAECAwQFBgcI'}");
	len = sizeof(out);
	assert_false(az_parse_op_result(j, strlen(j), out, &len, ver, NULL, 0));
	len = sizeof(out) + 1;
	uint8_t big[9];
	assert_true(az_parse_op_result(j, strlen(j), big, &len, ver, NULL, 0));
	assert_int_equal(len, 9);
}

/* ---- token responses ---- */

static void token_lifetimes(void **state)
{
	static const struct {
		const char *json;
		int64_t life;
	} lifetimes[] = {
		/* IMDS: numbers as strings; expires_in wins over expires_on */
		{ "{'access_token':'tok','expires_in':'86399','expires_on':'1700000100','token_type':'Bearer'}", 86399 },
		/* App Service 2019-08-01: expires_on alone, in unix seconds */
		{ "{'access_token':'tok','expires_on':'1700000600','resource':'https://vault.azure.net'}", 600 },
		/* neither, or only nonsense: Entra ID's usual hour */
		{ "{'access_token':'tok','expires_in':0,'expires_on':'1600000000'}", 3600 },
		{ "{'access_token':'tok','expires_in':'soon'}", 3600 },
	};
	char *t = NULL, why[128];
	int64_t life = 0;
	const char *j;

	/* Entra ID v2: expires_in as a number */
	j = J("{'token_type':'Bearer','expires_in':3599,'ext_expires_in':3599,'access_token':'eyJ0.a-b_c.d'}");
	assert_true(az_parse_token(j, strlen(j), NOW, &t, &life, why, sizeof(why)));
	assert_string_equal(t, "eyJ0.a-b_c.d");
	assert_int_equal(life, 3599);
	az_secret_free(t);

	for (size_t i = 0; i < sizeof(lifetimes) / sizeof(lifetimes[0]); i++) {
		j = J(lifetimes[i].json);
		assert_true(az_parse_token(j, strlen(j), NOW, &t, &life, NULL, 0));
		assert_int_equal(life, lifetimes[i].life);
		az_secret_free(t);
	}
}

static void token_rejects_unusable(void **state)
{
	static const char *const bad[] = {
		"", "{", "[]", "{}", "{'access_token':null}", "{'access_token':''}", "{'access_token':42}",
		"{'access_token':'two words'}", "{'access_token':'line\\nbreak'}", "{'access_token':'tab\\there'}",
		"{'access_token':'caf\\u00e9'}", "{'error':'invalid_client','error_description':'AADSTS7000215'}",
	};
	char *t = (char *)"unset", why[128];
	int64_t life;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *j = J(bad[i]);

		why[0] = '\0';
		if (az_parse_token(j, strlen(j), NOW, &t, &life, why, sizeof(why)))
			fail_msg("accepted %s", j);
		assert_null(t);
		assert_true(why[0] != '\0');
	}
	/* 16384 characters are a token; one more is not */
	size_t cap = 16385 + 64;
	char *json = malloc(cap);
	assert_non_null(json);
	strcpy(json, "{\"access_token\":\"");
	memset(json + strlen(json), 'x', 16384);
	strcpy(json + 17 + 16384, "\"}");
	assert_true(az_parse_token(json, strlen(json), NOW, &t, &life, NULL, 0));
	assert_int_equal(strlen(t), 16384);
	az_secret_free(t);
	strcpy(json + 17 + 16384, "x\"}");
	assert_false(az_parse_token(json, strlen(json), NOW, &t, &life, NULL, 0));
	free(json);
}

/* ---- error bodies ---- */

static void error_bodies(void **state)
{
	char code[32], inner[32], msg[64];
	const char *j;

	j = J("{'error':{'code':'Forbidden','message':'Operation unwrapKey is not permitted.',"
	      "'innererror':{'code':'ForbiddenByPolicy'}}}");
	az_parse_error(j, strlen(j), code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
	assert_string_equal(code, "Forbidden");
	assert_string_equal(inner, "ForbiddenByPolicy");
	assert_string_equal(msg, "Operation unwrapKey is not permitted.");

	/* OAuth's shape, from the token endpoint */
	j = J("{'error':'invalid_client','error_description':'AADSTS7000215: Invalid client secret.'}");
	az_parse_error(j, strlen(j), code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
	assert_string_equal(code, "invalid_client");
	assert_string_equal(inner, "");
	assert_string_equal(msg, "AADSTS7000215: Invalid client secret.");

	/* a long message is cut to the buffer; control characters become spaces */
	j = J("{'error':{'code':'Throttled','message':'line one\\nline two\\u001b[31m and a great deal more text than fits in the buffer the caller gave'}}");
	az_parse_error(j, strlen(j), code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
	assert_string_equal(code, "Throttled");
	assert_int_equal(strlen(msg), sizeof(msg) - 1);
	assert_null(strchr(msg, '\n'));
	assert_null(strchr(msg, '\x1b'));
	assert_true(strncmp(msg, "line one line two", 17) == 0);
}

static void error_bodies_malformed_are_empty(void **state)
{
	static const char *const odd[] = {
		"", "<html>502 Bad Gateway</html>", "{}", "{'error':null}", "{'error':7}",
		"{'error':{'code':7,'message':['x'],'innererror':'y'}}", "[{'error':'x'}]",
	};
	char code[32] = "x", inner[32] = "x", msg[64] = "x";

	for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
		const char *j = J(odd[i]);

		az_parse_error(j, strlen(j), code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
		assert_string_equal(code, "");
		assert_string_equal(inner, "");
		assert_string_equal(msg, "");
	}
	az_parse_error(NULL, 0, code, sizeof(code), inner, sizeof(inner), msg, sizeof(msg));
	assert_string_equal(code, "");
}

/* ---- the 401 challenge ---- */

static void challenge_vault_and_mhsm(void **state)
{
	az_challenge c;

	assert_true(az_parse_challenge("Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", "
				       "resource=\"https://vault.azure.net\"", &c));
	assert_string_equal(c.authority, "https://login.microsoftonline.com");
	assert_string_equal(c.tenant, "72f988bf-86f1-41af-91ab-2d7cd011db47");
	assert_string_equal(c.resource, "https://vault.azure.net");

	/* authorization_uri and scope (with /.default), unquoted, odd case, extra params */
	assert_true(az_parse_challenge("  bearer Authorization_URI=https://login.chinacloudapi.cn/tenant.one/, "
				       "error=\"invalid_token\", scope=https://managedhsm.azure.cn/.default", &c));
	assert_string_equal(c.authority, "https://login.chinacloudapi.cn");
	assert_string_equal(c.tenant, "tenant.one");
	assert_string_equal(c.resource, "https://managedhsm.azure.cn");

	/* the emulator's: a port on both, a trailing slash on the resource */
	assert_true(az_parse_challenge("Bearer authorization=\"https://localhost:8443/dev-tenant\", "
				       "resource=\"https://vault.localhost:8443/\"", &c));
	assert_string_equal(c.authority, "https://localhost:8443");
	assert_string_equal(c.tenant, "dev-tenant");
	assert_string_equal(c.resource, "https://vault.localhost:8443");
}

static void challenge_rejects_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"Basic realm=\"x\"",
		"Bearer",
		"Bearer resource=\"https://vault.azure.net\"",                               /* no authorization */
		"Bearer authorization=\"https://login.microsoftonline.com/t\"",              /* no resource */
		"Bearer authorization=\"http://login.microsoftonline.com/t\", resource=\"https://vault.azure.net\"",
		"Bearer authorization=\"https://login.microsoftonline.com/t\", resource=\"http://vault.azure.net\"",
		"Bearer authorization=\"https://login.microsoftonline.com\", resource=\"https://vault.azure.net\"",
		"Bearer authorization=\"https://login.microsoftonline.com/\", resource=\"https://vault.azure.net\"",
		"Bearer authorization=\"https://login.microsoftonline.com/t<x>\", resource=\"https://vault.azure.net\"",
		"Bearer authorization=\"https://login.microsoftonline.com/t\", resource=\"https://\"",
		"Bearer authorization=\"https://login.microsoftonline.com/t\", resource=\"https://bad host\"",
		"Bearer authorization=\"https://login.microsoftonline.com/t, resource=\"https://vault.azure.net\"",
		"Bearer authorization=\"\", resource=\"https://vault.azure.net\"",
		"Bearer xauthorization=\"https://login.microsoftonline.com/t\", resource=\"https://vault.azure.net\"",
	};
	az_challenge c;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (az_parse_challenge(bad[i], &c))
			fail_msg("accepted %s", bad[i]);
}

static void challenge_bounds_lengths(void **state)
{
	char h[3 * AZ_URL_MAX], tenant[AZ_ID_MAX + 2];
	az_challenge c;

	memset(tenant, 't', sizeof(tenant));
	tenant[AZ_ID_MAX - 1] = '\0';
	snprintf(h, sizeof(h), "Bearer authorization=\"https://login/%s\", resource=\"https://vault.azure.net\"", tenant);
	assert_true(az_parse_challenge(h, &c));
	assert_int_equal(strlen(c.tenant), AZ_ID_MAX - 1);
	tenant[AZ_ID_MAX - 1] = 't';
	tenant[AZ_ID_MAX] = '\0';
	snprintf(h, sizeof(h), "Bearer authorization=\"https://login/%s\", resource=\"https://vault.azure.net\"", tenant);
	assert_false(az_parse_challenge(h, &c));

	/* a resource as long as the buffer is refused, not cut */
	char res[AZ_URL_MAX + 8];
	memset(res, 'r', sizeof(res));
	memcpy(res, "https://", 8);
	res[AZ_URL_MAX] = '\0';
	snprintf(h, sizeof(h), "Bearer authorization=\"https://login/t\", resource=\"%s\"", res);
	assert_false(az_parse_challenge(h, &c));
}

/* ---- Retry-After and its millisecond cousins ---- */

static void retry_after_variants(void **state)
{
	char date[64];
	time_t when = NOW + 7;
	struct tm tm;

	assert_int_equal(az_parse_retry_after("Retry-After", "5", NOW), 5000);
	assert_int_equal(az_parse_retry_after("retry-after", " 0", NOW), 0);
	assert_int_equal(az_parse_retry_after("RETRY-AFTER", "2\r\n", NOW), 2000);
	assert_int_equal(az_parse_retry_after("retry-after-ms", "1500", NOW), 1500);
	assert_int_equal(az_parse_retry_after("Retry-After-Ms", "1", NOW), 1);
	assert_int_equal(az_parse_retry_after("x-ms-retry-after-ms", "250", NOW), 250);
	assert_int_equal(az_parse_retry_after("X-MS-Retry-After-MS", "\t999 ", NOW), 999);

	/* an HTTP date, in the future and in the past */
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	assert_int_equal(az_parse_retry_after("Retry-After", date, NOW), 7000);
	when = NOW - 60;
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	assert_int_equal(az_parse_retry_after("Retry-After", date, NOW), 0);

	/* more than a day is a day */
	assert_int_equal(az_parse_retry_after("Retry-After", "999999", NOW), 86400000);
	assert_int_equal(az_parse_retry_after("retry-after-ms", "999999999999", NOW), 86400000);
	when = NOW + 30 * 86400;
	gmtime_r(&when, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	assert_int_equal(az_parse_retry_after("Retry-After", date, NOW), 86400000);
}

static void retry_after_rejects_malformed(void **state)
{
	assert_int_equal(az_parse_retry_after("Content-Length", "5", NOW), -1);
	assert_int_equal(az_parse_retry_after("retry-after-s", "5", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "-5", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "1.5", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "5 s", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "soon", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "99999999999999999999999", NOW), -1);
	assert_int_equal(az_parse_retry_after("retry-after-ms", "Sun, 06 Nov 1994 08:49:37 GMT", NOW), -1);
	assert_int_equal(az_parse_retry_after("x-ms-retry-after-ms", "0x10", NOW), -1);
	assert_int_equal(az_parse_retry_after("Retry-After", "Sun, 06 Nov 1994 08:49:37", NOW), -1);
}

static void kops_text_round_trip(void **state)
{
	char buf[64];

	az_kops_text(0, buf, sizeof(buf));
	assert_string_equal(buf, "");
	az_kops_text(AZ_KOP_WRAP | AZ_KOP_UNWRAP, buf, sizeof(buf));
	assert_string_equal(buf, "wrapKey,unwrapKey");
	az_kops_text(AZ_KOP_ENCRYPT | AZ_KOP_DECRYPT | AZ_KOP_WRAP | AZ_KOP_UNWRAP, buf, sizeof(buf));
	assert_string_equal(buf, "encrypt,decrypt,wrapKey,unwrapKey");
}

static const struct CMUnitTest tests[] = {
	CASE(kid_valid_forms, "azure - parse - key identifiers with and without version, port 443 and case folded"),
	CASE(kid_rejects_malformed, "azure - parse - key identifiers that are not https, not a key, or carry extra text are refused"),
	CASE(kid_bounds_name_and_version, "azure - parse - key identifiers bound the name at 127, the version and the host at their buffers"),
	CASE(bundle_rsa, "azure - parse - an RSA KeyBundle gives kid, kty, key_ops, n, e and every attribute"),
	CASE(bundle_oct_and_defaults, "azure - parse - an oct-HSM KeyBundle gives its key_size, and absent or odd attributes read as their defaults"),
	CASE(bundle_rejects_malformed, "azure - parse - KeyBundles without kid, version, kty, n or e, or with bad base64url, are refused"),
	CASE(bundle_bounds_modulus, "azure - parse - a KeyBundle modulus of 1024 bytes fits and 1025 is refused"),
	CASE(versions_pages_with_next_link, "azure - parse - list-versions pages append and follow nextLink until it is null"),
	CASE(versions_skip_bad_entries_and_stop_at_cap, "azure - parse - list-versions skips entries without a versioned kid and stops at the cap"),
	CASE(versions_reject_malformed, "azure - parse - list-versions without a value array or with a non-https or oversized nextLink is refused"),
	CASE(op_result_values, "azure - parse - wrapkey and unwrapkey results give the bytes and the version of the kid"),
	CASE(op_result_rejects_malformed, "azure - parse - wrapkey and unwrapkey results without a fitting base64url value are refused"),
	CASE(token_lifetimes, "azure - parse - token responses from Entra ID, IMDS and App Service give the token and its lifetime"),
	CASE(token_rejects_unusable, "azure - parse - token responses without a token a header can carry are refused"),
	CASE(error_bodies, "azure - parse - Key Vault and OAuth error bodies give code, inner code and a cleaned message"),
	CASE(error_bodies_malformed_are_empty, "azure - parse - error bodies that are not JSON errors give empty fields"),
	CASE(challenge_vault_and_mhsm, "azure - parse - the 401 challenge gives authority, tenant and resource in each spelling"),
	CASE(challenge_rejects_malformed, "azure - parse - a 401 challenge without https authority, tenant or resource is refused"),
	CASE(challenge_bounds_lengths, "azure - parse - a 401 challenge tenant or resource longer than its buffer is refused"),
	CASE(retry_after_variants, "azure - parse - Retry-After seconds and dates, retry-after-ms and x-ms-retry-after-ms give the wait"),
	CASE(retry_after_rejects_malformed, "azure - parse - malformed or unknown retry-after headers give no wait"),
	CASE(kops_text_round_trip, "azure - parse - key_ops bits print as the service names them"),
};

CASES_MAIN("azure-parse", tests, NULL, NULL)
