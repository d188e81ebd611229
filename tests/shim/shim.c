/*
 * shim.c: kbshim, a PKCS#11 module for tests that forwards every call to a
 * real module and fails on command.
 *
 *   KB_SHIM_MODULE   the real module (default /usr/lib/softhsm/libsofthsm2.so)
 *   KB_SHIM_CONTROL  a file holding one mode; missing or empty means ok
 *
 * Before each call the shim stats the control file and, when it changed,
 * reads it again. The modes:
 *
 *   ok                 forward everything
 *   removed            the token is gone: C_GetSlotList and C_GetSlotInfo
 *                      report no token present, the other calls on a slot
 *                      (C_GetTokenInfo, C_OpenSession, ...) return
 *                      CKR_TOKEN_NOT_PRESENT, every session and crypto call
 *                      CKR_DEVICE_REMOVED
 *   token_not_present  the same, but session and crypto calls also return
 *                      CKR_TOKEN_NOT_PRESENT
 *   session_invalid    the token forgot its sessions; then forward
 *   slow MS            sleep MS milliseconds before each crypto call (one
 *                      that does the work, not its C_*Init)
 *   fail_decrypt N     the next N C_Decrypt/C_UnwrapKey calls return
 *                      CKR_DEVICE_ERROR
 *   strict_templates   C_GenerateKey and C_GenerateKeyPair refuse a template
 *                      that mentions CKA_SIGN, CKA_VERIFY or CKA_EXTRACTABLE
 *                      with CKR_GENERAL_ERROR, as tpm2-pkcs11 refuses
 *                      CKA_SIGN=FALSE; each refusal is told on stderr
 *   refuse_generate    every C_GenerateKey and C_GenerateKeyPair returns
 *                      CKR_GENERAL_ERROR (a token that makes no keys)
 *
 * Writing removed, token_not_present or session_invalid closes every session
 * in the real module (C_CloseAllSessions on each slot), as a token that is
 * pulled or reset loses its sessions and its login. Writing fail_decrypt N
 * starts a new count. Write the file atomically (write a temp file, rename).
 *
 * Thread-safe: the control state is read and changed under one lock. Calls
 * into the real module hold a read lock that closing the sessions takes for
 * writing, so a token is lost between two calls, never in the middle of one
 * (SoftHSM does not expect its sessions closed under a call in flight).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#define SHIM_DEFAULT_MODULE "/usr/lib/softhsm/libsofthsm2.so"

typedef enum mode {
	M_OK, M_REMOVED, M_NOT_PRESENT, M_SESSION_INVALID, M_SLOW, M_FAIL_DECRYPT, M_STRICT_TEMPLATES,
	M_REFUSE_GENERATE
} mode;

/* What a call is, for the faults that apply to it. */
typedef enum kind {
	K_LIBRARY,      /* C_Initialize, C_Finalize, C_GetInfo: never fail */
	K_SLOTS,        /* C_GetSlotList, C_GetSlotInfo: the token is hidden, not an error */
	K_TOKEN,        /* other calls on a slot */
	K_SESSION,      /* calls on a session that do no cryptography, C_*Init included */
	K_CRYPTO,       /* cryptographic calls: slow applies */
	K_DECRYPT,      /* C_Decrypt, C_UnwrapKey: slow and fail_decrypt apply */
	K_GENERATE,     /* C_GenerateKey, C_GenerateKeyPair: slow and the template modes apply */
} kind;

static CK_FUNCTION_LIST *real;
static pthread_rwlock_t in_call = PTHREAD_RWLOCK_INITIALIZER;

