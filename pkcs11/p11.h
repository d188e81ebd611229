/*
 * p11.h: the shared types of the PKCS#11 backend's files.
 *
 *   conf.c      the [key:NAME] options and the PIN source
 *   registry.c  loaded modules (one function list each) and tokens, refcounted
 *   session.c   one session per slot, reopened and logged in after a fault
 *   errmap.c    the one place that turns CKR_* into kb_codes
 *   versions.c  the key's versions (objects sharing a label) and their handles
 *   rsa.c aes.c the wrap and unwrap mechanisms
 *   rotate.c    making the next version on the token
 *   call.c      the call driver (session recovery) and the wrap and unwrap calls
 *   doctor.c    the diagnostic checks, above call.c
 *   backend.c   kb_pkcs11_backend: the ops table
 */
#ifndef KB_P11_H
#define KB_P11_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "backend.h"

#define KB_P11_ID_MAX (KB_VERSION_MAX / 2) /* CKA_ID bytes that fit a version name */
#define KB_P11_PIN_MAX 256

/* Where the user PIN comes from: exactly one of file and env is set. */
typedef struct kb_p11_pin_src {
	char *file;
	char *env;
} kb_p11_pin_src;

typedef struct kb_p11_conf {
	char *module;
	char *uri_text;
	P11KitUri *uri;
	char *label;            /* CKA_LABEL of every version (the URI's object=) */
	kb_p11_pin_src pin;
} kb_p11_conf;

/*
 * kb_p11_conf_take takes the backend's options from kc into conf. On error
 * err names the file, line and option, and conf holds nothing to free.
 */
kb_code kb_p11_conf_take(kb_keyconf *kc, kb_p11_conf *conf, kb_err *err);
void kb_p11_conf_free(kb_p11_conf *conf);

/*
 * kb_p11_pin_read reads the PIN into pin (capacity cap, NUL-terminated),
 * without its trailing newline. The caller wipes pin with OPENSSL_cleanse.
 */
kb_code kb_p11_pin_read(const kb_p11_pin_src *src, const char *key, char *pin, size_t cap,
			kb_err *err);

/* What kb_p11_pin_file_check found. */
typedef enum kb_p11_pin_file {
	KB_P11_PIN_FILE_NONE = 0,   /* the PIN comes from pin_env */
	KB_P11_PIN_FILE_PRIVATE,    /* only its owner may read it */
	KB_P11_PIN_FILE_EXPOSED,    /* group or others have access: a warning */
	KB_P11_PIN_FILE_MISSING,    /* it cannot be stat'ed */
} kb_p11_pin_file;

/*
 * kb_p11_pin_file_check looks at the mode of src's pin_file; detail and fix
 * (capacity cap each) receive what to report and what to do ("" when
 * nothing). Startup, --check and doctor all judge the file through it.
 */
kb_p11_pin_file kb_p11_pin_file_check(const kb_p11_pin_src *src, char *detail, char *fix, size_t cap);

/* kb_p11_pin_describe writes "pin_file PATH" or "pin_env VAR" to buf, for messages. */
void kb_p11_pin_describe(const kb_p11_pin_src *src, char *buf, size_t cap);

/* A token of a loaded module; shared by every key on it. */
typedef struct kb_p11_token {
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot_id;
	char label[33];
	char serial[17];
	const char *module;     /* the module's path, as configured */
	char library[80];       /* the module's own description and version */
	pthread_mutex_t login_lock; /* one C_Login at a time after a fault */
	/*
	 * bumped at each C_Login: a logout may invalidate object handles
	 * (SoftHSM drops those of private objects), so keys find theirs again
	 */
	_Atomic unsigned login_epoch;
	/*
	 * a keyed digest (HMAC-SHA-256 under a key made at random for this
	 * process) of the PIN of the last C_Login, under login_lock: a key opened
	 * later on the token, already logged in, proves its PIN against it
	 */
	unsigned char pin_mac[32];
	bool pin_mac_set;
	/* bumped when the module is initialized again (kb_p11_token_revive): every session is gone */
	_Atomic unsigned gen;
} kb_p11_token;

/*
 * kb_p11_token_acquire loads conf->module (once per process) and finds the
 * first initialized token matching conf->uri, returning a counted reference.
 * Thread-safe.
 */
