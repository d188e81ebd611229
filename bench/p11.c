/*
 * p11.c: floor B and the p11-kit peer: one PKCS#11 module, a session per
 * client, the backend's own unwrap call. See p11.h.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "p11.h"

struct p11_bench {
	bench_driver d;
	void *dl;
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot;
	CK_OBJECT_HANDLE key;
	p11_kind kind;
	uint8_t ct[1024];
	size_t ctlen;
	CK_SESSION_HANDLE login;   /* keeps the login alive while the driver lives */
	bool owns_init;            /* this driver initialised the module: it finalises it */
};

typedef struct p11_conn {
	p11_bench *p;
	CK_SESSION_HANDLE h;
} p11_conn;

static int one_op(p11_bench *p, CK_SESSION_HANDLE h, CK_RV *rv_out, const char **fn)
{
	CK_FUNCTION_LIST *f = p->f;
	uint8_t out[1024];
	CK_RV rv;

	if (p->kind == P11_RSA_OAEP) {
		CK_RSA_PKCS_OAEP_PARAMS prm = { CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0 };
		CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &prm, sizeof(prm) };
		CK_ULONG n = sizeof(out);

		*fn = "C_DecryptInit";
		rv = f->C_DecryptInit(h, &m, p->key);
		if (rv == CKR_OK) {
			*fn = "C_Decrypt";
			rv = f->C_Decrypt(h, p->ct, p->ctlen, out, &n);
		}
	} else {
		CK_MECHANISM m = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
		CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
		CK_KEY_TYPE kt = CKK_GENERIC_SECRET;
		CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof(cls) },
			{ CKA_KEY_TYPE, &kt, sizeof(kt) },
			{ CKA_TOKEN, &no, sizeof(no) },
			{ CKA_SENSITIVE, &no, sizeof(no) },
			{ CKA_EXTRACTABLE, &yes, sizeof(yes) },
		};
		CK_ATTRIBUTE val = { CKA_VALUE, out, sizeof(out) };
		CK_OBJECT_HANDLE obj;

		*fn = "C_UnwrapKey";
		rv = f->C_UnwrapKey(h, &m, p->key, p->ct, p->ctlen, t, 5, &obj);
		if (rv == CKR_OK) {
			*fn = "C_GetAttributeValue";
			rv = f->C_GetAttributeValue(h, obj, &val, 1);
			f->C_DestroyObject(h, obj);
		}
	}
	explicit_bzero(out, sizeof(out));
	*rv_out = rv;
	return rv == CKR_OK ? BENCH_OK : BENCH_ERR;
}

static int p11_open(void *arg, int client, void **conn, char *err, size_t errlen)
{
	p11_bench *p = arg;
	p11_conn *c = calloc(1, sizeof(*c));
	CK_RV rv;

	if (c == NULL)
		return -1;
	c->p = p;
	rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &c->h);
	if (rv != CKR_OK) {
		snprintf(err, errlen, "C_OpenSession: CKR 0x%lx", (unsigned long)rv);
		free(c);
		return -1;
	}
	*conn = c;
	return 0;
}

static int p11_op(void *conn)
{
	p11_conn *c = conn;
	const char *fn;
	CK_RV rv;

	if (one_op(c->p, c->h, &rv, &fn) != BENCH_OK) {
		snprintf(c->p->d.first_error, sizeof(c->p->d.first_error), "%s: CKR 0x%lx", fn,
			 (unsigned long)rv);
		return BENCH_ERR;
	}
	return BENCH_OK;
}

static void p11_close(void *conn)
{
	p11_conn *c = conn;

	c->p->f->C_CloseSession(c->h);
	free(c);
}