static struct {
	pthread_mutex_t lock;
	bool have;              /* st below is the file last read */
	struct stat st;
	mode m;
	long arg;               /* slow: milliseconds; fail_decrypt: calls left */
} ctl = { .lock = PTHREAD_MUTEX_INITIALIZER };

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* parse turns the control file's text into a mode; anything unknown is ok, loudly. */
static mode parse(const char *text, long *arg)
{
	static const struct {
		const char *word;
		mode m;
		bool has_arg;
	} words[] = {
		{ "ok", M_OK, false },
		{ "removed", M_REMOVED, false },
		{ "token_not_present", M_NOT_PRESENT, false },
		{ "session_invalid", M_SESSION_INVALID, false },
		{ "slow", M_SLOW, true },
		{ "fail_decrypt", M_FAIL_DECRYPT, true },
		{ "strict_templates", M_STRICT_TEMPLATES, false },
		{ "refuse_generate", M_REFUSE_GENERATE, false },
	};
	char word[32] = "";
	long n = 0;
	int got = sscanf(text, "%31s %ld", word, &n);

	*arg = 0;
	if (got <= 0)
		return M_OK;
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcmp(word, words[i].word) == 0 && (got == 2) == words[i].has_arg && n >= 0) {
			*arg = n;
			return words[i].m;
		}
	fprintf(stderr, "kbshim: control file says \"%s\": not a mode, forwarding as ok\n", word);
	return M_OK;
}

/* forget_sessions closes every session the real module has, once no call is in flight. */
static void forget_sessions(void)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = sizeof(slots) / sizeof(slots[0]);

	pthread_rwlock_wrlock(&in_call);
	if (real->C_GetSlotList(CK_FALSE, slots, &n) == CKR_OK)
		for (CK_ULONG i = 0; i < n; i++)
			real->C_CloseAllSessions(slots[i]);
	pthread_rwlock_unlock(&in_call);
}

/* reload_locked reads the control file again if it changed since last time. */
static void reload_locked(const char *path)
{
	char text[128];
	struct stat st;
	size_t len = 0;
	FILE *f;

	if (stat(path, &st) != 0) {
		ctl.have = false;
		ctl.m = M_OK;
		return;
	}
	if (ctl.have && same_file(&st, &ctl.st))
		return;
	f = fopen(path, "re");
	if (f == NULL)
		return;
	if (fstat(fileno(f), &st) == 0)
		len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[len] = '\0';
	ctl.st = st;
	ctl.have = true;
	ctl.m = parse(text, &ctl.arg);
	if (ctl.m == M_REMOVED || ctl.m == M_NOT_PRESENT || ctl.m == M_SESSION_INVALID)
		forget_sessions();
}

static bool token_hidden(void)
{
	return ctl.m == M_REMOVED || ctl.m == M_NOT_PRESENT;
}

/* optional_attr names the first attribute strict_templates refuses in t, or NULL. */
static const char *optional_attr(const CK_ATTRIBUTE *t, CK_ULONG n)
{
	for (CK_ULONG i = 0; t && i < n; i++)
		switch (t[i].type) {
		case CKA_SIGN:
			return "CKA_SIGN";
		case CKA_VERIFY:
			return "CKA_VERIFY";
		case CKA_EXTRACTABLE:
			return "CKA_EXTRACTABLE";
		}
	return NULL;
}

/*
 * fault returns the answer the fault gives a call of kind k, or CKR_OK to
 * forward it; then the caller holds in_call for reading and releases it
 * after the call. *hide tells slot calls to report no token present.
 */