kb_code kb_p11_token_acquire(const kb_p11_conf *conf, const char *key, kb_p11_token **tok,
			     kb_err *err);

/* kb_p11_token_release drops a reference; the last one unloads the module. */
void kb_p11_token_release(kb_p11_token *tok);

/*
 * kb_p11_token_enter and kb_p11_token_leave bracket every call into tok's
 * module (never nested), so that a revive never overlaps one.
 */
void kb_p11_token_enter(kb_p11_token *tok);
void kb_p11_token_leave(kb_p11_token *tok);

/*
 * kb_p11_token_present returns CKR_OK if tok is in its slot, else what
 * C_GetTokenInfo said (CKR_TOKEN_NOT_PRESENT: another token is there).
 * Call it entered.
 */
CK_RV kb_p11_token_present(kb_p11_token *tok);

/*
 * kb_p11_token_revive initializes tok's module again (C_Finalize,
 * C_Initialize: some modules, SoftHSM among them, see a token that came back
 * only then) and finds its tokens again, at most once a second per module.
 * Every session of the module is gone after it (gen), and every login
 * (login_epoch). Returns whether tok is present. Call it not entered.
 */
bool kb_p11_token_revive(kb_p11_token *tok);

/* kb_p11_create_lock serializes token object creation process-wide. */
extern pthread_mutex_t kb_p11_create_lock;

/* One version of the key: the objects sharing its CKA_ID. */
typedef struct kb_p11_version {
	char name[KB_VERSION_MAX + 1];
	uint8_t id[KB_P11_ID_MAX];
	size_t idlen;
	CK_OBJECT_HANDLE key;   /* private (RSA) or secret (AES) key: the unwrap side */
	CK_OBJECT_HANDLE pub;   /* RSA public key object, CK_INVALID_HANDLE if none */
	bool decrypt, unwrap;   /* CKA_DECRYPT, CKA_UNWRAP of key */
	bool encrypt, wrap;     /* CKA_ENCRYPT, CKA_WRAP of pub (RSA) or key (AES) */
	int bits;
	EVP_PKEY *pkey;         /* RSA public key for local wraps; NULL for AES */
} kb_p11_version;

/* A worker slot's session; only its own thread touches it. */
typedef struct kb_p11_slot {
	CK_SESSION_HANDLE h;
	bool stale;             /* reopen (and log in) before the next call */
	unsigned gen;           /* the token's gen when h was opened */
} kb_p11_slot;

enum { KB_P11_PROBE_UNKNOWN = 0, KB_P11_PROBE_OK, KB_P11_PROBE_NO };

typedef struct kb_p11_key {
	char name[KB_KEY_NAME_MAX + 1];
	kb_p11_conf conf;
	kb_p11_token *tok;
	CK_FUNCTION_LIST *f;
	CK_KEY_TYPE kty;        /* CKK_RSA or CKK_AES, once kty_known */
	bool kty_known;
	kb_alg alg;             /* default for wraps */
	int nslots;
	kb_p11_slot *slots;

	_Atomic unsigned epoch; /* the token's login_epoch when v was found */
	pthread_rwlock_t vlock; /* guards v and nv; held only to copy */
	kb_p11_version *v;      /* oldest first */
	int nv;

	/* can the token reverse alg? tested once per key (see rsa.c, aes.c) */
	_Atomic int probe[KB_ALG_COUNT];
	CK_RV probe_rv[KB_ALG_COUNT];
	bool kwp_pads;          /* the token's AES-KWP unwrap keeps the RFC 5649 padding */
} kb_p11_key;

/* What the backend was doing when the token answered, for messages. */
typedef enum kb_p11_op {
	KB_P11_OP_OPEN,
	KB_P11_OP_DESCRIBE,
	KB_P11_OP_WRAP,
	KB_P11_OP_UNWRAP,
	KB_P11_OP_ROTATE,
	KB_P11_OP_RANDOM,
	KB_P11_OP_DOCTOR,
} kb_p11_op;

/* One backend call on one slot's session. */
typedef struct kb_p11_call {
	kb_p11_key *key;
	int slot;
	CK_SESSION_HANDLE h;
	kb_p11_op op;
	const char *version;    /* the version at work, once known */
	kb_alg alg;
	CK_RV rv;               /* the token's answer that failed the call */
} kb_p11_call;

