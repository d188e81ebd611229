/*
 * fixture.h: a fresh SoftHSM token per test process, and keys opened on it
 * through kb_pkcs11_backend exactly as the core opens them.
 *
 * The token comes from scripts/softhsm-token (path in KB_SOFTHSM_TOKEN): an
 * RSA-2048 key labelled rsa-kek and an AES-256 key labelled aes-kek, both
 * with CKA_ID 01, on a token labelled keybroker.
 */
#ifndef KB_TEST_P11_FIXTURE_H
#define KB_TEST_P11_FIXTURE_H

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "backend.h"
#include "pkcs11.h"

#define FX_NSLOTS 5 /* 4 workers and the control slot */
#define FX_CONTROL (FX_NSLOTS - 1)
#define FX_MAX_OPTS 8

typedef struct fx {
	char dir[PATH_MAX];
	char pin_file[PATH_MAX + 16];
	const char *module;
} fx;

/* A [key:NAME] section built in memory. */
typedef struct fx_key {
	kb_keyconf kc;
	kb_opt opts[FX_MAX_OPTS];
	void *state;
} fx_key;

/* cmocka group setup/teardown: make and remove the token. */
int fx_setup(void **state);
int fx_teardown(void **state);

/* fx_conf fills k with module, uri (pkcs11:token=keybroker;object=LABEL) and pin_file. */
void fx_conf(const fx *f, fx_key *k, const char *name, const char *label);

/* fx_opt sets (or adds) option name = value in k. */
void fx_opt(fx_key *k, const char *name, const char *value);

/* fx_drop removes option name from k. */
void fx_drop(fx_key *k, const char *name);

/* fx_open opens k; fx_open_ok asserts success. */
kb_code fx_open(fx_key *k, kb_err *err);
void fx_open_ok(const fx *f, fx_key *k, const char *name, const char *label);
void fx_close(fx_key *k);

/* fx_sh runs a shell command (printf-style) and returns its exit status. */
int fx_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* fx_export_pin puts the user PIN in the environment as KB_PIN, for pkcs11-tool env:KB_PIN. */
void fx_export_pin(const fx *f);

/* P11TOOL is pkcs11-tool logged in to the fixture's token (after fx_export_pin); %s is the module. */
#define P11TOOL "pkcs11-tool --module '%s' --token-label keybroker --login --pin env:KB_PIN"

/* round trip helpers: assert success and return lengths */
size_t fx_wrap(fx_key *k, int slot, const char *version, kb_alg alg, const uint8_t *pt, size_t n,
	       uint8_t *ct, char version_out[KB_VERSION_MAX + 1]);
size_t fx_unwrap(fx_key *k, int slot, const char *version, kb_alg alg, const uint8_t *ct, size_t n,
		 uint8_t *pt);

#endif
