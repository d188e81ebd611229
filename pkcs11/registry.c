/*
 * registry.c: the process-wide list of loaded PKCS#11 modules and their
 * tokens. Several [key:...] sections may name one module and token; they
 * share one load, one C_Initialize and one login.
 *
 * libp11 loads the module and lists its slots. It keeps the function list
 * private, so the module is dlopen'ed a second time (the loader hands back
 * the same library) for the raw calls that libp11 has no API for.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libp11.h>

#include "p11.h"

typedef struct module {
	char path[PATH_MAX];    /* realpath, the registry's key */
	PKCS11_CTX *ctx;
	PKCS11_SLOT *slots;
	unsigned int nslots;
	void *dl;
	CK_FUNCTION_LIST *f;
	int refs;               /* tokens holding it */
	struct module *next;
} module;

typedef struct token {
	kb_p11_token pub;       /* first: kb_p11_token * converts to token * */
	module *mod;
	int refs;
	struct token *next;
} token;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static module *modules;
static token *tokens;

pthread_mutex_t kb_p11_create_lock = PTHREAD_MUTEX_INITIALIZER;

/* blank-padded PKCS#11 string to C string */
static void pkcs11_str(char *dst, size_t cap, const unsigned char *src, size_t len)
{
	while (len > 0 && src[len - 1] == ' ')
		len--;
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

static void module_free(module *m)
{
	if (m->ctx) {
		if (m->slots)
			PKCS11_release_all_slots(m->ctx, m->slots, m->nslots);
		PKCS11_CTX_unload(m->ctx);
		PKCS11_CTX_free(m->ctx);
	}
	if (m->dl)
		dlclose(m->dl);
	free(m);
}

/* module_drop unlinks an unused module and unloads it (C_Finalize). */
static void module_drop(module *m)
{
	for (module **pp = &modules; *pp; pp = &(*pp)->next)
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	module_free(m);
}

/* module_load loads path through libp11 and fetches the raw function list. */
static kb_code module_load(const char *path, const char *real, const char *key, module **out,
			   kb_err *err)
{
	CK_C_GetFunctionList getf;
	module *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	snprintf(m->path, sizeof(m->path), "%s", real);
	m->ctx = PKCS11_CTX_new();
	if (m->ctx == NULL || PKCS11_CTX_load(m->ctx, real) != 0) {
		if (m->ctx)
			PKCS11_CTX_free(m->ctx);
		m->ctx = NULL;
		module_free(m);
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: cannot load PKCS#11 module %s: check the module path and that its configuration (e.g. SOFTHSM2_CONF) is readable",
				  key, path);
	}
	m->dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
	getf = m->dl ? (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList") : NULL;
	if (getf == NULL || getf(&m->f) != CKR_OK || m->f == NULL) {
		module_free(m);
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: %s has no usable C_GetFunctionList: is it a PKCS#11 module?", key, path);
	}
	if (PKCS11_enumerate_slots(m->ctx, &m->slots, &m->nslots) != 0) {
		m->slots = NULL;
		module_free(m);
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "key %s: cannot list the slots of %s", key, path);
	}
	*out = m;
	return KB_OK;
}

/* module_find_token returns the first initialized token matching uri. */
static bool module_find_token(module *m, P11KitUri *uri, CK_SLOT_ID *slot_id, CK_TOKEN_INFO *ti)
{
	CK_INFO mi;

	if (m->f->C_GetInfo(&mi) != CKR_OK || !p11_kit_uri_match_module_info(uri, &mi))
		return false;
	for (unsigned int i = 0; i < m->nslots; i++) {
		PKCS11_SLOT *s = &m->slots[i];
		CK_SLOT_ID id = PKCS11_get_slotid_from_slot(s);
		CK_SLOT_INFO si;

		if (s->token == NULL || !s->token->initialized)
			continue;
		if (m->f->C_GetSlotInfo(id, &si) != CKR_OK || !p11_kit_uri_match_slot_info(uri, &si))
			continue;
		if (m->f->C_GetTokenInfo(id, ti) != CKR_OK || !p11_kit_uri_match_token_info(uri, ti))
			continue;
		*slot_id = id;
		return true;
	}
	return false;
}

static void library_describe(module *m, char *buf, size_t cap)
{
	CK_INFO mi;
	char desc[33];

	if (m->f->C_GetInfo(&mi) != CKR_OK) {
		snprintf(buf, cap, "unknown");
		return;
	}
	pkcs11_str(desc, sizeof(desc), mi.libraryDescription, sizeof(mi.libraryDescription));
	snprintf(buf, cap, "%s %u.%u", desc, mi.libraryVersion.major, mi.libraryVersion.minor);
}

static kb_code token_find(const kb_p11_conf *conf, const char *key, token **out, kb_err *err)
{
	char real[PATH_MAX];
	CK_TOKEN_INFO ti;
	CK_SLOT_ID slot_id;
	module *m;
	token *t;
	kb_code rc;

	if (realpath(conf->module, real) == NULL)
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: PKCS#11 module %s not found: install it or fix module", key, conf->module);
	for (m = modules; m; m = m->next)
		if (strcmp(m->path, real) == 0)
			break;
	if (m == NULL) {
		rc = module_load(conf->module, real, key, &m, err);
		if (rc != KB_OK)
			return rc;
		m->next = modules;
		modules = m;
	}
	if (!module_find_token(m, conf->uri, &slot_id, &ti)) {
		rc = kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				"key %s: module %s has no initialized token matching %s: check token= in uri (pkcs11-tool --module %s --list-tokens)",
				key, conf->module, conf->uri_text, conf->module);
		goto unused;
	}
	for (t = tokens; t; t = t->next)
		if (t->mod == m && t->pub.slot_id == slot_id) {
			t->refs++;
			*out = t;
			return KB_OK;
		}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		rc = kb_err_set(err, KB_E_INTERNAL, "out of memory");
		goto unused;
	}
	t->pub.f = m->f;
	t->pub.slot_id = slot_id;
	pkcs11_str(t->pub.label, sizeof(t->pub.label), ti.label, sizeof(ti.label));
	pkcs11_str(t->pub.serial, sizeof(t->pub.serial), ti.serialNumber, sizeof(ti.serialNumber));
	library_describe(m, t->pub.library, sizeof(t->pub.library));
	t->pub.module = m->path;
	pthread_mutex_init(&t->pub.login_lock, NULL);
	t->mod = m;
	t->refs = 1;
	m->refs++;
	t->next = tokens;
	tokens = t;
	*out = t;
	return KB_OK;
unused:
	if (m->refs == 0)
		module_drop(m);
	return rc;
}

kb_code kb_p11_token_acquire(const kb_p11_conf *conf, const char *key, kb_p11_token **tok,
			     kb_err *err)
{
	token *t = NULL;
	kb_code rc;

	pthread_mutex_lock(&registry_lock);
	rc = token_find(conf, key, &t, err);
	pthread_mutex_unlock(&registry_lock);
	*tok = rc == KB_OK ? &t->pub : NULL;
	return rc;
}

void kb_p11_token_release(kb_p11_token *tok)
{
	token *t = (token *)tok;
	module *m;

	if (t == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	if (--t->refs > 0)
		goto out;
	for (token **pp = &tokens; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	m = t->mod;
	pthread_mutex_destroy(&t->pub.login_lock);
	free(t);
	if (--m->refs == 0)
		module_drop(m);
out:
	pthread_mutex_unlock(&registry_lock);
}
