/*
 * registry.c: the process-wide list of loaded PKCS#11 modules and their
 * tokens. Several [key:...] sections may name one module and token; they
 * share one load, one C_Initialize and one login.
 *
 * Each module is dlopen'ed once and asked for its function list once, and
 * that one list serves every call. A second C_GetFunctionList is not
 * guaranteed to return the same list: p11-kit-client.so and p11-kit-proxy.so
 * hand out a fresh, uninitialized list per call. (libp11 keeps its list
 * private, so it cannot share it; the slot walk is a few raw calls.)
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "p11.h"

#define SLOTS_MAX 64

typedef struct module {
	char path[PATH_MAX];    /* realpath, the registry's key */
	void *dl;
	CK_FUNCTION_LIST *f;
	bool finalize;          /* we initialized it, so we finalize it */
	int refs;               /* tokens holding it */
	/*
	 * held to read by every call into the module, to write by a revive
	 * (C_Finalize and C_Initialize again), which no call may overlap
	 */
	pthread_rwlock_t use;
	int64_t revived_ms;     /* the last revive (monotonic), at most one a second */
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
	if (m->f && m->finalize)
		m->f->C_Finalize(NULL);
	if (m->dl)
		dlclose(m->dl);
	pthread_rwlock_destroy(&m->use);
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

/* init_hint says what a module's failed C_Initialize most likely needs. */
static const char *init_hint(const char *path)
{
	if (strstr(path, "p11-kit-client"))
		return "set P11_KIT_SERVER_ADDRESS to the address p11-kit server printed, and check that the server runs";
	if (strstr(path, "softhsm"))
		return "set SOFTHSM2_CONF to a readable softhsm2.conf whose directories.tokendir exists";
	if (strstr(path, "tpm2"))
		return "set TPM2_PKCS11_TCTI to a reachable TPM (e.g. swtpm:port=2321) and TPM2_PKCS11_STORE to a writable directory";
	return "check the module's own configuration and its documentation";
}

/*
 * init_use_lock prefers a waiting writer, so that a revive is not starved by
 * a steady stream of calls; no thread ever takes the read side twice.
 */
static void init_use_lock(pthread_rwlock_t *l)
{
	pthread_rwlockattr_t a;

	pthread_rwlockattr_init(&a);
	pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(l, &a);
	pthread_rwlockattr_destroy(&a);
}

/* module_load opens path, takes its one function list and initializes it. */
static kb_code module_load(const char *path, const char *real, const char *key, module **out,
			   kb_err *err)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_C_GetFunctionList getf;
	module *m = calloc(1, sizeof(*m));
	const char *rvs;
	CK_RV rv;

	if (m == NULL)
		return kb_err_set(err, KB_E_INTERNAL, "out of memory");
	init_use_lock(&m->use);
	snprintf(m->path, sizeof(m->path), "%s", real);
	m->dl = dlopen(real, RTLD_NOW | RTLD_LOCAL);
	if (m->dl == NULL) {
		kb_err_set(err, KB_E_BACKEND_UNAVAILABLE, "key %s: cannot load PKCS#11 module %s: %s", key,
			   path, dlerror());
		module_free(m);
		return err->code;
	}
	getf = (CK_C_GetFunctionList)dlsym(m->dl, "C_GetFunctionList");
	if (getf == NULL || getf(&m->f) != CKR_OK || m->f == NULL) {
		m->f = NULL;
		module_free(m);
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: %s has no usable C_GetFunctionList: is it a PKCS#11 module?", key, path);
	}
	rv = m->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		rvs = kb_p11_rv_name(rv);
		kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
			   "key %s: PKCS#11 module %s failed to initialize (%s%s from C_Initialize): %s", key,
			   path, rvs ? rvs : "CKR ", rvs ? "" : "error", init_hint(path));
		m->f = NULL;
		module_free(m);
		return err->code;
	}
	m->finalize = rv == CKR_OK; /* someone else in the process owns an earlier init */
	*out = m;
	return KB_OK;
}

