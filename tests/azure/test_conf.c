/*
 * test_conf.c: cmocka tests of hsm/conf.c, the [key:NAME] options of the
 * Azure backend: the key named by url or by the triplet Azure's own tools
 * use (key_vault_uri, key_name, key_version), and the cloud its host gives.
 * No I/O: az_conf_take reads options and the environment only.
 *
 * Run as: test_azure_conf NAME (one meson test() per case, tests/cases.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cases.h"

#include "az.h"

/* section builds a [key:k] of backend azure from "name", "value" pairs, NULL-ended. */
static kb_keyconf *section(kb_opt *opts, const char *pairs[])
{
	static kb_keyconf kc;
	int n = 0;

	memset(&kc, 0, sizeof(kc));
	snprintf(kc.name, sizeof(kc.name), "k");
	snprintf(kc.backend, sizeof(kc.backend), "azure");
	kc.file = "keybrokerd.conf";
	kc.line = 1;
	for (; pairs[2 * n]; n++)
		opts[n] = (kb_opt){ (char *)pairs[2 * n], (char *)pairs[2 * n + 1], n + 2, false };
	kc.opts = opts;
	kc.nopts = n;
	return &kc;
}

static kb_code take(const char *pairs[], az_conf *conf, kb_err *err)
{
	static kb_opt opts[16];

	return az_conf_take(section(opts, pairs), conf, err);
}

static void triplet_names_the_key(void **state)
{
	const char *pinned[] = { "auth", "managed_identity", "key_vault_uri", "https://contoso.vault.azure.net/",
				 "key_name", "orders-kek", "key_version", "0123456789abcdef0123456789abcdef", NULL };
	const char *latest[] = { "auth", "managed_identity", "key_vault_uri", "https://contoso.vault.azure.net",
				 "key_name", "orders-kek", NULL };
	az_conf c;
	kb_err err;

	(void)state;
	assert_int_equal(take(pinned, &c, &err), KB_OK);
	assert_string_equal(c.url.host, "contoso.vault.azure.net");
	assert_string_equal(c.url.name, "orders-kek");
	assert_string_equal(c.url.version, "0123456789abcdef0123456789abcdef");
	assert_int_equal(c.service, AZ_SVC_VAULT);
	az_conf_free(&c);
	assert_int_equal(take(latest, &c, &err), KB_OK);
	assert_string_equal(c.url.name, "orders-kek");
	assert_string_equal(c.url.version, "");
	az_conf_free(&c);
}

static void triplet_keeps_sovereign_clouds(void **state)
{
	const char *china[] = { "auth", "managed_identity", "key_vault_uri", "https://contoso.vault.azure.cn/",
				"key_name", "k", NULL };
	const char *usgov[] = { "auth", "managed_identity", "key_vault_uri",
				"https://contoso.managedhsm.usgovcloudapi.net/", "key_name", "k", NULL };
	az_conf c;
	kb_err err;

	(void)state;
	assert_int_equal(take(china, &c, &err), KB_OK);
	assert_string_equal(c.cloud, "China");
	assert_string_equal(c.resource, "https://vault.azure.cn");
	assert_string_equal(c.authority, "https://login.chinacloudapi.cn");
	az_conf_free(&c);
	assert_int_equal(take(usgov, &c, &err), KB_OK);
	assert_string_equal(c.cloud, "US Gov");
	assert_int_equal(c.service, AZ_SVC_MHSM);
	assert_string_equal(c.resource, "https://managedhsm.usgovcloudapi.net");
	assert_string_equal(c.authority, "https://login.microsoftonline.us");
	az_conf_free(&c);
}

static void triplet_and_url_together_refused(void **state)
{
	const char *both[] = { "auth", "managed_identity", "url", "https://contoso.vault.azure.net/keys/k",
			       "key_name", "k", NULL };
	az_conf c;
	kb_err err;

	(void)state;
	assert_int_equal(take(both, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "key_name"));
	assert_non_null(strstr(err.msg, "keep url, or keep the three key_* options and remove url"));
	az_conf_free(&c);
}

static void triplet_refuses_incomplete_or_misplaced_parts(void **state)
{
	const char *no_name[] = { "auth", "managed_identity", "key_vault_uri", "https://contoso.vault.azure.net/", NULL };
	const char *no_uri[] = { "auth", "managed_identity", "key_name", "k", NULL };
	const char *key_in_uri[] = { "auth", "managed_identity", "key_vault_uri",
				     "https://contoso.vault.azure.net/keys/k", "key_name", "k", NULL };
	const char *http[] = { "auth", "managed_identity", "key_vault_uri", "http://contoso.vault.azure.net/",
			       "key_name", "k", NULL };
	const char *bad_version[] = { "auth", "managed_identity", "key_vault_uri", "https://contoso.vault.azure.net/",
				      "key_name", "k", "key_version", "v1.0", NULL };
	const char *nothing[] = { "auth", "managed_identity", NULL };
	az_conf c;
	kb_err err;

	(void)state;
	assert_int_equal(take(no_name, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "key_name: missing"));
	assert_int_equal(take(no_uri, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "key_vault_uri: missing"));
	assert_int_equal(take(key_in_uri, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "the key goes in key_name"));
	assert_int_equal(take(http, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "is not a vault URI"));
	assert_int_equal(take(bad_version, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "key_vault_uri"));
	assert_non_null(strstr(err.msg, "not a key identifier"));
	assert_int_equal(take(nothing, &c, &err), KB_E_BAD_REQUEST);
	assert_non_null(strstr(err.msg, "key_vault_uri and key_name"));
	az_conf_free(&c);
}

static const struct CMUnitTest tests[] = {
	CASE(triplet_names_the_key, "azure - config - key_vault_uri, key_name and key_version name the key, a missing version means latest"),
	CASE(triplet_keeps_sovereign_clouds, "azure - config - a triplet on a China or US Gov host gets that cloud, its audience and authority"),
	CASE(triplet_and_url_together_refused, "azure - config - a key named by url and by the triplet is refused, saying which to keep"),
	CASE(triplet_refuses_incomplete_or_misplaced_parts, "azure - config - a triplet without its name or vault, or with the key in the vault URI, is refused"),
};

CASES_MAIN("azure-conf", tests, NULL, NULL)