/* find_slot sets p->slot to the slot whose token is labelled label. */
static CK_RV find_slot(p11_bench *p, const char *label)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;
	CK_RV rv = p->f->C_GetSlotList(CK_TRUE, slots, &n);

	if (rv != CKR_OK)
		return rv;
	for (CK_ULONG i = 0; i < n; i++) {
		CK_TOKEN_INFO ti;
		size_t len = sizeof(ti.label);

		if (p->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		while (len > 0 && ti.label[len - 1] == ' ')
			len--;
		if (len == strlen(label) && memcmp(ti.label, label, len) == 0) {
			p->slot = slots[i];
			return CKR_OK;
		}
	}
	return CKR_TOKEN_NOT_PRESENT;
}

p11_bench *p11_bench_new(const char *module, const char *token, const char *pin, const char *label,
			 p11_kind kind, const uint8_t *ct, size_t ctlen, char *err, size_t errlen)
{
	CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
	CK_OBJECT_CLASS cls = kind == P11_RSA_OAEP ? CKO_PRIVATE_KEY : CKO_SECRET_KEY;
	CK_ATTRIBUTE q[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_RV (*get)(CK_FUNCTION_LIST **);
	p11_bench *p = calloc(1, sizeof(*p));
	const char *fn;
	CK_ULONG found = 0;
	CK_RV rv;

	if (p == NULL || ctlen == 0 || ctlen > sizeof(p->ct)) {
		snprintf(err, errlen, "no ciphertext to unwrap");
		free(p);
		return NULL;
	}
	p->kind = kind;
	memcpy(p->ct, ct, ctlen);
	p->ctlen = ctlen;
	p->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
	if (p->dl == NULL) {
		snprintf(err, errlen, "cannot load %s: %s", module, dlerror());
		free(p);
		return NULL;
	}
	*(void **)&get = dlsym(p->dl, "C_GetFunctionList");
	if (get == NULL || get(&p->f) != CKR_OK) {
		snprintf(err, errlen, "%s is not a PKCS#11 module", module);
		dlclose(p->dl);
		free(p);
		return NULL;
	}
	/* two drivers on one module (the RSA and the AES key) share its initialisation */
	rv = p->f->C_Initialize(&ia);
	p->owns_init = rv == CKR_OK;
	if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED)
		rv = CKR_OK;
	if (rv != CKR_OK) {
		snprintf(err, errlen, "%s: C_Initialize: CKR 0x%lx", module, (unsigned long)rv);
		dlclose(p->dl);
		free(p);
		return NULL;
	}
	rv = find_slot(p, token);
	if (rv == CKR_OK)
		rv = p->f->C_OpenSession(p->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &p->login);
	if (rv == CKR_OK) {
		rv = p->f->C_Login(p->login, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin));
		if (rv == CKR_USER_ALREADY_LOGGED_IN)
			rv = CKR_OK;
	}
	if (rv == CKR_OK)
		rv = p->f->C_FindObjectsInit(p->login, q, 2);
	if (rv == CKR_OK) {
		rv = p->f->C_FindObjects(p->login, &p->key, 1, &found);
		p->f->C_FindObjectsFinal(p->login);
	}
	if (rv != CKR_OK || found == 0) {
		snprintf(err, errlen, "%s: token %s, key %s: %s CKR 0x%lx", module, token, label,
			 found == 0 && rv == CKR_OK ? "not found" : "failed with", (unsigned long)rv);
		p11_bench_free(p);
		return NULL;
	}
	/* one call first: a module that cannot make it is skipped, not measured failing */
	if (one_op(p, p->login, &rv, &fn) != BENCH_OK) {
		snprintf(err, errlen, "%s: %s: CKR 0x%lx", module, fn, (unsigned long)rv);
		p11_bench_free(p);
		return NULL;
	}
	p->d = (bench_driver){ .arg = p, .open = p11_open, .op = p11_op, .close = p11_close };
	return p;
}

bench_driver *p11_bench_driver(p11_bench *p)
{
	return &p->d;
}

void p11_bench_free(p11_bench *p)
{
	if (p == NULL)
		return;
	if (p->login != CK_INVALID_HANDLE)
		p->f->C_CloseSession(p->login);
	if (p->owns_init)
		p->f->C_Finalize(NULL);
	dlclose(p->dl);
	free(p);
}