/* A module's tokens, as seen when none matched: for the message. */
typedef struct survey {
	int initialized;
	char labels[256];       /* "a, b" of the initialized tokens */
} survey;

static bool uri_matches_token(module *m, P11KitUri *uri, CK_SLOT_ID id, CK_TOKEN_INFO *ti)
{
	CK_SLOT_INFO si;

	return m->f->C_GetSlotInfo(id, &si) == CKR_OK && p11_kit_uri_match_slot_info(uri, &si) &&
	       p11_kit_uri_match_token_info(uri, ti);
}

/*
 * module_find_token returns the first initialized token matching uri, or
 * fills s with what the module does have.
 */
static bool module_find_token(module *m, P11KitUri *uri, CK_SLOT_ID *slot_id, CK_TOKEN_INFO *ti,
			      survey *s)
{
	CK_SLOT_ID ids[SLOTS_MAX];
	CK_ULONG n = SLOTS_MAX;
	CK_INFO mi;
	size_t off = 0;

	memset(s, 0, sizeof(*s));
	if (m->f->C_GetInfo(&mi) != CKR_OK || !p11_kit_uri_match_module_info(uri, &mi))
		return false;
	if (m->f->C_GetSlotList(CK_TRUE, ids, &n) != CKR_OK)
		return false;
	for (CK_ULONG i = 0; i < n; i++) {
		char label[33];

		if (m->f->C_GetTokenInfo(ids[i], ti) != CKR_OK || !(ti->flags & CKF_TOKEN_INITIALIZED))
			continue;
		if (uri_matches_token(m, uri, ids[i], ti)) {
			*slot_id = ids[i];
			return true;
		}
		pkcs11_str(label, sizeof(label), ti->label, sizeof(ti->label));
		if (off < sizeof(s->labels))
			off += (size_t)snprintf(s->labels + off, sizeof(s->labels) - off, "%s%s",
						s->initialized ? ", " : "", label);
		s->initialized++;
	}
	return false;
}

/* is_softhsm tells SoftHSM by its manufacturer, whatever the file is called. */
static bool is_softhsm(module *m)
{
	CK_INFO mi;
	char man[33];

	if (m->f->C_GetInfo(&mi) != CKR_OK)
		return false;
	pkcs11_str(man, sizeof(man), mi.manufacturerID, sizeof(mi.manufacturerID));
	return strstr(man, "SoftHSM") != NULL;
}

/*
 * no_token_error names the likeliest cause of a missing token: an empty
 * token directory (SoftHSM), an unreachable server (p11-kit remoting), an
 * uninitialized token, or the uri.
 */