static CK_RV fault(kind k, bool *hide)
{
	const char *path = getenv("KB_SHIM_CONTROL");
	long sleep_ms = 0;
	CK_RV rv = CKR_OK;

	if (hide)
		*hide = false;
	if (path == NULL || k == K_LIBRARY) {
		pthread_rwlock_rdlock(&in_call);
		return CKR_OK;
	}
	pthread_mutex_lock(&ctl.lock);
	reload_locked(path);
	if (token_hidden()) {
		if (k == K_SLOTS)
			*hide = true;
		else if (k == K_TOKEN || ctl.m == M_NOT_PRESENT)
			rv = CKR_TOKEN_NOT_PRESENT;
		else
			rv = CKR_DEVICE_REMOVED;
	} else if (ctl.m == M_SLOW && (k == K_CRYPTO || k == K_DECRYPT || k == K_GENERATE)) {
		sleep_ms = ctl.arg;
	} else if (ctl.m == M_FAIL_DECRYPT && k == K_DECRYPT && ctl.arg > 0) {
		ctl.arg--;
		rv = CKR_DEVICE_ERROR;
	} else if (ctl.m == M_REFUSE_GENERATE && k == K_GENERATE) {
		rv = CKR_GENERAL_ERROR;
	}
	if (rv == CKR_OK)
		pthread_rwlock_rdlock(&in_call);
	pthread_mutex_unlock(&ctl.lock);
	if (sleep_ms > 0) {
		struct timespec ts = { sleep_ms / 1000, (sleep_ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
	}
	return rv;
}

/* FWD defines shim_NAME: check the fault for kind K, then forward. */
#define FWD(K, NAME, PARAMS, ARGS)                       \
	static CK_RV shim_##NAME PARAMS                  \
	{                                                \
		CK_RV rv = fault(K, NULL);               \
		if (rv != CKR_OK)                        \
			return rv;                       \
		rv = real->NAME ARGS;                    \
		pthread_rwlock_unlock(&in_call);         \
		return rv;                               \
	}

/* the shapes that many calls share */
#define P_S (CK_SESSION_HANDLE s)
#define A_S (s)
#define P_IO (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
#define A_IO (s, in, inlen, out, outlen)
#define P_IN (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen)
#define A_IN (s, in, inlen)
#define P_OUT (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG_PTR outlen)
#define A_OUT (s, out, outlen)
#define P_INIT (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE key)
#define A_INIT (s, m, key)
#define P_ATTRS (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
#define A_ATTRS (s, o, t, n)

FWD(K_LIBRARY, C_Initialize, (CK_VOID_PTR args), (args))
FWD(K_LIBRARY, C_Finalize, (CK_VOID_PTR reserved), (reserved))
FWD(K_LIBRARY, C_GetInfo, (CK_INFO_PTR info), (info))
FWD(K_TOKEN, C_GetTokenInfo, (CK_SLOT_ID id, CK_TOKEN_INFO_PTR info), (id, info))
FWD(K_TOKEN, C_GetMechanismList, (CK_SLOT_ID id, CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR n), (id, list, n))
FWD(K_TOKEN, C_GetMechanismInfo, (CK_SLOT_ID id, CK_MECHANISM_TYPE t, CK_MECHANISM_INFO_PTR info), (id, t, info))
FWD(K_TOKEN, C_InitToken, (CK_SLOT_ID id, CK_UTF8CHAR_PTR pin, CK_ULONG len, CK_UTF8CHAR_PTR label), (id, pin, len, label))
FWD(K_TOKEN, C_OpenSession, (CK_SLOT_ID id, CK_FLAGS fl, CK_VOID_PTR app, CK_NOTIFY notify, CK_SESSION_HANDLE_PTR s), (id, fl, app, notify, s))
FWD(K_TOKEN, C_CloseAllSessions, (CK_SLOT_ID id), (id))
FWD(K_TOKEN, C_WaitForSlotEvent, (CK_FLAGS fl, CK_SLOT_ID_PTR id, CK_VOID_PTR reserved), (fl, id, reserved))
FWD(K_SESSION, C_InitPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR pin, CK_ULONG len), (s, pin, len))
FWD(K_SESSION, C_SetPIN, (CK_SESSION_HANDLE s, CK_UTF8CHAR_PTR old, CK_ULONG oldlen, CK_UTF8CHAR_PTR pin, CK_ULONG len), (s, old, oldlen, pin, len))
FWD(K_SESSION, C_CloseSession, P_S, A_S)
FWD(K_SESSION, C_GetSessionInfo, (CK_SESSION_HANDLE s, CK_SESSION_INFO_PTR info), (s, info))
FWD(K_SESSION, C_GetOperationState, P_OUT, A_OUT)
FWD(K_SESSION, C_SetOperationState, (CK_SESSION_HANDLE s, CK_BYTE_PTR st, CK_ULONG len, CK_OBJECT_HANDLE ek, CK_OBJECT_HANDLE ak), (s, st, len, ek, ak))
FWD(K_SESSION, C_Login, (CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len), (s, u, pin, len))
FWD(K_SESSION, C_Logout, P_S, A_S)
FWD(K_SESSION, C_CreateObject, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR o), (s, t, n, o))
FWD(K_SESSION, C_CopyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR no), (s, o, t, n, no))
FWD(K_SESSION, C_DestroyObject, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o), (s, o))
FWD(K_SESSION, C_GetObjectSize, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ULONG_PTR n), (s, o, n))
FWD(K_SESSION, C_GetAttributeValue, P_ATTRS, A_ATTRS)
FWD(K_SESSION, C_SetAttributeValue, P_ATTRS, A_ATTRS)
FWD(K_SESSION, C_FindObjectsInit, (CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n), (s, t, n))
FWD(K_SESSION, C_FindObjects, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR o, CK_ULONG max, CK_ULONG_PTR n), (s, o, max, n))
FWD(K_SESSION, C_FindObjectsFinal, P_S, A_S)
FWD(K_SESSION, C_GetFunctionStatus, P_S, A_S)
FWD(K_SESSION, C_CancelFunction, P_S, A_S)
FWD(K_SESSION, C_EncryptInit, P_INIT, A_INIT)
FWD(K_CRYPTO, C_Encrypt, P_IO, A_IO)
FWD(K_CRYPTO, C_EncryptUpdate, P_IO, A_IO)
FWD(K_CRYPTO, C_EncryptFinal, P_OUT, A_OUT)
FWD(K_SESSION, C_DecryptInit, P_INIT, A_INIT)
FWD(K_DECRYPT, C_Decrypt, P_IO, A_IO)
FWD(K_CRYPTO, C_DecryptUpdate, P_IO, A_IO)
FWD(K_CRYPTO, C_DecryptFinal, P_OUT, A_OUT)
FWD(K_SESSION, C_DigestInit, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m), (s, m))
FWD(K_CRYPTO, C_Digest, P_IO, A_IO)
FWD(K_CRYPTO, C_DigestUpdate, P_IN, A_IN)
FWD(K_CRYPTO, C_DigestKey, (CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key), (s, key))
FWD(K_CRYPTO, C_DigestFinal, P_OUT, A_OUT)
FWD(K_SESSION, C_SignInit, P_INIT, A_INIT)
FWD(K_CRYPTO, C_Sign, P_IO, A_IO)
FWD(K_CRYPTO, C_SignUpdate, P_IN, A_IN)
FWD(K_CRYPTO, C_SignFinal, P_OUT, A_OUT)
FWD(K_SESSION, C_SignRecoverInit, P_INIT, A_INIT)
FWD(K_CRYPTO, C_SignRecover, P_IO, A_IO)
FWD(K_SESSION, C_VerifyInit, P_INIT, A_INIT)
FWD(K_CRYPTO, C_Verify, (CK_SESSION_HANDLE s, CK_BYTE_PTR in, CK_ULONG inlen, CK_BYTE_PTR sig, CK_ULONG siglen), (s, in, inlen, sig, siglen))
FWD(K_CRYPTO, C_VerifyUpdate, P_IN, A_IN)
FWD(K_CRYPTO, C_VerifyFinal, P_IN, A_IN)
FWD(K_SESSION, C_VerifyRecoverInit, P_INIT, A_INIT)
FWD(K_CRYPTO, C_VerifyRecover, P_IO, A_IO)
FWD(K_CRYPTO, C_DigestEncryptUpdate, P_IO, A_IO)
FWD(K_CRYPTO, C_DecryptDigestUpdate, P_IO, A_IO)
FWD(K_CRYPTO, C_SignEncryptUpdate, P_IO, A_IO)
FWD(K_CRYPTO, C_DecryptVerifyUpdate, P_IO, A_IO)