/*
 * kb_p11_error is the one mapping from a token's answer to a kb_code: it
 * fills err with a message naming the key, version, token and fix. fn is the
 * PKCS#11 function that returned rv.
 */
kb_code kb_p11_error(const kb_p11_call *c, const char *fn, CK_RV rv, kb_err *err);

/*
 * kb_p11_absent maps a token that is not present (rv: what C_GetTokenInfo
 * said) to KB_E_BACKEND_UNAVAILABLE naming the token.
 */
kb_code kb_p11_absent(kb_p11_call *c, CK_RV rv, kb_err *err);

/* kb_p11_fail records rv in c (for kb_p11_recovery) and maps it. */
kb_code kb_p11_fail(kb_p11_call *c, const char *fn, CK_RV rv, kb_err *err);

/*
 * kb_p11_decrypted ends a decrypt call fn that answered rv with buf[0..n):
 * the plaintext goes to pt (capacity *ptlen, updated), or the failure to err.
 * The caller wipes buf.
 */
kb_code kb_p11_decrypted(kb_p11_call *c, const char *fn, CK_RV rv, const CK_BYTE *buf, CK_ULONG n, uint8_t *pt,
			 size_t *ptlen, kb_err *err);

typedef enum kb_p11_recovery {
	KB_P11_GIVE_UP,         /* the answer stands */
	KB_P11_REOPEN,          /* the session is gone: reopen, log in, retry once */
	KB_P11_REFIND,          /* the object handle is gone: find by label and id, retry once */
} kb_p11_recovery;

kb_p11_recovery kb_p11_recovery_for(CK_RV rv);

/* kb_p11_rv_name returns "CKR_..." for rv, or NULL for an unlisted code. */
const char *kb_p11_rv_name(CK_RV rv);

/*
 * kb_p11_session_get returns slot's session in c->h, opening it (and logging
 * in with the PIN when the token has no login yet) if it is new or stale.
 */
kb_code kb_p11_session_get(kb_p11_call *c, kb_err *err);

/*
 * kb_p11_pin_verify reads the key's PIN and checks it is the one the token is
 * logged in with (when this process logged it in), so that a key opened on a
 * token already logged in is judged as at startup: KB_E_AUTH_FAILED if the
 * PIN cannot be read or differs.
 */
kb_code kb_p11_pin_verify(kb_p11_call *c, kb_err *err);

/* kb_p11_session_drop closes slot's session and marks it for reopening. */
void kb_p11_session_drop(kb_p11_key *k, int slot);

/*
 * kb_p11_versions_refresh finds every object labelled conf.label on the token
 * and replaces the key's version list. Until kty_known it learns the key
 * type; objects of another type are ignored.
 */
kb_code kb_p11_versions_refresh(kb_p11_call *c, kb_err *err);

/*
 * kb_p11_versions_get copies version name (NULL: latest) into out, refreshing
 * the list once when it is missing. out->pkey holds a reference when
 * want_pkey; release with kb_p11_version_put. KB_E_UNKNOWN_VERSION when the
 * token has no such version, KB_E_KEY_UNAVAILABLE when it has none at all.
 */
kb_code kb_p11_versions_get(kb_p11_call *c, const char *name, bool want_pkey,
			    kb_p11_version *out, kb_err *err);
void kb_p11_version_put(kb_p11_version *v);

/* kb_p11_versions_copy returns a malloc'd copy of the list (pkeys referenced). */
kb_code kb_p11_versions_copy(kb_p11_key *k, kb_p11_version **v, int *n, kb_err *err);
void kb_p11_versions_free(kb_p11_version *v, int n);


/*
 * kb_p11_id_next writes id + 1 to out: the same length unless it overflows,
 * then one byte longer. Returns false if that exceeds KB_P11_ID_MAX.
 */
bool kb_p11_id_next(const uint8_t *id, size_t len, uint8_t out[KB_P11_ID_MAX], size_t *outlen);

/* kb_p11_id_name writes the version name of id ("0" for an empty id). */
void kb_p11_id_name(const uint8_t *id, size_t len, char name[KB_VERSION_MAX + 1]);