static kb_code no_token_error(module *m, const kb_p11_conf *conf, const char *key, const survey *s,
			      kb_err *err)
{
	const char *mod = conf->module, *conf_env = getenv("SOFTHSM2_CONF");
	char env[PATH_MAX + 64];

	if (is_softhsm(m)) {
		if (conf_env)
			snprintf(env, sizeof(env), "SOFTHSM2_CONF is %s", conf_env);
		else
			snprintf(env, sizeof(env), "SOFTHSM2_CONF is unset, so SoftHSM reads /etc/softhsm/softhsm2.conf");
		if (s->initialized == 0)
			return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
					  "key %s: SoftHSM (%s) has no initialized token in its token directory (%s): set SOFTHSM2_CONF to the softhsm2.conf whose directories.tokendir holds the token, e.g. DIR/softhsm2.conf from scripts/softhsm-token",
					  key, mod, env);
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: SoftHSM (%s) has no token matching %s; it has %s (%s): check token= in uri, or point SOFTHSM2_CONF at the right token directory",
				  key, mod, conf->uri_text, s->labels, env);
	}
	if (strstr(m->path, "p11-kit-client") && s->initialized == 0)
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: %s reaches no initialized token (P11_KIT_SERVER_ADDRESS is %s): start p11-kit server --provider MODULE and set P11_KIT_SERVER_ADDRESS to the address it prints",
				  key, mod, getenv("P11_KIT_SERVER_ADDRESS") ? getenv("P11_KIT_SERVER_ADDRESS") : "unset");
	if (s->initialized == 0)
		return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
				  "key %s: module %s has no initialized token: initialize one (pkcs11-tool --module %s --init-token --label LABEL --so-pin env:VAR) and check the module's configuration",
				  key, mod, mod);
	return kb_err_set(err, KB_E_BACKEND_UNAVAILABLE,
			  "key %s: module %s has no initialized token matching %s; it has %s: check token= in uri (pkcs11-tool --module %s --list-tokens)",
			  key, mod, conf->uri_text, s->labels, mod);
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
	survey sv;
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
	if (!module_find_token(m, conf->uri, &slot_id, &ti, &sv)) {
		rc = no_token_error(m, conf, key, &sv, err);
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

void kb_p11_token_enter(kb_p11_token *tok)
{
	pthread_rwlock_rdlock(&((token *)tok)->mod->use);
}

void kb_p11_token_leave(kb_p11_token *tok)
{
	pthread_rwlock_unlock(&((token *)tok)->mod->use);
}

CK_RV kb_p11_token_present(kb_p11_token *tok)
{
	CK_TOKEN_INFO ti;
	char serial[sizeof(tok->serial)];
	CK_RV rv = tok->f->C_GetTokenInfo(tok->slot_id, &ti);

	if (rv != CKR_OK)
		return rv;
	pkcs11_str(serial, sizeof(serial), ti.serialNumber, sizeof(ti.serialNumber));
	/* another token in the slot is not ours */
	return strcmp(serial, tok->serial) == 0 ? CKR_OK : CKR_TOKEN_NOT_PRESENT;
}

/* refind looks for t's token (by serial and label) among m's slots after a revive. */
static bool refind(module *m, token *t)
{
	CK_SLOT_ID slots[SLOTS_MAX];
	CK_ULONG n = SLOTS_MAX;
	CK_TOKEN_INFO ti;
	char serial[sizeof(t->pub.serial)], label[sizeof(t->pub.label)];

	if (m->f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return false;
	for (CK_ULONG i = 0; i < n; i++) {
		if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		pkcs11_str(serial, sizeof(serial), ti.serialNumber, sizeof(ti.serialNumber));
		pkcs11_str(label, sizeof(label), ti.label, sizeof(ti.label));
		if (strcmp(serial, t->pub.serial) == 0 && strcmp(label, t->pub.label) == 0) {
			t->pub.slot_id = slots[i];
			return true;
		}
	}
	return false;
}

bool kb_p11_token_revive(kb_p11_token *tok)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	token *t = (token *)tok;
	module *m = t->mod;
	int64_t now = kb_now_ms();
	bool back = false;
	CK_RV rv;

	pthread_mutex_lock(&registry_lock);
	pthread_rwlock_wrlock(&m->use);
	if (kb_p11_token_present(tok) == CKR_OK) {
		back = true; /* another caller revived it meanwhile */
		goto out;
	}
	if (!m->finalize || now - m->revived_ms < 1000)
		goto out;
	m->revived_ms = now;
	m->f->C_Finalize(NULL);
	rv = m->f->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		kb_warn("PKCS#11 module %s: C_Initialize again failed (0x%lx); its tokens stay unavailable", m->path,
			(unsigned long)rv);
		goto out;
	}
	/* every session and login of the module is gone: each token's users start again */
	for (token *o = tokens; o; o = o->next) {
		if (o->mod != m)
			continue;
		atomic_fetch_add(&o->pub.gen, 1);
		atomic_fetch_add(&o->pub.login_epoch, 1);
		if (refind(m, o) && o == t)
			back = true;
	}
out:
	pthread_rwlock_unlock(&m->use);
	pthread_mutex_unlock(&registry_lock);
	return back;
}