/* strict refuses a generation whose template has an attribute strict_templates refuses. */
static bool strict(const char *fn, const CK_ATTRIBUTE *a, CK_ULONG an, const CK_ATTRIBUTE *b, CK_ULONG bn)
{
	const char *attr;
	bool on;

	pthread_mutex_lock(&ctl.lock);
	on = ctl.m == M_STRICT_TEMPLATES;
	pthread_mutex_unlock(&ctl.lock);
	attr = on ? optional_attr(a, an) : NULL;
	if (on && attr == NULL)
		attr = optional_attr(b, bn);
	if (attr)
		fprintf(stderr, "kbshim: strict_templates: %s refused a template with %s\n", fn, attr);
	return attr != NULL;
}

static CK_RV shim_C_GenerateKey(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR t, CK_ULONG n,
				CK_OBJECT_HANDLE_PTR key)
{
	CK_RV rv = fault(K_GENERATE, NULL);

	if (rv != CKR_OK)
		return rv;
	if (strict("C_GenerateKey", t, n, NULL, 0))
		rv = CKR_GENERAL_ERROR;
	else
		rv = real->C_GenerateKey(s, m, t, n, key);
	pthread_rwlock_unlock(&in_call);
	return rv;
}

static CK_RV shim_C_GenerateKeyPair(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_ATTRIBUTE_PTR pt, CK_ULONG pn,
				    CK_ATTRIBUTE_PTR vt, CK_ULONG vn, CK_OBJECT_HANDLE_PTR pub,
				    CK_OBJECT_HANDLE_PTR priv)
{
	CK_RV rv = fault(K_GENERATE, NULL);

	if (rv != CKR_OK)
		return rv;
	if (strict("C_GenerateKeyPair", pt, pn, vt, vn))
		rv = CKR_GENERAL_ERROR;
	else
		rv = real->C_GenerateKeyPair(s, m, pt, pn, vt, vn, pub, priv);
	pthread_rwlock_unlock(&in_call);
	return rv;
}
FWD(K_CRYPTO, C_WrapKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE wk, CK_OBJECT_HANDLE key, CK_BYTE_PTR out, CK_ULONG_PTR outlen), (s, m, wk, key, out, outlen))
FWD(K_DECRYPT, C_UnwrapKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE uk, CK_BYTE_PTR in, CK_ULONG inlen, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key), (s, m, uk, in, inlen, t, n, key))
FWD(K_CRYPTO, C_DeriveKey, (CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE base, CK_ATTRIBUTE_PTR t, CK_ULONG n, CK_OBJECT_HANDLE_PTR key), (s, m, base, t, n, key))
FWD(K_CRYPTO, C_SeedRandom, P_IN, A_IN)
FWD(K_CRYPTO, C_GenerateRandom, (CK_SESSION_HANDLE s, CK_BYTE_PTR out, CK_ULONG len), (s, out, len))

