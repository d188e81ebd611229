#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

int fx_setup(void **state)
{
	const char *script = getenv("KB_SOFTHSM_TOKEN");
	char conf[PATH_MAX + 32];
	fx *f = calloc(1, sizeof(*f));

	if (f == NULL || script == NULL)
		return -1;
	f->module = getenv("KB_SOFTHSM_MODULE");
	if (f->module == NULL)
		f->module = "/usr/lib/softhsm/libsofthsm2.so";
	snprintf(f->dir, sizeof(f->dir), "%s/kb-p11-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	if (fx_sh("KB_SOFTHSM_MODULE='%s' '%s' '%s' >/dev/null", f->module, script, f->dir) != 0)
		return -1;
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", f->dir);
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(f->pin_file, sizeof(f->pin_file), "%s/user.pin", f->dir);
	*state = f;
	return 0;
}

int fx_teardown(void **state)
{
	fx *f = *state;

	if (f && f->dir[0] && getenv("KB_KEEP_TOKEN") == NULL)
		fx_sh("rm -rf '%s'", f->dir);
	free(f);
	return 0;
}

int fx_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

void fx_export_pin(const fx *f)
{
	char pin[256] = "";
	FILE *fp = fopen(f->pin_file, "r");

	assert_non_null(fp);
	assert_non_null(fgets(pin, sizeof(pin), fp));
	fclose(fp);
	pin[strcspn(pin, "\n")] = '\0';
	setenv("KB_PIN", pin, 1);
}

void fx_opt(fx_key *k, const char *name, const char *value)
{
	for (int i = 0; i < k->kc.nopts; i++)
		if (strcmp(k->opts[i].name, name) == 0) {
			free(k->opts[i].value);
			k->opts[i].value = strdup(value);
			return;
		}
	assert_true(k->kc.nopts < FX_MAX_OPTS);
	k->opts[k->kc.nopts] = (kb_opt){ strdup(name), strdup(value), 10 + k->kc.nopts, false };
	k->kc.nopts++;
}

void fx_drop(fx_key *k, const char *name)
{
	for (int i = 0; i < k->kc.nopts; i++)
		if (strcmp(k->opts[i].name, name) == 0) {
			free(k->opts[i].name);
			free(k->opts[i].value);
			memmove(&k->opts[i], &k->opts[i + 1], (size_t)(k->kc.nopts - i - 1) * sizeof(kb_opt));
			k->kc.nopts--;
			return;
		}
}

void fx_conf(const fx *f, fx_key *k, const char *name, const char *label)
{
	char uri[256];

	memset(k, 0, sizeof(*k));
	snprintf(k->kc.name, sizeof(k->kc.name), "%s", name);
	k->kc.file = "test.conf";
	k->kc.line = 9;
	snprintf(k->kc.backend, sizeof(k->kc.backend), "pkcs11");
	k->kc.opts = k->opts;
	snprintf(uri, sizeof(uri), "pkcs11:token=keybroker;object=%s", label);
	fx_opt(k, "module", f->module);
	fx_opt(k, "uri", uri);
	fx_opt(k, "pin_file", f->pin_file);
}

kb_code fx_open(fx_key *k, kb_err *err)
{
	kb_err_clear(err);
	return kb_pkcs11_backend.open(&k->kc, FX_NSLOTS, &k->state, err);
}

void fx_open_ok(const fx *f, fx_key *k, const char *name, const char *label)
{
	kb_err err;
	kb_code rc;

	fx_conf(f, k, name, label);
	rc = fx_open(k, &err);
	if (rc != KB_OK)
		fail_msg("open %s: %s: %s", name, kb_code_name(rc), err.msg);
}

void fx_close(fx_key *k)
{
	kb_pkcs11_backend.close(k->state);
	k->state = NULL;
	for (int i = 0; i < k->kc.nopts; i++) {
		free(k->opts[i].name);
		free(k->opts[i].value);
	}
	k->kc.nopts = 0;
}

size_t fx_wrap(fx_key *k, int slot, const char *version, kb_alg alg, const uint8_t *pt, size_t n,
	       uint8_t *ct, char version_out[KB_VERSION_MAX + 1])
{
	size_t ctlen = KB_WRAPPED_MAX;
	kb_alg used;
	kb_err err;
	kb_code rc = kb_pkcs11_backend.wrap(k->state, slot, version, alg, pt, n, ct, &ctlen, version_out,
					    &used, &err);

	if (rc != KB_OK)
		fail_msg("wrap %zu bytes: %s: %s", n, kb_code_name(rc), err.msg);
	return ctlen;
}

size_t fx_unwrap(fx_key *k, int slot, const char *version, kb_alg alg, const uint8_t *ct, size_t n,
		 uint8_t *pt)
{
	size_t ptlen = KB_SECRET_MAX;
	kb_err err;
	kb_code rc = kb_pkcs11_backend.unwrap(k->state, slot, version, alg, ct, n, pt, &ptlen, &err);

	if (rc != KB_OK)
		fail_msg("unwrap version %s: %s: %s", version, kb_code_name(rc), err.msg);
	return ptlen;
}
