/* conf.c: the [key:NAME] options of the PKCS#11 backend, and the PIN. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "p11.h"

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* take_uri parses uri and keeps the object label; a PIN never rides in it. */
static kb_code take_uri(kb_keyconf *kc, kb_p11_conf *conf, const char *text, kb_err *err)
{
	CK_ATTRIBUTE *a;
	int rc;

	conf->uri = p11_kit_uri_new();
	if (conf->uri == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	rc = p11_kit_uri_parse(text, P11_KIT_URI_FOR_ANY, conf->uri);
	if (rc != P11_KIT_URI_OK)
		return kb_keyconf_bad(kc, "uri", err, "not a PKCS#11 URI (%s), e.g. pkcs11:token=keybroker;object=rsa-kek",
				      p11_kit_uri_message(rc));
	if (p11_kit_uri_get_pin_value(conf->uri) != NULL || p11_kit_uri_get_pin_source(conf->uri) != NULL)
		return kb_keyconf_bad(kc, "uri", err,
				      "a PIN in the URI (pin-value/pin-source) is not accepted: put it in a file named by pin_file, or in the environment variable named by pin_env");
	if (p11_kit_uri_get_attribute(conf->uri, CKA_ID) != NULL)
		return kb_keyconf_bad(kc, "uri", err,
				      "id= is not allowed: the key's versions are its objects' CKA_IDs; name the key by object= alone");
	a = p11_kit_uri_get_attribute(conf->uri, CKA_LABEL);
	if (a == NULL || a->ulValueLen == 0)
		return kb_keyconf_bad(kc, "uri", err, "names no key: add object=LABEL, e.g. pkcs11:token=keybroker;object=rsa-kek");
	conf->label = strndup(a->pValue, a->ulValueLen);
	conf->uri_text = strdup(text);
	if (conf->label == NULL || conf->uri_text == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	return KB_OK;
}

kb_code kb_p11_conf_take(kb_keyconf *kc, kb_p11_conf *conf, kb_err *err)
{
	const char *module = kb_keyconf_take(kc, "module", NULL);
	const char *uri = kb_keyconf_take(kc, "uri", NULL);
	const char *pin_file = kb_keyconf_take(kc, "pin_file", NULL);
	const char *pin_env = kb_keyconf_take(kc, "pin_env", NULL);
	kb_code rc;

	memset(conf, 0, sizeof(*conf));
	if (module == NULL || *module == '\0')
		return kb_keyconf_bad(kc, "module", err, "missing: set it to the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so");
	if (uri == NULL || *uri == '\0')
		return kb_keyconf_bad(kc, "uri", err, "missing: set it to the key's PKCS#11 URI, e.g. pkcs11:token=keybroker;object=rsa-kek");
	if ((pin_file == NULL) == (pin_env == NULL))
		return kb_keyconf_bad(kc, pin_file ? "pin_env" : "pin_file", err,
				      "set exactly one of pin_file (a file holding the user PIN) and pin_env (an environment variable holding it)");
	if (pin_file && *pin_file == '\0')
		return kb_keyconf_bad(kc, "pin_file", err, "empty: name the file holding the user PIN");
	if (pin_env && *pin_env == '\0')
		return kb_keyconf_bad(kc, "pin_env", err, "empty: name the environment variable holding the user PIN");
	rc = take_uri(kc, conf, uri, err);
	if (rc != KB_OK)
		goto fail;
	conf->module = strdup(module);
	conf->pin.file = dup_or_null(pin_file);
	conf->pin.env = dup_or_null(pin_env);
	if (conf->module == NULL || (pin_file && conf->pin.file == NULL) || (pin_env && conf->pin.env == NULL)) {
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
		goto fail;
	}
	if (conf->pin.file) {
		char detail[512], fix[512];

		/* doctor reports the same; startup and --check must not stay silent */
		if (kb_p11_pin_file_check(&conf->pin, detail, fix, sizeof(detail)) == KB_P11_PIN_FILE_EXPOSED)
			kb_warn("key %s: %s: %s", kc->name, detail, fix);
	}
	return KB_OK;
fail:
	kb_p11_conf_free(conf);
	return rc;
}

kb_p11_pin_file kb_p11_pin_file_check(const kb_p11_pin_src *src, char *detail, char *fix, size_t cap)
{
	struct stat st;

	*detail = *fix = '\0';
	if (src->file == NULL)
		return KB_P11_PIN_FILE_NONE;
	if (stat(src->file, &st) != 0) {
		snprintf(detail, cap, "pin_file %s cannot be read: %s", src->file, strerror(errno));
		snprintf(fix, cap, "create it holding the token's user PIN, mode 0600");
		return KB_P11_PIN_FILE_MISSING;
	}
	snprintf(detail, cap, "pin_file %s, mode %04o", src->file, (unsigned)(st.st_mode & 07777));
	if (st.st_mode & 077) {
		snprintf(fix, cap, "chmod 600 %s: other users can read the PIN", src->file);
		return KB_P11_PIN_FILE_EXPOSED;
	}
	return KB_P11_PIN_FILE_PRIVATE;
}

void kb_p11_conf_free(kb_p11_conf *conf)
{
	if (conf->uri)
		p11_kit_uri_free(conf->uri);
	free(conf->module);
	free(conf->uri_text);
	free(conf->label);
	free(conf->pin.file);
	free(conf->pin.env);
	memset(conf, 0, sizeof(*conf));
}

void kb_p11_pin_describe(const kb_p11_pin_src *src, char *buf, size_t cap)
{
	if (src->file)
		snprintf(buf, cap, "pin_file %s", src->file);
	else
		snprintf(buf, cap, "pin_env %s", src->env ? src->env : "");
}

kb_code kb_p11_pin_read(const kb_p11_pin_src *src, const char *key, char *pin, size_t cap,
			kb_err *err)
{
	size_t len = 0;

	if (src->env) {
		const char *v = getenv(src->env);

		if (v == NULL)
			return kb_err_set(err, KB_E_AUTH_FAILED,
					  "key %s: environment variable %s (pin_env) is not set: export it with the token's user PIN",
					  key, src->env);
		len = strlen(v);
		if (len >= cap)
			return kb_err_set(err, KB_E_AUTH_FAILED, "key %s: the PIN in %s is longer than %zu bytes",
					  key, src->env, cap - 1);
		memcpy(pin, v, len);
	} else {
		int fd = open(src->file, O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			return kb_err_set(err, KB_E_AUTH_FAILED, "key %s: cannot read pin_file %s: %s",
					  key, src->file, strerror(errno));
		do
			n = read(fd, pin, cap);
		while (n < 0 && errno == EINTR);
		close(fd);
		if (n < 0)
			return kb_err_set(err, KB_E_AUTH_FAILED, "key %s: cannot read pin_file %s: %s",
					  key, src->file, strerror(errno));
		len = (size_t)n;
		if (len >= cap) {
			OPENSSL_cleanse(pin, cap);
			return kb_err_set(err, KB_E_AUTH_FAILED, "key %s: pin_file %s holds more than %zu bytes",
					  key, src->file, cap - 1);
		}
	}
	if (len > 0 && pin[len - 1] == '\n')
		len--;
	if (len > 0 && pin[len - 1] == '\r')
		len--;
	pin[len] = '\0';
	return KB_OK;
}
