/* test_open.c: options, login and key lookup at open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "tests.h"

void test_wrong_pin(void **state)
{
	kb_err err;
	fx_key k;

	setenv("KB_TEST_WRONG_PIN", "not-the-pin", 1);
	fx_conf(*state, &k, "kek", "rsa-kek");
	fx_drop(&k, "pin_file");
	fx_opt(&k, "pin_env", "KB_TEST_WRONG_PIN");
	assert_int_equal(fx_open(&k, &err), KB_E_AUTH_FAILED);
	assert_non_null(strstr(err.msg, "pin_env KB_TEST_WRONG_PIN"));
	assert_null(strstr(err.msg, "not-the-pin"));
	assert_null(k.state);
	fx_close(&k);

	/* an unset variable is named too */
	fx_conf(*state, &k, "kek", "rsa-kek");
	fx_drop(&k, "pin_file");
	fx_opt(&k, "pin_env", "KB_TEST_NO_SUCH_VAR");
	assert_int_equal(fx_open(&k, &err), KB_E_AUTH_FAILED);
	assert_non_null(strstr(err.msg, "KB_TEST_NO_SUCH_VAR"));
	fx_close(&k);

	/* and the right PIN from the environment works */
	fx_export_pin(*state);
	fx_conf(*state, &k, "kek", "rsa-kek");
	fx_drop(&k, "pin_file");
	fx_opt(&k, "pin_env", "KB_PIN");
	assert_int_equal(fx_open(&k, &err), KB_OK);
	fx_close(&k);
}

void test_missing_label(void **state)
{
	kb_err err;
	fx_key k;

	fx_conf(*state, &k, "kek", "no-such-kek");
	assert_int_equal(fx_open(&k, &err), KB_E_UNKNOWN_KEY);
	assert_non_null(strstr(err.msg, "no-such-kek"));
	assert_non_null(strstr(err.msg, "token keybroker"));
	assert_non_null(strstr(err.msg, "test.conf:9: [key:kek]"));
	fx_close(&k);

	fx_conf(*state, &k, "kek", "rsa-kek");
	fx_opt(&k, "uri", "pkcs11:token=no-such-token;object=rsa-kek");
	assert_int_equal(fx_open(&k, &err), KB_E_BACKEND_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "no-such-token"));
	fx_close(&k);

	fx_conf(*state, &k, "kek", "rsa-kek");
	fx_opt(&k, "module", "/nonexistent/libpkcs11.so");
	assert_int_equal(fx_open(&k, &err), KB_E_BACKEND_UNAVAILABLE);
	assert_non_null(strstr(err.msg, "/nonexistent/libpkcs11.so"));
	fx_close(&k);
}

/*
 * A SoftHSM that reads another token directory (SOFTHSM2_CONF unset or
 * wrong) has no initialized token: the message names SOFTHSM2_CONF, not the uri.
 */
void test_softhsm_conf_named(void **state)
{
	fx *f = *state;
	char dir[PATH_MAX + 16], conf[PATH_MAX + 32], saved[PATH_MAX + 32];
	kb_err err;
	fx_key k;
	FILE *fp;

	snprintf(saved, sizeof(saved), "%s", getenv("SOFTHSM2_CONF"));
	snprintf(dir, sizeof(dir), "%s/empty", f->dir);
	assert_int_equal(fx_sh("mkdir -p '%s/tokens'", dir), 0);
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
	fp = fopen(conf, "w");
	assert_non_null(fp);
	fprintf(fp, "directories.tokendir = %s/tokens\nobjectstore.backend = file\n", dir);
	fclose(fp);
	setenv("SOFTHSM2_CONF", conf, 1);

	fx_conf(f, &k, "kek", "rsa-kek");
	assert_int_equal(fx_open(&k, &err), KB_E_BACKEND_UNAVAILABLE);
	if (strstr(err.msg, "SOFTHSM2_CONF is ") == NULL || strstr(err.msg, conf) == NULL ||
	    strstr(err.msg, "token directory") == NULL || strstr(err.msg, "check token=") != NULL)
		fail_msg("want the token directory and SOFTHSM2_CONF named, not the uri: %s", err.msg);
	fx_close(&k);
	setenv("SOFTHSM2_CONF", saved, 1);
}

/* open_bad asserts that open fails with a config error about option. */
static void open_bad(fx_key *k, const char *option, const char *why)
{
	char want[128];
	kb_err err;

	assert_int_equal(fx_open(k, &err), KB_E_BAD_REQUEST);
	snprintf(want, sizeof(want), "[key:kek] %s:", option);
	if (strstr(err.msg, want) == NULL || strstr(err.msg, why) == NULL)
		fail_msg("want '%s' and '%s' in: %s", want, why, err.msg);
	assert_non_null(strstr(err.msg, "test.conf:"));
	fx_close(k);
}

void test_options(void **state)
{
	/* one option set (or dropped: value NULL) on a good key, refused naming it and saying says */
	static const struct {
		const char *name, *value, *says;
	} bad[] = {
		{ "uri", "pkcs11:token=keybroker;object=rsa-kek?pin-value=1234", "pin_file" },
		{ "uri", "pkcs11:token=keybroker;object=rsa-kek?pin-source=file:/tmp/pin", "PIN in the URI" },
		{ "uri", "pkcs11:token=keybroker", "object=" },
		{ "uri", "https://vault.example/keys/x", "not a PKCS#11 URI" },
		{ "module", NULL, "missing" },
		{ "pin_env", "KB_PIN", "exactly one" },
		{ "pin_file", NULL, "exactly one" },
	};
	fx *f = *state;
	kb_err err;
	fx_key k;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fx_conf(f, &k, "kek", "rsa-kek");
		if (bad[i].value != NULL)
			fx_opt(&k, bad[i].name, bad[i].value);
		else
			fx_drop(&k, bad[i].name);
		open_bad(&k, bad[i].name, bad[i].says);
	}

	/* the backend takes its own options and leaves unknown ones to the core */
	fx_conf(f, &k, "kek", "rsa-kek");
	fx_opt(&k, "frobnicate", "yes");
	assert_int_equal(fx_open(&k, &err), KB_OK);
	for (int i = 0; i < k.kc.nopts; i++)
		assert_int_equal(k.opts[i].taken, strcmp(k.opts[i].name, "frobnicate") != 0);
	fx_close(&k);

	/* a PIN file with CRLF works; the PIN never shows in messages */
	fx_export_pin(f);
	assert_int_equal(fx_sh("printf '%%s\\r\\n' \"$KB_PIN\" > '%s/crlf.pin'", f->dir), 0);
	char crlf[PATH_MAX + 16];
	snprintf(crlf, sizeof(crlf), "%s/crlf.pin", f->dir);
	fx_conf(f, &k, "kek", "aes-kek");
	fx_opt(&k, "pin_file", crlf);
	assert_int_equal(fx_open(&k, &err), KB_OK);
	fx_close(&k);
}