/* A removed token is still a slot: it is listed only when absent tokens are asked for. */
static CK_RV shim_C_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR n)
{
	bool hide;
	CK_RV rv;

	(void)fault(K_SLOTS, &hide);
	if (hide && present) {
		*n = 0;
		rv = CKR_OK;
	} else
		rv = real->C_GetSlotList(present, list, n);
	pthread_rwlock_unlock(&in_call);
	return rv;
}

static CK_RV shim_C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
	bool hide;
	CK_RV rv;

	(void)fault(K_SLOTS, &hide);
	rv = real->C_GetSlotInfo(id, info);
	pthread_rwlock_unlock(&in_call);
	if (rv == CKR_OK && hide)
		info->flags &= ~(CK_FLAGS)CKF_TOKEN_PRESENT;
	return rv;
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

#define ENTRY(NAME) .NAME = shim_##NAME
static CK_FUNCTION_LIST shim_list = {
	.version = { CRYPTOKI_VERSION_MAJOR, CRYPTOKI_VERSION_MINOR },
	ENTRY(C_Initialize), ENTRY(C_Finalize), ENTRY(C_GetInfo), ENTRY(C_GetFunctionList),
	ENTRY(C_GetSlotList), ENTRY(C_GetSlotInfo), ENTRY(C_GetTokenInfo),
	ENTRY(C_GetMechanismList), ENTRY(C_GetMechanismInfo), ENTRY(C_InitToken),
	ENTRY(C_InitPIN), ENTRY(C_SetPIN), ENTRY(C_OpenSession), ENTRY(C_CloseSession),
	ENTRY(C_CloseAllSessions), ENTRY(C_GetSessionInfo), ENTRY(C_GetOperationState),
	ENTRY(C_SetOperationState), ENTRY(C_Login), ENTRY(C_Logout), ENTRY(C_CreateObject),
	ENTRY(C_CopyObject), ENTRY(C_DestroyObject), ENTRY(C_GetObjectSize),
	ENTRY(C_GetAttributeValue), ENTRY(C_SetAttributeValue), ENTRY(C_FindObjectsInit),
	ENTRY(C_FindObjects), ENTRY(C_FindObjectsFinal), ENTRY(C_EncryptInit), ENTRY(C_Encrypt),
	ENTRY(C_EncryptUpdate), ENTRY(C_EncryptFinal), ENTRY(C_DecryptInit), ENTRY(C_Decrypt),
	ENTRY(C_DecryptUpdate), ENTRY(C_DecryptFinal), ENTRY(C_DigestInit), ENTRY(C_Digest),
	ENTRY(C_DigestUpdate), ENTRY(C_DigestKey), ENTRY(C_DigestFinal), ENTRY(C_SignInit),
	ENTRY(C_Sign), ENTRY(C_SignUpdate), ENTRY(C_SignFinal), ENTRY(C_SignRecoverInit),
	ENTRY(C_SignRecover), ENTRY(C_VerifyInit), ENTRY(C_Verify), ENTRY(C_VerifyUpdate),
	ENTRY(C_VerifyFinal), ENTRY(C_VerifyRecoverInit), ENTRY(C_VerifyRecover),
	ENTRY(C_DigestEncryptUpdate), ENTRY(C_DecryptDigestUpdate), ENTRY(C_SignEncryptUpdate),
	ENTRY(C_DecryptVerifyUpdate), ENTRY(C_GenerateKey), ENTRY(C_GenerateKeyPair),
	ENTRY(C_WrapKey), ENTRY(C_UnwrapKey), ENTRY(C_DeriveKey), ENTRY(C_SeedRandom),
	ENTRY(C_GenerateRandom), ENTRY(C_GetFunctionStatus), ENTRY(C_CancelFunction),
	ENTRY(C_WaitForSlotEvent),
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;

/* load_real dlopens the real module once; real stays NULL if it cannot. */
static void load_real(void)
{
	const char *path = getenv("KB_SHIM_MODULE");
	CK_C_GetFunctionList getf;
	void *dl;

	if (path == NULL || *path == '\0')
		path = SHIM_DEFAULT_MODULE;
	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	getf = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;
	if (getf == NULL || getf(&real) != CKR_OK || real == NULL) {
		fprintf(stderr, "kbshim: cannot load the real module %s: %s\n", path,
			dl ? "no usable C_GetFunctionList" : dlerror());
		real = NULL;
	}
	/* the real module stays loaded for the life of the process */
}

static CK_RV shim_C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_once(&load_once, load_real);
	if (real == NULL)
		return CKR_GENERAL_ERROR;
	*list = &shim_list;
	return CKR_OK;
}

__attribute__((visibility("default"))) CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	return shim_C_GetFunctionList(list);
}