/* kb_p11_rsa_pkey builds the public key of RSA object obj. */
kb_code kb_p11_rsa_pkey(kb_p11_call *c, CK_OBJECT_HANDLE obj, EVP_PKEY **pkey, kb_err *err);

/* kb_p11_max_plaintext is the longest plaintext alg wraps under a bits-bit key. */
size_t kb_p11_max_plaintext(kb_alg alg, int bits);

/*
 * The mechanisms. wrap checks the plaintext length (KB_E_BAD_REQUEST with the
 * maximum) and refuses an algorithm the token cannot reverse. unwrap returns
 * KB_E_BAD_BLOB for a ciphertext failing its integrity or padding check.
 */
kb_code kb_p11_rsa_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err);
kb_code kb_p11_rsa_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err);
kb_code kb_p11_aes_wrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *pt, size_t ptlen,
			uint8_t *ct, size_t *ctlen, kb_err *err);
kb_code kb_p11_aes_unwrap(kb_p11_call *c, const kb_p11_version *v, const uint8_t *ct, size_t ctlen,
			  uint8_t *pt, size_t *ptlen, kb_err *err);

#define KB_P11_AES_ALGS 3

/* kb_p11_is_aes_alg is true for the AES algorithms of aes.c. */
bool kb_p11_is_aes_alg(kb_alg alg);

/* kb_p11_aes_ckm names alg's PKCS#11 mechanism, for messages. */
const char *kb_p11_aes_ckm(kb_alg alg);

/*
 * kb_p11_aes_offered writes the AES algorithms the token offers (from
 * C_GetMechanismList, with the flags each needs) to out, preferred first,
 * and returns their count; 0 with *rv set when the list cannot be read.
 */
int kb_p11_aes_offered(kb_p11_key *k, kb_alg out[KB_P11_AES_ALGS], CK_RV *rv);

/* kb_p11_aes_describe writes "AES-KWP, AES-GCM" (or "none of ...") for messages. */
void kb_p11_aes_describe(const kb_alg *algs, int n, char *buf, size_t cap);

/*
 * kb_p11_rsa_probe / kb_p11_aes_probe tell whether the token can unwrap
 * c->alg with version v; the answer is cached per key. KB_OK or the error a
 * wrap would get.
 */
kb_code kb_p11_rsa_probe(kb_p11_call *c, const kb_p11_version *v, kb_err *err);
kb_code kb_p11_aes_probe(kb_p11_call *c, const kb_p11_version *v, kb_err *err);

/* kb_p11_rotate creates the next version on the token and names it. */
kb_code kb_p11_rotate(kb_p11_call *c, char version_out[KB_VERSION_MAX + 1], kb_err *err);

/* kb_p11_doctor runs the checks of `keybroker doctor` on c's key. */
kb_code kb_p11_doctor(kb_p11_call *c, kb_doctor_emit emit, void *ctx, kb_err *err);

/* ---- call.c: the drivers the ops and doctor share ---- */

/* A step of an op, run on the session kb_p11_run opened. */
typedef kb_code (*kb_p11_call_fn)(kb_p11_call *c, void *arg, kb_err *err);

/*
 * kb_p11_run calls fn on slot's session. When the token lost the session (or
 * the login), the session is reopened and fn retried; when it lost an object
 * handle, the versions are found again and fn retried; each at most once.
 * After a new login the handles are found again before use, as a logout may
 * have invalidated them. On KB_OK err is clear, whatever a failed try wrote.
 */
kb_code kb_p11_run(kb_p11_key *k, int slot, kb_p11_op op, kb_alg alg, kb_p11_call_fn fn, void *arg,
		   kb_err *err);

/* kb_p11_wrap_call and kb_p11_unwrap_call are the ops on one session, for the backend and doctor. */
kb_code kb_p11_wrap_call(kb_p11_call *c, const char *version, const uint8_t *pt, size_t ptlen,
			 uint8_t *ct, size_t *ctlen, char version_out[KB_VERSION_MAX + 1],
			 kb_err *err);
kb_code kb_p11_unwrap_call(kb_p11_call *c, const char *version, const uint8_t *ct, size_t ctlen,
			   uint8_t *pt, size_t *ptlen, kb_err *err);

#endif
